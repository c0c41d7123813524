//! The plugin configuration: its JSON shape, its defaults, and its validation into the
//! ready-to-use [`Settings`] the request path reads. Parsing happens once per VM in
//! `on_configure`; every error names the field it is about (`deny[3]`, `block.answer`, ...),
//! so a bad configuration stops the plugin at load time instead of misbehaving per request.
//! `filter/CONFIG.md` documents the same schema for operators.

use std::net::IpAddr;

use dohguard_core::rules::{Policy, RuleSet};
use serde::Deserialize;
use thiserror::Error;

/// Largest DoH message accepted (RFC 8484: a DNS message over HTTP is at most 65,535 octets).
pub const MAX_DNS_MESSAGE: usize = 65_535;

/// Why a configuration was rejected. The text has the shape every part uses
/// (`docs/contracts.md`, "Configuration errors"): `filter: configuration <key>: <problem>`,
/// with the key left out when the problem is the document as a whole.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("filter: configuration{}: {message}", at(path))]
    Json { path: String, message: String },
    #[error("filter: configuration {field}[{index}]: {entry:?}: {reason}")]
    Rule {
        field: &'static str,
        index: usize,
        entry: String,
        reason: dohguard_core::name::NameError,
    },
    #[error("filter: configuration{}: {reason}", at(field))]
    Invalid { field: &'static str, reason: String },
}

/// ` <key>`, or nothing for the document as a whole.
fn at(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!(" {key}")
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// The configuration JSON as written by the operator.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub doh_path: String,
    pub mode: Mode,
    pub allow: Vec<String>,
    pub deny: Vec<String>,
    pub block: RawBlock,
    pub scorer: Option<RawScorer>,
    pub cache: RawCache,
    /// Response header naming the verdict; `null` (the default) turns it off.
    pub verdict_header: Option<String>,
    /// Debug only: the verdict header also names the basis, cache state and monitor mode.
    pub verdict_header_detail: bool,
    /// The decision record: one event per query, sent in batches; `null` turns it off.
    pub events: Option<RawEvents>,
    /// Inspection of forwarded answers for CNAME and alias targets.
    pub cname: RawCname,
    /// Analysts' overrides polled from the console; `null` (the default) turns them off.
    pub overrides: Option<crate::overrides::RawOverrides>,
}

/// `cname`: which upstream answers are read for CNAME/alias targets, and the bounds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCname {
    pub enabled: bool,
    /// Larger answers are not parsed; `oversize` says what happens to them.
    pub max_answer_bytes: usize,
    /// Distinct targets judged per answer; an answer with more is treated as over-size.
    pub max_targets: usize,
    pub oversize: Oversize,
}

impl Default for RawCname {
    fn default() -> Self {
        RawCname {
            enabled: true,
            max_answer_bytes: 8192,
            max_targets: 16,
            oversize: Oversize::Forward,
        }
    }
}

/// What happens to an answer over the inspection bounds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Oversize {
    /// Forwarded uninspected (counted in `dohguard.cname.uninspected`).
    #[default]
    Forward,
    /// Replaced by the block answer (reason `cname`, no target).
    Block,
}

