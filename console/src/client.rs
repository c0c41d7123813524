//! The client page: one client address over a time range: its timeline by verdict, its top,
//! blocked and monitored registered domains, the domains it was the first to query (no
//! earlier query by anyone in the store), and how many of those got NXDOMAIN from the
//! upstream. A DGA-infected host asks for many names nobody asked for before, and most of
//! them do not exist, whatever the names look like.
//!
//! The risk trend gives, per timeline bucket, the share of the client's queries that were
//! blocked or monitored and the mean and highest model score of its scored queries.
//!
//! Two searches: the client's own aggregations over the range, then, for the (at most
//! [`FIRST_SEEN_CANDIDATES`]) domains it asked for, the earliest query by anyone, at any time.

use serde::Serialize;
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::{
    overview::{buckets, timeline_agg, timeline_points, Bucket, Point},
    query_log::LogFilter,
};

pub const TOP: usize = 20;
/// Domains of the client checked for "first to query".
pub const FIRST_SEEN_CANDIDATES: usize = 500;

#[derive(Debug, Serialize)]
pub struct ClientView {
    pub client: String,
    pub total: u64,
    pub log_href: String,
    pub timeline: Vec<Point>,
    pub verdicts: Vec<Bucket>,
    pub unique_domains: u64,
    pub top_domains: Vec<Bucket>,
    pub blocked_domains: Vec<Bucket>,
    pub monitored_domains: Vec<Bucket>,
    /// Domains this client queried before anyone else (within the candidates checked).
    pub first_seen_domains: Vec<Bucket>,
    /// Of those, how many got NXDOMAIN from the upstream.
    pub first_seen_nxdomain: u64,
    /// `first_seen_nxdomain / first_seen_domains` (absent when it queried no new domain).
    pub first_seen_nxdomain_rate: Option<f64>,
    /// The risk trend, one point per timeline bucket.
    pub risk: Vec<RiskPoint>,
}

/// One bucket of the client's risk trend: the share of its queries that were blocked or
/// monitored, and the mean and highest model score of its scored queries (absent when the
/// bucket has no queries, or none scored).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RiskPoint {
    pub t: i64,
    pub queries: u64,
    pub flagged_share: Option<f64>,
    pub mean_score: Option<f64>,
    pub max_score: Option<f64>,
}

/// The score statistics per timeline bucket (same buckets as the timeline).
fn risk_agg(filter: &LogFilter, now: OffsetDateTime) -> Value {
    let mut agg = timeline_agg(filter, now);
    agg["aggs"] = json!({
        "mean": {"avg": {"field": "dohguard.score"}},
        "max": {"max": {"field": "dohguard.score"}}
    });
    agg
}

/// Joins the timeline's verdict counts with the score statistics of the `risk` reply.
pub fn risk_points(timeline: &[Point], risk: &Value) -> Result<Vec<RiskPoint>, String> {
    let buckets = risk["buckets"]
        .as_array()
        .ok_or("the reply lacks the risk aggregation")?;
    Ok(timeline
        .iter()
        .map(|p| {
            let queries = p.allow + p.monitor + p.block;
            let stats = buckets.iter().find(|b| b["key"].as_i64() == Some(p.t));
            let stat = |k: &str| stats.and_then(|b| b[k]["value"].as_f64());
            RiskPoint {
                t: p.t,
                queries,
                flagged_share: (queries > 0).then(|| (p.monitor + p.block) as f64 / queries as f64),
                mean_score: stat("mean"),
                max_score: stat("max"),
            }
        })
        .collect())
}

fn upstream_nxdomain() -> Value {
    json!({"bool": {"filter": [
        {"term": {"dohguard.answer.kind": "forwarded"}},
        {"term": {"dns.response_code": "NXDOMAIN"}}
    ]}})
}

/// The client's own search; `filter` already holds `client=<ip>` and the range.
pub fn body(filter: &LogFilter, now: OffsetDateTime) -> Value {
    let top = |verdict: &str| {
        json!({"filter": {"term": {"dohguard.verdict": verdict}},
               "aggs": {"top": {"terms": {"field": "dns.question.registered_domain", "size": TOP}}}})
    };
    json!({
        "size": 0,
        "track_total_hits": true,
        "query": filter.query(now),
        "aggs": {
            "timeline": timeline_agg(filter, now),
            "risk": risk_agg(filter, now),
            "verdicts": {"terms": {"field": "dohguard.verdict", "size": 3}},
            "unique_domains": {"cardinality": {"field": "dns.question.registered_domain", "precision_threshold": 40000}},
            "top_domains": {"terms": {"field": "dns.question.registered_domain", "size": TOP}},
            "blocked": top("block"),
            "monitored": top("monitor"),
            "candidates": {
                "terms": {"field": "dns.question.registered_domain", "size": FIRST_SEEN_CANDIDATES},
                "aggs": {
                    "first": {"min": {"field": "@timestamp"}},
                    "nx": {"filter": upstream_nxdomain()}
                }
            }
        }
    })
}

/// A candidate domain: its name, when this client first asked, its count, upstream NXDOMAINs.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub domain: String,
    pub first_ms: f64,
    pub count: u64,
    pub nxdomain: u64,
}

