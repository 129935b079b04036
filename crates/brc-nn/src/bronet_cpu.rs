//! [`BroNetCpu`]: BroNet's forward and backward pass on the CPU, on the network's own weights,
//! with buffers allocated once.
//!
//! candle builds a graph of ~60 ops per BroNet forward and allocates a fresh tensor for each,
//! forward and backward; at batch 64 that bookkeeping costs as much as the matrix products
//! (docs/performance.md). This is the same computation written out once: fused
//! linear + bias + ReLU, LayerNorm with its backward in one pass per row, and weight gradients
//! taken per *segment* of rows, so the per-task gradients of a task-sorted batch cost one
//! backward pass instead of one per task. candle stays the reference (tests compare every
//! value and gradient) and the path on other devices.

use std::ops::Range;

use crate::kernels::{self, Mat};
use crate::layers::LN_EPS;
use crate::{BroNet, BroNetConfig, NnError, Result};

/// Gradients in the network's [`crate::ParamStore`] order, one flat vector per variable.
pub type HostGradients = Vec<Vec<f32>>;

/// Where each BroNet variable sits in its store's construction order.
#[derive(Debug, Clone)]
struct Indices {
    embedding: Option<usize>,
    input: (usize, usize),
    /// Per block: LN (γ, β), fc1 (W, b), fc2 (W, b).
    blocks: Vec<[usize; 6]>,
    final_ln: (usize, usize),
    output: (usize, usize),
}

impl Indices {
    fn of(net: &BroNet) -> Result<Self> {
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
                .ok_or_else(|| NnError::Config(format!("BroNet CPU path: no variable `{name}`")))
        };
        let pair = |prefix: &str| {
            Ok::<_, NnError>((
                find(&format!("{prefix}.weight"))?,
                find(&format!("{prefix}.bias"))?,
            ))
        };
        let blocks = (0..net.config().num_blocks)
            .map(|i| {
                let (g, b) = pair(&format!("blocks.{i}.ln"))?;
                let (w1, b1) = pair(&format!("blocks.{i}.fc1"))?;
                let (w2, b2) = pair(&format!("blocks.{i}.fc2"))?;
                Ok([g, b, w1, b1, w2, b2])
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            embedding: if net.config().embedding_dim > 0 {
                Some(find("task_embedding.weight")?)
            } else {
                None
            },
            input: pair("input")?,
            blocks,
            final_ln: pair("final_ln")?,
            output: pair("output")?,
        })
    }
}

/// What one LayerNorm keeps for its backward pass.
#[derive(Debug, Clone, Default)]
pub(crate) struct NormCache {
    /// The normalised rows before γ and β.
    pub(crate) xhat: Vec<f32>,
    /// 1/sqrt(var + eps) per row.
    pub(crate) rstd: Vec<f32>,
    /// The LayerNorm's output.
    pub(crate) out: Vec<f32>,
}

/// What one residual block keeps for its backward pass.
#[derive(Debug, Clone, Default)]
struct BlockCache {
    norm: NormCache,
    /// ReLU(fc1(LN(x))).
    hidden: Vec<f32>,
}

/// A BroNet forward/backward engine for one network shape, with its activation buffers.
///
/// Supports the design note's pre-LN BroNet (with or without task embedding); see
/// [`BroNetCpu::supports`]. [`BroNetCpu::forward`] keeps what [`BroNetCpu::backward`] needs.
#[derive(Debug, Clone)]
pub struct BroNetCpu {
    config: BroNetConfig,
    indices: Option<Indices>,
    threads: usize,
    rows: usize,
    tasks: Vec<u32>,
    input: Vec<f32>,
    input_act: Vec<f32>,
    blocks: Vec<BlockCache>,
    stream: Vec<f32>,
    final_norm: NormCache,
    logits: Vec<f32>,
    grad_stream: Vec<f32>,
    grad_scratch: Vec<f32>,
    grad_hidden: Vec<f32>,
    grad_code: Vec<f32>,
}

