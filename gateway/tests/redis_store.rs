//! The Redis store against a real Redis: offsets, dedup, trims, replay, acks, TTLs, sessions,
//! two nodes on one log, pipelining from several glommio shards, a full queue, and Redis
//! going away and coming back.
//!
//! Uses `RTC_TEST_REDIS_URL` when set (scripts/test starts one), each test under its own key
//! prefix; otherwise starts its own `redis-server` on a free loopback port. Tests that stop
//! Redis always start a dedicated one. Deadlines are generous (loaded 2-core machines); no
//! test asserts a latency.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gateway::store::{
    Completion, Full, Reply, Request, SessionRecord, Store, StoreConfig, StoreError, StoreHandle,
};
use glommio::{LocalExecutorBuilder, Placement};
use testkit::RedisServer;

// ----- a Redis server for the test ------------------------------------------------------------

fn unique() -> u64 {
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// The test's Redis: the suite's shared one (under a fresh key prefix), or our own.
struct TestRedis {
    url: String,
    prefix: String,
    _own: Option<RedisServer>,
}

fn test_redis() -> TestRedis {
    let prefix = format!("t{}x{}", std::process::id(), unique());
    match testkit::shared_redis_url() {
        Some(url) => TestRedis {
            url,
            prefix,
            _own: None,
        },
        None => {
            let own = RedisServer::start();
            TestRedis {
                url: own.url(),
                prefix,
                _own: Some(own),
            }
        }
    }
}

fn config(url: &str, prefix: &str) -> StoreConfig {
    StoreConfig {
        redis_url: url.to_owned(),
        key_prefix: prefix.to_owned(),
        reconnect_base_ms: 20,
        reconnect_max_ms: 200,
        health_interval_ms: 100,
        ..StoreConfig::default()
    }
}

fn start(config: StoreConfig, shards: usize) -> (Store, Vec<StoreHandle>) {
    let (store, handles) = Store::start(config, shards).expect("store starts");
    assert!(
        store.wait_healthy(Duration::from_secs(30)),
        "store connected"
    );
    (store, handles)
}

fn direct(url: &str) -> redis::Connection {
    redis::Client::open(url)
        .expect("url")
        .get_connection()
        .expect("direct connection")
}

// ----- running a "shard" --------------------------------------------------------------------

/// Runs `f(handle)` on its own glommio executor (a shard) and returns its result.
fn on_shard<T, F, Fut>(handle: StoreHandle, f: F) -> T
where
    T: Send + 'static,
    F: FnOnce(StoreHandle) -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
{
    spawn_shard(handle, f).join().expect("shard panicked")
}

fn spawn_shard<T, F, Fut>(handle: StoreHandle, f: F) -> glommio::ExecutorJoinHandle<T>
where
    T: Send + 'static,
    F: FnOnce(StoreHandle) -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
{
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(1 << 20)
        .spawn(move || async move { f(handle).await })
        .expect("executor starts")
}

/// Submits one request and waits for its completion (other completions are not expected).
async fn call(h: &StoreHandle, request: Request) -> Result<Reply, StoreError> {
    let tag = unique();
    h.try_submit(tag, request).expect("room in the queue");
    let mut out = Vec::new();
    let n = with_deadline(h.recv_batch(&mut out, 16)).await;
    assert_eq!(n, 1, "exactly one completion");
    let c = out.pop().expect("one completion");
    assert_eq!(c.tag, tag);
    c.result
}

/// Fails the test instead of hanging if a completion never comes.
async fn with_deadline<F: Future>(f: F) -> F::Output {
    let timeout = glommio::timer::Timer::new(Duration::from_secs(60));
    futures_select(f, timeout).await
}

/// Polls `f` and panics if `timer` fires first (a tiny select without extra crates).
async fn futures_select<F: Future>(f: F, timer: glommio::timer::Timer) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut timer = std::pin::pin!(timer);
    std::future::poll_fn(move |cx| {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(cx) {
            return std::task::Poll::Ready(v);
        }
        if timer.as_mut().poll(cx).is_ready() {
            panic!("no completion within the test deadline");
        }
        std::task::Poll::Pending
    })
    .await
}

fn commit(to: &str, from: &str, cmid: &str, msg_id: u64, payload: &str, ts_ms: u64) -> Request {
    Request::Commit {
        to: to.into(),
        from: from.into(),
        client_msg_id: cmid.into(),
        msg_id,
        payload: payload.as_bytes().to_vec().into_boxed_slice(),
        ts_ms,
    }
}

fn replay(user: &str, after: u64, limit: u32) -> Request {
    Request::Replay {
        user: user.into(),
        after,
        limit,
        now_ms: 1_000,
    }
}

