//! End-to-end benchmark: the release relay against the local RabbitMQ,
//! measured against the broker's own ceiling in the same run.
//!
//! Run with `scripts/bench.sh` (or `cargo bench --bench load -- [--quick]`
//! after `cargo build --release`). For each queue type it measures:
//!
//! - the **broker ceiling**: a tight lapin publisher sending the same two
//!   persistent messages per visit, with a confirm window, into the same
//!   topology;
//! - the **relay** in `spool` and `confirm` mode: POST load at fixed
//!   concurrency over keep-alive connections with distinct visit ids; accepted
//!   requests/s, ack latency, confirmed visits/s, end-to-end latency, peak RSS,
//!   CPU per 1,000 visits, start-to-ready; and it checks that every accepted
//!   visit reached its queues, so a fast but lossy run cannot pass.
//!
//! Then it sweeps concurrency and payload size in spool mode, measures the
//! ack latency at half the maximum rate, and runs the scale-out table (one
//! or two relays, one node or the 3-node cluster; `scale_out.rs`). All
//! figures of one table come from one run; compare ratios, not absolute
//! numbers, across machines.

use std::{
    net::SocketAddr,
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures_util::{StreamExt, stream::FuturesUnordered};
use kobra_relay::{
    config::{QueueType, Settings},
    publisher::{CONFIRM_WINDOW, declare, message, topology::Topology},
    spool::record,
    visit::{self, Envelope, Product, Receipt},
};
use lapin::{
    Connection,
    options::{BasicPublishOptions, ConfirmSelectOptions},
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod allocations;
#[path = "../../tests/api/support/broker.rs"]
mod broker_support;
mod clients;
mod compare;
mod scale_out;
mod tracing_cost;

#[global_allocator]
static GLOBAL: allocations::Counting = allocations::Counting;

const KEY: &str = "bench-key";
const FIXTURE: &[u8] = include_bytes!("../../tests/fixtures/finish-visit-example.json");

struct Options {
    visits: usize,
    concurrency: usize,
    sweeps: bool,
    /// `--only QUEUE-MODE` (e.g. `quorum-spool`): the ceiling and that one
    /// relay configuration, for iterating on a change.
    only: Option<(QueueType, String)>,
    /// `--scale-out`: only the scale-out table (needs `scripts/cluster.sh up`).
    scale_out_only: bool,
    /// `--steps`: only the in-process steps table (no broker, no relay).
    steps_only: bool,
    /// `--tracing`: only the tracing-cost table (export off, on, collector down).
    tracing_only: bool,
    /// `--clients`: only the ceiling with lapin and with amqprs.
    clients_only: bool,
    /// `--compare LABEL=BINARY[,NAME=VALUE...] ...`: only these relay
    /// configurations side by side, `--rounds N` times (default 2).
    compare: Vec<String>,
    rounds: usize,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map(|spec| {
            let (queue, mode) = spec.split_once('-').expect("--only QUEUE-MODE");
            let queue = match queue {
                "quorum" => QueueType::Quorum,
                "classic" => QueueType::Classic,
                other => panic!("--only: unknown queue type {other}"),
            };
            assert!(
                ["spool", "confirm"].contains(&mode),
                "--only: mode is spool or confirm"
            );
            (queue, mode.to_owned())
        });
    let visits = args
        .iter()
        .position(|a| a == "--visits")
        .and_then(|i| args.get(i + 1))
        .map(|n| n.parse().expect("--visits N"));
    let concurrency = args
        .iter()
        .position(|a| a == "--concurrency")
        .and_then(|i| args.get(i + 1))
        .map(|n| n.parse().expect("--concurrency N"));
    Options {
        visits: visits.unwrap_or(if quick { 2_000 } else { 10_000 }),
        concurrency: concurrency.unwrap_or(32),
        sweeps: !quick && only.is_none(),
        only,
        scale_out_only: args.iter().any(|a| a == "--scale-out"),
        steps_only: args.iter().any(|a| a == "--steps"),
        tracing_only: args.iter().any(|a| a == "--tracing"),
        clients_only: args.iter().any(|a| a == "--clients"),
        compare: args
            .iter()
            .skip_while(|a| *a != "--compare")
            .skip(1)
            .take_while(|a| !a.starts_with("--"))
            .cloned()
            .collect(),
        rounds: args
            .iter()
            .position(|a| a == "--rounds")
            .and_then(|i| args.get(i + 1))
            .map_or(2, |n| n.parse().expect("--rounds N")),
    }
}

/// The vendor's example with a distinct visit id and, optionally, padding
/// up to `size` bytes.
fn body(n: usize, size: Option<usize>) -> Bytes {
    let mut value: serde_json::Value = serde_json::from_slice(FIXTURE).expect("fixture");
    value["visitID"] = format!("BENCH-{n:08}").into();
    let mut text = serde_json::to_string(&value).expect("json");
    if let Some(size) = size
        && size > text.len() + 16
    {
        let pad = size - text.len() - 12;
        text.insert_str(1, &format!("\"pad\":\"{}\",", "x".repeat(pad)));
    }
    Bytes::from(text)
}

fn random_prefix() -> String {
    broker_support::random_prefix("bench")
}

/// The RabbitMQ a run publishes to: the shared node on 5672, or the 3-node
/// cluster of `scripts/cluster.sh`.
#[derive(Clone)]
struct Target {
    /// Node AMQP URLs; the benchmark's own connections use the first.
    nodes: Vec<String>,
    /// Whether this is the cluster (its Erlang VMs are told apart by node name).
    cluster: bool,
}

impl Target {
    fn shared() -> Self {
        Self {
            nodes: vec!["amqp://guest:guest@127.0.0.1:5672/%2f".into()],
            cluster: false,
        }
    }

    /// The cluster of `scripts/cluster.sh` (AMQP ports base+1..base+3).
    fn cluster() -> Self {
        let base: u16 = std::env::var("KOBRA_CLUSTER_BASE_PORT")
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or(5790);
        Self {
            nodes: (1..=3)
                .map(|n| format!("amqp://guest:guest@127.0.0.1:{}/%2f", base + n))
                .collect(),
            cluster: true,
        }
    }

    fn url(&self) -> &str {
        &self.nodes[0]
    }

    /// `AMQP_URL` of relay number `i`: every node, starting with a different
    /// one per relay, as a load-balanced broker address would spread them.
    fn relay_url(&self, i: usize) -> String {
        let n = self.nodes.len();
        (0..n)
            .map(|k| self.nodes[(i + k) % n].as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The brokers' Erlang VMs, whose CPU time tells what the broker spends
    /// per visit (empty when they cannot be read, e.g. another user's): the
    /// cluster's from the pid files of `scripts/cluster.sh`, the shared
    /// node's as the other RabbitMQ VM running here.
    fn broker_pids(&self) -> Vec<String> {
        let cluster_dir = std::env::var("KOBRA_CLUSTER_DIR").unwrap_or_else(|_| {
            concat!(env!("CARGO_MANIFEST_DIR"), "/target/rabbitmq-cluster").to_owned()
        });
        let cluster_pids: Vec<String> = (1..=3)
            .filter_map(|n| {
                std::fs::read_to_string(format!("{cluster_dir}/node{n}/rabbit.pid")).ok()
            })
            .map(|pid| pid.trim().to_owned())
            .collect();
        if self.cluster {
            return cluster_pids;
        }
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|entry| {
                let pid = entry.file_name().into_string().ok()?;
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
                // The broker boots `rabbit`; rabbitmqctl's own VMs do not.
                let broker = comm.trim() == "beam.smp"
                    && String::from_utf8_lossy(&cmdline)
                        .replace('\0', " ")
                        .contains("-s rabbit boot");
                (broker && !cluster_pids.contains(&pid)).then_some(pid)
            })
            .collect()
    }
}

async fn broker(target: &Target) -> Connection {
    broker_support::connect(target.url()).await
}

/// What a relay with default settings declares under `prefix`, the archive
/// stream included: the ceiling publishes into the same queues, and
/// cleaning up must remove the stream too.
fn relay_topology(prefix: &str, queue_type: QueueType) -> Topology {
    let defaults = Settings::from_sources(None, [("KOBRA_RELAY_API_KEYS".into(), "bench".into())])
        .expect("the default settings load");
    Topology::new(prefix, queue_type, true).with_archive(defaults.topology.archive)
}

async fn delete_topology(target: &Target, topology: &Topology) {
    let conn = broker(target).await;
    broker_support::delete_topology(&conn, topology).await;
    let _ = conn.close(200, "bench".into()).await;
}

/// Waits until both product queues hold `expected` messages; returns when.
async fn wait_delivered(
    target: &Target,
    topology: &Topology,
    expected: usize,
) -> (Instant, u32, u32) {
    let conn = broker(target).await;
    let normalized = topology.product_queue(Product::DebtCollection);
    let raw = topology.raw_product_queue(Product::DebtCollection);
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let (n, r) = (
            broker_support::queue_depth(&conn, &normalized).await,
            broker_support::queue_depth(&conn, &raw).await,
        );
        if (n as usize >= expected && r as usize >= expected) || Instant::now() > deadline {
            let _ = conn.close(200, "bench".into()).await;
            return (Instant::now(), n, r);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The broker's ceiling: visits/s of a tight publisher, and the CPU it and
/// the broker spent.
struct Ceiling {
    visits_per_s: f64,
    cpu: CpuSplit,
    elapsed: Duration,
}

/// Visits/s of a tight publisher with a confirm window: the broker's ceiling.
async fn broker_ceiling(target: &Target, queue_type: QueueType, visits: usize) -> Ceiling {
    let topology = relay_topology(&random_prefix(), queue_type);
    ceiling_into(target, topology, visits).await
}

/// The messages of `visits` example visits, as the relay would publish them.
fn ceiling_messages(topology: &Topology, visits: usize) -> Vec<message::Prepared> {
    (0..visits)
        .map(|n| {
            let envelope = Envelope::new(
                Receipt {
                    id: uuid::Uuid::now_v7(),
                    received_at: jiff::Timestamp::now(),
                    key_label: "bench".into(),
                },
                body(n, None),
            );
            message::prepare(&envelope, topology)
        })
        .collect()
}

/// The ceiling into `topology` (with or without the archive stream).
async fn ceiling_into(target: &Target, topology: Topology, visits: usize) -> Ceiling {
    let conn = broker(target).await;
    let channel = conn.create_channel().await.expect("channel");
    declare(&conn, &channel, &topology).await.expect("declare");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let prepared = ceiling_messages(&topology, visits);
    // Publish in batches whose publishes are polled together (one hand-off
    // to lapin's IO loop per batch), keeping CONFIRM_WINDOW visits unconfirmed.
    let cpu_before = CpuSplit::now(target);
    let started = Instant::now();
    let mut in_flight = FuturesUnordered::new();
    for batch in prepared.chunks(64) {
        while in_flight.len() + batch.len() > CONFIRM_WINDOW {
            in_flight.next().await;
        }
        let publishes = batch.iter().flat_map(|visit| {
            visit.messages.iter().map(|m| {
                let options = BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                };
                channel.basic_publish(
                    m.exchange.as_str().into(),
                    m.routing_key.as_str().into(),
                    options,
                    &m.body,
                    m.properties.clone(),
                )
            })
        });
        let mut sent = futures_util::future::join_all(publishes).await.into_iter();
        for visit in batch {
            let confirms: Vec<_> = sent.by_ref().take(visit.messages.len()).collect();
            in_flight.push(async move {
                for c in confirms {
                    assert!(
                        c.expect("publish").await.expect("confirm").is_ack(),
                        "broker nacked"
                    );
                }
            });
        }
    }
    while in_flight.next().await.is_some() {}
    let elapsed = started.elapsed();
    let cpu = CpuSplit::now(target).since(cpu_before);
    let _ = conn.close(200, "bench".into()).await;
    ceiling_delivered(target, &topology, visits, elapsed, cpu).await
}

/// Checks that a ceiling run delivered every visit, removes its topology
/// and says what it measured.
async fn ceiling_delivered(
    target: &Target,
    topology: &Topology,
    visits: usize,
    elapsed: Duration,
    cpu: CpuSplit,
) -> Ceiling {
    let (_, n, r) = wait_delivered(target, topology, visits).await;
    assert_eq!(
        (n as usize, r as usize),
        (visits, visits),
        "ceiling run lost messages"
    );
    delete_topology(target, topology).await;
    Ceiling {
        visits_per_s: visits as f64 / elapsed.as_secs_f64(),
        cpu,
        elapsed,
    }
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
}

struct Relay {
    child: std::process::Child,
    ingress: SocketAddr,
    admin: SocketAddr,
    start_to_ready: Duration,
}

impl Relay {
    /// Starts the release binary with extra environment variables (`env`,
    /// last, so they win); waits for readiness and, with `wait_for_broker`,
    /// for the broker connection.
    async fn start(
        topology_prefix: &str,
        queue_type: QueueType,
        durability: &str,
        spool: &std::path::Path,
        amqp_url: &str,
        wait_for_broker: bool,
        env: &[(String, String)],
    ) -> Self {
        let (ingress, admin) = (free_addr(), free_addr());
        // KOBRA_BENCH_RELAY runs another build (to compare two in one
        // sitting), from `env` first, then from the benchmark's environment.
        let chosen = env
            .iter()
            .find(|(name, _)| name == "KOBRA_BENCH_RELAY")
            .map(|(_, path)| std::ffi::OsString::from(path));
        let binary = chosen
            .or_else(|| std::env::var_os("KOBRA_BENCH_RELAY"))
            .map_or_else(
                || {
                    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                        .join("target/release/kobra-relay")
                },
                std::path::PathBuf::from,
            );
        let started = Instant::now();
        let child = std::process::Command::new(&binary)
            .env_clear()
            .env("KOBRA_RELAY_LISTEN", ingress.to_string())
            .env("KOBRA_RELAY_ADMIN_LISTEN", admin.to_string())
            .env("KOBRA_RELAY_API_KEYS", format!("bench:{KEY}"))
            .env("KOBRA_RELAY_AMQP_URL", amqp_url)
            .env("KOBRA_RELAY_TOPOLOGY_PREFIX", topology_prefix)
            .env("KOBRA_RELAY_QUEUE_TYPE", queue_type.as_str())
            .env("KOBRA_RELAY_DURABILITY", durability)
            .env("KOBRA_RELAY_SPOOL_DIR", spool)
            .env("KOBRA_RELAY_MAX_BODY_BYTES", "2MiB")
            .env("RUST_LOG", "warn")
            // Allocator, runtime and tracing knobs pass through, to compare them in one sitting.
            .envs(std::env::vars().filter(|(name, _)| {
                name.starts_with("MIMALLOC_")
                    || name.starts_with("OTEL_")
                    || name == "TOKIO_WORKER_THREADS"
            }))
            .envs(env.iter().cloned())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "start {} (cargo build --release first): {e}",
                    binary.display()
                )
            });
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut start_to_ready = None;
        loop {
            if let Ok(resp) = client.get(format!("http://{admin}/readyz")).send().await {
                start_to_ready.get_or_insert(started.elapsed());
                let ready: serde_json::Value = resp.json().await.unwrap_or_default();
                if ready["broker"]["connected"] == true || !wait_for_broker {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "relay did not become ready");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Self {
            child,
            ingress,
            admin,
            start_to_ready: start_to_ready.expect("ready"),
        }
    }

    /// Peak resident memory (VmHWM) in MiB.
    fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }

    /// User + system CPU seconds so far.
    fn cpu_seconds(&self) -> f64 {
        cpu_seconds(&self.child.id().to_string())
    }

    async fn metrics(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.admin))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }

    fn stop(mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// User + system CPU seconds of process `pid` (a number or `self`), all
/// threads, so far.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_comm = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of /proc/pid/stat (11 and 12 after the name).
    (ticks(11) + ticks(12)) / clock_ticks()
}

/// CPU seconds spent by the broker and by this process (the ceiling
/// publisher, or the load generator) between two points.
#[derive(Clone, Copy)]
struct CpuSplit {
    broker: f64,
    this_process: f64,
}

impl CpuSplit {
    fn now(target: &Target) -> Self {
        Self {
            broker: target
                .broker_pids()
                .iter()
                .map(|pid| cpu_seconds(pid))
                .sum(),
            this_process: cpu_seconds("self"),
        }
    }

    fn since(self, start: Self) -> Self {
        Self {
            broker: self.broker - start.broker,
            this_process: self.this_process - start.this_process,
        }
    }
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// Quantile of a Prometheus histogram in the exposition, interpolated in
/// its bucket (so only as fine as the buckets).
fn histogram_quantile(metrics: &str, name: &str, q: f64) -> f64 {
    let prefix = format!("{name}_bucket{{le=\"");
    let buckets: Vec<(f64, f64)> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|rest| {
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect();
    let total = buckets.last().map_or(0.0, |b| b.1);
    if total == 0.0 {
        return 0.0;
    }
    let rank = q * total;
    let mut previous = (0.0, 0.0);
    for &(le, count) in &buckets {
        if count >= rank {
            if le.is_infinite() {
                return previous.0;
            }
            let within = if count > previous.1 {
                (rank - previous.1) / (count - previous.1)
            } else {
                1.0
            };
            return previous.0 + (le - previous.0) * within;
        }
        previous = (le, count);
    }
    previous.0
}

struct LoadResult {
    accepted: usize,
    refused: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

/// `visits` POSTs of the example (or of `size`-byte bodies) with distinct
/// visit ids, serialized before any clock starts.
fn requests(visits: usize, size: Option<usize>) -> Arc<Vec<Bytes>> {
    Arc::new((0..visits).map(|n| http_request(&body(n, size))).collect())
}

/// Sends `requests` from `concurrency` keep-alive connections. With a
/// `rate` (requests/s over all connections), each connection paces itself.
///
/// Like wrk, the client is kept lean so it takes as little CPU as possible
/// from the relay and the broker it shares the cores with: requests are
/// prepared bytes written whole, and each answer is read only as far as its
/// status line and `content-length`.
async fn load(
    ingress: SocketAddr,
    requests: Arc<Vec<Bytes>>,
    concurrency: usize,
    rate: Option<f64>,
) -> LoadResult {
    let visits = requests.len();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let requests = requests.clone();
            let next = next.clone();
            tokio::spawn(async move {
                let mut stream = tokio::net::TcpStream::connect(ingress)
                    .await
                    .expect("connect");
                stream.set_nodelay(true).expect("nodelay");
                let mut pace = rate.map(|r| {
                    let mut interval =
                        tokio::time::interval(Duration::from_secs_f64(concurrency as f64 / r));
                    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    interval
                });
                let mut buffer = Vec::with_capacity(4096);
                let (mut accepted, mut refused, mut latencies) = (0, 0, Vec::new());
                loop {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(request) = requests.get(n) else {
                        break;
                    };
                    if let Some(pace) = &mut pace {
                        pace.tick().await;
                    }
                    let sent = Instant::now();
                    stream.write_all(request).await.expect("send request");
                    let status = read_response(&mut stream, &mut buffer).await;
                    latencies.push(sent.elapsed());
                    if status == 202 {
                        accepted += 1;
                    } else {
                        refused += 1;
                    }
                }
                (accepted, refused, latencies)
            })
        })
        .collect();
    let mut result = LoadResult {
        accepted: 0,
        refused: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::with_capacity(visits),
    };
    for worker in workers {
        let (a, r, l) = worker.await.expect("worker");
        result.accepted += a;
        result.refused += r;
        result.latencies.extend(l);
    }
    result.elapsed = started.elapsed();
    result.latencies.sort_unstable();
    result
}

/// One keep-alive POST of `body`, as bytes on the wire.
fn http_request(body: &[u8]) -> Bytes {
    let mut request = format!(
        "POST /webhooks/finish-visit HTTP/1.1\r\nhost: relay\r\napi-key: {KEY}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    Bytes::from(request)
}

/// Reads one response (head and `content-length` body) and returns its
/// status code. `buffer` keeps what arrived past it (nothing, with one
/// request in flight per connection).
async fn read_response(stream: &mut tokio::net::TcpStream, buffer: &mut Vec<u8>) -> u16 {
    loop {
        if let Some(head_end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buffer[..head_end]).expect("ASCII head");
            let status: u16 = head
                .get(9..12)
                .and_then(|code| code.parse().ok())
                .expect("status line");
            let body_len: usize = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .expect("content-length");
            let total = head_end + 4 + body_len;
            while buffer.len() < total {
                read_more(stream, buffer).await;
            }
            buffer.drain(..total);
            return status;
        }
        read_more(stream, buffer).await;
    }
}

async fn read_more(stream: &mut tokio::net::TcpStream, buffer: &mut Vec<u8>) {
    let mut chunk = [0u8; 4096];
    let n = stream.read(&mut chunk).await.expect("read response");
    assert!(n > 0, "the relay closed a keep-alive connection");
    buffer.extend_from_slice(&chunk[..n]);
}

/// One step's cost: wall-clock µs and allocations per run.
struct StepCost {
    micros: f64,
    allocations: f64,
}

/// Average cost of `step` over `runs` calls, after a warm-up.
fn time_step<T>(runs: u32, mut step: impl FnMut() -> T) -> StepCost {
    for _ in 0..runs / 10 {
        std::hint::black_box(step());
    }
    let allocations = allocations::count();
    let started = Instant::now();
    for _ in 0..runs {
        std::hint::black_box(step());
    }
    StepCost {
        micros: started.elapsed().as_secs_f64() * 1e6 / f64::from(runs),
        allocations: (allocations::count() - allocations) as f64 / f64::from(runs),
    }
}

/// What each pure step of the relay's path costs for the example visit:
/// at receipt (classify, hash, spool record) and at publish (read the
/// record back, normalize, serialize, build both messages).
fn step_costs() -> Vec<(&'static str, StepCost)> {
    const RUNS: u32 = 20_000;
    let body = Bytes::from_static(FIXTURE);
    let topology = Topology::new("bench", QueueType::Quorum, true);
    let receipt = Receipt {
        id: uuid::Uuid::now_v7(),
        received_at: jiff::Timestamp::now(),
        key_label: "bench".into(),
    };
    let envelope = Envelope::new(receipt.clone(), body.clone());
    let document = visit::normalize(&envelope).expect("the example is an object");
    let (received, _) = visit::receive(
        receipt.clone(),
        body.clone(),
        visit::DEFAULT_MAX_DEPTH,
        true,
    );
    let mut encoded = Vec::new();
    record::encode(1, &envelope, &mut encoded);
    vec![
        (
            "classify the body (one-pass probe)",
            time_step(RUNS, || visit::inspect(&body, visit::DEFAULT_MAX_DEPTH)),
        ),
        (
            "SHA-256 of the body",
            time_step(RUNS, || visit::sha256(&body)),
        ),
        (
            "encode the spool record",
            time_step(RUNS, || {
                let mut out = Vec::with_capacity(encoded.len());
                record::encode(1, &envelope, &mut out);
                out
            }),
        ),
        (
            "decode the spool record",
            time_step(RUNS, || record::decode(&encoded).map(|r| r.2)),
        ),
        (
            "normalize (parse and read)",
            time_step(RUNS, || {
                visit::normalize(&envelope).map(|v| v.warnings.len())
            }),
        ),
        (
            "serialize the normalized document",
            time_step(RUNS, || {
                let mut out = Vec::with_capacity(FIXTURE.len() * 3 / 2 + 512);
                document.write_json(&mut out).map(|()| out.len())
            }),
        ),
        (
            "build both messages (normalize, serialize, properties, headers)",
            time_step(RUNS, || message::prepare(&envelope, &topology)),
        ),
        (
            "receive a visit at the ingress (SHA-256, normalize, write the document)",
            time_step(RUNS, || {
                visit::receive(
                    receipt.clone(),
                    body.clone(),
                    visit::DEFAULT_MAX_DEPTH,
                    true,
                )
            }),
        ),
        (
            "build both messages from the ingress's document (properties, headers)",
            time_step(RUNS, || message::prepare(&received, &topology)),
        ),
    ]
}

fn print_steps() {
    println!("## The relay's own steps, in-process");
    println!();
    println!(
        "Time and allocations of each pure step for the example visit: a single-threaded loop of 20,000 runs, no I/O (wall clock, so a busy machine inflates the time; the allocation counts are exact)."
    );
    println!();
    println!("| step | µs per visit | allocations per visit |");
    println!("|---|---:|---:|");
    for (step, cost) in step_costs() {
        println!("| {step} | {:.2} | {:.1} |", cost.micros, cost.allocations);
    }
}

/// One row of the CPU table.
fn cpu_row(
    queue_type: QueueType,
    run: &str,
    visits: usize,
    elapsed: Duration,
    broker: f64,
    relay: Option<f64>,
    client: f64,
) -> String {
    let per_visit = |seconds: f64| format!("{:.0}", seconds * 1e6 / visits as f64);
    let busy = (broker + relay.unwrap_or(0.0) + client) / elapsed.as_secs_f64();
    format!(
        "| {} | {run} | {:.0} | {} | {} | {} | {busy:.2} |",
        queue_type.as_str(),
        visits as f64 / elapsed.as_secs_f64(),
        per_visit(broker),
        relay.map_or("–".to_owned(), per_visit),
        per_visit(client),
    )
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

struct RelayRun {
    accepted_per_s: f64,
    confirmed_visits_per_s: f64,
    load: LoadResult,
    e2e_p50: f64,
    e2e_p99: f64,
    rss_mib: f64,
    /// Broker and load generator, from the first request to the last delivery.
    cpu: CpuSplit,
    /// The relay over the same span.
    relay_cpu: f64,
    elapsed: Duration,
    start_to_ready: Duration,
    delivered: (u32, u32),
    /// The relay's last scrape, after the last delivery.
    metrics: String,
}

impl RelayRun {
    /// The relay's CPU seconds per 1,000 accepted visits.
    fn cpu_per_1000(&self) -> f64 {
        self.relay_cpu * 1000.0 / self.load.accepted as f64
    }
}

async fn relay_run(
    target: &Target,
    queue_type: QueueType,
    durability: &str,
    visits: usize,
    concurrency: usize,
    size: Option<usize>,
    rate: Option<f64>,
) -> RelayRun {
    let shape = RunShape {
        visits,
        concurrency,
        size,
        rate,
    };
    relay_run_with(target, queue_type, durability, shape, &[]).await
}

/// The load of one relay run.
#[derive(Clone, Copy)]
struct RunShape {
    visits: usize,
    concurrency: usize,
    size: Option<usize>,
    rate: Option<f64>,
}

/// [`relay_run`] with extra environment variables for the relay.
async fn relay_run_with(
    target: &Target,
    queue_type: QueueType,
    durability: &str,
    shape: RunShape,
    env: &[(String, String)],
) -> RelayRun {
    let RunShape {
        visits,
        concurrency,
        size,
        rate,
    } = shape;
    let prefix = random_prefix();
    let topology = relay_topology(&prefix, queue_type);
    let spool = tempfile::tempdir().expect("tempdir");
    let requests = requests(visits, size);
    let relay = Relay::start(
        &prefix,
        queue_type,
        durability,
        spool.path(),
        &target.relay_url(0),
        true,
        env,
    )
    .await;
    // For scripts/profile.sh, which attributes samples to this process.
    eprintln!(
        "relay pid {}: {} {durability}, {visits} visits, concurrency {concurrency}, {}",
        relay.child.id(),
        queue_type.as_str(),
        rate.map_or("unpaced".to_owned(), |r| format!("paced at {r:.0}/s")),
    );
    let cpu_before = relay.cpu_seconds();
    let split_before = CpuSplit::now(target);
    let started = Instant::now();
    let load = load(relay.ingress, requests, concurrency, rate).await;
    let (delivered_at, n, r) = wait_delivered(target, &topology, load.accepted).await;
    let (relay_cpu, cpu) = (
        relay.cpu_seconds() - cpu_before,
        CpuSplit::now(target).since(split_before),
    );
    let metrics = relay.metrics().await;
    let run = RelayRun {
        accepted_per_s: load.accepted as f64 / load.elapsed.as_secs_f64(),
        confirmed_visits_per_s: load.accepted as f64 / (delivered_at - started).as_secs_f64(),
        e2e_p50: histogram_quantile(&metrics, "kobra_relay_end_to_end_seconds", 0.5),
        e2e_p99: histogram_quantile(&metrics, "kobra_relay_end_to_end_seconds", 0.99),
        rss_mib: relay.peak_rss_mib(),
        cpu,
        relay_cpu,
        elapsed: delivered_at - started,
        start_to_ready: relay.start_to_ready,
        delivered: (n, r),
        load,
        metrics,
    };
    relay.stop();
    delete_topology(target, &topology).await;
    assert_eq!(run.load.refused, 0, "the relay refused requests");
    assert!(
        run.delivered.0 as usize >= run.load.accepted
            && run.delivered.1 as usize >= run.load.accepted,
        "lost visits: {} accepted, {:?} delivered",
        run.load.accepted,
        run.delivered
    );
    run
}

/// Visits/s of the publisher alone: visits spooled while the broker is
/// unreachable, then a restart on the same spool publishes them (no HTTP
/// load competing for the CPU), timed from the restart to the last delivery.
async fn spool_replay(target: &Target, queue_type: QueueType, visits: usize) -> f64 {
    let prefix = random_prefix();
    let topology = relay_topology(&prefix, queue_type);
    let spool = tempfile::tempdir().expect("tempdir");
    let unreachable = "amqp://guest:guest@127.0.0.1:1/%2f";
    let offline = Relay::start(
        &prefix,
        queue_type,
        "spool",
        spool.path(),
        unreachable,
        false,
        &[],
    )
    .await;
    let load = load(offline.ingress, requests(visits, None), 32, None).await;
    assert_eq!(load.accepted, visits, "every visit spooled");
    offline.stop();
    let restarted = Instant::now();
    let online = Relay::start(
        &prefix,
        queue_type,
        "spool",
        spool.path(),
        &target.relay_url(0),
        true,
        &[],
    )
    .await;
    let (delivered_at, n, r) = wait_delivered(target, &topology, visits).await;
    online.stop();
    delete_topology(target, &topology).await;
    assert!(
        n as usize >= visits && r as usize >= visits,
        "replay lost visits"
    );
    visits as f64 / (delivered_at - restarted).as_secs_f64()
}

#[tokio::main]
async fn main() {
    let opts = options();
    if opts.steps_only {
        print_steps();
        return;
    }
    let shared = Target::shared();
    if opts.clients_only {
        clients::run(&shared, opts.visits, opts.rounds).await;
        return;
    }
    if !opts.compare.is_empty() {
        compare::run(
            &shared,
            &opts.compare,
            opts.rounds,
            opts.visits,
            opts.concurrency,
        )
        .await;
        return;
    }
    if opts.tracing_only {
        tracing_cost::run(&shared, opts.visits, opts.concurrency).await;
        return;
    }
    if opts.scale_out_only {
        assert!(
            scale_out::cluster_is_up().await,
            "the 3-node cluster is not running: scripts/cluster.sh up (scripts/bench.sh --scale-out does it)"
        );
        scale_out::run(opts.visits, opts.concurrency).await;
        return;
    }
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("# kobra-relay benchmark");
    println!();
    println!(
        "{} visits per run (vendor example, {} B), concurrency {}, {} cores shared by relay, broker and load generator.",
        opts.visits,
        FIXTURE.len(),
        opts.concurrency,
        cores
    );
    println!();
    println!(
        "| queues | mode | ceiling visits/s | spool replay visits/s (÷ ceiling) | accepted req/s | confirmed visits/s | relay ÷ ceiling | ack p50 ms | p90 | p99 | max | e2e p50 ms | e2e p99 ms | peak RSS MiB | CPU s / 1k visits | start→ready ms | delivered |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    let mut max_spool_rate = 0.0f64;
    let mut cpu_rows = Vec::new();
    for queue_type in [QueueType::Quorum, QueueType::Classic] {
        if opts.only.as_ref().is_some_and(|(q, _)| *q != queue_type) {
            continue;
        }
        let Ceiling {
            visits_per_s: ceiling,
            cpu,
            elapsed,
        } = broker_ceiling(&shared, queue_type, opts.visits).await;
        cpu_rows.push(cpu_row(
            queue_type,
            "ceiling (tight publisher)",
            opts.visits,
            elapsed,
            cpu.broker,
            None,
            cpu.this_process,
        ));
        let replay = spool_replay(&shared, queue_type, opts.visits).await;
        for durability in ["spool", "confirm"] {
            if opts.only.as_ref().is_some_and(|(_, m)| m != durability) {
                continue;
            }
            let run = relay_run(
                &shared,
                queue_type,
                durability,
                opts.visits,
                opts.concurrency,
                None,
                None,
            )
            .await;
            cpu_rows.push(cpu_row(
                queue_type,
                &format!("relay, {durability} mode"),
                run.load.accepted,
                run.elapsed,
                run.cpu.broker,
                Some(run.relay_cpu),
                run.cpu.this_process,
            ));
            if durability == "spool" && queue_type == QueueType::Quorum {
                max_spool_rate = run.accepted_per_s.min(run.confirmed_visits_per_s * 1.5);
            }
            let l = &run.load.latencies;
            println!(
                "| {} | {durability} | {ceiling:.0} | {replay:.0} ({:.2}) | {:.0} | {:.0} | **{:.2}** | {} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.3} | {} | {}/{} of {} |",
                queue_type.as_str(),
                replay / ceiling,
                run.accepted_per_s,
                run.confirmed_visits_per_s,
                run.confirmed_visits_per_s / ceiling,
                ms(percentile(l, 0.5)),
                ms(percentile(l, 0.9)),
                ms(percentile(l, 0.99)),
                ms(percentile(l, 1.0)),
                run.e2e_p50 * 1e3,
                run.e2e_p99 * 1e3,
                run.rss_mib,
                run.cpu_per_1000(),
                ms(run.start_to_ready),
                run.delivered.0,
                run.delivered.1,
                run.load.accepted,
            );
        }
    }

    println!();
    println!("## Where the CPU goes");
    println!();
    println!(
        "CPU time per visit over each run (first request to last delivery), in µs; the publisher is the ceiling's own, the load generator is this benchmark's HTTP client."
    );
    println!();
    println!(
        "| queues | run | visits/s | broker µs | relay µs | publisher or load generator µs | cores busy (of {cores}) |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|");
    for row in &cpu_rows {
        println!("{row}");
    }
    println!();
    print_steps();

    if opts.only.is_none() {
        // The archive's price, in the broker's own terms: the same tight
        // publisher, with and without the stream bound to the raw exchange.
        let with = broker_ceiling(&shared, QueueType::Quorum, opts.visits).await;
        let without = ceiling_into(
            &shared,
            relay_topology(&random_prefix(), QueueType::Quorum).with_archive(None),
            opts.visits,
        )
        .await;
        println!();
        println!(
            "The archive stream (quorum ceiling): {:.0} visits/s without it, {:.0} with it ({:.2}); broker CPU {:.0} vs {:.0} µs per visit.",
            without.visits_per_s,
            with.visits_per_s,
            with.visits_per_s / without.visits_per_s,
            without.cpu.broker / opts.visits as f64 * 1e6,
            with.cpu.broker / opts.visits as f64 * 1e6,
        );
    }

    if max_spool_rate == 0.0 {
        return;
    }
    let half = max_spool_rate / 2.0;
    let paced = relay_run(
        &shared,
        QueueType::Quorum,
        "spool",
        opts.visits / 2,
        opts.concurrency,
        None,
        Some(half),
    )
    .await;
    println!();
    println!(
        "Half the maximum rate (spool, quorum, {half:.0} req/s paced): ack p50 {} ms, p99 {} ms, max {} ms.",
        ms(percentile(&paced.load.latencies, 0.5)),
        ms(percentile(&paced.load.latencies, 0.99)),
        ms(percentile(&paced.load.latencies, 1.0)),
    );

    if !opts.sweeps {
        return;
    }
    println!();
    println!("## Spool mode, quorum queues: concurrency and payload size");
    println!();
    println!(
        "| concurrency | payload | visits | accepted req/s | confirmed visits/s | ack p50 ms | p99 | e2e p99 ms | peak RSS MiB | CPU s / 1k visits |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let cases: [(usize, Option<usize>, usize); 6] = [
        (8, None, opts.visits),
        (32, None, opts.visits),
        (128, None, opts.visits),
        (32, Some(2 * 1024), opts.visits),
        (32, Some(64 * 1024), opts.visits / 5),
        (32, Some(1024 * 1024), opts.visits / 50),
    ];
    for (concurrency, size, visits) in cases {
        let run = relay_run(
            &shared,
            QueueType::Quorum,
            "spool",
            visits,
            concurrency,
            size,
            None,
        )
        .await;
        let label = size.map_or(format!("{} B (example)", FIXTURE.len()), |s| {
            format!("{} KiB", s / 1024)
        });
        println!(
            "| {concurrency} | {label} | {visits} | {:.0} | {:.0} | {} | {} | {:.1} | {:.1} | {:.3} |",
            run.accepted_per_s,
            run.confirmed_visits_per_s,
            ms(percentile(&run.load.latencies, 0.5)),
            ms(percentile(&run.load.latencies, 0.99)),
            run.e2e_p99 * 1e3,
            run.rss_mib,
            run.cpu_per_1000(),
        );
    }
    if scale_out::cluster_is_up().await {
        scale_out::run(opts.visits, opts.concurrency).await;
    } else {
        println!();
        println!(
            "(Scale-out skipped: the 3-node cluster is not running; scripts/bench.sh starts it.)"
        );
    }
}
