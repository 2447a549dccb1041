//! `direct`: users in pairs (`2k` ↔ `2k+1`, always in the same worker) send each other direct
//! messages, `--rate` messages/s in total, open loop (see [`super::Schedule`]).
//!
//! Each message carries the sender's sequence number (also its `clientMsgId`) and its
//! scheduled send time; the receiver records `now - scheduled` as the end-to-end latency, the
//! sender records `sent` ack time - scheduled as the ack latency. Deliveries go through the
//! protocol's client [`Inbox`] (duplicates by offset/msgId dropped) and [`AckBatcher`]. A
//! lost connection is reconnected with resume (token + last contiguous offset) and backoff.

use std::rc::Rc;
use std::time::Instant;

use rtc_protocol::client::{AckBatcher, Inbox, Receipt, MAX_MISSING_RANGES};
use rtc_protocol::frames::OwnedServerFrame;

use super::Schedule;
use crate::client::conn::{ConnError, Event, Writer};
use crate::client::frames::{self, Stamp};
use crate::stats::histogram;
use crate::worker::{connect_user, reconnect, Phase, Worker};

/// Message ids each user's inbox remembers for duplicate detection. Every delivery carries an
/// offset, which catches replays on its own; the id window only backs it up, so a small one
/// keeps a simulated user's memory small (the protocol default preallocates for 1,024).
const INBOX_RECENT_IDS: usize = 128;

/// Per-user receive state.
struct Receiver {
    inbox: Inbox,
    acks: AckBatcher,
}

/// One user: connect, wait for the measured phase, send on schedule, receive, drain, close.
pub async fn user(w: Rc<Worker>, local: u64) {
    let index = w.spec.first_user + local;
    let partner = index ^ 1;
    let has_partner = partner < w.spec.total_users;
    let conn = connect_user(&w, index, None).await;
    super::settled(&w);
    let Ok((mut conn, mut welcome)) = conn else {
        return;
    };
    let mut rx = Receiver {
        inbox: Inbox::with_limits(welcome.offset, MAX_MISSING_RANGES, INBOX_RECENT_IDS),
        acks: AckBatcher::default(),
    };
    let to = w.user_id(partner);
    let mut sched: Option<Schedule> = None;
    let mut phase: Option<Phase> = None;
    let mut frame = Vec::new();
    loop {
        let outcome: Result<(), ConnError> = loop {
            let next_due = sched.as_ref().and_then(Schedule::next_due);
            tokio::select! {
                // Stop first: nothing is sent after the drain decided everything has arrived.
                biased;
                _ = w.stopped() => break Ok(()),
                p = w.phase(), if phase.is_none() => {
                    phase = Some(p);
                    let senders = (w.spec.total_users & !1).max(1);
                    let rate = w.spec.args.rate / senders as f64;
                    let slot = index as f64 / senders as f64;
                    sched = if has_partner { Schedule::new(p.start, p.end, rate, slot) } else { None };
                }
                _ = tokio::time::sleep_until(next_due.unwrap_or_else(Instant::now).into()), if next_due.is_some() => {
                    if let Some(s) = sched.as_mut() {
                        let mut n = 0;
                        for (seq, due) in s.take_due(Instant::now()) {
                            frame.clear();
                            frames::encode_direct(&to, Stamp { seq, t: w.us_of(due) }, w.spec.args.payload, &mut frame);
                            conn.writer.text(&frame);
                            n += 1;
                        }
                        w.count(|c| c.sent += n);
                    }
                    if let Err(e) = conn.try_flush() { break Err(e) }
                }
                r = conn.read(|ev, wr| on_event(&w, local, sched.as_ref(), &mut rx, ev, wr)) => {
                    if let Err(e) = r { break Err(e) }
                }
            }
        };
        match outcome {
            Ok(()) => break,
            Err(e) => {
                // Lost: count it, then reconnect like a client, resuming after the last offset
                // we hold; the inbox drops whatever the replay repeats.
                w.error(&e.kind());
                w.count(|c| c.pings_answered += conn.writer.pongs);
                w.conn_down();
                let last = rx.inbox.last_contiguous();
                match reconnect(&w, index, Some((&welcome.resume_token, last))).await {
                    Some((c, wel)) => {
                        conn = c;
                        welcome = wel;
                    }
                    None => return,
                }
            }
        }
    }
    if let Some(s) = sched {
        // Messages that were due but never written (the socket would not take them).
        let unsent = conn.writer.backlog() as u64 / (w.spec.args.payload as u64).max(1);
        w.count(|c| c.send_backlog += unsent.min(s.next));
    }
    w.count(|c| c.pings_answered += conn.writer.pongs);
    if let Some(ack) = rx.acks.flush(&rx.inbox) {
        frame.clear();
        ack.encode(&mut frame);
        conn.writer.text(&frame);
    }
    conn.close().await;
    w.conn_down();
}

fn on_event(
    w: &Worker,
    local: u64,
    sched: Option<&Schedule>,
    rx: &mut Receiver,
    ev: Event<'_>,
    wr: &mut Writer,
) -> Result<(), ConnError> {
    let Event::Text(text) = ev else { return Ok(()) };
    let Some(frame) = frames::parse(text) else {
        w.error("bad_frame");
        return Ok(());
    };
    match frame {
        OwnedServerFrame::Message {
            msg_id,
            offset,
            payload,
            ..
        } => {
            if rx.inbox.receive(offset, msg_id) == Receipt::Duplicate {
                w.count(|c| c.duplicates_dropped += 1);
                return Ok(());
            }
            let now_ms = w.now_us() / 1000;
            rx.acks.on_new(&rx.inbox, offset, msg_id, now_ms);
            if let Some(ack) = rx.acks.poll(&rx.inbox, now_ms) {
                let mut buf = Vec::with_capacity(64);
                ack.encode(&mut buf);
                wr.text(&buf);
            }
            let Some(st) = frames::read_stamp(payload.as_str().as_bytes()) else {
                w.error("foreign_payload");
                return Ok(());
            };
            w.record_latency(w.now_us().saturating_sub(st.t));
            w.count(|c| c.delivered += 1);
            if let Some(v) = w.verifiers.borrow_mut().get_mut(local as usize) {
                v.on_delivered(st.seq);
            }
        }
        OwnedServerFrame::Sent { client_msg_id, .. } => {
            w.count(|c| c.acked += 1);
            let Ok(seq) = client_msg_id.parse::<u64>() else {
                return Ok(());
            };
            if let Some(s) = sched {
                let us = w.now_us().saturating_sub(w.us_of(s.due(seq)));
                histogram::record(&mut w.figures.borrow_mut().ack_latency, us);
            }
            // The stream this ack belongs to is received by the partner (local ^ 1 in this
            // worker, since workers hold whole pairs).
            let partner_local = ((w.spec.first_user + local) ^ 1) - w.spec.first_user;
            if let Some(v) = w.verifiers.borrow_mut().get_mut(partner_local as usize) {
                v.on_acked(seq);
            }
        }
        OwnedServerFrame::Gap { from, to } => {
            rx.inbox.gap(from, to);
            w.count(|c| c.gaps += 1);
        }
        OwnedServerFrame::Error { code, .. } => w.error(&format!("server_{}", code.as_str())),
        OwnedServerFrame::Drain { .. } => w.error("drain"),
        _ => {}
    }
    Ok(())
}
