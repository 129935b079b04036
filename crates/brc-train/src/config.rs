//! Run configs: one TOML file (plus `--set key.path=value` overrides) describing a whole run —
//! its name and seed, the tasks, the agent, training, evaluation and checkpoint settings.
//!
//! [`load_config`] reads, overrides, deserializes and validates in one go; every failure is a
//! [`ConfigError`] whose one-line message names the file (or the override), the key path and
//! the problem, e.g. `configs/x.toml: agent.num_atoms = 1: must be ≥ 2`.

use std::path::{Path, PathBuf};

use brc_agents::{AgentConfig, BrcConfig, Exploration, IndependentDqnConfig, SharedDqnConfig};
use brc_envs::TaskSpec;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Training env seeds start here (see `seeds.rs`): evaluation seeds must stay below.
const TRAIN_SEED_BASE: u64 = 1 << 40;

/// Origin of errors from [`RunConfig::validate`] called on its own.
const VALIDATE_ORIGIN: &str = "run config";

/// Agent kinds accepted in `agent.kind`.
const AGENT_KINDS: [&str; 3] = ["independent_dqn", "shared_dqn", "brc"];

/// A whole run, as a TOML file describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// `[run]`: name, seed, output directory and device.
    pub run: RunSection,
    /// `[[tasks]]`: the tasks in task-id order (default: standard, windy, heavy).
    #[serde(default = "TaskSpec::defaults")]
    pub tasks: Vec<TaskSpec>,
    /// `[agent]`: the agent, tagged by `kind`, and its hyperparameters.
    pub agent: AgentConfig,
    /// `[training]`: episodes, replay and the ε schedule.
    #[serde(default)]
    pub training: TrainingSection,
    /// `[evaluation]`: periodic and final greedy evaluation.
    #[serde(default)]
    pub evaluation: EvaluationSection,
    /// `[checkpoints]`: how often and what to save.
    #[serde(default)]
    pub checkpoints: CheckpointSection,
}

/// The `[run]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSection {
    /// Name of the run (required): outputs go to `<output_dir>/<name>/`.
    pub name: String,
    /// Run seed: every random stream of the run derives from it.
    #[serde(default)]
    pub seed: u64,
    /// Parent directory of run directories.
    #[serde(default = "default_output_dir")]
    pub output_dir: PathBuf,
    /// `cpu`, `auto` (a GPU when the build has one), `cuda`, `cuda:N`, `metal` or `metal:N`.
    #[serde(default = "default_device")]
    pub device: String,
}

fn default_output_dir() -> PathBuf {
    PathBuf::from("results")
}

fn default_device() -> String {
    "cpu".into()
}

/// The `[training]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainingSection {
    /// Training episodes of each task (tasks take turns: episode i runs task i mod n).
    pub episodes_per_task: usize,
    /// Transitions per gradient update.
    pub batch_size: usize,
    /// Replay buffer capacity (transitions, all tasks together).
    pub buffer_capacity: usize,
    /// Transitions needed before updates start.
    pub min_replay: usize,
    /// Gradient updates after each env step (once `min_replay` is reached).
    pub updates_per_step: usize,
    /// Discount factor γ.
    pub gamma: f64,
    /// Rewards folded into each stored transition: 1 is one-step TD; n > 1 stores
    /// Σₖ γᵏ r over n steps with the state n steps later, bootstrapped with γⁿ (the last
    /// n − 1 steps of an episode cut by its time limit are not stored).
    pub n_step: usize,
    /// Initial ε of the ε-greedy policy.
    pub epsilon_start: f64,
    /// Floor of ε.
    pub epsilon_end: f64,
    /// Multiplicative ε decay after every episode.
    pub epsilon_decay: f64,
    /// Hard target-network copy every this many episodes (per task for Independent DQN).
    pub target_update_episodes: usize,
    /// `mixed`: each update's batch is `batch_size` transitions drawn uniformly from all
    /// tasks'. `balanced`: `batch_size` from each task (3 × 64 for the defaults).
    pub sampling: Sampling,
}

