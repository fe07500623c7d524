//! `promtool` from the Prometheus distribution (Debian package `prometheus`),
//! which checks that `/metrics` is valid Prometheus text format.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The `promtool` binary on `PATH`, or a panic that says how to get it.
pub fn promtool() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("promtool"))
            .find(|candidate| candidate.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "promtool is not installed; run `cargo xtask test`, which installs it \
             (or `apt-get install -y prometheus` on Debian)"
        )
    })
}

/// Runs `promtool check metrics` on `text`: `Ok` if it passes, else
/// everything it printed.
pub fn check_metrics(text: &str) -> Result<(), String> {
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let output = child.wait_with_output().expect("promtool output");
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "promtool check metrics failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}
