//! Server → client frames and their hand-written encoder (no serde on the hot path).

use super::json::{write_key, write_str, write_u64};
use super::ErrorCode;

/// A frame the server sends. Borrowed fields: the encoder copies them into the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerFrame<'a> {
    /// First frame after the handshake: who you are, where you are, how to resume.
    Welcome {
        /// The connected user id.
        user: &'a str,
        /// This node's id.
        node_id: &'a str,
        /// The shard (core) holding the user on this node.
        shard: u32,
        /// Token to resume this session later (`resume=` on the URL).
        resume_token: &'a str,
        /// How often the client should `ping` when idle, in ms.
        ping_interval_ms: u64,
        /// The last offset assigned to this user (0 when none yet).
        offset: u64,
        /// The ring version this node serves under.
        ring_version: u64,
    },
    /// A delivered message (JSON `"type":"message"`).
    Deliver {
        /// Server-assigned message id (unique per node).
        msg_id: u64,
        /// The recipient's offset for this message (monotonic per user, from 1).
        offset: u64,
        /// Sender user id.
        from: &'a str,
        /// The payload's raw JSON, copied verbatim.
        payload: &'a [u8],
        /// When the message was committed, unix ms.
        ts: u64,
    },
    /// The sender's message is committed in the recipient's resume log.
    Sent {
        /// The sender's id for the message.
        client_msg_id: &'a str,
        /// Server-assigned message id.
        msg_id: u64,
        /// The recipient's offset for it.
        offset: u64,
        /// Recipient user id.
        to: &'a str,
    },
    /// Offsets `from..=to` were dropped from the outbound buffer; resume to fetch them.
    Gap {
        /// First missed offset.
        from: u64,
        /// Last missed offset (inclusive).
        to: u64,
    },
    /// Answer to `ping`.
    Pong {
        /// The ping's nonce.
        nonce: Option<u64>,
        /// Server time, unix ms.
        ts: u64,
    },
    /// The node is draining: reconnect (through control) and resume before the deadline.
    Drain {
        /// Milliseconds from now until the server closes the connection with 4007.
        deadline_ms: u64,
        /// Why (e.g. `"shutdown"`, `"rebalance"`).
        reason: &'a str,
        /// Token to resume with on the new node.
        resume_token: &'a str,
    },
    /// This node does not own the user; connect to `ws_url` (a 4003 close follows).
    Redirect {
        /// Where to connect instead.
        ws_url: &'a str,
    },
    /// A client frame was refused; the connection stays open.
    Error {
        /// Machine-readable reason.
        code: ErrorCode,
        /// Human-readable detail.
        message: &'a str,
        /// The `clientMsgId` of the refused message, when known.
        client_msg_id: Option<&'a str>,
    },
}

