//! Server side: request parsing and WebSocket upgrade validation.

use std::borrow::Cow;

use base64::Engine as _;

use super::head::{header_lines, is_tchar, split_head};
use super::{has_token, HttpError, HttpLimits, Parsed, MAX_QUERY_PARAMS};

/// A parsed request head, borrowing from the read buffer. Only the headers a gateway acts on
/// are kept; the others are validated and skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// Bytes of the head including the blank line.
    pub head_len: usize,
    /// Request method, e.g. `GET`.
    pub method: &'a str,
    /// Path part of the target, still percent-encoded (routes are plain ASCII).
    pub path: &'a str,
    /// Query string after `?` (empty when absent), still encoded: see [`Request::query_param`].
    pub query: &'a str,
    /// HTTP minor version: 0 or 1.
    pub http_minor: u8,
    /// `Host`.
    pub host: Option<&'a str>,
    /// First `Upgrade` header, raw.
    pub upgrade: Option<&'a str>,
    /// Some `Upgrade` header lists the `websocket` token.
    pub upgrade_websocket: bool,
    /// Some `Connection` header lists the `upgrade` token.
    pub connection_upgrade: bool,
    /// Some `Connection` header lists the `close` token.
    pub connection_close: bool,
    /// `Sec-WebSocket-Key`, raw (validated by [`Request::websocket`]).
    pub ws_key: Option<&'a str>,
    /// `Sec-WebSocket-Version`, raw.
    pub ws_version: Option<&'a str>,
    /// First `Sec-WebSocket-Protocol` header: the client's offered subprotocols.
    pub ws_protocol: Option<&'a str>,
    /// `Origin`.
    pub origin: Option<&'a str>,
    /// First `X-Forwarded-For` header (its first element is the original client).
    pub x_forwarded_for: Option<&'a str>,
}

/// A validated WebSocket upgrade request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WsUpgrade<'a> {
    /// The client's `Sec-WebSocket-Key` (24 base64 characters).
    pub key: &'a str,
    /// Offered subprotocols, comma-separated, if any.
    pub protocols: Option<&'a str>,
}

/// Parses a request head from `buf` with the default [`HttpLimits`].
pub fn parse_request(buf: &[u8]) -> Result<Parsed<Request<'_>>, HttpError> {
    parse_request_with(buf, &HttpLimits::default())
}

/// Parses a request head from `buf`: `Incomplete` until the blank line arrives, an error as
/// soon as the bytes cannot be a valid request or exceed `limits`.
pub fn parse_request_with<'a>(
    buf: &'a [u8],
    limits: &HttpLimits,
) -> Result<Parsed<Request<'a>>, HttpError> {
    let Some(head) = split_head(buf, limits)? else {
        return Ok(Parsed::Incomplete);
    };
    let mut parts = head.start_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::BadStartLine);
    };
    if method.is_empty() || !method.bytes().all(is_tchar) {
        return Err(HttpError::BadStartLine);
    }
    // Origin-form only: absolute-form is for proxies, asterisk-form for OPTIONS *.
    if !target.starts_with('/') || !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(HttpError::BadStartLine);
    }
    let http_minor = match version {
        "HTTP/1.1" => 1,
        "HTTP/1.0" => 0,
        v if v.starts_with("HTTP/") => return Err(HttpError::UnsupportedHttpVersion),
        _ => return Err(HttpError::BadStartLine),
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut req = Request {
        head_len: head.len,
        method,
        path,
        query,
        http_minor,
        host: None,
        upgrade: None,
        upgrade_websocket: false,
        connection_upgrade: false,
        connection_close: false,
        ws_key: None,
        ws_version: None,
        ws_protocol: None,
        origin: None,
        x_forwarded_for: None,
    };
    for line in header_lines(head.headers, limits) {
        let (name, value) = line?;
        let once = |slot: &mut Option<&'a str>| {
            if slot.replace(value).is_some() {
                Err(HttpError::DuplicateHeader)
            } else {
                Ok(())
            }
        };
        // The names we keep all differ in length: one comparison per header line.
        let is = |known: &str| name.eq_ignore_ascii_case(known);
        match name.len() {
            4 if is("host") => once(&mut req.host)?,
            7 if is("upgrade") => {
                req.upgrade.get_or_insert(value);
                req.upgrade_websocket |= has_token(value, "websocket");
            }
            10 if is("connection") => {
                req.connection_upgrade |= has_token(value, "upgrade");
                req.connection_close |= has_token(value, "close");
            }
            17 if is("sec-websocket-key") => once(&mut req.ws_key)?,
            21 if is("sec-websocket-version") => once(&mut req.ws_version)?,
            22 if is("sec-websocket-protocol") => {
                req.ws_protocol.get_or_insert(value);
            }
            6 if is("origin") => once(&mut req.origin)?,
            15 if is("x-forwarded-for") => {
                req.x_forwarded_for.get_or_insert(value);
            }
            _ => {}
        }
    }
    if http_minor == 1 && req.host.is_none() {
        return Err(HttpError::MissingHost);
    }
    Ok(Parsed::Complete(req))
}

