//! The JSON API handlers: thin glue between HTTP and the pure modules (`query_log`,
//! `overview`, `labels`, `auth`). Errors are [`ApiError`]s (problem+json).

use std::collections::BTreeMap;

use axum::{
    body::{Body, Bytes},
    extract::{Path, Query, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use dohguard_schema::VerdictDocument;
use serde::{de::DeserializeOwned, Deserialize};
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::{
    app::AppState,
    auth::{self, Role, Session},
    error::ApiError,
    labels, overview,
    query_log::{self, LogFilter, Row},
    store::StoreError,
};

type Params = Result<Query<BTreeMap<String, String>>, axum::extract::rejection::QueryRejection>;

fn params(p: Params) -> Result<BTreeMap<String, String>, ApiError> {
    p.map(|Query(p)| p)
        .map_err(|e| ApiError::BadRequest(format!("unreadable query string: {e}")))
}

/// A JSON body: `application/json` only (a cross-site form cannot send it), parsed with
/// errors that say what is wrong.
pub fn json_body<T: DeserializeOwned>(headers: &HeaderMap, body: &Bytes) -> Result<T, ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim() == "application/json")
        });
    if !is_json {
        return Err(ApiError::BadRequest(
            "send the body as application/json".into(),
        ));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("body: {e}")))
}

pub async fn readyz(State(state): State<AppState>) -> Response {
    if state.store.ping().await {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "Elasticsearch unreachable").into_response()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    username: String,
    password: String,
}

pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: LoginRequest = json_body(&headers, &body)?;
    match auth::login(&state, &req.username, &req.password).await {
        Ok(session) => {
            crate::audit::record(
                &state,
                &session.doc.username,
                "login",
                "success",
                &session.doc.username,
                None,
                json!({}),
            )
            .await?;
            let cookie = auth::session_cookie(
                &session.token,
                state.config.session.ttl_s,
                state.config.session.secure_cookie,
            );
            let body = json!({
                "username": session.doc.username, "role": session.doc.role,
                "csrf_token": session.doc.csrf_token, "expires_at": session.doc.expires_at,
            });
            Ok(([(header::SET_COOKIE, cookie)], Json(body)).into_response())
        }
        Err(ApiError::LoginFailed) => {
            let who = if auth::valid_username(&req.username) {
                req.username.as_str()
            } else {
                "(invalid name)"
            };
            crate::audit::record(&state, who, "login", "failure", who, None, json!({})).await?;
            Err(ApiError::LoginFailed)
        }
        Err(ApiError::AccountDisabled) => {
            let who = req.username.as_str();
            let why = json!({"why": "the account is disabled"});
            crate::audit::record(&state, who, "login", "failure", who, None, why).await?;
            Err(ApiError::AccountDisabled)
        }
        Err(other) => Err(other),
    }
}

pub async fn logout(State(state): State<AppState>, session: Session) -> Result<Response, ApiError> {
    auth::logout(&state, &session).await?;
    crate::audit::record(
        &state,
        &session.username,
        "logout",
        "success",
        &session.username,
        None,
        json!({}),
    )
    .await?;
    let cookie = auth::session_cookie("", 0, state.config.session.secure_cookie);
    Ok(([(header::SET_COOKIE, cookie)], StatusCode::NO_CONTENT).into_response())
}

pub async fn me(session: Session) -> Json<Value> {
    Json(
        json!({"username": session.username, "role": session.role, "csrf_token": session.csrf_token}),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    username: String,
    role: Role,
    password: String,
}

pub async fn create_user(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    session.require(Role::Admin)?;
    let req: NewUser = json_body(&headers, &body)?;
    if !auth::create_user(
        &state,
        &req.username,
        req.role,
        &req.password,
        &session.username,
    )
    .await?
    {
        return Err(ApiError::bad(
            "username",
            format!("{:?} exists already", req.username),
        ));
    }
    crate::audit::record(
        &state,
        &session.username,
        "user.create",
        "success",
        &req.username,
        None,
        json!({"role": req.role}),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"username": req.username, "role": req.role})),
    )
        .into_response())
}

