//! Command-line interface.

use std::path::PathBuf;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

use crate::config::Overrides;

/// Tandem: one sidecar per pod that reverse-proxies to the application and
/// runs every request through a chain of WebAssembly plugins.
#[derive(Debug, Parser)]
#[command(name = "tandem", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Exit code for a bad command line, environment or config (EX_USAGE).
pub const EXIT_USAGE: u8 = 64;

impl Cli {
    /// Parses the command line and the `TANDEM_*` environment. A bad value
    /// is a usage error: it is printed, naming the environment variable if
    /// that is where it came from (clap names only the flag), and the
    /// error is the exit code, 64 (also for a missing subcommand, after the
    /// help). `--help` and `--version` print and exit 0.
    pub fn parse_or_exit_code() -> Result<Self, u8> {
        Self::try_parse().map_err(|error| {
            if matches!(
                error.kind(),
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
            ) {
                let _ = error.print();
                return 0;
            }
            let _ = error.print();
            if let Some(variable) = environment_source(&error) {
                eprintln!("(the value came from the environment variable {variable})");
            }
            EXIT_USAGE
        })
    }
}

/// The environment variable behind the argument `error` is about, if that
/// variable is set and the flag was not given.
fn environment_source(error: &clap::Error) -> Option<String> {
    let Some(ContextValue::String(argument)) = error.get(ContextKind::InvalidArg) else {
        return None;
    };
    let long = argument.split_whitespace().next()?.strip_prefix("--")?;
    let command = Cli::command();
    let variable = command
        .get_subcommands()
        .flat_map(|subcommand| subcommand.get_arguments())
        .find(|candidate| candidate.get_long() == Some(long))?
        .get_env()?
        .to_str()?
        .to_owned();
    let flag = format!("--{long}");
    let given = std::env::args_os()
        .filter_map(|arg| arg.into_string().ok())
        .any(|arg| arg == flag || arg.starts_with(&format!("{flag}=")));
    (!given && std::env::var_os(&variable).is_some()).then_some(variable)
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve: proxy to the upstream through the plugin chain.
    Run(CommonArgs),
    /// Check the config and every plugin (compile, world, init), print one
    /// line per plugin, and exit non-zero on any failure.
    Check(CommonArgs),
    /// Run one plugin's hooks over recorded requests (JSON lines), without a
    /// proxy, and print what it did to each and how long each hook took.
    Replay(crate::replay::ReplayArgs),
    /// Write a new plugin project (Rust, C, Python or JavaScript) that builds
    /// as it is.
    New(crate::starter::NewArgs),
}

/// Log output format.
#[derive(Debug, Clone, Copy, ValueEnum, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Options shared by `run` and `check`. Each can also be set by the
/// environment variable named, and both win over the config file.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// The config file (tandem.toml).
    #[arg(long, short, env = "TANDEM_CONFIG")]
    pub config: Option<PathBuf>,
    /// Inbound listener address, e.g. 0.0.0.0:8080.
    #[arg(long, env = "TANDEM_LISTEN")]
    pub listen: Option<std::net::SocketAddr>,
    /// The application, e.g. http://127.0.0.1:3000.
    #[arg(long, env = "TANDEM_UPSTREAM")]
    pub upstream: Option<String>,
    /// Admin listener address (loopback by default).
    #[arg(long, env = "TANDEM_ADMIN")]
    pub admin: Option<std::net::SocketAddr>,
    /// Plugin directory.
    #[arg(long, env = "TANDEM_PLUGINS_DIR")]
    pub plugins_dir: Option<PathBuf>,
    /// Proxy worker threads (default: one per core).
    #[arg(long, env = "TANDEM_WORKERS")]
    pub workers: Option<u32>,
    /// Log format.
    #[arg(long, env = "TANDEM_LOG_FORMAT", value_enum, default_value_t)]
    pub log_format: LogFormat,
    /// `run` only: append every exchange to this file as a JSON line, for
    /// `tandem replay` (headers are written as sent, credentials included).
    #[arg(long, env = "TANDEM_RECORD")]
    pub record: Option<PathBuf>,
}

impl CommonArgs {
    /// The values that override the config file.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            listen: self.listen,
            upstream: self.upstream.clone(),
            admin: self.admin,
            plugin_dir: self.plugins_dir.clone(),
            workers: self.workers,
        }
    }
}
