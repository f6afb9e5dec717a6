//! `kobra-relay replay`: publish archived visits again.
//!
//! The archive stream (`<prefix>.visits.archive`) keeps every raw visit the
//! relay published. Replay reads it from a start point, rebuilds each
//! visit's envelope from the message (body, receipt id, receipt time, key
//! label), runs the body through the normalizer of this build and publishes
//! what the relay would publish today, with confirms. Each message keeps its
//! `message_id` and gains `x-replayed: true`, so consumers de-duplicate a
//! replay exactly as they de-duplicate redeliveries.
//!
//! Reading ends at the first visit received after `--until`, or when the
//! stream has nothing more to give (its end, for now).
//!
//! - `plan`: the command line checked, the filters and the republished message.
//! - `session`: reading the archive and publishing with confirms, through
//!   the publisher's own confirm code.
//! - `progress`: the progress bar on a terminal.

mod plan;
mod progress;
mod session;

use std::{process::ExitCode, time::Duration};

use clap::Args;
use jiff::Timestamp;

use super::{FAILED, USAGE, fail};
use crate::config::Settings;
use crate::publisher::topology::Topology;
use plan::{Plan, plan};
use session::Replay;

/// Arguments of `replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Start with the visits received at or after this time (RFC 3339, e.g.
    /// 2026-11-01T00:00:00Z), or `first` for the oldest the archive keeps.
    #[arg(
        long,
        value_name = "TIME|first",
        required_unless_present = "offset",
        conflicts_with = "offset"
    )]
    pub since: Option<String>,
    /// Start at this archive offset (an interrupted replay prints where to
    /// go on).
    #[arg(long, value_name = "N")]
    pub offset: Option<u64>,
    /// Stop at the first visit received after this time (RFC 3339; default:
    /// when the replay starts).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Only this product: a slug (`debt_collection`, `product_7`, `unknown`)
    /// or an id (`1`).
    #[arg(long)]
    pub product: Option<String>,
    /// Only the visit with this id (repeat for several).
    #[arg(long = "visit-id", value_name = "ID")]
    pub visit_ids: Vec<String>,
    /// Publish the raw bodies to the raw exchange instead of normalized
    /// documents to the normalized one.
    #[arg(long)]
    pub raw: bool,
    /// Publish to this queue only (through the default exchange), for one
    /// consumer, instead of to the exchange every consumer is bound to.
    #[arg(long, value_name = "QUEUE")]
    pub to_queue: Option<String>,
    /// Read and count what would be published; publish nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Stop once the archive has given nothing for this long: its end, for
    /// now (raise it for a broker far away).
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = crate::config::parse_duration)]
    pub idle_timeout: Duration,
}

/// Counts for the summary.
#[derive(Debug, Default)]
pub(super) struct Tally {
    /// Raw visits read inside the window.
    pub(super) read: u64,
    pub(super) matched: u64,
    pub(super) published: u64,
    pub(super) skipped: u64,
    pub(super) warnings: u64,
    /// Where the next replay goes on: after the last message handled.
    pub(super) next_offset: Option<u64>,
}

/// How a replay ended.
pub(super) enum End {
    /// Past `--until`, or the stream's end.
    Done,
    Interrupted,
    Failed(String),
}

/// The shell's code for a command stopped by Ctrl-C (128 + SIGINT).
const INTERRUPTED: u8 = 130;
/// Nothing in the window matched the filters, so nothing was published: a
/// `--visit-id` that is not archived, or an empty window.
const NOTHING_MATCHED: u8 = 3;

/// Replays the archive and prints a summary; Ctrl-C stops once the
/// messages already sent are confirmed.
pub fn run(args: &ReplayArgs, settings: &Settings) -> ExitCode {
    let topology = Topology::from_settings(&settings.topology);
    let plan = match plan(args, Timestamp::now()) {
        Ok(plan) => plan,
        Err(message) => return fail("replay", USAGE, message),
    };
    let runtime = match super::runtime("replay") {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    runtime.block_on(async {
        let (connection, shown) = match super::broker(settings, "replay").await {
            Ok(opened) => opened,
            Err(code) => return code,
        };
        let mut tally = Tally::default();
        let end = match Replay::open(&connection, &topology, &plan).await {
            Ok(replay) => {
                eprintln!("replaying {} from {shown}", replay.describe());
                replay.run(&mut tally, tokio::signal::ctrl_c()).await
            }
            Err(message) => End::Failed(message),
        };
        let _ = connection.close(200, "replay done".into()).await;
        report(&plan, &tally, &end)
    })
}

/// Prints the summary (stdout) and how to go on (stderr); the exit code.
fn report(plan: &Plan, tally: &Tally, end: &End) -> ExitCode {
    let verb = if plan.dry_run {
        "would publish"
    } else {
        "published"
    };
    let count = if plan.dry_run {
        tally.matched
    } else {
        tally.published
    };
    println!(
        "replay: read {}, matched {}, {verb} {count}, skipped {}, warnings {}",
        tally.read, tally.matched, tally.skipped, tally.warnings
    );
    let resume = tally
        .next_offset
        .map(|n| format!("--offset {n}"))
        .unwrap_or_else(|| "the same start".to_owned());
    match end {
        End::Done if tally.matched == 0 => {
            eprintln!(
                "kobra-relay replay: nothing matched: {} archived visits read in the window, none {}",
                tally.read,
                if plan.product.is_some() || !plan.visit_ids.is_empty() {
                    "with the --product or --visit-id asked for"
                } else {
                    "at all"
                }
            );
            ExitCode::from(NOTHING_MATCHED)
        }
        End::Done => {
            if let Some(n) = tally.next_offset {
                eprintln!("kobra-relay replay: done; later visits start at --offset {n}");
            }
            ExitCode::SUCCESS
        }
        End::Interrupted => {
            eprintln!("kobra-relay replay: interrupted; go on with {resume}");
            ExitCode::from(INTERRUPTED)
        }
        End::Failed(message) => fail(
            "replay",
            FAILED,
            format!("{message}; go on with {resume} once fixed"),
        ),
    }
}

#[cfg(test)]
mod tests;
