//! The scorer's one typed configuration.
//!
//! Layers, later wins: built-in defaults, a TOML file (`--config`), environment variables
//! `DOHGUARD_SCORER_<SECTION>__<KEY>` (e.g. `DOHGUARD_SCORER_INFERENCE__MAX_BATCH=64`), then
//! command-line flags. Unknown keys are errors (a typo must not silently fall back to a
//! default), and [`Config::validate`] rejects out-of-range values with a message naming the
//! key, so a bad setting stops start-up instead of surfacing later.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use dohguard_serving::config as layers;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The model the scorer loads when none is configured (relative to the working directory,
/// which is the repository root for `./dohguard up` and the tests). Switch this one line
/// when the trained model becomes the default.
pub const DEFAULT_MODEL_CARD: &str = "models/dga-cnn/model.card.json";

/// Default write target: the `logs-<dataset>-<namespace>` naming of Elastic data streams.
pub const DEFAULT_INDEX: &str = "logs-dohguard.verdicts-default";

/// Prefix of the environment variables read by [`Config::load`].
pub const ENV_PREFIX: &str = "DOHGUARD_SCORER_";

/// Why the configuration was rejected, in the shape every part uses (`docs/contracts.md`,
/// "Configuration errors"): `scorer: configuration <key>: <problem>`.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `key` is empty when the problem is the document as a whole.
    #[error("scorer: configuration{}: {problem}", at(key))]
    Invalid { key: String, problem: String },
}

/// ` <key>`, or nothing for the document as a whole.
fn at(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!(" {key}")
    }
}

fn invalid(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
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

/// An old key was given: an error when its new name was given too, else a warning.
fn check_renamed(
    old: &str,
    new: &str,
    given: &impl Fn(&str) -> bool,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    if given(new) {
        return Err(invalid(
            old,
            format!("is the deprecated name of {new}; give only {new}"),
        ));
    }
    warnings.push(format!(
        "scorer: configuration {old}: deprecated, renamed to {new} (same meaning and unit); the old name will be removed in a later release"
    ));
    Ok(())
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the HTTP API listens on; port 0 picks a free port.
    pub listen: SocketAddr,
    pub model: ModelConfig,
    pub inference: InferenceConfig,
    pub verdicts: VerdictConfig,
    pub tunnel: TunnelConfig,
    pub rules: RulesConfig,
    pub http: HttpConfig,
    pub elasticsearch: ElasticsearchConfig,
    pub spool: SpoolConfig,
    pub admin: AdminConfig,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// File holding the bearer token `POST /admin/reload` requires (read on each call).
    /// Unset: only the body-less reload of the configured model is allowed.
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Path of the model card JSON; the ONNX file is found next to it (`onnx_file`).
    pub card: PathBuf,
    /// Reload automatically when the card or the ONNX file changes on disk.
    pub watch: bool,
    /// How often the watcher looks at the files' modification times.
    pub watch_interval_ms: u64,
    /// Extra detector model cards (card v2, `detector` = `tunnel`, `lookalike`, ...), each run
    /// beside the main model; the most severe verdict wins. Loaded at start (not watched).
    pub detector_cards: Vec<PathBuf>,
    /// Where a reload to another card (`POST /admin/reload {"card_path"}`) records that card,
    /// and which card is served at start when the file names one (`model.card` otherwise, and
    /// when the named card cannot be loaded). Unset: a promotion lasts until the next restart.
    pub active_card_file: Option<PathBuf>,
}

/// The tunnel session rule: `domain_block_names` tunnel-flagged names (tunnel score at or
/// over the tunnel card's block threshold) under one registered domain within `window_s`
/// block the whole registered domain (reason `model`, detector `tunnel`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TunnelConfig {
    /// Flagged names that block their registered domain; 0 turns the session rule off.
    pub domain_block_names: u32,
    /// How long a flagged name counts, seconds.
    pub window_s: u64,
    /// Registered domains tracked at once (the oldest are forgotten past it).
    pub max_entries: usize,
}

