//! [`ResidualBroNetCpu`]: the forward and backward pass of a BroNet with VarShare's task
//! residuals ([`crate::task_residual`]) on host buffers — [`crate::BroNetCpu`]'s sibling for
//! `task_residuals = Some(_)`.
//!
//! candle's graph computes a residual layer as per-task slices, a weight sum, a softplus, a
//! noise product and sign multiplications, each a fresh tensor, forward and backward: at batch
//! 64 a VarShare BRC update cost 17× a plain one (docs/performance.md). Here the rows come
//! grouped by task (contiguous [`TaskSegment`]s) and every residual layer runs on the host as
//! [`crate::task_residual_cpu`] describes, the Flipout term only on the first, noisy, rows
//! (the rest use the means, so one pass serves the prediction on s and the double-DQN argmax
//! on s′).
//!
//! [`ResidualBroNetCpu::add_penalty_gradient`] adds the closed-form gradient of the KL (or
//! the `l2` penalty). candle stays the reference: tests compare every value and gradient.

use crate::bronet_cpu::{two_mut, HostGradients, NormCache};
use crate::kernels;
use crate::layers::LN_EPS;
use crate::task_residual::TaskSegment;
use crate::task_residual_cpu::{
    self, flipout_fits, present_tasks, segment_rows, HostFlipout, LayerCache, LayerIndices,
    LayerPass,
};
use crate::{BroNet, BroNetConfig, NnError, Result};

const ENGINE: &str = "residual BroNet CPU path";

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
            names
                .iter()
                .position(|n| *n == name)
                .ok_or_else(|| NnError::Config(format!("{ENGINE}: no variable `{name}`")))
        };
        let mode = c.task_residuals.unwrap_or_default();
        let layer = |prefix: &str, in_dim: usize, out_dim: usize| {
            LayerIndices::find(&names, ENGINE, prefix, (in_dim, out_dim), c.num_tasks, mode)
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
        let bad = |msg: String| Err(NnError::Config(format!("{ENGINE}: {msg}")));
        let Some(rows) = segment_rows(segments, c.num_tasks) else {
            return bad(format!(
                "segments {segments:?}: segments must be consecutive from row 0, tasks below {}",
                c.num_tasks
            ));
        };
        if obs.len() != rows * c.obs_dim {
            return bad(format!("{} observation values for {rows} rows", obs.len()));
        }
        if let Some(f) = flipout {
            let ends_segment = f.rows == 0 || segments.iter().any(|s| s.start + s.len == f.rows);
            if !ends_segment || !flipout_fits(f, &idx.layers, c.num_tasks, c.task_residuals) {
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
        let present = present_tasks(&self.segments, self.config.num_tasks);
        for (k, (l, cache)) in idx.layers.iter().zip(&mut self.layers).enumerate() {
            cache.prepare(w, l, &present, flipout.map(|f| f.eps[k]));
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
            stream.iter_mut().zip(r.iter()).for_each(|(s, v)| *s += v);
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
        // LayerNorm k's backward (block k's, or the final one at k = num_blocks): `dy` in, its
        // input gradient into `dx` (added to it with `accumulate`), its γ and β gradients set.
        let norm_backward =
            |k: usize, dy: &[f32], dx: &mut [f32], accumulate: bool, grads: &mut HostGradients| {
                let (n, (g, beta)) = (&self.norms[k], idx.norms[k]);
                let (dg, db) = two_mut(grads, g, beta);
                dg.fill(0.0);
                db.fill(0.0);
                kernels::layer_norm_backward(
                    dy,
                    &n.xhat[..rows * h],
                    &n.rstd[..rows],
                    w[g],
                    dx,
                    accumulate,
                    dg,
                    db,
                );
            };
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
        norm_backward(c.num_blocks, scratch, stream, false, grads);
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
            norm_backward(b, scratch, stream, true, grads);
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
            return Err(NnError::Config(format!(
                "{ENGINE}: penalty gradients need a full gradient set"
            )));
        }
        let layers = (&idx.layers[..], &self.layers[..]);
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
    use crate::{Device, ResidualMode, ResidualNoise, Tensor};
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
        randomise_residuals(net.params(), 0.2, &mut StdRng::seed_from_u64(seed + 1));
        net
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
        let weights = candle_weights(mode, &noise, &signs);
        let logits = net.forward_with(&o, &t, weights).unwrap();
        let next = net.forward(&o2, &t).unwrap();
        let dl_batch = ungrouped(&dl, &order, OUT);
        let want = candle_gradients(&logits, &dl_batch, &layers, sigma_prior, scale);

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
                let want_s = grouped(&values(&logits), &order, OUT);
                let want_next = grouped(&values(&next), &order, OUT);
                assert!(rel(&got[..rows * OUT], &want_s) < 1e-5, "logits of s");
                assert!(rel(&got[rows * OUT..], &want_next) < 1e-5, "logits of s′");
                cpu.backward(&net, &dl, flipout, &mut grads).unwrap();
            })
            .unwrap();
        cpu.add_penalty_gradient(&net, sigma_prior, scale, &mut grads)
            .unwrap();
        assert_gradients_match(net.params(), &want, &grads, &format!("{mode:?}"));
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
