//! VarShare's task-residual linear layer on host buffers: what [`crate::ResidualBroNetCpu`]
//! and [`crate::ResidualMlpCpu`] share (the host sibling of [`crate::task_residual`]).
//!
//! The rows of a pass come grouped by task (contiguous [`TaskSegment`]s) and a layer computes,
//! per segment m,
//!
//! * forward: `y = x W_m + ((x ⊙ s) V_m) ⊙ r + b`, with `W_m = θ + μ_m` materialised once per
//!   pass for the tasks present and `V_m = σ_m ⊙ ε_m`, `σ_m = softplus(ρ_m)` (the Flipout
//!   term only on the leading, noisy, rows; the rest use the means);
//! * backward: `dμ_m = x_mᵀ dy_m`, `dθ = Σ_m dμ_m`, `dV_m = (x_m ⊙ s)ᵀ (dy_m ⊙ r)`,
//!   `dρ_m = dV_m ⊙ ε_m ⊙ sigmoid(ρ_m)`, `dx = dy W_mᵀ + ((dy ⊙ r) V_mᵀ) ⊙ s`;
//! * the closed-form gradient of the KL (or the `l2` penalty) over every task's μ and ρ
//!   ([`add_penalty_gradient`]).

use crate::bronet_cpu::HostGradients;
use crate::kernels::{self, Mat};
use crate::lane_math;
use crate::task_residual::{HostSigns, TaskSegment};
use crate::{NnError, ResidualMode, Result};

/// Where one residual layer's variables sit in its store's construction order.
#[derive(Debug, Clone)]
pub(crate) struct LayerIndices {
    pub(crate) weight: usize,
    pub(crate) bias: usize,
    /// μ_m per task.
    pub(crate) mu: Vec<usize>,
    /// ρ_m per task (variational only).
    pub(crate) rho: Option<Vec<usize>>,
    pub(crate) in_dim: usize,
    pub(crate) out_dim: usize,
}

impl LayerIndices {
    /// The layer `prefix` (`{prefix}.weight`, `.bias`, `.residual_mu.{m}` and, variational,
    /// `.residual_rho.{m}` for `tasks` tasks) among `names`, the store's variable names in
    /// order; `engine` names the caller in the error.
    pub(crate) fn find(
        names: &[&str],
        engine: &str,
        prefix: &str,
        (in_dim, out_dim): (usize, usize),
        tasks: usize,
        mode: ResidualMode,
    ) -> Result<Self> {
        let find = |name: &str| {
            names
                .iter()
                .position(|n| *n == name)
                .ok_or_else(|| NnError::Config(format!("{engine}: no variable `{name}`")))
        };
        let per_task = |what: &str| -> Result<Vec<usize>> {
            (0..tasks)
                .map(|t| find(&format!("{prefix}.{what}.{t}")))
                .collect()
        };
        Ok(Self {
            weight: find(&format!("{prefix}.weight"))?,
            bias: find(&format!("{prefix}.bias"))?,
            mu: per_task("residual_mu")?,
            rho: match mode {
                ResidualMode::Variational => Some(per_task("residual_rho")?),
                ResidualMode::L2 => None,
            },
            in_dim,
            out_dim,
        })
    }
}

/// Whether the segments are consecutive from row 0 with tasks below `tasks`; their rows.
pub(crate) fn segment_rows(segments: &[TaskSegment], tasks: usize) -> Option<usize> {
    let mut rows = 0;
    for s in segments {
        if s.start != rows || s.task >= tasks {
            return None;
        }
        rows += s.len;
    }
    Some(rows)
}

/// Whether `f` is a draw for `layers` (ε `[tasks, in, out]` and signs for `f.rows` rows each,
/// in layer order) of a variational network.
pub(crate) fn flipout_fits(
    f: &HostFlipout<'_>,
    layers: &[LayerIndices],
    tasks: usize,
    mode: Option<ResidualMode>,
) -> bool {
    mode == Some(ResidualMode::Variational)
        && f.eps.len() == layers.len()
        && f.signs.len() == layers.len()
        && layers.iter().zip(f.eps).zip(f.signs).all(|((l, e), sg)| {
            e.len() == tasks * l.in_dim * l.out_dim
                && sg.s.len() == f.rows * l.in_dim
                && sg.r.len() == f.rows * l.out_dim
        })
}

