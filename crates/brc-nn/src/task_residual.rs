//! VarShare's task-residual linear layer: `y = x(θ + φ_m) + b` for a row of task `m`, with θ
//! and b shared by all tasks and a residual φ_m per task.
//!
//! * `variational` mode: the posterior q(φ_m) = N(μ_m, diag σ_m²), σ_m = softplus(ρ_m), against
//!   the prior N(0, σ_prior² I). A training forward pass samples φ_m with **Flipout** (Wen et
//!   al. 2018): one ε ~ N(0, I) per layer and update, V_m = σ_m ⊙ ε_m, and per example random
//!   signs s ∈ {±1}^in, r ∈ {±1}^out, so `y = x(θ + μ_m) + ((x ⊙ s) V_m) ⊙ r + b` gives every
//!   row of a batch its own decorrelated perturbation from the one draw.
//! * `l2` mode (the ablation): φ_m = μ_m deterministic, penalised by Σ μ²/(2σ_prior²) — the
//!   μ-part of the KL, so β and σ_prior mean the same in both modes.
//!
//! Rows of a mixed batch use their own task's μ_m and V_m: the caller groups the rows by task
//! once per network pass ([`TaskRows`]); every layer then runs one matrix product per task
//! present on a contiguous slice of rows (not one full-batch product per task), and the
//! network puts the rows back in their order at the end. Every random draw comes from the
//! caller's RNG.
//!
//! Variables: `{name}.weight` `[in, out]` (θ) and `{name}.bias` `[out]` as a plain
//! [`crate::layers::Linear`] has them, `{name}.residual_mu.{m}` `[in, out]` and (variational
//! only) `{name}.residual_rho.{m}` `[in, out]` per task m — one variable per task, so a
//! task's gradient is exactly its own size (slices of one `[tasks, in, out]` variable would
//! give every slice's backward a full-size, mostly-zero gradient).

use crate::gaussian::fill_standard_normal;
use crate::init::{kaiming_std, normal, uniform, xavier_bound, WeightInit};
use crate::{ops, NnError, ParamStore, Result};
use candle_core::{Device, Tensor, Var};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// The residuals' form (`agent.varshare.mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResidualMode {
    /// Gaussian posterior per task, sampled with Flipout, KL to a zero-mean prior.
    #[default]
    Variational,
    /// Deterministic residuals with an L2 penalty (no σ).
    L2,
}

impl ResidualMode {
    /// The name used in configs.
    pub fn name(self) -> &'static str {
        match self {
            ResidualMode::Variational => "variational",
            ResidualMode::L2 => "l2",
        }
    }
}

/// `ρ = ln(e^σ − 1)`, the softplus inverse: the ρ that gives the posterior scale `sigma`.
pub fn rho_for_sigma(sigma: f64) -> f64 {
    sigma.exp_m1().ln()
}

/// One task's rows of a batch grouped by task: `start..start + len` of the grouped order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskSegment {
    /// The task id.
    pub task: usize,
    /// First grouped row.
    pub start: usize,
    /// Number of rows.
    pub len: usize,
}

/// The rows of a batch grouped by task (a stable sort), with the permutations into and out of
/// the grouped order (`None` when the rows already are grouped).
#[derive(Debug, Clone)]
pub struct TaskRows {
    segments: Vec<TaskSegment>,
    rows: usize,
    order: Option<Tensor>,
    inverse: Option<Tensor>,
}

impl TaskRows {
    /// Groups the rows of `tasks` (one task id per row).
    pub fn group(tasks: &[u32], device: &Device) -> Result<Self> {
        let (order, segments) = group_by_task(tasks);
        let sorted = order.iter().enumerate().all(|(p, &i)| p == i as usize);
        let (order, inverse) = if sorted {
            (None, None)
        } else {
            let mut inverse = vec![0u32; order.len()];
            for (pos, &i) in order.iter().enumerate() {
                inverse[i as usize] = pos as u32;
            }
            (
                Some(Tensor::from_vec(order, tasks.len(), device)?),
                Some(Tensor::from_vec(inverse, tasks.len(), device)?),
            )
        };
        Ok(Self {
            segments,
            rows: tasks.len(),
            order,
            inverse,
        })
    }

