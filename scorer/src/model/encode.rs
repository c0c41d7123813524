//! Name -> model input, exactly as docs/contracts.md section 2 describes (and as the
//! Python training code does; `models/fixtures/encoding.json` checks both sides agree for
//! ids, the feature-set agreement tests for features).

use dohguard_core::features::{self, FeatureSet};

use super::card::{InputKind, InputSpec, InputText, Side};

/// Input rows for one model call: character ids or feature values, by the card's kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Rows {
    Ids(Vec<i64>),
    Features(Vec<f32>),
}

impl Rows {
    pub fn clear(&mut self) {
        match self {
            Rows::Ids(v) => v.clear(),
            Rows::Features(v) => v.clear(),
        }
    }
}

/// A compiled [`InputSpec`]: a byte -> id table so encoding is one lookup per character, or
/// the feature set's function.
#[derive(Debug, Clone)]
pub struct Encoder {
    features: Option<FeatureSet>,
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
        let features = match spec.kind {
            InputKind::Ids => None,
            // A card that names an unknown set does not load (`ModelCard::load`).
            InputKind::Features => spec.feature_set.as_deref().and_then(features::by_name),
        };
        Self {
            features,
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

    /// An empty buffer of the kind this encoder fills.
    pub fn rows(&self) -> Rows {
        match self.features {
            None => Rows::Ids(Vec::new()),
            Some(_) => Rows::Features(Vec::new()),
        }
    }

    /// Appends one row for `text` to `rows` (a buffer from [`Encoder::rows`]).
    pub fn push_row(&self, text: &str, rows: &mut Rows) {
        match (rows, self.features) {
            (Rows::Ids(ids), None) => self.encode_into(text, ids),
            (Rows::Features(values), Some(set)) => (set.compute)(text, values),
            // A buffer of the other kind: cannot happen with `rows()`; the row count check
            // in `LoadedSession::run_rows` reports it if it ever does.
            _ => {}
        }
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
            kind: InputKind::Ids,
            feature_set: None,
            width: None,
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
    fn a_features_spec_fills_float_rows_of_its_width() {
        let spec = InputSpec {
            kind: InputKind::Features,
            feature_set: Some("tunnel-v1".into()),
            width: Some(15),
            dtype: "float32".into(),
            text: InputText::Name,
            ..spec(1)
        };
        let e = Encoder::new(&spec);
        let mut rows = e.rows();
        e.push_row("ab12.cd.example.com", &mut rows);
        e.push_row("example.com", &mut rows);
        let Rows::Features(values) = &rows else {
            panic!("{rows:?}")
        };
        assert_eq!(values.len(), 30);
        assert!((values[0] - 0.07).abs() < 1e-6);
        assert_eq!(
            e.text_of("a.b.example.com", Some("example.com")),
            "a.b.example.com"
        );
        rows.clear();
        assert_eq!(rows, Rows::Features(Vec::new()));
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
