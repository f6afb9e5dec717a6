//! Fault tests: nothing accepted is ever lost (CONTRACT.md §2, spool mode).
//! Each runs against the real broker, through a proxy the test can cut, or
//! with the relay as a child process that is killed with SIGKILL.

use std::{
    collections::HashSet,
    net::SocketAddr,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::helpers::{
    ARRIVAL_TIMEOUT, KEY, TestApp, assert_all_arrive, broker, numbered_visit, post_many,
    random_prefix, spawn_app, spawn_app_with, spawn_at,
};
use crate::process::start_relay;
use crate::proxy::Proxy;

fn rabbitmq() -> SocketAddr {
    "127.0.0.1:5672".parse().expect("addr")
}

async fn wait_until(what: &str, check: impl AsyncFnMut() -> bool) {
    crate::helpers::wait_until(what, ARRIVAL_TIMEOUT, check).await;
}

async fn connected(app: &TestApp) -> bool {
    app.readyz().await.1["broker"]["connected"] == true
}

#[tokio::test]
async fn visits_accepted_during_a_broker_outage_all_arrive_once_it_returns() {
    let proxy = Proxy::start(rabbitmq()).await;
    let app = spawn_app_with(&[("AMQP_URL", &proxy.amqp_url())]).await;
    app.wait_connected().await;

    proxy.cut();
    wait_until("the relay sees the outage", async || !connected(&app).await).await;
    let (accepted, refused) = post_many(&app.http, &app.base, 0..60, 8).await;
    assert_eq!(
        (accepted.len(), refused),
        (60, 0),
        "every visit is accepted during the outage"
    );
    assert_eq!(
        app.readyz().await.0,
        200,
        "still ready: the spool absorbs the outage"
    );
    assert_eq!(app.readyz().await.1["spool"]["entries"], 60);

    proxy.restore();
    app.wait_spool_empty().await;
    let prefix = &app.prefix;
    let duplicates =
        assert_all_arrive(&format!("{prefix}.visits.raw.debt_collection"), &accepted).await;
    assert_all_arrive(&format!("{prefix}.visits.debt_collection"), &accepted).await;
    assert_eq!(
        duplicates, 0,
        "nothing was in flight when the proxy was cut"
    );
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("kobra_relay_broker_reconnects_total 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn cutting_the_connection_with_publishes_in_flight_loses_nothing() {
    let proxy = Proxy::start(rabbitmq()).await;
    let app = spawn_app_with(&[("AMQP_URL", &proxy.amqp_url())]).await;
    app.wait_connected().await;

    let load = post_many(&app.http, &app.base, 0..600, 16);
    let chaos = async {
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(60)).await;
            proxy.cut();
            tokio::time::sleep(Duration::from_millis(60)).await;
            proxy.restore();
        }
    };
    let ((accepted, refused), ()) = tokio::join!(load, chaos);
    assert_eq!(refused, 0);

    app.wait_spool_empty().await;
    let prefix = &app.prefix;
    let duplicates =
        assert_all_arrive(&format!("{prefix}.visits.raw.debt_collection"), &accepted).await;
    assert_all_arrive(&format!("{prefix}.visits.debt_collection"), &accepted).await;
    println!("600 accepted, {duplicates} redelivered as duplicates after 3 cuts");
}

