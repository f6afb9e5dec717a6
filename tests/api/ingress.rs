//! Every row of the ingress table of CONTRACT.md §2, over real HTTP.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{FIXTURE, KEY, assert_stays_empty, spawn_app, spawn_app_with, take};

async fn error_of(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    assert!(
        resp.headers().contains_key("x-request-id"),
        "every response has x-request-id"
    );
    (status, resp.json().await.expect("json body"))
}

#[tokio::test]
async fn a_missing_or_unknown_key_is_refused_and_nothing_is_kept() {
    let app = spawn_app().await;
    let (status, body) = error_of(app.post_visit(FIXTURE, None).await).await;
    assert_eq!((status, body), (401, json!({"error": "unauthorized"})));
    let (status, body) = error_of(app.post_visit(FIXTURE, Some("not-the-key")).await).await;
    assert_eq!((status, body), (401, json!({"error": "unauthorized"})));

    let (_, ready) = app.readyz().await;
    assert_eq!(ready["spool"]["entries"], 0, "nothing stored");
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(r#"kobra_relay_auth_failures_total{reason="missing"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"kobra_relay_auth_failures_total{reason="invalid"} 1"#),
        "{metrics}"
    );
    assert!(
        !metrics.contains("not-the-key") && !metrics.contains(KEY),
        "no key in metrics"
    );
    assert_stays_empty(&format!("{}.visits.raw.debt_collection", app.prefix)).await;
}

#[tokio::test]
async fn the_header_name_is_case_insensitive_and_every_configured_key_works() {
    let app = spawn_app().await;
    for (name, key) in [("API-KEY", KEY), ("Api-Key", "second-key")] {
        let resp = app
            .http
            .post(format!("{}/webhooks/finish-visit", app.base))
            .header(name, key)
            .body(FIXTURE)
            .send()
            .await
            .expect("sent");
        assert_eq!(resp.status(), 202, "{name}");
    }
    let raw = take(&format!("{}.visits.raw.debt_collection", app.prefix), 2).await;
    let mut labels: Vec<String> = raw
        .iter()
        .filter_map(|m| m.header_str("x-api-key-label"))
        .collect();
    labels.sort();
    assert_eq!(labels, vec!["other", "test"]);
}

#[tokio::test]
async fn an_unauthenticated_body_is_never_read() {
    let app = spawn_app().await;
    // Announce a body but never send it: the 401 must come without waiting for it.
    let mut stream = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    stream
        .write_all(b"POST /webhooks/finish-visit HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\ncontent-type: application/json\r\n\r\n{")
        .await
        .expect("write");
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("answered without the body")
        .expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 401"));
}

#[tokio::test]
async fn other_methods_get_405_with_allow_and_other_paths_get_404() {
    let app = spawn_app().await;
    let resp = app
        .http
        .get(format!("{}/webhooks/finish-visit", app.base))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.headers()["allow"], "POST");
    assert_eq!(
        error_of(resp).await,
        (405, json!({"error": "method_not_allowed"}))
    );

    let resp = app
        .http
        .post(format!("{}/webhooks/other", app.base))
        .header("api-key", KEY)
        .body(FIXTURE)
        .send()
        .await
        .expect("sent");
    assert_eq!(error_of(resp).await, (404, json!({"error": "not_found"})));
}

#[tokio::test]
async fn explicit_non_json_media_types_get_415_but_json_variants_and_none_are_fine() {
    let app = spawn_app().await;
    let post = |content_type: Option<&'static str>| {
        let mut req = app
            .http
            .post(format!("{}/webhooks/finish-visit", app.base))
            .header("api-key", KEY)
            .body(FIXTURE);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        req.send()
    };
    let resp = post(Some("text/plain")).await.expect("sent");
    assert_eq!(
        error_of(resp).await,
        (415, json!({"error": "unsupported_media_type"}))
    );
    for ok in [
        None,
        Some("application/json; charset=utf-8"),
        Some("application/vnd.kobra.visit+json"),
    ] {
        assert_eq!(post(ok).await.expect("sent").status(), 202, "{ok:?}");
    }
}

