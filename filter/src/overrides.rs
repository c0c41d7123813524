//! Analysts' overrides in the filter (contract 4 in `docs/contracts.md`, "The override feed"): the
//! `overrides` configuration, the poll of the console's versioned set, and the matcher every worker
//! applies before its lists and its verdict cache.
//!
//! How a set travels:
//! - Every root context ticks (at the event flush interval when the record is on, else every
//!   [`CHECK_MS`]). On a tick it reads the set version in shared data ([`VERSION_KEY`]); when it
//!   differs from the one this VM applies, it reads the set ([`SET_KEY`]), compiles it and
//!   swaps its matcher. A set that does not compile is refused whole; the last one keeps
//!   applying.
//! - One worker at a time polls the console: the tick that finds the lease ([`POLL_KEY`], the
//!   next poll's time) due takes it with a compare-and-swap and sends
//!   `GET <path>?since=<version>` with the bearer token. A 304 changes nothing; a 200 carries
//!   the whole set, which is checked, written to shared data (set, then version) and adopted.
//!   Any other answer (the console down, a wrong token) is counted and logged (throttled), and
//!   the last known set keeps applying.
//! - Expiry is checked at match time against the clock, so an expired override stops
//!   applying even while the console cannot be asked.

use std::cell::RefCell;
use std::rc::Rc;

use dohguard_core::overrides::{OverrideMatcher, OverrideSet};
use serde::Deserialize;

use crate::cache::{SharedStore, StoreError};
use crate::config::ConfigError;

/// Shared-data key of the set (JSON, [`OverrideSet`]).
pub const SET_KEY: &str = "dohguard.overrides.set";
/// Shared-data key of the set's version (8 bytes, little-endian), written after the set.
pub const VERSION_KEY: &str = "dohguard.overrides.version";
/// Shared-data key of the poll lease: when the next poll is due (8 bytes, Unix ms).
pub const POLL_KEY: &str = "dohguard.overrides.poll";
/// How often a worker looks for a new version when the record is off (ms).
pub const CHECK_MS: u64 = 250;

/// `overrides` as written by the operator.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOverrides {
    /// Envoy cluster of the console.
    pub cluster: String,
    #[serde(default)]
    pub authority: Option<String>,
    #[serde(default = "default_path")]
    pub path: String,
    /// Bearer token the console expects (the launcher generates it).
    pub token: String,
    #[serde(default = "default_poll_ms")]
    pub poll_interval_ms: u64,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_path() -> String {
    "/v1/overrides".into()
}
fn default_poll_ms() -> u64 {
    1000
}
fn default_timeout_ms() -> u64 {
    2000
}

/// Validated `overrides` settings.
#[derive(Clone)]
pub struct FeedSettings {
    pub cluster: String,
    pub authority: String,
    pub path: String,
    /// `authorization` header value (`Bearer <token>`).
    pub authorization: String,
    pub poll_interval_ms: u64,
    pub timeout_ms: u64,
}

impl std::fmt::Debug for FeedSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedSettings")
            .field("cluster", &self.cluster)
            .field("path", &self.path)
            .field("poll_interval_ms", &self.poll_interval_ms)
            .finish_non_exhaustive() // never the token
    }
}

fn invalid(field: &'static str, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        field,
        reason: reason.into(),
    }
}

pub fn validate(raw: RawOverrides) -> Result<FeedSettings, ConfigError> {
    if raw.cluster.trim().is_empty() {
        return Err(invalid("overrides.cluster", "must name an Envoy cluster"));
    }
    if !raw.path.starts_with('/') || raw.path.contains(['?', '#', ' ']) {
        return Err(invalid(
            "overrides.path",
            "must start with '/' and hold no query, fragment or space",
        ));
    }
    let token_char = |b: u8| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b);
    if raw.token.len() < 16 || !raw.token.bytes().all(token_char) {
        return Err(invalid(
            "overrides.token",
            "must be at least 16 characters of A-Z a-z 0-9 - . _ ~ + / =",
        ));
    }
    if !(100..=600_000).contains(&raw.poll_interval_ms) {
        return Err(invalid(
            "overrides.poll_interval_ms",
            "must be 100..=600000",
        ));
    }
    if !(1..=60_000).contains(&raw.timeout_ms) {
        return Err(invalid("overrides.timeout_ms", "must be 1..=60000"));
    }
    Ok(FeedSettings {
        authority: raw.authority.unwrap_or_else(|| raw.cluster.clone()),
        cluster: raw.cluster,
        path: raw.path,
        authorization: format!("Bearer {}", raw.token),
        poll_interval_ms: raw.poll_interval_ms,
        timeout_ms: raw.timeout_ms,
    })
}

