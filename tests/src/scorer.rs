//! The real scorer (`dohguard-scorer`, crate `scorer/`) as a child process, pointed at a model
//! card and the Elasticsearch-API store, awaited on `GET /readyz`. The binary comes from
//! `DOHGUARD_SCORER_BIN` or the workspace's `target/{debug,release}`; it is checked to be newer
//! than its sources so a test never runs a stale build.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use crate::paths::repo_root;
use crate::ports::free_port;
use crate::process::{http_ok, ManagedProcess};
use crate::LaunchError;

#[derive(Debug, Clone)]
pub struct ScorerOptions {
    pub model_card: PathBuf,
    pub elasticsearch_url: String,
    pub port: Option<u16>,
}

#[derive(Debug)]
pub struct Scorer {
    process: ManagedProcess,
    pub port: u16,
}

impl Scorer {
    pub fn start(dir: &Path, options: &ScorerOptions) -> Result<Self, LaunchError> {
        let binary = binary()?;
        let port = options.port.map_or_else(free_port, Ok)?;
        let spool = dir.join("scorer-spool");
        std::fs::create_dir_all(&spool)
            .map_err(LaunchError::io(format!("creating {}", spool.display())))?;
        let mut command = Command::new(binary);
        command
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--model")
            .arg(&options.model_card)
            .arg("--elasticsearch-url")
            .arg(&options.elasticsearch_url)
            .arg("--spool-dir")
            .arg(&spool);
        let mut process =
            ManagedProcess::spawn("dohguard-scorer", command, &dir.join("scorer.log"))?;
        let ready = format!("http://127.0.0.1:{port}/readyz");
        process.wait_ready(Duration::from_secs(60), || http_ok(&ready))?;
        Ok(Self { process, port })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn process(&mut self) -> &mut ManagedProcess {
        &mut self.process
    }
}

/// The shipped model's card, `models/dga-cnn/model.card.json`: the only model the stack runs
/// (the scorer's hand-weighted test model is for its own unit tests, never a fallback here).
pub fn default_model_card() -> Result<PathBuf, LaunchError> {
    let card = repo_root().join("models/dga-cnn/model.card.json");
    if card.is_file() {
        Ok(card)
    } else {
        Err(LaunchError::MissingFile {
            what: "the shipped model card",
            path: card,
            hint: "it is committed under models/dga-cnn/: restore it from git, or retrain it with `./dohguard train`",
        })
    }
}

/// Path of a `dohguard-scorer` build that is newer than the scorer's and core's sources.
pub fn binary() -> Result<PathBuf, LaunchError> {
    if let Some(path) = std::env::var_os("DOHGUARD_SCORER_BIN") {
        return Ok(PathBuf::from(path));
    }
    let root = repo_root();
    // Only Rust sources: cargo rebuilds the binary whenever one of them changes, while other
    // files (docs, a manifest's dev-dependencies) can change without a rebuild.
    let newest_source = ["scorer/src", "core/src"]
        .iter()
        .filter_map(|p| newest_mtime(&root.join(p)))
        .max();
    let built = [
        "target/debug/dohguard-scorer",
        "target/release/dohguard-scorer",
    ]
    .iter()
    .map(|p| root.join(p))
    .filter_map(|p| Some((modified(&p)?, p)))
    .max();
    match (built, newest_source) {
        (Some((built_at, path)), Some(source)) if built_at >= source => Ok(path),
        (Some((_, path)), None) => Ok(path),
        (Some((_, path)), Some(_)) => Err(LaunchError::MissingFile {
            what: "an up-to-date dohguard-scorer build (the one there is older than its sources)",
            path,
            hint: "build it with `cargo build -p dohguard-scorer`",
        }),
        (None, _) => Err(LaunchError::MissingFile {
            what: "the dohguard-scorer binary",
            path: root.join("target/debug/dohguard-scorer"),
            hint: "build it with `cargo build -p dohguard-scorer`",
        }),
    }
}

pub(crate) fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).ok()?.modified().ok()
}

pub(crate) fn newest_mtime(path: &Path) -> Option<SystemTime> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_dir() {
        let is_rust = path.extension().is_some_and(|e| e == "rs");
        return if is_rust { meta.modified().ok() } else { None };
    }
    std::fs::read_dir(path)
        .ok()?
        .filter_map(|entry| newest_mtime(&entry.ok()?.path()))
        .max()
}
