//! `loadgen` binary: see the library docs for the layout; this file only dispatches.

use anyhow::Context as _;
use clap::Parser as _;
use loadgen::config::{Cli, Command, RunArgs, ScenarioKind};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Connect(a) => scenario(ScenarioKind::Connect, a),
        Command::Direct(a) => scenario(ScenarioKind::Direct, a),
        Command::Echo(a) => scenario(ScenarioKind::Echo, a),
        Command::Churn(a) => scenario(ScenarioKind::Churn, a),
        Command::Compare { files } => {
            print!("{}", loadgen::report::compare::compare(&files)?);
            Ok(())
        }
        Command::Worker => loadgen::worker::main(),
    }
}

fn scenario(kind: ScenarioKind, args: RunArgs) -> anyhow::Result<()> {
    let (json, html) = (args.json.clone(), args.html.clone());
    let report = loadgen::parent::run(kind, args)?;
    print!("{}", report.summary());
    if let Some(p) = json {
        std::fs::write(&p, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = html {
        let page = loadgen::report::html::render(&report)?;
        std::fs::write(&p, page).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}
