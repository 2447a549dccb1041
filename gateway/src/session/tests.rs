//! Unit and property tests of the session core.

use std::rc::Rc;

use super::*;

fn limits() -> SessionLimits {
    SessionLimits {
        buffer_max: 8,
        resume_ttl_ms: 1_000,
        log_max_bytes: 64 * 1024,
        max_offline_log_bytes: 256 * 1024,
        per_conn_buffer_size: 4,
        per_conn_buffer_bytes: 64 * 1024,
        slow_consumer_max_drops: 6,
        slow_consumer_timeout_ms: 500,
        dedup_max: 4,
        max_users: 100,
    }
}

fn core_with(l: SessionLimits) -> SessionCore {
    SessionCore::new(3, l).expect("valid limits")
}

fn core() -> SessionCore {
    core_with(limits())
}

fn rc(s: &str) -> Rc<str> {
    Rc::from(s)
}

fn send(c: &mut SessionCore, to: &str, id: &str, now: u64) -> Commit {
    let out = c
        .commit(to, rc("alice"), id, b"{\"x\":1}".to_vec().into(), now)
        .expect("commit");
    c.check_invariants();
    out
}

fn drain(c: &mut SessionCore, conn: ConnId) -> Vec<Outbound> {
    let mut out = Vec::new();
    while c.poll_transmit(conn, usize::MAX, &mut out) > 0 {}
    c.check_invariants();
    out
}

fn delivered(out: &[Outbound]) -> Vec<u64> {
    out.iter()
        .filter_map(|o| match o {
            Outbound::Deliver(m) => Some(m.offset),
            Outbound::Gap { .. } => None,
        })
        .collect()
}

fn events(c: &mut SessionCore) -> Vec<Event> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

#[test]
fn offsets_start_at_one_and_increase_per_user() {
    let mut c = core();
    assert_eq!(send(&mut c, "bob", "a", 0).offset(), 1);
    assert_eq!(send(&mut c, "bob", "b", 0).offset(), 2);
    assert_eq!(send(&mut c, "carol", "a", 0).offset(), 1);
    assert_eq!(c.head_offset("bob"), Some(2));
    assert_eq!(c.counters().commits, 3);
}

#[test]
fn msg_ids_carry_the_shard_and_increase() {
    let mut c = core();
    let a = send(&mut c, "bob", "a", 0).msg_id();
    let b = send(&mut c, "carol", "a", 0).msg_id();
    assert_eq!(a >> MSG_ID_COUNTER_BITS, 3);
    assert!(b > a);
}

#[test]
fn retry_with_same_client_msg_id_is_committed_once() {
    let mut c = core();
    let first = send(&mut c, "bob", "m1", 0);
    assert!(matches!(first, Commit::Committed { .. }));
    // Even after the recipient acked (and the entry was trimmed) the retry gets the same answer.
    c.ack_up_to("bob", 1, 0);
    let again = send(&mut c, "bob", "m1", 10);
    assert_eq!(
        again,
        Commit::Duplicate {
            msg_id: first.msg_id(),
            offset: 1
        }
    );
    assert_eq!(c.head_offset("bob"), Some(1));
    assert_eq!(c.counters().duplicates, 1);
    // Same id from another sender is a different message.
    let other = c.commit("bob", rc("dave"), "m1", Box::new([]), 10).unwrap();
    assert_eq!(other.offset(), 2);
    // An empty client id is never deduplicated.
    assert_eq!(send(&mut c, "bob", "", 10).offset(), 3);
    assert_eq!(send(&mut c, "bob", "", 10).offset(), 4);
}

#[test]
fn dedup_memory_is_bounded_and_expires() {
    let mut c = core();
    for i in 0..5 {
        send(&mut c, "bob", &format!("m{i}"), 0);
    }
    // dedup_max = 4: the oldest pair is forgotten, a retry of it commits again.
    assert!(matches!(
        send(&mut c, "bob", "m0", 0),
        Commit::Committed { .. }
    ));
    assert!(matches!(
        send(&mut c, "bob", "m4", 0),
        Commit::Duplicate { .. }
    ));
    // After the TTL everything is forgotten.
    assert!(matches!(
        send(&mut c, "bob", "m4", 1_000),
        Commit::Committed { .. }
    ));
}

#[test]
fn sent_notice_carries_routing_data() {
    let mut c = core();
    let s = send(&mut c, "bob", "m1", 0).sent(rc("alice"), "m1".into(), rc("bob"));
    assert_eq!(
        (&*s.sender, &*s.client_msg_id, &*s.to, s.offset),
        ("alice", "m1", "bob", 1)
    );
}

