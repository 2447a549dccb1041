//! WebSocket close codes and HTTP statuses the gateway uses, with their meaning.
//!
//! One table, used by the gateway when it closes a connection or refuses a handshake, by
//! clients to decide what to do next, and copied into `protocol/SPEC.md`.
//!
//! | code | name | who sends it, why | what a client does |
//! |---|---|---|---|
//! | 1000 | NORMAL | either side, orderly close | nothing |
//! | 1001 | GOING_AWAY | server shutting down without drain / client leaving | reconnect with backoff |
//! | 1002 | PROTOCOL_ERROR | RFC 6455 violation (bad framing, unmasked client frame) | fix the client |
//! | 1003 | UNSUPPORTED_DATA | binary frame where only text is accepted | fix the client |
//! | 1007 | INVALID_PAYLOAD | text frame that is not UTF-8 | fix the client |
//! | 1008 | POLICY_VIOLATION | generic policy refusal (e.g. Origin not allowed) | do not retry blindly |
//! | 1009 | MESSAGE_TOO_BIG | frame/message over the size limit | send smaller messages |
//! | 1011 | INTERNAL_ERROR | server bug or failed dependency | reconnect with backoff |
//! | 1012 | SERVICE_RESTART | server restarting | reconnect with backoff, resume |
//! | 1013 | TRY_AGAIN_LATER | overloaded | reconnect with backoff |
//! | 4001 | AUTH_FAILED | token missing, bad, expired, or for another user | get a new token from control |
//! | 4002 | REPLACED | the same user connected again elsewhere (duplicate login) | do not reconnect automatically |
//! | 4003 | REDIRECT | this node does not own the user; a `redirect` frame precedes it | connect to its `wsUrl` |
//! | 4004 | RESUME_FAILED | resume token bad or the log no longer holds `lastOffset` | reconnect without resume |
//! | 4005 | SLOW_CONSUMER | outbound buffer passed its hard limit | reconnect and resume |
//! | 4006 | IDLE_TIMEOUT | nothing received for the idle timeout | reconnect when needed |
//! | 4007 | DRAINED | node draining; a `drain` frame precedes it | reconnect (via control) and resume |
//! | 4008 | TOO_MANY_ERRORS | too many bad frames on this connection | fix the client |
//!
//! A close frame's reason holds at most 123 bytes, so anything longer (a URL, a token) travels
//! in a text frame sent just before the close.

/// A WebSocket close status code (RFC 6455 §7.4 plus this protocol's 4000–4999 codes).
pub type CloseCode = u16;

/// Orderly close by either side.
pub const NORMAL: CloseCode = 1000;
/// The endpoint is going away (server shutdown without drain, browser tab closed).
pub const GOING_AWAY: CloseCode = 1001;
/// The peer violated RFC 6455 framing.
pub const PROTOCOL_ERROR: CloseCode = 1002;
/// A data type the endpoint does not accept (binary frames on the JSON protocol).
pub const UNSUPPORTED_DATA: CloseCode = 1003;
/// Text frame payload that is not valid UTF-8.
pub const INVALID_PAYLOAD: CloseCode = 1007;
/// Generic policy refusal (for example an Origin outside the allow-list).
pub const POLICY_VIOLATION: CloseCode = 1008;
/// A frame or message larger than the configured limit.
pub const MESSAGE_TOO_BIG: CloseCode = 1009;
/// The server hit an unexpected condition.
pub const INTERNAL_ERROR: CloseCode = 1011;
/// The server is restarting; reconnect and resume.
pub const SERVICE_RESTART: CloseCode = 1012;
/// The server is overloaded; reconnect later with backoff.
pub const TRY_AGAIN_LATER: CloseCode = 1013;
/// Authentication failed: token missing, malformed, expired, or for another user.
pub const AUTH_FAILED: CloseCode = 4001;
/// The same user connected again; this older connection is replaced (duplicate login).
pub const REPLACED: CloseCode = 4002;
/// This node does not own the user; a `redirect` frame with the right `wsUrl` precedes it.
pub const REDIRECT: CloseCode = 4003;
/// Resume refused: bad resume token, or the resume log no longer holds the requested offset.
pub const RESUME_FAILED: CloseCode = 4004;
/// The connection's outbound buffer passed its hard limit (slow consumer).
pub const SLOW_CONSUMER: CloseCode = 4005;
/// Nothing was received from the client within the idle timeout.
pub const IDLE_TIMEOUT: CloseCode = 4006;
/// The node is draining; a `drain` frame with a resume token precedes it.
pub const DRAINED: CloseCode = 4007;
/// The client sent too many bad frames on this connection.
pub const TOO_MANY_ERRORS: CloseCode = 4008;