impl<'a> Request<'a> {
    /// Validates a WebSocket upgrade (RFC 6455 §4.2.1). `Ok(None)` when the request does not
    /// ask for one (no `Upgrade: websocket`): a plain HTTP request such as `GET /healthz`.
    pub fn websocket(&self) -> Result<Option<WsUpgrade<'a>>, HttpError> {
        if !self.upgrade_websocket {
            return Ok(None);
        }
        if self.method != "GET" {
            return Err(HttpError::MethodNotAllowed);
        }
        if self.http_minor == 0 {
            return Err(HttpError::UpgradeNeedsHttp11);
        }
        if !self.connection_upgrade {
            return Err(HttpError::MissingConnectionUpgrade);
        }
        if self.ws_version != Some("13") {
            return Err(HttpError::UnsupportedWsVersion);
        }
        let key = self.ws_key.ok_or(HttpError::BadWsKey)?;
        if !is_valid_key(key) {
            return Err(HttpError::BadWsKey);
        }
        Ok(Some(WsUpgrade {
            key,
            protocols: self.ws_protocol,
        }))
    }

    /// Like [`Request::websocket`] for endpoints that only speak WebSocket: a plain request
    /// is [`HttpError::UpgradeRequired`] (426).
    pub fn require_websocket(&self) -> Result<WsUpgrade<'a>, HttpError> {
        self.websocket()?.ok_or(HttpError::UpgradeRequired)
    }

    /// The first value of query parameter `name`, percent-decoded (`+` is a space, as in
    /// HTML forms and `URLSearchParams`). Only the first [`MAX_QUERY_PARAMS`] are looked at.
    pub fn query_param(&self, name: &str) -> Result<Option<Cow<'a, str>>, HttpError> {
        for pair in self.query_pairs() {
            let (k, v) = pair?;
            if k == name {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }

    /// Iterates the decoded query parameters; after [`MAX_QUERY_PARAMS`] of them it yields
    /// [`HttpError::TooManyQueryParams`] and stops.
    pub fn query_pairs(&self) -> QueryPairs<'a> {
        QueryPairs {
            rest: self.query,
            seen: 0,
        }
    }
}

/// Iterator over decoded query parameters (see [`Request::query_pairs`]).
#[derive(Debug, Clone)]
pub struct QueryPairs<'a> {
    rest: &'a str,
    seen: usize,
}

impl<'a> Iterator for QueryPairs<'a> {
    type Item = Result<(Cow<'a, str>, Cow<'a, str>), HttpError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.rest.is_empty() || self.seen > MAX_QUERY_PARAMS {
                return None;
            }
            let (pair, rest) = self.rest.split_once('&').unwrap_or((self.rest, ""));
            self.rest = rest;
            if pair.is_empty() {
                continue;
            }
            self.seen += 1;
            if self.seen > MAX_QUERY_PARAMS {
                self.rest = "";
                return Some(Err(HttpError::TooManyQueryParams));
            }
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            return Some(percent_decode(k).and_then(|k| Ok((k, percent_decode(v)?))));
        }
    }
}

/// Decodes `%XX` escapes and `+`; borrows when there is nothing to decode. The output is
/// never longer than the input, which the head limit bounds.
fn percent_decode(s: &str) -> Result<Cow<'_, str>, HttpError> {
    if !s.bytes().any(|b| b == b'%' || b == b'+') {
        return Ok(Cow::Borrowed(s));
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = |at: usize| {
                    bytes
                        .get(at)
                        .and_then(|&b| char::from(b).to_digit(16))
                        .ok_or(HttpError::BadQuery)
                };
                out.push((hex(i + 1)? * 16 + hex(i + 2)?) as u8);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| HttpError::BadQuery)
}

