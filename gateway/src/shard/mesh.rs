//! The shard mesh: one bounded lock-free ring per ordered pair of shards, and one inbox waker
//! per shard. Shards share nothing else on the message path.
//!
//! The rings are made on the main thread ([`MeshPlan::new`]) and each shard takes its row of
//! senders ([`Mesh`]) and its column of receivers ([`Inbox`]) once ([`MeshPlan::take`]). A full
//! ring hands the item back ([`Mesh::try_send`] → `Err(item)`) so the caller applies and
//! counts the drop policy.
//!
//! # Why not glommio's `shared_channel`
//! glommio 0.9's receiver notifies the *sender's* executor on every item it pops (so a sender
//! waiting for room can go on), which writes that executor's eventfd whenever it is asleep.
//! Our senders never wait for room (a full ring is a counted drop), so each of those was a
//! wasted park/wake cycle of the other core: at 5,000 msg/s among 1,000 users the shard that
//! had just handed a commit over and gone to sleep was woken by the pop, found nothing, and
//! parked again before the `sent` answer arrived. Here the ring is a
//! `crossbeam_queue::ArrayQueue` and the receiving shard's inbox task parks its `Waker` in an
//! [`AtomicWaker`]: a sender wakes it only after a push, and only the first push after the
//! inbox went idle finds a waker to wake, so a burst costs one cross-core wake-up. glommio
//! wakers may be woken from another thread: the waker is queued to its executor, whose eventfd
//! is written only if it sleeps (see `store/handle.rs`, which does the same with its bridge).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use atomic_waker::AtomicWaker;
use crossbeam_queue::ArrayQueue;

/// Capacity of each shard→shard ring, in messages.
pub const RING_CAPACITY: usize = 4096;
/// Items the inbox task handles in one poll before it lets the shard's other tasks run.
pub const INBOX_BUDGET: usize = 1024;

/// Every ring and inbox waker, handed out once per shard.
///
/// The `Mutex` is used only at start-up while shards take their ends; it is never touched on
/// the message path.
#[derive(Debug)]
pub struct MeshPlan<T: Send + 'static> {
    ends: Mutex<Vec<Option<ShardEnds<T>>>>,
}

/// One shard's senders and inbox.
pub type ShardEnds<T> = (Mesh<T>, Inbox<T>);

impl<T: Send + 'static> MeshPlan<T> {
    /// Rings for `n` shards (n·(n−1) rings of [`RING_CAPACITY`]).
    pub fn new(n: usize) -> Self {
        let wakers: Vec<Arc<AtomicWaker>> = (0..n).map(|_| Arc::new(AtomicWaker::new())).collect();
        // rings[from][to]
        let rings: Vec<Vec<Option<Arc<ArrayQueue<T>>>>> = (0..n)
            .map(|from| {
                (0..n)
                    .map(|to| (from != to).then(|| Arc::new(ArrayQueue::new(RING_CAPACITY))))
                    .collect()
            })
            .collect();
        let ends = (0..n)
            .map(|id| {
                let mesh = Mesh {
                    rings: rings[id].clone(),
                    wakers: wakers.clone(),
                };
                let inbox = Inbox {
                    rings: rings.iter().filter_map(|row| row[id].clone()).collect(),
                    waker: wakers[id].clone(),
                };
                Some((mesh, inbox))
            })
            .collect();
        Self {
            ends: Mutex::new(ends),
        }
    }

    /// Takes shard `id`'s senders and inbox (once).
    pub fn take(&self, id: usize) -> Option<ShardEnds<T>> {
        let mut ends = self.ends.lock().unwrap_or_else(|e| e.into_inner());
        ends.get_mut(id).and_then(Option::take)
    }
}

/// A shard's senders: `rings[j]` goes to shard `j` (`None` at the shard's own index), and
/// `wakers[j]` is shard `j`'s inbox waker.
#[derive(Debug)]
pub struct Mesh<T: Send + 'static> {
    rings: Vec<Option<Arc<ArrayQueue<T>>>>,
    wakers: Vec<Arc<AtomicWaker>>,
}