fn offsets(reply: &Reply) -> Vec<u64> {
    match reply {
        Reply::Replay { entries, .. } => entries.iter().map(|e| e.offset).collect(),
        other => panic!("not a replay: {other:?}"),
    }
}

fn committed(r: Result<Reply, StoreError>) -> (u64, u64, bool) {
    match r {
        Ok(Reply::Commit(c)) => (c.msg_id, c.offset, c.duplicate),
        other => panic!("not a commit: {other:?}"),
    }
}

// ----- tests ----------------------------------------------------------------------------------

#[test]
fn commit_assigns_offsets_and_dedups_retries() {
    let r = test_redis();
    let (_store, mut handles) = start(config(&r.url, &r.prefix), 1);
    on_shard(handles.remove(0), |h| async move {
        let big_id = u64::MAX - 5; // message ids use all 64 bits
        for (i, cmid) in ["c1", "c2", "c3"].iter().enumerate() {
            let (msg_id, offset, dup) = committed(
                call(
                    &h,
                    commit(
                        "bob",
                        "alice@x",
                        cmid,
                        big_id + i as u64,
                        r#"{"n":1}"#,
                        1_000,
                    ),
                )
                .await,
            );
            assert_eq!(
                (msg_id, offset, dup),
                (big_id + i as u64, i as u64 + 1, false)
            );
        }
        // A retry of c2 (the node picked a new id) answers the first commit and appends nothing.
        let retry = committed(call(&h, commit("bob", "alice@x", "c2", 999, "{}", 1_001)).await);
        assert_eq!(retry, (big_id + 1, 2, true));
        // Same clientMsgId from another sender is another message.
        let other = committed(call(&h, commit("bob", "carol", "c2", 1000, "{}", 1_002)).await);
        assert_eq!(other, (1000, 4, false));
        // An empty clientMsgId is never deduplicated.
        assert_eq!(
            committed(call(&h, commit("bob", "carol", "", 1001, "1", 1_003)).await).1,
            5
        );
        assert_eq!(
            committed(call(&h, commit("bob", "carol", "", 1002, "1", 1_004)).await).1,
            6
        );
        // Another user has its own offsets.
        assert_eq!(
            committed(call(&h, commit("dave", "carol", "c2", 1003, "1", 1_005)).await).1,
            1
        );

        let all = call(&h, replay("bob", 0, 0)).await.expect("replay");
        assert_eq!(offsets(&all), vec![1, 2, 3, 4, 5, 6]);
        let Reply::Replay {
            head,
            entries,
            more,
        } = all
        else {
            unreachable!()
        };
        assert_eq!(head.head, 6);
        assert!(!more);
        assert_eq!(entries[0].msg_id, big_id);
        assert_eq!(&*entries[0].from, "alice@x");
        assert_eq!(&*entries[0].payload, br#"{"n":1}"#);
        assert_eq!(entries[0].ts_ms, 1_000);
        assert_eq!(entries[3].msg_id, 1000);

        let head = call(&h, Request::Head { user: "bob".into() })
            .await
            .expect("head");
        assert!(matches!(head, Reply::Head(hd) if hd.head == 6 && hd.acked == 0 && hd.lost == 0));
        let none = call(
            &h,
            Request::Head {
                user: "nobody".into(),
            },
        )
        .await
        .expect("head");
        assert!(matches!(none, Reply::Head(hd) if hd.head == 0));
        // A user id that would break the key layout never reaches Redis.
        let bad = call(&h, commit("a}b", "x", "c", 1, "1", 1)).await;
        assert_eq!(bad, Err(StoreError::BadUser));
        let c = h.counters();
        assert_eq!((c.submitted, c.completed, c.errors), (12, 12, 1));
    });
}

#[test]
fn log_is_trimmed_to_buffer_max_and_ttl_and_keys_expire() {
    let r = test_redis();
    let cfg = StoreConfig {
        buffer_max: 5,
        resume_ttl_sec: 10,
        session_ttl_sec: 7,
        ..config(&r.url, &r.prefix)
    };
    let (_store, mut handles) = start(cfg, 1);
    let prefix = r.prefix.clone();
    let url = r.url.clone();
    on_shard(handles.remove(0), move |h| async move {
        for i in 1..=8u64 {
            let (_, off, _) = committed(
                call(
                    &h,
                    commit("erin", "frank", &format!("m{i}"), i, "{}", 1_000 + i),
                )
                .await,
            );
            assert_eq!(off, i);
        }
        let rep = call(&h, replay("erin", 0, 0)).await.expect("replay");
        assert_eq!(offsets(&rep), vec![4, 5, 6, 7, 8]);
        let Reply::Replay { head, .. } = rep else {
            unreachable!()
        };
        assert_eq!(
            (head.head, head.lost),
            (8, 3),
            "offsets 1..=3 were trimmed unacked"
        );

        // Age: entries older than the TTL (10 s) are trimmed before a replay reads the log
        // (and by every 8th commit, and by Trim).
        let (_, off, _) =
            committed(call(&h, commit("erin", "frank", "late", 9, "{}", 1_000 + 20_000)).await);
        assert_eq!(off, 9);
        let late_replay = Request::Replay {
            user: "erin".into(),
            after: 0,
            limit: 0,
            now_ms: 21_000,
        };
        let rep = call(&h, late_replay).await.expect("replay");
        assert_eq!(
            offsets(&rep),
            vec![9],
            "the entries of t=1000 are older than 10 s"
        );
        assert!(matches!(
            call(
                &h,
                Request::Trim {
                    user: "erin".into(),
                    now_ms: 100_000
                }
            )
            .await,
            Ok(Reply::Trimmed(1))
        ));
        let rep = call(&h, replay("erin", 0, 0)).await.expect("replay");
        assert_eq!(offsets(&rep), Vec::<u64>::new());
        let Reply::Replay { head, .. } = rep else {
            unreachable!()
        };
        assert_eq!((head.head, head.lost), (9, 9));

        // Every key of the user has the resume TTL; the session record its own.
        let (_, off, _) =
            committed(call(&h, commit("erin", "frank", "x", 10, "{}", 100_000)).await);
        assert_eq!(off, 10);
        let rec = SessionRecord {
            node: "n1".into(),
            shard: 0,
            conn: 1,
            connected_at_ms: 5,
        };
        call(
            &h,
            Request::SetSession {
                user: "erin".into(),
                record: rec,
            },
        )
        .await
        .expect("set");
        let mut con = direct(&url);
        for suffix in ["log", "meta", "dedup", "dedupq", "mid"] {
            let ttl: i64 = redis::cmd("TTL")
                .arg(format!("{prefix}:{{erin}}:{suffix}"))
                .query(&mut con)
                .expect("ttl");
            assert!((1..=10).contains(&ttl), "{suffix}: ttl {ttl}");
        }
        let ttl: i64 = redis::cmd("TTL")
            .arg(format!("{prefix}:{{erin}}:sess"))
            .query(&mut con)
            .expect("ttl");
        assert!((1..=7).contains(&ttl), "sess: ttl {ttl}");
        let hlen = |suffix: &str, con: &mut redis::Connection| -> i64 {
            redis::cmd("HLEN")
                .arg(format!("{prefix}:{{erin}}:{suffix}"))
                .query(con)
                .expect("hlen")
        };
        assert_eq!(
            hlen("dedup", &mut con),
            10,
            "dedup memory outlives the log entries (DEDUP_MAX 256)"
        );
        assert_eq!(
            hlen("mid", &mut con),
            1,
            "only entry 10 is still in the log"
        );
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}:{{erin}}:*"))
            .query(&mut con)
            .expect("keys");
        assert_eq!(
            keys.len(),
            6,
            "log, meta, dedup, dedupq, mid, sess: {keys:?}"
        );
    });
}

