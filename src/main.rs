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
    /// GET a local URL (e.g. http://127.0.0.1:8081/readyz); exit 0 on 200,
    /// 1 otherwise. For container health checks in images without curl.
    Probe {
        /// `http://host:port/path`
        url: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Probe { url }) = &cli.command {
        return probe(url);
    }
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
        Command::Probe { url } => probe(&url),
    }
}

/// A minimal HTTP/1.1 GET with a 2 s budget; success is a 200 status line.
fn probe(url: &str) -> ExitCode {
    use std::io::{Read, Write};
    use std::time::Duration;

    let Some(rest) = url.strip_prefix("http://") else {
        eprintln!("kobra-relay probe: only http:// URLs are supported");
        return ExitCode::from(2);
    };
    let (authority, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(a, p)| (a, format!("/{p}")));
    let answered = (|| -> std::io::Result<String> {
        let address = std::net::ToSocketAddrs::to_socket_addrs(authority)?
            .next()
            .ok_or_else(|| std::io::Error::other("no address"))?;
        let mut stream = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nhost: {authority}\r\nconnection: close\r\n\r\n"
        )?;
        let mut head = [0u8; 64];
        let n = stream.read(&mut head)?;
        Ok(String::from_utf8_lossy(&head[..n]).into_owned())
    })();
    match answered {
        Ok(head) if head.starts_with("HTTP/1.1 200") => ExitCode::SUCCESS,
        Ok(head) => {
            eprintln!(
                "kobra-relay probe: {}",
                head.lines().next().unwrap_or("no answer")
            );
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("kobra-relay probe: {error}");
            ExitCode::FAILURE
        }
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