impl BroNetCpu {
    /// Whether this path computes `config`'s network: pre-LN blocks without unit-norm task
    /// embeddings or task residuals (the design note's BroNet and every BRC config but two tuning
    /// levers and VarShare).
    pub fn supports(config: &BroNetConfig) -> bool {
        !config.post_ln && !config.unit_norm_embedding && config.task_residuals.is_none()
    }

    /// An engine for networks of `config`, using as many threads as the current rayon pool has
    /// (one in `brc`, unless `--threads` says otherwise). With two or more, every product gets
    /// half of them: the backward pass computes each layer's weight gradients and its input
    /// gradient side by side, and a caller may run two forward passes side by side
    /// ([`BroNetCpu::parallel`]). Small products split poorly inside gemm, independent ones do
    /// not.
    pub fn new(config: BroNetConfig) -> Result<Self> {
        let threads = rayon::current_num_threads();
        config.validate()?;
        if !Self::supports(&config) {
            return Err(NnError::Config(
                "the BroNet CPU path computes pre-LN blocks without unit-norm embeddings or task residuals".into(),
            ));
        }
        Ok(Self {
            config,
            indices: None,
            threads: threads.max(1),
            rows: 0,
            tasks: Vec::new(),
            input: Vec::new(),
            input_act: Vec::new(),
            blocks: vec![BlockCache::default(); config.num_blocks],
            stream: Vec::new(),
            final_norm: NormCache::default(),
            logits: Vec::new(),
            grad_stream: Vec::new(),
            grad_scratch: Vec::new(),
            grad_hidden: Vec::new(),
            grad_code: Vec::new(),
        })
    }

    /// Whether this engine computes independent parts side by side (two or more threads): a
    /// caller with independent forward passes may run those side by side too.
    pub fn parallel(&self) -> bool {
        self.threads > 1
    }

    fn bind(&mut self, net: &BroNet) -> Result<Indices> {
        if net.config() != &self.config {
            return Err(NnError::Config(
                "BroNet CPU path: the network's config differs from the engine's".into(),
            ));
        }
        if self.indices.is_none() {
            self.indices = Some(Indices::of(net)?);
        }
        Ok(self.indices.clone().expect("set above"))
    }

    /// Logits `[rows, actions × atoms]` of `net` for `obs` (`rows × obs_dim`, row-major) and
    /// `tasks` (one per row), keeping the activations for [`BroNetCpu::backward`].
    pub fn forward(&mut self, net: &BroNet, obs: &[f32], tasks: &[u32]) -> Result<&[f32]> {
        let idx = self.bind(net)?;
        let rows = tasks.len();
        if obs.len() != rows * self.config.obs_dim {
            return Err(NnError::Config(format!(
                "BroNet CPU path: {} observation values for {rows} rows",
                obs.len()
            )));
        }
        if let Some(&t) = tasks.iter().find(|&&t| t as usize >= self.config.num_tasks) {
            if self.config.embedding_dim > 0 {
                return Err(NnError::Config(format!(
                    "task id {t} out of range (the network holds {} tasks)",
                    self.config.num_tasks
                )));
            }
        }
        self.resize(rows);
        self.tasks.clear();
        self.tasks.extend_from_slice(tasks);
        net.params()
            .with_host_slices(|w| self.forward_on(w, &idx, obs))
            .ok_or_else(|| NnError::Config("BroNet CPU path: weights are not on the CPU".into()))?;
        Ok(&self.logits[..rows * self.config.output_width()])
    }

