//! The operator commands' HTTP client: JSON in and out, the server's error body turned into
//! a readable error.

use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value;

/// Request timeout (long enough for a write that waits on Redis).
const TIMEOUT: Duration = Duration::from_secs(15);

/// A client of one control.
#[derive(Debug)]
pub struct Client {
    base: String,
    admin_token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    /// For the control at `base`.
    pub fn new(base: &str, admin_token: Option<String>) -> Self {
        Client {
            base: base.trim_end_matches('/').to_owned(),
            admin_token,
            http: reqwest::Client::new(),
        }
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.get_with_key(path, None).await
    }

    /// `GET path` with an app key.
    pub async fn get_with_key(&self, path: &str, key: Option<String>) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .get(format!("{}{path}", self.base))
            .timeout(TIMEOUT);
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        Self::finish(req, path).await
    }

    /// A write, with the admin token when one is configured.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let method = reqwest::Method::from_bytes(method.as_bytes()).context("HTTP method")?;
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .timeout(TIMEOUT);
        if let Some(t) = &self.admin_token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        Self::finish(req, path).await
    }

    async fn finish(req: reqwest::RequestBuilder, path: &str) -> anyhow::Result<Value> {
        let resp = req
            .send()
            .await
            .with_context(|| format!("calling control ({path})"))?;
        let status = resp.status();
        let text = resp.text().await.context("reading control's answer")?;
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if !status.is_success() {
            let code = v["error"].as_str().unwrap_or("error");
            let msg = v["message"]
                .as_str()
                .map_or_else(|| v.to_string(), str::to_owned);
            bail!("control answered {status} ({code}): {msg}");
        }
        Ok(v)
    }
}
