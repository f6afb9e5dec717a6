//! `DURABILITY=replicated` on the shared node: the 202 falls back to the
//! spool when the broker does not confirm within `REPLICATED_DEADLINE`, and
//! says so. (Answers from the broker, and node loss, are in `cluster`.)

use std::collections::HashSet;

use serde_json::Value;

use crate::helpers::{
    AMQP_URL, FIXTURE, KEY, assert_all_arrive, numbered_visit, spawn_app_on, spawn_app_with,
};
use crate::proxy::Proxy;

async fn post(app: &crate::helpers::TestApp, body: impl Into<reqwest::Body>) -> Value {
    let resp = app.post_visit(body, Some(KEY)).await;
    assert_eq!(resp.status(), 202);
    resp.json().await.expect("json")
}

#[tokio::test]
async fn a_silent_broker_gets_the_visit_answered_from_the_spool_and_delivered_later() {
    let proxy = Proxy::start("127.0.0.1:5672".parse().expect("addr")).await;
    let app = spawn_app_on(
        AMQP_URL,
        &[
            ("AMQP_URL", &proxy.amqp_url()),
            ("DURABILITY", "replicated"),
            ("PUBLISH_TIMEOUT", "1s"),
        ],
    )
    .await;
    app.wait_connected().await;
    assert_eq!(post(&app, numbered_visit(0)).await["durableIn"], "broker");

    // Connected, but nothing comes back: the deadline passes, the spool answers.
    proxy.blackhole();
    let mut accepted = HashSet::new();
    for n in 1..4 {
        let body = post(&app, numbered_visit(n)).await;
        assert_eq!(body["durableIn"], "spool", "{body}");
        accepted.insert(body["messageId"].as_str().expect("id").to_owned());
    }
    assert_eq!(app.readyz().await.0, 200, "ready: the spool holds them");

    proxy.restore();
    app.wait_spool_empty().await;
    assert_all_arrive(
        &format!("{}.visits.raw.debt_collection", app.prefix),
        &accepted,
    )
    .await;
    let metrics = app.metrics().await;
    assert!(metrics.contains(r#"kobra_relay_accepted_total{durable_in="broker"} 1"#));
    assert!(metrics.contains(r#"kobra_relay_accepted_total{durable_in="spool"} 3"#));
}

#[tokio::test]
async fn with_the_broker_down_replicated_mode_accepts_like_spool_mode() {
    let app = spawn_app_with(&[
        ("AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f"),
        ("DURABILITY", "replicated"),
    ])
    .await;
    let body = post(&app, FIXTURE).await;
    assert_eq!(body["durableIn"], "spool");
    let (status, ready) = app.readyz().await;
    assert_eq!(status, 200);
    assert_eq!(ready["broker"]["connected"], false);
    assert_eq!(ready["spool"]["entries"], 1);
    // A body that is not a visit is still kept and refused as before.
    let resp = app.post_visit("[1,2]", Some(KEY)).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(app.readyz().await.1["spool"]["entries"], 2);
}

#[tokio::test]
async fn spool_mode_answers_keep_the_contract_body() {
    let app = spawn_app_with(&[]).await;
    let body = post(&app, FIXTURE).await;
    let keys: Vec<&str> = body
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["status", "receiptId", "messageId"]);
}
