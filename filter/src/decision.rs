//! The verdict for one query, in the order CONFIG.md documents: allow list, deny list, verdict
//! cache, scorer callout, and the fallbacks when there is no scorer or it fails. Also what the
//! verdict turns into: forward or block answer, the response header, the callout request, and
//! the checks a callout reply must pass. No proxy-wasm here: the glue feeds in the inputs.

use dohguard_core::contract::{Detector, Reason, ScoreReply, ScoreRequest, Verdict};
use dohguard_core::name::model_judges;
use hickory_proto::ProtoError;

use crate::answer::{block_answer, BlockCause};
use crate::cache::{CachedVerdict, SharedStore, VerdictCache};
use crate::config::{FailureMode, Mode, Settings};
use crate::dns::DnsQuery;
use crate::metrics::Counter;

/// Where a verdict came from (cache hits keep the basis of the cached verdict).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    AllowList,
    DenyList,
    Model,
    NoScorer,
    ScorerFailure,
    /// A name the model does not judge (the root, `.arpa`): allowed unless a list says otherwise.
    Unscored,
    /// The query name was allowed, but its upstream answer points (CNAME, HTTPS/SVCB target)
    /// to a blocked name (`cname` module).
    Cname,
    /// An analyst's override (`overrides` module), checked before the lists and the cache.
    Override,
}

impl Basis {
    pub fn as_str(self) -> &'static str {
        match self {
            Basis::AllowList => "allow_list",
            Basis::DenyList => "deny_list",
            Basis::Model => "model",
            Basis::NoScorer => "no_scorer",
            Basis::ScorerFailure => "scorer_failure",
            Basis::Unscored => "unscored",
            Basis::Cname => "cname",
            Basis::Override => "override",
        }
    }

    /// The list behind a list basis (the inverse of `from_reason` for the lists).
    pub fn list_reason(self) -> Option<Reason> {
        match self {
            Basis::AllowList => Some(Reason::AllowList),
            Basis::DenyList => Some(Reason::DenyList),
            _ => None,
        }
    }

    pub(crate) fn from_reason(reason: Reason) -> Basis {
        match reason {
            Reason::AllowList => Basis::AllowList,
            Reason::DenyList => Basis::DenyList,
            Reason::Model => Basis::Model,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    pub basis: Basis,
    pub from_cache: bool,
    /// For a model verdict, the detector the scorer named (`tunnel`, `dga`, ...).
    pub detector: Option<Detector>,
}

impl Decision {
    pub(crate) fn new(verdict: Verdict, basis: Basis) -> Self {
        Decision {
            verdict,
            basis,
            from_cache: false,
            detector: None,
        }
    }

    /// The scorer's reply as a decision.
    pub fn from_reply(reply: &ScoreReply) -> Self {
        Decision {
            detector: reply.detector,
            ..Decision::new(reply.verdict, Basis::from_reason(reply.reason))
        }
    }

    /// A cached verdict as a decision.
    pub fn from_cache(hit: &CachedVerdict) -> Self {
        Decision {
            verdict: hit.verdict,
            basis: Basis::from_reason(hit.reason),
            from_cache: true,
            detector: hit.detector,
        }
    }

    /// The decision when the callout failed.
    pub fn from_failure(mode: FailureMode) -> Self {
        let verdict = match mode {
            FailureMode::Open => Verdict::Allow,
            FailureMode::Closed => Verdict::Block,
        };
        Decision::new(verdict, Basis::ScorerFailure)
    }

    /// Whether the block answer is sent (rather than the query forwarded).
    pub fn blocks(&self, mode: Mode) -> bool {
        self.verdict == Verdict::Block && mode == Mode::Enforce
    }

    /// Value of the verdict response header (format in CONFIG.md): the verdict alone, or with
    /// `detail` (a debug setting) also the basis, cache state and monitor mode, which tell a
    /// client about list membership and let it tune names against the model.
    pub fn header_value(&self, mode: Mode, detail: bool) -> String {
        if !detail {
            return self.verdict.as_str().to_owned();
        }
        // Plain pushes rather than `format!`: this runs for every decided request.
        let mut value = String::with_capacity(48);
        value.push_str(self.verdict.as_str());
        value.push_str("; reason=");
        value.push_str(self.basis.as_str());
        if let Some(detector) = self.detector {
            value.push_str("; detector=");
            value.push_str(detector.as_str());
        }
        if self.from_cache {
            value.push_str("; cache=hit");
        }
        if self.verdict == Verdict::Block && mode == Mode::Monitor {
            value.push_str("; enforced=no");
        }
        value
    }

    /// Counters to bump for this decision (three, or four for a block). An iterator over a
    /// fixed array rather than a `Vec`: this runs for every decided request.
    pub fn counters(&self, mode: Mode) -> impl Iterator<Item = Counter> {
        let verdict = match self.verdict {
            Verdict::Allow => Counter::VerdictAllow,
            Verdict::Monitor => Counter::VerdictMonitor,
            Verdict::Block => Counter::VerdictBlock,
        };
        let reason = if self.from_cache {
            Counter::ReasonCache
        } else {
            match self.basis {
                Basis::AllowList => Counter::ReasonAllowList,
                Basis::DenyList => Counter::ReasonDenyList,
                Basis::Model => Counter::ReasonModel,
                Basis::NoScorer => Counter::ReasonNoScorer,
                Basis::ScorerFailure => Counter::ReasonScorerFailure,
                Basis::Unscored => Counter::ReasonUnscored,
                Basis::Cname => Counter::ReasonCname,
                Basis::Override => Counter::ReasonOverride,
            }
        };
        let outcome = (self.verdict == Verdict::Block).then_some(if mode == Mode::Enforce {
            Counter::Blocked
        } else {
            Counter::MonitorPassed
        });
        [Some(Counter::Queries), Some(verdict), Some(reason), outcome]
            .into_iter()
            .flatten()
    }

    fn block_cause(&self) -> BlockCause {
        match self.basis {
            Basis::DenyList | Basis::AllowList | Basis::Override => BlockCause::DenyList,
            Basis::ScorerFailure => BlockCause::ScorerUnavailable,
            Basis::Model | Basis::NoScorer | Basis::Unscored => BlockCause::Model,
            Basis::Cname => BlockCause::Cname,
        }
    }
}

/// The result of deciding without the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalOutcome {
    Decided(Decision),
    /// Lists and cache had nothing and a scorer is configured: ask it.
    AskScorer,
}