#[tokio::test]
async fn a_relay_killed_with_sigkill_mid_load_delivers_every_accepted_visit_after_restart() {
    let prefix = random_prefix();
    let _cleanup = crate::helpers::Cleanup::new(&prefix);
    let spool = tempfile::tempdir().expect("tempdir");
    let client = reqwest::Client::new();

    let relay = start_relay(&prefix, spool.path(), None).await;
    let base = relay.base.clone();
    let load = tokio::spawn({
        let client = client.clone();
        async move { post_many(&client, &base, 0..2000, 16).await }
    });
    // Kill while requests are being accepted and published.
    let admin = relay.admin.clone();
    wait_until("some visits are accepted", async || {
        let Ok(resp) = client.get(format!("{admin}/metrics")).send().await else {
            return false;
        };
        let text = resp.text().await.unwrap_or_default();
        text.lines()
            .find(|l| {
                l.starts_with("kobra_relay_visits_received_total{product=\"debt_collection\"}")
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .is_some_and(|n| n >= 300)
    })
    .await;
    relay.kill_hard().await;
    let (accepted, refused) = load.await.expect("load task");
    assert!(accepted.len() >= 300, "{} accepted", accepted.len());
    assert!(refused > 0, "the kill happened mid-load");

    let restarted = start_relay(&prefix, spool.path(), None).await;
    wait_until("the restarted relay drains its spool", async || {
        let Ok(resp) = client
            .get(format!("{}/readyz", restarted.admin))
            .send()
            .await
        else {
            return false;
        };
        resp.json::<Value>()
            .await
            .is_ok_and(|r| r["spool"]["entries"] == 0 && r["broker"]["connected"] == true)
    })
    .await;
    let duplicates =
        assert_all_arrive(&format!("{prefix}.visits.raw.debt_collection"), &accepted).await;
    println!(
        "{} accepted before SIGKILL, all delivered; {duplicates} duplicates",
        accepted.len()
    );
    restarted.terminate().await;
}

#[tokio::test]
async fn a_full_spool_refuses_with_503_and_recovers_by_itself_when_the_broker_returns() {
    let proxy = Proxy::start(rabbitmq()).await;
    let app = spawn_app_with(&[("AMQP_URL", &proxy.amqp_url()), ("SPOOL_MAX_BYTES", "8KiB")]).await;
    app.wait_connected().await;
    proxy.cut();
    wait_until("the relay sees the outage", async || !connected(&app).await).await;

    let (accepted, refused) = post_many(&app.http, &app.base, 0..40, 1).await;
    assert!(refused > 0 && !accepted.is_empty());
    let resp = app.post_visit(numbered_visit(99), Some(KEY)).await;
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "5");
    assert_eq!(app.readyz().await.0, 503, "not ready while full");

    proxy.restore();
    app.wait_spool_empty().await;
    wait_until("ready again", async || app.readyz().await.0 == 200).await;
    assert_eq!(
        app.post_visit(numbered_visit(100), Some(KEY))
            .await
            .status(),
        202
    );
    assert_all_arrive(
        &format!("{}.visits.raw.debt_collection", app.prefix),
        &accepted,
    )
    .await;
}

#[tokio::test]
async fn with_a_stall_timeout_a_spool_that_stopped_draining_turns_unready_until_it_drains() {
    let proxy = Proxy::start(rabbitmq()).await;
    let app = spawn_app_with(&[
        ("AMQP_URL", &proxy.amqp_url()),
        ("READINESS_STALL_TIMEOUT", "1s"),
    ])
    .await;
    app.wait_connected().await;
    proxy.cut();
    wait_until("the relay sees the outage", async || !connected(&app).await).await;
    assert_eq!(
        app.post_visit(numbered_visit(1), Some(KEY)).await.status(),
        202
    );
    assert_eq!(app.readyz().await.0, 200, "a fresh backlog is not a stall");

    wait_until("the stalled spool makes it unready", async || {
        let (status, ready) = app.readyz().await;
        status == 503 && ready["ready"] == false && ready["spool"]["entries"] == 1
    })
    .await;
    // Unready is advice to the load balancer, not a refusal.
    assert_eq!(
        app.post_visit(numbered_visit(2), Some(KEY)).await.status(),
        202
    );

    proxy.restore();
    app.wait_spool_empty().await;
    assert_eq!(app.readyz().await.0, 200);
}

#[tokio::test]
async fn a_torn_spool_tail_is_skipped_and_logged_at_start() {
    let prefix = random_prefix();
    let _cleanup = crate::helpers::Cleanup::new(&prefix);
    let spool = tempfile::tempdir().expect("tempdir");
    let client = reqwest::Client::new();

    // Accept three visits while the broker is unreachable, then stop.
    let down = "amqp://guest:guest@127.0.0.1:1/%2f";
    let relay = start_relay(&prefix, spool.path(), Some(down)).await;
    let (accepted, _) = post_many(&client, &relay.base, 0..3, 1).await;
    assert_eq!(accepted.len(), 3);
    assert!(relay.terminate().await.success());

    // A crash mid-write leaves half a record at the end of the segment.
    let segment = std::fs::read_dir(spool.path())
        .expect("spool dir")
        .map(|e| e.expect("entry").path())
        .find(|p| {
            p.extension().is_some_and(|e| e == "log")
                && std::fs::metadata(p).is_ok_and(|m| m.len() > 0)
        })
        .expect("a segment with data");
    let mut bytes = std::fs::read(&segment).expect("read");
    bytes.extend_from_slice(b"KRS1\x40\x00\x00\x00garbage-torn");
    std::fs::write(&segment, bytes).expect("write");

    let relay = start_relay(&prefix, spool.path(), None).await;
    relay.wait_connected().await;
    let logs = relay.logs();
    assert!(
        logs.iter().any(|l| l["level"] == "WARN"
            && l["message"]
                .as_str()
                .is_some_and(|m| m.contains("torn record at the end of a segment"))),
        "the skipped tail is logged as a torn write, a warning: {logs:?}"
    );
    assert_all_arrive(&format!("{prefix}.visits.raw.debt_collection"), &accepted).await;
    relay.terminate().await;
}

#[tokio::test]
async fn shutdown_drains_the_spool_while_the_broker_is_up_and_keeps_it_otherwise() {
    // Broker down: what was accepted stays in the spool across the stop...
    let spool = tempfile::tempdir().expect("tempdir");
    let prefix = random_prefix();
    let _cleanup = crate::helpers::Cleanup::new(&prefix);
    let down = [("AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f")];
    let app = spawn_at(&prefix, spool.path(), &down).await;
    let (accepted, _) = post_many(&app.http, &app.base, 0..5, 1).await;
    let started = Instant::now();
    app.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "no waiting for a broker that is down"
    );

    // ...and a restart with the broker up delivers it, then stops empty.
    let app = spawn_at(&prefix, spool.path(), &[]).await;
    app.wait_connected().await;
    let more = post_many(&app.http, &app.base, 5..10, 1).await.0;
    app.stop().await;
    let (_, report) = kobra_relay::spool::Spool::open(spool.path(), 1 << 20).expect("reopen spool");
    assert_eq!(report.pending, 0, "graceful stop drained the spool");
    let all: HashSet<String> = accepted.union(&more).cloned().collect();
    assert_all_arrive(&format!("{prefix}.visits.raw.debt_collection"), &all).await;
}