#[test]
fn outbound_items_encode_as_protocol_frames() {
    use rtc_protocol::frames::OwnedServerFrame;
    let mut c = core();
    c.attach("bob", 1, None, 0).unwrap();
    let commit = send(&mut c, "bob", "m1", 42);
    let out = drain(&mut c, 1);
    let mut buf = Vec::new();
    out[0].frame().encode(&mut buf);
    let parsed = OwnedServerFrame::parse(&buf).unwrap();
    let want = format!(
        "{{\"type\":\"message\",\"msgId\":{},\"offset\":1,\"from\":\"alice\",\"payload\":{{\"x\":1}},\"ts\":42}}",
        commit.msg_id()
    );
    let want = OwnedServerFrame::parse(want.as_bytes()).unwrap();
    assert_eq!(parsed, want);
    buf.clear();
    Outbound::Gap { from: 2, to: 5 }.frame().encode(&mut buf);
    assert_eq!(
        OwnedServerFrame::parse(&buf).unwrap(),
        OwnedServerFrame::Gap { from: 2, to: 5 }
    );
    buf.clear();
    commit
        .sent(rc("alice"), "m1".into(), rc("bob"))
        .frame()
        .encode(&mut buf);
    assert!(matches!(
        OwnedServerFrame::parse(&buf).unwrap(),
        OwnedServerFrame::Sent { offset: 1, .. }
    ));
}

#[test]
fn live_commit_wakes_once_and_delivers_in_order() {
    let mut c = core();
    let a = c.attach("bob", 7, None, 0).unwrap();
    assert_eq!((a.head_offset, a.replay, a.resume), (0, 0, Resume::Fresh));
    assert!(events(&mut c).is_empty());
    send(&mut c, "bob", "1", 0);
    send(&mut c, "bob", "2", 0);
    assert_eq!(events(&mut c), vec![Event::Writable(7)]);
    let out = drain(&mut c, 7);
    assert_eq!(delivered(&out), vec![1, 2]);
    match &out[0] {
        Outbound::Deliver(m) => {
            assert_eq!(
                (&*m.from, &*m.payload, m.ts_ms),
                ("alice", &b"{\"x\":1}"[..], 0)
            );
        }
        Outbound::Gap { .. } => panic!("no gap expected"),
    }
    assert_eq!(c.counters().deliveries, 2);
    send(&mut c, "bob", "3", 0);
    assert_eq!(events(&mut c), vec![Event::Writable(7)]);
    assert_eq!(delivered(&drain(&mut c, 7)), vec![3]);
}

#[test]
fn poll_transmit_respects_the_byte_budget() {
    let mut c = core();
    c.attach("bob", 1, None, 0).unwrap();
    for i in 0..3 {
        send(&mut c, "bob", &i.to_string(), 0);
    }
    let mut out = Vec::new();
    // A budget of one byte still yields one item per call.
    assert_eq!(c.poll_transmit(1, 1, &mut out), 1);
    assert_eq!(c.poll_transmit(1, 1, &mut out), 1);
    assert!(c.handle_written(1, 0));
    assert_eq!(c.poll_transmit(1, 1, &mut out), 1);
    assert!(!c.handle_written(1, 0));
    assert_eq!(delivered(&out), vec![1, 2, 3]);
    assert_eq!(c.poll_transmit(1, 1, &mut out), 0);
}

#[test]
fn offline_messages_are_delivered_on_connect() {
    let mut c = core();
    for i in 0..3 {
        send(&mut c, "bob", &i.to_string(), 0);
    }
    assert!(c.gauges().offline_log_bytes > 0);
    let a = c.attach("bob", 1, None, 5).unwrap();
    assert_eq!((a.head_offset, a.replay, a.resume_gap), (3, 3, None));
    assert_eq!(c.gauges().offline_log_bytes, 0);
    assert_eq!(events(&mut c), vec![Event::Writable(1)]);
    assert_eq!(delivered(&drain(&mut c, 1)), vec![1, 2, 3]);
}

#[test]
fn resume_replays_the_suffix_and_acks_the_prefix() {
    let mut c = core();
    c.attach("bob", 1, None, 0).unwrap();
    for i in 0..5 {
        send(&mut c, "bob", &i.to_string(), 0);
    }
    drain(&mut c, 1);
    c.detach(1, 0);
    let a = c.attach("bob", 2, Some(3), 0).unwrap();
    assert_eq!(a.resume, Resume::Complete);
    assert_eq!((a.acked_offset, a.replay, a.resume_gap), (3, 2, None));
    assert_eq!(delivered(&drain(&mut c, 2)), vec![4, 5]);
    assert_eq!(c.counters().resumes_ok, 1);
}

#[test]
fn resume_reports_what_is_gone() {
    let mut c = core();
    // buffer_max = 8: offsets 1 and 2 are pushed out by 3..=10.
    for i in 0..10 {
        send(&mut c, "bob", &i.to_string(), 0);
    }
    assert_eq!(c.counters().drops_log_full, 2);
    let a = c.attach("bob", 1, Some(0), 0).unwrap();
    assert_eq!(a.resume, Resume::Partial);
    assert_eq!(a.resume_gap, Some((1, 2)));
    assert_eq!(c.counters().resumes_failed, 1);
    // The connection's stream also says so, in order, before the kept entries.
    let out = drain(&mut c, 1);
    assert_eq!(out[0], Outbound::Gap { from: 1, to: 2 });
    assert_eq!(delivered(&out), (3..=10).collect::<Vec<_>>());
}

#[test]
fn resume_ahead_of_the_head_is_flagged_and_treated_as_fresh() {
    let mut c = core();
    send(&mut c, "bob", "a", 0);
    let a = c.attach("bob", 1, Some(99), 0).unwrap();
    assert_eq!((a.resume, a.head_offset, a.replay), (Resume::Ahead, 1, 1));
    assert_eq!(c.counters().resumes_failed, 1);
    assert_eq!(c.acked_offset("bob"), Some(0));
}

