//! `brc info`: what a config would train — the agent, its architecture and parameter count.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use brc_train::{build_run_agent, load_config};
use clap::Args;
use serde_json::json;

#[derive(Args)]
pub struct InfoArgs {
    /// The run config (TOML).
    #[arg(long)]
    config: PathBuf,
    /// Override a config value (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Print one JSON document instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: InfoArgs) -> Result<ExitCode> {
    let config = load_config(&args.config, &args.overrides)?;
    let agent = build_run_agent(&config)?;
    let doc = json!({
        "name": config.run.name,
        "agent": config.agent,
        "parameters": agent.num_params(),
        "gradient": config.agent.gradient().name(),
        "sampling": config.training.sampling,
        "tasks": config.tasks,
        "episodes": config.total_episodes(),
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!("run        {}", config.run.name);
        println!("agent      {}", agent.kind());
        println!("parameters {}", agent.num_params());
        println!(
            "gradient   {} ({} batches)",
            config.agent.gradient().name(),
            config.training.sampling.name()
        );
        println!(
            "tasks      {}",
            config
                .tasks
                .iter()
                .map(|t| format!(
                    "{} (g {}, wind {}, {} steps)",
                    t.name, t.gravity, t.wind_power, t.max_episode_steps
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
        println!("episodes   {} per task", config.training.episodes_per_task);
        println!("config     {}", serde_json::to_string(&config.agent)?);
    }
    Ok(ExitCode::SUCCESS)
}
