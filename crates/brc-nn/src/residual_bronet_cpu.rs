//! [`ResidualBroNetCpu`]: the forward and backward pass of a BroNet with VarShare's task
//! residuals ([`crate::task_residual`]) on host buffers — [`crate::BroNetCpu`]'s sibling for
//! `task_residuals = Some(_)`.
//!
//! candle's graph computes a residual layer as per-task slices, a weight sum, a softplus, a
//! noise product and sign multiplications, each a fresh tensor, forward and backward: at batch
//! 64 a VarShare BRC update cost 17× a plain one (docs/performance.md). Here the rows come
//! grouped by task (contiguous [`TaskSegment`]s) and every layer computes, per segment m,
//!
//! * forward: `y = x W_m + ((x ⊙ s) V_m) ⊙ r + b`, with `W_m = θ + μ_m` materialised once per
//!   pass for the tasks present and `V_m = σ_m ⊙ ε_m`, `σ_m = softplus(ρ_m)` (the Flipout
//!   term only on the first, noisy, rows; the rest use the means, so one pass serves the
//!   prediction on s and the double-DQN argmax on s′);
//! * backward: `dμ_m = x_mᵀ dy_m`, `dθ = Σ_m dμ_m`, `dV_m = (x_m ⊙ s)ᵀ (dy_m ⊙ r)`,
//!   `dρ_m = dV_m ⊙ ε_m ⊙ sigmoid(ρ_m)`, `dx = dy W_mᵀ + ((dy ⊙ r) V_mᵀ) ⊙ s`.
//!
//! [`ResidualBroNetCpu::add_penalty_gradient`] adds the closed-form gradient of the KL (or
//! the `l2` penalty). candle stays the reference: tests compare every value and gradient.

use crate::bronet_cpu::{two_mut, HostGradients, NormCache};
use crate::kernels::{self, Mat};
use crate::lane_math;
use crate::layers::LN_EPS;
use crate::task_residual::{HostSigns, TaskSegment};
use crate::{BroNet, BroNetConfig, NnError, ResidualMode, Result};

/// Where one residual layer's variables sit in its store's construction order.
#[derive(Debug, Clone)]
struct LayerIndices {
    weight: usize,
    bias: usize,
    /// μ_m per task.
    mu: Vec<usize>,
    /// ρ_m per task (variational only).
    rho: Option<Vec<usize>>,
    in_dim: usize,
    out_dim: usize,
}

/// Where each variable of a residual BroNet sits.
#[derive(Debug, Clone)]
struct Indices {
    embedding: Option<usize>,
    /// input, blocks.{i}.fc1, blocks.{i}.fc2 …, output: the network's residual layer order.
    layers: Vec<LayerIndices>,
    /// Per block, then the final one: LayerNorm (γ, β).
    norms: Vec<(usize, usize)>,
}