#[test]
fn second_attach_replaces_the_first() {
    let mut c = core();
    c.attach("bob", 1, None, 0).unwrap();
    assert_eq!(
        c.attach("bob", 1, None, 0),
        Err(SessionError::ConnInUse(1)),
        "same conn id twice"
    );
    send(&mut c, "bob", "a", 0);
    let a = c.attach("bob", 2, None, 0).unwrap();
    assert_eq!(a.replaced, Some(1));
    assert_eq!(c.counters().replaced, 1);
    assert_eq!(c.conn_of("bob"), Some(2));
    assert_eq!(c.user_of(1), None);
    let mut out = Vec::new();
    assert_eq!(c.poll_transmit(1, usize::MAX, &mut out), 0);
    assert_eq!(delivered(&drain(&mut c, 2)), vec![1]);
    // Detaching the replaced id is a no-op; the user stays online.
    assert_eq!(c.detach(1, 0), None);
    assert_eq!(c.detach(2, 0).as_deref(), Some("bob"));
    c.check_invariants();
}

#[test]
fn acks_trim_the_log() {
    let mut c = core();
    c.attach("bob", 1, None, 0).unwrap();
    let ids: Vec<u64> = (0..5)
        .map(|i| send(&mut c, "bob", &i.to_string(), 0).msg_id())
        .collect();
    drain(&mut c, 1);
    assert_eq!(c.ack_up_to("bob", 2, 0), Some(2));
    assert_eq!(c.gauges().log_entries, 3);
    // By id: acking 4 leaves it until 3 is acked too, then the prefix goes.
    assert_eq!(c.ack_ids("bob", &[ids[3], 12345], 0), 1);
    assert_eq!(c.acked_offset("bob"), Some(2));
    assert_eq!(c.gauges().log_entries, 3);
    assert_eq!(c.ack_ids("bob", &[ids[2], ids[3]], 0), 1);
    assert_eq!(c.acked_offset("bob"), Some(4));
    assert_eq!(c.gauges().log_entries, 1);
    // Beyond the head is clamped.
    assert_eq!(c.ack_up_to("bob", 1_000, 0), Some(5));
    assert_eq!(c.gauges().log_entries, 0);
    assert_eq!(c.ack_up_to("nobody", 1, 0), None);
    c.check_invariants();
}

#[test]
fn acked_by_id_entries_are_not_replayed() {
    let mut c = core();
    let ids: Vec<u64> = (0..3)
        .map(|i| send(&mut c, "bob", &i.to_string(), 0).msg_id())
        .collect();
    c.ack_ids("bob", &[ids[1]], 0);
    c.attach("bob", 1, None, 0).unwrap();
    assert_eq!(delivered(&drain(&mut c, 1)), vec![1, 3]);
}

#[test]
fn full_window_drops_oldest_and_tells_the_gap() {
    let mut c = core();
    c.attach("bob", 1, None, 0).unwrap();
    // per_conn_buffer_size = 4: six unsent live messages drop 1 and 2.
    for i in 0..6 {
        send(&mut c, "bob", &i.to_string(), 0);
    }
    assert_eq!(c.counters().drops_buffer_full, 2);
    let out = drain(&mut c, 1);
    assert_eq!(out[0], Outbound::Gap { from: 1, to: 2 });
    assert_eq!(delivered(&out), vec![3, 4, 5, 6]);
    assert_eq!(c.counters().gaps, 1);
    // Dropped for the connection, not from the log: a resume gets them.
    c.detach(1, 0);
    let a = c.attach("bob", 2, Some(0), 0).unwrap();
    assert_eq!((a.resume, a.replay), (Resume::Complete, 6));
    assert_eq!(delivered(&drain(&mut c, 2)), (1..=6).collect::<Vec<_>>());
}

#[test]
fn window_bytes_bound_drops_oldest() {
    let mut l = limits();
    l.per_conn_buffer_bytes = 3 * (MESSAGE_OVERHEAD + 5 + 100);
    let mut c = core_with(l);
    c.attach("bob", 1, None, 0).unwrap();
    for i in 0..5 {
        c.commit(
            "bob",
            rc("alice"),
            &i.to_string(),
            vec![b'1'; 100].into(),
            0,
        )
        .unwrap();
        c.check_invariants();
    }
    assert_eq!(c.counters().drops_buffer_full, 2);
    let out = drain(&mut c, 1);
    assert_eq!(out[0], Outbound::Gap { from: 1, to: 2 });
    assert_eq!(delivered(&out), vec![3, 4, 5]);
}

#[test]
fn replay_is_not_bounded_by_the_live_window() {
    let mut c = core();
    for i in 0..8 {
        send(&mut c, "bob", &i.to_string(), 0);
    }
    c.attach("bob", 1, None, 0).unwrap();
    // Live messages on top of an 8-entry replay: only the live part is windowed.
    for i in 8..12 {
        send(&mut c, "bob", &i.to_string(), 0);
    }
    assert_eq!(c.counters().drops_buffer_full, 0);
}