#[test]
fn dedup_memory_is_bounded() {
    let r = test_redis();
    let cfg = StoreConfig {
        dedup_max: 3,
        ..config(&r.url, &r.prefix)
    };
    let (_store, mut handles) = start(cfg, 1);
    on_shard(handles.remove(0), |h| async move {
        for i in 1..=5u64 {
            committed(call(&h, commit("gina", "hal", &format!("c{i}"), i, "{}", 1_000)).await);
        }
        // c3..c5 remembered, c1 forgotten (a retry that late commits again).
        assert_eq!(
            committed(call(&h, commit("gina", "hal", "c5", 50, "{}", 1_000)).await),
            (5, 5, true)
        );
        assert_eq!(
            committed(call(&h, commit("gina", "hal", "c3", 30, "{}", 1_000)).await),
            (3, 3, true)
        );
        assert_eq!(
            committed(call(&h, commit("gina", "hal", "c1", 10, "{}", 1_000)).await),
            (10, 6, false)
        );
    });
}

#[test]
fn replay_after_n_and_acks() {
    let r = test_redis();
    let (_store, mut handles) = start(config(&r.url, &r.prefix), 1);
    on_shard(handles.remove(0), |h| async move {
        for i in 1..=10u64 {
            committed(
                call(
                    &h,
                    commit("ivy", "jo", &format!("c{i}"), 100 + i, "{}", 1_000),
                )
                .await,
            );
        }
        let rep = call(&h, replay("ivy", 4, 3)).await.expect("replay");
        assert_eq!(offsets(&rep), vec![5, 6, 7]);
        assert!(
            matches!(rep, Reply::Replay { more: true, .. }),
            "cut at the limit"
        );
        assert_eq!(
            offsets(&call(&h, replay("ivy", 7, 0)).await.expect("replay")),
            vec![8, 9, 10]
        );
        assert_eq!(
            offsets(&call(&h, replay("ivy", 10, 0)).await.expect("replay")),
            Vec::<u64>::new()
        );
        // A lastOffset beyond anything sane is clamped, not an error.
        assert_eq!(
            offsets(&call(&h, replay("ivy", u64::MAX, 0)).await.expect("replay")),
            Vec::<u64>::new()
        );

        let ack = |up_to| Request::AckUpTo {
            user: "ivy".into(),
            up_to,
        };
        assert_eq!(call(&h, ack(6)).await, Ok(Reply::Acked(6)));
        assert_eq!(
            call(&h, ack(3)).await,
            Ok(Reply::Acked(6)),
            "never backwards"
        );
        // Replay starts after max(lastOffset, acked).
        assert_eq!(
            offsets(&call(&h, replay("ivy", 0, 0)).await.expect("replay")),
            vec![7, 8, 9, 10]
        );

        let ids = |ids: &[u64]| Request::AckIds {
            user: "ivy".into(),
            msg_ids: ids.to_vec().into_boxed_slice(),
        };
        assert_eq!(call(&h, ids(&[108, 4242])).await, Ok(Reply::AckedIds(1)));
        assert_eq!(
            call(&h, ids(&[108])).await,
            Ok(Reply::AckedIds(0)),
            "already acked"
        );
        assert_eq!(call(&h, ids(&[])).await, Ok(Reply::AckedIds(0)));
        assert_eq!(
            offsets(&call(&h, replay("ivy", 0, 0)).await.expect("replay")),
            vec![7, 9, 10]
        );

        assert_eq!(
            call(&h, ack(u64::MAX)).await,
            Ok(Reply::Acked(10)),
            "clamped to the head"
        );
        assert_eq!(
            offsets(&call(&h, replay("ivy", 0, 0)).await.expect("replay")),
            Vec::<u64>::new()
        );
        let head = call(&h, Request::Head { user: "ivy".into() }).await;
        assert!(
            matches!(head, Ok(Reply::Head(hd)) if hd.head == 10 && hd.acked == 10 && hd.lost == 0)
        );
        // Acking keeps the offsets: the next commit is 11.
        assert_eq!(
            committed(call(&h, commit("ivy", "jo", "c11", 111, "{}", 1_000)).await).1,
            11
        );
        // An ack for a user with no log creates nothing.
        assert_eq!(
            call(
                &h,
                Request::AckUpTo {
                    user: "ghost".into(),
                    up_to: 5
                }
            )
            .await,
            Ok(Reply::Acked(0))
        );
    });
}

