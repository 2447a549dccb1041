//! A blocking std-only WebSocket echo server on the `ws`/`http` codec, for running the
//! Autobahn conformance suite against the codec alone (thread per connection; not how the
//! gateway does I/O).
//!
//! `cargo run --release -p rtc-protocol --example ws_echo -- 127.0.0.1:9001`
//! then `scripts/autobahn ws://127.0.0.1:9001/`.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::Duration;

use rtc_protocol::http::{self, Parsed};
use rtc_protocol::ws::{self, Limits, Message, MessageAssembler, OpCode, Role};

/// Autobahn's 9.* cases send messages of up to 16 MiB.
const MAX_MESSAGE: usize = 16 * 1024 * 1024;
/// The read buffer every connection thread reads into.
const READ_BUF: usize = 64 * 1024;

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".into());
    let listener = TcpListener::bind(&addr)?;
    eprintln!("ws_echo listening on {}", listener.local_addr()?);
    for stream in listener.incoming() {
        let stream = stream?;
        std::thread::spawn(move || {
            if let Err(e) = serve(stream) {
                eprintln!("connection ended: {e}");
            }
        });
    }
    Ok(())
}

fn serve(mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = vec![0u8; READ_BUF];
    let mut filled = 0;
    let mut out = Vec::new();
    // Handshake: read until the head is complete (the parser bounds it).
    let head_len = loop {
        let n = stream.read(&mut buf[filled..])?;
        if n == 0 {
            return Ok(());
        }
        filled += n;
        match http::parse_request(&buf[..filled]) {
            Ok(Parsed::Incomplete) => continue,
            Ok(Parsed::Complete(req)) => match req.require_websocket() {
                Ok(up) => {
                    http::write_switching_protocols(up.key, None, &mut out);
                    break req.head_len;
                }
                Err(e) => {
                    http::write_error_response(e.status(), None, &mut out);
                    return stream.write_all(&out);
                }
            },
            Err(e) => {
                http::write_error_response(e.status(), None, &mut out);
                return stream.write_all(&out);
            }
        }
    };
    stream.write_all(&out)?;
    let limits = Limits {
        max_frame: MAX_MESSAGE,
        max_message: MAX_MESSAGE,
    };
    let mut asm = MessageAssembler::new(Role::Server, limits);
    // Bytes that followed the head in the handshake read are frames already.
    let (mut start, mut end) = (head_len, filled);
    loop {
        out.clear();
        let mut closing = false;
        while start < end {
            match asm.feed(&mut buf[start..end]) {
                Ok(feed) => {
                    start += feed.consumed;
                    match feed.message {
                        Some(Message::Text(s)) => {
                            ws::encode_frame(OpCode::Text, true, s.as_bytes(), &mut out)
                        }
                        Some(Message::Binary(b)) => {
                            ws::encode_frame(OpCode::Binary, true, b, &mut out)
                        }
                        Some(Message::Ping(p)) => ws::encode_frame(OpCode::Pong, true, p, &mut out),
                        Some(Message::Pong(_)) | None => {}
                        Some(Message::Close(frame)) => {
                            match frame {
                                Some(f) => ws::encode_close(f.code, "", &mut out),
                                None => ws::encode_frame(OpCode::Close, true, &[], &mut out),
                            }
                            closing = true;
                            break;
                        }
                    }
                }
                Err(e) => {
                    ws::encode_close(e.close_code(), &e.to_string(), &mut out);
                    closing = true;
                    break;
                }
            }
        }
        asm.reclaim();
        stream.write_all(&out)?;
        if closing {
            return close(stream, &mut buf);
        }
        start = 0;
        end = stream.read(&mut buf)?;
        if end == 0 {
            return Ok(());
        }
    }
}

/// The server closes TCP first after the close handshake (RFC 6455 §7.1.1); drain what the
/// client still sends so the close is clean rather than a reset.
fn close(mut stream: TcpStream, buf: &mut [u8]) -> std::io::Result<()> {
    stream.shutdown(Shutdown::Write)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    while matches!(stream.read(buf), Ok(n) if n > 0) {}
    Ok(())
}
