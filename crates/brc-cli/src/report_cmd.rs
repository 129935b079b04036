//! `brc analyze` (one method in detail) and `brc compare` (methods side by side): plots,
//! tables and a report.md, built by brc-analysis.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Result};
use brc_analysis::curves::XAxis;
use brc_analysis::groups::{read_group_file, select_methods};
use brc_analysis::methods::{load_methods, Method};
use brc_analysis::report::{analyze, compare, ReportOptions};
use clap::{Args, ValueEnum};

/// What the training curves' x axis counts.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Axis {
    /// Cumulative env steps over all tasks.
    EnvSteps,
    /// Training episodes over all tasks.
    Episodes,
}

impl From<Axis> for XAxis {
    fn from(a: Axis) -> Self {
        match a {
            Axis::EnvSteps => XAxis::EnvSteps,
            Axis::Episodes => XAxis::Episodes,
        }
    }
}

#[derive(Args)]
pub struct AnalyzeArgs {
    /// A run directory, a directory of its seed runs (`seed-<k>/`), or several run
    /// directories of the same method.
    #[arg(required = true, value_name = "RUN_DIR")]
    runs: Vec<PathBuf>,
    /// Where the plots and tables go (default: `<first RUN_DIR>/plots`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Moving-average window of the training curves, in episodes of one task.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    smoothing: u64,
    /// X axis of the training curves.
    #[arg(long, value_enum, default_value_t = Axis::EnvSteps)]
    x_axis: Axis,
    /// Print the written files as one JSON array.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct CompareArgs {
    /// One entry per method: a run directory, a directory of seed runs, or the predecessor's
    /// `metrics/` directory or one of its `.json` logs.
    #[arg(required = true, value_name = "RUN_DIR")]
    runs: Vec<PathBuf>,
    /// Where the plots and tables go.
    #[arg(long, default_value = "results/compare")]
    out: PathBuf,
    /// Moving-average window of the learning curves, in episodes of one task.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    smoothing: u64,
    /// Bootstrap resamples of the IQM interval.
    #[arg(long, default_value_t = 50_000)]
    resamples: usize,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Take each run's final evaluation from this `brc evaluate --json` report in its run
    /// directory instead of its log, e.g. `evaluation-best-all-seed2000000-n100.json` (the best
    /// checkpoint on fresh seeds: the earlier project's protocol).
    #[arg(long, value_name = "REPORT_FILE")]
    final_evaluation: Option<String>,
    /// Only these methods, in this order (names as in the tables, comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    methods: Option<Vec<String>>,
    /// Which methods share a curve figure: a TOML file of `[[group]]` tables with `name` and
    /// `methods` (the rest form "other"). Default: by run name — baselines, BRC variants,
    /// gradient surgery, VarShare; any group over 8 methods is split.
    #[arg(long, value_name = "FILE")]
    group: Option<PathBuf>,
    /// X axis of the learning curves.
    #[arg(long, value_enum, default_value_t = Axis::EnvSteps)]
    x_axis: Axis,
    /// Print the written files as one JSON array.
    #[arg(long)]
    json: bool,
}

fn print_files(files: &[PathBuf], json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(files)?);
    } else {
        for f in files
            .iter()
            .filter(|f| f.extension().is_none_or(|x| x != "svg"))
        {
            println!("{}", f.display());
        }
    }
    Ok(())
}

pub fn run_analyze(args: AnalyzeArgs) -> Result<ExitCode> {
    let mut method: Option<Method> = None;
    for path in &args.runs {
        for m in load_methods(path, None)? {
            match &mut method {
                None => method = Some(m),
                Some(acc) if acc.name == m.name && acc.tasks() == m.tasks() => {
                    acc.runs.extend(m.runs)
                }
                Some(acc) => bail!(
                    "{}: `{}` is not the same method as `{}` (analyze takes one method; use `brc compare`)",
                    path.display(),
                    m.name,
                    acc.name
                ),
            }
        }
    }
    let method = method.expect("clap requires at least one RUN_DIR");
    let out = args.out.unwrap_or_else(|| default_out(&args.runs[0]));
    let opts = ReportOptions {
        smoothing: args.smoothing as usize,
        x_axis: args.x_axis.into(),
        ..ReportOptions::default()
    };
    let files = analyze(&method, &out, &opts)?;
    print_files(&files, args.json)?;
    Ok(ExitCode::SUCCESS)
}

fn default_out(first: &Path) -> PathBuf {
    if first.is_file() {
        first.with_extension("plots")
    } else {
        first.join("plots")
    }
}

pub fn run_compare(args: CompareArgs) -> Result<ExitCode> {
    let mut methods: Vec<Method> = Vec::new();
    for path in &args.runs {
        for m in load_methods(path, args.final_evaluation.as_deref())? {
            if methods.iter().any(|x| x.name == m.name) {
                bail!(
                    "{}: method `{}` given twice (pass a method's seeds as one directory)",
                    path.display(),
                    m.name
                );
            }
            methods.push(m);
        }
    }
    if let Some(names) = &args.methods {
        methods = select_methods(methods, names)?;
    }
    let groups = args.group.as_deref().map(read_group_file).transpose()?;
    let opts = ReportOptions {
        smoothing: args.smoothing as usize,
        resamples: args.resamples,
        bootstrap_seed: args.seed,
        final_evaluation: args.final_evaluation,
        x_axis: args.x_axis.into(),
        groups,
        ..ReportOptions::default()
    };
    let files = compare(&methods, &args.out, &opts)?;
    print_files(&files, args.json)?;
    Ok(ExitCode::SUCCESS)
}
