//! The archive stream and `kobra-relay replay`, as a user runs them: visits
//! posted to a real relay, consumed from their queues, then read back from
//! the archive on the real broker and published again.

use std::{collections::HashMap, process::Output, time::Duration};

use jiff::Timestamp;
use lapin::{
    BasicProperties,
    options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable},
};
use serde_json::Value;

use crate::cli::{command, run, stdout};
use crate::helpers::{
    ARRIVAL_TIMEOUT, KEY, Received, TestApp, assert_stays_empty, broker, depth, numbered_visit,
    spawn_app, spawn_app_with, spawn_at, take, wait_until,
};

/// Posts visits numbered from `range`, one at a time (so the archive holds
/// them in that order); returns their message ids.
async fn post_numbered(app: &TestApp, range: std::ops::Range<usize>) -> Vec<String> {
    let mut ids = Vec::new();
    for n in range {
        let response = app.post_visit(numbered_visit(n), Some(KEY)).await;
        assert_eq!(response.status(), 202);
        let body: Value = response.json().await.expect("202 body");
        ids.push(body["messageId"].as_str().expect("messageId").to_owned());
    }
    ids
}

fn queue(app: &TestApp, name: &str) -> String {
    format!("{}.visits.{name}", app.prefix)
}

async fn replay(app: &TestApp, args: &[&str]) -> Output {
    let mut full = vec!["replay"];
    full.extend_from_slice(args);
    run(&full, &[("TOPOLOGY_PREFIX", &app.prefix)]).await
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The summary line's counts by name: `read 10, matched 10, published 10, …`.
fn summary(output: &Output) -> HashMap<String, u64> {
    let text = stdout(output);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("replay: "))
        .unwrap_or_else(|| panic!("no summary in {text:?}; stderr {}", stderr(output)));
    line.split(", ")
        .map(|part| {
            let (name, count) = part.rsplit_once(' ').expect("name count");
            (name.to_owned(), count.parse().expect("a count"))
        })
        .collect()
}

fn by_id(messages: Vec<Received>) -> HashMap<String, Received> {
    messages
        .into_iter()
        .map(|m| (m.message_id().expect("message_id"), m))
        .collect()
}

/// Every header but `x-replayed`.
fn headers_besides_replayed(m: &Received) -> Vec<(String, AMQPValue)> {
    let mut headers: Vec<(String, AMQPValue)> = m
        .properties
        .headers()
        .as_ref()
        .expect("headers")
        .inner()
        .iter()
        .filter(|(name, _)| name.as_str() != "x-replayed")
        .map(|(name, value)| (name.to_string(), value.clone()))
        .collect();
    headers.sort_by(|a, b| a.0.cmp(&b.0));
    headers
}

