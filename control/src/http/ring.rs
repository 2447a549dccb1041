//! `GET /v1/ring` (the snapshot JSON gateways load with `Ring::from_json`), its long-poll
//! form, and the version history.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, AppState};
use crate::config::MAX_LONG_POLL_SEC;

/// Query of `GET /v1/ring`.
#[derive(Debug, Deserialize)]
pub struct RingQuery {
    /// Answer once the version is above this.
    since: Option<u64>,
    /// Seconds to wait for that (capped at `MAX_LONG_POLL_SEC`).
    wait: Option<u64>,
}

fn snapshot_response(ring: &rtc_ring::Ring) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], ring.to_json()).into_response()
}

/// `GET /v1/ring[?since=V&wait=S]`: the snapshot now, or as soon as its version passes V
/// (or when the wait ends: then the current, unchanged snapshot).
pub async fn snapshot(
    State(st): State<AppState>,
    q: Result<Query<RingQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(format!("bad query: {e}")))?;
    let mut rx = st.subscribe();
    let current = rx.borrow_and_update().clone();
    let (Some(since), Some(wait)) = (q.since, q.wait) else {
        return Ok(snapshot_response(&current));
    };
    if current.version() > since || wait == 0 {
        return Ok(snapshot_response(&current));
    }
    let Ok(_permit) = st.long_polls.try_acquire() else {
        st.metrics
            .long_polls_refused
            .fetch_add(1, Ordering::Relaxed);
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_waiters",
            "too many ring long-polls are waiting; retry",
        ));
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait.min(MAX_LONG_POLL_SEC));
    loop {
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => {
                let r = rx.borrow_and_update().clone();
                if r.version() > since {
                    return Ok(snapshot_response(&r));
                }
            }
            // Timed out, or the sender is gone (shutting down): answer what we have.
            Ok(Err(_)) | Err(_) => return Ok(snapshot_response(&st.ring())),
        }
    }
}

/// `GET /v1/ring/history`: recent versions with the change that made each.
pub async fn history(State(st): State<AppState>) -> impl IntoResponse {
    let events = st.history().await;
    Json(json!({ "version": st.ring().version(), "events": events }))
}
