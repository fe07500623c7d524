//! `tandem new NAME --lang rust|c|python|js`: writes a plugin project that
//! builds as it is (`./build.sh`) and loads with `tandem check --config
//! tandem.toml`. The files come from `templates/<lang>/` (see
//! [`templates`]).

pub mod templates;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use crate::runtime::loader::valid_plugin_name;

/// Exit code for a bad name, language or directory (EX_USAGE).
const EXIT_USAGE: u8 = 64;

/// The languages a starter can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    /// Rust with the Tandem SDK (`plugins/sdk`).
    Rust,
    /// C with bindings generated from the WIT.
    C,
    /// Python with componentize-py.
    Python,
    /// JavaScript with componentize-js.
    Js,
}

/// Options of `tandem new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The plugin's name: 1 to 64 of [A-Za-z0-9_-]; also its file name.
    pub name: String,
    /// The language.
    #[arg(long, value_enum)]
    pub lang: Lang,
    /// Where to write the project; `./NAME` by default. Must not exist or
    /// be empty.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// The Tandem Rust SDK (`plugins/sdk` of a Tandem checkout), for
    /// `--lang rust`. By default it is looked for above the current
    /// directory and above the `tandem` binary.
    #[arg(long, env = "TANDEM_SDK")]
    pub sdk: Option<PathBuf>,
}

/// What went wrong, and whether it was the user's input.
#[derive(Debug)]
pub struct NewError {
    /// The message.
    pub message: String,
    /// A bad name, directory or option rather than a failed write.
    pub usage: bool,
}

fn usage(message: String) -> NewError {
    NewError {
        message,
        usage: true,
    }
}

/// The SDK in a Tandem checkout that contains `start`, if any.
fn find_sdk_above(start: &Path) -> Option<PathBuf> {
    start.ancestors().find_map(|dir| {
        let sdk = dir.join("plugins/sdk");
        sdk.join("Cargo.toml").is_file().then_some(sdk)
    })
}

fn sdk_path(given: Option<&Path>) -> Result<PathBuf, NewError> {
    let found = match given {
        Some(path) => Some(path.to_owned()),
        None => std::env::current_dir()
            .ok()
            .and_then(|cwd| find_sdk_above(&cwd))
            .or_else(|| {
                std::env::current_exe()
                    .ok()
                    .and_then(|exe| find_sdk_above(&exe))
            }),
    };
    let sdk = found.ok_or_else(|| {
        usage(
            "cannot find the Tandem Rust SDK (it is not on crates.io yet): pass --sdk PATH/TO/tandem/plugins/sdk".into(),
        )
    })?;
    if !sdk.join("Cargo.toml").is_file() {
        return Err(usage(format!(
            "{} is not the Tandem SDK (no Cargo.toml)",
            sdk.display()
        )));
    }
    sdk.canonicalize()
        .map_err(|e| usage(format!("{}: {e}", sdk.display())))
}

/// Fills the `{{...}}` slots of a template.
fn render(text: &str, slots: &[(&str, &str)]) -> String {
    slots.iter().fold(text.to_owned(), |text, (slot, value)| {
        text.replace(&format!("{{{{{slot}}}}}"), value)
    })
}

#[cfg(unix)]
fn make_executable(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
}

#[cfg(not(unix))]
fn make_executable(_: &Path) -> std::io::Result<()> {
    Ok(())
}

/// Writes the project and returns its directory and the files written.
pub fn create(args: &NewArgs) -> Result<(PathBuf, Vec<PathBuf>), NewError> {
    if !valid_plugin_name(&args.name) {
        return Err(usage(format!(
            "invalid plugin name {:?}: use 1 to 64 of [A-Za-z0-9_-]",
            args.name
        )));
    }
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    let occupied = std::fs::read_dir(&dir)
        .map(|mut entries| entries.next().is_some())
        .unwrap_or(false);
    if occupied {
        return Err(usage(format!(
            "{} exists and is not empty: nothing written",
            dir.display()
        )));
    }
    let sdk = match args.lang {
        Lang::Rust => sdk_path(args.sdk.as_deref())?.display().to_string(),
        _ => String::new(),
    };
    let crate_name = args.name.replace('-', "_");
    let metric = crate_name.to_lowercase();
    let slots = [
        ("name", args.name.as_str()),
        ("crate", crate_name.as_str()),
        ("metric", metric.as_str()),
        ("sdk_path", sdk.as_str()),
    ];
    let write = |relative: &str, text: &str, executable: bool| -> Result<PathBuf, NewError> {
        let path = dir.join(relative);
        let fail = |e: std::io::Error| NewError {
            message: format!("cannot write {}: {e}", path.display()),
            usage: false,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(fail)?;
        }
        std::fs::write(&path, text).map_err(fail)?;
        if executable {
            make_executable(&path).map_err(fail)?;
        }
        Ok(path)
    };
    let mut written = Vec::new();
    for template in templates::files(args.lang) {
        let path = render(template.path, &slots);
        written.push(write(
            &path,
            &render(template.text, &slots),
            template.executable,
        )?);
    }
    if args.lang != Lang::Rust {
        // The Rust SDK reads the WIT from its own checkout; the others build
        // against the contract of the Tandem that made them.
        written.push(write("wit/tandem.wit", templates::WIT, false)?);
    }
    Ok((dir, written))
}

/// Runs `tandem new` and returns the process exit code.
pub fn main(args: &NewArgs) -> ExitCode {
    match create(args) {
        Ok((dir, written)) => {
            println!(
                "created {} ({} files): a {:?} plugin named {}",
                dir.display(),
                written.len(),
                args.lang,
                args.name
            );
            println!(
                "next: cd {} && ./build.sh && tandem check --config tandem.toml",
                dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("tandem new: {}", error.message);
            if error.usage {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_filled() {
        assert_eq!(
            render(
                "{{name}}/{{crate}}.wasm {{name}}",
                &[("name", "a-b"), ("crate", "a_b")]
            ),
            "a-b/a_b.wasm a-b"
        );
    }

    #[test]
    fn no_template_keeps_an_unknown_slot() {
        for lang in [Lang::Rust, Lang::C, Lang::Python, Lang::Js] {
            for template in templates::files(lang) {
                let text = render(
                    template.text,
                    &[
                        ("name", "n"),
                        ("crate", "n"),
                        ("metric", "n"),
                        ("sdk_path", "/sdk"),
                    ],
                );
                assert!(!text.contains("{{"), "{lang:?} {}: {text}", template.path);
            }
        }
    }

    #[test]
    fn a_bad_name_or_a_full_directory_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let args = |name: &str, target: &Path| NewArgs {
            name: name.into(),
            lang: Lang::Python,
            dir: Some(target.to_owned()),
            sdk: None,
        };
        let error = create(&args("bad name", &dir.path().join("x"))).unwrap_err();
        assert!(error.usage && error.message.contains("invalid plugin name"));
        assert!(!dir.path().join("x").exists());
        std::fs::write(dir.path().join("keep"), "mine").unwrap();
        let error = create(&args("ok", dir.path())).unwrap_err();
        assert!(
            error.usage && error.message.contains("not empty"),
            "{}",
            error.message
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("keep")).unwrap(),
            "mine"
        );
    }
}
