//! The console's one typed configuration.
//!
//! Layers, later wins: built-in defaults, a TOML file (`--config`), environment variables
//! `DOHGUARD_CONSOLE_<SECTION>__<KEY>` (e.g. `DOHGUARD_CONSOLE_SESSION__TTL_S=3600`), then
//! command-line flags. Unknown keys are errors, and [`Config::validate`] rejects bad values
//! with a message naming the key; the binary exits with status 2 on either.

use std::{net::SocketAddr, path::PathBuf};

use figment::{
    providers::{Env, Format, Serialized, Toml},
    Figment,
};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Prefix of the environment variables read by [`Config::load`].
pub const ENV_PREFIX: &str = "DOHGUARD_CONSOLE_";

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("configuration key `{key}`: {problem}")]
    Invalid { key: &'static str, problem: String },
}

fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        problem: problem.into(),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the web UI and API listen on; loopback by default, port 0 picks a free port.
    pub listen: SocketAddr,
    pub elasticsearch: ElasticsearchConfig,
    pub session: SessionConfig,
    pub admin: AdminConfig,
    pub log: LogConfig,
    pub vetting: VettingConfig,
    /// Folder of the front-end assets installed by set-up (`npm ci` in `console/web`).
    pub assets_dir: PathBuf,
    /// The scorer's base URL, asked for the thresholds in force (`GET /v1/model`) when a
    /// verdict is explained; empty to not ask.
    pub scorer_url: String,
    /// The overview's minute cache (`overview_cache.rs`).
    pub overview_cache: crate::overview_cache::OverviewCacheConfig,
    /// HTTPS instead of plain HTTP (`tls.rs`): both files, or neither.
    pub tls: crate::tls::TlsConfig,
    pub retrain: RetrainConfig,
    pub overrides: OverridesConfig,
}

/// The retraining loop (`crate::retrain`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetrainConfig {
    /// Candidates (`candidates/<id>/`) and the promotion history (`serving.json`).
    pub dir: PathBuf,
    /// The Python with torch and onnxruntime (the set-up's venv: `$DOHGUARD_PYTHON`).
    pub python: String,
    /// The folder holding the `dohguard_models` package (the job's working directory).
    pub models_dir: PathBuf,
    /// File with the scorer's admin token (`POST /admin/reload`); empty: no promotion.
    pub scorer_token_file: PathBuf,
    /// Default epochs and training time budget of a retrain.
    pub epochs: u32,
    pub max_seconds: u64,
    /// Recent verdicts sampled as training rows (half benign, half malicious at most).
    pub sample: usize,
    /// The shadow comparison (and the sample) look at this many days of verdicts ...
    pub shadow_days: u32,
    /// ... and at most this many distinct registered domains.
    pub shadow_max_names: usize,
    /// A candidate whose precision or recall on the labels is below the serving model's by
    /// more than this fails its checks.
    pub max_regression: f64,
    /// An operator's data folder: every `*.csv` in it (`name,label[,family]`) joins the
    /// training rows of a retrain. Empty: labels and recent verdicts only.
    pub data_dir: PathBuf,
}