/// How the trainer draws an update's batch (`training.sampling`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sampling {
    /// One uniform batch over all tasks' transitions.
    #[default]
    Mixed,
    /// `batch_size` transitions of every task, one after the other.
    Balanced,
}

impl Sampling {
    /// The name used in configs.
    pub fn name(self) -> &'static str {
        match self {
            Sampling::Mixed => "mixed",
            Sampling::Balanced => "balanced",
        }
    }
}

impl Default for TrainingSection {
    fn default() -> Self {
        Self {
            episodes_per_task: 500,
            batch_size: 64,
            buffer_capacity: 100_000,
            min_replay: 2000,
            updates_per_step: 1,
            gamma: 0.99,
            n_step: 1,
            epsilon_start: 1.0,
            epsilon_end: 0.01,
            epsilon_decay: 0.995,
            target_update_episodes: 10,
            sampling: Sampling::Mixed,
        }
    }
}

/// The `[evaluation]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvaluationSection {
    /// Greedy evaluation of every task every this many training episodes.
    pub interval_episodes: usize,
    /// Greedy episodes per task in each periodic evaluation.
    pub episodes: usize,
    /// Greedy episodes per task in the final evaluation.
    pub final_episodes: usize,
    /// Evaluation episode i of a task uses env seed `seed + i`; these seeds are never used for
    /// training (training seeds start at 2^40).
    pub seed: u64,
    /// Measure gradient conflicts between tasks every this many training episodes (0: never).
    pub gradient_conflict_interval: usize,
}

impl Default for EvaluationSection {
    fn default() -> Self {
        Self {
            interval_episodes: 50,
            episodes: 5,
            final_episodes: 20,
            seed: 1_000_000,
            gradient_conflict_interval: 10,
        }
    }
}

/// The `[checkpoints]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointSection {
    /// Save a checkpoint every this many training episodes.
    pub interval_episodes: usize,
    /// Include the replay buffer, so a resumed run continues exactly.
    pub save_replay: bool,
}

impl Default for CheckpointSection {
    fn default() -> Self {
        Self {
            interval_episodes: 100,
            save_replay: true,
        }
    }
}

/// Why a config cannot be used. Displays as one line:
/// `<origin>: <key>[ = <value>]: <message>` (or `<origin>: <message>` without a key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.line())]
pub struct ConfigError {
    /// Where the problem is: the config file as given, or `--set key=value` for an override.
    pub origin: String,
    /// Dotted key path of the offending value (`training.batch_size`, `tasks[1].gravity`).
    pub key: Option<String>,
    /// The offending value, where one is shown (`1`, `"ppo"`).
    pub value: Option<String>,
    /// What is wrong (one line).
    pub message: String,
}

impl ConfigError {
    fn new(origin: &str, key: Option<String>, value: Option<String>, message: &str) -> Self {
        Self {
            origin: origin.to_string(),
            key,
            value,
            message: one_line(message),
        }
    }

    fn line(&self) -> String {
        let mut s = self.origin.clone();
        if let Some(k) = &self.key {
            s.push_str(": ");
            s.push_str(k);
            if let Some(v) = &self.value {
                s.push_str(" = ");
                s.push_str(v);
            }
        }
        s.push_str(": ");
        s.push_str(&self.message);
        s
    }
}

/// Collapses whitespace runs containing newlines into single spaces and trims.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Reads the TOML file at `path`, applies `overrides` (`key.path=value`), deserializes and
/// validates it. Errors name the file as `path` is written.
pub fn load_config(path: &Path, overrides: &[String]) -> Result<RunConfig, ConfigError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(&origin, None, None, &format!("cannot read: {e}")))?;
    parse_config(&text, &origin, overrides)
}

