//! Differentiable building blocks composed from primitive candle ops.
//!
//! candle 0.11's fused `candle_nn::LayerNorm` / `candle_nn::ops::softmax_last_dim` kernels
//! have no backward pass, so a loss built on them silently leaves upstream parameters
//! without gradient. Everything here uses only ops that candle can differentiate.

use crate::Result;
use candle_core::{Tensor, D};

/// LayerNorm over the last dimension: `(x - mean) / sqrt(var + eps) * gamma + beta`, with
/// the biased variance as in PyTorch.
pub fn layer_norm(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let centered = x.broadcast_sub(&mean)?;
    let var = centered.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = centered.broadcast_div(&(var + eps)?.sqrt()?)?;
    Ok(normed.broadcast_mul(gamma)?.broadcast_add(beta)?)
}

/// Numerically stable log-softmax over the last dimension (max-shifted).
pub fn log_softmax(x: &Tensor) -> Result<Tensor> {
    // The max is a constant shift; detaching it changes no gradient and saves work.
    let max = x.max_keepdim(D::Minus1)?.detach();
    let shifted = x.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    Ok(shifted.broadcast_sub(&lse)?)
}

/// Softmax over the last dimension, `exp(log_softmax(x))`.
pub fn softmax(x: &Tensor) -> Result<Tensor> {
    Ok(log_softmax(x)?.exp()?)
}

/// Expected values of categorical distributions: `logits` `[B, A, N]`, `support` `[N]`
/// (the atom values) → Q-values `[B, A]`.
pub fn categorical_q_values(logits: &Tensor, support: &Tensor) -> Result<Tensor> {
    Ok(softmax(logits)?.broadcast_mul(support)?.sum(D::Minus1)?)
}

/// Greedy actions: index of the largest value along the last dimension of `q` `[B, A]`, as a
/// `Vec<u32>`. Ties go to the lowest index, like `torch.argmax` / numpy.
pub fn argmax_rows(q: &Tensor) -> Result<Vec<u32>> {
    let rows = q.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()?;
    Ok(rows
        .iter()
        .map(|r| {
            let mut best = 0;
            for (i, &v) in r.iter().enumerate() {
                // Strict `>` keeps the first of equal maxima.
                if v > r[best] {
                    best = i;
                }
            }
            best as u32
        })
        .collect())
}
