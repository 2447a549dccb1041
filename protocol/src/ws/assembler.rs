//! The per-connection receive state machine: frames → messages.
//!
//! The caller owns the bytes (typically a per-shard scratch buffer a read just filled) and
//! passes them to [`MessageAssembler::feed`], which unmasks them in place. A message whose
//! single frame is wholly inside the slice is returned as a reference into it (no copy).
//! Only a message spanning several frames or reads is copied into the assembler's own
//! buffer, and that buffer is freed as soon as the message has been handed out, so an idle
//! connection holds no heap memory. A header cut by the end of a read is kept inline (at
//! most 14 bytes); payload bytes are consumed as they arrive, so the caller never has to
//! keep an unfinished frame around.

use super::{
    apply_mask, decode_header, parse_close_payload, CloseFrame, Decoded, FrameHeader, OpCode, Role,
    WsError, DEFAULT_MAX_FRAME, DEFAULT_MAX_MESSAGE, MAX_HEADER_LEN,
};

/// Size limits for one endpoint; exceeding either fails the connection with 1009.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest data frame payload accepted, checked on the header before any byte of
    /// payload is buffered.
    pub max_frame: usize,
    /// Largest message (sum of its fragments) accepted, also checked on each header.
    pub max_message: usize,
}

impl Default for Limits {
    /// 64 KiB frames and messages: the gateway's `/ws` endpoint.
    fn default() -> Self {
        Limits {
            max_frame: DEFAULT_MAX_FRAME,
            max_message: DEFAULT_MAX_MESSAGE,
        }
    }
}

/// A complete message (or control frame) received from the peer, borrowed either from the
/// slice given to [`MessageAssembler::feed`] or from the assembler's own buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// A text message, validated as UTF-8.
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
    /// A ping; the caller answers with a pong carrying the same payload.
    Ping(&'a [u8]),
    /// A pong.
    Pong(&'a [u8]),
    /// A close frame (`None`: no status code). The assembler ignores all later input.
    Close(Option<CloseFrame<'a>>),
}

/// What one [`MessageAssembler::feed`] call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Feed<'a> {
    /// Bytes of the input consumed. When `message` is `None` this is the whole input.
    pub consumed: usize,
    /// The message completed by those bytes, if any; call `feed` again with the rest.
    pub message: Option<Message<'a>>,
}

/// A data message being assembled across frames or reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataKind {
    Text,
    Binary,
}

/// A frame whose payload is still arriving.
#[derive(Debug, Clone, Copy)]
struct InFrame {
    opcode: OpCode,
    fin: bool,
    mask: Option<[u8; 4]>,
    /// Payload bytes not received yet.
    remaining: u64,
    /// Mask phase of the next payload byte (payload offset modulo 4).
    phase: u8,
}

/// What a completed message's bytes are and where they live.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Text,
    Binary,
    Ping,
    Pong,
    Close,
}

#[derive(Debug, Clone, Copy)]
enum Source {
    /// `input[start..end]` of the current feed call.
    Input(usize, usize),
    /// The data message buffer.
    Buffer,
    /// The control frame buffer.
    Control,
}

/// Per-connection WebSocket receive state (see the module docs). 112 bytes on x86-64 and no
/// heap while no message is half-received.
#[derive(Debug)]
pub struct MessageAssembler {
    /// Which side we are: decides the masking rule for received frames.
    role: Role,
    /// This endpoint's size limits.
    limits: Limits,
    /// A header cut by the end of the previous input.
    header: [u8; MAX_HEADER_LEN],
    /// Bytes of `header` in use; 0 when no header is pending.
    header_len: u8,
    /// The frame whose payload is still arriving, if any.
    frame: Option<InFrame>,
    /// The data message being assembled in `buf`, if any.
    message: Option<DataKind>,
    /// Bytes of a data message that spans frames or reads; empty (unallocated) otherwise.
    buf: Vec<u8>,
    /// Prefix of `buf` known to be valid UTF-8 (text messages): validation is incremental so
    /// an invalid sequence fails the connection as soon as it arrives.
    utf8_checked: usize,
    /// Payload of a control frame that spans reads (at most 125 bytes); unallocated otherwise.
    control: Vec<u8>,
    /// `buf`/`control` hold a message handed out by the previous `feed`: free them next time.
    handed_out: bool,
    /// A close frame was received: later input is ignored (RFC 6455 §5.5.1).
    closed: bool,
}

