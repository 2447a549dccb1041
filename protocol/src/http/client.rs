//! Client side (loadgen, tests): the upgrade request and the server's response.

use base64::Engine as _;

use super::head::{header_lines, split_head};
use super::{accept_key, has_token, HttpError, HttpLimits, Parsed};

/// The `Sec-WebSocket-Key` for 16 random bytes the caller drew (base64, 24 characters).
pub fn ws_key_from_random(random: [u8; 16]) -> String {
    base64::engine::general_purpose::STANDARD.encode(random)
}

/// Appends a WebSocket upgrade request for `path_and_query` (already percent-encoded) on
/// `host` (`host[:port]`), offering `protocol` if given.
pub fn write_upgrade_request(
    host: &str,
    path_and_query: &str,
    key: &str,
    protocol: Option<&str>,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(path_and_query.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(
        b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
Sec-WebSocket-Key: ",
    );
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(p) = protocol {
        out.extend_from_slice(b"Sec-WebSocket-Protocol: ");
        out.extend_from_slice(p.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// A parsed response head (any status), borrowing from the read buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response<'a> {
    /// Bytes of the head including the blank line: frames (after a 101) or the body start here.
    pub head_len: usize,
    /// Status code.
    pub status: u16,
    /// Reason phrase.
    pub reason: &'a str,
    /// Some `Upgrade` header lists `websocket`.
    pub upgrade_websocket: bool,
    /// Some `Connection` header lists `upgrade`.
    pub connection_upgrade: bool,
    /// `Sec-WebSocket-Accept`.
    pub accept: Option<&'a str>,
    /// `Sec-WebSocket-Protocol`: the subprotocol the server chose.
    pub protocol: Option<&'a str>,
    /// `Retry-After` (seconds form), for backing off after 429/503.
    pub retry_after_secs: Option<u64>,
    /// `Content-Length`, when present and numeric.
    pub content_length: Option<usize>,
}

/// Parses a response head from `buf`; `Incomplete` until the blank line arrives.
pub fn parse_response(buf: &[u8]) -> Result<Parsed<Response<'_>>, HttpError> {
    let limits = HttpLimits::default();
    let Some(head) = split_head(buf, &limits)? else {
        return Ok(Parsed::Incomplete);
    };
    let mut parts = head.start_line.splitn(3, ' ');
    let (Some(version), Some(code), reason) = (parts.next(), parts.next(), parts.next()) else {
        return Err(HttpError::BadStartLine);
    };
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(HttpError::UnsupportedHttpVersion);
    }
    let status = match code.parse::<u16>() {
        Ok(s) if code.len() == 3 && (100..600).contains(&s) => s,
        _ => return Err(HttpError::BadStartLine),
    };
    let mut resp = Response {
        head_len: head.len,
        status,
        reason: reason.unwrap_or(""),
        upgrade_websocket: false,
        connection_upgrade: false,
        accept: None,
        protocol: None,
        retry_after_secs: None,
        content_length: None,
    };
    for line in header_lines(head.headers, &limits) {
        let (name, value) = line?;
        if name.eq_ignore_ascii_case("upgrade") {
            resp.upgrade_websocket |= has_token(value, "websocket");
        } else if name.eq_ignore_ascii_case("connection") {
            resp.connection_upgrade |= has_token(value, "upgrade");
        } else if name.eq_ignore_ascii_case("sec-websocket-accept") {
            if resp.accept.replace(value).is_some() {
                return Err(HttpError::DuplicateHeader);
            }
        } else if name.eq_ignore_ascii_case("sec-websocket-protocol") {
            resp.protocol.get_or_insert(value);
        } else if name.eq_ignore_ascii_case("retry-after") {
            resp.retry_after_secs = value.parse().ok();
        } else if name.eq_ignore_ascii_case("content-length") {
            resp.content_length = value.parse().ok();
        }
    }
    Ok(Parsed::Complete(resp))
}

impl Response<'_> {
    /// Checks that this is a valid 101 for the request we sent with `key` (RFC 6455 §4.1).
    pub fn check_upgrade(&self, key: &str) -> Result<(), HttpError> {
        if self.status != 101 {
            return Err(HttpError::UnexpectedStatus(self.status));
        }
        if !self.upgrade_websocket || !self.connection_upgrade {
            return Err(HttpError::BadUpgradeResponse);
        }
        match self.accept {
            Some(a) if a == accept_key(key) => Ok(()),
            _ => Err(HttpError::BadAccept),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{parse_request, write_error_response, write_switching_protocols, Request};
    use super::*;

    fn complete(buf: &[u8]) -> Response<'_> {
        match parse_response(buf) {
            Ok(Parsed::Complete(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn full_handshake_both_sides() {
        let key = ws_key_from_random(*b"the sample nonce");
        assert_eq!(key, "dGhlIHNhbXBsZSBub25jZQ==");
        let mut req = Vec::new();
        write_upgrade_request(
            "127.0.0.1:9000",
            "/ws?userId=u1",
            &key,
            Some("v1"),
            &mut req,
        );
        let parsed: Request<'_> = match parse_request(&req) {
            Ok(Parsed::Complete(r)) => r,
            other => panic!("{other:?}"),
        };
        let up = parsed.websocket().unwrap().unwrap();
        assert_eq!(parsed.query_param("userId").unwrap().as_deref(), Some("u1"));
        assert_eq!(up.protocols, Some("v1"));

        let mut resp = Vec::new();
        write_switching_protocols(up.key, Some("v1"), &mut resp);
        let head_len = resp.len();
        resp.extend_from_slice(&[0x81, 0x00]);
        let r = complete(&resp);
        assert_eq!(
            (r.status, r.head_len, r.protocol),
            (101, head_len, Some("v1"))
        );
        assert_eq!(r.check_upgrade(&key), Ok(()));
        let other_key = ws_key_from_random([7; 16]);
        assert_eq!(r.check_upgrade(&other_key), Err(HttpError::BadAccept));
        for n in 0..head_len {
            assert_eq!(parse_response(&resp[..n]), Ok(Parsed::Incomplete));
        }
    }

    #[test]
    fn error_statuses_seen_by_the_client() {
        let mut out = Vec::new();
        write_error_response(503, Some(3), &mut out);
        let r = complete(&out);
        assert_eq!((r.status, r.retry_after_secs), (503, Some(3)));
        assert_eq!(r.content_length, Some(out.len() - r.head_len));
        assert_eq!(
            r.check_upgrade("dGhlIHNhbXBsZSBub25jZQ=="),
            Err(HttpError::UnexpectedStatus(503))
        );
        let r = complete(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n");
        assert_eq!(
            r.check_upgrade("dGhlIHNhbXBsZSBub25jZQ=="),
            Err(HttpError::BadUpgradeResponse)
        );
        assert!(parse_response(b"HTTP/1.1 99 X\r\n\r\n").is_err());
        assert!(parse_response(b"SPDY/3 200 OK\r\n\r\n").is_err());
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            if let Ok(Parsed::Complete(r)) = parse_response(&bytes) {
                let _ = r.check_upgrade("dGhlIHNhbXBsZSBub25jZQ==");
            }
        }
    }
}