    /// The tasks' segments in the grouped order.
    pub fn segments(&self) -> &[TaskSegment] {
        &self.segments
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether there is no row.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// `x` (rows in batch order, first dimension) in the grouped order.
    pub fn to_grouped(&self, x: &Tensor) -> Result<Tensor> {
        Ok(match &self.order {
            Some(o) => x.index_select(o, 0)?,
            None => x.clone(),
        })
    }

    /// `y` (rows in the grouped order) back in batch order.
    pub fn to_batch_order(&self, y: &Tensor) -> Result<Tensor> {
        Ok(match &self.inverse {
            Some(i) => y.index_select(i, 0)?,
            None => y.clone(),
        })
    }
}

/// The rows of `tasks` grouped by task (a stable sort): the batch row of each grouped row,
/// and the tasks' segments in the grouped order ([`TaskRows`] on the host).
pub fn group_by_task(tasks: &[u32]) -> (Vec<u32>, Vec<TaskSegment>) {
    let mut order: Vec<u32> = (0..tasks.len() as u32).collect();
    order.sort_by_key(|&i| tasks[i as usize]);
    let mut segments: Vec<TaskSegment> = Vec::new();
    for (pos, &i) in order.iter().enumerate() {
        let task = tasks[i as usize] as usize;
        match segments.last_mut() {
            Some(s) if s.task == task => s.len += 1,
            _ => segments.push(TaskSegment {
                task,
                start: pos,
                len: 1,
            }),
        }
    }
    (order, segments)
}

/// One forward pass's Flipout signs of a layer: `s` `[rows, in]`, `r` `[rows, out]`, ±1.
#[derive(Debug, Clone)]
pub struct FlipoutSigns {
    s: Tensor,
    r: Tensor,
}

impl FlipoutSigns {
    /// The signs as host vectors.
    pub fn to_host(&self) -> HostSigns {
        let values = |t: &Tensor| {
            t.flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .unwrap_or_default()
        };
        HostSigns {
            s: values(&self.s),
            r: values(&self.r),
        }
    }
}

/// [`FlipoutSigns`] as host vectors (row-major), for the CPU path.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostSigns {
    /// Input signs `[rows, in]`.
    pub s: Vec<f32>,
    /// Output signs `[rows, out]`.
    pub r: Vec<f32>,
}

/// Which weights a task-residual layer uses.
#[derive(Debug, Clone, Copy)]
pub enum LayerWeights<'a> {
    /// θ alone: every task's residual off (the network all tasks start from).
    Shared,
    /// θ + μ_m, the posterior mean (evaluation; the whole of the `l2` mode).
    Mean,
    /// θ + μ_m + σ_m ⊙ ε_m (ε `[tasks, in, out]`), with Flipout signs per row when `signs` is
    /// given (training) and the draw itself otherwise (acting). `l2` layers ignore it.
    Sampled {
        /// The layer's ε.
        eps: &'a Tensor,
        /// The layer's signs for this pass's rows (grouped order).
        signs: Option<&'a FlipoutSigns>,
    },
}

/// What [`TaskResidualLinear::host_stats`] measures of one layer, per task.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerStats {
    /// The layer's name.
    pub name: String,
    /// Residual weights per task (`in × out`).
    pub weights_per_task: usize,
    /// The penalty per task: KL(q_m ‖ p) (variational) or Σ μ²/(2σ_prior²) (`l2`).
    pub penalty: Vec<f64>,
    /// Σ σ per task (0 in `l2` mode), for means over several layers.
    pub sigma_sum: Vec<f64>,
    /// μ entries per task that are non-zero and survive pruning at the threshold
    /// (`|μ| ≥ threshold`).
    pub kept: Vec<usize>,
}

/// A linear layer with shared θ, b and a residual per task (see the module docs).
#[derive(Debug, Clone)]
pub struct TaskResidualLinear {
    name: String,
    weight: Var,
    bias: Var,
    /// μ_m `[in, out]` per task: one variable each, so a task's gradient is exactly its size.
    mu: Vec<Var>,
    /// ρ_m `[in, out]` per task (variational only).
    rho: Option<Vec<Var>>,
    in_dim: usize,
    out_dim: usize,
    /// Sampled noise and KL by the fused CPU ops (where they apply); `false`: the
    /// composed tensor ops every device runs, the reference.
    fused: bool,
}