/// Validated `cname` settings (`None` in [`Settings`] when `enabled` is false).
#[derive(Debug, Clone)]
pub struct CnameSettings {
    pub max_answer_bytes: usize,
    pub max_targets: usize,
    pub oversize: Oversize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEvents {
    /// Envoy cluster of the event receiver (the scorer's `POST /v1/events`).
    pub cluster: String,
    #[serde(default)]
    pub authority: Option<String>,
    #[serde(default = "default_events_path")]
    pub path: String,
    /// How often each worker's buffer is flushed.
    #[serde(default = "default_flush_ms")]
    pub flush_interval_ms: u64,
    /// Most events per batch request.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// Most events held per worker (buffered, in flight or awaiting retry); beyond it new
    /// events are dropped, counted, and reported as a gap.
    #[serde(default = "default_max_buffered")]
    pub max_buffered: usize,
    /// Batch requests in flight per worker.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    #[serde(default = "default_events_timeout_ms")]
    pub timeout_ms: u64,
    /// Read the downstream's SPIFFE ID (`connection.uri_san_peer_certificate`) for each query.
    #[serde(default)]
    pub principal: bool,
}

fn default_events_path() -> String {
    "/v1/events".into()
}
fn default_flush_ms() -> u64 {
    200
}
fn default_max_batch() -> usize {
    2048
}
fn default_max_buffered() -> usize {
    65_536
}
fn default_max_in_flight() -> usize {
    4
}
fn default_events_timeout_ms() -> u64 {
    5_000
}

/// Validated decision-record settings.
#[derive(Debug, Clone)]
pub struct EventSettings {
    pub cluster: String,
    pub authority: String,
    pub path: String,
    pub flush_interval_ms: u64,
    pub max_batch: usize,
    pub max_buffered: usize,
    pub max_in_flight: usize,
    pub timeout_ms: u64,
    pub principal: bool,
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            doh_path: "/dns-query".into(),
            mode: Mode::Enforce,
            allow: Vec::new(),
            deny: Vec::new(),
            block: RawBlock::default(),
            scorer: None,
            cache: RawCache::default(),
            verdict_header: None,
            verdict_header_detail: false,
            events: None,
            cname: RawCname::default(),
            overrides: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Blocked names get the block answer.
    Enforce,
    /// Decide, count and label, but always forward.
    Monitor,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawBlock {
    pub answer: BlockAnswerKind,
    /// TTL of the block answer's records (and of the SOA that sets negative caching),
    /// seconds; default 300.
    pub ttl_s: Option<u32>,
    /// Deprecated name of `ttl_s` (accepted with a warning).
    #[serde(rename = "ttl")]
    pub ttl_deprecated: Option<u32>,
    /// Used only with `answer: "addresses"`.
    pub addresses: Vec<IpAddr>,
    /// The RFC 8914 code block answers carry: `blocked` (15) or `filtered` (17).
    pub ede: EdeKind,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EdeKind {
    /// 15 "Blocked": the operator's security policy.
    #[default]
    Blocked,
    /// 17 "Filtered": filtering the client asked for (opt-in services).
    Filtered,
}

impl Default for RawBlock {
    fn default() -> Self {
        RawBlock {
            answer: BlockAnswerKind::Nxdomain,
            ttl_s: None,
            ttl_deprecated: None,
            addresses: Vec::new(),
            ede: EdeKind::Blocked,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlockAnswerKind {
    Nxdomain,
    Refused,
    Nodata,
    Sinkhole,
    Addresses,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScorer {
    /// Envoy cluster the callout goes to (must exist in the Envoy configuration).
    pub cluster: String,
    /// `:authority` of the callout; defaults to the cluster name.
    #[serde(default)]
    pub authority: Option<String>,
    #[serde(default = "default_scorer_path")]
    pub path: String,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default)]
    pub failure_mode: FailureMode,
}

fn default_scorer_path() -> String {
    "/v1/score".into()
}

fn default_timeout_ms() -> u64 {
    200
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureMode {
    /// A failed callout allows the name.
    #[default]
    Open,
    /// A failed callout blocks the name.
    Closed,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCache {
    /// Most verdicts kept in shared data; 0 turns the cache off.
    pub max_entries: u32,
    /// Upper bound on the scorer's `ttl`, seconds; default 86400.
    pub max_ttl_s: Option<u32>,
    /// Deprecated name of `max_ttl_s` (accepted with a warning).
    #[serde(rename = "max_ttl")]
    pub max_ttl_deprecated: Option<u32>,
}

impl Default for RawCache {
    fn default() -> Self {
        RawCache {
            max_entries: 65_536,
            max_ttl_s: None,
            max_ttl_deprecated: None,
        }
    }
}

/// Default of `block.ttl_s`.
pub const DEFAULT_BLOCK_TTL_S: u32 = 300;
/// Default of `cache.max_ttl_s`.
pub const DEFAULT_CACHE_MAX_TTL_S: u32 = 86_400;

/// The value of a renamed key: the new key, else the old one (with a deprecation warning
/// for the log), else the default. Both at once is an error: the configuration must not
/// mean two things.
fn renamed<T>(
    new_key: &'static str,
    new: Option<T>,
    old_key: &'static str,
    old: Option<T>,
    default: T,
    warnings: &mut Vec<String>,
) -> Result<T, ConfigError> {
    match (new, old) {
        (Some(_), Some(_)) => Err(invalid(
            old_key,
            format!("is the deprecated name of {new_key}; give only {new_key}"),
        )),
        (Some(v), None) => Ok(v),
        (None, Some(v)) => {
            warnings.push(format!(
                "filter: configuration {old_key}: deprecated, renamed to {new_key} (same meaning and unit); the old name will be removed in a later release"
            ));
            Ok(v)
        }
        (None, None) => Ok(default),
    }
}

/// What a blocked query is answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockAnswer {
    Nxdomain,
    Refused,
    Nodata,
    /// 0.0.0.0 for A, :: for AAAA, NODATA for other types.
    Sinkhole,
    /// These addresses for A/AAAA (by family), NODATA otherwise.
    Addresses(Vec<IpAddr>),
}

#[derive(Debug, Clone)]
pub struct ScorerSettings {
    pub cluster: String,
    pub authority: String,
    pub path: String,
    pub timeout_ms: u64,
    pub failure_mode: FailureMode,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub doh_path: String,
    pub mode: Mode,
    pub policy: Policy,
    pub block_answer: BlockAnswer,
    /// Seconds (`block.ttl_s`).
    pub block_ttl: u32,
    /// RFC 8914 info code of block answers.
    pub block_ede: u16,
    pub scorer: Option<ScorerSettings>,
    pub cache_max_entries: u32,
    /// Seconds (`cache.max_ttl_s`).
    pub cache_max_ttl: u32,
    pub verdict_header: Option<String>,
    pub verdict_header_detail: bool,
    pub events: Option<EventSettings>,
    /// Answer inspection for CNAME/alias cloaking; `None` when off.
    pub cname: Option<CnameSettings>,
    /// The console's override feed; `None` when off.
    pub overrides: Option<crate::overrides::FeedSettings>,
    /// Deprecation warnings (old key names that were accepted), for the log.
    pub warnings: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        RawConfig::default()
            .validate()
            .expect("the default configuration is valid")
    }
}

impl Settings {
    /// Parses and validates the plugin configuration; an empty buffer means all defaults.
    pub fn from_json(bytes: &[u8]) -> Result<Settings, ConfigError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Settings::default());
        }
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(invalid("", "must be a JSON object"));
        }
        let de = &mut serde_json::Deserializer::from_slice(bytes);
        let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|err| {
            let path = err.path().to_string();
            ConfigError::Json {
                // serde_path_to_error writes the root as "." and an unknown position as "?".
                path: match path.as_str() {
                    "." | "?" => String::new(),
                    _ => path,
                },
                message: err.into_inner().to_string(),
            }
        })?;
        raw.validate()
    }
}

