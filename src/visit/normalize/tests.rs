use super::*;
use crate::visit::{Receipt, raw};
use bytes::Bytes;
use proptest::prelude::*;
use serde_json::Map;
use serde_json::json;

const FIXTURE: &str = include_str!("../../../tests/fixtures/finish-visit-example.json");

fn envelope(body: &[u8]) -> Envelope {
    Envelope::new(
        Receipt {
            id: uuid::Uuid::now_v7(),
            received_at: "2020-03-17T21:00:00Z".parse().expect("timestamp"),
            key_label: "test".into(),
        },
        Bytes::copy_from_slice(body),
    )
}

fn doc(body: &Value) -> Value {
    let bytes = serde_json::to_vec(body).expect("serialize");
    let env = envelope(&bytes);
    serde_json::to_value(normalize(&env).expect("an object")).expect("serialize")
}

fn warned_fields(doc: &Value) -> Vec<String> {
    doc["warnings"]
        .as_array()
        .expect("warnings array")
        .iter()
        .map(|w| w["field"].as_str().expect("field").to_owned())
        .collect()
}

#[test]
fn the_vendor_example_normalizes_cleanly() {
    let env = envelope(FIXTURE.as_bytes());
    let d = serde_json::to_value(normalize(&env).expect("an object")).expect("serialize");

    assert_eq!(d["schemaVersion"], 1);
    assert_eq!(d["event"], "visit.finished");
    assert_eq!(d["messageId"], env.message_id());
    assert_eq!(d["receivedAt"], "2020-03-17T21:00:00Z");
    assert_eq!(
        d["product"],
        json!({"id": 1, "slug": "debt_collection", "name": "DebtCollection"})
    );
    assert_eq!(d["visitId"], "9A1190V5974");
    assert_eq!(d["externalId"], "110105499609");
    assert_eq!(d["visitType"], "Cobranza");
    assert_eq!(d["tag"], "Cliente ya pagó");
    assert_eq!(d["client"], "Q ROSALBA SALGADO TORRES");
    assert_eq!(d["cancellationReason"], Value::Null);
    assert_eq!(
        d["agent"],
        json!({"id": "21559", "name": "HERMES HECTOR ARREDONDO LUGO"})
    );
    assert_eq!(d["location"], json!({"lat": 37.421998, "lng": -122.084}));
    assert_eq!(d["interest"], 5);
    assert_eq!(d["rebound"], false);
    assert_eq!(d["finished"], true);
    assert_eq!(d["cancelled"], false);
    assert_eq!(d["timeZone"], "America/Los_Angeles");
    assert_eq!(d["startedAt"], "2020-03-17T13:56:49-07:00");
    assert_eq!(d["endedAt"], "2020-03-17T13:58:29-07:00");
    assert_eq!(d["startedAtLocal"], "2020-03-17T13:56:49");
    assert_eq!(d["endedAtLocal"], "2020-03-17T13:58:29");
    assert_eq!(d["durationSeconds"], 100);
    assert_eq!(d["phones"], json!([]));
    assert_eq!(d["emails"], json!([]));
    assert_eq!(d["extra"], json!({}));
    assert_eq!(d["warnings"], json!([]));

    let checklist = d["checklist"].as_array().expect("checklist");
    assert_eq!(checklist.len(), 12);
    assert_eq!(
        checklist[0],
        json!({
            "questionId": 11, "question": "¿Se realizó contacto?", "order": 1,
            "answers": [{"answerId": 11, "typeId": 8, "type": "switch", "name": null,
                         "order": 1, "value": false, "rawValue": "false"}]
        })
    );
    let hours = &checklist[9]["answers"];
    assert_eq!(hours[0]["type"], "time");
    assert_eq!(hours[0]["name"], "Hora inicio");
    assert_eq!(hours[1]["name"], "Hora fin");
    assert_eq!(checklist[11]["answers"][0]["value"], "Cliente ya pagó");
    assert_eq!(checklist[11]["answers"][0]["type"], "combo");
}

