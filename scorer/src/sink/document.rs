//! One verdict -> one Elasticsearch document, in Elastic Common Schema field names
//! (`dohguard.*` for what ECS has no field for), with its `_id` fixed when the verdict is made.
//! The document shape is `dohguard_schema::VerdictDocument` for both kinds: the filter's query
//! events ([`query_doc`], [`gap_doc`]) and direct scorer API calls ([`VerdictEvent::to_doc`]).
//!
//! The `_id` is a UUIDv7 (time-ordered, so ids of one period sort together) generated once per
//! verdict and stored with the document in the spool. Every retry and every replay sends the
//! same `_id` with the bulk `create` action, so Elasticsearch stores a verdict at most once:
//! a 409 on replay means "already there".

use std::{net::IpAddr, time::SystemTime};

use dohguard_core::contract::{Reason, Scope, Verdict};
use dohguard_schema::document::{
    Dns, Dohguard, Ecs, Endpoint, Event, Question, VerdictDocument, ECS_VERSION, SCHEMA_VERSION,
    SCORE_DATASET,
};
use serde::Serialize;
use serde_json::value::RawValue;

/// Everything the sink needs to know about one verdict.
#[derive(Debug, Clone)]
pub struct VerdictEvent {
    pub timestamp: SystemTime,
    pub name: String,
    pub qtype: String,
    pub client: Option<IpAddr>,
    pub registered_domain: Option<String>,
    pub subdomain: Option<String>,
    pub top_level_domain: Option<String>,
    pub score: f32,
    pub verdict: Verdict,
    pub reason: Reason,
    pub scope: Scope,
    pub model_version: String,
    /// The detector of a model verdict (`None` for list verdicts).
    pub detector: Option<dohguard_core::contract::Detector>,
    /// Time spent scoring the request this verdict belongs to, microseconds.
    pub latency_us: u64,
}

/// A document ready for the bulk API: its index, id and serialised body.
#[derive(Debug, Clone, serde::Deserialize, Serialize)]
pub struct Doc {
    #[serde(rename = "_index")]
    pub index: String,
    #[serde(rename = "_id")]
    pub id: String,
    /// The `_source`, already serialised.
    pub source: Box<RawValue>,
    /// Where the journal holds it (not part of the stored line).
    #[serde(skip)]
    pub slot: Option<super::spool::Slot>,
}

impl Doc {
    /// A document for `index` with `_id` `id` and `source` serialised as its `_source`.
    pub fn new(index: &str, id: String, source: &impl Serialize) -> Doc {
        let json = serde_json::to_string(source).expect("a verdict document always serialises");
        Doc {
            index: index.to_owned(),
            id,
            source: RawValue::from_string(json).expect("serde_json output is valid JSON"),
            slot: None,
        }
    }

    /// Serialised size counted against `bulk_max_bytes`.
    pub fn approx_bytes(&self) -> usize {
        self.source.get().len() + self.index.len() + self.id.len() + 40
    }

    /// Appends the two bulk lines (`create` action, then the document) to `out`.
    pub fn write_bulk_lines(&self, out: &mut Vec<u8>) {
        #[derive(Serialize)]
        struct Create<'a> {
            create: Meta<'a>,
        }
        #[derive(Serialize)]
        struct Meta<'a> {
            #[serde(rename = "_index")]
            index: &'a str,
            #[serde(rename = "_id")]
            id: &'a str,
        }
        serde_json::to_writer(
            &mut *out,
            &Create {
                create: Meta {
                    index: &self.index,
                    id: &self.id,
                },
            },
        )
        .expect("serialising to a Vec cannot fail");
        out.push(b'\n');
        out.extend_from_slice(self.source.get().as_bytes());
        out.push(b'\n');
    }
}

/// The document of one filter decision event; its `_id` is the event's id, fixed by the
/// filter, so a batch the filter sends again is stored once.
pub fn query_doc(index: &str, event: &dohguard_schema::DecisionEvent) -> Doc {
    let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(event.ts_ms);
    let parts = dohguard_core::name::split(event.name.as_deref().unwrap_or(""));
    let doc = dohguard_schema::VerdictDocument::from_event(event, rfc3339(at), parts);
    Doc::new(index, event.id.clone(), &doc)
}