impl Default for RetrainConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("run/console/models"),
            python: "python3".into(),
            models_dir: PathBuf::from("models"),
            scorer_token_file: PathBuf::new(),
            epochs: 3,
            max_seconds: 240,
            sample: 2000,
            shadow_days: 7,
            shadow_max_names: 20_000,
            max_regression: 0.05,
            data_dir: PathBuf::new(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OverridesConfig {
    /// File holding the bearer token the filter sends to `GET /v1/overrides` (the launcher
    /// writes it, mode 0600); empty turns the feed off (404).
    pub feed_token_file: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ElasticsearchConfig {
    pub url: String,
    /// Index pattern the verdict documents are read from (contract 3).
    pub verdicts: String,
    /// Prefix of the console's own indices (`<prefix>-users`, `-sessions`, `-audit`, `-labels`).
    pub index_prefix: String,
    pub request_timeout_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    /// A session ends this long after login.
    pub ttl_s: u64,
    /// Mark the session cookie `Secure`. Off by default because the console serves plain
    /// HTTP on loopback; turn it on behind TLS.
    pub secure_cookie: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Login name of the initial admin created at first start.
    pub initial_user: String,
    /// Where the initial admin's generated password is written (mode 0600).
    pub password_file: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Rows per query-log page when the request does not say.
    pub page_size: usize,
    /// Largest page a request may ask for.
    pub max_page_size: usize,
    /// Documents fetched per store request while streaming an export.
    pub export_batch: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct VettingConfig {
    /// Model blocks scoring under this are "near the threshold" and go to the queue.
    pub confident_block: f64,
    /// Allowed queries scoring at least this are "suspicious" and go to the queue.
    pub suspicious_allow: f64,
    /// Most domains in the queue.
    pub max_domains: usize,
}

impl Default for VettingConfig {
    fn default() -> Self {
        Self {
            confident_block: 0.999,
            suspicious_allow: 0.3,
            max_domains: 200,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8780)),
            elasticsearch: ElasticsearchConfig::default(),
            session: SessionConfig::default(),
            admin: AdminConfig::default(),
            log: LogConfig::default(),
            vetting: VettingConfig::default(),
            assets_dir: PathBuf::from("console/web/node_modules"),
            scorer_url: "http://127.0.0.1:8090".into(),
            overview_cache: Default::default(),
            tls: Default::default(),
            retrain: RetrainConfig::default(),
            overrides: OverridesConfig::default(),
        }
    }
}

impl Default for ElasticsearchConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:9200".into(),
            verdicts: "logs-dohguard.verdicts-*".into(),
            index_prefix: "dohguard-console".into(),
            request_timeout_ms: 10_000,
        }
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            ttl_s: 8 * 3600,
            secure_cookie: false,
        }
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            initial_user: "admin".into(),
            password_file: PathBuf::from("run/console/initial-admin-password"),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            page_size: 50,
            max_page_size: 1000,
            export_batch: 1000,
        }
    }
}

/// Values given on the command line; `None` leaves the lower layers' value.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub elasticsearch_url: Option<String>,
    pub password_file: Option<PathBuf>,
    pub assets_dir: Option<PathBuf>,
}

impl Config {
    /// Defaults <- TOML file <- `DOHGUARD_CONSOLE_*` environment <- flags, then validated.
    pub fn load(
        file: Option<&std::path::Path>,
        overrides: &Overrides,
    ) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(invalid(
                    "--config",
                    format!("{} is not a readable file", path.display()),
                ));
            }
            figment = figment.merge(Toml::file(path));
        }
        figment = figment.merge(Env::prefixed(ENV_PREFIX).ignore(&["config"]).split("__"));
        let mut config: Config = figment.extract().map_err(Box::new)?;
        config.apply(overrides);
        config.validate()?;
        Ok(config)
    }

    fn apply(&mut self, o: &Overrides) {
        if let Some(listen) = o.listen {
            self.listen = listen;
        }
        if let Some(url) = &o.elasticsearch_url {
            self.elasticsearch.url = url.clone();
        }
        if let Some(path) = &o.password_file {
            self.admin.password_file = path.clone();
        }
        if let Some(path) = &o.assets_dir {
            self.assets_dir = path.clone();
        }
    }

    /// Checks every value that has a valid range; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = &self.elasticsearch.url;
        let parsed = url
            .parse::<elasticsearch::http::Url>()
            .map_err(|e| invalid("elasticsearch.url", format!("{url:?}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(invalid(
                "elasticsearch.url",
                format!("{url:?}: scheme must be http or https"),
            ));
        }
        if !self.scorer_url.is_empty() {
            let u = &self.scorer_url;
            let parsed = u
                .parse::<elasticsearch::http::Url>()
                .map_err(|e| invalid("scorer_url", format!("{u:?}: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(invalid(
                    "scorer_url",
                    format!("{u:?}: scheme must be http or https"),
                ));
            }
        }
        if self.elasticsearch.verdicts.is_empty() {
            return Err(invalid("elasticsearch.verdicts", "must not be empty"));
        }
        let prefix = &self.elasticsearch.index_prefix;
        if prefix.is_empty()
            || *prefix != prefix.to_lowercase()
            || prefix.contains(['*', ',', ' ', '/', '\\', '?', '"', '<', '>', '|', '#'])
        {
            return Err(invalid(
                "elasticsearch.index_prefix",
                format!("{prefix:?} is not a valid lower-case index name"),
            ));
        }
        if self.elasticsearch.request_timeout_ms == 0 {
            return Err(invalid(
                "elasticsearch.request_timeout_ms",
                "must be greater than 0",
            ));
        }
        if self.session.ttl_s == 0 {
            return Err(invalid("session.ttl_s", "must be greater than 0"));
        }
        let user = &self.admin.initial_user;
        if !crate::auth::valid_username(user) {
            return Err(invalid(
                "admin.initial_user",
                format!("{user:?}: 1-64 characters of a-z, 0-9, '.', '_', '-'"),
            ));
        }
        if self.admin.password_file.as_os_str().is_empty() {
            return Err(invalid("admin.password_file", "must not be empty"));
        }
        if self.log.max_page_size == 0 || self.log.max_page_size > 10_000 {
            return Err(invalid("log.max_page_size", "must be in 1..=10000"));
        }
        if self.log.page_size == 0 || self.log.page_size > self.log.max_page_size {
            return Err(invalid("log.page_size", "must be in 1..=log.max_page_size"));
        }
        for (key, v) in [
            ("vetting.confident_block", self.vetting.confident_block),
            ("vetting.suspicious_allow", self.vetting.suspicious_allow),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(invalid(key, format!("{v} is outside [0, 1]")));
            }
        }
        if self.vetting.max_domains == 0 || self.vetting.max_domains > 10_000 {
            return Err(invalid("vetting.max_domains", "must be in 1..=10000"));
        }
        self.retrain.validate()?;
        if self.log.export_batch == 0 || self.log.export_batch > 10_000 {
            return Err(invalid("log.export_batch", "must be in 1..=10000"));
        }
        let oc = &self.overview_cache;
        for (key, v, max) in [
            ("overview_cache.window_h", oc.window_h, 24 * 8),
            ("overview_cache.tick_s", oc.tick_s, 3600),
            ("overview_cache.fill_chunk_min", oc.fill_chunk_min, 24 * 60),
            ("overview_cache.grace_s", oc.grace_s + 1, 3601),
        ] {
            if v == 0 || v > max {
                return Err(invalid(key, format!("must be in 1..={max}")));
            }
        }
        self.tls
            .validate()
            .map_err(|(key, problem)| invalid(key, problem))?;
        Ok(())
    }
}