#[tokio::test]
async fn bodies_over_the_limit_get_413_whether_declared_or_streamed() {
    let app = spawn_app_with(&[("MAX_BODY_BYTES", "4KiB")]).await;
    let big = format!(r#"{{"productID":1,"pad":"{}"}}"#, "x".repeat(5000));
    let (status, body) = error_of(app.post_visit(big.clone(), Some(KEY)).await).await;
    assert_eq!((status, body), (413, json!({"error": "payload_too_large"})));

    // Chunked, so no content-length tells the size up front.
    let chunks: Vec<Result<String, std::io::Error>> = big
        .as_bytes()
        .chunks(1000)
        .map(|c| Ok(String::from_utf8(c.to_vec()).expect("ascii")))
        .collect();
    let stream = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let (status, body) = error_of(app.post_visit(stream, Some(KEY)).await).await;
    assert_eq!((status, body), (413, json!({"error": "payload_too_large"})));

    let just_under = format!(r#"{{"productID":1,"pad":"{}"}}"#, "x".repeat(4096 - 24));
    assert_eq!(just_under.len(), 4096);
    assert_eq!(app.post_visit(just_under, Some(KEY)).await.status(), 202);
    assert_eq!(
        app.readyz().await.1["spool"]["entries"]
            .as_u64()
            .map(|n| n <= 1),
        Some(true)
    );
}

#[tokio::test]
async fn request_ids_are_echoed_when_valid_and_generated_otherwise() {
    let app = spawn_app().await;
    let send = |id: &'static str| {
        app.http
            .post(format!("{}/webhooks/finish-visit", app.base))
            .header("api-key", KEY)
            .header("x-request-id", id)
            .body(FIXTURE)
            .send()
    };
    let resp = send("kobra:abc-123_4.5").await.expect("sent");
    assert_eq!(resp.headers()["x-request-id"], "kobra:abc-123_4.5");

    let resp = send("not valid!").await.expect("sent");
    let id = resp.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let body: Value = resp.json().await.expect("json");
    assert_eq!(
        id,
        body["receiptId"].as_str().expect("receipt"),
        "a 202 falls back to the receipt id"
    );

    let resp = app
        .http
        .get(format!("{}/nowhere", app.base))
        .send()
        .await
        .expect("sent");
    let id = resp.headers()["x-request-id"].to_str().expect("ascii");
    assert_eq!(
        uuid::Uuid::parse_str(id).expect("uuid").get_version_num(),
        7
    );
}

#[tokio::test]
async fn a_full_spool_answers_503_with_retry_after_and_recovers_when_drained() {
    // The broker is unreachable, so nothing drains and the small spool fills.
    let app = spawn_app_with(&[
        ("SPOOL_MAX_BYTES", "12KiB"),
        ("AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f"),
    ])
    .await;
    let mut accepted = 0;
    let mut refused = None;
    for _ in 0..10 {
        let resp = app.post_visit(FIXTURE, Some(KEY)).await;
        if resp.status() == 202 {
            accepted += 1;
        } else {
            refused = Some(resp);
            break;
        }
    }
    let resp = refused.expect("the spool fills up");
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "5");
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"], "unavailable");
    assert!(
        body["detail"]
            .as_str()
            .expect("detail")
            .contains("SPOOL_MAX_BYTES")
    );
    assert_eq!(accepted, 4, "12 KiB holds four 2.8 KB visits");

    let (status, ready) = app.readyz().await;
    assert_eq!(status, 503);
    assert_eq!(ready["ready"], false);
    assert_eq!(ready["broker"]["connected"], false);
    assert_eq!(ready["spool"]["entries"], 4);
}

#[tokio::test]
async fn the_relay_starts_and_accepts_while_the_broker_is_down() {
    let app = spawn_app_with(&[("AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f")]).await;
    assert_eq!(app.post_visit(FIXTURE, Some(KEY)).await.status(), 202);
    let (status, ready) = app.readyz().await;
    assert_eq!(
        status, 200,
        "a broker outage alone does not make the relay unready"
    );
    assert_eq!(
        ready,
        json!({"ready": true, "shuttingDown": false, "broker": {"connected": false},
               "spool": {"entries": 1, "bytes": ready["spool"]["bytes"], "oldestAgeSeconds": ready["spool"]["oldestAgeSeconds"]}})
    );
    assert!(ready["spool"]["bytes"].as_u64().expect("bytes") > FIXTURE.len() as u64);
    let metrics = app.metrics().await;
    assert!(metrics.contains("kobra_relay_broker_connected 0"));
    assert!(metrics.contains("kobra_relay_spool_entries 1"));
}

#[tokio::test]
async fn health_and_metrics_are_served_on_the_admin_listener_only() {
    let app = spawn_app().await;
    let health = app
        .http
        .get(format!("{}/healthz", app.admin))
        .send()
        .await
        .expect("sent");
    assert_eq!(health.status(), 200);
    let on_ingress = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .expect("sent");
    assert_eq!(on_ingress.status(), 404);
    app.wait_connected().await;
    let metrics = app.metrics().await;
    assert!(metrics.contains("kobra_relay_broker_connected 1"));
    assert!(metrics.contains(&format!(
        "kobra_relay_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    )));
}
