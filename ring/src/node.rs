//! Ring members: a node's identity, weight, public URL and state, and their validation.

use serde::{Deserialize, Serialize};

use crate::error::RingError;
use crate::limits::{MAX_NODE_ID_LEN, MAX_URL_LEN, MAX_WEIGHT};

/// One socket node (a gateway process) as the ring sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    /// Stable identity; also the seed of the node's ring points, so renaming a node moves
    /// all of its keys. 1..=64 bytes of `[A-Za-z0-9_.:-]`.
    pub id: String,
    /// Relative capacity: the node gets `weight × vnodes_per_weight` points. 1..=1000.
    pub weight: u32,
    /// Public WebSocket URL clients are sent to (`ws://` or `wss://`).
    pub url: String,
    /// Whether the node takes new keys. Missing in JSON means active.
    #[serde(default)]
    pub state: NodeState,
}

impl Node {
    /// An active node.
    pub fn new(id: impl Into<String>, weight: u32, url: impl Into<String>) -> Self {
        Node {
            id: id.into(),
            weight,
            url: url.into(),
            state: NodeState::Active,
        }
    }

    /// Checks id, weight and URL; the ring calls this for every node it admits.
    pub fn validate(&self) -> Result<(), RingError> {
        validate_id(&self.id)?;
        validate_weight(&self.id, self.weight)?;
        validate_url(&self.id, &self.url)
    }

    /// Whether this node owns keys (draining nodes own none).
    pub fn is_active(&self) -> bool {
        self.state == NodeState::Active
    }
}

/// Whether a node takes keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Owns its arcs of the ring.
    #[default]
    Active,
    /// Owns no keys: lookups skip its points, so its keys go to the next active successor.
    /// It keeps serving connected users while it hands them over (see LIFECYCLE.md).
    Draining,
}

pub(crate) fn validate_id(id: &str) -> Result<(), RingError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_NODE_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        // Cut what we echo back: the id may be a megabyte of garbage.
        Err(RingError::InvalidNodeId(truncate(id, MAX_NODE_ID_LEN + 8)))
    }
}

pub(crate) fn validate_weight(id: &str, weight: u32) -> Result<(), RingError> {
    if weight == 0 {
        return Err(RingError::ZeroWeight(id.to_owned()));
    }
    if weight > MAX_WEIGHT {
        return Err(RingError::WeightTooLarge {
            id: id.to_owned(),
            weight,
        });
    }
    Ok(())
}

fn validate_url(id: &str, url: &str) -> Result<(), RingError> {
    let rest = url
        .strip_prefix("ws://")
        .or_else(|| url.strip_prefix("wss://"));
    let ok = url.len() <= MAX_URL_LEN
        && match rest {
            // A host is required: "ws://" or "ws:///path" is not a place to send clients.
            Some(rest) => {
                !rest.is_empty()
                    && !rest.starts_with('/')
                    && rest.bytes().all(|b| b.is_ascii_graphic())
            }
            None => false,
        };
    if ok {
        Ok(())
    } else {
        Err(RingError::InvalidUrl {
            id: id.to_owned(),
            url: truncate(url, MAX_URL_LEN.min(128)),
        })
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        for ok in ["a", "node-1", "gw_2.eu:3", &"x".repeat(MAX_NODE_ID_LEN)] {
            assert!(validate_id(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a b",
            "a#1",
            "é",
            "a/b",
            &"x".repeat(MAX_NODE_ID_LEN + 1),
        ] {
            assert!(
                matches!(validate_id(bad), Err(RingError::InvalidNodeId(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn urls() {
        for ok in [
            "ws://10.0.0.1:8080/ws",
            "wss://gw1.example.com/ws",
            "ws://h",
        ] {
            assert!(validate_url("n", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "http://h/ws",
            "ws://",
            "ws:///ws",
            "ws://a b",
            "wss://h\n",
        ] {
            assert!(
                matches!(validate_url("n", bad), Err(RingError::InvalidUrl { .. })),
                "{bad}"
            );
        }
        let long = format!("ws://{}", "h".repeat(MAX_URL_LEN));
        assert!(validate_url("n", &long).is_err());
    }

    #[test]
    fn weights() {
        assert!(matches!(
            validate_weight("n", 0),
            Err(RingError::ZeroWeight(_))
        ));
        assert!(validate_weight("n", 1).is_ok());
        assert!(validate_weight("n", MAX_WEIGHT).is_ok());
        assert!(matches!(
            validate_weight("n", MAX_WEIGHT + 1),
            Err(RingError::WeightTooLarge { .. })
        ));
    }

    #[test]
    fn state_serde_is_lowercase_and_defaults_to_active() {
        let n: Node = serde_json::from_str(r#"{"id":"a","weight":1,"url":"ws://a"}"#).unwrap();
        assert_eq!(n.state, NodeState::Active);
        let mut d = n.clone();
        d.state = NodeState::Draining;
        let j = serde_json::to_string(&d).unwrap();
        assert!(j.contains(r#""state":"draining""#), "{j}");
    }
}
