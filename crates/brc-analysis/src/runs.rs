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
    /// Exploration rate during it, when logged.
    pub epsilon: Option<f64>,
    /// Mean training loss over its updates, when logged.
    pub loss: Option<f64>,
    /// Mean Q-value of its updates' batches, when logged.
    pub mean_q: Option<f64>,
    /// Mean gradient norm (before clipping) of its updates, when logged.
    pub grad_norm: Option<f64>,
    /// Wall-clock seconds since the run started, when logged.
    pub wall_seconds: Option<f64>,
}

/// One evaluation: mean return per task after some training.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Training episodes before it (per task for the predecessor's independent logs).
    pub after_episode: usize,
    /// Cumulative env steps before it, when logged.
    pub env_steps: Option<u64>,
    /// Mean greedy return per task.
    pub mean_return: BTreeMap<String, f64>,
    /// Whether it is the run's final evaluation.
    pub is_final: bool,
    /// Share of its episodes with return ≥ 200 per task, when the returns are logged.
    pub success_rate: BTreeMap<String, f64>,
}

/// Gradient conflict between tasks at one point of training (`conflict.jsonl`).
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    /// Training episodes done when measured.
    pub after_episode: usize,
    /// Gradient norm per task.
    pub norms: BTreeMap<String, f64>,
    /// Cosine similarity per task pair `a|b`.
    pub cosines: BTreeMap<String, f64>,
}

/// One line of a method-specific diagnostics log (`surgery.jsonl`, …): its numbers by name.
/// A nested object's numbers are named `field/key` (GradNorm's `weights/windy`), so a figure
/// can draw each field as a panel and each key as a line.
#[derive(Debug, Clone, PartialEq)]
pub struct DiagnosticPoint {
    /// Training episodes done when measured.
    pub after_episode: usize,
    /// The numbers of the line (strings such as the method's name are left out).
    pub values: BTreeMap<String, f64>,
}

/// The diagnostics logs a run may write, by name (`<name>.jsonl` in the run directory).
pub const DIAGNOSTIC_LOGS: [&str; 1] = ["surgery"];

/// VarShare's residuals at one point of training (`varshare.jsonl`).
#[derive(Debug, Clone, PartialEq)]
pub struct VarShareSample {
    /// Training episodes done when measured.
    pub after_episode: usize,
    /// KL summed over layers, per task.
    pub kl: BTreeMap<String, f64>,
    /// Residual weights of one task over all layers (what `kl` sums over).
    pub weights: f64,
    /// Mean σ per task (empty for `l2` residuals).
    pub mean_sigma: BTreeMap<String, f64>,
    /// Per layer in forward order: its name and the share of μ entries surviving pruning,
    /// per task.
    pub kept_fraction: Vec<(String, BTreeMap<String, f64>)>,
    /// Share of μ entries surviving pruning over all layers, per task.
    pub kept_fraction_all: BTreeMap<String, f64>,
}

/// A run in one shape, whoever wrote it.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// A label for tables and legends (the directory or file name).
    pub label: String,
    /// The run's name (its config's `run.name`, or the predecessor's method name): runs of one
    /// method over several seeds share it.
    pub method: String,
    /// Agent kind (`brc`, `shared_dqn`, …), when known.
    pub agent: Option<String>,
    /// Run seed, when known.
    pub seed: Option<u64>,
    /// Trainable parameters, when known.
    pub parameters: Option<usize>,
    /// Task names in the order the run trains them.
    pub tasks: Vec<String>,
    /// Training episodes in order.
    pub episodes: Vec<Episode>,
    /// Evaluations in order.
    pub evaluations: Vec<Evaluation>,
    /// Gradient-conflict measurements in order.
    pub conflicts: Vec<Conflict>,
    /// Method-specific diagnostics by log name ([`DIAGNOSTIC_LOGS`]), each in order; a log the
    /// run does not write is absent.
    pub diagnostics: BTreeMap<String, Vec<DiagnosticPoint>>,
    /// VarShare diagnostics (`varshare.jsonl`; empty for other runs).
    pub varshare: Vec<VarShareSample>,
    /// Training wall-clock seconds (`summary.json`; for a run in progress, its last episode's).
    pub wall_seconds: Option<f64>,
    /// Whether the run finished (wrote its summary).
    pub finished: bool,
}

