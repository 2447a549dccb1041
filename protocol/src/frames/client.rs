//! Client → server frames and their parsers.
//!
//! Two parsers produce the same [`ClientFrame`]:
//!
//! - [`ClientFrameParser`] (simd-json): copies the input into a reusable scratch buffer (the
//!   caller's bytes are never mutated), builds a simd-json tape with reusable
//!   `simd_json::Buffers`, reads the small fields from the tape, and finds the payload's byte
//!   range in the *original* input from the position of the `"payload"` key (simd-json
//!   unescapes strings in place, so a tape string's address in the scratch copy is its
//!   offset in the input) plus a short skip over the already-validated value.
//! - [`parse_with_serde`] (serde_json with a borrowed `&RawValue`): the reference
//!   implementation, kept for the property tests that compare the two and for the benchmark.
//!
//! Both give the same result on every input the property tests produce. Which is faster
//! depends on the size (see `benches/RESULTS.md`, `examples/parse_crossover.rs`): simd-json
//! wins on small frames (~12% at 100 B: it finds the few fields without a per-byte state
//! machine) and loses on large ones (~15% behind at 1.2 KiB, ~40% at 4 KiB: it copies the
//! input twice and decodes every string of the payload, while serde_json's `RawValue`
//! skims over it). So [`ClientFrameParser::parse`] uses simd-json up to
//! [`SIMD_PARSE_MAX_LEN`] bytes and serde_json above, and the stateless
//! [`ClientFrame::parse`] uses serde_json. Known differences at the edges, both refusals or accepted
//! oddities of hostile input, never panics: serde_json refuses nesting deeper than 128 and
//! lone UTF-16 surrogate escapes (`"\ud800"`), which simd-json accepts.

use super::json::{skip_string, skip_ws};
use super::{FrameError, MAX_ACK_IDS, MAX_CLIENT_MSG_ID_LEN};
use crate::user::validate_user_id;
use serde::de::{Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use simd_json::{Buffers, Node, StaticNode, Tape};
use std::borrow::Cow;
use std::fmt;

/// Frames up to this many bytes are parsed with simd-json, larger ones with serde_json
/// (the measured crossover is between 200 and 400 B on the reference machine).
pub const SIMD_PARSE_MAX_LEN: usize = 256;

/// Scratch space above this is released after a parse, so one huge frame does not pin
/// memory on a shard forever.
const SCRATCH_KEEP_BYTES: usize = 64 * 1024;

/// A frame a client sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFrame<'a> {
    /// `{"type":"message","to":U,"clientMsgId":C,"payload":ANY}`: a direct message.
    Message {
        /// Recipient user id (validated).
        to: Cow<'a, str>,
        /// Sender-chosen id (1..=[`MAX_CLIENT_MSG_ID_LEN`] bytes) echoed in `sent`; a
        /// retry with the same id is deduplicated by the server.
        client_msg_id: Cow<'a, str>,
        /// The payload value's raw JSON bytes, exactly as the client wrote them.
        payload: &'a [u8],
    },
    /// `{"type":"ack","upTo":N,"msgIds":[...]}`: delivery acknowledgement.
    Ack {
        /// Every offset ≤ `up_to` was received (cumulative).
        up_to: Option<u64>,
        /// Individually received messages (beyond a hole), at most [`MAX_ACK_IDS`].
        msg_ids: Vec<u64>,
    },
    /// `{"type":"ping","nonce":N}`: application-level keepalive / RTT probe.
    Ping {
        /// Echoed in the `pong`.
        nonce: Option<u64>,
    },
}

impl<'a> ClientFrame<'a> {
    /// Parses one client text frame. Never mutates `input`; the payload is a sub-slice of it.
    ///
    /// Stateless, so it uses serde_json: without a caller-owned scratch buffer, simd-json's
    /// setup (a thread-local lookup, two copies) cancels its small-frame advantage. A shard
    /// parsing many frames holds a [`ClientFrameParser`] instead (up to ~10% faster on small
    /// frames, same results).
    pub fn parse(input: &'a [u8]) -> Result<Self, FrameError> {
        parse_with_serde(input)
    }

