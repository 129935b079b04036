//! `brc bench`: env, replay, agent and end-to-end throughput on one thread (or `--threads N`).

use std::process::ExitCode;

use anyhow::{bail, Result};
use brc_train::bench::{case_names, run_bench_cases, BenchSize, Measure};
use clap::Args;

#[derive(Args)]
pub struct BenchArgs {
    /// Print one JSON document instead of the table.
    #[arg(long)]
    json: bool,
    /// A few seconds instead of about a minute (noisy figures; for smoke checks).
    #[arg(long)]
    quick: bool,
    /// Compute threads, as `brc train --threads` gives one run (the measurements run inside a
    /// pool of this size).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    threads: u16,
    /// Measure only these agent cases (comma-separated, e.g. brc,brc_varshare); default all.
    #[arg(long, value_delimiter = ',')]
    cases: Vec<String>,
}

fn fmt(m: &Measure) -> String {
    format!("{:.1} [{:.1}, {:.1}]", m.median, m.min, m.max)
}

pub fn run(args: BenchArgs) -> Result<ExitCode> {
    let size = if args.quick {
        BenchSize::quick()
    } else {
        BenchSize::full()
    };
    let known = case_names();
    if let Some(bad) = args.cases.iter().find(|c| !known.contains(&c.as_str())) {
        bail!(
            "--cases: unknown case {bad:?} (cases: {})",
            known.join(", ")
        );
    }
    let only = (!args.cases.is_empty()).then_some(args.cases.as_slice());
    let pool = crate::train_cmd::compute_pool(usize::from(args.threads))?;
    let report = pool.install(|| run_bench_cases(&size, only))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} thread{}; median [min, max] of {} repetitions; {} ({} matrix kernels)",
        report.threads,
        if report.threads == 1 { "" } else { "s" },
        size.repetitions,
        report.cpu.model,
        report.cpu.matmul_kernel
    );
    println!(
        "env, random actions     {} steps/s",
        fmt(&report.env.steps_per_s)
    );
    println!(
        "env, heuristic pilot    {} steps/s",
        fmt(&report.env.heuristic_steps_per_s)
    );
    println!(
        "replay sample (64)      {} µs",
        fmt(&report.replay_sample_us)
    );
    println!(
        "{:<20} {:>10} {:>5} {:>28} {:>8} {:>22} {:>26}",
        "agent", "params", "rows", "update µs", "GFLOP/s", "act µs (batch 1)", "training steps/s"
    );
    for (kind, a) in &report.agents {
        let e2e = report
            .e2e
            .get(kind)
            .map_or("–".into(), |e| fmt(&e.steps_per_s));
        let gflops = a.gflop_per_s.map_or("–".into(), |g| format!("{g:.1}"));
        println!(
            "{:<20} {:>10} {:>5} {:>28} {:>8} {:>22} {:>26}",
            kind,
            a.parameters,
            a.rows,
            fmt(&a.update_us),
            gflops,
            fmt(&a.act_us),
            e2e
        );
    }
    // VarShare's cost: its update against the plain agent's on the same batches.
    for (kind, a) in &report.agents {
        if let Some(base) = kind
            .strip_suffix("_varshare")
            .and_then(|b| report.agents.get(b).map(|p| (b, p)))
        {
            println!(
                "{kind} update / {} update: {:.2}×",
                base.0,
                a.update_us.median / base.1.update_us.median
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