pub async fn audit(
    State(state): State<AppState>,
    session: Session,
) -> Result<Json<Value>, ApiError> {
    session.require(Role::Admin)?;
    Ok(Json(
        json!({"entries": crate::audit::recent(&state, 200).await?}),
    ))
}

/// A store refusal caused by the user's regular expression is their bad input.
fn blame(filter: &LogFilter) -> impl Fn(StoreError) -> ApiError + '_ {
    move |e| match e {
        StoreError::Refused(reason) if filter.has_regex => ApiError::bad("name_regex", reason),
        other => other.into(),
    }
}

pub async fn overview_data(
    state: &AppState,
    params: &BTreeMap<String, String>,
) -> Result<(LogFilter, overview::Overview), ApiError> {
    let filter = LogFilter::parse(params, &[])?;
    let now = OffsetDateTime::now_utc();
    if let Some(cache) = &state.overview_cache {
        let index = &state.store.indices.verdicts;
        if let Some(data) = cache.overview(&state.store, index, &filter, now).await? {
            return Ok((filter, data));
        }
    }
    let reply = state
        .store
        .search(&state.store.indices.verdicts, overview::body(&filter, now))
        .await
        .map_err(blame(&filter))?;
    let data = overview::parse(&reply, &filter, now).map_err(StoreError::Unreadable)?;
    Ok((filter, data))
}

pub async fn overview(
    State(state): State<AppState>,
    _session: Session,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    let (_, data) = overview_data(&state, &params(p)?).await?;
    Ok(Json(
        serde_json::to_value(data).expect("the overview serialises"),
    ))
}

/// One page of the log.
#[derive(Debug, serde::Serialize)]
pub struct Page {
    pub total: u64,
    pub rows: Vec<Row>,
    /// Cursor of the next page (`after=`), absent on the last one.
    pub next: Option<String>,
    pub next_href: Option<String>,
}

fn page_size(state: &AppState, params: &BTreeMap<String, String>) -> Result<usize, ApiError> {
    match params.get("size").filter(|s| !s.is_empty()) {
        None => Ok(state.config.log.page_size),
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=state.config.log.max_page_size).contains(&n) => Ok(n),
            _ => Err(ApiError::bad(
                "size",
                format!(
                    "{s:?}: a page holds 1 to {} rows",
                    state.config.log.max_page_size
                ),
            )),
        },
    }
}

fn search_body(
    filter: &LogFilter,
    now: OffsetDateTime,
    size: usize,
    after: Option<&Value>,
    total: bool,
) -> Value {
    let mut body = json!({"size": size, "sort": query_log::sort(), "query": filter.query(now), "track_total_hits": total});
    if let Some(after) = after {
        body["search_after"] = after.clone();
    }
    body
}

pub async fn log_page(
    state: &AppState,
    params: &BTreeMap<String, String>,
) -> Result<(LogFilter, Page), ApiError> {
    let filter = LogFilter::parse(params, &["after", "size"])?;
    let size = page_size(state, params)?;
    let after = params
        .get("after")
        .filter(|s| !s.is_empty())
        .map(|c| query_log::decode_cursor(c))
        .transpose()?;
    let now = OffsetDateTime::now_utc();
    let reply = state
        .store
        .search(
            &state.store.indices.verdicts,
            search_body(&filter, now, size, after.as_ref(), true),
        )
        .await
        .map_err(blame(&filter))?;
    let total = reply["hits"]["total"]["value"]
        .as_u64()
        .ok_or_else(|| StoreError::Unreadable("no hit total".into()))?;
    let rows = query_log::rows(&reply)?;
    let next = (rows.len() == size)
        .then(|| rows.last().map(|(_, sort)| query_log::encode_cursor(sort)))
        .flatten();
    let next_href = next.as_ref().map(|c| {
        let mut extra = vec![("after", c.as_str())];
        let size_s = size.to_string();
        if params.contains_key("size") {
            extra.push(("size", size_s.as_str()));
        }
        filter.link(&extra)
    });
    Ok((
        filter,
        Page {
            total,
            rows: rows.into_iter().map(|(r, _)| r).collect(),
            next,
            next_href,
        },
    ))
}

