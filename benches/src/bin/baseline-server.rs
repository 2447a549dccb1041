//! The baseline server: what a user would write instead of the gateway.
//!
//! A deliberately plain tokio + tokio-tungstenite server, idiomatic and not crippled: a task
//! per connection, an mpsc channel per user, a 4 KiB tungstenite read buffer (so idle
//! connections are not charged tungstenite's 128 KiB default), serde_json with derived types
//! for the frames. It speaks the minimal part of the gateway's `/ws` protocol that loadgen
//! exercises — `welcome`, direct `message` → `sent` + delivery, `ack` (accepted, nothing is
//! retained to resume from), `ping` → `pong`, server WebSocket pings — and `/echo`.
//!
//! Run: `cargo run --release -p benches --bin baseline-server -- --listen 127.0.0.1:9090`.
//!
//! # Layout
//! Everything is in this file: [`Hub`] (users → their connection's channel and offset),
//! [`serve_ws`] (one `/ws` connection), [`serve_echo`] (one `/echo` connection).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
// tokio-tungstenite >= 0.26, under its workspace alias (see the root Cargo.toml).
use baseline_tungstenite as tokio_tungstenite;
use clap::Parser;
use futures_util::{SinkExt as _, StreamExt as _};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;

/// tungstenite read buffer per connection (its default is 128 KiB).
const READ_BUFFER: usize = 4 * 1024;
/// Largest message accepted.
const MAX_MESSAGE: usize = 64 * 1024;
/// Deliveries queued per user before new ones are refused (`error unavailable`).
const USER_QUEUE: usize = 1024;
/// Most users connected at once.
const MAX_USERS: usize = 2_000_000;
/// Longest user id.
const MAX_USER_ID: usize = 128;
/// Close code for a connection replaced by a newer login of the same user (gateway: 4002).
const CLOSE_REPLACED: u16 = 4002;

/// Command line.
#[derive(Debug, Parser)]
#[command(about = "Plain tokio + tokio-tungstenite reference server for loadgen comparisons")]
struct Config {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9090")]
    listen: SocketAddr,
    /// Interval of server WebSocket pings (ms); also announced in `welcome`.
    #[arg(long, default_value_t = 25_000)]
    ping_interval_ms: u64,
    /// Worker threads of the tokio runtime (0 = one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

/// One connected (or once connected) user.
#[derive(Debug)]
struct UserSlot {
    /// The live connection's delivery channel, if connected.
    tx: Option<mpsc::Sender<String>>,
    /// Which connection owns `tx` (a replaced connection must not unregister its successor).
    conn: u64,
    /// Last offset assigned to this user.
    offset: u64,
}

/// Every user's slot, and the message id counter.
#[derive(Debug, Default)]
struct Hub {
    users: Mutex<HashMap<String, UserSlot>>,
    next_msg_id: AtomicU64,
    next_conn: AtomicU64,
}

/// A client frame: one flat struct (the payload stays raw JSON, never re-encoded).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Incoming<'a> {
    #[serde(rename = "type")]
    kind: String,
    to: Option<String>,
    client_msg_id: Option<String>,
    #[serde(borrow)]
    payload: Option<&'a RawValue>,
    nonce: Option<u64>,
}

/// Server frames.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
enum Outgoing<'a> {
    #[serde(rename_all = "camelCase")]
    Welcome {
        user: &'a str,
        node_id: &'a str,
        shard: u32,
        resume_token: &'a str,
        ping_interval_ms: u64,
        offset: u64,
        ring_version: u64,
    },
    #[serde(rename_all = "camelCase")]
    Message {
        msg_id: u64,
        offset: u64,
        from: &'a str,
        payload: &'a RawValue,
        ts: u64,
    },
    #[serde(rename_all = "camelCase")]
    Sent {
        client_msg_id: &'a str,
        msg_id: u64,
        offset: u64,
        to: &'a str,
    },
    Pong {
        nonce: Option<u64>,
        ts: u64,
    },
    #[serde(rename_all = "camelCase")]
    Error {
        code: &'a str,
        message: &'a str,
        client_msg_id: Option<&'a str>,
    },
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn to_json(f: &Outgoing<'_>) -> String {
    // Serializing these types into a String cannot fail.
    serde_json::to_string(f).unwrap_or_default()
}

fn main() -> anyhow::Result<()> {
    let cfg = Config::parse();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if cfg.threads > 0 {
        rt.worker_threads(cfg.threads);
    }
    rt.enable_all()
        .build()
        .context("tokio runtime")?
        .block_on(serve(cfg))
}

async fn serve(cfg: Config) -> anyhow::Result<()> {
    let listener = TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("binding {}", cfg.listen))?;
    eprintln!("baseline-server listening on {}", listener.local_addr()?);
    let hub = Arc::new(Hub::default());
    let ping = Duration::from_millis(cfg.ping_interval_ms.max(1));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of files and similar: back off briefly instead of spinning.
                eprintln!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(handle(stream, hub.clone(), ping));
    }
}

enum Route {
    Ws(String),
    Echo,
}

