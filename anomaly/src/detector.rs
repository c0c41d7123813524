//! One evaluation, every `evaluation.interval_ms`: read the latest window of the card's
//! features from Prometheus, fill its gaps, score it, smooth, apply threshold and k-of-n
//! hysteresis ([`crate::decision`]), export the result as metrics, and write an anomaly
//! document when an anomaly opens and when it closes.
//!
//! Failures never stop the loop. Prometheus unreachable: `prometheus_up 0`, the evaluation is
//! counted as `prometheus_error` and the alert state is kept as it was (nothing is known). A
//! feature with no series in the whole window (gone from Prometheus): `feature_missing{feature}
//! 1` and it is scored with its median (so it cannot raise the score); every feature missing: nothing is scored
//! (`no_data`). Each of these is logged once when it starts and once when it ends, not per tick.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use time::{format_description::well_known::Rfc3339, OffsetDateTime};

use crate::config::EvaluationConfig;
use crate::decision::{top_features, Decider, DecisionParams, Transition};
use crate::metrics::{FeatureLabel, Metrics};
use crate::model::{LoadedModel, ModelHandle};
use crate::prometheus::{Grid, PrometheusClient};
use crate::store::{
    AnomalyDocument, AnomalyEvent, AnomalyFields, DohguardAnomaly, FeatureShare, Store, DATASET,
};
use crate::window::fill;

/// What one evaluation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Scored during the card's warm-up after start: no anomaly opens.
    WarmingUp,
    PrometheusError,
    ModelError,
    NoData,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::WarmingUp => "warming_up",
            Self::PrometheusError => "prometheus_error",
            Self::ModelError => "model_error",
            Self::NoData => "no_data",
        }
    }
}

#[derive(Debug)]
struct OpenAnomaly {
    id: String,
    start: OffsetDateTime,
    peak: f32,
    contribution_sums: Vec<f32>,
    evaluations: u32,
    features: Vec<String>,
    model_version: String,
    threshold: f32,
}

#[derive(Debug)]
pub struct Detector {
    model: ModelHandle,
    prometheus: PrometheusClient,
    metrics: Metrics,
    store: Option<Store>,
    config: EvaluationConfig,
    decider: Decider,
    serving: Option<Arc<LoadedModel>>,
    open: Option<OpenAnomaly>,
    prometheus_failing: bool,
    model_failing: bool,
    no_data: bool,
    missing: HashSet<String>,
    /// When this detector started (the card's warm-up counts from here).
    started: std::time::Instant,
}

impl Detector {
    pub fn new(
        model: ModelHandle,
        prometheus: PrometheusClient,
        metrics: Metrics,
        store: Option<Store>,
        config: EvaluationConfig,
    ) -> Self {
        let current = model.current();
        let decider = Decider::new(DecisionParams::from_card(&current.card, config.threshold));
        Self {
            model,
            prometheus,
            metrics,
            store,
            config,
            decider,
            serving: None,
            open: None,
            prometheus_failing: false,
            model_failing: false,
            no_data: false,
            missing: HashSet::new(),
            started: std::time::Instant::now(),
        }
    }

    /// Runs one evaluation at `now`.
    pub async fn evaluate(&mut self, now: SystemTime) -> Outcome {
        let outcome = self.evaluate_inner(now).await;
        Metrics::outcome(&self.metrics.evaluations, outcome.as_str());
        outcome
    }

    fn adopt_current_model(&mut self) -> Arc<LoadedModel> {
        let current = self.model.current();
        let changed = self
            .serving
            .as_ref()
            .is_none_or(|s| !Arc::ptr_eq(s, &current));
        if changed {
            let params = DecisionParams::from_card(&current.card, self.config.threshold);
            self.decider.set_params(params);
            self.metrics.set_model(&current, params.threshold);
            self.missing.clear();
            self.serving = Some(current.clone());
        }
        current
    }

