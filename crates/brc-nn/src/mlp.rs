//! The DQN multilayer perceptrons of the predecessor project.

use crate::init::WeightInit;
use crate::layers::{Embedding, Linear};
use crate::pth::{self, TorchParam};
use crate::{ParamStore, QNetwork, Result, NUM_ACTIONS, NUM_TASKS, OBS_DIM};
use candle_core::{Device, Tensor};
use rand::Rng;
use std::path::Path;

const H1: usize = 256;
const H2: usize = 128;
/// Task-embedding width of the Shared DQN.
pub const SHARED_EMBED_DIM: usize = 8;
/// Standard deviation of the Shared DQN's embedding init, N(0, 0.1²).
pub const SHARED_EMBED_STD: f64 = 0.1;

/// `fc1 → ReLU → fc2 → ReLU → fc3`, the trunk both MLPs share.
#[derive(Debug, Clone)]
struct Trunk {
    fc1: Linear,
    fc2: Linear,
    fc3: Linear,
}

impl Trunk {
    fn init<R: Rng + ?Sized>(store: &mut ParamStore, rng: &mut R, in_dim: usize) -> Result<Self> {
        // Kaiming everywhere, including the Q head, as the predecessor's MLPs did.
        let k = WeightInit::KaimingNormal;
        Ok(Self {
            fc1: Linear::init(store, rng, "fc1", in_dim, H1, k)?,
            fc2: Linear::init(store, rng, "fc2", H1, H2, k)?,
            fc3: Linear::init(store, rng, "fc3", H2, NUM_ACTIONS, k)?,
        })
    }