#[test]
fn slow_consumer_by_drop_count() {
    let mut c = core();
    c.attach("bob", 1, None, 0).unwrap();
    // Window 4, max 6 drops without a completed write: the 11th message makes the 7th drop.
    for i in 0..11 {
        send(&mut c, "bob", &i.to_string(), 0);
    }
    let ev = events(&mut c);
    assert_eq!(
        ev.last(),
        Some(&Event::Close {
            conn: 1,
            reason: CloseReason::SlowConsumer
        })
    );
    assert_eq!(CloseReason::SlowConsumer.code(), 4005);
    assert_eq!(c.counters().slow_consumers, 1);
    // Nothing more goes to it; the log keeps everything for a resume.
    let mut out = Vec::new();
    assert_eq!(c.poll_transmit(1, usize::MAX, &mut out), 0);
    send(&mut c, "bob", "late", 0);
    assert!(events(&mut c).is_empty());
    c.detach(1, 0);
    let a = c.attach("bob", 2, Some(0), 0).unwrap();
    // The log (buffer_max = 8) kept the last 8 of the 12.
    assert_eq!((a.replay, a.resume_gap), (8, Some((1, 4))));
}

#[test]
fn completed_writes_reset_the_slow_consumer_count() {
    let mut c = core();
    c.attach("bob", 1, None, 0).unwrap();
    for round in 0..5 {
        for i in 0..8 {
            send(&mut c, "bob", &format!("{round}-{i}"), 0);
        }
        drain(&mut c, 1);
        c.handle_written(1, 0);
    }
    assert_eq!(c.counters().slow_consumers, 0);
    assert_eq!(c.counters().drops_buffer_full, 20);
}

#[test]
fn slow_consumer_by_timeout_is_found_by_expire() {
    let mut c = core();
    c.attach("bob", 1, None, 0).unwrap();
    for i in 0..5 {
        send(&mut c, "bob", &i.to_string(), 100);
    }
    assert_eq!(c.counters().drops_buffer_full, 1);
    c.expire(599, 1000);
    assert_eq!(c.counters().slow_consumers, 0);
    c.expire(600, 1000);
    assert_eq!(c.counters().slow_consumers, 1);
    assert!(events(&mut c).contains(&Event::Close {
        conn: 1,
        reason: CloseReason::SlowConsumer
    }));
    c.check_invariants();
}

#[test]
fn offline_budget_evicts_least_recently_touched_logs() {
    let mut l = limits();
    let cost = MESSAGE_OVERHEAD + 5 + 1000;
    l.log_max_bytes = 4 * cost;
    l.max_offline_log_bytes = 4 * cost;
    let mut c = core_with(l);
    let put = |c: &mut SessionCore, to: &str, now| {
        c.commit(to, rc("alice"), "", vec![b'1'; 1000].into(), now)
            .unwrap();
        c.check_invariants();
    };
    put(&mut c, "u1", 1);
    put(&mut c, "u2", 2);
    put(&mut c, "u3", 3);
    put(&mut c, "u1", 4); // u1 touched again: u2 is now the oldest
    put(&mut c, "u4", 5); // over budget: u2's log goes
    assert_eq!(c.counters().logs_evicted, 1);
    assert_eq!(c.counters().drops_evicted, 1);
    let a = c.attach("u2", 1, Some(0), 6).unwrap();
    assert_eq!(a.resume_gap, Some((1, 1)));
    // Connected users do not count against the offline budget.
    for _ in 0..3 {
        put(&mut c, "u2", 7);
    }
    assert_eq!(c.counters().logs_evicted, 1);
    // Detaching brings u2's bytes back into the budget: the oldest (u3) goes.
    c.detach(1, 8);
    c.check_invariants();
    assert!(c.gauges().offline_log_bytes <= 4 * cost as u64);
    assert_eq!(
        c.attach("u3", 2, Some(0), 9).unwrap().resume_gap,
        Some((1, 1))
    );
}

#[test]
fn ttl_drops_entries_and_then_idle_records() {
    let mut c = core();
    send(&mut c, "bob", "a", 0);
    send(&mut c, "bob", "b", 500);
    c.expire(1_000, 100);
    assert_eq!(c.counters().drops_expired, 1);
    assert_eq!(c.gauges().log_entries, 1);
    c.check_invariants();
    // A record lingers one TTL after its last touch (the commit at 500), then goes with its
    // last entry; offsets never go back.
    c.expire(1_499, 100);
    assert_eq!(c.gauges().users, 1);
    c.expire(1_500, 100);
    assert_eq!(c.counters().drops_expired, 2);
    c.check_invariants();
    assert_eq!(c.gauges().users, 0);
    assert_eq!(c.counters().users_dropped, 1);
    assert_eq!(send(&mut c, "bob", "c", 2_000).offset(), 3);
}

#[test]
fn lazy_expiry_on_attach() {
    let mut c = core();
    send(&mut c, "bob", "a", 0);
    let a = c.attach("bob", 1, None, 5_000).unwrap();
    assert_eq!((a.replay, a.resume_gap), (0, Some((1, 1))));
    assert_eq!(c.counters().drops_expired, 1);
}

#[test]
fn user_count_is_bounded() {
    let mut l = limits();
    l.max_users = 2;
    let mut c = core_with(l);
    c.attach("a", 1, None, 0).unwrap();
    send(&mut c, "b", "x", 0);
    assert_eq!(
        c.commit("c", rc("z"), "", Box::new([]), 0),
        Err(SessionError::TooManyUsers)
    );
    // An idle record (offline, empty log) makes room.
    c.ack_up_to("b", 1, 0);
    assert_eq!(send(&mut c, "c", "x", 0).offset(), 2, "above b's head");
    assert_eq!(c.counters().users_dropped, 1);
}