#[test]
fn sessions_set_refresh_and_compare_and_delete() {
    let r = test_redis();
    let (_store, mut handles) = start(config(&r.url, &r.prefix), 1);
    on_shard(handles.remove(0), |h| async move {
        let rec = |node: &str, conn| SessionRecord {
            node: node.into(),
            shard: 3,
            conn,
            connected_at_ms: 1_700_000_000_000,
        };
        let set = |r| Request::SetSession {
            user: "kim".into(),
            record: r,
        };
        let refresh = |node: &str, conn| Request::RefreshSession {
            user: "kim".into(),
            node: node.into(),
            conn,
        };
        let remove = |node: &str, conn| Request::RemoveSession {
            user: "kim".into(),
            node: node.into(),
            conn,
        };
        let get = || Request::GetSession { user: "kim".into() };

        assert_eq!(call(&h, get()).await, Ok(Reply::Session(None)));
        assert_eq!(
            call(&h, set(rec("node-a", 7))).await,
            Ok(Reply::Session(None))
        );
        assert_eq!(
            call(&h, get()).await,
            Ok(Reply::Session(Some(rec("node-a", 7))))
        );
        assert_eq!(call(&h, refresh("node-a", 7)).await, Ok(Reply::Owned(true)));
        // The user reconnects on node b: setting answers the record it replaced.
        assert_eq!(
            call(&h, set(rec("node-b", 1))).await,
            Ok(Reply::Session(Some(rec("node-a", 7))))
        );
        // Node a's heartbeat and clean disconnect no longer touch it.
        assert_eq!(
            call(&h, refresh("node-a", 7)).await,
            Ok(Reply::Owned(false))
        );
        assert_eq!(call(&h, remove("node-a", 7)).await, Ok(Reply::Owned(false)));
        // Same node, older connection: not the owner either.
        assert_eq!(call(&h, remove("node-b", 0)).await, Ok(Reply::Owned(false)));
        assert_eq!(
            call(&h, get()).await,
            Ok(Reply::Session(Some(rec("node-b", 1))))
        );
        assert_eq!(call(&h, remove("node-b", 1)).await, Ok(Reply::Owned(true)));
        assert_eq!(call(&h, get()).await, Ok(Reply::Session(None)));
        assert_eq!(
            call(&h, refresh("node-b", 1)).await,
            Ok(Reply::Owned(false)),
            "gone"
        );
        assert!(matches!(
            call(&h, remove("", 1)).await,
            Err(StoreError::BadRequest(_))
        ));
    });
}

