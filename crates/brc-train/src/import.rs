//! Run directories made from the predecessor's PyTorch checkpoints, so `brc evaluate`
//! compares its agents with ours on the same seeds.

use std::path::{Path, PathBuf};

use brc_agents::{IndependentDqn, IndependentDqnConfig, SharedDqn, SharedDqnConfig};
use brc_envs::TaskSpec;
use brc_nn::{QMlp, SharedQMlp};

use crate::error::TrainError;
use crate::run_agent::agent_context;
use crate::run_dir::prepare_dir;
use crate::run_dir::{write_atomic, RunDir, AGENT_FILE};
use crate::{parse_config, RunConfig};

/// Which predecessor agent the `.pth` files hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TorchKind {
    /// One `q_network_state_dict` MLP per task (`standard_best.pth`, ...).
    Independent,
    /// The Shared DQN with its task embedding (`shared_dqn_best.pth`).
    SharedDqn,
    /// The task-blind Shared DQN (`shared_dqn_blind_best.pth`).
    SharedDqnBlind,
}

/// Imports `pth` files into a new run directory `out` (its `final` and `best` checkpoints).
/// For [`TorchKind::Independent`], `pth` holds one file per task in task order, or one file
/// and `task` names the single task of the run.
pub fn import_torch(
    kind: TorchKind,
    pth: &[PathBuf],
    task: Option<&str>,
    out: &Path,
    force: bool,
) -> Result<RunConfig, TrainError> {
    let invalid = |msg: String| TrainError::Io {
        path: out.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, msg),
    };
    let name = out
        .file_name()
        .map_or("imported".into(), |n| n.to_string_lossy().into_owned());
    let agent_toml = match kind {
        TorchKind::Independent => "kind = \"independent_dqn\"",
        TorchKind::SharedDqn => "kind = \"shared_dqn\"",
        TorchKind::SharedDqnBlind => "kind = \"shared_dqn\"\ntask_blind = true",
    };
    let text = format!("[run]\nname = {name:?}\n\n[agent]\n{agent_toml}\n");
    let mut config = parse_config(&text, "import-torch", &[])?;
    if let Some(t) = task {
        if kind != TorchKind::Independent {
            return Err(invalid("--task applies to --kind independent only".into()));
        }
        let spec = TaskSpec::by_name(t).ok_or_else(|| {
            invalid(format!(
                "unknown task {t:?}: expected standard, windy or heavy"
            ))
        })?;
        config.tasks = vec![spec];
    }
    let expected = match kind {
        TorchKind::Independent => config.tasks.len(),
        _ => 1,
    };
    if pth.len() != expected {
        return Err(invalid(format!(
            "expected {expected} .pth file(s) for this kind and task list, got {}",
            pth.len()
        )));
    }
    let ctx = agent_context(&config)?;
    let agent: Box<dyn brc_agents::Agent> = match kind {
        TorchKind::Independent => {
            let nets = pth
                .iter()
                .map(|p| QMlp::from_pth(p, &ctx.device))
                .collect::<Result<Vec<_>, _>>()?;
            Box::new(IndependentDqn::from_networks(
                IndependentDqnConfig::default(),
                ctx,
                &nets,
            )?)
        }
        TorchKind::SharedDqn | TorchKind::SharedDqnBlind => {
            let net = SharedQMlp::from_pth(&pth[0], &ctx.device)?;
            let agent_config = SharedDqnConfig {
                task_blind: kind == TorchKind::SharedDqnBlind,
                ..Default::default()
            };
            Box::new(SharedDqn::from_network(agent_config, ctx, &net)?)
        }
    };
    let dir = RunDir::new(out);
    prepare_dir(&dir, force)?;
    write_atomic(&dir.config(), config.to_toml_string().as_bytes()).map_err(|source| {
        TrainError::Io {
            path: dir.config(),
            source,
        }
    })?;
    for checkpoint in ["final", "best"] {
        let path = dir.checkpoint(checkpoint);
        std::fs::create_dir_all(&path).map_err(|source| TrainError::Io {
            path: path.clone(),
            source,
        })?;
        agent.save(&path.join(AGENT_FILE))?;
    }
    Ok(config)
}
