//! CNAME and alias cloaking: the upstream answer of an allowed name is read on the response
//! path, and the names it points to (CNAME targets, HTTPS/SVCB target names) are judged like
//! query names (allow/deny lists, then the verdict cache). A blocked target turns the answer
//! into the block answer, reason `cname`. The work is bounded: answers over
//! `cname.max_answer_bytes` are not parsed, at most `cname.max_targets` distinct targets are
//! judged, and only the answer section is read. Pure: the glue hands in the body bytes, the
//! cache and a clock.

use dohguard_core::contract::Verdict;
use dohguard_core::name::{model_judges, normalize};
use dohguard_core::rules::{ListDecision, Policy};
use hickory_proto::op::{Header, Query};
use hickory_proto::rr::rdata::SVCB;
use hickory_proto::rr::{Name, RData, Record};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use thiserror::Error;

use crate::cache::{SharedStore, VerdictCache};
use crate::config::{CnameSettings, Mode, Oversize};
use crate::decision::{Basis, Decision};
use crate::metrics::Counter;

/// Why an answer was not (fully) inspected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Uninspected {
    #[error("answer of {size} bytes is over cname.max_answer_bytes ({max})")]
    TooLarge { size: usize, max: usize },
    #[error("answer names more than cname.max_targets ({max}) distinct targets")]
    TooManyTargets { max: usize },
    #[error("upstream answer is not a DNS response: {0}")]
    Malformed(String),
}

/// The target that got an answer blocked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetHit {
    /// The normalised target name.
    pub target: String,
    /// The deny-list rule it matched (list syntax); `None` when the verdict cache blocked it.
    pub rule: Option<String>,
}

/// What the inspection of one upstream answer found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inspection {
    /// No target is blocked (or the answer points nowhere): forward it as it is.
    Clean,
    /// A target is blocked.
    Blocked(TargetHit),
    /// Not inspected; [`Inspection::outcome`] applies `cname.oversize` to the bounds.
    Uninspected(Uninspected),
}

/// What the glue does with the upstream answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Forward,
    /// Replace it with the block answer (in monitor mode: count and record, then forward);
    /// `hit` is `None` when an over-size answer is blocked by `cname.oversize: block`.
    Block(Option<TargetHit>),
}

impl Inspection {
    pub fn outcome(&self, settings: &CnameSettings) -> Outcome {
        match self {
            Inspection::Clean | Inspection::Uninspected(Uninspected::Malformed(_)) => {
                Outcome::Forward
            }
            Inspection::Blocked(hit) => Outcome::Block(Some(hit.clone())),
            Inspection::Uninspected(_) => match settings.oversize {
                Oversize::Forward => Outcome::Forward,
                Oversize::Block => Outcome::Block(None),
            },
        }
    }

    /// `dohguard.cname.inspected` or `dohguard.cname.uninspected`.
    pub fn counter(&self) -> Counter {
        match self {
            Inspection::Clean | Inspection::Blocked(_) => Counter::CnameInspected,
            Inspection::Uninspected(_) => Counter::CnameUninspected,
        }
    }
}

/// Whether the upstream answer of a forwarded query with this decision is inspected: not for
/// allow-listed or override-allowed names (the operator or an analyst trusts them and what they
/// point to) nor for names already
/// blocked (forwarded only in monitor mode, and recorded as blocked already).
pub fn inspects(decision: &Decision) -> bool {
    !matches!(decision.basis, Basis::AllowList | Basis::Override)
        && decision.verdict != Verdict::Block
}

/// The decision that replaces the query's own when its answer is blocked.
pub fn decision() -> Decision {
    Decision {
        verdict: Verdict::Block,
        basis: Basis::Cname,
        from_cache: false,
        detector: None,
    }
}

/// Counters of a block on the response path: the verdict, reason `cname` and the outcome
/// (`blocked`, or `monitor_passed` in monitor mode). `dohguard.queries` is not bumped again:
/// the query was counted, under its own reason, when it was forwarded.
pub fn counters(mode: Mode) -> impl Iterator<Item = Counter> {
    decision().counters(mode).filter(|c| *c != Counter::Queries)
}

