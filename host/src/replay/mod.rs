//! `tandem replay`: runs one plugin's hooks over recorded exchanges without
//! a proxy, and prints what it did to each: continued or answered (with
//! what), which headers and properties it changed, what it logged, counted
//! and emitted as records, and how long each hook took.
//!
//! The exchanges are JSON lines ([`record`]), written by hand or recorded
//! from live traffic by `tandem run --record FILE` ([`recorder`]). The plugin runs as in `tandem
//! run`: same engine, pooling allocator, instance pool, deadlines, reply
//! checks and failure policy ([`driver`]).

pub mod capture;
pub mod driver;
pub mod record;
pub mod recorder;
pub mod report;
pub mod timing;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use capture::{LogCapture, PLUGIN_TARGET};
use driver::Replayer;
use timing::Timings;

/// Exit code for a bad requests file, settings file or argument (EX_USAGE).
const EXIT_USAGE: u8 = 64;

/// Options of `tandem replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The plugin component (`.wasm`).
    pub plugin: PathBuf,
    /// Recorded exchanges, one JSON object a line (see docs/writing-plugins.md).
    #[arg(long, short)]
    pub requests: PathBuf,
    /// The plugin's settings file (NAME.toml); by default the `.toml` beside
    /// the component, if there is one.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// The plugin's name in logs and metrics; by default the file name.
    #[arg(long)]
    pub name: Option<String>,
    /// Print one JSON object per exchange (and one for the summary) instead
    /// of text.
    #[arg(long)]
    pub json: bool,
    /// Replay the file this many times; exchanges are printed for the first
    /// pass and the timings cover all of them.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub repeat: u32,
}

/// Routes plugin log records to `capture` and everything else to stderr,
/// filtered by `TANDEM_LOG` (errors only by default, as the report already
/// says when a hook fails).
fn init_tracing(capture: LogCapture) {
    let spec = std::env::var("TANDEM_LOG").unwrap_or_else(|_| "error".to_owned());
    let filter = EnvFilter::try_new(format!("{spec},{PLUGIN_TARGET}=off"))
        .unwrap_or_else(|_| EnvFilter::new(format!("error,{PLUGIN_TARGET}=off")));
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(filter);
    // Already installed (e.g. in tests): keep the first.
    let _ = tracing_subscriber::registry()
        .with(capture)
        .with(stderr)
        .try_init();
}

/// Runs `tandem replay` and returns the process exit code.
pub fn main(args: &ReplayArgs) -> ExitCode {
    let capture = LogCapture::default();
    init_tracing(capture.clone());
    let records = match record::load(&args.requests) {
        Ok(records) => records,
        Err(error) => {
            eprintln!("tandem replay: bad requests file: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let settings = match driver::load_settings(&args.plugin, args.config.as_deref()) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("tandem replay: bad plugin settings: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let name = match args.name.clone().map_or_else(
        || driver::default_name(&args.plugin),
        |name| {
            if crate::runtime::loader::valid_plugin_name(&name) {
                Ok(name)
            } else {
                Err(format!(
                    "invalid --name {name:?}: use 1 to 64 of [A-Za-z0-9_-]"
                ))
            }
        },
    ) {
        Ok(name) => name,
        Err(error) => {
            eprintln!("tandem replay: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("tandem replay: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(replay(args, &records, &name, settings, capture)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tandem replay: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn replay(
    args: &ReplayArgs,
    records: &[record::Numbered],
    name: &str,
    settings: crate::plugin_settings::PluginSettings,
    capture: LogCapture,
) -> Result<(), String> {
    let replayer = Replayer::load(&args.plugin, name, settings, Some(capture)).await?;
    if args.json {
        println!("{}", serde_json::json!({ "plugin": &replayer.loaded }));
    } else {
        println!("{}", report::loaded(&replayer.loaded));
    }
    let mut first_pass = Vec::with_capacity(records.len());
    for numbered in records {
        let report = replayer
            .replay(numbered.line, &numbered.record, true)
            .await?;
        if args.json {
            println!(
                "{}",
                serde_json::to_string(&report).map_err(|e| e.to_string())?
            );
        } else {
            println!("{}", report::record(&report));
        }
        first_pass.push(report);
    }
    let mut all = first_pass.clone();
    // Later passes only time the hooks: the report of the first says what
    // they do.
    all.extend(timing::passes_of(&replayer, records, args.repeat as usize - 1).await?);
    let timings = Timings::of(&all);
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "summary": {
                    "exchanges": first_pass.len(),
                    "passes": args.repeat,
                    "timings": timings,
                }
            })
        );
    } else {
        print!("{}", report::summary(&first_pass, name, &timings));
    }
    Ok(())
}
