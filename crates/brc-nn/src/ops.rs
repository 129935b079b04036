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

/// `softplus(x) = ln(1 + eˣ)`, differentiable (the VarShare posterior's σ = softplus(ρ)).
///
/// Written as `relu(x) + ln(1 + z)` with `z = e^(−|x|) ∈ (0, 1]`, so nothing overflows; where
/// `z < 0.05` the logarithm is its series `z − z²/2 + z³/3 − z⁴/4` (relative error < 1.3·10⁻⁶),
/// because `ln(1 + z)` in f32 loses `z` entirely once `1 + z` rounds to 1 — a σ of 10⁻⁸ would
/// come out 0 and its KL term infinite. Both branches are finite everywhere, so the
/// `where_cond` backward never multiplies a zero by an infinity.
pub fn softplus(x: &Tensor) -> Result<Tensor> {
    let z = x.abs()?.neg()?.exp()?;
    let direct = (&z + 1.0)?.log()?;
    let z2 = z.sqr()?;
    let series = ((&z - (&z2 * 0.5)?)? + ((&z2 * &z)? * (1.0 / 3.0))?)?;
    let series = (series - (z2.sqr()? * 0.25)?)?;
    let log1p = z.lt(0.05)?.where_cond(&series, &direct)?;
    Ok((x.relu()? + log1p)?)
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

/// LayerNorm over the last dimension as one op with its own backward pass, on the CPU.
///
/// The composed [`layer_norm`] records ~9 ops forward and as many backward for every
/// LayerNorm; BroNet has four per forward pass. This op computes the same values in one pass
/// over each row and its exact gradient in another (BRC update 7.07 → 6.26 ms, `brc bench`;
/// docs/performance.md). Other devices use the composed version.
pub fn layer_norm_fused(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> Result<Tensor> {
    let contiguous = x.is_contiguous() && gamma.is_contiguous() && beta.is_contiguous();
    if !x.device().is_cpu() || !contiguous || x.dtype() != candle_core::DType::F32 {
        return layer_norm(x, gamma, beta, eps);
    }
    Ok(x.apply_op3_arc(
        gamma,
        beta,
        std::sync::Arc::new(Box::new(FusedLayerNorm { eps: eps as f32 })),
    )?)
}

struct FusedLayerNorm {
    eps: f32,
}

fn cpu_slice<'a>(
    s: &'a candle_core::CpuStorage,
    l: &candle_core::Layout,
) -> candle_core::Result<&'a [f32]> {
    let data = s.as_slice::<f32>()?;
    match l.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => Err(candle_core::Error::Msg(
            "layer_norm_fused: non-contiguous input".into(),
        )),
    }
}

impl candle_core::CustomOp3 for FusedLayerNorm {
    fn name(&self) -> &'static str {
        "layer-norm-fused"
    }

    fn cpu_fwd(
        &self,
        s1: &candle_core::CpuStorage,
        l1: &candle_core::Layout,
        s2: &candle_core::CpuStorage,
        l2: &candle_core::Layout,
        s3: &candle_core::CpuStorage,
        l3: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let (x, gamma, beta) = (cpu_slice(s1, l1)?, cpu_slice(s2, l2)?, cpu_slice(s3, l3)?);
        let dim = gamma.len();
        let mut out = vec![0f32; x.len()];
        for (row, y) in x.chunks_exact(dim).zip(out.chunks_exact_mut(dim)) {
            let (mean, rstd) = moments(row, self.eps);
            for i in 0..dim {
                y[i] = (row[i] - mean) * rstd * gamma[i] + beta[i];
            }
        }
        Ok((candle_core::CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dims = x.dims().to_vec();
        let xs = x.flatten_all()?.to_vec1::<f32>()?;
        let g = gamma.flatten_all()?.to_vec1::<f32>()?;
        let dy = grad.flatten_all()?.to_vec1::<f32>()?;
        let dim = g.len();
        let mut dx = vec![0f32; xs.len()];
        let mut dgamma = vec![0f32; dim];
        let mut dbeta = vec![0f32; dim];
        for ((row, dyr), dxr) in xs
            .chunks_exact(dim)
            .zip(dy.chunks_exact(dim))
            .zip(dx.chunks_exact_mut(dim))
        {
            let (mean, rstd) = moments(row, self.eps);
            // dx = rstd · (dxhat − mean(dxhat) − xhat · mean(dxhat · xhat)), dxhat = dy · γ.
            let (mut sum_dxhat, mut sum_dxhat_xhat) = ([0f32; 8], [0f32; 8]);
            for i in 0..dim {
                let xhat = (row[i] - mean) * rstd;
                let dxhat = dyr[i] * g[i];
                sum_dxhat[i % 8] += dxhat;
                sum_dxhat_xhat[i % 8] += dxhat * xhat;
                dgamma[i] += dyr[i] * xhat;
                dbeta[i] += dyr[i];
            }
            let sum_dxhat: f32 = sum_dxhat.iter().sum();
            let sum_dxhat_xhat: f32 = sum_dxhat_xhat.iter().sum();
            let n = dim as f32;
            for i in 0..dim {
                let xhat = (row[i] - mean) * rstd;
                let dxhat = dyr[i] * g[i];
                dxr[i] = rstd * (dxhat - sum_dxhat / n - xhat * sum_dxhat_xhat / n);
            }
        }
        let device = x.device();
        Ok((
            Some(Tensor::from_vec(dx, dims, device)?),
            Some(Tensor::from_vec(dgamma, gamma.dims(), device)?),
            Some(Tensor::from_vec(dbeta, gamma.dims(), device)?),
        ))
    }
}

/// Mean and 1/sqrt(biased variance + eps) of one row.
fn moments(row: &[f32], eps: f32) -> (f32, f32) {
    let n = row.len() as f32;
    let mean = lane_sum(row.iter().copied()) / n;
    let var = lane_sum(row.iter().map(|v| (v - mean) * (v - mean))) / n;
    (mean, 1.0 / (var + eps).sqrt())
}

/// A sum over 8 independent lanes: a plain `sum()` is one serial chain of float additions
/// that the compiler may not reorder, which made the fused LayerNorm's row sums its main cost.
fn lane_sum(values: impl Iterator<Item = f32>) -> f32 {
    let mut lanes = [0f32; 8];
    for (i, v) in values.enumerate() {
        lanes[i % 8] += v;
    }
    lanes.iter().sum()
}

#[cfg(test)]
mod fused_tests {
    use super::*;
    use candle_core::{Device, Var};

    /// The fused op gives the composed LayerNorm's values and gradients.
    #[test]
    fn fused_layer_norm_matches_the_composed_one() {
        let dev = Device::Cpu;
        let data: Vec<f32> = (0..5 * 16)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.17)
            .collect();
        let gdata: Vec<f32> = (0..16).map(|i| 0.5 + i as f32 * 0.1).collect();
        let bdata: Vec<f32> = (0..16).map(|i| i as f32 * -0.05).collect();
        let weights = Tensor::from_vec(
            (0..5 * 16)
                .map(|i| (i % 7) as f32 - 3.0)
                .collect::<Vec<f32>>(),
            (5, 16),
            &dev,
        )
        .unwrap();
        let run = |fused: bool| {
            let x = Var::from_vec(data.clone(), (5, 16), &dev).unwrap();
            let g = Var::from_vec(gdata.clone(), 16, &dev).unwrap();
            let b = Var::from_vec(bdata.clone(), 16, &dev).unwrap();
            let y = if fused {
                layer_norm_fused(&x, &g, &b, 1e-5).unwrap()
            } else {
                layer_norm(&x, &g, &b, 1e-5).unwrap()
            };
            let loss = (y.clone() * &weights)
                .unwrap()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap();
            let grads = loss.backward().unwrap();
            let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            vec![
                flat(&y),
                flat(grads.get(&x).unwrap()),
                flat(grads.get(&g).unwrap()),
                flat(grads.get(&b).unwrap()),
            ]
        };
        let (fused, composed) = (run(true), run(false));
        for (part, (a, b)) in fused.iter().zip(&composed).enumerate() {
            for (x, y) in a.iter().zip(b) {
                assert!(
                    (x - y).abs() <= 1e-3 * (1.0 + y.abs()),
                    "part {part}: {x} vs {y}"
                );
            }
        }
    }
}

