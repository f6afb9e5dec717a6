//! The `kobra-relay` binary: parse the command line, load settings, run the
//! relay or one of the operator subcommands in [`kobra_relay::cli`].
//!
//! Exit codes: 0 success, 1 the operation failed, 2 bad command line or
//! settings (the message names the setting).

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use kobra_relay::{cli, config::Settings, shutdown, startup::App, telemetry};
use mimalloc::MiMalloc;

/// The relay allocates a few short-lived buffers per request and per
/// message; mimalloc serves that pattern with far less CPU than glibc's
/// allocator under multi-threaded load. Built with `no_thp`: on kernels
/// with transparent huge pages, its 2 MiB pages kept about 20 MiB more
/// resident for nothing (see docs/performance.md).
#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

/// mimalloc's `purge_delay` option (its index in `mi_option_t`; the sys
/// crate exposes only the stable options as constants).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
/// How long freed memory stays with the allocator, in milliseconds.
const PURGE_DELAY_MS: std::ffi::c_long = 10;

/// mimalloc (v3) keeps freed pages for a second before giving them back
/// to the OS; under a burst of visits that second of garbage was a third of
/// the relay's peak RSS. Purging after 10 ms (v2's default) keeps the peak
/// near what is live, at no measurable CPU cost (docs/performance.md).
///
/// An operator's own `MIMALLOC_PURGE_DELAY` wins (mimalloc reads it at
/// start). Must run before any other thread starts (the option table is
/// not synchronized).
#[allow(unsafe_code)]
fn return_freed_memory_promptly() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: stores an integer in mimalloc's option table; called first
    // thing in `main`, while the process has one thread.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
}

/// Receives Kobra "Finish Visit" webhooks, makes them durable and relays
/// them to RabbitMQ. Settings come from KOBRA_RELAY_* environment variables
/// over an optional TOML file.
///
/// Exit codes: 0 success, 1 the operation failed, 2 bad command line or
/// settings.
#[derive(Parser)]
#[command(version, about, long_about)]
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
    /// POST a payload file to a relay and print the answer (a smoke test).
    Send(cli::send::SendArgs),
    /// Show a product's visits as they are published (a temporary copy;
    /// nothing is taken from consumers).
    Tail(cli::tail::TailArgs),
    /// Print the exchanges, queues and bindings the relay declares, or
    /// declare them.
    Topology(cli::topology::TopologyArgs),
    /// Publish archived visits again (re-normalized with this build) from
    /// the archive stream, by time window, product or visit id.
    Replay(cli::replay::ReplayArgs),
    /// Show what is waiting in the spool, without starting the relay.
    Spool(cli::spool::SpoolArgs),
    /// GET a local URL (e.g. http://127.0.0.1:8081/readyz); exit 0 on 200,
    /// 1 otherwise. For container health checks in images without curl.
    Probe {
        /// `http://host:port/path`
        url: String,
    },
}

fn main() -> ExitCode {
    return_freed_memory_promptly();
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::Probe { url } = &command {
        return cli::probe::run(url);
    }
    let serving = matches!(command, Command::Serve | Command::CheckConfig);
    let loaded = if serving {
        Settings::load(cli.config.as_deref())
    } else {
        Settings::load_for_tools(cli.config.as_deref())
    };
    let settings = match loaded {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("kobra-relay: {error}");
            return ExitCode::from(cli::USAGE);
        }
    };
    match command {
        Command::Serve => serve(settings),
        Command::CheckConfig => {
            print!("{}", settings.render_masked());
            ExitCode::SUCCESS
        }
        Command::Send(args) => cli::send::run(&args, &settings),
        Command::Tail(args) => cli::tail::run(&args, &settings),
        Command::Topology(args) => cli::topology::run(&args, &settings),
        Command::Replay(args) => replay(&args, &settings),
        Command::Spool(args) => cli::spool::run(&args, &settings),
        Command::Probe { url } => cli::probe::run(&url),
    }
}

fn serve(settings: Settings) -> ExitCode {
    let telemetry = match telemetry::start(
        settings.log_format,
        telemetry::DEFAULT_FILTER,
        &settings.traces,
    ) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!(
                "kobra-relay: cannot start trace export (OTEL_EXPORTER_OTLP_ENDPOINT): {error:#}"
            );
            return ExitCode::from(cli::USAGE);
        }
    };
    let code = run(settings);
    telemetry.shutdown();
    code
}

/// `replay`, exporting its spans when an OTLP endpoint is set.
fn replay(args: &cli::replay::ReplayArgs, settings: &Settings) -> ExitCode {
    let telemetry = match telemetry::start_spans_only(&settings.traces) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!(
                "kobra-relay: cannot start trace export (OTEL_EXPORTER_OTLP_ENDPOINT): {error:#}"
            );
            return ExitCode::from(cli::USAGE);
        }
    };
    let code = cli::replay::run(args, settings);
    telemetry.shutdown();
    code
}

fn run(settings: Settings) -> ExitCode {
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
                // Said once, on stderr, where a failed start is looked for.
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the option's index: mimalloc's own default for `purge_delay`
    /// is 1000 ms, so the index must read that before the relay sets it.
    #[test]
    #[allow(unsafe_code)]
    fn the_purge_delay_option_is_the_one_set() {
        // SAFETY: reads and writes mimalloc's option table; this is the only
        // test in the binary that touches it.
        let (default, set) = unsafe {
            let default = libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY);
            return_freed_memory_promptly();
            (
                default,
                libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY),
            )
        };
        assert_eq!((default, set), (1000, PURGE_DELAY_MS));
    }
}
