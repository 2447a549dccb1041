//! `control serve`: logging, state (memory or Redis), the listener, the loops.

use anyhow::Context;
use tracing_subscriber::EnvFilter;

use crate::config::Config;
use crate::state::store::{RedisStore, Store};
use crate::state::{now_ms, Control};

/// Runs the service until SIGINT/SIGTERM.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json_logs = std::env::var("LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests calling run twice in one process) is harmless: ignore it.
    let _ = if json_logs {
        builder.json().try_init()
    } else {
        builder.try_init()
    };

    cfg.validate().context("invalid configuration")?;
    let addr = cfg.listen_addr()?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let local = listener.local_addr().context("reading the bound address")?;
    let advertise = cfg
        .advertise_url
        .clone()
        .unwrap_or_else(|| format!("http://{local}"));
    let store = match &cfg.redis_url {
        None => Store::Memory,
        Some(url) => {
            let instance = format!("{}-{}", std::process::id(), now_ms());
            let r = RedisStore::connect(
                url,
                &cfg.redis_prefix,
                &instance,
                &advertise,
                cfg.lease_ttl(),
            )
            .await
            .with_context(|| format!("connecting to Redis at {url}"))?;
            Store::Redis(r)
        }
    };
    let persisted = matches!(store, Store::Redis(_));
    let st = Control::start(cfg, store, advertise.clone())
        .await
        .context("loading the control state")?;
    st.spawn_loops();
    tracing::info!(
        listen = %local,
        advertise = %advertise,
        ring_version = st.ring().version(),
        redis = persisted,
        "control serving"
    );
    crate::http::serve(st, listener)
        .await
        .context("serving HTTP")
}
