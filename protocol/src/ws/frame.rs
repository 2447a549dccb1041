//! Frame header decoding with every per-frame rule of RFC 6455 §5.2 and §5.5.

use super::{Role, WsError, MAX_CONTROL_PAYLOAD};

/// Longest possible frame header: 2 bytes + 8-byte extended length + 4-byte mask.
pub const MAX_HEADER_LEN: usize = 14;

/// A frame opcode (RFC 6455 §5.2); reserved values are rejected while decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    /// 0x0: continues a fragmented message.
    Continuation,
    /// 0x1: first (or only) frame of a UTF-8 text message.
    Text,
    /// 0x2: first (or only) frame of a binary message.
    Binary,
    /// 0x8: close.
    Close,
    /// 0x9: ping.
    Ping,
    /// 0xA: pong.
    Pong,
}

impl OpCode {
    /// The 4-bit wire value.
    pub fn as_u8(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// Parses a 4-bit wire value; reserved opcodes are an error.
    pub fn from_u8(v: u8) -> Result<OpCode, WsError> {
        Ok(match v {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            other => return Err(WsError::ReservedOpcode(other)),
        })
    }

    /// Close, ping and pong are control frames (opcode MSB set).
    pub fn is_control(self) -> bool {
        self.as_u8() & 0x8 != 0
    }
}

/// A decoded frame header. The payload follows at `header_len` and is `payload_len` long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// FIN bit: last frame of its message.
    pub fin: bool,
    /// The frame's opcode.
    pub opcode: OpCode,
    /// Masking key, present on client-to-server frames.
    pub mask: Option<[u8; 4]>,
    /// Declared payload length (at most 2^63-1; checked against limits by the caller).
    pub payload_len: u64,
    /// Header length on the wire: 2..=14 bytes.
    pub header_len: usize,
}

/// Result of a decode attempt over a byte slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded {
    /// A header (and, for [`decode_frame`], its whole payload) is available.
    Frame(FrameHeader),
    /// Not enough bytes yet: at least `needed` more must arrive. Not an error.
    Incomplete {
        /// Minimum number of additional bytes before decoding can make progress.
        needed: usize,
    },
}