impl Indices {
    fn of(net: &BroNet) -> Result<Self> {
        let c = net.config();
        let names: Vec<&str> = net
            .params()
            .named_vars()
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        let find = |name: &str| {
            names.iter().position(|n| *n == name).ok_or_else(|| {
                NnError::Config(format!("residual BroNet CPU path: no variable `{name}`"))
            })
        };
        let per_task = |prefix: &str, what: &str| -> Result<Vec<usize>> {
            (0..c.num_tasks)
                .map(|t| find(&format!("{prefix}.{what}.{t}")))
                .collect()
        };
        let layer = |prefix: &str, in_dim: usize, out_dim: usize| -> Result<LayerIndices> {
            Ok(LayerIndices {
                weight: find(&format!("{prefix}.weight"))?,
                bias: find(&format!("{prefix}.bias"))?,
                mu: per_task(prefix, "residual_mu")?,
                rho: match c.task_residuals {
                    Some(ResidualMode::Variational) => Some(per_task(prefix, "residual_rho")?),
                    _ => None,
                },
                in_dim,
                out_dim,
            })
        };
        let norm = |prefix: &str| -> Result<(usize, usize)> {
            Ok((
                find(&format!("{prefix}.weight"))?,
                find(&format!("{prefix}.bias"))?,
            ))
        };
        let h = c.hidden_dim;
        let mut layers = vec![layer("input", c.input_width(), h)?];
        let mut norms = Vec::new();
        for i in 0..c.num_blocks {
            norms.push(norm(&format!("blocks.{i}.ln"))?);
            layers.push(layer(&format!("blocks.{i}.fc1"), h, h)?);
            layers.push(layer(&format!("blocks.{i}.fc2"), h, h)?);
        }
        norms.push(norm("final_ln")?);
        layers.push(layer("output", h, c.output_width())?);
        Ok(Self {
            embedding: (c.embedding_dim > 0)
                .then(|| find("task_embedding.weight"))
                .transpose()?,
            layers,
            norms,
        })
    }
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
struct LayerCache {
    /// θ + μ_m for the tasks of the last pass.
    mean: Vec<Vec<f32>>,
    /// σ_m, sigmoid(ρ_m) and V_m = σ_m ⊙ ε_m of every task (after a noisy pass).
    sigma: Vec<Vec<f32>>,
    sigmoid: Vec<Vec<f32>>,
    noise: Vec<Vec<f32>>,
}

/// A residual-BroNet forward/backward engine for one network shape, with its buffers.
#[derive(Debug, Clone)]
pub struct ResidualBroNetCpu {
    config: BroNetConfig,
    indices: Option<Indices>,
    threads: usize,
    rows: usize,
    /// Leading rows of the last forward that carried Flipout noise.
    noisy: usize,
    segments: Vec<TaskSegment>,
    tasks: Vec<u32>,
    input: Vec<f32>,
    input_act: Vec<f32>,
    norms: Vec<NormCache>,
    hidden: Vec<Vec<f32>>,
    stream: Vec<f32>,
    logits: Vec<f32>,
    layers: Vec<LayerCache>,
    scratch_in: Vec<f32>,
    scratch_out: Vec<f32>,
    grad_stream: Vec<f32>,
    grad_scratch: Vec<f32>,
    grad_hidden: Vec<f32>,
    grad_input: Vec<f32>,
}

impl ResidualBroNetCpu {
    /// Whether this path computes `config`'s network: [`crate::BroNetCpu`]'s pre-LN BroNet,
    /// with task residuals.
    pub fn supports(config: &BroNetConfig) -> bool {
        !config.post_ln && !config.unit_norm_embedding && config.task_residuals.is_some()
    }

    /// An engine for networks of `config` (its products use the current rayon pool's threads).
    pub fn new(config: BroNetConfig) -> Result<Self> {
        config.validate()?;
        if !Self::supports(&config) {
            return Err(NnError::Config(
                "the residual BroNet CPU path computes pre-LN blocks with task residuals and without unit-norm embeddings".into(),
            ));
        }
        let layers = 2 + 2 * config.num_blocks;
        Ok(Self {
            config,
            indices: None,
            threads: rayon::current_num_threads().max(1),
            rows: 0,
            noisy: 0,
            segments: Vec::new(),
            tasks: Vec::new(),
            input: Vec::new(),
            input_act: Vec::new(),
            norms: vec![NormCache::default(); config.num_blocks + 1],
            hidden: vec![Vec::new(); config.num_blocks],
            stream: Vec::new(),
            logits: Vec::new(),
            layers: vec![LayerCache::default(); layers],
            scratch_in: Vec::new(),
            scratch_out: Vec::new(),
            grad_stream: Vec::new(),
            grad_scratch: Vec::new(),
            grad_hidden: Vec::new(),
            grad_input: Vec::new(),
        })
    }

    fn bind(&mut self, net: &BroNet) -> Result<Indices> {
        if net.config() != &self.config {
            return Err(NnError::Config(
                "residual BroNet CPU path: the network's config differs from the engine's".into(),
            ));
        }
        if self.indices.is_none() {
            self.indices = Some(Indices::of(net)?);
        }
        Ok(self.indices.clone().expect("set above"))
    }

    /// Logits `[rows, actions × atoms]` of `net` for `obs` (`rows × obs_dim`, row-major, rows
    /// grouped by task as `segments` say: consecutive, from row 0, covering every row), with
    /// the Flipout draw `flipout` on its first `flipout.rows` rows (which must end a segment)
    /// and the posterior means θ + μ_m elsewhere. Keeps what [`ResidualBroNetCpu::backward`]
    /// needs.
    pub fn forward(
        &mut self,
        net: &BroNet,
        obs: &[f32],
        segments: &[TaskSegment],
        flipout: Option<HostFlipout<'_>>,
    ) -> Result<&[f32]> {
        let idx = self.bind(net)?;
        let rows = self.check_pass(obs, segments, flipout.as_ref(), &idx)?;
        self.resize(rows);
        self.segments.clear();
        self.segments.extend_from_slice(segments);
        self.tasks.clear();
        for s in segments {
            self.tasks.extend(std::iter::repeat_n(s.task as u32, s.len));
        }
        self.noisy = flipout.map_or(0, |f| f.rows);
        net.params()
            .with_host_slices(|w| {
                self.prepare_weights(w, &idx, flipout.as_ref());
                self.forward_on(w, &idx, obs, flipout.as_ref());
            })
            .ok_or_else(off_cpu)?;
        Ok(&self.logits[..rows * self.config.output_width()])
    }

