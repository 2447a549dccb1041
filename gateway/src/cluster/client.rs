//! A tiny blocking HTTP/1.1 client for control's JSON API on a plain TCP connection.
//!
//! Why hand-written: the node makes one request every heartbeat interval plus one long-poll,
//! to a control on the same network speaking plain HTTP/JSON; a full client (and its async
//! runtime) would be the largest dependency of the node for that. One request per
//! connection (`Connection: close`), every read and write under a deadline, the answer
//! bounded by [`MAX_RESPONSE_BYTES`]; `Content-Length`, chunked and read-to-EOF bodies are
//! understood.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use thiserror::Error;

/// Largest response (head + body) read from control: a ring snapshot of hundreds of nodes
/// is a few tens of KiB.
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
/// Connect timeout to control.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a request to control failed.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The control URL is not `http://host[:port][/prefix]`.
    #[error("control URL must be http://host[:port]: {0}")]
    BadUrl(String),
    /// Connecting, writing or reading failed (or timed out).
    #[error("talking to control: {0}")]
    Io(#[from] std::io::Error),
    /// The answer is not a well-formed HTTP/1.1 response.
    #[error("malformed response from control: {0}")]
    Malformed(&'static str),
    /// The answer is larger than [`MAX_RESPONSE_BYTES`].
    #[error("response from control is over {MAX_RESPONSE_BYTES} bytes")]
    TooLarge,
    /// Control answered with a non-2xx status.
    #[error("control answered {status}: {body}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The start of the body (control's JSON error).
        body: String,
    },
}

/// Where control is: `host:port` and a path prefix (usually empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlClient {
    /// `host:port` for `connect` and the `Host` header.
    authority: String,
    /// Path prefix without a trailing slash.
    prefix: String,
}

impl ControlClient {
    /// Parses `http://host[:port][/prefix]` (port 80 by default).
    pub fn new(url: &str) -> Result<Self, ClientError> {
        let rest = url
            .trim()
            .strip_prefix("http://")
            .ok_or_else(|| ClientError::BadUrl(url.to_owned()))?;
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(ClientError::BadUrl(url.to_owned()));
        }
        let authority = if authority.rsplit_once(':').is_some_and(|(_, p)| {
            // `[::1]` alone has colons but no port.
            !p.ends_with(']') && p.parse::<u16>().is_ok()
        }) {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        Ok(Self {
            authority,
            prefix: prefix.to_owned(),
        })
    }

    /// `GET path`; the body of a 2xx answer.
    pub fn get(&self, path: &str, timeout: Duration) -> Result<Vec<u8>, ClientError> {
        self.request("GET", path, None, None, timeout)
    }

    /// `POST path` with a JSON body (or none) and an optional bearer token.
    pub fn post(
        &self,
        path: &str,
        json: Option<&[u8]>,
        bearer: Option<&str>,
        timeout: Duration,
    ) -> Result<Vec<u8>, ClientError> {
        self.request("POST", path, json, bearer, timeout)
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        json: Option<&[u8]>,
        bearer: Option<&str>,
        timeout: Duration,
    ) -> Result<Vec<u8>, ClientError> {
        let addr = self
            .authority
            .to_socket_addrs()?
            .next()
            .ok_or(ClientError::BadUrl(self.authority.clone()))?;
        let mut stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        let body = json.unwrap_or(b"");
        let mut req = format!(
            "{method} {}{path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAccept: application/json\r\nContent-Length: {}\r\n",
            self.prefix,
            self.authority,
            body.len()
        );
        if json.is_some() {
            req.push_str("Content-Type: application/json\r\n");
        }
        if let Some(t) = bearer.filter(|t| !t.is_empty()) {
            req.push_str("Authorization: Bearer ");
            req.push_str(t);
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        let mut out = req.into_bytes();
        out.extend_from_slice(body);
        stream.write_all(&out)?;
        let mut buf = Vec::with_capacity(4096);
        let mut chunk = [0u8; 8192];
        loop {
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                break;
            }
            if buf.len() + n > MAX_RESPONSE_BYTES {
                return Err(ClientError::TooLarge);
            }
            buf.extend_from_slice(&chunk[..n]);
            // Stop as soon as a Content-Length body is complete (a server may keep the
            // connection open a moment despite `Connection: close`).
            if let Some((status, body)) = complete(&buf)? {
                return finish(status, body);
            }
        }
        match parse_response(&buf)? {
            (status, Body::Length(b)) | (status, Body::ToEof(b)) => finish(status, b.to_vec()),
            (status, Body::Chunked(raw)) => finish(status, dechunk(raw)?),
        }
    }
}

