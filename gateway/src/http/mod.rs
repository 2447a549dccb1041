//! The one public port: reads a request head (within the header timeout and size limit),
//! answers `/healthz`, `/readyz`, `/metrics`, and upgrades `/ws` (and `/echo` with `--echo`)
//! after the admission checks, in this order:
//! draining → 503 · malformed → 400 / wrong version 426 / head too large 431 · rate → 503 ·
//! Origin → 403 · identity → 401 · owner elsewhere → 101 + `redirect` + 4003 (`cluster/`) ·
//! per-IP → 429.
//!
//! An upgraded `/ws` connection whose user's home is another shard is handed over through the
//! shard mesh (`conn::handoff`).
//!
//! # Layout
//! - this file — reading the head, routing, responses, upgrade.
//! - `limits.rs` — handshake rate (GCRA) and per-IP connection counts.

pub mod limits;

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use rtc_protocol::http::{self as h, HttpError, Parsed, Request};
use rtc_protocol::ws::Limits;

use crate::config::ECHO_MAX_MESSAGE_BYTES;
use crate::conn::{handoff, ConnShared, ConnTask, Mode};
use crate::metrics::{self, Counter};
use crate::shard::msg::{Handoff, ShardMsg};
use crate::shard::{messaging, unix_ms, Shard};

/// Bytes read per `recv` while the head is incomplete.
const HEAD_READ_CHUNK: usize = 2048;
/// `Retry-After` seconds sent with 503 while the store (Redis) is unavailable.
pub const STORE_RETRY_AFTER_S: u32 = 2;
/// `Retry-After` seconds sent with 503 while draining.
const DRAIN_RETRY_AFTER_S: u32 = 5;
/// After an error response, how long unread request bytes are drained before closing (so the
/// kernel sends FIN, not RST, and the client reads the response).
const LINGER: Duration = Duration::from_millis(500);
/// Most bytes drained in that time.
const LINGER_MAX_BYTES: usize = 64 * 1024;

/// What to do with a request, decided while the head buffer is borrowed.
enum Route {
    Respond {
        status: u16,
        content_type: &'static str,
        body: Cow<'static, [u8]>,
    },
    Refuse {
        status: u16,
        retry_after: Option<u32>,
        counter: Counter,
    },
    Echo {
        key: String,
    },
    /// Another node owns the user (`cluster/`): 101, `redirect`, close 4003.
    Redirect {
        key: String,
        ws_url: String,
    },
    Ws {
        key: String,
        user: String,
        last_offset: Option<u64>,
        reconnect: bool,
        counted_ip: Option<IpAddr>,
    },
}