#[tokio::test]
async fn a_returned_visit_stays_in_the_spool_and_is_retried_without_holding_back_others() {
    // Without the archive: its binding on the unrouted fanout would still
    // route the visit, so nothing would be returned.
    let app = spawn_app_with(&[("ARCHIVE", "false")]).await;
    let prefix = app.prefix.clone();
    let conn = broker().await;
    let channel = conn.create_channel().await.expect("channel");
    // An operator removes the unrouted queue: unknown products have nowhere to go.
    channel
        .queue_delete(
            format!("{prefix}.visits.unrouted").as_str().into(),
            Default::default(),
        )
        .await
        .expect("delete unrouted queue");

    assert_eq!(
        app.post_visit(r#"{"productID": 77, "visitID": "R"}"#, Some(KEY))
            .await
            .status(),
        202
    );
    wait_until("the return is counted", async || {
        app.metrics()
            .await
            .contains(r#"kobra_relay_publish_failures_total{reason="returned"} 1"#)
    })
    .await;
    let (accepted, _) = post_many(&app.http, &app.base, 0..5, 1).await;
    assert_all_arrive(&format!("{prefix}.visits.raw.debt_collection"), &accepted).await;
    assert_eq!(
        app.readyz().await.1["spool"]["entries"],
        1,
        "the returned visit is kept"
    );

    // The operator puts the queue back: the retry delivers it.
    let mut arguments = lapin::types::FieldTable::default();
    arguments.insert(
        "x-queue-type".into(),
        lapin::types::AMQPValue::LongString("quorum".into()),
    );
    arguments.insert(
        "x-dead-letter-exchange".into(),
        lapin::types::AMQPValue::LongString(format!("{prefix}.visits.dead-letter").into()),
    );
    let queue = format!("{prefix}.visits.unrouted");
    channel
        .queue_declare(
            queue.as_str().into(),
            lapin::options::QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            arguments,
        )
        .await
        .expect("declare");
    channel
        .queue_bind(
            queue.as_str().into(),
            queue.as_str().into(),
            "".into(),
            Default::default(),
            Default::default(),
        )
        .await
        .expect("bind");
    app.wait_spool_empty().await;
    let unrouted = crate::helpers::take(&queue, 2).await;
    assert!(
        unrouted
            .iter()
            .all(|m| m.routing_key == "visit.finished.product_77")
    );
    let _ = conn.close(200, "done".into()).await;
}

#[tokio::test]
async fn a_channel_closed_by_the_broker_is_rebuilt_and_the_topology_redeclared() {
    let app = spawn_app().await;
    let prefix = app.prefix.clone();
    let conn = broker().await;
    let channel = conn.create_channel().await.expect("channel");
    // Publishing to a deleted exchange makes the broker close the relay's channel.
    channel
        .exchange_delete(
            format!("{prefix}.visits.raw").as_str().into(),
            Default::default(),
        )
        .await
        .expect("delete exchange");
    let _ = conn.close(200, "done".into()).await;

    let (accepted, refused) = post_many(&app.http, &app.base, 0..10, 2).await;
    assert_eq!(refused, 0);
    app.wait_spool_empty().await;
    // Reconnecting re-declared the exchange and its bindings.
    assert_all_arrive(&format!("{prefix}.visits.debt_collection"), &accepted).await;
    assert_all_arrive(&format!("{prefix}.visits.raw.debt_collection"), &accepted).await;
    assert!(
        app.metrics()
            .await
            .contains("kobra_relay_broker_reconnects_total 1")
    );
}

#[tokio::test]
async fn amqp_urls_are_tried_in_order_until_one_answers() {
    let urls = format!(
        "amqp://guest:guest@127.0.0.1:1/%2f,{}",
        crate::helpers::AMQP_URL
    );
    let app = spawn_app_with(&[("AMQP_URL", &urls)]).await;
    app.wait_connected().await;
    assert_eq!(
        app.post_visit(numbered_visit(1), Some(KEY)).await.status(),
        202
    );
    crate::helpers::take(&format!("{}.visits.raw.debt_collection", app.prefix), 1).await;
}

#[tokio::test]
async fn shutdown_turns_unready_and_finishes_requests_already_in_flight() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let prefix = random_prefix();
    let _cleanup = crate::helpers::Cleanup::new(&prefix);
    let spool = tempfile::tempdir().expect("tempdir");
    let app = spawn_at(&prefix, spool.path(), &[]).await;
    app.wait_connected().await;
    let body = numbered_visit(7);
    let (head, tail) = body.as_bytes().split_at(body.len() / 2);
    let mut stream = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    let request = format!(
        "POST /webhooks/finish-visit HTTP/1.1\r\nhost: relay\r\napi-key: {KEY}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("head");
    stream.write_all(head).await.expect("first half");
    // Let the relay get into the body read before the stop.
    tokio::time::sleep(Duration::from_millis(100)).await;

    app.begin_stop();
    wait_until("readiness fails", async || {
        let (status, ready) = app.readyz().await;
        status == 503 && ready["shuttingDown"] == true
    })
    .await;
    let refused = reqwest::Client::new()
        .post(format!("{}/webhooks/finish-visit", app.base))
        .header("api-key", KEY)
        .body(numbered_visit(8))
        .send()
        .await;
    assert!(refused.is_err(), "no new connections are accepted");

    stream.write_all(tail).await.expect("second half");
    let mut response = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut response))
        .await
        .expect("answered")
        .expect("read");
    let response = String::from_utf8_lossy(&response[..n]).into_owned();
    assert!(response.starts_with("HTTP/1.1 202"), "{response}");
    app.stopped().await;
    let message_id = response
        .split("\"messageId\":\"")
        .nth(1)
        .expect("message id")
        .split('"')
        .next()
        .expect("id");
    let expected: HashSet<String> = [message_id.to_owned()].into();
    assert_all_arrive(&format!("{prefix}.visits.raw.debt_collection"), &expected).await;
}

