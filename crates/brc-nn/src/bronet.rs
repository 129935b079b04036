//! BroNet, the BRC agent's residual categorical Q-network.

use crate::init::WeightInit;
use crate::layers::{Embedding, LayerNorm};
use crate::mlp::network_common;
use crate::task_residual::{
    grouped_pass, Dense, Pass, ResidualMode, ResidualWeights, TaskResidualLinear,
    TaskResidualNetwork,
};
use crate::{NnError, ParamStore, QNetwork, Result};
use candle_core::{Device, Tensor};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// BroNet hyper-parameters. Defaults reproduce the design note (459,820 parameters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BroNetConfig {
    /// Observation size.
    pub obs_dim: usize,
    /// Number of discrete actions.
    pub num_actions: usize,
    /// Number of task ids the embedding holds.
    pub num_tasks: usize,
    /// Task-embedding width; 0 gives a task-blind network without embedding.
    pub embedding_dim: usize,
    /// Width of the residual stream.
    pub hidden_dim: usize,
    /// Number of residual blocks.
    pub num_blocks: usize,
    /// Atoms of each action's return distribution (1: a scalar Q-value per action).
    pub num_atoms: usize,
    /// `false` (design note): pre-LN blocks `x + fc2(ReLU(fc1(LN(x))))` and a final LN.
    /// `true` (official BRC/BRO code): `Linear → LN → ReLU` input, post-LN blocks
    /// `x + LN(fc2(ReLU(LN(fc1(x)))))`, no final LN.
    pub post_ln: bool,
    /// Scale each task's embedding to unit L2 norm before it joins the state (the BRC
    /// paper's multi-task embedding), so no task's code can grow to dominate the input.
    pub unit_norm_embedding: bool,
    /// VarShare: every linear layer (the input projection, both layers of every block and
    /// the head) gets a residual per task of this form; `None`: a plain BroNet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_residuals: Option<ResidualMode>,
}

impl Default for BroNetConfig {
    fn default() -> Self {
        Self {
            obs_dim: crate::OBS_DIM,
            num_actions: crate::NUM_ACTIONS,
            num_tasks: crate::NUM_TASKS,
            embedding_dim: 32,
            hidden_dim: 256,
            num_blocks: 3,
            num_atoms: 51,
            post_ln: false,
            unit_norm_embedding: false,
            task_residuals: None,
        }
    }
}

impl BroNetConfig {
    /// Width of the input layer's input: the observation and the task embedding.
    pub fn input_width(&self) -> usize {
        self.obs_dim + self.embedding_dim
    }

    /// Width of the output layer: every action's atoms (1 for the scalar ablation).
    pub fn output_width(&self) -> usize {
        self.num_actions * self.num_atoms
    }

    /// Rejects sizes that would make an empty or degenerate network.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("obs_dim", self.obs_dim),
            ("num_actions", self.num_actions),
            ("hidden_dim", self.hidden_dim),
            ("num_atoms", self.num_atoms),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(NnError::Config(format!("{name} must be at least 1")));
            }
        }
        if (self.embedding_dim > 0 || self.task_residuals.is_some()) && self.num_tasks == 0 {
            return Err(NnError::Config(
                "num_tasks must be at least 1 with a task embedding or task residuals".into(),
            ));
        }
        Ok(())
    }

    /// The residual form and task count each linear layer is built with.
    fn residuals(&self) -> Option<(ResidualMode, usize)> {
        self.task_residuals.map(|m| (m, self.num_tasks))
    }
}

/// One residual block; which LayerNorms exist depends on [`BroNetConfig::post_ln`].
#[derive(Debug, Clone)]
struct Block {
    /// Pre-LN: the norm before fc1. Post-LN: the norm after fc1.
    ln1: LayerNorm,
    fc1: Dense,
    fc2: Dense,
    /// Post-LN only: the norm after fc2.
    ln2: Option<LayerNorm>,
}

/// BroNet: `concat(state, embedding[task])` → Linear → ReLU → residual blocks → final LN →
/// Linear to `actions × atoms` logits, returned as `[B, actions, atoms]`.
///
/// Variables: `task_embedding.weight`, `input.{weight,bias}`, `input_ln.*` (post-LN only),
/// `blocks.{i}.ln.*` + `blocks.{i}.fc1.*` + `blocks.{i}.fc2.*` (+ `blocks.{i}.ln2.*` post-LN),
/// `final_ln.*` (pre-LN only), `output.{weight,bias}`.
#[derive(Debug, Clone)]
pub struct BroNet {
    config: BroNetConfig,
    params: ParamStore,
    embedding: Option<Embedding>,
    input: Dense,
    input_ln: Option<LayerNorm>,
    blocks: Vec<Block>,
    final_ln: Option<LayerNorm>,
    output: Dense,
}

