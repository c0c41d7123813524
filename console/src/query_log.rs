//! The query log: URL filters -> one Elasticsearch query, pages with `search_after`, and the
//! streamed CSV/NDJSON export.
//!
//! Filters (all optional, each a URL parameter so a view can be shared; a leading `!`
//! negates one, and list filters take comma-separated values):
//! `name` (substring), `name_suffix` (the name or any name under it), `name_regex` (Lucene
//! regular expression over the whole name), `domain` (registered domain), `client` (IP or
//! CIDR), `principal` (mesh identity), `verdict`, `layer`, `qtype`, `rcode`, `model`,
//! `score_min`/`score_max` (not negatable), and the time range (`range` or `from`/`to`).
//!
//! Paging: newest first, sorted by `@timestamp` then `event.id`; the next page is asked for
//! with `after`, an opaque cursor holding the last row's sort values (`search_after`), so
//! deep pages never use `from/size` and never hit the 10,000-hit window. Gap markers have
//! no `event.id` and are not log rows.

use std::collections::BTreeMap;

use base64::Engine;
use dohguard_schema::VerdictDocument;
use serde::Serialize;
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::{error::ApiError, time_range::RangeSpec};

/// The filter parameters, in the order they are written back into URLs.
pub const FILTER_KEYS: [&str; 13] = [
    "name",
    "name_suffix",
    "name_regex",
    "domain",
    "client",
    "principal",
    "verdict",
    "layer",
    "qtype",
    "rcode",
    "model",
    "score_min",
    "score_max",
];
const RANGE_KEYS: [&str; 3] = ["range", "from", "to"];
const VERDICTS: [&str; 3] = ["allow", "monitor", "block"];
const LAYERS: [&str; 10] = [
    "allow_list",
    "deny_list",
    "cache",
    "model",
    "failure_mode",
    "no_scorer",
    "unscored",
    "cname",
    "override",
    "malformed",
];

/// A validated log filter: the clauses plus the canonical parameters that produced them.
#[derive(Debug, Clone)]
pub struct LogFilter {
    pub range: RangeSpec,
    params: Vec<(&'static str, String)>,
    must: Vec<Value>,
    must_not: Vec<Value>,
    /// Set when a regular expression is part of the query (store refusals are blamed on it).
    pub has_regex: bool,
}

/// Splits off a leading `!`.
fn negation(value: &str) -> (bool, &str) {
    match value.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, value),
    }
}

fn list<'a>(field: &str, value: &'a str) -> Result<Vec<&'a str>, ApiError> {
    let items: Vec<&str> = value.split(',').map(str::trim).collect();
    if items.iter().any(|i| i.is_empty()) {
        return Err(ApiError::bad(field, "empty value in the list"));
    }
    Ok(items)
}

fn one_of(field: &str, value: &str, allowed: &[&str]) -> Result<(), ApiError> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(ApiError::bad(
            field,
            format!("{value:?} is not one of {}", allowed.join(", ")),
        ))
    }
}

/// Escapes `*`, `?` and `\` for a `wildcard` query.
fn wildcard_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn dns_text(field: &str, value: &str) -> Result<String, ApiError> {
    let v = value.trim().trim_end_matches('.').to_ascii_lowercase();
    if v.is_empty() || v.len() > 253 || v.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ApiError::bad(
            field,
            format!("{value:?} is not part of a DNS name"),
        ));
    }
    Ok(v)
}

/// Checks a regular expression before it reaches the store: it must parse, and must not use
/// what Lucene's syntax lacks (anchors, Perl classes, groups with flags).
pub fn check_regex(pattern: &str) -> Result<(), ApiError> {
    let field = "name_regex";
    if pattern.is_empty() {
        return Err(ApiError::bad(field, "empty regular expression"));
    }
    regex_syntax::Parser::new()
        .parse(pattern)
        .map_err(|e| ApiError::bad(field, format!("invalid regular expression: {e}")))?;
    if pattern.contains('^') && !pattern.contains("[^") || pattern.contains('$') {
        return Err(ApiError::bad(
            field,
            "the expression always matches the whole name: drop ^ and $",
        ));
    }
    for perl in ["\\d", "\\w", "\\s", "\\b", "\\D", "\\W", "\\S", "(?"] {
        if pattern.contains(perl) {
            return Err(ApiError::bad(
                field,
                format!(
                    "{perl} is not in Lucene's regular-expression syntax (use classes like [0-9])"
                ),
            ));
        }
    }
    Ok(())
}