/// Parses config `text` (from `origin`, used in error messages), applies `overrides`
/// (`key.path=value`, value parsed as TOML or else taken as a string), deserializes and
/// validates it.
pub fn parse_config(
    text: &str,
    origin: &str,
    overrides: &[String],
) -> Result<RunConfig, ConfigError> {
    let mut table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| syntax_error(text, origin, &e))?;
    let mut applied = Vec::with_capacity(overrides.len());
    for o in overrides {
        applied.push(apply_override(&mut table, o)?);
    }
    let blame = |key: &str| -> String {
        // The last override touching `key` is to blame, else the file.
        applied
            .iter()
            .rev()
            .find(|(k, _)| related(k, key))
            .map_or_else(|| origin.to_string(), |(_, o)| o.clone())
    };
    check_agent(&table)
        .map_err(|(key, value, msg)| ConfigError::new(&blame(&key), Some(key), value, &msg))?;
    let config: RunConfig = deserialize(toml::Value::Table(table)).map_err(|(key, msg)| {
        let o = blame(key.as_deref().unwrap_or(""));
        ConfigError::new(&o, key, None, &msg)
    })?;
    config.validate().map_err(|mut e| {
        e.origin = blame(e.key.as_deref().unwrap_or(""));
        e
    })?;
    Ok(config)
}

/// Whether two dotted key paths are the same or one lies inside the other.
fn related(a: &str, b: &str) -> bool {
    let inside = |outer: &str, inner: &str| {
        inner
            .strip_prefix(outer)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
    };
    !a.is_empty() && !b.is_empty() && (inside(a, b) || inside(b, a))
}

fn syntax_error(text: &str, origin: &str, e: &toml::de::Error) -> ConfigError {
    let at = match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!(" at line {line}, column {column}")
        }
        None => String::new(),
    };
    ConfigError::new(
        origin,
        None,
        None,
        &format!("TOML syntax error{at}: {}", e.message()),
    )
}

/// One step of a dotted override path: `name` or `name[index]`.
fn parse_segment(seg: &str) -> Option<(&str, Option<usize>)> {
    let seg = seg.trim();
    let (name, index) = match seg.strip_suffix(']') {
        Some(s) => {
            let (name, idx) = s.split_once('[')?;
            (name, Some(idx.trim().parse().ok()?))
        }
        None => (seg, None),
    };
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    ok.then_some((name, index))
}

/// Parses an override value as a TOML value; anything that is not one is a plain string.
fn parse_value(raw: &str) -> toml::Value {
    let raw = raw.trim();
    if let Ok(mut t) = format!("v = {raw}").parse::<toml::Table>() {
        if t.len() == 1 {
            if let Some(v) = t.remove("v") {
                return v;
            }
        }
    }
    toml::Value::String(raw.to_string())
}

/// Applies one `key.path=value` override; returns the normalised key and the override's origin.
fn apply_override(table: &mut toml::Table, arg: &str) -> Result<(String, String), ConfigError> {
    let origin = format!("--set {arg}");
    let err = |msg: &str| ConfigError::new(&origin, None, None, msg);
    let (key, raw) = arg
        .split_once('=')
        .ok_or_else(|| err("expected KEY=VALUE (e.g. training.episodes_per_task=3)"))?;
    let segments = key
        .split('.')
        .map(parse_segment)
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| {
            err(&format!(
                "bad key `{}`: expected dotted names such as agent.lr or tasks[1].gravity",
                key.trim()
            ))
        })?;
    let norm = segments
        .iter()
        .map(|(n, i)| match i {
            Some(i) => format!("{n}[{i}]"),
            None => n.to_string(),
        })
        .collect::<Vec<_>>()
        .join(".");
    let value = parse_value(raw);
    // A file without [[tasks]] runs the default tasks: materialise them so `tasks[i].x` works.
    if segments[0].0 == "tasks" && segments[0].1.is_some() && !table.contains_key("tasks") {
        let defaults = toml::Value::try_from(TaskSpec::defaults())
            .expect("the default tasks serialize to TOML");
        table.insert("tasks".into(), defaults);
    }
    let mut current = table;
    let mut path = String::new();
    let last = segments.len() - 1;
    for (depth, (name, index)) in segments.iter().enumerate() {
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(name);
        let is_last = depth == last;
        match index {
            None if is_last => {
                current.insert(name.to_string(), value);
                break;
            }
            None => {
                let entry = current
                    .entry(name.to_string())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                current = entry
                    .as_table_mut()
                    .ok_or_else(|| err(&format!("`{path}` is a value, not a table")))?;
            }
            Some(i) => {
                let array = current
                    .get_mut(*name)
                    .and_then(toml::Value::as_array_mut)
                    .ok_or_else(|| err(&format!("`{path}` is not an array")))?;
                let len = array.len();
                let slot = array
                    .get_mut(*i)
                    .ok_or_else(|| err(&format!("`{path}` has {len} elements: no index {i}")))?;
                path.push_str(&format!("[{i}]"));
                if is_last {
                    *slot = value;
                    break;
                }
                current = slot
                    .as_table_mut()
                    .ok_or_else(|| err(&format!("`{path}` is a value, not a table")))?;
            }
        }
    }
    Ok((norm, origin))
}