/// Decodes and validates a frame header at the start of `buf`.
///
/// Checks RSV bits (no extensions are negotiated), reserved opcodes, control frame FIN and
/// length, the masking direction for `role` (the side *receiving* the frame) and the MSB of a
/// 64-bit length. Non-minimal length encodings are accepted (RFC 6455 does not forbid them on
/// receipt). Never reads past `buf`, never panics.
pub fn decode_header(buf: &[u8], role: Role) -> Result<Decoded, WsError> {
    if buf.len() < 2 {
        return Ok(Decoded::Incomplete {
            needed: 2 - buf.len(),
        });
    }
    let b0 = buf[0];
    let b1 = buf[1];
    // Validate what the first two bytes already tell before waiting for more: a peer that
    // sends garbage is failed at once.
    if b0 & 0x70 != 0 {
        return Err(WsError::ReservedBits);
    }
    let fin = b0 & 0x80 != 0;
    let opcode = OpCode::from_u8(b0 & 0x0F)?;
    let masked = b1 & 0x80 != 0;
    match (role, masked) {
        (Role::Server, false) => return Err(WsError::UnmaskedFrame),
        (Role::Client, true) => return Err(WsError::MaskedFrame),
        _ => {}
    }
    let len7 = b1 & 0x7F;
    if opcode.is_control() {
        if !fin {
            return Err(WsError::FragmentedControl);
        }
        if usize::from(len7) > MAX_CONTROL_PAYLOAD {
            // 126/127 announce an extended length, which no control frame may have.
            return Err(WsError::ControlTooLong(u64::from(len7)));
        }
    }
    let ext_len = match len7 {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let header_len = 2 + ext_len + if masked { 4 } else { 0 };
    if buf.len() < header_len {
        return Ok(Decoded::Incomplete {
            needed: header_len - buf.len(),
        });
    }
    let payload_len = match len7 {
        126 => u64::from(u16::from_be_bytes([buf[2], buf[3]])),
        127 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            let v = u64::from_be_bytes(b);
            if v >> 63 != 0 {
                return Err(WsError::LengthMsbSet);
            }
            v
        }
        n => u64::from(n),
    };
    let mask = if masked {
        let at = 2 + ext_len;
        Some([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
    } else {
        None
    };
    Ok(Decoded::Frame(FrameHeader {
        fin,
        opcode,
        mask,
        payload_len,
        header_len,
    }))
}

/// Like [`decode_header`], but reports `Incomplete` until the whole payload is in `buf` too:
/// on `Frame(h)`, the payload is `buf[h.header_len..h.header_len + h.payload_len]`.
pub fn decode_frame(buf: &[u8], role: Role) -> Result<Decoded, WsError> {
    match decode_header(buf, role)? {
        Decoded::Frame(h) => {
            let have = (buf.len() - h.header_len) as u64;
            if have < h.payload_len {
                // Saturate: on 32-bit targets a huge declared length must not wrap.
                let needed = usize::try_from(h.payload_len - have).unwrap_or(usize::MAX);
                Ok(Decoded::Incomplete { needed })
            } else {
                Ok(Decoded::Frame(h))
            }
        }
        inc => Ok(inc),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(buf: &[u8], role: Role) -> FrameHeader {
        match decode_header(buf, role) {
            Ok(Decoded::Frame(h)) => h,
            other => panic!("expected a header, got {other:?}"),
        }
    }

    #[test]
    fn rfc_masked_hello() {
        // RFC 6455 §5.7: a single-frame masked text message "Hello".
        let buf = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let h = hdr(&buf, Role::Server);
        assert!(h.fin);
        assert_eq!(h.opcode, OpCode::Text);
        assert_eq!(h.mask, Some([0x37, 0xfa, 0x21, 0x3d]));
        assert_eq!(h.payload_len, 5);
        assert_eq!(h.header_len, 6);
        assert_eq!(decode_frame(&buf, Role::Server), Ok(Decoded::Frame(h)));
        assert_eq!(
            decode_frame(&buf[..9], Role::Server),
            Ok(Decoded::Incomplete { needed: 2 })
        );
    }

    #[test]
    fn rfc_unmasked_hello_and_fragments() {
        let h = hdr(&[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f], Role::Client);
        assert_eq!((h.fin, h.opcode, h.payload_len), (true, OpCode::Text, 5));
        let h = hdr(&[0x01, 0x03, 0x48, 0x65, 0x6c], Role::Client);
        assert_eq!((h.fin, h.opcode), (false, OpCode::Text));
        let h = hdr(&[0x80, 0x02, 0x6c, 0x6f], Role::Client);
        assert_eq!((h.fin, h.opcode), (true, OpCode::Continuation));
    }

    #[test]
    fn extended_lengths() {
        // RFC 6455 §5.7: 256 bytes binary in a single unmasked frame.
        let h = hdr(&[0x82, 0x7E, 0x01, 0x00], Role::Client);
        assert_eq!((h.payload_len, h.header_len), (256, 4));
        // 64 KiB binary, 64-bit length.
        let h = hdr(
            &[0x82, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4],
            Role::Server,
        );
        assert_eq!((h.payload_len, h.header_len), (65536, 14));
        assert_eq!(h.mask, Some([1, 2, 3, 4]));
        // Non-minimal encodings are fine on receipt.
        let h = hdr(&[0x82, 0x7E, 0x00, 0x05], Role::Client);
        assert_eq!(h.payload_len, 5);
        let h = hdr(&[0x82, 0x7F, 0, 0, 0, 0, 0, 0, 0, 5], Role::Client);
        assert_eq!(h.payload_len, 5);
    }

    #[test]
    fn incomplete_headers() {
        assert_eq!(
            decode_header(&[], Role::Server),
            Ok(Decoded::Incomplete { needed: 2 })
        );
        assert_eq!(
            decode_header(&[0x82], Role::Server),
            Ok(Decoded::Incomplete { needed: 1 })
        );
        assert_eq!(
            decode_header(&[0x82, 0xFE, 0x01], Role::Server),
            Ok(Decoded::Incomplete { needed: 5 })
        );
        assert_eq!(
            decode_header(&[0x82, 0xFF], Role::Server),
            Ok(Decoded::Incomplete { needed: 12 })
        );
    }

    #[test]
    fn protocol_violations() {
        for rsv in [0x40u8, 0x20, 0x10] {
            assert_eq!(
                decode_header(&[0x81 | rsv, 0x80], Role::Server),
                Err(WsError::ReservedBits)
            );
        }
        for op in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            assert_eq!(
                decode_header(&[0x80 | op, 0x80], Role::Server),
                Err(WsError::ReservedOpcode(op))
            );
        }
        // Fragmented ping.
        assert_eq!(
            decode_header(&[0x09, 0x80], Role::Server),
            Err(WsError::FragmentedControl)
        );
        // Control frames > 125 bytes.
        assert_eq!(
            decode_header(&[0x89, 0xFE, 0, 126], Role::Server),
            Err(WsError::ControlTooLong(126))
        );
        assert_eq!(
            decode_header(&[0x88, 0xFF], Role::Server),
            Err(WsError::ControlTooLong(127))
        );
        // 125 is fine.
        assert!(matches!(
            decode_header(&[0x8A, 0x80 | 125, 0, 0, 0, 0], Role::Server),
            Ok(Decoded::Frame(_))
        ));
        // Masking direction.
        assert_eq!(
            decode_header(&[0x81, 0x05], Role::Server),
            Err(WsError::UnmaskedFrame)
        );
        assert_eq!(
            decode_header(&[0x81, 0x85], Role::Client),
            Err(WsError::MaskedFrame)
        );
        // 64-bit length with the MSB set.
        assert_eq!(
            decode_header(&[0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0], Role::Client),
            Err(WsError::LengthMsbSet)
        );
    }

    #[test]
    fn huge_declared_length_is_incomplete_not_a_panic() {
        let buf = [0x82, 0x7F, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];
        assert!(matches!(
            decode_frame(&buf, Role::Client),
            Ok(Decoded::Incomplete { .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..32),
                                client in proptest::prelude::any::<bool>()) {
            let role = if client { Role::Client } else { Role::Server };
            if let Ok(Decoded::Frame(h)) = decode_frame(&bytes, role) {
                proptest::prop_assert!(h.header_len as u64 + h.payload_len <= bytes.len() as u64);
            }
            if let Ok(Decoded::Incomplete { needed }) = decode_header(&bytes, role) {
                proptest::prop_assert!(needed >= 1 && bytes.len() + needed <= MAX_HEADER_LEN);
            }
        }
    }

    #[test]
    fn opcode_round_trip() {
        for op in [
            OpCode::Continuation,
            OpCode::Text,
            OpCode::Binary,
            OpCode::Close,
            OpCode::Ping,
            OpCode::Pong,
        ] {
            assert_eq!(OpCode::from_u8(op.as_u8()), Ok(op));
        }
    }
}
