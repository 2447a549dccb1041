//! `gateway` binary: parse the configuration, set up logging, run the node.
//! See the library crate doc (`gateway::`) for the layout.

use anyhow::Context;

fn main() -> anyhow::Result<()> {
    let config = gateway::config::Config::load().context("configuration")?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if config.log_json {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    let code = gateway::node::run(config)?;
    std::process::exit(code);
}