#[test]
fn the_page_spellings_are_read_too() {
    let d = doc(&json!({
        "visitId": 123, "productID": "2", "agentID": "A-7", "externalID": 99,
        "lat": 19.4326, "Ing": "-99.1332", "rebound": "true", "finished": 1, "cancelled": "0"
    }));
    assert_eq!(d["visitId"], "123");
    assert_eq!(d["product"]["slug"], "address_validation");
    assert_eq!(d["product"]["name"], "AddressValidation");
    assert_eq!(d["agent"]["id"], "A-7");
    assert_eq!(d["externalId"], "99");
    assert_eq!(d["location"], json!({"lat": 19.4326, "lng": -99.1332}));
    assert_eq!(d["rebound"], true);
    assert_eq!(d["finished"], true);
    assert_eq!(d["cancelled"], false);
    assert_eq!(d["extra"], json!({}));
    assert_eq!(d["warnings"], json!([]));
}

#[test]
fn when_both_spellings_are_sent_the_examples_wins_and_the_other_goes_to_extra() {
    let d = doc(&json!({
        "visitID": "A", "visitId": "B", "lat": "1", "lng": "2", "Ing": "3", "productID": 1
    }));
    assert_eq!(d["visitId"], "A");
    assert_eq!(d["location"]["lng"], 2);
    assert_eq!(d["extra"], json!({"visitId": "B", "Ing": "3"}));
    assert_eq!(warned_fields(&d), vec!["visitId", "Ing"]);
}

#[test]
fn unknown_fields_are_kept_verbatim_in_extra() {
    let d = doc(&json!({"productID": 1, "zeta": {"nested": [1, 2]}, "alpha": null}));
    assert_eq!(
        d["extra"],
        json!({"zeta": {"nested": [1, 2]}, "alpha": null})
    );
    assert_eq!(
        d["extra"]
            .as_object()
            .expect("object")
            .keys()
            .collect::<Vec<_>>(),
        vec!["zeta", "alpha"],
        "extra keeps the sender's key order"
    );
}

#[test]
fn products_outside_the_table_get_an_id_but_no_name() {
    let d = doc(&json!({"productID": 7}));
    assert_eq!(
        d["product"],
        json!({"id": 7, "slug": "product_7", "name": null})
    );
    assert_eq!(d["warnings"], json!([]));
}

#[test]
fn missing_or_bad_products_are_unknown_with_a_warning() {
    for body in [
        json!({}),
        json!({"productID": -3}),
        json!({"productID": "x"}),
    ] {
        let d = doc(&body);
        assert_eq!(
            d["product"],
            json!({"id": null, "slug": "unknown", "name": null})
        );
        assert_eq!(warned_fields(&d), vec!["productID"], "{body}");
    }
}

#[test]
fn unreadable_coordinates_give_a_null_location_and_a_warning() {
    let d = doc(&json!({"productID": 1, "lat": "north", "lng": "-122.084"}));
    assert_eq!(d["location"], Value::Null);
    assert_eq!(warned_fields(&d), vec!["lat"]);

    let d = doc(&json!({"productID": 1, "lat": "91", "Ing": "0"}));
    assert_eq!(d["location"], Value::Null);
    assert_eq!(warned_fields(&d), vec!["lat"]);

    let d = doc(&json!({"productID": 1, "lat": "0", "Ing": 181}));
    assert_eq!(warned_fields(&d), vec!["Ing"]);
}

#[test]
fn wrong_scalar_types_become_null_with_a_warning_per_field() {
    let d = doc(&json!({
        "productID": 1, "visitID": {"x": 1}, "rebound": "perhaps",
        "interest": "lots", "client": [1], "startDate": "yesterday"
    }));
    assert_eq!(d["visitId"], Value::Null);
    assert_eq!(d["rebound"], Value::Null);
    assert_eq!(d["interest"], Value::Null);
    assert_eq!(d["client"], Value::Null);
    assert_eq!(d["startedAt"], Value::Null);
    let mut fields = warned_fields(&d);
    fields.sort();
    assert_eq!(
        fields,
        vec!["client", "interest", "rebound", "startDate", "visitID"]
    );
}

#[test]
fn an_unknown_time_zone_keeps_local_times_and_the_duration() {
    let d = doc(&json!({
        "productID": 1, "timeZone": "Atlantis/Capital",
        "startDate": "2020-03-17 13:56:49", "endDate": "2020-03-17 14:00:00"
    }));
    assert_eq!(d["timeZone"], "Atlantis/Capital");
    assert_eq!(d["startedAt"], Value::Null);
    assert_eq!(d["endedAt"], Value::Null);
    assert_eq!(d["startedAtLocal"], "2020-03-17T13:56:49");
    assert_eq!(d["durationSeconds"], 191);
    assert_eq!(warned_fields(&d), vec!["timeZone"]);
}