/// Every close code this protocol uses, in table order.
pub const ALL: [CloseCode; 18] = [
    NORMAL,
    GOING_AWAY,
    PROTOCOL_ERROR,
    UNSUPPORTED_DATA,
    INVALID_PAYLOAD,
    POLICY_VIOLATION,
    MESSAGE_TOO_BIG,
    INTERNAL_ERROR,
    SERVICE_RESTART,
    TRY_AGAIN_LATER,
    AUTH_FAILED,
    REPLACED,
    REDIRECT,
    RESUME_FAILED,
    SLOW_CONSUMER,
    IDLE_TIMEOUT,
    DRAINED,
    TOO_MANY_ERRORS,
];

/// The short reason text sent in the close frame for `code` (always ≤ 123 bytes).
pub fn reason(code: CloseCode) -> &'static str {
    match code {
        NORMAL => "normal closure",
        GOING_AWAY => "going away",
        PROTOCOL_ERROR => "protocol error",
        UNSUPPORTED_DATA => "unsupported data",
        INVALID_PAYLOAD => "invalid payload",
        POLICY_VIOLATION => "policy violation",
        MESSAGE_TOO_BIG => "message too big",
        INTERNAL_ERROR => "internal error",
        SERVICE_RESTART => "service restart",
        TRY_AGAIN_LATER => "try again later",
        AUTH_FAILED => "auth failed",
        REPLACED => "replaced by a newer connection",
        REDIRECT => "redirect: not the owner of this user",
        RESUME_FAILED => "resume failed",
        SLOW_CONSUMER => "slow consumer",
        IDLE_TIMEOUT => "idle timeout",
        DRAINED => "node drained",
        TOO_MANY_ERRORS => "too many errors",
        _ => "",
    }
}

/// True when a client should reconnect on its own (with backoff) after this close code.
pub fn should_reconnect(code: CloseCode) -> bool {
    matches!(
        code,
        GOING_AWAY
            | INTERNAL_ERROR
            | SERVICE_RESTART
            | TRY_AGAIN_LATER
            | REDIRECT
            | RESUME_FAILED
            | SLOW_CONSUMER
            | DRAINED
    )
}

/// HTTP statuses the gateway and control answer with (handshake refusals and API errors).
///
/// | status | when |
/// |---|---|
/// | 400 | malformed upgrade request or query (bad `userId`, bad `lastOffset`) |
/// | 401 | token missing, bad or expired |
/// | 403 | Origin not allowed, or the token is for another user |
/// | 404 | unknown path |
/// | 426 | not a WebSocket upgrade or unsupported `Sec-WebSocket-Version` (answer carries `Sec-WebSocket-Version: 13`) |
/// | 429 | per-IP connection or handshake limit reached |
/// | 431 | request headers larger than the limit |
/// | 503 | handshake rate limit reached, node draining or not ready; answer carries `Retry-After` |
pub mod http {
    /// Malformed request or query.
    pub const BAD_REQUEST: u16 = 400;
    /// Token missing, bad or expired.
    pub const UNAUTHORIZED: u16 = 401;
    /// Origin not allowed, or token for another user.
    pub const FORBIDDEN: u16 = 403;
    /// Unknown path.
    pub const NOT_FOUND: u16 = 404;
    /// Not a WebSocket upgrade, or unsupported WebSocket version.
    pub const UPGRADE_REQUIRED: u16 = 426;
    /// Per-IP limit reached.
    pub const TOO_MANY_REQUESTS: u16 = 429;
    /// Request headers too large.
    pub const HEADERS_TOO_LARGE: u16 = 431;
    /// Overloaded, draining or not ready; always sent with `Retry-After`.
    pub const SERVICE_UNAVAILABLE: u16 = 503;

    /// The standard reason phrase for the statuses above ("" for others).
    pub fn reason_phrase(status: u16) -> &'static str {
        match status {
            101 => "Switching Protocols",
            200 => "OK",
            BAD_REQUEST => "Bad Request",
            UNAUTHORIZED => "Unauthorized",
            FORBIDDEN => "Forbidden",
            NOT_FOUND => "Not Found",
            UPGRADE_REQUIRED => "Upgrade Required",
            TOO_MANY_REQUESTS => "Too Many Requests",
            HEADERS_TOO_LARGE => "Request Header Fields Too Large",
            SERVICE_UNAVAILABLE => "Service Unavailable",
            _ => "",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_short_reason_and_codes_are_distinct() {
        for (i, &c) in ALL.iter().enumerate() {
            let r = reason(c);
            assert!(!r.is_empty() && r.len() <= 123, "{c}");
            assert!(!ALL[i + 1..].contains(&c), "duplicate {c}");
        }
        assert_eq!(reason(4999), "");
    }

    #[test]
    fn reconnect_policy() {
        assert!(should_reconnect(DRAINED));
        assert!(should_reconnect(REDIRECT));
        assert!(!should_reconnect(REPLACED));
        assert!(!should_reconnect(AUTH_FAILED));
        assert_eq!(http::reason_phrase(431), "Request Header Fields Too Large");
    }
}
