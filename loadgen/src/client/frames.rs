//! The gateway protocol's JSON frames as loadgen uses them, through `rtc_protocol::frames`
//! (one client implementation of the protocol, shared with the tests), and the loadgen
//! payload that rides inside a message: `{"seq":N,"t":MICROS,"p":"xxx…"}`.

use rtc_protocol::frames::{OwnedClientFrame, OwnedServerFrame, RawPayload};
use serde::Deserialize;

/// Smallest `--payload` honoured: the sequence number and timestamp need this much.
pub const MIN_PAYLOAD: usize = 40;
/// Largest `--payload`.
pub const MAX_PAYLOAD: usize = 512 * 1024;

/// What loadgen reads back out of a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Stamp {
    /// Per-sender sequence number.
    pub seq: u64,
    /// Scheduled send time, µs since the worker's epoch.
    pub t: u64,
}

/// Builds a payload of (at least `MIN_PAYLOAD`, otherwise exactly) `size` bytes.
pub fn payload(stamp: Stamp, size: usize) -> String {
    let mut s = format!("{{\"seq\":{},\"t\":{},\"p\":\"", stamp.seq, stamp.t);
    let pad = size
        .clamp(MIN_PAYLOAD, MAX_PAYLOAD)
        .saturating_sub(s.len() + 2);
    s.extend(std::iter::repeat_n('x', pad));
    s.push_str("\"}");
    s
}

/// Reads the stamp out of a payload (echoed text, or a delivered message's payload).
pub fn read_stamp(json: &[u8]) -> Option<Stamp> {
    serde_json::from_slice(json).ok()
}

/// Appends a direct message frame to `out`.
pub fn encode_direct(to: &str, stamp: Stamp, size: usize, out: &mut Vec<u8>) {
    // The payload is built by `payload` and is always valid JSON.
    let Ok(p) = RawPayload::from_json(&payload(stamp, size)) else {
        return;
    };
    OwnedClientFrame::Message {
        to: to.to_owned(),
        client_msg_id: stamp.seq.to_string(),
        payload: p,
    }
    .encode(out);
}

/// Appends a cumulative ack frame to `out`.
pub fn encode_ack(up_to: u64, out: &mut Vec<u8>) {
    OwnedClientFrame::Ack {
        up_to: Some(up_to),
        msg_ids: Vec::new(),
    }
    .encode(out);
}

/// Parses a server frame.
pub fn parse(text: &[u8]) -> Option<OwnedServerFrame> {
    OwnedServerFrame::parse(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_has_the_requested_size_and_round_trips() {
        let st = Stamp { seq: 12, t: 345 };
        for size in [64, 100, 1000] {
            let p = payload(st, size);
            assert_eq!(p.len(), size);
            assert_eq!(read_stamp(p.as_bytes()), Some(st));
        }
        assert!(payload(st, 1).len() >= MIN_PAYLOAD - 2);
    }

    #[test]
    fn direct_frame_is_a_client_message() {
        let mut out = Vec::new();
        encode_direct("u-1", Stamp { seq: 3, t: 9 }, 64, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(v["type"], "message");
        assert_eq!(v["to"], "u-1");
        assert_eq!(v["clientMsgId"], "3");
        assert_eq!(v["payload"]["seq"], 3);
    }
}
