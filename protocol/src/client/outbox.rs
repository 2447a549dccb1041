//! Messages sent but not yet confirmed by `sent`, to resend after a reconnect.

use crate::frames::{OwnedClientFrame, RawPayload};
use std::collections::VecDeque;

/// Default bound on unconfirmed sends.
pub const MAX_OUTBOX: usize = 1024;

/// One unconfirmed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingSend {
    /// Its `clientMsgId` (the server deduplicates a resend with the same id).
    pub client_msg_id: String,
    /// Recipient.
    pub to: String,
    /// Payload.
    pub payload: RawPayload,
    /// Times it was sent.
    pub attempts: u32,
}

impl PendingSend {
    /// The `message` frame for it.
    pub fn frame(&self) -> OwnedClientFrame {
        OwnedClientFrame::Message {
            to: self.to.clone(),
            client_msg_id: self.client_msg_id.clone(),
            payload: self.payload.clone(),
        }
    }
}

/// Unconfirmed sends in send order, bounded.
#[derive(Debug, Clone)]
pub struct Outbox {
    /// Oldest first; confirmations usually arrive in this order.
    items: VecDeque<PendingSend>,
    /// Bound on `items`.
    capacity: usize,
}

impl Default for Outbox {
    fn default() -> Self {
        Self::new(MAX_OUTBOX)
    }
}

impl Outbox {
    /// An outbox holding at most `capacity` (at least 1) unconfirmed messages.
    pub fn new(capacity: usize) -> Self {
        Outbox {
            items: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Records a message as sent once. When full, hands it back: the caller waits for
    /// confirmations (this is the client's send window).
    pub fn push(
        &mut self,
        client_msg_id: String,
        to: String,
        payload: RawPayload,
    ) -> Result<(), PendingSend> {
        let p = PendingSend {
            client_msg_id,
            to,
            payload,
            attempts: 1,
        };
        if self.items.len() >= self.capacity {
            return Err(p);
        }
        self.items.push_back(p);
        Ok(())
    }

    /// Removes a message on `sent` (or on a final `error`); `None` if unknown (e.g. a
    /// confirmation of a resend that was already confirmed).
    pub fn confirm(&mut self, client_msg_id: &str) -> Option<PendingSend> {
        let i = self
            .items
            .iter()
            .position(|p| p.client_msg_id == client_msg_id)?;
        self.items.remove(i)
    }

    /// Frames to resend after a reconnect, oldest first; counts the attempt.
    pub fn resend(&mut self) -> Vec<OwnedClientFrame> {
        self.items
            .iter_mut()
            .map(|p| {
                p.attempts += 1;
                p.frame()
            })
            .collect()
    }

    /// Unconfirmed messages, oldest first.
    pub fn pending(&self) -> impl Iterator<Item = &PendingSend> {
        self.items.iter()
    }

    /// Number of unconfirmed messages.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when everything sent was confirmed.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> RawPayload {
        RawPayload::from_json(s).unwrap()
    }

    #[test]
    fn confirm_resend_and_bound() {
        let mut ob = Outbox::new(2);
        ob.push("a".into(), "bob".into(), p("1")).unwrap();
        ob.push("b".into(), "bob".into(), p("2")).unwrap();
        assert_eq!(
            ob.push("c".into(), "bob".into(), p("3"))
                .unwrap_err()
                .client_msg_id,
            "c"
        );
        assert_eq!(ob.confirm("a").unwrap().payload, p("1"));
        assert_eq!(ob.confirm("a"), None);
        let frames = ob.resend();
        assert_eq!(
            frames,
            vec![OwnedClientFrame::Message {
                to: "bob".into(),
                client_msg_id: "b".into(),
                payload: p("2")
            }]
        );
        assert_eq!(ob.pending().next().unwrap().attempts, 2);
        assert_eq!(ob.len(), 1);
    }
}
