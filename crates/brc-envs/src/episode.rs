//! Running whole episodes under a task's time limit.

use serde::Serialize;

use crate::{Env, EnvError, Observation, Termination};

/// How an episode ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The lander came to rest (+100).
    Rest,
    /// The hull touched the ground (−100).
    Crash,
    /// |x| ≥ 1 (−100).
    OutOfBounds,
    /// Cut by the time limit; not a terminal state.
    TimeLimit,
}

impl Outcome {
    /// All outcomes, in display order.
    pub const ALL: [Outcome; 4] = [
        Outcome::Rest,
        Outcome::Crash,
        Outcome::OutOfBounds,
        Outcome::TimeLimit,
    ];

    /// Short name used in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Rest => "rest",
            Outcome::Crash => "crash",
            Outcome::OutOfBounds => "out_of_bounds",
            Outcome::TimeLimit => "time_limit",
        }
    }
}

impl From<Termination> for Outcome {
    fn from(t: Termination) -> Self {
        match t {
            Termination::Rest => Outcome::Rest,
            Termination::Crash => Outcome::Crash,
            Termination::OutOfBounds => Outcome::OutOfBounds,
        }
    }
}

/// Return, length and ending of one episode.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EpisodeSummary {
    /// Seed passed to `reset`.
    pub seed: u64,
    /// Sum of rewards.
    pub episode_return: f64,
    /// Number of steps taken.
    pub length: usize,
    /// How it ended.
    pub outcome: Outcome,
}

/// Runs one episode from `reset(seed)` until termination or `max_steps`, choosing actions with
/// `policy`.
pub fn run_episode<E: Env>(
    env: &mut E,
    seed: u64,
    max_steps: usize,
    mut policy: impl FnMut(&Observation) -> usize,
) -> Result<EpisodeSummary, EnvError> {
    let mut obs = env.reset(seed);
    let mut episode_return = 0.0;
    for t in 1..=max_steps {
        let step = env.step(policy(&obs))?;
        episode_return += step.reward;
        obs = step.obs;
        if let Some(termination) = step.termination {
            return Ok(EpisodeSummary {
                seed,
                episode_return,
                length: t,
                outcome: termination.into(),
            });
        }
    }
    Ok(EpisodeSummary {
        seed,
        episode_return,
        length: max_steps,
        outcome: Outcome::TimeLimit,
    })
}
