//! The broker connection: connect (URLs in failover order), declare the
//! topology, enable confirms, watch for loss, reconnect with backoff.
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
use lapin::{
    Channel, Connection, ConnectionProperties, Event, ExchangeKind,
    options::{
        ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
    },
    tcp::OwnedTLSConfig,
    types::{AMQPValue, FieldTable, LongString},
};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::topology::{Argument, ExchangeType, QueueKind, Topology};
use crate::config::{BrokerSettings, mask_url};
use crate::metrics::Metrics;

/// How long one connection attempt (TCP, TLS, AMQP handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

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

        let stopping = loop {
            tokio::select! {
                event = events.next() => match event {
                    Some(Event::Error(error)) => {
                        tracing::warn!(url = %url, %error, "broker connection lost; reconnecting");
                        break false;
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
                    None => break false,
                },
                () = link.reset.notified() => {
                    tracing::warn!(url = %url, "broker session failed or went silent; reconnecting");
                    break false;
                }
                () = stop.cancelled() => break true,
            }
        };
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

/// Tries each URL in order, starting at `first` and wrapping around;
/// returns the first that connects and sets up, with its index.
async fn connect_any(
    urls: &[SecretString],
    first: usize,
    ca_pem: Option<&str>,
    topology: &Topology,
) -> Option<(Connection, Channel, usize)> {
    for index in (0..urls.len()).map(|i| (first + i) % urls.len()) {
        let url = &urls[index];
        let shown = mask_url(url.expose_secret());
        let attempt = connect(url.expose_secret(), ca_pem, topology);
        match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
            Ok(Ok((connection, channel))) => return Some((connection, channel, index)),
            Ok(Err(error)) => tracing::warn!(url = %shown, %error, "broker connection failed"),
            Err(_) => tracing::warn!(url = %shown, "broker connection timed out"),
        }
    }
    None
}

/// Opens one AMQP connection named `name` (shown in the management UI);
/// for `amqps://`, `ca_pem` adds trusted CA certificates to the system's.
///
/// # Errors
/// TCP, TLS or the AMQP handshake failed.
pub async fn open(url: &str, ca_pem: Option<&str>, name: &str) -> lapin::Result<Connection> {
    let properties = ConnectionProperties::default()
        .with_connection_name(LongString::from(name.as_bytes().to_vec()));
    let tls = OwnedTLSConfig {
        identity: None,
        cert_chain: ca_pem.map(str::to_owned),
    };
    Connection::connect_with_config(url, properties, tls, lapin::runtime::default_runtime()?).await
}

/// Opens a connection to the first of `urls` that answers, for the
/// operator tools: the connection and its URL (password masked), or every
/// URL's failure.
///
/// # Errors
/// No URL connected within the connect timeout.
pub async fn open_first(
    urls: &[SecretString],
    ca_pem: Option<&str>,
    name: &str,
) -> Result<(Connection, String), String> {
    let mut failures = Vec::new();
    for url in urls {
        let shown = mask_url(url.expose_secret());
        match tokio::time::timeout(CONNECT_TIMEOUT, open(url.expose_secret(), ca_pem, name)).await {
            Ok(Ok(connection)) => return Ok((connection, shown)),
            Ok(Err(error)) => failures.push(format!("{shown}: {error}")),
            Err(_) => failures.push(format!("{shown}: timed out")),
        }
    }
    Err(failures.join("; "))
}

async fn connect(
    url: &str,
    ca_pem: Option<&str>,
    topology: &Topology,
) -> lapin::Result<(Connection, Channel)> {
    let connection = open(url, ca_pem, "kobra-relay").await?;
    let setup = async {
        let channel = connection.create_channel().await?;
        declare(&connection, &channel, topology).await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok::<_, lapin::Error>(channel)
    };
    match setup.await {
        Ok(channel) => Ok((connection, channel)),
        Err(error) => {
            let _ = connection.close(200, "setup failed".into()).await;
            Err(error)
        }
    }
}

/// Declares the topology. Idempotent: re-declaring with the same arguments
/// is a no-op on the broker; different arguments fail loudly, which is what
/// an operator wants to hear about.
///
/// # Errors
/// The broker refused a declaration (for instance, an existing queue with
/// another type).
pub async fn declare(
    connection: &Connection,
    channel: &Channel,
    topology: &Topology,
) -> lapin::Result<()> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    for exchange in topology.exchanges() {
        let mut arguments = FieldTable::default();
        if let Some(ae) = &exchange.alternate_exchange {
            arguments.insert("alternate-exchange".into(), long_string(ae));
        }
        let kind = match exchange.kind {
            ExchangeType::Topic => ExchangeKind::Topic,
            ExchangeType::Fanout => ExchangeKind::Fanout,
        };
        channel
            .exchange_declare(exchange.name.as_str().into(), kind, durable, arguments)
            .await?;
    }
    for queue in topology.queues() {
        // A stream's retention is fixed when it is created; redeclaring it
        // after ARCHIVE_MAX_AGE changed would fail and stop all delivery
        // for the sake of the archive. An existing archive is kept as is.
        if matches!(queue.kind, QueueKind::Stream(_)) && exists(connection, &queue.name).await {
            continue;
        }
        let mut arguments = FieldTable::default();
        for (name, value) in queue.arguments() {
            let value = match value {
                Argument::Text(text) => long_string(&text),
                Argument::Integer(n) => {
                    AMQPValue::LongLongInt(i64::try_from(n).unwrap_or(i64::MAX))
                }
            };
            arguments.insert(name.into(), value);
        }
        let options = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        channel
            .queue_declare(queue.name.as_str().into(), options, arguments)
            .await?;
    }
    for binding in topology.bindings() {
        channel
            .queue_bind(
                binding.queue.as_str().into(),
                binding.exchange.as_str().into(),
                binding.routing_key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    Ok(())
}

/// Asks the broker whether `queue` exists (a passive declaration).
///
/// # Errors
/// It does not (`NOT_FOUND`, and the broker closes `channel`), or the
/// connection failed.
pub async fn check_queue(channel: &Channel, queue: &str) -> lapin::Result<()> {
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await
        .map(|_| ())
}

/// Whether `queue` exists, asked on a channel of its own: the broker closes
/// the channel of a passive declaration that fails.
async fn exists(connection: &Connection, queue: &str) -> bool {
    let Ok(channel) = connection.create_channel().await else {
        return false;
    };
    let found = check_queue(&channel, queue).await.is_ok();
    if found {
        let _ = channel.close(200, "checked".into()).await;
    }
    found
}

fn long_string(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
}