#[test]
fn two_nodes_see_one_log() {
    let r = test_redis();
    let (_a, mut ha) = start(config(&r.url, &r.prefix), 1);
    let (_b, mut hb) = start(config(&r.url, &r.prefix), 1);
    // Node a commits while the user is connected there…
    on_shard(ha.remove(0), |h| async move {
        for i in 1..=3u64 {
            committed(
                call(
                    &h,
                    commit("lee", "max", &format!("c{i}"), (1 << 48) + i, "{}", 1_000),
                )
                .await,
            );
        }
        assert_eq!(
            call(
                &h,
                Request::AckUpTo {
                    user: "lee".into(),
                    up_to: 1
                }
            )
            .await,
            Ok(Reply::Acked(1))
        );
    });
    // …the user resumes on node b, which continues the offsets and the dedup memory.
    on_shard(hb.remove(0), |h| async move {
        let rep = call(&h, replay("lee", 1, 0)).await.expect("replay");
        assert_eq!(offsets(&rep), vec![2, 3]);
        let retry =
            committed(call(&h, commit("lee", "max", "c3", (2 << 48) + 1, "{}", 1_001)).await);
        assert_eq!(retry, ((1 << 48) + 3, 3, true), "node a's answer");
        let next =
            committed(call(&h, commit("lee", "max", "c4", (2 << 48) + 2, "{}", 1_002)).await);
        assert_eq!(next, ((2 << 48) + 2, 4, false));
        let rep = call(&h, replay("lee", 0, 0)).await.expect("replay");
        let Reply::Replay { head, entries, .. } = rep else {
            panic!("replay")
        };
        assert_eq!((head.head, head.acked), (4, 1));
        let ids: Vec<u64> = entries.iter().map(|e| e.msg_id).collect();
        assert_eq!(ids, vec![(1 << 48) + 2, (1 << 48) + 3, (2 << 48) + 2]);
    });
}

#[test]
fn many_shards_pipeline_and_get_their_own_completions() {
    const SHARDS: usize = 3;
    const PER_SHARD: u64 = 3_000;
    const USERS_PER_SHARD: u64 = 7;
    let r = test_redis();
    let cfg = StoreConfig {
        pipeline_batch: 64,
        shard_capacity: 256,
        ..config(&r.url, &r.prefix)
    };
    let (store, handles) = start(cfg, SHARDS);
    let joins: Vec<_> = handles
        .into_iter()
        .map(|handle| {
            spawn_shard(handle, |h| async move {
                let shard = h.shard() as u64;
                let user = |i: u64| format!("s{shard}u{}", i % USERS_PER_SHARD);
                let mut next = 0u64;
                let mut got = vec![None; PER_SHARD as usize];
                let mut out = Vec::new();
                let mut received = 0;
                while received < PER_SHARD {
                    // Keep the pipe full: submit until Full, then take what is ready.
                    while next < PER_SHARD {
                        let tag = (shard << 32) | next;
                        let req =
                            commit(&user(next), "sender", &format!("m{next}"), tag, "{}", 1_000);
                        match h.try_submit(tag, req) {
                            Ok(()) => next += 1,
                            Err(Full(req)) => {
                                assert!(
                                    matches!(req, Request::Commit { msg_id, .. } if msg_id == tag)
                                );
                                break;
                            }
                        }
                    }
                    out.clear();
                    with_deadline(h.recv_batch(&mut out, 128)).await;
                    for Completion { tag, result } in out.drain(..) {
                        assert_eq!(tag >> 32, shard, "completion routed to its own shard");
                        let i = tag & 0xffff_ffff;
                        let (msg_id, offset, dup) = committed(result);
                        assert_eq!((msg_id, dup), (tag, false));
                        assert!(
                            got[i as usize].replace(offset).is_none(),
                            "one completion per request"
                        );
                        received += 1;
                    }
                }
                // Per user, offsets follow submission order: 1, 2, 3, …
                for i in 0..PER_SHARD {
                    assert_eq!(
                        got[i as usize],
                        Some(i / USERS_PER_SHARD + 1),
                        "request {i}"
                    );
                }
                h.counters()
            })
        })
        .collect();
    let mut total = gateway::store::HandleCounters::default();
    for j in joins {
        total.merge(&j.join().expect("shard"));
    }
    assert_eq!(total.submitted, SHARDS as u64 * PER_SHARD);
    assert_eq!(total.completed, total.submitted);
    assert_eq!(total.errors, 0);
    let bridge = store.counters();
    assert_eq!(bridge.commands, total.submitted);
    assert!(
        bridge.batches < bridge.commands,
        "pipelined: {} commands in {} round trips",
        bridge.commands,
        bridge.batches
    );
}

