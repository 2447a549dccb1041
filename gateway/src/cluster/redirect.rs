//! Answering a handshake for a user another node owns: the upgrade completes (so a WebSocket
//! client can read a frame at all), then `redirect {wsUrl}` and close 4003, then a short wait
//! for the client's close before the socket is dropped.

use std::rc::Rc;
use std::time::Duration;

use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use rtc_protocol::close;
use rtc_protocol::frames::ServerFrame;
use rtc_protocol::http as h;
use rtc_protocol::ws::{self, OpCode};

use crate::metrics::Counter;
use crate::shard::Shard;

/// How long the client may take to answer our close before the socket is dropped.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// Most bytes read (and discarded) from the client while waiting for its close.
const CLOSE_WAIT_MAX_BYTES: usize = 16 * 1024;

/// Writes 101, `redirect {wsUrl}` and close 4003 on `stream`.
pub async fn serve(shard: Rc<Shard>, mut stream: TcpStream, key: &str, ws_url: &str) {
    let mut out = Vec::with_capacity(256 + ws_url.len());
    h::write_switching_protocols(key, None, &mut out);
    let mut json = Vec::with_capacity(32 + ws_url.len());
    ServerFrame::Redirect { ws_url }.encode(&mut json);
    ws::encode_frame(OpCode::Text, true, &json, &mut out);
    ws::encode_close(close::REDIRECT, close::reason(close::REDIRECT), &mut out);
    shard.metrics.inc(Counter::Redirect);
    shard.metrics.inc(Counter::Close4003);
    if stream.write_all(&out).await.is_err() {
        return;
    }
    // Wait for the client's close frame (or EOF) so our FIN follows it and the client reads
    // the whole answer rather than a reset. (A frame boundary at the start of a read is
    // assumed: the client sends nothing but its close here.)
    let _ = glommio::timer::timeout(CLOSE_WAIT, async {
        let mut sink = [0u8; 1024];
        let mut total = 0;
        while total < CLOSE_WAIT_MAX_BYTES {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                // A close frame (FIN + opcode 8) from the client: the handshake is done.
                Ok(_) if sink[0] == 0x88 => break,
                Ok(n) => total += n,
            }
        }
        Ok(())
    })
    .await;
}