impl TaskResidualLinear {
    /// Registers the layer's variables in `store`: θ drawn per `init` from `rng` (the same
    /// draws as [`crate::layers::Linear::init`]), bias 0, μ = 0 (every task starts as the
    /// shared layer) and, variational, ρ = ln(e^σ_init − 1).
    #[allow(clippy::too_many_arguments)]
    pub fn init<R: Rng + ?Sized>(
        store: &mut ParamStore,
        rng: &mut R,
        name: &str,
        in_dim: usize,
        out_dim: usize,
        num_tasks: usize,
        init: WeightInit,
        mode: ResidualMode,
    ) -> Result<Self> {
        let n = in_dim * out_dim;
        let w = match init {
            WeightInit::KaimingNormal => normal(rng, kaiming_std(in_dim), n),
            WeightInit::XavierUniform => uniform(rng, xavier_bound(in_dim, out_dim), n),
        };
        store.insert_vec(&format!("{name}.weight"), w, (in_dim, out_dim))?;
        store.insert_vec(&format!("{name}.bias"), vec![0.0; out_dim], out_dim)?;
        for t in 0..num_tasks {
            store.insert_vec(
                &format!("{name}.residual_mu.{t}"),
                vec![0.0; n],
                (in_dim, out_dim),
            )?;
        }
        if mode == ResidualMode::Variational {
            let rho = rho_for_sigma(DEFAULT_SIGMA_INIT) as f32;
            for t in 0..num_tasks {
                store.insert_vec(
                    &format!("{name}.residual_rho.{t}"),
                    vec![rho; n],
                    (in_dim, out_dim),
                )?;
            }
        }
        Self::bind(store, name, in_dim, out_dim, num_tasks, mode)
    }

    /// Binds to existing variables, checking names and shapes.
    pub fn bind(
        store: &ParamStore,
        name: &str,
        in_dim: usize,
        out_dim: usize,
        num_tasks: usize,
        mode: ResidualMode,
    ) -> Result<Self> {
        let shape = [in_dim, out_dim];
        let per_task = |what: &str| -> Result<Vec<Var>> {
            (0..num_tasks)
                .map(|t| store.require(&format!("{name}.{what}.{t}"), &shape))
                .collect()
        };
        let rho = match mode {
            ResidualMode::Variational => Some(per_task("residual_rho")?),
            ResidualMode::L2 => None,
        };
        Ok(Self {
            name: name.to_owned(),
            weight: store.require(&format!("{name}.weight"), &shape)?,
            bias: store.require(&format!("{name}.bias"), &[out_dim])?,
            mu: per_task("residual_mu")?,
            rho,
            in_dim,
            out_dim,
            fused: true,
        })
    }

    /// The same layer (same variables) computing with the composed tensor ops only, as
    /// other devices do: the reference the fused CPU ops are tested against.
    pub fn with_composed_ops(&self) -> Self {
        Self {
            fused: false,
            ..self.clone()
        }
    }

    /// The layer's name (its variables' prefix).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Variational or `l2`.
    pub fn mode(&self) -> ResidualMode {
        if self.rho.is_some() {
            ResidualMode::Variational
        } else {
            ResidualMode::L2
        }
    }

    /// Number of tasks with a residual.
    pub fn num_tasks(&self) -> usize {
        self.mu.len()
    }

    /// Shared trainable scalars (θ and b).
    pub fn shared_params(&self) -> usize {
        self.in_dim * self.out_dim + self.out_dim
    }

    /// Trainable scalars of one task's residual (μ_m, and ρ_m when variational).
    pub fn adapter_params_per_task(&self) -> usize {
        self.in_dim * self.out_dim * if self.rho.is_some() { 2 } else { 1 }
    }

    /// Residual weights of one task (the entries of μ_m).
    pub fn weights_per_task(&self) -> usize {
        self.in_dim * self.out_dim
    }

    /// Task `task`'s μ (`[in, out]`).
    pub fn mu(&self, task: usize) -> Option<&Var> {
        self.mu.get(task)
    }

    /// Task `task`'s ρ (`[in, out]`; `None` in `l2` mode).
    pub fn rho(&self, task: usize) -> Option<&Var> {
        self.rho.as_ref().and_then(|r| r.get(task))
    }

    /// Sets every σ to `sigma` (ρ = ln(e^σ − 1)); nothing to do in `l2` mode.
    pub fn set_sigma(&self, sigma: f64) -> Result<()> {
        let value = rho_for_sigma(sigma);
        for rho in self.rho.iter().flatten() {
            rho.set(&rho.ones_like()?.affine(value, 0.0)?)?;
        }
        Ok(())
    }