impl MessageAssembler {
    /// A fresh assembler for one connection.
    pub fn new(role: Role, limits: Limits) -> Self {
        MessageAssembler {
            role,
            limits,
            header: [0; MAX_HEADER_LEN],
            header_len: 0,
            frame: None,
            message: None,
            buf: Vec::new(),
            utf8_checked: 0,
            control: Vec::new(),
            handed_out: false,
            closed: false,
        }
    }

    /// The limits this assembler enforces.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Whether a close frame has been received.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Whether the connection is between messages: no partial header, frame or message.
    pub fn is_idle(&self) -> bool {
        self.header_len == 0 && self.frame.is_none() && self.message.is_none()
    }

    /// Heap bytes held right now (for per-connection memory accounting).
    pub fn heap_bytes(&self) -> usize {
        self.buf.capacity() + self.control.capacity()
    }

    /// Frees the buffer of a message handed out by the last [`feed`](Self::feed). `feed`
    /// does this itself; call it after the last `feed` of a read so an idle connection keeps
    /// no heap memory until its next read.
    pub fn reclaim(&mut self) {
        if self.handed_out {
            self.handed_out = false;
            if self.message.is_none() {
                self.buf = Vec::new();
                self.utf8_checked = 0;
            }
            self.control = Vec::new();
        }
    }

    /// Consumes bytes from `input` (unmasking them in place) until a message completes or
    /// the input is exhausted. Call it again with `&mut input[consumed..]` while bytes are
    /// left. Errors are final: fail the connection with [`WsError::close_code`].
    pub fn feed<'a>(&'a mut self, input: &'a mut [u8]) -> Result<Feed<'a>, WsError> {
        self.reclaim();
        if self.closed {
            return Ok(Feed {
                consumed: input.len(),
                message: None,
            });
        }
        let (consumed, found) = self.advance(input)?;
        let message = match found {
            None => None,
            Some((kind, source)) => Some(self.build(kind, source, input)?),
        };
        Ok(Feed { consumed, message })
    }

    /// The state machine proper; returns positions only so the borrow of `input` and `self`
    /// can be handed out afterwards by [`build`](Self::build).
    fn advance(&mut self, input: &mut [u8]) -> Result<(usize, Option<(Kind, Source)>), WsError> {
        let mut pos = 0;
        loop {
            if let Some(mut f) = self.frame {
                let avail = input.len() - pos;
                let take = usize::try_from(f.remaining).map_or(avail, |r| r.min(avail));
                let chunk = &mut input[pos..pos + take];
                if let Some(mask) = f.mask {
                    apply_mask(chunk, mask, usize::from(f.phase));
                }
                pos += take;
                f.remaining -= take as u64;
                f.phase = ((usize::from(f.phase) + take) & 3) as u8;
                if f.opcode.is_control() {
                    self.control.extend_from_slice(chunk);
                } else {
                    self.buf.extend_from_slice(chunk);
                    if self.message == Some(DataKind::Text) {
                        self.check_utf8(false)?;
                    }
                }
                if f.remaining > 0 {
                    self.frame = Some(f);
                    return Ok((pos, None));
                }
                self.frame = None;
                if f.opcode.is_control() {
                    self.handed_out = true;
                    let kind = self.control_kind(f.opcode);
                    return Ok((pos, Some((kind, Source::Control))));
                }
                if f.fin {
                    let kind = match self.message.take() {
                        Some(DataKind::Text) => {
                            self.check_utf8(true)?;
                            Kind::Text
                        }
                        _ => Kind::Binary,
                    };
                    self.handed_out = true;
                    return Ok((pos, Some((kind, Source::Buffer))));
                }
                continue;
            }

            if pos == input.len() {
                return Ok((pos, None));
            }
            let h = if self.header_len > 0 {
                match self.complete_header(input, &mut pos)? {
                    Some(h) => h,
                    None => return Ok((pos, None)),
                }
            } else {
                match decode_header(&input[pos..], self.role)? {
                    Decoded::Frame(h) => {
                        pos += h.header_len;
                        h
                    }
                    Decoded::Incomplete { .. } => {
                        // Shorter than a full header, so it fits the inline array.
                        let rest = &input[pos..];
                        self.header[..rest.len()].copy_from_slice(rest);
                        self.header_len = rest.len() as u8;
                        return Ok((input.len(), None));
                    }
                }
            };
            self.check_sequence(&h)?;

            let avail = (input.len() - pos) as u64;
            let whole = h.opcode.is_control() || (h.fin && h.opcode != OpCode::Continuation);
            if whole && h.payload_len <= avail {
                // Fast path: the complete message is in the input; hand it out in place.
                let start = pos;
                pos += h.payload_len as usize;
                if let Some(mask) = h.mask {
                    apply_mask(&mut input[start..pos], mask, 0);
                }
                let kind = match h.opcode {
                    OpCode::Text => Kind::Text,
                    OpCode::Binary => Kind::Binary,
                    op => self.control_kind(op),
                };
                return Ok((pos, Some((kind, Source::Input(start, pos)))));
            }
            match h.opcode {
                OpCode::Text => self.message = Some(DataKind::Text),
                OpCode::Binary => self.message = Some(DataKind::Binary),
                _ => {}
            }
            self.frame = Some(InFrame {
                opcode: h.opcode,
                fin: h.fin,
                mask: h.mask,
                remaining: h.payload_len,
                phase: 0,
            });
        }
    }