impl RawConfig {
    pub fn validate(self) -> Result<Settings, ConfigError> {
        if !self.doh_path.starts_with('/') || self.doh_path.contains(['?', '#', ' ']) {
            return Err(invalid(
                "doh_path",
                "must start with '/' and hold no query, fragment or space",
            ));
        }
        let policy = Policy {
            allow: compile("allow", &self.allow)?,
            deny: compile("deny", &self.deny)?,
        };
        let block_answer = match (self.block.answer, self.block.addresses.is_empty()) {
            (BlockAnswerKind::Addresses, true) => {
                return Err(invalid(
                    "block.addresses",
                    "answer \"addresses\" needs at least one address",
                ))
            }
            (BlockAnswerKind::Addresses, false) => BlockAnswer::Addresses(self.block.addresses),
            (_, false) => {
                return Err(invalid(
                    "block.addresses",
                    "only used with answer \"addresses\"",
                ))
            }
            (BlockAnswerKind::Nxdomain, true) => BlockAnswer::Nxdomain,
            (BlockAnswerKind::Refused, true) => BlockAnswer::Refused,
            (BlockAnswerKind::Nodata, true) => BlockAnswer::Nodata,
            (BlockAnswerKind::Sinkhole, true) => BlockAnswer::Sinkhole,
        };
        let mut warnings = Vec::new();
        let block_ttl = renamed(
            "block.ttl_s",
            self.block.ttl_s,
            "block.ttl",
            self.block.ttl_deprecated,
            DEFAULT_BLOCK_TTL_S,
            &mut warnings,
        )?;
        // RFC 2181: TTLs are 31-bit values.
        if block_ttl > i32::MAX as u32 {
            return Err(invalid("block.ttl_s", "must be at most 2147483647"));
        }
        let cache_max_ttl = renamed(
            "cache.max_ttl_s",
            self.cache.max_ttl_s,
            "cache.max_ttl",
            self.cache.max_ttl_deprecated,
            DEFAULT_CACHE_MAX_TTL_S,
            &mut warnings,
        )?;
        let scorer = self.scorer.map(validate_scorer).transpose()?;
        if let Some(name) = &self.verdict_header {
            let token = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-';
            if name.is_empty() || !name.bytes().all(token) {
                return Err(invalid(
                    "verdict_header",
                    "must be a lower-case header name (a-z, 0-9, '-'), or null to turn it off",
                ));
            }
        }
        Ok(Settings {
            doh_path: self.doh_path,
            mode: self.mode,
            policy,
            block_answer,
            block_ttl,
            block_ede: match self.block.ede {
                EdeKind::Blocked => crate::answer::EDE_BLOCKED,
                EdeKind::Filtered => crate::answer::EDE_FILTERED,
            },
            scorer,
            cache_max_entries: self.cache.max_entries,
            cache_max_ttl,
            verdict_header: self.verdict_header,
            verdict_header_detail: self.verdict_header_detail,
            events: self.events.map(validate_events).transpose()?,
            cname: validate_cname(self.cname)?,
            overrides: self.overrides.map(crate::overrides::validate).transpose()?,
            warnings,
        })
    }
}

