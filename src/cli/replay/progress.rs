//! The progress bar of an interactive replay: one line on stderr, redrawn
//! at most ten times a second, showing how far through its time window the
//! replay has come.

use std::{
    io::Write as _,
    time::{Duration, Instant},
};

use jiff::Timestamp;
use lapin::BasicProperties;

use super::Tally;
use super::plan::Plan;
use crate::publisher::archive::received_at;

/// A one-line progress bar on stderr, when it is a terminal: how far the
/// replay has come through its time window.
pub(super) struct Progress {
    enabled: bool,
    /// Start of the window; the first visit's time when it starts at an offset.
    from: Option<Timestamp>,
    until: Timestamp,
    dry_run: bool,
    drawn: Option<Instant>,
}

impl Progress {
    const WIDTH: usize = 30;
    const EVERY: Duration = Duration::from_millis(100);

    pub(super) fn new(plan: &Plan, enabled: bool) -> Self {
        Self {
            enabled,
            from: plan.since,
            until: plan.until,
            dry_run: plan.dry_run,
            drawn: None,
        }
    }

    pub(super) fn draw(&mut self, tally: &Tally, properties: &BasicProperties) {
        if !self.enabled {
            return;
        }
        let Some(at) = received_at(properties) else {
            return;
        };
        let from = *self.from.get_or_insert(at);
        if self
            .drawn
            .is_some_and(|drawn| drawn.elapsed() < Self::EVERY)
        {
            return;
        }
        self.drawn = Some(Instant::now());
        let span = self.until.as_second() - from.as_second();
        let done = if span > 0 {
            ((at.as_second() - from.as_second()) as f64 / span as f64).clamp(0.0, 1.0)
        } else {
            1.0
        };
        let filled = (done * Self::WIDTH as f64).round() as usize;
        let mut stderr = std::io::stderr().lock();
        let _ = write!(
            stderr,
            "\r[{}{}] {:>3}%  {at}  read {}  {} {}  skipped {}",
            "#".repeat(filled),
            "-".repeat(Self::WIDTH - filled),
            (done * 100.0).round(),
            tally.read,
            if self.dry_run { "matched" } else { "published" },
            if self.dry_run {
                tally.matched
            } else {
                tally.published
            },
            tally.skipped,
        );
        let _ = stderr.flush();
    }

    pub(super) fn clear(&self) {
        if self.enabled && self.drawn.is_some() {
            let mut stderr = std::io::stderr().lock();
            let _ = write!(stderr, "\r\x1b[2K");
            let _ = stderr.flush();
        }
    }
}
