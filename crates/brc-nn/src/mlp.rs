//! The DQN multilayer perceptrons of the predecessor project.

use crate::init::WeightInit;
use crate::layers::Embedding;
use crate::pth::{self, TorchParam};
use crate::task_residual::{
    grouped_pass, Dense, Pass, ResidualMode, ResidualWeights, TaskResidualLinear,
    TaskResidualNetwork,
};
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
    fc1: Dense,
    fc2: Dense,
    fc3: Dense,
}

impl Trunk {
    /// `residuals`: VarShare's residual form and task count for all three layers.
    fn init<R: Rng + ?Sized>(
        store: &mut ParamStore,
        rng: &mut R,
        in_dim: usize,
        residuals: Option<(ResidualMode, usize)>,
    ) -> Result<Self> {
        // Kaiming everywhere, including the Q head, as the predecessor's MLPs did.
        let (k, r, mut n) = (WeightInit::KaimingNormal, residuals, 0);
        Ok(Self {
            fc1: Dense::init(store, rng, "fc1", in_dim, H1, k, r, &mut n)?,
            fc2: Dense::init(store, rng, "fc2", H1, H2, k, r, &mut n)?,
            fc3: Dense::init(store, rng, "fc3", H2, NUM_ACTIONS, k, r, &mut n)?,
        })
    }

    fn bind(
        store: &ParamStore,
        in_dim: usize,
        residuals: Option<(ResidualMode, usize)>,
    ) -> Result<Self> {
        let (r, mut n) = (residuals, 0);
        Ok(Self {
            fc1: Dense::bind(store, "fc1", in_dim, H1, r, &mut n)?,
            fc2: Dense::bind(store, "fc2", H1, H2, r, &mut n)?,
            fc3: Dense::bind(store, "fc3", H2, NUM_ACTIONS, r, &mut n)?,
        })
    }

    fn forward(&self, x: &Tensor, pass: Option<&Pass<'_>>) -> Result<Tensor> {
        let h = self.fc1.forward(x, pass)?.relu()?;
        let h = self.fc2.forward(&h, pass)?.relu()?;
        self.fc3.forward(&h, pass)
    }

    fn residual_layers(&self) -> Vec<&TaskResidualLinear> {
        [&self.fc1, &self.fc2, &self.fc3]
            .into_iter()
            .filter_map(Dense::residual)
            .collect()
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
        let trunk = Trunk::init(&mut params, rng, OBS_DIM, None)?;
        Ok(Self { params, trunk })
    }

    /// Binds a network to existing variables (names and shapes are checked).
    pub fn from_params(params: ParamStore) -> Result<Self> {
        let trunk = Trunk::bind(&params, OBS_DIM, None)?;
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
        self.trunk.forward(obs, None)
    }

    /// An independent copy with fresh storage.
    pub fn deep_clone(&self) -> Result<Self> {
        Self::from_params(self.params.deep_clone()?)
    }
}