/// Lists first, then the cache (reporting hit or miss), then the no-scorer fallback. `now_ms`
/// is called only when the cache is consulted (reading the clock is a host call). The cache
/// judges tunnel-suspect names by their exact name (`cache` module).
pub fn decide_locally<S: SharedStore>(
    settings: &Settings,
    cache: &VerdictCache<'_, S>,
    name: &str,
    now_ms: impl FnOnce() -> u64,
    counters: &mut Vec<Counter>,
) -> LocalOutcome {
    if let Some(listed) = listed(settings, name) {
        return LocalOutcome::Decided(listed);
    }
    if !model_judges(name) {
        return LocalOutcome::Decided(Decision::new(Verdict::Allow, Basis::Unscored));
    }
    if let Some(hit) = cached(cache, name, now_ms, counters) {
        return LocalOutcome::Decided(hit);
    }
    if settings.scorer.is_some() {
        LocalOutcome::AskScorer
    } else {
        LocalOutcome::Decided(Decision::new(Verdict::Allow, Basis::NoScorer))
    }
}

/// The allow or deny list's decision, if a rule matches.
fn listed(settings: &Settings, name: &str) -> Option<Decision> {
    let list = settings.policy.decide(name)?;
    Some(Decision::new(
        list.verdict(),
        Basis::from_reason(list.reason()),
    ))
}

/// The cached verdict, if any, counting the hit or miss (nothing when the cache is off).
fn cached<S: SharedStore>(
    cache: &VerdictCache<'_, S>,
    name: &str,
    now_ms: impl FnOnce() -> u64,
    counters: &mut Vec<Counter>,
) -> Option<Decision> {
    if !cache.enabled() {
        return None;
    }
    let hit = cache.lookup(name, now_ms());
    counters.push(if hit.is_some() {
        Counter::CacheHit
    } else {
        Counter::CacheMiss
    });
    hit.as_ref().map(Decision::from_cache)
}

