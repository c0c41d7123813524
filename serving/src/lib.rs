//! The plumbing the scorer (`scorer/`) and the anomaly detector (`anomaly/`) share, the two
//! processes that serve an ONNX model:
//!
//! - [`config`]: defaults <- TOML file <- environment layers, errors as key + problem;
//! - [`card_file`]: the model card file (read and validate, `model_version`, the ONNX file next
//!   to it) and the ONNX file's bytes checked against the card's sha256;
//! - [`onnx`]: the process's one ONNX Runtime environment, session building and the check that a
//!   session has the card's input and outputs;
//! - [`watch`]: waiting for the model files to change on disk (hot reload);
//! - [`metrics`]: the Prometheus registry and its text exposition.
//!
//! Each part keeps its own card type, error types (and so its messages) and log lines: nothing
//! here logs, so log targets and filters stay those of the part.

pub mod card_file;
pub mod config;
pub mod metrics;
pub mod onnx;
pub mod watch;

use std::path::PathBuf;

use thiserror::Error;

/// Why a model's files or session could not be loaded; each part's `ModelError` carries it
/// as it is (`ModelError::Load`).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// `error` is shown in the message (not chained as a source, so it is not printed twice).
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("model card {}: {problem}", path.display())]
    Card { path: PathBuf, problem: String },
    #[error("{}: sha256 is {actual}, the model card says {expected}", path.display())]
    Checksum {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("ONNX Runtime: {0}")]
    Runtime(String),
}