fn compile(field: &'static str, patterns: &[String]) -> Result<RuleSet, ConfigError> {
    RuleSet::from_patterns(patterns.iter().map(String::as_str)).map_err(|err| ConfigError::Rule {
        field,
        index: err.index,
        entry: err.entry,
        reason: err.source,
    })
}

fn validate_cname(raw: RawCname) -> Result<Option<CnameSettings>, ConfigError> {
    if !(512..=MAX_DNS_MESSAGE).contains(&raw.max_answer_bytes) {
        return Err(invalid("cname.max_answer_bytes", "must be 512..=65535"));
    }
    if !(1..=256).contains(&raw.max_targets) {
        return Err(invalid("cname.max_targets", "must be 1..=256"));
    }
    Ok(raw.enabled.then_some(CnameSettings {
        max_answer_bytes: raw.max_answer_bytes,
        max_targets: raw.max_targets,
        oversize: raw.oversize,
    }))
}

fn validate_events(raw: RawEvents) -> Result<EventSettings, ConfigError> {
    if raw.cluster.trim().is_empty() {
        return Err(invalid("events.cluster", "must name an Envoy cluster"));
    }
    if !raw.path.starts_with('/') {
        return Err(invalid("events.path", "must start with '/'"));
    }
    if !(10..=60_000).contains(&raw.flush_interval_ms) {
        return Err(invalid("events.flush_interval_ms", "must be 10..=60000"));
    }
    if !(1..=65_536).contains(&raw.max_batch) {
        return Err(invalid("events.max_batch", "must be 1..=65536"));
    }
    if raw.max_buffered < raw.max_batch || raw.max_buffered > 4_194_304 {
        return Err(invalid(
            "events.max_buffered",
            "must be at least events.max_batch and at most 4194304",
        ));
    }
    if !(1..=64).contains(&raw.max_in_flight) {
        return Err(invalid("events.max_in_flight", "must be 1..=64"));
    }
    if !(1..=60_000).contains(&raw.timeout_ms) {
        return Err(invalid("events.timeout_ms", "must be 1..=60000"));
    }
    let authority = raw.authority.unwrap_or_else(|| raw.cluster.clone());
    Ok(EventSettings {
        cluster: raw.cluster,
        authority,
        path: raw.path,
        flush_interval_ms: raw.flush_interval_ms,
        max_batch: raw.max_batch,
        max_buffered: raw.max_buffered,
        max_in_flight: raw.max_in_flight,
        timeout_ms: raw.timeout_ms,
        principal: raw.principal,
    })
}

