//! `brc train`: one run, or several seeds in parallel (one thread each).

use std::ops::Range;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use brc_train::{flush_to_zero, load_config, train, RunConfig, Summary, TrainOptions};
use clap::Args;
use rayon::prelude::*;

use crate::progress::{multi, RunProgress};
use crate::signals;

#[derive(Args)]
pub struct TrainArgs {
    /// The run config (TOML).
    #[arg(long, required_unless_present = "resume")]
    config: Option<PathBuf>,
    /// Continue the interrupted run in this directory from its newest checkpoint (its own
    /// config.toml is used).
    #[arg(long, conflicts_with_all = ["config", "seed", "seeds", "overrides", "out", "force"])]
    resume: Option<PathBuf>,
    /// Run seed (overrides run.seed).
    #[arg(long, conflicts_with = "seeds")]
    seed: Option<u64>,
    /// Several seeds in parallel, e.g. `0..5`, into `<out>/<name>/seed-<k>/`.
    #[arg(long, value_parser = parse_range)]
    seeds: Option<Range<u64>>,
    /// How many of the `--seeds` runs train at once (default: one per core).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    jobs: Option<u64>,
    /// Compute threads of each run (matrix products of the update); one per run by default,
    /// so that `--seeds` runs use the other cores.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    threads: u64,
    /// Override a config value, e.g. `--set training.episodes_per_task=100` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Output directory (overrides run.output_dir).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Replace an existing run directory.
    #[arg(long)]
    force: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Print the summaries as one JSON document instead of the table.
    #[arg(long)]
    json: bool,
}

fn parse_range(s: &str) -> Result<Range<u64>, String> {
    let (a, b) = s
        .split_once("..")
        .ok_or_else(|| format!("{s:?}: expected A..B, e.g. 0..5"))?;
    let a: u64 = a.trim().parse().map_err(|_| format!("{s:?}: bad start"))?;
    let b: u64 = b.trim().parse().map_err(|_| format!("{s:?}: bad end"))?;
    if a >= b {
        return Err(format!("{s:?}: empty range"));
    }
    Ok(a..b)
}

pub fn run(args: TrainArgs) -> Result<ExitCode> {
    signals::install()?;
    if let Some(dir) = &args.resume {
        let config = load_config(&dir.join("config.toml"), &[])
            .with_context(|| format!("{} is not a run directory", dir.display()))?;
        let opts = TrainOptions {
            run_dir: dir.clone(),
            force: false,
            resume: true,
        };
        let mut progress = RunProgress::new(&config, dir, &multi(args.quiet), args.quiet);
        let summary = with_threads(args.threads, || {
            train(&config, &opts, &mut progress).map_err(anyhow::Error::from)
        })?;
        progress.finish(&summary);
        return report(&[summary], &config, args.json);
    }
    let config_path = args
        .config
        .as_ref()
        .expect("clap requires --config without --resume");
    let mut config = load_config(config_path, &args.overrides)?;
    if let Some(seed) = args.seed {
        config.run.seed = seed;
    }
    if let Some(out) = &args.out {
        config.run.output_dir = out.clone();
    }
    let base = config.run.output_dir.join(&config.run.name);
    let runs: Vec<(RunConfig, PathBuf)> = match &args.seeds {
        None => vec![(config.clone(), base)],
        Some(range) => range
            .clone()
            .map(|k| {
                let mut c = config.clone();
                c.run.seed = k;
                (c, base.join(format!("seed-{k}")))
            })
            .collect(),
    };
    for (_, dir) in &runs {
        if dir.exists()
            && !args.force
            && dir
                .read_dir()
                .map(|mut d| d.next().is_some())
                .unwrap_or(false)
        {
            bail!(
                "run directory {} already exists (use --force to overwrite it)",
                dir.display()
            );
        }
    }

    let multi = multi(args.quiet);
    let train_one = |(config, dir): &(RunConfig, PathBuf)| -> Result<Summary> {
        let mut progress = RunProgress::new(config, dir, &multi, args.quiet);
        let opts = TrainOptions {
            run_dir: dir.clone(),
            force: args.force,
            resume: false,
        };
        let summary = with_threads(args.threads, || {
            train(config, &opts, &mut progress).map_err(anyhow::Error::from)
        })
        .with_context(|| format!("run {}", dir.display()))?;
        progress.finish(&summary);
        Ok(summary)
    };
    let summaries: Vec<Summary> = if runs.len() == 1 {
        vec![train_one(&runs[0])?]
    } else {
        // One single-threaded run per worker; envs are built inside each run's thread.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let jobs = args.jobs.map_or(cores, |j| j as usize);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(runs.len().min(jobs))
            .build()
            .context("cannot start the thread pool")?;
        pool.install(|| runs.par_iter().map(train_one).collect::<Result<_>>())?
    };

    report(&summaries, &config, args.json)
}

/// Runs `f` on its own compute pool of `threads` threads: the agent's matrix products use the
/// pool it is built in, and a run must not borrow the threads of the pool that runs `--seeds`.
fn with_threads<T>(threads: u64, f: impl FnOnce() -> Result<T> + Send) -> Result<T>
where
    T: Send,
{
    compute_pool(threads as usize)?.install(f)
}

/// A pool of `threads` compute threads, each flushing denormal floats to zero
/// (`brc_nn::denormals`): the one place brc's compute threads are made.
pub(crate) fn compute_pool(threads: usize) -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .start_handler(|_| flush_to_zero())
        .build()
        .context("cannot start the compute threads")
}

fn report(summaries: &[Summary], config: &RunConfig, json: bool) -> Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(summaries)?);
    } else {
        print_table(summaries, config);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(summaries: &[Summary], config: &RunConfig) {
    let names = config.task_names();
    print!("{:<6}", "seed");
    for n in &names {
        print!(" {n:>10}");
    }
    println!(
        " {:>9} {:>10} {:>10} {:>10} {:>9}",
        "average", "params", "env steps", "updates", "wall s"
    );
    for s in summaries {
        print!("{:<6}", s.seed);
        for n in &names {
            print!(
                " {:>10.1}",
                s.final_eval.get(n).copied().unwrap_or(f64::NAN)
            );
        }
        println!(
            " {:>9.1} {:>10} {:>10} {:>10} {:>9.1}",
            s.final_average, s.parameters, s.env_steps, s.updates, s.wall_seconds
        );
    }
}
