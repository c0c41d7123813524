//! The detector's one typed configuration, in the vocabulary of contract 6 (docs/contracts.md).
//!
//! Layers, later wins: built-in defaults, a TOML file (`--config`), environment variables
//! `DOHGUARD_ANOMALY_<SECTION>__<KEY>`, then command-line flags. Unknown keys are errors;
//! [`Config::validate`] rejects out-of-range values with `anomaly: configuration <key>: ...`.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use dohguard_serving::config as layers;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The shipped model (relative to the working directory: the repository root for
/// `./dohguard up` and the tests).
pub const DEFAULT_MODEL_CARD: &str = "anomaly/model/model.card.json";
/// Where anomalies are written, next to the verdicts (`logs-dohguard.verdicts-default`).
pub const DEFAULT_INDEX: &str = "logs-dohguard.anomalies-default";
pub const ENV_PREFIX: &str = "DOHGUARD_ANOMALY_";

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("anomaly: configuration{}: {problem}", if key.is_empty() { String::new() } else { format!(" {key}") })]
    Invalid { key: String, problem: String },
}

pub fn invalid(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        problem: problem.into(),
    }
}

impl From<layers::Invalid> for ConfigError {
    fn from(layers::Invalid { key, problem }: layers::Invalid) -> Self {
        invalid(key, problem)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `/metrics`, `/healthz`, `/readyz`, `POST /admin/reload`; loopback by default.
    pub listen: SocketAddr,
    pub model: ModelConfig,
    pub prometheus: PrometheusConfig,
    pub evaluation: EvaluationConfig,
    pub elasticsearch: ElasticsearchConfig,
    pub admin: AdminConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// The model card; the ONNX file sits next to it (`onnx_file`).
    pub card: PathBuf,
    /// Reload when the card or the ONNX file changes on disk.
    pub watch: bool,
    pub watch_interval_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PrometheusConfig {
    pub url: String,
    pub request_timeout_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EvaluationConfig {
    /// How often the latest window is read and scored.
    pub interval_ms: u64,
    /// Override of the card's threshold (smoothed score).
    pub threshold: Option<f32>,
    /// Features named in metrics, logs and documents as the anomaly's explanation.
    pub top_features: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ElasticsearchConfig {
    /// Base URL; `None` runs without a store (anomalies are only metrics and logs).
    pub url: Option<String>,
    /// Write target (a plain index: each anomaly is written at its start and overwritten,
    /// same `_id`, when it ends).
    pub index: String,
    /// Composable index template installed at start (priority 200, above Elasticsearch's
    /// built-in `logs-*-*` data-stream template).
    pub template_name: String,
    pub request_timeout_ms: u64,
    /// First retry delay; the ceiling doubles per attempt up to `retry_max_ms` (jittered).
    /// A document is retried until it is stored or pushed out by `max_documents`.
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    /// Documents waiting for Elasticsearch; past it the oldest is dropped and counted.
    pub max_documents: usize,
    /// Same meaning as the scorer's keys of the same names (scorer/README.md).
    pub api_key_file: Option<PathBuf>,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub tls_ca_file: Option<PathBuf>,
    pub tls_verify: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// File holding the bearer token `POST /admin/reload` needs; without it the endpoint
    /// answers 404 (reload by file change or SIGHUP).
    pub token_file: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8791)),
            model: ModelConfig {
                card: PathBuf::from(DEFAULT_MODEL_CARD),
                watch: true,
                watch_interval_ms: 1000,
            },
            prometheus: PrometheusConfig::default(),
            evaluation: EvaluationConfig::default(),
            elasticsearch: ElasticsearchConfig::default(),
            admin: AdminConfig::default(),
        }
    }
}

impl Default for ModelConfig {
    fn default() -> Self {
        Config::default().model
    }
}

impl Default for PrometheusConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:9090".into(),
            request_timeout_ms: 2000,
        }
    }
}

impl Default for EvaluationConfig {
    fn default() -> Self {
        Self {
            interval_ms: 5000,
            threshold: None,
            top_features: 3,
        }
    }
}

impl Default for ElasticsearchConfig {
    fn default() -> Self {
        Self {
            url: Some("http://127.0.0.1:9200".into()),
            index: DEFAULT_INDEX.into(),
            template_name: "dohguard-anomalies".into(),
            request_timeout_ms: 10_000,
            retry_base_ms: 100,
            retry_max_ms: 5_000,
            max_documents: 10_000,
            api_key_file: None,
            username: None,
            password_file: None,
            tls_ca_file: None,
            tls_verify: true,
        }
    }
}

/// Values given on the command line; `None` leaves the lower layers' value.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub model_card: Option<PathBuf>,
    pub prometheus_url: Option<String>,
    pub elasticsearch_url: Option<String>,
    pub no_elasticsearch: bool,
    pub interval_ms: Option<u64>,
}

