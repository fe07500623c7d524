//! Command-line interface.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

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
