//! Message head framing shared by requests and responses.

use super::{HttpError, HttpLimits};

/// A complete head: its start line, its header lines (not yet split) and its length.
#[derive(Debug)]
pub(super) struct Head<'a> {
    /// Request line or status line, without CRLF.
    pub start_line: &'a str,
    /// Header lines joined by CRLF, without the final blank line.
    pub headers: &'a str,
    /// Bytes of the head including the blank line: the body or frames start here.
    pub len: usize,
}

/// Finds the head at the start of `buf`. `Ok(None)` while it is incomplete and within
/// the limit.
pub(super) fn split_head<'a>(
    buf: &'a [u8],
    limits: &HttpLimits,
) -> Result<Option<Head<'a>>, HttpError> {
    // Fail garbage (TLS hellos, binary) at once instead of waiting for the size limit.
    if let Some(&b) = buf.first() {
        if !is_tchar(b) {
            return Err(HttpError::BadStartLine);
        }
    }
    let window = &buf[..buf.len().min(limits.max_header_bytes)];
    let Some(end) = window.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() >= limits.max_header_bytes {
            Err(HttpError::HeadTooLarge)
        } else {
            Ok(None)
        };
    };
    let text = simdutf8::basic::from_utf8(&buf[..end]).map_err(|_| HttpError::NotUtf8)?;
    let (start_line, headers) = text.split_once("\r\n").unwrap_or((text, ""));
    if start_line.contains(['\r', '\n']) {
        return Err(HttpError::BadStartLine);
    }
    Ok(Some(Head {
        start_line,
        headers,
        len: end + 4,
    }))
}

/// Iterates `(name, value)` over header lines, validating each and enforcing the count.
pub(super) fn header_lines<'a>(
    headers: &'a str,
    limits: &HttpLimits,
) -> impl Iterator<Item = Result<(&'a str, &'a str), HttpError>> + 'a {
    let max = limits.max_headers;
    headers
        .split("\r\n")
        // Only an empty header block yields an empty line (the head ends at the first one).
        .filter(|l| !l.is_empty())
        .enumerate()
        .map(move |(i, line)| {
            if i >= max {
                return Err(HttpError::TooManyHeaders);
            }
            parse_header_line(line)
        })
}

fn parse_header_line(line: &str) -> Result<(&str, &str), HttpError> {
    // Bare CR or LF inside a line: request smuggling territory, refuse.
    if line.contains(['\r', '\n']) {
        return Err(HttpError::BadHeader);
    }
    let (name, value) = line.split_once(':').ok_or(HttpError::BadHeader)?;
    // Empty names, whitespace before the colon and obs-fold continuation lines (which start
    // with whitespace) all fail this check (RFC 9112 §5.1, §5.2).
    if name.is_empty() || !name.bytes().all(is_tchar) {
        return Err(HttpError::BadHeader);
    }
    let value = value.trim_matches([' ', '\t']);
    if value.bytes().any(|b| b < 0x20 && b != b'\t' || b == 0x7F) {
        return Err(HttpError::BadHeader);
    }
    Ok((name, value))
}

/// RFC 9110 `tchar`: characters allowed in tokens (methods, header names).
pub(super) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}
