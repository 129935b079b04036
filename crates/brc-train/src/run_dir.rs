//! The run directory: where each artifact lives and how it is written.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{io, TrainError};

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
    // Each call gets its own temporary file: two sweep executors started together both write
    // the sweep's run list, and with one shared name the second rename found the file gone.
    static NEXT_TMP: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map_or("file".into(), |n| n.to_string_lossy());
    let unique = NEXT_TMP.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}.{unique}.tmp", std::process::id()));
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    let renamed = written.and_then(|()| std::fs::rename(&tmp, path));
    if renamed.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    renamed
}

/// Makes `dir` an empty run directory. Its lock file (a sweep executor's, see
/// [`RunDir::lock`]) neither counts as content nor is removed: the executor holding it keeps it.
pub(crate) fn prepare_dir(dir: &RunDir, force: bool) -> Result<(), TrainError> {
    let root = dir.root();
    if root.exists() {
        let lock = dir.lock();
        let mut contents = Vec::new();
        for entry in std::fs::read_dir(root).map_err(io(root))? {
            let entry = entry.map_err(io(root))?;
            let is_dir = entry.file_type().map_err(io(root))?.is_dir();
            if entry.path() != lock {
                contents.push((entry.path(), is_dir));
            }
        }
        if !contents.is_empty() {
            if !force {
                return Err(TrainError::RunExists(root.to_path_buf()));
            }
            for (path, is_dir) in contents {
                if is_dir {
                    std::fs::remove_dir_all(&path).map_err(io(&path))?;
                } else {
                    std::fs::remove_file(&path).map_err(io(&path))?;
                }
            }
        }
    }
    std::fs::create_dir_all(dir.checkpoints()).map_err(io(root))
}

#[cfg(test)]
mod tests {
    use super::write_atomic;

    /// Writers racing on one path (two `brc sweep run` started together write the same run
    /// list) all succeed, the file holds one writer's bytes whole, and no temporary is left.
    #[test]
    fn concurrent_atomic_writes_all_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs.json");
        for round in 0..50 {
            std::thread::scope(|scope| {
                let writers: Vec<_> = (0..4u8)
                    .map(|w| {
                        let path = &path;
                        scope.spawn(move || write_atomic(path, &[w; 4096]))
                    })
                    .collect();
                for writer in writers {
                    let result = writer.join().unwrap();
                    assert!(result.is_ok(), "round {round}: {result:?}");
                }
            });
            let bytes = std::fs::read(&path).unwrap();
            assert_eq!(bytes.len(), 4096);
            assert!(bytes.iter().all(|&b| b == bytes[0]), "a torn file");
        }
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["runs.json"]);
    }
}