pub async fn log(
    State(state): State<AppState>,
    _session: Session,
    p: Params,
) -> Result<Json<Page>, ApiError> {
    let (_, page) = log_page(&state, &params(p)?).await?;
    Ok(Json(page))
}

#[derive(Clone, Copy, PartialEq)]
enum Format {
    Csv,
    Ndjson,
}

/// The filtered log as CSV or NDJSON, streamed: one store page (`log.export_batch` rows) at
/// a time goes out before the next is fetched, so memory stays flat whatever the size. A
/// store failure mid-way aborts the transfer (the client sees a truncated download, never a
/// short file that looks complete).
pub async fn export(
    State(state): State<AppState>,
    session: Session,
    p: Params,
) -> Result<Response, ApiError> {
    let params = params(p)?;
    let format = match params.get("format").map(String::as_str) {
        None | Some("csv") => Format::Csv,
        Some("ndjson") => Format::Ndjson,
        Some(other) => {
            return Err(ApiError::bad(
                "format",
                format!("{other:?}: use csv or ndjson"),
            ))
        }
    };
    let filter = LogFilter::parse(&params, &["format"])?;
    let now = OffsetDateTime::now_utc();
    // Check the query before the 200 goes out.
    state
        .store
        .search(
            &state.store.indices.verdicts,
            search_body(&filter, now, 0, None, false),
        )
        .await
        .map_err(blame(&filter))?;
    tracing::info!(user = %session.username, query = ?filter.to_query(), "export");
    let batch = state.config.log.export_batch;
    struct Cursor {
        after: Option<Value>,
        header_sent: bool,
        done: bool,
    }
    let start = Cursor {
        after: None,
        header_sent: format == Format::Ndjson,
        done: false,
    };
    let stream = futures::stream::unfold(start, move |mut cur| {
        let state = state.clone();
        let filter = filter.clone();
        async move {
            if !cur.header_sent {
                cur.header_sent = true;
                return Some((Ok(Bytes::from_static(Row::CSV_HEADER.as_bytes())), cur));
            }
            if cur.done {
                return None;
            }
            let body = search_body(&filter, now, batch, cur.after.as_ref(), false);
            let reply = match state
                .store
                .search(&state.store.indices.verdicts, body)
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "export aborted");
                    cur.done = true;
                    return Some((Err(std::io::Error::other(e.to_string())), cur));
                }
            };
            let hits = reply["hits"]["hits"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if hits.len() < batch {
                cur.done = true;
            }
            cur.after = hits.last().map(|h| h["sort"].clone());
            let mut chunk = String::new();
            for hit in &hits {
                match format {
                    Format::Ndjson => {
                        chunk.push_str(&hit["_source"].to_string());
                        chunk.push('\n');
                    }
                    Format::Csv => {
                        match serde_json::from_value::<VerdictDocument>(hit["_source"].clone()) {
                            Ok(doc) => chunk.push_str(&Row::from_doc(&doc).to_csv()),
                            Err(e) => {
                                cur.done = true;
                                return Some((
                                    Err(std::io::Error::other(format!(
                                        "document {}: {e}",
                                        hit["_id"]
                                    ))),
                                    cur,
                                ));
                            }
                        }
                    }
                }
            }
            if hits.is_empty() {
                return None;
            }
            Some((Ok(Bytes::from(chunk)), cur))
        }
    });
    let (content_type, ext) = match format {
        Format::Csv => ("text/csv; charset=utf-8", "csv"),
        Format::Ndjson => ("application/x-ndjson", "ndjson"),
    };
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"dohguard-verdicts.{ext}\""),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// One verdict explained: the document, why it came out so, and its domain's history.
pub async fn verdict_data(state: &AppState, id: &str) -> Result<Value, ApiError> {
    if id.is_empty() || id.len() > 256 {
        return Err(ApiError::bad("id", "not an event id"));
    }
    let reply = state
        .store
        .search(
            &state.store.indices.verdicts,
            json!({"size": 1, "query": {"term": {"event.id": id}}}),
        )
        .await?;
    let source = query_log::sources(&reply)
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::NotFound(format!("verdict {id:?}")))?;
    let doc: VerdictDocument = serde_json::from_value(source.clone())
        .map_err(|e| StoreError::Unreadable(format!("verdict {id}: {e}")))?;
    let d = &doc.dohguard;
    let thresholds = thresholds(state).await;
    let why = json!({
        "verdict": d.verdict, "layer": d.reason, "cached": d.cached, "cached_layer": d.cached_reason,
        "enforced": d.enforced,
        "rule": doc.rule.as_ref().map(|r| &r.name), "ruleset": doc.rule.as_ref().map(|r| &r.ruleset),
        "score": d.score, "thresholds": thresholds, "model_version": d.model_version,
        "latency_us": d.latency_us, "answer": d.answer,
        "response_code": doc.dns.as_ref().and_then(|x| x.response_code.clone()),
    });
    let domain = match doc
        .dns
        .as_ref()
        .and_then(|x| x.question.registered_domain.clone())
    {
        Some(rd) => Some(domain_history(state, &rd).await?),
        None => None,
    };
    Ok(json!({"id": id, "document": source, "why": why, "domain": domain}))
}

