//! `brc import-torch`: a run directory from the predecessor's PyTorch checkpoints.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use brc_train::{import_torch, TorchKind};
use clap::{Args, ValueEnum};

#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    Independent,
    SharedDqn,
    SharedDqnBlind,
}

#[derive(Args)]
pub struct ImportArgs {
    /// Which predecessor agent the files hold.
    #[arg(long, value_enum)]
    kind: Kind,
    /// The .pth files (independent: one per task in task order, or one with --task).
    #[arg(long, num_args = 1.., required = true)]
    pth: Vec<PathBuf>,
    /// For a single independent network: the task it was trained on.
    #[arg(long)]
    task: Option<String>,
    /// The run directory to create.
    #[arg(long)]
    out: PathBuf,
    /// Replace an existing directory.
    #[arg(long)]
    force: bool,
}

pub fn run(args: ImportArgs) -> Result<ExitCode> {
    let kind = match args.kind {
        Kind::Independent => TorchKind::Independent,
        Kind::SharedDqn => TorchKind::SharedDqn,
        Kind::SharedDqnBlind => TorchKind::SharedDqnBlind,
    };
    let config = import_torch(kind, &args.pth, args.task.as_deref(), &args.out, args.force)?;
    println!(
        "imported {} ({}) into {}; evaluate with: brc evaluate --run {}",
        config.agent.kind(),
        config.task_names().join(", "),
        args.out.display(),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
