//! Client placement: `GET /v1/resolve?userId=X` and `GET /v1/connect?userId=X`.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use rtc_protocol::control::{ConnectResponse, ResolveResponse};
use rtc_protocol::token::{sign_connect, ConnectClaims};
use rtc_protocol::user::validate_user_id;

use super::{auth, ApiError, AppState};
use crate::state::now_ms;

fn user_param(q: &HashMap<String, String>) -> Result<&str, ApiError> {
    let user = q
        .get("userId")
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "bad_user", "userId is required"))?;
    validate_user_id(user)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_user", format!("userId: {e}")))?;
    Ok(user)
}

fn no_nodes() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "no_nodes",
        "no active node in the ring",
    )
}

/// Appends `key=value` to a URL's query (value already URL-safe).
fn with_query(url: &str, key: &str, value: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{key}={value}")
}

/// The node's socket endpoint: its public URL, with `/ws` when it names only a host.
pub fn ws_endpoint(public_url: &str) -> String {
    let (scheme, rest) = public_url.split_once("://").unwrap_or(("", public_url));
    let (before_query, query) = match rest.find('?') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let prefix = if scheme.is_empty() {
        String::new()
    } else {
        format!("{scheme}://")
    };
    match before_query.find('/') {
        None => format!("{prefix}{before_query}/ws{query}"),
        Some(i) if &before_query[i..] == "/" => format!("{prefix}{before_query}ws{query}"),
        Some(_) => public_url.to_owned(),
    }
}

/// `GET /v1/resolve?userId=X` → `{nodeId, publicWsUrl, version}`.
pub async fn resolve(
    State(st): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<ResolveResponse>, ApiError> {
    let user = user_param(&q)?;
    let ring = st.ring();
    let node = ring.owner(user).ok_or_else(no_nodes)?;
    Ok(Json(ResolveResponse {
        node_id: node.id.clone(),
        public_ws_url: node.url.clone(),
        version: ring.version(),
    }))
}

/// `GET /v1/connect?userId=X` → `{wsUrl, token, ringVersion}`; the URL carries the token.
/// Without `RING_SECRET` the node runs in no-token mode: the URL carries `userId` and the
/// token is empty.
pub async fn connect(
    State(st): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<ConnectResponse>, ApiError> {
    auth::require_any(&headers, &st.api_keys, "/v1/connect")?;
    let user = user_param(&q)?;
    let ring = st.ring();
    let node = ring.owner(user).ok_or_else(no_nodes)?;
    let endpoint = ws_endpoint(&node.url);
    let (ws_url, token) = match &st.token_keys {
        Some(keys) => {
            let claims = ConnectClaims {
                user: user.to_owned(),
                node: node.id.clone(),
                ring_version: ring.version(),
                expires_at: now_ms() / 1000 + st.cfg.connect_token_ttl_sec,
            };
            let token = sign_connect(keys, &claims);
            (with_query(&endpoint, "token", &token), token)
        }
        // User ids are validated to a URL-safe charset, so no escaping is needed.
        None => (with_query(&endpoint, "userId", user), String::new()),
    };
    Ok(Json(ConnectResponse {
        ws_url,
        token,
        ring_version: ring.version(),
        node_id: node.id.clone(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(ws_endpoint("ws://h:1"), "ws://h:1/ws");
        assert_eq!(ws_endpoint("ws://h:1/"), "ws://h:1/ws");
        assert_eq!(ws_endpoint("wss://h/ws"), "wss://h/ws");
        assert_eq!(ws_endpoint("ws://h/shard/2"), "ws://h/shard/2");
        assert_eq!(ws_endpoint("ws://h:1?shard=2"), "ws://h:1/ws?shard=2");
        assert_eq!(with_query("ws://h/ws", "token", "t"), "ws://h/ws?token=t");
        assert_eq!(
            with_query("ws://h/ws?a=1", "token", "t"),
            "ws://h/ws?a=1&token=t"
        );
    }
}
