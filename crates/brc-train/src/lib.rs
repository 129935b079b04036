//! The training and evaluation pipeline: configs, the round-robin multi-task trainer,
//! evaluation, checkpoints, metrics, resume and parallel seeds. (Being built.)