impl BroNet {
    /// A freshly initialised network drawn from `rng`: embedding N(0, 1/embedding_dim)
    /// (1/32 by default), Kaiming-normal hidden weights, Xavier-uniform output weights, zero
    /// biases, LayerNorm gain 1 and offset 0.
    pub fn new<R: Rng + ?Sized>(
        config: BroNetConfig,
        rng: &mut R,
        device: &Device,
    ) -> Result<Self> {
        config.validate()?;
        let c = config;
        let mut s = ParamStore::new(device);
        let k = WeightInit::KaimingNormal;
        let (res, mut next) = (c.residuals(), 0);
        if c.embedding_dim > 0 {
            let std = (1.0 / c.embedding_dim as f64).sqrt();
            Embedding::init(
                &mut s,
                rng,
                "task_embedding",
                c.num_tasks,
                c.embedding_dim,
                std,
            )?;
        }
        Dense::init(
            &mut s,
            rng,
            "input",
            c.input_width(),
            c.hidden_dim,
            k,
            res,
            &mut next,
        )?;
        if c.post_ln {
            LayerNorm::init(&mut s, "input_ln", c.hidden_dim)?;
        }
        for i in 0..c.num_blocks {
            LayerNorm::init(&mut s, &format!("blocks.{i}.ln"), c.hidden_dim)?;
            let h = c.hidden_dim;
            Dense::init(
                &mut s,
                rng,
                &format!("blocks.{i}.fc1"),
                h,
                h,
                k,
                res,
                &mut next,
            )?;
            Dense::init(
                &mut s,
                rng,
                &format!("blocks.{i}.fc2"),
                h,
                h,
                k,
                res,
                &mut next,
            )?;
            if c.post_ln {
                LayerNorm::init(&mut s, &format!("blocks.{i}.ln2"), c.hidden_dim)?;
            }
        }
        if !c.post_ln {
            LayerNorm::init(&mut s, "final_ln", c.hidden_dim)?;
        }
        Dense::init(
            &mut s,
            rng,
            "output",
            c.hidden_dim,
            c.output_width(),
            WeightInit::XavierUniform,
            res,
            &mut next,
        )?;
        Self::from_params(config, s)
    }

    /// Binds a network of `config` to existing variables (names and shapes are checked).
    pub fn from_params(config: BroNetConfig, params: ParamStore) -> Result<Self> {
        config.validate()?;
        let c = config;
        let h = c.hidden_dim;
        let (res, mut next) = (c.residuals(), 0);
        let embedding = if c.embedding_dim > 0 {
            Some(Embedding::bind(
                &params,
                "task_embedding",
                c.num_tasks,
                c.embedding_dim,
            )?)
        } else {
            None
        };
        let input = Dense::bind(&params, "input", c.input_width(), h, res, &mut next)?;
        let input_ln = if c.post_ln {
            Some(LayerNorm::bind(&params, "input_ln", h)?)
        } else {
            None
        };
        let mut blocks = Vec::with_capacity(c.num_blocks);
        for i in 0..c.num_blocks {
            blocks.push(Block {
                ln1: LayerNorm::bind(&params, &format!("blocks.{i}.ln"), h)?,
                fc1: Dense::bind(&params, &format!("blocks.{i}.fc1"), h, h, res, &mut next)?,
                fc2: Dense::bind(&params, &format!("blocks.{i}.fc2"), h, h, res, &mut next)?,
                ln2: if c.post_ln {
                    Some(LayerNorm::bind(&params, &format!("blocks.{i}.ln2"), h)?)
                } else {
                    None
                },
            });
        }
        let final_ln = if c.post_ln {
            None
        } else {
            Some(LayerNorm::bind(&params, "final_ln", h)?)
        };
        let output = Dense::bind(&params, "output", h, c.output_width(), res, &mut next)?;
        // Reject leftovers too, so a store of another layout cannot half-bind.
        let expected = Self::expected_var_count(&c);
        if params.len() != expected {
            return Err(NnError::Config(format!(
                "parameter store has {} variables, this BroNet config needs {expected}",
                params.len()
            )));
        }
        Ok(Self {
            config,
            params,
            embedding,
            input,
            input_ln,
            blocks,
            final_ln,
            output,
        })
    }