    /// Fills the pending header from `input`; `None` when the input ran out first.
    fn complete_header(
        &mut self,
        input: &[u8],
        pos: &mut usize,
    ) -> Result<Option<FrameHeader>, WsError> {
        loop {
            let have = usize::from(self.header_len);
            match decode_header(&self.header[..have], self.role)? {
                Decoded::Frame(h) => {
                    self.header_len = 0;
                    return Ok(Some(h));
                }
                Decoded::Incomplete { needed } => {
                    let avail = input.len() - *pos;
                    if avail == 0 {
                        return Ok(None);
                    }
                    // `have + needed` never exceeds MAX_HEADER_LEN.
                    let take = needed.min(avail);
                    self.header[have..have + take].copy_from_slice(&input[*pos..*pos + take]);
                    self.header_len += take as u8;
                    *pos += take;
                }
            }
        }
    }

    /// Fragmentation rules and size limits, checked on the header before any payload.
    fn check_sequence(&self, h: &FrameHeader) -> Result<(), WsError> {
        match h.opcode {
            OpCode::Continuation if self.message.is_none() => {
                return Err(WsError::UnexpectedContinuation)
            }
            OpCode::Text | OpCode::Binary if self.message.is_some() => {
                return Err(WsError::ExpectedContinuation)
            }
            // Control frame sizes were checked by `decode_header` (<= 125 bytes).
            OpCode::Close | OpCode::Ping | OpCode::Pong => return Ok(()),
            _ => {}
        }
        if h.payload_len > self.limits.max_frame as u64 {
            return Err(WsError::FrameTooLarge {
                len: h.payload_len,
                max: self.limits.max_frame,
            });
        }
        if self.buf.len() as u64 + h.payload_len > self.limits.max_message as u64 {
            return Err(WsError::MessageTooLarge {
                max: self.limits.max_message,
            });
        }
        Ok(())
    }

    /// Validates the unchecked tail of `buf`; an incomplete trailing sequence is fine unless
    /// this is the end of the message.
    fn check_utf8(&mut self, last: bool) -> Result<(), WsError> {
        match simdutf8::compat::from_utf8(&self.buf[self.utf8_checked..]) {
            Ok(_) => self.utf8_checked = self.buf.len(),
            Err(e) => {
                if last || e.error_len().is_some() {
                    return Err(WsError::InvalidUtf8);
                }
                self.utf8_checked += e.valid_up_to();
            }
        }
        Ok(())
    }

