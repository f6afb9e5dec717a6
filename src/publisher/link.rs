//! The relay's broker link: connect (URLs in failover order, see
//! `connect`), watch for loss, reconnect with backoff, and share the
//! current confirm channel as a [`Session`].
//!
//! Recovery is ours rather than lapin's automatic recovery: on any connection
//! or channel error the whole connection is dropped and rebuilt, the topology
//! re-declared, and unconfirmed work is simply published again from the
//! spool. One path, easy to reason about and covered by the proxy tests.
//!
//! After a loss the next attempt starts with the URL *after* the one that was
//! lost, so a relay in front of a cluster moves to a surviving node at once
//! instead of first waiting on the node that just failed it.
//! Delays come from `backon` (exponential with jitter); the `backoff` crate
//! is unmaintained (RUSTSEC-2025-0012).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use backon::{BackoffBuilder, ExponentialBuilder};
use futures_util::StreamExt;
use lapin::{Channel, Connection, Event};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::connect::connect_any;
use super::topology::Topology;
use crate::config::{BrokerSettings, mask_url};
use crate::metrics::Metrics;

/// One established connection's confirm channel.
#[derive(Clone)]
pub struct Session {
    /// Increases with every connection, so users can tell a new session
    /// from the one that just failed them.
    pub generation: u64,
    /// Channel in confirm mode, topology declared.
    pub channel: Channel,
}

/// Shared view of the current session.
#[derive(Clone)]
pub struct Link {
    session: watch::Receiver<Option<Session>>,
    reset: Arc<Notify>,
    blocked: Arc<AtomicBool>,
}

impl Link {
    /// The current session, if connected now.
    pub fn current(&self) -> Option<Session> {
        self.session.borrow().clone()
    }

    /// Whether a confirm channel is up.
    pub fn is_connected(&self) -> bool {
        self.session.borrow().is_some()
    }

    /// Whether the broker told us it blocks publishing (a resource alarm):
    /// missing confirms are then expected, not a sign of a dead link.
    pub fn is_blocked(&self) -> bool {
        self.blocked.load(Ordering::Acquire)
    }

    /// Waits for a session newer than `after`; `None` once the link stopped.
    pub async fn next_session(&mut self, after: Option<u64>) -> Option<Session> {
        let newer = |s: &Option<Session>| {
            s.as_ref()
                .is_some_and(|s| after.is_none_or(|a| s.generation > a))
        };
        let result = self.session.wait_for(newer).await;
        result.ok().and_then(|s| s.clone())
    }

    /// Waits until session `generation` is gone (or the link stopped).
    pub async fn lost(&mut self, generation: u64) {
        let gone = |s: &Option<Session>| s.as_ref().is_none_or(|s| s.generation != generation);
        let _ = self.session.wait_for(gone).await;
    }

    /// Asks for a fresh connection when session `generation` failed in a
    /// way the connection itself did not report (a dead channel).
    pub fn reset(&self, generation: u64) {
        if self.current().is_some_and(|s| s.generation == generation) {
            self.reset.notify_one();
        }
    }
}

/// Starts the connection task. It runs until `stop` is cancelled, then
/// closes the channel and connection cleanly.
pub fn spawn(
    broker: BrokerSettings,
    topology: Topology,
    metrics: Metrics,
    stop: CancellationToken,
) -> (Link, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(None);
    let link = Link {
        session: rx,
        reset: Arc::new(Notify::new()),
        blocked: Arc::new(AtomicBool::new(false)),
    };
    let ca_pem = broker.ca_pem().map(str::to_owned);
    let task = tokio::spawn(run(
        broker.amqp_urls,
        ca_pem,
        topology,
        metrics,
        stop,
        tx,
        link.clone(),
    ));
    (link, task)
}

fn backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(30))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
}

async fn run(
    urls: Vec<SecretString>,
    ca_pem: Option<String>,
    topology: Topology,
    metrics: Metrics,
    stop: CancellationToken,
    tx: watch::Sender<Option<Session>>,
    link: Link,
) {
    let mut delays = backoff();
    let mut generation: u64 = 0;
    let mut attempt: u64 = 0;
    let mut was_connected = false;
    let mut first_url = 0;
    loop {
        if stop.is_cancelled() {
            break;
        }
        attempt += 1;
        let Some((connection, channel, url_index)) =
            connect_any(&urls, first_url, ca_pem.as_deref(), &topology).await
        else {
            let delay = delays.next().unwrap_or(Duration::from_secs(30));
            tracing::warn!(
                attempt,
                delay_ms = delay.as_millis() as u64,
                "broker unreachable; retrying"
            );
            tokio::select! {
                () = tokio::time::sleep(delay) => continue,
                () = stop.cancelled() => break,
            }
        };
        let mut events = connection.events_listener();
        if was_connected {
            metrics.broker_reconnected();
        }
        let url = mask_url(urls[url_index].expose_secret());
        tracing::info!(url = %url, attempt, "connected to the broker; topology declared");
        first_url = (url_index + 1) % urls.len();
        link.blocked.store(false, Ordering::Release);
        was_connected = true;
        attempt = 0;
        delays = backoff();
        metrics.broker_connected(true);
        generation += 1;
        tx.send_replace(Some(Session {
            generation,
            channel: channel.clone(),
        }));

        let stopping = watch_session(&mut events, &link, &stop, &url).await;
        tx.send_replace(None);
        metrics.broker_connected(false);
        close(&connection, &channel).await;
        if stopping {
            break;
        }
    }
    tx.send_replace(None);
    metrics.broker_connected(false);
}

/// Follows one connection's events until it is lost, a session user asks
/// for a reset, or `stop` is cancelled (then `true`); keeps the blocked
/// flag of resource alarms.
async fn watch_session(
    events: &mut (impl futures_util::Stream<Item = Event> + Unpin),
    link: &Link,
    stop: &CancellationToken,
    url: &str,
) -> bool {
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(Event::Error(error)) => {
                    tracing::warn!(url = %url, %error, "broker connection lost; reconnecting");
                    return false;
                }
                Some(Event::ConnectionBlocked(reason)) => {
                    link.blocked.store(true, Ordering::Release);
                    tracing::warn!(%reason, "broker blocked publishing (resource alarm)");
                }
                Some(Event::ConnectionUnblocked) => {
                    link.blocked.store(false, Ordering::Release);
                    tracing::info!("broker unblocked publishing");
                }
                Some(_) => {}
                None => return false,
            },
            () = link.reset.notified() => {
                tracing::warn!(url = %url, "broker session failed or went silent; reconnecting");
                return false;
            }
            () = stop.cancelled() => return true,
        }
    }
}

async fn close(connection: &Connection, channel: &Channel) {
    let closing = async {
        let _ = channel.close(200, "kobra-relay closing".into()).await;
        let _ = connection.close(200, "kobra-relay closing".into()).await;
    };
    if tokio::time::timeout(Duration::from_secs(2), closing)
        .await
        .is_err()
    {
        tracing::debug!("broker did not answer the close in time");
    }
}
