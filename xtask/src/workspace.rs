//! Where things are in the repository, and running cargo with its output
//! streamed to the terminal.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// The guest plugins' target triple.
pub const WASM_TARGET: &str = "wasm32-wasip2";

/// The repository root (the parent of this crate).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the repository root")
        .to_owned()
}

/// The root workspace's target directory, honouring `CARGO_TARGET_DIR`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => std::env::current_dir().unwrap_or_default().join(dir),
        None => root().join("target"),
    }
}

/// A release binary of the root workspace.
pub fn release_binary(name: &str) -> PathBuf {
    target_dir().join("release").join(name)
}

/// A binary of the root workspace built with the `production` profile
/// (what the Dockerfile ships; see the root `Cargo.toml`).
pub fn production_binary(name: &str) -> PathBuf {
    target_dir().join("production").join(name)
}

/// The guest workspace (`plugins/`).
pub fn plugins_workspace() -> PathBuf {
    root().join("plugins")
}

/// The component built from the guest crate `crate_name` (`add-header` is
/// `add_header.wasm`).
pub fn plugin_component(crate_name: &str) -> PathBuf {
    // With CARGO_TARGET_DIR set, both workspaces build into it.
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(_) => target_dir(),
        None => plugins_workspace().join("target"),
    };
    target
        .join(WASM_TARGET)
        .join("release")
        .join(format!("{}.wasm", crate_name.replace('-', "_")))
}

/// A `cargo` command: the cargo that runs this xtask, if known.
pub fn cargo() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(root());
    command
}

/// Runs `command` with inherited stdio after echoing it, and fails unless it
/// exits successfully.
pub fn run(command: &mut Command) -> anyhow::Result<()> {
    let shown = show(command);
    println!("$ {shown}");
    let status = command
        .status()
        .with_context(|| format!("cannot start `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(())
}

/// Builds every guest plugin (`cargo build --release` in `plugins/`).
pub fn build_plugins() -> anyhow::Result<()> {
    run(cargo()
        .current_dir(plugins_workspace())
        .args(["build", "--release"]))
}

/// Builds the require-header example in C, Python and JavaScript with
/// `examples/plugins/build-all.sh` (which installs their toolchains on first
/// use and skips what is up to date) and returns each language with its
/// component.
pub fn build_examples() -> anyhow::Result<Vec<(String, PathBuf)>> {
    let script = root().join("examples/plugins/build-all.sh");
    println!("$ examples/plugins/build-all.sh");
    let output = Command::new("bash")
        .arg(&script)
        .env_remove("CARGO_TARGET_DIR")
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {}", script.display()))?;
    if !output.status.success() {
        bail!("examples/plugins/build-all.sh failed ({})", output.status);
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_once(' '))
        .map(|(lang, path)| (lang.to_owned(), PathBuf::from(path)))
        .collect())
}

/// Builds the `tandem` and `demo-app` release binaries.
pub fn build_binaries() -> anyhow::Result<()> {
    run(cargo().args(["build", "--release", "-p", "tandem", "-p", "demo-app"]))
}

/// Builds `tandem` as it ships (the `production` profile), for the
/// benchmark. The first build takes several minutes more than `release`.
pub fn build_production_tandem() -> anyhow::Result<()> {
    run(cargo().args([
        "build",
        "--profile",
        "production",
        "-p",
        "tandem",
        "--bin",
        "tandem",
    ]))
}

/// The command as a user would type it, relative to the repository root.
fn show(command: &Command) -> String {
    let mut words = Vec::new();
    if let Some(dir) = command.get_current_dir()
        && let Ok(relative) = dir.strip_prefix(root())
        && !relative.as_os_str().is_empty()
    {
        words.push(format!("(cd {} &&", relative.display()));
    }
    let program = command.get_program().to_string_lossy();
    // Show `cargo`, not the toolchain path in $CARGO.
    let program = match Path::new(&*program).file_name() {
        Some(name) if name == "cargo" => "cargo".to_owned(),
        _ => program.into_owned(),
    };
    words.push(program);
    words.extend(command.get_args().map(|a| a.to_string_lossy().into_owned()));
    let mut text = words.join(" ");
    if text.starts_with("(cd ") {
        text.push(')');
    }
    text
}
