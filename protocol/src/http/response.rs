//! Server side: response builders and the accept key.

use base64::Engine as _;
use sha1::{Digest as _, Sha1};

/// The GUID every WebSocket server appends to the client's key (RFC 6455 §1.3).
const WS_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`: base64(SHA-1(key + GUID)).
pub fn accept_key(key: &str) -> String {
    let mut out = [0u8; 28];
    let n = accept_key_into(key, &mut out);
    String::from_utf8_lossy(&out[..n]).into_owned()
}

/// Writes the accept key into `out` (always 28 bytes); returns its length.
fn accept_key_into(key: &str, out: &mut [u8; 28]) -> usize {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(WS_GUID);
    let digest = sha.finalize();
    base64::engine::general_purpose::STANDARD
        .encode_slice(digest, out)
        .unwrap_or(0)
}

/// Reason phrase for the statuses this gateway sends.
pub fn status_reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

fn status_line(status: u16, out: &mut Vec<u8>) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status_reason(status).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends `101 Switching Protocols` for a client key, echoing the chosen subprotocol (which
/// must be one the client offered) when there is one.
pub fn write_switching_protocols(key: &str, protocol: Option<&str>, out: &mut Vec<u8>) {
    let mut accept = [0u8; 28];
    let n = accept_key_into(key, &mut accept);
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Accept: ",
    );
    out.extend_from_slice(&accept[..n]);
    out.extend_from_slice(b"\r\n");
    if let Some(p) = protocol {
        out.extend_from_slice(b"Sec-WebSocket-Protocol: ");
        out.extend_from_slice(p.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends a complete response with a body, `Content-Length` and `Connection: close`
/// (the plain endpoints answer one request per connection, which keeps the socket code
/// free of HTTP keep-alive state).
pub fn write_response(status: u16, content_type: &str, body: &[u8], out: &mut Vec<u8>) {
    status_line(status, out);
    out.extend_from_slice(b"Content-Type: ");
    out.extend_from_slice(content_type.as_bytes());
    out.extend_from_slice(b"\r\nContent-Length: ");
    out.extend_from_slice(body.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
    out.extend_from_slice(body);
}

/// Appends an error response: status line, a short text body naming the status,
/// `Connection: close`, `Retry-After` when given (429/503) and, on 426,
/// `Sec-WebSocket-Version: 13` so the client learns the version we speak.
pub fn write_error_response(status: u16, retry_after_secs: Option<u32>, out: &mut Vec<u8>) {
    let reason = status_reason(status);
    status_line(status, out);
    if status == 426 {
        out.extend_from_slice(b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n");
    }
    if let Some(secs) = retry_after_secs {
        out.extend_from_slice(b"Retry-After: ");
        out.extend_from_slice(secs.to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: ");
    out.extend_from_slice((reason.len() + 1).to_string().as_bytes());
    out.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
    out.extend_from_slice(reason.as_bytes());
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_accept_key() {
        // RFC 6455 §1.3.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn switching_protocols() {
        let mut out = Vec::new();
        write_switching_protocols("dGhlIHNhbXBsZSBub25jZQ==", Some("chat"), &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat\r\n\r\n"
        );
    }

    #[test]
    fn error_responses() {
        let mut out = Vec::new();
        write_error_response(426, None, &mut out);
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("HTTP/1.1 426 Upgrade Required\r\n"), "{s}");
        assert!(s.contains("\r\nSec-WebSocket-Version: 13\r\n"));
        assert!(s.contains("\r\nConnection: close\r\n"));
        assert!(s.ends_with("\r\n\r\nUpgrade Required\n"));
        assert!(s.contains("\r\nContent-Length: 17\r\n"));

        let mut out = Vec::new();
        write_error_response(503, Some(2), &mut out);
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(s.contains("\r\nRetry-After: 2\r\n"));
        assert!(!s.contains("Sec-WebSocket-Version"));

        let mut out = Vec::new();
        write_error_response(431, None, &mut out);
        assert!(out.starts_with(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"));
    }

    #[test]
    fn plain_response() {
        let mut out = Vec::new();
        write_response(200, "text/plain; version=0.0.4", b"up 1\n", &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: 5\r\n\
Connection: close\r\n\r\nup 1\n"
        );
    }
}