    /// Checks a forward pass's inputs; returns its rows.
    fn check_pass(
        &self,
        obs: &[f32],
        segments: &[TaskSegment],
        flipout: Option<&HostFlipout<'_>>,
        idx: &Indices,
    ) -> Result<usize> {
        let c = &self.config;
        let bad = |msg: String| Err(NnError::Config(format!("residual BroNet CPU path: {msg}")));
        let mut rows = 0;
        for s in segments {
            if s.start != rows || s.task >= c.num_tasks {
                return bad(format!(
                    "segment {s:?}: segments must be consecutive from row 0, tasks below {}",
                    c.num_tasks
                ));
            }
            rows += s.len;
        }
        if obs.len() != rows * c.obs_dim {
            return bad(format!("{} observation values for {rows} rows", obs.len()));
        }
        if let Some(f) = flipout {
            let ends_segment = f.rows == 0 || segments.iter().any(|s| s.start + s.len == f.rows);
            let layers = &idx.layers;
            let shapes_ok = c.task_residuals == Some(ResidualMode::Variational)
                && f.eps.len() == layers.len()
                && f.signs.len() == layers.len()
                && layers.iter().zip(f.eps).zip(f.signs).all(|((l, e), sg)| {
                    e.len() == c.num_tasks * l.in_dim * l.out_dim
                        && sg.s.len() == f.rows * l.in_dim
                        && sg.r.len() == f.rows * l.out_dim
                });
            if !ends_segment || !shapes_ok {
                return bad(format!(
                    "a Flipout draw for {} rows that does not fit the network or the segments",
                    f.rows
                ));
            }
        }
        Ok(rows)
    }

    fn resize(&mut self, rows: usize) {
        let (h, d_in, out) = (
            self.config.hidden_dim,
            self.config.input_width(),
            self.config.output_width(),
        );
        let widest = d_in.max(h).max(out);
        let grow = |v: &mut Vec<f32>, n: usize| {
            if v.len() < n {
                v.resize(n, 0.0);
            }
        };
        self.rows = rows;
        grow(&mut self.input, rows * d_in);
        grow(&mut self.input_act, rows * h);
        grow(&mut self.stream, rows * h);
        for n in &mut self.norms {
            grow(&mut n.xhat, rows * h);
            grow(&mut n.rstd, rows);
            grow(&mut n.out, rows * h);
        }
        for v in &mut self.hidden {
            grow(v, rows * h);
        }
        grow(&mut self.logits, rows * out);
        grow(&mut self.scratch_in, rows * widest);
        grow(&mut self.scratch_out, rows * widest);
        grow(&mut self.grad_stream, rows * h);
        grow(&mut self.grad_scratch, rows * h);
        grow(&mut self.grad_hidden, rows * h);
        grow(&mut self.grad_input, rows * d_in);
    }

    /// θ + μ_m for the tasks of this pass and, with a draw, σ, sigmoid(ρ) and V of every task.
    fn prepare_weights(&mut self, w: &[&[f32]], idx: &Indices, flipout: Option<&HostFlipout<'_>>) {
        let tasks = self.config.num_tasks;
        let mut present = vec![false; tasks];
        for s in &self.segments {
            present[s.task] |= s.len > 0;
        }
        for (k, (l, cache)) in idx.layers.iter().zip(&mut self.layers).enumerate() {
            let n = l.in_dim * l.out_dim;
            cache.mean.resize(tasks, Vec::new());
            for (t, mean) in cache.mean.iter_mut().enumerate() {
                if present[t] {
                    mean.resize(n, 0.0);
                    add_into(mean, w[l.weight], w[l.mu[t]]);
                }
            }
            let (Some(f), Some(rho)) = (flipout, &l.rho) else {
                continue;
            };
            for list in [&mut cache.sigma, &mut cache.sigmoid, &mut cache.noise] {
                list.resize(tasks, Vec::new());
                list.iter_mut().for_each(|v| v.resize(n, 0.0));
            }
            for t in 0..tasks {
                scaled_softplus(
                    w[rho[t]],
                    &f.eps[k][t * n..(t + 1) * n],
                    &mut cache.sigma[t],
                    &mut cache.sigmoid[t],
                    &mut cache.noise[t],
                );
            }
        }
    }

