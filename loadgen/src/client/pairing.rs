//! `--pairing`: choose user ids so that every `direct` pair lands on the same node, or on two
//! different nodes, of the cluster control runs. Cross-node and same-node delivery can then be
//! measured in one session with the same users, rates and servers.
//!
//! The ring is fetched once from control (`GET /v1/ring`) and evaluated locally with the same
//! pure `rtc-ring` library control and the gateways use, so the choice matches the real
//! placement as long as the ring does not change during the run. The even user of pair `k`
//! keeps its plain id; the odd one tries `<prefix>-<i>`, then `<prefix>-<i>.1`, `.2`, … until
//! the owner relation holds.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use clap::ValueEnum;
use rtc_ring::Ring;
use serde::{Deserialize, Serialize};

use super::url::Url;

/// Largest ring snapshot accepted from control.
pub const MAX_RING_BYTES: usize = 4 * 1024 * 1024;
/// Candidate ids tried per user before giving up (with two equal nodes each try succeeds with
/// probability ½, so 64 failures in a row mean the cluster cannot satisfy the request).
pub const MAX_CANDIDATES: u32 = 64;
/// How long fetching the ring may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// How `direct` pairs its users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pairing {
    /// Plain ids `<prefix>-<n>`: wherever the ring puts them.
    #[default]
    Any,
    /// Both users of a pair owned by the same node (delivery stays on that node).
    SameNode,
    /// The two users of a pair owned by different nodes (every message crosses the relay).
    CrossNode,
}

/// Why pairing could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum PairingError {
    /// Control could not be reached or answered badly.
    #[error("fetching the ring from control: {0}")]
    Fetch(String),
    /// The snapshot did not parse.
    #[error("control's ring snapshot: {0}")]
    Ring(#[from] rtc_ring::RingError),
    /// No id satisfied the requested relation (e.g. cross-node with one node).
    #[error("no id for user {index} is {relation} its partner after {MAX_CANDIDATES} tries (how many active nodes does the ring have?)")]
    Unsatisfiable {
        /// Global user index.
        index: u64,
        /// "on the same node as" / "on another node than".
        relation: &'static str,
    },
}

/// Ids for users `first .. first + count` (pairs `2k, 2k+1` never straddle a worker).
pub fn pair_ids(
    ring: &Ring,
    prefix: &str,
    first: u64,
    count: u64,
    pairing: Pairing,
) -> Result<Vec<String>, PairingError> {
    let mut ids = Vec::with_capacity(count as usize);
    for i in first..first + count {
        let plain = format!("{prefix}-{i}");
        if pairing == Pairing::Any || i % 2 == 0 {
            ids.push(plain);
            continue;
        }
        let partner = format!("{prefix}-{}", i - 1);
        let partner_owner = ring.owner(&partner).map(|n| n.id.clone());
        let want_same = pairing == Pairing::SameNode;
        let mut found = None;
        for attempt in 0..MAX_CANDIDATES {
            let id = if attempt == 0 {
                plain.clone()
            } else {
                format!("{plain}.{attempt}")
            };
            let owner = ring.owner(&id).map(|n| n.id.clone());
            if owner.is_some() && (owner == partner_owner) == want_same {
                found = Some(id);
                break;
            }
        }
        match found {
            Some(id) => ids.push(id),
            None => {
                return Err(PairingError::Unsatisfiable {
                    index: i,
                    relation: if want_same {
                        "on the same node as"
                    } else {
                        "on another node than"
                    },
                })
            }
        }
    }
    Ok(ids)
}

/// `GET /v1/ring` from control (blocking: called once when a worker starts).
pub fn fetch_ring(control: &Url, addr: SocketAddr) -> Result<Ring, PairingError> {
    let err = |e: std::io::Error| PairingError::Fetch(e.to_string());
    let mut s = TcpStream::connect_timeout(&addr, FETCH_TIMEOUT).map_err(err)?;
    s.set_read_timeout(Some(FETCH_TIMEOUT)).map_err(err)?;
    let base = control.base_path();
    // HTTP/1.0: the answer is never chunked and ends when the server closes.
    let req = format!(
        "GET {base}/v1/ring HTTP/1.0\r\nHost: {}\r\n\r\n",
        control.authority()
    );
    s.write_all(req.as_bytes()).map_err(err)?;
    let mut body = Vec::new();
    s.take(MAX_RING_BYTES as u64 + 1)
        .read_to_end(&mut body)
        .map_err(err)?;
    if body.len() > MAX_RING_BYTES {
        return Err(PairingError::Fetch(format!(
            "ring snapshot over {MAX_RING_BYTES} bytes"
        )));
    }
    let end = body
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| PairingError::Fetch("no response head".into()))?;
    let head = String::from_utf8_lossy(&body[..end]);
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        return Err(PairingError::Fetch(format!("status {status}")));
    }
    let json = std::str::from_utf8(&body[end + 4..])
        .map_err(|_| PairingError::Fetch("ring snapshot is not UTF-8".into()))?;
    Ok(Ring::from_json(json)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc_ring::{Diff, Node, NodeState};

    fn ring(nodes: usize) -> Ring {
        let mut r = Ring::new(rtc_ring::DEFAULT_VNODES_PER_WEIGHT);
        for i in 0..nodes {
            r = r
                .apply(&Diff::AddNode(Node {
                    id: format!("n{i}"),
                    weight: 1,
                    url: format!("ws://127.0.0.1:{}/ws", 9000 + i),
                    state: NodeState::Active,
                }))
                .unwrap();
        }
        r
    }

    fn owner(r: &Ring, id: &str) -> String {
        r.owner(id).unwrap().id.clone()
    }

    #[test]
    fn cross_and_same_node_pairs_hold_their_relation() {
        let r = ring(3);
        for (pairing, same) in [(Pairing::CrossNode, false), (Pairing::SameNode, true)] {
            let ids = pair_ids(&r, "lg", 10, 200, pairing).unwrap();
            assert_eq!(ids.len(), 200);
            for pair in ids.chunks(2) {
                assert_eq!(owner(&r, &pair[0]) == owner(&r, &pair[1]), same, "{pair:?}");
            }
            // Even users keep their plain ids, so verification output names stay readable.
            assert_eq!(ids[0], "lg-10");
        }
    }

    #[test]
    fn any_keeps_plain_ids_and_cross_node_on_one_node_is_an_error() {
        let r = ring(1);
        let ids = pair_ids(&r, "u", 0, 4, Pairing::Any).unwrap();
        assert_eq!(ids, ["u-0", "u-1", "u-2", "u-3"]);
        assert!(matches!(
            pair_ids(&r, "u", 0, 4, Pairing::CrossNode),
            Err(PairingError::Unsatisfiable { index: 1, .. })
        ));
    }
}
