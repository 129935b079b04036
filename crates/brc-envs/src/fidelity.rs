//! Checks of this port against episodes recorded from Gymnasium (`refdata_*.json`).
//!
//! box2d-rs ports Box2D 2.4 while Gymnasium runs 2.3, so trajectories agree closely only
//! until the first ground contact and statistically after it. The checks here measure exactly
//! that: the random draw sequence (must be identical), the reset observation, the open-loop
//! replay of recorded actions before contact, and the heuristic pilot's outcomes.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use flate2::read::GzDecoder;
use serde::{Deserialize, Serialize};

use crate::{heuristic_action, run_episode, Env, LunarLander, Outcome, TaskSpec};

/// Largest allowed |Δobs| for the reset observation.
pub const RESET_OBS_TOL: f64 = 1e-3;
/// Largest allowed |Δobs| before the reference's first ground contact.
pub const PRE_CONTACT_OBS_TOL: f64 = 2e-2;
/// Largest allowed |Δreward| before the reference's first ground contact.
pub const PRE_CONTACT_REWARD_TOL: f64 = 1.0;
/// Smallest allowed share of heuristic episodes with the same outcome as Gymnasium's.
pub const MIN_OUTCOME_AGREEMENT: f64 = 0.85;
/// Largest allowed gap between the heuristic's mean return here and in Gymnasium.
pub const MEAN_RETURN_TOL: f64 = 10.0;

/// Errors reading reference files.
#[derive(Debug, thiserror::Error)]
pub enum FidelityError {
    /// The file could not be opened or read.
    #[error("cannot read {path}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a reference file of the expected layout.
    #[error("{path}: not a valid reference file: {message}")]
    Format {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The file's variant names no known task.
    #[error("{path}: unknown variant {variant:?} (expected standard, windy or heavy)")]
    UnknownVariant {
        /// The file.
        path: String,
        /// The variant it names.
        variant: String,
    },
}

/// One recorded Gymnasium episode.
#[derive(Debug, Clone, Deserialize)]
pub struct RefEpisode {
    /// Seed passed to `reset`.
    pub seed: u64,
    /// `"random"` or `"heuristic"`.
    pub policy: String,
    /// The task's time limit.
    pub time_limit: usize,
    /// Number of draws `reset` made.
    pub n_reset_draws: usize,
    /// Every draw in order, `[low, high, value]`.
    pub draws: Vec<[f64; 3]>,
    /// Actions of steps 1..=T.
    pub actions: Vec<usize>,
    /// Observations o_0..o_T.
    pub obs: Vec<[f32; 8]>,
    /// Rewards of steps 1..=T.
    pub rewards: Vec<f64>,
    /// Termination flags of steps 1..=T.
    pub terminated: Vec<bool>,
    /// Whether the time limit cut the episode.
    pub truncated_by_limit: bool,
    /// Sum of rewards.
    #[serde(rename = "return")]
    pub episode_return: f64,
}

impl RefEpisode {
    /// How the recorded episode ended.
    pub fn outcome(&self) -> Outcome {
        match (self.terminated.last(), self.rewards.last()) {
            (Some(true), Some(&r)) if r > 0.0 => Outcome::Rest,
            (Some(true), _) => {
                let x = self.obs.last().map_or(0.0, |o| o[0]);
                if x.abs() >= 1.0 {
                    Outcome::OutOfBounds
                } else {
                    Outcome::Crash
                }
            }
            _ => Outcome::TimeLimit,
        }
    }

