//! The bad-input table: each hostile or broken body gets its expected
//! status, a good request still succeeds after it, and nothing accepted is
//! lost.

use serde_json::json;

use crate::helpers::{FIXTURE, KEY, depth, spawn_app_with};

const LIMIT: usize = 64 * 1024;

/// `{"productID":1,"pad":"xxx…"}` of exactly `len` bytes.
fn padded(len: usize) -> Vec<u8> {
    let shell = r#"{"productID":1,"pad":""}"#.len();
    format!(r#"{{"productID":1,"pad":"{}"}}"#, "x".repeat(len - shell)).into_bytes()
}

fn every_field_with_a_wrong_type() -> Vec<u8> {
    json!({
        "visitID": {"a": 1}, "productID": 1, "agentID": [1], "externalID": true, "visitType": 7,
        "lat": [], "lng": {}, "interest": "lots", "rebound": "maybe", "tagName": [], "finished": "x",
        "cancelled": 3, "cancellationReason": {}, "client": [], "agent": {}, "startDate": 5,
        "endDate": false, "comment": [], "timeZone": 9, "checklist": "none", "phones": 1, "emails": "e"
    })
    .to_string()
    .into_bytes()
}

fn huge_checklist() -> Vec<u8> {
    let questions: Vec<_> = (0..10_000)
        .map(|i| json!({"questionID": i, "order": i, "answers": [{"answerTypeID": 1, "value": "a"}]}))
        .collect();
    json!({"productID": 1, "checklist": questions})
        .to_string()
        .into_bytes()
}

#[tokio::test]
async fn every_bad_input_gets_its_status_and_nothing_accepted_is_lost() {
    let app = spawn_app_with(&[("MAX_BODY_BYTES", "64KiB")]).await;
    app.wait_connected().await;
    let small = spawn_app_with(&[]).await;
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("truncated JSON", br#"{"visitID":"9A1190V5974","productID":1,"ag"#.to_vec(), 400),
        ("just under the limit", padded(LIMIT), 202),
        ("just over the limit", padded(LIMIT + 1), 413),
        ("invalid UTF-8", b"{\"client\":\"\xc3\x28\",\"productID\":1}".to_vec(), 400),
        ("duplicate keys", br#"{"productID":1,"visitID":"a","visitID":"b"}"#.to_vec(), 202),
        ("NaN literal", br#"{"productID":1,"interest":NaN}"#.to_vec(), 400),
        ("Infinity literal", br#"{"productID":1,"interest":Infinity}"#.to_vec(), 400),
        ("numbers out of range", br#"{"productID":1,"interest":1e400,"lat":-1e999,"agentID":123456789012345678901234567890}"#.to_vec(), 202),
        ("escaped NUL", br#"{"productID":1,"client":"a\u0000b"}"#.to_vec(), 202),
        ("raw NUL byte", b"{\"productID\":1,\"client\":\"a\0b\"}".to_vec(), 400),
        ("a wrong type for every field", every_field_with_a_wrong_type(), 202),
        ("empty body", Vec::new(), 400),
        ("whitespace only", b"  \n ".to_vec(), 400),
        ("a JSON string", br#""visit""#.to_vec(), 400),
    ];
    let mut accepted = 0;
    let mut rejected = 0;
    for (name, body, expected) in cases {
        let resp = app.post_visit(body, Some(KEY)).await;
        let status = resp.status().as_u16();
        assert_eq!(status, expected, "{name}");
        let error: serde_json::Value = resp.json().await.expect("JSON body");
        match status {
            202 => accepted += 1,
            400 => {
                rejected += 1;
                assert_eq!(error["error"], "invalid_json", "{name}");
                assert!(
                    error["detail"].as_str().is_some_and(|d| !d.is_empty()),
                    "{name}"
                );
            }
            413 => assert_eq!(error["error"], "payload_too_large", "{name}"),
            other => panic!("{name}: unexpected {other}"),
        }
        assert_eq!(
            app.post_visit(FIXTURE, Some(KEY)).await.status(),
            202,
            "good request after {name}"
        );
        accepted += 1;
    }

    // A chunked body over the limit; deep nesting and a 10,000-question
    // checklist on the default 1 MiB limit.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = padded(LIMIT + 10)
        .chunks(4096)
        .map(|c| Ok(c.to_vec()))
        .collect();
    let resp = app
        .post_visit(
            reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)),
            Some(KEY),
        )
        .await;
    assert_eq!(resp.status(), 413, "chunked over the limit");
    assert_eq!(
        small.post_visit(huge_checklist(), Some(KEY)).await.status(),
        202,
        "10,000 questions"
    );
    let nested = small.post_visit("[".repeat(100_000), Some(KEY)).await;
    assert_eq!(nested.status(), 400, "100,000 nested [");
    assert_eq!(small.post_visit(FIXTURE, Some(KEY)).await.status(), 202);

    app.wait_spool_empty().await;
    small.wait_spool_empty().await;
    let prefix = &app.prefix;
    let deadline = std::time::Instant::now() + crate::helpers::ARRIVAL_TIMEOUT;
    while depth(&format!("{prefix}.visits.raw.debt_collection")).await < accepted {
        assert!(
            std::time::Instant::now() < deadline,
            "not every accepted visit arrived"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        depth(&format!("{prefix}.visits.raw.debt_collection")).await,
        accepted
    );
    assert_eq!(depth(&format!("{prefix}.visits.rejected")).await, rejected);
    assert_eq!(
        depth(&format!("{}.visits.debt_collection", small.prefix)).await,
        2
    );
    assert_eq!(depth(&format!("{}.visits.rejected", small.prefix)).await, 1);
}

/// A Finish Visit with one extra field nested `levels` deep, as objects
/// (`{"a":{"a":…1…}}`) or as arrays (`[[…1…]]`).
fn nested_visit(levels: usize, objects: bool) -> Vec<u8> {
    let (open, close) = if objects {
        (r#"{"a":"#, "}")
    } else {
        ("[", "]")
    };
    format!(
        r#"{{"productID":1,"visitID":"DEEP","deep":{}1{}}}"#,
        open.repeat(levels),
        close.repeat(levels)
    )
    .into_bytes()
}

#[tokio::test]
async fn bodies_nested_past_max_json_depth_are_refused_whatever_they_nest() {
    let app = spawn_app_with(&[("MAX_JSON_DEPTH", "16")]).await;
    app.wait_connected().await;
    let too_deep = [
        ("objects 50,000 deep", nested_visit(50_000, true)),
        ("arrays 50,000 deep", nested_visit(50_000, false)),
        ("objects one past the limit", nested_visit(16, true)),
    ];
    for (name, body) in &too_deep {
        let resp = app.post_visit(body.clone(), Some(KEY)).await;
        assert_eq!(resp.status(), 400, "{name}");
        let error: serde_json::Value = resp.json().await.expect("JSON body");
        assert_eq!(error["error"], "invalid_json", "{name}");
        let detail = error["detail"].as_str().unwrap_or_default();
        assert!(detail.contains("deeper than 16 levels"), "{name}: {detail}");
    }
    let at_the_limit = nested_visit(15, true);
    assert_eq!(
        app.post_visit(at_the_limit.clone(), Some(KEY))
            .await
            .status(),
        202,
        "the body's own object plus 15 levels is 16"
    );

    app.wait_spool_empty().await;
    let prefix = &app.prefix;
    let kept = crate::helpers::take(&format!("{prefix}.visits.rejected"), too_deep.len()).await;
    for (name, body) in &too_deep {
        assert!(
            kept.iter().any(|m| &m.body == body),
            "{name} kept on rejected"
        );
    }
    let raw = crate::helpers::take(&format!("{prefix}.visits.raw.debt_collection"), 1).await;
    assert_eq!(raw[0].body, at_the_limit, "only the body within the limit");
    crate::helpers::assert_stays_empty(&format!("{prefix}.visits.raw.debt_collection")).await;
    assert_eq!(depth(&format!("{prefix}.visits.debt_collection")).await, 1);
}
