//! Typed ring changes. Every topology change — an operator command, a node joining, a
//! drain — is one of these, applied by `Ring::apply` / `Ring::apply_all`.

use serde::{Deserialize, Serialize};

use crate::node::{Node, NodeState};

/// One change to the ring's membership. JSON: `{"op":"addNode", …}` (camelCase fields), so
/// control can log and publish the exact change that made each version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum Diff {
    /// A new node (its id must not be in the ring yet).
    AddNode(Node),
    /// Takes a node out; its keys go to the successors of its points.
    RemoveNode {
        /// The node.
        id: String,
    },
    /// Changes a node's weight (its points are regenerated, so it gains or loses arcs).
    SetWeight {
        /// The node.
        id: String,
        /// The new weight, 1..=`MAX_WEIGHT`.
        weight: u32,
    },
    /// Drains a node (it keeps its place but owns no keys) or makes it active again.
    SetState {
        /// The node.
        id: String,
        /// The new state.
        state: NodeState,
    },
}

impl Diff {
    /// The id of the node this change is about.
    pub fn node_id(&self) -> &str {
        match self {
            Diff::AddNode(n) => &n.id,
            Diff::RemoveNode { id } | Diff::SetWeight { id, .. } | Diff::SetState { id, .. } => id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape() {
        let d = Diff::SetState {
            id: "gw-1".into(),
            state: NodeState::Draining,
        };
        let j = serde_json::to_string(&d).unwrap();
        assert_eq!(j, r#"{"op":"setState","id":"gw-1","state":"draining"}"#);
        let add: Diff =
            serde_json::from_str(r#"{"op":"addNode","id":"a","weight":2,"url":"ws://a/ws"}"#)
                .unwrap();
        assert_eq!(add, Diff::AddNode(Node::new("a", 2, "ws://a/ws")));
        assert_eq!(add.node_id(), "a");
    }
}
