//! Adam / AdamW with global gradient-norm clipping and saveable moments.
//!
//! candle-nn's `AdamW` keeps its moments private (so training could not resume exactly from a
//! checkpoint), defaults to weight decay 0.01 and has no clipping; this one matches PyTorch's
//! `Adam` (weight_decay 0) and `AdamW` update rules and exposes its state.

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

use crate::Result;

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-8;

/// PyTorch-style AdamW over an ordered list of variables (`weight_decay = 0` is Adam).
pub(crate) struct AdamW {
    params: Vec<Var>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    step: u64,
    lr: f64,
    weight_decay: f64,
}

impl AdamW {
    pub(crate) fn new(params: Vec<Var>, lr: f64, weight_decay: f64) -> Result<Self> {
        let zeros = |p: &Var| p.as_tensor().zeros_like();
        Ok(Self {
            m: params
                .iter()
                .map(zeros)
                .collect::<candle_core::Result<_>>()?,
            v: params
                .iter()
                .map(zeros)
                .collect::<candle_core::Result<_>>()?,
            params,
            step: 0,
            lr,
            weight_decay,
        })
    }

    /// Global L2 norm of the gradients (variables without a gradient count as zero).
    pub(crate) fn grad_norm(&self, grads: &GradStore) -> Result<f32> {
        let mut total: Option<Tensor> = None;
        for p in &self.params {
            if let Some(g) = grads.get(p) {
                let s = g.sqr()?.sum_all()?;
                total = Some(match total {
                    Some(t) => (t + s)?,
                    None => s,
                });
            }
        }
        Ok(match total {
            Some(t) => t.to_scalar::<f32>()?.sqrt(),
            None => 0.0,
        })
    }

    /// One update; gradients are scaled by `min(1, clip / norm)` first when `clip > 0`.
    /// Returns the gradient norm before clipping.
    pub(crate) fn step(&mut self, grads: &GradStore, clip: f64) -> Result<f32> {
        let norm = self.grad_norm(grads)?;
        let scale = if clip > 0.0 && f64::from(norm) > clip {
            clip / (f64::from(norm) + 1e-6)
        } else {
            1.0
        };
        self.step += 1;
        let t = self.step as i32;
        let bias1 = 1.0 - BETA1.powi(t);
        let bias2 = 1.0 - BETA2.powi(t);
        for (i, p) in self.params.iter().enumerate() {
            let Some(g) = grads.get(p) else { continue };
            // Gradients carry the op graph that produced them; the moments must not, or each
            // step would keep every earlier step's graph alive (memory grows without bound).
            let g = g.detach();
            let g = if scale < 1.0 { (g * scale)? } else { g };
            self.m[i] = ((&self.m[i] * BETA1)? + (&g * (1.0 - BETA1))?)?.detach();
            self.v[i] = ((&self.v[i] * BETA2)? + (g.sqr()? * (1.0 - BETA2))?)?.detach();
            let m_hat = (&self.m[i] / bias1)?;
            let v_hat = (&self.v[i] / bias2)?;
            let delta = (m_hat / (v_hat.sqrt()? + EPS)?)?;
            let mut next = p.as_tensor().clone();
            if self.weight_decay > 0.0 {
                next = (&next * (1.0 - self.lr * self.weight_decay))?;
            }
            p.set(&(next - (delta * self.lr)?)?)?;
        }
        Ok(norm)
    }

    /// Moments as named tensors (`<prefix>m.<i>`, `<prefix>v.<i>`) and the step count.
    pub(crate) fn state(&self, prefix: &str) -> (Vec<(String, Tensor)>, u64) {
        let mut out = Vec::with_capacity(2 * self.m.len());
        for (i, (m, v)) in self.m.iter().zip(&self.v).enumerate() {
            out.push((format!("{prefix}m.{i}"), m.clone()));
            out.push((format!("{prefix}v.{i}"), v.clone()));
        }
        (out, self.step)
    }

    /// Restores what [`AdamW::state`] produced; `get` looks a tensor up by name.
    pub(crate) fn restore(
        &mut self,
        prefix: &str,
        step: u64,
        mut get: impl FnMut(&str, &[usize]) -> Result<Tensor>,
    ) -> Result<()> {
        for i in 0..self.params.len() {
            let dims = self.params[i].dims().to_vec();
            self.m[i] = get(&format!("{prefix}m.{i}"), &dims)?;
            self.v[i] = get(&format!("{prefix}v.{i}"), &dims)?;
        }
        self.step = step;
        Ok(())
    }
}
