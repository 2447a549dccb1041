//! Owned serde forms of the frames, for clients and tests (not the gateway's hot path).
//!
//! [`OwnedServerFrame::parse`] reads what the gateway sends; [`OwnedClientFrame::encode`]
//! writes what a client sends. Loadgen and the integration tests share them so there is one
//! client implementation of the protocol.

use super::json::{write_key, write_str, write_u64};
use super::{ClientFrame, ErrorCode};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::fmt;

/// A payload kept as its raw JSON text (compared by text).
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RawPayload(pub Box<RawValue>);

impl RawPayload {
    /// Checks that `json` is one JSON value and keeps its text.
    pub fn from_json(json: &str) -> Result<Self, serde_json::Error> {
        RawValue::from_string(json.to_owned()).map(RawPayload)
    }

    /// The payload's JSON text.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }
}

impl PartialEq for RawPayload {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}
impl Eq for RawPayload {}

impl fmt::Debug for RawPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.get())
    }
}

/// A server frame, parsed into owned values. See [`super::ServerFrame`] for field meanings.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)] // fields mirror `ServerFrame`, documented there
pub enum OwnedServerFrame {
    /// `welcome`.
    Welcome {
        user: String,
        node_id: String,
        shard: u32,
        resume_token: String,
        ping_interval_ms: u64,
        offset: u64,
        ring_version: u64,
    },
    /// `message` (a delivery).
    Message {
        msg_id: u64,
        offset: u64,
        from: String,
        ts: u64,
        payload: RawPayload,
    },
    /// `sent` (commit confirmation).
    Sent {
        client_msg_id: String,
        msg_id: u64,
        offset: u64,
        to: String,
    },
    /// `gap`.
    Gap { from: u64, to: u64 },
    /// `pong`.
    Pong { nonce: Option<u64>, ts: u64 },
    /// `drain`.
    Drain {
        deadline_ms: u64,
        reason: String,
        resume_token: String,
    },
    /// `redirect`.
    Redirect { ws_url: String },
    /// `error`.
    Error {
        code: ErrorCode,
        message: String,
        client_msg_id: Option<String>,
    },
    /// A frame type this client does not know (from a newer server): ignore it.
    Unknown {
        /// Its `type`.
        kind: String,
    },
}

