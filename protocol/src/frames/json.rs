//! Hand-written JSON pieces for the hot path: string escaping and integer writing for the
//! encoder, and the small skips the client-frame parser uses to find a payload's byte range.

/// For each byte: 0 if it goes out as is, else the character after the backslash
/// (`u` meaning a `\u00XX` escape).
const ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[b'\n' as usize] = b'n';
    t[b'\r' as usize] = b'r';
    t[b'\t' as usize] = b't';
    t[0x08] = b'b';
    t[0x0c] = b'f';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `s` as a JSON string literal (quotes included), escaping `"`, `\` and control
/// characters. Everything else, including non-ASCII UTF-8, is copied as is (valid JSON).
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc = ESCAPE[b as usize];
        if esc == 0 {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        if esc == b'u' {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[(b >> 4) as usize]);
            out.push(HEX[(b & 0xf) as usize]);
        } else {
            out.push(b'\\');
            out.push(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Appends the decimal form of `v`.
pub(crate) fn write_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Appends `"key":` (the key is a compile-time constant that needs no escaping).
#[inline]
pub(crate) fn write_key(out: &mut Vec<u8>, key: &str) {
    out.push(b'"');
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
}

#[inline]
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Index after the JSON string whose opening quote is at `pos`, or `None` if the input ends
/// first. Assumes (but does not rely on, for safety) that the string is valid JSON.
pub(crate) fn skip_string(input: &[u8], pos: usize) -> Option<usize> {
    let mut i = pos + 1;
    loop {
        match *input.get(i)? {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
}

/// Index of the first non-whitespace byte at or after `pos` (may be `input.len()`).
pub(crate) fn skip_ws(input: &[u8], mut pos: usize) -> usize {
    while pos < input.len() && is_ws(input[pos]) {
        pos += 1;
    }
    pos
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(s: &str) -> String {
        let mut v = Vec::new();
        write_str(&mut v, s);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn escaping_round_trips_through_serde_json() {
        for s in [
            "",
            "plain",
            "q\"b\\s",
            "\n\r\t\u{8}\u{c}\u{1}\u{1f}",
            "é😀\u{7f}",
            "</script>",
        ] {
            let e = esc(s);
            assert_eq!(serde_json::from_str::<String>(&e).unwrap(), s, "{e}");
        }
        assert_eq!(esc("a\u{1}"), r#""a\u0001""#);
    }

    #[test]
    fn integers() {
        for v in [0, 1, 9, 10, 1234567890, u64::MAX] {
            let mut out = Vec::new();
            write_u64(&mut out, v);
            assert_eq!(out, v.to_string().as_bytes());
        }
    }
}
