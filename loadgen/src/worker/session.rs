//! Opening a connection the way a real client does: placement (control or `?userId=`),
//! the upgrade, then the `welcome` frame; with resume parameters on a reconnect.

use std::time::{Duration, Instant};

use rtc_protocol::client::Backoff;
use rtc_protocol::frames::OwnedServerFrame;
use rtc_protocol::ws::{encode_frame, OpCode};

use super::Worker;
use crate::client::conn::{splitmix, Conn, ConnError, Dial, Event};
use crate::client::frames;
use crate::client::resolve;
use crate::client::url::Url;
use crate::stats::histogram;

/// What the `welcome` frame told us.
#[derive(Debug, Clone, Default)]
pub struct Welcome {
    /// Token to present on the next connect to resume.
    pub resume_token: String,
    /// Last offset the server assigned to this user.
    pub offset: u64,
    /// How often the server expects traffic (ms).
    pub ping_interval_ms: u64,
}

/// Connects user `index` (global), waits for `welcome`, counts and times it.
/// `resume` = (token, last offset seen) for a reconnect.
///
/// The connect's state (request, response head, URL strings: a few KiB) lives in its own
/// heap allocation, freed when the connect completes: an async fn's state is sized for its
/// largest await point, and it would otherwise stay inside every idle user's task.
pub async fn connect_user(
    w: &Worker,
    index: u64,
    resume: Option<(&str, u64)>,
) -> Result<(Conn, Welcome), ConnError> {
    Box::pin(connect_user_inner(w, index, resume)).await
}

async fn connect_user_inner(
    w: &Worker,
    index: u64,
    resume: Option<(&str, u64)>,
) -> Result<(Conn, Welcome), ConnError> {
    let started = Instant::now();
    w.count(|c| c.connect_attempts += 1);
    let timeout = Duration::from_secs_f64(w.spec.args.connect_timeout.max(0.001));
    let r = tokio::time::timeout(timeout, open_user(w, index, resume)).await;
    let r = r.unwrap_or(Err(ConnError::Timeout("connect")));
    match &r {
        Ok(_) => ready(w, started),
        Err(e) => w.error(&e.kind()),
    }
    r
}

async fn open_user(
    w: &Worker,
    index: u64,
    resume: Option<(&str, u64)>,
) -> Result<(Conn, Welcome), ConnError> {
    let user = w.user_id(index);
    let mut url = if w.via_control {
        let addr = w.resolve(&w.url)?;
        resolve::place(&w.url, addr, &user).await?.dial_url()?
    } else {
        w.url.with_query("userId", &user)
    };
    let mut hops = 0;
    loop {
        let mut target = url.clone();
        if let Some((token, last)) = resume {
            target = target
                .with_query("resume", token)
                .with_query("lastOffset", &last.to_string());
        }
        let mut conn = dial(w, index, &target).await?;
        match greeting(&mut conn).await? {
            Greeting::Welcome(welcome) => return Ok((conn, welcome)),
            Greeting::Redirect(ws_url) => {
                // 4003: the node does not own the user under its ring (control's answer was
                // older or newer than the node's view). Go where it says, like a client would.
                w.count(|c| c.redirects += 1);
                hops += 1;
                if hops > MAX_REDIRECTS {
                    return Err(ConnError::RedirectLoop);
                }
                let next = Url::parse(&ws_url, "ws")
                    .map_err(|_| ConnError::Setup("bad wsUrl in redirect"))?;
                url = if next.has_query_key("token") || next.has_query_key("userId") {
                    next
                } else {
                    next.with_query("userId", &user)
                };
            }
        }
    }
}

/// What a node answers a handshake with.
enum Greeting {
    /// Served here.
    Welcome(Welcome),
    /// Owned elsewhere: this `wsUrl` (a 4003 close follows).
    Redirect(String),
}