impl Run {
    /// The final evaluation, or the last one of a run that has none yet (then `false`).
    pub fn final_evaluation(&self) -> Option<(&Evaluation, bool)> {
        if let Some(e) = self.evaluations.iter().rev().find(|e| e.is_final) {
            return Some((e, true));
        }
        self.evaluations.last().map(|e| (e, false))
    }

    /// Env steps done (the last logged episode's count).
    pub fn env_steps(&self) -> Option<u64> {
        self.episodes.last().and_then(|e| e.env_steps)
    }

    /// Updates done (the last logged episode's count).
    pub fn updates(&self) -> Option<u64> {
        self.episodes.last().and_then(|e| e.updates)
    }

    /// A VarShare run's trainable parameters after pruning, at its last `varshare.jsonl`
    /// line: the shared ones plus each task's surviving residual entries, each counting μ and
    /// (variational residuals, which log a σ) its ρ. `None` for other runs, or when the log
    /// does not fit the run's parameter count.
    pub fn pruned_parameters(&self) -> Option<usize> {
        let last = self.varshare.last()?;
        let per_entry = if last.mean_sigma.is_empty() { 1.0 } else { 2.0 };
        let adapters = last.weights * per_entry * last.kept_fraction_all.len() as f64;
        let shared = self.parameters? as f64 - adapters;
        if shared < 0.0 || last.kept_fraction_all.is_empty() {
            return None;
        }
        let kept: f64 = last
            .kept_fraction_all
            .values()
            .map(|f| (f * last.weights).round() * per_entry)
            .sum();
        Some((shared + kept).round() as usize)
    }
}

/// Task names in order of first appearance.
pub(crate) fn task_order<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut tasks: Vec<String> = Vec::new();
    for n in names {
        if !tasks.iter().any(|t| t == n) {
            tasks.push(n.to_string());
        }
    }
    tasks
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