    /// A fresh ε `[tasks, in, out]` ~ N(0, I): the counter-based draw
    /// ([`crate::gaussian`]) of one key taken from `rng`.
    pub fn draw_eps<R: Rng + ?Sized>(&self, rng: &mut R) -> Result<Tensor> {
        let n = self.num_tasks() * self.in_dim * self.out_dim;
        let mut eps = vec![0.0f32; n];
        fill_standard_normal(rng.next_u64(), &mut eps);
        Ok(Tensor::from_vec(
            eps,
            (self.num_tasks(), self.in_dim, self.out_dim),
            self.weight.device(),
        )?)
    }

    /// Fresh Flipout signs for a pass over `rows` rows, drawn from `rng`.
    pub fn draw_signs<R: Rng + ?Sized>(&self, rng: &mut R, rows: usize) -> Result<FlipoutSigns> {
        let dev = self.weight.device();
        let HostSigns { s, r } = self.draw_host_signs(rng, rows);
        Ok(FlipoutSigns {
            s: Tensor::from_vec(s, (rows, self.in_dim), dev)?,
            r: Tensor::from_vec(r, (rows, self.out_dim), dev)?,
        })
    }

    /// [`TaskResidualLinear::draw_signs`] on the host: the same draws from `rng`.
    pub fn draw_host_signs<R: Rng + ?Sized>(&self, rng: &mut R, rows: usize) -> HostSigns {
        let s = random_signs(rng, rows * self.in_dim);
        let r = random_signs(rng, rows * self.out_dim);
        HostSigns { s, r }
    }

    /// `x` `[rows, in]` in the grouped order of `rows` → `[rows, out]`, each task's rows with
    /// its own weights.
    pub fn forward(
        &self,
        x: &Tensor,
        rows: &TaskRows,
        weights: LayerWeights<'_>,
    ) -> Result<Tensor> {
        if x.dim(0)? != rows.len() {
            return Err(NnError::Config(format!(
                "{}: {} input rows, {} task ids",
                self.name,
                x.dim(0)?,
                rows.len()
            )));
        }
        let y = match weights {
            LayerWeights::Shared => x.matmul(&self.weight)?,
            LayerWeights::Mean | LayerWeights::Sampled { .. } => {
                let mut parts = Vec::with_capacity(rows.segments().len());
                for seg in rows.segments() {
                    parts.push(self.segment_forward(x, seg, weights)?);
                }
                match parts.len() {
                    1 => parts.pop().expect("one part"),
                    _ => Tensor::cat(&parts, 0)?,
                }
            }
        };
        ops::bias_add(&y, &self.bias)
    }

    fn task_error(&self, task: usize) -> NnError {
        NnError::Config(format!(
            "{}: task id {task} but residuals for {} tasks",
            self.name,
            self.num_tasks()
        ))
    }

    /// One task's rows through θ + μ_m (+ the sampled residual noise).
    fn segment_forward(
        &self,
        x: &Tensor,
        seg: &TaskSegment,
        weights: LayerWeights<'_>,
    ) -> Result<Tensor> {
        let mu = self
            .mu
            .get(seg.task)
            .ok_or_else(|| self.task_error(seg.task))?;
        let xm = x.narrow(0, seg.start, seg.len)?;
        let wm = self.weight.as_tensor().add(mu)?;
        let ym = xm.matmul(&wm)?;
        let (LayerWeights::Sampled { eps, signs }, Some(rho)) = (weights, &self.rho) else {
            return Ok(ym);
        };
        let (rho, eps) = (&rho[seg.task], eps.get(seg.task)?);
        let v = if self.fused && fused_ok(&[rho.as_tensor(), &eps]) {
            rho.as_tensor()
                .apply_op1_arc(std::sync::Arc::new(Box::new(ScaledSoftplus { eps })))?
        } else {
            (ops::softplus(rho)? * eps)?
        };
        let noise = match signs {
            Some(sg) => {
                let s = sg.s.narrow(0, seg.start, seg.len)?;
                let r = sg.r.narrow(0, seg.start, seg.len)?;
                ((xm * s)?.matmul(&v)? * r)?
            }
            None => xm.matmul(&v)?,
        };
        Ok((ym + noise)?)
    }