#[test]
fn full_queue_hands_the_request_back() {
    let r = test_redis();
    let cfg = StoreConfig {
        shard_capacity: 8,
        ..config(&r.url, &r.prefix)
    };
    let (_store, mut handles) = start(cfg, 1);
    on_shard(handles.remove(0), |h| async move {
        for i in 0..8 {
            h.try_submit(i, Request::Head { user: "nat".into() })
                .expect("room");
        }
        // Completions not yet received still count: the ninth is refused and handed back.
        let refused = h.try_submit(8, Request::Head { user: "oz".into() });
        assert_eq!(refused, Err(Full(Request::Head { user: "oz".into() })));
        assert_eq!(h.counters().queue_full, 1);
        let mut out = Vec::new();
        while out.len() < 8 {
            with_deadline(h.recv_batch(&mut out, 100)).await;
        }
        let tags: Vec<u64> = out.iter().map(|c| c.tag).collect();
        assert_eq!(tags, (0..8).collect::<Vec<_>>(), "FIFO per shard");
        assert_eq!(h.outstanding(), 0);
        h.try_submit(9, Request::Head { user: "oz".into() })
            .expect("room again");
        out.clear();
        with_deadline(h.recv_batch(&mut out, 100)).await;
        assert_eq!(out[0].tag, 9);
    });
}

#[test]
fn noscript_reloads_scripts() {
    let server = RedisServer::start();
    let (store, mut handles) = start(config(&server.url(), "ns"), 1);
    let url = server.url();
    on_shard(handles.remove(0), move |h| async move {
        assert_eq!(
            committed(call(&h, commit("pat", "q", "a", 1, "{}", 1_000)).await).1,
            1
        );
        let mut con = direct(&url);
        let _: () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query(&mut con)
            .expect("flush");
        assert_eq!(
            committed(call(&h, commit("pat", "q", "b", 2, "{}", 1_000)).await).1,
            2
        );
    });
    assert!(store.counters().script_reloads >= 1);
    assert!(store.health());
}

