//! The HTTP API (see `scorer/openapi.yaml`): routes, request parsing and limits, and the
//! per-request metrics middleware. Handlers only translate between HTTP and [`Scorer`].
//!
//! [`Scorer`]: crate::scoring::Scorer

mod admin;
mod problem;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    body::{Body, Bytes},
    extract::{MatchedPath, Request, State},
    http::{header, HeaderMap, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use dohguard_core::contract::{BatchReply, BatchRequest, ScoreRequest};
use serde_json::json;

pub use problem::Problem;

use crate::{
    app::App,
    metrics::{RouteLabel, RouteLabels},
};

/// The service as a router value (tests drive it with `oneshot`).
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v1/score", post(score))
        .route("/v1/events", post(events))
        .route("/v1/model", get(model_card))
        .route("/admin/reload", post(admin::reload))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(app.clone(), record_metrics))
        .with_state(app)
}

async fn record_metrics(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    app.metrics
        .http_latency
        .get_or_create(&RouteLabel {
            route: route.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    app.metrics
        .http_requests
        .get_or_create(&RouteLabels {
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

async fn not_found() -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "not-found",
        "Not found",
        "no such endpoint",
    )
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

/// Header Envoy's router puts on upstream requests, the filter's callouts included: how long
/// the caller will wait, in milliseconds (the callout's `timeout_ms`).
pub const EXPECTED_TIMEOUT_HEADER: &str = "x-envoy-expected-rq-timeout-ms";

/// How long a scoring request may take: `http.request_timeout_ms`, or less when the caller
/// says it waits less (a malformed or zero header is ignored).
pub fn request_budget(configured: Duration, headers: &HeaderMap) -> Duration {
    headers
        .get(EXPECTED_TIMEOUT_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|&ms| ms > 0)
        .map_or(configured, |ms| configured.min(Duration::from_millis(ms)))
}

/// One request shape or the other, told apart by the `names` key.
enum Parsed {
    One(ScoreRequest),
    Batch(Vec<ScoreRequest>),
}

fn parse(body: &[u8]) -> Result<Parsed, Problem> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| Problem::malformed(format!("body is not JSON: {e}")))?;
    if value.get("names").is_some() {
        let batch: BatchRequest = serde_json::from_value(value)
            .map_err(|e| Problem::malformed(format!("batch request: {e}")))?;
        Ok(Parsed::Batch(batch.names))
    } else {
        let one: ScoreRequest = serde_json::from_value(value)
            .map_err(|e| Problem::malformed(format!("score request: {e}")))?;
        Ok(Parsed::One(one))
    }
}

async fn score(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    match score_inner(&app, &headers, body).await {
        Ok(r) => r,
        Err(p) => p.into_response(),
    }
}

async fn score_inner(app: &App, headers: &HeaderMap, body: Body) -> Result<Response, Problem> {
    if !is_json(headers) {
        return Err(Problem::unsupported_type(
            "content-type must be application/json",
        ));
    }
    let limit = app.config.http.max_body_bytes;
    let bytes: Bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| Problem::too_large(format!("the body exceeds {limit} bytes")))?;
    let parsed = parse(&bytes)?;
    let max_names = app.config.http.max_batch_names;
    let (requests, batch) = match parsed {
        Parsed::One(r) => (vec![r], false),
        Parsed::Batch(names) if names.len() > max_names => {
            return Err(Problem::too_large(format!(
                "{} names in one batch; the limit is {max_names}",
                names.len()
            )))
        }
        Parsed::Batch(names) => (names, true),
    };
    // Past its deadline the caller has gone: dropping the scoring future drops its queued
    // job too (the inference thread skips it), so abandoned work is never computed.
    let budget = request_budget(app.config.request_timeout(), headers);
    let replies = tokio::time::timeout(budget, app.scorer.score(requests))
        .await
        .map_err(|_| Problem::unavailable("scoring timed out"))??;
    Ok(if batch {
        Json(BatchReply { results: replies }).into_response()
    } else {
        let one = replies.into_iter().next().expect("one request, one reply");
        Json(one).into_response()
    })
}

/// Largest `POST /v1/events` body: a filter batch of 2,048 events is about 0.8 MB.
const MAX_EVENT_BATCH_BYTES: usize = 16 * 1024 * 1024;

/// The filter's decision events: each becomes one verdict document (see `docs/contracts.md`,
/// contract 3). Answers 202 once every document is journaled (on disk) and queued, so an
/// acknowledged batch survives an Elasticsearch outage and a SIGKILL of the scorer; 503 when
/// the spool is full or cannot be written (nothing of the batch was taken).
async fn events(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    let run = async {
        if !is_json(&headers) {
            return Err(Problem::unsupported_type(
                "content-type must be application/json",
            ));
        }
        let bytes: Bytes = axum::body::to_bytes(body, MAX_EVENT_BATCH_BYTES)
            .await
            .map_err(|_| {
                Problem::too_large(format!("the body exceeds {MAX_EVENT_BATCH_BYTES} bytes"))
            })?;
        let batch: dohguard_schema::EventBatch = serde_json::from_slice(&bytes)
            .map_err(|e| Problem::malformed(format!("event batch: {e}")))?;
        let accepted = app.sink().submit_batch(&batch).map_err(|e| {
            Problem::unavailable(format!("event batch not taken, send it again: {e}"))
        })?;
        Ok((
            StatusCode::ACCEPTED,
            Json(json!({"accepted": accepted, "gap": batch.dropped})),
        )
            .into_response())
    };
    match run.await {
        Ok(r) => r,
        Err(p) => p.into_response(),
    }
}

async fn model_card(State(app): State<Arc<App>>) -> Response {
    let info = app.model().info();
    let thresholds = app.scorer.thresholds();
    let loaded_at = time::OffsetDateTime::from(info.loaded_at)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    Json(json!({
        "model_version": info.model_version,
        "device": info.device.as_str(),
        "loaded_at": loaded_at,
        "card_path": info.card_path.display().to_string(),
        "thresholds_in_force": {"block": thresholds.block, "monitor": thresholds.monitor},
        "card": info.card,
    }))
    .into_response()
}

async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    // Ready = model loaded (it is, or start-up would have failed) and verdicts have
    // somewhere to go: Elasticsearch, or the spool while it is away.
    Json(json!({
        "status": "ready",
        "model_version": app.model().info().model_version,
        "sink": app.sink().state().as_str(),
    }))
    .into_response()
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.encode(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_callers_expected_timeout_shortens_the_budget_never_lengthens_it() {
        let configured = Duration::from_millis(2000);
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(EXPECTED_TIMEOUT_HEADER, v.parse().unwrap());
            request_budget(configured, &h)
        };
        assert_eq!(request_budget(configured, &HeaderMap::new()), configured);
        assert_eq!(with("200"), Duration::from_millis(200));
        assert_eq!(with("60000"), configured);
        assert_eq!(with("0"), configured, "zero is ignored");
        assert_eq!(with("soon"), configured, "garbage is ignored");
    }
}
