//! The `tandem` binary: parse the command line, load the config (exit 64 if
//! it is bad), then run or check.

use std::process::ExitCode;

use tandem::cli::{Cli, Command};
use tandem::config::Config;

/// How long the exit waits for blocking work still under way.
const EXIT_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Exit code for a bad config or command line (EX_USAGE).
const EXIT_CONFIG: u8 = tandem::cli::EXIT_USAGE;

fn main() -> ExitCode {
    let cli = match Cli::parse_or_exit_code() {
        Ok(cli) => cli,
        Err(code) => return ExitCode::from(code),
    };
    let args = match &cli.command {
        Command::Run(args) | Command::Check(args) => args,
        Command::Replay(args) => return tandem::replay::main(args),
        Command::New(args) => return tandem::starter::main(args),
    };
    tandem::telemetry::init(args.log_format);
    if let (Command::Run(_), Some(path)) = (&cli.command, &args.record)
        && let Err(error) = tandem::replay::recorder::install(path)
    {
        eprintln!("tandem: cannot record to {}: {error}", path.display());
        return ExitCode::from(EXIT_CONFIG);
    }
    let config = match Config::load(args.config.as_deref(), &args.overrides()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("tandem: bad config: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("tandem: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Check(_) => tandem::check::run(&config).await,
            Command::Run(_) => tandem::run::run(config).await.map(|()| true),
            Command::Replay(_) | Command::New(_) => unreachable!("handled above"),
        }
    });
    // Dropping the runtime would wait for its blocking threads, one of
    // which may be stuck writing records to a stdout that nobody reads
    // (the flush has already given up on it and counted the loss).
    runtime.shutdown_timeout(EXIT_WAIT);
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("tandem: {error:#}");
            // A plugin's NAME.toml is config too.
            if error
                .downcast_ref::<tandem::plugin_settings::InvalidPluginSettings>()
                .is_some()
            {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