impl<T: Send + 'static> Mesh<T> {
    /// Sends to shard `to`. `Err(Some(item))` when the ring is full (the caller counts the
    /// drop) or `to` is not another shard.
    pub fn try_send(&self, to: usize, item: T) -> Result<(), Option<T>> {
        let Some(Some(ring)) = self.rings.get(to) else {
            return Err(Some(item));
        };
        ring.push(item).map_err(Some)?;
        // After the push: an inbox that registered before it is woken here; one that
        // registers after it sees the item when it re-checks its rings.
        self.wakers[to].wake();
        Ok(())
    }
}

/// A shard's receiving ends: every ring that comes to it, and the waker its inbox task parks.
#[derive(Debug)]
pub struct Inbox<T: Send + 'static> {
    rings: Vec<Arc<ArrayQueue<T>>>,
    waker: Arc<AtomicWaker>,
}

impl<T: Send + 'static> Inbox<T> {
    /// Hands every item that arrives to `handle`, in each ring's order, forever. Run it as
    /// one task per shard.
    pub async fn run(self, mut handle: impl FnMut(T)) {
        Drain {
            inbox: &self,
            handle: &mut handle,
        }
        .await
    }

    /// Handles up to `budget` queued items. Returns how many.
    fn drain(&self, handle: &mut impl FnMut(T), budget: usize) -> usize {
        let mut n = 0;
        for ring in &self.rings {
            while n < budget {
                let Some(item) = ring.pop() else { break };
                handle(item);
                n += 1;
            }
        }
        n
    }

    fn is_empty(&self) -> bool {
        self.rings.iter().all(|r| r.is_empty())
    }
}

/// The inbox task's future: never completes.
struct Drain<'a, T: Send + 'static, F: FnMut(T)> {
    inbox: &'a Inbox<T>,
    handle: &'a mut F,
}

impl<T: Send + 'static, F: FnMut(T)> Future for Drain<'_, T, F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let mut budget = INBOX_BUDGET;
        loop {
            let n = this.inbox.drain(this.handle, budget);
            budget -= n;
            if budget == 0 {
                // More may be queued: let the shard's other tasks run, then come back.
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            if n == 0 {
                // Register, then look again: a push that raced the register is seen here,
                // a later one wakes us.
                this.inbox.waker.register(cx.waker());
                if this.inbox.is_empty() {
                    return Poll::Pending;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_ring_hands_the_item_back() {
        let plan = MeshPlan::<u32>::new(2);
        let (mesh, _inbox) = plan.take(0).expect("ends");
        for i in 0..RING_CAPACITY as u32 {
            assert!(mesh.try_send(1, i).is_ok());
        }
        assert_eq!(mesh.try_send(1, 7), Err(Some(7)));
        assert_eq!(mesh.try_send(0, 8), Err(Some(8)), "no ring to itself");
        assert_eq!(mesh.try_send(5, 9), Err(Some(9)), "no such shard");
        assert!(plan.take(0).is_none(), "taken once");
    }

    #[test]
    fn items_arrive_in_order_across_threads() {
        const N: u32 = 100_000;
        let plan = Arc::new(MeshPlan::<u32>::new(2));
        let (mesh, _) = plan.take(0).expect("ends");
        let (_, inbox) = plan.take(1).expect("ends");
        let receiver = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .spawn(move || async move {
                let mut next = 0u32;
                let done = std::rc::Rc::new(std::cell::Cell::new(false));
                let flag = done.clone();
                let task = glommio::spawn_local(inbox.run(move |v| {
                    assert_eq!(v, next, "FIFO per ring");
                    next += 1;
                    if next == N {
                        flag.set(true);
                    }
                }));
                while !done.get() {
                    glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
                }
                drop(task);
            })
            .expect("executor");
        let mut i = 0;
        while i < N {
            match mesh.try_send(1, i) {
                Ok(()) => i += 1,
                Err(_) => std::thread::yield_now(),
            }
        }
        receiver.join().expect("receiver");
    }
}