/// Reads frames until the `welcome` or a `redirect`. Frames that came in the same read after
/// the `welcome` (a resume's replay follows it at once) are put back for the scenario to read:
/// dropping them would lose exactly the messages the resume was for.
async fn greeting(conn: &mut Conn) -> Result<Greeting, ConnError> {
    let mut answer = None;
    let mut after = Vec::new();
    while answer.is_none() {
        let r = conn
            .read(|ev, _| {
                if matches!(answer, Some(Greeting::Welcome(_))) {
                    let (op, bytes) = match ev {
                        Event::Text(t) => (OpCode::Text, t),
                        Event::Binary(b) => (OpCode::Binary, b),
                    };
                    encode_frame(op, true, bytes, &mut after);
                    return Ok(());
                }
                let Event::Text(t) = ev else { return Ok(()) };
                match frames::parse(t) {
                    Some(OwnedServerFrame::Welcome {
                        resume_token,
                        offset,
                        ping_interval_ms,
                        ..
                    }) => {
                        answer.get_or_insert(Greeting::Welcome(Welcome {
                            resume_token,
                            offset,
                            ping_interval_ms,
                        }));
                        Ok(())
                    }
                    Some(OwnedServerFrame::Redirect { ws_url }) => {
                        answer.get_or_insert(Greeting::Redirect(ws_url));
                        Ok(())
                    }
                    Some(OwnedServerFrame::Error { code, .. }) => {
                        Err(ConnError::Unexpected(format!("error {}", code.as_str())))
                    }
                    // Nothing else comes before a welcome from the gateway; other servers'
                    // chatter is not ours to interpret.
                    _ => Ok(()),
                }
            })
            .await;
        // The 4003 close usually arrives with the redirect: the redirect is the answer.
        if let Some(Greeting::Redirect(u)) = answer {
            return Ok(Greeting::Redirect(u));
        }
        r?;
    }
    conn.unread(after);
    answer.ok_or(ConnError::Unexpected("no welcome".into()))
}

/// Connects connection `index` to the URL as given (no user, no welcome): the echo path.
/// Boxed like [`connect_user`].
pub async fn connect_plain(w: &Worker, index: u64) -> Result<Conn, ConnError> {
    Box::pin(connect_plain_inner(w, index)).await
}

async fn connect_plain_inner(w: &Worker, index: u64) -> Result<Conn, ConnError> {
    let started = Instant::now();
    w.count(|c| c.connect_attempts += 1);
    let timeout = Duration::from_secs_f64(w.spec.args.connect_timeout.max(0.001));
    let r = tokio::time::timeout(timeout, dial(w, index, &w.url))
        .await
        .unwrap_or(Err(ConnError::Timeout("connect")));
    match &r {
        Ok(_) => ready(w, started),
        Err(e) => w.error(&e.kind()),
    }
    r
}

async fn dial(w: &Worker, index: u64, url: &crate::client::url::Url) -> Result<Conn, ConnError> {
    let addr = w.resolve(url)?;
    let host = url.authority();
    Conn::open(Dial {
        addr,
        source: w.source_for(index),
        host: &host,
        path_and_query: &url.path_and_query,
        seed: index ^ (w.now_us() << 20),
    })
    .await
}

fn ready(w: &Worker, started: Instant) {
    let us = started.elapsed().as_micros() as u64;
    let mut f = w.figures.borrow_mut();
    histogram::record(&mut f.handshake, us);
    f.counters.connects += 1;
    drop(f);
    if w.phase.borrow().is_none() {
        w.last_ramp_connect.set(Some(Instant::now()));
    }
    w.conn_up();
}

/// Reconnect attempts before a user gives up for the rest of the run.
pub const MAX_RECONNECT_ATTEMPTS: u32 = 16;
/// `redirect` hops one connect follows before it counts as failed.
pub const MAX_REDIRECTS: u32 = 3;

