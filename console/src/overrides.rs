//! Analysts' overrides (`<prefix>-overrides`, contract 4 with its feed): allow or
//! deny by exact name, registered domain or suffix, optionally for some clients only and
//! until an expiry, always with a reason. One document per override (`_id` = its id) with
//! who, when and why; removing one marks it removed (who, when) rather than deleting it.
//! Every change is an audit entry; a change whose audit entry cannot be written is undone.
//!
//! The filter polls `GET /v1/overrides?since=<version>` (bearer token from
//! `overrides.feed_token_file`): the set's version is the newest `updated_ms` among the
//! documents or the last cache flush, so it changes with every creation, removal and flush;
//! 304 when `since` is current.
//!
//! Flushing the gateway's verdict cache (`POST /api/cache/flush`, analyst, with a reason) is
//! an audit entry (`cache.flush`) whose `details.generation` (Unix ms) the feed carries as
//! `cache_generation`: a filter adopting a new value stops serving what it cached before.

use std::collections::BTreeMap;

use axum::{
    body::Bytes,
    extract::{Path, Query, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use dohguard_core::overrides::{
    check_target, ClientScope, Override, OverrideAction, OverrideMatch, OverrideSet,
};
use minijinja::context;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::{
    api::json_body,
    app::AppState,
    auth::{Role, Session},
    error::ApiError,
    store::StoreError,
    time_range::{parse_rfc3339, rfc3339},
};

/// Most client scopes on one override.
pub const MAX_CLIENTS: usize = 100;
/// Longest expiry accepted.
pub const MAX_EXPIRY_S: i64 = 366 * 24 * 3600;
/// Most override documents read (active, expired and removed).
pub const MAX_DOCUMENTS: usize = 10_000;

/// `POST /api/overrides`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverrideRequest {
    pub action: OverrideAction,
    #[serde(rename = "match")]
    pub target: OverrideMatch,
    pub name: String,
    #[serde(default)]
    pub clients: Vec<String>,
    /// RFC 3339; or give `expires_in`.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// `30m`, `1h`, `24h`, `7d`...; or give `expires_at`.
    #[serde(default)]
    pub expires_in: Option<String>,
    pub reason: String,
}

/// A stored override (the index's documents).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OverrideDoc {
    pub id: String,
    pub action: OverrideAction,
    #[serde(rename = "match")]
    pub target: OverrideMatch,
    pub name: String,
    pub clients: Vec<String>,
    pub expires_at: Option<String>,
    pub expires_at_ms: Option<u64>,
    pub reason: String,
    pub created_by: String,
    pub created_at: String,
    pub created_ms: u64,
    pub removed_by: Option<String>,
    pub removed_at: Option<String>,
    /// When this document last changed (Unix ms): the set's version is the newest of them.
    pub updated_ms: u64,
}

impl OverrideDoc {
    pub fn status(&self, now_ms: u64) -> &'static str {
        if self.removed_at.is_some() {
            "removed"
        } else if self.expires_at_ms.is_some_and(|at| at <= now_ms) {
            "expired"
        } else {
            "active"
        }
    }

    fn to_wire(&self) -> Override {
        Override {
            id: self.id.clone(),
            action: self.action,
            target: self.target,
            name: self.name.clone(),
            clients: self.clients.clone(),
            expires_at_ms: self.expires_at_ms,
            created_ms: self.created_ms,
        }
    }
}

fn now_ms(t: OffsetDateTime) -> u64 {
    (t.unix_timestamp_nanos() / 1_000_000) as u64
}