    fn bind(store: &ParamStore, in_dim: usize) -> Result<Self> {
        Ok(Self {
            fc1: Linear::bind(store, "fc1", in_dim, H1)?,
            fc2: Linear::bind(store, "fc2", H1, H2)?,
            fc3: Linear::bind(store, "fc3", H2, NUM_ACTIONS)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.fc1.forward(x)?.relu()?;
        let h = self.fc2.forward(&h)?.relu()?;
        self.fc3.forward(&h)
    }

    fn torch_layout(in_dim: usize) -> Vec<(String, Vec<usize>, bool)> {
        vec![
            ("fc1.weight".into(), vec![H1, in_dim], true),
            ("fc1.bias".into(), vec![H1], false),
            ("fc2.weight".into(), vec![H2, H1], true),
            ("fc2.bias".into(), vec![H2], false),
            ("fc3.weight".into(), vec![NUM_ACTIONS, H2], true),
            ("fc3.bias".into(), vec![NUM_ACTIONS], false),
        ]
    }
}

fn import(
    tensors: &[(String, Tensor)],
    layout: &[(String, Vec<usize>, bool)],
    device: &Device,
) -> Result<ParamStore> {
    let layout: Vec<TorchParam<'_>> = layout
        .iter()
        .map(|(name, shape, transpose)| TorchParam {
            name,
            torch_shape: shape,
            transpose: *transpose,
        })
        .collect();
    pth::store_from_state_dict(tensors, &layout, device)
}

/// Independent DQN network: 8 → 256 → ReLU → 128 → ReLU → 4 (35,716 parameters).
/// Variables: `fc{1,2,3}.{weight,bias}`, weights `[in, out]`.
#[derive(Debug, Clone)]
pub struct QMlp {
    params: ParamStore,
    trunk: Trunk,
}

impl QMlp {
    /// A freshly initialised network (Kaiming-normal weights, zero biases) drawn from `rng`.
    pub fn new<R: Rng + ?Sized>(rng: &mut R, device: &Device) -> Result<Self> {
        let mut params = ParamStore::new(device);
        let trunk = Trunk::init(&mut params, rng, OBS_DIM)?;
        Ok(Self { params, trunk })
    }

    /// Binds a network to existing variables (names and shapes are checked).
    pub fn from_params(params: ParamStore) -> Result<Self> {
        let trunk = Trunk::bind(&params, OBS_DIM)?;
        Ok(Self { params, trunk })
    }

    /// Builds from a PyTorch state dict (`fc1.weight` `[256, 8]`, ...). Strict: missing,
    /// unexpected or mis-shaped tensors are errors naming the tensor.
    pub fn from_state_dict(tensors: &[(String, Tensor)], device: &Device) -> Result<Self> {
        Self::from_params(import(tensors, &Trunk::torch_layout(OBS_DIM), device)?)
    }

    /// Loads an Independent DQN checkpoint (`standard_best.pth`, ...) from its
    /// [`pth::INDEPENDENT_KEY`] entry.
    pub fn from_pth<P: AsRef<Path>>(path: P, device: &Device) -> Result<Self> {
        Self::from_pth_with_key(path, pth::INDEPENDENT_KEY, device)
    }

    /// Like [`QMlp::from_pth`] with an explicit state-dict key.
    pub fn from_pth_with_key<P: AsRef<Path>>(path: P, key: &str, device: &Device) -> Result<Self> {
        let path = path.as_ref();
        let tensors = pth::read_state_dict(path, Some(key))?;
        Self::from_state_dict(&tensors, device).map_err(|e| pth::in_file(path, e))
    }

    /// Q-values `[B, 4]` for `obs` `[B, 8]`; `task` is ignored (one network per task).
    pub fn forward(&self, obs: &Tensor, _task: &Tensor) -> Result<Tensor> {
        self.trunk.forward(obs)
    }

    /// An independent copy with fresh storage.
    pub fn deep_clone(&self) -> Result<Self> {
        Self::from_params(self.params.deep_clone()?)
    }
}

/// Shared DQN network: `concat(state, embedding[task])` (16) → 256 → ReLU → 128 → ReLU → 4
/// (37,788 parameters), or the task-blind variant without embedding (35,716).
/// Variables: `task_embedding.weight` `[3, 8]` (absent when blind), `fc{1,2,3}.{weight,bias}`.
#[derive(Debug, Clone)]
pub struct SharedQMlp {
    params: ParamStore,
    embedding: Option<Embedding>,
    trunk: Trunk,
}

impl SharedQMlp {
    /// A fresh task-conditioned network: embedding N(0, 0.1²), Kaiming-normal weights, zero
    /// biases, all drawn from `rng`.
    pub fn new<R: Rng + ?Sized>(rng: &mut R, device: &Device) -> Result<Self> {
        let mut params = ParamStore::new(device);
        let embedding = Embedding::init(
            &mut params,
            rng,
            "task_embedding",
            NUM_TASKS,
            SHARED_EMBED_DIM,
            SHARED_EMBED_STD,
        )?;
        let trunk = Trunk::init(&mut params, rng, OBS_DIM + SHARED_EMBED_DIM)?;
        Ok(Self {
            params,
            embedding: Some(embedding),
            trunk,
        })
    }

    /// A fresh task-blind network (no embedding; one policy for all tasks).
    pub fn new_blind<R: Rng + ?Sized>(rng: &mut R, device: &Device) -> Result<Self> {
        let mut params = ParamStore::new(device);
        let trunk = Trunk::init(&mut params, rng, OBS_DIM)?;
        Ok(Self {
            params,
            embedding: None,
            trunk,
        })
    }

    /// Binds to existing variables; task-blind exactly when `task_embedding.weight` is absent.
    pub fn from_params(params: ParamStore) -> Result<Self> {
        let (embedding, in_dim) = if params.get("task_embedding.weight").is_some() {
            let e = Embedding::bind(&params, "task_embedding", NUM_TASKS, SHARED_EMBED_DIM)?;
            (Some(e), OBS_DIM + SHARED_EMBED_DIM)
        } else {
            (None, OBS_DIM)
        };
        let trunk = Trunk::bind(&params, in_dim)?;
        Ok(Self {
            params,
            embedding,
            trunk,
        })
    }

    /// Builds from a PyTorch state dict; task-blind exactly when it has no
    /// `task_embedding.weight`. Strict otherwise (see [`QMlp::from_state_dict`]).
    pub fn from_state_dict(tensors: &[(String, Tensor)], device: &Device) -> Result<Self> {
        let blind = !tensors.iter().any(|(n, _)| n == "task_embedding.weight");
        let layout = if blind {
            Trunk::torch_layout(OBS_DIM)
        } else {
            let mut l = vec![(
                "task_embedding.weight".to_owned(),
                vec![NUM_TASKS, SHARED_EMBED_DIM],
                false,
            )];
            l.extend(Trunk::torch_layout(OBS_DIM + SHARED_EMBED_DIM));
            l
        };
        Self::from_params(import(tensors, &layout, device)?)
    }

    /// Loads a Shared DQN checkpoint (`shared_dqn_best.pth`, `shared_dqn_blind_best.pth`)
    /// from its [`pth::SHARED_KEY`] entry; see [`SharedQMlp::is_task_blind`] for which kind.
    pub fn from_pth<P: AsRef<Path>>(path: P, device: &Device) -> Result<Self> {
        let path = path.as_ref();
        let tensors = pth::read_state_dict(path, Some(pth::SHARED_KEY))?;
        Self::from_state_dict(&tensors, device).map_err(|e| pth::in_file(path, e))
    }

    /// Whether the network ignores the task id.
    pub fn is_task_blind(&self) -> bool {
        self.embedding.is_none()
    }

    /// Q-values `[B, 4]` for `obs` `[B, 8]` and `task` `[B]` (u32; ignored when blind).
    pub fn forward(&self, obs: &Tensor, task: &Tensor) -> Result<Tensor> {
        match &self.embedding {
            Some(e) => {
                // The embedding goes AFTER the state, matching the PyTorch concat order.
                let x = Tensor::cat(&[obs, &e.forward(task)?], 1)?;
                self.trunk.forward(&x)
            }
            None => self.trunk.forward(obs),
        }
    }

    /// An independent copy with fresh storage.
    pub fn deep_clone(&self) -> Result<Self> {
        Self::from_params(self.params.deep_clone()?)
    }
}

/// Inherent helpers shared by every network, plus the [`QNetwork`] impl.
macro_rules! network_common {
    ($ty:ident) => {
        impl $ty {
            /// The network's variables, in a stable order (for optimisers and checkpoints).
            pub fn params(&self) -> &ParamStore {
                &self.params
            }

            /// Number of scalar parameters, counted from the real variables.
            pub fn num_params(&self) -> usize {
                self.params.num_params()
            }

            /// Hard copy of `other`'s values into this network (target-network update);
            /// fails, writing nothing, if the two layouts differ.
            pub fn copy_from(&self, other: &Self) -> Result<()> {
                self.params.copy_from(&other.params)
            }

            /// Saves the variables to a safetensors file.
            pub fn save<P: AsRef<std::path::Path>>(&self, path: P) -> Result<()> {
                self.params.save(path)
            }

            /// Loads variables saved by `save` from a network of the same layout.
            pub fn load<P: AsRef<std::path::Path>>(&self, path: P) -> Result<()> {
                self.params.load(path)
            }
        }

        impl QNetwork for $ty {
            fn forward(&self, obs: &Tensor, task: &Tensor) -> Result<Tensor> {
                $ty::forward(self, obs, task)
            }
            fn params(&self) -> &ParamStore {
                &self.params
            }
            fn deep_clone(&self) -> Result<Self> {
                $ty::deep_clone(self)
            }
        }
    };
}
pub(crate) use network_common;

network_common!(QMlp);
network_common!(SharedQMlp);
