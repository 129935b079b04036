//! n-step returns (`training.n_step`): the trainer folds n consecutive rewards of an episode
//! into one stored transition, (s_t, a_t, Σₖ γᵏ r_{t+k}, s_{t+n}), and the agents bootstrap
//! from s_{t+n} with γⁿ (their context's `gamma`).
//!
//! Only exact n-step returns are stored. A window that ends in a termination is stored with
//! the rewards up to it and no bootstrap, whatever its length. The last n − 1 steps of an
//! episode cut by its time limit would need γᵏ with k < n: they are dropped instead, so no
//! stored transition has a wrong discount. With n = 1 every step is stored as it happens,
//! exactly as without this module.

use std::collections::VecDeque;

use brc_buffer::Transition;
use brc_envs::OBS_DIM;

/// One step waiting for the rest of its n-step return.
#[derive(Debug, Clone, Copy)]
struct Pending {
    obs: [f32; OBS_DIM],
    action: u32,
    reward: f64,
}

/// The last n − 1 steps of the current episode, each waiting for its n-step return.
#[derive(Debug, Clone)]
pub(crate) struct NStepWindow {
    n: usize,
    gamma: f64,
    pending: VecDeque<Pending>,
}

impl NStepWindow {
    /// A window for `n`-step returns (n ≥ 1) discounted by `gamma`.
    pub(crate) fn new(n: usize, gamma: f64) -> Self {
        Self {
            n: n.max(1),
            gamma,
            pending: VecDeque::with_capacity(n),
        }
    }

    /// Records one env step of `task` (obs, action, reward → next_obs, `terminated`) and hands
    /// every transition it completes to `store`, oldest first.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn push<E>(
        &mut self,
        obs: [f32; OBS_DIM],
        action: u32,
        reward: f64,
        next_obs: [f32; OBS_DIM],
        terminated: bool,
        task: usize,
        mut store: impl FnMut(&Transition) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.n == 1 {
            return store(&Transition {
                obs,
                action,
                reward: reward as f32,
                next_obs,
                terminated,
                task,
            });
        }
        self.pending.push_back(Pending {
            obs,
            action,
            reward,
        });
        let full = self.pending.len() == self.n;
        if full || terminated {
            // A full window completes its oldest step; a termination completes every step.
            while !self.pending.is_empty() {
                let first = self.pending[0];
                let mut discount = 1.0;
                let mut ret = 0.0;
                for p in &self.pending {
                    ret += discount * p.reward;
                    discount *= self.gamma;
                }
                store(&Transition {
                    obs: first.obs,
                    action: first.action,
                    reward: ret as f32,
                    next_obs,
                    terminated,
                    task,
                })?;
                self.pending.pop_front();
                if !terminated {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Ends the episode: steps still waiting (a time-limit cut) are dropped.
    pub(crate) fn end_episode(&mut self) {
        self.pending.clear();
    }

    /// Whether no step is waiting (always so between episodes, where checkpoints are taken).
    pub(crate) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Steps with rewards 1, 2, 4, 8 (observation i has all entries i); `terminal_at`: the
    /// step that terminates.
    fn stored(n: usize, terminal_at: Option<usize>) -> Vec<Transition> {
        let mut w = NStepWindow::new(n, 0.5);
        let mut out = Vec::new();
        for i in 0..4 {
            let terminated = terminal_at == Some(i);
            w.push(
                [i as f32; OBS_DIM],
                i as u32,
                f64::from(1u32 << i),
                [(i + 1) as f32; OBS_DIM],
                terminated,
                2,
                |t| {
                    out.push(*t);
                    Ok::<_, ()>(())
                },
            )
            .unwrap();
            if terminated {
                break;
            }
        }
        w.end_episode();
        assert!(w.is_empty());
        out
    }

    #[test]
    fn one_step_stores_every_step_as_it_is() {
        let t = stored(1, None);
        assert_eq!(t.len(), 4);
        assert_eq!(t[2].reward, 4.0);
        assert_eq!(t[2].next_obs, [3.0; OBS_DIM]);
        assert!(t.iter().all(|t| !t.terminated && t.task == 2));
    }

    #[test]
    fn three_step_returns_by_hand() {
        // γ = 0.5: R0 = 1 + 0.5·2 + 0.25·4 = 3 (bootstrap from s3), R1 = 2 + 2 + 2 = 6 (from s4).
        let t = stored(3, None);
        assert_eq!(
            t.len(),
            2,
            "the last two steps of a time-limit cut are dropped"
        );
        assert_eq!((t[0].obs[0], t[0].action, t[0].reward), (0.0, 0, 3.0));
        assert_eq!(t[0].next_obs, [3.0; OBS_DIM]);
        assert_eq!((t[1].obs[0], t[1].reward), (1.0, 6.0));
        assert_eq!(t[1].next_obs, [4.0; OBS_DIM]);
        assert!(!t[0].terminated && !t[1].terminated);
    }

    #[test]
    fn a_termination_completes_every_waiting_step_without_bootstrap() {
        // Terminal at the 4th step: R0 = 3 (full window), then R1 = 6, R2 = 4 + 4 = 8, R3 = 8,
        // all terminal and all pointing at the terminal observation.
        let t = stored(3, Some(3));
        let got: Vec<(f32, f32, bool)> = t
            .iter()
            .map(|t| (t.obs[0], t.reward, t.terminated))
            .collect();
        assert_eq!(
            got,
            [
                (0.0, 3.0, false),
                (1.0, 6.0, true),
                (2.0, 8.0, true),
                (3.0, 8.0, true)
            ]
        );
        assert!(t[1..].iter().all(|t| t.next_obs == [4.0; OBS_DIM]));
        // Terminal before the window fills: both steps complete at once.
        let t = stored(3, Some(1));
        let got: Vec<(f32, bool)> = t.iter().map(|t| (t.reward, t.terminated)).collect();
        assert_eq!(got, [(1.0 + 0.5 * 2.0, true), (2.0, true)]);
    }
}