/// `x [B, n] + bias [n]` with a backward pass whose bias gradient is a row-by-row sum.
///
/// candle differentiates `broadcast_add` with a strided `sum(0)` over the batch, which was the
/// largest non-matmul cost of an update (16% of an MLP update in `perf`); this op sums the
/// rows contiguously. Other devices, dtypes and shapes use `broadcast_add`.
pub fn bias_add(x: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let fits = x.device().is_cpu()
        && x.dtype() == candle_core::DType::F32
        && x.rank() == 2
        && bias.rank() == 1
        && x.dims()[1] == bias.dims()[0]
        && x.is_contiguous()
        && bias.is_contiguous();
    if !fits {
        return Ok(x.broadcast_add(bias)?);
    }
    Ok(x.apply_op2_arc(bias, std::sync::Arc::new(Box::new(BiasAdd)))?)
}

struct BiasAdd;

impl candle_core::CustomOp2 for BiasAdd {
    fn name(&self) -> &'static str {
        "bias-add"
    }

    fn cpu_fwd(
        &self,
        s1: &candle_core::CpuStorage,
        l1: &candle_core::Layout,
        s2: &candle_core::CpuStorage,
        l2: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let (x, b) = (cpu_slice(s1, l1)?, cpu_slice(s2, l2)?);
        let mut out = x.to_vec();
        for row in out.chunks_exact_mut(b.len()) {
            for (y, b) in row.iter_mut().zip(b) {
                *y += b;
            }
        }
        Ok((candle_core::CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let n = bias.dims()[0];
        let g = grad.flatten_all()?.to_vec1::<f32>()?;
        let mut db = vec![0f32; n];
        for row in g.chunks_exact(n) {
            for (acc, v) in db.iter_mut().zip(row) {
                *acc += v;
            }
        }
        Ok((
            Some(grad.clone()),
            Some(Tensor::from_vec(db, n, grad.device())?),
        ))
    }
}

#[cfg(test)]
mod bias_tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn bias_add_matches_broadcast_add_with_gradients() {
        let dev = Device::Cpu;
        let run = |fused: bool| {
            let x = Var::from_vec((0..12).map(|i| i as f32 * 0.3).collect(), (3, 4), &dev).unwrap();
            let b = Var::from_vec(vec![1.0f32, -2.0, 0.5, 3.0], 4, &dev).unwrap();
            let y = if fused {
                bias_add(&x, &b).unwrap()
            } else {
                x.broadcast_add(&b).unwrap()
            };
            let w =
                Tensor::from_vec((0..12).map(|i| (i % 5) as f32).collect(), (3, 4), &dev).unwrap();
            let grads = (y.clone() * w)
                .unwrap()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            [
                flat(&y),
                flat(grads.get(&x).unwrap()),
                flat(grads.get(&b).unwrap()),
            ]
        };
        assert_eq!(run(true), run(false));
    }
}
