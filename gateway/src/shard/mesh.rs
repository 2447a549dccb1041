//! The shard mesh: one bounded lock-free SPSC ring (glommio `shared_channel`) per ordered pair
//! of shards. Shards share nothing else on the message path.
//!
//! The rings are made on the main thread ([`MeshPlan::new`]) and each shard takes its row of
//! senders and column of receivers ([`MeshPlan::take`]); a glommio sender or receiver must be
//! connected on the shard that uses it ([`MeshEnds::connect`]). A full ring hands the item back
//! ([`Mesh::try_send`] → `Err(item)`) so the caller applies and counts the drop policy.

use std::sync::Mutex;

use glommio::channels::shared_channel::{
    self, ConnectedReceiver, ConnectedSender, SharedReceiver, SharedSender,
};

/// Capacity of each shard→shard ring, in messages.
pub const RING_CAPACITY: usize = 4096;

/// The not-yet-connected ends of every ring, handed out once per shard.
///
/// The `Mutex` is used only at start-up while shards take their ends; it is never touched on
/// the message path.
#[derive(Debug)]
pub struct MeshPlan<T: Send + 'static> {
    ends: Mutex<Vec<Option<MeshEnds<T>>>>,
}

/// One shard's ends: `senders[j]` goes to shard `j`, `receivers[i]` comes from shard `i`
/// (`None` at the shard's own index).
#[derive(Debug)]
pub struct MeshEnds<T: Send + 'static> {
    senders: Vec<Option<SharedSender<T>>>,
    receivers: Vec<Option<SharedReceiver<T>>>,
}

impl<T: Send + 'static> MeshPlan<T> {
    /// Rings for `n` shards (n·(n−1) rings of [`RING_CAPACITY`]).
    pub fn new(n: usize) -> Self {
        let mut senders: Vec<Vec<Option<SharedSender<T>>>> =
            (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
        let mut receivers: Vec<Vec<Option<SharedReceiver<T>>>> =
            (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
        for (from, row) in senders.iter_mut().enumerate() {
            for (to, slot) in row.iter_mut().enumerate() {
                if from != to {
                    let (tx, rx) = shared_channel::new_bounded(RING_CAPACITY);
                    *slot = Some(tx);
                    receivers[to][from] = Some(rx);
                }
            }
        }
        let ends = senders
            .into_iter()
            .zip(receivers)
            .map(|(senders, receivers)| Some(MeshEnds { senders, receivers }))
            .collect();
        Self {
            ends: Mutex::new(ends),
        }
    }

    /// Takes shard `id`'s ends (once).
    pub fn take(&self, id: usize) -> Option<MeshEnds<T>> {
        let mut ends = self.ends.lock().unwrap_or_else(|e| e.into_inner());
        ends.get_mut(id).and_then(Option::take)
    }
}

/// A shard's connected senders.
#[derive(Debug)]
pub struct Mesh<T: Send + 'static> {
    senders: Vec<Option<ConnectedSender<T>>>,
}

impl<T: Send + 'static> MeshEnds<T> {
    /// Connects every end on the calling shard. Completes once every peer shard has connected
    /// its matching end, so all shards call this concurrently at start-up.
    pub async fn connect(self) -> (Mesh<T>, Vec<ConnectedReceiver<T>>) {
        let mut connects = Vec::new();
        for rx in self.receivers.into_iter().flatten() {
            connects.push(glommio::spawn_local(rx.connect()));
        }
        let mut senders = Vec::with_capacity(self.senders.len());
        for tx in self.senders {
            senders.push(match tx {
                Some(tx) => Some(tx.connect().await),
                None => None,
            });
        }
        let mut receivers = Vec::with_capacity(connects.len());
        for c in connects {
            receivers.push(c.await);
        }
        (Mesh { senders }, receivers)
    }
}

impl<T: Send + 'static> Mesh<T> {
    /// Sends to shard `to`. `Err(Some(item))` when the ring is full or closed (the caller
    /// counts the drop); `Err(None)` if glommio failed in a way that consumed the item.
    pub fn try_send(&self, to: usize, item: T) -> Result<(), Option<T>> {
        match self.senders.get(to) {
            Some(Some(tx)) => tx.try_send(item).map_err(|e| match e {
                glommio::GlommioError::Closed(glommio::ResourceType::Channel(v))
                | glommio::GlommioError::WouldBlock(glommio::ResourceType::Channel(v)) => Some(v),
                _ => None,
            }),
            _ => Err(Some(item)),
        }
    }
}
