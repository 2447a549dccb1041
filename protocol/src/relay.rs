//! The node-to-node delivery envelope (what travels on the relay, e.g. a Kafka record value).
//!
//! # Format (version 1, all integers little-endian)
//!
//! | bytes | field |
//! |---|---|
//! | 1 | version (1) |
//! | 1 | kind: 1 message, 2 receipt |
//! | 1 | destination kind: 1 user, 2 room, 3 node |
//! | 8 | `msg_id` |
//! | 8 | `offset` (0 = not assigned yet) |
//! | 8 | `ts`, unix ms |
//! | 2 + n | destination id (n ≤ [`MAX_DEST_LEN`]) |
//! | 2 + n | sender user id (n ≤ 128) |
//! | 2 + n | client message id (n ≤ 64, may be empty) |
//! | 4 + n | payload (raw JSON, n ≤ [`MAX_RELAY_PAYLOAD`]), must end the envelope |
//!
//! Binary, not JSON: the `relay_binary_vs_json` benchmark measures both (see
//! `benches/RESULTS.md`); binary needs no escaping, no number formatting and no parse of the
//! payload, which relays carry opaque. The destination kind is there from version 1 so
//! rooms and node-addressed control messages need no format change. A decoder refuses a
//! version it does not know ([`RelayError::UnsupportedVersion`]) rather than guessing.
//! Every length is checked against the bytes that remain before it is used; nothing is
//! allocated: the decoded [`Envelope`] borrows from the input.

use crate::frames::MAX_CLIENT_MSG_ID_LEN;
use crate::user::MAX_USER_ID_LEN;
use thiserror::Error;

/// The envelope format version this crate writes.
pub const RELAY_VERSION: u8 = 1;
/// Longest destination id (user id, room name or node id), in bytes.
pub const MAX_DEST_LEN: usize = 255;
/// Largest payload an envelope may carry, in bytes.
pub const MAX_RELAY_PAYLOAD: usize = 16 << 20;
/// Fixed-size part of an envelope: version, kinds, three u64s.
const FIXED_LEN: usize = 3 + 3 * 8;

/// What the destination id names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DestKind {
    /// One user (direct message): delivered to the user's home shard on the owner node.
    User,
    /// A room: fanned out to the members connected on the receiving node.
    Room,
    /// A node itself (node-addressed control traffic).
    Node,
}

impl DestKind {
    fn to_byte(self) -> u8 {
        match self {
            DestKind::User => 1,
            DestKind::Room => 2,
            DestKind::Node => 3,
        }
    }
    fn from_byte(b: u8) -> Result<Self, RelayError> {
        match b {
            1 => Ok(DestKind::User),
            2 => Ok(DestKind::Room),
            3 => Ok(DestKind::Node),
            other => Err(RelayError::UnknownDestKind(other)),
        }
    }
}

/// What the envelope carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EnvelopeKind {
    /// A message to deliver to the destination.
    Message,
    /// A commit receipt back to the sender's node: the message `client_msg_id` from `from`
    /// got `msg_id`/`offset` in the recipient's log; the sender's node answers `sent`.
    /// Here `dest` is the original sender and `from` the recipient.
    Receipt,
}

impl EnvelopeKind {
    fn to_byte(self) -> u8 {
        match self {
            EnvelopeKind::Message => 1,
            EnvelopeKind::Receipt => 2,
        }
    }
    fn from_byte(b: u8) -> Result<Self, RelayError> {
        match b {
            1 => Ok(EnvelopeKind::Message),
            2 => Ok(EnvelopeKind::Receipt),
            other => Err(RelayError::UnknownKind(other)),
        }
    }
}

