//! Wiring: [`App::build`] turns [`Settings`] into bound listeners, an open
//! spool and a broker link; [`App::run_until_stopped`] serves until the
//! shutdown future completes and then shuts down in order.
//!
//! Production and tests take the same path (tests bind port 0).

use std::{
    future::Future,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{Durability, Settings, SpoolSettings};
use crate::durability::Sink;
use crate::http::{self, AppState, Listener};
use crate::keys::{KeyReloader, KeySource};
use crate::metrics::Metrics;
use crate::publisher::{Publisher, link, topology::Topology};
use crate::reload::{self, Reloadable};
use crate::spool::Spool;
use crate::tls::{self, TlsFiles, TlsReloader};

/// How long in-flight HTTP requests get to finish at shutdown.
const HTTP_DRAIN_DEADLINE: Duration = Duration::from_secs(10);
/// The admin listener's drain: probes and scrapes are short.
const ADMIN_DRAIN_DEADLINE: Duration = Duration::from_secs(1);
/// How often a spool whose last write failed is probed for room again.
const SPOOL_RECHECK: Duration = Duration::from_secs(1);

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
        let spool = match settings.durability.mode {
            Durability::Spool | Durability::Replicated => {
                Some(open_spool(&settings.spool, &metrics)?)
            }
            Durability::Confirm => None,
        };
        let tls = match &settings.http.tls {
            Some(files) => Some(Arc::new(arc_swap::ArcSwap::from_pointee(tls::load(files)?))),
            None => None,
        };
        let ingress = bind(settings.http.listen, "LISTEN").await?;
        let admin = bind(settings.http.admin_listen, "ADMIN_LISTEN").await?;

        let link_stop = CancellationToken::new();
        let (link, link_task) = link::spawn(
            settings.broker.clone(),
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
        let recovered_up_to = spool.as_ref().and_then(|(_, up_to)| *up_to);
        let sink = match (spool, settings.durability.mode) {
            (Some((spool, _)), Durability::Replicated) => Sink::replicated(
                spool,
                settings.durability.replicated_deadline,
                publisher.clone(),
            ),
            (Some((spool, _)), _) => Sink::spooled(spool, publisher.clone()),
            (None, _) => Sink::confirmed(publisher.clone()),
        };

        tracing::info!(
            ingress = %ingress.local_addr()?, admin = %admin.local_addr()?, tls = tls.is_some(),
            durability = settings.durability.mode.as_str(), prefix = %settings.topology.prefix,
            keys = settings.keys.api_keys.len(), build_ms = started.elapsed().as_millis() as u64,
            "kobra-relay ready"
        );
        let state = AppState::new(
            Arc::new(arc_swap::ArcSwap::new(settings.keys.api_keys.clone())),
            metrics,
            sink,
            publisher,
            settings.http.clone(),
            tls,
            settings.durability.readiness_stall_timeout,
        );
        Ok(Self {
            state,
            ingress,
            admin,
            recovered_up_to,
            link_stop,
            link_task,
            shutdown_grace: settings.shutdown_grace,
            key_source: settings.keys.source,
            tls_files: settings.http.tls,
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
        let ingress_stop = CancellationToken::new();
        let admin_stop = CancellationToken::new();
        let drain_stop = CancellationToken::new();
        let state = self.state.clone();
        tokio::spawn(reload::watch(self.reloadable(), admin_stop.clone()));
        let drain_task = state.sink.spool().map(|spool| {
            let recheck = spool.clone();
            let stop = drain_stop.clone();
            tokio::spawn(async move { recheck.recheck_writes(SPOOL_RECHECK, stop).await });
            let publisher = &state.publisher;
            tokio::spawn(
                publisher
                    .clone()
                    .watch_backlog(spool.clone(), drain_stop.clone()),
            );
            tokio::spawn(publisher.clone().drain(
                spool.clone(),
                self.recovered_up_to,
                drain_stop.clone(),
            ))
        });
        let ingress_task = tokio::spawn(http::serve(
            self.ingress,
            Listener::Ingress,
            state.clone(),
            ingress_stop.clone(),
            HTTP_DRAIN_DEADLINE,
        ));
        let admin_task = tokio::spawn(http::serve(
            self.admin,
            Listener::Admin,
            state.clone(),
            admin_stop.clone(),
            ADMIN_DRAIN_DEADLINE,
        ));

        shutdown.await;
        state.begin_shutdown();
        ingress_stop.cancel();
        let _ = ingress_task.await;
        if let Some(spool) = state.sink.spool() {
            spool.close();
            wait_for_drain(spool, &state.publisher, self.shutdown_grace).await;
        }
        drain_stop.cancel();
        if let Some(task) = drain_task {
            let _ = task.await;
        }
        self.link_stop.cancel();
        let _ = self.link_task.await;
        admin_stop.cancel();
        let _ = admin_task.await;
        match state.sink.spool() {
            Some(spool) => {
                let left = spool.stats().entries;
                tracing::info!(left_in_spool = left, "kobra-relay stopped");
            }
            None => tracing::info!("kobra-relay stopped"),
        }
        Ok(())
    }

    /// What SIGHUP reloads: the keys (also when their file changes) and,
    /// with TLS, the certificate.
    fn reloadable(&self) -> Vec<Box<dyn Reloadable>> {
        let mut reloadable: Vec<Box<dyn Reloadable>> = vec![Box::new(KeyReloader {
            source: self.key_source.clone(),
            live: self.state.keys.clone(),
        })];
        if let (Some(files), Some(live)) = (self.tls_files.clone(), self.state.tls.clone()) {
            reloadable.push(Box::new(TlsReloader { files, live }));
        }
        reloadable
    }
}

/// Opens the spool, recovering what a previous run left; also returns the
/// highest sequence number recovered (entries up to it may be redeliveries).
fn open_spool(settings: &SpoolSettings, metrics: &Metrics) -> anyhow::Result<(Spool, Option<u64>)> {
    let (spool, report) = Spool::open(&settings.dir, settings.max_bytes)
        .map_err(anyhow::Error::new)
        .with_context(|| {
            format!(
                "KOBRA_RELAY_SPOOL_DIR={} cannot be used as the spool",
                settings.dir.display()
            )
        })?;
    metrics.spool_damaged(report.quarantined.len() as u64);
    if report.pending > 0 || !report.damaged.is_empty() {
        tracing::info!(
            pending = report.pending,
            damaged_regions = report.damaged.len(),
            "spool recovered; pending visits will be published (consumers may see some twice)"
        );
    }
    metrics.spool_capacity(settings.max_bytes);
    Ok((spool, report.last_pending_seq))
}

async fn bind(address: SocketAddr, setting: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .with_context(|| format!("KOBRA_RELAY_{setting}={address} cannot be bound"))
}

/// Gives the publisher up to `grace` to empty the spool (only worth waiting
/// for while the broker is connected).
async fn wait_for_drain(spool: &Spool, publisher: &Publisher, grace: Duration) {
    let deadline = tokio::time::Instant::now() + grace;
    while spool.stats().entries > 0
        && publisher.link().is_connected()
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