/// Serves one accepted TCP connection until it is answered or upgraded.
pub async fn serve(shard: Rc<Shard>, mut stream: TcpStream) {
    let peer = stream.peer_addr().ok();
    // Frames are small and batched by the connection's write loop already: Nagle would only
    // hold a reply back until the peer's delayed ACK (tens of ms).
    let _ = stream.set_nodelay(true);
    let mut head = Vec::new();
    let timeout = Duration::from_millis(shard.node.config.header_timeout_ms);
    let read = glommio::timer::timeout(timeout, async {
        read_head(&mut stream, &mut head)
            .await
            .map_err(glommio::GlommioError::from)
    })
    .await;
    let route = match read {
        Ok(true) => route(&shard, &head, peer),
        Ok(false) => return, // EOF or I/O error before a full head: nothing to answer
        Err(_) => {
            // Slowloris guard: the head did not arrive in time.
            shard.metrics.inc(Counter::HandshakeTimeout);
            let mut out = Vec::new();
            h::write_error_response(408, None, &mut out);
            respond_and_close(stream, &out).await;
            return;
        }
    };
    let head_len = match h::parse_request(&head) {
        Ok(Parsed::Complete(r)) => r.head_len,
        _ => head.len(),
    };
    let leftover = head.get(head_len..).map(<[u8]>::to_vec).unwrap_or_default();
    drop(head);
    match route {
        Route::Respond {
            status,
            content_type,
            body,
        } => {
            let mut out = Vec::with_capacity(body.len() + 128);
            h::write_response(status, content_type, &body, &mut out);
            respond_and_close(stream, &out).await;
        }
        Route::Refuse {
            status,
            retry_after,
            counter,
        } => {
            shard.metrics.inc(counter);
            let mut out = Vec::new();
            h::write_error_response(status, retry_after, &mut out);
            respond_and_close(stream, &out).await;
        }
        Route::Echo { key } => {
            if !switch(&mut stream, &key).await {
                return;
            }
            shard.metrics.inc(Counter::HandshakeOk);
            let id = shard.next_conn_id();
            let span = tracing::debug_span!("echo", id, peer = ?peer);
            let shared = Rc::new(ConnShared::new(id, None, shard.clock_s.get()));
            shard.register(shared.clone());
            let limits = Limits {
                max_frame: ECHO_MAX_MESSAGE_BYTES,
                max_message: ECHO_MAX_MESSAGE_BYTES,
            };
            ConnTask::new(
                shard.clone(),
                stream,
                shared,
                Mode::Echo,
                limits,
                leftover,
                None,
                span,
            )
            .await;
        }
        Route::Redirect { key, ws_url } => {
            crate::cluster::redirect::serve(shard, stream, &key, &ws_url).await;
        }
        Route::Ws {
            key,
            user,
            last_offset,
            reconnect,
            counted_ip,
        } => {
            if !switch(&mut stream, &key).await {
                if let Some(ip) = counted_ip {
                    shard.node.per_ip.release(ip);
                }
                return;
            }
            shard.metrics.inc(Counter::HandshakeOk);
            let home = rtc_ring::shard_of(&user, shard.node.shards);
            if home == shard.id {
                messaging::attach(
                    &shard,
                    stream,
                    &user,
                    last_offset,
                    reconnect,
                    leftover,
                    counted_ip,
                    peer,
                );
                return;
            }
            let fd = match handoff::dup_stream(&stream) {
                Ok(fd) => fd,
                Err(e) => {
                    tracing::warn!(error = %e, "dup for hand-off failed");
                    if let Some(ip) = counted_ip {
                        shard.node.per_ip.release(ip);
                    }
                    return;
                }
            };
            let msg = ShardMsg::Handoff(Box::new(Handoff {
                fd,
                user: user.into_boxed_str(),
                last_offset,
                reconnect,
                leftover,
                counted_ip,
                peer,
            }));
            match shard.send_to(home, msg) {
                // The home shard owns the socket now; ours closes only our descriptor.
                Ok(()) => drop(stream),
                Err(_) => {
                    shard.metrics.inc(Counter::DropHandoff);
                    if let Some(ip) = counted_ip {
                        shard.node.per_ip.release(ip);
                    }
                    let mut out = Vec::new();
                    rtc_protocol::ws::encode_close(
                        rtc_protocol::close::TRY_AGAIN_LATER,
                        rtc_protocol::close::reason(rtc_protocol::close::TRY_AGAIN_LATER),
                        &mut out,
                    );
                    let _ = stream.write_all(&out).await;
                }
            }
        }
    }
}

/// Reads until the head is complete (`true`), or the peer closed / the head is invalid (the
/// caller re-parses to tell which). Never reads more than the head limit plus one chunk.
async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    loop {
        match h::parse_request(buf) {
            Ok(Parsed::Incomplete) => {}
            Ok(Parsed::Complete(_)) | Err(_) => return Ok(true),
        }
        let len = buf.len();
        buf.resize(len + HEAD_READ_CHUNK, 0);
        let n = stream.read(&mut buf[len..]).await?;
        buf.truncate(len + n);
        if n == 0 {
            return Ok(false);
        }
    }
}

