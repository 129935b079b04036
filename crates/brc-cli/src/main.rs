//! `brc`: the command line of the brc toolkit. A thin shell: parsing, printing and exit codes;
//! the work lives in the library crates.

mod env_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Multi-task RL on LunarLander: can one big, regularized, distributional value network learn
/// several related tasks as well as separate networks?
#[derive(Parser)]
#[command(name = "brc", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Inspect the LunarLander environments: fidelity checks and the heuristic pilot.
    #[command(subcommand)]
    Env(env_cmd::EnvCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Env(cmd) => env_cmd::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // One line naming the problem, with its causes.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
