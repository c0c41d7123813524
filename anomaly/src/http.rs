//! The detector's HTTP side, on loopback by default: `GET /metrics` (Prometheus scrapes it),
//! `GET /healthz`, `GET /readyz` (a model is loaded), and `POST /admin/reload`, which reloads
//! the model card and needs `Authorization: Bearer <token>` with the token from
//! `admin.token_file` (404 when none is configured; 401 on a wrong or missing token).

use std::sync::Arc;

use axum::{
    extract::State,
    http::{header, HeaderMap, StatusCode},
    response::IntoResponse,
    routing::{get, post},
    Json, Router,
};

use crate::metrics::Metrics;
use crate::model::ModelHandle;

#[derive(Debug, Clone)]
pub struct HttpState {
    pub metrics: Metrics,
    pub model: ModelHandle,
    /// The admin token, read at start; `None` turns the admin endpoint off.
    pub admin_token: Option<Arc<String>>,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/admin/reload", post(reload))
        .with_state(state)
}

async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

async fn ready(State(state): State<HttpState>) -> impl IntoResponse {
    let m = state.model.current();
    Json(serde_json::json!({"status": "ready", "model_version": m.model_version}))
}

/// Constant-time comparison, so the token cannot be guessed byte by byte from timings.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn reload(State(state): State<HttpState>, headers: HeaderMap) -> impl IntoResponse {
    let Some(token) = &state.admin_token else {
        return (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({"error": "admin endpoint off: set admin.token_file"})),
        );
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !given.is_some_and(|g| same(g.as_bytes(), token.as_bytes())) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(serde_json::json!({"error": "a valid bearer token is needed"})),
        );
    }
    let result = state.model.reload().await;
    record_reload(&state.metrics, &result);
    match result {
        Ok(m) => (
            StatusCode::OK,
            Json(serde_json::json!({"status": "reloaded", "model_version": m.model_version})),
        ),
        Err(e) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(serde_json::json!({
                "error": e.to_string(),
                "model_version": state.model.current().model_version,
            })),
        ),
    }
}

/// Counts a reload attempt.
pub fn record_reload<T, E>(metrics: &Metrics, result: &Result<T, E>) {
    Metrics::outcome(
        &metrics.model_reloads,
        if result.is_ok() { "ok" } else { "failed" },
    );
}