impl RetrainConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.dir.as_os_str().is_empty() {
            return Err(invalid("retrain.dir", "must not be empty"));
        }
        if self.python.is_empty() {
            return Err(invalid("retrain.python", "must not be empty"));
        }
        if !(1..=50).contains(&self.epochs) {
            return Err(invalid("retrain.epochs", "must be in 1..=50"));
        }
        if !(1..=3600).contains(&self.max_seconds) {
            return Err(invalid("retrain.max_seconds", "must be in 1..=3600"));
        }
        if self.sample > 100_000 {
            return Err(invalid("retrain.sample", "must be at most 100000"));
        }
        if !(1..=90).contains(&self.shadow_days) {
            return Err(invalid("retrain.shadow_days", "must be in 1..=90"));
        }
        if !(1..=65_536).contains(&self.shadow_max_names) {
            return Err(invalid("retrain.shadow_max_names", "must be in 1..=65536"));
        }
        if !(0.0..=1.0).contains(&self.max_regression) {
            return Err(invalid("retrain.max_regression", "must be in [0, 1]"));
        }
        Ok(())
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
        c.session.ttl_s = 0;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("session.ttl_s"));
        let mut c = Config::default();
        c.elasticsearch.url = "ftp://x".into();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("elasticsearch.url"));
        let mut c = Config::default();
        c.log.page_size = 5000;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("log.page_size"));
        let mut c = Config::default();
        c.admin.initial_user = "Bad User".into();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("admin.initial_user"));
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's closure signature
    fn file_then_env_then_flags_and_typos_are_errors() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("c.toml", "[session]\nttl_s = 60\n[log]\npage_size = 20\n")?;
            jail.set_env("DOHGUARD_CONSOLE_SESSION__TTL_S", "120");
            let flags = Overrides {
                listen: Some("127.0.0.1:4321".parse().unwrap()),
                ..Overrides::default()
            };
            let c = Config::load(Some(std::path::Path::new("c.toml")), &flags).unwrap();
            assert_eq!(c.session.ttl_s, 120, "environment beats file");
            assert_eq!(c.log.page_size, 20, "file beats defaults");
            assert_eq!(c.listen.port(), 4321, "flags beat file");
            jail.create_file("typo.toml", "[session]\nttl = 60\n")?;
            let err = Config::load(
                Some(std::path::Path::new("typo.toml")),
                &Overrides::default(),
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains("ttl"), "{err}");
            Ok(())
        });
    }
}