/// `30m`, `12h`, `7d` as seconds.
pub fn parse_duration(s: &str) -> Option<i64> {
    let s = s.trim();
    let (n, unit) = s.split_at(s.len().checked_sub(1)?);
    let n: i64 = n.parse().ok().filter(|n| *n > 0)?;
    let unit = match unit {
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    n.checked_mul(unit)
}

/// Checks a request against every rule before anything is written; returns the document
/// to store (its `id`, `created_*` and `updated_ms` are filled in by [`create`]).
pub fn check(req: &OverrideRequest, now: OffsetDateTime) -> Result<OverrideDoc, ApiError> {
    let name =
        check_target(req.target, &req.name).map_err(|e| ApiError::bad("name", e.to_string()))?;
    if req.clients.len() > MAX_CLIENTS {
        return Err(ApiError::bad(
            "clients",
            format!("at most {MAX_CLIENTS} clients"),
        ));
    }
    let mut clients = Vec::with_capacity(req.clients.len());
    for c in req.clients.iter().filter(|c| !c.trim().is_empty()) {
        let scope = ClientScope::parse(c).map_err(|e| ApiError::bad("clients", e.to_string()))?;
        clients.push(scope.text());
    }
    let expires = match (&req.expires_at, &req.expires_in) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad(
                "expires_in",
                "give expires_at or expires_in, not both",
            ))
        }
        (None, None) => None,
        (Some(at), None) if at.is_empty() => None,
        (None, Some(d)) if d.is_empty() => None,
        (Some(at), None) => Some(
            parse_rfc3339(at).map_err(|e| ApiError::bad("expires_at", format!("{at:?}: {e}")))?,
        ),
        (None, Some(d)) => {
            let s = parse_duration(d).ok_or_else(|| {
                ApiError::bad("expires_in", format!("{d:?}: use e.g. 30m, 12h or 7d"))
            })?;
            Some(now + time::Duration::seconds(s.min(MAX_EXPIRY_S + 1)))
        }
    };
    if let Some(at) = expires {
        let field = if req.expires_at.is_some() {
            "expires_at"
        } else {
            "expires_in"
        };
        if at <= now {
            return Err(ApiError::bad(field, "the expiry is in the past"));
        }
        if at - now > time::Duration::seconds(MAX_EXPIRY_S) {
            return Err(ApiError::bad(field, "at most 366 days ahead"));
        }
    }
    let reason = crate::labels::check_reason(&req.reason)?.to_owned();
    Ok(OverrideDoc {
        id: String::new(),
        action: req.action,
        target: req.target,
        name,
        clients,
        expires_at: expires.map(rfc3339),
        expires_at_ms: expires.map(now_ms),
        reason,
        created_by: String::new(),
        created_at: rfc3339(now),
        created_ms: now_ms(now),
        removed_by: None,
        removed_at: None,
        updated_ms: 0,
    })
}

/// The override set as stored: every override, oldest first, the last cache flush, and the
/// set's version (the newest of the two).
pub struct Current {
    pub version: u64,
    pub cache_generation: u64,
    pub docs: Vec<OverrideDoc>,
}

/// What is stored now.
pub async fn all(state: &AppState) -> Result<Current, ApiError> {
    let cache_generation = cache_generation(state).await?;
    let (version, docs) = overrides(state).await?;
    Ok(Current {
        version: version.max(cache_generation),
        cache_generation,
        docs,
    })
}

/// When the verdict cache was last flushed (Unix ms; 0: never): the newest successful
/// `cache.flush` audit entry.
async fn cache_generation(state: &AppState) -> Result<u64, ApiError> {
    let body = json!({"size": 1, "sort": [{"@timestamp": "desc"}], "query": {"bool": {"filter": [
        {"term": {"action": FLUSH_ACTION}}, {"term": {"outcome": "success"}}]}}});
    let reply = state.store.search(&state.store.indices.audit, body).await?;
    match crate::query_log::sources(&reply).first() {
        None => Ok(0),
        Some(entry) => entry["details"]["generation"].as_u64().ok_or_else(|| {
            StoreError::Unreadable(format!(
                "{FLUSH_ACTION} audit entry without a generation: {entry}"
            ))
            .into()
        }),
    }
}

/// The audit action of a cache flush.
pub const FLUSH_ACTION: &str = "cache.flush";

