//! Real tools the test suite uses where a user would use them, installed
//! from Debian's packages when they are missing: `promtool` (package
//! `prometheus`) checks the `/metrics` text format; the benchmark's
//! instruction counts use valgrind's callgrind (package `valgrind`).

use std::process::{Command, Stdio};

use anyhow::bail;

/// Whether `program` runs.
fn available(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Installs Debian packages with apt-get, or says what to install.
fn apt_install(packages: &[&str], why: &str) -> anyhow::Result<()> {
    println!("xtask: installing {} ({why})", packages.join(" "));
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|status| status.success())
    };
    let mut install = vec!["install", "-y", "-qq", "--no-install-recommends"];
    install.extend_from_slice(packages);
    if !(apt(&["update", "-qq"]) && apt(&install)) {
        bail!(
            "could not install {} with apt-get ({why}); install it and run again \
             (as root: apt-get install {})",
            packages.join(" "),
            packages.join(" ")
        );
    }
    Ok(())
}

/// Makes sure the tools the tests need are installed.
pub fn ensure_test_tools() -> anyhow::Result<()> {
    if !available("promtool", "--version") {
        apt_install(
            &["prometheus"],
            "its promtool checks the /metrics format in the tests",
        )?;
        if !available("promtool", "--version") {
            bail!("promtool is still missing after installing the prometheus package");
        }
    }
    Ok(())
}

/// Makes sure valgrind (with `callgrind_control`) is installed, for the
/// benchmark's instruction counts.
pub fn ensure_valgrind() -> anyhow::Result<()> {
    if !available("callgrind_control", "--version") {
        apt_install(
            &["valgrind"],
            "callgrind counts the instructions the proxies run per request",
        )?;
        if !available("callgrind_control", "--version") {
            bail!("callgrind_control is still missing after installing the valgrind package");
        }
    }
    Ok(())
}
