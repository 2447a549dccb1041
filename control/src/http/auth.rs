//! Bearer-token checks: app keys for `/v1/connect`, the admin token for writes, the node
//! token for heartbeats. Each is off when its variable is unset. Compared in constant time.

use axum::http::{HeaderMap, StatusCode};
use subtle::ConstantTimeEq;

use super::ApiError;

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Requires `Authorization: Bearer K` for one of `keys` (no keys: open).
pub fn require_any(headers: &HeaderMap, keys: &[String], what: &str) -> Result<(), ApiError> {
    if keys.is_empty() {
        return Ok(());
    }
    match bearer(headers) {
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            format!("{what} requires Authorization: Bearer <token>"),
        )),
        // Check every key, so timing does not tell which one was close.
        Some(got) => {
            let ok = keys.iter().fold(false, |acc, k| acc | same(got, k));
            if ok {
                Ok(())
            } else {
                Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    format!("{what}: credential not accepted"),
                ))
            }
        }
    }
}

/// Requires the one token when it is set.
pub fn require(headers: &HeaderMap, token: Option<&str>, what: &str) -> Result<(), ApiError> {
    match token {
        None => Ok(()),
        Some(t) => require_any(headers, &[t.to_owned()], what),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_checks() {
        let mut h = HeaderMap::new();
        assert!(require(&h, None, "x").is_ok());
        assert_eq!(require(&h, Some("s3cret"), "x").unwrap_err().status, 401);
        h.insert("authorization", "Bearer nope".parse().unwrap());
        assert_eq!(require(&h, Some("s3cret"), "x").unwrap_err().status, 403);
        h.insert("authorization", "Bearer s3cret".parse().unwrap());
        assert!(require(&h, Some("s3cret"), "x").is_ok());
        assert!(require_any(&h, &["a".into(), "s3cret".into()], "x").is_ok());
    }
}
