//! Frame encoders: servers send unmasked frames, clients masked ones (RFC 6455 §5.1).

use super::{apply_mask, OpCode, MAX_CLOSE_REASON, MAX_HEADER_LEN};

/// Writes a frame header into `dst` and returns its length (2..=14). The shortest length
/// encoding is always used. `mask` is `Some` for client frames.
///
/// For writers that put the header and the payload in separate buffers (vectored writes).
pub fn write_header(
    opcode: OpCode,
    fin: bool,
    payload_len: u64,
    mask: Option<[u8; 4]>,
    dst: &mut [u8; MAX_HEADER_LEN],
) -> usize {
    dst[0] = (u8::from(fin) << 7) | opcode.as_u8();
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mut n = if payload_len < 126 {
        dst[1] = mask_bit | payload_len as u8;
        2
    } else if let Ok(len) = u16::try_from(payload_len) {
        dst[1] = mask_bit | 126;
        dst[2..4].copy_from_slice(&len.to_be_bytes());
        4
    } else {
        dst[1] = mask_bit | 127;
        dst[2..10].copy_from_slice(&payload_len.to_be_bytes());
        10
    };
    if let Some(m) = mask {
        dst[n..n + 4].copy_from_slice(&m);
        n += 4;
    }
    n
}

/// Appends a server (unmasked) frame to `out`.
pub fn encode_frame(opcode: OpCode, fin: bool, payload: &[u8], out: &mut Vec<u8>) {
    let mut h = [0u8; MAX_HEADER_LEN];
    let n = write_header(opcode, fin, payload.len() as u64, None, &mut h);
    out.reserve(n + payload.len());
    out.extend_from_slice(&h[..n]);
    out.extend_from_slice(payload);
}

/// Appends a client frame masked with `mask` to `out` (the caller draws the mask at random,
/// keeping this codec free of randomness).
pub fn encode_frame_masked(
    opcode: OpCode,
    fin: bool,
    payload: &[u8],
    mask: [u8; 4],
    out: &mut Vec<u8>,
) {
    let mut h = [0u8; MAX_HEADER_LEN];
    let n = write_header(opcode, fin, payload.len() as u64, Some(mask), &mut h);
    out.reserve(n + payload.len());
    out.extend_from_slice(&h[..n]);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], mask, 0);
}

/// Cuts `reason` to at most 123 bytes without splitting a UTF-8 character.
fn truncate_reason(reason: &str) -> &str {
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

/// Builds a close payload (code + truncated reason) into a stack buffer.
fn close_payload(code: u16, reason: &str, buf: &mut [u8; 125]) -> usize {
    let reason = truncate_reason(reason);
    buf[..2].copy_from_slice(&code.to_be_bytes());
    buf[2..2 + reason.len()].copy_from_slice(reason.as_bytes());
    2 + reason.len()
}

/// Appends a server close frame with `code` and `reason` (truncated to 123 bytes at a
/// character boundary) to `out`.
pub fn encode_close(code: u16, reason: &str, out: &mut Vec<u8>) {
    let mut p = [0u8; 125];
    let n = close_payload(code, reason, &mut p);
    encode_frame(OpCode::Close, true, &p[..n], out);
}

/// Appends a client (masked) close frame; see [`encode_close`].
pub fn encode_close_masked(code: u16, reason: &str, mask: [u8; 4], out: &mut Vec<u8>) {
    let mut p = [0u8; 125];
    let n = close_payload(code, reason, &mut p);
    encode_frame_masked(OpCode::Close, true, &p[..n], mask, out);
}

#[cfg(test)]
mod tests {
    use super::super::{decode_frame, parse_close_payload, Decoded, Role};
    use super::*;

    #[test]
    fn rfc_examples() {
        let mut out = Vec::new();
        encode_frame(OpCode::Text, true, b"Hello", &mut out);
        assert_eq!(out, [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        out.clear();
        encode_frame_masked(
            OpCode::Text,
            true,
            b"Hello",
            [0x37, 0xfa, 0x21, 0x3d],
            &mut out,
        );
        assert_eq!(
            out,
            [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
        out.clear();
        encode_frame(OpCode::Ping, true, b"Hello", &mut out);
        assert_eq!(out, [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        out.clear();
        encode_frame(OpCode::Binary, true, &[0u8; 256], &mut out);
        assert_eq!(&out[..4], &[0x82, 0x7E, 0x01, 0x00]);
        out.clear();
        encode_frame(OpCode::Binary, true, &vec![0u8; 65536], &mut out);
        assert_eq!(&out[..10], &[0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(out.len(), 65546);
    }

    #[test]
    fn length_boundaries_round_trip() {
        for len in [0usize, 125, 126, 127, 65535, 65536] {
            let payload = vec![7u8; len];
            let mut out = Vec::new();
            encode_frame(OpCode::Binary, false, &payload, &mut out);
            match decode_frame(&out, Role::Client) {
                Ok(Decoded::Frame(h)) => {
                    assert_eq!(h.payload_len as usize, len);
                    assert_eq!(h.header_len + len, out.len());
                    assert!(!h.fin);
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn close_reason_truncated_at_char_boundary() {
        // 61 two-byte characters = 122 bytes, then one more: 124 > 123, so it is dropped.
        let reason = "é".repeat(62);
        let mut out = Vec::new();
        encode_close(4001, &reason, &mut out);
        assert_eq!(out[1] as usize, 2 + 122);
        let cf = parse_close_payload(&out[2..]).unwrap().unwrap();
        assert_eq!(cf.code, 4001);
        assert_eq!(cf.reason, "é".repeat(61));
        // ASCII: exactly 123 bytes kept, control frame stays at 125.
        out.clear();
        encode_close(1000, &"x".repeat(300), &mut out);
        assert_eq!(out[1], 125);
        out.clear();
        encode_close_masked(1001, "going", [1, 2, 3, 4], &mut out);
        assert_eq!(out[1], 0x80 | 7);
    }
}