thread_local! {
    /// The matcher this VM applies (one VM runs on one worker thread).
    static MATCHER: RefCell<Rc<OverrideMatcher>> = RefCell::new(Rc::new(OverrideMatcher::default()));
}

/// The matcher in force in this VM.
pub fn current() -> Rc<OverrideMatcher> {
    MATCHER.with_borrow(Rc::clone)
}

/// Whether this VM applies no override (the request path's first, cheap check).
pub fn none() -> bool {
    MATCHER.with_borrow(|m| m.is_empty())
}

/// The cache flush generation of the set in force (`OverrideSet::cache_generation`).
pub fn cache_generation() -> u64 {
    MATCHER.with_borrow(|m| m.cache_generation())
}

fn adopt(matcher: OverrideMatcher) {
    MATCHER.set(Rc::new(matcher));
}

fn read_u64(store: &impl SharedStore, key: &str) -> Option<(u64, u32)> {
    let (bytes, cas) = store.get(key)?;
    let bytes: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    Some((u64::from_le_bytes(bytes), cas))
}

/// What a tick found in shared data.
#[derive(Debug, PartialEq, Eq)]
pub enum Refresh {
    /// The version in shared data is the one applied (or there is none).
    Current,
    /// A newer set was adopted: its version and size.
    Adopted { version: u64, overrides: usize },
    /// The set in shared data could not be read or compiled; the last one keeps applying.
    Refused(String),
}

/// Adopts the set in shared data when its version differs from the one applied.
pub fn refresh(store: &impl SharedStore) -> Refresh {
    let Some((version, _)) = read_u64(store, VERSION_KEY) else {
        return Refresh::Current;
    };
    if version == current().version() {
        return Refresh::Current;
    }
    let Some((bytes, _)) = store.get(SET_KEY) else {
        return Refresh::Refused(format!("version {version} announced, but no set stored"));
    };
    match parse(&bytes) {
        Ok((set, matcher)) => {
            adopt(matcher);
            Refresh::Adopted {
                version: set.version,
                overrides: set.overrides.len(),
            }
        }
        Err(e) => Refresh::Refused(e),
    }
}

fn parse(bytes: &[u8]) -> Result<(OverrideSet, OverrideMatcher), String> {
    let set: OverrideSet =
        serde_json::from_slice(bytes).map_err(|e| format!("unreadable override set: {e}"))?;
    let matcher =
        OverrideMatcher::compile(&set).map_err(|e| format!("override set refused: {e}"))?;
    Ok((set, matcher))
}

/// Takes the poll lease when it is due: `true` means this worker polls now.
pub fn claim_poll(store: &impl SharedStore, now_ms: u64, interval_ms: u64) -> bool {
    let next = (now_ms + interval_ms).to_le_bytes();
    match read_u64(store, POLL_KEY) {
        Some((due, _)) if now_ms < due => false,
        Some((_, cas)) => store.set(POLL_KEY, &next, cas).is_ok(),
        // First poll: several workers may take it at once, which costs one extra poll.
        None => store.set(POLL_KEY, &next, 0).is_ok(),
    }
}

/// The poll's request path: `<path>?since=<version applied>`.
pub fn poll_path(feed: &FeedSettings) -> String {
    format!("{}?since={}", feed.path, current().version())
}

/// What the console's answer to a poll changed.
#[derive(Debug, PartialEq, Eq)]
pub enum Polled {
    Unchanged,
    Adopted { version: u64, overrides: usize },
    Failed(String),
}

