//! `echo`: plain WebSocket echo against any server (`/echo` of the gateway, the baseline, or
//! a peer). Each connection sends `--rate / --users` messages/s open loop; the round trip is
//! measured from the scheduled send time. With `--verify`, every written message counts as
//! promised and must come back exactly once, in order.

use std::rc::Rc;
use std::time::Instant;

use super::Schedule;
use crate::client::conn::{ConnError, Event};
use crate::client::frames::{self, Stamp};
use crate::worker::{connect_plain, Phase, Worker};

/// One connection: connect, wait for the measured phase, send on schedule, read echoes.
pub async fn user(w: Rc<Worker>, local: u64) {
    let index = w.spec.first_user + local;
    let conn = connect_plain(&w, index).await;
    super::settled(&w);
    let Ok(mut conn) = conn else { return };
    let mut sched: Option<Schedule> = None;
    let mut phase: Option<Phase> = None;
    let outcome: Result<(), ConnError> = loop {
        let next_due = sched.as_ref().and_then(Schedule::next_due);
        tokio::select! {
            // Stop first: nothing is sent after the drain decided everything has arrived.
            biased;
            _ = w.stopped() => break Ok(()),
            p = w.phase(), if phase.is_none() => {
                phase = Some(p);
                let rate = w.spec.args.rate / w.spec.total_users as f64;
                let slot = index as f64 / w.spec.total_users as f64;
                sched = Schedule::new(p.start, p.end, rate, slot);
            }
            _ = tokio::time::sleep_until(next_due.unwrap_or_else(Instant::now).into()), if next_due.is_some() => {
                if let Some(s) = sched.as_mut() {
                    let mut n = 0;
                    for (seq, due) in s.take_due(Instant::now()) {
                        let p = frames::payload(Stamp { seq, t: w.us_of(due) }, w.spec.args.payload);
                        conn.writer.text(p.as_bytes());
                        w.verify_acked(local as usize, seq);
                        n += 1;
                    }
                    w.count(|c| { c.sent += n; c.acked += n });
                }
                if let Err(e) = conn.try_flush() { break Err(e) }
            }
            r = conn.read(|ev, _| {
                let (Event::Text(b) | Event::Binary(b)) = ev;
                match frames::read_stamp(b) {
                    Some(st) => {
                        w.record_latency(w.now_us().saturating_sub(st.t));
                        w.count(|c| c.delivered += 1);
                        w.verify_delivered(local as usize, st.seq);
                    }
                    None => w.error("foreign_payload"),
                }
                Ok(())
            }) => if let Err(e) = r { break Err(e) },
        }
    };
    w.count(|c| c.pings_answered += conn.writer.pongs);
    match outcome {
        Ok(()) => conn.close().await,
        Err(e) => w.error(&e.kind()),
    }
    w.conn_down();
}
