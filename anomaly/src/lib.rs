//! The online anomaly detector of the gateway's own metrics (issue 9), a process of its own
//! so that a scorer outage cannot blind it.
//!
//! Every `evaluation.interval_ms`, [`detector`] reads the latest window of the model card's
//! features (the recording rules of contract 5) from Prometheus ([`prometheus`],
//! `query_range`), fills the gaps ([`window`]), runs the ONNX model ([`model`], ort, hot
//! reload), smooths the score and applies threshold + k-of-n hysteresis ([`decision`]). The
//! result is exported on `/metrics` ([`metrics`], [`http`]), where Prometheus scrapes it and
//! the `DohguardAnomaly` alerting rule fires through Alertmanager; each anomaly is written to
//! Elasticsearch next to the verdicts ([`store`]). [`card`] is the model card of contract 7,
//! [`config`] the configuration (contract 6 vocabulary), [`service`] the wiring.

pub mod card;
pub mod config;
pub mod decision;
pub mod detector;
pub mod http;
pub mod metrics;
pub mod model;
pub mod prometheus;
pub mod service;
pub mod store;
pub mod window;

use thiserror::Error;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ModelError {
    /// The card, the ONNX file or the session could not be loaded.
    #[error(transparent)]
    Load(#[from] dohguard_serving::Error),
    #[error("ONNX Runtime: {0}")]
    Runtime(String),
    #[error("model does not follow contract 7: {0}")]
    Contract(String),
    #[error("warm-up on a window of medians failed: {0}")]
    Warmup(String),
}
