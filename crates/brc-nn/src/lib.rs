//! Candle Q-networks for the BRC multi-task LunarLander project.
//!
//! * [`QMlp`]: the Independent DQN network, 8 → 256 → 128 → 4 (35,716 parameters).
//! * [`SharedQMlp`]: the Shared DQN network with an 8-d task embedding concatenated after the
//!   state (37,788 parameters), or its task-blind variant (35,716).
//! * [`BroNet`]: the BRC residual network with a 32-d task embedding and categorical
//!   (C51) output logits `[B, actions, atoms]` (459,820 parameters by default).
//!
//! Design choices, and why:
//! * Parameters are held in a [`ParamStore`], an *ordered* list of named [`candle_core::Var`]s.
//!   A `HashMap`-backed `VarMap` iterates in a per-process random order, which would make
//!   optimiser state layout and gradient-norm summation order differ between runs;
//!   [`ParamStore::to_varmap`] still gives a `VarMap` view when one is wanted.
//! * Initialisation draws every value on the host from a caller-supplied seeded RNG, so a seed
//!   fully determines the weights (candle's own `randn` uses an unseeded global generator).
//! * LayerNorm and (log-)softmax are composed from primitive tensor ops ([`ops`]), because
//!   candle's fused LayerNorm/softmax kernels record no backward op and would silently stop
//!   gradients.
//! * Linear weights are stored `[in, out]` so the forward pass is a plain `x.matmul(w)`
//!   without a transpose; PyTorch checkpoints (`[out, in]`) are transposed on import.
//!
//! ```
//! use brc_nn::{BroNet, BroNetConfig, Device, QNetwork, Tensor};
//! use rand::{rngs::StdRng, SeedableRng};
//!
//! let dev = Device::Cpu;
//! let online = BroNet::new(BroNetConfig::default(), &mut StdRng::seed_from_u64(0), &dev)?;
//! let target = online.deep_clone()?;
//! let obs = Tensor::zeros((2, 8), brc_nn::DType::F32, &dev)?;
//! let task = Tensor::new(&[0u32, 2], &dev)?;
//! assert_eq!(online.forward(&obs, &task)?.dims(), &[2, 4, 51]);
//! target.copy_from(&online)?;
//! assert_eq!(online.num_params(), 459_820);
//! # Ok::<(), brc_nn::NnError>(())
//! ```

#![warn(missing_docs)]

pub mod bronet;
pub mod bronet_cpu;
#[cfg(test)]
mod candle_checks;
pub mod denormals;
pub mod device;
pub mod gaussian;
pub mod init;
pub mod kernels;
pub mod lane_math;
pub mod layers;
pub mod mlp;
pub mod mlp_cpu;
pub mod ops;
pub mod params;
pub mod pth;
pub mod residual_bronet_cpu;
pub mod residual_mlp_cpu;
pub mod task_residual;
pub mod task_residual_cpu;

pub use bronet::{BroNet, BroNetConfig};
pub use bronet_cpu::{BroNetCpu, HostGradients};
pub use candle_core::{DType, Device, Tensor, Var};
pub use device::select_device;
pub use mlp::{QMlp, SharedQMlp};
pub use mlp_cpu::MlpCpu;
pub use params::ParamStore;
pub use residual_bronet_cpu::ResidualBroNetCpu;
pub use residual_mlp_cpu::ResidualMlpCpu;
pub use task_residual::{
    ResidualMode, ResidualNoise, ResidualWeights, TaskResidualLinear, TaskResidualNetwork, TaskRows,
};
pub use task_residual_cpu::HostFlipout;

use std::path::PathBuf;

/// Observation size of LunarLander.
pub const OBS_DIM: usize = 8;
/// Number of discrete LunarLander actions.
pub const NUM_ACTIONS: usize = 4;
/// Number of tasks (standard 0, windy 1, heavy 2).
pub const NUM_TASKS: usize = 3;

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum NnError {
    /// An error raised by candle itself (shape mismatch in an op, backend failure, I/O of a
    /// safetensors file, ...).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A checkpoint could not be read or does not fit the network.
    #[error("checkpoint {path}: {msg}")]
    Checkpoint {
        /// The file involved.
        path: PathBuf,
        /// What went wrong, naming the key or tensor.
        msg: String,
    },
    /// A parameter has the wrong shape (import, load or copy between networks).
    #[error("parameter `{name}`: expected shape {expected:?}, found {found:?}")]
    Shape {
        /// Parameter name.
        name: String,
        /// Shape the network needs.
        expected: Vec<usize>,
        /// Shape that was supplied.
        found: Vec<usize>,
    },
    /// A parameter is missing from a source, or present in one side only.
    #[error("parameter `{name}`: {msg}")]
    Param {
        /// Parameter name.
        name: String,
        /// What is wrong with it.
        msg: String,
    },
    /// An unknown device name, or a backend that is not compiled in / not usable.
    #[error("device: {0}")]
    Device(String),
    /// An invalid network configuration.
    #[error("invalid network config: {0}")]
    Config(String),
}

/// Result type of this crate.
pub type Result<T> = std::result::Result<T, NnError>;

/// What the agents need from any Q-network, so they can be generic over the architecture.
pub trait QNetwork: Sized {
    /// Forward pass: `obs` is `[B, 8]` f32, `task` is `[B]` u32 task ids (ignored by
    /// task-blind networks). Returns Q-values `[B, 4]` or logits `[B, 4, atoms]`.
    fn forward(&self, obs: &Tensor, task: &Tensor) -> Result<Tensor>;
    /// The network's parameters, in a stable order.
    fn params(&self) -> &ParamStore;
    /// An independent copy with its own storage (e.g. to create a target network).
    fn deep_clone(&self) -> Result<Self>;

    /// Number of scalar parameters, counted from the real variables.
    fn num_params(&self) -> usize {
        self.params().num_params()
    }
    /// Hard copy of `other`'s values into this network (target-network update).
    fn copy_from(&self, other: &Self) -> Result<()> {
        self.params().copy_from(other.params())
    }
}
