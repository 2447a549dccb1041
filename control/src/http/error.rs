//! Every refusal as a status code plus the protocol's JSON error body `{error, message}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use rtc_ring::RingError;
use serde::Serialize;

use crate::state::StateError;

/// A refused request.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Machine-readable code (`bad_request`, `unknown_node`, `not_leader`, …).
    pub code: &'static str,
    /// What went wrong, for a person.
    pub message: String,
    /// The leader's URL on `not_leader`, so a client can go there.
    pub leader: Option<String>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    leader: Option<&'a str>,
}

impl ApiError {
    /// A refusal.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            leader: None,
        }
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 404 for a node id the ring does not have.
    pub fn unknown_node(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "unknown_node",
            format!("no node {id:?} in the ring"),
        )
    }
}

impl From<RingError> for ApiError {
    fn from(e: RingError) -> Self {
        let (status, code) = match &e {
            RingError::UnknownNode(_) => (StatusCode::NOT_FOUND, "unknown_node"),
            RingError::DuplicateNode(_) => (StatusCode::CONFLICT, "duplicate_node"),
            RingError::TooManyNodes | RingError::TooManyPoints { .. } => {
                (StatusCode::CONFLICT, "ring_full")
            }
            RingError::ZeroWeight(_) | RingError::WeightTooLarge { .. } => {
                (StatusCode::BAD_REQUEST, "bad_weight")
            }
            _ => (StatusCode::BAD_REQUEST, "bad_request"),
        };
        Self::new(status, code, e.to_string())
    }
}

impl From<StateError> for ApiError {
    fn from(e: StateError) -> Self {
        match e {
            StateError::Ring(r) => r.into(),
            StateError::BadInput(m) => Self::bad_request(m),
            StateError::NotLeader { leader } => ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "not_leader",
                message: match &leader {
                    Some(l) => {
                        format!("this control instance only answers reads; the leader is {l}")
                    }
                    None => {
                        "this control instance only answers reads and no leader is known yet; retry"
                            .to_owned()
                    }
                },
                leader,
            },
            StateError::Store(m) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", m)
            }
            // Only at start-up; no request reaches it, mapped for completeness.
            StateError::Events(m) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "events_unavailable", m)
            }
        }
    }
}

impl From<axum::extract::rejection::BytesRejection> for ApiError {
    fn from(e: axum::extract::rejection::BytesRejection) -> Self {
        let code = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            "too_large"
        } else {
            "bad_request"
        };
        Self::new(e.status(), code, e.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: self.code,
            message: &self.message,
            leader: self.leader.as_deref(),
        };
        let mut r = (self.status, Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        r
    }
}
