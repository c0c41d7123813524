//! Start-up wiring: configuration -> metrics -> model (loaded, verified, warmed up) -> sink
//! (template installed or spooling) -> scorer, plus the model file watcher. The binary and
//! the tests both start the service through [`App::start`].

use std::{sync::Arc, time::Duration};

use thiserror::Error;

use crate::{
    config::Config,
    metrics::Metrics,
    model::{BatcherConfig, Model, ModelError},
    scoring::{compile_rules, RulesError, Scorer},
    sink::{Sink, SinkError, SinkTasks},
};

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AppError {
    #[error("model: {0}")]
    Model(#[from] ModelError),
    #[error("rules: {0}")]
    Rules(#[from] RulesError),
    #[error("sink: {0}")]
    Sink(#[from] SinkError),
}

/// The running service's shared state.
#[derive(Debug)]
pub struct App {
    pub config: Config,
    pub metrics: Metrics,
    pub scorer: Scorer,
}

/// Background work owned by the service; see [`AppTasks::shutdown`].
#[derive(Debug)]
pub struct AppTasks {
    sink: SinkTasks,
    watcher: Option<tokio::task::JoinHandle<()>>,
}

impl App {
    pub async fn start(config: Config) -> Result<(Arc<App>, AppTasks), AppError> {
        let metrics = Metrics::new();
        let (policy, ruled_domains) = compile_rules(&config.rules)?;
        let model = start_main_model(&config, &metrics).await?;
        let mut detectors = Vec::new();
        for card in &config.model.detector_cards {
            detectors.push(start_model(&config, card.clone(), &metrics).await?);
        }
        let (sink, sink_tasks) =
            Sink::start(&config.elasticsearch, &config.spool, metrics.clone()).await?;
        let watcher = config.model.watch.then(|| {
            tokio::spawn(crate::model::watch::watch(
                model.clone(),
                Duration::from_millis(config.model.watch_interval_ms),
            ))
        });
        let scorer = Scorer::new(
            model,
            policy,
            ruled_domains,
            config.verdicts.clone(),
            sink,
            metrics.clone(),
        )
        .with_detectors(detectors, config.tunnel.clone());
        Ok((
            Arc::new(App {
                config,
                metrics,
                scorer,
            }),
            AppTasks {
                sink: sink_tasks,
                watcher,
            },
        ))
    }

    pub fn sink(&self) -> &Sink {
        self.scorer.sink()
    }

    pub fn model(&self) -> &Model {
        self.scorer.model()
    }
}

/// The main model: the card `model.active_card_file` names (the last promotion), or
/// `model.card` when there is none or it cannot be loaded (said loudly: the promotion is lost).
async fn start_main_model(config: &Config, metrics: &Metrics) -> Result<Model, ModelError> {
    let configured = config.model.card.clone();
    let Some(file) = &config.model.active_card_file else {
        return start_model(config, configured, metrics).await;
    };
    let active = match crate::model::active::read(file) {
        Ok(Some(card)) if card != configured => card,
        Ok(_) => return start_model(config, configured, metrics).await,
        Err(e) => {
            tracing::error!(file = %file.display(), error = %e, configured = %configured.display(),
                "model.active_card_file cannot be read; serving the configured model");
            return start_model(config, configured, metrics).await;
        }
    };
    match start_model(config, active.clone(), metrics).await {
        Ok(model) => {
            tracing::info!(card = %active.display(), file = %file.display(),
                "serving the model last loaded through /admin/reload (model.active_card_file)");
            Ok(model)
        }
        Err(e) => {
            tracing::error!(card = %active.display(), file = %file.display(), error = %e,
                configured = %configured.display(),
                "the model named by model.active_card_file cannot be loaded; serving the configured model instead");
            start_model(config, configured, metrics).await
        }
    }
}

/// Loads, verifies and warms up one model card and starts its inference thread.
async fn start_model(
    config: &Config,
    card: std::path::PathBuf,
    metrics: &Metrics,
) -> Result<Model, ModelError> {
    let inference = config.inference.clone();
    let model_metrics = metrics.clone();
    tokio::task::spawn_blocking(move || {
        Model::start(
            &card,
            inference.device,
            inference.intra_threads,
            inference.warmup_batches,
            BatcherConfig {
                max_batch: inference.max_batch,
                max_wait: Duration::from_micros(inference.max_wait_us),
                queue_capacity: inference.queue_capacity,
                max_age: Duration::from_millis(inference.max_queue_age_ms),
            },
            model_metrics,
        )
    })
    .await
    .map_err(|_| ModelError::Stopped)?
}

impl AppTasks {
    /// Stops the watcher and flushes the sink. Drop every `Arc<App>` first, or the sink's
    /// queue never closes.
    pub async fn shutdown(self) {
        if let Some(w) = self.watcher {
            w.abort();
        }
        self.sink.shutdown().await;
    }

    /// [`AppTasks::shutdown`] with the sink's deadline given (the binary counts
    /// `spool.shutdown_timeout_ms` from the signal).
    pub async fn shutdown_by(self, deadline: tokio::time::Instant) {
        if let Some(w) = self.watcher {
            w.abort();
        }
        self.sink.shutdown_by(deadline).await;
    }
}
