//! `kobra-relay spool`: what is waiting in SPOOL_DIR, read without starting
//! the relay (and without disturbing one that is running).

use std::{fmt::Write as _, process::ExitCode};

use clap::{Args, Subcommand};
use jiff::Timestamp;
use serde_json::json;

use super::{FAILED, fail};
use crate::config::Settings;
use crate::spool::{self, Inspection};
use crate::visit::{self, Envelope, Kind};

/// Arguments of `spool`.
#[derive(Debug, Args)]
pub struct SpoolArgs {
    /// What to show (default: stats).
    #[command(subcommand)]
    pub view: Option<View>,
}

/// What `spool` shows.
#[derive(Debug, Clone, Subcommand)]
pub enum View {
    /// Entries, bytes, age of the oldest, damage (the default).
    Stats,
    /// The oldest pending entries, one line each.
    Pending {
        /// How many to list.
        #[arg(long, default_value_t = 20, value_name = "N")]
        limit: usize,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
}

/// Inspects SPOOL_DIR and prints the chosen view.
pub fn run(args: &SpoolArgs, settings: &Settings) -> ExitCode {
    let view = args.view.clone().unwrap_or(View::Stats);
    let keep = match view {
        View::Stats => 0,
        View::Pending { limit, .. } => limit,
    };
    let inspection = match spool::inspect(&settings.spool.dir, keep) {
        Ok(inspection) => inspection,
        Err(error) => {
            let reason = std::error::Error::source(&error)
                .map(|s| format!(": {s}"))
                .unwrap_or_default();
            return fail(
                "spool",
                FAILED,
                format!("{error}{reason} (check KOBRA_RELAY_SPOOL_DIR)"),
            );
        }
    };
    let now = Timestamp::now();
    match view {
        View::Stats => print!("{}", render_stats(settings, &inspection, now)),
        View::Pending { json, .. } => {
            for (seq, envelope) in &inspection.oldest {
                println!("{}", render_entry(*seq, envelope, json));
            }
        }
    }
    ExitCode::SUCCESS
}

fn render_stats(settings: &Settings, inspection: &Inspection, now: Timestamp) -> String {
    let stats = &inspection.stats;
    let mut out = format!("spool {}", settings.spool.dir.display());
    if inspection.in_use {
        out.push_str(" (in use by a running relay: a snapshot)");
    }
    out.push('\n');
    let _ = writeln!(out, "pending entries   {}", stats.entries);
    let _ = writeln!(
        out,
        "pending bytes     {} of {} (SPOOL_MAX_BYTES)",
        stats.bytes, settings.spool.max_bytes
    );
    match stats.oldest {
        Some(oldest) => {
            let _ = writeln!(
                out,
                "oldest            {oldest} ({} s ago)",
                stats.oldest_age(now).as_secs()
            );
        }
        None => out.push_str("oldest            -\n"),
    }
    let _ = writeln!(out, "segments          {}", inspection.segments);
    let _ = writeln!(
        out,
        "confirmed, not yet reclaimed {}",
        inspection.acknowledged
    );
    let _ = writeln!(out, "damaged regions   {}", inspection.damaged.len());
    for (path, offset, bytes) in &inspection.damaged {
        let _ = writeln!(
            out,
            "  {} at byte {offset}: {bytes} bytes skipped",
            path.display()
        );
    }
    let _ = writeln!(
        out,
        "quarantined       {} (damaged accepted visits, kept for inspection)",
        inspection.quarantined.len()
    );
    for (path, bytes) in &inspection.quarantined {
        let _ = writeln!(out, "  {}: {bytes} bytes", path.display());
    }
    out
}

fn render_entry(seq: u64, envelope: &Envelope, as_json: bool) -> String {
    // The ingress's one-pass probe: product and visit id without normalizing.
    let probe = visit::inspect(&envelope.body, visit::DEPTH_CEILING);
    let kind = match envelope.kind {
        Kind::Visit => "visit".to_owned(),
        Kind::Rejected(reason) => format!("rejected:{}", reason.as_str()),
    };
    let receipt = &envelope.receipt;
    if as_json {
        return json!({
            "seq": seq,
            "receiptId": receipt.id.to_string(),
            "receivedAt": receipt.received_at.to_string(),
            "keyLabel": receipt.key_label,
            "kind": kind,
            "product": probe.product.slug(),
            "visitId": probe.visit_id,
            "bytes": envelope.body.len(),
            "messageId": envelope.message_id(),
        })
        .to_string();
    }
    format!(
        "{seq:>8}  {}  {}  {kind}  {}  visit {}  {} bytes  key {}",
        receipt.received_at,
        receipt.id,
        probe.product.slug(),
        probe.visit_id.as_deref().unwrap_or("-"),
        envelope.body.len(),
        receipt.key_label,
    )
}