/// Shared DQN network: `concat(state, embedding[task])` (16) → 256 → ReLU → 128 → ReLU → 4
/// (37,788 parameters), or the task-blind variant without embedding (35,716).
/// Variables: `task_embedding.weight` `[3, 8]` (absent when blind), `fc{1,2,3}.{weight,bias}`;
/// with VarShare's task residuals ([`SharedQMlp::new_varshare`]) also
/// `fc{1,2,3}.residual_mu.{m}` (and `.residual_rho.{m}`, variational) `[in, out]` per task m.
#[derive(Debug, Clone)]
pub struct SharedQMlp {
    params: ParamStore,
    embedding: Option<Embedding>,
    trunk: Trunk,
    residuals: Option<ResidualMode>,
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
        let trunk = Trunk::init(&mut params, rng, OBS_DIM + SHARED_EMBED_DIM, None)?;
        Ok(Self {
            params,
            embedding: Some(embedding),
            trunk,
            residuals: None,
        })
    }

    /// A fresh VarShare network: every layer (fc1, fc2, fc3) with a residual of `mode` per
    /// task (μ = 0, σ = [`crate::task_residual::DEFAULT_SIGMA_INIT`]); with the 8-d task
    /// embedding when `keep_embedding`, else task-blind apart from the residuals. Draws the
    /// same weights from `rng` as [`SharedQMlp::new`] / [`SharedQMlp::new_blind`].
    pub fn new_varshare<R: Rng + ?Sized>(
        rng: &mut R,
        device: &Device,
        mode: ResidualMode,
        keep_embedding: bool,
    ) -> Result<Self> {
        let mut params = ParamStore::new(device);
        let embedding = if keep_embedding {
            Some(Embedding::init(
                &mut params,
                rng,
                "task_embedding",
                NUM_TASKS,
                SHARED_EMBED_DIM,
                SHARED_EMBED_STD,
            )?)
        } else {
            None
        };
        let in_dim = OBS_DIM + if keep_embedding { SHARED_EMBED_DIM } else { 0 };
        let trunk = Trunk::init(&mut params, rng, in_dim, Some((mode, NUM_TASKS)))?;
        Ok(Self {
            params,
            embedding,
            trunk,
            residuals: Some(mode),
        })
    }

    /// A fresh task-blind network (no embedding; one policy for all tasks).
    pub fn new_blind<R: Rng + ?Sized>(rng: &mut R, device: &Device) -> Result<Self> {
        let mut params = ParamStore::new(device);
        let trunk = Trunk::init(&mut params, rng, OBS_DIM, None)?;
        Ok(Self {
            params,
            embedding: None,
            trunk,
            residuals: None,
        })
    }

    /// Binds to existing variables; task-blind exactly when `task_embedding.weight` is absent,
    /// with task residuals exactly when `fc1.residual_mu.0` is present (variational when
    /// `fc1.residual_rho.0` is too).
    pub fn from_params(params: ParamStore) -> Result<Self> {
        let (embedding, in_dim) = if params.get("task_embedding.weight").is_some() {
            let e = Embedding::bind(&params, "task_embedding", NUM_TASKS, SHARED_EMBED_DIM)?;
            (Some(e), OBS_DIM + SHARED_EMBED_DIM)
        } else {
            (None, OBS_DIM)
        };
        let residuals = match (
            params.get("fc1.residual_mu.0").is_some(),
            params.get("fc1.residual_rho.0").is_some(),
        ) {
            (false, _) => None,
            (true, true) => Some(ResidualMode::Variational),
            (true, false) => Some(ResidualMode::L2),
        };
        let trunk = Trunk::bind(&params, in_dim, residuals.map(|m| (m, NUM_TASKS)))?;
        let expected = usize::from(embedding.is_some())
            + 3 * (2 + Dense::extra_vars(residuals.map(|m| (m, NUM_TASKS))));
        if params.len() != expected {
            return Err(crate::NnError::Config(format!(
                "parameter store has {} variables, this network needs {expected}",
                params.len()
            )));
        }
        Ok(Self {
            params,
            embedding,
            trunk,
            residuals,
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

    /// The residual form of a VarShare network, `None` for a plain one.
    pub fn task_residuals(&self) -> Option<ResidualMode> {
        self.residuals
    }

    /// Q-values `[B, 4]` for `obs` `[B, 8]` and `task` `[B]` (u32; ignored when blind and
    /// without residuals). With task residuals: the posterior means θ + μ_m.
    pub fn forward(&self, obs: &Tensor, task: &Tensor) -> Result<Tensor> {
        self.forward_with(obs, task, ResidualWeights::Mean)
    }

    /// The forward pass with the task residuals' `weights` (a plain network ignores them).
    pub fn forward_with(
        &self,
        obs: &Tensor,
        task: &Tensor,
        weights: ResidualWeights<'_>,
    ) -> Result<Tensor> {
        if self.residuals.is_none() {
            return self.forward_pass(obs, task, None);
        }
        grouped_pass(obs, task, weights, |o, t, p| {
            self.forward_pass(o, t, Some(p))
        })
    }

    fn forward_pass(&self, obs: &Tensor, task: &Tensor, pass: Option<&Pass<'_>>) -> Result<Tensor> {
        match &self.embedding {
            Some(e) => {
                // The embedding goes AFTER the state, matching the PyTorch concat order.
                let x = Tensor::cat(&[obs, &e.forward(task)?], 1)?;
                self.trunk.forward(&x, pass)
            }
            None => self.trunk.forward(obs, pass),
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

impl TaskResidualNetwork for SharedQMlp {
    fn residual_layers(&self) -> Vec<&TaskResidualLinear> {
        self.trunk.residual_layers()
    }
    fn forward_with(
        &self,
        obs: &Tensor,
        task: &Tensor,
        weights: ResidualWeights<'_>,
    ) -> Result<Tensor> {
        SharedQMlp::forward_with(self, obs, task, weights)
    }
}
