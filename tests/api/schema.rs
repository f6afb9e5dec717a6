//! The shipped JSON Schema, and a check every normalized message in the
//! suite goes through.

use serde_json::Value;
use std::sync::OnceLock;

fn validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        let text = include_str!("../../docs/schema/visit-finished.v1.json");
        let schema: Value = serde_json::from_str(text).expect("schema is JSON");
        jsonschema::validator_for(&schema).expect("schema compiles")
    })
}

/// Panics with every violation when `doc` does not match the schema.
pub fn assert_matches_schema(doc: &Value) {
    let errors: Vec<String> = validator()
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "normalized message violates the schema: {errors:#?}\n{doc:#}"
    );
}

#[test]
fn the_schema_rejects_documents_that_break_it() {
    let broken = serde_json::json!({"schemaVersion": 2});
    assert!(validator().iter_errors(&broken).next().is_some());
}
