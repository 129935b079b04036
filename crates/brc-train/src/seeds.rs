//! Every random stream of a run derives from the one run seed.
//!
//! Env seeds are plain Gymnasium-compatible integers so that an episode can be replayed in
//! Python with `env.reset(seed=s)`: evaluation episode i of a task uses `eval_seed + i`, and
//! training episode i uses `2^40 + run_seed · 2^24 + i`, a range evaluation never reaches.

/// Env seed of training episode `episode` of a run seeded `run_seed`.
pub fn train_env_seed(run_seed: u64, episode: u64) -> u64 {
    (1u64 << 40)
        .wrapping_add(run_seed.wrapping_mul(1 << 24))
        .wrapping_add(episode)
}

/// Env seed of evaluation episode `i` (the same for every task and every evaluation, so
/// evaluations along training are comparable).
pub fn eval_env_seed(eval_seed: u64, i: u64) -> u64 {
    eval_seed.wrapping_add(i)
}

/// Which component a derived seed is for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stream {
    /// Network initialisation and exploration (the agent's own RNGs).
    Agent = 1,
    /// Replay sampling (the trainer's RNG).
    Replay = 2,
    /// The fixed probe batches for gradient-conflict measurements.
    Probe = 3,
}

/// A seed for `stream`, decorrelated from the run seed with SplitMix64.
pub(crate) fn derive(run_seed: u64, stream: Stream) -> u64 {
    let mut z = run_seed
        .wrapping_add((stream as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn training_and_evaluation_seeds_never_meet() {
        let eval: Vec<u64> = (0..10_000).map(|i| eval_env_seed(1_000_000, i)).collect();
        for run_seed in 0..5 {
            for ep in [0, 1, 4999] {
                assert!(!eval.contains(&train_env_seed(run_seed, ep)));
            }
        }
        assert_ne!(train_env_seed(0, 1), train_env_seed(1, 1));
        assert_ne!(derive(0, Stream::Agent), derive(0, Stream::Replay));
        assert_ne!(derive(0, Stream::Agent), derive(1, Stream::Agent));
    }
}
