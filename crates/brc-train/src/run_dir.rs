//! The run directory: where each artifact lives and how it is written.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The agent file inside every checkpoint directory (`checkpoints/<name>/agent.safetensors`).
pub const AGENT_FILE: &str = "agent.safetensors";

/// Paths of one run's artifacts: `<output_dir>/<name>/[seed-<k>/]`.
#[derive(Debug, Clone)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// A run directory at `root` (not created here).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// The resolved config.
    pub fn config(&self) -> PathBuf {
        self.root.join("config.toml")
    }
    /// One JSON line per training episode.
    pub fn episodes(&self) -> PathBuf {
        self.root.join("episodes.jsonl")
    }
    /// One JSON line per evaluation.
    pub fn evals(&self) -> PathBuf {
        self.root.join("evals.jsonl")
    }
    /// One JSON line per gradient-conflict measurement.
    pub fn conflict(&self) -> PathBuf {
        self.root.join("conflict.jsonl")
    }
    /// One JSON line per gradient-surgery measurement (next to each conflict measurement;
    /// runs with a gradient method other than the mean).
    pub fn surgery(&self) -> PathBuf {
        self.root.join("surgery.jsonl")
    }
    /// One JSON line of VarShare diagnostics (KL, σ, surviving μ per task and layer) at
    /// every gradient-conflict interval (`[agent.varshare]` runs only).
    pub fn varshare(&self) -> PathBuf {
        self.root.join("varshare.jsonl")
    }
    /// The run summary.
    pub fn summary(&self) -> PathBuf {
        self.root.join("summary.json")
    }
    /// The predecessor-schema metrics log.
    pub fn metrics(&self) -> PathBuf {
        self.root.join("metrics.json")
    }
    /// All checkpoints.
    pub fn checkpoints(&self) -> PathBuf {
        self.root.join("checkpoints")
    }
    /// The lock file a sweep executor holds while it trains this run (`brc sweep`); training
    /// itself leaves it alone.
    pub fn lock(&self) -> PathBuf {
        self.root.join("run.lock")
    }
    /// The checkpoint called `name` (`ep<N>`, `best`, `final`): a directory.
    pub fn checkpoint(&self, name: &str) -> PathBuf {
        self.checkpoints().join(name)
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename, so readers never see a
/// half-written file and a crash never destroys the previous version.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map_or("file".into(), |n| n.to_string_lossy());
    let tmp = dir.join(format!(".{name}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}
