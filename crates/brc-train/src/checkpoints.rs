//! The trainer's checkpoints: what besides the agent a resumed run needs (counters, the replay
//! RNG, the probe batches, the clock), and where the newest one is.

use std::path::{Path, PathBuf};

use brc_agents::Agent;
use brc_buffer::{Batch, ReplayBuffer};
use rand_pcg::Pcg32;
use serde::{Deserialize, Serialize};

use crate::error::{io, TrainError};
use crate::run_dir::{write_atomic, RunDir, AGENT_FILE};

/// Counters and RNG that a checkpoint must carry besides the agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TrainerState {
    pub(crate) episodes_done: usize,
    pub(crate) env_steps: u64,
    pub(crate) updates: u64,
    pub(crate) replay_rng: Pcg32,
    pub(crate) best_average: f64,
    pub(crate) best_after_episode: usize,
    /// The fixed per-task probe batches of the gradient-conflict measurements, once drawn.
    pub(crate) probes: Option<Vec<Batch>>,
    /// Training wall time up to this state, so a resumed run's clock continues.
    #[serde(default)]
    pub(crate) wall_seconds: f64,
}

/// A checkpoint's trainer state.
pub(crate) fn read_state(file: &Path) -> Result<TrainerState, TrainError> {
    let text = std::fs::read_to_string(file).map_err(io(file))?;
    serde_json::from_str(&text).map_err(|e| TrainError::Io {
        path: file.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })
}

/// The `ep<N>` checkpoint with the largest N.
pub(crate) fn newest_checkpoint(dir: &RunDir) -> Result<PathBuf, TrainError> {
    let root = dir.checkpoints();
    let newest = std::fs::read_dir(&root)
        .map_err(io(&root))?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let n: usize = name.strip_prefix("ep")?.parse().ok()?;
            e.path()
                .join("trainer.json")
                .is_file()
                .then_some((n, e.path()))
        })
        .max_by_key(|(n, _)| *n);
    newest.map(|(_, p)| p).ok_or_else(|| TrainError::Io {
        path: root,
        source: std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no ep<N> checkpoint to resume from",
        ),
    })
}

/// A checkpoint directory: the agent (safetensors), the trainer's counters and RNG, and the
/// replay buffer when given. Only the newest checkpoint keeps a replay buffer (it is what
/// `--resume` uses; older copies would only fill the disk).
pub(crate) fn save_checkpoint(
    agent: &dyn Agent,
    state: &TrainerState,
    replay: Option<&ReplayBuffer>,
    path: &Path,
) -> Result<(), TrainError> {
    std::fs::create_dir_all(path).map_err(io(path))?;
    agent.save(&path.join(AGENT_FILE))?;
    if let Some(buffer) = replay {
        buffer.save(&path.join("replay.safetensors"))?;
        let parent = path.parent().unwrap_or(Path::new("."));
        for entry in std::fs::read_dir(parent).map_err(io(parent))?.flatten() {
            let old = entry.path().join("replay.safetensors");
            if entry.path() != path && old.is_file() {
                std::fs::remove_file(&old).map_err(io(&old))?;
            }
        }
    }
    let text = serde_json::to_string_pretty(state).expect("state serializes");
    let file = path.join("trainer.json");
    write_atomic(&file, text.as_bytes()).map_err(io(&file))
}