    /// σ = softplus(ρ) `[tasks, in, out]` (differentiable); `None` in `l2` mode.
    pub fn sigma(&self) -> Result<Option<Tensor>> {
        let Some(rho) = &self.rho else {
            return Ok(None);
        };
        let per_task = rho
            .iter()
            .map(|r| ops::softplus(r))
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(Tensor::stack(&per_task, 0)?))
    }

    /// The penalty per task `[tasks]`, differentiable: the closed-form
    /// KL(q_m ‖ p) = Σ [ln(σ_prior/σ) + (σ² + μ²)/(2σ_prior²) − ½] (variational) or
    /// Σ μ²/(2σ_prior²) (`l2`).
    pub fn penalty(&self, sigma_prior: f64) -> Result<Tensor> {
        let inv = 1.0 / (2.0 * sigma_prior * sigma_prior);
        let mut per_task = Vec::with_capacity(self.num_tasks());
        for (t, mu) in self.mu.iter().enumerate() {
            let mu_term = (mu.as_tensor().sqr()? * inv)?;
            let kl = match &self.rho {
                None => mu_term.sum_all()?,
                Some(rho) if self.fused && fused_ok(&[mu.as_tensor(), rho[t].as_tensor()]) => mu
                    .as_tensor()
                    .apply_op2_arc(&rho[t], std::sync::Arc::new(Box::new(Kl { sigma_prior })))?,
                Some(rho) => {
                    let sigma = ops::softplus(&rho[t])?;
                    let log_ratio = sigma.log()?.affine(-1.0, sigma_prior.ln())?;
                    ((log_ratio + (sigma.sqr()? * inv)?)? + mu_term)?
                        .affine(1.0, -0.5)?
                        .sum_all()?
                }
            };
            per_task.push(kl);
        }
        Ok(Tensor::stack(&per_task, 0)?)
    }

    /// Sets the μ entries with |μ| < `threshold` to 0 (threshold 0 changes nothing).
    pub fn prune(&self, threshold: f64) -> Result<()> {
        let t = threshold as f32;
        for mu in &self.mu {
            let values: Vec<f32> = mu
                .flatten_all()?
                .to_vec1::<f32>()?
                .into_iter()
                .map(|m| if m.abs() < t { 0.0 } else { m })
                .collect();
            mu.set(&Tensor::from_vec(values, mu.shape(), mu.device())?)?;
        }
        Ok(())
    }

    /// The layer's penalty, σ sums and surviving μ entries per task, computed on the host in
    /// f64 (diagnostics; no graph).
    pub fn host_stats(&self, sigma_prior: f64, threshold: f64) -> Result<LayerStats> {
        let tasks = self.num_tasks();
        let inv = 1.0 / (2.0 * sigma_prior * sigma_prior);
        let mut stats = LayerStats {
            name: self.name.clone(),
            weights_per_task: self.weights_per_task(),
            penalty: vec![0.0; tasks],
            sigma_sum: vec![0.0; tasks],
            kept: vec![0; tasks],
        };
        for t in 0..tasks {
            let mu = self.mu[t].flatten_all()?.to_vec1::<f32>()?;
            let rho = match &self.rho {
                Some(r) => Some(r[t].flatten_all()?.to_vec1::<f32>()?),
                None => None,
            };
            for (k, &m) in mu.iter().enumerate() {
                let m = f64::from(m);
                let mut p = m * m * inv;
                if let Some(rho) = &rho {
                    let s = f64::from(softplus_f32(rho[k]));
                    p += (sigma_prior / s).ln() + s * s * inv - 0.5;
                    stats.sigma_sum[t] += s;
                }
                stats.penalty[t] += p;
                if m != 0.0 && m.abs() >= threshold {
                    stats.kept[t] += 1;
                }
            }
        }
        Ok(stats)
    }
}

/// The σ every variational residual starts from unless set otherwise (the 10⁻³).
pub const DEFAULT_SIGMA_INIT: f64 = 1e-3;

/// `n` independent ±1 values, 64 from each draw of `rng`.
fn random_signs<R: Rng + ?Sized>(rng: &mut R, n: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let bits: u64 = rng.random();
        let take = (n - out.len()).min(64);
        out.extend((0..take).map(|k| if (bits >> k) & 1 == 1 { 1.0 } else { -1.0 }));
    }
    out
}

