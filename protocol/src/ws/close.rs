//! Close frame payloads (RFC 6455 §5.5.1, §7.4).

use super::WsError;

/// Longest close reason in bytes: a control payload is at most 125 bytes, 2 go to the code.
pub const MAX_CLOSE_REASON: usize = 123;

/// A parsed close frame payload: the status code and its UTF-8 reason (possibly empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseFrame<'a> {
    /// Status code, validated with [`is_valid_close_code`].
    pub code: u16,
    /// Human-readable reason (at most 123 bytes).
    pub reason: &'a str,
}

/// Whether `code` may appear in a close frame on the wire.
///
/// Valid: 1000-1003, 1007-1011, the IANA-registered 1012-1014 (service restart, try again
/// later, bad gateway: our own gateway sends 1012/1013, so clients must accept them) and the
/// application ranges 3000-4999. Invalid: below 1000, 1004-1006 and 1015 (reserved, never
/// sent), 1016-2999 (unassigned) and 5000 and above.
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Parses a close frame payload: empty means "no status code" (`Ok(None)`); one byte is a
/// protocol error; otherwise a valid code plus a UTF-8 reason.
pub fn parse_close_payload(payload: &[u8]) -> Result<Option<CloseFrame<'_>>, WsError> {
    match payload {
        [] => Ok(None),
        [_] => Err(WsError::CloseTooShort),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_valid_close_code(code) {
                return Err(WsError::InvalidCloseCode(code));
            }
            let reason = simdutf8::basic::from_utf8(reason).map_err(|_| WsError::InvalidUtf8)?;
            Ok(Some(CloseFrame { code, reason }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_table() {
        for c in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999,
            4000, 4999,
        ] {
            assert!(is_valid_close_code(c), "{c} should be valid");
        }
        for c in [
            0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert!(!is_valid_close_code(c), "{c} should be invalid");
        }
    }

    #[test]
    fn payloads() {
        assert_eq!(parse_close_payload(&[]), Ok(None));
        assert_eq!(parse_close_payload(&[3]), Err(WsError::CloseTooShort));
        assert_eq!(
            parse_close_payload(&[0x03, 0xE8]),
            Ok(Some(CloseFrame {
                code: 1000,
                reason: ""
            }))
        );
        let mut p = vec![0x0F, 0xA1]; // 4001
        p.extend_from_slice("bye ✓".as_bytes());
        assert_eq!(
            parse_close_payload(&p),
            Ok(Some(CloseFrame {
                code: 4001,
                reason: "bye ✓"
            }))
        );
        assert_eq!(
            parse_close_payload(&[0x03, 0xED]),
            Err(WsError::InvalidCloseCode(1005))
        );
        let e = parse_close_payload(&[0x03, 0xE8, 0xCE, 0xBA, 0xE1]).unwrap_err();
        assert_eq!((e, e.close_code()), (WsError::InvalidUtf8, 1007));
        assert_eq!(WsError::InvalidCloseCode(999).close_code(), 1002);
    }
}