    fn forward_on(
        &mut self,
        w: &[&[f32]],
        idx: &Indices,
        obs: &[f32],
        flipout: Option<&HostFlipout<'_>>,
    ) {
        let c = self.config;
        let (rows, h, d_in) = (self.rows, c.hidden_dim, self.config.input_width());
        for (i, &task) in self.tasks.iter().enumerate() {
            let row = &mut self.input[i * d_in..(i + 1) * d_in];
            row[..c.obs_dim].copy_from_slice(&obs[i * c.obs_dim..(i + 1) * c.obs_dim]);
            if let Some(e) = idx.embedding {
                let e_dim = c.embedding_dim;
                let code = &w[e][task as usize * e_dim..(task as usize + 1) * e_dim];
                row[c.obs_dim..].copy_from_slice(code);
            }
        }
        let mut pass = LayerPass {
            w,
            segments: &self.segments,
            rows,
            noisy: self.noisy,
            threads: self.threads,
            scratch_in: &mut self.scratch_in,
            scratch_out: &mut self.scratch_out,
        };
        let nl = idx.layers.len();
        let at = |k: usize| (&idx.layers[k], &self.layers[k], flipout.map(|f| (f, k)));
        let act = &mut self.input_act[..rows * h];
        pass.forward(at(0), &self.input[..rows * d_in], act);
        kernels::relu(act);
        let stream = &mut self.stream[..rows * h];
        stream.copy_from_slice(act);
        for b in 0..c.num_blocks {
            let (g, beta) = idx.norms[b];
            let n = &mut self.norms[b];
            kernels::layer_norm(
                stream,
                w[g],
                w[beta],
                LN_EPS as f32,
                &mut n.out[..rows * h],
                &mut n.xhat[..rows * h],
                &mut n.rstd[..rows],
            );
            let hidden = &mut self.hidden[b][..rows * h];
            pass.forward(at(1 + 2 * b), &n.out[..rows * h], hidden);
            kernels::relu(hidden);
            // x + fc2(y): computed aside, then added onto the residual stream.
            let r = &mut self.grad_scratch[..rows * h];
            pass.forward(at(2 + 2 * b), hidden, r);
            add_assign(stream, r);
        }
        let (g, beta) = idx.norms[c.num_blocks];
        let n = &mut self.norms[c.num_blocks];
        kernels::layer_norm(
            stream,
            w[g],
            w[beta],
            LN_EPS as f32,
            &mut n.out[..rows * h],
            &mut n.xhat[..rows * h],
            &mut n.rstd[..rows],
        );
        let out = self.config.num_actions * self.config.num_atoms;
        pass.forward(
            at(nl - 1),
            &n.out[..rows * h],
            &mut self.logits[..rows * out],
        );
    }

    /// Gradients of `Σ_rows ⟨dlogits, logits⟩` over `net`'s variables for the first rows of
    /// the last [`ResidualBroNetCpu::forward`] (of the same `net`): the noisy rows with the
    /// same `flipout` draw, or (no draw) rows that end a segment; each task once among them.
    /// `dlogits` is `[rows, actions × atoms]`; `grads` is overwritten, one vector per variable
    /// in store order.
    pub fn backward(
        &mut self,
        net: &BroNet,
        dlogits: &[f32],
        flipout: Option<HostFlipout<'_>>,
        grads: &mut HostGradients,
    ) -> Result<()> {
        let idx = self.bind(net)?;
        let out = self.config.output_width();
        let rows = dlogits.len() / out.max(1);
        let ends_segment = rows == 0 || self.segments.iter().any(|s| s.start + s.len == rows);
        let mut seen = vec![false; self.config.num_tasks];
        let distinct = self
            .segments
            .iter()
            .filter(|s| s.start + s.len <= rows)
            .all(|s| !std::mem::replace(&mut seen[s.task], true));
        let noise_ok = match flipout {
            Some(f) => f.rows == rows && self.noisy == rows,
            None => self.noisy == 0,
        };
        if dlogits.len() != rows * out
            || rows > self.rows
            || !ends_segment
            || !distinct
            || !noise_ok
        {
            return Err(NnError::Config(format!(
                "residual BroNet CPU backward: {} output gradients do not fit the last forward",
                dlogits.len()
            )));
        }
        let params = net.params();
        grads.resize(params.len(), Vec::new());
        for (g, (_, v)) in grads.iter_mut().zip(params.named_vars()) {
            g.resize(v.elem_count(), 0.0);
        }
        params
            .with_host_slices(|w| self.backward_on(w, &idx, dlogits, rows, flipout.as_ref(), grads))
            .ok_or_else(off_cpu)
    }

