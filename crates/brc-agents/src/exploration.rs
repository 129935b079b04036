//! ε-greedy exploration with a per-episode multiplicative decay.

use rand::Rng;
use rand_pcg::Pcg32;
use serde::{Deserialize, Serialize};

use crate::{Exploration, NUM_ACTIONS};

/// The current ε of one learner and its schedule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) struct EpsilonGreedy {
    pub(crate) epsilon: f64,
    pub(crate) end: f64,
    pub(crate) decay: f64,
}

impl EpsilonGreedy {
    pub(crate) fn new(schedule: Exploration) -> Self {
        Self {
            epsilon: schedule.start,
            end: schedule.end,
            decay: schedule.decay,
        }
    }

    /// After an episode: ε ← max(end, ε · decay).
    pub(crate) fn end_episode(&mut self) {
        self.epsilon = (self.epsilon * self.decay).max(self.end);
    }

    /// With probability ε a uniformly random action, otherwise `None` (act greedily).
    pub(crate) fn explore(&self, rng: &mut Pcg32) -> Option<usize> {
        (rng.random::<f64>() < self.epsilon).then(|| rng.random_range(0..NUM_ACTIONS))
    }
}
