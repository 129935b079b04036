//! `brc env ...`: fidelity checks against Gymnasium recordings and the heuristic pilot.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use brc_envs::fidelity::{
    self, FileCheck, PRE_CONTACT_OBS_TOL, PRE_CONTACT_REWARD_TOL, RESET_OBS_TOL,
};
use brc_envs::rng::NumpyRng;
use brc_envs::{
    heuristic_action, run_episode, run_episode_observed, EpisodeStats, LunarLander, TaskSpec,
    NUM_ACTIONS,
};
use clap::Subcommand;
use serde::Serialize;

use crate::watch::WatchArgs;

#[derive(Subcommand)]
pub enum EnvCommand {
    /// Compare this port with episodes recorded from Gymnasium (refdata_*.json[.gz]); exits
    /// non-zero when any file is beyond the tolerances.
    Check {
        /// Reference files recorded by make_refdata.py.
        #[arg(long, num_args = 1.., required = true)]
        refdata: Vec<PathBuf>,
        /// Print one JSON document instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Run Gymnasium's heuristic pilot: episode i uses seed + i.
    Heuristic {
        /// standard, windy, heavy or all.
        #[arg(long, default_value = "all")]
        task: String,
        /// Episodes per task.
        #[arg(long, default_value_t = 100)]
        episodes: usize,
        /// Seed of the first episode.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Print one JSON document instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Fly the heuristic pilot or random actions, and record (GIF) or watch (window) it.
    Play {
        /// standard, windy, heavy or all.
        #[arg(long, default_value = "standard")]
        task: String,
        /// Who flies.
        #[arg(long, value_enum, default_value_t = Pilot::Heuristic)]
        policy: Pilot,
        /// Env seed of the first episode (episode i uses seed + i; random actions too).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Episodes per task.
        #[arg(long, default_value_t = 1)]
        episodes: usize,
        #[command(flatten)]
        watch: WatchArgs,
        /// Print one JSON document instead of the table.
        #[arg(long)]
        json: bool,
    },
}

/// Who flies in `brc env play`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Pilot {
    /// Gymnasium's heuristic pilot.
    Heuristic,
    /// Uniformly random actions (numpy-compatible RNG seeded with the episode's seed).
    Random,
}

pub fn run(cmd: EnvCommand) -> Result<ExitCode> {
    match cmd {
        EnvCommand::Check { refdata, json } => check(&refdata, json),
        EnvCommand::Heuristic {
            task,
            episodes,
            seed,
            json,
        } => heuristic(&task, episodes, seed, json),
        EnvCommand::Play {
            task,
            policy,
            seed,
            episodes,
            watch,
            json,
        } => play(&task, policy, seed, episodes, &watch, json),
    }
}

fn tasks_named(task: &str) -> Result<Vec<TaskSpec>> {
    Ok(match task {
        "all" => TaskSpec::defaults(),
        name => vec![TaskSpec::by_name(name).with_context(|| {
            format!("unknown task {name:?}: expected standard, windy, heavy or all")
        })?],
    })
}

fn play(
    task: &str,
    pilot: Pilot,
    seed: u64,
    episodes: usize,
    watch: &WatchArgs,
    json: bool,
) -> Result<ExitCode> {
    if episodes == 0 {
        bail!("--episodes must be at least 1");
    }
    let tasks = tasks_named(task)?;
    let mut rows = Vec::new();
    for spec in &tasks {
        let mut watcher = watch.watcher(&spec.name, tasks.len() > 1)?;
        let mut env = LunarLander::new(spec.clone())?;
        let mut summaries = Vec::with_capacity(episodes);
        for i in 0..episodes as u64 {
            let mut actions = NumpyRng::from_seed(seed + i);
            let policy = |obs: &brc_envs::Observation| match pilot {
                Pilot::Heuristic => heuristic_action(obs),
                Pilot::Random => (actions.random() * NUM_ACTIONS as f64) as usize,
            };
            summaries.push(run_episode_observed(
                &mut env,
                seed + i,
                spec.max_episode_steps,
                policy,
                |env, progress| watcher.observe(env, progress),
            )?);
        }
        watcher.finish()?;
        rows.push((spec.name.clone(), summaries));
    }
    if json {
        let doc: Vec<_> = rows
            .iter()
            .map(|(task, eps)| serde_json::json!({ "task": task, "episodes": eps }))
            .collect();
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!(
            "{:<10} {:>6} {:>10} {:>7} {:>14}",
            "task", "seed", "return", "length", "outcome"
        );
        for (task, eps) in &rows {
            for e in eps {
                println!(
                    "{:<10} {:>6} {:>10.2} {:>7} {:>14}",
                    task,
                    e.seed,
                    e.episode_return,
                    e.length,
                    e.outcome.name()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn check(files: &[PathBuf], json: bool) -> Result<ExitCode> {
    let checks: Vec<FileCheck> = files
        .iter()
        .map(|f| fidelity::check_file(f))
        .collect::<Result<_, _>>()?;
    let pass = checks.iter().all(|c| c.pass);
    if json {
        #[derive(Serialize)]
        struct Report<'a> {
            pass: bool,
            tolerances: [f64; 3],
            files: &'a [FileCheck],
        }
        let report = Report {
            pass,
            tolerances: [RESET_OBS_TOL, PRE_CONTACT_OBS_TOL, PRE_CONTACT_REWARD_TOL],
            files: &checks,
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{:<40} {:>8} {:>7} {:>10} {:>12} {:>11} {:>10} {:>5}",
            "file",
            "variant",
            "draws",
            "reset obs",
            "pre-contact",
            "pre reward",
            "heuristic",
            "pass"
        );
        for c in &checks {
            println!(
                "{:<40} {:>8} {:>7} {:>10.2e} {:>12.2e} {:>11.3} {:>10} {:>5}",
                c.path,
                c.variant,
                format!("{}/{}", c.draws_equal, c.episodes),
                c.reset_obs_error,
                c.pre_contact_obs_error,
                c.pre_contact_reward_error,
                format!(
                    "{}/{}",
                    c.heuristic_same_outcome.0, c.heuristic_same_outcome.1
                ),
                if c.pass { "ok" } else { "FAIL" }
            );
        }
        println!(
            "tolerances: reset obs ≤ {RESET_OBS_TOL:e}, obs before first contact ≤ {PRE_CONTACT_OBS_TOL:e}, \
             reward ≤ {PRE_CONTACT_REWARD_TOL}, identical draws, heuristic outcomes ≥ {:.0}% equal",
            fidelity::MIN_OUTCOME_AGREEMENT * 100.0
        );
    }
    Ok(if pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn heuristic(task: &str, episodes: usize, seed: u64, json: bool) -> Result<ExitCode> {
    if episodes == 0 {
        bail!("--episodes must be at least 1");
    }
    let tasks = tasks_named(task)?;
    #[derive(Serialize)]
    struct TaskStats {
        task: String,
        first_seed: u64,
        #[serde(flatten)]
        stats: EpisodeStats,
    }
    let mut rows = Vec::new();
    for spec in tasks {
        let mut env = LunarLander::new(spec.clone())?;
        let summaries = (0..episodes as u64)
            .map(|i| run_episode(&mut env, seed + i, spec.max_episode_steps, heuristic_action))
            .collect::<Result<Vec<_>, _>>()?;
        let stats = EpisodeStats::from_episodes(&summaries).expect("episodes ≥ 1");
        rows.push(TaskStats {
            task: spec.name,
            first_seed: seed,
            stats,
        });
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!(
            "{:<10} {:>8} {:>17} {:>8} {:>6} {:>6} {:>6} {:>6}",
            "task", "episodes", "return mean ± std", "length", "rest", "crash", "out", "limit"
        );
        for r in &rows {
            let s = &r.stats;
            println!(
                "{:<10} {:>8} {:>8.2} ± {:>6.2} {:>8.1} {:>6} {:>6} {:>6} {:>6}",
                r.task,
                s.episodes,
                s.mean_return,
                s.std_return,
                s.mean_length,
                s.outcomes["rest"],
                s.outcomes["crash"],
                s.outcomes["out_of_bounds"],
                s.outcomes["time_limit"]
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