/// Every stored override, oldest first, and the newest `updated_ms` among them.
async fn overrides(state: &AppState) -> Result<(u64, Vec<OverrideDoc>), ApiError> {
    let body = json!({"size": MAX_DOCUMENTS, "query": {"match_all": {}}});
    let reply = state
        .store
        .search(&state.store.indices.overrides, body)
        .await?;
    let mut docs = crate::query_log::sources(&reply)
        .into_iter()
        .map(serde_json::from_value::<OverrideDoc>)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| StoreError::Unreadable(format!("override document: {e}")))?;
    docs.sort_by_key(|d| (d.created_ms, d.id.clone()));
    let version = docs.iter().map(|d| d.updated_ms).max().unwrap_or(0);
    Ok((version, docs))
}

/// Stores a checked override and its audit entry (undone if the entry cannot be written).
pub async fn create(
    state: &AppState,
    session: &Session,
    req: OverrideRequest,
) -> Result<OverrideDoc, ApiError> {
    session.require(Role::Analyst)?;
    let now = OffsetDateTime::now_utc();
    let mut doc = check(&req, now)?;
    let version = all(state).await?.version;
    doc.id = crate::auth::random_token(12);
    doc.created_by = session.username.clone();
    doc.updated_ms = now_ms(now).max(version + 1);
    let index = &state.store.indices.overrides;
    let value = serde_json::to_value(&doc).expect("an override serialises");
    if !state.store.create(index, &doc.id, &value).await? {
        return Err(StoreError::Unreadable(format!("override id {} exists", doc.id)).into());
    }
    let details = json!({"id": doc.id, "action": doc.action, "match": doc.target,
        "clients": doc.clients, "expires_at": doc.expires_at});
    if let Err(e) = crate::audit::record(
        state,
        &session.username,
        "override.create",
        "success",
        &doc.name,
        Some(&doc.reason),
        details,
    )
    .await
    {
        state.store.delete(index, &doc.id).await?;
        return Err(e.into());
    }
    Ok(doc)
}

/// Marks an override removed (who, when) and audits it; the previous document is put back
/// if the audit entry cannot be written.
pub async fn remove(
    state: &AppState,
    session: &Session,
    id: &str,
) -> Result<OverrideDoc, ApiError> {
    session.require(Role::Analyst)?;
    let Current { version, docs, .. } = all(state).await?;
    let old = docs
        .into_iter()
        .find(|d| d.id == id)
        .ok_or_else(|| ApiError::NotFound(format!("override {id:?}")))?;
    if old.removed_at.is_some() {
        return Err(ApiError::bad(
            "id",
            format!("override {id} is removed already"),
        ));
    }
    let now = OffsetDateTime::now_utc();
    let mut doc = old.clone();
    doc.removed_by = Some(session.username.clone());
    doc.removed_at = Some(rfc3339(now));
    doc.updated_ms = now_ms(now).max(version + 1);
    let index = &state.store.indices.overrides;
    state
        .store
        .put(index, id, &serde_json::to_value(&doc).expect("serialises"))
        .await?;
    if let Err(e) = crate::audit::record(
        state,
        &session.username,
        "override.remove",
        "success",
        &doc.name,
        None,
        json!({"id": id}),
    )
    .await
    {
        state
            .store
            .put(index, id, &serde_json::to_value(&old).expect("serialises"))
            .await?;
        return Err(e.into());
    }
    Ok(doc)
}

/// The set served to the filter: active overrides only (removed and expired left out).
pub fn feed(current: &Current, now_ms: u64) -> OverrideSet {
    OverrideSet {
        version: current.version,
        cache_generation: current.cache_generation,
        overrides: current
            .docs
            .iter()
            .filter(|d| d.status(now_ms) == "active")
            .map(OverrideDoc::to_wire)
            .collect(),
    }
}

// HTTP glue.

type Params = Result<Query<BTreeMap<String, String>>, axum::extract::rejection::QueryRejection>;