/// Which weights a VarShare network's forward pass uses, for all its residual layers.
#[derive(Debug, Clone, Copy)]
pub enum ResidualWeights<'a> {
    /// θ alone everywhere (`brc evaluate --shared-only`).
    Shared,
    /// The posterior means θ + μ_m (evaluation, targets).
    Mean,
    /// One draw per layer (`noise`), with per-row Flipout signs (`signs`, training) or
    /// without (acting on the draw itself).
    Sampled {
        /// ε of every variational layer, in layer order.
        noise: &'a ResidualNoise,
        /// Signs of every layer for this pass's rows, in layer order.
        signs: Option<&'a [FlipoutSigns]>,
    },
}

impl<'a> ResidualWeights<'a> {
    /// The weights of the network's `k`-th residual layer.
    pub fn layer(&self, k: usize) -> LayerWeights<'a> {
        match *self {
            ResidualWeights::Shared => LayerWeights::Shared,
            ResidualWeights::Mean => LayerWeights::Mean,
            ResidualWeights::Sampled { noise, signs } => match noise.eps.get(k) {
                Some(eps) => LayerWeights::Sampled {
                    eps,
                    signs: signs.and_then(|s| s.get(k)),
                },
                None => LayerWeights::Mean,
            },
        }
    }
}

/// One draw of ε for every variational layer of a network (empty for `l2` residuals).
#[derive(Debug, Clone, Default)]
pub struct ResidualNoise {
    eps: Vec<Tensor>,
}

impl ResidualNoise {
    /// ε for each of `layers` that is variational, drawn from `rng` in layer order.
    pub fn draw<R: Rng + ?Sized>(layers: &[&TaskResidualLinear], rng: &mut R) -> Result<Self> {
        let eps = layers
            .iter()
            .filter(|l| l.mode() == ResidualMode::Variational)
            .map(|l| l.draw_eps(rng))
            .collect::<Result<_>>()?;
        Ok(Self { eps })
    }

    /// Runs `f` on every variational layer's ε (`[tasks, in, out]`, layer order) as host
    /// slices, without copying; `None` when the draw is not contiguous `f32` on the CPU.
    pub fn with_host_slices<R>(&self, f: impl FnOnce(&[&[f32]]) -> R) -> Option<R> {
        let guards: Vec<_> = self.eps.iter().map(|e| e.storage_and_layout()).collect();
        let mut slices = Vec::with_capacity(guards.len());
        for (guard, layout) in &guards {
            let candle_core::Storage::Cpu(cpu) = &**guard else {
                return None;
            };
            slices.push(cpu_values(cpu, layout).ok()?);
        }
        Some(f(&slices))
    }
}

/// Flipout signs for every one of `layers` for a pass over `rows` rows, drawn from `rng`.
pub fn draw_signs<R: Rng + ?Sized>(
    layers: &[&TaskResidualLinear],
    rng: &mut R,
    rows: usize,
) -> Result<Vec<FlipoutSigns>> {
    layers.iter().map(|l| l.draw_signs(rng, rows)).collect()
}

/// [`draw_signs`] on the host: the same draws from `rng`, as vectors.
pub fn draw_host_signs<R: Rng + ?Sized>(
    layers: &[&TaskResidualLinear],
    rng: &mut R,
    rows: usize,
) -> Vec<HostSigns> {
    layers
        .iter()
        .map(|l| l.draw_host_signs(rng, rows))
        .collect()
}

/// A network with task-residual layers (BroNet, the Shared DQN MLP when VarShare is on).
pub trait TaskResidualNetwork {
    /// The residual layers in forward order (empty: a plain network).
    fn residual_layers(&self) -> Vec<&TaskResidualLinear>;
    /// The forward pass with the given residual weights (`forward` uses the means).
    fn forward_with(
        &self,
        obs: &Tensor,
        task: &Tensor,
        weights: ResidualWeights<'_>,
    ) -> Result<Tensor>;
}

/// A network's linear layer: plain, or with task residuals (the `k`-th of its network).
#[derive(Debug, Clone)]
pub(crate) enum Dense {
    Plain(crate::layers::Linear),
    Residual(TaskResidualLinear, usize),
}

/// What a network pass tells its residual layers: the grouped rows and the weights to use.
pub(crate) struct Pass<'a> {
    pub(crate) rows: &'a TaskRows,
    pub(crate) weights: ResidualWeights<'a>,
}

