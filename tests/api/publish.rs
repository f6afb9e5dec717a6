//! End to end: POST -> spool -> RabbitMQ -> what a consumer reads.

use kobra_relay::visit::sha256;
use lapin::types::AMQPValue;
use serde_json::{Value, json};

use crate::helpers::{FIXTURE, KEY, Received, assert_stays_empty, spawn_app, take};
use crate::schema::assert_matches_schema;

fn assert_common_properties(
    m: &Received,
    message_id: &str,
    receipt_id: &str,
    content_type: &str,
    kind: &str,
) {
    let p = &m.properties;
    assert_eq!(*p.delivery_mode(), Some(2), "persistent");
    assert_eq!(
        p.content_type().as_ref().map(|s| s.as_str()),
        Some(content_type)
    );
    assert_eq!(p.app_id().as_ref().map(|s| s.as_str()), Some("kobra-relay"));
    assert_eq!(p.kind().as_ref().map(|s| s.as_str()), Some(kind));
    assert_eq!(m.message_id().as_deref(), Some(message_id));
    assert_eq!(
        p.correlation_id()
            .as_ref()
            .map(|s| s.to_string())
            .as_deref(),
        Some(receipt_id)
    );
    let timestamp = p.timestamp().expect("timestamp property");
    let now = jiff::Timestamp::now().as_second() as u64;
    assert!(
        now.abs_diff(timestamp) < 120,
        "timestamp is the receipt time"
    );
    assert_eq!(m.header_str("x-api-key-label").as_deref(), Some("test"));
    let received_at = m.header_str("x-received-at").expect("x-received-at");
    assert!(received_at.ends_with('Z'), "{received_at} is RFC 3339 UTC");
    received_at
        .parse::<jiff::Timestamp>()
        .expect("x-received-at parses");
}

#[tokio::test]
async fn the_vendor_example_reaches_both_debt_collection_queues_as_the_contract_says() {
    let app = spawn_app().await;

    let resp = app.post_visit(FIXTURE, Some(KEY)).await;
    assert_eq!(resp.status(), 202);
    let request_id = resp.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let ack: Value = resp.json().await.expect("json");
    assert_eq!(ack["status"], "accepted");
    let receipt_id = ack["receiptId"].as_str().expect("receiptId");
    let parsed = uuid::Uuid::parse_str(receipt_id).expect("uuid");
    assert_eq!(parsed.get_version_num(), 7);
    assert_eq!(
        request_id, receipt_id,
        "without a caller id, the receipt id is the request id"
    );
    let message_id = hex::encode(sha256(FIXTURE));
    assert_eq!(ack["messageId"], message_id.as_str());

    let raw = take(&format!("{}.visits.raw.debt_collection", app.prefix), 1)
        .await
        .remove(0);
    assert_eq!(raw.body, FIXTURE, "the raw body is byte-identical");
    assert_eq!(raw.exchange, format!("{}.visits.raw", app.prefix));
    assert_eq!(raw.routing_key, "visit.finished.debt_collection");
    assert_common_properties(
        &raw,
        &message_id,
        receipt_id,
        "application/json",
        "kobra.visit.finished",
    );
    assert_eq!(raw.header("x-product-id"), Some(&AMQPValue::LongLongInt(1)));
    assert_eq!(
        raw.header_str("x-product").as_deref(),
        Some("debt_collection")
    );
    assert_eq!(raw.header_str("x-visit-id").as_deref(), Some("9A1190V5974"));
    assert_eq!(raw.header_str("x-agent-id").as_deref(), Some("21559"));
    assert_eq!(
        raw.header_str("x-external-id").as_deref(),
        Some("110105499609")
    );
    assert_eq!(raw.header_str("x-tag").as_deref(), Some("Cliente ya pagó"));
    assert_eq!(raw.header("x-schema-version"), None);

    let normalized = take(&format!("{}.visits.debt_collection", app.prefix), 1)
        .await
        .remove(0);
    assert_eq!(normalized.exchange, format!("{}.visits", app.prefix));
    assert_eq!(normalized.routing_key, "visit.finished.debt_collection");
    assert_common_properties(
        &normalized,
        &message_id,
        receipt_id,
        "application/json",
        "kobra.visit.finished",
    );
    assert!(matches!(
        normalized.header("x-schema-version"),
        Some(AMQPValue::LongInt(1))
    ));
    assert_eq!(
        normalized.header_str("x-visit-id").as_deref(),
        Some("9A1190V5974")
    );

    let doc = normalized.json();
    assert_matches_schema(&doc);
    assert_eq!(doc["messageId"], message_id.as_str());
    assert_eq!(doc["receiptId"], receipt_id);
    assert_eq!(
        doc["receivedAt"],
        raw.header_str("x-received-at").expect("header").as_str()
    );
    assert_eq!(
        doc["product"],
        json!({"id": 1, "slug": "debt_collection", "name": "DebtCollection"})
    );
    assert_eq!(doc["visitId"], "9A1190V5974");
    assert_eq!(
        doc["agent"],
        json!({"id": "21559", "name": "HERMES HECTOR ARREDONDO LUGO"})
    );
    assert_eq!(doc["location"], json!({"lat": 37.421998, "lng": -122.084}));
    assert_eq!(doc["startedAt"], "2020-03-17T13:56:49-07:00");
    assert_eq!(doc["endedAt"], "2020-03-17T13:58:29-07:00");
    assert_eq!(doc["durationSeconds"], 100);
    assert_eq!(doc["tag"], "Cliente ya pagó");
    assert_eq!(doc["checklist"].as_array().expect("checklist").len(), 12);
    assert_eq!(doc["warnings"], json!([]));
}

