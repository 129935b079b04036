//! Test fixtures the agents' CPU-path tests share: a fixed replay batch, the agents' context,
//! VarShare settings and the checks of a fast path against candle's graph.

use crate::{Agent, AgentContext, Exploration, UpdateStats, VarShareConfig, NUM_ACTIONS, OBS_DIM};
use brc_buffer::Batch;
use brc_nn::{ParamStore, ResidualMode, Tensor, Var};
use candle_core::backprop::GradStore;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg32;

/// 64 transitions over `tasks` (in turn), terminal ±100 rewards among them.
pub(crate) fn batch(seed: u64, tasks: &[u32]) -> Batch {
    let mut rng = Pcg32::seed_from_u64(seed);
    let mut b = Batch::with_capacity(64);
    for i in 0..64 {
        b.obs
            .extend((0..OBS_DIM).map(|_| rng.random_range(-1.5f32..1.5)));
        b.next_obs
            .extend((0..OBS_DIM).map(|_| rng.random_range(-1.5f32..1.5)));
        b.actions.push(rng.random_range(0..NUM_ACTIONS as u32));
        let terminal = i % 9 == 0;
        b.rewards.push(if terminal {
            [-100.0, 100.0][i % 2]
        } else {
            rng.random_range(-5.0..5.0)
        });
        b.terminated.push(if terminal { 1.0 } else { 0.0 });
        b.tasks.push(tasks[i % tasks.len()]);
    }
    b
}

/// ‖a − b‖ / ‖b‖.
pub(crate) fn rel(a: &[f32], b: &[f32]) -> f64 {
    let d: f64 = a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum();
    let n: f64 = b.iter().map(|y| f64::from(*y).powi(2)).sum();
    (d / n.max(1e-30)).sqrt()
}

/// Three tasks on the CPU, greedy, seeded with `seed`: the context every CPU-path test uses.
pub(crate) fn ctx(seed: u64) -> AgentContext {
    AgentContext {
        task_names: ["standard", "windy", "heavy"].map(String::from).to_vec(),
        gamma: 0.99,
        exploration: Exploration {
            start: 0.0,
            end: 0.0,
            decay: 1.0,
        },
        target_update_episodes: 10,
        min_replay: 64,
        total_episodes: 1500,
        seed,
        device: candle_core::Device::Cpu,
    }
}

/// VarShare in `mode`, with or without the task embedding, with a β large enough for the
/// penalty to matter.
pub(crate) fn varshare_config(mode: ResidualMode, keep_embedding: bool) -> Option<VarShareConfig> {
    Some(VarShareConfig {
        mode,
        beta: 0.5,
        keep_embedding,
        ..VarShareConfig::default()
    })
}

/// Moves every variable of `params` (μ and ρ included) off its initial value.
pub(crate) fn perturb(params: &ParamStore, seed: u64) {
    let mut rng = Pcg32::seed_from_u64(seed);
    for (name, v) in params.named_vars() {
        let spread = if name.contains("residual_rho") {
            1.0
        } else {
            0.02
        };
        brc_nn::params::update_host(v, |w| {
            w.iter_mut()
                .for_each(|x| *x += rng.random_range(-spread..spread))
        })
        .unwrap();
    }
}

/// A tensor's elements as a host vector.
pub(crate) fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

/// Every variable of `params` as a host vector, in store order.
pub(crate) fn weights(params: &ParamStore) -> Vec<Vec<f32>> {
    params.named_vars().iter().map(|(_, v)| values(v)).collect()
}

/// Asserts that the host gradients `got` of `vars` (store order) equal candle's `want` to a
/// relative 1e-5, and that each variable gets one; `what` names the case in failures.
pub(crate) fn assert_gradients_equal(
    vars: &[(String, Var)],
    want: &GradStore,
    got: &[Vec<f32>],
    what: &str,
) {
    assert_eq!(got.len(), vars.len(), "{what}: gradient count");
    for ((name, var), got) in vars.iter().zip(got) {
        let reference = want
            .get(var)
            .map_or_else(|| vec![0.0; var.elem_count()], values);
        let r = rel(got, &reference);
        assert!(r <= 1e-5, "{what}: {name}: relative error {r}");
        assert!(
            got.iter().any(|g| *g != 0.0),
            "{what}: {name} gets a gradient"
        );
    }
}

/// Each variable's name and relative distance between two networks' stores, `fast` against
/// `slow`.
pub(crate) fn distances(fast: &ParamStore, slow: &ParamStore) -> Vec<(String, f64)> {
    assert_eq!(fast.len(), slow.len(), "variable count");
    fast.named_vars()
        .iter()
        .zip(slow.named_vars())
        .map(|((name, a), (_, b))| (name.clone(), rel(&values(a), &values(b))))
        .collect()
}

/// VarShare training update `i` on the fast path's agent and candle's: batch 101 + i (every
/// third leaves task 2 out: Adam still moves its residuals), an episode ended after every
/// fourth. Asserts that loss and gradient norm agree to `tolerance`; returns both stats.
pub(crate) fn varshare_update_both(
    fast: &mut impl Agent,
    slow: &mut impl Agent,
    i: u64,
    tolerance: f32,
) -> (UpdateStats, UpdateStats) {
    let tasks: &[u32] = if i % 3 == 2 { &[1, 0] } else { &[2, 0, 1] };
    let b = batch(101 + i, tasks);
    let (f, s) = (fast.update(&b).unwrap(), slow.update(&b).unwrap());
    assert!(
        (f.loss - s.loss).abs() <= tolerance * (1.0 + s.loss.abs()),
        "update {i}: {} vs {}",
        f.loss,
        s.loss
    );
    assert!((f.grad_norm - s.grad_norm).abs() <= tolerance * (1.0 + s.grad_norm));
    if i % 4 == 3 {
        fast.end_episode(0).unwrap();
        slow.end_episode(0).unwrap();
    }
    (f, s)
}

/// Asserts that every variable of the VarShare network `fast` lies within a relative 1e-4 of
/// `slow`'s after a few updates, its residuals within 1e-3: they start at zero and Adam's first
/// step divides every component by its own size, so components whose gradient is near zero
/// carry their float noise into μ (measured up to 5e-4 after update 0, then shrinking).
pub(crate) fn assert_varshare_params_close(fast: &ParamStore, slow: &ParamStore, what: &str) {
    for (name, r) in distances(fast, slow) {
        let tolerance = if name.contains("residual_") {
            1e-3
        } else {
            1e-4
        };
        assert!(r <= tolerance, "{what}: {name}: relative distance {r}");
    }
}
