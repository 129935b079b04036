//! [`MlpCpu`]: the DQN MLPs' ([`crate::QMlp`], [`crate::SharedQMlp`]) forward and backward
//! pass on the CPU, with weight gradients per segment of rows.
//!
//! Like [`crate::BroNetCpu`] for BroNet: candle's graph stays the reference and the path of
//! ordinary updates; this engine gives the per-task gradients of a task-sorted batch in one
//! backward pass (gradient surgery and the conflict diagnostic), where candle needs one
//! backward pass per task.

use std::ops::Range;

use crate::bronet_cpu::{check_segments, HostGradients};
use crate::kernels::{self, Mat};
use crate::{NnError, ParamStore, Result};

/// Where an MLP's variables sit in its store, and their sizes.
#[derive(Debug, Clone)]
struct Layout {
    /// `task_embedding.weight` and its width.
    embedding: Option<(usize, usize)>,
    /// Per layer `fc{k}`: (weight index, bias index, in, out).
    layers: Vec<(usize, usize, usize, usize)>,
}

impl Layout {
    fn of(params: &ParamStore) -> Result<Self> {
        let vars = params.named_vars();
        let find = |name: &str| vars.iter().position(|(n, _)| n == name);
        let embedding = find("task_embedding.weight").map(|i| (i, vars[i].1.dims()[1]));
        let mut layers = Vec::new();
        while let (Some(w), Some(b)) = (
            find(&format!("fc{}.weight", layers.len() + 1)),
            find(&format!("fc{}.bias", layers.len() + 1)),
        ) {
            let dims = vars[w].1.dims();
            layers.push((w, b, dims[0], dims[1]));
        }
        let expected = layers.len() * 2 + usize::from(embedding.is_some());
        if layers.is_empty() || expected != vars.len() {
            return Err(NnError::Config(
                "MLP CPU path: expected fc1.. layers and an optional task embedding".into(),
            ));
        }
        Ok(Self { embedding, layers })
    }
}

/// A forward/backward engine for one MLP layout (Linear → ReLU → … → Linear), with its
/// activation buffers.
#[derive(Debug, Clone)]
pub struct MlpCpu {
    layout: Layout,
    rows: usize,
    tasks: Vec<u32>,
    /// Input of each layer (the state and task code, then each hidden ReLU output), and the
    /// last layer's output.
    acts: Vec<Vec<f32>>,
    grad: Vec<f32>,
    grad_prev: Vec<f32>,
}

impl MlpCpu {
    /// An engine for networks laid out like `params` (`fc1`…`fcN`, optional
    /// `task_embedding`).
    pub fn new(params: &ParamStore) -> Result<Self> {
        let layout = Layout::of(params)?;
        Ok(Self {
            acts: vec![Vec::new(); layout.layers.len() + 1],
            layout,
            rows: 0,
            tasks: Vec::new(),
            grad: Vec::new(),
            grad_prev: Vec::new(),
        })
    }

    fn obs_dim(&self) -> usize {
        self.layout.layers[0].2 - self.layout.embedding.map_or(0, |e| e.1)
    }

    /// Outputs `[rows, out]` of the network whose variables are `params` for `obs`
    /// (`rows × obs_dim`) and `tasks`, keeping the activations for [`MlpCpu::backward`].
    pub fn forward(&mut self, params: &ParamStore, obs: &[f32], tasks: &[u32]) -> Result<&[f32]> {
        let rows = tasks.len();
        let obs_dim = self.obs_dim();
        if obs.len() != rows * obs_dim {
            return Err(NnError::Config(format!(
                "MLP CPU path: {} observation values for {rows} rows",
                obs.len()
            )));
        }
        if let Some((e, _)) = self.layout.embedding {
            let n = params.named_vars()[e].1.dims()[0];
            if let Some(t) = tasks.iter().find(|&&t| t as usize >= n) {
                return Err(NnError::Config(format!(
                    "task id {t} out of range (the network holds {n} tasks)"
                )));
            }
        }
        self.rows = rows;
        self.tasks.clear();
        self.tasks.extend_from_slice(tasks);
        let sizes: Vec<usize> = std::iter::once(self.layout.layers[0].2)
            .chain(self.layout.layers.iter().map(|l| l.3))
            .collect();
        for (a, n) in self.acts.iter_mut().zip(&sizes) {
            a.resize(rows * n, 0.0);
        }
        let layout = self.layout.clone();
        let acts = &mut self.acts;
        params
            .with_host_slices(|w| {
                let d_in = sizes[0];
                for (i, &task) in tasks.iter().enumerate() {
                    let row = &mut acts[0][i * d_in..(i + 1) * d_in];
                    row[..obs_dim].copy_from_slice(&obs[i * obs_dim..(i + 1) * obs_dim]);
                    if let Some((e, dim)) = layout.embedding {
                        let t = task as usize;
                        row[obs_dim..].copy_from_slice(&w[e][t * dim..(t + 1) * dim]);
                    }
                }
                let last = layout.layers.len() - 1;
                for (k, &(wi, bi, d_in, d_out)) in layout.layers.iter().enumerate() {
                    let (before, after) = acts.split_at_mut(k + 1);
                    let x = Mat::new(&before[k], rows, d_in);
                    let y = &mut after[0][..rows * d_out];
                    kernels::matmul(y, x, Mat::new(w[wi], d_in, d_out), false, 1);
                    kernels::add_bias(y, w[bi]);
                    if k < last {
                        kernels::relu(y);
                    }
                }
            })
            .ok_or_else(|| NnError::Config("MLP CPU path: weights are not on the CPU".into()))?;
        Ok(&self.acts[self.acts.len() - 1])
    }