impl Default for TunnelConfig {
    fn default() -> Self {
        Self {
            domain_block_names: 3,
            window_s: 300,
            max_entries: 100_000,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    /// CUDA when ONNX Runtime offers it, else CPU (logged).
    Auto,
    Cpu,
    /// CUDA asked for explicitly; a fallback to CPU is logged loudly and counted.
    Cuda,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct InferenceConfig {
    pub device: Device,
    /// Most names in one model call.
    pub max_batch: usize,
    /// How long a batch may wait for more names while the service is under load (a lone
    /// request on an idle service never waits).
    pub max_wait_us: u64,
    /// Intra-op threads of the ONNX Runtime session.
    pub intra_threads: usize,
    /// Names waiting for the inference thread; a request that would go past it gets 503 with
    /// `Retry-After` at once (an empty queue admits any one request).
    pub queue_capacity: usize,
    /// A request that waited longer than this for the inference thread gets 503 instead of
    /// being computed (its caller, the filter's 200 ms callout, has given up by then).
    pub max_queue_age_ms: u64,
    /// Warm-up batches run at load, before the model serves.
    pub warmup_batches: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct VerdictConfig {
    /// Override of the model card's block threshold.
    pub block_threshold: Option<f32>,
    /// Override of the model card's monitor threshold.
    pub monitor_threshold: Option<f32>,
    /// TTL handed to the filter for model verdicts, seconds.
    pub ttl_s: u32,
    /// TTL for allow/deny-list verdicts, seconds.
    pub list_ttl_s: u32,
    /// Entries in the in-process verdict cache (0 disables it).
    pub max_entries: usize,
    /// Deprecated name of `max_entries`; moved there by [`Config::load`] with a warning.
    #[serde(default, skip_serializing)]
    pub cache_capacity: Option<usize>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RulesConfig {
    /// Allow-list patterns (`dohguard_core::rules` syntax).
    pub allow: Vec<String>,
    /// Deny-list patterns.
    pub deny: Vec<String>,
    /// Files with one pattern per line (`#` comments), appended to the lists above.
    pub allow_files: Vec<PathBuf>,
    pub deny_files: Vec<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Largest request body accepted (413 above).
    pub max_body_bytes: usize,
    /// Most names in one batch request (413 above).
    pub max_batch_names: usize,
    /// Whole-request time limit (503 after it).
    pub request_timeout_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ElasticsearchConfig {
    /// Base URL; `None` runs without Elasticsearch: every verdict goes to the spool.
    pub url: Option<String>,
    /// Write target (index or data stream name).
    pub index: String,
    /// Name of the composable index template installed at start.
    pub template_name: String,
    /// Install the template with `data_stream: {}` (real Elasticsearch 8.x); off for plain
    /// indices (osmem-server, the test server, has no data streams).
    pub data_stream: bool,
    /// A bulk request is sent when it holds this many documents...
    pub bulk_max_docs: usize,
    /// ... or this many bytes of NDJSON ...
    pub bulk_max_bytes: usize,
    /// ... or when its oldest document is this old.
    pub flush_interval_ms: u64,
    /// Bulk requests in flight at once.
    pub max_in_flight: usize,
    /// Documents buffered in memory before new ones go to the spool.
    pub queue_capacity: usize,
    /// Attempts per bulk request (429/5xx/connection errors) before its documents are spooled.
    pub max_attempts: u32,
    /// First retry delay; the ceiling doubles per attempt and each wait is jittered.
    pub retry_base_ms: u64,
    /// Largest retry delay (the ceiling stops doubling here).
    pub retry_max_ms: u64,
    /// Per-request timeout.
    pub request_timeout_ms: u64,
    /// File holding an API key (the `encoded` value Elasticsearch returns, or `id:api_key`);
    /// re-read while Elasticsearch refuses it. Or set `DOHGUARD_SCORER_ELASTICSEARCH__API_KEY`.
    pub api_key_file: Option<PathBuf>,
    /// Basic-auth user, with `password_file` or `DOHGUARD_SCORER_ELASTICSEARCH__PASSWORD`.
    pub username: Option<String>,
    /// File holding the basic-auth password; re-read while Elasticsearch refuses it.
    pub password_file: Option<PathBuf>,
    /// PEM file of CA certificates to trust for `https://` (added to the built-in roots).
    pub tls_ca_file: Option<PathBuf>,
    /// Verify the server's certificate and host name. Turning it off is for diagnosis only.
    pub tls_verify: bool,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// fsync after every append: nothing acknowledged to the spool is lost on power failure.
    Always,
    /// fsync at most once per `fsync_interval_ms` and when a segment is sealed.
    Interval,
    /// Leave it to the kernel (survives a process crash, not a power failure).
    Never,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    pub dir: PathBuf,
    pub fsync: FsyncPolicy,
    pub fsync_interval_ms: u64,
    /// A segment file is sealed (and becomes replayable) at this size.
    pub segment_bytes: u64,
    /// How often the replayer looks for spooled documents while Elasticsearch is up.
    pub replay_interval_ms: u64,
    /// Most bytes the spool holds (journal included); past it new documents are refused:
    /// `/v1/events` answers 503 (the filter keeps and resends), direct verdicts are dropped,
    /// counted, and reported by a gap marker.
    pub max_bytes: u64,
    /// Write every document to the spool before acknowledging it (a SIGKILL then loses
    /// nothing acknowledged); off, only undeliverable documents are spooled.
    pub journal: bool,
    /// On SIGTERM, delivery of what is queued stops after this long; the rest stays spooled.
    pub shutdown_timeout_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8700)),
            model: ModelConfig::default(),
            inference: InferenceConfig::default(),
            verdicts: VerdictConfig::default(),
            tunnel: TunnelConfig::default(),
            rules: RulesConfig::default(),
            http: HttpConfig::default(),
            elasticsearch: ElasticsearchConfig::default(),
            spool: SpoolConfig::default(),
            admin: AdminConfig::default(),
        }
    }
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            card: PathBuf::from(DEFAULT_MODEL_CARD),
            watch: true,
            watch_interval_ms: 1000,
            detector_cards: Vec::new(),
            active_card_file: None,
        }
    }
}

