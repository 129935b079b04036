//! The distributed executor: the sweep as a Slurm job array, one array task per run (task id =
//! run index), each running `brc sweep run FILE`, which takes its index from
//! `SLURM_ARRAY_TASK_ID`.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use super::{io, Sweep, SweepError};

/// Seconds before the time limit at which Slurm sends SIGTERM: time to finish the episode and
/// write a checkpoint.
pub const SIGNAL_BEFORE_LIMIT_S: u32 = 120;

/// `sbatch` settings of a sweep's array.
#[derive(Debug, Clone, Default)]
pub struct SlurmOptions {
    /// `--partition`.
    pub partition: Option<String>,
    /// `--account`.
    pub account: Option<String>,
    /// `--time` (HH:MM:SS, or any form sbatch takes).
    pub time: Option<String>,
    /// `--mem` per run (e.g. `4G`).
    pub mem: Option<String>,
    /// At most this many array tasks at once (`%K`).
    pub max_parallel: Option<usize>,
    /// More sbatch flags, written as one `#SBATCH` line.
    pub extra: Option<String>,
}

/// Slurm's `--array` list of `indices`: ranges where consecutive, e.g. `0-3,7,9-10%4`.
pub fn array_spec(indices: &[usize], max_parallel: Option<usize>) -> String {
    let mut sorted = indices.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        while i + 1 < sorted.len() && sorted[i + 1] == sorted[i] + 1 {
            i += 1;
        }
        parts.push(if sorted[i] == start {
            start.to_string()
        } else {
            format!("{start}-{}", sorted[i])
        });
        i += 1;
    }
    let mut spec = parts.join(",");
    if let Some(k) = max_parallel {
        let _ = write!(spec, "%{k}");
    }
    spec
}

/// The batch script of an array over `indices`, running `brc` (an absolute path) on the sweep
/// file `sweep_file` (absolute). The script `exec`s brc, so the signal before the time limit
/// (`--signal=B:TERM@120`) reaches it; `--requeue` lets Slurm restart preempted tasks, which
/// then resume from their checkpoints.
pub fn sbatch_script(
    sweep: &Sweep,
    indices: &[usize],
    brc: &Path,
    sweep_file: &Path,
    opts: &SlurmOptions,
) -> String {
    let logs = absolute(&sweep.logs_dir());
    let name = sweep
        .file
        .file_stem()
        .map_or("sweep".into(), |s| s.to_string_lossy().into_owned());
    let mut s = String::new();
    let _ = writeln!(s, "#!/bin/bash");
    let _ = writeln!(
        s,
        "# brc sweep {}: one array task per run not done (task id = run index).",
        sweep_file.display()
    );
    let _ = writeln!(s, "# Written by `brc sweep slurm`; submit with sbatch.");
    let mut flag = |f: String| {
        let _ = writeln!(s, "#SBATCH {f}");
    };
    flag(format!("--job-name=brc-{name}"));
    flag(format!(
        "--array={}",
        array_spec(indices, opts.max_parallel)
    ));
    flag("--ntasks=1".into());
    flag("--cpus-per-task=1".into());
    flag(format!("--output={}/run-%a.%A.out", logs.display()));
    flag("--open-mode=append".into());
    flag("--requeue".into());
    flag(format!("--signal=B:TERM@{SIGNAL_BEFORE_LIMIT_S}"));
    for (name, value) in [
        ("partition", &opts.partition),
        ("account", &opts.account),
        ("time", &opts.time),
        ("mem", &opts.mem),
    ] {
        if let Some(v) = value {
            flag(format!("--{name}={v}"));
        }
    }
    if let Some(extra) = &opts.extra {
        // One line whatever was typed: a newline would end the #SBATCH line early.
        let extra = extra.split_whitespace().collect::<Vec<_>>().join(" ");
        if !extra.is_empty() {
            flag(extra);
        }
    }
    let _ = writeln!(s, "export CANDLE_NUM_THREADS=1 RAYON_NUM_THREADS=1");
    let _ = writeln!(
        s,
        "exec {} sweep run {}",
        shell_quote(&brc.display().to_string()),
        shell_quote(&sweep_file.display().to_string())
    );
    s
}

/// Submits `script` with sbatch and returns the job id.
pub fn submit(script: &Path) -> Result<String, SweepError> {
    let out = Command::new("sbatch")
        .arg("--parsable")
        .arg(script)
        .output()
        .map_err(io(Path::new("sbatch")))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(SweepError::Sbatch(
            err.split_whitespace().collect::<Vec<_>>().join(" "),
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    // `--parsable` prints `id` or `id;cluster`.
    let id = text.trim().split(';').next().unwrap_or("").to_string();
    if id.is_empty() {
        return Err(SweepError::Sbatch("no job id in its output".into()));
    }
    Ok(id)
}

/// `path` made absolute against the current directory (the script runs elsewhere).
pub(super) fn absolute(path: &Path) -> std::path::PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Single-quotes `s` for bash unless it is plainly safe.
fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}