impl Dense {
    /// A fresh layer: plain when `residuals` is `None`, else with residuals for
    /// `residuals.1` tasks; `next` counts the network's residual layers.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn init<R: Rng + ?Sized>(
        store: &mut ParamStore,
        rng: &mut R,
        name: &str,
        in_dim: usize,
        out_dim: usize,
        init: WeightInit,
        residuals: Option<(ResidualMode, usize)>,
        next: &mut usize,
    ) -> Result<Self> {
        Ok(match residuals {
            None => Dense::Plain(crate::layers::Linear::init(
                store, rng, name, in_dim, out_dim, init,
            )?),
            Some((mode, tasks)) => {
                *next += 1;
                Dense::Residual(
                    TaskResidualLinear::init(store, rng, name, in_dim, out_dim, tasks, init, mode)?,
                    *next - 1,
                )
            }
        })
    }

    /// Binds to existing variables (see [`Dense::init`]).
    pub(crate) fn bind(
        store: &ParamStore,
        name: &str,
        in_dim: usize,
        out_dim: usize,
        residuals: Option<(ResidualMode, usize)>,
        next: &mut usize,
    ) -> Result<Self> {
        Ok(match residuals {
            None => Dense::Plain(crate::layers::Linear::bind(store, name, in_dim, out_dim)?),
            Some((mode, tasks)) => {
                *next += 1;
                Dense::Residual(
                    TaskResidualLinear::bind(store, name, in_dim, out_dim, tasks, mode)?,
                    *next - 1,
                )
            }
        })
    }

    /// `x` → the layer's output; residual layers need the pass (`None`: their means would
    /// need task rows, so it is an error).
    pub(crate) fn forward(&self, x: &Tensor, pass: Option<&Pass<'_>>) -> Result<Tensor> {
        match (self, pass) {
            (Dense::Plain(l), _) => l.forward(x),
            (Dense::Residual(l, k), Some(p)) => l.forward(x, p.rows, p.weights.layer(*k)),
            (Dense::Residual(l, _), None) => Err(NnError::Config(format!(
                "{}: a task-residual layer needs the batch's task rows",
                l.name()
            ))),
        }
    }

    /// The residual layer, if this is one.
    pub(crate) fn residual(&self) -> Option<&TaskResidualLinear> {
        match self {
            Dense::Plain(_) => None,
            Dense::Residual(l, _) => Some(l),
        }
    }

    /// Variables this layer adds to a plain linear layer's two.
    pub(crate) fn extra_vars(residuals: Option<(ResidualMode, usize)>) -> usize {
        match residuals {
            None => 0,
            Some((ResidualMode::Variational, tasks)) => 2 * tasks,
            Some((ResidualMode::L2, tasks)) => tasks,
        }
    }
}

/// Runs `f` (a network's pass on grouped rows) for `obs`/`task` in batch order: groups the
/// rows by task, runs, and puts the output's rows back.
pub(crate) fn grouped_pass(
    obs: &Tensor,
    task: &Tensor,
    weights: ResidualWeights<'_>,
    f: impl FnOnce(&Tensor, &Tensor, &Pass<'_>) -> Result<Tensor>,
) -> Result<Tensor> {
    let ids = task.to_vec1::<u32>()?;
    let rows = TaskRows::group(&ids, task.device())?;
    let obs = rows.to_grouped(obs)?;
    let task = rows.to_grouped(task)?;
    let out = f(
        &obs,
        &task,
        &Pass {
            rows: &rows,
            weights,
        },
    )?;
    rows.to_batch_order(&out)
}

/// Whether the fused CPU ops can take `tensors` (contiguous f32 on the CPU); other devices
/// use the composed tensor ops, which compute the same values.
fn fused_ok(tensors: &[&Tensor]) -> bool {
    tensors
        .iter()
        .all(|t| t.device().is_cpu() && t.dtype() == candle_core::DType::F32 && t.is_contiguous())
}

/// A contiguous f32 CPU storage's values.
fn cpu_values<'a>(
    s: &'a candle_core::CpuStorage,
    l: &candle_core::Layout,
) -> candle_core::Result<&'a [f32]> {
    let data = s.as_slice::<f32>()?;
    let (a, b) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("task residual op: not contiguous".into()))?;
    Ok(&data[a..b])
}