/// Why an envelope could not be decoded (or encoded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RelayError {
    /// The input ends before the envelope does.
    #[error("relay envelope truncated")]
    Truncated,
    /// A version this node does not understand (a newer node sent it).
    #[error("unsupported relay envelope version {0}")]
    UnsupportedVersion(u8),
    /// Unknown envelope kind byte.
    #[error("unknown relay envelope kind {0}")]
    UnknownKind(u8),
    /// Unknown destination kind byte.
    #[error("unknown relay destination kind {0}")]
    UnknownDestKind(u8),
    /// A field is longer than its limit (or, for ids, empty where it must not be).
    #[error("relay envelope field \"{0}\" has a bad length")]
    BadLength(&'static str),
    /// A string field is not UTF-8.
    #[error("relay envelope field \"{0}\" is not UTF-8")]
    NotUtf8(&'static str),
    /// Bytes follow the payload.
    #[error("trailing bytes after relay envelope")]
    TrailingBytes,
    /// The JSON form could not be parsed (see [`Envelope::decode_json`]).
    #[error("bad JSON relay envelope")]
    Json,
}

/// One relayed message or receipt, borrowing its strings and payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// Message or receipt.
    pub kind: EnvelopeKind,
    /// What `dest` names.
    pub dest_kind: DestKind,
    /// Destination id (user id, room name or node id).
    pub dest: &'a str,
    /// Sender user id.
    pub from: &'a str,
    /// The sender's client message id ("" when none).
    pub client_msg_id: &'a str,
    /// Server-assigned message id.
    pub msg_id: u64,
    /// The recipient's offset, or 0 when not assigned yet.
    pub offset: u64,
    /// Commit/send time, unix ms.
    pub ts: u64,
    /// The payload's raw JSON.
    pub payload: &'a [u8],
}

impl<'a> Envelope<'a> {
    /// Bytes [`Envelope::encode`] appends.
    pub fn encoded_len(&self) -> usize {
        FIXED_LEN
            + 6
            + self.dest.len()
            + self.from.len()
            + self.client_msg_id.len()
            + 4
            + self.payload.len()
    }

    /// Checks every field against its limit: an envelope that passes decodes on any
    /// version-1 node. The gateway's inputs already respect these limits (user ids and
    /// client message ids are validated when parsed, payloads are bounded by the frame size).
    pub fn validate(&self) -> Result<(), RelayError> {
        if self.dest.is_empty() || self.dest.len() > MAX_DEST_LEN {
            return Err(RelayError::BadLength("dest"));
        }
        if self.from.len() > MAX_USER_ID_LEN {
            return Err(RelayError::BadLength("from"));
        }
        if self.client_msg_id.len() > MAX_CLIENT_MSG_ID_LEN {
            return Err(RelayError::BadLength("clientMsgId"));
        }
        if self.payload.len() > MAX_RELAY_PAYLOAD {
            return Err(RelayError::BadLength("payload"));
        }
        Ok(())
    }