/// The scorer's thresholds in force, or why they are unknown.
async fn thresholds(state: &AppState) -> Value {
    if state.config.scorer_url.is_empty() {
        return json!({"unavailable": "no scorer_url configured"});
    }
    let url = format!("{}/v1/model", state.config.scorer_url.trim_end_matches('/'));
    match state.http.get(&url).send().await {
        Ok(r) if r.status().is_success() => match r.json::<Value>().await {
            Ok(v) => v["thresholds_in_force"].clone(),
            Err(e) => json!({"unavailable": format!("unreadable reply from {url}: {e}")}),
        },
        Ok(r) => json!({"unavailable": format!("{url} answered {}", r.status())}),
        Err(e) => json!({"unavailable": format!("{url}: {e}")}),
    }
}

async fn domain_history(state: &AppState, domain: &str) -> Result<Value, ApiError> {
    let body = json!({
        "size": 0, "track_total_hits": true,
        "query": {"term": {"dns.question.registered_domain": domain}},
        "aggs": {
            "first": {"min": {"field": "@timestamp"}}, "last": {"max": {"field": "@timestamp"}},
            "clients": {"cardinality": {"field": "client.ip"}},
            "verdicts": {"terms": {"field": "dohguard.verdict", "size": 3}}
        }
    });
    let reply = state
        .store
        .search(&state.store.indices.verdicts, body)
        .await?;
    let aggs = &reply["aggregations"];
    Ok(json!({
        "registered_domain": domain,
        "queries": reply["hits"]["total"]["value"],
        "first_seen": aggs["first"]["value_as_string"],
        "last_seen": aggs["last"]["value_as_string"],
        "clients": aggs["clients"]["value"],
        "verdicts": aggs["verdicts"]["buckets"],
        "labels": labels::history(state, domain).await?,
        "log_href": format!("/log?range=7d&domain={domain}"),
    }))
}

pub async fn verdict(
    State(state): State<AppState>,
    _session: Session,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(verdict_data(&state, &id).await?))
}

pub async fn labels(
    State(state): State<AppState>,
    _session: Session,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    let params = params(p)?;
    let domain = params
        .get("domain")
        .ok_or_else(|| ApiError::bad("domain", "required"))?;
    let domain = labels::registered_domain(domain)?;
    Ok(Json(
        json!({"domain": domain, "labels": labels::history(&state, &domain).await?}),
    ))
}

pub async fn add_label(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    session.require(Role::Analyst)?;
    let req: labels::LabelRequest = json_body(&headers, &body)?;
    let doc = labels::add(&state, &session, req).await?;
    Ok((StatusCode::CREATED, Json(doc)).into_response())
}

/// One registered domain over the range (plus any other log filters in `params`).
pub async fn domain_data(
    state: &AppState,
    domain: &str,
    params: &BTreeMap<String, String>,
) -> Result<crate::domain::DomainView, ApiError> {
    let domain = labels::registered_domain(domain)?;
    let mut params = params.clone();
    params.insert("domain".into(), domain.clone());
    let filter = LogFilter::parse(&params, &[])?;
    let now = OffsetDateTime::now_utc();
    let reply = state
        .store
        .search(
            &state.store.indices.verdicts,
            crate::domain::body(&filter, now),
        )
        .await
        .map_err(blame(&filter))?;
    let labels = labels::history(state, &domain).await?;
    Ok(crate::domain::parse(&reply, &domain, &filter, labels).map_err(StoreError::Unreadable)?)
}