    fn resize(&mut self, rows: usize) {
        let h = self.config.hidden_dim;
        let grow = |v: &mut Vec<f32>, n: usize| {
            if v.len() < n {
                v.resize(n, 0.0);
            }
        };
        self.rows = rows;
        let d_in = self.config.input_width();
        grow(&mut self.input, rows * d_in);
        grow(&mut self.input_act, rows * h);
        grow(&mut self.stream, rows * h);
        for cache in [&mut self.final_norm]
            .into_iter()
            .chain(self.blocks.iter_mut().map(|b| &mut b.norm))
        {
            grow(&mut cache.xhat, rows * h);
            grow(&mut cache.rstd, rows);
            grow(&mut cache.out, rows * h);
        }
        for b in &mut self.blocks {
            grow(&mut b.hidden, rows * h);
        }
        let out = self.config.output_width();
        grow(&mut self.logits, rows * out);
        grow(&mut self.grad_stream, rows * h);
        grow(&mut self.grad_scratch, rows * h);
        grow(&mut self.grad_hidden, rows * h);
        grow(&mut self.grad_code, rows * self.config.embedding_dim);
    }

    fn forward_on(&mut self, w: &[&[f32]], idx: &Indices, obs: &[f32]) {
        let c = self.config;
        let (rows, h, d_in, out) = (
            self.rows,
            c.hidden_dim,
            self.config.input_width(),
            self.config.output_width(),
        );
        let (t, _) = self.product_threads();
        // concat(state, embedding[task])
        for (i, &task) in self.tasks.iter().enumerate() {
            let row = &mut self.input[i * d_in..(i + 1) * d_in];
            row[..c.obs_dim].copy_from_slice(&obs[i * c.obs_dim..(i + 1) * c.obs_dim]);
            if let Some(e) = idx.embedding {
                let e_dim = c.embedding_dim;
                let code = &w[e][task as usize * e_dim..(task as usize + 1) * e_dim];
                row[c.obs_dim..].copy_from_slice(code);
            }
        }
        let x = Mat::new(&self.input[..rows * d_in], rows, d_in);
        let act = &mut self.input_act[..rows * h];
        kernels::matmul(act, x, Mat::new(w[idx.input.0], d_in, h), false, t);
        kernels::add_bias(act, w[idx.input.1]);
        kernels::relu(act);
        let stream = &mut self.stream[..rows * h];
        stream.copy_from_slice(act);
        for (b, cache) in idx.blocks.iter().zip(&mut self.blocks) {
            let [g, beta, w1, b1, w2, b2] = *b;
            let n = &mut cache.norm;
            kernels::layer_norm(
                stream,
                w[g],
                w[beta],
                LN_EPS as f32,
                &mut n.out[..rows * h],
                &mut n.xhat[..rows * h],
                &mut n.rstd[..rows],
            );
            let hidden = &mut cache.hidden[..rows * h];
            kernels::matmul(
                hidden,
                Mat::new(&n.out[..rows * h], rows, h),
                Mat::new(w[w1], h, h),
                false,
                t,
            );
            kernels::add_bias(hidden, w[b1]);
            kernels::relu(hidden);
            // x + fc2(y): the product accumulates onto the residual stream.
            kernels::matmul(
                stream,
                Mat::new(hidden, rows, h),
                Mat::new(w[w2], h, h),
                true,
                t,
            );
            kernels::add_bias(stream, w[b2]);
        }
        let n = &mut self.final_norm;
        kernels::layer_norm(
            stream,
            w[idx.final_ln.0],
            w[idx.final_ln.1],
            LN_EPS as f32,
            &mut n.out[..rows * h],
            &mut n.xhat[..rows * h],
            &mut n.rstd[..rows],
        );
        let logits = &mut self.logits[..rows * out];
        kernels::matmul(
            logits,
            Mat::new(&n.out[..rows * h], rows, h),
            Mat::new(w[idx.output.0], h, out),
            false,
            t,
        );
        kernels::add_bias(logits, w[idx.output.1]);
    }