/// Reconnects like a real client after a lost connection, waiting the protocol's jittered
/// exponential backoff between attempts ([`Backoff`]). Every attempt presents the resume token
/// (when one is known) until a node refuses it with 4004 RESUME_FAILED; a refused dial (the node
/// is gone, control still places users there until its heartbeat grace ends), a 503 or a
/// redirect keeps it. With `--control` each attempt asks control again, so a user follows the
/// ring to its new owner. `None` when the run stopped or every attempt failed (each failure is
/// counted by kind).
pub async fn reconnect(
    w: &Worker,
    index: u64,
    resume: Option<(&str, u64)>,
) -> Option<(Conn, Welcome)> {
    let backoff = Backoff::default();
    let mut resume = resume.filter(|(token, _)| !token.is_empty());
    w.count(|c| c.reconnects += 1);
    for attempt in 0..MAX_RECONNECT_ATTEMPTS {
        if *w.stop.borrow() {
            return None;
        }
        match connect_user(w, index, resume).await {
            Ok(ok) => {
                if resume.is_some() {
                    w.count(|c| c.resumes += 1);
                }
                return Some(ok);
            }
            Err(ConnError::Closed(Some(rtc_protocol::close::RESUME_FAILED)))
                if resume.is_some() =>
            {
                // A refused resume (the log no longer holds our offset): a fresh session at
                // once (the node replays what is unacked; the inbox drops what we had).
                resume = None;
                continue;
            }
            Err(_) => {}
        }
        let unit = (splitmix(index ^ (u64::from(attempt) << 40) ^ w.now_us()) >> 11) as f64
            / (1u64 << 53) as f64;
        let delay = backoff.delay(attempt, unit);
        tokio::select! {
            _ = w.stopped() => return None,
            _ = tokio::time::sleep(delay) => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// A server that answers the upgrade, then writes `welcome` and a replayed message in one
    /// write (as the gateway does after a resume).
    async fn replaying_server(listener: tokio::net::TcpListener) {
        let (mut s, _) = listener.accept().await.expect("accept");
        let mut req = Vec::new();
        let mut b = [0u8; 1024];
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut b).await.expect("read request");
            assert!(n > 0, "client closed early");
            req.extend_from_slice(&b[..n]);
        }
        let text = String::from_utf8_lossy(&req).into_owned();
        let key = text
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .or_else(|| {
                text.lines()
                    .find_map(|l| l.strip_prefix("sec-websocket-key: "))
            })
            .expect("key")
            .trim()
            .to_owned();
        let mut out = Vec::new();
        rtc_protocol::http::write_switching_protocols(&key, None, &mut out);
        let welcome = br#"{"type":"welcome","user":"u","nodeId":"n","shard":0,"resumeToken":"r2","pingIntervalMs":25000,"offset":4,"ringVersion":1}"#;
        let replay = br#"{"type":"message","msgId":9,"offset":4,"from":"v","payload":{"seq":3,"t":1},"ts":1}"#;
        encode_frame(OpCode::Text, true, welcome, &mut out);
        encode_frame(OpCode::Text, true, replay, &mut out);
        s.write_all(&out).await.expect("write");
        // Hold the connection until the client is done.
        let _ = s.read(&mut b).await;
    }

    #[tokio::test]
    async fn frames_after_the_welcome_are_kept_for_the_scenario() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(replaying_server(listener));
        let mut conn = Conn::open(crate::client::conn::Dial {
            addr,
            source: None,
            host: "test",
            path_and_query: "/ws?userId=u&resume=r1&lastOffset=3",
            seed: 7,
        })
        .await
        .expect("upgrade");
        let Greeting::Welcome(w) = greeting(&mut conn).await.expect("greeting") else {
            panic!("not a welcome");
        };
        assert_eq!((w.resume_token.as_str(), w.offset), ("r2", 4));
        // The replayed message is the next thing the scenario reads.
        let mut got = None;
        let read = async {
            while got.is_none() {
                conn.read(|ev, _| {
                    if let Event::Text(t) = ev {
                        if let Some(OwnedServerFrame::Message { offset, .. }) = frames::parse(t) {
                            got = Some(offset);
                        }
                    }
                    Ok(())
                })
                .await
                .expect("read");
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(10), read).await;
        assert_eq!(got, Some(4), "the replay after the welcome was dropped");
        conn.close().await;
        server.await.expect("server");
    }
}
