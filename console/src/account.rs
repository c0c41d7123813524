//! Passwords after the first: a logged-in user changes their own (the old one is required),
//! an admin resets another user's and lists the users. Both are audited and end the
//! affected sessions: a change ends the user's other sessions (the one that made it stays),
//! a reset ends all of the user's sessions. The pages are `/account` (everyone) with the
//! user list and reset form for admins.
//!
//! - `POST /api/me/password` `{"old_password", "new_password"}`: a wrong old password is 400
//!   `bad-input` with `field: old_password` (audited as a failure), a short new one 400
//!   `bad-input` with `field: new_password`.
//! - `GET /api/users` (admin): name, role, created when and by whom (never the hashes).
//! - `POST /api/users/{username}/password` `{"new_password"}` (admin): 404 for no such user.

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use minijinja::context;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{
    api::json_body,
    app::AppState,
    auth::{self, Role, Session, User},
    error::ApiError,
    store::StoreError,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeRequest {
    old_password: String,
    new_password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResetRequest {
    new_password: String,
}

fn check_new_password(password: &str) -> Result<(), ApiError> {
    if password.chars().count() < auth::MIN_PASSWORD_LEN {
        return Err(ApiError::bad(
            "new_password",
            format!("at least {} characters", auth::MIN_PASSWORD_LEN),
        ));
    }
    Ok(())
}

pub(crate) async fn load_user(state: &AppState, username: &str) -> Result<Option<User>, ApiError> {
    if !auth::valid_username(username) {
        return Ok(None);
    }
    let doc = state
        .store
        .get(&state.store.indices.users, username)
        .await?;
    Ok(doc
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| StoreError::Unreadable(format!("user document: {e}")))?)
}

/// Hashes and stores `password` for `user`.
async fn store_password(state: &AppState, mut user: User, password: &str) -> Result<(), ApiError> {
    let password = password.to_owned();
    user.password_hash = tokio::task::spawn_blocking(move || auth::hash_password(&password))
        .await
        .map_err(|e| ApiError::BadRequest(format!("hashing failed: {e}")))?;
    let doc = serde_json::to_value(&user).expect("a user serialises");
    let username = user.username.clone();
    state
        .store
        .put(&state.store.indices.users, &username, &doc)
        .await?;
    Ok(())
}

/// Deletes `username`'s sessions except `keep`; returns how many ended.
pub(crate) async fn end_sessions(
    state: &AppState,
    username: &str,
    keep: Option<&str>,
) -> Result<u64, ApiError> {
    let index = &state.store.indices.sessions;
    let reply = state
        .store
        .search(
            index,
            json!({"size": 10_000, "_source": false, "query": {"term": {"username": username}}}),
        )
        .await?;
    let mut ended = 0;
    for hit in reply["hits"]["hits"].as_array().into_iter().flatten() {
        let Some(id) = hit["_id"].as_str() else {
            continue;
        };
        if Some(id) != keep {
            state.store.delete(index, id).await?;
            ended += 1;
        }
    }
    Ok(ended)
}

pub async fn change_password(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: ChangeRequest = json_body(&headers, &body)?;
    let user = load_user(&state, &session.username)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("user {:?}", session.username)))?;
    let (old, hash) = (req.old_password.clone(), user.password_hash.clone());
    let ok = tokio::task::spawn_blocking(move || auth::verify_password(&old, &hash))
        .await
        .unwrap_or(false);
    if !ok {
        crate::audit::record(
            &state,
            &session.username,
            "password.change",
            "failure",
            &session.username,
            None,
            json!({"why": "wrong old password"}),
        )
        .await?;
        return Err(ApiError::bad(
            "old_password",
            "this is not your current password",
        ));
    }
    check_new_password(&req.new_password)?;
    if req.new_password == req.old_password {
        return Err(ApiError::bad(
            "new_password",
            "the new password is the old one",
        ));
    }
    store_password(&state, user, &req.new_password).await?;
    let ended = end_sessions(&state, &session.username, Some(session.id())).await?;
    crate::audit::record(
        &state,
        &session.username,
        "password.change",
        "success",
        &session.username,
        None,
        json!({"other_sessions_ended": ended}),
    )
    .await?;
    Ok(Json(json!({"changed": true, "other_sessions_ended": ended})).into_response())
}

pub async fn reset_password(
    State(state): State<AppState>,
    session: Session,
    Path(username): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    session.require(Role::Admin)?;
    let req: ResetRequest = json_body(&headers, &body)?;
    let user = load_user(&state, &username)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("user {username:?}")))?;
    check_new_password(&req.new_password)?;
    store_password(&state, user, &req.new_password).await?;
    let ended = end_sessions(&state, &username, None).await?;
    crate::audit::record(
        &state,
        &session.username,
        "password.reset",
        "success",
        &username,
        None,
        json!({"sessions_ended": ended}),
    )
    .await?;
    Ok((
        StatusCode::OK,
        Json(json!({"username": username, "reset": true, "sessions_ended": ended})),
    )
        .into_response())
}

/// The users, by name (never their hashes).
pub async fn users_data(state: &AppState) -> Result<Vec<Value>, ApiError> {
    let reply = state
        .store
        .search(
            &state.store.indices.users,
            json!({"size": 1000, "sort": [{"username": "asc"}], "query": {"match_all": {}},
                   "_source": ["username", "role", "created_at", "created_by", "disabled",
                               "status_changed_at", "status_changed_by"]}),
        )
        .await?;
    Ok(crate::query_log::sources(&reply))
}

pub async fn list_users(
    State(state): State<AppState>,
    session: Session,
) -> Result<Json<Value>, ApiError> {
    session.require(Role::Admin)?;
    Ok(Json(json!({"users": users_data(&state).await?})))
}

/// `/account`: the password form, and for admins the users with a reset form.
pub async fn page(State(state): State<AppState>, session: Result<Session, ApiError>) -> Response {
    let session = match session {
        Ok(s) => s,
        Err(e) => return crate::pages::page_error(&state, None, e),
    };
    let users = if session.role >= Role::Admin {
        match users_data(&state).await {
            Ok(u) => Some(u),
            Err(e) => return crate::pages::page_error(&state, Some(&session), e),
        }
    } else {
        None
    };
    crate::pages::render(
        &state,
        "account.html",
        context! {
            title => "Account", user => &session.username, role => session.role.as_str(), csrf => &session.csrf_token,
            users => users, min_len => auth::MIN_PASSWORD_LEN,
        },
    )
}
