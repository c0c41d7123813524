//! The vetting queue: registered domains whose verdicts deserve an analyst's look, ranked.
//!
//! A query is a candidate when it got a `monitor` verdict, a model `block` with a score under
//! `vetting.confident_block` (near the threshold), or an `allow` with a score of at least
//! `vetting.suspicious_allow` (the model found it suspicious but not enough). Candidates are
//! grouped by registered domain; domains that already carry a label leave the queue. The rank
//! is uncertainty x query volume x number of clients. Uncertainty is the closeness of the
//! domain's mean score to the nearest decision boundary, in log-odds:
//! `exp(-min |logit(mean) - logit(boundary)|)`, 1 on a boundary, 1/e one unit of log-odds
//! away. The boundaries are the scorer's thresholds in force (monitor, block) when it can be
//! asked, else 0.5: the shipped model's thresholds sit near 0.99, where "0.5" would call its
//! monitor verdicts certain.

use serde::Serialize;
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::{config::VettingConfig, query_log::LogFilter};

#[derive(Debug, Serialize, PartialEq)]
pub struct Item {
    pub domain: String,
    pub queries: u64,
    pub clients: u64,
    pub mean_score: Option<f64>,
    pub uncertainty: f64,
    pub rank: f64,
    pub monitor: u64,
    pub block: u64,
    pub allow: u64,
    pub href: String,
}

pub fn body(filter: &LogFilter, now: OffsetDateTime, config: &VettingConfig) -> Value {
    let mut query = filter.query(now);
    query["bool"]["must"] = json!([{"bool": {"minimum_should_match": 1, "should": [
        {"term": {"dohguard.verdict": "monitor"}},
        {"bool": {"filter": [
            {"term": {"dohguard.verdict": "block"}},
            {"term": {"dohguard.reason": "model"}},
            {"range": {"dohguard.score": {"lt": config.confident_block}}}
        ]}},
        {"bool": {"filter": [
            {"term": {"dohguard.verdict": "allow"}},
            {"range": {"dohguard.score": {"gte": config.suspicious_allow}}}
        ]}}
    ]}}]);
    json!({
        "size": 0,
        "query": query,
        "aggs": {"domains": {
            "terms": {"field": "dns.question.registered_domain", "size": config.max_domains},
            "aggs": {
                "score": {"avg": {"field": "dohguard.score"}},
                "clients": {"cardinality": {"field": "client.ip", "precision_threshold": 40000}},
                "verdicts": {"terms": {"field": "dohguard.verdict", "size": 3}}
            }
        }}
    })
}

fn logit(p: f64) -> f64 {
    let p = p.clamp(1e-9, 1.0 - 1e-9);
    (p / (1.0 - p)).ln()
}

/// Uncertainty of a mean score against the decision `boundaries`: 1 on a boundary, falling
/// by a factor e per unit of log-odds away; unknown scores count as fully uncertain (a
/// monitor verdict from the cache has no score of its own).
pub fn uncertainty(mean: Option<f64>, boundaries: &[f64]) -> f64 {
    let Some(m) = mean else { return 1.0 };
    boundaries
        .iter()
        .map(|b| (-(logit(m) - logit(*b)).abs()).exp())
        .fold(0.0, f64::max)
}

/// The ranked queue, without the domains in `labelled`.
pub fn parse(
    reply: &Value,
    labelled: &std::collections::HashSet<String>,
    boundaries: &[f64],
) -> Result<Vec<Item>, String> {
    let Some(aggs) = reply.get("aggregations") else {
        return match reply["hits"]["total"]["value"].as_u64() {
            Some(0) => Ok(Vec::new()),
            _ => Err("the reply has no aggregations".to_owned()),
        };
    };
    let buckets = aggs["domains"]["buckets"]
        .as_array()
        .ok_or_else(|| "the reply lacks the domains aggregation".to_owned())?;
    let mut items: Vec<Item> = buckets
        .iter()
        .filter_map(|b| {
            let domain = b["key"].as_str()?.to_owned();
            if labelled.contains(&domain) {
                return None;
            }
            let queries = b["doc_count"].as_u64().unwrap_or_default();
            let clients = b["clients"]["value"].as_u64().unwrap_or_default();
            let mean_score = b["score"]["value"].as_f64();
            let count = |v: &str| {
                b["verdicts"]["buckets"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|x| x["key"] == v)
                    .and_then(|x| x["doc_count"].as_u64())
                    .unwrap_or_default()
            };
            let u = uncertainty(mean_score, boundaries);
            Some(Item {
                href: format!("/domains/{domain}"),
                rank: u * queries as f64 * clients.max(1) as f64,
                uncertainty: u,
                monitor: count("monitor"),
                block: count("block"),
                allow: count("allow"),
                domain,
                queries,
                clients,
                mean_score,
            })
        })
        .collect();
    items.sort_by(|a, b| {
        b.rank
            .total_cmp(&a.rank)
            .then_with(|| a.domain.cmp(&b.domain))
    });
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncertainty_peaks_on_a_boundary() {
        assert_eq!(uncertainty(Some(0.5), &[0.5]), 1.0);
        assert!(uncertainty(Some(1.0), &[0.5]) < 1e-6);
        // One unit of log-odds away: 1/e.
        let p = 1.0 / (1.0 + (-1.0f64).exp());
        assert!((uncertainty(Some(p), &[0.5]) - (-1.0f64).exp()).abs() < 1e-9);
        assert_eq!(uncertainty(None, &[0.5]), 1.0);
        // With the shipped model's thresholds, a 0.995 monitor is uncertain, a 0.5 is not.
        let shipped = [0.992, 0.99995];
        assert!(uncertainty(Some(0.995), &shipped) > 0.6);
        assert!(uncertainty(Some(0.5), &shipped) < 0.01);
    }

    #[test]
    fn ranks_by_uncertainty_volume_and_clients_and_skips_labelled() {
        let reply = json!({"aggregations": {"domains": {"buckets": [
            {"key": "a.com", "doc_count": 10, "clients": {"value": 1}, "score": {"value": 0.95}, "verdicts": {"buckets": []}},
            {"key": "b.com", "doc_count": 4, "clients": {"value": 3}, "score": {"value": 0.5}, "verdicts": {"buckets": [{"key": "monitor", "doc_count": 4}]}},
            {"key": "c.com", "doc_count": 50, "clients": {"value": 9}, "score": {"value": 0.5}, "verdicts": {"buckets": []}}
        ]}}});
        let labelled = ["c.com".to_owned()].into_iter().collect();
        let items = parse(&reply, &labelled, &[0.5]).unwrap();
        let order: Vec<&str> = items.iter().map(|i| i.domain.as_str()).collect();
        assert_eq!(order, ["b.com", "a.com"]); // 1.0*4*3 = 12 > 0.05*10*1 = 0.5
        assert_eq!(items[0].monitor, 4);
        assert!(parse(&json!({"hits": {"total": {"value": 3}}}), &labelled, &[0.5]).is_err());
    }
}
