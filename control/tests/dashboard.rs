//! The dashboard in a real headless Chromium, driven over the DevTools protocol: what a
//! person sees (nodes, weights, ring version), and a CLI change showing up without a reload.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use support::{cli_ok, eventually, unique, ChildGuard, ControlProc, FakeNode, Http};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Headless Chromium with a DevTools port, showing `url`; killed on drop.
struct Browser {
    _child: ChildGuard,
    devtools: String,
    profile: std::path::PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl Browser {
    fn open(url: &str) -> Browser {
        let bin = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".to_owned());
        let profile = std::env::temp_dir().join(unique("control-chromium"));
        let mut child = Command::new(&bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("start {bin} (scripts/test installs Debian's chromium): {e}")
            });
        let stderr = child.stderr.take().expect("stderr");
        let guard = ChildGuard(Some(child));
        // Chromium prints "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID".
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(i) = line.find("ws://") {
                    let _ = tx.send(line[i..].trim().to_owned());
                }
            }
        });
        let ws = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("chromium printed its DevTools address");
        let hostport = ws
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .expect("host:port")
            .to_owned();
        Browser {
            _child: guard,
            devtools: format!("http://{hostport}"),
            profile,
        }
    }

    /// Connects to the page showing `url`.
    async fn page(&self, url: &str) -> Page {
        let http = Http::new(&self.devtools);
        let ws_url = eventually(Duration::from_secs(30), "the page target", || async {
            let (_, list) = http.call("GET", "/json/list", None, None).await;
            list.as_array()?
                .iter()
                .find(|t| {
                    t["type"] == "page" && t["url"].as_str().is_some_and(|u| u.starts_with(url))
                })
                .and_then(|t| t["webSocketDebuggerUrl"].as_str().map(str::to_owned))
        })
        .await;
        let (ws, _) = tokio_tungstenite::connect_async(ws_url.as_str())
            .await
            .expect("connect to the page's DevTools socket");
        Page { ws, next_id: 1 }
    }
}

struct Page {
    ws: Ws,
    next_id: u64,
}

impl Page {
    /// `Runtime.evaluate`, returning the value.
    async fn eval(&mut self, expr: &str) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let msg = json!({"id": id, "method": "Runtime.evaluate",
            "params": {"expression": expr, "returnByValue": true}});
        self.ws
            .send(Message::Text(msg.to_string()))
            .await
            .expect("send to DevTools");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let m = tokio::time::timeout(left, self.ws.next())
                .await
                .expect("DevTools answered in time")
                .expect("DevTools socket open")
                .expect("DevTools message");
            let Message::Text(t) = m else { continue };
            let v: Value = serde_json::from_str(&t).expect("DevTools JSON");
            if v["id"] == id {
                return v["result"]["result"]["value"].clone();
            }
        }
    }

    /// The text a person sees in the element with `id`.
    async fn text(&mut self, id: &str) -> String {
        let v = self
            .eval(&format!(
                "(document.getElementById({id:?}) || {{}}).innerText || ''"
            ))
            .await;
        v.as_str().unwrap_or_default().to_owned()
    }

    /// Cell `field` of the row of node `node`.
    async fn cell(&mut self, node: &str, field: &str) -> String {
        let expr = format!(
            "(document.querySelector('tr[data-node=\"{node}\"] td[data-field=\"{field}\"]') || {{}}).innerText || ''"
        );
        self.eval(&expr)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_nodes_and_follows_cli_changes_live() {
    let c = ControlProc::start(&[("SCALING_INTERVAL_SEC", "1")]).await;
    let h = Http::new(&c.url);
    let _a = FakeNode::start(&c.url, "gw-alpha", 2, 120, None);
    let _b = FakeNode::start(&c.url, "gw-beta", 1, 80, None);
    eventually(Duration::from_secs(20), "two nodes joined", || async {
        (h.version().await == 2).then_some(())
    })
    .await;

    let page_url = format!("{}/", c.url);
    let browser = tokio::task::block_in_place(|| Browser::open(&page_url));
    let mut page = browser.page(&page_url).await;

    // What a person sees: both nodes with their weights and states, the ring version.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if page.text("ring-version").await == "2" && page.cell("gw-beta", "weight").await == "1" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "dashboard never showed version 2 with both nodes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(page.cell("gw-alpha", "weight").await, "2");
    assert_eq!(page.cell("gw-alpha", "state").await, "active");
    assert_eq!(page.cell("gw-alpha", "health").await, "live");
    let share = page.cell("gw-alpha", "share").await;
    assert!(share.ends_with('%'), "{share}");
    let nodes_text = page.text("nodes").await;
    assert!(
        nodes_text.contains("gw-alpha") && nodes_text.contains("gw-beta"),
        "{nodes_text}"
    );
    let history = page.text("history").await;
    assert!(history.contains("add gw-alpha (weight 2)"), "{history}");

    // Mark this page load; a reload would lose the mark.
    page.eval("window.__loadMark = 'same-load'").await;

    // A change made with the CLI appears without a reload.
    let url = c.url.clone();
    let out =
        tokio::task::spawn_blocking(move || cli_ok(&url, &["ring", "weight", "gw-beta", "7"], &[]))
            .await
            .unwrap();
    assert!(out.contains("ring version 3"), "{out}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if page.cell("gw-beta", "weight").await == "7" && page.text("ring-version").await == "3" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the weight change never appeared on the page"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        page.eval("window.__loadMark").await,
        "same-load",
        "the page was not reloaded"
    );
    let history = page.text("history").await;
    assert!(history.contains("weight gw-beta → 7"), "{history}");
    let scale = page.text("scale-now").await;
    assert!(
        scale.contains("r_conn") && scale.contains("last decision"),
        "{scale}"
    );
}
