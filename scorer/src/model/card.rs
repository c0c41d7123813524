//! The model card (`model.card.json`): what the ONNX file expects and what it returns.
//! See docs/contracts.md section 2; everything the encoder relies on is validated here,
//! so a card that parses is safe to encode against.

use std::path::{Path, PathBuf};

use dohguard_core::{contract::Detector, features};
use dohguard_serving::card_file;
use serde::{Deserialize, Serialize};

use super::ModelError;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelCard {
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub placeholder: bool,
    /// What the model detects, and so the `detector` of its verdicts (card v2; absent = `dga`).
    #[serde(default)]
    pub detector: Detector,
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

/// How the input text becomes the model's input tensor.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum InputKind {
    /// One character id per byte (`int64`, `[batch, max_length]`); the card v1 encoding.
    #[default]
    Ids,
    /// A feature set computed in `dohguard_core::features` (`float32`, `[batch, width]`).
    Features,
}

/// The card's `input`. The `ids` fields are required for `kind: ids` (the default) and the
/// `features` fields for `kind: features`; [`ModelCard::load`] checks which are present.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InputSpec {
    #[serde(default)]
    pub kind: InputKind,
    pub name: String,
    pub dtype: String,
    pub text: InputText,
    #[serde(default)]
    pub alphabet: String,
    #[serde(default)]
    pub pad_id: i64,
    #[serde(default)]
    pub unknown_id: i64,
    #[serde(default)]
    pub max_length: usize,
    #[serde(default = "left")]
    pub padding: Side,
    #[serde(default = "left")]
    pub truncation: Side,
    /// `kind: features`: the feature set's name (`tunnel-v1`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature_set: Option<String>,
    /// `kind: features`: values per row; must equal the feature set's width.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<usize>,
}

fn left() -> Side {
    Side::Left
}

impl InputSpec {
    /// Values per input row: `max_length` ids, or the feature set's `width`.
    pub fn row_width(&self) -> usize {
        match self.kind {
            InputKind::Ids => self.max_length,
            InputKind::Features => self.width.unwrap_or(0),
        }
    }

    fn validate(&self) -> Result<(), String> {
        match self.kind {
            InputKind::Ids => self.validate_ids(),
            InputKind::Features => self.validate_features(),
        }
    }

    fn validate_features(&self) -> Result<(), String> {
        if self.dtype != "float32" {
            return Err(format!(
                "input.dtype {:?} is not float32 (kind features)",
                self.dtype
            ));
        }
        let set_name = self
            .feature_set
            .as_deref()
            .ok_or("input.feature_set is missing (kind features)")?;
        let set = features::by_name(set_name)
            .ok_or_else(|| format!("input.feature_set {set_name:?} is not known to this build"))?;
        if self.width != Some(set.width) {
            return Err(format!(
                "input.width {:?} is not the width {} of feature set {set_name:?}",
                self.width, set.width
            ));
        }
        Ok(())
    }

    fn validate_ids(&self) -> Result<(), String> {
        let i = self;
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
        Ok(())
    }
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
        Ok(card_file::read(path, ModelCard::validate)?)
    }

    /// `<name>-<version>`, the `model_version` of replies and documents.
    pub fn model_version(&self) -> String {
        card_file::model_version(&self.name, &self.version)
    }

    /// The ONNX file, resolved against the card's folder.
    pub fn onnx_path(&self, card_path: &Path) -> PathBuf {
        card_file::onnx_path(card_path, &self.onnx_file)
    }

    /// The first output (the contract has exactly one, `score`).
    pub fn score_output(&self) -> &OutputSpec {
        &self.outputs[0]
    }

    fn validate(&self) -> Result<(), String> {
        self.input.validate()?;
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
        card_file::validate_file_fields(&self.onnx_file, &self.sha256)
    }
}
