//! Reading what a run wrote — ours (`episodes.jsonl`, `evals.jsonl`, `summary.json`) or the
//! predecessor's `metrics.json` in either of its two schemas — into one shape for analysis.
//!
//! A run still in progress (or killed) is read up to its last complete line: a torn last line
//! of a JSONL file is skipped, not an error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Errors reading runs: a one-line message naming the file and the problem.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The file cannot be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not what it should be.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// One training episode.
#[derive(Debug, Clone, PartialEq)]
pub struct Episode {
    /// Index over all tasks.
    pub episode: usize,
    /// Task name.
    pub task: String,
    /// Return.
    pub episode_return: f64,
    /// Cumulative env steps after it (unknown in the predecessor's independent logs).
    pub env_steps: Option<u64>,
    /// Cumulative updates after it, when logged.
    pub updates: Option<u64>,
}

/// One evaluation: mean return per task after some training.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Training episodes before it (per task for the predecessor's independent logs).
    pub after_episode: usize,
    /// Mean greedy return per task.
    pub mean_return: BTreeMap<String, f64>,
    /// Whether it is the run's final evaluation.
    pub is_final: bool,
}

/// A run in one shape, whoever wrote it.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// A label for tables and legends.
    pub label: String,
    /// Agent kind (`brc`, `shared_dqn`, … or the predecessor's method name).
    pub method: String,
    /// Trainable parameters, when known.
    pub parameters: Option<usize>,
    /// Training episodes in order.
    pub episodes: Vec<Episode>,
    /// Evaluations in order.
    pub evaluations: Vec<Evaluation>,
}

