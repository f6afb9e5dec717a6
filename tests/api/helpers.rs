//! Test harness: the real `App` on port 0 with a temporary spool, a random
//! `TOPOLOGY_PREFIX` on the real local RabbitMQ, and a consumer that reads
//! messages back the way a product team would. Everything a test declares
//! under its prefix is deleted when the `TestApp` is dropped, even after a
//! failed assertion.

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::OnceLock,
    time::{Duration, Instant},
};

use kobra_relay::{
    config::Retention,
    config::{QueueType, Settings},
    publisher::topology::Topology,
    startup::App,
};
use lapin::{
    BasicProperties, Connection, ConnectionProperties,
    options::{BasicConsumeOptions, BasicGetOptions},
    types::{AMQPValue, FieldTable},
};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::support;

/// The broker every test uses.
pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// The API key every test relay accepts (label `test`).
pub const KEY: &str = "test-key-0123456789";
/// The vendor's example, byte-exact.
pub const FIXTURE: &[u8] = include_bytes!("../fixtures/finish-visit-example.json");

/// Longest a test waits for something to show up in a queue.
pub const ARRIVAL_TIMEOUT: Duration = Duration::from_secs(20);

fn init_logs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            kobra_relay::telemetry::init(
                kobra_relay::config::LogFormat::Pretty,
                "info,kobra_relay=debug",
            );
        }
    });
}

/// A random topology prefix, so parallel tests never share queues.
pub fn random_prefix() -> String {
    support::broker::random_prefix("test")
}

