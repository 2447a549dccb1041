//! The command line: `control serve`, and the operator commands that talk to a running
//! control over HTTP (human tables by default, `--json` for scripts).
//!
//! Layout: this file (arguments and dispatch), `client.rs` (HTTP calls, error bodies),
//! `table.rs` (text tables), `serve.rs` (starting the service).

mod client;
mod serve;
pub mod table;

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde_json::{json, Value};

use crate::config::Config;
use client::Client;

/// `control` — ring, membership, placement and autoscaling for the gateway cluster.
#[derive(Debug, Parser)]
#[command(name = "control", version, about)]
pub struct Cli {
    /// Base URL of the running control (operator commands).
    #[arg(
        long,
        global = true,
        env = "CONTROL_URL",
        default_value = "http://127.0.0.1:8081"
    )]
    pub url: String,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// Admin token: sent by write commands; required by `serve` for writes when set.
    #[arg(long, global = true, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// The command.
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run the control service.
    Serve(Box<Config>),
    /// List nodes: weight, state, key share, liveness, last report.
    Nodes,
    /// Ring commands.
    #[command(subcommand)]
    Ring(RingCmd),
    /// Drain a node (it owns no keys; connected users move as it hands them over).
    Drain {
        /// Node id.
        id: String,
    },
    /// Make a drained node active again.
    Activate {
        /// Node id.
        id: String,
    },
    /// Which node owns a user.
    Resolve {
        /// User id.
        user: String,
    },
    /// Placement for a user: WebSocket URL with a signed token.
    Connect {
        /// User id.
        user: String,
        /// App credential when the server sets CONNECT_API_KEYS.
        #[arg(long, env = "CONTROL_API_KEY", hide_env_values = true)]
        api_key: Option<String>,
    },
    /// The current scaling decision with its inputs.
    Scale,
}

/// `control ring …`.
#[derive(Debug, Subcommand)]
pub enum RingCmd {
    /// The ring snapshot: version, nodes, key shares.
    Show,
    /// Add a node.
    Add {
        /// Node id.
        id: String,
        /// Relative capacity (1..=1000).
        #[arg(long, default_value_t = 1)]
        weight: i64,
        /// Public WebSocket URL clients are sent to.
        #[arg(long)]
        ws_url: String,
    },
    /// Remove a node.
    Remove {
        /// Node id.
        id: String,
    },
    /// Set a node's weight.
    Weight {
        /// Node id.
        id: String,
        /// New weight (1..=1000).
        #[arg(allow_negative_numbers = true)]
        weight: i64,
    },
    /// Simulate a ring locally: per-node share, max/mean, and what a change moves.
    Simulate {
        /// Nodes (weight 1 each).
        #[arg(long, default_value_t = 10)]
        nodes: u32,
        /// Points per unit of weight.
        #[arg(long, default_value_t = rtc_ring::DEFAULT_VNODES_PER_WEIGHT)]
        vnodes: u32,
        /// Synthetic keys to hash.
        #[arg(long, default_value_t = 1_000_000)]
        keys: u64,
        /// Nodes to add.
        #[arg(long, default_value_t = 0)]
        add: u32,
        /// Nodes to remove.
        #[arg(long, default_value_t = 0)]
        remove: u32,
    },
}

/// Runs one command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let Cli {
        url,
        json,
        admin_token,
        cmd,
    } = cli;
    let client = Client::new(&url, admin_token.clone());
    let out = |v: &Value, human: String| {
        if json {
            println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
        } else {
            print!("{human}");
        }
    };
    match cmd {
        Cmd::Serve(cfg) => {
            let mut cfg = *cfg;
            cfg.admin_token = admin_token;
            return serve::run(cfg).await;
        }
        Cmd::Nodes => {
            let v = client.get("/v1/nodes").await?;
            out(&v, nodes_table(&v));
        }
        Cmd::Ring(RingCmd::Show) => {
            let v = client.get("/v1/ring").await?;
            out(&v, ring_table(&v)?);
        }
        Cmd::Ring(RingCmd::Add { id, weight, ws_url }) => {
            let body = json!({ "id": id, "weight": weight, "url": ws_url });
            let v = client.send("POST", "/v1/nodes", Some(body)).await?;
            out(&v, changed(&v));
        }
        Cmd::Ring(RingCmd::Remove { id }) => {
            let v = client
                .send("DELETE", &format!("/v1/nodes/{}", seg(&id)), None)
                .await?;
            out(&v, changed(&v));
        }
        Cmd::Ring(RingCmd::Weight { id, weight }) => {
            let path = format!("/v1/nodes/{}/weight", seg(&id));
            let v = client
                .send("PUT", &path, Some(json!({ "weight": weight })))
                .await?;
            out(&v, changed(&v));
        }
        Cmd::Ring(RingCmd::Simulate {
            nodes,
            vnodes,
            keys,
            add,
            remove,
        }) => {
            let s = rtc_ring::simulate(nodes, vnodes, keys, add, remove)
                .context("simulating the ring")?;
            out(&simulation_json(&s), format!("{s}\n"));
        }
        Cmd::Drain { id } => {
            let v = client
                .send("POST", &format!("/v1/nodes/{}/drain", seg(&id)), None)
                .await?;
            out(&v, changed(&v));
        }
        Cmd::Activate { id } => {
            let path = format!("/v1/nodes/{}/activate", seg(&id));
            let v = client.send("POST", &path, None).await?;
            out(&v, changed(&v));
        }
        Cmd::Resolve { user } => {
            let v = client
                .get(&format!("/v1/resolve?userId={}", seg(&user)))
                .await?;
            let human = format!(
                "{user} → {} ({}) at ring version {}\n",
                s(&v["nodeId"]),
                s(&v["publicWsUrl"]),
                v["version"]
            );
            out(&v, human);
        }
        Cmd::Connect { user, api_key } => {
            let v = client
                .get_with_key(&format!("/v1/connect?userId={}", seg(&user)), api_key)
                .await?;
            let human = format!(
                "wsUrl        {}\ntoken        {}\nringVersion  {}\n",
                s(&v["wsUrl"]),
                s(&v["token"]),
                v["ringVersion"]
            );
            out(&v, human);
        }
        Cmd::Scale => {
            let v = client.get("/v1/scale").await?;
            out(&v, scale_text(&v));
        }
    }
    Ok(())
}