fn answer_value(type_id: Value, value: Value) -> (Value, Value) {
    let d = doc(&json!({
        "productID": 1,
        "checklist": [{"questionID": 1, "order": 1,
                       "answers": [{"answerID": 1, "answerTypeID": type_id, "order": 1, "value": value}]}]
    }));
    let answer = d["checklist"][0]["answers"][0].clone();
    (answer, d["warnings"].clone())
}

#[test]
fn every_answer_type_is_typed_as_documented() {
    let cases = [
        (1, json!("hola"), "text", json!("hola")),
        (2, json!("line\nline"), "text-area", json!("line\nline")),
        (3, json!("42"), "numeric", json!(42)),
        (3, json!(4.5), "numeric", json!(4.5)),
        (4, json!("1234.50"), "decimal", json!("1234.50")),
        (4, json!("99,90"), "decimal", json!("99.90")),
        (5, json!("17/03/2020"), "datepicker", json!("2020-03-17")),
        (6, json!("Sí"), "checkbox", json!(true)),
        (6, json!("Opción B"), "checkbox", json!("Opción B")),
        (7, json!("A"), "radio", json!("A")),
        (8, json!("false"), "switch", json!(false)),
        (8, json!("NO"), "switch", json!(false)),
        (8, json!(1), "switch", json!(true)),
        (
            9,
            json!("Cliente ya pagó"),
            "combo",
            json!("Cliente ya pagó"),
        ),
        (10, json!("9:30"), "time", json!("09:30:00")),
        (
            77,
            json!({"any": "thing"}),
            "unknown",
            json!({"any": "thing"}),
        ),
    ];
    for (type_id, raw, kind, want) in cases {
        let (answer, warnings) = answer_value(json!(type_id), raw.clone());
        assert_eq!(answer["type"], kind, "type {type_id}");
        assert_eq!(answer["value"], want, "type {type_id} value {raw}");
        assert_eq!(answer["rawValue"], raw, "rawValue is untouched");
        assert_eq!(warnings, json!([]), "type {type_id} value {raw}");
    }
}

#[test]
fn decimals_sent_as_json_numbers_keep_their_trailing_zeros() {
    let body: Value = serde_json::from_str(
        r#"{"productID":1,"checklist":[{"answers":[{"answerTypeID":4,"value":1234.50}]}]}"#,
    )
    .expect("parse");
    let d = doc(&body);
    assert_eq!(d["checklist"][0]["answers"][0]["value"], "1234.50");
}

#[test]
fn unreadable_answer_values_become_null_with_a_warning() {
    for (type_id, raw) in [
        (3, json!("many")),
        (5, json!("someday")),
        (8, json!("maybe")),
        (10, json!(930)),
    ] {
        let (answer, warnings) = answer_value(json!(type_id), raw.clone());
        assert_eq!(answer["value"], Value::Null, "{type_id} {raw}");
        assert_eq!(answer["rawValue"], raw);
        assert_eq!(warnings[0]["field"], "checklist[0].answers[0].value");
    }
}

#[test]
fn null_answer_values_stay_null_without_warnings() {
    for type_id in 1..=10 {
        let (answer, warnings) = answer_value(json!(type_id), Value::Null);
        assert_eq!(answer["value"], Value::Null);
        assert_eq!(warnings, json!([]));
    }
}

#[test]
fn questions_and_answers_are_sorted_by_order_with_nulls_last() {
    let d = doc(&json!({
        "productID": 1,
        "checklist": [
            {"questionID": "Q-3", "order": null, "answers": []},
            {"questionID": "2", "order": 2, "answers": [
                {"answerID": "b", "order": 2}, {"answerID": "n"}, {"answerID": "a", "order": "1"}
            ]},
            {"questionID": 1, "order": 1, "answers": []},
            {"questionID": 4, "order": 1, "answers": []}
        ]
    }));
    let ids: Vec<Value> = d["checklist"]
        .as_array()
        .expect("array")
        .iter()
        .map(|q| q["questionId"].clone())
        .collect();
    assert_eq!(ids, vec![json!(1), json!(4), json!(2), json!("Q-3")]);
    let answers: Vec<Value> = d["checklist"][2]["answers"]
        .as_array()
        .expect("array")
        .iter()
        .map(|a| a["answerId"].clone())
        .collect();
    assert_eq!(answers, vec![json!("a"), json!("b"), json!("n")]);
}