    /// The frame's `type` string.
    pub fn type_str(&self) -> &'static str {
        match self {
            ClientFrame::Message { .. } => "message",
            ClientFrame::Ack { .. } => "ack",
            ClientFrame::Ping { .. } => "ping",
        }
    }
}

/// The fields of a client frame gathered by either parser, then checked in one place.
#[derive(Default)]
struct Fields<'a> {
    ty: Option<Cow<'a, str>>,
    to: Option<Cow<'a, str>>,
    client_msg_id: Option<Cow<'a, str>>,
    payload: Option<&'a [u8]>,
    up_to: Option<u64>,
    msg_ids: Option<Vec<u64>>,
    ids_overflow: bool,
    nonce: Option<u64>,
}

impl<'a> Fields<'a> {
    fn finish(self) -> Result<ClientFrame<'a>, FrameError> {
        let ty = self.ty.ok_or(FrameError::MissingType)?;
        match &*ty {
            "message" => {
                let to = self.to.ok_or(FrameError::MissingField("to"))?;
                validate_user_id(&to)?;
                let client_msg_id = self
                    .client_msg_id
                    .ok_or(FrameError::MissingField("clientMsgId"))?;
                if client_msg_id.is_empty() || client_msg_id.len() > MAX_CLIENT_MSG_ID_LEN {
                    return Err(FrameError::BadLength("clientMsgId"));
                }
                let payload = self.payload.ok_or(FrameError::MissingField("payload"))?;
                Ok(ClientFrame::Message {
                    to,
                    client_msg_id,
                    payload,
                })
            }
            "ack" => {
                if self.ids_overflow {
                    return Err(FrameError::TooManyAckIds);
                }
                if self.up_to.is_none() && self.msg_ids.is_none() {
                    return Err(FrameError::MissingField("upTo"));
                }
                Ok(ClientFrame::Ack {
                    up_to: self.up_to,
                    msg_ids: self.msg_ids.unwrap_or_default(),
                })
            }
            "ping" => Ok(ClientFrame::Ping { nonce: self.nonce }),
            _ => Err(FrameError::UnknownType),
        }
    }
}

/// The simd-json client-frame parser, with its reusable buffers (one per shard/thread).
pub struct ClientFrameParser {
    /// Copy of the input that simd-json may mutate (it unescapes strings in place).
    scratch: Vec<u8>,
    /// simd-json's stage-1/stage-2 buffers, reused across frames.
    buffers: Buffers,
    /// The tape's node vector, reused across frames (emptied between uses).
    tape: Tape<'static>,
}

impl fmt::Debug for ClientFrameParser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientFrameParser")
            .field("scratch_capacity", &self.scratch.capacity())
            .finish_non_exhaustive()
    }
}

impl Default for ClientFrameParser {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientFrameParser {
    /// A parser with buffers sized for typical frames (they grow on demand).
    pub fn new() -> Self {
        Self {
            scratch: Vec::with_capacity(1024),
            buffers: Buffers::new(1024),
            tape: Tape::null(),
        }
    }

    /// Parses one client frame with the faster parser for its size: simd-json up to
    /// [`SIMD_PARSE_MAX_LEN`] bytes, serde_json above. The recommended hot path: a shard
    /// holds one parser (this skips even the thread-local lookup of [`ClientFrame::parse`]).
    pub fn parse<'a>(&mut self, input: &'a [u8]) -> Result<ClientFrame<'a>, FrameError> {
        if input.len() > SIMD_PARSE_MAX_LEN {
            return parse_with_serde(input);
        }
        self.parse_simd(input)
    }

    /// Parses one client frame with simd-json whatever its size (benchmarks, tests).
    pub fn parse_simd<'a>(&mut self, input: &'a [u8]) -> Result<ClientFrame<'a>, FrameError> {
        self.scratch.clear();
        self.scratch.extend_from_slice(input);
        let base = self.scratch.as_ptr() as usize;
        let mut tape = std::mem::replace(&mut self.tape, Tape::null()).reset();
        let result = match simd_json::fill_tape(&mut self.scratch, &mut self.buffers, &mut tape) {
            Ok(()) => extract(input, base, &tape.0),
            Err(_) => Err(FrameError::Malformed),
        };
        self.tape = tape.reset();
        if self.scratch.capacity() > SCRATCH_KEEP_BYTES {
            self.scratch = Vec::with_capacity(1024);
            self.buffers = Buffers::new(1024);
        }
        result
    }
}

