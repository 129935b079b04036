//! [`ResidualMlpCpu`]: the forward and backward pass of the Shared DQN MLP with VarShare's
//! task residuals ([`crate::SharedQMlp::new_varshare`]) on host buffers — [`crate::MlpCpu`]'s
//! sibling for a network with residuals, as [`crate::ResidualBroNetCpu`] is BroNet's.
//!
//! candle's graph builds every residual layer from per-task slices, weight sums, a softplus,
//! the noise product and the sign multiplications, each a fresh tensor forward and backward:
//! a VarShare Shared DQN update cost 18.6× a plain one (docs/performance.md). Here the rows
//! come grouped by task (contiguous [`TaskSegment`]s) and each of `fc1`, `fc2`, `fc3` runs as
//! [`crate::task_residual_cpu`] describes: the means θ + μ_m materialised once per pass, with
//! a training draw the Flipout term on every row of the pass.
//!
//! [`ResidualMlpCpu::add_penalty_gradient`] adds the closed-form gradient of the KL (or the
//! `l2` penalty). candle stays the reference: tests compare every value and gradient.

use crate::bronet_cpu::HostGradients;
use crate::kernels;
use crate::task_residual::{TaskResidualNetwork, TaskSegment};
use crate::task_residual_cpu::{
    self, flipout_fits, present_tasks, segment_rows, HostFlipout, LayerCache, LayerIndices,
    LayerPass,
};
use crate::{NnError, ResidualMode, Result, SharedQMlp};

const ENGINE: &str = "residual MLP CPU path";

/// Where the variables of a residual MLP sit in its store, and their sizes.
#[derive(Debug, Clone)]
struct Layout {
    /// `task_embedding.weight` and its width.
    embedding: Option<(usize, usize)>,
    /// `fc1`, `fc2`, …: the network's residual layer order.
    layers: Vec<LayerIndices>,
    mode: ResidualMode,
    tasks: usize,
    /// Variables in the store.
    vars: usize,
}

impl Layout {
    fn of(net: &SharedQMlp) -> Result<Self> {
        let Some(mode) = net.task_residuals() else {
            return Err(NnError::Config(format!(
                "{ENGINE}: the network has no task residuals (MlpCpu computes plain MLPs)"
            )));
        };
        let tasks = net.residual_layers().first().map_or(0, |l| l.num_tasks());
        let vars = net.params().named_vars();
        let names: Vec<&str> = vars.iter().map(|(n, _)| n.as_str()).collect();
        let find = |name: &str| names.iter().position(|n| *n == name);
        let embedding = find("task_embedding.weight").map(|i| (i, vars[i].1.dims()[1]));
        let mut layers = Vec::new();
        while let Some(w) = find(&format!("fc{}.weight", layers.len() + 1)) {
            let (prefix, dims) = (format!("fc{}", layers.len() + 1), vars[w].1.dims());
            let shape = (dims[0], dims[1]);
            layers.push(LayerIndices::find(
                &names, ENGINE, &prefix, shape, tasks, mode,
            )?);
        }
        if layers.is_empty() || tasks == 0 {
            return Err(NnError::Config(format!(
                "{ENGINE}: expected fc1.. layers with residuals for every task"
            )));
        }
        Ok(Self {
            embedding,
            layers,
            mode,
            tasks,
            vars: vars.len(),
        })
    }

    /// Whether `net` is laid out like this (a [`SharedQMlp`] of the same residual mode, task
    /// count and embedding has the same variables in the same order).
    fn fits(&self, net: &SharedQMlp) -> bool {
        net.task_residuals() == Some(self.mode)
            && net.is_task_blind() == self.embedding.is_none()
            && net.params().len() == self.vars
            && net.residual_layers().first().map(|l| l.num_tasks()) == Some(self.tasks)
    }

    fn obs_dim(&self) -> usize {
        self.layers[0].in_dim - self.embedding.map_or(0, |e| e.1)
    }

    fn out_dim(&self) -> usize {
        self.layers.last().expect("a layer").out_dim
    }
}

/// A residual-MLP forward/backward engine for one network layout, with its buffers.
#[derive(Debug, Clone)]
pub struct ResidualMlpCpu {
    layout: Layout,
    rows: usize,
    /// Rows of the last forward that carried Flipout noise (all or none).
    noisy: usize,
    segments: Vec<TaskSegment>,
    tasks: Vec<u32>,
    /// Input of each layer (the state and task code, then each hidden ReLU output), and the
    /// last layer's output.
    acts: Vec<Vec<f32>>,
    layers: Vec<LayerCache>,
    scratch_in: Vec<f32>,
    scratch_out: Vec<f32>,
    grad: Vec<f32>,
    grad_prev: Vec<f32>,
}

