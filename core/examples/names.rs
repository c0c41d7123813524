//! Reads query names on stdin, one per line, and prints for each a tab-separated line:
//! the input, the normalised name (or `ERR:<reason>`), the registered domain (or `-`) and,
//! when a model card is given, the model's input ids for the name (space-separated, or `-`).
//!
//! `cargo run -p dohguard-core --example names [-- models/dga-cnn/model.card.json]`
//!
//! Used by `models/dohguard_models/agreement.py` (and its pytest) to require that Python's
//! `normalise` / `registered_domain` / `encode` and this crate's [`normalize`] /
//! [`registered_domain`] plus the card's encoding (docs/contracts.md section 2) agree.
//! Tabs and newlines inside an input line are not expected (names never contain them).

use std::io::{self, BufRead, BufWriter, Write};

use dohguard_core::name::{normalize, registered_domain};

/// The card's `input` section, as the scorer's `model::encode::Encoder` applies it:
/// the registered domain (or the name when it has none), ASCII lower case, one id per byte,
/// the last `max_length` bytes kept, padded on the left.
struct Encoding {
    table: [i64; 256],
    pad_id: i64,
    max_length: usize,
    registered_domain: bool,
}

impl Encoding {
    fn from_card(path: &str) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        let card: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
        let input = &card["input"];
        let field = |key: &str| {
            input
                .get(key)
                .ok_or_else(|| format!("{path}: input.{key} is missing"))
        };
        let int = |key: &str| {
            field(key)?
                .as_i64()
                .ok_or_else(|| format!("{path}: input.{key} is not an integer"))
        };
        let string = |key: &str| {
            field(key)?
                .as_str()
                .ok_or_else(|| format!("{path}: input.{key} is not a string"))
        };
        for key in ["padding", "truncation"] {
            if string(key)? != "left" {
                return Err(format!("{path}: input.{key} is not \"left\""));
            }
        }
        let registered_domain = match string("text")? {
            "registered_domain" => true,
            "name" => false,
            other => return Err(format!("{path}: input.text {other:?} is unknown")),
        };
        let mut table = [int("unknown_id")?; 256];
        for (i, b) in string("alphabet")?.bytes().enumerate() {
            table[b.to_ascii_lowercase() as usize] = i as i64 + 1;
        }
        let max_length = usize::try_from(int("max_length")?)
            .map_err(|_| format!("{path}: input.max_length is negative"))?;
        Ok(Self {
            table,
            pad_id: int("pad_id")?,
            max_length,
            registered_domain,
        })
    }

    fn ids(&self, name: &str, rd: Option<&str>) -> Vec<i64> {
        let text = if self.registered_domain {
            rd.unwrap_or(name)
        } else {
            name
        };
        let bytes = text.as_bytes();
        let kept = &bytes[bytes.len().saturating_sub(self.max_length)..];
        let mut out = vec![self.pad_id; self.max_length - kept.len()];
        out.extend(
            kept.iter()
                .map(|&b| self.table[b.to_ascii_lowercase() as usize]),
        );
        out
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let encoding = std::env::args()
        .nth(1)
        .map(|path| Encoding::from_card(&path))
        .transpose()?;
    let stdin = io::stdin().lock();
    let mut out = BufWriter::new(io::stdout().lock());
    for line in stdin.lines() {
        let line = line?;
        let raw = line.strip_suffix('\r').unwrap_or(&line);
        match normalize(raw) {
            Ok(name) => {
                let rd = registered_domain(&name);
                write!(out, "{raw}\t{name}\t{}", rd.unwrap_or("-"))?;
                if let Some(enc) = &encoding {
                    let ids = enc.ids(&name, rd);
                    let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
                    write!(out, "\t{}", ids.join(" "))?;
                }
                writeln!(out)?;
            }
            Err(err) => {
                write!(out, "{raw}\tERR:{err}\t-")?;
                if encoding.is_some() {
                    write!(out, "\t-")?;
                }
                writeln!(out)?;
            }
        }
    }
    out.flush()?;
    Ok(())
}