/// Checks the feed's bearer token against `overrides.feed_token_file` (read on each poll, so
/// a rotated token applies without a restart).
async fn check_feed_token(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let path = &state.config.overrides.feed_token_file;
    if path.as_os_str().is_empty() {
        return Err(ApiError::NotFound(
            "the override feed (no overrides.feed_token_file configured)".into(),
        ));
    }
    let expected = tokio::fs::read_to_string(path).await.map_err(|e| {
        tracing::warn!(path = %path.display(), error = %e, "override feed token unreadable");
        ApiError::NotFound("the override feed (its token file is unreadable)".into())
    })?;
    let sent = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let expected = expected.trim();
    if expected.is_empty() || !crate::auth::constant_time_eq(sent.as_bytes(), expected.as_bytes()) {
        return Err(ApiError::FeedToken);
    }
    Ok(())
}

/// `GET /v1/overrides?since=<version>`: 304 when `since` is the current version, else the set.
pub async fn feed_handler(
    State(state): State<AppState>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response, ApiError> {
    check_feed_token(&state, &headers).await?;
    let params = p
        .map(|Query(p)| p)
        .map_err(|e| ApiError::BadRequest(format!("unreadable query string: {e}")))?;
    let since = match params.get("since") {
        None => None,
        Some(s) => Some(
            s.parse::<u64>()
                .map_err(|_| ApiError::bad("since", format!("{s:?} is not a version")))?,
        ),
    };
    let current = all(&state).await?;
    if since == Some(current.version) {
        return Ok(StatusCode::NOT_MODIFIED.into_response());
    }
    let set = feed(&current, now_ms(OffsetDateTime::now_utc()));
    Ok(Json(set).into_response())
}

fn listed(docs: Vec<OverrideDoc>, now: u64) -> Vec<Value> {
    docs.into_iter()
        .rev()
        .map(|d| {
            let status = d.status(now);
            let mut v = serde_json::to_value(d).expect("serialises");
            v["status"] = json!(status);
            v
        })
        .collect()
}

/// `GET /api/overrides`: every override, newest first, with its status.
pub async fn list(
    State(state): State<AppState>,
    _session: Session,
) -> Result<Json<Value>, ApiError> {
    let current = all(&state).await?;
    let now = now_ms(OffsetDateTime::now_utc());
    Ok(Json(json!({"version": current.version,
        "cache_generation": current.cache_generation,
        "overrides": listed(current.docs, now)})))
}

/// A cache generation (Unix ms) as RFC 3339, for the page.
fn flushed_at(generation: u64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(generation) * 1_000_000)
        .map(rfc3339)
        .unwrap_or_else(|_| format!("{generation} ms"))
}

/// The body of `POST /api/cache/flush`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlushRequest {
    pub reason: String,
}

/// Flushes the gateway's verdict cache: a new `cache_generation` in the feed, audited with
/// who and why. Every filter worker stops serving its cached verdicts once it adopts the set
/// (within the poll interval); verdicts are then asked of the scorer again.
pub async fn flush(
    state: &AppState,
    session: &Session,
    req: FlushRequest,
) -> Result<u64, ApiError> {
    session.require(Role::Analyst)?;
    let reason = req.reason.trim();
    if reason.is_empty() {
        return Err(ApiError::bad("reason", "a reason is required"));
    }
    let version = all(state).await?.version;
    let generation = now_ms(OffsetDateTime::now_utc()).max(version + 1);
    crate::audit::record(
        state,
        &session.username,
        FLUSH_ACTION,
        "success",
        "verdict cache",
        Some(reason),
        json!({"generation": generation}),
    )
    .await?;
    Ok(generation)
}

/// `POST /api/cache/flush` (analyst).
pub async fn flush_handler(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: FlushRequest = json_body(&headers, &body)?;
    let generation = flush(&state, &session, req).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"cache_generation": generation, "version": generation})),
    )
        .into_response())
}

/// `POST /api/overrides` (analyst).
pub async fn add(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    session.require(Role::Analyst)?;
    let req: OverrideRequest = json_body(&headers, &body)?;
    let doc = create(&state, &session, req).await?;
    Ok((StatusCode::CREATED, Json(doc)).into_response())
}

