//! Publishing a finished run: its config, logs and summary with the final agent's online
//! weights only — what anyone needs to read the curves and re-evaluate the agent
//! (`brc evaluate --run <published dir> --checkpoint weights.safetensors`), small enough to
//! commit. The best checkpoint's weights come along too: the earlier project reported best
//! checkpoints, and comparing with it on its own protocol needs them.

use std::path::{Path, PathBuf};

use crate::run_dir::{write_atomic, RunDir};
use crate::trainer::{io, TrainError};

/// The weights-only agent file in a published run directory.
pub const PUBLISHED_WEIGHTS: &str = "weights.safetensors";

/// The weights-only file of the run's best checkpoint (best periodic evaluation average).
pub const PUBLISHED_BEST_WEIGHTS: &str = "best.safetensors";

/// Copies `config.toml`, `summary.json`, `episodes.jsonl`, `evals.jsonl` and (when present)
/// `conflict.jsonl` of the finished run `run` into `dest`, and writes the final checkpoint's
/// online weights as [`PUBLISHED_WEIGHTS`] and, when the run has one, the best checkpoint's as
/// [`PUBLISHED_BEST_WEIGHTS`]. Refuses a run without a summary (unfinished) and a
/// non-empty `dest` unless `force`. Returns the files written.
pub fn publish_run(run: &Path, dest: &Path, force: bool) -> Result<Vec<PathBuf>, TrainError> {
    let src = RunDir::new(run);
    if !src.summary().is_file() {
        return Err(TrainError::Io {
            path: src.summary(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the run has not finished (no summary.json): nothing to publish yet",
            ),
        });
    }
    let final_agent = src.checkpoint("final").join("agent.safetensors");
    if !final_agent.is_file() {
        return Err(TrainError::Io {
            path: final_agent,
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no final checkpoint"),
        });
    }
    if !force && dest.read_dir().is_ok_and(|mut d| d.next().is_some()) {
        return Err(TrainError::RunExists(dest.to_path_buf()));
    }
    std::fs::create_dir_all(dest).map_err(io(dest))?;
    let mut written = Vec::new();
    let files = [
        src.config(),
        src.summary(),
        src.episodes(),
        src.evals(),
        src.conflict(),
    ];
    for file in files {
        if !file.is_file() {
            continue;
        }
        let bytes = std::fs::read(&file).map_err(io(&file))?;
        let to = dest.join(file.file_name().expect("run files have names"));
        write_atomic(&to, &bytes).map_err(io(&to))?;
        written.push(to);
    }
    let weights = dest.join(PUBLISHED_WEIGHTS);
    brc_agents::export_weights(&final_agent, &weights)?;
    written.push(weights);
    let best_agent = src.checkpoint("best").join("agent.safetensors");
    if best_agent.is_file() {
        let best = dest.join(PUBLISHED_BEST_WEIGHTS);
        brc_agents::export_weights(&best_agent, &best)?;
        written.push(best);
    }
    Ok(written)
}
