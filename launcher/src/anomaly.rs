//! The anomaly detector (`dohguard-anomaly`, crate `anomaly/`) as a child process: it reads
//! the features from Prometheus, scores them with the model card it is given and writes
//! anomalies to the Elasticsearch-API store; Prometheus scrapes its `/metrics` (job
//! `anomaly`). Awaited on `GET /readyz`. The binary comes from `DOHGUARD_ANOMALY_BIN` or the
//! workspace's `target/{debug,release}`, checked to be newer than its sources.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::paths::{repo_root, WorkspaceBinary};
use crate::process::{http_ok, ManagedProcess};
use crate::LaunchError;

#[derive(Debug, Clone)]
pub struct AnomalyOptions {
    pub model_card: PathBuf,
    /// Where the anomaly documents go; `None` runs without a store.
    pub elasticsearch_url: Option<String>,
    /// How often the detector evaluates (1000 in tests, the detector's default 5000 in `up`).
    pub interval_ms: u64,
    /// The port; the caller picks it before Prometheus starts (Prometheus scrapes it).
    pub port: u16,
    /// A file holding the token of `POST /admin/reload`; the endpoint is off when `None`.
    pub admin_token_file: Option<PathBuf>,
}

#[derive(Debug)]
pub struct AnomalyDetector {
    process: ManagedProcess,
    pub port: u16,
}

impl AnomalyDetector {
    /// Starts the detector against the Prometheus at `prometheus_url`.
    pub fn start(
        dir: &Path,
        prometheus_url: &str,
        options: &AnomalyOptions,
    ) -> Result<Self, LaunchError> {
        let binary = binary()?;
        let mut command = Command::new(binary);
        // The launcher's own variable: the detector would read it as a setting (prefix
        // DOHGUARD_ANOMALY_) and refuse to start.
        command
            .env_remove(ANOMALY_BIN_VAR)
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", options.port))
            .arg("--model")
            .arg(&options.model_card)
            .arg("--prometheus-url")
            .arg(prometheus_url)
            .arg("--interval-ms")
            .arg(options.interval_ms.to_string());
        match &options.elasticsearch_url {
            Some(url) => command.arg("--elasticsearch-url").arg(url),
            None => command.arg("--no-elasticsearch"),
        };
        if let Some(token) = &options.admin_token_file {
            command.env("DOHGUARD_ANOMALY_ADMIN__TOKEN_FILE", token);
        }
        let mut process =
            ManagedProcess::spawn("dohguard-anomaly", command, &dir.join("anomaly.log"))?;
        let ready = format!("http://127.0.0.1:{}/readyz", options.port);
        process.wait_ready(Duration::from_secs(30), || http_ok(&ready))?;
        Ok(Self {
            process,
            port: options.port,
        })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn process(&mut self) -> &mut ManagedProcess {
        &mut self.process
    }
}

/// The shipped anomaly model's card, `anomaly/model/model.card.json`.
pub fn default_model_card() -> Result<PathBuf, LaunchError> {
    let card = repo_root().join("anomaly/model/model.card.json");
    if card.is_file() {
        Ok(card)
    } else {
        Err(LaunchError::MissingFile {
            what: "the shipped anomaly model card",
            path: card,
            hint: "it is committed under anomaly/model/: restore it from git",
        })
    }
}

/// How often the detector should evaluate for the model behind `card`: the card's
/// `evaluate_every_s` (its threshold and k-of-n hysteresis were calibrated for that pace), or
/// the detector's default of 5 s for a card without one.
pub fn evaluation_interval_ms(card: &Path) -> Result<u64, LaunchError> {
    let text = std::fs::read_to_string(card)
        .map_err(LaunchError::io(format!("reading {}", card.display())))?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| LaunchError::Io {
        context: format!("parsing {}", card.display()),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })?;
    Ok(value
        .get("evaluate_every_s")
        .and_then(serde_json::Value::as_f64)
        .filter(|s| *s > 0.0)
        .map_or(5000, |s| (s * 1000.0).round() as u64))
}

/// The hand-set z-score model of the detector's tests (`anomaly/tests/make_fixture_model.py`).
pub fn fixture_model_card() -> PathBuf {
    repo_root().join("anomaly/tests/fixtures/zscore/model.card.json")
}

/// The variable that names the detector binary to run (`cargo xtask up` points it at the
/// release build).
pub const ANOMALY_BIN_VAR: &str = "DOHGUARD_ANOMALY_BIN";

pub const ANOMALY_BINARY: WorkspaceBinary = WorkspaceBinary {
    name: "dohguard-anomaly",
    override_var: ANOMALY_BIN_VAR,
    // The Elasticsearch client set-up comes from the scorer crate.
    sources: &["anomaly/src", "scorer/src", "core/src", "schema/src"],
    missing: "the dohguard-anomaly binary",
    stale: "an up-to-date dohguard-anomaly build (the one there is older than its sources)",
    hint: "build it with `cargo build -p dohguard-anomaly`",
};

/// Path of a `dohguard-anomaly` build that is newer than its sources.
pub fn binary() -> Result<PathBuf, LaunchError> {
    ANOMALY_BINARY.locate()
}
