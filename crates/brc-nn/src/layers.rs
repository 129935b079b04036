//! Layers bound to variables of a [`ParamStore`].

use crate::init::{kaiming_std, normal, uniform, xavier_bound, WeightInit};
use crate::{ops, ParamStore, Result};
use candle_core::{Tensor, Var};
use rand::Rng;

/// PyTorch's default LayerNorm epsilon.
pub const LN_EPS: f64 = 1e-5;

/// Fully connected layer `y = x W + b` with `W` stored `[in, out]`.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Var,
    bias: Var,
}

impl Linear {
    /// Registers `{name}.weight` `[in, out]` and `{name}.bias` `[out]` in `store`, weights
    /// drawn per `init`, bias zero.
    pub fn init<R: Rng + ?Sized>(
        store: &mut ParamStore,
        rng: &mut R,
        name: &str,
        in_dim: usize,
        out_dim: usize,
        init: WeightInit,
    ) -> Result<Self> {
        let n = in_dim * out_dim;
        let w = match init {
            WeightInit::KaimingNormal => normal(rng, kaiming_std(in_dim), n),
            WeightInit::XavierUniform => uniform(rng, xavier_bound(in_dim, out_dim), n),
        };
        store.insert_vec(&format!("{name}.weight"), w, (in_dim, out_dim))?;
        store.insert_vec(&format!("{name}.bias"), vec![0.0; out_dim], out_dim)?;
        Self::bind(store, name, in_dim, out_dim)
    }

    /// Binds to existing `{name}.weight` / `{name}.bias`, checking shapes.
    pub fn bind(store: &ParamStore, name: &str, in_dim: usize, out_dim: usize) -> Result<Self> {
        Ok(Self {
            weight: store.require(&format!("{name}.weight"), &[in_dim, out_dim])?,
            bias: store.require(&format!("{name}.bias"), &[out_dim])?,
        })
    }

    /// `x` `[B, in]` → `[B, out]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        ops::bias_add(&x.matmul(&self.weight)?, &self.bias)
    }
}

/// Lookup table of per-task vectors, `{name}.weight` `[n, dim]`.
#[derive(Debug, Clone)]
pub struct Embedding {
    table: Var,
}

impl Embedding {
    /// Registers `{name}.weight` `[n, dim]` with entries drawn from N(0, std²).
    pub fn init<R: Rng + ?Sized>(
        store: &mut ParamStore,
        rng: &mut R,
        name: &str,
        n: usize,
        dim: usize,
        std: f64,
    ) -> Result<Self> {
        store.insert_vec(
            &format!("{name}.weight"),
            normal(rng, std, n * dim),
            (n, dim),
        )?;
        Self::bind(store, name, n, dim)
    }

    /// Binds to an existing `{name}.weight`, checking its shape.
    pub fn bind(store: &ParamStore, name: &str, n: usize, dim: usize) -> Result<Self> {
        Ok(Self {
            table: store.require(&format!("{name}.weight"), &[n, dim])?,
        })
    }

    /// `ids` `[B]` (u32) → `[B, dim]`. An id out of range is an error from candle.
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        Ok(self.table.index_select(ids, 0)?)
    }
}

/// LayerNorm over the last dimension with learnable gain (`{name}.weight`, init 1) and
/// offset (`{name}.bias`, init 0), built from differentiable primitives.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    gamma: Var,
    beta: Var,
}

impl LayerNorm {
    /// Registers `{name}.weight` (ones) and `{name}.bias` (zeros) of size `dim`.
    pub fn init(store: &mut ParamStore, name: &str, dim: usize) -> Result<Self> {
        store.insert_vec(&format!("{name}.weight"), vec![1.0; dim], dim)?;
        store.insert_vec(&format!("{name}.bias"), vec![0.0; dim], dim)?;
        Self::bind(store, name, dim)
    }

    /// Binds to existing `{name}.weight` / `{name}.bias`, checking shapes.
    pub fn bind(store: &ParamStore, name: &str, dim: usize) -> Result<Self> {
        Ok(Self {
            gamma: store.require(&format!("{name}.weight"), &[dim])?,
            beta: store.require(&format!("{name}.bias"), &[dim])?,
        })
    }

    /// Normalises `x` `[B, dim]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        ops::layer_norm_fused(x, &self.gamma, &self.beta, LN_EPS)
    }
}