    fn backward_on(
        &mut self,
        w: &[&[f32]],
        idx: &Indices,
        dlogits: &[f32],
        rows: usize,
        flipout: Option<&HostFlipout<'_>>,
        grads: &mut HostGradients,
    ) {
        let c = self.config;
        let (h, d_in) = (c.hidden_dim, self.config.input_width());
        let segments: Vec<TaskSegment> = self
            .segments
            .iter()
            .copied()
            .filter(|s| s.start + s.len <= rows)
            .collect();
        let mut pass = LayerPass {
            w,
            segments: &segments,
            rows,
            noisy: self.noisy,
            threads: self.threads,
            scratch_in: &mut self.scratch_in,
            scratch_out: &mut self.scratch_out,
        };
        let nl = idx.layers.len();
        let at = |k: usize| (&idx.layers[k], &self.layers[k], flipout.map(|f| (f, k)));
        let scratch = &mut self.grad_scratch[..rows * h];
        let fin = &self.norms[c.num_blocks];
        pass.backward(
            at(nl - 1),
            &fin.out[..rows * h],
            dlogits,
            grads,
            Some(&mut *scratch),
        );
        let stream = &mut self.grad_stream[..rows * h];
        let (g, beta) = idx.norms[c.num_blocks];
        {
            let (dg, db) = two_mut(grads, g, beta);
            dg.fill(0.0);
            db.fill(0.0);
            kernels::layer_norm_backward(
                scratch,
                &fin.xhat[..rows * h],
                &fin.rstd[..rows],
                w[g],
                stream,
                false,
                dg,
                db,
            );
        }
        for b in (0..c.num_blocks).rev() {
            let hidden = &self.hidden[b][..rows * h];
            let hidden_grad = &mut self.grad_hidden[..rows * h];
            pass.backward(
                at(2 + 2 * b),
                hidden,
                stream,
                grads,
                Some(&mut *hidden_grad),
            );
            kernels::relu_backward(hidden_grad, hidden);
            let n = &self.norms[b];
            pass.backward(
                at(1 + 2 * b),
                &n.out[..rows * h],
                hidden_grad,
                grads,
                Some(&mut *scratch),
            );
            let (g, beta) = idx.norms[b];
            let (dg, db) = two_mut(grads, g, beta);
            dg.fill(0.0);
            db.fill(0.0);
            kernels::layer_norm_backward(
                scratch,
                &n.xhat[..rows * h],
                &n.rstd[..rows],
                w[g],
                stream,
                true,
                dg,
                db,
            );
        }
        kernels::relu_backward(stream, &self.input_act[..rows * h]);
        let grad_input = &mut self.grad_input[..rows * d_in];
        let want_dx = idx.embedding.is_some();
        pass.backward(
            at(0),
            &self.input[..rows * d_in],
            stream,
            grads,
            want_dx.then_some(grad_input),
        );
        if let Some(e) = idx.embedding {
            let e_dim = c.embedding_dim;
            let g = &mut grads[e];
            g.fill(0.0);
            for (i, &task) in self.tasks[..rows].iter().enumerate() {
                let dst = &mut g[task as usize * e_dim..(task as usize + 1) * e_dim];
                let src = &self.grad_input[i * d_in + c.obs_dim..(i + 1) * d_in];
                dst.iter_mut().zip(src).for_each(|(d, v)| *d += v);
            }
        }
    }

