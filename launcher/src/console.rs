//! The security console (`dohguard-console`, crate `console/`) as a child process, pointed at
//! the Elasticsearch-API store (and the scorer, for thresholds), awaited on `GET /readyz`
//! (which answers once its indices and the initial admin exist). The binary comes from
//! `DOHGUARD_CONSOLE_BIN` or the workspace's `target/{debug,release}`, checked to be newer
//! than its sources. On a first start against a store it creates the admin and writes the
//! generated password to `password_file` (mode 0600); [`Console::initial_password`] reads it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::paths::{repo_root, WorkspaceBinary};
use crate::ports::free_port;
use crate::process::{http_ok, ManagedProcess};
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
    /// The scorer's admin token file ([`crate::scorer::Scorer::admin_token_file`]): lets the
    /// console promote and roll back models; `None`: it cannot.
    pub scorer_admin_token_file: Option<PathBuf>,
}

#[derive(Debug)]
pub struct Console {
    process: ManagedProcess,
    pub port: u16,
    pub password_file: PathBuf,
    /// Whether it serves HTTPS ([`Console::start_feeding_tls`]).
    pub tls: bool,
}

impl Console {
    pub fn start(dir: &Path, options: &ConsoleOptions) -> Result<Self, LaunchError> {
        Self::start_with(dir, options, None, None)
    }

    /// Like [`Console::start`], as the filter's override source: on the feed's port (which
    /// Envoy's console cluster points at), with the feed's token file written into `dir`.
    pub fn start_feeding(
        dir: &Path,
        options: &ConsoleOptions,
        feed: &crate::overrides::OverrideFeed,
    ) -> Result<Self, LaunchError> {
        Self::start_with(dir, options, Some(feed), None)
    }

    /// Like [`Console::start_feeding`], serving HTTPS with `tls` (`tls.cert_file`,
    /// `tls.key_file`, and `session.secure_cookie` on). Ready once its start line (printed
    /// after its indices exist and its port is bound) says `https://`: the launcher has no TLS
    /// client to ask `/readyz` with.
    pub fn start_feeding_tls(
        dir: &Path,
        options: &ConsoleOptions,
        feed: &crate::overrides::OverrideFeed,
        tls: &crate::tls::TlsFiles,
    ) -> Result<Self, LaunchError> {
        Self::start_with(dir, options, Some(feed), Some(tls))
    }

    fn start_with(
        dir: &Path,
        options: &ConsoleOptions,
        feed: Option<&crate::overrides::OverrideFeed>,
        tls: Option<&crate::tls::TlsFiles>,
    ) -> Result<Self, LaunchError> {
        let binary = binary()?;
        let port = match feed {
            Some(feed) => feed.console_port,
            None => options.port.map_or_else(free_port, Ok)?,
        };
        let password_file = options
            .password_file
            .clone()
            .unwrap_or_else(|| dir.join("console-admin-password"));
        let mut command = Command::new(binary);
        // The launcher's own variable, not a console setting.
        command.env_remove(CONSOLE_BIN_VAR);
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
            )
            // The retraining loop: candidates beside the console's other state, the set-up's
            // Python, the pipeline in models/, the scorer's admin token.
            .env(
                "DOHGUARD_CONSOLE_RETRAIN__DIR",
                password_file.parent().unwrap_or(dir).join("models"),
            )
            .env(
                "DOHGUARD_CONSOLE_RETRAIN__MODELS_DIR",
                repo_root().join("models"),
            )
            .env(
                "DOHGUARD_CONSOLE_RETRAIN__SCORER_TOKEN_FILE",
                options.scorer_admin_token_file.clone().unwrap_or_default(),
            );
        if let Some(python) = std::env::var_os("DOHGUARD_PYTHON") {
            command.env("DOHGUARD_CONSOLE_RETRAIN__PYTHON", python);
        }
        if let Some(feed) = feed {
            command.env(
                "DOHGUARD_CONSOLE_OVERRIDES__FEED_TOKEN_FILE",
                feed.write_token(dir)?,
            );
        }
        if let Some(tls) = tls {
            command
                .env("DOHGUARD_CONSOLE_TLS__CERT_FILE", &tls.cert)
                .env("DOHGUARD_CONSOLE_TLS__KEY_FILE", &tls.key)
                .env("DOHGUARD_CONSOLE_SESSION__SECURE_COOKIE", "true");
        }
        let log = dir.join("console.log");
        let mut process = ManagedProcess::spawn("dohguard-console", command, &log)?;
        match tls {
            Some(_) => process.wait_ready(Duration::from_secs(30), || {
                std::fs::read_to_string(&log).is_ok_and(|text| serves_https(&text))
            })?,
            None => {
                let ready = format!("http://127.0.0.1:{port}/readyz");
                process.wait_ready(Duration::from_secs(30), || http_ok(&ready))?
            }
        }
        Ok(Self {
            process,
            port,
            password_file,
            tls: tls.is_some(),
        })
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}/", self.port)
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

/// Whether the console's log holds its start line with an `https://` URL.
fn serves_https(log: &str) -> bool {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .any(|v| v["url"].as_str().is_some_and(|u| u.starts_with("https://")))
}

/// The variable that names the console binary to run (`cargo xtask up` points it at the
/// release build); without it, the newest up-to-date build under `target/` is used.
pub const CONSOLE_BIN_VAR: &str = "DOHGUARD_CONSOLE_BIN";

/// The console binary: newer than its sources (Rust only: a template-only change needs a
/// rebuild by hand).
pub const CONSOLE_BINARY: WorkspaceBinary = WorkspaceBinary {
    name: "dohguard-console",
    override_var: CONSOLE_BIN_VAR,
    sources: &["console/src", "core/src", "schema/src"],
    missing: "the dohguard-console binary",
    stale: "an up-to-date dohguard-console build (the one there is older than its sources)",
    hint: "build it with `cargo build -p dohguard-console`",
};

/// Path of a `dohguard-console` build that is newer than its sources.
pub fn binary() -> Result<PathBuf, LaunchError> {
    CONSOLE_BINARY.locate()
}

#[cfg(test)]
mod tests {
    use super::serves_https;

    #[test]
    fn the_https_start_line_is_found_and_a_plain_one_is_not() {
        let https = "dohguard-console: created the initial admin\n\
                     {\"listen\":\"127.0.0.1:8780\",\"url\":\"https://127.0.0.1:8780/\"}\n";
        assert!(serves_https(https));
        assert!(!serves_https(
            "{\"listen\":\"127.0.0.1:8780\",\"url\":\"http://127.0.0.1:8780/\"}\n"
        ));
        assert!(!serves_https(
            "{\"listen\":\"127.0.0.1:8780\",\"url\":\"htt"
        ));
    }
}