pub fn candidates(reply: &Value) -> Result<Vec<Candidate>, String> {
    let Some(aggs) = reply.get("aggregations") else {
        return Ok(Vec::new());
    };
    aggs["candidates"]["buckets"]
        .as_array()
        .ok_or_else(|| "the reply lacks the candidates aggregation".to_owned())?
        .iter()
        .map(|b| {
            Ok(Candidate {
                domain: b["key"].as_str().unwrap_or_default().to_owned(),
                first_ms: b["first"]["value"]
                    .as_f64()
                    .ok_or("candidate without first")?,
                count: b["doc_count"].as_u64().unwrap_or_default(),
                nxdomain: b["nx"]["doc_count"]
                    .as_u64()
                    .ok_or("candidate without nx")?,
            })
        })
        .collect()
}

/// The second search: the earliest query of each candidate domain by anyone, at any time.
pub fn first_seen_body(domains: &[String]) -> Value {
    json!({
        "size": 0,
        "query": {"terms": {"dns.question.registered_domain": domains}},
        "aggs": {"domains": {
            "terms": {"field": "dns.question.registered_domain", "size": domains.len().max(1)},
            "aggs": {"first": {"min": {"field": "@timestamp"}}}
        }}
    })
}

/// The candidates this client asked for no later than anyone else.
pub fn first_seen(candidates: &[Candidate], reply: &Value) -> Result<Vec<Candidate>, String> {
    let buckets = reply["aggregations"]["domains"]["buckets"]
        .as_array()
        .ok_or_else(|| "the reply lacks the domains aggregation".to_owned())?;
    Ok(candidates
        .iter()
        .filter(|c| {
            buckets
                .iter()
                .find(|b| b["key"] == c.domain.as_str())
                .and_then(|b| b["first"]["value"].as_f64())
                .is_some_and(|everyone| c.first_ms <= everyone)
        })
        .cloned()
        .collect())
}

pub fn parse(
    reply: &Value,
    client: &str,
    filter: &LogFilter,
    first: &[Candidate],
) -> Result<ClientView, String> {
    let total = reply["hits"]["total"]["value"]
        .as_u64()
        .ok_or_else(|| "the reply has no hit total".to_owned())?;
    let empty = json!({});
    let aggs = match reply.get("aggregations") {
        Some(a) => a,
        None if total == 0 => &empty,
        None => return Err("the reply has no aggregations".to_owned()),
    };
    let get = |name: &str| -> Result<&Value, String> {
        match aggs.get(name) {
            Some(a) => Ok(a),
            None if total == 0 => Ok(&Value::Null),
            None => Err(format!("the reply lacks the {name} aggregation")),
        }
    };
    let nx = first.iter().filter(|c| c.nxdomain > 0).count() as u64;
    let timeline = match get("timeline")? {
        Value::Null => Vec::new(),
        agg => timeline_points(agg)?,
    };
    let risk = match get("risk")? {
        Value::Null => Vec::new(),
        agg => risk_points(&timeline, agg)?,
    };
    Ok(ClientView {
        client: client.to_owned(),
        total,
        log_href: filter.link(&[]),
        timeline,
        risk,
        verdicts: buckets(get("verdicts")?, |k| filter.link(&[("verdict", k)])),
        unique_domains: get("unique_domains")?["value"].as_u64().unwrap_or_default(),
        top_domains: buckets(get("top_domains")?, |k| filter.link(&[("domain", k)])),
        blocked_domains: buckets(&get("blocked")?["top"], |k| {
            filter.link(&[("verdict", "block"), ("domain", k)])
        }),
        monitored_domains: buckets(&get("monitored")?["top"], |k| {
            filter.link(&[("verdict", "monitor"), ("domain", k)])
        }),
        first_seen_domains: first
            .iter()
            .map(|c| Bucket {
                key: c.domain.clone(),
                count: c.count,
                href: filter.link(&[("domain", &c.domain)]),
            })
            .collect(),
        first_seen_nxdomain: nx,
        first_seen_nxdomain_rate: (!first.is_empty()).then(|| nx as f64 / first.len() as f64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn risk_joins_counts_and_scores_per_bucket() {
        let timeline = vec![
            Point {
                t: 0,
                allow: 3,
                monitor: 0,
                block: 1,
            },
            Point {
                t: 60,
                allow: 0,
                monitor: 0,
                block: 0,
            },
        ];
        let risk = json!({"buckets": [
            {"key": 0, "mean": {"value": 0.25}, "max": {"value": 0.97}},
            {"key": 60, "mean": {"value": null}, "max": {"value": null}}
        ]});
        let r = risk_points(&timeline, &risk).unwrap();
        assert_eq!(r[0].flagged_share, Some(0.25));
        assert_eq!((r[0].mean_score, r[0].max_score), (Some(0.25), Some(0.97)));
        assert_eq!(
            (r[1].queries, r[1].flagged_share, r[1].mean_score),
            (0, None, None)
        );
        assert!(risk_points(&timeline, &json!({})).is_err());
    }

    #[test]
    fn first_means_no_one_asked_earlier() {
        let c = |d: &str, t: f64| Candidate {
            domain: d.into(),
            first_ms: t,
            count: 1,
            nxdomain: 0,
        };
        let mine = vec![
            c("new.com", 200.0),
            c("old.com", 300.0),
            c("tie.com", 100.0),
        ];
        let everyone = json!({"aggregations": {"domains": {"buckets": [
            {"key": "new.com", "first": {"value": 200.0}},
            {"key": "old.com", "first": {"value": 50.0}},
            {"key": "tie.com", "first": {"value": 100.0}}
        ]}}});
        let first = first_seen(&mine, &everyone).unwrap();
        let names: Vec<&str> = first.iter().map(|c| c.domain.as_str()).collect();
        assert_eq!(names, ["new.com", "tie.com"]);
        assert!(
            first_seen(&mine, &json!({})).is_err(),
            "a missing aggregation is an error"
        );
    }
}
