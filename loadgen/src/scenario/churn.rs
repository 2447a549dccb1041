//! `churn`: every user reconnects periodically, `--rate` reconnects/s in total, presenting
//! the resume token and last offset from its previous `welcome` — the reconnect storm a
//! node restart or a network blip causes. Figures: reconnect (handshake) latency, resumes,
//! errors by kind (e.g. `close_4004` resume failed, `http_503` handshake shed). A failed
//! resume falls back to a fresh connect; failures back off like a real client
//! ([`reconnect`]).

use std::rc::Rc;
use std::time::Instant;

use super::Schedule;
use crate::worker::{connect_user, reconnect, Phase, Worker};

/// One user: connect, then at each scheduled moment drop the connection and resume.
pub async fn user(w: Rc<Worker>, local: u64) {
    let index = w.spec.first_user + local;
    let first = connect_user(&w, index, None).await;
    super::settled(&w);
    let Ok((mut conn, mut welcome)) = first else {
        return;
    };
    let mut sched: Option<Schedule> = None;
    let mut phase: Option<Phase> = None;
    loop {
        let next_due = sched.as_ref().and_then(Schedule::next_due);
        tokio::select! {
            // Stop first: nothing is sent after the drain decided everything has arrived.
            biased;
            _ = w.stopped() => break,
            p = w.phase(), if phase.is_none() => {
                phase = Some(p);
                let rate = w.spec.args.rate / w.spec.total_users as f64;
                let slot = index as f64 / w.spec.total_users as f64;
                sched = Schedule::new(p.start, p.end, rate, slot);
            }
            _ = tokio::time::sleep_until(next_due.unwrap_or_else(Instant::now).into()), if next_due.is_some() => {
                if let Some(s) = sched.as_mut() {
                    // One reconnect per wake-up even if several were due: a reconnect is
                    // not a message, and a late one is already visible in its latency.
                    let _ = s.take_due(Instant::now()).count();
                }
                w.count(|c| c.pings_answered += conn.writer.pongs);
                conn.close().await;
                w.conn_down();
                match reconnect(&w, index, Some((&welcome.resume_token, welcome.offset))).await {
                    Some((c, wel)) => { conn = c; welcome = wel; }
                    None => return,
                }
            }
            r = conn.read(|_, _| Ok(())) => if let Err(e) = r {
                // Lost without our asking: reconnect the way a client would.
                w.error(&e.kind());
                w.conn_down();
                let lost_at = w.user_lost();
                match reconnect(&w, index, Some((&welcome.resume_token, welcome.offset))).await {
                    Some((c, wel)) => { conn = c; welcome = wel; w.user_back(lost_at); }
                    None => { w.user_gave_up(lost_at); return }
                }
            },
        }
    }
    w.count(|c| c.pings_answered += conn.writer.pongs);
    conn.close().await;
    w.conn_down();
}