/// The gap marker for documents the scorer itself could not keep (spool full or a disk
/// error on a path whose caller cannot resend: direct `/v1/score` verdicts).
pub fn scorer_gap_doc(index: &str, dropped: u64) -> Doc {
    let now = SystemTime::now();
    let doc = dohguard_schema::VerdictDocument::gap(rfc3339(now), "scorer", dropped);
    let id = format!("gap-scorer-{}", uuid::Uuid::now_v7());
    Doc::new(index, id, &doc)
}

/// The gap marker of a batch that reports dropped events; its `_id` names the batch.
pub fn gap_doc(index: &str, batch: &dohguard_schema::EventBatch) -> Doc {
    let doc = dohguard_schema::VerdictDocument::gap(
        rfc3339(SystemTime::now()),
        &batch.source,
        batch.dropped,
    );
    Doc::new(index, format!("gap-{}-{}", batch.source, batch.seq), &doc)
}

fn rfc3339(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .expect("a SystemTime always formats as RFC 3339")
}

impl VerdictEvent {
    /// The ECS document for this verdict, with a fresh `_id`.
    pub fn to_doc(&self, index: &str) -> Doc {
        let ts = uuid::Timestamp::from_unix(
            uuid::NoContext,
            self.timestamp
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            self.timestamp
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0),
        );
        let id = uuid::Uuid::new_v7(ts).to_string();
        let (kind, event_type, action) = match self.verdict {
            Verdict::Block => ("alert", "denied", "dns-block"),
            Verdict::Monitor => ("alert", "indicator", "dns-monitor"),
            Verdict::Allow => ("event", "allowed", "dns-allow"),
        };
        let doc = VerdictDocument {
            timestamp: rfc3339(self.timestamp),
            ecs: Ecs {
                version: ECS_VERSION.into(),
            },
            event: Event {
                // The `_id` again, as on query documents: readers that sort or page on
                // `event.id` (the console) see direct-API verdicts too.
                id: Some(id.clone()),
                kind: kind.into(),
                category: vec!["network".into()],
                event_type: vec![event_type.into()],
                action: action.into(),
                outcome: "success".into(),
                dataset: SCORE_DATASET.into(),
                duration: Some(self.latency_us * 1000),
            },
            dns: Some(Dns {
                message_type: "query".into(),
                question: Question {
                    name: self.name.clone(),
                    qtype: self.qtype.clone(),
                    registered_domain: self.registered_domain.clone(),
                    subdomain: self.subdomain.clone(),
                    top_level_domain: self.top_level_domain.clone(),
                },
                response_code: None,
            }),
            client: None,
            source: self.client.map(|ip| Endpoint { ip: ip.to_string() }),
            http: None,
            rule: None,
            dohguard: Dohguard {
                schema: SCHEMA_VERSION,
                verdict: Some(self.verdict.as_str().into()),
                reason: Some(self.reason.as_str().into()),
                scope: Some(
                    match self.scope {
                        Scope::Name => "name",
                        Scope::RegisteredDomain => "registered_domain",
                    }
                    .into(),
                ),
                score: Some(self.score),
                model_version: Some(self.model_version.clone()),
                detector: self.detector.map(|d| d.as_str().into()),
                latency_us: Some(self.latency_us),
                ..Dohguard::default()
            },
        };
        Doc::new(index, id, &doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_direct_api_document_carries_its_id_as_event_id() {
        let event = VerdictEvent {
            timestamp: SystemTime::now(),
            name: "abc.example".into(),
            qtype: "A".into(),
            client: None,
            registered_domain: Some("abc.example".into()),
            subdomain: None,
            top_level_domain: Some("example".into()),
            score: 0.9,
            verdict: Verdict::Block,
            reason: Reason::Model,
            scope: Scope::RegisteredDomain,
            model_version: "test".into(),
            detector: None,
            latency_us: 1,
        };
        let doc = event.to_doc("logs-dohguard.verdicts-default");
        let source: serde_json::Value = serde_json::from_str(doc.source.get()).unwrap();
        assert_eq!(source["event"]["id"], serde_json::json!(doc.id));
        assert_eq!(source["event"]["dataset"], "dohguard.verdicts");
        // Two verdicts get two ids.
        assert_ne!(event.to_doc("i").id, doc.id);
    }
}