/// A tmpfs of `size` mounted on a fresh directory, unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// `None` where mounting is not allowed (not root, no tmpfs).
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().expect("tempdir");
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(Self { dir })
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test]
async fn a_full_disk_makes_the_relay_unready_and_it_recovers_without_a_restart() {
    let Some(disk) = SmallDisk::mount("2m") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root), so no full disk to test");
        return;
    };
    let prefix = random_prefix();
    let _cleanup = crate::helpers::Cleanup::new(&prefix);
    let proxy = Proxy::start(rabbitmq()).await;
    proxy.cut();
    let app = spawn_at(&prefix, disk.path(), &[("AMQP_URL", &proxy.amqp_url())]).await;

    // The broker is away, so the spool can only grow until the disk is full.
    let visit = |n: usize| {
        serde_json::json!({"productID": 1, "visitID": format!("V{n:05}"), "padding": "x".repeat(2_000)})
            .to_string()
    };
    let mut accepted = 0;
    let refusal: Value = loop {
        assert!(accepted < 5_000, "2 MiB cannot hold {accepted} visits");
        let response = app.post_visit(visit(accepted), Some(KEY)).await;
        match response.status().as_u16() {
            202 => accepted += 1,
            503 => break response.json().await.expect("JSON body"),
            other => panic!("unexpected {other}"),
        }
    };
    assert!(accepted > 100, "only {accepted} visits fitted");
    assert!(
        refusal["detail"]
            .as_str()
            .is_some_and(|d| d.contains("cannot be written")),
        "{refusal}"
    );

    let (status, ready) = app.readyz().await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["ready"], false);
    let reason = ready["spool"]["writeError"].as_str().unwrap_or_default();
    assert!(reason.starts_with("no_space"), "{ready}");
    let metrics = app.metrics().await;
    assert!(
        !metrics.contains(r#"kobra_relay_spool_write_failures_total{kind="no_space"} 0"#)
            && metrics.contains(r#"kobra_relay_spool_write_failures_total{kind="no_space"}"#),
        "{metrics}"
    );
    let early = app.post_visit(visit(9_999), Some(KEY)).await;
    assert_eq!(early.status(), 503, "refused before the body is read");

    // The broker returns: the spool drains, its segment is deleted, and the
    // disk has room again.
    proxy.restore();
    wait_until("the relay is ready again", async || {
        app.readyz().await.0 == 200
    })
    .await;
    assert!(app.readyz().await.1["spool"].get("writeError").is_none());
    assert_eq!(
        app.post_visit(visit(accepted), Some(KEY)).await.status(),
        202,
        "accepting again, no restart"
    );
    accepted += 1;
    let raw = format!("{prefix}.visits.raw.debt_collection");
    wait_until("every accepted visit is delivered", async || {
        crate::helpers::depth(&raw).await as usize == accepted
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn an_accepted_visit_damaged_on_disk_is_quarantined_counted_and_listed() {
    let prefix = random_prefix();
    let _cleanup = crate::helpers::Cleanup::new(&prefix);
    let spool = tempfile::tempdir().expect("tempdir");
    {
        // What a relay with the broker away leaves: three accepted visits.
        let (writer, _) = kobra_relay::spool::Spool::open(spool.path(), 1 << 20).expect("open");
        for n in 0..3 {
            let receipt = kobra_relay::visit::Receipt {
                id: uuid::Uuid::now_v7(),
                received_at: jiff::Timestamp::now(),
                key_label: "test".into(),
            };
            let body = bytes::Bytes::from(numbered_visit(n));
            let envelope = kobra_relay::visit::Envelope::new(receipt, body);
            writer.append(envelope).await.expect("append");
        }
    }
    let segment = std::fs::read_dir(spool.path())
        .expect("spool dir")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|e| e == "log"))
        .expect("a segment");
    let mut bytes = std::fs::read(&segment).expect("segment");
    let middle = bytes
        .windows(6)
        .position(|w| w == b"V00001")
        .expect("the second visit");
    bytes[middle] = b'W';
    std::fs::write(&segment, &bytes).expect("damage it");

    let app = spawn_at(&prefix, spool.path(), &[]).await;
    app.wait_connected().await;
    let raw = format!("{prefix}.visits.raw.debt_collection");
    wait_until("the readable visits are delivered", async || {
        crate::helpers::depth(&raw).await == 2
    })
    .await;
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("kobra_relay_spool_damaged_records_total 1"),
        "{metrics}"
    );
    app.stop().await;

    let listed = crate::cli::run(
        &["spool"],
        &[("SPOOL_DIR", spool.path().to_str().expect("utf-8"))],
    )
    .await;
    let text = crate::cli::stdout(&listed);
    assert!(text.contains("quarantined       1"), "{text}");
    let quarantined = std::fs::read_dir(spool.path().join("quarantine"))
        .expect("quarantine dir")
        .map(|e| e.expect("entry").path())
        .collect::<Vec<_>>();
    let [copy] = &quarantined[..] else {
        panic!("one copy: {quarantined:?}")
    };
    assert!(text.contains(&copy.display().to_string()), "{text}");
    let kept = std::fs::read(copy).expect("copy");
    assert!(
        kept.windows(6).any(|w| w == b"W00001"),
        "the damaged record's bytes"
    );
}
