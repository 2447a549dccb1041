//! `direct`: users in pairs (`2k` ↔ `2k+1`, always in the same worker) send each other direct
//! messages, `--rate` messages/s in total, open loop (see [`super::Schedule`]).
//!
//! Each message carries the sender's sequence number (also its `clientMsgId`) and its
//! scheduled send time; the receiver records `now - scheduled` as the end-to-end latency, the
//! sender records `sent` ack time - scheduled as the ack latency. Deliveries go through the
//! protocol's client [`Inbox`] (duplicates by offset/msgId dropped) and [`AckBatcher`].
//!
//! # Lost connections (a node killed, drained, redirecting)
//! The user reconnects like a real client ([`reconnect`]: backoff, through control when
//! `--control` was given, resume token + last contiguous offset; a `drain` frame's token
//! replaces the welcome's). Every written message waits in the user's bounded window until the
//! server answers it: `sent` → **acked** (the commit point: from then on the message must be
//! delivered), `error` → **nacked** (refused, e.g. `unavailable` while Redis is down; not retried,
//! since a retry would overtake later messages). After a reconnect the messages still waiting
//! are written again with the same `clientMsgId` (**resent**; the server deduplicates one that
//! had committed, so it is not delivered twice). Whatever is still unanswered when the run ends
//! (or when the user gives up reconnecting) is **unacked**: never promised, so not delivered is
//! not "lost". `--verify`'s `lost` counts only acked messages never delivered.

use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Instant;

use rtc_protocol::client::{AckBatcher, Inbox, Receipt, MAX_MISSING_RANGES, MAX_OUTBOX};
use rtc_protocol::close;
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
/// Messages one user keeps waiting for their answer (the protocol client's send window); past
/// it the oldest is forgotten and counted unacked.
const MAX_UNANSWERED: usize = MAX_OUTBOX;

/// Per-user state the frames change.
struct UserState {
    inbox: Inbox,
    acks: AckBatcher,
    /// Sequence numbers written and not answered yet, oldest first (≤ [`MAX_UNANSWERED`]).
    unanswered: VecDeque<u64>,
    /// Token for the next resume: the welcome's, or a later `drain` frame's.
    resume_token: String,
}

impl UserState {
    /// Records `seq` as written and waiting for its answer.
    fn wrote(&mut self, w: &Worker, seq: u64) {
        if self.unanswered.len() >= MAX_UNANSWERED {
            self.unanswered.pop_front();
            w.unanswered.set(w.unanswered.get().saturating_sub(1));
            w.count(|c| c.unacked += 1);
        }
        self.unanswered.push_back(seq);
        w.unanswered.set(w.unanswered.get() + 1);
    }

    /// Takes `seq` off the waiting list; false if it was not on it.
    fn answered(&mut self, w: &Worker, seq: u64) -> bool {
        let Some(i) = self.unanswered.iter().position(|s| *s == seq) else {
            return false;
        };
        self.unanswered.remove(i);
        w.unanswered.set(w.unanswered.get().saturating_sub(1));
        true
    }

    /// Everything still waiting is given up on: counted unacked.
    fn abandon(&mut self, w: &Worker) {
        let n = self.unanswered.len() as u64;
        self.unanswered.clear();
        w.unanswered.set(w.unanswered.get().saturating_sub(n));
        w.count(|c| c.unacked += n);
    }
}

