//! `GET /`: the live dashboard, one self-contained page (HTML, CSS and JS inline, no
//! external URL) that polls the JSON endpoints about once a second: nodes with weight,
//! state, key share, connections, mps and p95; the ring version history; the scaling
//! decisions over time.

use axum::http::header;
use axum::response::IntoResponse;

/// The page (compiled in, so the binary is the whole deployment).
const PAGE: &str = include_str!("index.html");

/// `GET /`.
pub async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        PAGE,
    )
}
