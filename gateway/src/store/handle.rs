//! A shard's end of the store: [`StoreHandle`] (submit without blocking, await completions
//! without busy polling) and the [`Lane`] it shares with its bridge thread.
//!
//! # Why a lock-free ring + a `Waker`, not a glommio channel
//! The bridge is a plain thread doing blocking Redis I/O, so it cannot hold a glommio
//! `ConnectedSender` (those need an executor on the sending side). Instead each shard has a
//! lane of two bounded lock-free rings (`crossbeam_queue::ArrayQueue`): requests in, completions
//! out. The shard's receiving task parks its `Waker` in an [`AtomicWaker`]; the bridge pushes
//! all completions of a round trip for that shard and then wakes it **once**. glommio 0.9
//! wakers may be woken from a foreign thread: the waker is queued to the executor and its
//! eventfd is written only if the executor is asleep, so a busy shard pays one queue push per
//! round trip and an idle one a single eventfd write. In the other direction the shard pushes
//! and unparks the bridge only when the bridge said it is going to sleep (one flag load per
//! submit), so a burst of submits costs one wake-up.
//!
//! Bounds: a shard may have at most `shard_capacity` requests outstanding (queued, in flight,
//! or completed and not yet received). That single number bounds both rings, so the bridge
//! never has to drop a completion, and `try_submit` hands the request back (`Full`) beyond it.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::thread::Thread;

use atomic_waker::AtomicWaker;
use crossbeam_queue::ArrayQueue;

use super::types::{BridgeCounters, Completion, Full, HandleCounters, Request, StoreError};

/// One shard's rings to and from its bridge.
#[derive(Debug)]
pub(crate) struct Lane {
    /// Requests waiting for the bridge, FIFO.
    pub(crate) requests: ArrayQueue<(u64, Request)>,
    /// Completions waiting for the shard, FIFO.
    pub(crate) done: ArrayQueue<Completion>,
    /// The shard task waiting for completions.
    pub(crate) waker: AtomicWaker,
}

impl Lane {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            requests: ArrayQueue::new(capacity),
            done: ArrayQueue::new(capacity),
            waker: AtomicWaker::new(),
        }
    }

    /// Completes every queued request with `Unavailable` (Redis down, or no bridge any more)
    /// and wakes the shard if there was any. Returns how many.
    pub(crate) fn fail_all(&self) -> u64 {
        let mut failed = 0;
        while let Some((tag, _)) = self.requests.pop() {
            // Room is guaranteed: the shard's outstanding bound covers both rings.
            let _ = self.done.push(Completion {
                tag,
                result: Err(StoreError::Unavailable),
            });
            failed += 1;
        }
        if failed > 0 {
            self.waker.wake();
        }
        failed
    }
}

/// What one bridge thread shares with its shards and with [`Store`](super::Store).
#[derive(Debug)]
pub(crate) struct BridgeShared {
    /// The lanes this bridge serves.
    pub(crate) lanes: Vec<Arc<Lane>>,
    /// The bridge is about to park (or parked): submitters must unpark it.
    pub(crate) sleeping: AtomicBool,
    /// The bridge thread, for `unpark` (set by the thread itself when it starts).
    pub(crate) thread: OnceLock<Thread>,
    /// Connected to Redis with the scripts loaded, and the last round trip worked.
    pub(crate) healthy: AtomicBool,
    /// The store is being dropped: the bridge fails what is queued and exits.
    pub(crate) shutdown: AtomicBool,
    /// Bridge counters (written by the bridge thread only).
    pub(crate) counters: AtomicBridgeCounters,
}

impl BridgeShared {
    pub(crate) fn new(lanes: Vec<Arc<Lane>>) -> Self {
        Self {
            lanes,
            sleeping: AtomicBool::new(false),
            thread: OnceLock::new(),
            healthy: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            counters: AtomicBridgeCounters::default(),
        }
    }

    /// Called after a push: wakes the bridge if it is (going) to sleep. The fence pairs with
    /// the one in the bridge's sleep so either the bridge sees the request or we see its flag.
    pub(crate) fn notify(&self) {
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::Relaxed) && self.sleeping.swap(false, Ordering::AcqRel) {
            if let Some(t) = self.thread.get() {
                t.unpark();
            }
        }
    }

    /// Whether any lane has a request waiting.
    pub(crate) fn any_queued(&self) -> bool {
        self.lanes.iter().any(|l| !l.requests.is_empty())
    }
}

/// [`BridgeCounters`] as atomics (relaxed: they are statistics).
#[derive(Debug, Default)]
pub(crate) struct AtomicBridgeCounters {
    pub(crate) batches: AtomicU64,
    pub(crate) commands: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) unavailable: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    pub(crate) connect_failures: AtomicU64,
    pub(crate) script_reloads: AtomicU64,
}