impl ResidualMlpCpu {
    /// An engine for networks laid out like `net`, a [`SharedQMlp`] with task residuals.
    pub fn new(net: &SharedQMlp) -> Result<Self> {
        let layout = Layout::of(net)?;
        let n = layout.layers.len();
        Ok(Self {
            acts: vec![Vec::new(); n + 1],
            layers: vec![LayerCache::default(); n],
            layout,
            rows: 0,
            noisy: 0,
            segments: Vec::new(),
            tasks: Vec::new(),
            scratch_in: Vec::new(),
            scratch_out: Vec::new(),
            grad: Vec::new(),
            grad_prev: Vec::new(),
        })
    }

    fn bind(&self, net: &SharedQMlp) -> Result<()> {
        if self.layout.fits(net) {
            Ok(())
        } else {
            Err(NnError::Config(format!(
                "{ENGINE}: the network is laid out differently from the engine's"
            )))
        }
    }

    /// Q-values `[rows, actions]` of `net` for `obs` (`rows × obs_dim`, row-major, rows
    /// grouped by task as `segments` say: consecutive, from row 0, covering every row), with
    /// the Flipout draw `flipout` on every row (its `rows` must be the pass's) or the
    /// posterior means θ + μ_m without one. Keeps what [`ResidualMlpCpu::backward`] needs.
    pub fn forward(
        &mut self,
        net: &SharedQMlp,
        obs: &[f32],
        segments: &[TaskSegment],
        flipout: Option<HostFlipout<'_>>,
    ) -> Result<&[f32]> {
        self.bind(net)?;
        let rows = self.check_pass(obs, segments, flipout.as_ref())?;
        self.rows = rows;
        self.noisy = flipout.map_or(0, |f| f.rows);
        self.segments.clear();
        self.segments.extend_from_slice(segments);
        self.tasks.clear();
        for s in segments {
            self.tasks.extend(std::iter::repeat_n(s.task as u32, s.len));
        }
        self.resize(rows);
        net.params()
            .with_host_slices(|w| {
                let present = present_tasks(&self.segments, self.layout.tasks);
                for (k, (l, cache)) in self.layout.layers.iter().zip(&mut self.layers).enumerate() {
                    cache.prepare(w, l, &present, flipout.map(|f| f.eps[k]));
                }
                self.forward_on(w, obs, flipout.as_ref());
            })
            .ok_or_else(off_cpu)?;
        Ok(&self.acts[self.layout.layers.len()][..rows * self.layout.out_dim()])
    }

    /// Checks a forward pass's inputs; returns its rows.
    fn check_pass(
        &self,
        obs: &[f32],
        segments: &[TaskSegment],
        flipout: Option<&HostFlipout<'_>>,
    ) -> Result<usize> {
        let l = &self.layout;
        let bad = |msg: String| Err(NnError::Config(format!("{ENGINE}: {msg}")));
        let Some(rows) = segment_rows(segments, l.tasks) else {
            return bad(format!(
                "segments {segments:?}: segments must be consecutive from row 0, tasks below {}",
                l.tasks
            ));
        };
        if obs.len() != rows * l.obs_dim() {
            return bad(format!("{} observation values for {rows} rows", obs.len()));
        }
        if let Some(f) = flipout {
            if f.rows != rows || !flipout_fits(f, &l.layers, l.tasks, Some(l.mode)) {
                return bad(format!(
                    "a Flipout draw for {} rows that does not fit the network or the {rows} rows",
                    f.rows
                ));
            }
        }
        Ok(rows)
    }

    fn resize(&mut self, rows: usize) {
        let layers = &self.layout.layers;
        let sizes = std::iter::once(layers[0].in_dim).chain(layers.iter().map(|l| l.out_dim));
        for (a, n) in self.acts.iter_mut().zip(sizes) {
            a.resize(rows * n, 0.0);
        }
        let widest = layers
            .iter()
            .map(|l| l.in_dim.max(l.out_dim))
            .max()
            .unwrap_or(0);
        for v in [&mut self.scratch_in, &mut self.scratch_out] {
            v.resize(rows * widest, 0.0);
        }
    }