#[tokio::test]
async fn each_known_product_is_routed_to_its_own_pair_of_queues() {
    let app = spawn_app().await;
    for (id, slug) in [
        (1, "debt_collection"),
        (2, "address_validation"),
        (3, "business_validation"),
    ] {
        let body = json!({"productID": id, "visitID": format!("V-{id}")}).to_string();
        assert_eq!(app.post_visit(body.clone(), Some(KEY)).await.status(), 202);

        let raw = take(&format!("{}.visits.raw.{slug}", app.prefix), 1)
            .await
            .remove(0);
        assert_eq!(raw.body, body.as_bytes());
        assert_eq!(raw.routing_key, format!("visit.finished.{slug}"));
        let normalized = take(&format!("{}.visits.{slug}", app.prefix), 1)
            .await
            .remove(0);
        let doc = normalized.json();
        assert_matches_schema(&doc);
        assert_eq!(doc["product"]["slug"], slug);
        assert_eq!(doc["visitId"], format!("V-{id}"));
    }
}

#[tokio::test]
async fn unknown_and_missing_products_reach_the_unrouted_queue_with_warnings() {
    let app = spawn_app().await;
    assert_eq!(
        app.post_visit(r#"{"productID": 9, "visitID": "A"}"#, Some(KEY))
            .await
            .status(),
        202
    );
    assert_eq!(
        app.post_visit(r#"{"visitID": "B"}"#, Some(KEY))
            .await
            .status(),
        202
    );

    let unrouted = take(&format!("{}.visits.unrouted", app.prefix), 4).await;
    let mut keys: Vec<&str> = unrouted.iter().map(|m| m.routing_key.as_str()).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        vec![
            "visit.finished.product_9",
            "visit.finished.product_9",
            "visit.finished.unknown",
            "visit.finished.unknown"
        ]
    );
    for m in unrouted.iter().filter(|m| m.exchange.ends_with(".visits")) {
        let doc = m.json();
        assert_matches_schema(&doc);
        if doc["visitId"] == "A" {
            assert_eq!(
                doc["product"],
                json!({"id": 9, "slug": "product_9", "name": null})
            );
            assert_eq!(m.header("x-product-id"), Some(&AMQPValue::LongLongInt(9)));
        } else {
            assert_eq!(
                doc["product"],
                json!({"id": null, "slug": "unknown", "name": null})
            );
            assert_eq!(doc["warnings"][0]["field"], "productID");
            assert_eq!(m.header("x-product-id"), None, "absent when unknown");
        }
    }
    assert_stays_empty(&format!("{}.visits.debt_collection", app.prefix)).await;
}

#[tokio::test]
async fn bodies_that_are_not_json_objects_are_kept_on_the_rejected_exchange() {
    let app = spawn_app().await;
    let cases: [(&[u8], &str); 3] = [
        (b"[1, 2, 3]", "not_an_object"),
        (br#"{"visitID": "9A1"#, "invalid_json"),
        (b"{\"client\": \"\xff\xfe\"}", "invalid_utf8"),
    ];
    for (body, _) in cases {
        let resp = app.post_visit(body.to_vec(), Some(KEY)).await;
        assert_eq!(resp.status(), 400);
        let err: Value = resp.json().await.expect("json");
        assert_eq!(err["error"], "invalid_json");
        assert!(
            err["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{err}"
        );
    }

    let rejected = take(&format!("{}.visits.rejected", app.prefix), 3).await;
    for (body, reason) in cases {
        let m = rejected
            .iter()
            .find(|m| m.body == body)
            .unwrap_or_else(|| panic!("rejected copy of {reason} kept byte for byte"));
        assert_eq!(m.header_str("x-rejection-reason").as_deref(), Some(reason));
        assert_eq!(
            m.properties.content_type().as_ref().map(|s| s.as_str()),
            Some("application/octet-stream")
        );
        assert_eq!(
            m.properties.kind().as_ref().map(|s| s.as_str()),
            Some("kobra.visit.rejected")
        );
        assert_eq!(m.header_str("x-api-key-label").as_deref(), Some("test"));
        assert!(m.header_str("x-received-at").is_some());
    }
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(r#"kobra_relay_rejected_total{reason="not_an_object"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_vendor_page_spellings_and_types_are_normalized_too() {
    let app = spawn_app().await;
    let body = json!({
        "visitId": 4410, "productID": "2", "agentID": "21559", "externalID": 110105499609u64,
        "lat": 19.4326, "Ing": "-99.1332", "rebound": "true", "finished": 1, "cancelled": "false",
        "startDate": "2023-07-01 12:00:00", "endDate": "2023-07-01 12:30:00",
        "timeZone": "America/Mexico_City", "surveyScore": 9
    })
    .to_string();
    assert_eq!(app.post_visit(body, Some(KEY)).await.status(), 202);

    let doc = take(&format!("{}.visits.address_validation", app.prefix), 1)
        .await
        .remove(0)
        .json();
    assert_matches_schema(&doc);
    assert_eq!(doc["visitId"], "4410");
    assert_eq!(doc["externalId"], "110105499609");
    assert_eq!(doc["location"], json!({"lat": 19.4326, "lng": -99.1332}));
    assert_eq!(doc["rebound"], true);
    assert_eq!(doc["finished"], true);
    assert_eq!(doc["cancelled"], false);
    assert_eq!(doc["startedAt"], "2023-07-01T12:00:00-06:00");
    assert_eq!(doc["durationSeconds"], 1800);
    assert_eq!(doc["extra"], json!({"surveyScore": 9}));
    assert_eq!(doc["warnings"], json!([]));
}

#[tokio::test]
async fn odd_fields_are_relayed_with_warnings_instead_of_refused() {
    let app = spawn_app().await;
    let body = json!({
        "productID": 1, "visitID": "W", "lat": "north", "lng": "-122.084", "timeZone": "Mars/Base",
        "startDate": "2020-03-17 13:56:49", "endDate": "2020-03-17 13:58:29",
        "checklist": [{"questionID": 1, "order": 1, "answers": [{"answerTypeID": 3, "value": "many", "order": 1}]}]
    })
    .to_string();
    assert_eq!(app.post_visit(body, Some(KEY)).await.status(), 202);

    let doc = take(&format!("{}.visits.debt_collection", app.prefix), 1)
        .await
        .remove(0)
        .json();
    assert_matches_schema(&doc);
    let fields: Vec<&str> = doc["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .map(|w| w["field"].as_str().expect("field"))
        .collect();
    assert_eq!(
        fields,
        vec!["timeZone", "lat", "checklist[0].answers[0].value"]
    );
    assert_eq!(doc["location"], Value::Null);
    assert_eq!(doc["startedAt"], Value::Null);
    assert_eq!(doc["startedAtLocal"], "2020-03-17T13:56:49");
    assert_eq!(doc["durationSeconds"], 100);
    assert_eq!(doc["checklist"][0]["answers"][0]["rawValue"], "many");

    app.wait_spool_empty().await;
    let metrics = app.metrics().await;
    for field in ["timeZone", "location", "checklist"] {
        let line = format!("kobra_relay_normalization_warnings_total{{field=\"{field}\"}} 1");
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }
}

#[tokio::test]
async fn large_visits_are_relayed_whole_and_in_bounded_batches() {
    let app = crate::helpers::spawn_app_with(&[("MAX_BODY_BYTES", "2MiB")]).await;
    app.wait_connected().await;
    let mut sent = Vec::new();
    for n in 0..12 {
        let body =
            json!({"productID": 1, "visitID": format!("BIG-{n}"), "photo": "x".repeat(1 << 20)})
                .to_string();
        assert_eq!(app.post_visit(body.clone(), Some(KEY)).await.status(), 202);
        sent.push(body);
    }
    let raw = take(&format!("{}.visits.raw.debt_collection", app.prefix), 12).await;
    for body in &sent {
        assert!(
            raw.iter().any(|m| m.body == body.as_bytes()),
            "a 1 MiB visit arrived whole"
        );
    }
    let normalized = take(&format!("{}.visits.debt_collection", app.prefix), 12).await;
    assert!(
        normalized
            .iter()
            .all(|m| m.json()["extra"]["photo"].as_str().map(str::len) == Some(1 << 20))
    );
}
