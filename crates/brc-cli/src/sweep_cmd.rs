//! `brc sweep`: many runs from one sweep file, on this machine (a process pool of `brc`
//! itself) or as a Slurm job array. The work lives in `brc_train::sweep`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};
use brc_analysis::methods::Method;
use brc_analysis::report::{compare, ReportOptions};
use brc_analysis::runs::load_run;
use brc_train::sweep::{
    execute_run, run_pool, sbatch_script, submit, PoolEvent, RunOutcome, RunStatus, SlurmOptions,
    Sweep, INTERRUPTED_EXIT,
};
use brc_train::write_atomic;
use clap::{Args, Subcommand};
use serde_json::json;

use crate::progress::{multi, RunProgress};
use crate::signals;

#[derive(Subcommand)]
pub enum SweepCommand {
    /// The runs, one line each: index, status, directory.
    Plan(PlanArgs),
    /// Train every run not done on this machine, N at a time (or one run: --index).
    Run(RunArgs),
    /// Write `<output_dir>/sweep.sbatch`, a Slurm job array of the runs not done; --submit it.
    Slurm(SlurmArgs),
    /// Counts per status and per method, and the failed runs with their errors.
    Status(PlanArgs),
    /// Copy in the runs under --from (published seeds, parked runs) that a pending run would
    /// train: same relative directory, same config but for run.output_dir; finished ones
    /// count as done, unfinished ones resume.
    Adopt(AdoptArgs),
    /// Copy each stopped unfinished run, with only its newest and best checkpoints, to --to
    /// (default results/parked/<sweep file stem>): small enough to commit and resume on
    /// another machine (`brc sweep adopt FILE --from` that directory).
    Park(ParkArgs),
    /// `brc compare` over the sweep's runs: one method per config × grid point.
    Compare(CompareArgs),
}

#[derive(Args)]
pub struct SweepFile {
    /// The sweep file (TOML).
    file: PathBuf,
    /// Replace the run list stored in the output directory when the sweep file changed.
    #[arg(long)]
    force: bool,
}

impl SweepFile {
    fn open(&self) -> Result<Sweep> {
        Ok(Sweep::open(&self.file, self.force)?)
    }
}

#[derive(Args)]
pub struct PlanArgs {
    #[command(flatten)]
    sweep: SweepFile,
    /// Print one JSON document.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    sweep: SweepFile,
    /// Runs at once, one thread each (default: one per core).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    jobs: Option<u64>,
    /// Train only this run (default inside a Slurm array task: SLURM_ARRAY_TASK_ID; inside a
    /// Kubernetes Indexed Job: JOB_COMPLETION_INDEX).
    #[arg(long, conflicts_with = "jobs")]
    index: Option<usize>,
    /// No progress output for a single run.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args)]
pub struct SlurmArgs {
    #[command(flatten)]
    sweep: SweepFile,
    /// Submit the script with sbatch and print the job id.
    #[arg(long)]
    submit: bool,
    /// sbatch --partition.
    #[arg(long)]
    partition: Option<String>,
    /// sbatch --account.
    #[arg(long)]
    account: Option<String>,
    /// Time limit of one run (sbatch --time), e.g. 02:00:00.
    #[arg(long, value_name = "HH:MM:SS")]
    time: Option<String>,
    /// Memory of one run (sbatch --mem), e.g. 4G.
    #[arg(long, value_name = "SIZE")]
    mem: Option<String>,
    /// At most this many runs at once (the array's %K).
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..))]
    max_parallel: Option<u64>,
    /// More sbatch flags, e.g. "--qos=short --constraint=avx2".
    #[arg(long, value_name = "FLAGS", allow_hyphen_values = true)]
    extra: Option<String>,
}

#[derive(Args)]
pub struct AdoptArgs {
    #[command(flatten)]
    sweep: SweepFile,
    /// Where the runs are, as `<name>/seed-<k>/` (grid sweeps: the sweep's layout).
    #[arg(long, default_value = "results/reference")]
    from: PathBuf,
}

#[derive(Args)]
pub struct ParkArgs {
    #[command(flatten)]
    sweep: SweepFile,
    /// Where the parked copies go, in the sweep's layout.
    #[arg(long)]
    to: Option<PathBuf>,
}