impl Config {
    /// Defaults <- TOML file <- `DOHGUARD_ANOMALY_*` <- flags, then validated.
    pub fn load(
        file: Option<&std::path::Path>,
        overrides: &Overrides,
    ) -> Result<Self, ConfigError> {
        let mut config: Config = layers::load(file, ENV_PREFIX)?;
        config.apply(overrides);
        config.validate()?;
        Ok(config)
    }

    fn apply(&mut self, o: &Overrides) {
        if let Some(v) = o.listen {
            self.listen = v;
        }
        if let Some(v) = &o.model_card {
            self.model.card = v.clone();
        }
        if let Some(v) = &o.prometheus_url {
            self.prometheus.url = v.clone();
        }
        if let Some(v) = &o.elasticsearch_url {
            self.elasticsearch.url = Some(v.clone());
        }
        if o.no_elasticsearch {
            self.elasticsearch.url = None;
        }
        if let Some(v) = o.interval_ms {
            self.evaluation.interval_ms = v;
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        use layers::positive;
        positive("model.watch_interval_ms", self.model.watch_interval_ms)?;
        positive(
            "prometheus.request_timeout_ms",
            self.prometheus.request_timeout_ms,
        )?;
        positive("evaluation.interval_ms", self.evaluation.interval_ms)?;
        positive(
            "evaluation.top_features",
            self.evaluation.top_features as u64,
        )?;
        positive(
            "elasticsearch.request_timeout_ms",
            self.elasticsearch.request_timeout_ms,
        )?;
        positive(
            "elasticsearch.retry_base_ms",
            self.elasticsearch.retry_base_ms,
        )?;
        positive(
            "elasticsearch.max_documents",
            self.elasticsearch.max_documents as u64,
        )?;
        let es = &self.elasticsearch;
        layers::retry_bounds(es.retry_base_ms, es.retry_max_ms)?;
        if let Some(t) = self.evaluation.threshold {
            if !t.is_finite() {
                return Err(invalid("evaluation.threshold", "must be a finite number"));
            }
        }
        layers::service_url("prometheus.url", &self.prometheus.url)?;
        if let Some(url) = &self.elasticsearch.url {
            layers::service_url("elasticsearch.url", url)?;
        }
        layers::index_name("elasticsearch.index", &es.index)?;
        layers::not_empty("elasticsearch.template_name", &es.template_name)?;
        Ok(())
    }

    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.evaluation.interval_ms)
    }

    /// The scorer's Elasticsearch settings with this detector's values, for the shared
    /// client set-up (`dohguard_scorer::sink::EsClient`).
    pub fn scorer_elasticsearch(&self) -> dohguard_scorer::config::ElasticsearchConfig {
        let e = &self.elasticsearch;
        dohguard_scorer::config::ElasticsearchConfig {
            url: e.url.clone(),
            index: e.index.clone(),
            template_name: e.template_name.clone(),
            request_timeout_ms: e.request_timeout_ms,
            retry_base_ms: e.retry_base_ms,
            retry_max_ms: e.retry_max_ms,
            api_key_file: e.api_key_file.clone(),
            username: e.username.clone(),
            password_file: e.password_file.clone(),
            tls_ca_file: e.tls_ca_file.clone(),
            tls_verify: e.tls_verify,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bind_loopback() {
        let c = Config::default();
        c.validate().unwrap();
        assert!(c.listen.ip().is_loopback());
    }

    #[test]
    fn bad_values_name_their_key() {
        let mut c = Config::default();
        c.evaluation.interval_ms = 0;
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "anomaly: configuration evaluation.interval_ms: must be greater than 0"
        );
        let mut c = Config::default();
        c.prometheus.url = "ftp://x".into();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("prometheus.url"));
        let mut c = Config::default();
        c.elasticsearch.url = Some("https://u:hunter2@es:9200".into());
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("elasticsearch.url") && !err.contains("hunter2"),
            "{err}"
        );
    }

    #[test]
    #[allow(clippy::result_large_err)]
    fn file_then_env_then_flags_and_unknown_keys() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "a.toml",
                "[evaluation]\ninterval_ms = 2000\ntop_features = 2\n[prometheus]\nurl = \"http://127.0.0.1:1\"\n",
            )?;
            jail.set_env("DOHGUARD_ANOMALY_EVALUATION__INTERVAL_MS", "3000");
            let c = Config::load(
                Some(std::path::Path::new("a.toml")),
                &Overrides {
                    prometheus_url: Some("http://127.0.0.1:2".into()),
                    ..Overrides::default()
                },
            )
            .unwrap();
            assert_eq!(c.evaluation.interval_ms, 3000, "environment beats file");
            assert_eq!(c.evaluation.top_features, 2, "file beats defaults");
            assert_eq!(c.prometheus.url, "http://127.0.0.1:2", "flags beat all");
            jail.create_file("typo.toml", "[evaluation]\ninterval = 2\n")?;
            let err = Config::load(
                Some(std::path::Path::new("typo.toml")),
                &Overrides::default(),
            )
            .unwrap_err()
            .to_string();
            assert!(
                err.starts_with("anomaly: configuration evaluation") && err.contains("interval"),
                "{err}"
            );
            Ok(())
        });
    }
}
