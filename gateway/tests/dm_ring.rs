//! Many direct messages in flight among users spread over two shards (most connections are
//! accepted on one shard and handed to their user's home on the other): every message must
//! reach its recipient, once, in order, and every sender must get its `sent`. Guards the
//! hand-off and wake-up paths that `examples/dm_cpu` drives for its CPU figures.

mod support;

use serde_json::json;
use support::Gateway;

/// Users in the ring (user i sends to user i+1).
const USERS: usize = 6;
/// Messages each user sends.
const PER_USER: u64 = 400;
/// Messages a user has outstanding before it waits for their `sent` answers.
const IN_FLIGHT: u64 = 8;

#[test]
fn every_message_in_a_ring_arrives_across_shards() {
    let gw = Gateway::start(&["--shards", "2"], &[]);
    let names: Vec<String> = (0..USERS).map(|i| format!("ring{i}")).collect();
    let homes: std::collections::HashSet<usize> =
        names.iter().map(|n| rtc_ring::shard_of(n, 2)).collect();
    assert_eq!(homes.len(), 2, "the users should live on both shards");
    // Connect everyone before anyone sends, as dm_cpu does.
    let clients: Vec<_> = names.iter().map(|n| gw.client(n)).collect();
    let threads: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            let to = names[(i + 1) % USERS].clone();
            let from = names[(i + USERS - 1) % USERS].clone();
            std::thread::spawn(move || {
                let (mut sents, mut received) = (0u64, 0u64);
                let on_frame = |v: serde_json::Value, sents: &mut u64, received: &mut u64| match v
                    ["type"]
                    .as_str()
                {
                    Some("sent") => *sents += 1,
                    Some("message") => {
                        *received += 1;
                        assert_eq!(v["from"], from.as_str());
                        assert_eq!(v["payload"]["n"].as_u64(), Some(*received), "in order");
                    }
                    Some("gap") | Some("error") => panic!("unexpected frame {v}"),
                    _ => {}
                };
                let mut sent = 0u64;
                while sent < PER_USER {
                    for _ in 0..IN_FLIGHT.min(PER_USER - sent) {
                        sent += 1;
                        c.send_msg(&to, &format!("m{sent}"), json!({ "n": sent }));
                    }
                    while sents < sent {
                        let v = c.recv().unwrap_or_else(|| {
                            panic!("closed/timed out waiting for sent {}/{sent}", sents + 1)
                        });
                        on_frame(v, &mut sents, &mut received);
                    }
                }
                while received < PER_USER {
                    let v = c.recv().unwrap_or_else(|| {
                        panic!("closed/timed out with {received}/{PER_USER} messages")
                    });
                    on_frame(v, &mut sents, &mut received);
                }
                assert_eq!(sents, PER_USER);
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
}