impl Default for InferenceConfig {
    fn default() -> Self {
        Self {
            device: Device::Auto,
            max_batch: 256,
            max_wait_us: 200,
            intra_threads: 1,
            queue_capacity: 8192,
            max_queue_age_ms: 250,
            warmup_batches: 3,
        }
    }
}

impl Default for VerdictConfig {
    fn default() -> Self {
        Self {
            block_threshold: None,
            monitor_threshold: None,
            ttl_s: 3600,
            list_ttl_s: 300,
            max_entries: 100_000,
            cache_capacity: None,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 256 * 1024,
            max_batch_names: 1024,
            request_timeout_ms: 2000,
        }
    }
}

impl Default for ElasticsearchConfig {
    fn default() -> Self {
        Self {
            url: Some("http://127.0.0.1:9200".to_owned()),
            index: DEFAULT_INDEX.to_owned(),
            template_name: "dohguard-verdicts".to_owned(),
            data_stream: false,
            bulk_max_docs: 1000,
            bulk_max_bytes: 4 * 1024 * 1024,
            flush_interval_ms: 200,
            max_in_flight: 4,
            queue_capacity: 65_536,
            max_attempts: 4,
            retry_base_ms: 100,
            retry_max_ms: 5_000,
            request_timeout_ms: 10_000,
            api_key_file: None,
            username: None,
            password_file: None,
            tls_ca_file: None,
            tls_verify: true,
        }
    }
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("run/scorer-spool"),
            fsync: FsyncPolicy::Interval,
            fsync_interval_ms: 1000,
            segment_bytes: 8 * 1024 * 1024,
            replay_interval_ms: 1000,
            max_bytes: 1024 * 1024 * 1024,
            journal: true,
            shutdown_timeout_ms: 10_000,
        }
    }
}

/// Values given on the command line; `None` leaves the lower layers' value.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub model_card: Option<PathBuf>,
    /// Replace `model.detector_cards` when not empty.
    pub detector_cards: Vec<PathBuf>,
    pub elasticsearch_url: Option<String>,
    /// Run with no Elasticsearch at all (spool only).
    pub no_elasticsearch: bool,
    pub spool_dir: Option<PathBuf>,
}

impl Config {
    /// Defaults <- TOML file <- `DOHGUARD_SCORER_*` environment <- flags, then validated.
    pub fn load(
        file: Option<&std::path::Path>,
        overrides: &Overrides,
    ) -> Result<Self, ConfigError> {
        // The secret variables are read as they are by `sink::auth`, never parsed here.
        let user = layers::user_layers(file, ENV_PREFIX, &crate::sink::auth::env_keys_to_ignore())?;
        let mut config = layers::extract(Config::default(), user.clone())?;
        for warning in config.resolve_renamed(|key| user.contains(key))? {
            tracing::warn!("{warning}");
        }
        config.apply(overrides);
        config.validate()?;
        Ok(config)
    }

    /// Moves values given under deprecated names to their new keys and returns one
    /// warning per such key. `given(key)` says whether the operator set `key` (file or
    /// environment); old and new together is an error, never a silent choice.
    fn resolve_renamed(
        &mut self,
        given: impl Fn(&str) -> bool,
    ) -> Result<Vec<String>, ConfigError> {
        let mut warnings = Vec::new();
        if let Some(value) = self.verdicts.cache_capacity.take() {
            check_renamed(
                "verdicts.cache_capacity",
                "verdicts.max_entries",
                &given,
                &mut warnings,
            )?;
            self.verdicts.max_entries = value;
        }
        Ok(warnings)
    }