    /// Appends the binary form to `out`. Infallible: the framing is always consistent (a
    /// field longer than its length prefix can express is cut to fit), but a receiver
    /// refuses fields over their limits, so call [`Envelope::validate`] first when the
    /// fields did not come from validated input.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        out.push(RELAY_VERSION);
        out.push(self.kind.to_byte());
        out.push(self.dest_kind.to_byte());
        out.extend_from_slice(&self.msg_id.to_le_bytes());
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.ts.to_le_bytes());
        for s in [self.dest, self.from, self.client_msg_id] {
            let n = s.len().min(u16::MAX as usize);
            out.extend_from_slice(&(n as u16).to_le_bytes());
            out.extend_from_slice(&s.as_bytes()[..n]);
        }
        let n = self.payload.len().min(u32::MAX as usize);
        out.extend_from_slice(&(n as u32).to_le_bytes());
        out.extend_from_slice(&self.payload[..n]);
    }

    /// Decodes one envelope occupying all of `input`.
    pub fn decode(input: &'a [u8]) -> Result<Self, RelayError> {
        let version = *input.first().ok_or(RelayError::Truncated)?;
        if version != RELAY_VERSION {
            return Err(RelayError::UnsupportedVersion(version));
        }
        if input.len() < FIXED_LEN {
            return Err(RelayError::Truncated);
        }
        let kind = EnvelopeKind::from_byte(input[1])?;
        let dest_kind = DestKind::from_byte(input[2])?;
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&input[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let (msg_id, offset, ts) = (u64_at(3), u64_at(11), u64_at(19));
        let mut rest = &input[FIXED_LEN..];
        let dest = take_str(&mut rest, "dest", MAX_DEST_LEN)?;
        if dest.is_empty() {
            return Err(RelayError::BadLength("dest"));
        }
        let from = take_str(&mut rest, "from", MAX_USER_ID_LEN)?;
        let client_msg_id = take_str(&mut rest, "clientMsgId", MAX_CLIENT_MSG_ID_LEN)?;
        if rest.len() < 4 {
            return Err(RelayError::Truncated);
        }
        let mut n = [0u8; 4];
        n.copy_from_slice(&rest[..4]);
        let n = u32::from_le_bytes(n) as usize;
        if n > MAX_RELAY_PAYLOAD {
            return Err(RelayError::BadLength("payload"));
        }
        let rest = &rest[4..];
        if rest.len() < n {
            return Err(RelayError::Truncated);
        }
        if rest.len() > n {
            return Err(RelayError::TrailingBytes);
        }
        Ok(Envelope {
            kind,
            dest_kind,
            dest,
            from,
            client_msg_id,
            msg_id,
            offset,
            ts,
            payload: rest,
        })
    }
}

/// The JSON form's fields (strings borrowed, so ids with JSON escapes are refused).
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonEnvelope<'a> {
    v: u8,
    kind: &'a str,
    dest_kind: &'a str,
    dest: &'a str,
    from: &'a str,
    client_msg_id: &'a str,
    msg_id: u64,
    offset: u64,
    ts: u64,
    #[serde(borrow)]
    payload: &'a serde_json::value::RawValue,
}

