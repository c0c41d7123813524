//! The real scorer (`dohguard-scorer`, crate `scorer/`) as a child process, pointed at a model
//! card and the Elasticsearch-API store, awaited on `GET /readyz`. The binary comes from
//! `DOHGUARD_SCORER_BIN` or the workspace's `target/{debug,release}`; it is checked to be newer
//! than its sources so a test never runs a stale build.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::paths::{repo_root, WorkspaceBinary};
use crate::ports::free_port;
use crate::process::{http_ok, ManagedProcess};
use crate::LaunchError;

#[derive(Debug, Clone)]
pub struct ScorerOptions {
    pub model_card: PathBuf,
    /// Extra detector cards (`--detector`), e.g. [`default_detector_cards`].
    pub detector_cards: Vec<PathBuf>,
    pub elasticsearch_url: String,
    pub port: Option<u16>,
}

#[derive(Debug)]
pub struct Scorer {
    process: ManagedProcess,
    pub port: u16,
    /// The generated token `POST /admin/reload` requires (mode 0600; the console reads it).
    pub admin_token_file: PathBuf,
}

impl Scorer {
    pub fn start(dir: &Path, options: &ScorerOptions) -> Result<Self, LaunchError> {
        let binary = binary()?;
        let port = options.port.map_or_else(free_port, Ok)?;
        let spool = dir.join("scorer-spool");
        std::fs::create_dir_all(&spool)
            .map_err(LaunchError::io(format!("creating {}", spool.display())))?;
        let admin_token_file = dir.join("scorer-admin-token");
        write_admin_token(&admin_token_file)?;
        let mut command = Command::new(binary);
        command
            .env("DOHGUARD_SCORER_ADMIN__TOKEN_FILE", &admin_token_file)
            // A promotion from the console (a reload to another card) survives a restart: the
            // scorer records the card here and serves it at its next start.
            .env(
                "DOHGUARD_SCORER_MODEL__ACTIVE_CARD_FILE",
                dir.join("scorer-active-model"),
            )
            // The launcher's own variable: the scorer would read it as its setting `bin`
            // (prefix DOHGUARD_SCORER_) and refuse to start.
            .env_remove(SCORER_BIN_VAR)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--model")
            .arg(&options.model_card)
            .args(
                options
                    .detector_cards
                    .iter()
                    .flat_map(|card| [std::ffi::OsStr::new("--detector"), card.as_os_str()]),
            )
            .arg("--elasticsearch-url")
            .arg(&options.elasticsearch_url)
            .arg("--spool-dir")
            .arg(&spool);
        let mut process =
            ManagedProcess::spawn("dohguard-scorer", command, &dir.join("scorer.log"))?;
        let ready = format!("http://127.0.0.1:{port}/readyz");
        process.wait_ready(Duration::from_secs(60), || http_ok(&ready))?;
        Ok(Self {
            process,
            port,
            admin_token_file,
        })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn process(&mut self) -> &mut ManagedProcess {
        &mut self.process
    }
}

/// A fresh random admin token (256 bits, hex) in `path`, readable by the owner only.
fn write_admin_token(path: &Path) -> Result<(), LaunchError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let _ = std::fs::remove_file(path);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(token.as_bytes()))
        .map_err(LaunchError::io(format!("writing {}", path.display())))
}

/// The shipped extra detectors' cards: the full-name tunnel model,
/// `models/tunnel-v1/model.card.json`.
pub fn default_detector_cards() -> Result<Vec<PathBuf>, LaunchError> {
    let card = repo_root().join("models/tunnel-v1/model.card.json");
    if card.is_file() {
        Ok(vec![card])
    } else {
        Err(LaunchError::MissingFile {
            what: "the shipped tunnel model card",
            path: card,
            hint: "it is committed under models/tunnel-v1/: restore it from git, or retrain it with `python -m dohguard_models tunnel`",
        })
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

/// The variable that names the scorer binary to run (`cargo xtask up` points it at the release
/// build); without it, the newest up-to-date build under `target/` is used.
pub const SCORER_BIN_VAR: &str = "DOHGUARD_SCORER_BIN";

/// The scorer binary: newer than the scorer's and core's sources.
pub const SCORER_BINARY: WorkspaceBinary = WorkspaceBinary {
    name: "dohguard-scorer",
    override_var: SCORER_BIN_VAR,
    sources: &["scorer/src", "core/src", "schema/src"],
    missing: "the dohguard-scorer binary",
    stale: "an up-to-date dohguard-scorer build (the one there is older than its sources)",
    hint: "build it with `cargo build -p dohguard-scorer`",
};

/// Path of a `dohguard-scorer` build that is newer than its sources.
pub fn binary() -> Result<PathBuf, LaunchError> {
    SCORER_BINARY.locate()
}
