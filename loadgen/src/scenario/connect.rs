//! `connect`: ramp the users, hold them idle until the run stops (server pings answered).
//! The report's figures: connect rate, handshake latency, errors by kind, and with
//! `--target-pid` the server's memory per connection.

use std::rc::Rc;

use crate::worker::{connect_plain, connect_user, Worker};

/// One user: connect, then idle until the end.
pub async fn user(w: Rc<Worker>, local: u64) {
    let index = w.spec.first_user + local;
    let conn = if w.spec.args.plain {
        connect_plain(&w, index).await
    } else {
        connect_user(&w, index, None).await.map(|(c, _)| c)
    };
    super::settled(&w);
    let Ok(mut conn) = conn else { return };
    let outcome = loop {
        tokio::select! {
            // Stop first: nothing is sent after the drain decided everything has arrived.
            biased;
            _ = w.stopped() => break Ok(()),
            r = conn.read(|_, _| Ok(())) => if let Err(e) = r { break Err(e) },
        }
    };
    w.count(|c| c.pings_answered += conn.writer.pongs);
    match outcome {
        Ok(()) => conn.close().await,
        Err(e) => w.error(&e.kind()),
    }
    w.conn_down();
}
