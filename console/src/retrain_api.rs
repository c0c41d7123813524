//! HTTP glue of the retraining loop ([`crate::retrain`]): the label export, the retrain job,
//! candidates, promote and roll back, and the `/models` page. Merged into [`crate::app`].

use std::collections::BTreeMap;

use axum::{
    body::Bytes,
    extract::{Path, Query, State},
    http::{header, HeaderMap, StatusCode},
    response::{Html, IntoResponse, Redirect, Response},
    routing::{get, post},
    Json, Router,
};
use minijinja::context;
use serde_json::Value;

use crate::{
    api::json_body,
    app::AppState,
    auth::{Role, Session},
    error::ApiError,
    retrain,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/labels/export", get(export_labels))
        .route("/api/retrain", get(status).post(start))
        .route("/api/retrain/cancel", post(cancel))
        .route("/api/candidates/{id}", get(candidate))
        .route("/api/candidates/{id}/promote", post(promote))
        .route("/api/models/rollback", post(rollback))
        .route("/models", get(page))
}

/// The labels as the CSV the training pipeline takes (any role: labels are readable by all).
async fn export_labels(
    State(state): State<AppState>,
    _session: Session,
) -> Result<Response, ApiError> {
    let csv = retrain::export_labels(&state).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"dohguard-labels.csv\"",
            ),
        ],
        csv,
    )
        .into_response())
}

async fn status(State(state): State<AppState>, _session: Session) -> Json<Value> {
    Json(retrain::overview(&state).await)
}

async fn start(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    session.require(Role::Admin)?;
    let req: retrain::RetrainRequest = if body.iter().all(u8::is_ascii_whitespace) {
        Default::default()
    } else {
        json_body(&headers, &body)?
    };
    let job = retrain::start(&state, &session, req).await?;
    Ok((StatusCode::ACCEPTED, Json(job)).into_response())
}

async fn cancel(State(state): State<AppState>, session: Session) -> Result<Response, ApiError> {
    let job = retrain::cancel(&state, &session).await?;
    Ok((StatusCode::ACCEPTED, Json(job)).into_response())
}

async fn candidate(
    State(state): State<AppState>,
    _session: Session,
    Path(id): Path<String>,
) -> Result<Json<retrain::Candidate>, ApiError> {
    Ok(Json(retrain::candidate(&state, &id)?))
}

async fn promote(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(retrain::promote(&state, &session, &id).await?))
}

async fn rollback(
    State(state): State<AppState>,
    session: Session,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(retrain::rollback(&state, &session).await?))
}

/// `/models`: the serving model, the job and its progress, candidates, and one candidate's
/// report and shadow comparison (`?candidate=<id>`, default the newest).
async fn page(
    State(state): State<AppState>,
    session: Result<Session, ApiError>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let session = match session {
        Ok(s) => s,
        Err(ApiError::SessionExpired) => return Redirect::to("/login?expired=1").into_response(),
        Err(_) => return Redirect::to("/login").into_response(),
    };
    let overview = retrain::overview(&state).await;
    let chosen = q
        .get("candidate")
        .cloned()
        .or_else(|| overview["candidates"][0]["id"].as_str().map(str::to_owned));
    let chosen = chosen.and_then(|id| retrain::candidate(&state, &id).ok());
    let ctx = context! {
        title => "Models", user => &session.username, role => session.role.as_str(),
        csrf => &session.csrf_token, is_admin => session.role >= Role::Admin,
        o => minijinja::Value::from_serialize(&overview),
        c => minijinja::Value::from_serialize(&chosen),
        job_json => serde_json::to_string(&overview["job"]).expect("serialises"),
    };
    match state
        .pages
        .get_template("models.html")
        .and_then(|t| t.render(ctx))
    {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "rendering models.html failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "page rendering failed").into_response()
        }
    }
}
