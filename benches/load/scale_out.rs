//! Scale-out: one and two relays, each with its own spool, behind a plain
//! TCP round-robin balancer on loopback, against one broker node (the shared
//! node) and against the 3-node cluster of `scripts/cluster.sh`, in `spool`
//! and `replicated` mode, all with quorum queues.
//!
//! Every figure of the table comes from one run, so the ratios (two relays
//! against one, three nodes against one, relay against the broker's
//! ceiling) are what to read: relays, brokers and the load generator share
//! the same cores, and on a small machine adding processes cannot add cores.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use kobra_relay::config::QueueType;

use super::{
    CpuSplit, Relay, Target, broker_ceiling, delete_topology, load, ms, percentile, random_prefix,
    requests, wait_delivered,
};

/// A TCP round-robin balancer: each new connection goes to the next backend.
struct RoundRobin {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl RoundRobin {
    async fn start(backends: Vec<SocketAddr>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind balancer");
        let addr = listener.local_addr().expect("addr");
        let next = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let backend = backends[next.fetch_add(1, Ordering::Relaxed) % backends.len()];
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(backend).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
            }
        });
        Self { addr, task }
    }
}

impl Drop for RoundRobin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct ScaleRun {
    accepted_per_s: f64,
    delivered_per_s: f64,
    ack_p50: Duration,
    ack_p99: Duration,
    /// Share of 202s answered `durableIn: broker` (replicated mode).
    durable_in_broker: Option<f64>,
    broker_us: f64,
    relays_us: f64,
    cores_busy: f64,
    delivered: (u32, u32),
    accepted: usize,
}

fn counter(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn scale_run(
    target: &Target,
    durability: &str,
    relays: usize,
    visits: usize,
    concurrency: usize,
) -> ScaleRun {
    let prefix = random_prefix();
    let topology = super::relay_topology(&prefix, QueueType::Quorum);
    let spools: Vec<tempfile::TempDir> = (0..relays)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    let mut started_relays = Vec::new();
    for (i, spool) in spools.iter().enumerate() {
        let relay = Relay::start(
            &prefix,
            QueueType::Quorum,
            durability,
            spool.path(),
            &target.relay_url(i),
            true,
            &[],
        )
        .await;
        started_relays.push(relay);
    }
    let balancer = RoundRobin::start(started_relays.iter().map(|r| r.ingress).collect()).await;
    let requests = requests(visits, None);

    let relay_cpu = |relays: &[Relay]| relays.iter().map(Relay::cpu_seconds).sum::<f64>();
    let relays_before = relay_cpu(&started_relays);
    let split_before = CpuSplit::now(target);
    let started = Instant::now();
    let load = load(balancer.addr, requests, concurrency, None).await;
    let (delivered_at, n, r) = wait_delivered(target, &topology, load.accepted).await;
    let elapsed = delivered_at - started;
    let relays_cpu = relay_cpu(&started_relays) - relays_before;
    let split = CpuSplit::now(target).since(split_before);

    let mut in_broker = 0.0;
    for relay in &started_relays {
        let metrics = relay.metrics().await;
        in_broker += counter(
            &metrics,
            r#"kobra_relay_accepted_total{durable_in="broker"}"#,
        );
    }
    drop(balancer);
    for relay in started_relays {
        relay.stop();
    }
    delete_topology(target, &topology).await;
    assert_eq!(load.refused, 0, "the relays refused requests");
    assert!(
        n as usize >= load.accepted && r as usize >= load.accepted,
        "lost visits: {} accepted, {n}/{r} delivered",
        load.accepted
    );
    let per_visit = |seconds: f64| seconds * 1e6 / load.accepted as f64;
    ScaleRun {
        accepted_per_s: load.accepted as f64 / load.elapsed.as_secs_f64(),
        delivered_per_s: load.accepted as f64 / elapsed.as_secs_f64(),
        ack_p50: percentile(&load.latencies, 0.5),
        ack_p99: percentile(&load.latencies, 0.99),
        durable_in_broker: (durability == "replicated").then(|| in_broker / load.accepted as f64),
        broker_us: per_visit(split.broker),
        relays_us: per_visit(relays_cpu),
        cores_busy: (split.broker + relays_cpu + split.this_process) / elapsed.as_secs_f64(),
        delivered: (n, r),
        accepted: load.accepted,
    }
}

/// Whether the cluster of `scripts/cluster.sh` answers.
pub async fn cluster_is_up() -> bool {
    let target = Target::cluster();
    lapin::Connection::connect(target.url(), lapin::ConnectionProperties::default())
        .await
        .is_ok()
}

/// Prints the scale-out table.
pub async fn run(visits: usize, concurrency: usize) {
    println!();
    println!("## Scale-out: relays behind a round-robin balancer, one node or a 3-node cluster");
    println!();
    println!(
        "Quorum queues; {visits} visits per run over {concurrency} keep-alive connections through a TCP round-robin balancer; \
         each relay has its own spool and starts its AMQP_URL list at a different node. \
         Ratios: against one relay on the same brokers, and against that broker setup's ceiling."
    );
    println!();
    println!(
        "| broker nodes | mode | relays | ceiling visits/s | accepted req/s | delivered visits/s | ÷ 1 relay | ÷ ceiling | ack p50 ms | ack p99 ms | durableIn broker | broker µs/visit | relays µs/visit | cores busy | delivered |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for target in [Target::shared(), Target::cluster()] {
        let ceiling = broker_ceiling(&target, QueueType::Quorum, visits)
            .await
            .visits_per_s;
        for durability in ["spool", "replicated"] {
            let mut one_relay = None;
            for relays in [1, 2] {
                let run = scale_run(&target, durability, relays, visits, concurrency).await;
                let single = *one_relay.get_or_insert(run.delivered_per_s);
                println!(
                    "| {} | {durability} | {relays} | {ceiling:.0} | {:.0} | {:.0} | {:.2} | **{:.2}** | {} | {} | {} | {:.0} | {:.0} | {:.2} | {}/{} of {} |",
                    target.nodes.len(),
                    run.accepted_per_s,
                    run.delivered_per_s,
                    run.delivered_per_s / single,
                    run.delivered_per_s / ceiling,
                    ms(run.ack_p50),
                    ms(run.ack_p99),
                    run.durable_in_broker
                        .map_or("–".to_owned(), |share| format!("{:.0} %", share * 100.0)),
                    run.broker_us,
                    run.relays_us,
                    run.cores_busy,
                    run.delivered.0,
                    run.delivered.1,
                    run.accepted,
                );
            }
        }
    }
}
