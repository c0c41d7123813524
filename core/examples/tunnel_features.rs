//! Reads normalised query names on stdin, one per line, and prints for each a tab-separated
//! line: the name, `1` or `0` for `features::tunnel::suspect`, and the `tunnel-v1` feature
//! values (space-separated, `{:?}` of each `f32`, which round-trips exactly).
//!
//! `cargo run -p dohguard-core --example tunnel_features`
//!
//! Used by `models/tests/test_tunnel_features.py` to require that the Python twin
//! (`dohguard_models.tunnel_features`) agrees with this crate.

use std::io::{self, BufRead, BufWriter, Write};

use dohguard_core::features::tunnel;

fn main() -> io::Result<()> {
    let stdin = io::stdin();
    let mut out = BufWriter::new(io::stdout().lock());
    let mut values = Vec::with_capacity(tunnel::WIDTH);
    for line in stdin.lock().lines() {
        let name = line?;
        values.clear();
        tunnel::features(&name, &mut values);
        let shown: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
        writeln!(
            out,
            "{name}\t{}\t{}",
            u8::from(tunnel::suspect(&name)),
            shown.join(" ")
        )?;
    }
    out.flush()
}