fn route(shard: &Shard, head: &[u8], peer: Option<SocketAddr>) -> Route {
    let req = match h::parse_request(head) {
        Ok(Parsed::Complete(r)) => r,
        Ok(Parsed::Incomplete) => return refuse_http(HttpError::BadStartLine),
        Err(e) => return refuse_http(e),
    };
    match req.path {
        "/healthz" => Route::Respond {
            status: 200,
            content_type: "text/plain",
            body: Cow::Borrowed(b"ok\n"),
        },
        "/readyz" if shard.node.is_draining() => Route::Respond {
            status: 503,
            content_type: "text/plain",
            body: Cow::Borrowed(b"draining\n"),
        },
        "/readyz" if !shard.node.store_ready() => Route::Respond {
            status: 503,
            content_type: "text/plain",
            body: Cow::Borrowed(b"store unavailable\n"),
        },
        "/readyz" => Route::Respond {
            status: 200,
            content_type: "text/plain",
            body: Cow::Borrowed(b"ready\n"),
        },
        "/metrics" => {
            // Publish this shard's counters now so the scrape sees them fresh.
            shard.metrics.publish(&shard.node.published[shard.id]);
            let mut text = String::with_capacity(8 * 1024);
            metrics::render(&shard.node.published, shard.node.is_draining(), &mut text);
            crate::cluster::render_metrics(&shard.node, &mut text);
            if let Some(c) = &shard.node.relay_counters {
                c.snapshot().render(&mut text);
            }
            Route::Respond {
                status: 200,
                content_type: "text/plain; version=0.0.4",
                body: Cow::Owned(text.into_bytes()),
            }
        }
        "/echo" if shard.node.config.echo => match req.require_websocket() {
            Ok(up) => Route::Echo {
                key: up.key.to_owned(),
            },
            Err(e) => refuse_http(e),
        },
        "/ws" => upgrade_ws(shard, &req, peer),
        _ => Route::Refuse {
            status: 404,
            retry_after: None,
            counter: Counter::HandshakeNotFound,
        },
    }
}

fn refuse_http(e: HttpError) -> Route {
    let status = e.status();
    let counter = match status {
        426 => Counter::HandshakeBadVersion,
        431 => Counter::HandshakeTooLarge,
        _ => Counter::HandshakeBadRequest,
    };
    Route::Refuse {
        status,
        retry_after: None,
        counter,
    }
}

