//! `DURABILITY=confirm`: the 202 waits for the broker's confirms.

use serde_json::json;

use crate::helpers::{FIXTURE, KEY, depth, spawn_app_with, take};
use crate::schema::assert_matches_schema;

#[tokio::test]
async fn in_confirm_mode_both_messages_are_on_the_broker_when_the_202_arrives() {
    let app = spawn_app_with(&[("DURABILITY", "confirm")]).await;
    app.wait_connected().await;

    let resp = app.post_visit(FIXTURE, Some(KEY)).await;
    assert_eq!(resp.status(), 202);
    // No waiting: the confirms came before the answer.
    assert_eq!(
        depth(&format!("{}.visits.raw.debt_collection", app.prefix)).await,
        1
    );
    assert_eq!(
        depth(&format!("{}.visits.debt_collection", app.prefix)).await,
        1
    );
    let doc = take(&format!("{}.visits.debt_collection", app.prefix), 1)
        .await
        .remove(0)
        .json();
    assert_matches_schema(&doc);

    let (status, ready) = app.readyz().await;
    assert_eq!(status, 200);
    assert_eq!(
        ready["spool"],
        json!({"entries": 0, "bytes": 0, "oldestAgeSeconds": 0})
    );
    assert!(
        !app.spool_dir.join("LOCK").exists(),
        "confirm mode keeps no spool"
    );
}

#[tokio::test]
async fn in_confirm_mode_a_rejected_copy_is_confirmed_before_the_400() {
    let app = spawn_app_with(&[("DURABILITY", "confirm")]).await;
    app.wait_connected().await;
    assert_eq!(
        app.post_visit("\"just a string\"", Some(KEY))
            .await
            .status(),
        400
    );
    assert_eq!(depth(&format!("{}.visits.rejected", app.prefix)).await, 1);
}

#[tokio::test]
async fn in_confirm_mode_a_broker_outage_means_503_and_not_ready() {
    let app = spawn_app_with(&[
        ("DURABILITY", "confirm"),
        ("AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f"),
    ])
    .await;
    let resp = app.post_visit(FIXTURE, Some(KEY)).await;
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    let (status, ready) = app.readyz().await;
    assert_eq!(status, 503);
    assert_eq!(ready["broker"]["connected"], false);
}
