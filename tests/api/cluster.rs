//! The relay in front of a real 3-node RabbitMQ cluster with quorum queues
//! (`scripts/cluster.sh`, loopback ports 5791-5793): nodes killed with
//! SIGKILL under load, a relay partitioned from its node, and
//! `DURABILITY=replicated`.
//!
//! The relay reaches each node through its own [`Proxy`], so a test knows
//! which node the relay is connected to (the proxy that forwards a
//! connection) and can partition the relay from one node without touching
//! the cluster. Tests that stop nodes hold [`ClusterGuard`] one at a time;
//! when it is dropped (even after a failed assertion) every node is brought
//! back.

use std::{
    collections::HashSet,
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::Value;
use tokio::sync::{Mutex, MutexGuard};

use crate::helpers::{
    ARRIVAL_TIMEOUT, KEY, TestApp, assert_all_arrive_at, numbered_visit, spawn_app_on, wait_until,
};
use crate::proxy::Proxy;

/// One test at a time may stop nodes.
static CLUSTER_LOCK: Mutex<()> = Mutex::const_new(());

const NODES: [usize; 3] = [1, 2, 3];

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/cluster.sh")
}

fn base_port() -> u16 {
    std::env::var("KOBRA_CLUSTER_BASE_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(5790)
}

fn node_addr(node: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], base_port() + node as u16))
}

fn node_url(node: usize) -> String {
    format!("amqp://guest:guest@{}/%2f", node_addr(node))
}

/// Runs `scripts/cluster.sh ARGS` and returns its standard output.
fn cluster_sh(args: &[&str]) -> String {
    let out = std::process::Command::new(script())
        .args(args)
        .output()
        .expect("scripts/cluster.sh runs");
    assert!(
        out.status.success(),
        "scripts/cluster.sh {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn cluster_sh_async(args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cluster_sh(&args)
    })
    .await
    .expect("cluster.sh task")
}

/// Exclusive use of the cluster, every node up; brings every node back
/// when dropped.
pub struct ClusterGuard {
    _lock: MutexGuard<'static, ()>,
}

impl ClusterGuard {
    /// Waits for the other cluster tests, then makes sure the cluster runs
    /// (starting it with `scripts/cluster.sh up` when `cargo test` runs
    /// without the test script).
    pub async fn acquire() -> Self {
        let lock = CLUSTER_LOCK.lock().await;
        cluster_sh_async(&["up"]).await;
        Self { _lock: lock }
    }

    /// SIGKILLs a node, as a crash would.
    pub async fn kill(&self, node: usize) {
        cluster_sh_async(&["kill", &node.to_string()]).await;
    }

    /// Starts a killed node again and waits until it is back in the cluster.
    pub async fn restart(&self, node: usize) {
        cluster_sh_async(&["start", &node.to_string()]).await;
        cluster_sh_async(&["wait", &node.to_string()]).await;
    }

    /// The node holding the leader of quorum queue `queue`, asked of `via`.
    pub async fn leader_of(&self, queue: &str, via: usize) -> usize {
        let out = cluster_sh_async(&[
            "ctl",
            &via.to_string(),
            "-q",
            "list_queues",
            "name",
            "leader",
            "--formatter",
            "json",
        ])
        .await;
        let queues: Vec<Value> = serde_json::from_str(&out).expect("list_queues JSON");
        let leader = queues
            .iter()
            .find(|q| q["name"] == queue)
            .and_then(|q| q["leader"].as_str())
            .unwrap_or_else(|| panic!("{queue} has a leader: {out}"));
        NODES
            .into_iter()
            .find(|n| leader == format!("kobra-cluster-{n}@localhost"))
            .unwrap_or_else(|| panic!("leader {leader} is a cluster node"))
    }
}

impl Drop for ClusterGuard {
    fn drop(&mut self) {
        // Bring back whatever a (possibly failed) test left down.
        let _ = std::process::Command::new(script()).arg("up").output();
    }
}

/// The relay under test with a proxy in front of each node.
struct Fixture {
    proxies: Vec<Proxy>,
    app: TestApp,
}

impl Fixture {
    async fn start(extra: &[(&str, &str)]) -> Self {
        let mut proxies = Vec::new();
        for node in NODES {
            proxies.push(Proxy::start(node_addr(node)).await);
        }
        let urls: Vec<String> = proxies.iter().map(Proxy::amqp_url).collect();
        let urls = urls.join(",");
        let mut settings = vec![("AMQP_URL", urls.as_str())];
        settings.extend_from_slice(extra);
        let app = spawn_app_on(&node_url(1), &settings).await;
        app.wait_connected().await;
        Self { proxies, app }
    }