/// A key is the base64 of 16 bytes: 22 significant characters and `==`.
fn is_valid_key(key: &str) -> bool {
    let mut raw = [0u8; 18];
    key.len() == 24
        && matches!(
            base64::engine::general_purpose::STANDARD.decode_slice(key, &mut raw),
            Ok(16)
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(buf: &[u8]) -> Request<'_> {
        match parse_request(buf) {
            Ok(Parsed::Complete(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    const RFC_REQUEST: &[u8] = b"GET /chat?userId=alice&token=a%2Bb+c HTTP/1.1\r\n\
Host: server.example.com\r\n\
Upgrade: websocket\r\n\
Connection: keep-alive, Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Origin: http://example.com\r\n\
Sec-WebSocket-Protocol: chat, superchat\r\n\
Sec-WebSocket-Version: 13\r\n\
X-Forwarded-For: 203.0.113.7, 10.0.0.1\r\n\
\r\n";

    #[test]
    fn rfc_upgrade_request() {
        let mut buf = RFC_REQUEST.to_vec();
        buf.extend_from_slice(&[0x81, 0x80]); // a frame right behind the head
        let r = complete(&buf);
        assert_eq!(r.head_len, RFC_REQUEST.len());
        assert_eq!((r.method, r.path), ("GET", "/chat"));
        assert_eq!(r.host, Some("server.example.com"));
        assert_eq!(r.origin, Some("http://example.com"));
        assert_eq!(r.x_forwarded_for, Some("203.0.113.7, 10.0.0.1"));
        assert_eq!(r.query_param("userId").unwrap().as_deref(), Some("alice"));
        assert_eq!(r.query_param("token").unwrap().as_deref(), Some("a+b c"));
        assert_eq!(r.query_param("nope").unwrap(), None);
        let up = r.websocket().unwrap().unwrap();
        assert_eq!(up.key, "dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(up.protocols, Some("chat, superchat"));
    }

    #[test]
    fn incomplete_until_blank_line() {
        for n in 0..RFC_REQUEST.len() {
            assert_eq!(
                parse_request(&RFC_REQUEST[..n]),
                Ok(Parsed::Incomplete),
                "prefix {n}"
            );
        }
    }

    #[test]
    fn plain_get_is_recognised() {
        let r = complete(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(r.path, "/healthz");
        assert_eq!(r.query, "");
        assert_eq!(r.websocket(), Ok(None));
        assert_eq!(r.require_websocket(), Err(HttpError::UpgradeRequired));
        assert_eq!(HttpError::UpgradeRequired.status(), 426);
        // HTTP/1.0 without Host is fine.
        let r = complete(b"GET /metrics HTTP/1.0\r\n\r\n");
        assert_eq!((r.path, r.http_minor), ("/metrics", 0));
    }

    #[test]
    fn header_names_and_tokens_case_insensitive() {
        let r = complete(
            b"GET /ws HTTP/1.1\r\nhOsT: h\r\nUPGRADE: WebSocket\r\nconnection: UPGRADE\r\n\
sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nSEC-WEBSOCKET-VERSION:13\r\n\r\n",
        );
        assert!(r.websocket().unwrap().is_some());
    }

    fn upgrade_with(replace: (&str, &str)) -> Result<Option<WsUpgrade<'static>>, HttpError> {
        let text = String::from_utf8(RFC_REQUEST.to_vec())
            .unwrap()
            .replace(replace.0, replace.1);
        let leaked: &'static [u8] = Box::leak(text.into_bytes().into_boxed_slice());
        match parse_request(leaked)? {
            Parsed::Complete(r) => r.websocket(),
            Parsed::Incomplete => panic!("incomplete"),
        }
    }

    #[test]
    fn upgrade_validation() {
        let e = upgrade_with(("Version: 13", "Version: 8")).unwrap_err();
        assert_eq!((e, e.status()), (HttpError::UnsupportedWsVersion, 426));
        assert_eq!(
            upgrade_with(("Sec-WebSocket-Version: 13\r\n", "")),
            Err(HttpError::UnsupportedWsVersion)
        );
        for bad_key in [
            "dGhlIHNhbXBsZSBub25jZQ=",     // 23 chars
            "dGhlIHNhbXBsZSBub25jZQ",      // unpadded
            "dGhlIHNhbXBsZSBub25jZXh4eA=", // decodes to 17 bytes
            "!!!!!!!!!!!!!!!!!!!!!!==",
        ] {
            let e = upgrade_with(("dGhlIHNhbXBsZSBub25jZQ==", bad_key)).unwrap_err();
            assert_eq!((e, e.status()), (HttpError::BadWsKey, 400), "{bad_key}");
        }
        assert_eq!(
            upgrade_with(("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "")),
            Err(HttpError::BadWsKey)
        );
        assert_eq!(
            upgrade_with(("keep-alive, Upgrade", "keep-alive")),
            Err(HttpError::MissingConnectionUpgrade)
        );
        assert_eq!(
            upgrade_with(("GET /chat", "POST /chat")),
            Err(HttpError::MethodNotAllowed)
        );
        assert_eq!(
            upgrade_with(("Upgrade: websocket", "Upgrade: h2c")),
            Ok(None)
        );
        assert_eq!(
            upgrade_with(("Host: server.example.com\r\n", "")),
            Err(HttpError::MissingHost)
        );
        assert_eq!(
            upgrade_with(("Origin", "Host: again\r\nOrigin")),
            Err(HttpError::DuplicateHeader)
        );
        assert_eq!(
            upgrade_with(("HTTP/1.1", "HTTP/2.0")),
            Err(HttpError::UnsupportedHttpVersion)
        );
    }

    #[test]
    fn malformed_heads() {
        for bad in [
            &b"GET /x HTTP/1.1 extra\r\nHost: h\r\n\r\n"[..],
            b"GET x HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET /x\r\nHost: h\r\n\r\n",
            b"GET /x HTTP/1.1\r\nHost h\r\n\r\n",
            b"GET /x HTTP/1.1\r\nHost : h\r\n\r\n",
            b"GET /x HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n",
            b"GET /x HTTP/1.1\r\nHost: h\nX: y\r\n\r\n",
            b"G(T /x HTTP/1.1\r\nHost: h\r\n\r\n",
            b"\x16\x03\x01\x02\x00",
        ] {
            let e = parse_request(bad).unwrap_err();
            assert_eq!(e.status(), 400, "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(
            parse_request(b"GET /x HTTP/1.1\r\nHost: \xff\r\n\r\n"),
            Err(HttpError::NotUtf8)
        );
    }

    #[test]
    fn size_and_count_limits() {
        // A head that never ends: incomplete below the limit, 431 at it.
        let mut big = b"GET /x HTTP/1.1\r\nX: ".to_vec();
        big.resize(super::super::MAX_HEADER_BYTES - 1, b'a');
        assert_eq!(parse_request(&big), Ok(Parsed::Incomplete));
        big.push(b'a');
        let e = parse_request(&big).unwrap_err();
        assert_eq!((e, e.status()), (HttpError::HeadTooLarge, 431));
        // Too many header lines.
        let limits = HttpLimits {
            max_header_bytes: 8192,
            max_headers: 3,
        };
        let ok = b"GET /x HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n";
        assert!(matches!(
            parse_request_with(ok, &limits),
            Ok(Parsed::Complete(_))
        ));
        let many = b"GET /x HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
        let e = parse_request_with(many, &limits).unwrap_err();
        assert_eq!((e, e.status()), (HttpError::TooManyHeaders, 431));
    }

    #[test]
    fn query_decoding() {
        let r = complete(b"GET /ws?a=%E2%9C%93&&b&c=1%2&d=%ff HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(r.query_param("a").unwrap().as_deref(), Some("✓"));
        assert_eq!(r.query_param("b").unwrap().as_deref(), Some(""));
        assert_eq!(r.query_param("c"), Err(HttpError::BadQuery));
        let r = complete(b"GET /ws?d=%ff HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(r.query_param("d"), Err(HttpError::BadQuery));
        let r = complete(b"GET /ws?a=1&a=2 HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(r.query_param("a").unwrap().as_deref(), Some("1"));
        // Bounded: parameters past MAX_QUERY_PARAMS are an error, not scanned.
        let mut target = String::from("GET /ws?");
        for i in 0..=MAX_QUERY_PARAMS {
            target.push_str(&format!("p{i}=v&"));
        }
        target.push_str(" HTTP/1.1\r\nHost: h\r\n\r\n");
        let r = complete(target.as_bytes());
        assert_eq!(r.query_param("p0").unwrap().as_deref(), Some("v"));
        assert_eq!(r.query_param("missing"), Err(HttpError::TooManyQueryParams));
        assert_eq!(r.query_pairs().count(), MAX_QUERY_PARAMS + 1);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            if let Ok(Parsed::Complete(r)) = parse_request(&bytes) {
                let _ = r.websocket();
                let _ = r.query_pairs().count();
            }
        }

        #[test]
        fn never_panics_on_request_like_input(
            lines in proptest::collection::vec("[ -~]{0,30}", 0..8),
            target in "[ -~]{0,40}",
        ) {
            let text = format!("GET {target} HTTP/1.1\r\n{}\r\n\r\n", lines.join("\r\n"));
            if let Ok(Parsed::Complete(r)) = parse_request(text.as_bytes()) {
                let _ = r.websocket();
                let _ = r.query_pairs().count();
            }
        }
    }
}
