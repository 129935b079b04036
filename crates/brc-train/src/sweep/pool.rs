//! The local executor: a pool of child processes on this machine, `jobs` at a time, each
//! training one run (the child is `brc sweep run FILE --index I`, exactly what a Slurm array
//! task runs), its output appended to `<output_dir>/logs/run-<I>.log`.

use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use super::{io, record_failure, RunStatus, Sweep, SweepError};

/// The exit code of a run stopped by SIGTERM / SIGINT after writing its checkpoint.
pub const INTERRUPTED_EXIT: i32 = 75;

/// How often a waiting worker looks at its child and at the stop flag.
const POLL: Duration = Duration::from_millis(100);

/// What the pool reports while it works.
#[derive(Debug, Clone, PartialEq)]
pub enum PoolEvent {
    /// A child started on run `index`, logging into `log`.
    Started {
        /// The run.
        index: usize,
        /// Its log file.
        log: std::path::PathBuf,
    },
    /// Run `index` ended with this status (`error`: a failed run's error).
    Finished {
        /// The run.
        index: usize,
        /// Its status after the child exited.
        status: RunStatus,
        /// The child was interrupted (its run is resumable).
        interrupted: bool,
        /// A failed run's error.
        error: Option<String>,
    },
}

/// How the pool's runs ended.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PoolReport {
    /// Runs now done.
    pub done: Vec<usize>,
    /// Runs that failed.
    pub failed: Vec<usize>,
    /// Runs stopped by a signal (resumable), or never started after one.
    pub interrupted: Vec<usize>,
    /// Runs left alone: another executor trains them.
    pub busy: Vec<usize>,
}

/// Runs `indices` of `sweep`, `jobs` children at a time; `command(index)` is the child's
/// command line. Once `stop` is set no new child starts and the running ones get SIGTERM (they
/// finish their episode and checkpoint). A run that fails does not stop the others.
pub fn run_pool(
    sweep: &Sweep,
    indices: &[usize],
    jobs: usize,
    command: &(dyn Fn(usize) -> Command + Sync),
    stop: &AtomicBool,
    events: &(dyn Fn(PoolEvent) + Sync),
) -> Result<PoolReport, SweepError> {
    let logs = sweep.logs_dir();
    std::fs::create_dir_all(&logs).map_err(io(&logs))?;
    let next = AtomicUsize::new(0);
    let report = Mutex::new(PoolReport::default());
    let first_error: Mutex<Option<SweepError>> = Mutex::new(None);
    let worker = || -> Result<(), SweepError> {
        loop {
            let i = next.fetch_add(1, Ordering::SeqCst);
            let Some(&index) = indices.get(i) else {
                return Ok(());
            };
            if stop.load(Ordering::SeqCst) {
                report.lock().expect("report").interrupted.push(index);
                continue;
            }
            let log = logs.join(format!("run-{index}.log"));
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .map_err(io(&log))?;
            let err = file.try_clone().map_err(io(&log))?;
            let mut cmd = command(index);
            cmd.stdin(Stdio::null()).stdout(file).stderr(err);
            let mut child = cmd
                .spawn()
                .map_err(io(std::path::Path::new(cmd.get_program())))?;
            events(PoolEvent::Started {
                index,
                log: log.clone(),
            });
            let exit = wait(&mut child, stop).map_err(io(&log))?;
            let (status, interrupted, error) = settle(sweep, index, exit, &log)?;
            {
                let mut r = report.lock().expect("report");
                match status {
                    _ if interrupted => r.interrupted.push(index),
                    RunStatus::Done => r.done.push(index),
                    RunStatus::Failed => r.failed.push(index),
                    _ => r.busy.push(index),
                }
            }
            events(PoolEvent::Finished {
                index,
                status,
                interrupted,
                error,
            });
        }
    };
    std::thread::scope(|s| {
        for _ in 0..jobs.clamp(1, indices.len().max(1)) {
            s.spawn(|| {
                if let Err(e) = worker() {
                    stop.store(true, Ordering::SeqCst);
                    first_error.lock().expect("error slot").get_or_insert(e);
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().expect("error slot") {
        return Err(e);
    }
    let mut report = report.into_inner().expect("report");
    for list in [
        &mut report.done,
        &mut report.failed,
        &mut report.interrupted,
        &mut report.busy,
    ] {
        list.sort_unstable();
    }
    Ok(report)
}

/// Waits for `child`, passing a stop on to it as SIGTERM (once).
fn wait(child: &mut std::process::Child, stop: &AtomicBool) -> std::io::Result<ExitStatus> {
    let mut signalled = false;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if !signalled && stop.load(Ordering::SeqCst) {
            signalled = true;
            let pid = i32::try_from(child.id())
                .ok()
                .and_then(rustix::process::Pid::from_raw);
            if let Some(pid) = pid {
                // The child may have just exited: nothing to stop then.
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
        }
        std::thread::sleep(POLL);
    }
}

/// The run's status after its child exited; a child that died without saying why (killed,
/// crashed) leaves a failure record naming its exit and log.
fn settle(
    sweep: &Sweep,
    index: usize,
    exit: ExitStatus,
    log: &std::path::Path,
) -> Result<(RunStatus, bool, Option<String>), SweepError> {
    let run = &sweep.runs[index];
    let interrupted = exit.code() == Some(INTERRUPTED_EXIT);
    let mut state = sweep.state(run);
    if !exit.success() && !interrupted && state.status != RunStatus::Failed {
        let dir = sweep.run_dir(run);
        let error = format!(
            "the run's process ended with {exit} (see {})",
            log.display()
        );
        record_failure(&dir, &error).map_err(io(&dir))?;
        state = sweep.state(run);
    }
    Ok((state.status, interrupted, state.error))
}
