//! The agent a run config describes, built with the seed and device the run derives for it.

use brc_agents::{build_agent, Agent, AgentContext};

use crate::error::TrainError;
use crate::seeds::{derive, Stream};
use crate::RunConfig;

/// The freshly initialised agent of a run (its seed derives from the run seed).
pub fn build_run_agent(config: &RunConfig) -> Result<Box<dyn Agent>, TrainError> {
    Ok(build_agent(&config.agent, &agent_context(config)?)?)
}

/// What a run's agent needs to know about the run.
pub(crate) fn agent_context(config: &RunConfig) -> Result<AgentContext, TrainError> {
    let training = &config.training;
    Ok(AgentContext {
        task_names: config.task_names(),
        // With n-step returns the bootstrapped value lies n steps ahead.
        gamma: training.gamma.powi(training.n_step as i32),
        exploration: config.exploration(),
        target_update_episodes: training.target_update_episodes,
        min_replay: training.min_replay,
        total_episodes: config.total_episodes(),
        seed: derive(config.run.seed, Stream::Agent),
        device: brc_nn::select_device(&config.run.device)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_bootstrap_with_gamma_to_the_n() {
        let mut config: RunConfig = crate::parse_config(
            "[run]\nname = \"x\"\n[agent]\nkind = \"shared_dqn\"\n[training]\ngamma = 0.9\n",
            "test.toml",
            &[],
        )
        .unwrap();
        assert_eq!(agent_context(&config).unwrap().gamma, 0.9);
        config.training.n_step = 3;
        let gamma = agent_context(&config).unwrap().gamma;
        assert!((gamma - 0.729).abs() < 1e-15, "{gamma}");
    }
}
