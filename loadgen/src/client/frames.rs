//! The gateway protocol's JSON frames as loadgen uses them, through `rtc_protocol::frames`
//! (one client implementation of the protocol, shared with the tests), and the loadgen
//! payload that rides inside a message: `{"seq":N,"t":MICROS,"p":"xxx…"}`.

use rtc_protocol::frames::{OwnedClientFrame, OwnedServerFrame, RawPayload};
use serde::Deserialize;

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

/// Builds a payload of exactly `size` bytes, or of the stamp alone (`{"seq":N,"t":T}`, about
/// 20–35 bytes) when `size` leaves no room for padding.
pub fn payload(stamp: Stamp, size: usize) -> String {
    let mut s = format!("{{\"seq\":{},\"t\":{}", stamp.seq, stamp.t);
    // `,"p":"` + padding + `"}` must fit.
    const PAD_OVERHEAD: usize = 8;
    let size = size.min(MAX_PAYLOAD);
    if size >= s.len() + PAD_OVERHEAD {
        s.push_str(",\"p\":\"");
        s.extend(std::iter::repeat_n('x', size - s.len() - 2));
        s.push('"');
    }
    s.push('}');
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
        let tiny = payload(st, 1);
        assert_eq!(tiny, r#"{"seq":12,"t":345}"#);
        assert_eq!(read_stamp(tiny.as_bytes()), Some(st));
        for size in 18..40 {
            let p = payload(st, size);
            assert!(p.len() == size || p == tiny, "size {size}: {p}");
            assert_eq!(read_stamp(p.as_bytes()), Some(st));
        }
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