    fn expected_var_count(c: &BroNetConfig) -> usize {
        let per_block = if c.post_ln { 8 } else { 6 };
        let dense = 2 + 2 * c.num_blocks;
        usize::from(c.embedding_dim > 0)
            + 2
            + 2
            + c.num_blocks * per_block
            + 2
            + dense * Dense::extra_vars(c.residuals())
    }

    /// The configuration the network was built with.
    pub fn config(&self) -> &BroNetConfig {
        &self.config
    }

    /// Logits `[B, actions, atoms]` for `obs` `[B, obs_dim]` and `task` `[B]` (u32; ignored
    /// when `embedding_dim` is 0 and there are no task residuals). With task residuals: the
    /// posterior means θ + μ_m ([`BroNet::forward_with`] chooses other weights).
    pub fn forward(&self, obs: &Tensor, task: &Tensor) -> Result<Tensor> {
        if self.config.task_residuals.is_some() {
            return self.forward_with(obs, task, ResidualWeights::Mean);
        }
        self.forward_pass(obs, task, None)
    }

    /// The forward pass with the task residuals' `weights` (a plain BroNet ignores them).
    pub fn forward_with(
        &self,
        obs: &Tensor,
        task: &Tensor,
        weights: ResidualWeights<'_>,
    ) -> Result<Tensor> {
        if self.config.task_residuals.is_none() {
            return self.forward_pass(obs, task, None);
        }
        grouped_pass(obs, task, weights, |o, t, p| {
            self.forward_pass(o, t, Some(p))
        })
    }

    /// The residual layers in forward order (empty for a plain BroNet).
    pub fn residual_layers(&self) -> Vec<&TaskResidualLinear> {
        let mut out: Vec<&TaskResidualLinear> = self.input.residual().into_iter().collect();
        for b in &self.blocks {
            out.extend(b.fc1.residual());
            out.extend(b.fc2.residual());
        }
        out.extend(self.output.residual());
        out
    }

    fn forward_pass(&self, obs: &Tensor, task: &Tensor, pass: Option<&Pass<'_>>) -> Result<Tensor> {
        let x = match &self.embedding {
            Some(e) => {
                let mut code = e.forward(task)?;
                if self.config.unit_norm_embedding {
                    let norm = code.sqr()?.sum_keepdim(1)?.sqrt()?;
                    code = code.broadcast_div(&norm)?;
                }
                Tensor::cat(&[obs, &code], 1)?
            }
            None => obs.clone(),
        };
        let mut x = self.input.forward(&x, pass)?;
        if let Some(ln) = &self.input_ln {
            x = ln.forward(&x)?;
        }
        let mut x = x.relu()?;
        for b in &self.blocks {
            let r = match &b.ln2 {
                None => {
                    let y = b.fc1.forward(&b.ln1.forward(&x)?, pass)?.relu()?;
                    b.fc2.forward(&y, pass)?
                }
                Some(ln2) => {
                    let y = b.ln1.forward(&b.fc1.forward(&x, pass)?)?.relu()?;
                    ln2.forward(&b.fc2.forward(&y, pass)?)?
                }
            };
            x = (x + r)?;
        }
        if let Some(ln) = &self.final_ln {
            x = ln.forward(&x)?;
        }
        let batch = x.dim(0)?;
        let logits = self.output.forward(&x, pass)?;
        Ok(logits.reshape((batch, self.config.num_actions, self.config.num_atoms))?)
    }

    /// An independent copy with fresh storage.
    pub fn deep_clone(&self) -> Result<Self> {
        Self::from_params(self.config, self.params.deep_clone()?)
    }
}

network_common!(BroNet);

impl TaskResidualNetwork for BroNet {
    fn residual_layers(&self) -> Vec<&TaskResidualLinear> {
        BroNet::residual_layers(self)
    }
    fn forward_with(
        &self,
        obs: &Tensor,
        task: &Tensor,
        weights: ResidualWeights<'_>,
    ) -> Result<Tensor> {
        BroNet::forward_with(self, obs, task, weights)
    }
}