    fn control_kind(&mut self, op: OpCode) -> Kind {
        match op {
            OpCode::Ping => Kind::Ping,
            OpCode::Pong => Kind::Pong,
            _ => {
                self.closed = true;
                Kind::Close
            }
        }
    }

    fn build<'a>(
        &'a self,
        kind: Kind,
        source: Source,
        input: &'a [u8],
    ) -> Result<Message<'a>, WsError> {
        let bytes: &'a [u8] = match source {
            Source::Input(start, end) => &input[start..end],
            Source::Buffer => &self.buf,
            Source::Control => &self.control,
        };
        Ok(match kind {
            // Buffered text was validated incrementally; this second pass is what lets us
            // hand out `&str` without `unsafe`, and costs little next to the copy.
            Kind::Text => {
                Message::Text(simdutf8::basic::from_utf8(bytes).map_err(|_| WsError::InvalidUtf8)?)
            }
            Kind::Binary => Message::Binary(bytes),
            Kind::Ping => Message::Ping(bytes),
            Kind::Pong => Message::Pong(bytes),
            Kind::Close => Message::Close(parse_close_payload(bytes)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{encode_close_masked, encode_frame, encode_frame_masked};
    use super::*;
    use proptest::prelude::*;

    /// An owned copy of a [`Message`], for comparing across feed calls.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Owned {
        Text(String),
        Binary(Vec<u8>),
        Ping(Vec<u8>),
        Pong(Vec<u8>),
        Close(Option<(u16, String)>),
    }

    fn own(m: Message<'_>) -> Owned {
        match m {
            Message::Text(s) => Owned::Text(s.to_owned()),
            Message::Binary(b) => Owned::Binary(b.to_vec()),
            Message::Ping(b) => Owned::Ping(b.to_vec()),
            Message::Pong(b) => Owned::Pong(b.to_vec()),
            Message::Close(c) => Owned::Close(c.map(|c| (c.code, c.reason.to_owned()))),
        }
    }

    /// Feeds `bytes` cut at `cuts` (each read a separate mutable slice, as from a scratch
    /// buffer) and collects the messages, or the first error.
    fn run(
        asm: &mut MessageAssembler,
        bytes: &[u8],
        cuts: &[usize],
    ) -> Result<Vec<Owned>, WsError> {
        let mut out = Vec::new();
        let mut start = 0;
        let mut bounds: Vec<usize> = cuts.iter().map(|&c| c.min(bytes.len())).collect();
        bounds.sort_unstable();
        bounds.push(bytes.len());
        for end in bounds {
            let mut read = bytes[start..end].to_vec();
            let mut pos = 0;
            while pos < read.len() {
                let feed = asm.feed(&mut read[pos..])?;
                pos += feed.consumed;
                if let Some(m) = feed.message {
                    out.push(own(m));
                }
            }
            asm.reclaim();
            start = end;
        }
        Ok(out)
    }

    fn server() -> MessageAssembler {
        MessageAssembler::new(Role::Server, Limits::default())
    }

    const M: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    fn masked(op: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        encode_frame_masked(op, fin, payload, M, &mut v);
        v
    }

    #[test]
    fn rfc_hello_zero_copy() {
        let mut asm = server();
        let mut buf = vec![
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let ptr = buf[6..].as_ptr();
        let feed = asm.feed(&mut buf).unwrap();
        assert_eq!(feed.consumed, 11);
        match feed.message {
            Some(Message::Text(s)) => {
                assert_eq!(s, "Hello");
                assert_eq!(s.as_ptr(), ptr, "single-frame message must not be copied");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(asm.heap_bytes(), 0);
        assert!(asm.is_idle());
    }

    #[test]
    fn several_messages_in_one_read() {
        let mut bytes = masked(OpCode::Text, true, b"one");
        bytes.extend(masked(OpCode::Binary, true, &[1, 2, 3]));
        bytes.extend(masked(OpCode::Ping, true, b"p"));
        let got = run(&mut server(), &bytes, &[]).unwrap();
        assert_eq!(
            got,
            [
                Owned::Text("one".into()),
                Owned::Binary(vec![1, 2, 3]),
                Owned::Ping(b"p".to_vec())
            ]
        );
    }

    #[test]
    fn fragmented_with_interleaved_control() {
        // RFC 6455 §5.4: control frames may be injected between fragments.
        let mut bytes = masked(OpCode::Text, false, b"Hel");
        bytes.extend(masked(OpCode::Ping, true, b"x"));
        bytes.extend(masked(OpCode::Continuation, false, b""));
        bytes.extend(masked(OpCode::Pong, true, b""));
        bytes.extend(masked(OpCode::Continuation, true, b"lo"));
        for cut in 0..bytes.len() {
            let mut asm = server();
            let got = run(&mut asm, &bytes, &[cut]).unwrap();
            assert_eq!(
                got,
                [
                    Owned::Ping(b"x".to_vec()),
                    Owned::Pong(vec![]),
                    Owned::Text("Hello".into())
                ],
                "cut at {cut}"
            );
            assert_eq!(asm.heap_bytes(), 0, "buffers freed after the message");
        }
    }

    #[test]
    fn fragmentation_errors() {
        let bytes = masked(OpCode::Continuation, true, b"x");
        assert_eq!(
            run(&mut server(), &bytes, &[]),
            Err(WsError::UnexpectedContinuation)
        );
        let mut bytes = masked(OpCode::Text, false, b"x");
        bytes.extend(masked(OpCode::Binary, true, b"y"));
        let e = run(&mut server(), &bytes, &[]).unwrap_err();
        assert_eq!((e, e.close_code()), (WsError::ExpectedContinuation, 1002));
        // A whole fragmented message, then a stray continuation.
        let mut bytes = masked(OpCode::Binary, false, b"x");
        bytes.extend(masked(OpCode::Continuation, true, b"y"));
        bytes.extend(masked(OpCode::Continuation, true, b"z"));
        assert_eq!(
            run(&mut server(), &bytes, &[]),
            Err(WsError::UnexpectedContinuation)
        );
    }

    #[test]
    fn masking_direction() {
        let mut unmasked = Vec::new();
        encode_frame(OpCode::Text, true, b"hi", &mut unmasked);
        assert_eq!(
            run(&mut server(), &unmasked, &[]),
            Err(WsError::UnmaskedFrame)
        );
        let mut client = MessageAssembler::new(Role::Client, Limits::default());
        assert_eq!(
            run(&mut client, &unmasked, &[]),
            Ok(vec![Owned::Text("hi".into())])
        );
        let mut client = MessageAssembler::new(Role::Client, Limits::default());
        assert_eq!(
            run(&mut client, &masked(OpCode::Text, true, b"hi"), &[]),
            Err(WsError::MaskedFrame)
        );
    }

    #[test]
    fn utf8_split_across_fragments_is_fine() {
        let s = "κόσμε€𝄞";
        let b = s.as_bytes();
        for split in 0..=b.len() {
            let mut bytes = masked(OpCode::Text, false, &b[..split]);
            bytes.extend(masked(OpCode::Continuation, true, &b[split..]));
            assert_eq!(
                run(&mut server(), &bytes, &[]),
                Ok(vec![Owned::Text(s.into())]),
                "split at {split}"
            );
        }
    }

    #[test]
    fn invalid_utf8_fails_fast() {
        // An invalid sequence in the first fragment fails before the message ends.
        let mut asm = server();
        let mut first = masked(OpCode::Text, false, &[b'a', 0xC0, 0xAF]);
        let e = asm.feed(&mut first).unwrap_err();
        assert_eq!((e, e.close_code()), (WsError::InvalidUtf8, 1007));
        // ... also inside one frame that arrives over several reads.
        let mut asm = server();
        let mut frame = masked(
            OpCode::Text,
            true,
            &[b'a', b'b', 0xED, 0xA0, 0x80, b'c', b'd'],
        );
        let mut part = frame[..10].to_vec();
        assert!(asm.feed(&mut part).is_err());
        frame.truncate(0);
        // Out-of-range code point prefix (F4 90) is rejected without waiting for more.
        let mut asm = server();
        let mut first = masked(OpCode::Text, false, &[0xF4, 0x90]);
        assert_eq!(asm.feed(&mut first), Err(WsError::InvalidUtf8));
        // An incomplete trailing sequence is fine until the final fragment.
        let mut bytes = masked(OpCode::Text, false, &[0xE2, 0x82]);
        bytes.extend(masked(OpCode::Continuation, true, b""));
        assert_eq!(run(&mut server(), &bytes, &[]), Err(WsError::InvalidUtf8));
        // Single frame, whole in one read.
        assert_eq!(
            run(&mut server(), &masked(OpCode::Text, true, &[0xFF]), &[]),
            Err(WsError::InvalidUtf8)
        );
    }

    #[test]
    fn close_frames() {
        let mut close = Vec::new();
        encode_close_masked(1000, "done", M, &mut close);
        let mut bytes = close.clone();
        bytes.extend(masked(OpCode::Text, true, b"after close is ignored"));
        let mut asm = server();
        assert_eq!(
            run(&mut asm, &bytes, &[3]),
            Ok(vec![Owned::Close(Some((1000, "done".into())))])
        );
        assert!(asm.is_closed());
        assert_eq!(
            run(&mut server(), &masked(OpCode::Close, true, b""), &[]),
            Ok(vec![Owned::Close(None)])
        );
        assert_eq!(
            run(&mut server(), &masked(OpCode::Close, true, &[0x03]), &[]),
            Err(WsError::CloseTooShort)
        );
        assert_eq!(
            run(
                &mut server(),
                &masked(OpCode::Close, true, &[0x03, 0xEE]),
                &[]
            ),
            Err(WsError::InvalidCloseCode(1006))
        );
        assert_eq!(
            run(
                &mut server(),
                &masked(OpCode::Close, true, &[0x03, 0xE8, 0xFF]),
                &[4]
            ),
            Err(WsError::InvalidUtf8)
        );
    }

    #[test]
    fn limits_checked_on_the_header() {
        let limits = Limits {
            max_frame: 100,
            max_message: 150,
        };
        // A frame header announcing 2^62 bytes fails at once, nothing is allocated.
        let mut asm = MessageAssembler::new(Role::Server, limits);
        let mut huge = vec![0x82, 0xFF, 0x40, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4];
        let e = asm.feed(&mut huge).unwrap_err();
        assert_eq!(e.close_code(), 1009);
        assert!(matches!(e, WsError::FrameTooLarge { max: 100, .. }));
        assert_eq!(asm.heap_bytes(), 0);
        // Exactly at the limits is fine.
        let mut bytes = masked(OpCode::Binary, false, &[0; 100]);
        bytes.extend(masked(OpCode::Continuation, true, &[0; 50]));
        let mut asm = MessageAssembler::new(Role::Server, limits);
        assert_eq!(
            run(&mut asm, &bytes, &[7]),
            Ok(vec![Owned::Binary(vec![0; 150])])
        );
        // One byte over the message limit fails on the continuation's header.
        let mut bytes = masked(OpCode::Binary, false, &[0; 100]);
        bytes.extend(masked(OpCode::Continuation, true, &[0; 51]));
        let mut asm = MessageAssembler::new(Role::Server, limits);
        assert_eq!(
            run(&mut asm, &bytes, &[]),
            Err(WsError::MessageTooLarge { max: 150 })
        );
        // Control frames are not subject to the data limits.
        let limits = Limits {
            max_frame: 1,
            max_message: 1,
        };
        let mut asm = MessageAssembler::new(Role::Server, limits);
        assert_eq!(
            run(&mut asm, &masked(OpCode::Ping, true, &[9; 125]), &[]),
            Ok(vec![Owned::Ping(vec![9; 125])])
        );
    }

    #[test]
    fn idle_state_is_small() {
        let size = std::mem::size_of::<MessageAssembler>();
        assert!(size <= 160, "MessageAssembler is {size} bytes");
    }

    #[derive(Debug, Clone)]
    enum Item {
        /// A data message sent as these fragments.
        Data(bool, Vec<Vec<u8>>),
        Ping(Vec<u8>),
    }

    fn item() -> impl Strategy<Value = Item> {
        let text = proptest::collection::vec(".{0,40}", 1..4).prop_map(|parts| {
            Item::Data(true, parts.into_iter().map(String::into_bytes).collect())
        });
        let binary =
            proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..4)
                .prop_map(|parts| Item::Data(false, parts));
        let ping = proptest::collection::vec(any::<u8>(), 0..126).prop_map(Item::Ping);
        prop_oneof![text, binary, ping]
    }

    proptest! {
        #[test]
        fn round_trip_any_fragmentation_and_split(
            items in proptest::collection::vec(item(), 0..6),
            cuts in proptest::collection::vec(0usize..4000, 0..12),
            mask in any::<[u8; 4]>(),
            ping_inside in any::<bool>(),
            client in any::<bool>(),
        ) {
            // Server side receives masked frames; client side (loadgen) unmasked ones.
            let encode = |op: OpCode, fin: bool, p: &[u8], out: &mut Vec<u8>| {
                if client { encode_frame(op, fin, p, out) } else { encode_frame_masked(op, fin, p, mask, out) }
            };
            let mut bytes = Vec::new();
            let mut expect = Vec::new();
            for it in &items {
                match it {
                    Item::Ping(p) => {
                        encode(OpCode::Ping, true, p, &mut bytes);
                        expect.push(Owned::Ping(p.clone()));
                    }
                    Item::Data(text, parts) => {
                        // Text fragments are cut inside characters too: join, then re-split
                        // at the original part lengths shifted by one byte.
                        let all: Vec<u8> = parts.concat();
                        let mut at = 0;
                        for (i, part) in parts.iter().enumerate() {
                            let end = if i + 1 == parts.len() { all.len() }
                                      else { (at + part.len() + 1).min(all.len()) };
                            let op = if i == 0 {
                                if *text { OpCode::Text } else { OpCode::Binary }
                            } else { OpCode::Continuation };
                            encode(op, i + 1 == parts.len(), &all[at..end], &mut bytes);
                            if ping_inside && i + 1 < parts.len() {
                                encode(OpCode::Pong, true, b"k", &mut bytes);
                                expect.push(Owned::Pong(b"k".to_vec()));
                            }
                            at = end;
                        }
                        expect.push(if *text {
                            Owned::Text(String::from_utf8(all).unwrap())
                        } else {
                            Owned::Binary(all)
                        });
                    }
                }
            }
            let role = if client { Role::Client } else { Role::Server };
            let mut asm = MessageAssembler::new(role, Limits::default());
            prop_assert_eq!(run(&mut asm, &bytes, &cuts), Ok(expect));
            prop_assert!(asm.is_idle());
            prop_assert_eq!(asm.heap_bytes(), 0);
        }

        #[test]
        fn never_panics_on_arbitrary_bytes(
            bytes in proptest::collection::vec(any::<u8>(), 0..600),
            cuts in proptest::collection::vec(0usize..600, 0..8),
            client in any::<bool>(),
        ) {
            let role = if client { Role::Client } else { Role::Server };
            let limits = Limits { max_frame: 256, max_message: 512 };
            let _ = run(&mut MessageAssembler::new(role, limits), &bytes, &cuts);
        }

        #[test]
        fn never_panics_on_mostly_valid_frames(
            frames in proptest::collection::vec(
                (0u8..16, any::<bool>(), proptest::collection::vec(any::<u8>(), 0..140)), 0..8),
            cuts in proptest::collection::vec(0usize..1200, 0..8),
        ) {
            // Valid framing with arbitrary opcodes/FIN/payloads exercises the sequence rules.
            let mut bytes = Vec::new();
            for (op, fin, payload) in &frames {
                let start = bytes.len();
                encode_frame_masked(OpCode::Binary, *fin, payload, M, &mut bytes);
                bytes[start] = (bytes[start] & 0xF0) | op;
            }
            let limits = Limits { max_frame: 100, max_message: 300 };
            let _ = run(&mut MessageAssembler::new(Role::Server, limits), &bytes, &cuts);
        }
    }
}
