//! LunarLander environments for multi-task RL: a faithful port of Gymnasium's LunarLander-v3
//! (discrete actions) on box2d-rs, its standard / windy / heavy task variants, numpy-compatible
//! seeding, Gymnasium's heuristic pilot and read-only scene geometry for renderers.
//!
//! ```
//! use brc_envs::{Env, LunarLander, TaskSpec};
//! let mut env = LunarLander::new(TaskSpec::windy()).unwrap();
//! let obs = env.reset(42);
//! let step = env.step(2).unwrap();
//! assert!(step.obs.iter().chain(&obs).all(|v| v.is_finite()));
//! ```

mod episode;
pub mod fidelity;
mod heuristic;
mod lunar_lander;
pub mod rng;
mod scene;
mod task;

pub use episode::{
    run_episode, run_episode_observed, EpisodeProgress, EpisodeStats, EpisodeSummary, Outcome,
};
pub use heuristic::heuristic_action;
pub use lunar_lander::{Draw, LunarLander, VIEWPORT_H, VIEWPORT_W};
pub use scene::{EngineFiring, Scene};
pub use task::TaskSpec;

/// Observation dimension: x, y, vx, vy, angle, angular velocity, left and right leg contact.
pub const OBS_DIM: usize = 8;
/// Number of discrete actions: noop, left engine, main engine, right engine.
pub const NUM_ACTIONS: usize = 4;

/// One observation, normalised as Gymnasium does.
pub type Observation = [f32; OBS_DIM];

/// Why an episode terminated (a time-limit cut is not a termination).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Termination {
    /// The lander fell asleep at rest: +100.
    Rest,
    /// The hull touched the ground: −100.
    Crash,
    /// The lander left the viewport (|x| ≥ 1): −100.
    OutOfBounds,
}

/// What one step returns.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    /// The next observation.
    pub obs: Observation,
    /// The reward (f64, as Gymnasium's Python float).
    pub reward: f64,
    /// `Some` when the episode terminated in this step, with the cause.
    pub termination: Option<Termination>,
}

impl Step {
    /// Whether this step ended the episode (a true termination, never a time limit).
    pub fn terminated(&self) -> bool {
        self.termination.is_some()
    }
}

/// Errors from environments.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EnvError {
    /// The action is outside 0..NUM_ACTIONS.
    #[error("invalid action {0}: must be in 0..={max}", max = NUM_ACTIONS - 1)]
    InvalidAction(usize),
    /// The task's values cannot be simulated.
    #[error("invalid task: {0}")]
    InvalidTask(String),
}

/// A reinforcement-learning environment with discrete actions and a seeded reset.
pub trait Env {
    /// Starts a new episode whose randomness comes entirely from `seed`.
    fn reset(&mut self, seed: u64) -> Observation;
    /// Applies `action` for one step; an out-of-range action is an error and changes nothing.
    fn step(&mut self, action: usize) -> Result<Step, EnvError>;
}