#[test]
fn oversized_message_is_refused() {
    let mut c = core();
    let err = c.commit("bob", rc("a"), "", vec![0; 64 * 1024].into(), 0);
    assert!(matches!(err, Err(SessionError::TooLarge { .. })));
    assert_eq!(c.gauges().users, 0);
}

#[test]
fn limits_validate() {
    assert_eq!(SessionLimits::default().validate(), Ok(()));
    assert_eq!(
        SessionLimits::default().max_message_cost(),
        PER_CONN_BUFFER_BYTES
    );
    let l = SessionLimits {
        buffer_max: 0,
        ..SessionLimits::default()
    };
    assert_eq!(l.validate(), Err(LimitsError::Zero("buffer_max")));
    let l = SessionLimits {
        log_max_bytes: MAX_OFFLINE_LOG_BYTES + 1,
        ..SessionLimits::default()
    };
    assert!(matches!(
        l.validate(),
        Err(LimitsError::LogExceedsOffline { .. })
    ));
    let l = SessionLimits {
        per_conn_buffer_bytes: 10,
        ..SessionLimits::default()
    };
    assert_eq!(l.validate(), Err(LimitsError::BytesTooSmall));
    assert!(SessionCore::new(0, l).is_err());
}

/// Per-user (incl. its inline connection) record budget, bytes.
const USER_STATE_BUDGET: usize = 224;
/// Per-connection state budget, bytes.
const CONN_STATE_BUDGET: usize = 96;

#[test]
fn idle_state_stays_within_budget() {
    let (user, conn) = SessionCore::user_state_size();
    println!("size_of UserState = {user} B (incl. inline ConnState = {conn} B)");
    assert!(user <= USER_STATE_BUDGET, "UserState is {user} B");
    assert!(conn <= CONN_STATE_BUDGET, "ConnState is {conn} B");
    // An attached idle user holds no heap besides its id.
    let mut c = core();
    c.attach("bob", 1, None, 0).unwrap();
    send(&mut c, "bob", "", 0);
    drain(&mut c, 1);
    c.ack_up_to("bob", 1, 0);
    c.expire(10_000, 10);
    assert_eq!(c.gauges().log_entries, 0);
    assert_eq!(c.idle_heap_bytes("bob"), Some(0));
}

/// Model-based property test: any interleaving of commits, acks, attaches, detaches, polls,
/// completed writes and expiry over a few users keeps the delivery guarantees and the bounds.
mod model {
    use std::collections::{BTreeSet, HashMap};
    use std::rc::Rc;

    use proptest::prelude::*;

    use super::super::*;

    const USERS: [&str; 4] = ["u0", "u1", "u2", "u3"];

    #[derive(Debug, Clone)]
    enum Op {
        Commit {
            to: usize,
            from: usize,
            cmid: u8,
            len: usize,
        },
        Attach {
            user: usize,
            last: Last,
            check_replay: bool,
        },
        Detach {
            user: usize,
        },
        Poll {
            user: usize,
            budget: usize,
        },
        Written {
            user: usize,
        },
        AckUpTo {
            user: usize,
        },
        AckIds {
            user: usize,
            pick: u8,
        },
        AckRaw {
            user: usize,
            offset: u64,
        },
        Tick {
            dt: u64,
            budget: usize,
        },
    }

    #[derive(Debug, Clone, Copy)]
    enum Last {
        Fresh,
        Contiguous,
        Acked,
        Raw(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        let u = 0..USERS.len();
        prop_oneof![
            6 => (u.clone(), u.clone(), 0u8..12, 0usize..300)
                .prop_map(|(to, from, cmid, len)| Op::Commit { to, from, cmid, len }),
            2 => (u.clone(), prop_oneof![
                    Just(Last::Fresh), Just(Last::Contiguous), Just(Last::Acked),
                    (0u64..40).prop_map(Last::Raw)
                ], any::<bool>())
                .prop_map(|(user, last, check_replay)| Op::Attach { user, last, check_replay }),
            1 => u.clone().prop_map(|user| Op::Detach { user }),
            4 => (u.clone(), 1usize..600).prop_map(|(user, budget)| Op::Poll { user, budget }),
            2 => u.clone().prop_map(|user| Op::Written { user }),
            2 => u.clone().prop_map(|user| Op::AckUpTo { user }),
            1 => (u.clone(), any::<u8>()).prop_map(|(user, pick)| Op::AckIds { user, pick }),
            1 => (u.clone(), 0u64..40).prop_map(|(user, offset)| Op::AckRaw { user, offset }),
            2 => (0u64..400, 1usize..6).prop_map(|(dt, budget)| Op::Tick { dt, budget }),
        ]
    }

    /// What the client side of one user has seen.
    #[derive(Default)]
    struct Client {
        /// Attached connection, and the next offset its stream may carry.
        conn: Option<(ConnId, u64)>,
        /// A `Writable` arrived and the connection was not drained since.
        armed: bool,
        /// Every offset received, any connection: offset → msg id.
        received: HashMap<u64, u64>,
        /// Offsets acked by id (accepted by the core while held).
        acked_ids: BTreeSet<u64>,
        /// Last offset any commit returned.
        last_commit: u64,
        /// offset → msg id as returned to senders.
        committed: HashMap<u64, u64>,
    }

