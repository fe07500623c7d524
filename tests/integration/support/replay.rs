//! Runs the real `tandem replay`.

use std::path::Path;
use std::process::Command;

use super::tandem::TANDEM;

/// Runs `tandem replay WASM --requests REQUESTS --config SETTINGS --name
/// NAME EXTRA...` and returns stdout, failing on a non-zero exit.
pub fn run(wasm: &Path, requests: &Path, settings: &Path, name: &str, extra: &[&str]) -> String {
    let output = Command::new(TANDEM)
        .arg("replay")
        .arg(wasm)
        .arg("--requests")
        .arg(requests)
        .arg("--config")
        .arg(settings)
        .arg("--name")
        .arg(name)
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "replay of {} failed: {stdout}{}",
        wasm.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}
