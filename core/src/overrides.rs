//! Analysts' overrides (contract 4 in `docs/contracts.md`, "The override feed"): the versioned set
//! the console serves on `GET /v1/overrides` and the filter applies before its lists and its
//! verdict cache, and the one matcher that applies it.
//!
//! An override allows or denies names by one of three targets, each compiled into core's one
//! rule matcher ([`RuleSet`]):
//! - `exact`: that name only (rule `name`);
//! - `registered_domain`: a registered domain and every name under it (rule `.name`; the
//!   name must be a registered domain);
//! - `suffix`: any name at or below a registered domain, and every name under it (rule
//!   `.name`).
//!
//! A public suffix (`com`, `github.io`) is never a target. An override may be scoped to
//! clients (IP addresses or CIDR blocks, and mesh identities `spiffe://...`; any one of them
//! matching is enough) and may expire. When several apply to a name, the most specific rule
//! wins (exact over suffix, a longer suffix over a shorter one); on the same rule a
//! client-scoped override beats an unscoped one, and then the newest (`created_ms`) wins.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::contract::Verdict;
use crate::name::{normalize, registered_domain};
use crate::rules::{MatchKind, RuleSet};

/// What an override does to the names it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OverrideAction {
    Allow,
    Deny,
}

impl OverrideAction {
    pub fn verdict(self) -> Verdict {
        match self {
            OverrideAction::Allow => Verdict::Allow,
            OverrideAction::Deny => Verdict::Block,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OverrideAction::Allow => "allow",
            OverrideAction::Deny => "deny",
        }
    }
}

/// Which names an override's `name` covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverrideMatch {
    Exact,
    RegisteredDomain,
    Suffix,
}

impl OverrideMatch {
    pub fn as_str(self) -> &'static str {
        match self {
            OverrideMatch::Exact => "exact",
            OverrideMatch::RegisteredDomain => "registered_domain",
            OverrideMatch::Suffix => "suffix",
        }
    }
}

/// One override as served to the filter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Override {
    /// Stable id (the console's document id); recorded as the decision's rule.
    pub id: String,
    pub action: OverrideAction,
    #[serde(rename = "match")]
    pub target: OverrideMatch,
    /// Normalised name (see [`check_target`]).
    pub name: String,
    /// IP addresses, CIDR blocks or `spiffe://` identities; empty: every client.
    #[serde(default)]
    pub clients: Vec<String>,
    /// Unix milliseconds after which it no longer applies; `None`: never expires.
    #[serde(default)]
    pub expires_at_ms: Option<u64>,
    /// Unix milliseconds it was created (ties go to the newest).
    pub created_ms: u64,
}

/// The whole set at one version (`GET /v1/overrides` answers it; 304 when `since` is current).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverrideSet {
    /// Changes whenever an override is added or removed, or the cache is flushed (never
    /// reused).
    pub version: u64,
    pub overrides: Vec<Override>,
    /// When an operator last flushed the gateway's verdict cache (Unix ms; 0: never). A
    /// filter that adopts a set with another value stops serving every verdict cached before.
    #[serde(default)]
    pub cache_generation: u64,
}

/// Why an override (or a set) is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OverrideError {
    #[error("name {0:?}: {1}")]
    Name(String, String),
    #[error("{0:?} is a public suffix: an override must be at or below a registered domain")]
    PublicSuffix(String),
    #[error("{name:?} is not a registered domain; use {registered:?} or match `suffix`")]
    NotRegisteredDomain { name: String, registered: String },
    #[error("client {0:?}: not an IP address, a CIDR block or a spiffe:// identity")]
    Client(String),
    #[error("override #{index} ({id}): {source}")]
    InSet {
        index: usize,
        id: String,
        #[source]
        source: Box<OverrideError>,
    },
}

/// Checks and normalises an override's target: the normalised name, refused when it is a
/// public suffix, or (for `registered_domain`) when it is not itself a registered domain.
pub fn check_target(target: OverrideMatch, raw: &str) -> Result<String, OverrideError> {
    let name = normalize(raw).map_err(|e| OverrideError::Name(raw.to_owned(), e.to_string()))?;
    let Some(registered) = registered_domain(&name) else {
        return Err(OverrideError::PublicSuffix(name));
    };
    if target == OverrideMatch::RegisteredDomain && registered != name {
        return Err(OverrideError::NotRegisteredDomain {
            registered: registered.to_owned(),
            name,
        });
    }
    Ok(name)
}