    fn forward_on(&mut self, w: &[&[f32]], obs: &[f32], flipout: Option<&HostFlipout<'_>>) {
        let (rows, obs_dim) = (self.rows, self.layout.obs_dim());
        let d_in = self.layout.layers[0].in_dim;
        for (i, &task) in self.tasks.iter().enumerate() {
            // The embedding goes after the state, as in SharedQMlp.
            let row = &mut self.acts[0][i * d_in..(i + 1) * d_in];
            row[..obs_dim].copy_from_slice(&obs[i * obs_dim..(i + 1) * obs_dim]);
            if let Some((e, dim)) = self.layout.embedding {
                let t = task as usize;
                row[obs_dim..].copy_from_slice(&w[e][t * dim..(t + 1) * dim]);
            }
        }
        let mut pass = LayerPass {
            w,
            segments: &self.segments,
            rows,
            noisy: self.noisy,
            threads: 1,
            scratch_in: &mut self.scratch_in,
            scratch_out: &mut self.scratch_out,
        };
        let last = self.layout.layers.len() - 1;
        for (k, l) in self.layout.layers.iter().enumerate() {
            let (before, after) = self.acts.split_at_mut(k + 1);
            let y = &mut after[0][..rows * l.out_dim];
            let at = (l, &self.layers[k], flipout.map(|f| (f, k)));
            pass.forward(at, &before[k][..rows * l.in_dim], y);
            if k < last {
                kernels::relu(y);
            }
        }
    }

    /// Gradients of `Σ_rows ⟨dq, q⟩` over `net`'s variables for the rows of the last
    /// [`ResidualMlpCpu::forward`] (of the same `net`, its segments one per task), with the
    /// same `flipout` draw. `dq` is `[rows, actions]`; `grads` is overwritten, one vector per
    /// variable in store order.
    pub fn backward(
        &mut self,
        net: &SharedQMlp,
        dq: &[f32],
        flipout: Option<HostFlipout<'_>>,
        grads: &mut HostGradients,
    ) -> Result<()> {
        self.bind(net)?;
        let rows = self.rows;
        let mut seen = vec![false; self.layout.tasks];
        let distinct = self
            .segments
            .iter()
            .all(|s| !std::mem::replace(&mut seen[s.task], true));
        let noise_ok = match flipout {
            Some(f) => f.rows == rows && self.noisy == rows,
            None => self.noisy == 0,
        };
        if dq.len() != rows * self.layout.out_dim() || !distinct || !noise_ok {
            return Err(NnError::Config(format!(
                "residual MLP CPU backward: {} output gradients (or the draw) do not fit the last \
                 forward's {rows} rows, one segment per task",
                dq.len()
            )));
        }
        let params = net.params();
        grads.resize(params.len(), Vec::new());
        for (g, (_, v)) in grads.iter_mut().zip(params.named_vars()) {
            g.resize(v.elem_count(), 0.0);
        }
        params
            .with_host_slices(|w| self.backward_on(w, dq, flipout.as_ref(), grads))
            .ok_or_else(off_cpu)
    }

    fn backward_on(
        &mut self,
        w: &[&[f32]],
        dq: &[f32],
        flipout: Option<&HostFlipout<'_>>,
        grads: &mut HostGradients,
    ) {
        let rows = self.rows;
        let mut pass = LayerPass {
            w,
            segments: &self.segments,
            rows,
            noisy: self.noisy,
            threads: 1,
            scratch_in: &mut self.scratch_in,
            scratch_out: &mut self.scratch_out,
        };
        let (grad, grad_prev) = (&mut self.grad, &mut self.grad_prev);
        grad.clear();
        grad.extend_from_slice(dq);
        let embedding = self.layout.embedding;
        for (k, l) in self.layout.layers.iter().enumerate().rev() {
            let at = (l, &self.layers[k], flipout.map(|f| (f, k)));
            let x = &self.acts[k][..rows * l.in_dim];
            let needs_input_grad = k > 0 || embedding.is_some();
            grad_prev.resize(rows * l.in_dim, 0.0);
            let dx = needs_input_grad.then_some(&mut grad_prev[..]);
            pass.backward(at, x, &grad[..rows * l.out_dim], grads, dx);
            if !needs_input_grad {
                break;
            }
            if k > 0 {
                kernels::relu_backward(grad_prev, x);
            }
            std::mem::swap(grad, grad_prev);
        }
        if let Some((e, dim)) = embedding {
            // `grad` now holds the input's gradient: the code's columns go to its task's row.
            let d_in = self.layout.layers[0].in_dim;
            let obs_dim = d_in - dim;
            let g = &mut grads[e];
            g.fill(0.0);
            for (i, &task) in self.tasks.iter().enumerate() {
                let t = task as usize;
                let src = &grad[i * d_in + obs_dim..(i + 1) * d_in];
                g[t * dim..(t + 1) * dim]
                    .iter_mut()
                    .zip(src)
                    .for_each(|(d, v)| *d += v);
            }
        }
    }