    /// Adds the gradient of `scale · Σ_layers,tasks penalty` to `grads` (the variables' store
    /// order): variational, the closed-form KL's `μ/σ_p²` and `(σ/σ_p² − 1/σ) · sigmoid(ρ)` at
    /// the ρ of the last noisy [`ResidualBroNetCpu::forward`]; `l2`, `μ/σ_p²`.
    pub fn add_penalty_gradient(
        &mut self,
        net: &BroNet,
        sigma_prior: f64,
        scale: f64,
        grads: &mut HostGradients,
    ) -> Result<()> {
        let idx = self.bind(net)?;
        if grads.len() != net.params().len() {
            return Err(NnError::Config(
                "residual BroNet CPU path: penalty gradients need a full gradient set".into(),
            ));
        }
        let variational = self.config.task_residuals == Some(ResidualMode::Variational);
        if variational
            && self
                .layers
                .iter()
                .any(|l| l.sigma.len() != self.config.num_tasks)
        {
            return Err(NnError::Config(
                "residual BroNet CPU path: the KL gradient needs a noisy forward first".into(),
            ));
        }
        let sp2 = (sigma_prior * sigma_prior) as f32;
        let (mu_coef, g) = ((scale / (sigma_prior * sigma_prior)) as f32, scale as f32);
        net.params()
            .with_host_slices(|w| {
                for (l, cache) in idx.layers.iter().zip(&self.layers) {
                    for (t, &m) in l.mu.iter().enumerate() {
                        add_scaled(&mut grads[m], mu_coef, w[m]);
                        let Some(rho) = &l.rho else { continue };
                        let (sigma, sig) = (&cache.sigma[t], &cache.sigmoid[t]);
                        add_kl_rho_gradient(&mut grads[rho[t]], g, sp2, sigma, sig);
                    }
                }
            })
            .ok_or_else(off_cpu)
    }
}

fn off_cpu() -> NnError {
    NnError::Config("residual BroNet CPU path: weights are not on the CPU".into())
}

/// What every layer of one pass shares: the weights, the task segments, the buffers.
struct LayerPass<'a, 'w> {
    w: &'a [&'w [f32]],
    segments: &'a [TaskSegment],
    rows: usize,
    /// Leading rows with Flipout noise.
    noisy: usize,
    threads: usize,
    scratch_in: &'a mut Vec<f32>,
    scratch_out: &'a mut Vec<f32>,
}

/// One layer of a pass: its variables, its cache and (noisy) the draw with the layer's index.
type LayerAt<'a> = (
    &'a LayerIndices,
    &'a LayerCache,
    Option<(&'a HostFlipout<'a>, usize)>,
);

impl LayerPass<'_, '_> {
    /// `out = x W_m (+ ((x ⊙ s) V_m) ⊙ r on the noisy rows) + b`, per segment.
    fn forward(&mut self, (l, cache, flipout): LayerAt<'_>, x: &[f32], out: &mut [f32]) {
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
    fn backward(
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
                scale_by_product(g, eps, &cache.sigmoid[task]);
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

// The elementwise passes below run over every adapter weight of every task (1.4 M values
// for the default BroNet) or over a pass's activations; compiled for AVX2 and AVX-512 as well,
// picked at run time. Each is the same IEEE operation per element at any width, so the bits
// do not depend on the CPU.

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

/// `out += c · a` elementwise.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512dq+avx512vl+avx2+fma",
    "x86_64+avx2+fma"
))]
fn add_scaled(out: &mut [f32], c: f32, a: &[f32]) {
    for (o, a) in out.iter_mut().zip(a) {
        *o += c * a;
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

/// `out ⊙= a ⊙ b` elementwise.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512dq+avx512vl+avx2+fma",
    "x86_64+avx2+fma"
))]
fn scale_by_product(out: &mut [f32], a: &[f32], b: &[f32]) {
    for (o, (a, b)) in out.iter_mut().zip(a.iter().zip(b)) {
        *o *= a * b;
    }
}