#[tokio::test]
async fn ten_visits_consumed_from_their_queues_come_back_with_one_replay() {
    let app = spawn_app().await;
    let since = Timestamp::now();
    let ids = post_numbered(&app, 0..10).await;
    let normalized = by_id(take(&queue(&app, "debt_collection"), 10).await);
    let raw = by_id(take(&queue(&app, "raw.debt_collection"), 10).await);
    assert_eq!(depth(&queue(&app, "debt_collection")).await, 0, "drained");
    wait_until("the archive counts ten", ARRIVAL_TIMEOUT, async || {
        app.metrics()
            .await
            .contains("kobra_relay_archive_appended_total 10")
    })
    .await;

    let output = replay(&app, &["--since", &since.to_string()]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let counts = summary(&output);
    assert_eq!(counts["read"], 10);
    assert_eq!(counts["published"], 10);
    assert_eq!(counts["skipped"], 0);

    let replayed = by_id(take(&queue(&app, "debt_collection"), 10).await);
    for id in &ids {
        let (original, again) = (&normalized[id], &replayed[id]);
        assert_eq!(again.json(), original.json(), "field-identical document");
        assert_eq!(again.header("x-replayed"), Some(&AMQPValue::Boolean(true)));
        assert_eq!(original.header("x-replayed"), None);
        assert_eq!(
            headers_besides_replayed(again),
            headers_besides_replayed(original)
        );
        assert_eq!(
            again.properties.correlation_id(),
            original.properties.correlation_id()
        );
        assert_eq!(again.routing_key, original.routing_key);
    }
    assert_stays_empty(&queue(&app, "raw.debt_collection")).await;

    let output = replay(&app, &["--since", &since.to_string(), "--raw"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let again = by_id(take(&queue(&app, "raw.debt_collection"), 10).await);
    for id in &ids {
        assert_eq!(again[id].body, raw[id].body, "byte-identical raw body");
    }
    assert_stays_empty(&queue(&app, "debt_collection")).await;

    // The raw replay went through the raw exchange, so the archive holds
    // those copies too; marked as replays, they are not replayed again.
    let counted = replay(&app, &["--since", "first", "--dry-run"]).await;
    let counts = summary(&counted);
    assert_eq!((counts["read"], counts["would publish"]), (10, 10));
    assert_stays_empty(&queue(&app, "debt_collection")).await;
}

#[tokio::test]
async fn a_window_or_a_visit_id_picks_which_visits_come_back() {
    let app = spawn_app().await;
    post_numbered(&app, 0..4).await;
    // Receipt times have millisecond precision; the window's edge must fall
    // between two of them.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let middle = Timestamp::now();
    tokio::time::sleep(Duration::from_millis(5)).await;
    post_numbered(&app, 4..7).await;
    let product = queue(&app, "debt_collection");
    take(&product, 7).await;

    let later = replay(&app, &["--since", &middle.to_string()]).await;
    assert_eq!(summary(&later)["published"], 3, "{}", stderr(&later));
    let visits: Vec<String> = take(&product, 3)
        .await
        .iter()
        .map(|m| m.json()["visitId"].as_str().expect("visitId").to_owned())
        .collect();
    assert_eq!(visits, ["V00004", "V00005", "V00006"]);

    let earlier = replay(&app, &["--since", "first", "--until", &middle.to_string()]).await;
    assert_eq!(summary(&earlier)["published"], 4);
    take(&product, 4).await;

    let one = replay(
        &app,
        &["--offset", "0", "--visit-id", "V00005", "--product", "1"],
    )
    .await;
    let counts = summary(&one);
    assert_eq!((counts["read"], counts["matched"]), (7, 1));
    let [visit] = &take(&product, 1).await[..] else {
        unreachable!("one taken")
    };
    assert_eq!(visit.json()["visitId"], "V00005");
    assert_stays_empty(&product).await;
}

#[tokio::test]
async fn to_queue_replays_for_one_consumer_only() {
    let app = spawn_app().await;
    post_numbered(&app, 0..2).await;
    take(&queue(&app, "debt_collection"), 2).await;
    let own = queue(&app, "debt_collection.audit");
    let conn = broker().await;
    let channel = conn.create_channel().await.expect("channel");
    // The broker removes it a minute after its last use, whatever the test
    // does (the relay's cleanup knows only the relay's own queues).
    let mut expires = FieldTable::default();
    expires.insert("x-expires".into(), AMQPValue::LongInt(60_000));
    channel
        .queue_declare(own.as_str().into(), QueueDeclareOptions::default(), expires)
        .await
        .expect("declare");

    let output = replay(&app, &["--since", "first", "--to-queue", &own]).await;
    assert_eq!(summary(&output)["published"], 2, "{}", stderr(&output));
    assert_eq!(take(&own, 2).await.len(), 2);
    assert_stays_empty(&queue(&app, "debt_collection")).await;

    let missing = replay(&app, &["--since", "first", "--to-queue", "no-such-queue"]).await;
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("no-such-queue"),
        "{}",
        stderr(&missing)
    );
    let _ = channel
        .queue_delete(own.as_str().into(), Default::default())
        .await;
    let _ = conn.close(200, "done".into()).await;
}

/// Appends `body` to the archive directly, with `properties`, confirmed.
async fn append(archive: &str, body: &[u8], properties: BasicProperties) {
    let conn = broker().await;
    let channel = conn.create_channel().await.expect("channel");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    channel
        .basic_publish(
            "".into(),
            archive.into(),
            BasicPublishOptions::default(),
            body,
            properties,
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    let _ = conn.close(200, "done".into()).await;
}

fn relay_like(body: &[u8], message_id: &str) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(
        "x-received-at".into(),
        AMQPValue::LongString(Timestamp::now().to_string().into()),
    );
    BasicProperties::default()
        .with_correlation_id(uuid::Uuid::now_v7().to_string().into())
        .with_message_id(message_id.into())
        .with_headers(headers)
        .with_content_type(if body.starts_with(b"{") {
            "application/json".into()
        } else {
            "text/plain".into()
        })
}

#[tokio::test]
async fn corrupted_and_non_json_archive_messages_are_skipped_with_a_warning() {
    let app = spawn_app().await;
    post_numbered(&app, 0..2).await;
    let archive = queue(&app, "archive");
    let not_json = b"hello, not json";
    append(&archive, not_json, relay_like(not_json, &sha256(not_json))).await;
    let tampered = numbered_visit(99);
    let recorded = sha256(numbered_visit(98).as_bytes());
    append(
        &archive,
        tampered.as_bytes(),
        relay_like(tampered.as_bytes(), &recorded),
    )
    .await;
    post_numbered(&app, 2..3).await;
    take(&queue(&app, "debt_collection"), 3).await;

    let output = replay(&app, &["--since", "first"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let counts = summary(&output);
    assert_eq!(
        (counts["read"], counts["published"], counts["skipped"]),
        (5, 3, 2)
    );
    let warnings = stderr(&output);
    assert!(
        warnings.contains("offset 2 skipped: the body is not a JSON object"),
        "{warnings}"
    );
    assert!(
        warnings.contains("offset 3 skipped: the body does not match its message_id"),
        "{warnings}"
    );
    assert_eq!(take(&queue(&app, "debt_collection"), 3).await.len(), 3);
}

fn sha256(bytes: &[u8]) -> String {
    kobra_relay::visit::Envelope::new(
        kobra_relay::visit::Receipt {
            id: uuid::Uuid::nil(),
            received_at: Timestamp::UNIX_EPOCH,
            key_label: String::new(),
        },
        bytes::Bytes::copy_from_slice(bytes),
    )
    .message_id()
}

#[tokio::test]
async fn ctrl_c_stops_a_replay_that_says_where_to_go_on() {
    let app = spawn_app().await;
    post_numbered(&app, 0..6).await;
    let product = queue(&app, "debt_collection");
    take(&product, 6).await;

    // A long idle timeout: the replay waits at the archive's end until
    // interrupted.
    let child = command(
        &["replay", "--since", "first", "--idle-timeout", "60s"],
        &[("TOPOLOGY_PREFIX", &app.prefix)],
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .expect("replay starts");
    wait_until("the replay publishes six", ARRIVAL_TIMEOUT, async || {
        depth(&product).await == 6
    })
    .await;
    let pid = child.id().expect("running").to_string();
    let signalled = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill");
    assert!(signalled.success());
    let output = tokio::time::timeout(ARRIVAL_TIMEOUT, child.wait_with_output())
        .await
        .expect("the replay stops on SIGINT")
        .expect("output");
    assert_eq!(output.status.code(), Some(130));
    assert_eq!(summary(&output)["published"], 6);
    assert!(
        stderr(&output).contains("interrupted; go on with --offset 6"),
        "{}",
        stderr(&output)
    );

    take(&product, 6).await;
    let rest = replay(&app, &["--offset", "4"]).await;
    assert_eq!(summary(&rest)["published"], 2);
    assert_eq!(take(&product, 2).await.len(), 2);
}

/// `rabbitmqctl list_queues name arguments` for one queue, as name -> value.
fn declared_arguments(queue: &str) -> HashMap<String, Value> {
    let out = std::process::Command::new("rabbitmqctl")
        .args([
            "list_queues",
            "name",
            "arguments",
            "--formatter",
            "json",
            "-q",
        ])
        .output()
        .expect("rabbitmqctl");
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).expect("JSON");
    let row = rows
        .into_iter()
        .find(|r| r["name"] == queue)
        .unwrap_or_else(|| panic!("{queue} is declared"));
    match &row["arguments"] {
        Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        Value::Array(entries) => entries
            .iter()
            .filter_map(|e| e.as_array())
            .map(|t| {
                (
                    t[0].as_str().unwrap_or_default().to_owned(),
                    t[t.len() - 1].clone(),
                )
            })
            .collect(),
        other => panic!("arguments {other}"),
    }
}

#[tokio::test]
async fn retention_settings_are_the_streams_arguments_on_the_broker() {
    let app = spawn_app_with(&[("ARCHIVE_MAX_AGE", "7d"), ("ARCHIVE_MAX_BYTES", "1GiB")]).await;
    let arguments = declared_arguments(&queue(&app, "archive"));
    assert_eq!(arguments["x-queue-type"], "stream");
    assert_eq!(arguments["x-max-age"], "7D");
    assert_eq!(arguments["x-max-length-bytes"], 1_073_741_824);
}

#[tokio::test]
async fn a_relay_with_other_retention_keeps_the_existing_archive_and_delivers() {
    let first = spawn_app_with(&[("ARCHIVE_MAX_AGE", "7d")]).await;
    let spool = tempfile::tempdir().expect("tempdir");
    let second = spawn_at(&first.prefix, spool.path(), &[("ARCHIVE_MAX_AGE", "8d")]).await;
    second.wait_connected().await;
    assert_eq!(
        second
            .post_visit(numbered_visit(1), Some(KEY))
            .await
            .status(),
        202
    );
    take(&queue(&first, "debt_collection"), 1).await;
    assert_eq!(
        declared_arguments(&queue(&first, "archive"))["x-max-age"],
        "7D",
        "a stream's retention is fixed at creation"
    );
    second.stop().await;
}

#[tokio::test]
async fn archive_false_declares_no_stream_and_counts_nothing() {
    let app = spawn_app_with(&[("ARCHIVE", "false")]).await;
    post_numbered(&app, 0..1).await;
    take(&queue(&app, "debt_collection"), 1).await;
    assert!(
        app.metrics()
            .await
            .contains("kobra_relay_archive_appended_total 0")
    );
    let output = replay(&app, &["--since", "first"]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("ARCHIVE=true"),
        "the error names the setting: {}",
        stderr(&output)
    );
}

#[tokio::test]
async fn other_products_are_archived_through_the_unrouted_fanout_and_replayed_once() {
    let app = spawn_app().await;
    let body = r#"{"productID":7,"visitID":"P7"}"#;
    assert_eq!(app.post_visit(body, Some(KEY)).await.status(), 202);
    let unrouted = queue(&app, "unrouted");
    take(&unrouted, 2).await;

    let output = replay(&app, &["--since", "first"]).await;
    let counts = summary(&output);
    assert_eq!(
        (counts["read"], counts["published"]),
        (1, 1),
        "the normalized copy in the archive is passed over"
    );
    let [again] = &take(&unrouted, 1).await[..] else {
        unreachable!("one taken")
    };
    assert_eq!(again.json()["product"]["slug"], "product_7");
    assert_eq!(again.header("x-replayed"), Some(&AMQPValue::Boolean(true)));
    assert_stays_empty(&unrouted).await;
}

#[tokio::test]
async fn a_replay_that_matches_nothing_says_so_and_exits_3() {
    let app = spawn_app().await;
    post_numbered(&app, 0..2).await;
    take(&queue(&app, "debt_collection"), 2).await;

    let output = replay(&app, &["--since", "first", "--visit-id", "NOT-ARCHIVED"]).await;
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert_eq!(summary(&output)["matched"], 0);
    assert!(
        stderr(&output).contains("nothing matched"),
        "{}",
        stderr(&output)
    );
    assert_stays_empty(&queue(&app, "debt_collection")).await;

    let found = replay(&app, &["--since", "first", "--visit-id", "V00001"]).await;
    assert_eq!(found.status.code(), Some(0), "{}", stderr(&found));
    take(&queue(&app, "debt_collection"), 1).await;
}