/// Which of `tasks` tasks have rows in `segments`.
pub(crate) fn present_tasks(segments: &[TaskSegment], tasks: usize) -> Vec<bool> {
    let mut present = vec![false; tasks];
    for s in segments {
        present[s.task] |= s.len > 0;
    }
    present
}

/// One training pass's Flipout draw, on the host: ε of every layer (`[tasks, in, out]`) and
/// the signs of the noisy rows (the first `rows`), in the network's residual layer order.
#[derive(Debug, Clone, Copy)]
pub struct HostFlipout<'a> {
    /// ε per layer.
    pub eps: &'a [&'a [f32]],
    /// Signs per layer.
    pub signs: &'a [HostSigns],
    /// How many leading rows of the pass carry the noise.
    pub rows: usize,
}

/// What one residual layer keeps between the forward and the backward pass, per task.
#[derive(Debug, Clone, Default)]
pub(crate) struct LayerCache {
    /// θ + μ_m for the tasks of the last pass.
    pub(crate) mean: Vec<Vec<f32>>,
    /// σ_m, sigmoid(ρ_m) and V_m = σ_m ⊙ ε_m of every task (after a noisy pass).
    pub(crate) sigma: Vec<Vec<f32>>,
    pub(crate) sigmoid: Vec<Vec<f32>>,
    pub(crate) noise: Vec<Vec<f32>>,
}

impl LayerCache {
    /// θ + μ_m for the `present` tasks and, with the layer's ε (`[tasks, in, out]`), σ,
    /// sigmoid(ρ) and V of every task.
    pub(crate) fn prepare(
        &mut self,
        w: &[&[f32]],
        l: &LayerIndices,
        present: &[bool],
        eps: Option<&[f32]>,
    ) {
        let (tasks, n) = (present.len(), l.in_dim * l.out_dim);
        self.mean.resize(tasks, Vec::new());
        for (t, mean) in self.mean.iter_mut().enumerate() {
            if present[t] {
                mean.resize(n, 0.0);
                add_into(mean, w[l.weight], w[l.mu[t]]);
            }
        }
        let (Some(eps), Some(rho)) = (eps, &l.rho) else {
            return;
        };
        for list in [&mut self.sigma, &mut self.sigmoid, &mut self.noise] {
            list.resize(tasks, Vec::new());
            list.iter_mut().for_each(|v| v.resize(n, 0.0));
        }
        for t in 0..tasks {
            scaled_softplus(
                w[rho[t]],
                &eps[t * n..(t + 1) * n],
                &mut self.sigma[t],
                &mut self.sigmoid[t],
                &mut self.noise[t],
            );
        }
    }
}

/// Adds the gradient of `scale · Σ_layers,tasks penalty` to `grads` (the variables' store
/// order), `w` the variables' values: variational, the closed-form KL's `μ/σ_p²` and
/// `(σ/σ_p² − 1/σ) · sigmoid(ρ)` at the σ the `caches` hold from the last noisy pass; `l2`,
/// `μ/σ_p²`. An error names `engine` when a variational layer has no noisy pass yet.
pub(crate) fn add_penalty_gradient(
    engine: &str,
    (layers, caches): (&[LayerIndices], &[LayerCache]),
    w: &[&[f32]],
    (sigma_prior, scale): (f64, f64),
    grads: &mut HostGradients,
) -> Result<()> {
    let tasks = |l: &LayerIndices| l.mu.len();
    if layers
        .iter()
        .zip(caches)
        .any(|(l, c)| l.rho.is_some() && c.sigma.len() != tasks(l))
    {
        return Err(NnError::Config(format!(
            "{engine}: the KL gradient needs a noisy forward first"
        )));
    }
    let sp2 = (sigma_prior * sigma_prior) as f32;
    let (mu_coef, g) = ((scale / (sigma_prior * sigma_prior)) as f32, scale as f32);
    for (l, cache) in layers.iter().zip(caches) {
        for (t, &m) in l.mu.iter().enumerate() {
            add_scaled(&mut grads[m], w[m], mu_coef);
            let Some(rho) = &l.rho else { continue };
            add_kl_rho_gradient(
                &mut grads[rho[t]],
                &cache.sigma[t],
                &cache.sigmoid[t],
                g,
                sp2,
            );
        }
    }
    Ok(())
}

