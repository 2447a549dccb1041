//! A follower hands writes to the leader, so nodes and operators may talk to any instance
//! (e.g. behind one Kubernetes Service). A forwarded request that lands on another follower
//! is refused instead of forwarded again (no loops).
//!
//! Two reads also go to the leader, because only the leader hears heartbeats and decides
//! on scaling: `GET /v1/nodes` (liveness and reports) and `GET /v1/scale`. If the leader
//! cannot be reached they are answered locally (ring data without reports) rather than
//! failing: a dashboard on a follower keeps working while a new leader is elected.

use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{request::Parts, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};
use crate::config::MAX_BODY_BYTES;
use crate::state::StateError;

/// Marks a request a follower forwarded.
const FORWARDED: &str = "x-rtc-forwarded";
/// How long a forwarded write may take at the leader.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a forwarded read may take before the follower answers it itself.
const FORWARD_READ_TIMEOUT: Duration = Duration::from_secs(2);
/// Reads whose data only the leader has.
const LEADER_READS: [&str; 2] = ["/v1/nodes", "/v1/scale"];

/// Middleware: reads pass (except the leader's reads); writes on a follower go to the leader.
pub async fn writes_to_leader(State(st): State<AppState>, req: Request, next: Next) -> Response {
    if st.is_leader() || req.headers().contains_key(FORWARDED) && is_read(req.method()) {
        return next.run(req).await;
    }
    let leader = st.leader_url().filter(|l| *l != st.advertise_url);
    if is_read(req.method()) {
        let leader_read = req.method() == Method::GET && LEADER_READS.contains(&req.uri().path());
        let Some(leader) = leader.filter(|_| leader_read) else {
            return next.run(req).await;
        };
        let (parts, _) = req.into_parts();
        return match forward(&st, &leader, &parts, Vec::new(), FORWARD_READ_TIMEOUT).await {
            Ok(r) => r,
            Err(_) => next.run(Request::from_parts(parts, Body::empty())).await,
        };
    }
    let not_leader = || {
        ApiError::from(StateError::NotLeader {
            leader: st.leader_url(),
        })
        .into_response()
    };
    let Some(leader) = leader else {
        return not_leader();
    };
    if req.headers().contains_key(FORWARDED) {
        return not_leader();
    }
    let (parts, body) = req.into_parts();
    let Ok(body) = to_bytes(body, MAX_BODY_BYTES).await else {
        return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", "body too large")
            .into_response();
    };
    match forward(&st, &leader, &parts, body.to_vec(), FORWARD_TIMEOUT).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(leader = %leader, error = %e, "forwarding a write to the leader failed");
            not_leader()
        }
    }
}

fn is_read(m: &Method) -> bool {
    m == Method::GET || m == Method::HEAD
}

async fn forward(
    st: &AppState,
    leader: &str,
    parts: &Parts,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<Response, reqwest::Error> {
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let url = format!("{}{}", leader.trim_end_matches('/'), path);
    let mut out = st
        .http
        .request(parts.method.clone(), &url)
        .timeout(timeout)
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
    let resp = out.send().await?;
    let status = resp.status();
    let ctype = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .cloned();
    let bytes = resp.bytes().await?;
    let mut r = Response::new(Body::from(bytes));
    *r.status_mut() = status;
    if let Some(c) = ctype {
        r.headers_mut().insert(axum::http::header::CONTENT_TYPE, c);
    }
    r.headers_mut().insert(
        HeaderName::from_static("x-rtc-leader"),
        HeaderValue::from_str(leader).unwrap_or(HeaderValue::from_static("?")),
    );
    Ok(r)
}
