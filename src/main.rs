//! The `kobra-relay` binary: parse the command line, load settings, run.
//!
//! Exit codes: 0 success, 1 runtime failure, 2 bad command line or
//! configuration (the message names the setting).

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use kobra_relay::{config::Settings, shutdown, startup::App, telemetry};
use mimalloc::MiMalloc;

/// The relay allocates a few short-lived buffers per request and per
/// message; mimalloc serves that pattern with far less CPU than glibc's
/// allocator under multi-threaded load (see docs/performance.md).
#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

/// Receives Kobra "Finish Visit" webhooks, makes them durable and relays
/// them to RabbitMQ. Settings come from KOBRA_RELAY_* environment variables
/// over an optional TOML file.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// TOML file with settings (keys are the setting names in lower case).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the relay (the default).
    Serve,
    /// Validate the settings and print them, secrets masked.
    CheckConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("kobra-relay: {error}");
            return ExitCode::from(2);
        }
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::CheckConfig => {
            print!("{}", settings.render_masked());
            ExitCode::SUCCESS
        }
        Command::Serve => serve(settings),
    }
}

fn serve(settings: Settings) -> ExitCode {
    telemetry::init(settings.log_format, telemetry::DEFAULT_FILTER);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("kobra-relay: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let app = match App::build(settings).await {
            Ok(app) => app,
            Err(error) => {
                tracing::error!(error = format!("{error:#}"), "cannot start");
                eprintln!("kobra-relay: {error:#}");
                return ExitCode::from(2);
            }
        };
        match app.run_until_stopped(shutdown::signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                tracing::error!(error = format!("{error:#}"), "stopped with an error");
                ExitCode::FAILURE
            }
        }
    })
}
