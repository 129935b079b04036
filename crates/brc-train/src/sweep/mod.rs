//! Sweeps: many runs — every (config, grid point, seed) of one sweep file — with stable indices,
//! readable directories and a status each, run by a process pool on this machine
//! ([`run_pool`]) or as a Slurm job array ([`sbatch_script`]); [`execute_run`] trains one run
//! under its lock, resuming it when it was interrupted and recording it when it fails;
//! [`Sweep::adopt`] counts finished runs trained elsewhere (published seeds) instead, and
//! [`Sweep::park`] keeps unfinished runs small enough to carry to another machine.

mod adopt;
mod execute;
mod file;
mod lock;
mod park;
mod pool;
mod run_list;
mod slurm;
mod status;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use adopt::Adoption;
pub use execute::{execute_run, RunOutcome};
pub use lock::{RunLock, HEARTBEAT, STALE_AFTER};
pub use park::Parking;
pub use pool::{run_pool, PoolEvent, PoolReport, INTERRUPTED_EXIT};
pub use slurm::{array_spec, sbatch_script, submit, SlurmOptions, SIGNAL_BEFORE_LIMIT_S};
pub use status::{record_failure, RunState, RunStatus};

use crate::config::ConfigError;
use crate::error::TrainError;

/// The run list's file in the output directory.
const RUN_LIST: &str = "runs.json";

/// Why a sweep cannot be planned or run. Displays as one line.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// The sweep file is unreadable or wrong.
    #[error("{}: {message}", path.display())]
    File {
        /// The sweep file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// One of the sweep's configs (with its overrides) is invalid.
    #[error("{}: {entry}: {error}", sweep.display())]
    Config {
        /// The sweep file.
        sweep: PathBuf,
        /// Which entry of `configs`.
        entry: String,
        /// The config's error (its origin names the file, or the `[set]` / `[grid]` entry), in
        /// the message: a one-line error with no cause of its own, so not a `source` (the CLI
        /// would print it twice).
        error: Box<ConfigError>,
    },
    /// The sweep expands differently from the run list written when it was first planned.
    #[error("{}: the sweep (its file or a config it names) changed since this run list was written: {change}; --force replaces the list", list.display())]
    Changed {
        /// The stored run list.
        list: PathBuf,
        /// The first difference, in words.
        change: String,
    },
    /// No run has this index.
    #[error("no run {index}: the sweep has {count} runs (indices 0 to {})", count.saturating_sub(1))]
    NoSuchRun {
        /// The index asked for.
        index: usize,
        /// Runs in the sweep.
        count: usize,
    },
    /// A file or directory could not be read or written, or a program not started.
    #[error("{}", path.display())]
    Io {
        /// The file, directory or program.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// `sbatch` refused the job.
    #[error("sbatch failed: {0}")]
    Sbatch(String),
    /// Training the run failed (or was interrupted: [`TrainError::Interrupted`]).
    #[error("run {index} ({})", dir.display())]
    Train {
        /// The run's index.
        index: usize,
        /// The run's directory.
        dir: PathBuf,
        /// What went wrong.
        source: Box<TrainError>,
    },
}

impl SweepError {
    /// Whether a run was stopped by SIGTERM / SIGINT after writing its checkpoint.
    pub fn is_interrupted(&self) -> bool {
        matches!(self, Self::Train { source, .. } if matches!(**source, TrainError::Interrupted { .. }))
    }
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SweepError + '_ {
    move |source| SweepError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One run of a sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepRun {
    /// Its stable index (a Slurm array task id).
    pub index: usize,
    /// Its directory, relative to the output directory: `<run.name>/[<grid point>/]seed-<k>`.
    pub dir: PathBuf,
    /// The method it belongs to in comparisons: the run name and the grid point.
    pub method: String,
    /// The config file, as the sweep file names it.
    pub config_file: PathBuf,
    /// Its seed.
    pub seed: u64,
    /// The grid point's values (empty without a grid).
    pub grid: BTreeMap<String, String>,
    /// The resolved, validated config it trains.
    pub config: crate::RunConfig,
}

/// A sweep file, expanded and validated, with its run list fixed in the output directory.
#[derive(Debug, Clone)]
pub struct Sweep {
    /// The sweep file.
    pub file: PathBuf,
    /// Where the runs go (resolved against the sweep file's directory).
    pub output_dir: PathBuf,
    /// The runs, in index order.
    pub runs: Vec<SweepRun>,
}

impl Sweep {
    /// Reads, expands and validates the sweep file at `file`, and checks it against the run
    /// list in its output directory: written on first use; a sweep that would renumber or
    /// change a listed run is refused (naming the change) unless `force`, which replaces the
    /// list. Runs appended at the end (more seeds) extend the list.
    pub fn open(file: &Path, force: bool) -> Result<Self, SweepError> {
        let sweep = Self::expand(file)?;
        run_list::check(&sweep.output_dir.join(RUN_LIST), &sweep.runs, force)?;
        Ok(sweep)
    }

    /// Reads, expands and validates the sweep file at `file` without looking at its output
    /// directory (no run list is read or written): what `open` checks of the file itself.
    pub fn expand(file: &Path) -> Result<Self, SweepError> {
        let (output_dir, runs) = file::expand(file)?;
        Ok(Self {
            file: file.to_path_buf(),
            output_dir,
            runs,
        })
    }

    /// The run with this index.
    pub fn run(&self, index: usize) -> Result<&SweepRun, SweepError> {
        self.runs.get(index).ok_or(SweepError::NoSuchRun {
            index,
            count: self.runs.len(),
        })
    }

    /// A run's directory (under the output directory).
    pub fn run_dir(&self, run: &SweepRun) -> PathBuf {
        self.output_dir.join(&run.dir)
    }

    /// Where the Slurm script and the logs go.
    pub fn logs_dir(&self) -> PathBuf {
        self.output_dir.join("logs")
    }

    /// A run's status, read from its directory.
    pub fn state(&self, run: &SweepRun) -> RunState {
        status::run_state(&self.run_dir(run), &run.config)
    }

    /// The methods (config × grid point) in index order, each with its runs.
    pub fn methods(&self) -> Vec<(&str, Vec<&SweepRun>)> {
        let mut methods: Vec<(&str, Vec<&SweepRun>)> = Vec::new();
        for run in &self.runs {
            match methods.iter_mut().find(|(m, _)| *m == run.method) {
                Some((_, runs)) => runs.push(run),
                None => methods.push((&run.method, vec![run])),
            }
        }
        methods
    }
}
