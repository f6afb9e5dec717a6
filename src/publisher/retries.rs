//! The retry schedule of entries the broker nacked, returned or did not
//! confirm in time: each backs off on its own (exponential with jitter,
//! capped at five minutes) without holding back the others.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    time::{Duration, Instant},
};

/// Backoff of one entry that the broker nacked or returned.
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(300);

/// Per-entry retry schedule for nacked, returned or timed-out entries.
#[derive(Default)]
pub(super) struct Retries {
    attempts: HashMap<u64, u32>,
    waiting: BTreeMap<(Instant, u64), ()>,
    waiting_seqs: HashSet<u64>,
}

impl Retries {
    pub(super) fn schedule(&mut self, seq: u64) -> Duration {
        let attempt = self.attempts.entry(seq).or_insert(0);
        *attempt += 1;
        let exponent = (*attempt - 1).min(16);
        let base = RETRY_MIN.saturating_mul(1 << exponent).min(RETRY_MAX);
        let jitter = base.mul_f64(0.2 * f64::from(uuid::Uuid::now_v7().as_bytes()[15]) / 255.0);
        let delay = (base + jitter).min(RETRY_MAX);
        self.waiting.insert((Instant::now() + delay, seq), ());
        self.waiting_seqs.insert(seq);
        delay
    }

    pub(super) fn is_waiting(&self, seq: u64) -> bool {
        self.waiting_seqs.contains(&seq)
    }

    pub(super) fn next_due(&self) -> Option<Instant> {
        self.waiting.keys().next().map(|(at, _)| *at)
    }

    /// Entries whose wait is over.
    pub(super) fn take_due(&mut self, now: Instant) -> Vec<u64> {
        let mut due = Vec::new();
        while let Some(&(at, seq)) = self.waiting.keys().next() {
            if at > now {
                break;
            }
            self.waiting.remove(&(at, seq));
            self.waiting_seqs.remove(&seq);
            due.push(seq);
        }
        due
    }

    pub(super) fn attempted(&self, seq: u64) -> bool {
        self.attempts.contains_key(&seq)
    }

    pub(super) fn forget(&mut self, seq: u64) {
        self.attempts.remove(&seq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_grow_and_cap_at_five_minutes() {
        let mut retries = Retries::default();
        let first = retries.schedule(7);
        assert!(
            first >= RETRY_MIN && first <= RETRY_MIN.mul_f64(1.2),
            "{first:?}"
        );
        let mut last = first;
        for _ in 0..20 {
            retries.take_due(Instant::now() + RETRY_MAX * 2);
            last = retries.schedule(7);
        }
        assert_eq!(last, RETRY_MAX);
        assert!(retries.attempted(7));
        retries.forget(7);
        assert!(!retries.attempted(7));
    }

    #[test]
    fn only_due_entries_are_taken() {
        let mut retries = Retries::default();
        retries.schedule(1);
        assert!(retries.is_waiting(1));
        assert!(retries.take_due(Instant::now()).is_empty());
        assert_eq!(
            retries.take_due(Instant::now() + Duration::from_secs(2)),
            vec![1]
        );
        assert!(!retries.is_waiting(1));
    }
}