impl AtomicBridgeCounters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> BridgeCounters {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        BridgeCounters {
            batches: r(&self.batches),
            commands: r(&self.commands),
            errors: r(&self.errors),
            unavailable: r(&self.unavailable),
            reconnects: r(&self.reconnects),
            connect_failures: r(&self.connect_failures),
            script_reloads: r(&self.script_reloads),
        }
    }
}

/// One shard's handle to the store. Used from that shard's thread only (it is `Send` so it
/// can be moved into the shard at start-up, and not `Sync`).
///
/// Exactly one task per shard should await [`recv_batch`](Self::recv_batch) (the lane keeps
/// one waker); it dispatches completions by their `tag`.
#[derive(Debug)]
pub struct StoreHandle {
    shard: usize,
    lane: Arc<Lane>,
    bridge: Arc<BridgeShared>,
    capacity: usize,
    counters: Cell<HandleCounters>,
}

impl StoreHandle {
    pub(crate) fn new(
        shard: usize,
        lane: Arc<Lane>,
        bridge: Arc<BridgeShared>,
        capacity: usize,
    ) -> Self {
        Self {
            shard,
            lane,
            bridge,
            capacity,
            counters: Cell::new(HandleCounters::default()),
        }
    }

    /// The shard this handle belongs to.
    pub fn shard(&self) -> usize {
        self.shard
    }

    /// Hands `request` to the bridge without blocking. `tag` comes back in its
    /// [`Completion`]. `Err(Full(request))` when `shard_capacity` requests are outstanding.
    ///
    /// Every accepted request gets exactly one completion, also when Redis is down
    /// (`StoreError::Unavailable`, promptly) or the store shut down.
    pub fn try_submit(&self, tag: u64, request: Request) -> Result<(), Full> {
        let mut c = self.counters.get();
        if c.submitted - c.completed >= self.capacity as u64 {
            c.queue_full += 1;
            self.counters.set(c);
            return Err(Full(request));
        }
        if let Err((_, request)) = self.lane.requests.push((tag, request)) {
            // Unreachable while the outstanding bound holds; refuse rather than lose it.
            c.queue_full += 1;
            self.counters.set(c);
            return Err(Full(request));
        }
        self.bridge.notify();
        // The store may have shut down after the bridge's last look at this lane: then no
        // one else will complete the request. `notify`'s fence orders the push before this
        // load, and `Store::drop` sets the flag before its own last drain, so whichever of
        // the two looks last completes it (a pop is exclusive, so exactly once).
        if self.bridge.shutdown.load(Ordering::SeqCst) {
            self.lane.fail_all();
        }
        c.submitted += 1;
        self.counters.set(c);
        Ok(())
    }

    /// Moves up to `max` ready completions into `out` without waiting; returns how many.
    pub fn try_recv(&self, out: &mut Vec<Completion>, max: usize) -> usize {
        let mut c = self.counters.get();
        let mut n = 0;
        while n < max {
            let Some(done) = self.lane.done.pop() else {
                break;
            };
            if let Err(e) = &done.result {
                c.errors += 1;
                if *e == StoreError::Unavailable {
                    c.unavailable += 1;
                }
            }
            out.push(done);
            n += 1;
        }
        c.completed += n as u64;
        self.counters.set(c);
        n
    }

    /// Waits until at least one completion is ready, then moves up to `max` (at least 1) into
    /// `out`; resolves to how many. Runtime-agnostic: it parks the task's `Waker`, which the
    /// bridge thread wakes once per round trip.
    pub fn recv_batch<'a>(&'a self, out: &'a mut Vec<Completion>, max: usize) -> RecvBatch<'a> {
        RecvBatch {
            handle: self,
            out,
            max: max.max(1),
        }
    }

    /// Most requests this shard may have outstanding (`shard_capacity`).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Requests submitted and not yet received.
    pub fn outstanding(&self) -> u64 {
        let c = self.counters.get();
        c.submitted - c.completed
    }

    /// This shard's counters.
    pub fn counters(&self) -> HandleCounters {
        self.counters.get()
    }

    /// Whether this shard's bridge is connected to Redis (cheap: one atomic load).
    pub fn healthy(&self) -> bool {
        self.bridge.healthy.load(Ordering::Acquire)
    }
}

/// The future of [`StoreHandle::recv_batch`].
#[derive(Debug)]
pub struct RecvBatch<'a> {
    handle: &'a StoreHandle,
    out: &'a mut Vec<Completion>,
    max: usize,
}

impl Future for RecvBatch<'_> {
    type Output = usize;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<usize> {
        let this = self.get_mut();
        let n = this.handle.try_recv(this.out, this.max);
        if n > 0 {
            return Poll::Ready(n);
        }
        this.handle.lane.waker.register(cx.waker());
        // A completion pushed between the first look and the registration would have woken
        // the previous waker: look again.
        let n = this.handle.try_recv(this.out, this.max);
        if n > 0 {
            Poll::Ready(n)
        } else {
            Poll::Pending
        }
    }
}
