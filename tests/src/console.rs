//! The security console (`dohguard-console`, crate `console/`) as a child process, pointed at
//! the Elasticsearch-API store (and the scorer, for thresholds), awaited on `GET /readyz`
//! (which answers once its indices and the initial admin exist). The binary comes from
//! `DOHGUARD_CONSOLE_BIN` or the workspace's `target/{debug,release}`, checked to be newer
//! than its sources. On a first start against a store it creates the admin and writes the
//! generated password to `password_file` (mode 0600); [`Console::initial_password`] reads it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::paths::repo_root;
use crate::ports::free_port;
use crate::process::{http_ok, ManagedProcess};
use crate::scorer::{modified, newest_mtime};
use crate::LaunchError;

/// Login name of the admin the console creates at first start (its default).
pub const INITIAL_ADMIN: &str = "admin";

#[derive(Debug, Clone)]
pub struct ConsoleOptions {
    pub elasticsearch_url: String,
    /// The scorer's base URL (the thresholds shown with a verdict); `None` to not ask.
    pub scorer_url: Option<String>,
    /// Fixed port (for `cargo xtask up`); ephemeral when `None`.
    pub port: Option<u16>,
    /// Where the initial admin's password goes; `<dir>/console-admin-password` when `None`.
    pub password_file: Option<PathBuf>,
}

#[derive(Debug)]
pub struct Console {
    process: ManagedProcess,
    pub port: u16,
    pub password_file: PathBuf,
}

impl Console {
    pub fn start(dir: &Path, options: &ConsoleOptions) -> Result<Self, LaunchError> {
        let binary = binary()?;
        let port = options.port.map_or_else(free_port, Ok)?;
        let password_file = options
            .password_file
            .clone()
            .unwrap_or_else(|| dir.join("console-admin-password"));
        let mut command = Command::new(binary);
        command
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--elasticsearch-url")
            .arg(&options.elasticsearch_url)
            .arg("--password-file")
            .arg(&password_file)
            .arg("--assets-dir")
            .arg(repo_root().join("console/web/node_modules"))
            .env(
                "DOHGUARD_CONSOLE_SCORER_URL",
                options.scorer_url.as_deref().unwrap_or(""),
            );
        let mut process =
            ManagedProcess::spawn("dohguard-console", command, &dir.join("console.log"))?;
        let ready = format!("http://127.0.0.1:{port}/readyz");
        process.wait_ready(Duration::from_secs(30), || http_ok(&ready))?;
        Ok(Self {
            process,
            port,
            password_file,
        })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// The initial admin's password, when this start (or an earlier one) wrote it.
    pub fn initial_password(&self) -> Result<String, LaunchError> {
        std::fs::read_to_string(&self.password_file)
            .map(|s| s.trim().to_owned())
            .map_err(LaunchError::io(format!(
                "reading {}",
                self.password_file.display()
            )))
    }

    pub fn process(&mut self) -> &mut ManagedProcess {
        &mut self.process
    }

    /// Stops the console (SIGTERM, then SIGKILL after a grace period).
    pub fn stop(&mut self) {
        self.process.stop();
    }
}

/// Path of a `dohguard-console` build that is newer than its sources.
pub fn binary() -> Result<PathBuf, LaunchError> {
    if let Some(path) = std::env::var_os("DOHGUARD_CONSOLE_BIN") {
        return Ok(PathBuf::from(path));
    }
    let root = repo_root();
    // Rust sources only, as for the scorer (a template-only change needs a rebuild by hand).
    let newest_source = ["console/src", "core/src", "schema/src"]
        .iter()
        .filter_map(|p| newest_mtime(&root.join(p)))
        .max();
    let built = [
        "target/debug/dohguard-console",
        "target/release/dohguard-console",
    ]
    .iter()
    .map(|p| root.join(p))
    .filter_map(|p| Some((modified(&p)?, p)))
    .max();
    match (built, newest_source) {
        (Some((built_at, path)), Some(source)) if built_at >= source => Ok(path),
        (Some((_, path)), None) => Ok(path),
        (Some((_, path)), Some(_)) => Err(LaunchError::MissingFile {
            what: "an up-to-date dohguard-console build (the one there is older than its sources)",
            path,
            hint: "build it with `cargo build -p dohguard-console`",
        }),
        (None, _) => Err(LaunchError::MissingFile {
            what: "the dohguard-console binary",
            path: root.join("target/debug/dohguard-console"),
            hint: "build it with `cargo build -p dohguard-console`",
        }),
    }
}
