//! Re-reading files without a restart: one loop listens for SIGHUP and
//! checks watched files for changes, and asks each [`Reloadable`] to reload.
//!
//! What reloads, and what a failed reload keeps, is each source's own
//! business (`keys`, `tls`); this module only decides when.

use std::{
    path::Path,
    time::{Duration, SystemTime},
};

use tokio_util::sync::CancellationToken;

/// How often watched files are checked for changes.
pub const FILE_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// Something the relay re-reads on SIGHUP, and when its file changes.
pub trait Reloadable: Send + 'static {
    /// Re-reads the source. A failure keeps what is in force and says why
    /// in the log; requests never see a half-loaded value.
    fn reload(&self, reason: &str);

    /// A file whose changes trigger a reload, with the reason to log; `None`
    /// when only SIGHUP does.
    fn watched_file(&self) -> Option<(&Path, &'static str)> {
        None
    }
}

/// A file's modification time and length: a change in either is a change.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Reloads `sources` on SIGHUP and when their watched files change, until
/// `stop` is cancelled.
pub async fn watch(sources: Vec<Box<dyn Reloadable>>, stop: CancellationToken) {
    let mut hangups = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGHUP; only files that change are reloaded");
            None
        }
    };
    let mut stamps: Vec<Stamp> = sources
        .iter()
        .map(|s| s.watched_file().and_then(|(path, _)| stamp(path)))
        .collect();
    let polling = sources.iter().any(|s| s.watched_file().is_some());
    let mut ticks = tokio::time::interval(FILE_CHECK_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            Some(()) = async { hangups.as_mut()?.recv().await } => {
                for source in &sources {
                    source.reload("SIGHUP");
                }
            }
            _ = ticks.tick(), if polling => {
                for (source, last) in sources.iter().zip(&mut stamps) {
                    let Some((path, reason)) = source.watched_file() else {
                        continue;
                    };
                    let now = stamp(path);
                    if now != *last {
                        *last = now;
                        source.reload(reason);
                    }
                }
            }
            () = stop.cancelled() => return,
        }
    }
}