/// What every layer of one pass shares: the weights, the task segments, the buffers.
pub(crate) struct LayerPass<'a, 'w> {
    pub(crate) w: &'a [&'w [f32]],
    pub(crate) segments: &'a [TaskSegment],
    pub(crate) rows: usize,
    /// Leading rows with Flipout noise.
    pub(crate) noisy: usize,
    pub(crate) threads: usize,
    pub(crate) scratch_in: &'a mut Vec<f32>,
    pub(crate) scratch_out: &'a mut Vec<f32>,
}

/// One layer of a pass: its variables, its cache and (noisy) the draw with the layer's index.
pub(crate) type LayerAt<'a> = (
    &'a LayerIndices,
    &'a LayerCache,
    Option<(&'a HostFlipout<'a>, usize)>,
);

impl LayerPass<'_, '_> {
    /// `out = x W_m (+ ((x ⊙ s) V_m) ⊙ r on the noisy rows) + b`, per segment.
    pub(crate) fn forward(&mut self, (l, cache, flipout): LayerAt<'_>, x: &[f32], out: &mut [f32]) {
        let (i, o, t) = (l.in_dim, l.out_dim, self.threads);
        for s in self.segments {
            kernels::matmul(
                &mut out[s.start * o..(s.start + s.len) * o],
                Mat::new(&x[s.start * i..(s.start + s.len) * i], s.len, i),
                Mat::new(&cache.mean[s.task], i, o),
                false,
                t,
            );
        }
        if let Some((f, k)) = flipout.filter(|_| l.rho.is_some() && self.noisy > 0) {
            let n = self.noisy;
            let signs = &f.signs[k];
            let xs = &mut self.scratch_in[..n * i];
            mul_into(xs, &x[..n * i], &signs.s);
            let noise = &mut self.scratch_out[..n * o];
            for s in self.segments.iter().filter(|s| s.start + s.len <= n) {
                kernels::matmul(
                    &mut noise[s.start * o..(s.start + s.len) * o],
                    Mat::new(&xs[s.start * i..(s.start + s.len) * i], s.len, i),
                    Mat::new(&cache.noise[s.task], i, o),
                    false,
                    t,
                );
            }
            add_product(&mut out[..n * o], noise, &signs.r);
        }
        kernels::add_bias(&mut out[..self.rows * o], self.w[l.bias]);
    }