/// Why [`OwnedServerFrame::parse`] failed.
#[derive(Debug, thiserror::Error)]
#[error("bad server frame: {0}")]
pub struct ServerFrameError(#[from] serde_json::Error);

#[derive(Deserialize)]
struct Probe<'a> {
    #[serde(rename = "type", borrow)]
    ty: std::borrow::Cow<'a, str>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WelcomeW {
    user: String,
    node_id: String,
    shard: u32,
    resume_token: String,
    ping_interval_ms: u64,
    offset: u64,
    ring_version: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageW {
    msg_id: u64,
    offset: u64,
    from: String,
    ts: u64,
    payload: RawPayload,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SentW {
    client_msg_id: String,
    msg_id: u64,
    offset: u64,
    to: String,
}

#[derive(Deserialize)]
struct GapW {
    from: u64,
    to: u64,
}

#[derive(Deserialize)]
struct PongW {
    #[serde(default)]
    nonce: Option<u64>,
    ts: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DrainW {
    deadline_ms: u64,
    reason: String,
    resume_token: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RedirectW {
    ws_url: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ErrorW {
    code: ErrorCode,
    message: String,
    #[serde(default)]
    client_msg_id: Option<String>,
}

impl OwnedServerFrame {
    /// Parses one server text frame. Unknown `type` → [`OwnedServerFrame::Unknown`];
    /// unknown fields are ignored.
    pub fn parse(input: &[u8]) -> Result<Self, ServerFrameError> {
        let probe: Probe<'_> = serde_json::from_slice(input)?;
        let f = |i| -> Result<_, ServerFrameError> { Ok(i) };
        match &*probe.ty {
            "welcome" => {
                let w: WelcomeW = serde_json::from_slice(input)?;
                f(OwnedServerFrame::Welcome {
                    user: w.user,
                    node_id: w.node_id,
                    shard: w.shard,
                    resume_token: w.resume_token,
                    ping_interval_ms: w.ping_interval_ms,
                    offset: w.offset,
                    ring_version: w.ring_version,
                })
            }
            "message" => {
                let w: MessageW = serde_json::from_slice(input)?;
                f(OwnedServerFrame::Message {
                    msg_id: w.msg_id,
                    offset: w.offset,
                    from: w.from,
                    ts: w.ts,
                    payload: w.payload,
                })
            }
            "sent" => {
                let w: SentW = serde_json::from_slice(input)?;
                f(OwnedServerFrame::Sent {
                    client_msg_id: w.client_msg_id,
                    msg_id: w.msg_id,
                    offset: w.offset,
                    to: w.to,
                })
            }
            "gap" => {
                let w: GapW = serde_json::from_slice(input)?;
                f(OwnedServerFrame::Gap {
                    from: w.from,
                    to: w.to,
                })
            }
            "pong" => {
                let w: PongW = serde_json::from_slice(input)?;
                f(OwnedServerFrame::Pong {
                    nonce: w.nonce,
                    ts: w.ts,
                })
            }
            "drain" => {
                let w: DrainW = serde_json::from_slice(input)?;
                f(OwnedServerFrame::Drain {
                    deadline_ms: w.deadline_ms,
                    reason: w.reason,
                    resume_token: w.resume_token,
                })
            }
            "redirect" => {
                let w: RedirectW = serde_json::from_slice(input)?;
                f(OwnedServerFrame::Redirect { ws_url: w.ws_url })
            }
            "error" => {
                let w: ErrorW = serde_json::from_slice(input)?;
                f(OwnedServerFrame::Error {
                    code: w.code,
                    message: w.message,
                    client_msg_id: w.client_msg_id,
                })
            }
            other => f(OwnedServerFrame::Unknown {
                kind: other.to_owned(),
            }),
        }
    }
}

/// A client frame with owned fields, for clients and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedClientFrame {
    /// `message`.
    Message {
        /// Recipient user id.
        to: String,
        /// Sender-chosen id echoed in `sent`.
        client_msg_id: String,
        /// The payload (any JSON value).
        payload: RawPayload,
    },
    /// `ack`.
    Ack {
        /// Cumulative: every offset ≤ this was received.
        up_to: Option<u64>,
        /// Individually received message ids (at most `MAX_ACK_IDS`).
        msg_ids: Vec<u64>,
    },
    /// `ping`.
    Ping {
        /// Echoed in the `pong`.
        nonce: Option<u64>,
    },
}

impl OwnedClientFrame {
    /// Appends the frame's JSON text to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            OwnedClientFrame::Message {
                to,
                client_msg_id,
                payload,
            } => {
                out.extend_from_slice(br#"{"type":"message","to":"#);
                write_str(out, to);
                out.push(b',');
                write_key(out, "clientMsgId");
                write_str(out, client_msg_id);
                out.push(b',');
                write_key(out, "payload");
                out.extend_from_slice(payload.as_str().as_bytes());
            }
            OwnedClientFrame::Ack { up_to, msg_ids } => {
                out.extend_from_slice(br#"{"type":"ack""#);
                if let Some(u) = up_to {
                    out.push(b',');
                    write_key(out, "upTo");
                    write_u64(out, *u);
                }
                if !msg_ids.is_empty() {
                    out.push(b',');
                    write_key(out, "msgIds");
                    out.push(b'[');
                    for (i, id) in msg_ids.iter().enumerate() {
                        if i > 0 {
                            out.push(b',');
                        }
                        write_u64(out, *id);
                    }
                    out.push(b']');
                }
            }
            OwnedClientFrame::Ping { nonce } => {
                out.extend_from_slice(br#"{"type":"ping""#);
                if let Some(n) = nonce {
                    out.push(b',');
                    write_key(out, "nonce");
                    write_u64(out, *n);
                }
            }
        }
        out.push(b'}');
    }

    /// The frame encoded into a fresh vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(128);
        self.encode(&mut v);
        v
    }
}

impl ClientFrame<'_> {
    /// An owned copy (the payload's text is kept verbatim).
    pub fn to_owned_frame(&self) -> OwnedClientFrame {
        match self {
            ClientFrame::Message {
                to,
                client_msg_id,
                payload,
            } => OwnedClientFrame::Message {
                to: to.to_string(),
                client_msg_id: client_msg_id.to_string(),
                // The parser already validated the payload as one JSON value.
                payload: RawPayload::from_json(&String::from_utf8_lossy(payload))
                    .unwrap_or_else(|_| RawPayload(RawValue::NULL.to_owned())),
            },
            ClientFrame::Ack { up_to, msg_ids } => OwnedClientFrame::Ack {
                up_to: *up_to,
                msg_ids: msg_ids.clone(),
            },
            ClientFrame::Ping { nonce } => OwnedClientFrame::Ping { nonce: *nonce },
        }
    }
}
