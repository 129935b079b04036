//! Agent checkpoints: one safetensors file with every tensor (online and target weights,
//! optimizer moments) and a small JSON header (format version, agent kind, config, schedules).
//!
//! A *weights-only* checkpoint ([`export_weights`]) keeps just the online networks — a quarter
//! of the size, for publishing trained agents. It loads like any checkpoint: the target
//! networks start as copies of the online ones and the optimizer starts fresh.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use serde_json::Value;

use crate::{AgentError, AgentKind, Result};

const FORMAT: &str = "brc-agent";
const VERSION: &str = "1";
/// State-header flag of a checkpoint that holds the online weights only.
const WEIGHTS_ONLY: &str = "weights_only";

fn err(path: &Path, message: impl Into<String>) -> AgentError {
    AgentError::Checkpoint {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// Writes `tensors` and the header atomically (temp file + rename), so a crash never leaves a
/// half-written checkpoint in place of a good one.
pub(crate) fn write(
    path: &Path,
    kind: AgentKind,
    config: &Value,
    state: &Value,
    tensors: Vec<(String, Tensor)>,
) -> Result<()> {
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), FORMAT.to_string());
    meta.insert("version".to_string(), VERSION.to_string());
    meta.insert("kind".to_string(), kind.name().to_string());
    meta.insert("config".to_string(), config.to_string());
    meta.insert("state".to_string(), state.to_string());
    let cpu: Vec<(String, Tensor)> = tensors
        .into_iter()
        .map(|(n, t)| Ok((n, t.to_device(&Device::Cpu)?)))
        .collect::<Result<_>>()?;
    let bytes = safetensors::serialize(cpu.iter().map(|(n, t)| (n.as_str(), t)), Some(meta))
        .map_err(|e| err(path, e.to_string()))?;
    let tmp = path.with_extension("safetensors.tmp");
    std::fs::write(&tmp, bytes).map_err(|e| err(path, format!("cannot write: {e}")))?;
    std::fs::rename(&tmp, path).map_err(|e| err(path, format!("cannot write: {e}")))
}

/// A checkpoint read back: its tensors and its `state` header.
pub(crate) struct Loaded {
    pub(crate) tensors: HashMap<String, Tensor>,
    pub(crate) state: Value,
    path: String,
}

impl Loaded {
    /// Whether only the online weights were kept ([`export_weights`]).
    pub(crate) fn weights_only(&self) -> bool {
        self.state.get(WEIGHTS_ONLY).and_then(Value::as_bool) == Some(true)
    }

    /// The tensor `name`, checked to have `dims`. In a weights-only checkpoint a target
    /// network's tensor is its online network's.
    pub(crate) fn tensor(&self, name: &str, dims: &[usize]) -> Result<Tensor> {
        let name = if self.weights_only() && name.contains("target.") {
            name.replacen("target.", "online.", 1)
        } else {
            name.to_string()
        };
        let name = name.as_str();
        let t = self
            .tensors
            .get(name)
            .ok_or_else(|| AgentError::Checkpoint {
                path: self.path.clone(),
                message: format!("missing tensor `{name}`"),
            })?;
        if t.dims() != dims {
            return Err(AgentError::Checkpoint {
                path: self.path.clone(),
                message: format!(
                    "tensor `{name}` has shape {:?}, this agent needs {dims:?}",
                    t.dims()
                ),
            });
        }
        Ok(t.clone())
    }

    /// A field of the state header.
    pub(crate) fn field<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<T> {
        let v = self.state.get(key).cloned().unwrap_or(Value::Null);
        serde_json::from_value(v).map_err(|e| AgentError::Checkpoint {
            path: self.path.clone(),
            message: format!("state field `{key}`: {e}"),
        })
    }
}

/// A checkpoint file checked to be ours (format and version), not yet matched to an agent.
struct RawCheckpoint {
    meta: HashMap<String, String>,
    state: Value,
    tensors: HashMap<String, Tensor>,
}

impl RawCheckpoint {
    fn read(path: &Path, device: &Device) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| err(path, format!("cannot read: {e}")))?;
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| err(path, format!("not a safetensors file ({e})")))?;
        let meta = header.metadata().clone().unwrap_or_default();
        if meta.get("format").map(String::as_str) != Some(FORMAT) {
            return Err(err(path, "not a brc agent checkpoint"));
        }
        if meta.get("version").map(String::as_str) != Some(VERSION) {
            return Err(err(
                path,
                format!(
                    "format version {:?}, this build reads {VERSION}",
                    meta.get("version")
                ),
            ));
        }
        let state = meta
            .get("state")
            .and_then(|s| serde_json::from_str(s).ok())
            .ok_or_else(|| err(path, "missing state header"))?;
        let tensors = candle_core::safetensors::load_buffer(&bytes, device)
            .map_err(|e| err(path, format!("corrupt tensors ({e})")))?;
        Ok(Self {
            meta,
            state,
            tensors,
        })
    }

    /// The agent config the header records (`null` when absent).
    fn config(&self) -> Value {
        self.meta
            .get("config")
            .and_then(|c| serde_json::from_str(c).ok())
            .unwrap_or(Value::Null)
    }
}

