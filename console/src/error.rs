//! Every error the API answers, as one type rendered as `application/problem+json`
//! (RFC 9457): a stable `type`, a `title`, the HTTP `status`, a `detail` saying what to fix,
//! and for bad input the offending query parameter or field in `field`. Logged once here.

use axum::{
    http::{header, StatusCode},
    response::{IntoResponse, Response},
};
use serde_json::json;
use thiserror::Error;

use crate::auth::Role;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ApiError {
    /// A query parameter or body field is invalid.
    #[error("`{field}`: {detail}")]
    BadInput { field: String, detail: String },
    /// The body is not what the endpoint takes (wrong content type, malformed JSON).
    #[error("{0}")]
    BadRequest(String),
    #[error("wrong user name or password")]
    LoginFailed,
    #[error("this account is disabled: ask an admin to enable it")]
    AccountDisabled,
    #[error("not logged in")]
    NotLoggedIn,
    #[error("the session has expired: log in again")]
    SessionExpired,
    #[error("missing or wrong bearer token for the override feed")]
    FeedToken,
    #[error("missing or wrong CSRF token (send the session's token in the x-csrf-token header)")]
    Csrf,
    #[error("this needs the {needed} role; you are {have}")]
    Forbidden { needed: Role, have: Role },
    #[error("{0} not found")]
    NotFound(String),
    #[error("Elasticsearch: {0}")]
    Store(#[from] crate::store::StoreError),
    /// The request conflicts with the state (a retrain already running, nothing to roll back).
    #[error("{0}")]
    Conflict(String),
    /// Understood but refused: a candidate that failed its checks, no labels to train on.
    #[error("{0}")]
    Refused(String),
    /// The scorer could not be asked or answered an error.
    #[error("scorer: {0}")]
    Upstream(String),
    /// Something the console needs is missing (the scorer's admin token, the Python).
    #[error("{0}")]
    Unavailable(String),
}

impl ApiError {
    pub fn bad(field: impl Into<String>, detail: impl Into<String>) -> Self {
        ApiError::BadInput {
            field: field.into(),
            detail: detail.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadInput { .. } | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::LoginFailed
            | ApiError::NotLoggedIn
            | ApiError::SessionExpired
            | ApiError::FeedToken => StatusCode::UNAUTHORIZED,
            ApiError::Csrf | ApiError::Forbidden { .. } | ApiError::AccountDisabled => {
                StatusCode::FORBIDDEN
            }
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Store(_) | ApiError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The problem `type` (a stable, documented slug).
    pub fn kind(&self) -> &'static str {
        match self {
            ApiError::BadInput { .. } => "bad-input",
            ApiError::BadRequest(_) => "bad-request",
            ApiError::LoginFailed => "login-failed",
            ApiError::AccountDisabled => "account-disabled",
            ApiError::NotLoggedIn => "not-logged-in",
            ApiError::SessionExpired => "session-expired",
            ApiError::Csrf => "csrf",
            ApiError::FeedToken => "feed-token",
            ApiError::Forbidden { .. } => "forbidden",
            ApiError::NotFound(_) => "not-found",
            ApiError::Store(_) => "store-unavailable",
            ApiError::Conflict(_) => "conflict",
            ApiError::Refused(_) => "refused",
            ApiError::Upstream(_) => "scorer-unavailable",
            ApiError::Unavailable(_) => "unavailable",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            ApiError::BadInput { .. } => "Invalid input",
            ApiError::BadRequest(_) => "Bad request",
            ApiError::LoginFailed => "Login failed",
            ApiError::AccountDisabled => "Account disabled",
            ApiError::NotLoggedIn => "Not logged in",
            ApiError::SessionExpired => "Session expired",
            ApiError::Csrf => "CSRF check failed",
            ApiError::FeedToken => "Override feed token refused",
            ApiError::Forbidden { .. } => "Forbidden",
            ApiError::NotFound(_) => "Not found",
            ApiError::Store(_) => "Elasticsearch unavailable",
            ApiError::Conflict(_) => "Conflict",
            ApiError::Refused(_) => "Refused",
            ApiError::Upstream(_) => "Scorer unavailable",
            ApiError::Unavailable(_) => "Unavailable",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(error = %self, "request failed");
        } else {
            tracing::debug!(error = %self, "request refused");
        }
        let mut body = json!({
            "type": format!("urn:dohguard:console:{}", self.kind()),
            "title": self.title(),
            "status": status.as_u16(),
            "detail": self.to_string(),
        });
        if let ApiError::BadInput { field, .. } = &self {
            body["field"] = json!(field);
        }
        (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body.to_string(),
        )
            .into_response()
    }
}
