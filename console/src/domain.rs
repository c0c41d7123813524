//! The domain page: one registered domain over a time range: its timeline by verdict, the
//! clients that asked for it, its distinct subdomains (many unique subdomains under one
//! domain is what a DNS tunnel looks like), its verdict history and its labels.

use serde::Serialize;
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::{
    overview::{buckets, timeline_agg, timeline_points, Bucket, Point},
    query_log::LogFilter,
};

/// Rows in the client and subdomain lists.
pub const TOP: usize = 20;

#[derive(Debug, Serialize)]
pub struct DomainView {
    pub domain: String,
    pub total: u64,
    pub log_href: String,
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
    pub timeline: Vec<Point>,
    pub verdicts: Vec<Bucket>,
    pub clients: Vec<Bucket>,
    pub unique_clients: u64,
    pub subdomains: Vec<Bucket>,
    pub unique_subdomains: u64,
    pub labels: Vec<Value>,
}

/// The search body; `filter` already holds `domain=<domain>` and the range.
pub fn body(filter: &LogFilter, now: OffsetDateTime) -> Value {
    json!({
        "size": 0,
        "track_total_hits": true,
        "query": filter.query(now),
        "aggs": {
            "timeline": timeline_agg(filter, now),
            "verdicts": {"terms": {"field": "dohguard.verdict", "size": 3}},
            "first": {"min": {"field": "@timestamp"}},
            "last": {"max": {"field": "@timestamp"}},
            "clients": {"terms": {"field": "client.ip", "size": TOP}},
            "unique_clients": {"cardinality": {"field": "client.ip", "precision_threshold": 40000}},
            "subdomains": {"terms": {"field": "dns.question.subdomain", "size": TOP}},
            "unique_subdomains": {"cardinality": {"field": "dns.question.subdomain", "precision_threshold": 40000}}
        }
    })
}

/// Reads the reply; a missing aggregation is an error, not a zero.
pub fn parse(
    reply: &Value,
    domain: &str,
    filter: &LogFilter,
    labels: Vec<Value>,
) -> Result<DomainView, String> {
    let total = reply["hits"]["total"]["value"]
        .as_u64()
        .ok_or_else(|| "the reply has no hit total".to_owned())?;
    let Some(aggs) = reply.get("aggregations") else {
        if total == 0 {
            // No verdict index yet.
            return Ok(DomainView {
                domain: domain.to_owned(),
                total,
                log_href: filter.link(&[]),
                first_seen: None,
                last_seen: None,
                timeline: Vec::new(),
                verdicts: Vec::new(),
                clients: Vec::new(),
                unique_clients: 0,
                subdomains: Vec::new(),
                unique_subdomains: 0,
                labels,
            });
        }
        return Err("the reply has no aggregations".to_owned());
    };
    let need = |name: &str| {
        aggs.get(name)
            .ok_or_else(|| format!("the reply lacks the {name} aggregation"))
    };
    let count = |name: &str| -> Result<u64, String> {
        need(name)?["value"]
            .as_u64()
            .ok_or_else(|| format!("{name} has no value"))
    };
    let when = |name: &str| -> Result<Option<String>, String> {
        Ok(need(name)?["value_as_string"].as_str().map(str::to_owned))
    };
    Ok(DomainView {
        domain: domain.to_owned(),
        total,
        log_href: filter.link(&[]),
        first_seen: when("first")?,
        last_seen: when("last")?,
        timeline: timeline_points(need("timeline")?)?,
        verdicts: buckets(need("verdicts")?, |k| filter.link(&[("verdict", k)])),
        clients: buckets(need("clients")?, |k| filter.link(&[("client", k)])),
        unique_clients: count("unique_clients")?,
        subdomains: buckets(need("subdomains")?, |k| {
            filter.link(&[("name_suffix", &format!("{k}.{domain}"))])
        }),
        unique_subdomains: count("unique_subdomains")?,
        labels,
    })
}
