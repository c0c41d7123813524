//! The model card (`model.card.json`): what the ONNX file expects and what it returns.
//! See docs/contracts.md section 2; everything the encoder relies on is validated here,
//! so a card that parses is safe to encode against.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ModelError;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelCard {
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub placeholder: bool,
    pub onnx_file: String,
    pub sha256: String,
    pub input: InputSpec,
    pub outputs: Vec<OutputSpec>,
    pub thresholds: Thresholds,
    /// Anything else the card carries (description, metrics, training data ...), kept for `/v1/model`.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum InputText {
    RegisteredDomain,
    Name,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Left,
    Right,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InputSpec {
    pub name: String,
    pub dtype: String,
    pub text: InputText,
    pub alphabet: String,
    pub pad_id: i64,
    pub unknown_id: i64,
    pub max_length: usize,
    pub padding: Side,
    pub truncation: Side,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OutputSpec {
    pub name: String,
    pub dtype: String,
    #[serde(default)]
    pub meaning: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Thresholds {
    pub block: f32,
    pub monitor: f32,
}

impl ModelCard {
    /// Reads and validates a card file.
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
            path: path.to_owned(),
            source,
        })?;
        let card: ModelCard = serde_json::from_str(&text).map_err(|e| ModelError::Card {
            path: path.to_owned(),
            problem: e.to_string(),
        })?;
        card.validate().map_err(|problem| ModelError::Card {
            path: path.to_owned(),
            problem,
        })?;
        Ok(card)
    }

    /// `<name>-<version>`, the `model_version` of replies and documents.
    pub fn model_version(&self) -> String {
        format!("{}-{}", self.name, self.version)
    }

    /// The ONNX file, resolved against the card's folder.
    pub fn onnx_path(&self, card_path: &Path) -> PathBuf {
        card_path
            .parent()
            .unwrap_or_else(|| Path::new("."))
            .join(&self.onnx_file)
    }

    /// The first output (the contract has exactly one, `score`).
    pub fn score_output(&self) -> &OutputSpec {
        &self.outputs[0]
    }

    fn validate(&self) -> Result<(), String> {
        let i = &self.input;
        if i.dtype != "int64" {
            return Err(format!("input.dtype {:?} is not int64", i.dtype));
        }
        if i.max_length == 0 || i.max_length > 1024 {
            return Err(format!(
                "input.max_length {} is outside 1..=1024",
                i.max_length
            ));
        }
        if i.alphabet.is_empty() || !i.alphabet.is_ascii() {
            return Err("input.alphabet must be non-empty ASCII".into());
        }
        let mut seen = [false; 128];
        for b in i.alphabet.bytes() {
            if std::mem::replace(&mut seen[b as usize], true) {
                return Err(format!("input.alphabet repeats {:?}", b as char));
            }
        }
        let max_id = i.alphabet.len() as i64;
        if (1..=max_id).contains(&i.pad_id) || (1..=max_id).contains(&i.unknown_id) {
            return Err(
                "input.pad_id and input.unknown_id must not collide with alphabet ids".into(),
            );
        }
        if i.pad_id == i.unknown_id {
            return Err("input.pad_id equals input.unknown_id".into());
        }
        if self.outputs.is_empty() {
            return Err("outputs is empty".into());
        }
        if self.outputs[0].dtype != "float32" {
            return Err(format!(
                "outputs[0].dtype {:?} is not float32",
                self.outputs[0].dtype
            ));
        }
        let t = self.thresholds;
        if !(0.0..=1.0).contains(&t.block)
            || !(0.0..=1.0).contains(&t.monitor)
            || t.monitor > t.block
        {
            return Err(format!(
                "thresholds {t:?} must satisfy 0 <= monitor <= block <= 1"
            ));
        }
        if self.sha256.len() != 64
            || !self
                .sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err("sha256 must be 64 lower-case hex digits".into());
        }
        if self.onnx_file.is_empty() {
            return Err("onnx_file is empty".into());
        }
        Ok(())
    }
}
