//! HTTP errors as RFC 9457 problem details (`application/problem+json`): one [`Problem`]
//! type carrying status, a stable type URI and a human-readable detail.

use axum::{
    http::{header, StatusCode},
    response::{IntoResponse, Response},
};
use serde::Serialize;

use crate::{model::ModelError, scoring::ScoreError};

/// `Retry-After` of an overload answer: long enough for a queue of ~0.2 s of work to drain.
pub const OVERLOAD_RETRY_AFTER_S: u32 = 1;

#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    /// Seconds for a `Retry-After` header (overload answers); not part of the JSON body.
    #[serde(skip)]
    pub retry_after_s: Option<u32>,
}

impl Problem {
    pub fn new(
        status: StatusCode,
        slug: &str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            kind: format!("urn:dohguard:problem:{slug}"),
            title,
            status: status.as_u16(),
            detail: detail.into(),
            retry_after_s: None,
        }
    }

    pub fn malformed(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "malformed-request",
            "Malformed request",
            detail,
        )
    }

    pub fn too_large(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            "Request too large",
            detail,
        )
    }

    pub fn unsupported_type(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            detail,
        )
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
            detail,
        )
    }

    /// 503 with `Retry-After`: the inference queue is full, or a request waited in it too long.
    pub fn overloaded(detail: impl Into<String>) -> Self {
        Self {
            retry_after_s: Some(OVERLOAD_RETRY_AFTER_S),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "Overloaded",
                detail,
            )
        }
    }

    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            detail,
        )
    }
}

impl From<ScoreError> for Problem {
    fn from(e: ScoreError) -> Self {
        match e {
            ScoreError::InvalidName { .. }
            | ScoreError::InvalidQtype { .. }
            | ScoreError::InvalidClient { .. } => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-name",
                "Invalid query",
                e.to_string(),
            ),
            ScoreError::Model(m) => m.into(),
        }
    }
}

impl From<ModelError> for Problem {
    fn from(e: ModelError) -> Self {
        match e {
            ModelError::Overloaded | ModelError::Expired => Problem::overloaded(e.to_string()),
            ModelError::Stopped => Problem::unavailable(e.to_string()),
            other => Problem::internal(other.to_string()),
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        // Overload answers are counted (`inference_queue_*`), not logged one by one: under a
        // flood a line per refused request would bury everything else.
        if status.is_server_error() && self.retry_after_s.is_none() {
            tracing::error!(status = self.status, detail = %self.detail, "request failed");
        } else {
            tracing::debug!(status = self.status, detail = %self.detail, "request refused");
        }
        let body = serde_json::to_vec(&self).expect("a problem always serialises");
        let mut response = (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body,
        )
            .into_response();
        if let Some(seconds) = self.retry_after_s {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
        }
        response
    }
}
