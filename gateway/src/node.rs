//! Starting the node: resolve the listen address, spawn one pinned glommio executor per
//! shard, print the bound address, then hand over to `drain` (wait for SIGTERM, drain, exit).

use std::net::SocketAddr;
use std::sync::{mpsc, Arc};

use anyhow::Context;
use glommio::{LocalExecutorBuilder, Placement};

use crate::config::Config;
use crate::shard::{self, Node};

/// Runs the node until it has drained (or a second signal arrives). Returns the process exit
/// code.
pub fn run(config: Config) -> anyhow::Result<i32> {
    let shards = config.shard_count();
    let (bound, reservation) = reserve_port(config.listen).context("binding the listen address")?;
    let mut node = Node::new(config, bound, shards);
    // REDIS_URL: the shared store. Its bridges connect in the background (readiness and
    // handshakes say 503 until they have); `_store` keeps them running until exit.
    let _store = if node.config.redis_url.is_empty() {
        None
    } else {
        let config = crate::store::StoreConfig {
            redis_url: node.config.redis_url.clone(),
            key_prefix: node.config.redis_prefix.clone(),
            // The Redis log keeps the bounds the in-memory one would.
            buffer_max: node.config.buffer_max,
            resume_ttl_sec: node.config.resume_ttl_sec,
            dedup_max: node.config.dedup_max,
            ..crate::store::StoreConfig::default()
        };
        let (store, handles) =
            crate::store::Store::start(config, shards).context("starting the redis store")?;
        node.store_health = Some(store.health_probe());
        node.store_handles = std::sync::Mutex::new(handles.into_iter().map(Some).collect());
        Some(store)
    };
    // KAFKA_BROKERS: the cross-node relay (`shard/relaypath.rs`); `_relay` keeps it running.
    let _relay = if node.config.kafka_brokers.is_empty() {
        None
    } else {
        let mut config = crate::relay::RelayConfig::from_env(&node.config.node_id)
            .context("relay configuration")?;
        config.brokers = node.config.kafka_brokers.clone();
        let (relay, plan) =
            crate::relay::Relay::start(config, shards).context("starting the kafka relay")?;
        node.relay_plan = Some(plan);
        node.relay_counters = Some(relay.counters().clone());
        Some(relay)
    };
    let node = Arc::new(node);
    let plan = Arc::new(shard::mesh::MeshPlan::new(shards));
    let cpus = usable_cpus();
    let (ready_tx, ready_rx) = mpsc::channel::<anyhow::Result<()>>();
    let mut handles = Vec::with_capacity(shards);
    for id in 0..shards {
        // Pin shard i to the i-th CPU this process may use; with more shards than CPUs
        // (tests on a small machine) or `--unpinned-shards` the shards float.
        let placement = match cpus.get(id) {
            Some(&cpu) if shards <= cpus.len() && !node.config.unpinned_shards => {
                Placement::Fixed(cpu)
            }
            _ => Placement::Unbound,
        };
        let node = node.clone();
        let plan = plan.clone();
        let ready = ready_tx.clone();
        let io_memory = node.config.io_memory_kib * 1024;
        let handle = LocalExecutorBuilder::new(placement)
            .name(&format!("shard-{id}"))
            .io_memory(io_memory)
            .ring_depth(node.config.io_ring_depth)
            .spawn(move || async move { shard::run(id, node, plan, ready).await })
            .map_err(|e| anyhow::anyhow!("starting shard {id}: {e}"))?;
        handles.push(handle);
    }
    drop(ready_tx);
    for _ in 0..shards {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => anyhow::bail!("a shard stopped during start-up"),
        }
    }
    // Every shard listens on `bound` now: the reservation has done its job.
    drop(reservation);
    // The address on stdout is what scripts and tests wait for.
    println!("listening on {bound}");
    tracing::info!(%bound, shards, node_id = %node.config.node_id, "gateway ready");
    crate::cluster::start(&node)?;

    crate::drain::wait_and_drain(&node)
}

/// Binds `addr` once (SO_REUSEPORT, not listening) so port 0 resolves to one concrete port
/// that every shard then binds. A bound-but-not-listening socket takes no connections; the
/// caller closes it once the shards listen.
fn reserve_port(addr: SocketAddr) -> anyhow::Result<(SocketAddr, socket2::Socket)> {
    let domain = if addr.is_ipv6() {
        socket2::Domain::IPV6
    } else {
        socket2::Domain::IPV4
    };
    let s = socket2::Socket::new(domain, socket2::Type::STREAM, None)?;
    s.set_reuse_port(true)?;
    s.bind(&addr.into())?;
    let bound = s
        .local_addr()?
        .as_socket()
        .context("listen address is not an IP socket address")?;
    Ok((bound, s))
}

/// CPUs in this process's affinity mask, in order.
fn usable_cpus() -> Vec<usize> {
    let mut set = nix_free_cpuset();
    set.sort_unstable();
    set
}

fn nix_free_cpuset() -> Vec<usize> {
    // /proc/self/status has "Cpus_allowed_list: 0-1,4"; parse it without unsafe FFI.
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let list = text
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(str::trim)
        .unwrap_or("");
    let mut cpus = Vec::new();
    for part in list.split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(a), Ok(b)) = (a.trim().parse::<usize>(), b.trim().parse::<usize>()) {
            cpus.extend(a..=b.min(a + 4096));
        }
    }
    if cpus.is_empty() {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        cpus.extend(0..n);
    }
    cpus
}