/// What the filter does with the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Forward,
    /// Send this block answer.
    Answer(Vec<u8>),
}

pub fn action_for(
    settings: &Settings,
    query: &DnsQuery,
    decision: &Decision,
) -> Result<Action, ProtoError> {
    if decision.blocks(settings.mode) {
        let body = block_answer(
            query,
            &settings.block_answer,
            settings.block_ttl,
            decision.block_cause(),
            settings.block_ede,
        )?;
        Ok(Action::Answer(body))
    } else {
        Ok(Action::Forward)
    }
}

/// The JSON body of the callout for a query.
pub fn callout_body(
    name: &str,
    query: &DnsQuery,
    client: Option<String>,
    caller_records: bool,
) -> Vec<u8> {
    let request = ScoreRequest {
        name: name.to_owned(),
        qtype: query.qtype_mnemonic(),
        client,
        caller_records,
    };
    // Serialising a struct of strings cannot fail.
    serde_json::to_vec(&request).unwrap_or_default()
}

/// Why a callout produced no usable verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CalloutFailure {
    /// `dispatch_http_call` itself failed (unknown cluster, bad headers).
    Dispatch(String),
    /// No reply within the timeout.
    Timeout,
    /// A reply without a status, or with a status other than 200.
    Status(Option<String>),
    /// A 200 whose body broke the contract.
    Malformed(String),
}

impl CalloutFailure {
    pub fn counter(&self) -> Counter {
        match self {
            CalloutFailure::Dispatch(_) | CalloutFailure::Status(_) => Counter::CalloutError,
            CalloutFailure::Timeout => Counter::CalloutTimeout,
            CalloutFailure::Malformed(_) => Counter::CalloutMalformed,
        }
    }
}

impl std::fmt::Display for CalloutFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CalloutFailure::Dispatch(e) => write!(f, "dispatch failed: {e}"),
            CalloutFailure::Timeout => write!(f, "timed out"),
            CalloutFailure::Status(Some(s)) => write!(f, "HTTP status {s}"),
            CalloutFailure::Status(None) => write!(f, "reply without status"),
            CalloutFailure::Malformed(e) => write!(f, "malformed reply: {e}"),
        }
    }
}

