//! `cargo xtask`: the developer commands of the Tandem repository, run with
//! `cargo xtask <command>` (an alias in `.cargo/config.toml`).
//!
//! Each command lives in a module of its own with a clap `Args` struct and a
//! `run` function; adding one is a module, a variant of [`Command`] and a
//! match arm in `main`.

mod bench;
mod demo;
mod http;
mod prereq;
mod process;
mod test;
mod workspace;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Developer commands for Tandem.
#[derive(Debug, Parser)]
#[command(name = "xtask", bin_name = "cargo xtask", about)]
struct Cli {
    /// The command to run.
    #[command(subcommand)]
    command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Build everything and run Tandem in front of a demo application, with
    /// two example plugins, until Ctrl-C (or, with --smoke, check it and stop).
    Demo(demo::DemoArgs),
    /// Run the checks CI runs: format, plugin build, tests, demo smoke test
    /// and clippy (skip it with --no-lint).
    Test(test::TestArgs),
    /// Measure requests/s, latency and memory side by side in one run, and
    /// the cost of one hook call; prints figures, never fails on them.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Test(args) => test::run(args),
        Command::Bench(args) => bench::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