/// An IP address or CIDR block, normalised (`10.1.2.3/8` -> `10.0.0.0/8`).
fn ip_or_cidr(value: &str) -> Result<String, ApiError> {
    if let Ok(ip) = value.parse::<std::net::IpAddr>() {
        return Ok(ip.to_string());
    }
    value
        .parse::<ipnet::IpNet>()
        .map(|net| net.trunc().to_string())
        .map_err(|_| {
            ApiError::bad(
                "client",
                format!("{value:?} is neither an IP address nor a CIDR block"),
            )
        })
}

fn score(field: &str, value: &str) -> Result<f64, ApiError> {
    match value.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(ApiError::bad(
            field,
            format!("{value:?} is not a number in [0, 1]"),
        )),
    }
}

impl LogFilter {
    /// Parses the filter and range parameters of `params`; `extra` names the other
    /// parameters the endpoint takes. Any other parameter is an error (a typo must not
    /// silently widen a search).
    pub fn parse(params: &BTreeMap<String, String>, extra: &[&str]) -> Result<Self, ApiError> {
        for key in params.keys() {
            let known = FILTER_KEYS.contains(&key.as_str())
                || RANGE_KEYS.contains(&key.as_str())
                || extra.contains(&key.as_str());
            if !known {
                return Err(ApiError::bad(key.clone(), "unknown parameter"));
            }
        }
        let get = |k: &str| params.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let range = RangeSpec::parse(get("range"), get("from"), get("to"))?;
        let mut filter = LogFilter {
            range,
            params: Vec::new(),
            must: Vec::new(),
            must_not: Vec::new(),
            has_regex: false,
        };
        for key in FILTER_KEYS {
            let Some(raw) = get(key) else { continue };
            let (negated, value) = negation(raw);
            let clause = match key {
                "name" => {
                    let v = dns_text(key, value)?;
                    json!({"wildcard": {"dns.question.name": {"value": format!("*{}*", wildcard_escape(&v))}}})
                }
                "name_suffix" => {
                    let v = dns_text(key, value.trim_start_matches('.'))?;
                    json!({"bool": {"minimum_should_match": 1, "should": [
                        {"term": {"dns.question.name": v}},
                        {"wildcard": {"dns.question.name": {"value": format!("*.{}", wildcard_escape(&v))}}}
                    ]}})
                }
                "name_regex" => {
                    check_regex(value)?;
                    filter.has_regex = true;
                    json!({"regexp": {"dns.question.name": {"value": value}}})
                }
                "domain" => {
                    let items = list(key, value)?
                        .into_iter()
                        .map(|d| dns_text(key, d))
                        .collect::<Result<Vec<_>, _>>()?;
                    json!({"terms": {"dns.question.registered_domain": items}})
                }
                "client" => {
                    let should = list(key, value)?
                        .into_iter()
                        .map(|c| ip_or_cidr(c).map(|c| json!({"term": {"client.ip": c}})))
                        .collect::<Result<Vec<_>, _>>()?;
                    json!({"bool": {"minimum_should_match": 1, "should": should}})
                }
                "principal" => json!({"terms": {"dohguard.principal": list(key, value)?}}),
                "verdict" => {
                    let items = list(key, value)?;
                    for v in &items {
                        one_of(key, v, &VERDICTS)?;
                    }
                    json!({"terms": {"dohguard.verdict": items}})
                }
                "layer" => {
                    let items = list(key, value)?;
                    for v in &items {
                        one_of(key, v, &LAYERS)?;
                    }
                    json!({"terms": {"dohguard.reason": items}})
                }
                "qtype" | "rcode" => {
                    let items: Vec<String> = list(key, value)?
                        .into_iter()
                        .map(str::to_ascii_uppercase)
                        .collect();
                    if let Some(bad) = items
                        .iter()
                        .find(|i| i.len() > 16 || !i.bytes().all(|b| b.is_ascii_alphanumeric()))
                    {
                        return Err(ApiError::bad(key, format!("{bad:?} is not a {key} name")));
                    }
                    let field = if key == "qtype" {
                        "dns.question.type"
                    } else {
                        "dns.response_code"
                    };
                    json!({"terms": {field: items}})
                }
                "model" => json!({"terms": {"dohguard.model_version": list(key, value)?}}),
                "score_min" | "score_max" => {
                    if negated {
                        return Err(ApiError::bad(key, "a score bound cannot be negated"));
                    }
                    let v = score(key, value)?;
                    let op = if key == "score_min" { "gte" } else { "lte" };
                    json!({"range": {"dohguard.score": {op: v}}})
                }
                _ => unreachable!("every FILTER_KEYS entry is handled"),
            };
            if negated {
                filter.must_not.push(clause);
            } else {
                filter.must.push(clause);
            }
            filter.params.push((key, raw.to_owned()));
        }
        if let (Some(lo), Some(hi)) = (get("score_min"), get("score_max")) {
            if score("score_min", lo)? > score("score_max", hi)? {
                return Err(ApiError::bad("score_max", "must not be below score_min"));
            }
        }
        Ok(filter)
    }

