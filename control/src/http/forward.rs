//! A follower hands writes to the leader, so nodes and operators may talk to any instance
//! (e.g. behind one Kubernetes Service). A forwarded request that lands on another follower
//! is refused instead of forwarded again (no loops).

use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};
use crate::config::MAX_BODY_BYTES;
use crate::state::StateError;

/// Marks a request a follower forwarded.
const FORWARDED: &str = "x-rtc-forwarded";
/// How long a forwarded write may take at the leader.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);

/// Middleware: reads pass; writes on a follower go to the leader.
pub async fn writes_to_leader(State(st): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() == Method::GET || req.method() == Method::HEAD || st.is_leader() {
        return next.run(req).await;
    }
    let not_leader = || {
        ApiError::from(StateError::NotLeader {
            leader: st.leader_url(),
        })
        .into_response()
    };
    let Some(leader) = st.leader_url() else {
        return not_leader();
    };
    if req.headers().contains_key(FORWARDED) || leader == st.advertise_url {
        return not_leader();
    }
    let (parts, body) = req.into_parts();
    let Ok(body) = to_bytes(body, MAX_BODY_BYTES).await else {
        return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", "body too large")
            .into_response();
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let url = format!("{}{}", leader.trim_end_matches('/'), path);
    let mut out = st
        .http
        .request(parts.method.clone(), &url)
        .timeout(FORWARD_TIMEOUT)
        .header(FORWARDED, "1")
        .body(body);
    for name in [
        axum::http::header::AUTHORIZATION,
        axum::http::header::CONTENT_TYPE,
    ] {
        if let Some(v) = parts.headers.get(&name) {
            out = out.header(name, v.clone());
        }
    }
    match out.send().await {
        Ok(resp) => {
            let status = resp.status();
            let ctype = resp
                .headers()
                .get(axum::http::header::CONTENT_TYPE)
                .cloned();
            let bytes = resp.bytes().await.unwrap_or_default();
            let mut r = Response::new(Body::from(bytes));
            *r.status_mut() = status;
            if let Some(c) = ctype {
                r.headers_mut().insert(axum::http::header::CONTENT_TYPE, c);
            }
            r.headers_mut().insert(
                HeaderName::from_static("x-rtc-leader"),
                HeaderValue::from_str(&leader).unwrap_or(HeaderValue::from_static("?")),
            );
            r
        }
        Err(e) => {
            tracing::warn!(leader = %leader, error = %e, "forwarding a write to the leader failed");
            not_leader()
        }
    }
}