/// The closed-form KL's gradient through ρ, `out += g · (σ/σp² − 1/σ) · sigmoid(ρ)`.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512dq+avx512vl+avx2+fma",
    "x86_64+avx2+fma"
))]
fn add_kl_rho_gradient(out: &mut [f32], g: f32, sp2: f32, sigma: &[f32], sig: &[f32]) {
    for (o, (s, q)) in out.iter_mut().zip(sigma.iter().zip(sig)) {
        *o += g * (s / sp2 - 1.0 / s) * q;
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
    use crate::task_residual::{
        draw_host_signs, draw_signs, group_by_task, sigmoid_f32, softplus_f32,
    };
    use crate::{Device, ResidualNoise, ResidualWeights, Tensor};
    use rand::{rngs::StdRng, Rng, SeedableRng};

    const OUT: usize = 4 * 5;

    fn small(mode: ResidualMode) -> BroNetConfig {
        BroNetConfig {
            embedding_dim: 6,
            hidden_dim: 24,
            num_blocks: 2,
            num_atoms: 5,
            task_residuals: Some(mode),
            ..BroNetConfig::default()
        }
    }

    /// A network whose residuals are not at their initial values: random μ, ρ around σ ≈ 0.05.
    fn net(mode: ResidualMode, seed: u64) -> BroNet {
        let net = BroNet::new(small(mode), &mut StdRng::seed_from_u64(seed), &Device::Cpu).unwrap();
        let mut rng = StdRng::seed_from_u64(seed + 1);
        for (name, v) in net.params().named_vars() {
            let (lo, hi) = if name.contains("residual_rho") {
                (-4.0, -2.0)
            } else if name.contains("residual_mu") {
                (-0.2, 0.2)
            } else {
                continue;
            };
            crate::params::update_host(v, |w| {
                w.iter_mut().for_each(|x| *x = rng.random_range(lo..hi))
            })
            .unwrap();
        }
        net
    }

    fn rel(a: &[f32], b: &[f32]) -> f64 {
        assert_eq!(a.len(), b.len());
        let d: f64 = a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum();
        let n: f64 = b.iter().map(|y| f64::from(*y).powi(2)).sum();
        (d / n.max(1e-30)).sqrt()
    }

    /// `rows` observations and task ids (batch order), output gradients (grouped order).
    fn inputs(rows: usize, seed: u64) -> (Vec<f32>, Vec<u32>, Vec<f32>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let obs = (0..rows * 8).map(|_| rng.random_range(-2.0..2.0)).collect();
        let tasks = (0..rows).map(|_| rng.random_range(0..3u32)).collect();
        let dl = (0..rows * OUT)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        (obs, tasks, dl)
    }

    fn grouped(v: &[f32], order: &[u32], width: usize) -> Vec<f32> {
        order
            .iter()
            .flat_map(|&i| v[i as usize * width..(i as usize + 1) * width].to_vec())
            .collect()
    }

    /// On a fixed batch and draw, the host logits of `[s; s′]` and every gradient of
    /// Σ ⟨dlogits, logits(s)⟩ + scale · penalty equal candle's.
    fn matches_candle(mode: ResidualMode) {
        let net = net(mode, 3);
        let (rows, scale, sigma_prior) = (11, 0.7, 0.1);
        let (obs, tasks, dl) = inputs(rows, 4);
        let (next_obs, _, _) = inputs(rows, 5);
        let (order, segs) = group_by_task(&tasks);
        let layers = net.residual_layers();
        let noise = ResidualNoise::draw(&layers, &mut StdRng::seed_from_u64(6)).unwrap();
        let mut rng = StdRng::seed_from_u64(7);
        let signs = draw_signs(&layers, &mut rng, rows).unwrap();
        let host_signs = draw_host_signs(&layers, &mut StdRng::seed_from_u64(7), rows);

        // candle: batch order in and out, the draw on s, the means on s′.
        let dev = Device::Cpu;
        let o = Tensor::from_slice(&obs, (rows, 8), &dev).unwrap();
        let o2 = Tensor::from_slice(&next_obs, (rows, 8), &dev).unwrap();
        let t = Tensor::from_slice(&tasks, rows, &dev).unwrap();
        let weights = match mode {
            ResidualMode::Variational => ResidualWeights::Sampled {
                noise: &noise,
                signs: Some(&signs),
            },
            ResidualMode::L2 => ResidualWeights::Mean,
        };
        let logits = net.forward_with(&o, &t, weights).unwrap();
        let next = net.forward(&o2, &t).unwrap();
        let mut dl_batch = vec![0.0f32; rows * OUT];
        for (p, &i) in order.iter().enumerate() {
            let i = i as usize;
            dl_batch[i * OUT..(i + 1) * OUT].copy_from_slice(&dl[p * OUT..(p + 1) * OUT]);
        }
        let w = Tensor::from_slice(&dl_batch, (rows, 4, 5), &dev).unwrap();
        let mut loss: Tensor = (logits.clone() * w).unwrap().sum_all().unwrap();
        for l in &layers {
            let p = l.penalty(sigma_prior).unwrap().sum_all().unwrap();
            loss = (loss + (p * scale).unwrap()).unwrap();
        }
        let want = loss.backward().unwrap();

        // Host: [s; s′] grouped, one pass.
        let mut x = grouped(&obs, &order, 8);
        x.extend(grouped(&next_obs, &order, 8));
        let mut segments = segs.clone();
        segments.extend(segs.iter().map(|s| TaskSegment {
            start: s.start + rows,
            ..*s
        }));
        let mut cpu = ResidualBroNetCpu::new(*net.config()).unwrap();
        let mut grads = Vec::new();
        noise
            .with_host_slices(|eps| {
                let flipout = (mode == ResidualMode::Variational).then_some(HostFlipout {
                    eps,
                    signs: &host_signs,
                    rows,
                });
                let got = cpu.forward(&net, &x, &segments, flipout).unwrap().to_vec();
                let want_s = grouped(
                    &logits.flatten_all().unwrap().to_vec1().unwrap(),
                    &order,
                    OUT,
                );
                let want_next =
                    grouped(&next.flatten_all().unwrap().to_vec1().unwrap(), &order, OUT);
                assert!(rel(&got[..rows * OUT], &want_s) < 1e-5, "logits of s");
                assert!(rel(&got[rows * OUT..], &want_next) < 1e-5, "logits of s′");
                cpu.backward(&net, &dl, flipout, &mut grads).unwrap();
            })
            .unwrap();
        cpu.add_penalty_gradient(&net, sigma_prior, scale, &mut grads)
            .unwrap();
        for ((name, var), got) in net.params().named_vars().iter().zip(&grads) {
            let w: Vec<f32> = want.get(var).map_or_else(
                || vec![0.0; var.elem_count()],
                |g| g.flatten_all().unwrap().to_vec1().unwrap(),
            );
            let r = rel(got, &w);
            assert!(r < 1e-5, "{mode:?}: {name}: relative error {r}");
            assert!(got.iter().any(|g| *g != 0.0), "{name} gets a gradient");
        }
    }

    #[test]
    fn variational_logits_and_every_gradient_match_candle() {
        matches_candle(ResidualMode::Variational);
    }

    #[test]
    fn l2_logits_and_every_gradient_match_candle() {
        matches_candle(ResidualMode::L2);
    }

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

    #[test]
    fn host_signs_are_candles_signs() {
        let net = net(ResidualMode::Variational, 1);
        let layers = net.residual_layers();
        let tensors = draw_signs(&layers, &mut StdRng::seed_from_u64(2), 5).unwrap();
        let host = draw_host_signs(&layers, &mut StdRng::seed_from_u64(2), 5);
        assert_eq!(tensors.len(), host.len());
        for (t, h) in tensors.iter().zip(&host) {
            let dense = t.to_host();
            assert_eq!(dense.s, h.s);
            assert_eq!(dense.r, h.r);
            assert!(h.s.contains(&1.0) && h.s.contains(&-1.0));
        }
    }

    #[test]
    fn bad_inputs_are_errors() {
        let net = net(ResidualMode::Variational, 1);
        let mut cpu = ResidualBroNetCpu::new(*net.config()).unwrap();
        let seg = |task, start, len| TaskSegment { task, start, len };
        assert!(
            cpu.forward(&net, &[0.0; 16], &[seg(3, 0, 2)], None)
                .is_err(),
            "task 3"
        );
        assert!(
            cpu.forward(&net, &[0.0; 16], &[seg(0, 1, 2)], None)
                .is_err(),
            "row 1"
        );
        assert!(
            cpu.forward(&net, &[0.0; 8], &[seg(0, 0, 2)], None).is_err(),
            "short obs"
        );
        let eps: Vec<&[f32]> = Vec::new();
        let flipout = HostFlipout {
            eps: &eps,
            signs: &[],
            rows: 2,
        };
        assert!(cpu
            .forward(&net, &[0.0; 16], &[seg(0, 0, 2)], Some(flipout))
            .is_err());
        cpu.forward(&net, &[0.0; 16], &[seg(0, 0, 1), seg(1, 1, 1)], None)
            .unwrap();
        let mut grads = Vec::new();
        assert!(
            cpu.backward(&net, &[0.0; 3 * OUT], None, &mut grads)
                .is_err(),
            "3 rows"
        );
        cpu.backward(&net, &[0.0; 2 * OUT], None, &mut grads)
            .unwrap();
        assert!(
            cpu.add_penalty_gradient(&net, 0.1, 1.0, &mut grads)
                .is_err(),
            "no noisy forward yet"
        );
        assert!(!ResidualBroNetCpu::supports(&BroNetConfig::default()));
        assert!(ResidualBroNetCpu::new(BroNetConfig::default()).is_err());
    }
}