/// One user: connect, wait for the measured phase, send on schedule, receive, drain, close.
pub async fn user(w: Rc<Worker>, local: u64) {
    let index = w.spec.first_user + local;
    let partner = index ^ 1;
    let has_partner = partner < w.spec.total_users;
    let conn = connect_user(&w, index, None).await;
    super::settled(&w);
    let Ok((mut conn, welcome)) = conn else {
        return;
    };
    let mut st = UserState {
        inbox: Inbox::with_limits(welcome.offset, MAX_MISSING_RANGES, INBOX_RECENT_IDS),
        acks: AckBatcher::default(),
        unanswered: VecDeque::new(),
        resume_token: welcome.resume_token,
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
                            st.wrote(&w, seq);
                            n += 1;
                        }
                        w.count(|c| c.sent += n);
                    }
                    if let Err(e) = conn.try_flush() { break Err(e) }
                }
                r = conn.read(|ev, wr| on_event(&w, local, sched.as_ref(), &mut st, ev, wr)) => {
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
                let lost_at = w.user_lost();
                // 4004: the node cannot resume us (our offset is past its log: state lost).
                // Start over from whatever the new session replays.
                let refused = matches!(e, ConnError::Closed(Some(close::RESUME_FAILED)));
                if refused {
                    st.inbox = Inbox::with_limits(0, MAX_MISSING_RANGES, INBOX_RECENT_IDS);
                    st.acks = AckBatcher::default();
                }
                let last = st.inbox.last_contiguous();
                let resume = (!refused).then_some((st.resume_token.as_str(), last));
                match reconnect(&w, index, resume).await {
                    Some((c, wel)) => {
                        conn = c;
                        st.resume_token = wel.resume_token;
                        w.user_back(lost_at);
                        if let Some(s) = sched.as_ref() {
                            // Unanswered messages again, oldest first, before anything new.
                            for &seq in &st.unanswered {
                                frame.clear();
                                let stamp = Stamp {
                                    seq,
                                    t: w.us_of(s.due(seq)),
                                };
                                frames::encode_direct(&to, stamp, w.spec.args.payload, &mut frame);
                                conn.writer.text(&frame);
                            }
                            let n = st.unanswered.len() as u64;
                            w.count(|c| c.resent += n);
                        }
                    }
                    None => {
                        w.user_gave_up(lost_at);
                        st.abandon(&w);
                        return;
                    }
                }
            }
        }
    }
    st.abandon(&w);
    if let Some(s) = sched {
        // Messages that were due but never written (the socket would not take them).
        let unsent = conn.writer.backlog() as u64 / (w.spec.args.payload as u64).max(1);
        w.count(|c| c.send_backlog += unsent.min(s.next));
    }
    w.count(|c| c.pings_answered += conn.writer.pongs);
    if let Some(ack) = st.acks.flush(&st.inbox) {
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
    st: &mut UserState,
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
            if st.inbox.receive(offset, msg_id) == Receipt::Duplicate {
                w.count(|c| c.duplicates_dropped += 1);
                return Ok(());
            }
            let now_ms = w.now_us() / 1000;
            st.acks.on_new(&st.inbox, offset, msg_id, now_ms);
            if let Some(ack) = st.acks.poll(&st.inbox, now_ms) {
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
            w.verify_delivered(local as usize, st.seq);
        }
        OwnedServerFrame::Sent { client_msg_id, .. } => {
            let Ok(seq) = client_msg_id.parse::<u64>() else {
                w.error("foreign_sent");
                return Ok(());
            };
            if st.answered(w, seq) {
                w.count(|c| c.acked += 1);
            }
            if let Some(s) = sched {
                let us = w.now_us().saturating_sub(w.us_of(s.due(seq)));
                histogram::record(&mut w.figures.borrow_mut().ack_latency, us);
            }
            // The stream this ack belongs to is received by the partner (local ^ 1 in this
            // worker, since workers hold whole pairs).
            let partner_local = ((w.spec.first_user + local) ^ 1) - w.spec.first_user;
            w.verify_acked(partner_local as usize, seq);
        }
        OwnedServerFrame::Gap { from, to } => {
            st.inbox.gap(from, to);
            w.count(|c| c.gaps += 1);
        }
        OwnedServerFrame::Error {
            code,
            client_msg_id,
            ..
        } => {
            w.error(&format!("server_{}", code.as_str()));
            if let Some(seq) = client_msg_id.and_then(|id| id.parse::<u64>().ok()) {
                if st.answered(w, seq) {
                    w.count(|c| c.nacked += 1);
                }
            }
        }
        OwnedServerFrame::Drain { resume_token, .. } => {
            // The node is leaving (or no longer owns us): its 4007 close follows; resume with
            // the token it just gave.
            w.count(|c| c.drains += 1);
            if !resume_token.is_empty() {
                st.resume_token = resume_token;
            }
        }
        _ => {}
    }
    Ok(())
}