    /// The layer's weight gradients (overwritten) for `dy` on the pass's rows, and its input's
    /// gradient into `dx` (overwritten) when asked.
    pub(crate) fn backward(
        &mut self,
        (l, cache, flipout): LayerAt<'_>,
        x: &[f32],
        dy: &[f32],
        grads: &mut HostGradients,
        dx: Option<&mut [f32]>,
    ) {
        let (i, o, t, rows) = (l.in_dim, l.out_dim, self.threads, self.rows);
        let present = |task: usize| self.segments.iter().any(|s| s.task == task && s.len > 0);
        for (task, &m) in l.mu.iter().enumerate() {
            if !present(task) {
                grads[m].fill(0.0);
            }
        }
        for s in self.segments {
            kernels::matmul(
                &mut grads[l.mu[s.task]],
                Mat::new(&x[s.start * i..(s.start + s.len) * i], s.len, i).t(),
                Mat::new(&dy[s.start * o..(s.start + s.len) * o], s.len, o),
                false,
                t,
            );
        }
        // dθ = Σ_m dμ_m.
        let mut dtheta = std::mem::take(&mut grads[l.weight]);
        dtheta.fill(0.0);
        for &m in &l.mu {
            add_assign(&mut dtheta, &grads[m]);
        }
        grads[l.weight] = dtheta;
        let db = &mut grads[l.bias];
        db.fill(0.0);
        kernels::add_column_sums(db, &dy[..rows * o]);
        let noisy = flipout.filter(|_| l.rho.is_some() && self.noisy > 0);
        if let (Some((f, k)), Some(rho)) = (noisy, &l.rho) {
            let signs = &f.signs[k];
            let dyr = &mut self.scratch_out[..rows * o];
            mul_into(dyr, &dy[..rows * o], &signs.r);
            let xs = &mut self.scratch_in[..rows * i];
            mul_into(xs, &x[..rows * i], &signs.s);
            let n = i * o;
            for (task, &r) in rho.iter().enumerate() {
                let g = &mut grads[r];
                let Some(s) = self.segments.iter().find(|s| s.task == task) else {
                    g.fill(0.0);
                    continue;
                };
                kernels::matmul(
                    g,
                    Mat::new(&xs[s.start * i..(s.start + s.len) * i], s.len, i).t(),
                    Mat::new(&dyr[s.start * o..(s.start + s.len) * o], s.len, o),
                    false,
                    t,
                );
                // dρ = dV ⊙ ε ⊙ sigmoid(ρ).
                let eps = &f.eps[k][task * n..(task + 1) * n];
                mul_by_product(g, eps, &cache.sigmoid[task]);
            }
        }
        let Some(dx) = dx else { return };
        for s in self.segments {
            kernels::matmul(
                &mut dx[s.start * i..(s.start + s.len) * i],
                Mat::new(&dy[s.start * o..(s.start + s.len) * o], s.len, o),
                Mat::new(&cache.mean[s.task], i, o).t(),
                false,
                t,
            );
        }
        if let Some((f, k)) = noisy {
            // dx += ((dy ⊙ r) V_mᵀ) ⊙ s; the input-sized scratch is free again.
            let dyr = &self.scratch_out[..rows * o];
            let back = &mut self.scratch_in[..rows * i];
            for s in self.segments {
                kernels::matmul(
                    &mut back[s.start * i..(s.start + s.len) * i],
                    Mat::new(&dyr[s.start * o..(s.start + s.len) * o], s.len, o),
                    Mat::new(&cache.noise[s.task], i, o).t(),
                    false,
                    t,
                );
            }
            add_product(&mut dx[..rows * i], back, &f.signs[k].s);
        }
    }
}

/// `out = a + b` elementwise.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512dq+avx512vl+avx2+fma",
    "x86_64+avx2+fma"
))]
fn add_into(out: &mut [f32], a: &[f32], b: &[f32]) {
    for (o, (a, b)) in out.iter_mut().zip(a.iter().zip(b)) {
        *o = a + b;
    }
}

/// `out += a` elementwise.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512dq+avx512vl+avx2+fma",
    "x86_64+avx2+fma"
))]
fn add_assign(out: &mut [f32], a: &[f32]) {
    for (o, a) in out.iter_mut().zip(a) {
        *o += a;
    }
}

/// `out += a ⊙ b` elementwise.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512dq+avx512vl+avx2+fma",
    "x86_64+avx2+fma"
))]
fn add_product(out: &mut [f32], a: &[f32], b: &[f32]) {
    for (o, (a, b)) in out.iter_mut().zip(a.iter().zip(b)) {
        *o += a * b;
    }
}

/// `out ⊙= a ⊙ b` elementwise (`out · (a · b)`).
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512dq+avx512vl+avx2+fma",
    "x86_64+avx2+fma"
))]
fn mul_by_product(out: &mut [f32], a: &[f32], b: &[f32]) {
    for (o, (a, b)) in out.iter_mut().zip(a.iter().zip(b)) {
        *o *= a * b;
    }
}