    struct World {
        core: SessionCore,
        clients: Vec<Client>,
        next_conn: ConnId,
        now: u64,
        /// (to, from, cmid) → first answer.
        sent: HashMap<(usize, usize, u8), (u64, u64)>,
    }

    impl World {
        fn contiguous(&self, user: usize) -> u64 {
            let c = &self.clients[user];
            let mut o = self.core.acked_offset(USERS[user]).unwrap_or(0);
            while c.received.contains_key(&(o + 1)) || c.acked_ids.contains(&(o + 1)) {
                o += 1;
            }
            o
        }

        fn events(&mut self) {
            while let Some(ev) = self.core.poll_event() {
                match ev {
                    Event::Writable(conn) => {
                        if let Some(c) = self
                            .clients
                            .iter_mut()
                            .find(|c| c.conn.map(|x| x.0) == Some(conn))
                        {
                            c.armed = true;
                        }
                    }
                    Event::Close { conn, reason } => {
                        assert_eq!(reason, CloseReason::SlowConsumer);
                        let user = self
                            .core
                            .user_of(conn)
                            .cloned()
                            .expect("closing conn attached");
                        assert!(self.core.detach(conn, self.now).is_some());
                        let i = USERS.iter().position(|u| **u == *user).unwrap();
                        self.clients[i].conn = None;
                        self.clients[i].armed = false;
                    }
                }
            }
        }

        /// Polls `user`'s connection once and checks the stream.
        fn poll(&mut self, user: usize, budget: usize) -> Vec<Outbound> {
            let Some((conn, mut next)) = self.clients[user].conn else {
                return Vec::new();
            };
            let mut out = Vec::new();
            let n = self.core.poll_transmit(conn, budget, &mut out);
            assert_eq!(n, out.len());
            if !self.clients[user].armed {
                assert_eq!(n, 0, "items pending without a Writable event");
            }
            let acked = self.core.acked_offset(USERS[user]).unwrap_or(0);
            let c = &mut self.clients[user];
            for item in &out {
                let (lo, hi) = match item {
                    Outbound::Deliver(m) => {
                        assert_eq!(c.committed.get(&m.offset), Some(&m.msg_id), "same message");
                        c.received.insert(m.offset, m.msg_id);
                        (m.offset, m.offset)
                    }
                    Outbound::Gap { from, to } => {
                        assert!(from <= to);
                        assert!(*from > acked, "acked offsets are never reported missing");
                        (*from, *to)
                    }
                };
                // Commit order, each offset once per connection, and nothing skipped silently
                // unless the client acked it.
                assert!(lo >= next, "stream goes forward: {lo} < {next}");
                for skipped in next..lo {
                    assert!(
                        skipped <= acked || c.acked_ids.contains(&skipped),
                        "offset {skipped} skipped silently"
                    );
                }
                next = hi + 1;
            }
            c.conn = Some((conn, next));
            if !self.core.has_pending(conn) {
                c.armed = false;
            }
            out
        }

