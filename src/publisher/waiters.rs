//! Requests waiting for their spool entry's confirms (`DURABILITY=replicated`).
//!
//! `durability` registers a visit by its receipt id *before* appending it to
//! the spool, so a confirm that comes back quickly cannot be missed; the
//! drain tells the registry when an entry's messages were all confirmed.
//! A request that stops waiting (its deadline passed) unregisters itself on
//! drop, so the registry holds only requests still being answered.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
};

use tokio::sync::oneshot;
use uuid::Uuid;

/// Receipt ids waiting for confirms; cheap to clone.
#[derive(Clone, Default)]
pub struct ConfirmWaiters {
    waiting: Arc<Mutex<HashMap<Uuid, oneshot::Sender<()>>>>,
}

impl ConfirmWaiters {
    /// Starts waiting for the confirms of the visit with `receipt`.
    pub fn register(&self, receipt: Uuid) -> Waiting {
        let (tx, rx) = oneshot::channel();
        self.lock().insert(receipt, tx);
        Waiting {
            receipt,
            confirmed: rx,
            waiters: self.clone(),
        }
    }

    /// Every message of the visit with `receipt` was confirmed.
    pub fn confirmed(&self, receipt: Uuid) {
        let waiter = {
            let mut waiting = self.lock();
            if waiting.is_empty() {
                return;
            }
            waiting.remove(&receipt)
        };
        if let Some(tx) = waiter {
            let _ = tx.send(());
        }
    }

    /// Requests waiting right now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no request is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Uuid, oneshot::Sender<()>>> {
        // A panic while holding this lock leaves the map consistent (single
        // insert or remove), so a poisoned lock is still usable.
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One request's wait; unregisters when dropped.
pub struct Waiting {
    receipt: Uuid,
    confirmed: oneshot::Receiver<()>,
    waiters: ConfirmWaiters,
}

impl Waiting {
    /// Completes with `true` once the visit's messages are confirmed, or
    /// `false` if the registry went away first.
    pub async fn confirmed(&mut self) -> bool {
        (&mut self.confirmed).await.is_ok()
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.waiters.lock().remove(&self.receipt);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_confirm_wakes_only_its_own_request() {
        let waiters = ConfirmWaiters::default();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let mut wait_a = waiters.register(a);
        let mut wait_b = waiters.register(b);
        waiters.confirmed(a);
        assert!(wait_a.confirmed().await);
        let still_waiting =
            tokio::time::timeout(std::time::Duration::from_millis(20), wait_b.confirmed()).await;
        assert!(still_waiting.is_err(), "b was not confirmed");
        assert_eq!(waiters.len(), 1);
    }

    #[tokio::test]
    async fn a_request_that_gives_up_leaves_nothing_behind() {
        let waiters = ConfirmWaiters::default();
        let receipt = Uuid::now_v7();
        drop(waiters.register(receipt));
        assert!(waiters.is_empty());
        // A late confirm for it is a no-op.
        waiters.confirmed(receipt);
        assert!(waiters.is_empty());
    }
}
