//! The JSON schema (`schema/report.v1.json`) documents the JSON format exactly: the fixture
//! reports validate against it (every field known, every required field present, types and
//! enums right), and every property in it has a description.

mod common;

use common::validate;
use serde_json::Value;
use yunwei_reports::{Lang, fixture, integrity, json, schema};

fn schema() -> Value {
    serde_json::from_str(schema::REPORT_V1).expect("the schema is JSON")
}

#[test]
fn the_fixture_reports_validate() {
    let root = schema();
    for report in [
        fixture::scenario(Lang::ZhCn),
        fixture::scenario(Lang::En),
        fixture::scenario_insufficient(Lang::ZhCn),
        fixture::scenario_partial(Lang::En),
        fixture::scenario_final(Lang::ZhCn),
        fixture::scenario_final(Lang::En),
        fixture::scenario_disagreement(Lang::ZhCn),
        fixture::synthetic(20, 10, 30),
    ] {
        let signed = integrity::sign(report, &ed25519_dalek::SigningKey::from_bytes(&[1; 32]));
        let v: Value = serde_json::from_slice(&json::render(&signed)).unwrap();
        let mut errors = Vec::new();
        validate(&root, &root, &v, "$", &mut errors);
        assert!(errors.is_empty(), "{errors:#?}");
    }
}

#[test]
fn the_validator_catches_unknown_missing_and_mistyped_fields() {
    let root = schema();
    let signed = integrity::sign(
        fixture::scenario(Lang::ZhCn),
        &ed25519_dalek::SigningKey::from_bytes(&[1; 32]),
    );
    let mut v: Value = serde_json::from_slice(&json::render(&signed)).unwrap();
    v["report"]["cover"]["surprise"] = Value::Bool(true);
    v["report"]["summary"]
        .as_object_mut()
        .unwrap()
        .remove("grade");
    v["report"]["incidents"][0]["level"] = Value::String("P1".into());
    let mut errors = Vec::new();
    validate(&root, &root, &v, "$", &mut errors);
    assert_eq!(errors.len(), 3, "{errors:#?}");
}

#[test]
fn every_property_is_documented_and_strict() {
    let root = schema();
    let mut undocumented = Vec::new();
    for (name, def) in root["$defs"].as_object().unwrap() {
        assert_eq!(
            def["additionalProperties"],
            Value::Bool(false),
            "{name} is not strict"
        );
        for (k, p) in def["properties"].as_object().unwrap() {
            if p.get("description")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                undocumented.push(format!("{name}.{k}"));
            }
        }
    }
    assert!(undocumented.is_empty(), "{undocumented:?}");
}