fn read(path: &Path) -> Result<String, RunError> {
    std::fs::read_to_string(path).map_err(|source| RunError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn invalid(path: &Path, message: impl Into<String>) -> RunError {
    RunError::Invalid {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Parses JSON lines, skipping a torn last line.
fn json_lines(path: &Path) -> Result<Vec<Value>, RunError> {
    let text = read(path)?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut out = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        match serde_json::from_str(line) {
            Ok(v) => out.push(v),
            Err(_) if i + 1 == lines.len() => {} // being written, or cut by a kill
            Err(e) => return Err(invalid(path, format!("line {}: {e}", i + 1))),
        }
    }
    Ok(out)
}

fn tasks_means(v: &Value) -> BTreeMap<String, f64> {
    v.as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, x)| Some((k.clone(), x.as_f64()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// Reads one of our run directories (`episodes.jsonl` required; `evals.jsonl` and
/// `summary.json` used when present).
pub fn load_run(dir: &Path) -> Result<Run, RunError> {
    let episodes_path = dir.join("episodes.jsonl");
    if !episodes_path.is_file() {
        return Err(invalid(dir, "not a run directory (no episodes.jsonl)"));
    }
    let mut episodes = Vec::new();
    for (i, v) in json_lines(&episodes_path)?.iter().enumerate() {
        let field = |k: &str| {
            v.get(k)
                .ok_or_else(|| invalid(&episodes_path, format!("line {}: missing `{k}`", i + 1)))
        };
        episodes.push(Episode {
            episode: field("episode")?.as_u64().unwrap_or(i as u64) as usize,
            task: field("task")?.as_str().unwrap_or_default().to_string(),
            episode_return: field("return")?.as_f64().unwrap_or(f64::NAN),
            env_steps: v.get("env_steps").and_then(Value::as_u64),
            updates: v.get("updates").and_then(Value::as_u64),
        });
    }
    let evals_path = dir.join("evals.jsonl");
    let evaluations = if evals_path.is_file() {
        json_lines(&evals_path)?
            .iter()
            .map(|v| Evaluation {
                after_episode: v["after_episode"].as_u64().unwrap_or(0) as usize,
                mean_return: tasks_means(&v["mean_return"]),
                is_final: v["is_final"].as_bool().unwrap_or(false),
            })
            .collect()
    } else {
        Vec::new()
    };
    let summary: Option<Value> = std::fs::read_to_string(dir.join("summary.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let method = summary
        .as_ref()
        .and_then(|s| s["agent"].as_str().map(String::from))
        .unwrap_or_else(|| "unknown".into());
    Ok(Run {
        label: dir
            .file_name()
            .map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into()),
        method,
        parameters: summary
            .as_ref()
            .and_then(|s| s["parameters"].as_u64())
            .map(|p| p as usize),
        episodes,
        evaluations,
    })
}

/// Reads one of the predecessor's `metrics.json` files, in its multi-task schema
/// (`episodes[...]`, `eval_history`) or its independent one (`episode_rewards`,
/// `eval_rewards`, `eval_episodes`; one task, named after the file).
pub fn load_predecessor(path: &Path) -> Result<Run, RunError> {
    let doc: Value =
        serde_json::from_str(&read(path)?).map_err(|e| invalid(path, format!("not JSON: {e}")))?;
    let stem = path
        .file_stem()
        .map_or("predecessor".into(), |s| s.to_string_lossy().into_owned());
    if let Some(eps) = doc.get("episodes").and_then(Value::as_array) {
        // Multi-task schema: steps per episode are logged, so cumulative steps are exact.
        let mut steps = 0u64;
        let episodes = eps
            .iter()
            .enumerate()
            .map(|(i, e)| {
                steps += e["steps"].as_u64().unwrap_or(0);
                Episode {
                    episode: e["episode"].as_u64().unwrap_or(i as u64) as usize,
                    task: e["task"].as_str().unwrap_or_default().to_string(),
                    episode_return: e["reward"].as_f64().unwrap_or(f64::NAN),
                    env_steps: Some(steps),
                    updates: None,
                }
            })
            .collect();
        let history = doc["eval_history"].as_object().cloned().unwrap_or_default();
        let n = history
            .values()
            .filter_map(Value::as_array)
            .map(Vec::len)
            .max()
            .unwrap_or(0);
        // Its config logs the interval; files without one evaluated every 50 episodes.
        let evals_every = doc["config"]["eval_freq"].as_u64().unwrap_or(50) as usize;
        let evaluations = (0..n)
            .map(|k| Evaluation {
                after_episode: (k + 1) * evals_every,
                mean_return: history
                    .iter()
                    .filter_map(|(t, v)| Some((t.clone(), v.as_array()?.get(k)?.as_f64()?)))
                    .collect(),
                is_final: false,
            })
            .collect();
        return Ok(Run {
            label: format!("predecessor {stem}"),
            method: doc["method"].as_str().unwrap_or(&stem).to_string(),
            parameters: doc["parameters"].as_u64().map(|p| p as usize),
            episodes,
            evaluations,
        });
    }
    if let Some(rewards) = doc.get("episode_rewards").and_then(Value::as_array) {
        let episodes = rewards
            .iter()
            .enumerate()
            .map(|(i, r)| Episode {
                episode: i,
                task: stem.clone(),
                episode_return: r.as_f64().unwrap_or(f64::NAN),
                env_steps: None,
                updates: None,
            })
            .collect();
        let at = doc["eval_episodes"].as_array().cloned().unwrap_or_default();
        let evaluations = doc["eval_rewards"]
            .as_array()
            .map(|v| v.as_slice())
            .unwrap_or_default()
            .iter()
            .zip(&at)
            .map(|(r, e)| Evaluation {
                after_episode: e.as_u64().unwrap_or(0) as usize,
                mean_return: [(stem.clone(), r.as_f64().unwrap_or(f64::NAN))].into(),
                is_final: false,
            })
            .collect();
        return Ok(Run {
            label: format!("predecessor independent {stem}"),
            method: "independent_dqn (predecessor)".into(),
            parameters: None,
            episodes,
            evaluations,
        });
    }
    Err(invalid(
        path,
        "neither of the predecessor's metrics schemas (no `episodes` or `episode_rewards`)",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("brc-analysis-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_run_in_progress_is_read_to_its_last_complete_episode() {
        let dir = tmp("partial");
        std::fs::write(
            dir.join("episodes.jsonl"),
            "{\"episode\":0,\"task\":\"standard\",\"return\":-10.5,\"env_steps\":70,\"updates\":0}\n\
             {\"episode\":1,\"task\":\"windy\",\"return\":3.0,\"env_steps\":150,\"updates\":80}\n\
             {\"episode\":2,\"task\":\"hea",
        )
        .unwrap();
        let run = load_run(&dir).unwrap();
        assert_eq!(run.episodes.len(), 2);
        assert_eq!(run.episodes[1].env_steps, Some(150));
        assert_eq!(run.method, "unknown", "no summary yet");
        assert!(run.evaluations.is_empty());
        std::fs::write(dir.join("episodes.jsonl"), "garbage\n{\"episode\":0}\n").unwrap();
        let e = load_run(&dir).unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(load_run(&dir)
            .unwrap_err()
            .to_string()
            .contains("not a run directory"));
    }

    #[test]
    fn both_predecessor_schemas_load() {
        let base =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/predecessor/metrics");
        if !base.is_dir() {
            eprintln!("skipping: {} not found", base.display());
            return;
        }
        let shared = load_predecessor(&base.join("shared_dqn.json")).unwrap();
        assert_eq!(shared.episodes.len(), 1500);
        assert_eq!(shared.parameters, Some(37_788));
        // Per-episode steps add up to the logged total.
        let doc: Value =
            serde_json::from_str(&std::fs::read_to_string(base.join("shared_dqn.json")).unwrap())
                .unwrap();
        assert_eq!(
            shared.episodes.last().unwrap().env_steps,
            doc["total_env_steps"].as_u64()
        );
        assert_eq!(shared.evaluations.len(), 29);
        assert_eq!(shared.evaluations[1].after_episode, 100);
        assert_eq!(shared.evaluations[0].mean_return.len(), 3);

        let standard = load_predecessor(&base.join("standard.json")).unwrap();
        assert_eq!(standard.episodes[0].env_steps, None);
        assert_eq!(standard.evaluations[0].after_episode, 50);
        assert!(standard.evaluations[0].mean_return.contains_key("standard"));
    }
}