/// One client scope entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientScope {
    Net(IpNet),
    Principal(String),
}

impl ClientScope {
    /// `10.0.0.0/8`, `192.0.2.7` (one address), `2001:db8::/32`, or `spiffe://trust/path`.
    pub fn parse(raw: &str) -> Result<Self, OverrideError> {
        let raw = raw.trim();
        if let Some(rest) = raw.strip_prefix("spiffe://") {
            if !rest.is_empty() && !rest.contains(char::is_whitespace) {
                return Ok(ClientScope::Principal(raw.to_owned()));
            }
            return Err(OverrideError::Client(raw.to_owned()));
        }
        if let Ok(net) = raw.parse::<IpNet>() {
            return Ok(ClientScope::Net(net.trunc()));
        }
        raw.parse::<IpAddr>()
            .map(|ip| ClientScope::Net(IpNet::from(ip)))
            .map_err(|_| OverrideError::Client(raw.to_owned()))
    }

    /// The canonical text (`192.0.2.7/32`, `10.0.0.0/8`, the identity as given).
    pub fn text(&self) -> String {
        match self {
            ClientScope::Net(net) => net.to_string(),
            ClientScope::Principal(p) => p.clone(),
        }
    }
}

/// Who sent a query, asked only when a client-scoped override is a candidate (reading either
/// is a host call in the filter).
pub trait Requester {
    fn ip(&mut self) -> Option<IpAddr>;
    fn principal(&mut self) -> Option<String>;
}

/// The override that decides a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverrideHit<'m> {
    pub id: &'m str,
    pub action: OverrideAction,
}

#[derive(Debug, Clone)]
struct Compiled {
    id: String,
    action: OverrideAction,
    clients: Vec<ClientScope>,
    expires_at_ms: Option<u64>,
    created_ms: u64,
}

/// A compiled [`OverrideSet`]. Matching walks the name's suffixes with [`RuleSet`] (one map
/// probe per label); an empty matcher answers without looking at the name.
#[derive(Debug, Clone, Default)]
pub struct OverrideMatcher {
    version: u64,
    cache_generation: u64,
    rules: RuleSet,
    /// Overrides per rule (`name`, exact?), oldest first.
    by_rule: HashMap<(Box<str>, bool), Vec<Compiled>>,
    len: usize,
}