fn upgrade_ws(shard: &Shard, req: &Request<'_>, peer: Option<SocketAddr>) -> Route {
    let node = &shard.node;
    let config = &node.config;
    if node.is_draining() {
        return Route::Refuse {
            status: 503,
            retry_after: Some(DRAIN_RETRY_AFTER_S),
            counter: Counter::HandshakeDraining,
        };
    }
    if !node.store_ready() {
        return Route::Refuse {
            status: 503,
            retry_after: Some(STORE_RETRY_AFTER_S),
            counter: Counter::HandshakeStoreUnavailable,
        };
    }
    let up = match req.require_websocket() {
        Ok(up) => up,
        Err(e) => return refuse_http(e),
    };
    if let Err(wait) = node.rate.try_acquire(node.now_ns()) {
        let secs = wait.as_secs_f64().ceil().max(1.0) as u32;
        return Route::Refuse {
            status: 503,
            retry_after: Some(secs),
            counter: Counter::HandshakeRateLimited,
        };
    }
    if !config.allowed_origins.is_empty() {
        let ok = req.origin.is_some_and(|o| {
            config
                .allowed_origins
                .iter()
                .any(|a| a.eq_ignore_ascii_case(o))
        });
        if !ok {
            return Route::Refuse {
                status: 403,
                retry_after: None,
                counter: Counter::HandshakeForbidden,
            };
        }
    }
    let unauthorized = Route::Refuse {
        status: 401,
        retry_after: None,
        counter: Counter::HandshakeUnauthorized,
    };
    let (Ok(token), Ok(user_param), Ok(resume), Ok(last)) = (
        req.query_param("token"),
        req.query_param("userId"),
        req.query_param("resume"),
        req.query_param("lastOffset"),
    ) else {
        return Route::Refuse {
            status: 400,
            retry_after: None,
            counter: Counter::HandshakeBadRequest,
        };
    };
    let now_s = unix_ms() / 1000;
    let (user, token_for_other) = match (token, user_param) {
        (Some(t), _) => match rtc_protocol::token::verify_connect(&node.keys, &t, now_s) {
            Ok(claims) => {
                let other = claims.node != config.node_id;
                (claims.user, other)
            }
            _ => return unauthorized,
        },
        (None, Some(u)) if !config.require_token => (u.into_owned(), false),
        _ => return unauthorized,
    };
    if rtc_protocol::user::validate_user_id(&user).is_err() {
        return unauthorized;
    }
    // Placement (`cluster/`): users owned elsewhere under this shard's ring are redirected.
    match shard.placement.admit(node, &user, token_for_other) {
        crate::cluster::Admission::Serve => {}
        crate::cluster::Admission::Redirect(ws_url) => {
            return Route::Redirect {
                key: up.key.to_owned(),
                ws_url,
            }
        }
        crate::cluster::Admission::Refuse => return unauthorized,
    }
    let reconnect = resume.is_some();
    let last_offset = match (resume, last) {
        (Some(r), Some(l)) => {
            let Ok(offset) = l.parse::<u64>() else {
                return Route::Refuse {
                    status: 400,
                    retry_after: None,
                    counter: Counter::HandshakeBadRequest,
                };
            };
            match rtc_protocol::token::verify_resume_for_user(&node.keys, &r, now_s, &user) {
                Ok(_) => Some(offset),
                // An expired or foreign resume token: connect fresh (the log replays
                // everything unacked), never resume someone else's stream.
                Err(_) => None,
            }
        }
        _ => None,
    };
    let ip = client_ip(config, req, peer);
    let counted_ip = match ip {
        Some(ip) if config.max_conn_per_ip > 0 => {
            if !node.per_ip.try_acquire(ip) {
                return Route::Refuse {
                    status: 429,
                    retry_after: None,
                    counter: Counter::HandshakePerIpLimit,
                };
            }
            Some(ip)
        }
        _ => None,
    };
    Route::Ws {
        key: up.key.to_owned(),
        user,
        last_offset,
        reconnect,
        counted_ip,
    }
}

/// The client address for per-IP limits: the peer, or — only when the peer is a trusted proxy
/// — the last `X-Forwarded-For` hop that is not itself a trusted proxy.
fn client_ip(
    config: &crate::config::Config,
    req: &Request<'_>,
    peer: Option<SocketAddr>,
) -> Option<IpAddr> {
    let peer_ip = peer?.ip();
    if !config.trusted_proxies.contains(&peer_ip) {
        return Some(peer_ip);
    }
    let Some(xff) = req.x_forwarded_for else {
        return Some(peer_ip);
    };
    xff.rsplit(',')
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .find(|ip| !config.trusted_proxies.contains(ip))
        .or(Some(peer_ip))
}

/// Writes the 101 response; `false` if the peer is gone.
async fn switch(stream: &mut TcpStream, key: &str) -> bool {
    let mut out = Vec::with_capacity(160);
    h::write_switching_protocols(key, None, &mut out);
    stream.write_all(&out).await.is_ok()
}

/// Writes `bytes`, half-closes, and drains what the client still sends for a moment so the
/// close is a FIN (the client reads the response) rather than a reset.
async fn respond_and_close(mut stream: TcpStream, bytes: &[u8]) {
    if stream.write_all(bytes).await.is_err() {
        return;
    }
    let _ = stream.shutdown(std::net::Shutdown::Write).await;
    let _ = glommio::timer::timeout(LINGER, async {
        let mut sink = [0u8; 1024];
        let mut total = 0;
        while total < LINGER_MAX_BYTES {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
        Ok(())
    })
    .await;
}
