//! What travels on the shard mesh, and how a shard handles what it receives.
//!
//! Every item is boxed so a ring slot is one pointer wide whatever the variant.

use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::rc::Rc;

use super::messaging;
use super::Shard;

/// An item on a shard→shard ring.
#[derive(Debug)]
pub enum ShardMsg {
    /// An upgraded connection for a user whose home is the receiving shard.
    Handoff(Box<Handoff>),
    /// A direct message to commit for a user whose home is the receiving shard.
    Commit(Box<CommitReq>),
    /// The answer to a [`ShardMsg::Commit`], for the sender's home shard.
    Sent(Box<SentReply>),
    /// A commit that failed, for the sender's home shard (`error` frame to the sender).
    Refused(Box<Refused>),
}

/// A connection moving to its user's home shard (the 101 is already written).
#[derive(Debug)]
pub struct Handoff {
    /// The socket (a dup of the accepting shard's descriptor).
    pub fd: OwnedFd,
    /// The authenticated user.
    pub user: Box<str>,
    /// `lastOffset` of a verified resume, if any.
    pub last_offset: Option<u64>,
    /// The client sent a resume token (valid or not): counted as a reconnect.
    pub reconnect: bool,
    /// Bytes the client sent after its request head.
    pub leftover: Vec<u8>,
    /// The IP counted in the per-IP limit (released when the connection ends).
    pub counted_ip: Option<IpAddr>,
    /// The peer address (for the connection's span).
    pub peer: Option<std::net::SocketAddr>,
}

/// A message to commit on the recipient's home shard.
#[derive(Debug)]
pub struct CommitReq {
    /// Sender user id.
    pub from: Box<str>,
    /// Recipient user id (home = the receiving shard).
    pub to: Box<str>,
    /// Sender's message id (dedup key with `from`).
    pub client_msg_id: Box<str>,
    /// The payload's raw JSON.
    pub payload: Box<[u8]>,
    /// The sender's home shard, where the answer goes.
    pub reply_to: usize,
}

/// `sent {clientMsgId, msgId, offset, to}` for the sender.
#[derive(Debug)]
pub struct SentReply {
    /// Sender user id.
    pub sender: Box<str>,
    /// Sender's message id.
    pub client_msg_id: Box<str>,
    /// Assigned message id.
    pub msg_id: u64,
    /// Recipient's offset.
    pub offset: u64,
    /// Recipient.
    pub to: Box<str>,
}

/// A refused commit, for the sender.
#[derive(Debug)]
pub struct Refused {
    /// Sender user id.
    pub sender: Box<str>,
    /// Sender's message id.
    pub client_msg_id: Box<str>,
    /// Why.
    pub code: rtc_protocol::frames::ErrorCode,
}

/// Handles one item from another shard.
pub fn handle(shard: &Rc<Shard>, msg: ShardMsg) {
    match msg {
        ShardMsg::Handoff(h) => messaging::adopt(shard, *h),
        ShardMsg::Commit(c) => messaging::commit_remote(shard, *c),
        ShardMsg::Sent(s) => messaging::deliver_sent(shard, &s),
        ShardMsg::Refused(r) => messaging::deliver_refused(shard, &r),
    }
}