    /// Adds the gradient of `scale · Σ_layers,tasks penalty` to `grads` (the variables' store
    /// order): variational, the closed-form KL's `μ/σ_p²` and `(σ/σ_p² − 1/σ) · sigmoid(ρ)` at
    /// the ρ of the last noisy [`ResidualMlpCpu::forward`]; `l2`, `μ/σ_p²`.
    pub fn add_penalty_gradient(
        &mut self,
        net: &SharedQMlp,
        sigma_prior: f64,
        scale: f64,
        grads: &mut HostGradients,
    ) -> Result<()> {
        self.bind(net)?;
        if grads.len() != net.params().len() {
            return Err(NnError::Config(format!(
                "{ENGINE}: penalty gradients need a full gradient set"
            )));
        }
        let layers = (&self.layout.layers[..], &self.layers[..]);
        net.params()
            .with_host_slices(|w| {
                task_residual_cpu::add_penalty_gradient(
                    ENGINE,
                    layers,
                    w,
                    (sigma_prior, scale),
                    grads,
                )
            })
            .ok_or_else(off_cpu)?
    }
}

fn off_cpu() -> NnError {
    NnError::Config(format!("{ENGINE}: weights are not on the CPU"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::candle_checks::{
        assert_gradients_match, candle_gradients, candle_weights, grouped, randomise_residuals,
        rel, ungrouped, values,
    };
    use crate::task_residual::{draw_host_signs, draw_signs, group_by_task};
    use crate::{Device, ResidualNoise, Tensor};
    use rand::{rngs::StdRng, Rng, SeedableRng};

    const OUT: usize = crate::NUM_ACTIONS;
    const OBS: usize = crate::OBS_DIM;

    /// A VarShare MLP whose residuals are not at their initial values: random μ, ρ around
    /// σ ≈ 0.05, and an embedding that differs per task.
    fn varshare_net(mode: ResidualMode, keep_embedding: bool, seed: u64) -> SharedQMlp {
        let mut rng = StdRng::seed_from_u64(seed);
        let net = SharedQMlp::new_varshare(&mut rng, &Device::Cpu, mode, keep_embedding).unwrap();
        randomise_residuals(net.params(), 0.1, &mut rng);
        net
    }

    /// On a fixed batch of `tasks` and draw, the host Q-values (with the draw, and the means)
    /// and every gradient of Σ ⟨dq, q⟩ + scale · penalty equal candle's.
    fn matches_candle(mode: ResidualMode, keep_embedding: bool, tasks: &[u32]) {
        let net = varshare_net(mode, keep_embedding, 3);
        let (rows, scale, sigma_prior) = (tasks.len(), 0.7, 0.1);
        let mut rng = StdRng::seed_from_u64(4);
        let obs: Vec<f32> = (0..rows * OBS)
            .map(|_| rng.random_range(-2.0..2.0))
            .collect();
        let dq: Vec<f32> = (0..rows * OUT)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let (order, segments) = group_by_task(tasks);
        let layers = net.residual_layers();
        let noise = ResidualNoise::draw(&layers, &mut StdRng::seed_from_u64(6)).unwrap();
        let signs = draw_signs(&layers, &mut StdRng::seed_from_u64(7), rows).unwrap();
        let host_signs = draw_host_signs(&layers, &mut StdRng::seed_from_u64(7), rows);
        let variational = mode == ResidualMode::Variational;

        // candle: batch order in and out; `dq` is in the grouped order.
        let dev = Device::Cpu;
        let o = Tensor::from_slice(&obs, (rows, OBS), &dev).unwrap();
        let t = Tensor::from_slice(tasks, rows, &dev).unwrap();
        let weights = candle_weights(mode, &noise, &signs);
        let q = net.forward_with(&o, &t, weights).unwrap();
        let dq_batch = ungrouped(&dq, &order, OUT);
        let want = candle_gradients(&q, &dq_batch, &layers, sigma_prior, scale);

        let x = grouped(&obs, &order, OBS);
        let mut cpu = ResidualMlpCpu::new(&net).unwrap();
        let means = cpu.forward(&net, &x, &segments, None).unwrap().to_vec();
        let want_means = grouped(&values(&net.forward(&o, &t).unwrap()), &order, OUT);
        assert!(rel(&means, &want_means) < 1e-5, "Q-values of the means");
        let mut grads = Vec::new();
        noise
            .with_host_slices(|eps| {
                let flipout = variational.then_some(HostFlipout {
                    eps,
                    signs: &host_signs,
                    rows,
                });
                let got = cpu.forward(&net, &x, &segments, flipout).unwrap().to_vec();
                let r = rel(&got, &grouped(&values(&q), &order, OUT));
                assert!(r < 1e-5, "Q-values of the draw: relative error {r}");
                cpu.backward(&net, &dq, flipout, &mut grads).unwrap();
            })
            .unwrap();
        cpu.add_penalty_gradient(&net, sigma_prior, scale, &mut grads)
            .unwrap();
        let what = format!("{mode:?}, embedding {keep_embedding}, tasks {tasks:?}");
        assert_gradients_match(net.params(), &want, &grads, &what);
    }

    const MIXED: [u32; 11] = [2, 0, 1, 1, 0, 2, 2, 1, 0, 0, 1];

    #[test]
    fn variational_q_values_and_every_gradient_match_candle() {
        matches_candle(ResidualMode::Variational, true, &MIXED);
        matches_candle(ResidualMode::Variational, false, &MIXED);
    }

    #[test]
    fn l2_q_values_and_every_gradient_match_candle() {
        matches_candle(ResidualMode::L2, true, &MIXED);
        matches_candle(ResidualMode::L2, false, &MIXED);
    }

    #[test]
    fn a_batch_without_a_task_matches_candle_and_still_moves_its_residuals() {
        // Task 1 has no rows: its μ (and ρ) take the penalty's gradient alone, its embedding
        // row none (asserted non-zero above only because the whole variable has other rows).
        for mode in [ResidualMode::Variational, ResidualMode::L2] {
            matches_candle(mode, true, &[2, 0, 0, 2, 2, 0, 2]);
        }
    }

    #[test]
    fn bad_inputs_are_errors() {
        let net = varshare_net(ResidualMode::Variational, true, 1);
        let mut cpu = ResidualMlpCpu::new(&net).unwrap();
        let seg = |task, start, len| TaskSegment { task, start, len };
        let obs = [0.0; 2 * OBS];
        assert!(
            cpu.forward(&net, &obs, &[seg(3, 0, 2)], None).is_err(),
            "task 3"
        );
        assert!(
            cpu.forward(&net, &obs, &[seg(0, 1, 2)], None).is_err(),
            "row 1"
        );
        assert!(
            cpu.forward(&net, &obs[..OBS], &[seg(0, 0, 2)], None)
                .is_err(),
            "short obs"
        );
        let eps: Vec<&[f32]> = Vec::new();
        let flipout = HostFlipout {
            eps: &eps,
            signs: &[],
            rows: 2,
        };
        assert!(cpu
            .forward(&net, &obs, &[seg(0, 0, 2)], Some(flipout))
            .is_err());
        let l2 = varshare_net(ResidualMode::L2, true, 1);
        assert!(
            cpu.forward(&l2, &obs, &[seg(0, 0, 2)], None).is_err(),
            "l2 net"
        );
        // The same task twice would overwrite its own gradient.
        cpu.forward(&net, &obs, &[seg(0, 0, 1), seg(0, 1, 1)], None)
            .unwrap();
        let mut grads = Vec::new();
        assert!(cpu
            .backward(&net, &[0.0; 2 * OUT], None, &mut grads)
            .is_err());
        cpu.forward(&net, &obs, &[seg(0, 0, 1), seg(1, 1, 1)], None)
            .unwrap();
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
        let plain = SharedQMlp::new(&mut StdRng::seed_from_u64(0), &Device::Cpu).unwrap();
        assert!(ResidualMlpCpu::new(&plain).is_err());
    }
}