fn finish(status: u16, body: Vec<u8>) -> Result<Vec<u8>, ClientError> {
    if (200..300).contains(&status) {
        Ok(body)
    } else {
        let end = body.len().min(512);
        Err(ClientError::Status {
            status,
            body: String::from_utf8_lossy(&body[..end]).into_owned(),
        })
    }
}

enum Body<'a> {
    Length(&'a [u8]),
    Chunked(&'a [u8]),
    ToEof(&'a [u8]),
}

/// `Some` once `buf` holds a whole response whose length is known from its head.
fn complete(buf: &[u8]) -> Result<Option<(u16, Vec<u8>)>, ClientError> {
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        return Ok(None);
    };
    let (status, len, chunked) = head(&buf[..head_end])?;
    let body = &buf[head_end + 4..];
    if let (Some(len), false) = (len, chunked) {
        if body.len() >= len {
            return Ok(Some((status, body[..len].to_vec())));
        }
    }
    if chunked && find(body, b"0\r\n\r\n").is_some() {
        if let Ok(b) = dechunk(body) {
            return Ok(Some((status, b)));
        }
    }
    Ok(None)
}

fn parse_response(buf: &[u8]) -> Result<(u16, Body<'_>), ClientError> {
    let head_end = find(buf, b"\r\n\r\n").ok_or(ClientError::Malformed("no end of head"))?;
    let (status, len, chunked) = head(&buf[..head_end])?;
    let body = &buf[head_end + 4..];
    Ok(match (chunked, len) {
        (true, _) => (status, Body::Chunked(body)),
        (false, Some(len)) if body.len() >= len => (status, Body::Length(&body[..len])),
        (false, Some(_)) => return Err(ClientError::Malformed("body shorter than its length")),
        (false, None) => (status, Body::ToEof(body)),
    })
}

/// Status, `Content-Length` and whether the body is chunked.
fn head(head: &[u8]) -> Result<(u16, Option<usize>, bool), ClientError> {
    let text = std::str::from_utf8(head).map_err(|_| ClientError::Malformed("head not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|s| s.get(2..5))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or(ClientError::Malformed("status line"))?;
    let mut len = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            len = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| ClientError::Malformed("content-length"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        }
    }
    if len.is_some_and(|l| l > MAX_RESPONSE_BYTES) {
        return Err(ClientError::TooLarge);
    }
    Ok((status, len, chunked))
}

fn dechunk(mut raw: &[u8]) -> Result<Vec<u8>, ClientError> {
    let mut out = Vec::new();
    loop {
        let line_end = find(raw, b"\r\n").ok_or(ClientError::Malformed("chunk size line"))?;
        let size_text = std::str::from_utf8(&raw[..line_end])
            .map_err(|_| ClientError::Malformed("chunk size"))?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| ClientError::Malformed("chunk size"))?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if size > raw.len() || out.len() + size > MAX_RESPONSE_BYTES {
            return Err(ClientError::Malformed("chunk longer than the response"));
        }
        out.extend_from_slice(&raw[..size]);
        raw = raw
            .get(size + 2..)
            .ok_or(ClientError::Malformed("chunk end"))?;
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let c = ControlClient::new("http://127.0.0.1:8081").expect("url");
        assert_eq!(c.authority, "127.0.0.1:8081");
        assert_eq!(c.prefix, "");
        let c = ControlClient::new("http://control/api/").expect("url");
        assert_eq!(c.authority, "control:80");
        assert_eq!(c.prefix, "/api");
        assert!(ControlClient::new("https://x").is_err());
        assert!(ControlClient::new("http://").is_err());
    }

    #[test]
    fn reads_length_chunked_and_errors() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(complete(r).expect("ok"), Some((200, b"{}".to_vec())));
        let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(complete(r).expect("ok"), Some((200, b"abcde".to_vec())));
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n{}";
        assert_eq!(complete(r).expect("incomplete"), None);
        assert!(finish(503, b"busy".to_vec()).is_err());
        assert!(head(b"HTTP/1.1 2x0 OK").is_err());
        assert!(head(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999").is_err());
    }
}
