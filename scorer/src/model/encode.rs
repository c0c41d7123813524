//! Name -> model input ids, exactly as docs/contracts.md section 2 describes (and as the
//! Python training code does; `models/fixtures/encoding.json` checks both sides agree).

use super::card::{InputSpec, InputText, Side};

/// A compiled [`InputSpec`]: a byte -> id table so encoding is one lookup per character.
#[derive(Debug, Clone)]
pub struct Encoder {
    table: [i64; 256],
    text: InputText,
    pad_id: i64,
    max_length: usize,
    padding: Side,
    truncation: Side,
}

impl Encoder {
    pub fn new(spec: &InputSpec) -> Self {
        let mut table = [spec.unknown_id; 256];
        for (i, b) in spec.alphabet.bytes().enumerate() {
            table[b.to_ascii_lowercase() as usize] = i as i64 + 1;
        }
        Self {
            table,
            text: spec.text,
            pad_id: spec.pad_id,
            max_length: spec.max_length,
            padding: spec.padding,
            truncation: spec.truncation,
        }
    }

    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// The text the model reads for a normalised name: its registered domain (falling back
    /// to the whole name when it has none) or the name itself.
    pub fn text_of<'a>(&self, name: &'a str, registered_domain: Option<&'a str>) -> &'a str {
        match self.text {
            InputText::RegisteredDomain => registered_domain.unwrap_or(name),
            InputText::Name => name,
        }
    }

    /// Appends exactly `max_length` ids for `text` to `out`.
    pub fn encode_into(&self, text: &str, out: &mut Vec<i64>) {
        let bytes = text.as_bytes();
        let kept = match self.truncation {
            Side::Left => &bytes[bytes.len().saturating_sub(self.max_length)..],
            Side::Right => &bytes[..bytes.len().min(self.max_length)],
        };
        let pad = self.max_length - kept.len();
        let ids = kept
            .iter()
            .map(|&b| self.table[b.to_ascii_lowercase() as usize]);
        match self.padding {
            Side::Left => {
                out.extend(std::iter::repeat_n(self.pad_id, pad));
                out.extend(ids);
            }
            Side::Right => {
                out.extend(ids);
                out.extend(std::iter::repeat_n(self.pad_id, pad));
            }
        }
    }

    pub fn encode(&self, text: &str) -> Vec<i64> {
        let mut out = Vec::with_capacity(self.max_length);
        self.encode_into(text, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(max_length: usize) -> InputSpec {
        InputSpec {
            name: "input_ids".into(),
            dtype: "int64".into(),
            text: InputText::RegisteredDomain,
            alphabet: "abcdefghijklmnopqrstuvwxyz0123456789-._".into(),
            pad_id: 0,
            unknown_id: 40,
            max_length,
            padding: Side::Left,
            truncation: Side::Left,
        }
    }

    #[test]
    fn maps_pads_and_truncates_on_the_left() {
        let e = Encoder::new(&spec(6));
        assert_eq!(e.encode("ab.c"), vec![0, 0, 1, 2, 38, 3]);
        assert_eq!(
            e.encode("AB"),
            vec![0, 0, 0, 0, 1, 2],
            "upper case maps like lower case"
        );
        assert_eq!(
            e.encode("a*"),
            vec![0, 0, 0, 0, 1, 40],
            "unknown characters get unknown_id"
        );
        // "xyz.example" keeps its last 6 characters.
        assert_eq!(e.encode("xyz.example"), e.encode("xample"));
        assert_eq!(e.encode("0-_"), vec![0, 0, 0, 27, 37, 39]);
    }

    #[test]
    fn text_is_the_registered_domain_with_a_fallback() {
        let e = Encoder::new(&spec(8));
        assert_eq!(
            e.text_of("www.example.com", Some("example.com")),
            "example.com"
        );
        assert_eq!(e.text_of("com", None), "com");
    }
}