fn validate_scorer(raw: RawScorer) -> Result<ScorerSettings, ConfigError> {
    if raw.cluster.trim().is_empty() {
        return Err(invalid("scorer.cluster", "must name an Envoy cluster"));
    }
    if !raw.path.starts_with('/') {
        return Err(invalid("scorer.path", "must start with '/'"));
    }
    if !(1..=60_000).contains(&raw.timeout_ms) {
        return Err(invalid("scorer.timeout_ms", "must be 1..=60000"));
    }
    let authority = raw.authority.unwrap_or_else(|| raw.cluster.clone());
    if authority.is_empty() {
        return Err(invalid("scorer.authority", "must not be empty"));
    }
    Ok(ScorerSettings {
        cluster: raw.cluster,
        authority,
        path: raw.path,
        timeout_ms: raw.timeout_ms,
        failure_mode: raw.failure_mode,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(json: &str) -> String {
        Settings::from_json(json.as_bytes())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn empty_configuration_means_defaults() {
        let s = Settings::from_json(b"").unwrap();
        assert_eq!(s.doh_path, "/dns-query");
        assert_eq!(s.mode, Mode::Enforce);
        assert_eq!(s.block_answer, BlockAnswer::Nxdomain);
        assert!(s.scorer.is_none());
        assert_eq!(
            s.verdict_header, None,
            "the verdict header is off by default"
        );
        assert!(!s.verdict_header_detail);
        assert_eq!(s.block_ede, 15);
        let cname = s.cname.expect("answer inspection is on by default");
        assert_eq!((cname.max_answer_bytes, cname.max_targets), (8192, 16));
        assert_eq!(cname.oversize, Oversize::Forward);
        assert!(Settings::from_json(br#"{"cname":{"enabled":false}}"#)
            .unwrap()
            .cname
            .is_none());
        assert!(Settings::from_json(b"{}").is_ok());
    }

    #[test]
    fn full_example_parses() {
        let s = Settings::from_json(
            br#"{"doh_path":"/q","mode":"monitor","allow":["ok.example.com"],
                "deny":[".example.com","*.ads.test"],
                "block":{"answer":"addresses","ttl_s":60,"addresses":["192.0.2.1","2001:db8::1"]},
                "scorer":{"cluster":"scorer","timeout_ms":150,"failure_mode":"closed"},
                "cache":{"max_entries":1000,"max_ttl_s":600},"verdict_header":null}"#,
        )
        .unwrap();
        assert_eq!(s.mode, Mode::Monitor);
        assert_eq!(s.policy.deny.len(), 2);
        assert!(matches!(s.block_answer, BlockAnswer::Addresses(ref a) if a.len() == 2));
        let scorer = s.scorer.unwrap();
        assert_eq!(scorer.authority, "scorer");
        assert_eq!(scorer.path, "/v1/score");
        assert_eq!(scorer.failure_mode, FailureMode::Closed);
        assert_eq!(s.verdict_header, None);
        assert_eq!((s.block_ttl, s.cache_max_ttl), (60, 600));
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    }

    #[test]
    fn deprecated_keys_keep_their_meaning_with_a_warning() {
        let s = Settings::from_json(br#"{"block":{"ttl":42},"cache":{"max_ttl":600}}"#).unwrap();
        assert_eq!((s.block_ttl, s.cache_max_ttl), (42, 600));
        assert_eq!(s.warnings.len(), 2, "{:?}", s.warnings);
        assert!(
            s.warnings[0]
                .starts_with("filter: configuration block.ttl: deprecated, renamed to block.ttl_s"),
            "{:?}",
            s.warnings
        );
        assert!(
            s.warnings[1].starts_with(
                "filter: configuration cache.max_ttl: deprecated, renamed to cache.max_ttl_s"
            ),
            "{:?}",
            s.warnings
        );
        let d = Settings::default();
        assert_eq!(
            (d.block_ttl, d.cache_max_ttl),
            (DEFAULT_BLOCK_TTL_S, DEFAULT_CACHE_MAX_TTL_S)
        );
        assert!(d.warnings.is_empty());
        // Old and new name together would be two meanings for one setting.
        assert!(err(r#"{"block":{"ttl":1,"ttl_s":2}}"#)
            .starts_with("filter: configuration block.ttl: "));
        assert!(err(r#"{"cache":{"max_ttl":1,"max_ttl_s":2}}"#)
            .starts_with("filter: configuration cache.max_ttl: "));
    }

    #[test]
    fn errors_name_the_field() {
        // Every error has the one shape: `filter: configuration <key>: <problem>`.
        let e = |json: &str, key: &str| {
            let text = err(json);
            let prefix = format!("filter: configuration {key}: ");
            assert!(
                text.starts_with(&prefix),
                "{json}: {text:?} does not start with {prefix:?}"
            );
            text
        };
        assert!(e(r#"{"denny":[]}"#, "denny").contains("unknown field `denny`"));
        e(r#"{"block":{"answer":"drop"}}"#, "block.answer");
        let colour = e(r#"{"block":{"colour":1}}"#, "block.colour");
        assert!(colour.contains("unknown field `colour`"), "{colour}");
        assert!(e(r#"{"deny":["ok.com","bad..com"]}"#, "deny[1]").contains("\"bad..com\": "));
        e(r#"{"allow":["a b"]}"#, "allow[0]");
        e(r#"{"block":{"answer":"addresses"}}"#, "block.addresses");
        e(
            r#"{"block":{"addresses":["192.0.2.1"]}}"#,
            "block.addresses",
        );
        e(r#"{"block":{"addresses":["nope"]}}"#, "block.addresses[0]");
        e(r#"{"block":{"ttl_s":2147483648}}"#, "block.ttl_s");
        e(r#"{"scorer":{"cluster":""}}"#, "scorer.cluster");
        e(
            r#"{"scorer":{"cluster":"s","timeout_ms":0}}"#,
            "scorer.timeout_ms",
        );
        assert!(e(r#"{"scorer":{}}"#, "scorer").contains("missing field `cluster`"));
        e(r#"{"verdict_header":"X Bad"}"#, "verdict_header");
        e(r#"{"doh_path":"dns"}"#, "doh_path");
        e(r#"{"events":{"cluster":""}}"#, "events.cluster");
        e(
            r#"{"events":{"cluster":"e","max_batch":10,"max_buffered":5}}"#,
            "events.max_buffered",
        );
        e(r#"{"mode":"loud"}"#, "mode");
        e(
            r#"{"cname":{"max_answer_bytes":100}}"#,
            "cname.max_answer_bytes",
        );
        e(r#"{"cname":{"max_targets":0}}"#, "cname.max_targets");
        e(r#"{"cname":{"oversize":"drop"}}"#, "cname.oversize");
        // The document as a whole: no key.
        assert!(err("[1,2]").starts_with("filter: configuration: "));
        assert!(err("{").starts_with("filter: configuration: "));
    }
}