    /// The node whose proxy forwards the relay's connection.
    fn connected_node(&self) -> Option<usize> {
        let mut forwarding = NODES
            .into_iter()
            .filter(|n| self.proxies[n - 1].forwarding() > 0);
        let node = forwarding.next()?;
        forwarding.next().is_none().then_some(node)
    }

    /// Waits until the relay is connected to a node other than `old`; says
    /// which, and how long that took from the call.
    async fn wait_moved_from(&self, old: usize) -> (usize, Duration) {
        let started = Instant::now();
        wait_until(
            "the relay connects to another node",
            ARRIVAL_TIMEOUT,
            async || {
                self.connected_node().is_some_and(|n| n != old)
                    && self.app.readyz().await.1["broker"]["connected"] == true
            },
        )
        .await;
        (self.connected_node().expect("connected"), started.elapsed())
    }

    fn queue(&self, kind: &str) -> String {
        format!("{}.visits.{kind}debt_collection", self.app.prefix)
    }
}

/// What a load run got back.
#[derive(Default)]
struct LoadReport {
    accepted: HashSet<String>,
    refused: usize,
    durable_in_broker: usize,
    durable_in_spool: usize,
}

/// `connections` clients posting distinct visits back to back for `length`.
async fn post_for(app: &TestApp, connections: usize, length: Duration) -> LoadReport {
    let url = format!("{}/webhooks/finish-visit", app.base);
    let next = Arc::new(AtomicUsize::new(0));
    let until = Instant::now() + length;
    let mut clients = Vec::new();
    for _ in 0..connections {
        let (url, next) = (url.clone(), next.clone());
        clients.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client");
            let mut report = LoadReport::default();
            while Instant::now() < until {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let sent = client
                    .post(&url)
                    .header("api-key", KEY)
                    .header("content-type", "application/json")
                    .body(numbered_visit(n))
                    .send()
                    .await;
                let Ok(resp) = sent else {
                    report.refused += 1;
                    continue;
                };
                if resp.status() != 202 {
                    report.refused += 1;
                    continue;
                }
                let body: Value = resp.json().await.expect("202 body");
                match body["durableIn"].as_str() {
                    Some("broker") => report.durable_in_broker += 1,
                    Some("spool") => report.durable_in_spool += 1,
                    _ => {}
                }
                report
                    .accepted
                    .insert(body["messageId"].as_str().expect("messageId").to_owned());
            }
            report
        }));
    }
    let mut total = LoadReport::default();
    for client in clients {
        let report = client.await.expect("client task");
        total.accepted.extend(report.accepted);
        total.refused += report.refused;
        total.durable_in_broker += report.durable_in_broker;
        total.durable_in_spool += report.durable_in_spool;
    }
    total
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("{series} in the metrics"))
}

