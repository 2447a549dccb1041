//! The real client path through the control plane: `GET /v1/connect?userId=U` returns
//! `{wsUrl, token, ringVersion}`; the client then connects to `wsUrl` with the token.

use std::net::SocketAddr;

use serde::Deserialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::conn::ConnError;
use super::url::Url;

/// Largest control response accepted.
pub const MAX_CONTROL_RESPONSE: usize = 64 * 1024;

/// The placement control returned (the fields of `protocol::control::ConnectResponse`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Placement {
    /// Where to connect.
    pub ws_url: String,
    /// Signed connect token.
    pub token: String,
    /// Ring version the placement was made under.
    #[serde(default)]
    pub ring_version: u64,
}

impl Placement {
    /// The URL to dial: `wsUrl` with `token=` added unless it carries one already.
    pub fn dial_url(&self) -> Result<Url, ConnError> {
        let u = Url::parse(&self.ws_url, "ws")
            .map_err(|_| ConnError::Setup("bad wsUrl from control"))?;
        Ok(if u.has_query_key("token") {
            u
        } else {
            u.with_query("token", &self.token)
        })
    }
}

/// Asks control where `user` goes (plain HTTP/1.1, one request per connection).
pub async fn place(control: &Url, addr: SocketAddr, user: &str) -> Result<Placement, ConnError> {
    let base = control.base_path();
    let path = format!(
        "{base}/v1/connect?userId={}",
        super::url::percent_encode(user)
    );
    let mut s = TcpStream::connect(addr).await.map_err(ConnError::Connect)?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        control.authority()
    );
    s.write_all(req.as_bytes()).await?;
    let mut body = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        if body.len() + n > MAX_CONTROL_RESPONSE {
            return Err(ConnError::Setup("control response too large"));
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let end = body
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or(ConnError::Setup("control: no response head"))?;
    let head =
        std::str::from_utf8(&body[..end]).map_err(|_| ConnError::Setup("control: bad head"))?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or(ConnError::Setup("control: no status"))?;
    if status != 200 {
        return Err(ConnError::Status(status));
    }
    let mut json = &body[end + 4..];
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        // One chunk is all a placement needs: skip its size line.
        let nl = json
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or(ConnError::Setup("control: bad chunk"))?;
        json = &json[nl + 2..];
        if let Some(e) = json.windows(2).position(|w| w == b"\r\n") {
            json = &json[..e];
        }
    }
    serde_json::from_slice(json).map_err(|_| ConnError::Setup("control: bad placement JSON"))
}
