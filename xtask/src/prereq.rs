//! Prerequisites every command checks first: a recent enough cargo, and
//! the `wasm32-wasip2` target the plugins build for (added with rustup when
//! it is missing).

use std::io::ErrorKind;
use std::process::Command;

use anyhow::{Context, bail};

use crate::workspace::{self, WASM_TARGET};

/// The oldest toolchain that builds Tandem (edition 2024, wasmtime 48).
const MIN_RUST: (u32, u32) = (1, 95);

/// Checks the toolchain and installs the wasm target if it is missing.
pub fn check() -> anyhow::Result<()> {
    check_cargo()?;
    check_wasm_target()
}

fn check_cargo() -> anyhow::Result<()> {
    let output = workspace::cargo()
        .arg("--version")
        .output()
        .context("cannot run `cargo --version`; install Rust with rustup from https://rustup.rs")?;
    let text = String::from_utf8_lossy(&output.stdout);
    // "cargo 1.95.0 (f2d3ce0bd 2026-03-21)", or "cargo 1.97.0-nightly (...)".
    let version = text.split_whitespace().nth(1).unwrap_or("");
    let mut numbers = version
        .split(['.', '-'])
        .map(|part| part.parse::<u32>().ok());
    let found = match (numbers.next().flatten(), numbers.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor),
        _ => bail!("cannot read the cargo version from `cargo --version`: {text:?}"),
    };
    if found < MIN_RUST {
        bail!(
            "cargo {version} is too old: Tandem needs Rust {}.{} or newer. \
             Run `rustup update stable` (or install a newer toolchain) and try again.",
            MIN_RUST.0,
            MIN_RUST.1
        );
    }
    Ok(())
}

fn check_wasm_target() -> anyhow::Result<()> {
    let output = match Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
    {
        Ok(output) => output,
        Err(error) if error.kind() == ErrorKind::NotFound => bail!(
            "rustup is not installed. Tandem's plugins build for the {WASM_TARGET} target, \
             which rustup installs. Install rustup from https://rustup.rs \
             (curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh), \
             then run this command again."
        ),
        Err(error) => return Err(error).context("cannot run `rustup target list --installed`"),
    };
    if !output.status.success() {
        bail!(
            "`rustup target list --installed` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let installed = String::from_utf8_lossy(&output.stdout);
    if installed.lines().any(|line| line.trim() == WASM_TARGET) {
        return Ok(());
    }
    println!("xtask: the {WASM_TARGET} target is missing; adding it");
    workspace::run(Command::new("rustup").args(["target", "add", WASM_TARGET]))
        .with_context(|| format!("cannot add the {WASM_TARGET} target"))
}
