//! Test fixtures the agents' CPU-path tests share: a fixed replay batch and a relative distance.

use crate::{NUM_ACTIONS, OBS_DIM};
use brc_buffer::Batch;
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
