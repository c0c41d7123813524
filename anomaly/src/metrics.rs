//! The detector's Prometheus metrics (contract 7 in docs/contracts.md), one registry served
//! at `GET /metrics`. The per-feature gauges appear with the first evaluation; the scores
//! read 0 until then (`evaluations_total{outcome="ok"}` says whether one has run).

use dohguard_serving::metrics::Exposition;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{exponential_buckets, Histogram},
    },
    registry::Registry,
};

/// A gauge holding an `f64`.
pub type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FeatureLabel {
    pub feature: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    pub model_version: String,
    pub kind: String,
    pub placeholder: String,
}

#[derive(Clone)]
pub struct Metrics {
    registry: Exposition,
    /// Smoothed score of the latest evaluation (what the threshold is compared with).
    pub score: FloatGauge,
    /// The model's raw score of the latest window.
    pub raw_score: FloatGauge,
    pub threshold: FloatGauge,
    /// 1 while an anomaly is open (k of the last n over the threshold), else 0.
    pub alerting: Gauge,
    /// Per-feature share of the latest score (the model's `contributions`).
    pub contribution: Family<FeatureLabel, FloatGauge>,
    /// 1 for a feature Prometheus had no series for in the whole window (scored with its median).
    pub feature_missing: Family<FeatureLabel, Gauge>,
    /// 1 when the last query to Prometheus was answered, 0 when it failed.
    pub prometheus_up: Gauge,
    /// Evaluations by outcome: `ok`, `prometheus_error`, `model_error`, `no_data` (every
    /// feature missing: nothing scored).
    pub evaluations: Family<OutcomeLabel, Counter>,
    /// Seconds per model run.
    pub inference_seconds: Histogram,
    /// Anomalies opened since start.
    pub anomalies: Counter,
    /// 1 for the model serving, labelled with its version.
    pub model_info: Family<ModelLabels, Gauge>,
    /// Reload attempts by outcome (`ok`, `failed`).
    pub model_reloads: Family<OutcomeLabel, Counter>,
    /// Anomaly documents by outcome: `stored`, `failed` (an attempt; retried), `rejected`
    /// (refused as invalid: dropped), `dropped` (pushed out by `elasticsearch.max_documents`).
    pub documents: Family<OutcomeLabel, Counter>,
    /// Documents waiting for Elasticsearch.
    pub documents_pending: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("dohguard_anomaly");
        let m = Self {
            registry: Exposition::default(),
            score: FloatGauge::default(),
            raw_score: FloatGauge::default(),
            threshold: FloatGauge::default(),
            alerting: Gauge::default(),
            contribution: Family::default(),
            feature_missing: Family::default(),
            prometheus_up: Gauge::default(),
            evaluations: Family::default(),
            inference_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 14)),
            anomalies: Counter::default(),
            model_info: Family::default(),
            model_reloads: Family::default(),
            documents: Family::default(),
            documents_pending: Gauge::default(),
        };
        r.register(
            "score",
            "smoothed anomaly score of the latest window",
            m.score.clone(),
        );
        r.register(
            "raw_score",
            "the model's score of the latest window",
            m.raw_score.clone(),
        );
        r.register(
            "threshold",
            "the smoothed score at or over which an evaluation counts as over",
            m.threshold.clone(),
        );
        r.register(
            "alerting",
            "1 while an anomaly is open (k of the last n evaluations over the threshold)",
            m.alerting.clone(),
        );
        r.register(
            "contribution",
            "per-feature share of the latest score",
            m.contribution.clone(),
        );
        r.register(
            "feature_missing",
            "1 when Prometheus had no series for the feature in the whole window",
            m.feature_missing.clone(),
        );
        r.register(
            "prometheus_up",
            "1 when the last query to Prometheus was answered",
            m.prometheus_up.clone(),
        );
        r.register(
            "evaluations",
            "evaluations by outcome",
            m.evaluations.clone(),
        );
        r.register(
            "inference_seconds",
            "seconds per model run",
            m.inference_seconds.clone(),
        );
        r.register("anomalies", "anomalies opened", m.anomalies.clone());
        r.register("model_info", "the model serving", m.model_info.clone());
        r.register(
            "model_reloads",
            "model reload attempts by outcome",
            m.model_reloads.clone(),
        );
        r.register(
            "documents",
            "anomaly documents by outcome (failed: one attempt, retried)",
            m.documents.clone(),
        );
        r.register(
            "documents_pending",
            "anomaly documents waiting for Elasticsearch",
            m.documents_pending.clone(),
        );
        Self {
            registry: Exposition::new(r),
            ..m
        }
    }

    /// The registry in the Prometheus text exposition format.
    pub fn encode(&self) -> String {
        self.registry.encode()
    }

    pub fn outcome(family: &Family<OutcomeLabel, Counter>, outcome: &'static str) {
        family.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    /// Shows `model` as the one serving.
    pub fn set_model(&self, model: &crate::model::LoadedModel, threshold: f32) {
        self.model_info.clear();
        self.model_info
            .get_or_create(&ModelLabels {
                model_version: model.model_version.clone(),
                kind: model.card.kind.clone(),
                placeholder: model.card.placeholder.to_string(),
            })
            .set(1);
        self.threshold.set(f64::from(threshold));
        // Features of a previous model no longer apply.
        self.contribution.clear();
        self.feature_missing.clear();
    }
}
