//! `POST /admin/reload`: reload the model, optionally from another card (`{"card_path": ...}`,
//! how the console promotes a candidate and rolls back). With `admin.token_file` set, every
//! admin call must carry `Authorization: Bearer <the file's token>` (401 otherwise); the file
//! is read on each call, so it can be rotated. Without it, only the body-less reload of the
//! model already configured is allowed (what SIGHUP and the file watcher do anyway):
//! switching to another file is refused (403), so an unauthenticated caller cannot make the
//! scorer load a file of its choosing.
//!
//! With `model.active_card_file` set, a reload to another card records that card there, so a
//! restart serves it again; the answer's `persisted` says whether it was recorded (false
//! when the setting is unset or the file cannot be written: the model serves until restart).

use std::{path::PathBuf, sync::Arc};

use axum::{
    body::Bytes,
    extract::State,
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{is_json, Problem};
use crate::app::App;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReloadRequest {
    /// Absolute path of the model card to load; the current one when absent.
    card_path: Option<PathBuf>,
}

fn unauthorized(detail: &str) -> Problem {
    Problem::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "Admin token required",
        detail,
    )
}

/// Checks the bearer token against `admin.token_file`; `Ok(false)` when no token is configured.
fn authenticate(app: &App, headers: &HeaderMap) -> Result<bool, Problem> {
    let Some(file) = &app.config.admin.token_file else {
        return Ok(false);
    };
    let expected = std::fs::read_to_string(file).map_err(|e| {
        Problem::unavailable(format!(
            "the admin token file {} cannot be read: {e}",
            file.display()
        ))
    })?;
    let expected = expected.trim();
    if expected.is_empty() {
        return Err(Problem::unavailable(format!(
            "the admin token file {} is empty",
            file.display()
        )));
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| unauthorized("send Authorization: Bearer <admin token>"))?;
    // Compare digests: the time taken says nothing about how much of the token matched.
    if Sha256::digest(given.trim().as_bytes()) != Sha256::digest(expected.as_bytes()) {
        return Err(unauthorized("wrong admin token"));
    }
    Ok(true)
}

pub(super) async fn reload(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let run = async {
        let authenticated = authenticate(&app, &headers)?;
        let req: ReloadRequest = if body.iter().all(u8::is_ascii_whitespace) {
            ReloadRequest::default()
        } else if !is_json(&headers) {
            return Err(Problem::unsupported_type(
                "content-type must be application/json",
            ));
        } else {
            serde_json::from_slice(&body)
                .map_err(|e| Problem::malformed(format!("reload request: {e}")))?
        };
        if let Some(path) = &req.card_path {
            if !authenticated {
                return Err(Problem::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "Admin token not configured",
                    "loading another model file needs admin.token_file to be set and its token sent",
                ));
            }
            if !path.is_absolute() {
                return Err(Problem::malformed("card_path must be an absolute path"));
            }
        }
        let switching = req.card_path.is_some();
        let info = app.model().reload(req.card_path).await.map_err(|e| {
            Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "reload-failed",
                "Model reload failed; the previous model keeps serving",
                e.to_string(),
            )
        })?;
        if let (Some(file), true) = (&app.config.model.active_card_file, switching) {
            if let Err(e) = crate::model::active::write(file, &info.card_path) {
                tracing::error!(file = %file.display(), error = %e,
                    "the new model serves but could not be recorded: a restart goes back to the previous one");
            }
        }
        // Whether a restart would serve this same card.
        let persisted = crate::model::active::card_at_start(
            app.config.model.active_card_file.as_deref(),
            &app.config.model.card,
        ) == info.card_path;
        Ok(Json(json!({
            "status": "reloaded",
            "model_version": info.model_version,
            "card_path": info.card_path.display().to_string(),
            "persisted": persisted,
        }))
        .into_response())
    };
    match run.await {
        Ok(r) => r,
        Err(p) => p.into_response(),
    }
}
