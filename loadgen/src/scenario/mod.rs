//! The scenarios, one file each; this file holds what they share: the ramp, the settle, the
//! measured phase and the drain.
//!
//! Timeline of a worker: users start connecting at the worker's share of `--ramp`; when every
//! user's first connect has finished (or `--connect-timeout` after the ramp), the measured
//! phase of `--duration` seconds starts, the same instant for all of the worker's users;
//! then the drain waits (up to `--drain` s) until every user whose connection was lost is
//! back, every written message is answered and every acknowledged one delivered; then every
//! user closes.

pub mod churn;
pub mod connect;
pub mod direct;
pub mod echo;
mod schedule;

use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::config::ScenarioKind;
use crate::worker::{Phase, Worker};

pub use schedule::Schedule;

/// Pause between the end of the ramp and the measured phase (lets the last handshakes' work
/// on the server finish before measuring).
const SETTLE: Duration = Duration::from_millis(500);
/// How often the drain re-checks whether everything in flight has arrived.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// Runs this worker's share of the scenario to the end.
pub async fn run(w: Rc<Worker>) {
    match w.spec.scenario {
        ScenarioKind::Connect => drive(&w, connect::user).await,
        ScenarioKind::Direct => drive(&w, direct::user).await,
        ScenarioKind::Echo => drive(&w, echo::user).await,
        ScenarioKind::Churn => drive(&w, churn::user).await,
    }
}

async fn drive<F, Fut>(w: &Rc<Worker>, user: F)
where
    F: Fn(Rc<Worker>, u64) -> Fut,
    Fut: Future<Output = ()> + 'static,
{
    let users = w.spec.users;
    let mut tasks = Vec::with_capacity(users as usize);
    for local in 0..users {
        tokio::time::sleep_until(w.connect_at(local).into()).await;
        tasks.push(tokio::task::spawn_local(user(w.clone(), local)));
    }
    let deadline = Instant::now() + Duration::from_secs_f64(w.spec.args.connect_timeout);
    while w.settled.get() < users && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let start = Instant::now() + SETTLE;
    let end = start + Duration::from_secs_f64(w.spec.args.duration);
    w.phase.send_replace(Some(Phase { start, end }));
    tokio::time::sleep_until(end.into()).await;
    let drain_end = end + Duration::from_secs_f64(w.spec.args.drain);
    while Instant::now() < drain_end && !in_flight_done(w) {
        tokio::time::sleep(DRAIN_POLL).await;
    }
    w.stop.send_replace(true);
    for t in tasks {
        let _ = t.await;
    }
}

/// Whether every written message has been answered, every acknowledged one delivered, and
/// every user whose connection was lost is back (or gave up).
fn in_flight_done(w: &Worker) -> bool {
    let f = w.figures.borrow();
    let c = &f.counters;
    match w.spec.scenario {
        // With `--verify`, exactly: no acked message still awaited. Without, by count (a
        // refused message that did commit may be delivered too, so this can end early).
        ScenarioKind::Direct if w.spec.args.verify => {
            w.away.get() == 0 && w.unanswered.get() == 0 && w.awaiting.get() == 0
        }
        ScenarioKind::Direct => {
            w.away.get() == 0 && w.unanswered.get() == 0 && c.delivered + c.gaps >= c.acked
        }
        ScenarioKind::Echo => c.delivered + f.errors.total() >= c.sent,
        ScenarioKind::Connect | ScenarioKind::Churn => true,
    }
}

/// Marks user `local`'s first connect as finished (either way).
pub(crate) fn settled(w: &Worker) {
    w.settled.set(w.settled.get() + 1);
}