    /// Gradients of `Σ_rows ⟨dlogits, logits⟩` over `net`'s variables for the rows of the last
    /// [`BroNetCpu::forward`] (of the same `net`), one set per segment: `grads[s]` receives the
    /// gradient of segment `s`'s rows alone. Segments are consecutive ranges starting at row 0;
    /// rows after the last segment (e.g. next states forwarded in the same pass) take no part.
    /// `dlogits` covers the segments' rows, `[rows, actions × atoms]`.
    pub fn backward(
        &mut self,
        net: &BroNet,
        dlogits: &[f32],
        segments: &[Range<usize>],
        grads: &mut [HostGradients],
    ) -> Result<()> {
        let idx = self.bind(net)?;
        check_segments(
            "BroNet CPU backward",
            segments,
            self.rows,
            grads.len(),
            dlogits.len(),
            self.config.output_width(),
        )?;
        let params = net.params();
        for g in grads.iter_mut() {
            g.resize(params.len(), Vec::new());
            for (gv, (_, v)) in g.iter_mut().zip(params.named_vars()) {
                gv.resize(v.elem_count(), 0.0);
            }
            // Products overwrite their gradients; sums accumulate onto zero.
            for (i, gv) in g.iter_mut().enumerate() {
                if !Self::is_product(&idx, i) {
                    gv.fill(0.0);
                }
            }
        }
        params
            .with_host_slices(|w| self.backward_on(w, &idx, dlogits, segments, grads))
            .ok_or_else(|| NnError::Config("BroNet CPU path: weights are not on the CPU".into()))
    }

    /// Whether variable `i` is a weight matrix (its gradient is a product, written whole).
    fn is_product(idx: &Indices, i: usize) -> bool {
        i == idx.input.0 || i == idx.output.0 || idx.blocks.iter().any(|b| b[2] == i || b[4] == i)
    }

    /// Threads of each matrix product, and whether independent products run side by side.
    fn product_threads(&self) -> (usize, bool) {
        let parallel = self.threads > 1;
        (if parallel { self.threads / 2 } else { 1 }, parallel)
    }

