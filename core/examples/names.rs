//! Reads query names on stdin, one per line, and prints for each a tab-separated line:
//! the input, the normalised name (or `ERR:<reason>`), and the registered domain (or `-`).
//!
//! Used by `models/tools/name_agreement.py` to measure where Python's `normalise` /
//! `registered_domain` and this crate's [`normalize`] / [`registered_domain`] disagree.
//! Tabs and newlines inside an input line are not expected (names never contain them).

use std::io::{self, BufRead, BufWriter, Write};

use dohguard_core::name::{normalize, registered_domain};

fn main() -> io::Result<()> {
    let stdin = io::stdin().lock();
    let mut out = BufWriter::new(io::stdout().lock());
    for line in stdin.lines() {
        let line = line?;
        let raw = line.strip_suffix('\r').unwrap_or(&line);
        match normalize(raw) {
            Ok(name) => {
                let rd = registered_domain(&name).unwrap_or("-");
                writeln!(out, "{raw}\t{name}\t{rd}")?;
            }
            Err(err) => writeln!(out, "{raw}\tERR:{err}\t-")?,
        }
    }
    out.flush()
}