/// Inspects an upstream DoH answer of `size` bytes (`body` holds them when `size` is within
/// `cname.max_answer_bytes`; the glue does not read larger bodies).
pub fn inspect<S: SharedStore>(
    settings: &CnameSettings,
    policy: &Policy,
    cache: &VerdictCache<'_, S>,
    size: usize,
    body: &[u8],
    now_ms: impl FnOnce() -> u64,
) -> Inspection {
    if size > settings.max_answer_bytes {
        return Inspection::Uninspected(Uninspected::TooLarge {
            size,
            max: settings.max_answer_bytes,
        });
    }
    match answer_targets(body, settings.max_targets) {
        Ok(targets) => match judge(policy, cache, &targets, now_ms) {
            Some(hit) => Inspection::Blocked(hit),
            None => Inspection::Clean,
        },
        Err(why) => Inspection::Uninspected(why),
    }
}

/// The distinct names the answer section points to, in order: CNAME targets and the target
/// names of HTTPS/SVCB records (AliasMode, and ServiceMode targets other than `.`, which
/// means the owner). Targets that are not host names (odd bytes) cannot match a list and are
/// skipped. Reads the header, the questions and the answer section only, and stops with
/// [`Uninspected::TooManyTargets`] once more than `max_targets` distinct targets were seen.
pub fn answer_targets(bytes: &[u8], max_targets: usize) -> Result<Vec<String>, Uninspected> {
    let malformed = |e: &dyn std::fmt::Display| Uninspected::Malformed(e.to_string());
    let mut decoder = BinDecoder::new(bytes);
    let header = Header::read(&mut decoder).map_err(|e| malformed(&e))?;
    if header.metadata.message_type != hickory_proto::op::MessageType::Response {
        return Err(Uninspected::Malformed("QR bit is 0 (a query)".into()));
    }
    for _ in 0..header.counts.queries {
        Query::read(&mut decoder).map_err(|e| malformed(&e))?;
    }
    let mut targets: Vec<String> = Vec::new();
    for _ in 0..header.counts.answers {
        let record = Record::<RData>::read(&mut decoder).map_err(|e| malformed(&e))?;
        let Some(target) = target_of(&record).and_then(target_text) else {
            continue;
        };
        if targets.contains(&target) {
            continue;
        }
        if targets.len() == max_targets {
            return Err(Uninspected::TooManyTargets { max: max_targets });
        }
        targets.push(target);
    }
    Ok(targets)
}

fn target_of(record: &Record) -> Option<&Name> {
    fn svcb(s: &SVCB) -> Option<&Name> {
        (!s.target_name.is_root()).then_some(&s.target_name)
    }
    match &record.data {
        RData::CNAME(cname) => Some(&cname.0),
        RData::HTTPS(https) => svcb(&https.0),
        RData::SVCB(s) => svcb(s),
        _ => None,
    }
}

/// A target in normalised text form; `None` for names that are not host names.
fn target_text(name: &Name) -> Option<String> {
    if name.is_root() {
        return None;
    }
    let mut text = String::with_capacity(64);
    for label in name.iter() {
        if !text.is_empty() {
            text.push('.');
        }
        text.push_str(std::str::from_utf8(label).ok()?);
    }
    normalize(&text).ok()
}

