//! Message head framing shared by requests and responses.

use super::{HttpError, HttpLimits};

/// A complete head: its start line, its header lines (not yet split) and its length.
#[derive(Debug)]
pub(super) struct Head<'a> {
    /// Request line or status line, without CRLF.
    pub start_line: &'a str,
    /// Header lines, each ending in CRLF, without the final blank line.
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
    let Some(end) = find_blank_line(window) else {
        return if buf.len() >= limits.max_header_bytes {
            Err(HttpError::HeadTooLarge)
        } else {
            Ok(None)
        };
    };
    // Keep the CRLF of the last header line so every header line ends in CRLF.
    let text = simdutf8::basic::from_utf8(&buf[..end + 2]).map_err(|_| HttpError::NotUtf8)?;
    let lf = memchr::memchr(b'\n', text.as_bytes()).unwrap_or(text.len());
    let start_line = text[..lf]
        .strip_suffix('\r')
        .ok_or(HttpError::BadStartLine)?;
    if start_line.bytes().any(|b| b == b'\r') {
        return Err(HttpError::BadStartLine);
    }
    let headers = &text[lf + 1..];
    Ok(Some(Head {
        start_line,
        headers,
        len: end + 4,
    }))
}

/// Offset of the first `\r\n\r\n` in `buf` (SIMD substring search).
fn find_blank_line(buf: &[u8]) -> Option<usize> {
    memchr::memmem::find(buf, b"\r\n\r\n")
}

/// Iterates `(name, value)` over header lines, validating each and enforcing the count.
pub(super) fn header_lines<'a>(
    headers: &'a str,
    limits: &HttpLimits,
) -> impl Iterator<Item = Result<(&'a str, &'a str), HttpError>> + 'a {
    let max = limits.max_headers;
    Lines { rest: headers }.enumerate().map(move |(i, line)| {
        if i >= max {
            return Err(HttpError::TooManyHeaders);
        }
        // A bare LF (no CR before it) ends a line only for lenient parsers: refuse it, as
        // a disagreement about line ends between two parsers is how requests get smuggled.
        parse_header_line(line.strip_suffix('\r').ok_or(HttpError::BadHeader)?)
    })
}

/// Splits at LF with a SIMD byte search (header blocks are hundreds of bytes).
struct Lines<'a> {
    rest: &'a str,
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.rest.is_empty() {
            return None;
        }
        let end = memchr::memchr(b'\n', self.rest.as_bytes()).unwrap_or(self.rest.len());
        let line = &self.rest[..end];
        self.rest = self.rest.get(end + 1..).unwrap_or("");
        Some(line)
    }
}

fn parse_header_line(line: &str) -> Result<(&str, &str), HttpError> {
    let colon = memchr::memchr(b':', line.as_bytes()).ok_or(HttpError::BadHeader)?;
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    // Empty names, whitespace before the colon and obs-fold continuation lines (which start
    // with whitespace) all fail this check (RFC 9112 §5.1, §5.2).
    if name.is_empty() || !name.bytes().all(is_tchar) {
        return Err(HttpError::BadHeader);
    }
    let value = value.trim_matches(|c| c == ' ' || c == '\t');
    // Control characters, including a stray CR, are not allowed in field values.
    if value.bytes().any(|b| b < 0x20 && b != b'\t' || b == 0x7F) {
        return Err(HttpError::BadHeader);
    }
    Ok((name, value))
}

/// RFC 9110 `tchar`: characters allowed in tokens (methods, header names).
pub(super) fn is_tchar(b: u8) -> bool {
    TCHAR[usize::from(b)]
}

/// Lookup table for [`is_tchar`]: header names are checked byte by byte on every request.
static TCHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        i += 1;
    }
    t
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_line_search() {
        assert_eq!(find_blank_line(b"\r\n\r\n"), Some(0));
        assert_eq!(find_blank_line(b"a\r\n\r\nb"), Some(1));
        assert_eq!(find_blank_line(b"a\n\r\n\r\n"), Some(2));
        assert_eq!(find_blank_line(b"a\r\n\n\r\n"), None);
        assert_eq!(find_blank_line(b"\n\n\n"), None);
        assert_eq!(find_blank_line(b""), None);
    }

    proptest::proptest! {
        #[test]
        fn blank_line_matches_naive(bytes in proptest::collection::vec(
            proptest::sample::select(vec![b'\r', b'\n', b'a']), 0..40)) {
            let naive = bytes.windows(4).position(|w| w == b"\r\n\r\n");
            proptest::prop_assert_eq!(find_blank_line(&bytes), naive);
        }
    }
}
