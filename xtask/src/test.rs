//! `cargo xtask test`: the checks CI runs (`.ci/run` calls exactly this),
//! in order, stopping at the first failure: format, plugin build, the C,
//! Python and JavaScript example build, the root workspace's tests, the demo
//! smoke test, and clippy (unless `--no-lint`).

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;

use crate::demo;
use crate::prereq;
use crate::services;
use crate::workspace;

/// Options of `cargo xtask test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// Skip `cargo clippy --release --all-targets -- -D warnings`, which CI
    /// runs (it checks every dependency once, a few minutes on a fresh clone).
    #[arg(long)]
    no_lint: bool,
}

/// How a step ended.
enum Outcome {
    Passed,
    /// Not run, for the reason given; does not fail the command.
    Skipped(String),
    Failed(String),
    /// An earlier step failed.
    NotRun,
}

/// One step: a short name and what it does.
struct Step {
    name: &'static str,
    run: fn() -> anyhow::Result<Option<String>>,
}

/// Runs `cargo xtask test`.
pub fn run(args: &TestArgs) -> anyhow::Result<()> {
    prereq::check()?;
    let mut steps = vec![
        Step {
            name: "fmt",
            run: fmt,
        },
        Step {
            name: "test tools",
            run: || services::ensure_test_tools().map(|()| None),
        },
        Step {
            name: "build plugins",
            run: || workspace::build_plugins().map(|()| None),
        },
        Step {
            name: "plugin unit tests",
            run: || {
                // The guests' own unit tests run natively, on the host triple.
                let host = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
                workspace::run(
                    workspace::cargo()
                        .current_dir(workspace::plugins_workspace())
                        .args(["test", "--release", "--quiet", "--target", &host]),
                )
                .map(|()| None)
            },
        },
        Step {
            name: "build examples",
            run: || workspace::build_examples().map(|_| None),
        },
        Step {
            name: "cargo test",
            run: || {
                workspace::run(workspace::cargo().args(["test", "--release", "--workspace"]))
                    .map(|()| None)
            },
        },
        Step {
            name: "demo smoke test",
            run: || demo::smoke().map(|()| None),
        },
    ];
    if !args.no_lint {
        steps.push(Step {
            name: "clippy",
            run: clippy,
        });
    }

    let mut results: Vec<(&str, Outcome, Duration)> = Vec::new();
    let mut failed = None;
    for step in &steps {
        if failed.is_some() {
            results.push((step.name, Outcome::NotRun, Duration::ZERO));
            continue;
        }
        println!("\n==> {}", step.name);
        let started = Instant::now();
        let outcome = match (step.run)() {
            Ok(None) => Outcome::Passed,
            Ok(Some(reason)) => {
                println!("xtask: warning: skipped {}: {reason}", step.name);
                Outcome::Skipped(reason)
            }
            Err(error) => {
                failed = Some(step.name);
                Outcome::Failed(format!("{error:#}"))
            }
        };
        results.push((step.name, outcome, started.elapsed()));
    }

    println!("\nxtask test summary:");
    for (name, outcome, took) in &results {
        let took = format!("{:.1}s", took.as_secs_f64());
        match outcome {
            Outcome::Passed => println!("  ok       {name:<16} {took}"),
            Outcome::Skipped(reason) => println!("  skipped  {name:<16} {reason}"),
            Outcome::Failed(error) => println!("  FAILED   {name:<16} {took}  {error}"),
            Outcome::NotRun => println!("  not run  {name}"),
        }
    }
    if let Some(name) = failed {
        bail!("step `{name}` failed");
    }
    if args.no_lint {
        println!("(clippy not run: --no-lint)");
    }
    Ok(())
}

/// `cargo fmt --all -- --check`, skipped with a warning if rustfmt is
/// missing.
fn fmt() -> anyhow::Result<Option<String>> {
    if !available(&["fmt", "--version"]) {
        return Ok(Some(
            "rustfmt is not installed (rustup component add rustfmt)".into(),
        ));
    }
    workspace::run(workspace::cargo().args(["fmt", "--all", "--", "--check"]))?;
    Ok(None)
}

/// `cargo clippy --release --all-targets -- -D warnings`.
fn clippy() -> anyhow::Result<Option<String>> {
    if !available(&["clippy", "--version"]) {
        bail!("clippy is not installed (rustup component add clippy)");
    }
    workspace::run(workspace::cargo().args([
        "clippy",
        "--release",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    Ok(None)
}

/// Whether a cargo subcommand runs at all.
fn available(args: &[&str]) -> bool {
    workspace::cargo()
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}
