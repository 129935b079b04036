//! `brc info`: what a config would train — the agent, its architecture and parameter counts
//! (shared, VarShare's per-task adapters, total) — or, given a trained run, also how many
//! adapter entries survive pruning per task and layer.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use brc_train::{build_run_agent, load_config, load_run_agent, Agent, VarShareDiagnostics};
use clap::Args;
use serde_json::json;

#[derive(Args)]
pub struct InfoArgs {
    /// The run config (TOML).
    #[arg(long, required_unless_present = "run", conflicts_with = "run")]
    config: Option<PathBuf>,
    /// A trained run directory instead: its config and the checkpoint's weights (VarShare
    /// runs: adapter parameters left after pruning, per task and layer).
    #[arg(long)]
    run: Option<PathBuf>,
    /// With --run: best, final, ep<N>, or a checkpoint path.
    #[arg(long, default_value = "final", requires = "run")]
    checkpoint: String,
    /// With --run: count the adapter entries surviving pruning at this threshold instead of
    /// the run's `varshare.prune_threshold`.
    #[arg(long, requires = "run", value_parser = crate::evaluate_cmd::parse_threshold)]
    prune_threshold: Option<f64>,
    /// Override a config value (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Print one JSON document instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: InfoArgs) -> Result<ExitCode> {
    let (config, agent, trained) = match (&args.config, &args.run) {
        (Some(path), _) => {
            let config = load_config(path, &args.overrides)?;
            let agent = build_run_agent(&config)?;
            (config, agent, false)
        }
        (None, Some(run)) => {
            if !args.overrides.is_empty() {
                bail!("--set applies to --config, not to a trained --run");
            }
            let (config, mut agent, _) = load_run_agent(run, &args.checkpoint)?;
            if let Some(t) = args.prune_threshold {
                agent
                    .prune_residuals(Some(t))
                    .context("--prune-threshold")?;
            }
            (config, agent, true)
        }
        (None, None) => bail!("give --config or --run"),
    };
    let counts = agent.parameter_counts();
    let threshold = args
        .prune_threshold
        .or(config.agent.varshare().map(|v| v.prune_threshold))
        .unwrap_or(0.0);
    let pruned = if trained {
        agent.varshare_diagnostics()?
    } else {
        None
    };
    let doc = json!({
        "name": config.run.name,
        "agent": config.agent,
        "parameters": agent.num_params(),
        "parameter_counts": counts,
        "after_pruning": pruned
            .as_ref()
            .map(|d| pruning_json(agent.as_ref(), d, threshold)),
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
        let critics = config.agent.critics();
        if critics > 1 {
            let each = agent.num_params() / critics;
            println!("critics    {critics} × {each} (mean target, mean Q)");
        }
        if let Some(v) = config.agent.varshare() {
            let tasks = config.tasks.len();
            println!(
                "varshare   {} (σp {}, β {}): shared {} + {tasks} tasks × {} adapter = {} trainable",
                v.mode.name(),
                v.sigma_prior,
                v.beta,
                counts.shared,
                counts.adapter_per_task,
                counts.total
            );
        }
        if let Some(d) = &pruned {
            print_pruning(agent.as_ref(), d, &config.task_names(), threshold);
        }
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

/// Adapter parameters after pruning: per task, the surviving μ entries (with their ρ when
/// variational), over all layers and per layer.
fn pruning_json(agent: &dyn Agent, d: &VarShareDiagnostics, threshold: f64) -> serde_json::Value {
    let counts = agent.parameter_counts();
    let per_entry = d.params_per_entry();
    let tasks: serde_json::Map<String, serde_json::Value> = d
        .kept
        .iter()
        .map(|(task, kept)| {
            let layers: serde_json::Map<String, serde_json::Value> = d
                .layers
                .iter()
                .map(|l| (l.layer.clone(), json!(l.kept[task] * per_entry)))
                .collect();
            (
                task.clone(),
                json!({ "adapter": kept * per_entry, "layers": layers }),
            )
        })
        .collect();
    json!({
        "threshold": threshold,
        "threshold_note": "μ entries with |μ| < threshold set to 0; a pruned entry takes its ρ with it",
        "shared": counts.shared,
        "adapter_before": counts.adapter_per_task,
        "tasks": tasks,
        "total": counts.shared + d.kept.values().sum::<usize>() * per_entry,
    })
}

fn print_pruning(agent: &dyn Agent, d: &VarShareDiagnostics, tasks: &[String], threshold: f64) {
    let counts = agent.parameter_counts();
    let per_entry = d.params_per_entry();
    let kept_total: usize = d.kept.values().sum::<usize>() * per_entry;
    println!(
        "pruned     shared {} + adapters {} = {} trainable after pruning (|μ| < {threshold} set to 0)",
        counts.shared,
        kept_total,
        counts.shared + kept_total
    );
    let width = d
        .layers
        .iter()
        .map(|l| l.layer.len())
        .max()
        .unwrap_or(5)
        .max(5);
    print!("  {:<width$}", "layer");
    for t in tasks {
        print!(" {t:>12}");
    }
    println!(" {:>12}", "of");
    for l in &d.layers {
        print!("  {:<width$}", l.layer);
        for t in tasks {
            print!(" {:>12}", l.kept[t] * per_entry);
        }
        println!(" {:>12}", l.weights * per_entry);
    }
    print!("  {:<width$}", "all");
    for t in tasks {
        print!(" {:>12}", d.kept[t] * per_entry);
    }
    println!(" {:>12}", counts.adapter_per_task);
}
