//! Wiring: [`App::build`] turns [`Settings`] into bound listeners, an open
//! spool and a broker link; [`App::run_until_stopped`] serves until the
//! shutdown future completes and then shuts down in order.
//!
//! Production and tests take the same path (tests bind port 0).

use std::{
    future::Future,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{Durability, Settings};
use crate::http::{self, HttpLimits, Listener};
use crate::keys::{KeyReloader, KeySource, LiveKeys};
use crate::metrics::Metrics;
use crate::publisher::{Publisher, link, topology::Topology};
use crate::reload::{self, Reloadable};
use crate::spool::Spool;
use crate::tls::{self, LiveTls, TlsFiles, TlsReloader};

/// How long in-flight HTTP requests get to finish at shutdown.
const HTTP_DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// Where accepted requests go before the 202.
#[derive(Clone)]
pub enum Sink {
    /// `DURABILITY=spool`: the local spool; a background task publishes.
    Spool(Spool),
    /// `DURABILITY=replicated`: the local spool, and the 202 waits up to
    /// `deadline` for the background task's confirms.
    Replicated {
        /// The spool every request goes through.
        spool: Spool,
        /// `REPLICATED_DEADLINE`.
        deadline: Duration,
    },
    /// `DURABILITY=confirm`: straight to the broker.
    Confirm,
}

impl Sink {
    /// The spool, in the modes that have one.
    pub fn spool(&self) -> Option<&Spool> {
        match self {
            Self::Spool(spool) | Self::Replicated { spool, .. } => Some(spool),
            Self::Confirm => None,
        }
    }
}

/// State shared by every request handler.
#[derive(Clone)]
pub struct AppState {
    /// Configured API keys (swapped on rotation).
    pub keys: LiveKeys,
    /// Metrics registry.
    pub metrics: Metrics,
    /// Durability target.
    pub sink: Sink,
    /// Broker publisher.
    pub publisher: Arc<Publisher>,
    /// `MAX_BODY_BYTES`.
    pub max_body_bytes: u64,
    /// Connection limits and timeouts.
    pub limits: HttpLimits,
    /// TLS on the ingress, when configured.
    pub tls: Option<LiveTls>,
    /// `READINESS_STALL_TIMEOUT`, when set.
    pub readiness_stall_timeout: Option<Duration>,
    shutting_down: Arc<AtomicBool>,
}

impl AppState {
    /// True once shutdown began: readiness fails and new requests get 503.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }
}

/// A built relay, ready to serve.
pub struct App {
    state: AppState,
    ingress: TcpListener,
    admin: TcpListener,
    recovered_up_to: Option<u64>,
    link_stop: CancellationToken,
    link_task: tokio::task::JoinHandle<()>,
    shutdown_grace: Duration,
    key_source: KeySource,
    tls_files: Option<TlsFiles>,
}

impl App {
    /// Binds both listeners, opens the spool (recovering what a previous run
    /// left) and starts connecting to the broker in the background; a broker
    /// that is down is not an error.
    ///
    /// # Errors
    /// An address that cannot be bound or a spool directory that cannot be
    /// used; the message names the setting.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let started = Instant::now();
        let metrics = Metrics::new();
        let topology = Topology::from_settings(&settings.topology);

        let (sink, recovered_up_to) = match settings.durability.mode {
            Durability::Spool | Durability::Replicated => {
                let (spool, report) = Spool::open(&settings.spool.dir, settings.spool.max_bytes)
                    .map_err(anyhow::Error::new)
                    .with_context(|| {
                        format!(
                            "KOBRA_RELAY_SPOOL_DIR={} cannot be used as the spool",
                            settings.spool.dir.display()
                        )
                    })?;
                if report.pending > 0 || !report.damaged.is_empty() {
                    tracing::info!(
                        pending = report.pending,
                        damaged_regions = report.damaged.len(),
                        "spool recovered; pending visits will be published (consumers may see some twice)"
                    );
                }
                metrics.spool_capacity(settings.spool.max_bytes);
                let sink = if settings.durability.mode == Durability::Replicated {
                    Sink::Replicated {
                        spool,
                        deadline: settings.durability.replicated_deadline,
                    }
                } else {
                    Sink::Spool(spool)
                };
                (sink, report.last_pending_seq)
            }
            Durability::Confirm => (Sink::Confirm, None),
        };

        let tls = match &settings.http.tls {
            Some(files) => Some(Arc::new(arc_swap::ArcSwap::from_pointee(tls::load(files)?))),
            None => None,
        };
        let ingress = TcpListener::bind(settings.http.listen)
            .await
            .with_context(|| {
                format!(
                    "KOBRA_RELAY_LISTEN={} cannot be bound",
                    settings.http.listen
                )
            })?;
        let admin = TcpListener::bind(settings.http.admin_listen)
            .await
            .with_context(|| {
                format!(
                    "KOBRA_RELAY_ADMIN_LISTEN={} cannot be bound",
                    settings.http.admin_listen
                )
            })?;

        let link_stop = CancellationToken::new();
        let (link, link_task) = link::spawn(
            settings.broker.amqp_urls.clone(),
            settings.broker.ca_pem().map(str::to_owned),
            topology.clone(),
            metrics.clone(),
            link_stop.clone(),
        );
        let publisher = Arc::new(Publisher::new(
            link,
            topology,
            metrics.clone(),
            settings.broker.publish_timeout,
        ));

        tracing::info!(
            ingress = %ingress.local_addr()?, admin = %admin.local_addr()?, tls = settings.http.tls.is_some(),
            durability = settings.durability.mode.as_str(), prefix = %settings.topology.prefix,
            keys = settings.keys.api_keys.len(), build_ms = started.elapsed().as_millis() as u64,
            "kobra-relay ready"
        );
        Ok(Self {
            state: AppState {
                keys: Arc::new(arc_swap::ArcSwap::new(settings.keys.api_keys.clone())),
                metrics,
                sink,
                publisher,
                max_body_bytes: settings.http.max_body_bytes,
                limits: HttpLimits {
                    header_read_timeout: settings.http.header_read_timeout,
                    body_read_timeout: settings.http.body_read_timeout,
                    max_connections: settings.http.max_connections,
                    max_header_bytes: settings.http.max_header_bytes,
                },
                readiness_stall_timeout: settings.durability.readiness_stall_timeout,
                shutting_down: Arc::new(AtomicBool::new(false)),
                tls,
            },
            ingress,
            admin,
            recovered_up_to,
            link_stop,
            link_task,
            shutdown_grace: settings.shutdown_grace,
            key_source: settings.keys.source.clone(),
            tls_files: settings.http.tls.clone(),
        })
    }

    /// The bound ingress address (useful with port 0).
    pub fn ingress_addr(&self) -> SocketAddr {
        self.ingress
            .local_addr()
            .expect("bound listener has an address")
    }

    /// The bound admin address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Serves until `shutdown` completes, then: readiness fails, the ingress
    /// stops accepting and finishes in-flight requests, the publisher keeps
    /// draining the spool for up to `SHUTDOWN_GRACE`, and the AMQP channel
    /// and connection are closed. What is left stays in the spool.
    ///
    /// # Errors
    /// None today; the signature leaves room for fatal runtime errors.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let Self {
            state,
            ingress,
            admin,
            recovered_up_to,
            link_stop,
            link_task,
            shutdown_grace,
            key_source,
            tls_files,
        } = self;
        let ingress_stop = CancellationToken::new();
        let admin_stop = CancellationToken::new();
        let drain_stop = CancellationToken::new();
        let mut reloadable: Vec<Box<dyn Reloadable>> = vec![Box::new(KeyReloader {
            source: key_source,
            live: state.keys.clone(),
        })];
        if let (Some(files), Some(live)) = (tls_files, state.tls.clone()) {
            reloadable.push(Box::new(TlsReloader { files, live }));
        }
        tokio::spawn(reload::watch(reloadable, admin_stop.clone()));

        let drain_task = match state.sink.spool() {
            Some(spool) => {
                tokio::spawn(
                    state
                        .publisher
                        .clone()
                        .watch_backlog(spool.clone(), drain_stop.clone()),
                );
                Some(tokio::spawn(state.publisher.clone().drain(
                    spool.clone(),
                    recovered_up_to,
                    drain_stop.clone(),
                )))
            }
            None => None,
        };
        let ingress_task = tokio::spawn(http::serve(
            ingress,
            Listener::Ingress,
            state.clone(),
            ingress_stop.clone(),
            HTTP_DRAIN_DEADLINE,
        ));
        let admin_task = tokio::spawn(http::serve(
            admin,
            Listener::Admin,
            state.clone(),
            admin_stop.clone(),
            Duration::from_secs(1),
        ));

        shutdown.await;
        state.shutting_down.store(true, Ordering::Release);
        ingress_stop.cancel();
        let _ = ingress_task.await;

        if let Some(spool) = state.sink.spool() {
            spool.close();
            wait_for_drain(spool, &state, shutdown_grace).await;
        }
        drain_stop.cancel();
        if let Some(task) = drain_task {
            let _ = task.await;
        }
        link_stop.cancel();
        let _ = link_task.await;
        admin_stop.cancel();
        let _ = admin_task.await;
        if let Some(spool) = state.sink.spool() {
            let left = spool.stats().entries;
            tracing::info!(left_in_spool = left, "kobra-relay stopped");
        } else {
            tracing::info!("kobra-relay stopped");
        }
        Ok(())
    }
}

/// Gives the publisher up to `grace` to empty the spool (only worth waiting
/// for while the broker is connected).
async fn wait_for_drain(spool: &Spool, state: &AppState, grace: Duration) {
    let deadline = tokio::time::Instant::now() + grace;
    while spool.stats().entries > 0
        && state.publisher.link().is_connected()
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
