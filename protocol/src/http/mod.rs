//! HTTP/1.1 for the WebSocket handshake and the plain endpoints served on the same port
//! (`/healthz`, `/readyz`, `/metrics`): pure parsing over a byte buffer and response builders
//! that append to a `Vec<u8>`. No I/O, no clock, no randomness (the client key is an argument).
//!
//! # Layout
//! - `head.rs`: finds the end of a message head within [`HttpLimits`] and splits it into a
//!   start line and validated header lines.
//! - `request.rs`: [`parse_request`] → [`Request`] (method, path, query, the headers a gateway
//!   needs); [`Request::websocket`] validates an upgrade (RFC 6455 §4.2.1).
//! - `response.rs`: server responses: 101 ([`write_switching_protocols`]), errors
//!   ([`write_error_response`]), plain bodies ([`write_response`]); [`accept_key`].
//! - `client.rs`: the loadgen side: [`write_upgrade_request`], [`parse_response`],
//!   [`Response::check_upgrade`].
//!
//! Every [`HttpError`] maps to the status to answer with ([`HttpError::status`]).

mod client;
mod head;
mod request;
mod response;

pub use client::{parse_response, write_upgrade_request, ws_key_from_random, Response};
pub use request::{parse_request, parse_request_with, QueryPairs, Request, WsUpgrade};
pub use response::{
    accept_key, status_reason, write_error_response, write_response, write_switching_protocols,
};

/// Default limit on the size of a request head (request line + headers + blank line);
/// a head that does not end within it is answered 431.
pub const MAX_HEADER_BYTES: usize = 8 * 1024;

/// Default limit on the number of header lines; more is answered 431.
pub const MAX_HEADERS: usize = 64;

/// Most query parameters looked at; a query with more is answered 400.
pub const MAX_QUERY_PARAMS: usize = 32;

/// Limits applied while parsing a head; [`Default`] uses the constants above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Largest head in bytes, including the final blank line.
    pub max_header_bytes: usize,
    /// Largest number of header lines.
    pub max_headers: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_header_bytes: MAX_HEADER_BYTES,
            max_headers: MAX_HEADERS,
        }
    }
}

/// Outcome of parsing a head from a buffer that may not hold all of it yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<T> {
    /// The head is complete (its length in bytes is part of `T`).
    Complete(T),
    /// No blank line yet and still within the limits: read more. Not an error.
    Incomplete,
}

/// Why a request (or, client side, a response) is not acceptable; [`HttpError::status`]
/// gives the status to answer a request with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The head did not end within `max_header_bytes` (431).
    #[error("request head larger than the limit")]
    HeadTooLarge,
    /// More than `max_headers` header lines (431).
    #[error("too many header lines")]
    TooManyHeaders,
    /// The request or status line is malformed (400).
    #[error("malformed start line")]
    BadStartLine,
    /// A header line is malformed: no colon, bad name, obs-fold, bare CR/LF (400).
    #[error("malformed header line")]
    BadHeader,
    /// The head is not valid UTF-8 (400).
    #[error("request head is not UTF-8")]
    NotUtf8,
    /// An HTTP version other than 1.0 / 1.1 (505).
    #[error("unsupported HTTP version")]
    UnsupportedHttpVersion,
    /// An HTTP/1.1 request without a Host header (400).
    #[error("missing Host header")]
    MissingHost,
    /// A header that must appear once appeared twice (400).
    #[error("duplicate header that must be unique")]
    DuplicateHeader,
    /// A WebSocket upgrade with a method other than GET (405).
    #[error("WebSocket upgrade must use GET")]
    MethodNotAllowed,
    /// A WebSocket upgrade over HTTP/1.0 (400).
    #[error("WebSocket upgrade needs HTTP/1.1")]
    UpgradeNeedsHttp11,
    /// A WebSocket upgrade whose Connection header lacks the `upgrade` token (400).
    #[error("Connection header lacks the upgrade token")]
    MissingConnectionUpgrade,
    /// No `Upgrade: websocket` on an endpoint that requires it (426).
    #[error("this endpoint requires a WebSocket upgrade")]
    UpgradeRequired,
    /// Sec-WebSocket-Version missing or not 13 (426, with `Sec-WebSocket-Version: 13`).
    #[error("unsupported Sec-WebSocket-Version")]
    UnsupportedWsVersion,
    /// Sec-WebSocket-Key missing or not the base64 of 16 bytes (400).
    #[error("missing or malformed Sec-WebSocket-Key")]
    BadWsKey,
    /// A query parameter with a bad percent escape or not UTF-8 once decoded (400).
    #[error("malformed query string")]
    BadQuery,
    /// More than [`MAX_QUERY_PARAMS`] query parameters (400).
    #[error("too many query parameters")]
    TooManyQueryParams,
    /// Client side: the server answered this status instead of 101.
    #[error("server answered {0} instead of 101")]
    UnexpectedStatus(u16),
    /// Client side: the 101 lacks `Upgrade: websocket` / `Connection: upgrade`.
    #[error("101 response without the upgrade headers")]
    BadUpgradeResponse,
    /// Client side: Sec-WebSocket-Accept missing or not derived from our key.
    #[error("Sec-WebSocket-Accept does not match the key")]
    BadAccept,
}

impl HttpError {
    /// The HTTP status to answer a request that failed with this error (client-side errors
    /// map to 502, the server misbehaved).
    pub fn status(&self) -> u16 {
        match self {
            HttpError::HeadTooLarge | HttpError::TooManyHeaders => 431,
            HttpError::UnsupportedHttpVersion => 505,
            HttpError::MethodNotAllowed => 405,
            HttpError::UpgradeRequired | HttpError::UnsupportedWsVersion => 426,
            HttpError::UnexpectedStatus(_)
            | HttpError::BadUpgradeResponse
            | HttpError::BadAccept => 502,
            _ => 400,
        }
    }
}

/// Whether a comma-separated header value contains `token` (case-insensitive).
fn has_token(value: &str, token: &str) -> bool {
    value.split(',').any(|t| {
        t.trim_matches(|c| c == ' ' || c == '\t')
            .eq_ignore_ascii_case(token)
    })
}