    /// Whether only the time range filters (what the overview's minute cache can answer).
    pub fn is_range_only(&self) -> bool {
        self.must.is_empty() && self.must_not.is_empty()
    }

    /// The Elasticsearch `query` at `now` (relative ranges end there).
    pub fn query(&self, now: OffsetDateTime) -> Value {
        let mut filter = vec![
            self.range.clause(now),
            json!({"exists": {"field": "event.id"}}),
        ];
        filter.extend(self.must.iter().cloned());
        json!({"bool": {"filter": filter, "must_not": self.must_not}})
    }

    /// The URL parameters that give this filter (and its range) back.
    pub fn to_query(&self) -> Vec<(&'static str, String)> {
        let mut out = self.range.to_query();
        out.extend(self.params.iter().cloned());
        out
    }

    /// The log page's URL for this filter narrowed by `extra` (replacing parameters of the
    /// same names): what every number on the overview links to.
    pub fn link(&self, extra: &[(&'static str, &str)]) -> String {
        let mut params: Vec<(&str, String)> = self
            .to_query()
            .into_iter()
            .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k))
            .collect();
        params.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
        format!("/log?{}", encode_query(&params))
    }
}

/// `k=v&k=v`, percent-encoded.
pub fn encode_query(params: &[(&str, String)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{k}={}", percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The sort every log query uses (newest first; `event.id` breaks ties).
pub fn sort() -> Value {
    json!([{"@timestamp": {"order": "desc"}}, {"event.id": {"order": "desc"}}])
}

/// The opaque cursor for `search_after`: the sort values, base64url JSON.
pub fn encode_cursor(sort_values: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sort_values.to_string())
}

pub fn decode_cursor(cursor: &str) -> Result<Value, ApiError> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| ApiError::bad("after", "not a cursor from a previous page"))?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Array(a)) if a.len() == 2 => Ok(Value::Array(a)),
        _ => Err(ApiError::bad("after", "not a cursor from a previous page")),
    }
}

/// The `_source` of every hit.
pub fn sources(reply: &Value) -> Vec<Value> {
    reply["hits"]["hits"]
        .as_array()
        .map(|hits| hits.iter().map(|h| h["_source"].clone()).collect())
        .unwrap_or_default()
}

/// One log row: the fields an analyst scans, read through the schema's document type.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Row {
    pub id: String,
    pub timestamp: String,
    pub client: Option<String>,
    pub name: Option<String>,
    pub registered_domain: Option<String>,
    pub qtype: Option<String>,
    pub verdict: Option<String>,
    pub layer: Option<String>,
    pub rule: Option<String>,
    pub score: Option<f32>,
    pub model_version: Option<String>,
    pub rcode: Option<String>,
    pub cached: Option<bool>,
    pub latency_us: Option<u64>,
}

impl Row {
    pub fn from_doc(doc: &VerdictDocument) -> Self {
        let question = doc.dns.as_ref().map(|d| &d.question);
        Row {
            id: doc.event.id.clone().unwrap_or_default(),
            timestamp: doc.timestamp.clone(),
            client: doc.client.as_ref().map(|c| c.ip.clone()),
            name: question.map(|q| q.name.clone()),
            registered_domain: question.and_then(|q| q.registered_domain.clone()),
            qtype: question.map(|q| q.qtype.clone()),
            verdict: doc.dohguard.verdict.clone(),
            layer: doc.dohguard.reason.clone(),
            rule: doc.rule.as_ref().map(|r| r.name.clone()),
            score: doc.dohguard.score,
            model_version: doc.dohguard.model_version.clone(),
            rcode: doc.dns.as_ref().and_then(|d| d.response_code.clone()),
            cached: doc.dohguard.cached,
            latency_us: doc.dohguard.latency_us,
        }
    }

    pub const CSV_HEADER: &'static str = "timestamp,id,client,name,registered_domain,qtype,verdict,layer,rule,score,model_version,rcode,cached,latency_us\n";

