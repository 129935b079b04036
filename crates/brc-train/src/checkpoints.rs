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
    /// The best periodic evaluation average so far; −∞ before the first one.
    #[serde(with = "minus_infinity_as_null")]
    pub(crate) best_average: f64,
    pub(crate) best_after_episode: usize,
    /// The fixed per-task probe batches of the gradient-conflict measurements, once drawn.
    pub(crate) probes: Option<Vec<Batch>>,
    /// Training wall time up to this state, so a resumed run's clock continues.
    #[serde(default)]
    pub(crate) wall_seconds: f64,
}

/// JSON has no −∞: serde_json writes it as `null` and then refuses to read `null` back as an
/// f64, so a checkpoint saved before the first periodic evaluation (an interrupt or a Slurm
/// preemption in the first episodes) could not be resumed. `null` reads back as −∞.
mod minus_infinity_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(value: &f64, s: S) -> Result<S::Ok, S::Error> {
        if *value == f64::NEG_INFINITY {
            s.serialize_none()
        } else {
            s.serialize_f64(*value)
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NEG_INFINITY))
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn state(best_average: f64) -> TrainerState {
        TrainerState {
            episodes_done: 26,
            env_steps: 2440,
            updates: 441,
            replay_rng: Pcg32::new(7, 11),
            best_average,
            best_after_episode: 0,
            probes: None,
            wall_seconds: 1.5,
        }
    }

    /// `read_state` of a trainer.json holding `text`.
    fn read_back(text: &str) -> TrainerState {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("trainer.json");
        std::fs::write(&file, text).unwrap();
        read_state(&file).unwrap()
    }

    fn round_trip(best_average: f64) -> TrainerState {
        read_back(&serde_json::to_string_pretty(&state(best_average)).unwrap())
    }

    #[test]
    fn a_state_saved_before_the_first_evaluation_reads_back() {
        let back = round_trip(f64::NEG_INFINITY);
        assert_eq!(back.best_average, f64::NEG_INFINITY);
        assert_eq!((back.episodes_done, back.updates), (26, 441));
        assert_eq!(round_trip(-122.5).best_average, -122.5);
    }

    #[test]
    fn a_null_best_average_from_an_older_checkpoint_reads_as_no_evaluation_yet() {
        let mut json = serde_json::to_value(state(0.0)).unwrap();
        json["best_average"] = serde_json::Value::Null;
        assert_eq!(read_back(&json.to_string()).best_average, f64::NEG_INFINITY);
    }
}
