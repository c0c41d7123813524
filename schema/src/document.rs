//! The Elasticsearch document of one decision (the `_source`), in Elastic Common Schema
//! field names where ECS has the field and under `dohguard.*` where it has not. Writers build
//! it with [`VerdictDocument::from_event`] (a query) or [`VerdictDocument::gap`] (events
//! dropped); readers deserialise it. Every field is listed in `docs/contracts.md`.

use dohguard_core::name::NameParts;
use serde::{Deserialize, Serialize};

use crate::event::{Answer, DecisionEvent, Layer};

/// Version of this document shape, stored in every document as `dohguard.schema`. Adding an
/// optional field keeps the version; renaming, removing or changing the meaning of a field
/// bumps it (and the index template's `_meta.schema`).
pub const SCHEMA_VERSION: u32 = 2;
/// The ECS version the field names follow.
pub const ECS_VERSION: &str = "8.11.0";
/// `event.dataset` of query documents.
pub const QUERY_DATASET: &str = "dohguard.queries";
/// `event.dataset` of verdicts from direct scorer API calls (not from the filter).
pub const SCORE_DATASET: &str = "dohguard.verdicts";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerdictDocument {
    #[serde(rename = "@timestamp")]
    pub timestamp: String,
    pub ecs: Ecs,
    pub event: Event,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Dns>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<Endpoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Endpoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<Http>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<Rule>,
    pub dohguard: Dohguard,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ecs {
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The filter's event id (also the document `_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `event` (allowed), `alert` (monitor or block), `metric` (gap marker).
    pub kind: String,
    pub category: Vec<String>,
    #[serde(rename = "type")]
    pub event_type: Vec<String>,
    /// `dns-allow`, `dns-monitor`, `dns-block`, `dns-malformed`, `dohguard-gap`.
    pub action: String,
    pub outcome: String,
    pub dataset: String,
    /// Gateway-side latency in nanoseconds (ECS unit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dns {
    #[serde(rename = "type")]
    pub message_type: String,
    pub question: Question,
    /// RCODE name of the answer sent (`NOERROR`, `NXDOMAIN`, ...), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_code: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Question {
    pub name: String,
    #[serde(rename = "type")]
    pub qtype: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_domain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subdomain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_level_domain: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    pub ip: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Http {
    pub request: HttpRequest,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<HttpResponse>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpRequest {
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpResponse {
    pub status_code: u16,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// The list rule that matched, in list syntax.
    pub name: String,
    /// `allow_list` or `deny_list`.
    pub ruleset: String,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Dohguard {
    pub schema: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
    /// The deciding layer ([`Layer::as_str`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforced: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_version: Option<String>,
    /// The detector of a model verdict (`dga`, `tunnel`, `lookalike`); `reason` stays `model`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_us: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// The blocked CNAME/alias target, for reason `cname`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cname_target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<AnswerFields>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap: Option<Gap>,
}

/// The answer sent, flattened for search.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AnswerFields {
    /// `blocked`, `forwarded`, `rejected` or `failed`.
    pub kind: String,
    /// The block answer mode, for `blocked`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rcode: Option<u16>,
    /// Answer records in the upstream's reply, for `forwarded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u16>,
    /// Why a request was rejected, for `rejected`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Events a filter VM dropped because its buffer was full.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gap {
    pub dropped: u64,
    /// The sending VM.
    pub source: String,
}

/// RCODE names as DNS tools print them (RFC 6895 registry; the common ones).
pub fn rcode_name(rcode: u16) -> String {
    match rcode {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        6 => "YXDOMAIN".into(),
        7 => "YXRRSET".into(),
        8 => "NXRRSET".into(),
        9 => "NOTAUTH".into(),
        10 => "NOTZONE".into(),
        16 => "BADVERS".into(),
        other => format!("RCODE{other}"),
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

impl VerdictDocument {
    /// The document of one query. `timestamp` is `event.ts_ms` as RFC 3339 (the writer
    /// formats it); `parts` is the query name cut at its public suffix.
    pub fn from_event(event: &DecisionEvent, timestamp: String, parts: NameParts<'_>) -> Self {
        let verdict = event.verdict.map(|v| v.as_str());
        let (kind, event_type, action) = match verdict {
            None => ("event", "denied", "dns-malformed"),
            Some("block") => (
                "alert",
                if event.enforced {
                    "denied"
                } else {
                    "indicator"
                },
                "dns-block",
            ),
            Some("monitor") => ("alert", "indicator", "dns-monitor"),
            Some(_) => ("event", "allowed", "dns-allow"),
        };
        let (answer, response_code, http_status) = answer_fields(&event.answer);
        let dns = event.name.as_ref().map(|name| Dns {
            message_type: "query".into(),
            question: Question {
                name: name.clone(),
                qtype: event.qtype.clone().unwrap_or_default(),
                registered_domain: parts.registered_domain.map(str::to_owned),
                subdomain: parts.subdomain.map(str::to_owned),
                top_level_domain: parts.top_level_domain.map(str::to_owned),
            },
            response_code,
        });
        let endpoint = event.client.as_ref().map(|ip| Endpoint { ip: ip.clone() });
        // A `cname` block names the deny rule its target matched.
        let list_layer = match event.cached_layer.unwrap_or(event.layer) {
            Layer::Cname => Layer::DenyList,
            layer => layer,
        };
        let rule = event.rule.as_ref().map(|name| Rule {
            name: name.clone(),
            ruleset: list_layer.as_str().into(),
        });
        VerdictDocument {
            timestamp,
            ecs: Ecs {
                version: ECS_VERSION.into(),
            },
            event: Event {
                id: Some(event.id.clone()),
                kind: kind.into(),
                category: strings(&["network"]),
                event_type: strings(&[event_type]),
                action: action.into(),
                outcome: if event.layer == Layer::Malformed {
                    "failure"
                } else {
                    "success"
                }
                .into(),
                dataset: QUERY_DATASET.into(),
                duration: Some(event.latency_us * 1000),
            },
            dns,
            client: endpoint.clone(),
            source: endpoint,
            http: event.request_id.as_ref().map(|id| Http {
                request: HttpRequest { id: id.clone() },
                response: http_status.map(|status_code| HttpResponse { status_code }),
            }),
            rule,
            dohguard: Dohguard {
                schema: SCHEMA_VERSION,
                verdict: verdict.map(str::to_owned),
                reason: Some(event.layer.as_str().into()),
                cached_reason: event.cached_layer.map(|l| l.as_str().into()),
                cached: Some(event.cached),
                enforced: Some(event.enforced),
                score: event.score,
                scope: None,
                model_version: event.model_version.clone(),
                detector: event.detector.map(|d| d.as_str().into()),
                latency_us: Some(event.latency_us),
                principal: event.principal.clone(),
                cname_target: event.cname_target.clone(),
                answer: Some(answer),
                gap: None,
            },
        }
    }

    /// The gap marker: `dropped` events of VM `source` are missing before `timestamp`.
    pub fn gap(timestamp: String, source: &str, dropped: u64) -> Self {
        VerdictDocument {
            timestamp,
            ecs: Ecs {
                version: ECS_VERSION.into(),
            },
            event: Event {
                id: None,
                kind: "metric".into(),
                category: strings(&["network"]),
                event_type: strings(&["info"]),
                action: "dohguard-gap".into(),
                outcome: "failure".into(),
                dataset: QUERY_DATASET.into(),
                duration: None,
            },
            dns: None,
            client: None,
            source: None,
            http: None,
            rule: None,
            dohguard: Dohguard {
                schema: SCHEMA_VERSION,
                gap: Some(Gap {
                    dropped,
                    source: source.to_owned(),
                }),
                ..Dohguard::default()
            },
        }
    }
}

/// The answer as document fields, its RCODE name, and the HTTP status when not 200.
fn answer_fields(answer: &Answer) -> (AnswerFields, Option<String>, Option<u16>) {
    match answer {
        Answer::Blocked { mode, rcode } => (
            AnswerFields {
                kind: "blocked".into(),
                block_mode: Some(mode.clone()),
                rcode: Some(*rcode),
                ..AnswerFields::default()
            },
            Some(rcode_name(*rcode)),
            None,
        ),
        Answer::Forwarded {
            rcode,
            answers,
            http_status,
        } => (
            AnswerFields {
                kind: "forwarded".into(),
                rcode: *rcode,
                count: *answers,
                ..AnswerFields::default()
            },
            rcode.map(rcode_name),
            *http_status,
        ),
        Answer::Rejected {
            http_status,
            reason,
        } => (
            AnswerFields {
                kind: "rejected".into(),
                reason: Some(reason.clone()),
                ..AnswerFields::default()
            },
            None,
            Some(*http_status),
        ),
        Answer::Failed { http_status } => (
            AnswerFields {
                kind: "failed".into(),
                ..AnswerFields::default()
            },
            None,
            Some(*http_status),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dohguard_core::contract::Verdict;
    use dohguard_core::name::split;

    fn event() -> DecisionEvent {
        DecisionEvent {
            id: "a1b2-7".into(),
            ts_ms: 1_764_633_600_000,
            client: Some("192.0.2.7".into()),
            principal: None,
            request_id: Some("req-1".into()),
            name: Some("www.nx.example.com".into()),
            qtype: Some("A".into()),
            verdict: Some(Verdict::Allow),
            layer: Layer::Model,
            cached_layer: None,
            rule: None,
            cname_target: None,
            score: Some(0.01),
            model_version: Some("m1".into()),
            detector: None,
            cached: false,
            enforced: true,
            answer: Answer::Forwarded {
                rcode: Some(3),
                answers: Some(0),
                http_status: None,
            },
            latency_us: 850,
        }
    }

    #[test]
    fn a_forwarded_nxdomain_is_recorded_with_the_upstream_rcode() {
        let e = event();
        let doc = VerdictDocument::from_event(&e, "t".into(), split("www.nx.example.com"));
        let v = serde_json::to_value(&doc).unwrap();
        assert_eq!(v["dns"]["response_code"], "NXDOMAIN");
        assert_eq!(v["dns"]["question"]["registered_domain"], "example.com");
        assert_eq!(v["dohguard"]["answer"]["kind"], "forwarded");
        assert_eq!(v["dohguard"]["answer"]["count"], 0);
        assert_eq!(v["client"]["ip"], "192.0.2.7");
        assert_eq!(v["http"]["request"]["id"], "req-1");
        assert_eq!(v["event"]["duration"], 850_000);
        assert_eq!(v["dohguard"]["schema"], SCHEMA_VERSION);
        // Readers get back what writers wrote.
        let back: VerdictDocument = serde_json::from_value(v).unwrap();
        assert_eq!(back, doc);
    }

    #[test]
    fn events_round_trip_as_json() {
        let mut e = event();
        e.layer = Layer::Malformed;
        e.verdict = None;
        e.answer = Answer::Rejected {
            http_status: 400,
            reason: "bad".into(),
        };
        let json = serde_json::to_string(&e).unwrap();
        assert!(
            json.contains(r#""answer":{"kind":"rejected","http_status":400"#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<DecisionEvent>(&json).unwrap(), e);
        let doc = VerdictDocument::from_event(&e, "t".into(), split("x"));
        assert_eq!(doc.event.action, "dns-malformed");
        assert_eq!(doc.event.outcome, "failure");
    }

    #[test]
    fn a_cname_block_names_its_target_and_the_deny_rule() {
        let mut e = event();
        e.verdict = Some(Verdict::Block);
        e.layer = Layer::Cname;
        e.rule = Some(".evil.test".into());
        e.cname_target = Some("tracker.evil.test".into());
        let json = serde_json::to_string(&e).unwrap();
        assert!(json.contains(r#""layer":"cname""#), "{json}");
        assert_eq!(serde_json::from_str::<DecisionEvent>(&json).unwrap(), e);
        let v =
            serde_json::to_value(VerdictDocument::from_event(&e, "t".into(), split("x"))).unwrap();
        assert_eq!(v["dohguard"]["reason"], "cname");
        assert_eq!(v["dohguard"]["cname_target"], "tracker.evil.test");
        assert_eq!(v["rule"]["name"], ".evil.test");
        assert_eq!(v["rule"]["ruleset"], "deny_list");
        assert_eq!(v["event"]["action"], "dns-block");
    }

    #[test]
    fn a_gap_marker_names_the_count() {
        let v = serde_json::to_value(VerdictDocument::gap("t".into(), "vm1", 42)).unwrap();
        assert_eq!(v["event"]["action"], "dohguard-gap");
        assert_eq!(v["dohguard"]["gap"]["dropped"], 42);
        assert!(v.get("dns").is_none());
    }
}