/// A diagnostics line's numbers: top-level numbers by their name, a nested object's by
/// `field/key`.
fn diagnostic_point(v: &Value) -> Option<DiagnosticPoint> {
    let after_episode = v["after_episode"].as_u64()? as usize;
    let mut values = BTreeMap::new();
    for (field, x) in v.as_object()? {
        if field == "after_episode" {
            continue;
        }
        if let Some(n) = x.as_f64() {
            values.insert(field.clone(), n);
        } else if let Some(inner) = x.as_object() {
            for (key, y) in inner {
                if let Some(n) = y.as_f64() {
                    values.insert(format!("{field}/{key}"), n);
                }
            }
        }
    }
    Some(DiagnosticPoint {
        after_episode,
        values,
    })
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

/// One line of `varshare.jsonl`.
fn varshare_sample(v: &Value) -> VarShareSample {
    let layers = v["layers"].as_array().cloned().unwrap_or_default();
    let mut kept = BTreeMap::<String, f64>::new();
    let mut weights = 0.0;
    let kept_fraction = layers
        .iter()
        .map(|l| {
            let w = l["weights"].as_f64().unwrap_or(0.0);
            weights += w;
            for (task, k) in tasks_means(&l["kept"]) {
                *kept.entry(task).or_default() += k;
            }
            (
                l["layer"].as_str().unwrap_or("?").to_string(),
                tasks_means(&l["kept_fraction"]),
            )
        })
        .collect();
    VarShareSample {
        after_episode: v["after_episode"].as_u64().unwrap_or(0) as usize,
        kl: tasks_means(&v["kl"]),
        weights,
        mean_sigma: tasks_means(&v["mean_sigma"]),
        kept_fraction,
        kept_fraction_all: kept
            .into_iter()
            .map(|(t, k)| (t, if weights > 0.0 { k / weights } else { 0.0 }))
            .collect(),
    }
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
            epsilon: v.get("epsilon").and_then(Value::as_f64),
            loss: v.get("mean_loss").and_then(Value::as_f64),
            mean_q: v.get("mean_q").and_then(Value::as_f64),
            grad_norm: v.get("grad_norm").and_then(Value::as_f64),
            wall_seconds: v.get("wall_seconds").and_then(Value::as_f64),
        });
    }
    let evals_path = dir.join("evals.jsonl");
    let evaluations = if evals_path.is_file() {
        json_lines(&evals_path)?
            .iter()
            .map(|v| Evaluation {
                after_episode: v["after_episode"].as_u64().unwrap_or(0) as usize,
                env_steps: v["env_steps"].as_u64(),
                mean_return: tasks_means(&v["mean_return"]),
                is_final: v["is_final"].as_bool().unwrap_or(false),
                success_rate: success_rates(&v["returns"]),
            })
            .collect()
    } else {
        Vec::new()
    };
    let varshare_path = dir.join("varshare.jsonl");
    let varshare = if varshare_path.is_file() {
        json_lines(&varshare_path)?
            .iter()
            .map(varshare_sample)
            .collect()
    } else {
        Vec::new()
    };
    let conflict_path = dir.join("conflict.jsonl");
    let conflicts = if conflict_path.is_file() {
        json_lines(&conflict_path)?
            .iter()
            .map(|v| Conflict {
                after_episode: v["after_episode"].as_u64().unwrap_or(0) as usize,
                norms: tasks_means(&v["norms"]),
                cosines: tasks_means(&v["cosines"]),
            })
            .collect()
    } else {
        Vec::new()
    };
    let mut diagnostics = BTreeMap::new();
    for name in DIAGNOSTIC_LOGS {
        let path = dir.join(format!("{name}.jsonl"));
        if path.is_file() {
            let points = json_lines(&path)?
                .iter()
                .filter_map(diagnostic_point)
                .collect();
            diagnostics.insert(name.to_string(), points);
        }
    }
    let summary: Option<Value> = std::fs::read_to_string(dir.join("summary.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    // A run in progress has no summary yet: its config names it.
    let config: Option<toml::Table> = std::fs::read_to_string(dir.join("config.toml"))
        .ok()
        .and_then(|t| t.parse().ok());
    let from_config = |section: &str, key: &str| {
        config
            .as_ref()
            .and_then(|c| c.get(section)?.get(key)?.as_str().map(String::from))
    };
    let label = dir
        .file_name()
        .map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into());
    let method = summary
        .as_ref()
        .and_then(|s| s["name"].as_str().map(String::from))
        .or_else(|| from_config("run", "name"))
        .unwrap_or_else(|| label.clone());
    let agent = summary
        .as_ref()
        .and_then(|s| s["agent"].as_str().map(String::from))
        .or_else(|| from_config("agent", "kind"));
    let seed = summary
        .as_ref()
        .and_then(|s| s["seed"].as_u64())
        .or_else(|| {
            config
                .as_ref()
                .and_then(|c| c.get("run")?.get("seed")?.as_integer())
                .map(|s| s as u64)
        });
    let wall_seconds = summary
        .as_ref()
        .and_then(|s| s["wall_seconds"].as_f64())
        .or_else(|| episodes.last().and_then(|e| e.wall_seconds));
    Ok(Run {
        label,
        method,
        agent,
        seed,
        parameters: summary
            .as_ref()
            .and_then(|s| s["parameters"].as_u64())
            .map(|p| p as usize),
        tasks: task_order(episodes.iter().map(|e| e.task.as_str())),
        episodes,
        evaluations,
        conflicts,
        diagnostics,
        varshare,
        // A run in progress: the clock of its last logged episode.
        wall_seconds,
        finished: summary.is_some(),
    })
}

/// Makes the `brc evaluate --json` report at `report` the run's final evaluation (replacing
/// the one its log holds), e.g. its best checkpoint re-evaluated on fresh seeds. The report
/// must cover every task the run trains.
pub fn use_evaluation_report(run: &mut Run, report: &Path) -> Result<(), RunError> {
    let doc: Value = serde_json::from_str(&read(report)?)
        .map_err(|e| invalid(report, format!("not an evaluation report: {e}")))?;
    let mut mean_return = BTreeMap::new();
    let mut success_rate = BTreeMap::new();
    for t in doc["tasks"].as_array().into_iter().flatten() {
        let (Some(task), Some(mean)) = (t["task"].as_str(), t["mean_return"].as_f64()) else {
            return Err(invalid(
                report,
                "a task entry lacks `task` or `mean_return`",
            ));
        };
        mean_return.insert(task.to_string(), mean);
        if let Some(rate) = t["success_rate"].as_f64() {
            success_rate.insert(task.to_string(), rate);
        }
    }
    if let Some(missing) = run.tasks.iter().find(|t| !mean_return.contains_key(*t)) {
        return Err(invalid(
            report,
            format!("evaluates no `{missing}` episodes (evaluate with --task all)"),
        ));
    }
    run.evaluations.retain(|e| !e.is_final);
    run.evaluations.push(Evaluation {
        after_episode: run.episodes.len(),
        env_steps: run.env_steps(),
        mean_return,
        is_final: true,
        success_rate,
    });
    Ok(())
}