        fn apply(&mut self, op: Op) {
            match op {
                Op::Commit {
                    to,
                    from,
                    cmid,
                    len,
                } => {
                    self.now += 1;
                    let id = if cmid == 0 {
                        String::new()
                    } else {
                        cmid.to_string()
                    };
                    let r = self.core.commit(
                        USERS[to],
                        Rc::from(USERS[from]),
                        &id,
                        vec![b'7'; len].into(),
                        self.now,
                    );
                    match r {
                        Ok(Commit::Committed { msg_id, offset }) => {
                            let c = &mut self.clients[to];
                            assert!(offset > c.last_commit, "offsets strictly increase");
                            c.last_commit = offset;
                            c.committed.insert(offset, msg_id);
                            if cmid != 0 {
                                self.sent.insert((to, from, cmid), (msg_id, offset));
                            }
                        }
                        Ok(Commit::Duplicate { msg_id, offset }) => {
                            assert_ne!(cmid, 0, "empty ids are never deduplicated");
                            assert_eq!(self.sent.get(&(to, from, cmid)), Some(&(msg_id, offset)));
                        }
                        Err(SessionError::TooManyUsers) => {}
                        Err(e) => panic!("unexpected {e}"),
                    }
                }
                Op::Attach {
                    user,
                    last,
                    check_replay,
                } => {
                    let name = USERS[user];
                    let existed = self.core.head_offset(name).is_some();
                    let mut head = self.core.head_offset(name).unwrap_or(0);
                    let mut acked_before = self.core.acked_offset(name).unwrap_or(0);
                    let last = match last {
                        Last::Fresh => None,
                        Last::Contiguous => Some(self.contiguous(user)),
                        Last::Acked => Some(acked_before),
                        Last::Raw(n) => Some(n),
                    };
                    let conn = self.next_conn;
                    self.next_conn += 1;
                    let a = match self.core.attach(name, conn, last, self.now) {
                        Ok(a) => a,
                        Err(SessionError::TooManyUsers) => return,
                        Err(e) => panic!("unexpected {e}"),
                    };
                    if !existed {
                        // A new record starts at the shard's floor, above anything this user
                        // was ever given.
                        assert!(a.head_offset >= self.clients[user].last_commit);
                        head = a.head_offset;
                        acked_before = a.head_offset;
                    }
                    let old = self.clients[user].conn.take();
                    assert_eq!(a.replaced, old.map(|c| c.0));
                    assert_eq!(a.head_offset, head);
                    let asked = match (last, a.resume) {
                        (Some(n), Resume::Complete | Resume::Partial) => n.max(acked_before),
                        (Some(n), Resume::Ahead) => {
                            assert!(n > head);
                            acked_before
                        }
                        (None, Resume::Fresh) => acked_before,
                        (l, r) => panic!("resume {r:?} for last {l:?}"),
                    };
                    // Acked up to the resume point, plus entries acked by id right after it.
                    let floor = asked.min(head).max(acked_before);
                    assert!(a.acked_offset >= floor);
                    assert!(((floor + 1)..=a.acked_offset)
                        .all(|o| self.clients[user].acked_ids.contains(&o)));
                    let c = &mut self.clients[user];
                    c.conn = Some((conn, a.acked_offset + 1));
                    c.armed = false;
                    self.events();
                    if check_replay {
                        // Exactly the unacked suffix still in the log, after the reported gap.
                        let start = a.resume_gap.map_or(asked + 1, |(_, to)| to + 1);
                        if let Some((from, _)) = a.resume_gap {
                            assert_eq!(from, asked + 1);
                        }
                        let acked_ids = &self.clients[user].acked_ids;
                        let want: Vec<u64> =
                            (start..=head).filter(|o| !acked_ids.contains(o)).collect();
                        assert_eq!(a.replay, want.len() as u64);
                        let out = self.poll(user, usize::MAX);
                        let got: Vec<u64> = out
                            .iter()
                            .filter_map(|o| match o {
                                Outbound::Deliver(m) => Some(m.offset),
                                Outbound::Gap { .. } => None,
                            })
                            .collect();
                        assert_eq!(got, want, "replay after {last:?}");
                        match (a.resume_gap, out.first()) {
                            (Some((from, to)), Some(Outbound::Gap { from: f, to: t })) => {
                                assert_eq!((from, to), (*f, *t));
                            }
                            (Some(g), first) => panic!("gap {g:?} not first in stream: {first:?}"),
                            (None, _) => {}
                        }
                    }
                }
                Op::Detach { user } => {
                    if let Some((conn, _)) = self.clients[user].conn.take() {
                        assert_eq!(
                            self.core.detach(conn, self.now).as_deref(),
                            Some(USERS[user])
                        );
                        self.clients[user].armed = false;
                    }
                }
                Op::Poll { user, budget } => {
                    self.poll(user, budget);
                }
                Op::Written { user } => {
                    if let Some((conn, _)) = self.clients[user].conn {
                        let more = self.core.handle_written(conn, self.now);
                        assert_eq!(more, self.core.has_pending(conn));
                    }
                }
                Op::AckUpTo { user } => {
                    let upto = self.contiguous(user);
                    self.core.ack_up_to(USERS[user], upto, self.now);
                }
                Op::AckIds { user, pick } => {
                    let c = &self.clients[user];
                    let acked = self.core.acked_offset(USERS[user]).unwrap_or(0);
                    let ids: Vec<(u64, u64)> = c
                        .received
                        .iter()
                        .filter(|(o, _)| **o > acked && (**o + u64::from(pick)) % 3 == 0)
                        .map(|(o, id)| (*o, *id))
                        .collect();
                    let msg_ids: Vec<u64> = ids.iter().map(|x| x.1).collect();
                    self.core.ack_ids(USERS[user], &msg_ids, self.now);
                    self.clients[user].acked_ids.extend(ids.iter().map(|x| x.0));
                }
                Op::AckRaw { user, offset } => {
                    let before = self.core.acked_offset(USERS[user]);
                    let after = self.core.ack_up_to(USERS[user], offset, self.now);
                    if let (Some(b), Some(a)) = (before, after) {
                        assert!(a >= b, "acked offset never goes back");
                    }
                }
                Op::Tick { dt, budget } => {
                    self.now += dt;
                    self.core.expire(self.now, budget);
                }
            }
            self.events();
            self.core.check_invariants();
        }
    }

