//! The anomaly model: its card, a verified ONNX Runtime session (sha256 from the card, input
//! and output names, a warm-up on a window of medians whose outputs must have the card's
//! shapes), and hot reload. Same pattern as the scorer's model (`scorer/src/model`), with the
//! same parts (`dohguard_serving`: card file, sha256 check, ONNX Runtime environment, file
//! watch): a new card is built and checked off to the side and only then swapped in, so a bad
//! model file never replaces a good one.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex, RwLock},
    time::{Duration, SystemTime},
};

use dohguard_serving::{card_file, onnx, watch::FileWatch};
use ort::{session::Session, value::TensorRef};

use crate::card::{AnomalyCard, CONTRIBUTIONS_OUTPUT, SCORE_OUTPUT};
use crate::ModelError;

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
        let bytes = card_file::read_verified(card.onnx_path(card_path), &card.sha256)?;
        let session = onnx::commit(&mut onnx::session_builder(1)?, &bytes)?;
        onnx::check_names(
            &session,
            &card.input.name,
            &[SCORE_OUTPUT, CONTRIBUTIONS_OUTPUT],
        )
        .map_err(ModelError::Contract)?;
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

fn files(model: &ModelHandle) -> Vec<PathBuf> {
    let m = model.current();
    vec![m.card_path.clone(), m.card.onnx_path(&m.card_path)]
}

/// Reloads once the card or the ONNX file has changed and then stopped changing for one
/// interval (the scorer's watch too: [`dohguard_serving::watch`]). `on_reload` is told the
/// outcome of every attempt.
pub async fn watch(
    model: ModelHandle,
    interval: Duration,
    on_reload: impl Fn(&Result<Arc<LoadedModel>, ModelError>),
) {
    let mut watch = FileWatch::new(&files(&model), interval);
    loop {
        watch.changed(|| files(&model)).await;
        tracing::info!("anomaly model files changed on disk; reloading");
        on_reload(&model.reload().await);
    }
}