    fn apply(&mut self, o: &Overrides) {
        if let Some(listen) = o.listen {
            self.listen = listen;
        }
        if let Some(card) = &o.model_card {
            self.model.card = card.clone();
        }
        if !o.detector_cards.is_empty() {
            self.model.detector_cards = o.detector_cards.clone();
        }
        if let Some(url) = &o.elasticsearch_url {
            self.elasticsearch.url = Some(url.clone());
        }
        if o.no_elasticsearch {
            self.elasticsearch.url = None;
        }
        if let Some(dir) = &o.spool_dir {
            self.spool.dir = dir.clone();
        }
    }

    /// Checks every value that has a valid range; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        use layers::positive;
        positive("inference.max_batch", self.inference.max_batch as u64)?;
        positive(
            "inference.intra_threads",
            self.inference.intra_threads as u64,
        )?;
        positive(
            "inference.queue_capacity",
            self.inference.queue_capacity as u64,
        )?;
        positive(
            "inference.max_queue_age_ms",
            self.inference.max_queue_age_ms,
        )?;
        positive("model.watch_interval_ms", self.model.watch_interval_ms)?;
        positive("tunnel.window_s", self.tunnel.window_s)?;
        positive("tunnel.max_entries", self.tunnel.max_entries as u64)?;
        positive("http.max_body_bytes", self.http.max_body_bytes as u64)?;
        positive("http.max_batch_names", self.http.max_batch_names as u64)?;
        positive("http.request_timeout_ms", self.http.request_timeout_ms)?;
        positive(
            "elasticsearch.bulk_max_docs",
            self.elasticsearch.bulk_max_docs as u64,
        )?;
        positive(
            "elasticsearch.bulk_max_bytes",
            self.elasticsearch.bulk_max_bytes as u64,
        )?;
        positive(
            "elasticsearch.flush_interval_ms",
            self.elasticsearch.flush_interval_ms,
        )?;
        positive(
            "elasticsearch.max_in_flight",
            self.elasticsearch.max_in_flight as u64,
        )?;
        positive(
            "elasticsearch.queue_capacity",
            self.elasticsearch.queue_capacity as u64,
        )?;
        positive(
            "elasticsearch.max_attempts",
            self.elasticsearch.max_attempts as u64,
        )?;
        positive(
            "elasticsearch.request_timeout_ms",
            self.elasticsearch.request_timeout_ms,
        )?;
        positive("spool.segment_bytes", self.spool.segment_bytes)?;
        positive("spool.fsync_interval_ms", self.spool.fsync_interval_ms)?;
        positive("spool.replay_interval_ms", self.spool.replay_interval_ms)?;
        positive("spool.max_bytes", self.spool.max_bytes)?;
        positive("spool.shutdown_timeout_ms", self.spool.shutdown_timeout_ms)?;
        if self.inference.max_batch > 65_536 {
            return Err(invalid("inference.max_batch", "must be at most 65536"));
        }
        for (key, value) in [
            ("verdicts.block_threshold", self.verdicts.block_threshold),
            (
                "verdicts.monitor_threshold",
                self.verdicts.monitor_threshold,
            ),
        ] {
            if let Some(v) = value {
                if !(0.0..=1.0).contains(&v) {
                    return Err(invalid(key, format!("{v} is outside [0, 1]")));
                }
            }
        }
        if let (Some(block), Some(monitor)) = (
            self.verdicts.block_threshold,
            self.verdicts.monitor_threshold,
        ) {
            if monitor > block {
                return Err(invalid(
                    "verdicts.monitor_threshold",
                    format!("{monitor} is above verdicts.block_threshold {block}"),
                ));
            }
        }
        if let Some(url) = &self.elasticsearch.url {
            layers::service_url("elasticsearch.url", url)?;
        }
        positive(
            "elasticsearch.retry_base_ms",
            self.elasticsearch.retry_base_ms,
        )?;
        let es = &self.elasticsearch;
        layers::retry_bounds(es.retry_base_ms, es.retry_max_ms)?;
        layers::index_name("elasticsearch.index", &es.index)?;
        layers::not_empty("elasticsearch.template_name", &es.template_name)?;
        if self.spool.dir.as_os_str().is_empty() {
            return Err(invalid("spool.dir", "must not be empty"));
        }
        Ok(())
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.http.request_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn bad_values_name_their_key() {
        let mut c = Config::default();
        c.inference.max_batch = 0;
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "scorer: configuration inference.max_batch: must be greater than 0"
        );

