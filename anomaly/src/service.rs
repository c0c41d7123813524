//! Start-up wiring for the binary (and tests): configuration -> metrics -> model (loaded,
//! verified, warmed up) -> store -> the evaluation loop, the model watcher and SIGHUP reload.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;

use crate::config::Config;
use crate::detector::Detector;
use crate::http::{record_reload, HttpState};
use crate::metrics::Metrics;
use crate::model::ModelHandle;
use crate::prometheus::PrometheusClient;
use crate::store::Store;

/// The running detector's shared parts and background tasks (aborted on drop).
#[derive(Debug)]
pub struct Service {
    pub http: HttpState,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Service {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Service {
    pub async fn start(config: &Config) -> anyhow::Result<Self> {
        let metrics = Metrics::new();
        let card = config.model.card.clone();
        let model = tokio::task::spawn_blocking(move || ModelHandle::load(&card))
            .await
            .context("model loading task")?
            .context("loading the anomaly model")?;
        let admin_token = match &config.admin.token_file {
            Some(path) => {
                let token = std::fs::read_to_string(path).map_err(|e| {
                    anyhow::anyhow!(
                        "anomaly: configuration admin.token_file: {}: {e}",
                        path.display()
                    )
                })?;
                let token = token.trim_end_matches(['\n', '\r']).to_owned();
                anyhow::ensure!(
                    token.len() >= 16 && !token.chars().any(char::is_control),
                    "anomaly: configuration admin.token_file: the token must be one line of at least 16 characters"
                );
                Some(Arc::new(token))
            }
            None => None,
        };
        let prometheus = PrometheusClient::new(
            &config.prometheus.url,
            Duration::from_millis(config.prometheus.request_timeout_ms),
        )?;
        let mut tasks = Vec::new();
        let store = match Store::start(config, metrics.clone()).map_err(anyhow::Error::msg)? {
            Some((store, writer)) => {
                tasks.push(writer);
                Some(store)
            }
            None => None,
        };
        let mut detector = Detector::new(
            model.clone(),
            prometheus,
            metrics.clone(),
            store,
            config.evaluation.clone(),
        );
        let interval = config.interval();
        tasks.push(tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                detector.evaluate(SystemTime::now()).await;
            }
        }));
        if config.model.watch {
            let (m, w) = (model.clone(), metrics.clone());
            tasks.push(tokio::spawn(crate::model::watch(
                m,
                Duration::from_millis(config.model.watch_interval_ms),
                move |result| record_reload(&w, result),
            )));
        }
        let (m, w) = (model.clone(), metrics.clone());
        tasks.push(tokio::spawn(async move {
            let Ok(mut hup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                return;
            };
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading the anomaly model");
                record_reload(&w, &m.reload().await);
            }
        }));
        Ok(Self {
            http: HttpState {
                metrics,
                model,
                admin_token,
            },
            tasks,
        })
    }
}
