//! `GET /v1/scale`, `GET /healthz`, `GET /metrics`.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use rtc_protocol::control::ScaleSignal;
use serde_json::json;

use super::AppState;
use crate::scaling::Decision;

/// The protocol's compact form of a decision (sent back on heartbeats).
pub fn signal(d: &Decision) -> ScaleSignal {
    ScaleSignal {
        current: d.inputs.current,
        target: d.desired,
        r_conn: f64::from(d.terms.r_conn),
        r_mps: f64::from(d.terms.r_mps),
        r_lat: f64::from(d.terms.r_lat),
        reason: format!("{}: {}", d.kind.as_str(), d.reason),
        ts: d.at_ms,
    }
}

/// `GET /v1/scale`: the current decision, the inputs now, the parameters, recent decisions.
pub async fn scale(State(st): State<AppState>) -> impl IntoResponse {
    let (last, history) = st.scale().await;
    let inputs = st.scaling_inputs().await;
    let params = st.scaling_params();
    Json(json!({
        "decision": last,
        "inputsNow": inputs,
        "termsNow": crate::scaling::terms(params, &inputs),
        "params": params,
        "history": history,
    }))
}

/// `GET /healthz`.
pub async fn healthz(State(st): State<AppState>) -> impl IntoResponse {
    Json(json!({
        "status": "ok",
        "leader": st.is_leader(),
        "ringVersion": st.ring().version(),
    }))
}

/// `GET /metrics` (Prometheus text format).
pub async fn metrics(State(st): State<AppState>) -> impl IntoResponse {
    let g = st.gauges().await;
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        st.metrics.render(g),
    )
}