    fn backward_on(
        &mut self,
        w: &[&[f32]],
        idx: &Indices,
        dlogits: &[f32],
        segments: &[Range<usize>],
        grads: &mut [HostGradients],
    ) {
        let c = self.config;
        let (h, d_in, out) = (
            c.hidden_dim,
            self.config.input_width(),
            self.config.output_width(),
        );
        let (t, parallel) = self.product_threads();
        let rows = segments.last().map_or(0, |s| s.end);
        // Output layer: its weight gradients beside the gradient of its input.
        let fin = &self.final_norm;
        let scratch = &mut self.grad_scratch[..rows * h];
        kernels::both(
            parallel,
            || {
                for (s, g) in segments.iter().zip(grads.iter_mut()) {
                    kernels::matmul(
                        &mut g[idx.output.0],
                        rows_of(&fin.out, s, h).t(),
                        rows_of(dlogits, s, out),
                        false,
                        t,
                    );
                    let dl = &dlogits[s.start * out..s.end * out];
                    kernels::add_column_sums(&mut g[idx.output.1], dl);
                }
            },
            || {
                kernels::matmul(
                    scratch,
                    Mat::new(dlogits, rows, out),
                    Mat::new(w[idx.output.0], h, out).t(),
                    false,
                    t,
                )
            },
        );
        let scratch = &mut self.grad_scratch[..rows * h];
        let stream = &mut self.grad_stream[..rows * h];
        for (s, g) in segments.iter().zip(grads.iter_mut()) {
            let (dg, db) = two_mut(g, idx.final_ln.0, idx.final_ln.1);
            let r = s.start * h..s.end * h;
            kernels::layer_norm_backward(
                &scratch[r.clone()],
                &fin.xhat[r.clone()],
                &fin.rstd[s.clone()],
                w[idx.final_ln.0],
                &mut stream[r],
                false,
                dg,
                db,
            );
        }
        // Residual blocks, last first: the stream's gradient flows straight through and
        // collects each block's contribution.
        for (b, cache) in idx.blocks.iter().zip(&self.blocks).rev() {
            let [ln_g, _, w1, b1, w2, b2] = *b;
            let hidden_grad = &mut self.grad_hidden[..rows * h];
            let upstream: &[f32] = stream;
            kernels::both(
                parallel,
                || {
                    for (s, g) in segments.iter().zip(grads.iter_mut()) {
                        kernels::matmul(
                            &mut g[w2],
                            rows_of(&cache.hidden, s, h).t(),
                            rows_of(upstream, s, h),
                            false,
                            t,
                        );
                        let up = &upstream[s.start * h..s.end * h];
                        kernels::add_column_sums(&mut g[b2], up);
                    }
                },
                || {
                    kernels::matmul(
                        hidden_grad,
                        Mat::new(upstream, rows, h),
                        Mat::new(w[w2], h, h).t(),
                        false,
                        t,
                    )
                },
            );
            let hidden_grad = &mut self.grad_hidden[..rows * h];
            kernels::relu_backward(hidden_grad, &cache.hidden[..rows * h]);
            let hidden_grad: &[f32] = hidden_grad;
            kernels::both(
                parallel,
                || {
                    for (s, g) in segments.iter().zip(grads.iter_mut()) {
                        kernels::matmul(
                            &mut g[w1],
                            rows_of(&cache.norm.out, s, h).t(),
                            rows_of(hidden_grad, s, h),
                            false,
                            t,
                        );
                        let hg = &hidden_grad[s.start * h..s.end * h];
                        kernels::add_column_sums(&mut g[b1], hg);
                    }
                },
                || {
                    kernels::matmul(
                        scratch,
                        Mat::new(hidden_grad, rows, h),
                        Mat::new(w[w1], h, h).t(),
                        false,
                        t,
                    )
                },
            );
            for (s, g) in segments.iter().zip(grads.iter_mut()) {
                let (dg, db) = two_mut(g, ln_g, b[1]);
                let r = s.start * h..s.end * h;
                let n = &cache.norm;
                kernels::layer_norm_backward(
                    &scratch[r.clone()],
                    &n.xhat[r.clone()],
                    &n.rstd[s.clone()],
                    w[ln_g],
                    &mut stream[r],
                    true,
                    dg,
                    db,
                );
            }
        }
        // Input layer beside the task codes' gradient.
        kernels::relu_backward(stream, &self.input_act[..rows * h]);
        let upstream: &[f32] = stream;
        let input = &self.input;
        let grad_code = &mut self.grad_code[..rows * c.embedding_dim];
        kernels::both(
            parallel,
            || {
                for (s, g) in segments.iter().zip(grads.iter_mut()) {
                    kernels::matmul(
                        &mut g[idx.input.0],
                        rows_of(input, s, d_in).t(),
                        rows_of(upstream, s, h),
                        false,
                        t,
                    );
                    let up = &upstream[s.start * h..s.end * h];
                    kernels::add_column_sums(&mut g[idx.input.1], up);
                }
            },
            || {
                if idx.embedding.is_some() {
                    let code_rows = &w[idx.input.0][c.obs_dim * h..];
                    kernels::matmul(
                        grad_code,
                        Mat::new(upstream, rows, h),
                        Mat::new(code_rows, c.embedding_dim, h).t(),
                        false,
                        t,
                    );
                }
            },
        );
        if let Some(e) = idx.embedding {
            let e_dim = c.embedding_dim;
            for (s, g) in segments.iter().zip(grads.iter_mut()) {
                for i in s.clone() {
                    let task = self.tasks[i] as usize;
                    let dst = &mut g[e][task * e_dim..(task + 1) * e_dim];
                    for (d, v) in dst.iter_mut().zip(&grad_code[i * e_dim..(i + 1) * e_dim]) {
                        *d += v;
                    }
                }
            }
        }
    }
}

