//! Reads model texts (normalised registered domains) on stdin, one per line, and prints for
//! each a line of the `lookalike-v1` feature values ([`features`]), tab-separated, in the
//! order of `BASE_NAMES` then the suffix one-hot, with Rust's shortest round-trip formatting of each `f32`.
//!
//! `cargo run -p dohguard-core --example lookalike < names.txt`
//!
//! Used by `models/tests/test_lookalike.py` to require that the Python twin
//! (`models/dohguard_models/lookalike.py`) computes the same values.

use std::io::{self, BufRead, BufWriter, Write};

use dohguard_core::features::lookalike::features;

fn main() -> io::Result<()> {
    let stdin = io::stdin().lock();
    let mut out = BufWriter::new(io::stdout().lock());
    for line in stdin.lines() {
        let line = line?;
        let values: Vec<String> = features(line.trim_end_matches('\r'))
            .iter()
            .map(f32::to_string)
            .collect();
        writeln!(out, "{}", values.join("\t"))?;
    }
    out.flush()
}
