//! `brc`: the command line of the brc toolkit. A thin shell: parsing, printing and exit codes;
//! the work lives in the library crates.

mod bench_cmd;
mod env_cmd;
mod evaluate_cmd;
mod import_cmd;
mod info_cmd;
mod progress;
mod publish_cmd;
mod report_cmd;
mod signals;
mod sweep_cmd;
mod train_cmd;
mod watch;

use std::process::ExitCode;

use brc_train::sweep::{SweepError, INTERRUPTED_EXIT};
use brc_train::TrainError;
use clap::{Parser, Subcommand};

// candle allocates a fresh buffer per tensor op; glibc's malloc hands large freed blocks back
// to the OS and page-faults them in again on the next update, mimalloc keeps them
// (measured by `brc bench`; see docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Multi-task RL on LunarLander: can one big, regularized, distributional value network learn
/// several related tasks as well as separate networks?
#[derive(Parser)]
#[command(
    name = "brc",
    version,
    about,
    after_help = "Exit codes: 0 success; 1 some sweep runs failed; 2 bad input or an error (one line on stderr); 75 training stopped by SIGTERM / SIGINT after writing a checkpoint (resume to continue)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Inspect the LunarLander environments: fidelity checks and the heuristic pilot.
    #[command(subcommand)]
    Env(env_cmd::EnvCommand),
    /// Train an agent from a config (one run, or several seeds in parallel).
    Train(train_cmd::TrainArgs),
    /// Evaluate a trained agent greedily on held-out seeds.
    Evaluate(evaluate_cmd::EvaluateArgs),
    /// Show the agent a config describes and its exact parameter count.
    Info(info_cmd::InfoArgs),
    /// Make a run directory from the predecessor's PyTorch checkpoints (for `evaluate`).
    #[command(name = "import-torch")]
    ImportTorch(import_cmd::ImportArgs),
    /// Plots, tables and a report of one method (a run or its seeds).
    Analyze(report_cmd::AnalyzeArgs),
    /// Compare methods side by side: results table with CIs and IQM, plots, report.
    Compare(report_cmd::CompareArgs),
    /// Copy a finished run (config, logs, summary, final and best online weights) for committing.
    Publish(publish_cmd::PublishArgs),
    /// Measure env, replay, agent and training-loop throughput (one thread unless --threads; release build).
    Bench(bench_cmd::BenchArgs),
    /// Many runs (configs × grid × seeds) from one sweep file: on this machine or on Slurm.
    #[command(subcommand)]
    Sweep(sweep_cmd::SweepCommand),
}

/// mimalloc's `mi_option_purge_delay` (v2 API, value 15): how long freed memory stays
/// committed. The default (10 ms) is shorter than one BRC update, so every update
/// page-faulted its buffers back in (`clear_page` was 30% of the profile).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> ExitCode {
    // Rust ignores SIGPIPE, so printing into a closed pipe (`brc evaluate --json | head`)
    // panicked; with the default disposition brc ends quietly, as the Unix tools do.
    sigpipe::reset();
    // SAFETY: sets a plain integer option of the allocator; valid at any time.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    // One compute thread per run: candle's ops at these sizes only slow down with more
    // threads, and parallel seeds use the other cores. candle also asks for the thread count
    // on every op and, without RAYON_NUM_THREADS, reads /proc/cpuinfo each time. The user's
    // settings win.
    for var in ["CANDLE_NUM_THREADS", "RAYON_NUM_THREADS"] {
        if std::env::var_os(var).is_none() {
            std::env::set_var(var, "1");
        }
    }
    // Denormal floats as zero on this thread (the compute pools set it on theirs): Intel
    // cores take a microcode assist on every instruction that meets one (brc_nn::denormals).
    brc_train::flush_to_zero();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Env(cmd) => env_cmd::run(cmd),
        Command::Train(args) => train_cmd::run(args),
        Command::Evaluate(args) => evaluate_cmd::run(args),
        Command::Info(args) => info_cmd::run(args),
        Command::ImportTorch(args) => import_cmd::run(args),
        Command::Bench(args) => bench_cmd::run(args),
        Command::Publish(args) => publish_cmd::run(args),
        Command::Analyze(args) => report_cmd::run_analyze(args),
        Command::Compare(args) => report_cmd::run_compare(args),
        Command::Sweep(cmd) => sweep_cmd::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // One line naming the problem and its causes; bad input exits with 2, a run
            // stopped by SIGTERM / SIGINT after its checkpoint with 75 (resumable).
            eprintln!("error: {e:#}");
            if interrupted(&e) {
                ExitCode::from(INTERRUPTED_EXIT as u8)
            } else {
                ExitCode::from(2)
            }
        }
    }
}

/// Whether `e` is a run that stopped on a signal after writing its checkpoint.
fn interrupted(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<TrainError>(),
            Some(TrainError::Interrupted { .. })
        ) || c
            .downcast_ref::<SweepError>()
            .is_some_and(SweepError::is_interrupted)
    })
}