#[test]
fn a_checklist_that_is_not_an_array_is_reported() {
    let d = doc(&json!({"productID": 1, "checklist": {"q": 1}}));
    assert_eq!(d["checklist"], json!([]));
    assert_eq!(warned_fields(&d), vec!["checklist"]);
}

#[test]
fn misshapen_questions_and_answers_are_skipped_with_a_warning_each() {
    let d = doc(&json!({"productID": 1, "checklist": [
        7,
        {"questionID": 1, "order": 1, "answers": "none"},
        {"questionID": 2, "order": 2, "answers": [
            [1],
            {"answerID": 5, "answerTypeID": 1, "order": 1, "value": "ok"}
        ]}
    ]}));
    let warnings: Vec<(&str, &str)> = d["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .map(|w| {
            (
                w["field"].as_str().unwrap_or(""),
                w["message"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        warnings,
        vec![
            ("checklist[0]", "expected an object, got a number"),
            ("checklist[1].answers", "expected an array, got a string"),
            (
                "checklist[2].answers[0]",
                "expected an object, got an array"
            ),
        ]
    );
    let questions = d["checklist"].as_array().expect("checklist");
    assert_eq!(questions.len(), 2);
    assert_eq!(questions[0]["answers"], json!([]));
    assert_eq!(questions[1]["answers"][0]["value"], "ok");
}

#[test]
fn every_warning_has_a_bounded_metric_field() {
    let body = json!({
        "visitID": [], "visitId": 1, "productID": "x", "agentID": {}, "externalID": true,
        "lat": "a", "lng": "b", "interest": "c", "rebound": "d", "finished": "e", "cancelled": "f",
        "timeZone": "Nowhere/Land", "startDate": "g", "endDate": "h", "checklist": 5,
        "client": [], "comment": {}, "tagName": [], "cancellationReason": {}, "visitType": [], "agent": []
    });
    let bytes = serde_json::to_vec(&body).expect("serialize");
    let env = envelope(&bytes);
    let visit = normalize(&env).expect("an object");
    assert!(visit.warnings.len() >= 19, "{:?}", visit.warnings);
    for w in &visit.warnings {
        assert!(WARNING_FIELDS.contains(&w.metric_field), "{w:?}");
    }
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[ -~áéíóúñ¿]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z]{1,10}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const VENDOR_KEYS: [&str; 26] = [
    "visitID",
    "visitId",
    "productID",
    "agentID",
    "externalID",
    "visitType",
    "lat",
    "lng",
    "Ing",
    "interest",
    "rebound",
    "tagName",
    "finished",
    "cancelled",
    "cancellationReason",
    "client",
    "agent",
    "startDate",
    "endDate",
    "comment",
    "timeZone",
    "checklist",
    "phones",
    "emails",
    "order",
    "value",
];

fn arb_visit() -> impl Strategy<Value = Map<String, Value>> {
    let key = prop_oneof![
        prop::sample::select(VENDOR_KEYS.to_vec()).prop_map(str::to_owned),
        "[a-zA-Z]{1,10}",
    ];
    let answer = prop::collection::btree_map(
        prop::sample::select(vec![
            "answerID",
            "answerTypeID",
            "answerName",
            "order",
            "value",
        ]),
        prop_oneof![arb_json(), (0i64..12).prop_map(Value::from)],
        0..5,
    )
    .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()));
    let question = prop::collection::vec(answer, 0..4)
        .prop_map(|answers| json!({"questionID": 1, "answers": answers}));
    let checklist = prop::collection::vec(question, 0..4).prop_map(Value::Array);
    (
        prop::collection::btree_map(key, arb_json(), 0..16),
        prop::option::of(checklist),
    )
        .prop_map(|(fields, checklist)| {
            let mut object: Map<String, Value> = fields.into_iter().collect();
            if let Some(c) = checklist {
                object.insert("checklist".into(), c);
            }
            object
        })
}

fn schema() -> &'static jsonschema::Validator {
    static SCHEMA: std::sync::OnceLock<jsonschema::Validator> = std::sync::OnceLock::new();
    SCHEMA.get_or_init(|| {
        let text = include_str!("../../../docs/schema/visit-finished.v1.json");
        let schema: Value = serde_json::from_str(text).expect("schema is JSON");
        jsonschema::validator_for(&schema).expect("schema compiles")
    })
}

