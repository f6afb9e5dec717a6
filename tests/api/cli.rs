//! The operator subcommands, run as a user runs them: the real binary
//! against a real relay, broker and spool.

use std::{
    path::Path,
    process::{Output, Stdio},
    time::{Duration, Instant},
};

use kobra_relay::visit::Product;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::helpers::{Cleanup, FIXTURE, KEY, depth, random_prefix, spawn_app, spawn_app_with};

const BINARY: &str = env!("CARGO_BIN_EXE_kobra-relay");
const RUN_LIMIT: Duration = Duration::from_secs(30);

/// `kobra-relay ARGS` with only the given `KOBRA_RELAY_*` settings.
pub fn command(args: &[&str], settings: &[(&str, &str)]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(BINARY);
    command.args(args).kill_on_drop(true);
    for (name, _) in std::env::vars().filter(|(n, _)| n.starts_with("KOBRA_")) {
        command.env_remove(name);
    }
    for (name, value) in settings {
        command.env(crate::process::env_name(name), value);
    }
    command
}

pub async fn run(args: &[&str], settings: &[(&str, &str)]) -> Output {
    let output = command(args, settings).output();
    tokio::time::timeout(RUN_LIMIT, output)
        .await
        .expect("the command finishes")
        .expect("the binary runs")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn write_fixture(dir: &Path) -> String {
    let path = dir.join("visit.json");
    std::fs::write(&path, FIXTURE).expect("write fixture");
    path.to_str().expect("utf-8").to_owned()
}

#[tokio::test]
async fn send_posts_a_file_and_prints_the_answer() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_fixture(dir.path());
    let url = format!("{}/webhooks/finish-visit", app.base);

    let accepted = run(&["send", &file, "--url", &url, "--api-key", KEY], &[]).await;
    assert_eq!(accepted.status.code(), Some(0), "{accepted:?}");
    let text = stdout(&accepted);
    assert!(text.starts_with("HTTP 202 Accepted\n"), "{text}");
    let body: Value = serde_json::from_str(text.lines().last().expect("body")).expect("JSON body");
    assert_eq!(body["status"], "accepted");
    assert!(text.contains(&format!(
        "x-request-id: {}",
        body["receiptId"].as_str().expect("id")
    )));

    let refused = run(&["send", &file, "--url", &url, "--api-key", "wrong"], &[]).await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(stdout(&refused).starts_with("HTTP 401 Unauthorized\n"));

    let missing = run(
        &["send", "/nonexistent.json", "--url", &url, "--api-key", KEY],
        &[],
    )
    .await;
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read /nonexistent.json"));

    let unreachable = run(
        &[
            "send",
            &file,
            "--url",
            "http://127.0.0.1:1/webhooks/finish-visit",
            "--api-key",
            KEY,
        ],
        &[],
    )
    .await;
    assert_eq!(unreachable.status.code(), Some(1));
}