    fn small_limits() -> SessionLimits {
        let cost = MESSAGE_OVERHEAD + 2 + 300;
        SessionLimits {
            buffer_max: 6,
            resume_ttl_ms: 1_000,
            log_max_bytes: 4 * cost,
            max_offline_log_bytes: 6 * cost,
            per_conn_buffer_size: 3,
            per_conn_buffer_bytes: 2 * cost,
            slow_consumer_max_drops: 5,
            slow_consumer_timeout_ms: 600,
            dedup_max: 3,
            max_users: 3,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn any_interleaving_keeps_the_guarantees(ops in proptest::collection::vec(op(), 1..120)) {
            let mut w = World {
                core: SessionCore::new(1, small_limits()).unwrap(),
                clients: (0..USERS.len()).map(|_| Client::default()).collect(),
                next_conn: 1,
                now: 0,
                sent: HashMap::new(),
            };
            for op in ops {
                w.apply(op);
            }
            // Everything still pending reaches each connection in order.
            for u in 0..USERS.len() {
                w.clients[u].armed = true;
                w.poll(u, usize::MAX);
            }
        }
    }
}

/// Resident set size of this process, bytes (Linux; 0 elsewhere).
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// Figures for the report, not a check: run with
/// `cargo test -p gateway --release --lib session_figures -- --ignored --nocapture`.
#[test]
#[ignore = "prints figures; run by name in release"]
fn session_figures() {
    const USERS_N: u64 = 200_000;
    let mut c = SessionCore::new(0, SessionLimits::default()).unwrap();
    let before = rss_bytes();
    for i in 0..USERS_N {
        c.attach(&format!("user-{i:08}"), i, None, 0).unwrap();
    }
    let after = rss_bytes();
    println!(
        "idle attached users: {USERS_N}, RSS +{} B/user (UserState {} B inline)",
        (after - before) / USERS_N,
        SessionCore::user_state_size().0
    );
    // Commit + transmit + ack round trip, all users connected.
    let from: Rc<str> = Rc::from("sender");
    let payload: Box<[u8]> = vec![b'x'; 32].into();
    let names: Vec<String> = (0..1000).map(|i| format!("user-{i:08}")).collect();
    let mut out = Vec::new();
    let rounds = 1_000_000u64;
    let t = std::time::Instant::now();
    for r in 0..rounds {
        let i = (r % 1000) as usize;
        let commit = c
            .commit(&names[i], from.clone(), "", payload.clone(), r)
            .unwrap();
        while let Some(ev) = c.poll_event() {
            if let Event::Writable(conn) = ev {
                out.clear();
                c.poll_transmit(conn, 64 * 1024, &mut out);
                c.handle_written(conn, r);
            }
        }
        c.ack_up_to(&names[i], commit.offset(), r);
    }
    let ns = t.elapsed().as_nanos() as u64 / rounds;
    println!("commit + Writable + poll_transmit + handle_written + ack: {ns} ns/message");
    assert_eq!(c.counters().deliveries, rounds);
}

fn stored(offset: u64, msg_id: u64) -> Message {
    Message {
        msg_id,
        offset,
        from: rc("alice"),
        payload: b"{\"s\":1}".to_vec().into(),
        ts_ms: 5,
    }
}

#[test]
fn insert_at_appends_in_order_and_ignores_repeats() {
    let mut c = core();
    c.sync_head("bob", 10, 10, 0).expect("sync");
    c.attach("bob", 1, Some(10), 0).expect("attach");
    assert_eq!(c.insert_at("bob", stored(11, 900), 1), Ok(Placed::Appended));
    assert_eq!(c.insert_at("bob", stored(12, 901), 1), Ok(Placed::Appended));
    assert_eq!(c.insert_at("bob", stored(12, 901), 1), Ok(Placed::Stale));
    assert_eq!(c.insert_at("bob", stored(3, 1), 1), Ok(Placed::Stale));
    c.check_invariants();
    let out = drain(&mut c, 1);
    assert_eq!(delivered(&out), vec![11, 12]);
    assert_eq!(c.head_offset("bob"), Some(12));
}

#[test]
fn insert_at_after_a_hole_reports_the_gap_then_delivers() {
    let mut c = core();
    c.sync_head("bob", 4, 4, 0).expect("sync");
    c.attach("bob", 1, Some(4), 0).expect("attach");
    assert_eq!(c.insert_at("bob", stored(5, 50), 1), Ok(Placed::Appended));
    // 6..=8 were committed by another node.
    assert_eq!(
        c.insert_at("bob", stored(9, 90), 1),
        Ok(Placed::AfterHole { from: 6, to: 8 })
    );
    c.check_invariants();
    let out = drain(&mut c, 1);
    let gaps: Vec<(u64, u64)> = out
        .iter()
        .filter_map(|o| match o {
            Outbound::Gap { from, to } => Some((*from, *to)),
            _ => None,
        })
        .collect();
    // 5 was dropped from the cache with the hole: it is in the gap too (resume gets it).
    assert_eq!(gaps, vec![(5, 8)]);
    assert_eq!(delivered(&out), vec![9]);
    assert_eq!(c.insert_at("bob", stored(10, 91), 1), Ok(Placed::Appended));
    assert_eq!(delivered(&drain(&mut c, 1)), vec![10]);
    assert_eq!(c.counters().drops_log_full, 0);
}

#[test]
fn sync_head_replaces_the_cache_and_refuses_while_attached() {
    let mut c = core();
    send(&mut c, "bob", "a", 0);
    send(&mut c, "bob", "b", 0);
    c.sync_head("bob", 20, 18, 1).expect("sync");
    assert_eq!(c.head_offset("bob"), Some(20));
    assert_eq!(c.acked_offset("bob"), Some(18));
    assert_eq!(c.gauges().log_entries, 0);
    c.check_invariants();
    let a = c.attach("bob", 7, Some(20), 1).expect("attach");
    assert_eq!(a.head_offset, 20);
    assert!(drain(&mut c, 7).is_empty());
    assert_eq!(
        c.sync_head("bob", 30, 30, 2),
        Err(SessionError::ConnInUse(7))
    );
    // An offline user's offsets continue above the store's head.
    assert_eq!(c.insert_at("bob", stored(21, 1), 2), Ok(Placed::Appended));
    assert_eq!(delivered(&drain(&mut c, 7)), vec![21]);
}