#[test]
fn the_vendor_example_matches_the_shipped_schema() {
    let env = envelope(FIXTURE.as_bytes());
    let d = serde_json::to_value(normalize(&env).expect("an object")).expect("serialize");
    let errors: Vec<String> = schema().iter_errors(&d).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}");
}

/// The direct writer against serde's serialization of the same document.
fn written_as_serde_would(visit: &NormalizedVisit<'_>) -> (String, String) {
    let mut direct = Vec::new();
    visit.write_json(&mut direct).expect("write");
    let serde = serde_json::to_string(visit).expect("serialize");
    (String::from_utf8(direct).expect("UTF-8"), serde)
}

#[test]
fn the_direct_writer_gives_serdes_bytes_for_the_example() {
    let env = envelope(FIXTURE.as_bytes());
    let visit = normalize(&env).expect("an object");
    let (direct, serde) = written_as_serde_would(&visit);
    assert_eq!(direct, serde);
    let empty = envelope(br#"{"checklist": [{"answers": []}], "x\"y": "\u0001"}"#);
    let visit = normalize(&empty).expect("an object");
    let (direct, serde) = written_as_serde_would(&visit);
    assert_eq!(direct, serde);
}

proptest! {
    #[test]
    fn the_direct_writer_gives_serdes_bytes(object in arb_visit()) {
        let bytes = serde_json::to_vec(&Value::Object(object)).expect("serialize");
        let env = envelope(&bytes);
        let visit = normalize(&env).expect("an object");
        let (direct, serde) = written_as_serde_would(&visit);
        prop_assert_eq!(direct, serde);
    }

    #[test]
    fn any_object_normalizes_to_a_document_the_schema_accepts(object in arb_visit()) {
        let body = Value::Object(object);
        let bytes = serde_json::to_vec(&body).expect("serialize");
        let env = envelope(&bytes);
        let visit = normalize(&env).expect("an object");
        let doc = serde_json::to_value(&visit).expect("document serializes");
        let errors: Vec<String> = schema().iter_errors(&doc).map(|e| format!("{e} at {}", e.instance_path())).collect();
        prop_assert!(errors.is_empty(), "{:?}\n{}", errors, doc);
        for w in &visit.warnings {
            prop_assert!(WARNING_FIELDS.contains(&w.metric_field));
        }
    }

    #[test]
    fn unknown_fields_survive_in_extra_and_answers_keep_raw_values(object in arb_visit()) {
        let body = Value::Object(object.clone());
        let bytes = serde_json::to_vec(&body).expect("serialize");
        let env = envelope(&bytes);
        let visit = normalize(&env).expect("an object");
        for (key, value) in &object {
            let read_directly = KNOWN_KEYS.iter().any(|(k, _)| *k == key)
                || ALTERNATE_KEYS.iter().any(|(alt, canonical)| *alt == key && !object.contains_key(*canonical));
            if !read_directly {
                let kept = visit.extra.get(key).map(raw::value);
                prop_assert_eq!(kept.as_ref(), Some(value));
            }
        }
        if let Some(Value::Array(questions)) = object.get("checklist") {
            let sent: usize = questions.iter().map(|q| q["answers"].as_array().map_or(0, Vec::len)).sum();
            let kept: Vec<Value> = visit
                .checklist
                .iter()
                .flat_map(|q| &q.answers)
                .map(|a| a.raw_value.map(raw::value).unwrap_or(Value::Null))
                .collect();
            prop_assert_eq!(kept.len(), sent);
            for q in questions {
                for a in q["answers"].as_array().into_iter().flatten() {
                    let sent = a.get("value").unwrap_or(&Value::Null);
                    prop_assert!(kept.contains(sent));
                }
            }
        }
    }
}

#[test]
fn extra_and_raw_values_carry_the_senders_bytes() {
    let body = br#"{"productID":1,"score":1.50,"note":"caf\u00e9","checklist":[{"answers":[{"answerTypeID":1,"value":"caf\u00e9"},{"answerTypeID":3,"value":2.50}]}]}"#;
    let env = envelope(body);
    let document = serde_json::to_string(&normalize(&env).expect("an object")).expect("serialize");
    assert!(
        document.contains(r#""extra":{"score":1.50,"note":"caf\u00e9"}"#),
        "{document}"
    );
    assert!(document.contains(r#""rawValue":"caf\u00e9""#), "{document}");
    assert!(
        document.contains(r#""value":2.50,"rawValue":2.50"#),
        "{document}"
    );
}