/// Nodes a value occupies on the tape, itself included.
fn node_count(n: &Node<'_>) -> usize {
    match n {
        Node::Object { count, .. } | Node::Array { count, .. } => count + 1,
        _ => 1,
    }
}

fn node_u64(n: &Node<'_>) -> Result<Option<u64>, FrameError> {
    match n {
        Node::Static(StaticNode::U64(v)) => Ok(Some(*v)),
        Node::Static(StaticNode::I64(v)) if *v >= 0 => Ok(Some(*v as u64)),
        Node::Static(StaticNode::Null) => Ok(None),
        _ => Err(FrameError::Malformed),
    }
}

/// A tape string as a `Cow` borrowing from `input` when the original had no escapes.
fn node_str<'a>(
    input: &'a [u8],
    base: usize,
    n: &Node<'_>,
) -> Result<Option<Cow<'a, str>>, FrameError> {
    let s = match n {
        Node::String(s) => *s,
        Node::Static(StaticNode::Null) => return Ok(None),
        _ => return Err(FrameError::Malformed),
    };
    let off = (s.as_ptr() as usize).wrapping_sub(base);
    // Without a backslash in the original bytes and with the closing quote right after,
    // the original content is exactly the decoded string: borrow it.
    if let Some(raw) = input.get(off..off + s.len()) {
        if input.get(off + s.len()) == Some(&b'"') && !raw.contains(&b'\\') {
            if let Ok(raw) = std::str::from_utf8(raw) {
                return Ok(Some(Cow::Borrowed(raw)));
            }
        }
    }
    Ok(Some(Cow::Owned(s.to_owned())))
}

const SEEN_TYPE: u8 = 1;
const SEEN_TO: u8 = 2;
const SEEN_CID: u8 = 4;
const SEEN_PAYLOAD: u8 = 8;
const SEEN_UP_TO: u8 = 16;
const SEEN_IDS: u8 = 32;
const SEEN_NONCE: u8 = 64;

fn extract<'a>(
    input: &'a [u8],
    base: usize,
    tape: &[Node<'_>],
) -> Result<ClientFrame<'a>, FrameError> {
    let Some(&Node::Object { len, .. }) = tape.first() else {
        return Err(FrameError::Malformed);
    };
    let mut f = Fields::default();
    let mut seen = 0u8;
    let mut i = 1;
    for member in 0..len {
        let Some(Node::String(key)) = tape.get(i) else {
            return Err(FrameError::Malformed);
        };
        let key_off = (key.as_ptr() as usize).wrapping_sub(base);
        let val = tape.get(i + 1).ok_or(FrameError::Malformed)?;
        let bit = match *key {
            "type" => SEEN_TYPE,
            "to" => SEEN_TO,
            "clientMsgId" => SEEN_CID,
            "payload" => SEEN_PAYLOAD,
            "upTo" => SEEN_UP_TO,
            "msgIds" => SEEN_IDS,
            "nonce" => SEEN_NONCE,
            _ => 0,
        };
        if seen & bit != 0 {
            return Err(FrameError::Malformed); // a known key twice, as serde refuses too
        }
        seen |= bit;
        match bit {
            SEEN_TYPE => f.ty = node_str(input, base, val)?,
            SEEN_TO => f.to = node_str(input, base, val)?,
            SEEN_CID => f.client_msg_id = node_str(input, base, val)?,
            SEEN_PAYLOAD if !matches!(val, Node::Static(StaticNode::Null)) => {
                // The next member's key (if any) bounds the value from above, so the payload
                // itself is never scanned: only the whitespace and separators around it.
                let next_key_off = match tape.get(i + 1 + node_count(val)) {
                    Some(Node::String(k)) if member + 1 < len => {
                        Some((k.as_ptr() as usize).wrapping_sub(base))
                    }
                    _ => None,
                };
                f.payload = Some(raw_value_after_key(input, key_off, next_key_off)?);
            }
            SEEN_UP_TO => f.up_to = node_u64(val)?,
            SEEN_NONCE => f.nonce = node_u64(val)?,
            SEEN_IDS => match *val {
                Node::Array { len, .. } if len > MAX_ACK_IDS => f.ids_overflow = true,
                Node::Array { len, count } => {
                    if len != count {
                        return Err(FrameError::Malformed); // nested values are not ids
                    }
                    let mut ids = Vec::with_capacity(len);
                    for n in tape.get(i + 2..i + 2 + len).ok_or(FrameError::Malformed)? {
                        ids.push(node_u64(n)?.ok_or(FrameError::Malformed)?);
                    }
                    f.msg_ids = Some(ids);
                }
                Node::Static(StaticNode::Null) => {}
                _ => return Err(FrameError::Malformed),
            },
            _ => {}
        }
        i += 1 + node_count(val);
    }
    f.finish()
}

