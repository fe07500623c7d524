//! Builds the guest plugins from source once per test run and says where
//! each one is.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The repository root.
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
}

fn build() -> Result<PathBuf, String> {
    let plugins = repo_root().join("plugins");
    let output = Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet"])
        .current_dir(&plugins)
        // The outer cargo's settings for the host target must not leak into
        // the guest build.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .map_err(|e| format!("cannot run cargo for the plugins: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "building the plugins failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(plugins.join("target/wasm32-wasip2/release"))
}

/// The path of the compiled plugin `crate_name` (dashes allowed), building
/// every plugin first if this is the first call in the run.
pub fn wasm(crate_name: &str) -> PathBuf {
    static OUT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let dir = OUT
        .get_or_init(build)
        .as_ref()
        .unwrap_or_else(|e| panic!("{e}"));
    let path = dir.join(format!("{}.wasm", crate_name.replace('-', "_")));
    assert!(path.exists(), "{} was not built", path.display());
    path
}