/// Checks a backward pass's segments (consecutive ranges from row 0, within the `forwarded`
/// rows, one gradient set each) and its output gradient (`width` per row); returns the rows.
pub(crate) fn check_segments(
    what: &str,
    segments: &[Range<usize>],
    forwarded: usize,
    grad_sets: usize,
    output_grads: usize,
    width: usize,
) -> Result<usize> {
    let rows = segments.last().map_or(0, |s| s.end);
    let contiguous = segments.first().is_none_or(|s| s.start == 0)
        && segments.windows(2).all(|p| p[0].end == p[1].start);
    if !contiguous || rows > forwarded || grad_sets != segments.len() {
        return Err(NnError::Config(format!(
            "{what}: segments must be consecutive rows of the last forward, one gradient set each"
        )));
    }
    if output_grads != rows * width {
        return Err(NnError::Config(format!(
            "{what}: {output_grads} output gradients for {rows} rows"
        )));
    }
    Ok(rows)
}

/// Rows `r` of a row-major matrix `width` wide.
pub(crate) fn rows_of<'a>(v: &'a [f32], r: &Range<usize>, width: usize) -> Mat<'a> {
    Mat::new(&v[r.start * width..r.end * width], r.len(), width)
}

/// Two distinct elements of `v`, mutably.
pub(crate) fn two_mut(v: &mut [Vec<f32>], a: usize, b: usize) -> (&mut [f32], &mut [f32]) {
    assert_ne!(a, b);
    if a < b {
        let (lo, hi) = v.split_at_mut(b);
        (&mut lo[a], &mut hi[0])
    } else {
        let (lo, hi) = v.split_at_mut(a);
        (&mut hi[0], &mut lo[b])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Device, Tensor};
    use rand::{rngs::StdRng, Rng, SeedableRng};

    fn small(embedding_dim: usize) -> BroNetConfig {
        BroNetConfig {
            embedding_dim,
            hidden_dim: 24,
            num_blocks: 2,
            num_atoms: 5,
            ..BroNetConfig::default()
        }
    }

    fn inputs(rows: usize, seed: u64) -> (Vec<f32>, Vec<u32>, Vec<f32>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let obs = (0..rows * 8).map(|_| rng.random_range(-2.0..2.0)).collect();
        let tasks = (0..rows).map(|i| (i % 3) as u32).collect();
        let dlogits = (0..rows * 4 * 5)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        (obs, tasks, dlogits)
    }

    /// Relative distance ‖a − b‖ / ‖b‖ (0 for two zero vectors).
    fn rel(a: &[f32], b: &[f32]) -> f64 {
        assert_eq!(a.len(), b.len());
        let d: f64 = a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum();
        let n: f64 = b.iter().map(|y| f64::from(*y).powi(2)).sum();
        if n == 0.0 {
            d.sqrt()
        } else {
            (d / n).sqrt()
        }
    }

    /// candle's gradients of Σ ⟨dlogits, logits⟩ over `rows` of the batch.
    fn candle_grads(
        net: &BroNet,
        obs: &[f32],
        tasks: &[u32],
        dl: &[f32],
        rows: Range<usize>,
    ) -> Vec<Vec<f32>> {
        let dev = Device::Cpu;
        let r = rows.len();
        let o = Tensor::from_slice(&obs[rows.start * 8..rows.end * 8], (r, 8), &dev).unwrap();
        let t = Tensor::from_slice(&tasks[rows.clone()], r, &dev).unwrap();
        let w = Tensor::from_slice(&dl[rows.start * 20..rows.end * 20], (r, 4, 5), &dev).unwrap();
        let loss = (net.forward(&o, &t).unwrap() * w)
            .unwrap()
            .sum_all()
            .unwrap();
        let grads = loss.backward().unwrap();
        net.params()
            .named_vars()
            .iter()
            .map(|(_, v)| match grads.get(v) {
                Some(g) => g.flatten_all().unwrap().to_vec1().unwrap(),
                None => vec![0.0; v.elem_count()],
            })
            .collect()
    }

    #[test]
    fn forward_and_per_segment_gradients_match_candle() {
        for embedding_dim in [6, 0] {
            let config = small(embedding_dim);
            let net = BroNet::new(config, &mut StdRng::seed_from_u64(3), &Device::Cpu).unwrap();
            let (obs, tasks, dl) = inputs(10, 4);
            let mut cpu = BroNetCpu::new(config).unwrap();
            let logits = cpu.forward(&net, &obs, &tasks).unwrap().to_vec();
            let o = Tensor::from_slice(&obs, (10, 8), &Device::Cpu).unwrap();
            let t = Tensor::from_slice(&tasks, 10, &Device::Cpu).unwrap();
            let want: Vec<f32> = net
                .forward(&o, &t)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            assert!(
                rel(&logits, &want) < 1e-6,
                "logits: {}",
                rel(&logits, &want)
            );
            // Two segments over rows 0..7; rows 7..10 were forwarded but take no part.
            let segments = [0..3, 3..7];
            let mut grads = vec![Vec::new(), Vec::new()];
            cpu.backward(&net, &dl[..7 * 20], &segments, &mut grads)
                .unwrap();
            for (seg, got) in segments.iter().zip(&grads) {
                let want = candle_grads(&net, &obs, &tasks, &dl, seg.clone());
                for (i, ((name, _), (g, w))) in net
                    .params()
                    .named_vars()
                    .iter()
                    .zip(got.iter().zip(&want))
                    .enumerate()
                {
                    let r = rel(g, w);
                    assert!(
                        r < 1e-5,
                        "emb {embedding_dim}, {seg:?}, {name} ({i}): relative error {r}"
                    );
                    assert!(
                        w.iter().any(|v| *v != 0.0),
                        "{name} has a gradient in candle"
                    );
                }
            }
        }
    }

    #[test]
    fn two_threads_give_the_same_bits_as_one() {
        let config = small(6);
        let net = BroNet::new(config, &mut StdRng::seed_from_u64(5), &Device::Cpu).unwrap();
        let (obs, tasks, dl) = inputs(12, 6);
        let segments = [0..4, 4..9];
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let mut cpu = BroNetCpu::new(config).unwrap();
                assert_eq!(cpu.parallel(), threads > 1);
                let logits = cpu.forward(&net, &obs, &tasks).unwrap().to_vec();
                let mut grads = vec![Vec::new(), Vec::new()];
                cpu.backward(&net, &dl[..9 * 20], &segments, &mut grads)
                    .unwrap();
                (logits, grads)
            })
        };
        // Four threads: each product on two (gemm splits its output, never its sums).
        let (one, two, four) = (run(1), run(2), run(4));
        assert_eq!(one.0, two.0, "logits");
        assert_eq!(one.1, two.1, "gradients");
        assert_eq!(one.0, four.0, "logits, four threads");
        assert_eq!(one.1, four.1, "gradients, four threads");
        assert!(one.1[1].iter().flatten().any(|g| *g != 0.0));
    }

    #[test]
    fn bad_inputs_are_errors() {
        let config = small(6);
        let net = BroNet::new(config, &mut StdRng::seed_from_u64(3), &Device::Cpu).unwrap();
        let mut cpu = BroNetCpu::new(config).unwrap();
        assert!(
            cpu.forward(&net, &[0.0; 8], &[3]).is_err(),
            "task out of range"
        );
        assert!(
            cpu.forward(&net, &[0.0; 7], &[0]).is_err(),
            "short observation"
        );
        cpu.forward(&net, &[0.0; 16], &[0, 1]).unwrap();
        let mut grads = vec![Vec::new()];
        assert!(
            cpu.backward(&net, &[0.0; 60], std::slice::from_ref(&(0..3)), &mut grads)
                .is_err(),
            "more rows than forwarded"
        );
        assert!(
            cpu.backward(&net, &[0.0; 20], std::slice::from_ref(&(1..2)), &mut grads)
                .is_err(),
            "not from row 0"
        );
        let post_ln = BroNetConfig {
            post_ln: true,
            ..config
        };
        assert!(!BroNetCpu::supports(&post_ln));
        assert!(BroNetCpu::new(post_ln).is_err());
    }
}