    /// Gradients of `Σ_rows ⟨dout, out⟩` over the variables, one set per segment of the last
    /// forward's rows (consecutive ranges from row 0, as [`crate::BroNetCpu::backward`]).
    pub fn backward(
        &mut self,
        params: &ParamStore,
        dout: &[f32],
        segments: &[Range<usize>],
        grads: &mut [HostGradients],
    ) -> Result<()> {
        let out_dim = self.layout.layers.last().expect("a layer").3;
        let rows = check_segments(
            "MLP CPU backward",
            segments,
            self.rows,
            grads.len(),
            dout.len(),
            out_dim,
        )?;
        for g in grads.iter_mut() {
            g.resize(params.len(), Vec::new());
            for (gv, (_, v)) in g.iter_mut().zip(params.named_vars()) {
                gv.resize(v.elem_count(), 0.0);
                gv.fill(0.0);
            }
        }
        let layout = self.layout.clone();
        let (acts, tasks) = (&self.acts, &self.tasks);
        let (grad, grad_prev) = (&mut self.grad, &mut self.grad_prev);
        params
            .with_host_slices(|w| {
                grad.clear();
                grad.extend_from_slice(dout);
                for (k, &(wi, bi, d_in, d_out)) in layout.layers.iter().enumerate().rev() {
                    for (s, g) in segments.iter().zip(grads.iter_mut()) {
                        let x = Mat::new(&acts[k][s.start * d_in..s.end * d_in], s.len(), d_in);
                        let dy = Mat::new(&grad[s.start * d_out..s.end * d_out], s.len(), d_out);
                        kernels::matmul(&mut g[wi], x.t(), dy, false, 1);
                        kernels::add_column_sums(&mut g[bi], &grad[s.start * d_out..s.end * d_out]);
                    }
                    let needs_input_grad = k > 0 || layout.embedding.is_some();
                    if !needs_input_grad {
                        break;
                    }
                    grad_prev.resize(rows * d_in, 0.0);
                    let dy = Mat::new(&grad[..rows * d_out], rows, d_out);
                    kernels::matmul(grad_prev, dy, Mat::new(w[wi], d_in, d_out).t(), false, 1);
                    if k > 0 {
                        kernels::relu_backward(grad_prev, &acts[k][..rows * d_in]);
                    }
                    std::mem::swap(grad, grad_prev);
                }
                if let Some((e, dim)) = layout.embedding {
                    let d_in = layout.layers[0].2;
                    let obs_dim = d_in - dim;
                    for (s, g) in segments.iter().zip(grads.iter_mut()) {
                        for i in s.clone() {
                            let t = tasks[i] as usize;
                            let src = &grad[i * d_in + obs_dim..(i + 1) * d_in];
                            for (d, v) in g[e][t * dim..(t + 1) * dim].iter_mut().zip(src) {
                                *d += v;
                            }
                        }
                    }
                }
            })
            .ok_or_else(|| NnError::Config("MLP CPU path: weights are not on the CPU".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Device, QMlp, QNetwork, SharedQMlp, Tensor};
    use rand::{rngs::StdRng, Rng, SeedableRng};

    fn rel(a: &[f32], b: &[f32]) -> f64 {
        let d: f64 = a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum();
        let n: f64 = b.iter().map(|y| f64::from(*y).powi(2)).sum();
        (d / n.max(1e-30)).sqrt()
    }

    fn check<N: QNetwork>(net: &N) {
        let dev = Device::Cpu;
        let mut rng = StdRng::seed_from_u64(1);
        let rows = 9;
        let obs: Vec<f32> = (0..rows * 8).map(|_| rng.random_range(-2.0..2.0)).collect();
        let tasks: Vec<u32> = (0..rows).map(|i| (i % 3) as u32).collect();
        let dout: Vec<f32> = (0..rows * 4).map(|_| rng.random_range(-1.0..1.0)).collect();
        let mut cpu = MlpCpu::new(net.params()).unwrap();
        let got = cpu.forward(net.params(), &obs, &tasks).unwrap().to_vec();
        let o = Tensor::from_slice(&obs, (rows, 8), &dev).unwrap();
        let t = Tensor::from_slice(&tasks, rows, &dev).unwrap();
        let want: Vec<f32> = net
            .forward(&o, &t)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!(rel(&got, &want) < 1e-6);
        let segments = [0..4, 4..7];
        let mut grads = vec![Vec::new(), Vec::new()];
        cpu.backward(net.params(), &dout[..7 * 4], &segments, &mut grads)
            .unwrap();
        for (s, g) in segments.iter().zip(&grads) {
            let r = s.len();
            let o = Tensor::from_slice(&obs[s.start * 8..s.end * 8], (r, 8), &dev).unwrap();
            let t = Tensor::from_slice(&tasks[s.clone()], r, &dev).unwrap();
            let w = Tensor::from_slice(&dout[s.start * 4..s.end * 4], (r, 4), &dev).unwrap();
            let loss = (net.forward(&o, &t).unwrap() * w)
                .unwrap()
                .sum_all()
                .unwrap();
            let reference = loss.backward().unwrap();
            for ((name, v), got) in net.params().named_vars().iter().zip(g) {
                let want: Vec<f32> = reference
                    .get(v)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap();
                let e = rel(got, &want);
                assert!(e < 1e-5, "{s:?} {name}: relative error {e}");
            }
        }
    }

    #[test]
    fn mlp_outputs_and_per_segment_gradients_match_candle() {
        let dev = Device::Cpu;
        check(&SharedQMlp::new(&mut StdRng::seed_from_u64(2), &dev).unwrap());
        check(&SharedQMlp::new_blind(&mut StdRng::seed_from_u64(2), &dev).unwrap());
        check(&QMlp::new(&mut StdRng::seed_from_u64(2), &dev).unwrap());
    }
}
