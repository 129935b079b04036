//! `brc evaluate`: greedy episodes of a trained agent on held-out seeds.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use brc_envs::{EpisodeStats, LunarLander};
use brc_train::{evaluate_task_observed, load_run_agent, write_atomic, TaskEvaluation, AGENT_FILE};
use clap::Args;
use serde::Serialize;

use crate::watch::WatchArgs;

#[derive(Args)]
pub struct EvaluateArgs {
    /// The run directory (holds config.toml and checkpoints/).
    #[arg(long)]
    run: PathBuf,
    /// best, final, ep<N>, a file in the run directory (a published run's
    /// weights.safetensors), or a path to a checkpoint.
    #[arg(long, default_value = "best")]
    checkpoint: String,
    /// A task name of the run, or all.
    #[arg(long, default_value = "all")]
    task: String,
    /// Greedy episodes per task.
    #[arg(long, default_value_t = 20)]
    episodes: usize,
    /// Env seed of the first episode (episode i uses seed + i); default: the run's eval seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Print one JSON document instead of the table.
    #[arg(long)]
    json: bool,
    /// VarShare runs: evaluate the shared weights θ alone, every task residual off (the
    /// network all tasks start from); the report file's name says `shared-only`.
    #[arg(long)]
    shared_only: bool,
    /// VarShare runs: evaluate the pruned network, each task's μ entries with |μ| below the
    /// run's `varshare.prune_threshold` set to 0 (the network `brc info --run` counts); the
    /// report file's name says `pruned`.
    #[arg(long, conflicts_with = "shared_only")]
    pruned: bool,
    /// With --pruned: prune at this threshold instead of the run's.
    #[arg(long, requires = "pruned", value_parser = parse_threshold)]
    prune_threshold: Option<f64>,
    #[command(flatten)]
    watch: WatchArgs,
}

/// A prune threshold: a finite number ≥ 0.
pub(crate) fn parse_threshold(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(t) if t.is_finite() && t >= 0.0 => Ok(t),
        _ => Err(format!("{s:?} is not a finite number ≥ 0")),
    }
}

#[derive(Serialize)]
struct Row<'a> {
    task: &'a str,
    success_rate: f64,
    #[serde(flatten)]
    stats: EpisodeStats,
}

pub fn run(args: EvaluateArgs) -> Result<ExitCode> {
    if args.episodes == 0 {
        bail!("--episodes must be at least 1");
    }
    let (config, mut agent, file) = load_run_agent(&args.run, &args.checkpoint)?;
    if args.shared_only {
        agent.set_shared_only(true).context("--shared-only")?;
    }
    let pruned = if args.pruned {
        Some(
            agent
                .prune_residuals(args.prune_threshold)
                .context("--pruned")?,
        )
    } else {
        None
    };
    let seed = args.seed.unwrap_or(config.evaluation.seed);
    let selected: Vec<usize> = match args.task.as_str() {
        "all" => (0..config.tasks.len()).collect(),
        name => vec![config
            .tasks
            .iter()
            .position(|t| t.name == name)
            .with_context(|| {
                format!(
                    "unknown task {name:?}: the run's tasks are {} (or all)",
                    config.task_names().join(", ")
                )
            })?],
    };
    let mut evaluations: Vec<TaskEvaluation> = Vec::new();
    for &id in &selected {
        let spec = &config.tasks[id];
        let mut env = LunarLander::new(spec.clone())?;
        let mut watcher = args.watch.watcher(&spec.name, selected.len() > 1)?;
        let eval = evaluate_task_observed(
            agent.as_ref(),
            id,
            spec,
            &mut env,
            args.episodes,
            seed,
            |_, env, progress| watcher.observe(env, progress),
        )?;
        watcher.finish()?;
        evaluations.push(eval);
    }
    let rows: Vec<Row> = evaluations
        .iter()
        .map(|e| Row {
            task: &e.task,
            success_rate: e.success_rate(),
            stats: EpisodeStats::from_episodes(&e.episodes).expect("episodes ≥ 1"),
        })
        .collect();
    let average = rows.iter().map(|r| r.stats.mean_return).sum::<f64>() / rows.len() as f64;

    #[derive(Serialize)]
    struct Report<'a> {
        run: String,
        checkpoint: String,
        first_seed: u64,
        shared_only: bool,
        /// The threshold μ was pruned at (`--pruned`); absent otherwise.
        #[serde(skip_serializing_if = "Option::is_none")]
        pruned_below: Option<f64>,
        average: f64,
        tasks: &'a [Row<'a>],
        episodes: &'a [TaskEvaluation],
    }
    let report = Report {
        run: args.run.display().to_string(),
        checkpoint: file.display().to_string(),
        first_seed: seed,
        shared_only: args.shared_only,
        pruned_below: pruned,
        average,
        tasks: &rows,
        episodes: &evaluations,
    };
    let text = serde_json::to_string_pretty(&report)?;
    // Several weight files can share a directory (a published run's weights and best):
    // the file's stem keeps their reports apart; a checkpoint directory holds one agent.
    let which = match file.file_stem().and_then(|s| s.to_str()) {
        Some(stem) if file.file_name() != Some(AGENT_FILE.as_ref()) => format!("{stem}-"),
        _ => String::new(),
    };
    // --shared-only and --pruned exclude each other (clap).
    let variant = match pruned {
        Some(t) => format!("pruned{t:e}-"),
        None if args.shared_only => "shared-only-".to_string(),
        None => String::new(),
    };
    let out = file.with_file_name(format!(
        "evaluation-{which}{variant}{}-seed{seed}-n{}.json",
        args.task, args.episodes
    ));
    write_atomic(&out, text.as_bytes())
        .with_context(|| format!("cannot write {}", out.display()))?;

    if args.json {
        println!("{text}");
    } else {
        println!(
            "{:<10} {:>8} {:>17} {:>9} {:>9} {:>8}",
            "task", "episodes", "return mean ± std", "min", "max", "success"
        );
        for r in &rows {
            let s = &r.stats;
            println!(
                "{:<10} {:>8} {:>8.2} ± {:>6.2} {:>9.2} {:>9.2} {:>7.0}%",
                r.task,
                s.episodes,
                s.mean_return,
                s.std_return,
                s.min_return,
                s.max_return,
                100.0 * r.success_rate
            );
        }
        println!("{:<10} {:>8} {:>8.2}", "average", "", average);
        println!("per-episode results: {}", out.display());
    }
    Ok(ExitCode::SUCCESS)
}