/// The first blocked target: a deny-list match (unless the allow list also matches it), or a
/// block verdict in the verdict cache. The clock is read once, and only if the cache is asked.
pub fn judge<S: SharedStore>(
    policy: &Policy,
    cache: &VerdictCache<'_, S>,
    targets: &[String],
    now_ms: impl FnOnce() -> u64,
) -> Option<TargetHit> {
    let mut now_ms = Some(now_ms);
    let mut now = None;
    for target in targets {
        match policy.decide(target) {
            Some(ListDecision::Allow(_)) => continue,
            Some(ListDecision::Deny(_)) => {
                return Some(TargetHit {
                    target: target.clone(),
                    rule: policy.rule_for(target, dohguard_core::contract::Reason::DenyList),
                });
            }
            None => {}
        }
        if !model_judges(target) || !cache.enabled() {
            continue;
        }
        let at = *now.get_or_insert_with(|| now_ms.take().map_or(0, |f| f()));
        if cache
            .lookup(target, at)
            .is_some_and(|hit| hit.verdict == Verdict::Block)
        {
            return Some(TargetHit {
                target: target.clone(),
                rule: None,
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::tests::{reply, MapStore};
    use crate::config::Settings;
    use dohguard_core::contract::Scope;
    use hickory_proto::op::{Message, MessageType, OpCode};
    use hickory_proto::rr::rdata::{A, CNAME, HTTPS};
    use hickory_proto::rr::RecordType;

    fn name(text: &str) -> Name {
        Name::from_ascii(text).unwrap()
    }

    /// An upstream response to `qname`/`qtype` with these answer records.
    fn response(qname: &str, qtype: RecordType, answers: Vec<(&str, RData)>) -> Vec<u8> {
        let mut msg = Message::new(0x1234, MessageType::Response, OpCode::Query);
        msg.add_query(Query::query(name(qname), qtype));
        for (owner, data) in answers {
            msg.add_answer(Record::from_rdata(name(owner), 300, data));
        }
        msg.to_vec().unwrap()
    }

    fn cname(target: &str) -> RData {
        RData::CNAME(CNAME(name(target)))
    }

    fn https(priority: u16, target: &str) -> RData {
        RData::HTTPS(HTTPS(SVCB::new(priority, name(target), Vec::new())))
    }

    fn a() -> RData {
        RData::A(A::new(192, 0, 2, 1))
    }

    fn settings(json: &str) -> Settings {
        Settings::from_json(json.as_bytes()).unwrap()
    }

    #[test]
    fn a_cname_chain_yields_every_target_in_order() {
        let bytes = response(
            "cloak.example.test.",
            RecordType::A,
            vec![
                ("cloak.example.test.", cname("Hop.Example.NET.")),
                ("hop.example.net.", cname("tracker.evil.test.")),
                ("tracker.evil.test.", a()),
            ],
        );
        assert_eq!(
            answer_targets(&bytes, 8).unwrap(),
            vec!["hop.example.net", "tracker.evil.test"]
        );
    }

    #[test]
    fn https_and_svcb_targets_count_but_not_the_dot() {
        let bytes = response(
            "svc.example.test.",
            RecordType::HTTPS,
            vec![
                ("svc.example.test.", https(0, "alias.evil.test.")),
                ("svc.example.test.", https(1, ".")),
                ("svc.example.test.", https(2, "pool.cdn.test.")),
                (
                    "_dns.svc.example.test.",
                    RData::SVCB(SVCB::new(0, name("svcb.evil.test."), Vec::new())),
                ),
            ],
        );
        assert_eq!(
            answer_targets(&bytes, 8).unwrap(),
            vec!["alias.evil.test", "pool.cdn.test", "svcb.evil.test"]
        );
    }

    #[test]
    fn plain_and_empty_answers_have_no_targets() {
        let plain = response(
            "www.example.test.",
            RecordType::A,
            vec![("www.example.test.", a())],
        );
        assert!(answer_targets(&plain, 8).unwrap().is_empty());
        let empty = response("nx.example.test.", RecordType::A, vec![]);
        assert!(answer_targets(&empty, 8).unwrap().is_empty());
    }

    #[test]
    fn targets_are_bounded_and_duplicates_count_once() {
        let chain: Vec<(String, RData)> = (0..10)
            .map(|i| (format!("h{i}.test."), cname(&format!("h{}.test.", i + 1))))
            .collect();
        let answers = chain.iter().map(|(o, d)| (o.as_str(), d.clone())).collect();
        let bytes = response("h0.test.", RecordType::A, answers);
        assert_eq!(answer_targets(&bytes, 10).unwrap().len(), 10);
        assert_eq!(
            answer_targets(&bytes, 9),
            Err(Uninspected::TooManyTargets { max: 9 })
        );
        let twice = response(
            "a.test.",
            RecordType::A,
            vec![("a.test.", cname("b.test.")), ("a.test.", cname("B.test."))],
        );
        assert_eq!(answer_targets(&twice, 1).unwrap(), vec!["b.test"]);
    }

    #[test]
    fn malformed_answers_are_errors_not_empty() {
        let good = response(
            "cloak.example.test.",
            RecordType::A,
            vec![("cloak.example.test.", cname("tracker.evil.test."))],
        );
        for cut in 0..good.len() {
            assert!(
                matches!(
                    answer_targets(&good[..cut], 8),
                    Err(Uninspected::Malformed(_))
                ),
                "cut at {cut}"
            );
        }
        let mut query = good.clone();
        query[2] &= 0x7f; // QR 0
        assert!(matches!(
            answer_targets(&query, 8),
            Err(Uninspected::Malformed(_))
        ));
        // A compression pointer that points at itself.
        let mut looped = response("a.test.", RecordType::A, vec![]);
        looped[7] = 1; // ANCOUNT 1
        let at = looped.len();
        looped.extend([0xc0, at as u8, 0, 5, 0, 1, 0, 0, 0, 60, 0, 2, 0xc0, 12]);
        assert!(matches!(
            answer_targets(&looped, 8),
            Err(Uninspected::Malformed(_))
        ));
    }

    #[test]
    fn targets_are_judged_by_lists_then_cache() {
        let s = settings(r#"{"allow":["ok.evil.test"],"deny":[".evil.test"]}"#);
        let store = MapStore::default();
        let cache = crate::cache::tests::cache(&store, s.cache_max_entries, s.cache_max_ttl);
        let t = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            judge(
                &s.policy,
                &cache,
                &t(&["cdn.test", "tracker.evil.test"]),
                || 0
            ),
            Some(TargetHit {
                target: "tracker.evil.test".into(),
                rule: Some(".evil.test".into())
            })
        );
        assert_eq!(judge(&s.policy, &cache, &t(&["ok.evil.test"]), || 0), None);
        assert_eq!(judge(&s.policy, &cache, &t(&["dga.test"]), || 0), None);
        cache
            .insert(
                "dga.test",
                &reply("dga.test", Verdict::Block, Scope::RegisteredDomain, 60),
                0,
            )
            .unwrap();
        cache
            .insert(
                "meh.test",
                &reply("meh.test", Verdict::Monitor, Scope::Name, 60),
                0,
            )
            .unwrap();
        assert_eq!(
            judge(&s.policy, &cache, &t(&["meh.test", "x.dga.test"]), || 1),
            Some(TargetHit {
                target: "x.dga.test".into(),
                rule: None
            })
        );
        assert_eq!(
            judge(&s.policy, &cache, &t(&["x.dga.test"]), || 61_000),
            None,
            "expired"
        );
        let mut clock_reads = 0;
        judge(
            &s.policy,
            &cache,
            &t(&["a.test", "b.test", "c.test"]),
            || {
                clock_reads += 1;
                0
            },
        );
        assert_eq!(clock_reads, 1, "the clock is read once");
    }

    #[test]
    fn inspection_applies_the_size_bound_and_the_oversize_setting() {
        let s = settings(r#"{"deny":[".evil.test"],"cname":{"max_answer_bytes":512}}"#);
        let cname_settings = s.cname.as_ref().unwrap();
        let store = MapStore::default();
        let cache = crate::cache::tests::cache(&store, 16, 60);
        let bytes = response(
            "cloak.example.test.",
            RecordType::A,
            vec![("cloak.example.test.", cname("tracker.evil.test."))],
        );
        let found = inspect(cname_settings, &s.policy, &cache, bytes.len(), &bytes, || 0);
        assert!(matches!(found, Inspection::Blocked(ref h) if h.target == "tracker.evil.test"));
        assert!(matches!(
            found.outcome(cname_settings),
            Outcome::Block(Some(_))
        ));
        let big = inspect(cname_settings, &s.policy, &cache, 513, &[], || 0);
        assert_eq!(
            big,
            Inspection::Uninspected(Uninspected::TooLarge {
                size: 513,
                max: 512
            })
        );
        assert_eq!(big.outcome(cname_settings), Outcome::Forward);
        assert_eq!(big.counter(), Counter::CnameUninspected);
        assert_eq!(found.counter(), Counter::CnameInspected);
        let closed = settings(r#"{"cname":{"oversize":"block"}}"#);
        assert_eq!(
            big.outcome(closed.cname.as_ref().unwrap()),
            Outcome::Block(None)
        );
        let garbage = inspect(cname_settings, &s.policy, &cache, 3, b"\x01\x02\x03", || 0);
        assert_eq!(
            garbage.outcome(closed.cname.as_ref().unwrap()),
            Outcome::Forward,
            "a malformed answer is forwarded: the client rejects it itself"
        );
    }

    #[test]
    fn allow_listed_and_blocked_queries_are_not_inspected() {
        let d = |verdict, basis| Decision {
            verdict,
            basis,
            from_cache: false,
            detector: None,
        };
        assert!(inspects(&d(Verdict::Allow, Basis::NoScorer)));
        assert!(inspects(&d(Verdict::Allow, Basis::Model)));
        assert!(inspects(&d(Verdict::Monitor, Basis::Model)));
        assert!(!inspects(&d(Verdict::Allow, Basis::AllowList)));
        assert!(!inspects(&d(Verdict::Allow, Basis::Override)));
        assert!(!inspects(&d(Verdict::Block, Basis::DenyList)));
        let enforce: Vec<_> = counters(Mode::Enforce).collect();
        assert_eq!(
            enforce,
            vec![
                Counter::VerdictBlock,
                Counter::ReasonCname,
                Counter::Blocked
            ]
        );
        assert!(counters(Mode::Monitor).any(|c| c == Counter::MonitorPassed));
    }
}