/// The raw bytes of the value following the key whose content starts at `key_off`, in a
/// document simd-json has validated. The value ends before the `,` that precedes the next
/// key (whose content starts at `next_key_off`), or, for the last member, before the
/// object's closing `}`: found by walking back over whitespace, never through the value.
fn raw_value_after_key(
    input: &[u8],
    key_off: usize,
    next_key_off: Option<usize>,
) -> Result<&[u8], FrameError> {
    let quote = key_off.checked_sub(1).ok_or(FrameError::Malformed)?;
    let after_key = skip_string(input, quote).ok_or(FrameError::Malformed)?;
    let colon = skip_ws(input, after_key);
    if input.get(colon) != Some(&b':') {
        return Err(FrameError::Malformed);
    }
    let start = skip_ws(input, colon + 1);
    let (limit, closer) = match next_key_off {
        Some(k) => (k.checked_sub(1).ok_or(FrameError::Malformed)?, b','),
        None => (input.len(), b'}'),
    };
    let closer_at = skip_ws_back(input, limit).ok_or(FrameError::Malformed)?;
    if input.get(closer_at) != Some(&closer) {
        return Err(FrameError::Malformed);
    }
    let end = skip_ws_back(input, closer_at).map_or(0, |i| i + 1);
    input
        .get(start..end)
        .filter(|v| !v.is_empty())
        .ok_or(FrameError::Malformed)
}

/// Index of the last non-whitespace byte before `end`, if any.
fn skip_ws_back(input: &[u8], end: usize) -> Option<usize> {
    input
        .get(..end)?
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

/// A string that borrows from the input when it has no escapes.
struct CowStr<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for CowStr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = CowStr<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V(std::marker::PhantomData))
    }
}

/// `msgIds`, keeping at most [`MAX_ACK_IDS`] and noting whether there were more.
struct AckIds {
    ids: Vec<u64>,
    overflow: bool,
}

impl<'de> Deserialize<'de> for AckIds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = AckIds;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of message ids")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<AckIds, A::Error> {
                let mut ids = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MAX_ACK_IDS));
                while ids.len() < MAX_ACK_IDS {
                    match seq.next_element::<u64>()? {
                        Some(id) => ids.push(id),
                        None => {
                            return Ok(AckIds {
                                ids,
                                overflow: false,
                            })
                        }
                    }
                }
                let mut overflow = false;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    overflow = true;
                }
                Ok(AckIds { ids, overflow })
            }
        }
        d.deserialize_seq(V)
    }
}

