//! The HTTP API (axum): routes, the request-metrics layer, write forwarding, server start.
//!
//! Layout: `nodes.rs` (heartbeats and the operator's node changes), `ring.rs` (snapshot,
//! long-poll, history), `placement.rs` (resolve, connect), `ops.rs` (scale, health, metrics),
//! `auth.rs` (bearer checks), `forward.rs` (a follower hands writes to the leader),
//! `error.rs` (JSON error bodies).

pub mod auth;
pub mod error;
pub mod forward;
pub mod nodes;
pub mod ops;
pub mod placement;
pub mod ring;

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::Router;
use serde::de::DeserializeOwned;

use crate::config::MAX_BODY_BYTES;
use crate::state::Control;
pub use error::ApiError;

/// Shared handler state.
pub type AppState = Arc<Control>;

/// The whole API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(crate::dashboard::page))
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(ops::metrics))
        .route("/v1/scale", get(ops::scale))
        .route("/v1/ring", get(ring::snapshot))
        .route("/v1/ring/history", get(ring::history))
        .route("/v1/resolve", get(placement::resolve))
        .route("/v1/connect", get(placement::connect))
        .route("/v1/nodes", get(nodes::list).post(nodes::add))
        .route("/v1/nodes/heartbeat", post(nodes::heartbeat))
        // The path `rtc_protocol::control` documents; same handler.
        .route("/v1/heartbeat", post(nodes::heartbeat))
        .route("/v1/nodes/{id}", axum::routing::delete(nodes::remove))
        .route("/v1/nodes/{id}/drain", post(nodes::drain))
        .route("/v1/nodes/{id}/activate", post(nodes::activate))
        .route("/v1/nodes/{id}/weight", put(nodes::weight))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            forward::writes_to_leader,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), record))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::NOT_FOUND,
        "not_found",
        format!("no endpoint {}", uri.path()),
    )
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}

/// Counts every request by route template and status, and times it.
async fn record(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |m| m.as_str())
        .to_owned();
    let t = Instant::now();
    let resp = next.run(req).await;
    st.metrics
        .request(&route, resp.status().as_u16(), t.elapsed().as_secs_f64());
    resp
}

/// Parses a JSON body into `T`, refusing with a JSON 400 (axum's own rejection is plain text).
pub fn json_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("malformed JSON body: {e}")))
}

/// Binds and serves until ctrl-c / SIGTERM; hands the lease over on the way out.
pub async fn serve(state: AppState, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    let app = router(state.clone());
    let shutdown = async {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("install SIGTERM handler");
            tokio::select! {
                _ = ctrl_c => {},
                _ = term.recv() => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = ctrl_c.await;
        }
    };
    let r = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    state.shutdown().await;
    r
}
