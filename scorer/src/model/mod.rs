//! The model: its card, the input encoding, the ONNX Runtime session, the micro-batching
//! inference thread that owns that session, and hot reload.
//!
//! [`Model`] is the handle the rest of the service holds. [`Model::score`] sends texts to the
//! inference thread and awaits their scores; [`Model::reload`] builds and verifies a new
//! session off to the side (sha256 from the card, warm-up inference) and only then swaps it
//! in, so a bad model file never replaces a good one.

pub mod active;
pub mod batcher;
pub mod card;
pub mod encode;
pub mod runtime;
pub mod watch;

use std::{
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::SystemTime,
};

use thiserror::Error;

pub use batcher::{Batcher, BatcherConfig};
pub use card::{ModelCard, Thresholds};
pub use dohguard_serving::Error as LoadError;
pub use encode::{Encoder, Rows};
pub use runtime::{ExecutionDevice, LoadedSession};

use crate::{config::Device, metrics::Metrics};

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ModelError {
    /// The card, the ONNX file or the session could not be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("ONNX Runtime: {0}")]
    Runtime(String),
    #[error("model does not follow the contract: {0}")]
    Contract(String),
    #[error("warm-up inference failed: {0}")]
    Warmup(String),
    #[error("the inference queue is full")]
    Overloaded,
    #[error("the request waited too long in the inference queue")]
    Expired,
    #[error("the inference thread has stopped")]
    Stopped,
}

/// What the service knows about the model currently serving.
#[derive(Debug)]
pub struct ModelInfo {
    pub card: ModelCard,
    pub card_path: PathBuf,
    pub encoder: Encoder,
    pub model_version: String,
    pub device: ExecutionDevice,
    pub loaded_at: SystemTime,
}

/// Names used to check a freshly loaded model (and to warm it up).
const WARMUP_TEXTS: &[&str] = &[
    "example.com",
    "xjw3kq9z.com",
    "a.co.uk",
    "labowcwlabvnya30qfedax4gk0gtykda.t.wikipedia.org",
];

/// The model handle: the current [`ModelInfo`] plus the inference thread.
#[derive(Clone)]
pub struct Model {
    current: Arc<RwLock<Arc<ModelInfo>>>,
    batcher: Batcher,
    device: Device,
    intra_threads: usize,
    warmup_batches: usize,
    metrics: Metrics,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("current", &self.info().model_version)
            .finish_non_exhaustive()
    }
}

/// Scores for a set of texts, and the model that produced them.
#[derive(Debug)]
pub struct Scored {
    pub scores: Vec<f32>,
    pub model: Arc<ModelInfo>,
}

impl Model {
    /// Loads, verifies and warms up the model named by `card_path`, and starts its inference thread.
    pub fn start(
        card_path: &Path,
        device: Device,
        intra_threads: usize,
        warmup_batches: usize,
        batching: BatcherConfig,
        metrics: Metrics,
    ) -> Result<Self, ModelError> {
        let (info, session) = prepare(card_path, device, intra_threads, warmup_batches, &metrics)?;
        let info = Arc::new(info);
        let batcher = Batcher::start(session, info.clone(), batching, metrics.clone())?;
        Ok(Self {
            current: Arc::new(RwLock::new(info)),
            batcher,
            device,
            intra_threads,
            warmup_batches,
            metrics,
        })
    }

    pub fn info(&self) -> Arc<ModelInfo> {
        self.current.read().expect("model lock poisoned").clone()
    }

    /// Scores `texts` (already the model's input text: see [`Encoder::text_of`]).
    pub async fn score(&self, texts: Vec<String>) -> Result<Scored, ModelError> {
        self.batcher.score(texts).await
    }

    /// Names waiting for the inference thread.
    pub fn queued_names(&self) -> usize {
        self.batcher.queued_names()
    }

    /// Loads the card at `card_path` (the current one when `None`), verifies it, and swaps it in.
    /// Blocking (file reads, session build): call from a blocking thread.
    /// On error the old model keeps serving.
    pub fn reload_blocking(&self, card_path: Option<&Path>) -> Result<Arc<ModelInfo>, ModelError> {
        let path = card_path
            .map(Path::to_owned)
            .unwrap_or_else(|| self.info().card_path.clone());
        let result = prepare(
            &path,
            self.device,
            self.intra_threads,
            self.warmup_batches,
            &self.metrics,
        )
        .and_then(|(info, session)| {
            let info = Arc::new(info);
            self.batcher.swap_blocking(session, info.clone())?;
            Ok(info)
        });
        match &result {
            Ok(info) => {
                *self.current.write().expect("model lock poisoned") = info.clone();
                self.metrics
                    .model_reloads
                    .get_or_create(&crate::metrics::OutcomeLabel::ok())
                    .inc();
                tracing::info!(model = %info.model_version, "model reloaded");
            }
            Err(e) => {
                self.metrics
                    .model_reloads
                    .get_or_create(&crate::metrics::OutcomeLabel::failed())
                    .inc();
                tracing::error!(error = %e, path = %path.display(), "model reload failed; the previous model keeps serving");
            }
        }
        result
    }

    /// Async wrapper of [`Model::reload_blocking`].
    pub async fn reload(&self, card_path: Option<PathBuf>) -> Result<Arc<ModelInfo>, ModelError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.reload_blocking(card_path.as_deref()))
            .await
            .map_err(|_| ModelError::Stopped)?
    }
}

/// Card -> verified, warmed-up session.
fn prepare(
    card_path: &Path,
    device: Device,
    intra_threads: usize,
    warmup_batches: usize,
    metrics: &Metrics,
) -> Result<(ModelInfo, LoadedSession), ModelError> {
    let card = ModelCard::load(card_path)?;
    let mut session = runtime::load_session(&card, card_path, device, intra_threads)?;
    metrics
        .cpu_fallback
        .set(i64::from(session.fell_back_to_cpu));
    let encoder = Encoder::new(&card.input);
    let mut rows = encoder.rows();
    for text in WARMUP_TEXTS {
        encoder.push_row(text, &mut rows);
    }
    for _ in 0..warmup_batches.max(1) {
        let scores = session.run_rows(&rows)?;
        if scores.len() != WARMUP_TEXTS.len() || scores.iter().any(|s| !(0.0..=1.0).contains(s)) {
            return Err(ModelError::Warmup(format!(
                "scores {scores:?} are not {} values in [0, 1]",
                WARMUP_TEXTS.len()
            )));
        }
    }
    let info = ModelInfo {
        model_version: card.model_version(),
        encoder,
        device: session.device,
        card,
        card_path: card_path.to_owned(),
        loaded_at: SystemTime::now(),
    };
    tracing::info!(model = %info.model_version, device = info.device.as_str(), placeholder = info.card.placeholder, "model ready");
    Ok((info, session))
}
