//! The operator subcommands besides `serve`: small tools that share the
//! relay's settings, topology and spool format, so what they print is what
//! the relay does.
//!
//! Each returns an [`ExitCode`]: 0 success, 1 the operation failed (refused,
//! unreachable, not found), 2 bad command line or settings.

pub mod probe;
pub mod replay;
pub mod send;
pub mod spool;
pub mod tail;
pub mod topology;

use std::process::ExitCode;

use crate::config::Settings;
use crate::publisher::connect;

/// Exit code for a failed operation.
pub const FAILED: u8 = 1;
/// Exit code for a bad command line or bad settings.
pub const USAGE: u8 = 2;

/// Prints `kobra-relay <command>: <message>` to stderr and returns `code`.
fn fail(command: &str, code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("kobra-relay {command}: {message}");
    ExitCode::from(code)
}

/// A current-thread runtime for the async tools.
fn runtime(command: &str) -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            fail(
                command,
                FAILED,
                format!("cannot start the async runtime: {e}"),
            )
        })
}

/// A connection to the first broker of `AMQP_URL` that answers, named
/// after the tool, and its URL (password masked); on failure, every URL's
/// error printed and the exit code to return.
async fn broker(
    settings: &Settings,
    command: &str,
) -> Result<(lapin::Connection, String), ExitCode> {
    connect::open_first(&settings.broker, &format!("kobra-relay {command}"))
        .await
        .map_err(|failures| fail(command, FAILED, failures))
}
