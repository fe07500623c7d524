//! The `tandem` binary: parse the command line, load the config (exit 64 if
//! it is bad), then run or check.

use std::process::ExitCode;

use clap::Parser;
use tandem::cli::{Cli, Command};
use tandem::config::Config;

/// Exit code for a bad config or command line (EX_USAGE).
const EXIT_CONFIG: u8 = 64;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (Command::Run(args) | Command::Check(args)) = &cli.command;
    tandem::telemetry::init(args.log_format);
    let config = match Config::load(args.config.as_deref(), &args.overrides()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("tandem: bad config: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let result = match cli.command {
        Command::Check(_) => tandem::check::run(&config),
        Command::Run(_) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|runtime| runtime.block_on(tandem::run::run(config)).map(|()| true)),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("tandem: {error:#}");
            ExitCode::FAILURE
        }
    }
}
