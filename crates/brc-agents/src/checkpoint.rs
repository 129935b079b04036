//! Agent checkpoints: one safetensors file with every tensor (online and target weights,
//! optimizer moments) and a small JSON header (format version, agent kind, config, schedules).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use serde_json::Value;

use crate::{AgentError, AgentKind, Result};

const FORMAT: &str = "brc-agent";
const VERSION: &str = "1";

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
    /// The tensor `name`, checked to have `dims`.
    pub(crate) fn tensor(&self, name: &str, dims: &[usize]) -> Result<Tensor> {
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

/// Reads a checkpoint and checks that it belongs to an agent of `kind` built from `config`.
pub(crate) fn read(
    path: &Path,
    kind: AgentKind,
    config: &Value,
    device: &Device,
) -> Result<Loaded> {
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
    let found = meta.get("kind").cloned().unwrap_or_default();
    if found != kind.name() {
        return Err(err(
            path,
            format!("holds a {found} agent, not a {} agent", kind.name()),
        ));
    }
    let saved: Value = meta
        .get("config")
        .and_then(|c| serde_json::from_str(c).ok())
        .unwrap_or(Value::Null);
    if &saved != config {
        return Err(err(
            path,
            format!("was saved with agent config {saved}, this agent has {config}"),
        ));
    }
    let state = meta
        .get("state")
        .and_then(|s| serde_json::from_str(s).ok())
        .ok_or_else(|| err(path, "missing state header"))?;
    let tensors = candle_core::safetensors::load_buffer(&bytes, device)
        .map_err(|e| err(path, format!("corrupt tensors ({e})")))?;
    Ok(Loaded {
        tensors,
        state,
        path: path.display().to_string(),
    })
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
