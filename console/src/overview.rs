//! The overview: one `size: 0` search with aggregations over the filtered time range. The
//! timeline is a `date_histogram` split by verdict; the tops are `terms` under `filter`
//! aggregations; unique domains and clients are `cardinality` (exact below 40,000 in real
//! Elasticsearch, HyperLogLog++ above; exact in the test server). Every count carries the
//! log URL that lists the queries behind it.

use serde::Serialize;
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::{query_log::LogFilter, time_range::rfc3339};

/// Rows in each top list.
pub const TOP: usize = 10;

#[derive(Debug, Serialize, PartialEq)]
pub struct Bucket {
    pub key: String,
    pub count: u64,
    /// The log filtered to this bucket.
    pub href: String,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Point {
    /// Bucket start, epoch milliseconds.
    pub t: i64,
    pub allow: u64,
    pub monitor: u64,
    pub block: u64,
}

#[derive(Debug, Serialize)]
pub struct Overview {
    pub from: String,
    pub to: String,
    pub interval: &'static str,
    pub total: u64,
    pub total_href: String,
    pub by_verdict: Vec<Bucket>,
    pub timeline: Vec<Point>,
    pub top_blocked_domains: Vec<Bucket>,
    pub top_monitored_domains: Vec<Bucket>,
    pub top_allowed_domains: Vec<Bucket>,
    pub top_clients_blocked: Vec<Bucket>,
    pub top_clients_monitored: Vec<Bucket>,
    pub unique_domains: u64,
    pub unique_clients: u64,
    pub models: Vec<Bucket>,
}

fn top(verdict: &str, field: &str) -> Value {
    json!({"filter": {"term": {"dohguard.verdict": verdict}},
           "aggs": {"top": {"terms": {"field": field, "size": TOP}}}})
}

/// The search body.
pub fn body(filter: &LogFilter, now: OffsetDateTime) -> Value {
    json!({
        "size": 0,
        "track_total_hits": true,
        "query": filter.query(now),
        "aggs": {
            "timeline": timeline_agg(filter, now),
            "by_verdict": {"terms": {"field": "dohguard.verdict", "size": 3}},
            "blocked_domains": top("block", "dns.question.registered_domain"),
            "monitored_domains": top("monitor", "dns.question.registered_domain"),
            "allowed_domains": top("allow", "dns.question.registered_domain"),
            "blocked_clients": top("block", "client.ip"),
            "monitored_clients": top("monitor", "client.ip"),
            "unique_domains": {"cardinality": {"field": "dns.question.registered_domain", "precision_threshold": 40000}},
            "unique_clients": {"cardinality": {"field": "client.ip", "precision_threshold": 40000}},
            "models": {"terms": {"field": "dohguard.model_version", "size": TOP}}
        }
    })
}

/// The timeline aggregation (a `date_histogram` with a `verdict` terms sub-aggregation).
pub fn timeline_agg(filter: &LogFilter, now: OffsetDateTime) -> Value {
    let (from, to) = filter.range.bounds(now);
    json!({
        "date_histogram": {
            "field": "@timestamp", "fixed_interval": filter.range.interval(now), "min_doc_count": 0,
            "extended_bounds": {"min": rfc3339(from), "max": rfc3339(to)}
        },
        "aggs": {"verdict": {"terms": {"field": "dohguard.verdict", "size": 3}}}
    })
}

/// Reads a [`timeline_agg`] reply.
pub fn timeline_points(agg: &Value) -> Result<Vec<Point>, String> {
    Ok(agg["buckets"]
        .as_array()
        .ok_or_else(|| "timeline has no buckets".to_owned())?
        .iter()
        .map(|b| {
            let mut p = Point {
                t: b["key"].as_i64().unwrap_or_default(),
                allow: 0,
                monitor: 0,
                block: 0,
            };
            for v in b["verdict"]["buckets"].as_array().into_iter().flatten() {
                let n = v["doc_count"].as_u64().unwrap_or_default();
                match v["key"].as_str() {
                    Some("allow") => p.allow = n,
                    Some("monitor") => p.monitor = n,
                    Some("block") => p.block = n,
                    _ => {}
                }
            }
            p
        })
        .collect())
}

fn key_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub fn buckets(agg: &Value, link: impl Fn(&str) -> String) -> Vec<Bucket> {
    agg["buckets"]
        .as_array()
        .map(|bs| {
            bs.iter()
                .map(|b| {
                    let key = key_string(&b["key"]);
                    Bucket {
                        href: link(&key),
                        count: b["doc_count"].as_u64().unwrap_or_default(),
                        key,
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Reads the reply; a missing aggregation is an error, not a zero. The one exception: no
/// verdict index exists yet (no hits, and the store answers without aggregations).
pub fn parse(reply: &Value, filter: &LogFilter, now: OffsetDateTime) -> Result<Overview, String> {
    let empty = json!({
        "timeline": {"buckets": []}, "by_verdict": {"buckets": []},
        "blocked_domains": {"top": {"buckets": []}}, "monitored_domains": {"top": {"buckets": []}},
        "allowed_domains": {"top": {"buckets": []}}, "blocked_clients": {"top": {"buckets": []}},
        "monitored_clients": {"top": {"buckets": []}}, "unique_domains": {"value": 0},
        "unique_clients": {"value": 0}, "models": {"buckets": []}
    });
    let aggs = match reply.get("aggregations") {
        Some(aggs) => aggs,
        None if reply["hits"]["total"]["value"] == 0 => &empty,
        None => return Err("the reply has no aggregations".to_owned()),
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
    let total = reply["hits"]["total"]["value"]
        .as_u64()
        .ok_or_else(|| "the reply has no hit total".to_owned())?;
    let timeline = timeline_points(need("timeline")?)?;
    let (from, to) = filter.range.bounds(now);
    let whole_seconds = |t: OffsetDateTime| t.replace_nanosecond(0).unwrap_or(t);
    let domains = |agg: &str, verdict: &'static str| -> Result<Vec<Bucket>, String> {
        Ok(buckets(&need(agg)?["top"], |k| {
            filter.link(&[("verdict", verdict), ("domain", k)])
        }))
    };
    let clients = |agg: &str, verdict: &'static str| -> Result<Vec<Bucket>, String> {
        Ok(buckets(&need(agg)?["top"], |k| {
            filter.link(&[("verdict", verdict), ("client", k)])
        }))
    };
    Ok(Overview {
        from: rfc3339(whole_seconds(from)),
        to: rfc3339(whole_seconds(to)),
        interval: filter.range.interval(now),
        total,
        total_href: filter.link(&[]),
        by_verdict: buckets(need("by_verdict")?, |k| filter.link(&[("verdict", k)])),
        timeline,
        top_blocked_domains: domains("blocked_domains", "block")?,
        top_monitored_domains: domains("monitored_domains", "monitor")?,
        top_allowed_domains: domains("allowed_domains", "allow")?,
        top_clients_blocked: clients("blocked_clients", "block")?,
        top_clients_monitored: clients("monitored_clients", "monitor")?,
        unique_domains: count("unique_domains")?,
        unique_clients: count("unique_clients")?,
        models: buckets(need("models")?, |k| filter.link(&[("model", k)])),
    })
}