    /// Index of the first step whose observation has a leg contact or that terminated
    /// (the end of the part where Box2D 2.3 and 2.4 agree closely).
    pub fn first_contact_step(&self) -> usize {
        (1..self.obs.len())
            .find(|&t| self.obs[t][6] != 0.0 || self.obs[t][7] != 0.0 || self.terminated[t - 1])
            .unwrap_or(self.obs.len())
    }
}

/// A `refdata_<variant>.json` file (plain or gzip-compressed).
#[derive(Debug, Clone, Deserialize)]
pub struct RefFile {
    /// `standard`, `windy` or `heavy`.
    pub variant: String,
    /// The recorded episodes.
    pub episodes: Vec<RefEpisode>,
}

/// Reads a reference file; `.gz` files are decompressed.
pub fn load_ref_file(path: &Path) -> Result<RefFile, FidelityError> {
    let name = path.display().to_string();
    let text = read_maybe_gz(path)?;
    serde_json::from_str(&text).map_err(|e| FidelityError::Format {
        path: name,
        message: e.to_string(),
    })
}

/// One heuristic episode as `heuristic100_py.json` records it.
#[derive(Debug, Clone, Deserialize)]
pub struct HeuristicRecord {
    /// Seed passed to `reset`.
    pub seed: u64,
    /// Episode return.
    pub ret: f64,
    /// Episode length.
    pub len: usize,
    /// `landed(+100)`, `crashed(-100)` (crash or out of bounds) or `timeout`.
    pub outcome: String,
}

/// Reads `heuristic100_py.json`: per task name, Gymnasium's heuristic results on seeds 0–99.
pub fn load_heuristic_records(
    path: &Path,
) -> Result<std::collections::BTreeMap<String, Vec<HeuristicRecord>>, FidelityError> {
    let name = path.display().to_string();
    let text = read_maybe_gz(path)?;
    serde_json::from_str(&text).map_err(|e| FidelityError::Format {
        path: name,
        message: e.to_string(),
    })
}

/// Whether our outcome is the one Gymnasium's record names (it does not tell a crash from
/// leaving the viewport: both are `crashed(-100)`).
pub fn same_outcome(ours: Outcome, gymnasium: &str) -> bool {
    matches!(
        (ours, gymnasium),
        (Outcome::Rest, "landed(+100)")
            | (Outcome::Crash | Outcome::OutOfBounds, "crashed(-100)")
            | (Outcome::TimeLimit, "timeout")
    )
}

fn read_maybe_gz(path: &Path) -> Result<String, FidelityError> {
    let io = |source| FidelityError::Io {
        path: path.display().to_string(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let mut text = String::new();
    if path.extension().is_some_and(|e| e == "gz") {
        GzDecoder::new(BufReader::new(file))
            .read_to_string(&mut text)
            .map_err(io)?;
    } else {
        BufReader::new(file).read_to_string(&mut text).map_err(io)?;
    }
    Ok(text)
}

/// The comparison of one recorded episode with this port.
#[derive(Debug, Clone, Serialize)]
pub struct EpisodeCheck {
    /// Seed of the episode.
    pub seed: u64,
    /// `"random"` or `"heuristic"`.
    pub policy: String,
    /// Whether replaying the recorded actions made exactly the recorded draws.
    pub draws_equal: bool,
    /// max |Δ| of the reset observation.
    pub reset_obs_error: f64,
    /// Steps compared before the reference's first contact.
    pub pre_contact_steps: usize,
    /// max |Δobs| over those steps.
    pub pre_contact_obs_error: f64,
    /// max |Δreward| over those steps.
    pub pre_contact_reward_error: f64,
    /// Gymnasium's outcome.
    pub reference_outcome: Outcome,
    /// Our outcome running the same policy closed-loop (heuristic episodes only).
    pub our_outcome: Option<Outcome>,
}

impl EpisodeCheck {
    /// Whether draws, reset and pre-contact errors are within the tolerances.
    pub fn within_tolerances(&self) -> bool {
        self.draws_equal
            && self.reset_obs_error <= RESET_OBS_TOL
            && self.pre_contact_obs_error <= PRE_CONTACT_OBS_TOL
            && self.pre_contact_reward_error <= PRE_CONTACT_REWARD_TOL
    }
}

/// Compares one recorded episode with this port on `task`.
pub fn check_episode(task: &TaskSpec, episode: &RefEpisode) -> EpisodeCheck {
    let mut env = LunarLander::new(task.clone()).expect("default tasks are valid");
    env.record_draws(true);
    let obs0 = env.reset(episode.seed);
    let reset_obs_error = max_abs_diff(&obs0, &episode.obs[0]);

    let contact = episode.first_contact_step();
    let mut pre_contact_obs_error: f64 = 0.0;
    let mut pre_contact_reward_error: f64 = 0.0;
    let mut action_ok = true;
    // Replay every recorded action open-loop, past our own termination if need be: the draw
    // sequence (2 or 3 per step) does not depend on the physics.
    for (i, &action) in episode.actions.iter().enumerate() {
        let Ok(step) = env.step(action) else {
            action_ok = false;
            break;
        };
        let t = i + 1;
        if t < contact {
            pre_contact_obs_error =
                pre_contact_obs_error.max(max_abs_diff(&step.obs, &episode.obs[t]));
            pre_contact_reward_error =
                pre_contact_reward_error.max((step.reward - episode.rewards[i]).abs());
        }
    }
    let draws_equal = action_ok
        && env.draws().len() == episode.draws.len()
        && env
            .draws()
            .iter()
            .zip(&episode.draws)
            .all(|(d, r)| [d.low, d.high, d.value] == *r);

    let our_outcome = (episode.policy == "heuristic").then(|| {
        let mut env = LunarLander::new(task.clone()).expect("default tasks are valid");
        run_episode(&mut env, episode.seed, episode.time_limit, heuristic_action)
            .expect("the heuristic picks valid actions")
            .outcome
    });

    EpisodeCheck {
        seed: episode.seed,
        policy: episode.policy.clone(),
        draws_equal,
        reset_obs_error,
        pre_contact_steps: contact.saturating_sub(1),
        pre_contact_obs_error,
        pre_contact_reward_error,
        reference_outcome: episode.outcome(),
        our_outcome,
    }
}

fn max_abs_diff(a: &[f32; 8], b: &[f32; 8]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).abs())
        .fold(0.0, f64::max)
}

/// The comparison of a whole reference file with this port.
#[derive(Debug, Clone, Serialize)]
pub struct FileCheck {
    /// The file checked.
    pub path: String,
    /// Its task.
    pub variant: String,
    /// Episodes compared.
    pub episodes: usize,
    /// Episodes whose draw sequence matched exactly.
    pub draws_equal: usize,
    /// max |Δ| of reset observations.
    pub reset_obs_error: f64,
    /// max |Δobs| before first contact.
    pub pre_contact_obs_error: f64,
    /// max |Δreward| before first contact.
    pub pre_contact_reward_error: f64,
    /// Heuristic episodes whose outcome matched Gymnasium's, and how many there were.
    pub heuristic_same_outcome: (usize, usize),
    /// Whether everything is within the tolerances.
    pub pass: bool,
    /// Per-episode details.
    pub details: Vec<EpisodeCheck>,
}

/// Checks every episode of a reference file (see the module docs).
pub fn check_file(path: &Path) -> Result<FileCheck, FidelityError> {
    let file = load_ref_file(path)?;
    let task = TaskSpec::by_name(&file.variant).ok_or_else(|| FidelityError::UnknownVariant {
        path: path.display().to_string(),
        variant: file.variant.clone(),
    })?;
    for (i, e) in file.episodes.iter().enumerate() {
        let consistent = e.obs.len() == e.actions.len() + 1
            && e.rewards.len() == e.actions.len()
            && e.terminated.len() == e.actions.len();
        if !consistent {
            return Err(FidelityError::Format {
                path: path.display().to_string(),
                message: format!(
                    "episode {i}: obs, actions, rewards and terminated lengths disagree"
                ),
            });
        }
    }
    let details: Vec<EpisodeCheck> = file
        .episodes
        .iter()
        .map(|e| check_episode(&task, e))
        .collect();
    let max = |f: fn(&EpisodeCheck) -> f64| details.iter().map(f).fold(0.0, f64::max);
    let heuristic: Vec<_> = details.iter().filter(|d| d.our_outcome.is_some()).collect();
    let same = heuristic
        .iter()
        .filter(|d| d.our_outcome == Some(d.reference_outcome))
        .count();
    let agreement_ok =
        heuristic.is_empty() || same as f64 >= MIN_OUTCOME_AGREEMENT * heuristic.len() as f64;
    Ok(FileCheck {
        path: path.display().to_string(),
        variant: file.variant,
        episodes: details.len(),
        draws_equal: details.iter().filter(|d| d.draws_equal).count(),
        reset_obs_error: max(|d| d.reset_obs_error),
        pre_contact_obs_error: max(|d| d.pre_contact_obs_error),
        pre_contact_reward_error: max(|d| d.pre_contact_reward_error),
        heuristic_same_outcome: (same, heuristic.len()),
        pass: agreement_ok && details.iter().all(EpisodeCheck::within_tolerances),
        details,
    })
}