/// Deserializes with full key paths; maps serde's messages to readable ones.
fn deserialize<T: DeserializeOwned>(value: toml::Value) -> Result<T, (Option<String>, String)> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let raw = e.inner().message().to_string();
        let mut key = (path != ".").then_some(path);
        let join = |key: &Option<String>, leaf: &str| match key {
            Some(k) if k.rsplit('.').next() == Some(leaf) => k.clone(),
            Some(k) => format!("{k}.{leaf}"),
            None => leaf.to_string(),
        };
        let message = if let Some(rest) = raw.strip_prefix("unknown field `") {
            let (field, expected) = rest.split_once('`').unwrap_or((rest, ""));
            key = Some(join(&key, field));
            let expected = expected
                .trim_start_matches(", ")
                .replace('`', "")
                .replace("expected one of ", "expected one of: ");
            if expected.is_empty() {
                "unknown key".to_string()
            } else {
                format!("unknown key ({expected})")
            }
        } else if let Some(rest) = raw.strip_prefix("missing field `") {
            let field = rest.split('`').next().unwrap_or(rest);
            key = Some(join(&key, field));
            "required key is missing".to_string()
        } else if let Some(rest) = raw.strip_prefix("invalid type: ") {
            match rest.split_once(", expected ") {
                Some((found, expected)) => {
                    format!("wrong type: expected {expected}, found {found}")
                }
                None => format!("wrong type: {rest}"),
            }
        } else {
            raw
        };
        (key, message)
    })
}

type AgentIssue = (String, Option<String>, String);

/// Checks the `[agent]` table against its kind's fields, so errors inside it name their full
/// key path (serde loses the path inside internally tagged enums).
fn check_agent(table: &toml::Table) -> Result<(), AgentIssue> {
    let Some(agent) = table.get("agent") else {
        return Err((
            "agent".into(),
            None,
            format!(
                "required section is missing (an [agent] table with kind = one of {})",
                AGENT_KINDS.join(", ")
            ),
        ));
    };
    let Some(agent) = agent.as_table() else {
        return Err((
            "agent".into(),
            None,
            format!("wrong type: expected a table, found {}", agent.type_str()),
        ));
    };
    let kinds = AGENT_KINDS.join(", ");
    let kind = match agent.get("kind") {
        None => {
            return Err((
                "agent.kind".into(),
                None,
                format!("required key is missing (one of {kinds})"),
            ))
        }
        Some(toml::Value::String(s)) => s.as_str(),
        Some(v) => {
            return Err((
                "agent.kind".into(),
                Some(v.to_string()),
                format!("wrong type: expected a string, one of {kinds}"),
            ))
        }
    };
    let mut rest = agent.clone();
    rest.remove("kind");
    let rest = toml::Value::Table(rest);
    let result = match kind {
        "independent_dqn" => deserialize::<IndependentDqnConfig>(rest).map(drop),
        "shared_dqn" => deserialize::<SharedDqnConfig>(rest).map(drop),
        "brc" => deserialize::<BrcConfig>(rest).map(drop),
        other => {
            return Err((
                "agent.kind".into(),
                Some(format!("{other:?}")),
                format!("unknown agent kind (expected one of: {kinds})"),
            ))
        }
    };
    result.map_err(|(key, msg)| {
        let key = key.map_or_else(|| "agent".to_string(), |k| format!("agent.{k}"));
        (key, None, msg)
    })
}