/// `DELETE /api/overrides/{id}` (analyst).
pub async fn delete(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Json<OverrideDoc>, ApiError> {
    Ok(Json(remove(&state, &session, &id).await?))
}

/// The `/overrides` page.
pub async fn page(State(state): State<AppState>, session: Result<Session, ApiError>) -> Response {
    let session = match session {
        Ok(s) => s,
        Err(e) => return crate::pages::page_error(&state, None, e),
    };
    match all(&state).await {
        Ok(Current {
            version,
            cache_generation,
            docs,
        }) => {
            let now = now_ms(OffsetDateTime::now_utc());
            crate::pages::render(
                &state,
                "overrides.html",
                context! {
                    title => "Overrides", user => &session.username, role => session.role.as_str(), csrf => &session.csrf_token,
                    can_override => session.role >= Role::Analyst,
                    version => version,
                    cache_flushed => (cache_generation > 0).then(|| flushed_at(cache_generation)),
                    overrides => minijinja::Value::from_serialize(listed(docs, now)),
                },
            )
        }
        Err(e) => crate::pages::page_error(&state, Some(&session), e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(target: OverrideMatch, name: &str) -> OverrideRequest {
        OverrideRequest {
            action: OverrideAction::Allow,
            target,
            name: name.into(),
            clients: vec![],
            expires_at: None,
            expires_in: None,
            reason: "known good".into(),
        }
    }

    #[test]
    fn requests_are_checked_before_anything_is_stored() {
        let now = OffsetDateTime::now_utc();
        let doc = check(&req(OverrideMatch::Exact, "Ads.Example.TEST."), now).unwrap();
        assert_eq!(doc.name, "ads.example.test");
        let field = |r: &OverrideRequest| match check(r, now) {
            Err(ApiError::BadInput { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(&req(OverrideMatch::Suffix, "com")), "name");
        assert_eq!(
            field(&req(OverrideMatch::RegisteredDomain, "a.example.com")),
            "name"
        );
        let mut r = req(OverrideMatch::Exact, "a.test");
        r.reason = "  ".into();
        assert_eq!(field(&r), "reason");
        let mut r = req(OverrideMatch::Exact, "a.test");
        r.clients = vec!["10.0.0.0/40".into()];
        assert_eq!(field(&r), "clients");
        let mut r = req(OverrideMatch::Exact, "a.test");
        r.expires_in = Some("soon".into());
        assert_eq!(field(&r), "expires_in");
        r.expires_in = Some("400d".into());
        assert_eq!(field(&r), "expires_in");
        r.expires_in = None;
        r.expires_at = Some("2001-01-01T00:00:00Z".into());
        assert_eq!(field(&r), "expires_at");
        r.expires_at = None;
        r.expires_in = Some("1h".into());
        r.clients = vec!["10.1.2.3/8".into(), "spiffe://mesh/sa/ci".into()];
        let doc = check(&r, now).unwrap();
        assert_eq!(doc.clients, ["10.0.0.0/8", "spiffe://mesh/sa/ci"]);
        assert_eq!(doc.expires_at_ms, Some(now_ms(now) + 3_600_000));
    }

    #[test]
    fn the_feed_holds_active_overrides_only() {
        let now = OffsetDateTime::now_utc();
        let base = check(&req(OverrideMatch::Exact, "a.test"), now).unwrap();
        let mut removed = base.clone();
        removed.id = "r".into();
        removed.removed_at = Some(rfc3339(now));
        let mut expired = base.clone();
        expired.id = "e".into();
        expired.expires_at_ms = Some(now_ms(now) - 1);
        let mut active = base;
        active.id = "a".into();
        let current = Current {
            version: 9,
            cache_generation: 7,
            docs: vec![removed, expired, active],
        };
        let set = feed(&current, now_ms(now));
        assert_eq!(set.version, 9);
        assert_eq!(set.cache_generation, 7);
        assert_eq!(set.overrides.len(), 1);
        assert_eq!(set.overrides[0].id, "a");
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("30m"), Some(1800));
        assert_eq!(parse_duration("7d"), Some(604_800));
        assert_eq!(parse_duration("0h"), None);
        assert_eq!(parse_duration("h"), None);
        assert_eq!(parse_duration(""), None);
    }
}
