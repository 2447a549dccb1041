//! Heartbeats and the operator's node changes (each a typed ring diff, each a new version).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use rtc_protocol::control::{Heartbeat, HeartbeatResponse};
use rtc_ring::{Diff, Node, NodeState, Ring, MAX_WEIGHT};
use serde::Deserialize;
use serde_json::json;
use std::sync::atomic::Ordering;

use super::{auth, json_body, ApiError, AppState};

/// `POST /v1/nodes/heartbeat`.
pub async fn heartbeat(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<HeartbeatResponse>, ApiError> {
    let result = async {
        auth::require(&headers, st.cfg.node_token.as_deref(), "heartbeat")?;
        let hb: Heartbeat = json_body(&body?)?;
        let (accepted, ring_version) = st.heartbeat(&hb).await?;
        let (decision, _) = st.scale().await;
        Ok::<_, ApiError>(HeartbeatResponse {
            accepted,
            ring_version,
            maybe_scale: decision.map(|d| super::ops::signal(&d)),
        })
    }
    .await;
    let counter = if matches!(&result, Ok(r) if r.accepted) {
        &st.metrics.heartbeats_accepted
    } else {
        &st.metrics.heartbeats_refused
    };
    counter.fetch_add(1, Ordering::Relaxed);
    result.map(Json)
}

/// `GET /v1/nodes`: every ring node with weight, state, key share, liveness and last report.
pub async fn list(State(st): State<AppState>) -> impl IntoResponse {
    let (version, nodes) = st.nodes().await;
    Json(json!({ "version": version, "nodes": nodes }))
}

/// Body of `POST /v1/nodes`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddBody {
    id: String,
    weight: i64,
    #[serde(alias = "wsUrl", alias = "publicWsUrl")]
    url: String,
}

/// Body of `PUT /v1/nodes/{id}/weight`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WeightBody {
    weight: i64,
}

fn check_weight(w: i64) -> Result<u32, ApiError> {
    if w < 1 || w > i64::from(MAX_WEIGHT) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_weight",
            format!("weight must be in 1..={MAX_WEIGHT}, got {w}"),
        ));
    }
    Ok(w as u32)
}

fn changed(ring: &Ring, diff: &Diff) -> impl IntoResponse {
    Json(json!({ "version": ring.version(), "change": diff }))
}

async fn apply(
    st: &AppState,
    headers: &HeaderMap,
    diff: Diff,
) -> Result<impl IntoResponse, ApiError> {
    auth::require(headers, st.cfg.admin_token.as_deref(), "ring changes")?;
    if !matches!(diff, Diff::AddNode(_)) && st.ring().node(diff.node_id()).is_none() {
        return Err(ApiError::unknown_node(diff.node_id()));
    }
    let ring = st.change(diff.clone()).await?;
    Ok(changed(&ring, &diff))
}

/// `POST /v1/nodes` `{id, weight, url}`.
pub async fn add(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    auth::require(&headers, st.cfg.admin_token.as_deref(), "ring changes")?;
    let b: AddBody = json_body(&body?)?;
    let diff = Diff::AddNode(Node {
        id: b.id,
        weight: check_weight(b.weight)?,
        url: b.url,
        state: NodeState::Active,
    });
    let r = apply(&st, &headers, diff).await?;
    Ok((StatusCode::CREATED, r))
}

/// `DELETE /v1/nodes/{id}`.
pub async fn remove(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    apply(&st, &headers, Diff::RemoveNode { id }).await
}

/// `POST /v1/nodes/{id}/drain`.
pub async fn drain(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let state = NodeState::Draining;
    apply(&st, &headers, Diff::SetState { id, state }).await
}

/// `POST /v1/nodes/{id}/activate`.
pub async fn activate(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let state = NodeState::Active;
    apply(&st, &headers, Diff::SetState { id, state }).await
}

/// `PUT /v1/nodes/{id}/weight` `{weight}`.
pub async fn weight(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    auth::require(&headers, st.cfg.admin_token.as_deref(), "ring changes")?;
    let b: WeightBody = json_body(&body?)?;
    let weight = check_weight(b.weight)?;
    apply(&st, &headers, Diff::SetWeight { id, weight }).await
}