#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(rename = "type", borrow)]
    ty: Option<CowStr<'a>>,
    #[serde(borrow)]
    to: Option<CowStr<'a>>,
    #[serde(rename = "clientMsgId", borrow)]
    client_msg_id: Option<CowStr<'a>>,
    #[serde(borrow)]
    payload: Option<&'a RawValue>,
    #[serde(rename = "upTo")]
    up_to: Option<u64>,
    #[serde(rename = "msgIds")]
    msg_ids: Option<AckIds>,
    nonce: Option<u64>,
}

/// The serde_json reference parser (borrowed `&RawValue` payload). Same results as
/// [`ClientFrameParser::parse`] on every input that both accept; see the module docs.
pub fn parse_with_serde(input: &[u8]) -> Result<ClientFrame<'_>, FrameError> {
    let w: Wire<'_> = serde_json::from_slice(input).map_err(|_| FrameError::Malformed)?;
    let (msg_ids, ids_overflow) = match w.msg_ids {
        Some(a) => (Some(a.ids), a.overflow),
        None => (None, false),
    };
    Fields {
        ty: w.ty.map(|c| c.0),
        to: w.to.map(|c| c.0),
        client_msg_id: w.client_msg_id.map(|c| c.0),
        payload: w.payload.map(|p| p.get().as_bytes()),
        up_to: w.up_to,
        msg_ids,
        ids_overflow,
        nonce: w.nonce,
    }
    .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both(input: &[u8]) -> Result<ClientFrame<'_>, FrameError> {
        let a = ClientFrameParser::new().parse_simd(input);
        let b = parse_with_serde(input);
        assert_eq!(
            a.is_ok(),
            b.is_ok(),
            "{:?} vs {:?} on {}",
            a,
            b,
            String::from_utf8_lossy(input)
        );
        if let (Ok(a), Ok(b)) = (&a, &b) {
            assert_eq!(a, b);
        }
        a
    }

    #[test]
    fn message_payload_is_sliced_verbatim() {
        let input = br#"{"type":"message","to":"bob","clientMsgId":"c-1","payload":{"t" : "hi\"}", "n":[1, 2.5e3]}}"#;
        let f = both(input).unwrap();
        let ClientFrame::Message {
            to,
            client_msg_id,
            payload,
        } = f
        else {
            panic!()
        };
        assert_eq!(to, "bob");
        assert!(matches!(to, Cow::Borrowed(_)));
        assert_eq!(client_msg_id, "c-1");
        assert_eq!(payload, br#"{"t" : "hi\"}", "n":[1, 2.5e3]}"#);
        let p = payload.as_ptr() as usize - input.as_ptr() as usize;
        assert!(p < input.len(), "payload borrows the input");
    }

    #[test]
    fn payload_of_every_json_kind_and_field_order() {
        for (payload, doc) in [
            ("\"s\"", r#"{ "payload" : "s" , "type":"message","clientMsgId":"1","to":"a"}"#),
            ("12", r#"{"payload":12,"type":"message","clientMsgId":"1","to":"a"}"#),
            ("-0.5e-3", "{\"to\":\"a\",\"clientMsgId\":\"1\",\"type\":\"message\",\n\"payload\"\t:-0.5e-3\n}"),
            ("true", r#"{"type":"message","to":"a","clientMsgId":"1","payload":true}"#),
            ("[]", r#"{"type":"message","to":"a","clientMsgId":"1","payload":[],"extra":{"x":[1]}}"#),
            ("\"\\\\\"", r#"{"type":"message","to":"a","clientMsgId":"1","pay\u006coad":"\\"}"#),
        ] {
            match both(doc.as_bytes()).unwrap() {
                ClientFrame::Message { payload: p, .. } => assert_eq!(p, payload.as_bytes(), "{doc}"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn escaped_strings_are_decoded() {
        let f = both(br#"{"type":"message","to":"b\u006fb","clientMsgId":"x\"y\\","payload":1}"#)
            .unwrap();
        let ClientFrame::Message {
            to, client_msg_id, ..
        } = f
        else {
            panic!()
        };
        assert_eq!(to, "bob");
        assert_eq!(client_msg_id, "x\"y\\");
    }

    #[test]
    fn ack_and_ping() {
        assert_eq!(
            both(br#"{"type":"ack","upTo":42,"msgIds":[7,8]}"#).unwrap(),
            ClientFrame::Ack {
                up_to: Some(42),
                msg_ids: vec![7, 8]
            }
        );
        assert_eq!(
            both(br#"{"type":"ack","upTo":5}"#).unwrap(),
            ClientFrame::Ack {
                up_to: Some(5),
                msg_ids: vec![]
            }
        );
        assert_eq!(
            both(br#"{"type":"ping","nonce":18446744073709551615}"#).unwrap(),
            ClientFrame::Ping {
                nonce: Some(u64::MAX)
            }
        );
        assert_eq!(
            both(br#"{"type":"ping"}"#).unwrap(),
            ClientFrame::Ping { nonce: None }
        );
        assert_eq!(
            both(br#"{"type":"ping","nonce":null}"#).unwrap(),
            ClientFrame::Ping { nonce: None }
        );
    }

    #[test]
    fn errors() {
        fn p(s: &str) -> Result<ClientFrame<'_>, FrameError> {
            both(s.as_bytes())
        }
        assert_eq!(
            p(r#"{"type":"join","room":"r"}"#),
            Err(FrameError::UnknownType)
        );
        assert_eq!(p(r#"{"to":"a"}"#), Err(FrameError::MissingType));
        assert_eq!(
            p(r#"{"type":"message","to":"a","clientMsgId":"1"}"#),
            Err(FrameError::MissingField("payload"))
        );
        assert_eq!(
            p(r#"{"type":"message","to":"a","clientMsgId":"1","payload":null}"#),
            Err(FrameError::MissingField("payload"))
        );
        assert_eq!(
            p(r#"{"type":"message","to":"a b","clientMsgId":"1","payload":1}"#)
                .unwrap_err()
                .code(),
            super::super::ErrorCode::BadUser
        );
        assert_eq!(
            p(r#"{"type":"message","to":"a","clientMsgId":"","payload":1}"#),
            Err(FrameError::BadLength("clientMsgId"))
        );
        assert_eq!(
            p(r#"{"type":"ack"}"#),
            Err(FrameError::MissingField("upTo"))
        );
        assert_eq!(p(r#"{"type":"ack","upTo":-1}"#), Err(FrameError::Malformed));
        assert_eq!(
            p(r#"{"type":"ack","upTo":1.5}"#),
            Err(FrameError::Malformed)
        );
        assert_eq!(
            p(r#"{"type":"ping","nonce":"1"}"#),
            Err(FrameError::Malformed)
        );
        assert_eq!(
            p(r#"{"type":"ping","type":"ping"}"#),
            Err(FrameError::Malformed)
        );
        assert_eq!(
            p(r#"{"type":"ack","msgIds":[[1]]}"#),
            Err(FrameError::Malformed)
        );
        assert_eq!(p(r#"{"type":5}"#), Err(FrameError::Malformed));
        for bad in [
            "",
            "[]",
            "null",
            "{",
            r#"{"type":"ping"} x"#,
            "{\"type\":\"ping\",}",
        ] {
            assert_eq!(p(bad), Err(FrameError::Malformed), "{bad}");
        }
        let ids: Vec<String> = (0..=MAX_ACK_IDS).map(|i| i.to_string()).collect();
        let many = format!(r#"{{"type":"ack","msgIds":[{}]}}"#, ids.join(","));
        assert_eq!(p(&many), Err(FrameError::TooManyAckIds));
        let exact = format!(
            r#"{{"type":"ack","msgIds":[{}]}}"#,
            ids[..MAX_ACK_IDS].join(",")
        );
        assert!(p(&exact).is_ok());
    }

    #[test]
    fn input_is_not_mutated() {
        let input =
            br#"{"type":"message","to":"a","clientMsgId":"\u0041","payload":"\n\u00e9"}"#.to_vec();
        let copy = input.clone();
        let f = ClientFrame::parse(&input).unwrap();
        assert_eq!(input, copy);
        assert_eq!(f.type_str(), "message");
    }
}