#[test]
fn redis_down_fails_fast_then_recovers_without_reusing_offsets() {
    let mut server = RedisServer::persistent();
    let (store, mut handles) = start(config(&server.url(), "rs"), 1);
    let health = store.health_probe();
    let (to_shard, on_shard_rx) = std::sync::mpsc::channel::<&'static str>();
    let (to_test, from_shard) = std::sync::mpsc::channel::<&'static str>();
    let shard = spawn_shard(handles.remove(0), move |h| async move {
        for i in 1..=3u64 {
            assert_eq!(
                committed(call(&h, commit("quin", "r", &format!("c{i}"), i, "{}", 1_000)).await).1,
                i
            );
        }
        to_test.send("committed").expect("test alive");
        // Wait (without blocking the executor for long) until the test killed Redis.
        while on_shard_rx.try_recv().is_err() {
            glommio::timer::sleep(Duration::from_millis(10)).await;
        }
        // Every request now completes, with Unavailable, until the bridge has noticed.
        let mut unavailable = 0;
        let deadline = Instant::now() + Duration::from_secs(30);
        while h.healthy() || unavailable == 0 {
            assert!(Instant::now() < deadline, "health never turned false");
            match call(&h, commit("quin", "r", "c4", 4, "{}", 1_000)).await {
                Err(StoreError::Unavailable) => unavailable += 1,
                other => panic!("expected Unavailable, got {other:?}"),
            }
        }
        // While down: fail fast, every time.
        for _ in 0..20 {
            assert_eq!(
                call(
                    &h,
                    Request::Head {
                        user: "quin".into()
                    }
                )
                .await,
                Err(StoreError::Unavailable)
            );
        }
        to_test.send("saw unavailable").expect("test alive");
        while on_shard_rx.try_recv().is_err() {
            glommio::timer::sleep(Duration::from_millis(10)).await;
        }
        // Redis is back: the bridge reconnects by itself (scripts reloaded on the new server
        // process) and the offsets continue where they were.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !h.healthy() {
            assert!(Instant::now() < deadline, "never recovered");
            glommio::timer::sleep(Duration::from_millis(20)).await;
        }
        let (msg_id, offset, dup) =
            committed(call(&h, commit("quin", "r", "c4", 4, "{}", 1_000)).await);
        assert_eq!(
            (msg_id, offset, dup),
            (4, 4, false),
            "no offset reuse after the restart"
        );
        assert_eq!(
            committed(call(&h, commit("quin", "r", "c2", 99, "{}", 1_000)).await),
            (2, 2, true)
        );
        let rep = call(&h, replay("quin", 0, 0)).await.expect("replay");
        assert_eq!(offsets(&rep), vec![1, 2, 3, 4]);
        h.counters()
    });
    assert_eq!(
        from_shard.recv_timeout(Duration::from_secs(60)),
        Ok("committed")
    );
    server.kill();
    to_shard.send("killed").expect("shard alive");
    assert_eq!(
        from_shard.recv_timeout(Duration::from_secs(60)),
        Ok("saw unavailable")
    );
    assert!(!health.is_healthy());
    server.restart();
    to_shard.send("restarted").expect("shard alive");
    let counters = shard.join().expect("shard");
    assert!(counters.unavailable >= 21, "{counters:?}");
    assert!(health.is_healthy());
    let bridge = store.counters();
    assert!(bridge.reconnects >= 1, "{bridge:?}");
    assert!(bridge.unavailable >= 21, "{bridge:?}");
}

#[test]
fn dropped_store_completes_with_unavailable() {
    let r = test_redis();
    let (store, mut handles) = start(config(&r.url, &r.prefix), 1);
    drop(store);
    on_shard(handles.remove(0), |h| async move {
        assert!(!h.healthy());
        assert_eq!(
            call(&h, Request::Head { user: "sam".into() }).await,
            Err(StoreError::Unavailable)
        );
    });
}

/// Throughput of one bridge thread: `cargo test --release -p gateway --test redis_store --
/// --ignored --nocapture commit_rate`. Two shards keep the pipe full with commits to 1,000
/// users (200-byte payloads) for `RTC_STORE_BENCH_COMMITS` (default 200,000) commits.
#[test]
#[ignore = "measurement, run by name in release mode"]
fn commit_rate() {
    let r = test_redis();
    let total: u64 = std::env::var("RTC_STORE_BENCH_COMMITS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let shards = 2;
    let (store, handles) = start(config(&r.url, &r.prefix), shards);
    let per_shard = total / shards as u64;
    let payload: String = format!("{{\"text\":\"{}\"}}", "x".repeat(188));
    let mut con = direct(&r.url);
    let redis_cpu_before = redis_cpu_seconds(&mut con);
    let started = Instant::now();
    let joins: Vec<_> = handles
        .into_iter()
        .map(|handle| {
            let payload = payload.clone();
            spawn_shard(handle, move |h| async move {
                let shard = h.shard() as u64;
                let (mut next, mut received) = (0u64, 0u64);
                let mut out = Vec::new();
                while received < per_shard {
                    while next < per_shard {
                        let user = format!("b{shard}u{}", next % 500);
                        let req = commit(&user, "sender", &format!("m{next}"), next, &payload, now);
                        if h.try_submit(next, req).is_err() {
                            break;
                        }
                        next += 1;
                    }
                    out.clear();
                    received += h.recv_batch(&mut out, 1024).await as u64;
                    assert!(out.iter().all(|c| c.result.is_ok()));
                }
            })
        })
        .collect();
    for j in joins {
        j.join().expect("shard");
    }
    let secs = started.elapsed().as_secs_f64();
    let redis_cpu = redis_cpu_seconds(&mut con) - redis_cpu_before;
    let bridge_cpu = thread_cpu_seconds("store-bridge-0");
    let c = store.counters();
    let n = per_shard * shards as u64;
    println!(
        "commit_rate: {n} commits in {secs:.2} s = {:.0} commits/s through 1 bridge thread \
         ({} round trips, {:.1} commands per round trip; CPU per commit: redis-server {:.1} us, \
         bridge thread {:.2} us)",
        n as f64 / secs,
        c.batches,
        c.commands as f64 / c.batches.max(1) as f64,
        redis_cpu * 1e6 / n as f64,
        bridge_cpu * 1e6 / n as f64,
    );
}

/// User + system CPU seconds of this process's thread named `name` (`/proc/self/task`).
fn thread_cpu_seconds(name: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return f64::NAN;
    };
    for t in tasks.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        // Fields after the `(comm)`: state is field 3, utime 14, stime 15 (clock ticks, 100/s).
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        return (ticks(11) + ticks(12)) / 100.0;
    }
    f64::NAN
}