/// Handles the console's answer: 304 changes nothing; a 200 set is checked, published to the
/// other workers through shared data, and adopted; anything else leaves the last set applying.
pub fn answered(store: &impl SharedStore, status: Option<&str>, body: Option<&[u8]>) -> Polled {
    match status {
        Some("304") => return Polled::Unchanged,
        Some("200") => {}
        other => {
            return Polled::Failed(format!(
                "the console answered {}; the last known set keeps applying",
                other.unwrap_or("nothing")
            ))
        }
    }
    let bytes = body.unwrap_or_default();
    let (set, matcher) = match parse(bytes) {
        Ok(parsed) => parsed,
        Err(e) => return Polled::Failed(format!("{e}; the last known set keeps applying")),
    };
    if set.version == current().version() {
        return Polled::Unchanged;
    }
    let publish = store
        .set(SET_KEY, bytes, 0)
        .and_then(|()| store.set(VERSION_KEY, &set.version.to_le_bytes(), 0));
    if let Err(e) = publish {
        let e = match e {
            StoreError::CasMismatch => "compare-and-swap mismatch".to_owned(),
            StoreError::Host(h) => h,
        };
        return Polled::Failed(format!("could not share override set {}: {e}", set.version));
    }
    let overrides = set.overrides.len();
    adopt(matcher);
    Polled::Adopted {
        version: set.version,
        overrides,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::tests::MapStore;
    use dohguard_core::overrides::{Override, OverrideAction, OverrideMatch};

    fn set(version: u64, names: &[&str]) -> Vec<u8> {
        let overrides = names
            .iter()
            .enumerate()
            .map(|(i, n)| Override {
                id: format!("o{i}"),
                action: OverrideAction::Allow,
                target: OverrideMatch::Exact,
                name: (*n).into(),
                clients: vec![],
                expires_at_ms: None,
                created_ms: 1,
            })
            .collect();
        serde_json::to_vec(&OverrideSet {
            version,
            overrides,
            cache_generation: version * 10,
        })
        .unwrap()
    }

    fn raw(token: &str) -> RawOverrides {
        serde_json::from_value(serde_json::json!({"cluster": "console", "token": token})).unwrap()
    }

    #[test]
    fn settings_are_checked_and_the_token_not_shown() {
        let feed = validate(raw("0123456789abcdefXYZ")).unwrap();
        assert_eq!(feed.path, "/v1/overrides");
        assert_eq!(feed.authority, "console");
        assert_eq!(feed.authorization, "Bearer 0123456789abcdefXYZ");
        assert!(!format!("{feed:?}").contains("0123456789"));
        assert!(validate(raw("short")).is_err());
        assert!(validate(raw("has space in it 123456")).is_err());
        let mut r = raw("0123456789abcdefXYZ");
        r.poll_interval_ms = 10;
        assert!(validate(r)
            .unwrap_err()
            .to_string()
            .contains("poll_interval_ms"));
    }

    #[test]
    fn one_worker_polls_per_interval() {
        let store = MapStore::default();
        assert!(claim_poll(&store, 1000, 1000));
        assert!(!claim_poll(&store, 1500, 1000), "another worker waits");
        assert!(claim_poll(&store, 2000, 1000));
        assert!(!claim_poll(&store, 2999, 1000));
    }

    #[test]
    fn a_polled_set_reaches_the_other_workers_and_a_bad_one_changes_nothing() {
        let store = MapStore::default();
        assert_eq!(refresh(&store), Refresh::Current);
        let polled = answered(
            &store,
            Some("200"),
            Some(&set(5, &["a.test", "b.test"])[..]),
        );
        assert_eq!(
            polled,
            Polled::Adopted {
                version: 5,
                overrides: 2
            }
        );
        assert_eq!(current().version(), 5);
        assert_eq!(cache_generation(), 50, "the cache flush comes with the set");
        // Another worker (thread) sees the version and adopts the set from shared data.
        let shared = store.0.borrow().clone();
        let other = std::thread::spawn(move || {
            let store = MapStore::default();
            *store.0.borrow_mut() = shared;
            let before = (current().version(), cache_generation());
            (before, refresh(&store), current().len(), cache_generation())
        })
        .join()
        .unwrap();
        assert_eq!(
            other,
            (
                (0, 0),
                Refresh::Adopted {
                    version: 5,
                    overrides: 2
                },
                2,
                50
            )
        );
        assert_eq!(refresh(&store), Refresh::Current);
        // The console down, a wrong token, a broken set: the last known set stays.
        for (status, body) in [
            (Some("503"), None),
            (Some("401"), None),
            (None, None),
            (Some("200"), Some(&b"{not json"[..])),
        ] {
            assert!(matches!(answered(&store, status, body), Polled::Failed(_)));
            assert_eq!((current().version(), current().len()), (5, 2));
        }
        let bad = br#"{"version": 6, "overrides": [{"id": "x", "action": "deny", "match": "suffix", "name": "com", "created_ms": 1}]}"#;
        assert!(
            matches!(answered(&store, Some("200"), Some(&bad[..])), Polled::Failed(e) if e.contains("public suffix"))
        );
        assert_eq!(current().version(), 5);
        assert_eq!(answered(&store, Some("304"), None), Polled::Unchanged);
        // An emptied set (every override removed) is a new version too.
        assert_eq!(
            answered(&store, Some("200"), Some(&set(7, &[])[..])),
            Polled::Adopted {
                version: 7,
                overrides: 0
            }
        );
        assert!(none());
    }
}
