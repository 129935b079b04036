//! Publishing a finished run: its config, logs and summary with the final agent's online
//! weights only — what anyone needs to read the curves and re-evaluate the agent
//! (`brc evaluate --run <published dir> --checkpoint weights.safetensors`), small enough to
//! commit. The best checkpoint's weights come along too: the earlier project reported best
//! checkpoints, and comparing with it on its own protocol needs them.

use std::path::{Path, PathBuf};

use crate::error::{io, TrainError};
use crate::run_dir::{write_atomic, RunDir, AGENT_FILE};

/// The weights-only agent file in a published run directory.
pub const PUBLISHED_WEIGHTS: &str = "weights.safetensors";

/// The weights-only file of the run's best checkpoint (best periodic evaluation average).
pub const PUBLISHED_BEST_WEIGHTS: &str = "best.safetensors";

/// Copies `config.toml`, `summary.json`, `episodes.jsonl`, `evals.jsonl` and (when present)
/// `conflict.jsonl`, `surgery.jsonl` and `varshare.jsonl` of the finished run `run` into `dest`, and writes the final checkpoint's
/// online weights as [`PUBLISHED_WEIGHTS`] and, when the run has one, the best checkpoint's as
/// [`PUBLISHED_BEST_WEIGHTS`]. Refuses a run without a summary (unfinished) and a
/// non-empty `dest` unless `force`. Returns the files written.
///
/// `rename` publishes the run under another method name (`run.name` in its config, `name` in
/// its summary, which keeps the old one as `trained_as`): for a run trained as a variant whose
/// settings later became a config of their own. Nothing else changes.
pub fn publish_run(
    run: &Path,
    dest: &Path,
    force: bool,
    rename: Option<&str>,
) -> Result<Vec<PathBuf>, TrainError> {
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
    let final_agent = src.checkpoint("final").join(AGENT_FILE);
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
        src.surgery(),
        src.varshare(),
    ];
    for file in files {
        if !file.is_file() {
            continue;
        }
        let mut bytes = std::fs::read(&file).map_err(io(&file))?;
        if let Some(name) = rename {
            if file == src.config() {
                bytes = renamed_config(&file, &bytes, name)?;
            } else if file == src.summary() {
                bytes = renamed_summary(&file, &bytes, name)?;
            }
        }
        let to = dest.join(file.file_name().expect("run files have names"));
        write_atomic(&to, &bytes).map_err(io(&to))?;
        written.push(to);
    }
    let weights = dest.join(PUBLISHED_WEIGHTS);
    brc_agents::export_weights(&final_agent, &weights)?;
    written.push(weights);
    let best_agent = src.checkpoint("best").join(AGENT_FILE);
    if best_agent.is_file() {
        let best = dest.join(PUBLISHED_BEST_WEIGHTS);
        brc_agents::export_weights(&best_agent, &best)?;
        written.push(best);
    }
    Ok(written)
}

fn invalid_data(path: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
    }
}

/// Replaces the first line of `text` after the line `section` (or from the top when `None`)
/// that starts with `key` by `line`, keeping every other line (comments, order) as written.
fn replace_line(text: &str, section: Option<&str>, key: &str, line: &str) -> Option<String> {
    let mut in_section = section.is_none();
    let mut done = false;
    let mut out = String::with_capacity(text.len() + line.len());
    for l in text.lines() {
        let t = l.trim_start();
        if let Some(section) = section {
            if t.starts_with('[') {
                in_section = t.trim_end() == section;
            }
        }
        if in_section && !done && t.starts_with(key) {
            out.push_str(line);
            done = true;
        } else {
            out.push_str(l);
        }
        out.push('\n');
    }
    done.then_some(out)
}

/// The run's `config.toml` with `run.name = name`, checked by parsing it back.
fn renamed_config(path: &Path, bytes: &[u8], name: &str) -> Result<Vec<u8>, TrainError> {
    let text = std::str::from_utf8(bytes).map_err(|e| invalid_data(path, e))?;
    let quoted = toml::Value::String(name.into()).to_string();
    let renamed = replace_line(text, Some("[run]"), "name ", &format!("name = {quoted}"))
        .ok_or_else(|| invalid_data(path, "no `name` in its [run] table"))?;
    let parsed: toml::Table = renamed.parse().map_err(|e| invalid_data(path, e))?;
    if parsed["run"]["name"].as_str() != Some(name) {
        return Err(invalid_data(path, "could not set run.name"));
    }
    Ok(renamed.into_bytes())
}

/// The run's `summary.json` with `name = name` and the old name as `trained_as`, checked by
/// parsing it back.
fn renamed_summary(path: &Path, bytes: &[u8], name: &str) -> Result<Vec<u8>, TrainError> {
    let old: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| invalid_data(path, e))?;
    let text = std::str::from_utf8(bytes).map_err(|e| invalid_data(path, e))?;
    let line = format!(
        "  \"name\": {},\n  \"trained_as\": {},",
        serde_json::Value::from(name),
        old["name"]
    );
    let renamed = replace_line(text, None, "\"name\":", &line)
        .ok_or_else(|| invalid_data(path, "no `name` field"))?;
    let parsed: serde_json::Value =
        serde_json::from_str(&renamed).map_err(|e| invalid_data(path, e))?;
    if parsed["name"] != name || parsed["trained_as"] != old["name"] {
        return Err(invalid_data(path, "could not set name"));
    }
    Ok(renamed.into_bytes())
}