/// Checks a callout reply for the name `asked` (normalised, as sent). Envoy does not tell the plugin why a callout failed: a timeout
/// arrives as a synthesised `504` (or, for resets, as a reply with no status at all). A failed
/// reply that arrives once the timeout has passed is therefore counted as a timeout; the 1 ms
/// slack covers both clock readings being truncated to whole milliseconds.
pub fn parse_reply(
    asked: &str,
    status: Option<&str>,
    body: Option<&[u8]>,
    elapsed_ms: u64,
    timeout_ms: u64,
) -> Result<ScoreReply, CalloutFailure> {
    match status {
        Some("200") => {}
        _ if elapsed_ms + 1 >= timeout_ms => return Err(CalloutFailure::Timeout),
        other => return Err(CalloutFailure::Status(other.map(str::to_owned))),
    }
    let body = body.unwrap_or_default();
    let reply: ScoreReply =
        serde_json::from_slice(body).map_err(|e| CalloutFailure::Malformed(e.to_string()))?;
    if !(0.0..=1.0).contains(&reply.score) {
        return Err(CalloutFailure::Malformed(format!(
            "score {} outside [0, 1]",
            reply.score
        )));
    }
    // A verdict about another name must not decide (or be cached for) this one.
    if reply.name != asked {
        return Err(CalloutFailure::Malformed(format!(
            "reply is about {:?}, not the name asked for",
            reply.name
        )));
    }
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::tests::{cache, reply, MapStore};
    use crate::dns::tests::query_bytes;
    use dohguard_core::contract::Scope;
    use hickory_proto::rr::RecordType;

    fn settings(json: &str) -> Settings {
        Settings::from_json(json.as_bytes()).unwrap()
    }

    fn local(settings: &Settings, store: &MapStore, name: &str) -> (LocalOutcome, Vec<Counter>) {
        let cache = cache(store, settings.cache_max_entries, settings.cache_max_ttl);
        let mut counters = Vec::new();
        (
            decide_locally(settings, &cache, name, || 0, &mut counters),
            counters,
        )
    }

    #[test]
    fn lists_decide_before_cache_and_scorer() {
        let s =
            settings(r#"{"allow":["ok.bad.com"],"deny":[".bad.com"],"scorer":{"cluster":"s"}}"#);
        let store = MapStore::default();
        let (out, counters) = local(&s, &store, "x.bad.com");
        assert_eq!(
            out,
            LocalOutcome::Decided(Decision::new(Verdict::Block, Basis::DenyList))
        );
        assert!(counters.is_empty(), "list hits do not touch the cache");
        let (out, _) = local(&s, &store, "ok.bad.com");
        assert_eq!(
            out,
            LocalOutcome::Decided(Decision::new(Verdict::Allow, Basis::AllowList))
        );
        let (out, counters) = local(&s, &store, "new.org");
        assert_eq!(out, LocalOutcome::AskScorer);
        assert_eq!(counters, vec![Counter::CacheMiss]);
    }

    #[test]
    fn cache_hit_is_reported_with_the_cached_basis() {
        let s = settings(r#"{"scorer":{"cluster":"s"}}"#);
        let store = MapStore::default();
        cache(&store, s.cache_max_entries, s.cache_max_ttl)
            .insert(
                "a.dga.com",
                &reply("a.dga.com", Verdict::Block, Scope::RegisteredDomain, 60),
                0,
            )
            .unwrap();
        let (out, counters) = local(&s, &store, "b.dga.com");
        let LocalOutcome::Decided(d) = out else {
            panic!("expected a hit")
        };
        assert!(d.from_cache && d.basis == Basis::Model && d.verdict == Verdict::Block);
        assert_eq!(counters, vec![Counter::CacheHit]);
        assert_eq!(
            d.header_value(Mode::Enforce, true),
            "block; reason=model; cache=hit"
        );
        assert_eq!(d.header_value(Mode::Enforce, false), "block");
        assert!(d
            .counters(Mode::Enforce)
            .collect::<Vec<_>>()
            .contains(&Counter::ReasonCache));
    }

    #[test]
    fn a_tunnel_suspect_name_is_not_answered_by_its_allowed_domain() {
        let s = settings(r#"{"scorer":{"cluster":"s"}}"#);
        let store = MapStore::default();
        cache(&store, s.cache_max_entries, s.cache_max_ttl)
            .insert(
                "www.t.com",
                &reply("www.t.com", Verdict::Allow, Scope::RegisteredDomain, 60),
                0,
            )
            .unwrap();
        let (out, _) = local(&s, &store, "mail.t.com");
        assert!(matches!(out, LocalOutcome::Decided(d) if d.from_cache));
        let (out, counters) = local(&s, &store, "mrqxiyjaon2gk43uebsxq2lmmfzw4zlsfzz.t.com");
        assert_eq!(out, LocalOutcome::AskScorer);
        assert_eq!(counters, vec![Counter::CacheMiss]);
    }

    #[test]
    fn the_detector_reaches_the_decision_and_the_debug_header() {
        let mut r = reply("x.t.com", Verdict::Block, Scope::Name, 60);
        r.detector = Some(Detector::Tunnel);
        let d = Decision::from_reply(&r);
        assert_eq!(d.detector, Some(Detector::Tunnel));
        assert_eq!(
            d.header_value(Mode::Enforce, true),
            "block; reason=model; detector=tunnel"
        );
    }

    #[test]
    fn root_and_arpa_names_are_decided_without_the_model() {
        let s = settings(r#"{"deny":[".bad.in-addr.arpa"],"scorer":{"cluster":"s"}}"#);
        let store = MapStore::default();
        for name in [".", "10.in-addr.arpa", "b.ip6.arpa"] {
            let (out, counters) = local(&s, &store, name);
            assert_eq!(
                out,
                LocalOutcome::Decided(Decision::new(Verdict::Allow, Basis::Unscored)),
                "{name}"
            );
            assert!(counters.is_empty(), "{name}: no cache lookup");
        }
        let (out, _) = local(&s, &store, "x.bad.in-addr.arpa");
        assert_eq!(
            out,
            LocalOutcome::Decided(Decision::new(Verdict::Block, Basis::DenyList)),
            "lists still apply under .arpa"
        );
    }

    #[test]
    fn without_scorer_unlisted_names_are_allowed() {
        let s = settings("{}");
        let (out, _) = local(&s, &MapStore::default(), "anything.com");
        assert_eq!(
            out,
            LocalOutcome::Decided(Decision::new(Verdict::Allow, Basis::NoScorer))
        );
    }

    #[test]
    fn monitor_mode_forwards_blocks_and_says_so() {
        let s = settings(r#"{"mode":"monitor","deny":["bad.com"]}"#);
        let q = DnsQuery::parse(&query_bytes("bad.com.", RecordType::A, false)).unwrap();
        let d = Decision::new(Verdict::Block, Basis::DenyList);
        assert_eq!(action_for(&s, &q, &d).unwrap(), Action::Forward);
        assert_eq!(
            d.header_value(s.mode, true),
            "block; reason=deny_list; enforced=no"
        );
        assert_eq!(d.header_value(s.mode, false), "block");
        assert!(d
            .counters(s.mode)
            .collect::<Vec<_>>()
            .contains(&Counter::MonitorPassed));
        let enforce = settings(r#"{"deny":["bad.com"]}"#);
        assert!(matches!(
            action_for(&enforce, &q, &d).unwrap(),
            Action::Answer(_)
        ));
        assert!(d
            .counters(enforce.mode)
            .collect::<Vec<_>>()
            .contains(&Counter::Blocked));
    }

    #[test]
    fn failure_modes() {
        assert_eq!(
            Decision::from_failure(FailureMode::Open).verdict,
            Verdict::Allow
        );
        let closed = Decision::from_failure(FailureMode::Closed);
        assert_eq!(closed.verdict, Verdict::Block);
        assert_eq!(
            closed.header_value(Mode::Enforce, true),
            "block; reason=scorer_failure"
        );
    }

    #[test]
    fn callout_body_follows_the_contract() {
        let q = DnsQuery::parse(&query_bytes("x.com.", RecordType::TXT, false)).unwrap();
        let body = callout_body("x.com", &q, Some("192.0.2.7".into()), false);
        assert_eq!(
            body,
            br#"{"name":"x.com","qtype":"TXT","client":"192.0.2.7"}"#
        );
    }

    #[test]
    fn reply_checks() {
        let good = br#"{"name":"a.com","registered_domain":"a.com","score":0.5,"verdict":"monitor",
            "reason":"model","scope":"name","model_version":"v","ttl":5}"#;
        assert_eq!(
            parse_reply("a.com", Some("200"), Some(good), 1, 200)
                .unwrap()
                .verdict,
            Verdict::Monitor
        );
        assert_eq!(
            parse_reply("a.com", None, None, 200, 200),
            Err(CalloutFailure::Timeout)
        );
        assert_eq!(
            parse_reply("a.com", None, None, 3, 200),
            Err(CalloutFailure::Status(None))
        );
        assert_eq!(
            parse_reply("a.com", Some("503"), Some(good), 3, 200),
            Err(CalloutFailure::Status(Some("503".into())))
        );
        assert!(matches!(
            parse_reply("a.com", Some("200"), Some(b"{"), 3, 200),
            Err(CalloutFailure::Malformed(_))
        ));
        assert!(matches!(
            parse_reply("a.com", Some("200"), None, 3, 200),
            Err(CalloutFailure::Malformed(_))
        ));
        let bad_score =
            br#"{"name":"a.com","registered_domain":"a.com","score":7,"verdict":"block",
            "reason":"model","scope":"name","model_version":"v","ttl":5}"#;
        assert!(matches!(
            parse_reply("a.com", Some("200"), Some(bad_score), 3, 200),
            Err(CalloutFailure::Malformed(_))
        ));
        assert_eq!(CalloutFailure::Timeout.counter(), Counter::CalloutTimeout);
        // A well-formed verdict about another name is malformed for this callout.
        let other = parse_reply("b.com", Some("200"), Some(good), 1, 200).unwrap_err();
        assert!(
            matches!(&other, CalloutFailure::Malformed(m) if m.contains("\"a.com\"")),
            "{other:?}"
        );
        assert_eq!(other.counter(), Counter::CalloutMalformed);
    }
}