/// Reads a checkpoint and checks that it belongs to an agent of `kind` built from `config`.
pub(crate) fn read(
    path: &Path,
    kind: AgentKind,
    config: &Value,
    device: &Device,
) -> Result<Loaded> {
    let raw = RawCheckpoint::read(path, device)?;
    let found = raw.meta.get("kind").cloned().unwrap_or_default();
    if found != kind.name() {
        return Err(err(
            path,
            format!("holds a {found} agent, not a {} agent", kind.name()),
        ));
    }
    let mut saved = raw.config();
    fill_new_defaults(&mut saved, kind);
    if &saved != config {
        return Err(err(
            path,
            format!("was saved with agent config {saved}, this agent has {config}"),
        ));
    }
    Ok(Loaded {
        tensors: raw.tensors,
        state: raw.state,
        path: path.display().to_string(),
    })
}

/// A checkpoint written before a config option existed lacks its key; it was trained with
/// that option's default (new options always default to the earlier behaviour), so the key
/// is filled in with the default before the configs are compared.
fn fill_new_defaults(saved: &mut Value, kind: AgentKind) {
    let defaults = match kind {
        AgentKind::IndependentDqn => serde_json::to_value(crate::IndependentDqnConfig::default()),
        AgentKind::SharedDqn => serde_json::to_value(crate::SharedDqnConfig::default()),
        AgentKind::Brc => serde_json::to_value(crate::BrcConfig::default()),
    };
    if let (Some(agent), Ok(Value::Object(defaults))) = (
        saved.get_mut("agent").and_then(Value::as_object_mut),
        defaults,
    ) {
        for (k, v) in defaults {
            agent.entry(k).or_insert(v);
        }
    }
}

/// Copies the tensors named `<prefix><param name>` into `params`.
pub(crate) fn restore_params(
    loaded: &Loaded,
    prefix: &str,
    params: &brc_nn::ParamStore,
) -> Result<()> {
    for (name, var) in params.named_vars() {
        let t = loaded.tensor(&format!("{prefix}{name}"), var.dims())?;
        var.set(&t)?;
    }
    Ok(())
}

/// `params` as named tensors `<prefix><param name>`.
pub(crate) fn param_tensors(prefix: &str, params: &brc_nn::ParamStore) -> Vec<(String, Tensor)> {
    params
        .named_vars()
        .iter()
        .map(|(n, v)| (format!("{prefix}{n}"), v.as_tensor().clone()))
        .collect()
}

/// The schedules a single-network agent (Shared DQN, BRC) carries between episodes.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Schedules {
    pub(crate) exploration: crate::exploration::EpsilonGreedy,
    pub(crate) rng: rand_pcg::Pcg32,
    pub(crate) episodes: u64,
    /// GradNorm's weights, their Adam state and reference losses (absent for other methods).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) surgery: Option<crate::surgery::GradNorm>,
    /// VarShare's noise-stream seed (absent without VarShare): a loaded agent redraws the
    /// last update's ε from it, whatever seed it was built with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) varshare_seed: Option<u64>,
}

/// Saves a single-network agent (or an ensemble of them): each network's weights under its
/// prefix (`online.`, `target.`, …), optimizer moments, schedules.
pub(crate) fn save_single(
    path: &Path,
    kind: AgentKind,
    config: &Value,
    nets: &[(String, brc_nn::ParamStore)],
    optimizer: &crate::optim::AdamW,
    schedules: Schedules,
) -> Result<()> {
    let mut tensors = Vec::new();
    for (prefix, params) in nets {
        tensors.extend(param_tensors(prefix, params));
    }
    let (moments, step) = optimizer.state("opt.")?;
    tensors.extend(moments);
    let state = serde_json::json!({ "schedules": schedules, "optimizer_step": step });
    write(path, kind, config, &state, tensors)
}

/// Restores what [`save_single`] wrote into the given networks and optimizer.
pub(crate) fn load_single(
    path: &Path,
    kind: AgentKind,
    config: &Value,
    device: &Device,
    nets: &[(String, brc_nn::ParamStore)],
    optimizer: &mut crate::optim::AdamW,
) -> Result<Schedules> {
    let loaded = read(path, kind, config, device)?;
    for (prefix, params) in nets {
        restore_params(&loaded, prefix, params)?;
    }
    if !loaded.weights_only() {
        let step = loaded.field("optimizer_step")?;
        optimizer.restore("opt.", step, |n, d| loaded.tensor(n, d))?;
    }
    loaded.field("schedules")
}

/// Writes a weights-only copy of the checkpoint `src` to `dst`: the online networks and the
/// header (kind, config, schedules), without target networks or optimizer moments.
pub fn export_weights(src: &Path, dst: &Path) -> Result<()> {
    let raw = RawCheckpoint::read(src, &Device::Cpu)?;
    let found = raw.meta.get("kind").map(String::as_str).unwrap_or_default();
    let kind = [
        AgentKind::IndependentDqn,
        AgentKind::SharedDqn,
        AgentKind::Brc,
    ]
    .into_iter()
    .find(|k| k.name() == found)
    .ok_or_else(|| err(src, format!("unknown agent kind {found:?}")))?;
    let config = raw.config();
    let mut state = raw.state;
    state[WEIGHTS_ONLY] = Value::Bool(true);
    let mut online: Vec<(String, Tensor)> = raw
        .tensors
        .into_iter()
        .filter(|(n, _)| n.starts_with("online.") || n.contains(".online."))
        .collect();
    online.sort_by(|a, b| a.0.cmp(&b.0));
    write(dst, kind, &config, &state, online)
}

/// `Ok` when `task` is one of the run's `num_tasks` tasks.
pub(crate) fn check_task(task: usize, num_tasks: usize) -> Result<()> {
    if task < num_tasks {
        Ok(())
    } else {
        Err(AgentError::Task { task, num_tasks })
    }
}
