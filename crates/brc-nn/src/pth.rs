//! Import of the predecessor's PyTorch `.pth` checkpoints.
//!
//! The files are `torch.save` dictionaries; the network's `state_dict` sits under a key
//! ([`INDEPENDENT_KEY`] for the Independent DQNs, [`SHARED_KEY`] for the Shared DQNs).
//! PyTorch stores Linear weights `[out, in]`; they are transposed to this crate's `[in, out]`.

use crate::{NnError, ParamStore, Result};
use candle_core::{Device, Tensor};
use std::path::Path;

/// Key of the Q-network state dict in `standard_best.pth` / `windy_best.pth` / `heavy_best.pth`.
pub const INDEPENDENT_KEY: &str = "q_network_state_dict";
/// Key of the Q-network state dict in `shared_dqn_*.pth`.
pub const SHARED_KEY: &str = "q_network";

/// Reads every tensor of the state dict stored under `key` (`None`: the top-level object is
/// the state dict). A missing key or a file with no tensors is an error naming the key.
pub fn read_state_dict<P: AsRef<Path>>(
    path: P,
    key: Option<&str>,
) -> Result<Vec<(String, Tensor)>> {
    let path = path.as_ref();
    let err = |msg: String| NnError::Checkpoint {
        path: path.to_owned(),
        msg,
    };
    let key_desc = key.map_or_else(|| "top level".to_owned(), |k| format!("key `{k}`"));
    let mut tensors = candle_core::pickle::read_all_with_key(path, key)
        .map_err(|e| err(format!("cannot read state dict at {key_desc}: {e}")))?;
    if tensors.is_empty() {
        return Err(err(format!("no tensors at {key_desc}")));
    }
    // The pickle reader returns HashMap order; sort for reproducible error messages.
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(tensors)
}

/// How a PyTorch tensor maps to a variable.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TorchParam<'a> {
    /// State-dict name (also the variable name).
    pub name: &'a str,
    /// Shape in the PyTorch file.
    pub torch_shape: &'a [usize],
    /// Whether it is a Linear weight to transpose to `[in, out]`.
    pub transpose: bool,
}

/// Builds a store from a state dict, strictly: every expected tensor present with its
/// PyTorch shape, and no other tensor.
pub(crate) fn store_from_state_dict(
    tensors: &[(String, Tensor)],
    layout: &[TorchParam<'_>],
    device: &Device,
) -> Result<ParamStore> {
    for (name, _) in tensors {
        if !layout.iter().any(|p| p.name == name) {
            return Err(NnError::Param {
                name: name.clone(),
                msg: "unexpected tensor in state dict".into(),
            });
        }
    }
    let mut store = ParamStore::new(device);
    for p in layout {
        let t = tensors
            .iter()
            .find(|(n, _)| n == p.name)
            .map(|(_, t)| t)
            .ok_or_else(|| NnError::Param {
                name: p.name.to_owned(),
                msg: "missing from state dict".into(),
            })?;
        if t.dims() != p.torch_shape {
            return Err(NnError::Shape {
                name: p.name.to_owned(),
                expected: p.torch_shape.to_vec(),
                found: t.dims().to_vec(),
            });
        }
        if p.transpose {
            store.insert(p.name, &t.t()?.contiguous()?)?;
        } else {
            store.insert(p.name, t)?;
        }
    }
    Ok(store)
}

/// Wraps an error from building a network out of `path` so that it names the file.
pub(crate) fn in_file(path: &Path, e: NnError) -> NnError {
    match e {
        e @ NnError::Checkpoint { .. } => e,
        e => NnError::Checkpoint {
            path: path.to_owned(),
            msg: e.to_string(),
        },
    }
}
