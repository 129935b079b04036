//! Why a run stops: [`TrainError`], and the helper that names the file behind an I/O error.

use std::path::{Path, PathBuf};

/// Errors that stop a run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The run directory exists and may hold earlier results.
    #[error(
        "run directory {0} already exists (use --force to overwrite it or --resume to continue it)"
    )]
    RunExists(PathBuf),
    /// A file could not be written or read (the cause follows in the error chain).
    #[error("{path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The agent failed (network, checkpoint, batch).
    #[error(transparent)]
    Agent(#[from] brc_agents::AgentError),
    /// The environment failed.
    #[error(transparent)]
    Env(#[from] brc_envs::EnvError),
    /// The replay buffer failed.
    #[error(transparent)]
    Buffer(#[from] brc_buffer::BufferError),
    /// The device could not be set up.
    #[error(transparent)]
    Nn(#[from] brc_nn::NnError),
    /// The run's config is invalid.
    #[error(transparent)]
    Config(#[from] crate::ConfigError),
    /// A stop was requested (SIGTERM / SIGINT): the run finished its current episode and saved
    /// a checkpoint that `--resume` continues from, to the same metrics as an uninterrupted run.
    #[error("interrupted after episode {episodes} of {total}: checkpoint saved to {}; resume to continue", checkpoint.display())]
    Interrupted {
        /// Episodes done (and in the checkpoint).
        episodes: usize,
        /// Episodes of the whole run.
        total: usize,
        /// The checkpoint to resume from.
        checkpoint: PathBuf,
    },
    /// The loss became NaN or infinite.
    #[error("non-finite loss ({loss}) in episode {episode}; checkpoint saved to {checkpoint}")]
    NonFiniteLoss {
        /// 0-based episode index.
        episode: usize,
        /// The loss value.
        loss: f32,
        /// Where the state before the failure was saved.
        checkpoint: PathBuf,
    },
}

/// Maps an I/O error on `path` into [`TrainError::Io`].
pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}
