//! Property tests: every parser of peer input never panics on arbitrary bytes, and every
//! encoder/parser pair round-trips.

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use rtc_protocol::frames::{
    parse_with_serde, ClientFrame, ClientFrameParser, ErrorCode, OwnedClientFrame,
    OwnedServerFrame, RawPayload, ServerFrame,
};
use rtc_protocol::relay::{DestKind, Envelope, EnvelopeKind};
use rtc_protocol::token::{self, ConnectClaims, ResumeClaims, TokenKeys};
use serde_json::Value;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e9f64..1e9).prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..5).prop_map(Value::Array),
            btree_map(".{0,6}", inner, 0..5).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// JSON text for `v`, compact or pretty (different whitespace than the parser expects).
fn text(v: &Value, pretty: bool) -> String {
    if pretty {
        serde_json::to_string_pretty(v).unwrap()
    } else {
        serde_json::to_string(v).unwrap()
    }
}

fn user_id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.:@-]{1,128}"
}

/// A syntactically valid `message` frame: fields in any order, optional whitespace,
/// unknown extra fields, and its expected parse.
fn message_frame() -> impl Strategy<Value = (String, String, String, String)> {
    (
        user_id(),
        ".{1,16}",
        json_value(),
        any::<bool>(),
        proptest::option::of(json_value()),
    )
        .prop_filter("payload null means missing", |(_, _, p, _, _)| !p.is_null())
        .prop_flat_map(|(to, cid, payload, pretty, extra)| {
            let payload_text = text(&payload, pretty);
            let mut fields = vec![
                ("type".to_string(), "\"message\"".to_string()),
                ("to".to_string(), serde_json::to_string(&to).unwrap()),
                (
                    "clientMsgId".to_string(),
                    serde_json::to_string(&cid).unwrap(),
                ),
                ("payload".to_string(), payload_text.clone()),
            ];
            if let Some(e) = extra {
                fields.push(("future".to_string(), text(&e, false)));
            }
            (
                Just(fields).prop_shuffle(),
                Just(to),
                Just(cid),
                Just(payload_text),
                any::<bool>(),
            )
        })
        .prop_map(|(fields, to, cid, payload, spaced)| {
            let sep = if spaced { " ,\n " } else { "," };
            let colon = if spaced { " : " } else { ":" };
            let body: Vec<String> = fields
                .iter()
                .map(|(k, v)| format!("\"{k}\"{colon}{v}"))
                .collect();
            (format!("{{{}}}", body.join(sep)), to, cid, payload)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn client_parsers_never_panic_on_bytes(bytes in vec(any::<u8>(), 0..600)) {
        let a = ClientFrameParser::new().parse_simd(&bytes);
        let b = parse_with_serde(&bytes);
        if let (Ok(a), Ok(b)) = (&a, &b) {
            prop_assert_eq!(a, b);
        }
        let _ = ClientFrame::parse(&bytes);
    }

    #[test]
    fn valid_messages_parse_identically((doc, to, cid, payload) in message_frame()) {
        let input = doc.as_bytes();
        for parsed in [ClientFrameParser::new().parse_simd(input), parse_with_serde(input)] {
            match parsed {
                Ok(ClientFrame::Message { to: t, client_msg_id: c, payload: p }) => {
                    prop_assert_eq!(&*t, to.as_str());
                    prop_assert_eq!(&*c, cid.as_str());
                    prop_assert_eq!(p, payload.as_bytes());
                }
                other => prop_assert!(false, "{:?} on {}", other, doc),
            }
        }
    }

    #[test]
    fn mutated_messages_never_panic_and_agree_when_accepted(
        (doc, ..) in message_frame(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..4),
    ) {
        let mut bytes = doc.into_bytes();
        for (at, byte, op) in edits {
            if bytes.is_empty() { break; }
            let i = at.index(bytes.len());
            match op {
                0 => bytes[i] = byte,
                1 => { bytes.remove(i); }
                _ => bytes.insert(i, byte),
            }
        }
        let a = ClientFrameParser::new().parse_simd(&bytes);
        let b = parse_with_serde(&bytes);
        if let (Ok(a), Ok(b)) = (&a, &b) {
            prop_assert_eq!(a, b);
        }
    }

    #[test]
    fn owned_client_frames_round_trip(to in user_id(), cid in ".{1,16}", payload in json_value(),
                                      up_to in proptest::option::of(any::<u64>()),
                                      ids in vec(any::<u64>(), 0..20), nonce in proptest::option::of(any::<u64>())) {
        let mut frames = vec![OwnedClientFrame::Ping { nonce }];
        if up_to.is_some() || !ids.is_empty() {
            frames.push(OwnedClientFrame::Ack { up_to, msg_ids: ids });
        }
        if !payload.is_null() {
            frames.push(OwnedClientFrame::Message { to, client_msg_id: cid, payload: RawPayload::from_json(&text(&payload, false)).unwrap() });
        }
        for f in frames {
            let bytes = f.to_vec();
            prop_assert_eq!(ClientFrame::parse(&bytes).unwrap().to_owned_frame(), f.clone());
            prop_assert_eq!(parse_with_serde(&bytes).unwrap().to_owned_frame(), f);
        }
    }

    #[test]
    fn owned_server_parser_never_panics(bytes in vec(any::<u8>(), 0..600)) {
        let _ = OwnedServerFrame::parse(&bytes);
    }

    #[test]
    fn server_frames_round_trip(s1 in ".{0,20}", s2 in ".{0,20}", a in any::<u64>(), b in any::<u64>(), payload in json_value()) {
        let payload_text = text(&payload, false);
        let frames = [
            ServerFrame::Welcome { user: &s1, node_id: &s2, shard: a as u32, resume_token: &s2, ping_interval_ms: a, offset: b, ring_version: a },
            ServerFrame::Deliver { msg_id: a, offset: b, from: &s1, payload: payload_text.as_bytes(), ts: a },
            ServerFrame::Sent { client_msg_id: &s1, msg_id: a, offset: b, to: &s2 },
            ServerFrame::Gap { from: a, to: b },
            ServerFrame::Pong { nonce: Some(a), ts: b },
            ServerFrame::Drain { deadline_ms: a, reason: &s1, resume_token: &s2 },
            ServerFrame::Redirect { ws_url: &s1 },
            ServerFrame::Error { code: ErrorCode::BadUser, message: &s1, client_msg_id: Some(&s2) },
        ];
        for f in frames {
            let parsed = OwnedServerFrame::parse(&f.to_vec());
            prop_assert!(parsed.is_ok(), "{:?}", parsed);
            let ok = match (f, parsed.unwrap()) {
                (ServerFrame::Welcome { user, .. }, OwnedServerFrame::Welcome { user: u, .. }) => user == u,
                (ServerFrame::Deliver { payload, from, .. }, OwnedServerFrame::Message { payload: p, from: fr, .. }) => payload == p.as_str().as_bytes() && from == fr,
                (ServerFrame::Sent { client_msg_id, to, .. }, OwnedServerFrame::Sent { client_msg_id: c, to: t, .. }) => client_msg_id == c && to == t,
                (ServerFrame::Gap { from, to }, OwnedServerFrame::Gap { from: f2, to: t2 }) => from == f2 && to == t2,
                (ServerFrame::Pong { nonce, ts }, OwnedServerFrame::Pong { nonce: n, ts: t }) => nonce == n && ts == t,
                (ServerFrame::Drain { reason, resume_token, .. }, OwnedServerFrame::Drain { reason: r, resume_token: t, .. }) => reason == r && resume_token == t,
                (ServerFrame::Redirect { ws_url }, OwnedServerFrame::Redirect { ws_url: w }) => ws_url == w,
                (ServerFrame::Error { message, client_msg_id, .. }, OwnedServerFrame::Error { message: m, client_msg_id: c, .. }) => message == m && client_msg_id == c.as_deref(),
                _ => false,
            };
            prop_assert!(ok);
        }
    }

    #[test]
    fn token_verifiers_never_panic(s in ".{0,700}", bytes in vec(any::<u8>(), 0..700)) {
        let keys = TokenKeys::new(b"property-test-secret", None);
        prop_assert!(token::verify_connect(&keys, &s, 0).is_err());
        prop_assert!(token::verify_resume(&keys, &s, 0).is_err());
        let lossy = String::from_utf8_lossy(&bytes);
        prop_assert!(token::verify_connect(&keys, &lossy, 0).is_err());
    }

    #[test]
    fn tokens_round_trip_and_any_single_edit_is_refused(
        user in user_id(), node in "[a-z0-9-]{1,40}", rv in any::<u64>(), exp in 1u64..u64::MAX,
        offset in proptest::option::of(any::<u64>()), at in any::<prop::sample::Index>(), c in "[A-Za-z0-9_.-]",
    ) {
        let keys = TokenKeys::new(b"property-test-secret", Some(b"older-secret"));
        let cc = ConnectClaims { user: user.clone(), node: node.clone(), ring_version: rv, expires_at: exp };
        let t = token::sign_connect(&keys, &cc);
        prop_assert_eq!(token::verify_connect(&keys, &t, exp - 1), Ok(cc.clone()));
        let rc = ResumeClaims { user, node, offset, expires_at: exp };
        let r = token::sign_resume(&keys, &rc);
        prop_assert_eq!(token::verify_resume(&keys, &r, 0), Ok(rc));
        let i = at.index(t.len());
        let mut edited = t.clone();
        edited.replace_range(i..=i, &c);
        if edited != t {
            prop_assert!(token::verify_connect(&keys, &edited, 0).is_err(), "{} accepted", edited);
        }
    }

    #[test]
    fn relay_decoder_never_panics(bytes in vec(any::<u8>(), 0..300)) {
        let _ = Envelope::decode(&bytes);
        let _ = Envelope::decode_json(&bytes);
        // Any accepted input re-encodes to itself (the format has one encoding).
        if let Ok(e) = Envelope::decode(&bytes) {
            let mut out = Vec::new();
            e.encode(&mut out);
            prop_assert_eq!(out, bytes);
        }
    }

    #[test]
    fn relay_round_trips(dest in "[a-z]{1,60}", from in user_id(), cid in "[ -~]{0,64}", msg_id in any::<u64>(),
                         offset in any::<u64>(), ts in any::<u64>(), payload in vec(any::<u8>(), 0..300),
                         k in 0..2usize, d in 0..3usize, cut in any::<prop::sample::Index>()) {
        let e = Envelope {
            kind: [EnvelopeKind::Message, EnvelopeKind::Receipt][k],
            dest_kind: [DestKind::User, DestKind::Room, DestKind::Node][d],
            dest: &dest, from: &from, client_msg_id: &cid, msg_id, offset, ts, payload: &payload,
        };
        let mut out = Vec::new();
        e.encode(&mut out);
        prop_assert_eq!(Envelope::decode(&out), Ok(e));
        let c = cut.index(out.len());
        prop_assert!(Envelope::decode(&out[..c]).is_err());
    }
}