#[derive(Args)]
pub struct CompareArgs {
    #[command(flatten)]
    sweep: SweepFile,
    /// Where the plots and tables go.
    #[arg(long)]
    out: PathBuf,
    /// Bootstrap resamples of the IQM interval.
    #[arg(long, default_value_t = 50_000)]
    resamples: usize,
}

pub fn run(cmd: SweepCommand) -> Result<ExitCode> {
    match cmd {
        SweepCommand::Plan(args) => plan(args),
        SweepCommand::Run(args) => run_sweep(args),
        SweepCommand::Slurm(args) => slurm(args),
        SweepCommand::Status(args) => status(args),
        SweepCommand::Adopt(args) => adopt(args),
        SweepCommand::Park(args) => park(args),
        SweepCommand::Compare(args) => compare_methods(args),
    }
}

fn plan(args: PlanArgs) -> Result<ExitCode> {
    let sweep = args.sweep.open()?;
    let rows: Vec<_> = sweep
        .runs
        .iter()
        .map(|r| (r, sweep.run_dir(r), sweep.state(r)))
        .collect();
    if args.json {
        let runs: Vec<_> = rows
            .iter()
            .map(|(r, dir, state)| {
                json!({
                    "index": r.index, "dir": dir, "status": state.status,
                    "method": r.method, "seed": r.seed, "config": r.config_file,
                    "error": state.error, "running": state.running,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "runs": runs }))?
        );
    } else {
        println!("{:>5}  {:<10}  dir", "index", "status");
        for (r, dir, state) in &rows {
            let running = state
                .running
                .as_ref()
                .map_or(String::new(), |who| format!("  (running: {who})"));
            println!(
                "{:>5}  {:<10}  {}{running}",
                r.index,
                state.status.name(),
                dir.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn adopt(args: AdoptArgs) -> Result<ExitCode> {
    let sweep = args.sweep.open()?;
    if !args.from.is_dir() {
        bail!("--from {}: not a directory", args.from.display());
    }
    let adopted = sweep.adopt(&args.from)?;
    for a in &adopted {
        println!("{:>5}  {} <- {}", a.index, a.to.display(), a.from.display());
    }
    println!(
        "adopted {} run{} from {}",
        adopted.len(),
        if adopted.len() == 1 { "" } else { "s" },
        args.from.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn park(args: ParkArgs) -> Result<ExitCode> {
    let sweep = args.sweep.open()?;
    let to = args.to.unwrap_or_else(|| {
        let stem = args.sweep.file.file_stem().unwrap_or_default();
        Path::new("results/parked").join(stem)
    });
    let parked = sweep.park(&to)?;
    for p in &parked {
        println!(
            "{:>5}  {} -> {} (episode {})",
            p.index,
            p.from.display(),
            p.to.display(),
            p.episodes
        );
    }
    println!(
        "parked {} run{} in {}",
        parked.len(),
        if parked.len() == 1 { "" } else { "s" },
        to.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The run index from --index, or from the array task a scheduler started.
fn index_from_env(index: Option<usize>) -> Result<Option<usize>> {
    if index.is_some() {
        return Ok(index);
    }
    for var in ["SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX"] {
        if let Ok(v) = std::env::var(var) {
            let i = v
                .trim()
                .parse()
                .with_context(|| format!("{var}={v:?} is not a run index"))?;
            return Ok(Some(i));
        }
    }
    Ok(None)
}

fn run_sweep(args: RunArgs) -> Result<ExitCode> {
    let stop = signals::install()?;
    let sweep = args.sweep.open()?;
    // An explicit --jobs is the pool, even inside an array task.
    let index = match args.jobs {
        Some(_) => None,
        None => index_from_env(args.index)?,
    };
    if let Some(index) = index {
        return run_one(&sweep, index, args.quiet);
    }
    let todo: Vec<usize> = sweep
        .runs
        .iter()
        .filter(|r| sweep.state(r).status != RunStatus::Done)
        .map(|r| r.index)
        .collect();
    if todo.is_empty() {
        eprintln!("all {} runs are done: nothing to do", sweep.runs.len());
        return Ok(ExitCode::SUCCESS);
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let jobs = args.jobs.map_or(cores, |j| j as usize);
    let brc = std::env::current_exe().context("cannot find the brc binary")?;
    let file = sweep.file.clone();
    let command = |index: usize| {
        let mut c = Command::new(&brc);
        c.arg("sweep").arg("run").arg(&file).arg("--index");
        c.arg(index.to_string());
        // The child's index is --index, whatever array task this pool itself runs in.
        c.env_remove("SLURM_ARRAY_TASK_ID")
            .env_remove("JOB_COMPLETION_INDEX");
        c
    };
    eprintln!(
        "{} of {} runs to train, {} at a time",
        todo.len(),
        sweep.runs.len(),
        jobs.min(todo.len())
    );
    let describe = |index: usize| sweep.runs[index].dir.display().to_string();
    let events = |event: PoolEvent| match event {
        PoolEvent::Started { index, log } => {
            eprintln!(
                "run {index} ({}): started, log {}",
                describe(index),
                log.display()
            )
        }
        PoolEvent::Finished {
            index,
            status,
            interrupted,
            error,
        } => {
            let how = match (status, interrupted) {
                (_, true) => "interrupted (unfinished: resumes on the next run)".to_string(),
                (RunStatus::Failed, _) => format!("failed: {}", error.unwrap_or_default()),
                (RunStatus::Done, _) => "done".to_string(),
                (other, _) => format!("{} (another executor trains it)", other.name()),
            };
            eprintln!("run {index} ({}): {how}", describe(index));
        }
    };
    let report = run_pool(&sweep, &todo, jobs, &command, &stop, &events)?;
    println!(
        "{} done, {} failed, {} interrupted, {} left to another executor",
        report.done.len(),
        report.failed.len(),
        report.interrupted.len(),
        report.busy.len()
    );
    if !report.interrupted.is_empty() {
        return Ok(ExitCode::from(INTERRUPTED_EXIT as u8));
    }
    if !report.failed.is_empty() {
        eprintln!(
            "{} runs failed: `brc sweep status {}` shows their errors",
            report.failed.len(),
            sweep.file.display()
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn run_one(sweep: &Sweep, index: usize, quiet: bool) -> Result<ExitCode> {
    let run = sweep.run(index)?;
    let dir = sweep.run_dir(run);
    let mut progress = RunProgress::new(&run.config, &dir, &multi(quiet), quiet);
    match execute_run(sweep, index, &mut progress)? {
        RunOutcome::Trained { summary, .. } => progress.finish(&summary),
        RunOutcome::AlreadyDone => {
            eprintln!("run {index} ({}) is done: nothing to do", dir.display())
        }
        RunOutcome::Busy(who) => eprintln!(
            "run {index} ({}) is being trained by {who}: left to it",
            dir.display()
        ),
    }
    Ok(ExitCode::SUCCESS)
}

fn slurm(args: SlurmArgs) -> Result<ExitCode> {
    let sweep = args.sweep.open()?;
    let todo: Vec<usize> = sweep
        .runs
        .iter()
        .filter(|r| sweep.state(r).status != RunStatus::Done)
        .map(|r| r.index)
        .collect();
    if todo.is_empty() {
        eprintln!("all {} runs are done: nothing to submit", sweep.runs.len());
        return Ok(ExitCode::SUCCESS);
    }
    let opts = SlurmOptions {
        partition: args.partition,
        account: args.account,
        time: args.time,
        mem: args.mem,
        max_parallel: args.max_parallel.map(|k| k as usize),
        extra: args.extra,
    };
    let brc = std::env::current_exe().context("cannot find the brc binary")?;
    let file =
        std::path::absolute(&sweep.file).with_context(|| format!("{}", sweep.file.display()))?;
    let script = sbatch_script(&sweep, &todo, &brc, &file, &opts);
    let path = sweep.output_dir.join("sweep.sbatch");
    write_atomic(&path, script.as_bytes()).with_context(|| format!("{}", path.display()))?;
    let logs = sweep.logs_dir();
    std::fs::create_dir_all(&logs).with_context(|| format!("{}", logs.display()))?;
    if args.submit {
        let id = submit(&path)?;
        eprintln!(
            "submitted {} ({} array tasks; logs in {})",
            path.display(),
            todo.len(),
            logs.display()
        );
        println!("{id}");
    } else {
        println!("{}", path.display());
        eprintln!(
            "{} array tasks; submit with: sbatch {}",
            todo.len(),
            path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn status(args: PlanArgs) -> Result<ExitCode> {
    let sweep = args.sweep.open()?;
    let states: Vec<_> = sweep.runs.iter().map(|r| sweep.state(r)).collect();
    let count = |pick: &dyn Fn(usize) -> bool| -> BTreeMap<&str, usize> {
        RunStatus::ALL
            .iter()
            .map(|s| {
                let n = (0..states.len())
                    .filter(|&i| pick(i) && states[i].status == *s)
                    .count();
                (s.name(), n)
            })
            .collect()
    };
    let total = count(&|_| true);
    let methods: Vec<(&str, BTreeMap<&str, usize>)> = sweep
        .methods()
        .into_iter()
        .map(|(m, runs)| {
            let ids: Vec<usize> = runs.iter().map(|r| r.index).collect();
            (m, count(&|i| ids.contains(&i)))
        })
        .collect();
    let failed: Vec<_> = sweep
        .runs
        .iter()
        .zip(&states)
        .filter(|(_, s)| s.status == RunStatus::Failed)
        .collect();
    if args.json {
        let doc = json!({
            "runs": sweep.runs.len(),
            "counts": total,
            "methods": methods.iter().map(|(m, c)| json!({"method": m, "counts": c})).collect::<Vec<_>>(),
            "failed": failed.iter().map(|(r, s)| json!({
                "index": r.index, "dir": sweep.run_dir(r), "error": s.error,
            })).collect::<Vec<_>>(),
            "running": sweep.runs.iter().zip(&states).filter_map(|(r, s)| {
                s.running.as_ref().map(|who| json!({"index": r.index, "by": who}))
            }).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(ExitCode::SUCCESS);
    }
    let names = RunStatus::ALL.map(RunStatus::name);
    let line = |c: &BTreeMap<&str, usize>| {
        names
            .iter()
            .map(|n| format!("{:>12}", c[n]))
            .collect::<String>()
    };
    let width = methods
        .iter()
        .map(|(m, _)| m.len())
        .max()
        .unwrap_or(6)
        .max(6);
    println!(
        "{:<width$}{}",
        "method",
        names.iter().map(|n| format!("{n:>12}")).collect::<String>()
    );
    for (m, c) in &methods {
        println!("{m:<width$}{}", line(c));
    }
    println!("{:<width$}{}", "all", line(&total));
    let running = states.iter().filter(|s| s.running.is_some()).count();
    if running > 0 {
        println!("{running} running now");
    }
    for (r, s) in &failed {
        println!(
            "failed: run {} ({}): {}",
            r.index,
            sweep.run_dir(r).display(),
            s.error.as_deref().unwrap_or("")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn compare_methods(args: CompareArgs) -> Result<ExitCode> {
    let sweep = args.sweep.open()?;
    let mut methods = Vec::new();
    for (name, runs) in sweep.methods() {
        let usable: Vec<&Path> = runs
            .iter()
            .filter(|r| {
                matches!(
                    sweep.state(r).status,
                    RunStatus::Done | RunStatus::Unfinished
                )
            })
            .map(|r| r.dir.as_path())
            .collect();
        if usable.len() < runs.len() {
            eprintln!(
                "{name}: {} of {} runs started (pending and failed runs are left out)",
                usable.len(),
                runs.len()
            );
        }
        if usable.is_empty() {
            continue;
        }
        let runs = usable
            .iter()
            .map(|d| load_run(&sweep.output_dir.join(d)))
            .collect::<Result<Vec<_>, _>>()?;
        methods.push(Method {
            name: name.to_string(),
            runs,
            predecessor: false,
        });
    }
    if methods.is_empty() {
        bail!(
            "{}: no run has started yet: nothing to compare",
            sweep.file.display()
        );
    }
    let opts = ReportOptions {
        resamples: args.resamples,
        ..ReportOptions::default()
    };
    for f in compare(&methods, &args.out, &opts)? {
        if f.extension().is_none_or(|x| x != "svg") {
            println!("{}", f.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