impl OverrideMatcher {
    /// Compiles a set; the first bad override refuses the whole set (a half-applied set
    /// would silently drop an analyst's decision).
    pub fn compile(set: &OverrideSet) -> Result<Self, OverrideError> {
        let mut patterns = Vec::with_capacity(set.overrides.len());
        let mut by_rule: HashMap<(Box<str>, bool), Vec<Compiled>> = HashMap::new();
        for (index, o) in set.overrides.iter().enumerate() {
            let in_set = |source: OverrideError| OverrideError::InSet {
                index,
                id: o.id.clone(),
                source: Box::new(source),
            };
            let name = check_target(o.target, &o.name).map_err(in_set)?;
            let clients = o
                .clients
                .iter()
                .map(|c| ClientScope::parse(c))
                .collect::<Result<Vec<_>, _>>()
                .map_err(in_set)?;
            let exact = o.target == OverrideMatch::Exact;
            patterns.push(if exact {
                name.clone()
            } else {
                format!(".{name}")
            });
            by_rule
                .entry((name.into_boxed_str(), exact))
                .or_default()
                .push(Compiled {
                    id: o.id.clone(),
                    action: o.action,
                    clients,
                    expires_at_ms: o.expires_at_ms,
                    created_ms: o.created_ms,
                });
        }
        for list in by_rule.values_mut() {
            list.sort_by_key(|c| c.created_ms);
        }
        let rules = RuleSet::from_patterns(patterns.iter().map(String::as_str))
            .expect("targets were normalised above");
        Ok(OverrideMatcher {
            version: set.version,
            cache_generation: set.cache_generation,
            rules,
            by_rule,
            len: set.overrides.len(),
        })
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    /// The set's [`OverrideSet::cache_generation`].
    pub fn cache_generation(&self) -> u64 {
        self.cache_generation
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The override deciding the normalised `name` for this requester at `now_ms` (read
    /// only when a candidate can expire), or `None`.
    pub fn decide(
        &self,
        name: &str,
        who: &mut dyn Requester,
        now_ms: &mut dyn FnMut() -> u64,
    ) -> Option<OverrideHit<'_>> {
        if self.len == 0 {
            return None;
        }
        let mut now = None;
        let mut ip = None;
        let mut principal = None;
        for (kind, anchor) in self.rules.matching_rules(name) {
            if kind == MatchKind::Subdomain {
                continue; // overrides compile no `*.` rules
            }
            let key = (Box::<str>::from(anchor), kind == MatchKind::Exact);
            let Some(list) = self.by_rule.get(&key) else {
                continue;
            };
            let mut live = list.iter().rev().filter(|c| match c.expires_at_ms {
                None => true,
                Some(at) => *now.get_or_insert_with(&mut *now_ms) < at,
            });
            let mut unscoped = None;
            let scoped = live.find(|c| {
                if c.clients.is_empty() {
                    unscoped = unscoped.or(Some(*c));
                    return false;
                }
                c.clients.iter().any(|scope| match scope {
                    ClientScope::Net(net) => ip
                        .get_or_insert_with(|| who.ip())
                        .is_some_and(|ip| net.contains(&ip)),
                    ClientScope::Principal(p) => {
                        principal.get_or_insert_with(|| who.principal()).as_deref()
                            == Some(p.as_str())
                    }
                })
            });
            if let Some(c) = scoped.or(unscoped) {
                return Some(OverrideHit {
                    id: &c.id,
                    action: c.action,
                });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Who(Option<&'static str>, Option<&'static str>, usize);

    impl Requester for Who {
        fn ip(&mut self) -> Option<IpAddr> {
            self.2 += 1;
            self.0.map(|s| s.parse().unwrap())
        }
        fn principal(&mut self) -> Option<String> {
            self.2 += 1;
            self.1.map(str::to_owned)
        }
    }

    fn o(id: &str, action: OverrideAction, target: OverrideMatch, name: &str) -> Override {
        Override {
            id: id.into(),
            action,
            target,
            name: name.into(),
            clients: vec![],
            expires_at_ms: None,
            created_ms: 1,
        }
    }

    fn decide<'m>(m: &'m OverrideMatcher, name: &str, who: &mut Who, now: u64) -> Option<&'m str> {
        m.decide(name, who, &mut || now).map(|h| h.id)
    }

    use OverrideAction::{Allow, Deny};
    use OverrideMatch::{Exact, RegisteredDomain, Suffix};

    #[test]
    fn targets_are_checked_and_public_suffixes_refused() {
        assert_eq!(
            check_target(Exact, "WWW.Example.COM.").unwrap(),
            "www.example.com"
        );
        assert!(matches!(
            check_target(Suffix, "com"),
            Err(OverrideError::PublicSuffix(_))
        ));
        assert!(matches!(
            check_target(Exact, "github.io"),
            Err(OverrideError::PublicSuffix(_))
        ));
        assert!(matches!(
            check_target(RegisteredDomain, "www.example.com"),
            Err(OverrideError::NotRegisteredDomain { .. })
        ));
        assert_eq!(
            check_target(Suffix, "cdn.example.com").unwrap(),
            "cdn.example.com"
        );
        assert!(check_target(Exact, "bad..name").is_err());
    }

    #[test]
    fn clients_parse_as_nets_or_identities() {
        assert_eq!(
            ClientScope::parse("10.1.2.3/8").unwrap().text(),
            "10.0.0.0/8"
        );
        assert_eq!(
            ClientScope::parse("192.0.2.7").unwrap().text(),
            "192.0.2.7/32"
        );
        assert!(ClientScope::parse("spiffe://mesh/ns/a/sa/b").is_ok());
        assert!(ClientScope::parse("10.0.0.0/33").is_err());
        assert!(ClientScope::parse("spiffe://").is_err());
        assert!(ClientScope::parse("laptop").is_err());
    }

    #[test]
    fn a_set_from_before_cache_flushes_reads_as_never_flushed() {
        let set: OverrideSet = serde_json::from_str(r#"{"version": 3, "overrides": []}"#).unwrap();
        assert_eq!(set.cache_generation, 0);
    }

    #[test]
    fn targets_match_as_documented() {
        let set = OverrideSet {
            version: 7,
            overrides: vec![
                o("x", Allow, Exact, "a.example.com"),
                o("r", Deny, RegisteredDomain, "evil.test"),
                o("s", Allow, Suffix, "cdn.evil.test"),
            ],
            cache_generation: 1_700_000_000_000,
        };
        let m = OverrideMatcher::compile(&set).unwrap();
        assert_eq!(m.version(), 7);
        assert_eq!(m.cache_generation(), 1_700_000_000_000);
        let mut who = Who(None, None, 0);
        assert_eq!(decide(&m, "a.example.com", &mut who, 0), Some("x"));
        assert_eq!(decide(&m, "b.a.example.com", &mut who, 0), None);
        assert_eq!(decide(&m, "evil.test", &mut who, 0), Some("r"));
        assert_eq!(decide(&m, "x.y.evil.test", &mut who, 0), Some("r"));
        // The longer suffix wins.
        assert_eq!(decide(&m, "cdn.evil.test", &mut who, 0), Some("s"));
        assert_eq!(decide(&m, "img.cdn.evil.test", &mut who, 0), Some("s"));
        assert_eq!(decide(&m, "notevil.test", &mut who, 0), None);
        assert_eq!(who.2, 0, "no client was asked about when nothing is scoped");
    }

    #[test]
    fn scoped_beats_unscoped_and_newest_wins() {
        let mut scoped = o("scoped", Allow, Suffix, "evil.test");
        scoped.clients = vec!["10.0.0.0/8".into(), "spiffe://mesh/sa/ci".into()];
        let mut older = o("older", Deny, Suffix, "evil.test");
        older.created_ms = 1;
        let mut newer = o("newer", Allow, Suffix, "evil.test");
        newer.created_ms = 2;
        let m = OverrideMatcher::compile(&OverrideSet {
            version: 1,
            overrides: vec![newer, scoped, older],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            decide(&m, "evil.test", &mut Who(Some("10.9.9.9"), None, 0), 0),
            Some("scoped")
        );
        assert_eq!(
            decide(
                &m,
                "evil.test",
                &mut Who(Some("192.0.2.1"), Some("spiffe://mesh/sa/ci"), 0),
                0
            ),
            Some("scoped")
        );
        assert_eq!(
            decide(&m, "evil.test", &mut Who(Some("192.0.2.1"), None, 0), 0),
            Some("newer")
        );
    }

    #[test]
    fn expired_overrides_stop_applying() {
        let mut temp = o("temp", Allow, Exact, "a.evil.test");
        temp.expires_at_ms = Some(1000);
        let m = OverrideMatcher::compile(&OverrideSet {
            version: 1,
            overrides: vec![o("deny", Deny, Suffix, "evil.test"), temp],
            ..Default::default()
        })
        .unwrap();
        let mut who = Who(None, None, 0);
        assert_eq!(decide(&m, "a.evil.test", &mut who, 999), Some("temp"));
        assert_eq!(decide(&m, "a.evil.test", &mut who, 1000), Some("deny"));
    }

    #[test]
    fn one_bad_override_refuses_the_set() {
        let err = OverrideMatcher::compile(&OverrideSet {
            version: 1,
            overrides: vec![
                o("ok", Allow, Exact, "a.test"),
                o("bad", Deny, Suffix, "com"),
            ],
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("#1 (bad)"), "{err}");
        let mut c = o("c", Deny, Exact, "a.test");
        c.clients = vec!["nope".into()];
        assert!(OverrideMatcher::compile(&OverrideSet {
            version: 1,
            overrides: vec![c],
            ..Default::default()
        })
        .is_err());
    }

    #[test]
    fn the_wire_format_is_the_documented_one() {
        let json = r#"{"version": 3, "overrides": [{"id": "ab", "action": "deny",
            "match": "registered_domain", "name": "evil.test", "clients": ["10.0.0.0/8"],
            "expires_at_ms": 5, "created_ms": 4}]}"#;
        let set: OverrideSet = serde_json::from_str(json).unwrap();
        assert_eq!(set.overrides[0].target, RegisteredDomain);
        let back = serde_json::to_value(&set).unwrap();
        assert_eq!(back["overrides"][0]["match"], "registered_domain");
    }

    #[test]
    fn an_empty_matcher_matches_nothing() {
        let m = OverrideMatcher::default();
        assert!(m.is_empty());
        assert_eq!(decide(&m, "a.test", &mut Who(None, None, 0), 0), None);
    }
}