    async fn evaluate_inner(&mut self, now: SystemTime) -> Outcome {
        let model = self.adopt_current_model();
        let card = &model.card;
        let now_s = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let grid = Grid::ending_at(now_s, card.step_s, card.window);
        let raw = match self.prometheus.features(&card.features, grid).await {
            Ok(raw) => {
                self.metrics.prometheus_up.set(1);
                if std::mem::replace(&mut self.prometheus_failing, false) {
                    tracing::info!("Prometheus answers again; evaluating");
                }
                raw
            }
            Err(e) => {
                self.metrics.prometheus_up.set(0);
                if !std::mem::replace(&mut self.prometheus_failing, true) {
                    tracing::error!(error = %e, "cannot read the features: no anomaly detection until Prometheus answers (logged once)");
                }
                return Outcome::PrometheusError;
            }
        };

        let missing = raw.missing();
        if missing.iter().all(|m| *m) {
            for name in &card.features {
                self.metrics
                    .feature_missing
                    .get_or_create(&FeatureLabel {
                        feature: name.clone(),
                    })
                    .set(1);
            }
            if !std::mem::replace(&mut self.no_data, true) {
                tracing::error!("no feature has data in Prometheus: nothing to score (are the recording rules loaded?) (logged once)");
            }
            return Outcome::NoData;
        }
        if std::mem::replace(&mut self.no_data, false) {
            tracing::info!("features in Prometheus again; scoring");
        }
        for (name, &gone) in card.features.iter().zip(&missing) {
            self.metrics
                .feature_missing
                .get_or_create(&FeatureLabel {
                    feature: name.clone(),
                })
                .set(i64::from(gone));
            if gone && self.missing.insert(name.clone()) {
                tracing::warn!(feature = %name, "feature missing from Prometheus (no series in the window): scored with its median (logged once)");
            } else if !gone && self.missing.remove(name) {
                tracing::info!(feature = %name, "feature back in Prometheus");
            }
        }

        let filled = fill(&raw, &card.medians);
        let started = Instant::now();
        let output = match model.run(&filled) {
            Ok(output) => {
                self.model_failing = false;
                output
            }
            Err(e) => {
                if !std::mem::replace(&mut self.model_failing, true) {
                    tracing::error!(error = %e, model = %model.model_version, "the model failed on a window (logged once)");
                }
                return Outcome::ModelError;
            }
        };
        self.metrics
            .inference_seconds
            .observe(started.elapsed().as_secs_f64());

        if self.started.elapsed() < card.warmup() {
            // Warm-up: the score is shown, the decider is not fed (no anomaly opens, and
            // the start-up windows leave nothing in its smoothing or k-of-n history).
            self.metrics.raw_score.set(f64::from(output.score));
            return Outcome::WarmingUp;
        }
        let (smoothed, transition) = self.decider.observe(output.score);
        self.metrics.raw_score.set(f64::from(output.score));
        self.metrics.score.set(f64::from(smoothed));
        for (name, c) in card.features.iter().zip(&output.contributions) {
            self.metrics
                .contribution
                .get_or_create(&FeatureLabel {
                    feature: name.clone(),
                })
                .set(f64::from(*c));
        }
        self.metrics
            .alerting
            .set(i64::from(self.decider.alerting()));

        let at = OffsetDateTime::from(now);
        match transition {
            Transition::Opened => {
                self.metrics.anomalies.inc();
                self.open = Some(OpenAnomaly {
                    id: uuid::Uuid::now_v7().to_string(),
                    start: at,
                    peak: smoothed,
                    contribution_sums: vec![0.0; card.features.len()],
                    evaluations: 0,
                    features: card.features.clone(),
                    model_version: model.model_version.clone(),
                    threshold: self.decider.params().threshold,
                });
            }
            Transition::Closed | Transition::None => {}
        }
        if let Some(open) = self.open.as_mut() {
            open.peak = open.peak.max(smoothed);
            if open.contribution_sums.len() == output.contributions.len() {
                for (sum, c) in open.contribution_sums.iter_mut().zip(&output.contributions) {
                    if c.is_finite() {
                        *sum += c;
                    }
                }
                open.evaluations += 1;
            }
        }
        match transition {
            Transition::Opened => {
                let doc = self.document(None);
                let top: Vec<&str> = doc
                    .dohguard
                    .anomaly
                    .features
                    .iter()
                    .map(|f| f.name.as_str())
                    .collect();
                tracing::warn!(score = smoothed, top_features = ?top, "anomaly opened");
                self.submit(doc).await;
            }
            Transition::Closed => {
                let doc = self.document(Some(at));
                tracing::info!(peak = doc.dohguard.anomaly.score, "anomaly resolved");
                self.open = None;
                self.submit(doc).await;
            }
            Transition::None => {}
        }
        Outcome::Ok
    }

    fn document(&self, end: Option<OffsetDateTime>) -> AnomalyDocument {
        let open = self.open.as_ref().expect("an open anomaly");
        let n = open.evaluations.max(1) as f32;
        let means: Vec<f32> = open.contribution_sums.iter().map(|s| s / n).collect();
        let features = top_features(&means, self.config.top_features)
            .into_iter()
            .map(|i| FeatureShare {
                name: open.features[i].clone(),
                contribution: means[i],
            })
            .collect();
        let fmt = |t: OffsetDateTime| t.format(&Rfc3339).expect("RFC 3339 formats any time");
        AnomalyDocument {
            timestamp: fmt(open.start),
            event: AnomalyEvent {
                id: open.id.clone(),
                kind: "alert",
                category: ["host"],
                dataset: DATASET,
                start: fmt(open.start),
                end: end.map(fmt),
                duration: end.map(|e| (e - open.start).whole_nanoseconds().max(0) as u64),
            },
            dohguard: DohguardAnomaly {
                anomaly: AnomalyFields {
                    state: if end.is_some() { "resolved" } else { "open" },
                    score: open.peak,
                    threshold: open.threshold,
                    features,
                    model_version: open.model_version.clone(),
                },
            },
        }
    }

    async fn submit(&self, doc: AnomalyDocument) {
        if let Some(store) = &self.store {
            store.submit(&doc).await;
        }
    }

    pub fn alerting(&self) -> bool {
        self.decider.alerting()
    }
}
