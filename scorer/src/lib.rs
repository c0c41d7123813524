//! The dohguard scoring service: the filter calls it on a verdict-cache miss.
//!
//! A request flows `http` (axum routes, problem+json errors) -> `scoring` (name
//! normalisation, scorer-side allow/deny lists, the verdict cache, thresholds) -> `model`
//! (model card, input encoding, ONNX Runtime session behind a micro-batching inference
//! thread, hot reload) and every verdict is handed to `sink`, which ships it to
//! Elasticsearch in bulk without ever making the request wait (spooling to disk when
//! Elasticsearch is away). `config` is the one typed configuration; `metrics` the Prometheus
//! registry shared by all of them; `app` wires the parts together for the binary and tests.

// The index template's `json!` (sink/template.rs) nests deeper than the default 128.
#![recursion_limit = "256"]

pub mod app;
pub mod config;
pub mod metrics;
pub mod model;
pub mod scoring;
pub mod sessions;
pub mod sink;

mod http;

pub use app::{App, AppError};
pub use config::{Config, ConfigError};
pub use http::router;