/// Share of returns ≥ 200 per task from an evaluation's `returns` map.
fn success_rates(v: &Value) -> BTreeMap<String, f64> {
    v.as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, x)| {
                    let r: Vec<f64> = x.as_array()?.iter().filter_map(Value::as_f64).collect();
                    (!r.is_empty()).then(|| {
                        let ok = r.iter().filter(|&&x| x >= 200.0).count();
                        (k.clone(), ok as f64 / r.len() as f64)
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Reads one of the predecessor's `metrics.json` files, in its multi-task schema
/// (`episodes[...]`, `eval_history`) or its independent one (`episode_rewards`,
/// `eval_rewards`, `eval_episodes`; one task, named after the file). Its method name gets a
/// ` (predecessor)` suffix so it never mixes with ours.
pub fn load_predecessor(path: &Path) -> Result<Run, RunError> {
    let doc: Value =
        serde_json::from_str(&read(path)?).map_err(|e| invalid(path, format!("not JSON: {e}")))?;
    let stem = path
        .file_stem()
        .map_or("predecessor".into(), |s| s.to_string_lossy().into_owned());
    if let Some(eps) = doc.get("episodes").and_then(Value::as_array) {
        // Multi-task schema: steps per episode are logged, so cumulative steps are exact.
        let mut steps = 0u64;
        let episodes: Vec<Episode> = eps
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
                    epsilon: e["epsilon"].as_f64(),
                    loss: e["loss"].as_f64(),
                    mean_q: None,
                    grad_norm: None,
                    wall_seconds: None,
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
        // Entries are plain numbers, or `{episode, reward}` in its BRC log.
        let entry = |t: &Value, k: usize| -> Option<(Option<usize>, f64)> {
            let v = t.as_array()?.get(k)?;
            match v.as_f64() {
                Some(x) => Some((None, x)),
                None => Some((
                    v["episode"].as_u64().map(|e| e as usize),
                    v["reward"].as_f64()?,
                )),
            }
        };
        let evaluations = (0..n)
            .map(|k| {
                let after = history
                    .values()
                    .find_map(|t| entry(t, k)?.0)
                    .unwrap_or((k + 1) * evals_every);
                Evaluation {
                    after_episode: after,
                    env_steps: after
                        .checked_sub(1)
                        .and_then(|i| episodes.get(i))
                        .and_then(|e| e.env_steps),
                    mean_return: history
                        .iter()
                        .filter_map(|(t, v)| Some((t.clone(), entry(v, k)?.1)))
                        .collect(),
                    is_final: false,
                    success_rate: BTreeMap::new(),
                }
            })
            .collect();
        let name = doc["method"].as_str().unwrap_or(&stem).to_string();
        // Its brc.json logs the 3-block, 51-atom count (459,820), but that run's config has 2
        // blocks and 21 atoms: 296,884 parameters (shared/predecessor/README.md).
        let parameters = if name == "brc" && doc["config"]["num_blocks"].as_u64() == Some(2) {
            Some(296_884)
        } else {
            doc["parameters"].as_u64().map(|p| p as usize)
        };
        return Ok(Run {
            label: format!("{name} (predecessor)"),
            method: format!("{name} (predecessor)"),
            agent: None,
            seed: None,
            parameters,
            tasks: task_order(episodes.iter().map(|e| e.task.as_str())),
            episodes,
            evaluations,
            conflicts: Vec::new(),
            diagnostics: BTreeMap::new(),
            varshare: Vec::new(),
            wall_seconds: None,
            finished: true,
        });
    }
    if let Some(rewards) = doc.get("episode_rewards").and_then(Value::as_array) {
        let losses = doc["episode_losses"].as_array();
        let episodes = rewards
            .iter()
            .enumerate()
            .map(|(i, r)| Episode {
                episode: i,
                task: stem.clone(),
                episode_return: r.as_f64().unwrap_or(f64::NAN),
                env_steps: None,
                updates: None,
                epsilon: None,
                loss: losses.and_then(|l| l.get(i)?.as_f64()),
                mean_q: None,
                grad_norm: None,
                wall_seconds: None,
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
                env_steps: None,
                mean_return: [(stem.clone(), r.as_f64().unwrap_or(f64::NAN))].into(),
                is_final: false,
                success_rate: BTreeMap::new(),
            })
            .collect();
        return Ok(Run {
            label: format!("independent_dqn {stem} (predecessor)"),
            method: "independent_dqn (predecessor)".into(),
            agent: None,
            seed: None,
            parameters: None,
            tasks: vec![stem],
            episodes,
            evaluations,
            conflicts: Vec::new(),
            diagnostics: BTreeMap::new(),
            varshare: Vec::new(),
            wall_seconds: None,
            finished: true,
        });
    }
    Err(invalid(
        path,
        "neither of the predecessor's metrics schemas (no `episodes` or `episode_rewards`)",
    ))
}

/// The predecessor's runs in its `metrics/` directory: each multi-task log as one run, and its
/// per-task independent logs (`standard.json`, `windy.json`, `heavy.json`) joined into one
/// three-task run, as it reported them (3 × 35,716 = 107,148 parameters).
pub fn load_predecessor_dir(dir: &Path) -> Result<Vec<Run>, RunError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| RunError::Read {
            path: dir.to_path_buf(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut runs = Vec::new();
    let mut independent: Vec<Run> = Vec::new();
    for f in &files {
        let run = load_predecessor(f)?;
        if run.method == "independent_dqn (predecessor)" {
            independent.push(run);
        } else {
            runs.push(run);
        }
    }
    if runs.is_empty() && independent.is_empty() {
        return Err(invalid(dir, "no metrics .json files"));
    }
    if !independent.is_empty() {
        // Task order as the predecessor numbered them.
        let rank = |t: &str| ["standard", "windy", "heavy"].iter().position(|x| *x == t);
        independent.sort_by_key(|r| rank(&r.tasks[0]).unwrap_or(usize::MAX));
        let mut joined = Run {
            label: "independent_dqn (predecessor)".into(),
            method: "independent_dqn (predecessor)".into(),
            agent: None,
            seed: None,
            parameters: (independent.len() == 3).then_some(107_148),
            tasks: independent.iter().map(|r| r.tasks[0].clone()).collect(),
            episodes: Vec::new(),
            evaluations: Vec::new(),
            conflicts: Vec::new(),
            diagnostics: BTreeMap::new(),
            varshare: Vec::new(),
            wall_seconds: None,
            finished: true,
        };
        for r in &independent {
            joined.episodes.extend(r.episodes.iter().cloned());
        }
        // The k-th evaluations of the three trainings form one evaluation of all tasks.
        let n = independent
            .iter()
            .map(|r| r.evaluations.len())
            .min()
            .unwrap_or(0);
        for k in 0..n {
            let mut e = independent[0].evaluations[k].clone();
            for r in &independent[1..] {
                e.mean_return.extend(r.evaluations[k].mean_return.clone());
            }
            joined.evaluations.push(e);
        }
        runs.push(joined);
    }
    Ok(runs)
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
        assert!(!run.finished, "no summary yet");
        assert_eq!(run.agent, None, "no summary or config");
        assert_eq!(run.tasks, ["standard", "windy"]);
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
    fn pruned_parameters_count_the_shared_ones_and_the_surviving_residuals() {
        let sample = |sigma: bool| VarShareSample {
            after_episode: 30,
            kl: BTreeMap::new(),
            weights: 100.0,
            mean_sigma: if sigma {
                [("a".to_string(), 1e-3)].into()
            } else {
                BTreeMap::new()
            },
            kept_fraction: Vec::new(),
            kept_fraction_all: [("a".to_string(), 0.5), ("b".into(), 0.1), ("c".into(), 0.0)]
                .into(),
        };
        let run = |parameters: usize, sigma: bool| Run {
            label: "seed-0".into(),
            method: "varshare".into(),
            agent: Some("brc".into()),
            seed: Some(0),
            parameters: Some(parameters),
            tasks: vec!["a".into(), "b".into(), "c".into()],
            episodes: Vec::new(),
            evaluations: Vec::new(),
            conflicts: Vec::new(),
            diagnostics: BTreeMap::new(),
            varshare: vec![sample(sigma)],
            wall_seconds: None,
            finished: true,
        };
        // 1,000 shared + 3 tasks × 100 residual entries × (μ, ρ); 50 + 10 + 0 survive.
        assert_eq!(run(1600, true).pruned_parameters(), Some(1000 + 60 * 2));
        // l2 residuals have no ρ.
        assert_eq!(run(1300, false).pruned_parameters(), Some(1000 + 60));
        // More residuals than parameters: the log is not this run's.
        assert_eq!(run(500, true).pruned_parameters(), None);
        let mut plain = run(1600, true);
        plain.varshare.clear();
        assert_eq!(plain.pruned_parameters(), None);
    }

    #[test]
    fn a_surgery_log_is_read_into_named_numbers() {
        let dir = tmp("surgery");
        std::fs::write(
            dir.join("episodes.jsonl"),
            "{\"episode\":0,\"task\":\"standard\",\"return\":-10.5}\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("surgery.jsonl"),
            "{\"after_episode\":10,\"method\":\"cagrad\",\"w\":{\"standard\":0.25,\"windy\":0.75},\"d_over_g0\":0.5}\n\
             {\"after_episode\":20,\"method\":\"cagrad\",\"w\":{\"standard\":0.5,\"windy\":0.5},\"d_over_g0\":0.4}\n",
        )
        .unwrap();
        let run = load_run(&dir).unwrap();
        let log = &run.diagnostics["surgery"];
        assert_eq!(log.len(), 2);
        assert_eq!(log[1].after_episode, 20);
        let keys: Vec<&str> = log[0].values.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["d_over_g0", "w/standard", "w/windy"],
            "the method name is no number"
        );
        assert_eq!(log[0].values["w/windy"], 0.75);
        std::fs::remove_file(dir.join("surgery.jsonl")).unwrap();
        assert!(load_run(&dir).unwrap().diagnostics.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_evaluation_report_becomes_the_final_evaluation() {
        let dir = tmp("report");
        std::fs::write(
            dir.join("episodes.jsonl"),
            "{\"episode\":0,\"task\":\"standard\",\"return\":1.0,\"env_steps\":70}\n\
             {\"episode\":1,\"task\":\"windy\",\"return\":2.0,\"env_steps\":150}\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("evals.jsonl"),
            "{\"after_episode\":2,\"mean_return\":{\"standard\":5.0,\"windy\":6.0},\"is_final\":true}\n",
        )
        .unwrap();
        let report = dir.join("evaluation-best-all-seed7-n2.json");
        std::fs::write(
            &report,
            r#"{"average": 150.0, "tasks": [
                {"task": "standard", "mean_return": 250.0, "success_rate": 0.5},
                {"task": "windy", "mean_return": 50.0, "success_rate": 0.0}]}"#,
        )
        .unwrap();
        let mut run = load_run(&dir).unwrap();
        use_evaluation_report(&mut run, &report).unwrap();
        let (e, is_final) = run.final_evaluation().unwrap();
        assert!(is_final);
        assert_eq!(e.mean_return["standard"], 250.0);
        assert_eq!(e.success_rate["standard"], 0.5);
        assert_eq!(e.env_steps, Some(150));
        assert_eq!(run.evaluations.iter().filter(|e| e.is_final).count(), 1);
        // A report of one task cannot stand for a run of two.
        std::fs::write(
            &report,
            r#"{"tasks": [{"task": "windy", "mean_return": 50.0}]}"#,
        )
        .unwrap();
        let e = use_evaluation_report(&mut run, &report)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`standard`"), "{e}");
        std::fs::write(&report, "{").unwrap();
        assert!(use_evaluation_report(&mut run, &report).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
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

        let brc = load_predecessor(&base.join("brc.json")).unwrap();
        assert_eq!(brc.evaluations[0].after_episode, 50);
        assert_eq!(
            brc.evaluations[0].mean_return.len(),
            3,
            "{{episode, reward}} entries"
        );

        let standard = load_predecessor(&base.join("standard.json")).unwrap();
        assert_eq!(standard.episodes[0].env_steps, None);
        assert_eq!(standard.evaluations[0].after_episode, 50);
        assert!(standard.evaluations[0].mean_return.contains_key("standard"));
    }
}