/// Percent-encodes a path or query segment (ids and user ids are validated server-side;
/// this only keeps a typo from turning into a different path).
fn seg(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b':' | b'@') {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "–".to_owned(),
        other => other.to_string(),
    }
}

fn num(v: &Value, digits: usize) -> String {
    v.as_f64()
        .map_or("–".to_owned(), |f| format!("{f:.digits$}"))
}

fn changed(v: &Value) -> String {
    let c = &v["change"];
    let what = match c["op"].as_str() {
        Some("addNode") => format!(
            "added {} (weight {}, {})",
            s(&c["id"]),
            c["weight"],
            s(&c["url"])
        ),
        Some("removeNode") => format!("removed {}", s(&c["id"])),
        Some("setWeight") => format!("{} weight → {}", s(&c["id"]), c["weight"]),
        Some("setState") => format!("{} → {}", s(&c["id"]), s(&c["state"])),
        _ => c.to_string(),
    };
    format!("ring version {}: {what}\n", v["version"])
}

fn nodes_table(v: &Value) -> String {
    let empty = Vec::new();
    let rows: Vec<Vec<String>> = v["nodes"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .map(|n| {
            let r = &n["report"];
            vec![
                s(&n["id"]),
                s(&n["state"]),
                s(&n["weight"]),
                n["share"]
                    .as_f64()
                    .map_or("–".into(), |f| format!("{:.1}%", f * 100.0)),
                s(&n["health"]),
                s(&r["activeConn"]),
                num(&r["mps"], 1),
                num(&r["p95LatencyMs"], 1),
                s(&r["ringVersion"]),
                s(&n["url"]),
            ]
        })
        .collect();
    format!(
        "ring version {}\n{}",
        v["version"],
        table::render(
            &[
                "NODE", "STATE", "WEIGHT", "SHARE", "HEALTH", "CONN", "MPS", "P95MS", "RINGV",
                "URL"
            ],
            &rows
        )
    )
}

fn ring_table(v: &Value) -> anyhow::Result<String> {
    let ring = rtc_ring::Ring::from_json(&v.to_string()).context("parsing the ring snapshot")?;
    let shares = ring.shares();
    let rows: Vec<Vec<String>> = ring
        .nodes()
        .iter()
        .map(|n| {
            let share = shares
                .iter()
                .find(|(id, _)| id == &n.id)
                .map_or(0.0, |x| x.1);
            vec![
                n.id.clone(),
                n.weight.to_string(),
                format!("{:?}", n.state).to_lowercase(),
                format!("{:.2}%", share * 100.0),
                n.url.clone(),
            ]
        })
        .collect();
    Ok(format!(
        "ring version {} ({} points, {} per weight)\n{}",
        ring.version(),
        ring.point_count(),
        ring.vnodes_per_weight(),
        table::render(&["NODE", "WEIGHT", "STATE", "SHARE", "URL"], &rows)
    ))
}

fn scale_text(v: &Value) -> String {
    let t = &v["termsNow"];
    let i = &v["inputsNow"];
    let mut o = format!(
        "inputs now: conn {}, msg/s {}, p95 {} ms, current replicas {}\nterms now: r_conn {}, r_mps {}, r_lat {} → target {}\n",
        i["totalConn"], num(&i["totalMps"], 1), num(&i["p95Ms"], 1), i["current"],
        t["rConn"], t["rMps"], t["rLat"], t["target"]
    );
    let d = &v["decision"];
    if d.is_null() {
        o.push_str("decision: none yet\n");
    } else {
        o.push_str(&format!(
            "decision: {} → desired {} ({})\n",
            s(&d["kind"]),
            d["desired"],
            s(&d["reason"])
        ));
    }
    o
}

fn simulation_json(s: &rtc_ring::Simulation) -> Value {
    let loads = |l: &[rtc_ring::NodeLoad]| -> Vec<Value> {
        l.iter()
            .map(|n| json!({"id": n.id, "keys": n.keys, "keyShare": n.key_share, "spaceShare": n.space_share}))
            .collect()
    };
    json!({
        "nodes": s.nodes,
        "vnodesPerWeight": s.vnodes_per_weight,
        "keys": s.keys,
        "added": s.added,
        "removed": s.removed,
        "before": loads(&s.before),
        "after": loads(&s.after),
        "beforeMaxOverMean": s.before_max_over_mean,
        "afterMaxOverMean": s.after_max_over_mean,
        "movedKeys": s.moved_keys,
        "movedKeyFraction": s.moved_key_fraction,
        "movedSpaceFraction": s.moved_space_fraction,
        "idealMovedFraction": s.ideal_moved_fraction,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let c = Cli::parse_from([
            "control", "--url", "http://x", "ring", "weight", "n1", "3", "--json",
        ]);
        assert!(c.json);
        assert!(matches!(
            c.cmd,
            Cmd::Ring(RingCmd::Weight { weight: 3, .. })
        ));
    }

    #[test]
    fn segments_are_escaped() {
        assert_eq!(seg("a b/c"), "a%20b%2Fc");
        assert_eq!(seg("user@x:1"), "user@x:1");
    }
}