/// Kills the node the relay is connected to, restarts it, then kills the
/// node holding the product queue's leader, all while 16 clients post for
/// 20 s; every accepted visit must arrive in both of its queues.
async fn node_loss_under_load(durability: &str) {
    let cluster = ClusterGuard::acquire().await;
    let f = Fixture::start(&[("DURABILITY", durability), ("PUBLISH_TIMEOUT", "3s")]).await;
    let load = post_for(&f.app, 16, Duration::from_secs(20));
    let chaos = async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let first = f
            .connected_node()
            .expect("the relay is connected to one node");
        cluster.kill(first).await;
        let (moved_to, failover) = f.wait_moved_from(first).await;
        cluster.restart(first).await;
        let survivor = NODES.into_iter().find(|n| *n != first).expect("a survivor");
        let leader = cluster.leader_of(&f.queue(""), survivor).await;
        cluster.kill(leader).await;
        if f.connected_node() == Some(leader) || moved_to == leader {
            f.wait_moved_from(leader).await;
        }
        cluster.restart(leader).await;
        (first, moved_to, failover, leader)
    };
    let (report, (first, moved_to, failover, leader)) = tokio::join!(load, chaos);

    wait_until("the spool drains", ARRIVAL_TIMEOUT * 3, async || {
        f.app.readyz().await.1["spool"]["entries"] == 0
    })
    .await;
    assert_eq!(report.refused, 0, "the spool accepts through node loss");
    assert!(
        report.accepted.len() > 100,
        "{} accepted",
        report.accepted.len()
    );
    let raw_duplicates =
        assert_all_arrive_at(&node_url(1), &f.queue("raw."), &report.accepted).await;
    let duplicates = assert_all_arrive_at(&node_url(1), &f.queue(""), &report.accepted).await;
    let metrics = f.app.metrics().await;
    let reconnects = metric(&metrics, "kobra_relay_broker_reconnects_total");
    assert!(reconnects >= 1.0, "reconnected after the first kill");
    println!(
        "DURABILITY={durability}: {} accepted in 20 s (durableIn broker {}, spool {}), 0 lost; \
         killed node {first} (relay moved to {moved_to} in {failover:.1?}), then leader node {leader}; \
         {reconnects} reconnects; duplicates {duplicates} normalized, {raw_duplicates} raw",
        report.accepted.len(),
        report.durable_in_broker,
        report.durable_in_spool,
    );
    if durability == "replicated" {
        assert_eq!(
            report.durable_in_broker + report.durable_in_spool,
            report.accepted.len(),
            "every replicated 202 says where it is durable"
        );
        assert!(
            report.durable_in_broker > 0,
            "most answers come from the broker"
        );
        let counted = metric(
            &metrics,
            r#"kobra_relay_accepted_total{durable_in="broker"}"#,
        ) + metric(
            &metrics,
            r#"kobra_relay_accepted_total{durable_in="spool"}"#,
        );
        assert_eq!(counted as usize, report.accepted.len());
    }
}

#[tokio::test]
async fn killing_the_connected_node_and_then_the_queue_leader_under_load_loses_nothing() {
    node_loss_under_load("spool").await;
}

#[tokio::test]
async fn replicated_durability_survives_node_loss_under_load_and_says_where_each_visit_is() {
    node_loss_under_load("replicated").await;
}

#[tokio::test]
async fn a_relay_partitioned_from_its_node_moves_to_another_and_loses_nothing() {
    let _cluster = ClusterGuard::acquire().await;
    let f = Fixture::start(&[("PUBLISH_TIMEOUT", "2s")]).await;
    let load = post_for(&f.app, 8, Duration::from_secs(10));
    let partition = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let node = f.connected_node().expect("connected to one node");
        // Silent: the connection stays open and no byte crosses, so only
        // missing confirms can tell.
        f.proxies[node - 1].blackhole();
        let (moved_to, failover) = f.wait_moved_from(node).await;
        (node, moved_to, failover)
    };
    let (report, (node, moved_to, failover)) = tokio::join!(load, partition);
    f.proxies[node - 1].restore();

    f.app.wait_spool_empty().await;
    assert_eq!(report.refused, 0);
    assert_all_arrive_at(&node_url(1), &f.queue("raw."), &report.accepted).await;
    let duplicates = assert_all_arrive_at(&node_url(1), &f.queue(""), &report.accepted).await;
    let metrics = f.app.metrics().await;
    assert!(
        metric(
            &metrics,
            r#"kobra_relay_publish_failures_total{reason="timeout"}"#
        ) >= 1.0,
        "the silence was noticed through a confirm timeout"
    );
    println!(
        "partitioned from node {node}: moved to node {moved_to} in {failover:.1?}; {} accepted, 0 lost, {duplicates} duplicates",
        report.accepted.len()
    );
}

#[tokio::test]
async fn replicated_durability_answers_from_the_broker_once_a_majority_confirmed() {
    let _cluster = ClusterGuard::acquire().await;
    // A generous deadline: this test is about the answer, not the latency.
    let f = Fixture::start(&[("DURABILITY", "replicated"), ("REPLICATED_DEADLINE", "5s")]).await;
    for n in 0..5 {
        let resp = f.app.post_visit(numbered_visit(n), Some(KEY)).await;
        assert_eq!(resp.status(), 202);
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["durableIn"], "broker", "{body}");
        assert_eq!(body["status"], "accepted");
    }
    // Confirmed means enqueued on the quorum queue: readable right away.
    let queue = f.queue("");
    let members = crate::helpers::depth_at(&node_url(2), &queue).await;
    assert_eq!(members, 5);
    let metrics = f.app.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            r#"kobra_relay_accepted_total{durable_in="broker"}"#
        ),
        5.0
    );
    assert_eq!(
        metric(
            &metrics,
            r#"kobra_relay_accepted_total{durable_in="spool"}"#
        ),
        0.0
    );
}
