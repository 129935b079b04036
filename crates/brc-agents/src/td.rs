//! Batches as tensors and the DQN temporal-difference loss shared by the two MLP agents.

use brc_buffer::Batch;
use brc_nn::QNetwork;
use candle_core::{Device, Tensor, D};

use crate::{AgentError, Result, OBS_DIM};

/// A replay batch on the networks' device.
pub(crate) struct BatchTensors {
    pub(crate) obs: Tensor,
    pub(crate) actions: Tensor,
    pub(crate) rewards: Tensor,
    pub(crate) next_obs: Tensor,
    pub(crate) not_done: Tensor,
    pub(crate) tasks: Tensor,
}

impl BatchTensors {
    pub(crate) fn new(batch: &Batch, device: &Device) -> Result<Self> {
        let b = batch.len();
        if b == 0 {
            return Err(AgentError::Batch("empty batch".into()));
        }
        let not_done: Vec<f32> = batch.terminated.iter().map(|d| 1.0 - d).collect();
        Ok(Self {
            obs: Tensor::from_slice(&batch.obs, (b, OBS_DIM), device)?,
            actions: Tensor::from_slice(&batch.actions, (b, 1), device)?,
            rewards: Tensor::from_slice(&batch.rewards, b, device)?,
            next_obs: Tensor::from_slice(&batch.next_obs, (b, OBS_DIM), device)?,
            not_done: Tensor::from_vec(not_done, b, device)?,
            tasks: Tensor::from_slice(&batch.tasks, b, device)?,
        })
    }
}

/// DQN's loss: mean of (Q(s, a) − (r + γ (1 − done) max_a' Q_target(s', a')))².
/// Returns the loss and Q(s, a).
pub(crate) fn dqn_loss<N: QNetwork>(
    online: &N,
    target: &N,
    b: &BatchTensors,
    gamma: f64,
) -> Result<(Tensor, Tensor)> {
    dqn_loss_from_q(&online.forward(&b.obs, &b.tasks)?, target, b, gamma)
}

/// [`dqn_loss`] with the online Q-values `q` `[B, 4]` already computed (VarShare samples
/// them with its noise draw).
pub(crate) fn dqn_loss_from_q<N: QNetwork>(
    q: &Tensor,
    target: &N,
    b: &BatchTensors,
    gamma: f64,
) -> Result<(Tensor, Tensor)> {
    let q_taken = q.gather(&b.actions, 1)?.squeeze(1)?;
    let next_max = target
        .forward(&b.next_obs, &b.tasks)?
        .max(D::Minus1)?
        .detach();
    let td_target = (&b.rewards + (next_max * &b.not_done)?.affine(gamma, 0.0)?)?;
    let loss = (&q_taken - td_target)?.sqr()?.mean_all()?;
    Ok((loss, q_taken))
}

/// A TD loss computed on the host, with the mean Q(s, a) of its rows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct HostTd {
    pub(crate) loss: f64,
    pub(crate) mean_q: f64,
}

/// [`dqn_loss_from_q`] on the host: `q` (online) and `next` (target) are `[rows, 4]` for the
/// rows of `batch`, in its order. Returns the loss and the mean Q(s, a), and writes the loss's
/// gradient with respect to `q` into `dq` (`[rows, 4]`, overwritten). An action out of range
/// is an error.
pub(crate) fn host_dqn_loss(
    q: &[f32],
    next: &[f32],
    batch: &Batch,
    gamma: f64,
    dq: &mut [f32],
) -> Result<HostTd> {
    let rows = batch.len();
    let (a_n, gamma) = (crate::NUM_ACTIONS, gamma as f32);
    if let Some(a) = batch.actions.iter().find(|&&a| a as usize >= a_n) {
        return Err(AgentError::Batch(format!(
            "action {a} out of range ({a_n} actions)"
        )));
    }
    dq[..rows * a_n].fill(0.0);
    let (mut loss, mut q_sum) = (0.0f64, 0.0f64);
    for i in 0..rows {
        let next_max = next[i * a_n..(i + 1) * a_n]
            .iter()
            .copied()
            .fold(f32::NEG_INFINITY, f32::max);
        // As candle computes it: r + ((max Q′ · (1 − done)) · γ).
        let target = batch.rewards[i] + next_max * (1.0 - batch.terminated[i]) * gamma;
        let at = i * a_n + batch.actions[i] as usize;
        let diff = q[at] - target;
        loss += f64::from(diff * diff);
        q_sum += f64::from(q[at]);
        dq[at] = 2.0 * diff / rows as f32;
    }
    Ok(HostTd {
        loss: loss / rows as f64,
        mean_q: q_sum / rows as f64,
    })
}

/// Q-values of one observation on `task` (a batch of one).
pub(crate) fn single_q<N: QNetwork>(
    net: &N,
    obs: &[f32; OBS_DIM],
    task: usize,
) -> Result<[f32; crate::NUM_ACTIONS]> {
    let device = net.params().device();
    let o = Tensor::from_slice(obs, (1, OBS_DIM), device)?;
    let t = Tensor::from_slice(&[task as u32], 1, device)?;
    let q: Vec<f32> = net.forward(&o, &t)?.flatten_all()?.to_vec1()?;
    q.try_into()
        .map_err(|_| AgentError::Batch("network did not return 4 Q-values".into()))
}

/// All gradients of `loss` with respect to `params`, flattened in parameter order, leaving
/// out VarShare's task residuals (μ, ρ: task-specific, so they would only dilute the
/// gradient-conflict cosines between tasks).
pub(crate) fn flat_gradient(loss: &Tensor, params: &brc_nn::ParamStore) -> Result<Vec<f32>> {
    let keep = crate::varshare::decays(params);
    Ok(param_gradients(loss, params)?
        .into_iter()
        .zip(keep)
        .filter_map(|(g, keep)| keep.then_some(g))
        .collect::<Vec<_>>()
        .concat())
}

/// The gradient of `loss` with respect to each of `params`, in order (zeros where none).
pub(crate) fn param_gradients(loss: &Tensor, params: &brc_nn::ParamStore) -> Result<Vec<Vec<f32>>> {
    let grads = loss.backward()?;
    params
        .named_vars()
        .iter()
        .map(|(_, v)| match grads.get(v) {
            Some(g) => Ok(g.flatten_all()?.to_vec1::<f32>()?),
            None => Ok(vec![0.0; v.elem_count()]),
        })
        .collect()
}
