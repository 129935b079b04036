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
    policy: impl FnMut(&Observation) -> usize,
) -> Result<EpisodeSummary, EnvError> {
    run_episode_observed(env, seed, max_steps, policy, |_, _| {})
}

/// Where an episode is, for observers such as renderers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpisodeProgress {
    /// Steps taken so far (0 right after reset).
    pub step: usize,
    /// Sum of rewards so far.
    pub episode_return: f64,
    /// The action of the last step (`None` right after reset).
    pub action: Option<usize>,
    /// Whether this is the episode's last state.
    pub done: bool,
}

/// [`run_episode`] that also shows `observe` the env after reset and after every step.
pub fn run_episode_observed<E: Env>(
    env: &mut E,
    seed: u64,
    max_steps: usize,
    mut policy: impl FnMut(&Observation) -> usize,
    mut observe: impl FnMut(&E, &EpisodeProgress),
) -> Result<EpisodeSummary, EnvError> {
    let mut obs = env.reset(seed);
    let mut progress = EpisodeProgress {
        step: 0,
        episode_return: 0.0,
        action: None,
        done: max_steps == 0,
    };
    observe(env, &progress);
    let mut outcome = Outcome::TimeLimit;
    while progress.step < max_steps {
        let action = policy(&obs);
        let step = env.step(action)?;
        obs = step.obs;
        progress.step += 1;
        progress.episode_return += step.reward;
        progress.action = Some(action);
        if let Some(termination) = step.termination {
            outcome = termination.into();
        }
        progress.done = step.termination.is_some() || progress.step == max_steps;
        observe(env, &progress);
        if step.termination.is_some() {
            break;
        }
    }
    Ok(EpisodeSummary {
        seed,
        episode_return: progress.episode_return,
        length: progress.step,
        outcome,
    })
}

/// Mean, spread and outcome counts over a set of episodes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EpisodeStats {
    /// Number of episodes.
    pub episodes: usize,
    /// Mean return.
    pub mean_return: f64,
    /// Population standard deviation of the returns (as numpy's default `std`).
    pub std_return: f64,
    /// Lowest return.
    pub min_return: f64,
    /// Highest return.
    pub max_return: f64,
    /// Mean episode length.
    pub mean_length: f64,
    /// How many episodes ended each way, keyed by [`Outcome::name`].
    pub outcomes: std::collections::BTreeMap<&'static str, usize>,
}

impl EpisodeStats {
    /// Statistics of `episodes`; `None` when there are none.
    pub fn from_episodes(episodes: &[EpisodeSummary]) -> Option<Self> {
        if episodes.is_empty() {
            return None;
        }
        let n = episodes.len() as f64;
        let returns = episodes.iter().map(|e| e.episode_return);
        let mean = returns.clone().sum::<f64>() / n;
        let var = returns.clone().map(|r| (r - mean).powi(2)).sum::<f64>() / n;
        let mut outcomes: std::collections::BTreeMap<_, _> =
            Outcome::ALL.iter().map(|o| (o.name(), 0)).collect();
        for e in episodes {
            *outcomes.entry(e.outcome.name()).or_default() += 1;
        }
        Some(Self {
            episodes: episodes.len(),
            mean_return: mean,
            std_return: var.sqrt(),
            min_return: returns.clone().fold(f64::INFINITY, f64::min),
            max_return: returns.fold(f64::NEG_INFINITY, f64::max),
            mean_length: episodes.iter().map(|e| e.length as f64).sum::<f64>() / n,
            outcomes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(ret: f64, length: usize, outcome: Outcome) -> EpisodeSummary {
        EpisodeSummary {
            seed: 0,
            episode_return: ret,
            length,
            outcome,
        }
    }

    #[test]
    fn stats_by_hand() {
        let eps = [
            ep(100.0, 10, Outcome::Rest),
            ep(-100.0, 20, Outcome::Crash),
            ep(300.0, 30, Outcome::Rest),
        ];
        let s = EpisodeStats::from_episodes(&eps).unwrap();
        assert_eq!(s.mean_return, 100.0);
        // Population variance: (0 + 40000 + 40000) / 3.
        assert!((s.std_return - (80_000.0f64 / 3.0).sqrt()).abs() < 1e-9);
        assert_eq!(
            (s.min_return, s.max_return, s.mean_length),
            (-100.0, 300.0, 20.0)
        );
        assert_eq!(s.outcomes["rest"], 2);
        assert_eq!(s.outcomes["crash"], 1);
        assert_eq!(s.outcomes["time_limit"], 0);
        assert!(EpisodeStats::from_episodes(&[]).is_none());
    }
}