pub async fn domain(
    State(state): State<AppState>,
    _session: Session,
    Path(domain): Path<String>,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    let view = domain_data(&state, &domain, &params(p)?).await?;
    Ok(Json(
        serde_json::to_value(view).expect("the domain view serialises"),
    ))
}

/// One client address over the range (plus any other log filters in `params`).
pub async fn client_data(
    state: &AppState,
    client: &str,
    params: &BTreeMap<String, String>,
) -> Result<crate::client::ClientView, ApiError> {
    let ip: std::net::IpAddr = client
        .parse()
        .map_err(|_| ApiError::bad("client", format!("{client:?} is not an IP address")))?;
    let ip = ip.to_string();
    let mut params = params.clone();
    params.insert("client".into(), ip.clone());
    let filter = LogFilter::parse(&params, &[])?;
    let now = OffsetDateTime::now_utc();
    let verdicts = &state.store.indices.verdicts;
    let reply = state
        .store
        .search(verdicts, crate::client::body(&filter, now))
        .await
        .map_err(blame(&filter))?;
    let candidates = crate::client::candidates(&reply).map_err(StoreError::Unreadable)?;
    let first = if candidates.is_empty() {
        Vec::new()
    } else {
        let domains: Vec<String> = candidates.iter().map(|c| c.domain.clone()).collect();
        let everyone = state
            .store
            .search(verdicts, crate::client::first_seen_body(&domains))
            .await?;
        crate::client::first_seen(&candidates, &everyone).map_err(StoreError::Unreadable)?
    };
    Ok(crate::client::parse(&reply, &ip, &filter, &first).map_err(StoreError::Unreadable)?)
}

pub async fn client(
    State(state): State<AppState>,
    _session: Session,
    Path(client): Path<String>,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    let view = client_data(&state, &client, &params(p)?).await?;
    Ok(Json(
        serde_json::to_value(view).expect("the client view serialises"),
    ))
}

pub async fn vetting_data(
    state: &AppState,
    params: &BTreeMap<String, String>,
) -> Result<Vec<crate::vetting::Item>, ApiError> {
    let mut params = params.clone();
    params.entry("range".into()).or_insert_with(|| "7d".into());
    if params.contains_key("from") || params.contains_key("to") {
        params.remove("range");
    }
    let filter = LogFilter::parse(&params, &[])?;
    let now = OffsetDateTime::now_utc();
    let reply = state
        .store
        .search(
            &state.store.indices.verdicts,
            crate::vetting::body(&filter, now, &state.config.vetting),
        )
        .await
        .map_err(blame(&filter))?;
    let labelled = labels::labelled_domains(state).await?;
    let boundaries = decision_boundaries(state).await;
    Ok(crate::vetting::parse(&reply, &labelled, &boundaries).map_err(StoreError::Unreadable)?)
}

/// The scorer's monitor and block thresholds in force, or 0.5 when it cannot be asked.
async fn decision_boundaries(state: &AppState) -> Vec<f64> {
    let t = thresholds(state).await;
    let found: Vec<f64> = ["monitor", "block"]
        .iter()
        .filter_map(|k| t[*k].as_f64())
        .collect();
    if found.is_empty() {
        vec![0.5]
    } else {
        found
    }
}

pub async fn vetting(
    State(state): State<AppState>,
    _session: Session,
    p: Params,
) -> Result<Json<Value>, ApiError> {
    let items = vetting_data(&state, &params(p)?).await?;
    Ok(Json(json!({"items": items})))
}

pub async fn add_labels_bulk(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    session.require(Role::Analyst)?;
    let req: labels::BulkLabelRequest = json_body(&headers, &body)?;
    let stored = labels::add_bulk(&state, &session, req).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"labelled": stored.len(), "labels": stored})),
    )
        .into_response())
}
