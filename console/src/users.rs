//! Disabling and enabling users (admin).
//!
//! - `POST /api/users/{username}/disable`: the user's document gets `disabled: true` (with
//!   who and when), then every session of theirs is deleted, so their next request is 401
//!   `not-logged-in` and their next login with the right password is 403 `account-disabled`.
//!   The last enabled admin cannot be disabled (409 `conflict`), so the console always keeps
//!   someone who can enable users again. Disabling oneself is allowed when another enabled
//!   admin remains (the session that did it ends too).
//! - `POST /api/users/{username}/enable`: clears the flag; the user logs in again.
//! - A request that changes nothing (already disabled / enabled) is 409 `conflict`.
//! - Every change and every refusal is audited (`user.disable`, `user.enable`).
//!
//! A login racing a disable cannot keep a session: login re-reads the user after storing its
//! session and drops it when the flag is set (the disable deletes sessions after setting it).
//!
//! Changes are serialised inside one console process (a lock around check-and-write), so two
//! admins disabling each other at once cannot leave no enabled admin behind; several console
//! instances over one store would need a store-side guard (not done: one console per store).

use axum::{
    extract::{Path, State},
    Json,
};
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::{
    account::{end_sessions, load_user},
    app::AppState,
    auth::{Role, Session, User},
    error::ApiError,
    store::StoreError,
    time_range::rfc3339,
};

/// Serialises status changes in this process (the last-admin check and the write).
static STATUS_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The enabled admins other than `except`.
async fn other_enabled_admins(state: &AppState, except: &str) -> Result<usize, ApiError> {
    let reply = state
        .store
        .search(
            &state.store.indices.users,
            json!({"size": 1000, "query": {"term": {"role": "admin"}}}),
        )
        .await?;
    let mut n = 0;
    for user in crate::query_log::sources(&reply) {
        let user: User = serde_json::from_value(user)
            .map_err(|e| StoreError::Unreadable(format!("user document: {e}")))?;
        if user.username != except && !user.disabled {
            n += 1;
        }
    }
    Ok(n)
}

/// Why `user` may not get `disabled`, or `None` when the change may be made.
async fn refusal(
    state: &AppState,
    user: &User,
    disabled: bool,
) -> Result<Option<String>, ApiError> {
    if user.disabled == disabled {
        let now = if disabled { "disabled" } else { "enabled" };
        return Ok(Some(format!("user {:?} is already {now}", user.username)));
    }
    if disabled
        && user.role == Role::Admin
        && other_enabled_admins(state, &user.username).await? == 0
    {
        return Ok(Some(format!(
            "{:?} is the last enabled admin and cannot be disabled: enable or create another \
             admin first",
            user.username
        )));
    }
    Ok(None)
}

async fn set_disabled(
    state: AppState,
    session: Session,
    username: String,
    disabled: bool,
) -> Result<Json<Value>, ApiError> {
    session.require(Role::Admin)?;
    let action = if disabled {
        "user.disable"
    } else {
        "user.enable"
    };
    let _guard = STATUS_LOCK.lock().await;
    let mut user = load_user(&state, &username)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("user {username:?}")))?;
    if let Some(why) = refusal(&state, &user, disabled).await? {
        let details = json!({"why": why});
        crate::audit::record(
            &state,
            &session.username,
            action,
            "failure",
            &username,
            None,
            details,
        )
        .await?;
        return Err(ApiError::Conflict(why));
    }
    user.disabled = disabled;
    user.status_changed_at = Some(rfc3339(OffsetDateTime::now_utc()));
    user.status_changed_by = Some(session.username.clone());
    let doc = serde_json::to_value(&user).expect("a user serialises");
    state
        .store
        .put(&state.store.indices.users, &username, &doc)
        .await?;
    let ended = if disabled {
        end_sessions(&state, &username, None).await?
    } else {
        0
    };
    crate::audit::record(
        &state,
        &session.username,
        action,
        "success",
        &username,
        None,
        json!({"sessions_ended": ended}),
    )
    .await?;
    Ok(Json(
        json!({"username": username, "disabled": disabled, "sessions_ended": ended}),
    ))
}

pub async fn disable(
    State(state): State<AppState>,
    session: Session,
    Path(username): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_disabled(state, session, username, true).await
}

pub async fn enable(
    State(state): State<AppState>,
    session: Session,
    Path(username): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_disabled(state, session, username, false).await
}