// tungstenite's callback signature fixes the error type.
#[allow(clippy::result_large_err)]
async fn handle(stream: TcpStream, hub: Arc<Hub>, ping: Duration) {
    let mut route = None;
    let callback = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        let uri = req.uri();
        match uri.path() {
            "/echo" => route = Some(Route::Echo),
            "/ws" => {
                let user = uri
                    .query()
                    .unwrap_or("")
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("userId="))
                    .filter(|u| {
                        !u.is_empty()
                            && u.len() <= MAX_USER_ID
                            && u.bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b"_.:@-".contains(&b))
                    });
                match user {
                    Some(u) => route = Some(Route::Ws(u.to_owned())),
                    None => return Err(status(400, "userId missing or invalid")),
                }
            }
            _ => return Err(status(404, "no such path")),
        }
        Ok(resp)
    };
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .max_message_size(Some(MAX_MESSAGE));
    let Ok(ws) =
        tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config)).await
    else {
        return;
    };
    match route {
        Some(Route::Echo) => serve_echo(ws).await,
        Some(Route::Ws(user)) => serve_ws(ws, hub, user, ping).await,
        None => {}
    }
}

fn status(code: u16, why: &str) -> ErrorResponse {
    let mut r = http::Response::new(Some(why.to_owned()));
    *r.status_mut() = http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::BAD_REQUEST);
    r
}

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

async fn serve_echo(mut ws: Ws) {
    while let Some(Ok(m)) = ws.next().await {
        let reply = match m {
            Message::Text(_) | Message::Binary(_) => m,
            Message::Close(_) => break,
            _ => continue,
        };
        if ws.send(reply).await.is_err() {
            break;
        }
    }
}

async fn serve_ws(ws: Ws, hub: Arc<Hub>, user: String, ping: Duration) {
    let (tx, mut rx) = mpsc::channel::<String>(USER_QUEUE);
    let conn = hub.next_conn.fetch_add(1, Ordering::Relaxed);
    let offset = {
        let mut users = hub.users.lock().unwrap_or_else(|p| p.into_inner());
        if users.len() >= MAX_USERS && !users.contains_key(&user) {
            return;
        }
        let slot = users.entry(user.clone()).or_insert(UserSlot {
            tx: None,
            conn,
            offset: 0,
        });
        // A newer login replaces the older one: dropping its sender ends it (closed 4002).
        slot.tx = Some(tx);
        slot.conn = conn;
        slot.offset
    };
    let (mut sink, mut stream) = ws.split();
    let welcome = Outgoing::Welcome {
        user: &user,
        node_id: "baseline",
        shard: 0,
        resume_token: "",
        ping_interval_ms: ping.as_millis() as u64,
        offset,
        ring_version: 0,
    };
    let mut ok = sink.send(Message::text(to_json(&welcome))).await.is_ok();
    let mut pings = tokio::time::interval_at(tokio::time::Instant::now() + ping, ping);
    while ok {
        tokio::select! {
            m = stream.next() => match m {
                Some(Ok(Message::Text(t))) => {
                    if let Some(reply) = on_frame(&hub, &user, t.as_bytes()) {
                        ok = sink.send(Message::text(reply)).await.is_ok();
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            d = rx.recv() => match d {
                Some(text) => ok = sink.send(Message::text(text)).await.is_ok(),
                None => {
                    let close = CloseFrame { code: CloseCode::from(CLOSE_REPLACED), reason: "replaced".into() };
                    let _ = sink.send(Message::Close(Some(close))).await;
                    break;
                }
            },
            _ = pings.tick() => ok = sink.send(Message::Ping(Default::default())).await.is_ok(),
        }
    }
    let mut users = hub.users.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(slot) = users.get_mut(&user) {
        if slot.conn == conn {
            slot.tx = None;
        }
    }
}

/// Handles one client frame; returns the reply to send on this connection, if any.
fn on_frame(hub: &Hub, user: &str, text: &[u8]) -> Option<String> {
    let Ok(f) = serde_json::from_slice::<Incoming<'_>>(text) else {
        return Some(to_json(&Outgoing::Error {
            code: "bad_frame",
            message: "not a frame",
            client_msg_id: None,
        }));
    };
    match f.kind.as_str() {
        "message" => {
            let (Some(to), Some(id), Some(payload)) =
                (f.to.as_deref(), f.client_msg_id.as_deref(), f.payload)
            else {
                return Some(to_json(&Outgoing::Error {
                    code: "bad_frame",
                    message: "message needs to, clientMsgId, payload",
                    client_msg_id: None,
                }));
            };
            let msg_id = hub.next_msg_id.fetch_add(1, Ordering::Relaxed) + 1;
            let mut users = hub.users.lock().unwrap_or_else(|p| p.into_inner());
            let Some(slot) = users.get_mut(to).filter(|s| s.tx.is_some()) else {
                return Some(to_json(&Outgoing::Error {
                    code: "unavailable",
                    message: "recipient offline",
                    client_msg_id: Some(id),
                }));
            };
            let offset = slot.offset + 1;
            let deliver = to_json(&Outgoing::Message {
                msg_id,
                offset,
                from: user,
                payload,
                ts: now_ms(),
            });
            let queued = slot
                .tx
                .as_ref()
                .is_some_and(|tx| tx.try_send(deliver).is_ok());
            if !queued {
                return Some(to_json(&Outgoing::Error {
                    code: "unavailable",
                    message: "recipient queue full",
                    client_msg_id: Some(id),
                }));
            }
            slot.offset = offset;
            drop(users);
            Some(to_json(&Outgoing::Sent {
                client_msg_id: id,
                msg_id,
                offset,
                to,
            }))
        }
        // Nothing is retained for resume, so acks need no bookkeeping.
        "ack" => None,
        "ping" => Some(to_json(&Outgoing::Pong {
            nonce: f.nonce,
            ts: now_ms(),
        })),
        _ => Some(to_json(&Outgoing::Error {
            code: "unknown_type",
            message: "unknown type",
            client_msg_id: None,
        })),
    }
}
