//! Analysts' labels on registered domains (`<prefix>-labels`): append-only, one document per
//! decision with who, when and why; a domain's current label is its newest document. Each
//! label is also an audit entry.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::{app::AppState, auth::Session, error::ApiError, time_range::rfc3339};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Label {
    Benign,
    Malicious,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelRequest {
    pub domain: String,
    pub label: Label,
    pub reason: String,
}

/// Longest reason kept.
pub const MAX_REASON: usize = 2000;

/// The registered domain `input` names: normalised, and itself a registered domain (a
/// public suffix such as `com`, or a name below a registered domain, is refused).
pub fn registered_domain(input: &str) -> Result<String, ApiError> {
    let name = dohguard_core::name::normalize(input)
        .map_err(|e| ApiError::bad("domain", format!("{input:?}: {e}")))?;
    match dohguard_core::name::registered_domain(&name) {
        None => Err(ApiError::bad(
            "domain",
            format!("{name:?} is a public suffix, not a registered domain"),
        )),
        Some(rd) if rd != name => Err(ApiError::bad(
            "domain",
            format!("{name:?} is not a registered domain; label {rd:?} instead"),
        )),
        Some(rd) => Ok(rd.to_owned()),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkLabelRequest {
    pub domains: Vec<String>,
    pub label: Label,
    pub reason: String,
}

/// Most domains in one bulk label.
pub const MAX_BULK: usize = 500;

/// Labels every domain of `req` alike. Every domain and the reason are checked before
/// anything is written, so bad input stores nothing.
pub async fn add_bulk(
    state: &AppState,
    session: &Session,
    req: BulkLabelRequest,
) -> Result<Vec<Value>, ApiError> {
    session.require(crate::auth::Role::Analyst)?;
    if req.domains.is_empty() || req.domains.len() > MAX_BULK {
        return Err(ApiError::bad(
            "domains",
            format!("give 1 to {MAX_BULK} domains"),
        ));
    }
    let domains = req
        .domains
        .iter()
        .map(|d| registered_domain(d))
        .collect::<Result<Vec<_>, _>>()?;
    check_reason(&req.reason)?;
    let mut stored = Vec::with_capacity(domains.len());
    for domain in domains {
        let one = LabelRequest {
            domain,
            label: req.label,
            reason: req.reason.clone(),
        };
        stored.push(add(state, session, one).await?);
    }
    Ok(stored)
}

pub(crate) fn check_reason(reason: &str) -> Result<&str, ApiError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(ApiError::bad("reason", "a reason is required"));
    }
    if reason.chars().count() > MAX_REASON {
        return Err(ApiError::bad(
            "reason",
            format!("at most {MAX_REASON} characters"),
        ));
    }
    Ok(reason)
}

/// Every labelled registered domain (for the vetting queue to leave out).
pub async fn labelled_domains(
    state: &AppState,
) -> Result<std::collections::HashSet<String>, ApiError> {
    let body = json!({"size": 0, "aggs": {"domains": {"terms": {"field": "registered_domain", "size": 65536}}}});
    let reply = state
        .store
        .search(&state.store.indices.labels, body)
        .await?;
    Ok(reply["aggregations"]["domains"]["buckets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b["key"].as_str().map(str::to_owned))
        .collect())
}

/// Stores the label and its audit entry; returns the stored document.
pub async fn add(
    state: &AppState,
    session: &Session,
    req: LabelRequest,
) -> Result<Value, ApiError> {
    crate::auth::Session::require(session, crate::auth::Role::Analyst)?;
    let domain = registered_domain(&req.domain)?;
    let reason = req.reason.trim();
    if reason.is_empty() {
        return Err(ApiError::bad("reason", "a reason is required"));
    }
    if reason.chars().count() > MAX_REASON {
        return Err(ApiError::bad(
            "reason",
            format!("at most {MAX_REASON} characters"),
        ));
    }
    let doc = json!({
        "@timestamp": rfc3339(OffsetDateTime::now_utc()),
        "registered_domain": domain,
        "label": req.label,
        "reason": reason,
        "labelled_by": session.username,
    });
    state
        .store
        .append(&state.store.indices.labels, &doc)
        .await?;
    crate::audit::record(
        state,
        &session.username,
        "label",
        "success",
        &domain,
        Some(reason),
        json!({"label": req.label}),
    )
    .await?;
    Ok(doc)
}

/// Every label of `domain`, newest first.
pub async fn history(state: &AppState, domain: &str) -> Result<Vec<Value>, ApiError> {
    let body = json!({
        "size": 100,
        "sort": [{"@timestamp": "desc"}],
        "query": {"term": {"registered_domain": domain}}
    });
    let reply = state
        .store
        .search(&state.store.indices.labels, body)
        .await?;
    Ok(crate::query_log::sources(&reply))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_registered_domains_are_labelled() {
        assert_eq!(registered_domain("Example.COM.").unwrap(), "example.com");
        assert!(registered_domain("com").is_err());
        assert!(registered_domain("github.io").is_err());
        assert!(registered_domain("www.example.com").is_err());
        assert!(registered_domain("bad..name").is_err());
    }
}