    pub fn to_csv(&self) -> String {
        let opt = |v: &Option<String>| csv_field(v.as_deref().unwrap_or(""));
        format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            csv_field(&self.timestamp),
            csv_field(&self.id),
            opt(&self.client),
            opt(&self.name),
            opt(&self.registered_domain),
            opt(&self.qtype),
            opt(&self.verdict),
            opt(&self.layer),
            opt(&self.rule),
            self.score.map(|s| s.to_string()).unwrap_or_default(),
            opt(&self.model_version),
            opt(&self.rcode),
            self.cached.map(|c| c.to_string()).unwrap_or_default(),
            self.latency_us.map(|c| c.to_string()).unwrap_or_default(),
        )
    }
}

/// One CSV field (RFC 4180 quoting; a leading `= + - @` is prefixed with `'` so a
/// spreadsheet does not run it as a formula).
pub fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// The hits of a log reply as rows plus their sort values.
pub fn rows(reply: &Value) -> Result<Vec<(Row, Value)>, ApiError> {
    let hits = reply["hits"]["hits"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    hits.into_iter()
        .map(|hit| {
            let doc: VerdictDocument =
                serde_json::from_value(hit["_source"].clone()).map_err(|e| {
                    crate::store::StoreError::Unreadable(format!(
                        "verdict document {}: {e}",
                        hit["_id"]
                    ))
                })?;
            Ok((Row::from_doc(&doc), hit["sort"].clone()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    fn field_of(e: ApiError) -> String {
        match e {
            ApiError::BadInput { field, .. } => field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn negation_goes_to_must_not() {
        let f =
            LogFilter::parse(&params(&[("verdict", "!allow"), ("qtype", "a,aaaa")]), &[]).unwrap();
        let q = f.query(OffsetDateTime::now_utc());
        assert_eq!(
            q["bool"]["must_not"][0],
            json!({"terms": {"dohguard.verdict": ["allow"]}})
        );
        assert_eq!(
            q["bool"]["filter"][2],
            json!({"terms": {"dns.question.type": ["A", "AAAA"]}})
        );
        assert_eq!(
            f.to_query(),
            vec![
                ("range", "24h".into()),
                ("verdict", "!allow".into()),
                ("qtype", "a,aaaa".into())
            ]
        );
    }

    #[test]
    fn cidrs_are_normalised_and_bad_ones_refused() {
        let f = LogFilter::parse(&params(&[("client", "10.1.2.3/8,::1")]), &[]).unwrap();
        let q = f.query(OffsetDateTime::now_utc());
        assert_eq!(
            q["bool"]["filter"][2]["bool"]["should"][0]["term"]["client.ip"],
            "10.0.0.0/8"
        );
        assert_eq!(
            q["bool"]["filter"][2]["bool"]["should"][1]["term"]["client.ip"],
            "::1"
        );
        assert_eq!(
            field_of(LogFilter::parse(&params(&[("client", "10.0.0.0/33")]), &[]).unwrap_err()),
            "client"
        );
    }

    #[test]
    fn regexes_are_checked_first() {
        check_regex("[a-z]{8}\\.com").unwrap();
        check_regex("x[^0-9]+").unwrap();
        for bad in ["a[1", "(", "^abc", "abc$", "\\d+", ""] {
            assert!(check_regex(bad).is_err(), "{bad}");
        }
        assert_eq!(
            field_of(LogFilter::parse(&params(&[("name_regex", "a[")]), &[]).unwrap_err()),
            "name_regex"
        );
    }

    #[test]
    fn unknown_parameters_and_bad_values_name_themselves() {
        assert_eq!(
            field_of(LogFilter::parse(&params(&[("verdikt", "block")]), &[]).unwrap_err()),
            "verdikt"
        );
        assert_eq!(
            field_of(LogFilter::parse(&params(&[("verdict", "evil")]), &[]).unwrap_err()),
            "verdict"
        );
        assert_eq!(
            field_of(LogFilter::parse(&params(&[("score_min", "2")]), &[]).unwrap_err()),
            "score_min"
        );
        assert!(LogFilter::parse(&params(&[("after", "x")]), &["after"]).is_ok());
    }

    #[test]
    fn wildcards_are_escaped_and_cursors_round_trip() {
        let f = LogFilter::parse(&params(&[("name", "a*b")]), &[]).unwrap();
        let q = f.query(OffsetDateTime::now_utc());
        assert_eq!(
            q["bool"]["filter"][2]["wildcard"]["dns.question.name"]["value"],
            "*a\\*b*"
        );
        let sort = json!([1796191320000u64, "abc-1"]);
        assert_eq!(decode_cursor(&encode_cursor(&sort)).unwrap(), sort);
        assert!(decode_cursor("!!").is_err());
    }

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"x\""), "\"say \"\"x\"\"\"");
        assert_eq!(csv_field("=cmd()"), "'=cmd()");
        assert_eq!(csv_field("plain"), "plain");
    }
}