        let mut c = Config::default();
        c.verdicts.block_threshold = Some(1.5);
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("verdicts.block_threshold"));

        let mut c = Config::default();
        c.verdicts.block_threshold = Some(0.4);
        c.verdicts.monitor_threshold = Some(0.6);
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("verdicts.monitor_threshold"));

        let mut c = Config::default();
        c.elasticsearch.url = Some("ftp://x".into());
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("elasticsearch.url"));

        let mut c = Config::default();
        c.elasticsearch.url = Some("https://elastic:hunter2@es.example:9200/".into());
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("elasticsearch.url"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        c.elasticsearch.url = Some("https://elastic:hunter2@bad host/".into());
        let err = c.validate().unwrap_err().to_string();
        assert!(!err.contains("hunter2"), "{err}");

        let mut c = Config::default();
        c.elasticsearch.retry_max_ms = 10;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("elasticsearch.retry_max_ms"));

        let mut c = Config::default();
        c.elasticsearch.index = "Logs-X".into();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("elasticsearch.index"));
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's closure signature
    fn file_then_env_then_flags() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "scorer.toml",
                "listen = \"127.0.0.1:1234\"\n[inference]\nmax_batch = 32\nmax_wait_us = 10\n",
            )?;
            jail.set_env("DOHGUARD_SCORER_INFERENCE__MAX_BATCH", "64");
            let flags = Overrides {
                listen: Some("127.0.0.1:4321".parse().unwrap()),
                no_elasticsearch: true,
                ..Overrides::default()
            };
            let c = Config::load(Some(std::path::Path::new("scorer.toml")), &flags).unwrap();
            assert_eq!(c.inference.max_batch, 64, "environment beats file");
            assert_eq!(c.inference.max_wait_us, 10, "file beats defaults");
            assert_eq!(c.listen.port(), 4321, "flags beat file");
            assert_eq!(c.elasticsearch.url, None);
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)]
    fn unknown_keys_and_bad_types_are_errors() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("typo.toml", "[inference]\nmax_bath = 32\n")?;
            let err = Config::load(
                Some(std::path::Path::new("typo.toml")),
                &Overrides::default(),
            )
            .unwrap_err()
            .to_string();
            assert!(
                err.starts_with("scorer: configuration inference") && err.contains("max_bath"),
                "{err}"
            );

            jail.create_file("bad.toml", "[inference]\nmax_batch = \"many\"\n")?;
            let err = Config::load(
                Some(std::path::Path::new("bad.toml")),
                &Overrides::default(),
            )
            .unwrap_err()
            .to_string();
            assert!(
                err.starts_with("scorer: configuration inference.max_batch: "),
                "{err}"
            );
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)]
    fn deprecated_key_keeps_its_meaning_with_a_warning() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("old.toml", "[verdicts]\ncache_capacity = 7\n")?;
            let c = Config::load(
                Some(std::path::Path::new("old.toml")),
                &Overrides::default(),
            )
            .unwrap();
            assert_eq!(c.verdicts.max_entries, 7, "the old key keeps its meaning");
            assert_eq!(c.verdicts.cache_capacity, None);

            let mut c = Config::default();
            c.verdicts.cache_capacity = Some(7);
            let warnings = c.resolve_renamed(|_| false).unwrap();
            assert_eq!(warnings.len(), 1);
            assert!(
                warnings[0].starts_with(
                    "scorer: configuration verdicts.cache_capacity: deprecated, renamed to verdicts.max_entries"
                ),
                "{warnings:?}"
            );

            jail.set_env("DOHGUARD_SCORER_VERDICTS__MAX_ENTRIES", "9");
            let err = Config::load(
                Some(std::path::Path::new("old.toml")),
                &Overrides::default(),
            )
            .unwrap_err()
            .to_string();
            assert!(
                err.starts_with("scorer: configuration verdicts.cache_capacity: "),
                "old and new together: {err}"
            );

            jail.create_file("new.toml", "[verdicts]\nmax_entries = 5\n")?;
            jail.clear_env();
            let c = Config::load(
                Some(std::path::Path::new("new.toml")),
                &Overrides::default(),
            )
            .unwrap();
            assert_eq!(c.verdicts.max_entries, 5);
            Ok(())
        });
    }
}