/// Starts `kobra-relay tail ...` and waits until its queue is bound.
async fn start_tail(args: &[&str], prefix: &str) -> (tokio::process::Child, String) {
    let mut child = command(args, &[("TOPOLOGY_PREFIX", prefix)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tail starts");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let banner = tokio::time::timeout(RUN_LIMIT, stderr.next_line())
        .await
        .expect("tail reports that it is ready")
        .expect("stderr readable")
        .unwrap_or_default();
    (child, banner)
}

async fn finish(child: tokio::process::Child) -> Output {
    tokio::time::timeout(RUN_LIMIT, child.wait_with_output())
        .await
        .expect("tail stops after --count visits")
        .expect("tail output")
}

async fn wait_depth(queue: &str, want: u32) {
    let deadline = Instant::now() + RUN_LIMIT;
    while depth(queue).await != want {
        assert!(Instant::now() < deadline, "{queue} never held {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn tail_shows_a_copy_and_leaves_the_queue_to_its_consumers() {
    let app = spawn_app().await;
    let (child, banner) = start_tail(
        &["tail", "debt_collection", "--count", "1", "--json"],
        &app.prefix,
    )
    .await;
    assert!(banner.starts_with("tailing"), "{banner}");

    let response = app.post_visit(FIXTURE, Some(KEY)).await;
    assert_eq!(response.status(), 202);
    let output = finish(child).await;
    assert_eq!(output.status.code(), Some(0));
    let shown: Value = serde_json::from_str(stdout(&output).trim()).expect("one JSON document");
    assert_eq!(shown["visitId"], "9A1190V5974");
    assert_eq!(shown["product"]["slug"], "debt_collection");

    let queue = format!("{}.visits.debt_collection", app.prefix);
    wait_depth(&queue, 1).await;

    let (readable, _) = start_tail(&["tail", "1", "--raw", "--count", "1"], &app.prefix).await;
    app.post_visit(FIXTURE, Some(KEY)).await;
    let text = stdout(&finish(readable).await);
    let summary = text.lines().next().expect("summary line");
    assert!(
        summary.starts_with("── ") && summary.contains("debt_collection"),
        "{summary}"
    );
    assert!(
        summary.contains("visit 9A1190V5974") && summary.contains("key test"),
        "{summary}"
    );
    let raw: Value = serde_json::from_str(&text[summary.len()..]).expect("pretty raw body");
    assert_eq!(raw["visitID"], "9A1190V5974");
}

#[tokio::test]
async fn tail_from_the_queue_takes_what_it_shows() {
    let app = spawn_app().await;
    app.post_visit(FIXTURE, Some(KEY)).await;
    let queue = format!("{}.visits.debt_collection", app.prefix);
    wait_depth(&queue, 1).await;

    let (child, banner) = start_tail(
        &[
            "tail",
            "debt_collection",
            "--from-queue",
            "--count",
            "1",
            "--json",
        ],
        &app.prefix,
    )
    .await;
    assert!(banner.starts_with("consuming"), "{banner}");
    let output = finish(child).await;
    let shown: Value = serde_json::from_str(stdout(&output).trim()).expect("JSON");
    assert_eq!(shown["visitId"], "9A1190V5974");
    wait_depth(&queue, 0).await;

    let unknown = run(&["tail", "nope"], &[("TOPOLOGY_PREFIX", &app.prefix)]).await;
    assert_eq!(unknown.status.code(), Some(2));
}

#[tokio::test]
async fn topology_declares_what_it_prints() {
    let prefix = random_prefix();
    let _cleanup = Cleanup::new(&prefix);
    let settings = [
        ("TOPOLOGY_PREFIX", prefix.as_str()),
        ("QUEUE_TYPE", "classic"),
    ];

    let declared = run(&["topology", "--declare"], &settings).await;
    assert_eq!(declared.status.code(), Some(0), "{declared:?}");
    assert!(stdout(&declared).starts_with("declared 5 exchanges, 10 queues, 13 bindings"));
    for product in Product::KNOWN {
        let queue = format!("{prefix}.visits.{}", product.slug());
        assert_eq!(depth(&queue).await, 0, "{queue} exists");
    }

    let printed = stdout(&run(&["topology"], &settings).await);
    assert!(printed.contains(&format!("  {prefix}.visits.raw ")));
    assert!(printed.contains("classic"));

    let down = run(
        &["topology", "--declare"],
        &[("AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f")],
    )
    .await;
    assert_eq!(down.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&down.stderr).contains("127.0.0.1:1"));
}

#[tokio::test]
async fn the_definitions_file_is_what_topology_prints() {
    let output = run(&["topology", "--format", "definitions"], &[]).await;
    assert_eq!(output.status.code(), Some(0));
    let printed: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let shipped: Value =
        serde_json::from_str(include_str!("../../deploy/rabbitmq/definitions.json")).expect("JSON");
    assert_eq!(
        printed, shipped,
        "regenerate with: kobra-relay topology --format definitions"
    );
}

#[tokio::test]
async fn spool_lists_what_waits_for_the_broker() {
    let app = spawn_app_with(&[("AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f")]).await;
    let mut bodies = Vec::new();
    for visit in ["A-1", "B-2"] {
        let body = String::from_utf8_lossy(FIXTURE).replace("9A1190V5974", visit);
        assert_eq!(app.post_visit(body.clone(), Some(KEY)).await.status(), 202);
        bodies.push(body);
    }
    let dir = app.spool_dir.to_str().expect("utf-8").to_owned();
    let settings = [("SPOOL_DIR", dir.as_str())];

    let stats = stdout(&run(&["spool"], &settings).await);
    assert!(stats.contains("in use by a running relay"), "{stats}");
    assert!(stats.contains("pending entries   2\n"), "{stats}");
    let bytes: usize = bodies.iter().map(String::len).sum();
    let pending_bytes: usize = stats
        .lines()
        .find_map(|l| l.strip_prefix("pending bytes     "))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("pending bytes line");
    assert!(pending_bytes > bytes, "{pending_bytes} counts the records");

    let listed = run(&["spool", "pending", "--json"], &settings).await;
    let entries: Vec<Value> = stdout(&listed)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let visits: Vec<&str> = entries
        .iter()
        .filter_map(|e| e["visitId"].as_str())
        .collect();
    assert_eq!(visits, ["A-1", "B-2"]);
    assert_eq!(entries[0]["product"], "debt_collection");
    assert_eq!(entries[0]["keyLabel"], "test");

    let missing = run(&["spool"], &[("SPOOL_DIR", "/nonexistent/spool")]).await;
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("KOBRA_RELAY_SPOOL_DIR"));
}

#[tokio::test]
async fn a_failed_start_says_why_once_on_stderr() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = taken.local_addr().expect("address").to_string();
    let spool = tempfile::tempdir().expect("tempdir");
    let output = run(
        &["serve"],
        &[
            ("API_KEYS", "test:k"),
            ("LISTEN", &address),
            ("ADMIN_LISTEN", "127.0.0.1:0"),
            ("SPOOL_DIR", spool.path().to_str().expect("utf-8")),
        ],
    )
    .await;
    assert_eq!(output.status.code(), Some(2));
    let err = String::from_utf8_lossy(&output.stderr);
    let all = format!("{}{err}", stdout(&output));
    assert_eq!(
        all.matches("KOBRA_RELAY_LISTEN").count(),
        1,
        "the reason once, naming the setting: {all}"
    );
    assert!(err.contains("cannot be bound"), "on stderr: {err}");
}
