//! Builds the C, Python and JavaScript example plugins once per test run
//! with `examples/plugins/build-all.sh` (which installs their toolchains on
//! first use) and says where each component and tool is.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use super::plugins::repo_root;

fn build() -> Result<HashMap<String, PathBuf>, String> {
    let script = repo_root().join("examples/plugins/build-all.sh");
    let output = Command::new("bash")
        .arg(&script)
        // The outer cargo's settings are not for the tools it builds.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(format!(
            "building the example plugins failed ({}); its output:\n{stderr}",
            script.display()
        ));
    }
    // Its progress, with build times, for the test log.
    eprint!("{stderr}");
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_once(' '))
        .map(|(lang, path)| (lang.to_owned(), PathBuf::from(path)))
        .collect())
}

fn built() -> &'static HashMap<String, PathBuf> {
    static OUT: OnceLock<Result<HashMap<String, PathBuf>, String>> = OnceLock::new();
    OUT.get_or_init(build)
        .as_ref()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The require-header component in `lang` (`c`, `python` or `js`), building
/// all three first if this is the first call in the run.
pub fn example(lang: &str) -> PathBuf {
    let path = built()
        .get(lang)
        .unwrap_or_else(|| panic!("build-all.sh built no {lang} example"));
    assert!(path.exists(), "{} was not built", path.display());
    path.clone()
}

/// The tool that built the `lang` example (tandem-witc, componentize-py or
/// componentize-js), which starters in that language can build with.
pub fn toolchain(lang: &str) -> PathBuf {
    let wasm = example(lang);
    let file = wasm.with_file_name("toolchain");
    let text = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
    PathBuf::from(text.trim())
}
