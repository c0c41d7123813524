//! The anomaly model: its card, a verified ONNX Runtime session (sha256 from the card, input
//! and output names, a warm-up on a window of medians whose outputs must have the card's
//! shapes), and hot reload. Same pattern as the scorer's model (`scorer/src/model`): a new
//! card is built and checked off to the side and only then swapped in, so a bad model file
//! never replaces a good one.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex, RwLock},
    time::{Duration, SystemTime},
};

use ort::{environment::Environment, session::Session, value::TensorRef};
use sha2::{Digest, Sha256};

use crate::card::{AnomalyCard, CONTRIBUTIONS_OUTPUT, SCORE_OUTPUT};
use crate::ModelError;

/// The process's ONNX Runtime environment: the scorer crate's (ONNX Runtime allows one per
/// process; loaded from `ORT_DYLIB_PATH` on first use), which this crate already links for the
/// Elasticsearch client.
fn environment() -> Result<&'static Environment, ModelError> {
    dohguard_scorer::model::runtime::environment().map_err(|e| match e {
        dohguard_scorer::model::ModelError::Runtime(message) => ModelError::Runtime(message),
        other => ModelError::Runtime(other.to_string()),
    })
}

/// What one window scored.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub score: f32,
    /// One per feature, in the card's order.
    pub contributions: Vec<f32>,
}

/// A loaded, verified model.
pub struct LoadedModel {
    pub card: AnomalyCard,
    pub card_path: PathBuf,
    pub model_version: String,
    pub loaded_at: SystemTime,
    session: Mutex<Session>,
}

impl std::fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModel")
            .field("model_version", &self.model_version)
            .finish_non_exhaustive()
    }
}

fn ort_err(context: &'static str) -> impl Fn(ort::Error) -> ModelError {
    move |e| ModelError::Runtime(format!("{context}: {e}"))
}

impl LoadedModel {
    /// Card -> checked ONNX file -> session -> warm-up on the medians.
    pub fn load(card_path: &Path) -> Result<Self, ModelError> {
        let card = AnomalyCard::load(card_path)?;
        let onnx_path = card.onnx_path(card_path);
        let bytes = std::fs::read(&onnx_path).map_err(|error| ModelError::Io {
            path: onnx_path.clone(),
            error,
        })?;
        let actual = hex::encode(Sha256::digest(&bytes));
        if actual != card.sha256 {
            return Err(ModelError::Checksum {
                path: onnx_path,
                expected: card.sha256.clone(),
                actual,
            });
        }
        let session = Session::builder(environment()?)
            .map_err(ort_err("session builder"))?
            .with_intra_threads(1)
            .map_err(|e| ModelError::Runtime(format!("intra threads: {e}")))?
            .commit_from_memory(&bytes)
            .map_err(ort_err("loading the ONNX model"))?;
        if !session.inputs().iter().any(|i| i.name() == card.input.name) {
            return Err(ModelError::Contract(format!(
                "the ONNX model has no input named {:?}",
                card.input.name
            )));
        }
        for wanted in [SCORE_OUTPUT, CONTRIBUTIONS_OUTPUT] {
            if !session.outputs().iter().any(|o| o.name() == wanted) {
                return Err(ModelError::Contract(format!(
                    "the ONNX model has no output named {wanted:?}"
                )));
            }
        }
        let model = Self {
            model_version: card.model_version(),
            card_path: card_path.to_owned(),
            loaded_at: SystemTime::now(),
            session: Mutex::new(session),
            card,
        };
        // A window of medians must score: shapes right, values finite.
        let medians: Vec<f32> = model
            .card
            .medians
            .iter()
            .flat_map(|m| std::iter::repeat_n(*m, model.card.window))
            .collect();
        let out = model
            .run(&medians)
            .map_err(|e| ModelError::Warmup(e.to_string()))?;
        if !out.score.is_finite() {
            return Err(ModelError::Warmup(format!(
                "a window of medians scores {}",
                out.score
            )));
        }
        Ok(model)
    }