fn range_err(key: &str, value: impl std::fmt::Display, message: &str) -> ConfigError {
    ConfigError::new(
        VALIDATE_ORIGIN,
        Some(key.to_string()),
        Some(value.to_string()),
        message,
    )
}

/// The longest n-step return a config may ask for (an episode is at most 1,000 steps; beyond a
/// few dozen the bootstrap no longer matters and only variance grows).
const MAX_N_STEP: usize = 100;

fn at_least_one(key: &str, v: usize) -> Result<(), ConfigError> {
    if v >= 1 {
        Ok(())
    } else {
        Err(range_err(key, v, "must be ≥ 1"))
    }
}

/// Whether `device` names a device a run can ask for.
fn valid_device(device: &str) -> bool {
    match device.split_once(':') {
        None => matches!(device, "cpu" | "auto" | "cuda" | "metal"),
        Some((kind, ordinal)) => {
            matches!(kind, "cuda" | "metal")
                && !ordinal.is_empty()
                && ordinal.chars().all(|c| c.is_ascii_digit())
                && ordinal.parse::<usize>().is_ok()
        }
    }
}

impl RunConfig {
    /// Range-checks every value. The error's `key` is the full dotted path; its `origin` is
    /// `run config` ([`load_config`] and [`parse_config`] put the file or override there).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let r = &self.run;
        if r.name.trim().is_empty() || r.name.contains(['/', '\\']) {
            return Err(range_err(
                "run.name",
                format!("{:?}", r.name),
                "must be non-empty, without '/' or '\\'",
            ));
        }
        if !valid_device(&r.device) {
            return Err(range_err(
                "run.device",
                format!("{:?}", r.device),
                "must be cpu, auto, cuda, cuda:N, metal or metal:N",
            ));
        }

        if self.tasks.is_empty() {
            return Err(range_err("tasks", "[]", "at least one task is needed"));
        }
        for (i, task) in self.tasks.iter().enumerate() {
            if let Err(msg) = task.validate() {
                // TaskSpec messages read `field = value: what` or `field: what`.
                let (head, what) = msg.split_once(": ").unwrap_or((msg.as_str(), "invalid"));
                let (field, value) = match head.split_once(" = ") {
                    Some((f, v)) => (f, Some(v.to_string())),
                    None => (head, None),
                };
                return Err(ConfigError::new(
                    VALIDATE_ORIGIN,
                    Some(format!("tasks[{i}].{field}")),
                    value,
                    what,
                ));
            }
            if let Some(j) = self.tasks[..i].iter().position(|t| t.name == task.name) {
                return Err(range_err(
                    &format!("tasks[{i}].name"),
                    format!("{:?}", task.name),
                    &format!("duplicate task name (also tasks[{j}].name)"),
                ));
            }
        }

        self.agent.validate(&self.task_names()).map_err(|issue| {
            range_err(&format!("agent.{}", issue.key), issue.value, &issue.message)
        })?;