/// redis-server's user + system CPU seconds so far (`INFO cpu`).
fn redis_cpu_seconds(con: &mut redis::Connection) -> f64 {
    let info: String = redis::cmd("INFO").arg("cpu").query(con).expect("info");
    info.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            matches!(k, "used_cpu_sys" | "used_cpu_user").then(|| v.trim().parse::<f64>().ok())?
        })
        .sum()
}

#[test]
fn unreachable_redis_fails_fast_and_reports_unhealthy() {
    // A port nothing listens on (bound, then released).
    let port = testkit::free_port();
    let cfg = config(&format!("redis://127.0.0.1:{port}/"), "down");
    let (store, mut handles) = Store::start(cfg, 1).expect("starts without redis");
    assert!(!store.wait_healthy(Duration::from_millis(300)));
    on_shard(handles.remove(0), |h| async move {
        for i in 0..50 {
            let r = call(&h, commit("tom", "uma", &format!("c{i}"), i, "{}", 1_000)).await;
            assert_eq!(r, Err(StoreError::Unavailable));
        }
        let c = h.counters();
        assert_eq!((c.submitted, c.completed, c.unavailable), (50, 50, 50));
    });
    assert!(store.counters().connect_failures >= 1);
    assert!(!store.health());
}

#[test]
fn a_lost_head_counter_never_reuses_offsets() {
    let r = test_redis();
    let (_store, mut handles) = start(config(&r.url, &r.prefix), 1);
    let (url, prefix) = (r.url.clone(), r.prefix.clone());
    on_shard(handles.remove(0), move |h| async move {
        for i in 1..=3u64 {
            committed(call(&h, commit("vic", "w", &format!("c{i}"), i, "{}", 1_000)).await);
        }
        assert_eq!(
            call(
                &h,
                Request::AckUpTo {
                    user: "vic".into(),
                    up_to: 3
                }
            )
            .await,
            Ok(Reply::Acked(3))
        );
        // The meta hash (head counter) disappears while the (now empty) log stream survives.
        let mut con = direct(&url);
        let _: i64 = redis::cmd("DEL")
            .arg(format!("{prefix}:{{vic}}:meta"))
            .query(&mut con)
            .expect("del");
        let (_, offset, _) = committed(call(&h, commit("vic", "w", "c4", 4, "{}", 1_000)).await);
        assert_eq!(offset, 4, "continues above the log's last id");
        let head = call(&h, Request::Head { user: "vic".into() }).await;
        assert!(matches!(head, Ok(Reply::Head(hd)) if hd.head == 4));
        assert_eq!(
            committed(call(&h, commit("vic", "w", "c5", 5, "{}", 1_000)).await).1,
            5
        );
    });
}

#[test]
fn replays_and_pipelines_are_cut_by_bytes() {
    let r = test_redis();
    let cfg = StoreConfig {
        replay_max_bytes: 10,
        pipeline_max_bytes: 1,
        ..config(&r.url, &r.prefix)
    };
    let (store, mut handles) = start(cfg, 1);
    on_shard(handles.remove(0), |h| async move {
        for i in 0..5 {
            h.try_submit(
                i,
                commit("xia", "yan", &format!("c{i}"), i, "123456", 1_000),
            )
            .expect("room");
        }
        let mut out = Vec::new();
        while out.len() < 5 {
            with_deadline(h.recv_batch(&mut out, 16)).await;
        }
        assert!(out.iter().all(|c| c.result.is_ok()));
        let h = &h;
        let page = |after| async move {
            match call(h, replay("xia", after, 100)).await {
                Ok(Reply::Replay { entries, more, .. }) => {
                    (entries.iter().map(|e| e.offset).collect::<Vec<_>>(), more)
                }
                other => panic!("{other:?}"),
            }
        };
        // 6-byte payloads, 10-byte budget: the entry that crosses it is the last one.
        assert_eq!(page(0).await, (vec![1, 2], true));
        assert_eq!(page(2).await, (vec![3, 4], true));
        assert_eq!(page(4).await, (vec![5], false));
        assert_eq!(page(5).await, (vec![], false));
    });
    let c = store.counters();
    assert_eq!(
        c.batches, c.commands,
        "a 1-byte budget sends one command per round trip"
    );
}