pub(crate) fn softplus_f32(x: f32) -> f32 {
    if x > 20.0 {
        x
    } else {
        x.exp().ln_1p()
    }
}

pub(crate) fn sigmoid_f32(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// `softplus(ρ_m) ⊙ ε_m` (V_m) in one pass, with its backward in one more (CPU): composed
/// from tensor ops it is ~13 full-size temporaries per layer, task and update.
struct ScaledSoftplus {
    /// ε_m `[in, out]`.
    eps: Tensor,
}

impl ScaledSoftplus {
    fn with_eps<R>(
        &self,
        f: impl FnOnce(&[f32]) -> candle_core::Result<R>,
    ) -> candle_core::Result<R> {
        let (guard, layout) = self.eps.storage_and_layout();
        let candle_core::Storage::Cpu(eps) = &*guard else {
            return Err(candle_core::Error::Msg(
                "task residual op: ε off the CPU".into(),
            ));
        };
        f(cpu_values(eps, layout)?)
    }
}

impl candle_core::CustomOp1 for ScaledSoftplus {
    fn name(&self) -> &'static str {
        "task-residual-scaled-softplus"
    }

    fn cpu_fwd(
        &self,
        s: &candle_core::CpuStorage,
        l: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let rho = cpu_values(s, l)?;
        let out = self.with_eps(|eps| {
            Ok(rho
                .iter()
                .zip(eps)
                .map(|(p, e)| softplus_f32(*p) * e)
                .collect::<Vec<f32>>())
        })?;
        Ok((candle_core::CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(
        &self,
        rho: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let g = grad.flatten_all()?.to_vec1::<f32>()?;
        let rho_v = rho.flatten_all()?.to_vec1::<f32>()?;
        let d = self.with_eps(|eps| {
            Ok(g.iter()
                .zip(&rho_v)
                .zip(eps)
                .map(|((g, p), e)| g * e * sigmoid_f32(*p))
                .collect::<Vec<f32>>())
        })?;
        Ok(Some(Tensor::from_vec(d, rho.shape(), rho.device())?))
    }
}

/// One task's KL(q_m ‖ p) over a layer's weights (a scalar) in one pass, with its backward
/// in one more (CPU); the composed version is [`TaskResidualLinear::penalty`]'s fallback.
struct Kl {
    sigma_prior: f64,
}

impl candle_core::CustomOp2 for Kl {
    fn name(&self) -> &'static str {
        "task-residual-kl"
    }

    fn cpu_fwd(
        &self,
        s1: &candle_core::CpuStorage,
        l1: &candle_core::Layout,
        s2: &candle_core::CpuStorage,
        l2: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let (mu, rho) = (cpu_values(s1, l1)?, cpu_values(s2, l2)?);
        let sp = self.sigma_prior as f32;
        let inv = 1.0 / (2.0 * sp * sp);
        let ln_sp = sp.ln();
        // f32 terms in 8 lanes, added up in f64.
        let mut lanes = [0f64; 8];
        for (i, (&m, &p)) in mu.iter().zip(rho).enumerate() {
            let s = softplus_f32(p);
            lanes[i % 8] += f64::from(ln_sp - s.ln() + (s * s + m * m) * inv - 0.5);
        }
        let sum: f64 = lanes.iter().sum();
        Ok((
            candle_core::CpuStorage::F32(vec![sum as f32]),
            candle_core::Shape::from(()),
        ))
    }

    fn bwd(
        &self,
        mu: &Tensor,
        rho: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let g = grad.to_scalar::<f32>()?;
        let mu_v = mu.flatten_all()?.to_vec1::<f32>()?;
        let rho_v = rho.flatten_all()?.to_vec1::<f32>()?;
        let sp2 = (self.sigma_prior * self.sigma_prior) as f32;
        let d_mu: Vec<f32> = mu_v.iter().map(|m| g * m / sp2).collect();
        let d_rho: Vec<f32> = rho_v
            .iter()
            .map(|&p| {
                let s = softplus_f32(p);
                g * (s / sp2 - 1.0 / s) * sigmoid_f32(p)
            })
            .collect();
        let dev = mu.device();
        Ok((
            Some(Tensor::from_vec(d_mu, mu.shape(), dev)?),
            Some(Tensor::from_vec(d_rho, rho.shape(), dev)?),
        ))
    }
}