    /// Scores one filled window (`[features, window]`, row-major).
    pub fn run(&self, filled: &[f32]) -> Result<Output, ModelError> {
        let (features, window) = (self.card.features.len(), self.card.window);
        if filled.len() != features * window {
            return Err(ModelError::Contract(format!(
                "window has {} values, the card needs {features} x {window}",
                filled.len()
            )));
        }
        let tensor = TensorRef::from_array_view(([1usize, features, window], filled))
            .map_err(ort_err("input tensor"))?;
        let mut session = self.session.lock().expect("session lock");
        let outputs = session
            .run(ort::inputs![self.card.input.name.as_str() => tensor])
            .map_err(ort_err("inference"))?;
        let read = |name: &str| -> Result<(Vec<i64>, Vec<f32>), ModelError> {
            let value = outputs
                .get(name)
                .ok_or_else(|| ModelError::Contract(format!("no output {name:?}")))?;
            let (shape, data) = value
                .try_extract_tensor::<f32>()
                .map_err(|e| ModelError::Contract(format!("output {name:?}: {e}")))?;
            Ok((shape.iter().copied().collect(), data.to_vec()))
        };
        let (score_shape, score) = read(SCORE_OUTPUT)?;
        let (contrib_shape, contributions) = read(CONTRIBUTIONS_OUTPUT)?;
        if !matches!(score_shape.as_slice(), [1] | [1, 1]) {
            return Err(ModelError::Contract(format!(
                "score has shape {score_shape:?}, expected [1]"
            )));
        }
        if contrib_shape != [1, features as i64] {
            return Err(ModelError::Contract(format!(
                "contributions has shape {contrib_shape:?}, expected [1, {features}]"
            )));
        }
        Ok(Output {
            score: score[0],
            contributions,
        })
    }
}

/// The handle the detector holds: the current model, swapped atomically on reload.
#[derive(Debug, Clone)]
pub struct ModelHandle {
    current: Arc<RwLock<Arc<LoadedModel>>>,
}

impl ModelHandle {
    pub fn load(card_path: &Path) -> Result<Self, ModelError> {
        let model = LoadedModel::load(card_path)?;
        tracing::info!(model = %model.model_version, placeholder = model.card.placeholder, features = model.card.features.len(), "anomaly model ready");
        Ok(Self {
            current: Arc::new(RwLock::new(Arc::new(model))),
        })
    }

    pub fn current(&self) -> Arc<LoadedModel> {
        self.current.read().expect("model lock").clone()
    }

    /// Loads the card at its current path and swaps it in; on error the old model keeps
    /// serving. Blocking (file reads, session build).
    pub fn reload_blocking(&self) -> Result<Arc<LoadedModel>, ModelError> {
        let path = self.current().card_path.clone();
        match LoadedModel::load(&path) {
            Ok(model) => {
                let model = Arc::new(model);
                *self.current.write().expect("model lock") = model.clone();
                tracing::info!(model = %model.model_version, "anomaly model reloaded");
                Ok(model)
            }
            Err(e) => {
                tracing::error!(error = %e, path = %path.display(), "anomaly model reload failed; the previous model keeps serving");
                Err(e)
            }
        }
    }

    pub async fn reload(&self) -> Result<Arc<LoadedModel>, ModelError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.reload_blocking())
            .await
            .map_err(|e| ModelError::Runtime(format!("reload task: {e}")))?
    }
}

fn stamp(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn stamps(model: &ModelHandle) -> (Option<SystemTime>, Option<SystemTime>) {
    let m = model.current();
    (stamp(&m.card_path), stamp(&m.card.onnx_path(&m.card_path)))
}

/// Polls the card's and the ONNX file's modification times and reloads once they have
/// stopped changing for one interval (the scorer's watcher, `scorer/src/model/watch.rs`).
/// `on_reload` is told the outcome of every attempt.
pub async fn watch(
    model: ModelHandle,
    interval: Duration,
    on_reload: impl Fn(&Result<Arc<LoadedModel>, ModelError>),
) {
    let mut seen = stamps(&model);
    let mut changed_at = None;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let now = stamps(&model);
        if now == seen {
            changed_at = None;
            continue;
        }
        if changed_at != Some(now) {
            changed_at = Some(now);
            continue;
        }
        tracing::info!("anomaly model files changed on disk; reloading");
        on_reload(&model.reload().await);
        seen = now;
        changed_at = None;
    }
}