        let t = &self.training;
        at_least_one("training.episodes_per_task", t.episodes_per_task)?;
        at_least_one("training.batch_size", t.batch_size)?;
        at_least_one("training.buffer_capacity", t.buffer_capacity)?;
        at_least_one("training.updates_per_step", t.updates_per_step)?;
        at_least_one("training.n_step", t.n_step)?;
        if t.n_step > MAX_N_STEP {
            return Err(range_err(
                "training.n_step",
                t.n_step,
                &format!("must be ≤ {MAX_N_STEP}"),
            ));
        }
        // A time-limited episode stores only the steps n or more before its cut: with
        // n beyond a task's limit that task would store nothing and never train.
        if let Some(task) = self
            .tasks
            .iter()
            .find(|task| t.n_step > task.max_episode_steps)
        {
            return Err(range_err(
                "training.n_step",
                t.n_step,
                &format!(
                    "must be ≤ the shortest time limit (task {}: max_episode_steps = {})",
                    task.name, task.max_episode_steps
                ),
            ));
        }
        at_least_one("training.target_update_episodes", t.target_update_episodes)?;
        if t.batch_size > t.buffer_capacity {
            return Err(range_err(
                "training.batch_size",
                t.batch_size,
                &format!("must be ≤ training.buffer_capacity ({})", t.buffer_capacity),
            ));
        }
        if t.min_replay > t.buffer_capacity {
            return Err(range_err(
                "training.min_replay",
                t.min_replay,
                &format!("must be ≤ training.buffer_capacity ({})", t.buffer_capacity),
            ));
        }
        if t.min_replay < t.batch_size {
            return Err(range_err(
                "training.min_replay",
                t.min_replay,
                &format!("must be ≥ training.batch_size ({})", t.batch_size),
            ));
        }
        self.check_sampling()?;
        if !(t.gamma > 0.0 && t.gamma <= 1.0) {
            return Err(range_err("training.gamma", t.gamma, "must be in (0, 1]"));
        }
        if !(0.0..=1.0).contains(&t.epsilon_start) {
            return Err(range_err(
                "training.epsilon_start",
                t.epsilon_start,
                "must be in [0, 1]",
            ));
        }
        if !(t.epsilon_end >= 0.0 && t.epsilon_end <= t.epsilon_start) {
            return Err(range_err(
                "training.epsilon_end",
                t.epsilon_end,
                &format!(
                    "must be in [0, training.epsilon_start ({})]",
                    t.epsilon_start
                ),
            ));
        }
        if !(t.epsilon_decay > 0.0 && t.epsilon_decay <= 1.0) {
            return Err(range_err(
                "training.epsilon_decay",
                t.epsilon_decay,
                "must be in (0, 1]",
            ));
        }

        let e = &self.evaluation;
        at_least_one("evaluation.interval_episodes", e.interval_episodes)?;
        at_least_one("evaluation.episodes", e.episodes)?;
        at_least_one("evaluation.final_episodes", e.final_episodes)?;
        let needed = e.episodes.max(e.final_episodes) as u64;
        if e.seed
            .checked_add(needed)
            .is_none_or(|end| end > TRAIN_SEED_BASE)
        {
            return Err(range_err(
                "evaluation.seed",
                e.seed,
                &format!(
                    "must be ≤ 2^40 − {needed}: evaluation seeds must stay below the training seeds (from 2^40)"
                ),
            ));
        }

        at_least_one(
            "checkpoints.interval_episodes",
            self.checkpoints.interval_episodes,
        )?;
        Ok(())
    }

    /// Balanced batches need an agent that learns from all tasks at once; gradient surgery
    /// needs balanced batches (every task's loss in every update).
    fn check_sampling(&self) -> Result<(), ConfigError> {
        let balanced = self.training.sampling == Sampling::Balanced;
        if balanced && self.agent.kind() == brc_agents::AgentKind::IndependentDqn {
            return Err(range_err(
                "training.sampling",
                "\"balanced\"",
                "needs an agent that learns from all tasks at once (shared_dqn or brc); \
                 independent_dqn samples each task's own transitions",
            ));
        }
        let method = self.agent.gradient();
        if !balanced && method != brc_agents::GradientMethod::Mean {
            return Err(range_err(
                "agent.gradient",
                format!("{:?}", method.name()),
                "needs training.sampling = \"balanced\" (every task's loss in every update)",
            ));
        }
        Ok(())
    }

    /// The resolved config as TOML (written into the run directory); parses back to an equal
    /// config.
    pub fn to_toml_string(&self) -> String {
        toml::to_string(self).expect("a run config always serializes to TOML")
    }

    /// The ε-greedy schedule of the `[training]` section.
    pub fn exploration(&self) -> Exploration {
        Exploration {
            start: self.training.epsilon_start,
            end: self.training.epsilon_end,
            decay: self.training.epsilon_decay,
        }
    }

    /// Task names in task-id order.
    pub fn task_names(&self) -> Vec<String> {
        self.tasks.iter().map(|t| t.name.clone()).collect()
    }

    /// Training episodes of the whole run, all tasks together (the tasks take turns).
    pub fn total_episodes(&self) -> usize {
        self.training.episodes_per_task * self.tasks.len()
    }
}
