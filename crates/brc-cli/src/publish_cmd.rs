//! `brc publish`: a finished run (or each of its seeds) as a small, committable directory —
//! config, logs, summary and the final (and best) online weights.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use brc_train::publish_run;
use clap::Args;

#[derive(Args)]
pub struct PublishArgs {
    /// A finished run directory, or a directory of seed runs (`seed-<k>/`).
    #[arg(value_name = "RUN_DIR")]
    run: PathBuf,
    /// Destination (seed runs go to `<out>/seed-<k>/`).
    #[arg(long)]
    out: PathBuf,
    /// Replace what the destination holds.
    #[arg(long)]
    force: bool,
    /// Publish under this method name (config `run.name` and summary `name`; the summary keeps
    /// the old one as `trained_as`), e.g. for a variant run whose settings became a config.
    #[arg(long)]
    name: Option<String>,
}

pub fn run(args: PublishArgs) -> Result<ExitCode> {
    let pairs: Vec<(PathBuf, PathBuf)> = if args.run.join("config.toml").is_file() {
        vec![(args.run.clone(), args.out.clone())]
    } else {
        let mut seeds: Vec<PathBuf> = std::fs::read_dir(&args.run)
            .map_err(|e| anyhow::anyhow!("{}: {e}", args.run.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("config.toml").is_file())
            .collect();
        seeds.sort();
        if seeds.is_empty() {
            bail!(
                "{}: not a run directory or a directory of seed runs",
                args.run.display()
            );
        }
        seeds
            .into_iter()
            .map(|s| {
                let name = s
                    .file_name()
                    .expect("a directory entry has a name")
                    .to_owned();
                (s, args.out.join(name))
            })
            .collect()
    };
    for (run, dest) in &pairs {
        for file in publish_run(run, dest, args.force, args.name.as_deref())? {
            println!("{}", file.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
