//! `brc bench`: env, replay, agent and end-to-end throughput on one thread.

use std::process::ExitCode;

use anyhow::Result;
use brc_train::bench::{run_bench, BenchSize, Measure};
use clap::Args;

#[derive(Args)]
pub struct BenchArgs {
    /// Print one JSON document instead of the table.
    #[arg(long)]
    json: bool,
    /// A few seconds instead of about a minute (noisy figures; for smoke checks).
    #[arg(long)]
    quick: bool,
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
    let report = run_bench(&size)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "one thread; median [min, max] of {} repetitions",
        size.repetitions
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
        "{:<16} {:>10} {:>28} {:>22} {:>26}",
        "agent", "params", "update µs (batch 64)", "act µs (batch 1)", "training steps/s"
    );
    for (kind, a) in &report.agents {
        let e = &report.e2e[kind];
        println!(
            "{:<16} {:>10} {:>28} {:>22} {:>26}",
            kind,
            a.parameters,
            fmt(&a.update_us),
            fmt(&a.act_us),
            fmt(&e.steps_per_s)
        );
    }
    Ok(ExitCode::SUCCESS)
}