impl ServerFrame<'_> {
    /// Appends the frame's JSON text to `out` (does not clear it).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match *self {
            ServerFrame::Welcome {
                user,
                node_id,
                shard,
                resume_token,
                ping_interval_ms,
                offset,
                ring_version,
            } => {
                out.extend_from_slice(br#"{"type":"welcome","user":"#);
                write_str(out, user);
                out.push(b',');
                write_key(out, "nodeId");
                write_str(out, node_id);
                out.push(b',');
                write_key(out, "shard");
                write_u64(out, u64::from(shard));
                out.push(b',');
                write_key(out, "resumeToken");
                write_str(out, resume_token);
                out.push(b',');
                write_key(out, "pingIntervalMs");
                write_u64(out, ping_interval_ms);
                out.push(b',');
                write_key(out, "offset");
                write_u64(out, offset);
                out.push(b',');
                write_key(out, "ringVersion");
                write_u64(out, ring_version);
            }
            ServerFrame::Deliver {
                msg_id,
                offset,
                from,
                payload,
                ts,
            } => {
                out.reserve(payload.len() + from.len() + 96);
                out.extend_from_slice(br#"{"type":"message","msgId":"#);
                write_u64(out, msg_id);
                out.push(b',');
                write_key(out, "offset");
                write_u64(out, offset);
                out.push(b',');
                write_key(out, "from");
                write_str(out, from);
                out.push(b',');
                write_key(out, "ts");
                write_u64(out, ts);
                out.push(b',');
                write_key(out, "payload");
                out.extend_from_slice(payload);
            }
            ServerFrame::Sent {
                client_msg_id,
                msg_id,
                offset,
                to,
            } => {
                out.extend_from_slice(br#"{"type":"sent","clientMsgId":"#);
                write_str(out, client_msg_id);
                out.push(b',');
                write_key(out, "msgId");
                write_u64(out, msg_id);
                out.push(b',');
                write_key(out, "offset");
                write_u64(out, offset);
                out.push(b',');
                write_key(out, "to");
                write_str(out, to);
            }
            ServerFrame::Gap { from, to } => {
                out.extend_from_slice(br#"{"type":"gap","from":"#);
                write_u64(out, from);
                out.push(b',');
                write_key(out, "to");
                write_u64(out, to);
            }
            ServerFrame::Pong { nonce, ts } => {
                out.extend_from_slice(br#"{"type":"pong","#);
                if let Some(n) = nonce {
                    write_key(out, "nonce");
                    write_u64(out, n);
                    out.push(b',');
                }
                write_key(out, "ts");
                write_u64(out, ts);
            }
            ServerFrame::Drain {
                deadline_ms,
                reason,
                resume_token,
            } => {
                out.extend_from_slice(br#"{"type":"drain","deadlineMs":"#);
                write_u64(out, deadline_ms);
                out.push(b',');
                write_key(out, "reason");
                write_str(out, reason);
                out.push(b',');
                write_key(out, "resumeToken");
                write_str(out, resume_token);
            }
            ServerFrame::Redirect { ws_url } => {
                out.extend_from_slice(br#"{"type":"redirect","wsUrl":"#);
                write_str(out, ws_url);
            }
            ServerFrame::Error {
                code,
                message,
                client_msg_id,
            } => {
                out.extend_from_slice(br#"{"type":"error","code":""#);
                out.extend_from_slice(code.as_str().as_bytes());
                out.extend_from_slice(b"\",");
                write_key(out, "message");
                write_str(out, message);
                if let Some(c) = client_msg_id {
                    out.push(b',');
                    write_key(out, "clientMsgId");
                    write_str(out, c);
                }
            }
        }
        out.push(b'}');
    }

    /// The frame encoded into a fresh vector (convenience for tests and cold paths).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(128);
        self.encode(&mut v);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::{OwnedServerFrame, RawPayload};

    fn round_trip(f: ServerFrame<'_>) -> OwnedServerFrame {
        let bytes = f.to_vec();
        // Valid JSON for any generic parser too.
        serde_json::from_slice::<serde_json::Value>(&bytes).unwrap();
        OwnedServerFrame::parse(&bytes).unwrap()
    }

    #[test]
    fn every_frame_round_trips_through_the_owned_parser() {
        let w = ServerFrame::Welcome {
            user: "al\"ice",
            node_id: "n-1",
            shard: 3,
            resume_token: "tok.en",
            ping_interval_ms: 25_000,
            offset: 41,
            ring_version: 9,
        };
        assert_eq!(
            round_trip(w),
            OwnedServerFrame::Welcome {
                user: "al\"ice".into(),
                node_id: "n-1".into(),
                shard: 3,
                resume_token: "tok.en".into(),
                ping_interval_ms: 25_000,
                offset: 41,
                ring_version: 9
            }
        );
        let d = ServerFrame::Deliver {
            msg_id: u64::MAX,
            offset: 1,
            from: "bob\n",
            payload: br#"{"a": [1, "x"]}"#,
            ts: 17,
        };
        assert_eq!(
            round_trip(d),
            OwnedServerFrame::Message {
                msg_id: u64::MAX,
                offset: 1,
                from: "bob\n".into(),
                ts: 17,
                payload: RawPayload::from_json(r#"{"a": [1, "x"]}"#).unwrap()
            }
        );
        assert_eq!(
            round_trip(ServerFrame::Sent {
                client_msg_id: "c\\1",
                msg_id: 5,
                offset: 6,
                to: "bob"
            }),
            OwnedServerFrame::Sent {
                client_msg_id: "c\\1".into(),
                msg_id: 5,
                offset: 6,
                to: "bob".into()
            }
        );
        assert_eq!(
            round_trip(ServerFrame::Gap { from: 3, to: 9 }),
            OwnedServerFrame::Gap { from: 3, to: 9 }
        );
        assert_eq!(
            round_trip(ServerFrame::Pong {
                nonce: Some(0),
                ts: 1
            }),
            OwnedServerFrame::Pong {
                nonce: Some(0),
                ts: 1
            }
        );
        assert_eq!(
            round_trip(ServerFrame::Pong { nonce: None, ts: 1 }),
            OwnedServerFrame::Pong { nonce: None, ts: 1 }
        );
        assert_eq!(
            round_trip(ServerFrame::Drain {
                deadline_ms: 5000,
                reason: "shutdown",
                resume_token: "t"
            }),
            OwnedServerFrame::Drain {
                deadline_ms: 5000,
                reason: "shutdown".into(),
                resume_token: "t".into()
            }
        );
        assert_eq!(
            round_trip(ServerFrame::Redirect {
                ws_url: "ws://10.0.0.2:9001/ws?token=x&y=1"
            }),
            OwnedServerFrame::Redirect {
                ws_url: "ws://10.0.0.2:9001/ws?token=x&y=1".into()
            }
        );
        for code in [
            ErrorCode::BadFrame,
            ErrorCode::UnknownType,
            ErrorCode::TooLarge,
            ErrorCode::Unavailable,
        ] {
            assert_eq!(
                round_trip(ServerFrame::Error {
                    code,
                    message: "m\u{1}",
                    client_msg_id: Some("c")
                }),
                OwnedServerFrame::Error {
                    code,
                    message: "m\u{1}".into(),
                    client_msg_id: Some("c".into())
                }
            );
        }
        assert_eq!(
            round_trip(ServerFrame::Error {
                code: ErrorCode::RateLimited,
                message: "",
                client_msg_id: None
            }),
            OwnedServerFrame::Error {
                code: ErrorCode::RateLimited,
                message: "".into(),
                client_msg_id: None
            }
        );
    }

    #[test]
    fn exact_bytes_of_a_delivery() {
        let d = ServerFrame::Deliver {
            msg_id: 7,
            offset: 3,
            from: "alice",
            payload: br#"{"text":"hi"}"#,
            ts: 1700000000000,
        };
        assert_eq!(
            String::from_utf8(d.to_vec()).unwrap(),
            r#"{"type":"message","msgId":7,"offset":3,"from":"alice","ts":1700000000000,"payload":{"text":"hi"}}"#
        );
    }

    #[test]
    fn unknown_server_frames_and_codes_are_tolerated() {
        assert_eq!(
            OwnedServerFrame::parse(br#"{"type":"presence","user":"x","online":true}"#).unwrap(),
            OwnedServerFrame::Unknown {
                kind: "presence".into()
            }
        );
        assert_eq!(
            OwnedServerFrame::parse(
                br#"{"type":"error","code":"quota_exceeded","message":"m","extra":1}"#
            )
            .unwrap(),
            OwnedServerFrame::Error {
                code: ErrorCode::Other,
                message: "m".into(),
                client_msg_id: None
            }
        );
        assert!(OwnedServerFrame::parse(b"{}").is_err());
        assert!(OwnedServerFrame::parse(br#"{"type":"gap","from":"x","to":1}"#).is_err());
    }
}