impl<'a> Envelope<'a> {
    /// Appends the JSON form: for logs and inspection tools, and the `relay_binary_vs_json`
    /// benchmark that justifies the binary wire form. Never sent between nodes.
    pub fn encode_json(&self, out: &mut Vec<u8>) {
        use crate::frames::json::{write_key, write_str, write_u64};
        out.reserve(self.encoded_len() + 128);
        out.extend_from_slice(br#"{"v":1,"kind":""#);
        out.extend_from_slice(match self.kind {
            EnvelopeKind::Message => b"message",
            EnvelopeKind::Receipt => b"receipt",
        });
        out.extend_from_slice(br#"","destKind":""#);
        out.extend_from_slice(match self.dest_kind {
            DestKind::User => b"user" as &[u8],
            DestKind::Room => b"room",
            DestKind::Node => b"node",
        });
        out.extend_from_slice(b"\",");
        for (k, v) in [
            ("dest", self.dest),
            ("from", self.from),
            ("clientMsgId", self.client_msg_id),
        ] {
            write_key(out, k);
            write_str(out, v);
            out.push(b',');
        }
        for (k, v) in [
            ("msgId", self.msg_id),
            ("offset", self.offset),
            ("ts", self.ts),
        ] {
            write_key(out, k);
            write_u64(out, v);
            out.push(b',');
        }
        write_key(out, "payload");
        out.extend_from_slice(self.payload);
        out.push(b'}');
    }

    /// Parses the JSON form written by [`Envelope::encode_json`].
    pub fn decode_json(input: &'a [u8]) -> Result<Self, RelayError> {
        let j: JsonEnvelope<'a> = serde_json::from_slice(input).map_err(|_| RelayError::Json)?;
        if j.v != RELAY_VERSION {
            return Err(RelayError::UnsupportedVersion(j.v));
        }
        let kind = match j.kind {
            "message" => EnvelopeKind::Message,
            "receipt" => EnvelopeKind::Receipt,
            _ => return Err(RelayError::Json),
        };
        let dest_kind = match j.dest_kind {
            "user" => DestKind::User,
            "room" => DestKind::Room,
            "node" => DestKind::Node,
            _ => return Err(RelayError::Json),
        };
        Ok(Envelope {
            kind,
            dest_kind,
            dest: j.dest,
            from: j.from,
            client_msg_id: j.client_msg_id,
            msg_id: j.msg_id,
            offset: j.offset,
            ts: j.ts,
            payload: j.payload.get().as_bytes(),
        })
    }
}

fn take_str<'a>(
    rest: &mut &'a [u8],
    field: &'static str,
    max: usize,
) -> Result<&'a str, RelayError> {
    if rest.len() < 2 {
        return Err(RelayError::Truncated);
    }
    let (n, tail) = rest.split_at(2);
    let n = u16::from_le_bytes([n[0], n[1]]) as usize;
    if n > max {
        return Err(RelayError::BadLength(field));
    }
    if tail.len() < n {
        return Err(RelayError::Truncated);
    }
    let (s, tail) = tail.split_at(n);
    *rest = tail;
    std::str::from_utf8(s).map_err(|_| RelayError::NotUtf8(field))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Envelope<'static> {
        Envelope {
            kind: EnvelopeKind::Message,
            dest_kind: DestKind::User,
            dest: "bob",
            from: "alice",
            client_msg_id: "c-9",
            msg_id: 42,
            offset: 7,
            ts: 1_700_000_000_000,
            payload: br#"{"text":"hi"}"#,
        }
    }

    #[test]
    fn round_trip_every_kind() {
        for kind in [EnvelopeKind::Message, EnvelopeKind::Receipt] {
            for dest_kind in [DestKind::User, DestKind::Room, DestKind::Node] {
                let e = Envelope {
                    kind,
                    dest_kind,
                    ..sample()
                };
                let mut out = Vec::new();
                e.encode(&mut out);
                assert_eq!(out.len(), e.encoded_len());
                assert_eq!(Envelope::decode(&out), Ok(e));
            }
        }
    }

    #[test]
    fn json_form_round_trips() {
        let mut out = Vec::new();
        sample().encode_json(&mut out);
        assert_eq!(Envelope::decode_json(&out), Ok(sample()));
        assert_eq!(Envelope::decode_json(b"{}"), Err(RelayError::Json));
    }

    #[test]
    fn refuses_bad_input() {
        let mut out = Vec::new();
        sample().encode(&mut out);
        for cut in 0..out.len() {
            assert!(Envelope::decode(&out[..cut]).is_err(), "prefix {cut}");
        }
        let mut v2 = out.clone();
        v2[0] = 2;
        assert_eq!(
            Envelope::decode(&v2),
            Err(RelayError::UnsupportedVersion(2))
        );
        let mut trailing = out.clone();
        trailing.push(0);
        assert_eq!(Envelope::decode(&trailing), Err(RelayError::TrailingBytes));
        let mut huge = out.clone();
        let at = out.len() - sample().payload.len() - 4;
        huge[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            Envelope::decode(&huge),
            Err(RelayError::BadLength("payload"))
        );
        let mut bad_kind = out.clone();
        bad_kind[2] = 9;
        assert_eq!(
            Envelope::decode(&bad_kind),
            Err(RelayError::UnknownDestKind(9))
        );
        let e = Envelope {
            dest: "",
            ..sample()
        };
        assert_eq!(e.validate(), Err(RelayError::BadLength("dest")));
        assert_eq!(sample().validate(), Ok(()));
        // Even an over-long field keeps the framing consistent: the receiver refuses it by limit.
        let long = "x".repeat(MAX_DEST_LEN + 1);
        let mut out = Vec::new();
        Envelope {
            dest: &long,
            ..sample()
        }
        .encode(&mut out);
        assert_eq!(Envelope::decode(&out), Err(RelayError::BadLength("dest")));
    }
}