/// `out += c · a` elementwise.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512dq+avx512vl+avx2+fma",
    "x86_64+avx2+fma"
))]
fn add_scaled(out: &mut [f32], a: &[f32], c: f32) {
    for (o, a) in out.iter_mut().zip(a) {
        *o += c * a;
    }
}

/// `d += g · (σ/σ_p² − 1/σ) · sigmoid(ρ)`: the KL's gradient through ρ, scaled by `g`.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512dq+avx512vl+avx2+fma",
    "x86_64+avx2+fma"
))]
fn add_kl_rho_gradient(d: &mut [f32], sigma: &[f32], sigmoid: &[f32], g: f32, sp2: f32) {
    for ((d, s), q) in d.iter_mut().zip(sigma).zip(sigmoid) {
        *d += g * (s / sp2 - 1.0 / s) * q;
    }
}

/// `out = a ⊙ b` elementwise.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512dq+avx512vl+avx2+fma",
    "x86_64+avx2+fma"
))]
fn mul_into(out: &mut [f32], a: &[f32], b: &[f32]) {
    for (o, (a, b)) in out.iter_mut().zip(a.iter().zip(b)) {
        *o = a * b;
    }
}

/// σ = softplus(ρ), sigmoid(ρ) and V = σ ⊙ ε: the functions of candle's fused op, in one
/// pass that vectorises at the CPU's width ([`lane_math`]'s exp and ln: three scalar libm
/// calls per weight were most of a VarShare update).
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512dq+avx512vl+avx2+fma",
    "x86_64+avx2+fma"
))]
fn scaled_softplus(rho: &[f32], eps: &[f32], sigma: &mut [f32], sig: &mut [f32], v: &mut [f32]) {
    let n = rho.len();
    let (eps, sigma, sig, v) = (&eps[..n], &mut sigma[..n], &mut sig[..n], &mut v[..n]);
    for i in 0..n {
        let (s, q) = softplus_sigmoid(rho[i]);
        sigma[i] = s;
        sig[i] = q;
        v[i] = s * eps[i];
    }
}

/// softplus(ρ) = max(ρ, 0) + ln(1 + e^−|ρ|) and sigmoid(ρ), from one exp and one ln; ln(1 + u)
/// as ln(w)·u/(w − 1) with w = 1 + u (accurate for small u, where σ ≈ u lives).
#[inline(always)]
fn softplus_sigmoid(p: f32) -> (f32, f32) {
    let u = lane_math::exp(-p.abs());
    let w = 1.0 + u;
    let log1p = if w == 1.0 {
        u
    } else {
        lane_math::ln(w) * u / (w - 1.0)
    };
    let inv = 1.0 / w;
    let sigmoid = if p < 0.0 { u * inv } else { inv };
    (p.max(0.0) + log1p, sigmoid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task_residual::{sigmoid_f32, softplus_f32};

    #[test]
    fn vector_softplus_and_sigmoid_match_the_scalar_ones() {
        let rho: Vec<f32> = (0..203).map(|i| (i as f32 - 101.0) * 0.37).collect();
        let eps = vec![1.5f32; rho.len()];
        let n = rho.len();
        let (mut s, mut q, mut v) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        scaled_softplus(&rho, &eps, &mut s, &mut q, &mut v);
        for (i, &p) in rho.iter().enumerate() {
            let (ws, wq) = (softplus_f32(p), sigmoid_f32(p));
            assert!(
                (s[i] - ws).abs() <= 4e-7 * ws,
                "softplus({p}): {} vs {ws}",
                s[i]
            );
            assert!(
                (q[i] - wq).abs() <= 4e-7 * wq,
                "sigmoid({p}): {} vs {wq}",
                q[i]
            );
            assert!((v[i] - 1.5 * s[i]).abs() <= 1e-7 * v[i]);
        }
    }
}