/// Settings for a test relay; `extra` are `KOBRA_RELAY_*` names without the prefix.
pub fn settings(prefix: &str, spool_dir: &Path, extra: &[(&str, &str)]) -> Settings {
    let mut env: HashMap<String, String> = [
        ("LISTEN", "127.0.0.1:0"),
        ("ADMIN_LISTEN", "127.0.0.1:0"),
        ("API_KEYS", &format!("test:{KEY},other:second-key") as &str),
        ("AMQP_URL", AMQP_URL),
        ("TOPOLOGY_PREFIX", prefix),
        ("SPOOL_DIR", spool_dir.to_str().expect("utf-8 path")),
        ("LOG_FORMAT", "pretty"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    for (k, v) in extra {
        env.insert((*k).to_owned(), (*v).to_owned());
    }
    Settings::from_sources(
        None,
        env.into_iter()
            .map(|(k, v)| (format!("KOBRA_RELAY_{k}"), v)),
    )
    .expect("test settings are valid")
}

/// A running relay plus what a test needs to talk to it.
pub struct TestApp {
    /// Ingress base URL.
    pub base: String,
    /// Admin base URL.
    pub admin: String,
    /// Ingress address.
    pub addr: SocketAddr,
    /// This test's topology prefix.
    pub prefix: String,
    /// Spool directory (kept alive with the app).
    pub spool_dir: PathBuf,
    /// HTTP client.
    pub http: reqwest::Client,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
    _cleanup: Option<Cleanup>,
    _spool: Option<tempfile::TempDir>,
}

/// Starts a relay with default test settings.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// Starts a relay with extra settings.
pub async fn spawn_app_with(extra: &[(&str, &str)]) -> TestApp {
    let app = spawn_app_on(AMQP_URL, extra).await;
    if !extra.iter().any(|(name, _)| *name == "AMQP_URL") {
        // Queues exist once the relay has connected and declared them.
        app.wait_connected().await;
    }
    app
}

/// Starts a relay with extra settings whose topology is deleted from the
/// broker at `cleanup_url` when it is dropped (`AMQP_URL` may be a list of
/// proxies in front of that broker or cluster).
pub async fn spawn_app_on(cleanup_url: &str, extra: &[(&str, &str)]) -> TestApp {
    let spool = tempfile::tempdir().expect("tempdir");
    let prefix = random_prefix();
    let mut app = spawn_at(&prefix, spool.path(), extra).await;
    app._spool = Some(spool);
    app._cleanup = Some(Cleanup::at(cleanup_url, &prefix));
    app
}

/// Starts a relay on a given prefix and spool directory (for restarts); the
/// caller owns the [`Cleanup`] of the prefix.
pub async fn spawn_at(prefix: &str, spool_dir: &Path, extra: &[(&str, &str)]) -> TestApp {
    init_logs();
    let settings = settings(prefix, spool_dir, extra);
    let app = App::build(settings).await.expect("app builds");
    let addr = app.ingress_addr();
    let admin = app.admin_addr();
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    let task = tokio::spawn(async move {
        app.run_until_stopped(stopped.cancelled_owned())
            .await
            .expect("app runs");
    });
    TestApp {
        base: format!("http://{addr}"),
        admin: format!("http://{admin}"),
        addr,
        prefix: prefix.to_owned(),
        spool_dir: spool_dir.to_owned(),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client"),
        stop,
        task: Some(task),
        _cleanup: None,
        _spool: None,
    }
}

impl TestApp {
    /// POSTs a body to the webhook with `key` as `api-key`, JSON content type.
    pub async fn post_visit(
        &self,
        body: impl Into<reqwest::Body>,
        key: Option<&str>,
    ) -> reqwest::Response {
        self.try_post_visit(body, key).await.expect("request sent")
    }

    /// POSTs like [`TestApp::post_visit`] but returns transport errors.
    pub async fn try_post_visit(
        &self,
        body: impl Into<reqwest::Body>,
        key: Option<&str>,
    ) -> reqwest::Result<reqwest::Response> {
        let mut req = self
            .http
            .post(format!("{}/webhooks/finish-visit", self.base))
            .header("content-type", "application/json")
            .body(body);
        if let Some(key) = key {
            req = req.header("api-key", key);
        }
        req.send().await
    }

    /// `/readyz` as JSON, with its status.
    pub async fn readyz(&self) -> (u16, Value) {
        let resp = self
            .http
            .get(format!("{}/readyz", self.admin))
            .send()
            .await
            .expect("readyz");
        let status = resp.status().as_u16();
        (status, resp.json().await.expect("readyz json"))
    }

    /// `/metrics` text.
    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.admin))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// Waits (bounded) until the relay is connected to the broker.
    pub async fn wait_connected(&self) {
        let deadline = Instant::now() + ARRIVAL_TIMEOUT;
        while Instant::now() < deadline {
            if self.readyz().await.1["broker"]["connected"] == true {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("relay did not connect to the broker within {ARRIVAL_TIMEOUT:?}");
    }

    /// Waits (bounded) until the spool is empty.
    pub async fn wait_spool_empty(&self) {
        let deadline = Instant::now() + ARRIVAL_TIMEOUT;
        while Instant::now() < deadline {
            if self.readyz().await.1["spool"]["entries"] == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("spool not drained within {ARRIVAL_TIMEOUT:?}");
    }

    /// Stops the relay gracefully and waits for it.
    pub async fn stop(self) {
        self.begin_stop();
        self.stopped().await;
    }

    /// Sends the shutdown signal without waiting.
    pub fn begin_stop(&self) {
        self.stop.cancel();
    }

    /// Waits until the relay has stopped.
    pub async fn stopped(mut self) {
        if let Some(task) = self.task.take() {
            task.await.expect("app task");
        }
    }
}

/// A message as a consumer sees it.
#[derive(Debug, Clone)]
pub struct Received {
    /// Body bytes.
    pub body: Vec<u8>,
    /// Properties.
    pub properties: BasicProperties,
    /// Routing key it was published with.
    pub routing_key: String,
    /// Exchange it was published to.
    pub exchange: String,
}

impl Received {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("message body is JSON")
    }

    /// A header value.
    pub fn header(&self, name: &str) -> Option<&AMQPValue> {
        self.properties
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get(name))
    }

    /// A string header.
    pub fn header_str(&self, name: &str) -> Option<String> {
        match self.header(name)? {
            AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
            AMQPValue::ShortString(s) => Some(s.to_string()),
            _ => None,
        }
    }

    /// `message_id` property.
    pub fn message_id(&self) -> Option<String> {
        self.properties.message_id().as_ref().map(|s| s.to_string())
    }
}

/// Opens a consumer connection to the local broker.
pub async fn broker() -> Connection {
    broker_at(AMQP_URL).await
}

/// Opens a consumer connection to the broker at `url`.
pub async fn broker_at(url: &str) -> Connection {
    support::broker::connect(url).await
}

/// Takes `count` messages from `queue`, waiting (bounded) for them to arrive.
pub async fn take(queue: &str, count: usize) -> Vec<Received> {
    let conn = broker().await;
    let channel = conn.create_channel().await.expect("channel");
    let mut out = Vec::with_capacity(count);
    let deadline = Instant::now() + ARRIVAL_TIMEOUT;
    while out.len() < count {
        assert!(
            Instant::now() < deadline,
            "only {} of {count} messages arrived in {queue} within {ARRIVAL_TIMEOUT:?}",
            out.len()
        );
        match channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
            .expect("basic.get")
        {
            Some(message) => {
                let delivery = message.delivery;
                out.push(Received {
                    body: delivery.data.clone(),
                    properties: delivery.properties.clone(),
                    routing_key: delivery.routing_key.to_string(),
                    exchange: delivery.exchange.to_string(),
                });
            }
            None => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    let _ = conn.close(200, "done".into()).await;
    out
}

/// Number of ready messages in `queue` right now.
pub async fn depth(queue: &str) -> u32 {
    depth_at(AMQP_URL, queue).await
}

/// Number of ready messages in `queue` on the broker at `url`.
pub async fn depth_at(url: &str, queue: &str) -> u32 {
    let conn = broker_at(url).await;
    let depth = support::broker::queue_depth(&conn, queue).await;
    let _ = conn.close(200, "done".into()).await;
    depth
}

/// Asserts that `queue` stays empty for a short while (negative check).
pub async fn assert_stays_empty(queue: &str) {
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(depth(queue).await, 0, "{queue} should be empty");
}

/// Deletes every queue and exchange of a prefix when dropped.
pub struct Cleanup {
    url: String,
    prefix: String,
}

impl Cleanup {
    /// Cleans up `prefix` on the shared broker on drop.
    pub fn new(prefix: &str) -> Self {
        Self::at(AMQP_URL, prefix)
    }

    /// Cleans up `prefix` on the broker at `url` on drop.
    pub fn at(url: &str, prefix: &str) -> Self {
        Self {
            url: url.to_owned(),
            prefix: prefix.to_owned(),
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (url, prefix) = (self.url.clone(), self.prefix.clone());
        let cleaner = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(delete_topology_at(&url, &prefix));
        });
        let _ = cleaner.join();
    }
}

/// Deletes what a relay declares under `prefix` on the broker at `url`.
pub async fn delete_topology_at(url: &str, prefix: &str) {
    let Ok(conn) = Connection::connect(url, ConnectionProperties::default()).await else {
        return;
    };
    // The retention only shapes the declaration; deleting needs the names.
    let topology = Topology::new(prefix, QueueType::Quorum, true).with_archive(Some(Retention {
        max_age: Duration::from_secs(1),
        max_bytes: 1,
    }));
    support::broker::delete_topology(&conn, &topology).await;
    let _ = conn.close(200, "cleanup".into()).await;
}

/// A distinct visit of product 1, numbered `n`.
pub fn numbered_visit(n: usize) -> String {
    serde_json::json!({"productID": 1, "visitID": format!("V{n:05}"), "padding": "x".repeat(200)})
        .to_string()
}

/// Posts visits numbered from `range` with `concurrency` in flight; returns
/// the message ids of those answered 202, and how many were not.
pub async fn post_many(
    client: &reqwest::Client,
    base: &str,
    range: std::ops::Range<usize>,
    concurrency: usize,
) -> (HashSet<String>, usize) {
    use futures_util::{StreamExt, stream};
    let url = format!("{base}/webhooks/finish-visit");
    let results: Vec<Option<String>> = stream::iter(range)
        .map(|n| {
            let client = client.clone();
            let url = url.clone();
            async move {
                let resp = client
                    .post(&url)
                    .header("api-key", KEY)
                    .body(numbered_visit(n))
                    .send()
                    .await
                    .ok()?;
                if resp.status() != 202 {
                    return None;
                }
                let body: Value = resp.json().await.ok()?;
                body["messageId"].as_str().map(str::to_owned)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let refused = results.iter().filter(|r| r.is_none()).count();
    (results.into_iter().flatten().collect(), refused)
}

/// Reads `queue` on the shared broker until every id in `expected` was seen
/// (bounded), then reads what is left; returns how many deliveries were
/// duplicates.
pub async fn assert_all_arrive(queue: &str, expected: &HashSet<String>) -> usize {
    assert_all_arrive_at(AMQP_URL, queue, expected).await
}

/// [`assert_all_arrive`] on the broker at `url`.
pub async fn assert_all_arrive_at(url: &str, queue: &str, expected: &HashSet<String>) -> usize {
    use futures_util::StreamExt;
    let conn = broker_at(url).await;
    let channel = conn.create_channel().await.expect("channel");
    let mut consumer = channel
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("basic.consume");
    let mut seen: HashMap<String, usize> = HashMap::new();
    let deadline = Instant::now() + ARRIVAL_TIMEOUT * 3;
    loop {
        let next = tokio::time::timeout(Duration::from_millis(300), consumer.next()).await;
        if let Ok(Some(delivery)) = next {
            let delivery = delivery.expect("delivery");
            let id = delivery
                .properties
                .message_id()
                .as_ref()
                .map(|s| s.to_string())
                .expect("message_id");
            *seen.entry(id).or_default() += 1;
            continue;
        }
        // Quiet for a moment: done once every id came and nothing is left
        // queued (what came after the last expected id were duplicates).
        let complete = expected.iter().all(|id| seen.contains_key(id));
        if complete && depth_at(url, queue).await == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} accepted visits missing from {queue}",
            expected.iter().filter(|id| !seen.contains_key(*id)).count(),
            expected.len()
        );
    }
    let _ = conn.close(200, "done".into()).await;
    seen.values().map(|n| n - 1).sum()
}

/// Waits (bounded by `timeout`) until `check` holds.
pub async fn wait_until(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
