//! The anomaly model card (`model.card.json`, contract 7 in docs/contracts.md): which features
//! the model reads and in what order, the window, how gaps are filled, the ONNX file's input
//! and outputs, and the alerting parameters (threshold, smoothing, k-of-n hysteresis).
//! Everything the detector relies on is validated here, so a card that loads is safe to run.

use std::path::{Path, PathBuf};

use dohguard_serving::card_file;
use serde::{Deserialize, Serialize};

use crate::ModelError;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AnomalyCard {
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub placeholder: bool,
    pub onnx_file: String,
    pub sha256: String,
    /// Seconds between rows (the `query_range` step).
    pub step_s: u32,
    /// Rows per window.
    pub window: usize,
    /// Recording rules of contract 5, in input order.
    pub features: Vec<String>,
    /// How gaps are filled; only `ffill-then-median` is known.
    pub missing: String,
    /// Per feature, raw units: the fill value of a leading gap.
    pub medians: Vec<f32>,
    pub input: InputSpec,
    pub outputs: Vec<OutputSpec>,
    pub threshold: f32,
    pub smoothing: Smoothing,
    pub hysteresis: Hysteresis,
    /// Anything else the card carries (metrics, budget, training data ...).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InputSpec {
    pub name: String,
    pub dtype: String,
    #[serde(default)]
    pub shape: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OutputSpec {
    pub name: String,
    #[serde(default)]
    pub shape: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Smoothing {
    pub ewma_alpha: f32,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Hysteresis {
    /// Alert when at least `k` of the last `n` evaluations are over the threshold ...
    pub k: usize,
    /// ... and resolve when none of the last `n` are.
    pub n: usize,
}

/// The only filling rule of contract 7.
pub const FFILL_THEN_MEDIAN: &str = "ffill-then-median";
/// The output names the detector reads.
pub const SCORE_OUTPUT: &str = "score";
pub const CONTRIBUTIONS_OUTPUT: &str = "contributions";

impl AnomalyCard {
    /// Reads and validates a card file.
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        Ok(card_file::read(path, AnomalyCard::validate)?)
    }

    /// `<name>-<version>`, the `model_version` of metrics and documents.
    pub fn model_version(&self) -> String {
        card_file::model_version(&self.name, &self.version)
    }

    /// The ONNX file, resolved against the card's folder.
    pub fn onnx_path(&self, card_path: &Path) -> PathBuf {
        card_file::onnx_path(card_path, &self.onnx_file)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.features.is_empty() {
            return Err("features is empty".into());
        }
        for (i, f) in self.features.iter().enumerate() {
            if !is_metric_name(f) {
                return Err(format!(
                    "features[{i}] {f:?} is not a Prometheus metric name"
                ));
            }
            if self.features[..i].contains(f) {
                return Err(format!("features[{i}] {f:?} is listed twice"));
            }
        }
        if self.medians.len() != self.features.len() {
            return Err(format!(
                "medians has {} values for {} features",
                self.medians.len(),
                self.features.len()
            ));
        }
        if let Some(i) = self.medians.iter().position(|m| !m.is_finite()) {
            return Err(format!("medians[{i}] is not a finite number"));
        }
        if self.missing != FFILL_THEN_MEDIAN {
            return Err(format!(
                "missing {:?} is unknown (only {FFILL_THEN_MEDIAN:?})",
                self.missing
            ));
        }
        if !(2..=10_000).contains(&self.window) {
            return Err(format!("window {} is outside 2..=10000", self.window));
        }
        if !(1..=3600).contains(&self.step_s) {
            return Err(format!("step_s {} is outside 1..=3600", self.step_s));
        }
        if self.input.dtype != "float32" {
            return Err(format!("input.dtype {:?} is not float32", self.input.dtype));
        }
        for wanted in [SCORE_OUTPUT, CONTRIBUTIONS_OUTPUT] {
            if !self.outputs.iter().any(|o| o.name == wanted) {
                return Err(format!("outputs has no {wanted:?}"));
            }
        }
        if !self.threshold.is_finite() {
            return Err("threshold is not a finite number".into());
        }
        let a = self.smoothing.ewma_alpha;
        if !(a > 0.0 && a <= 1.0) {
            return Err(format!("smoothing.ewma_alpha {a} is outside (0, 1]"));
        }
        let h = self.hysteresis;
        if h.k == 0 || h.k > h.n || h.n > 1000 {
            return Err(format!(
                "hysteresis k {} n {} must satisfy 1 <= k <= n <= 1000",
                h.k, h.n
            ));
        }
        if let Some(w) = self.extra.get("warmup_s") {
            if !w
                .as_f64()
                .is_some_and(|w| w.is_finite() && (0.0..=86_400.0).contains(&w))
            {
                return Err(format!(
                    "warmup_s {w} is not a number of seconds in 0..=86400"
                ));
            }
        }
        card_file::validate_file_fields(&self.onnx_file, &self.sha256)
    }

    /// `warmup_s` (optional, default 0): after the detector starts, its evaluations score but
    /// open no anomaly for this long, while Prometheus's windows and rate windows fill (a
    /// window of medians turning into the gateway's first values is not an anomaly).
    pub fn warmup(&self) -> std::time::Duration {
        let s = self
            .extra
            .get("warmup_s")
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(0.0);
        std::time::Duration::from_secs_f64(s.clamp(0.0, 86_400.0))
    }
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`: safe to put in a PromQL regex without escaping.
pub fn is_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn fixture_card() -> AnomalyCard {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/zscore/model.card.json");
        AnomalyCard::load(&path).expect("the fixture card loads")
    }

    #[test]
    fn the_fixture_card_is_valid() {
        let card = fixture_card();
        assert_eq!(card.features.len(), card.medians.len());
        assert_eq!(card.window, 32);
    }

    #[test]
    fn bad_cards_name_the_field() {
        let base = fixture_card();
        type Change = Box<dyn Fn(&mut AnomalyCard)>;
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|c| c.features.clear()), "features is empty"),
            (
                Box::new(|c| c.features[0] = "rate(x[1m])".into()),
                "features[0]",
            ),
            (
                Box::new(|c| c.medians.pop().map(|_| ()).unwrap_or(())),
                "medians",
            ),
            (Box::new(|c| c.medians[1] = f32::NAN), "medians[1]"),
            (Box::new(|c| c.missing = "zero".into()), "missing"),
            (Box::new(|c| c.window = 1), "window"),
            (Box::new(|c| c.hysteresis.k = 9), "hysteresis"),
            (Box::new(|c| c.smoothing.ewma_alpha = 0.0), "ewma_alpha"),
            (
                Box::new(|c| c.outputs.retain(|o| o.name != "contributions")),
                "contributions",
            ),
            (Box::new(|c| c.sha256 = "x".into()), "sha256"),
            (
                Box::new(|c| {
                    c.extra.insert("warmup_s".into(), serde_json::json!(-5));
                }),
                "warmup_s",
            ),
            (
                Box::new(|c| {
                    c.extra.insert("warmup_s".into(), serde_json::json!("soon"));
                }),
                "warmup_s",
            ),
        ];
        for (change, expected) in cases {
            let mut card = base.clone();
            change(&mut card);
            let err = card.validate().unwrap_err();
            assert!(err.contains(expected), "{expected}: {err}");
        }
    }

    #[test]
    fn the_warm_up_is_the_cards_or_none() {
        let mut card = fixture_card();
        card.extra.remove("warmup_s");
        assert_eq!(card.warmup(), std::time::Duration::ZERO);
        card.extra.insert("warmup_s".into(), serde_json::json!(92));
        assert!(card.validate().is_ok());
        assert_eq!(card.warmup(), std::time::Duration::from_secs(92));
    }

    #[test]
    fn metric_names() {
        assert!(is_metric_name("dohguard:nxdomain:ratio"));
        assert!(!is_metric_name("a|b"));
        assert!(!is_metric_name("9a"));
        assert!(!is_metric_name(""));
    }
}
