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
