//! The JSON schema (`schema/report.v1.json`) documents the JSON format exactly: the fixture
//! reports validate against it (every field known, every required field present, types and
//! enums right), and every property in it has a description.

use serde_json::Value;
use yunwei_reports::{Lang, fixture, integrity, json, schema};

fn schema() -> Value {
    serde_json::from_str(schema::REPORT_V1).expect("the schema is JSON")
}

fn resolve<'a>(root: &'a Value, s: &'a Value) -> &'a Value {
    match s.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.strip_prefix("#/$defs/").expect("local refs only");
            &root["$defs"][name]
        }
        None => s,
    }
}

fn type_ok(t: &str, v: &Value) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        other => panic!("unsupported type {other}"),
    }
}

/// A validator for the subset of JSON Schema the file uses; returns the errors with paths.
fn validate(root: &Value, s: &Value, v: &Value, path: &str, errors: &mut Vec<String>) {
    let s = resolve(root, s);
    if let Some(c) = s.get("const")
        && c != v
    {
        errors.push(format!("{path}: expected {c}, got {v}"));
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array)
        && !e.contains(v)
    {
        errors.push(format!("{path}: {v} not in {e:?}"));
    }
    if let Some(t) = s.get("type") {
        let ok = match t {
            Value::String(t) => type_ok(t, v),
            Value::Array(ts) => ts.iter().any(|t| type_ok(t.as_str().unwrap(), v)),
            _ => panic!("bad type"),
        };
        if !ok {
            errors.push(format!("{path}: {v} is not {t}"));
            return;
        }
    }
    if let (Some(props), Some(obj)) = (
        s.get("properties").and_then(Value::as_object),
        v.as_object(),
    ) {
        for req in s["required"].as_array().into_iter().flatten() {
            if !obj.contains_key(req.as_str().unwrap()) {
                errors.push(format!("{path}: missing {req}"));
            }
        }
        for (k, val) in obj {
            match props.get(k) {
                Some(ps) => validate(root, ps, val, &format!("{path}.{k}"), errors),
                None => errors.push(format!("{path}.{k}: not in the schema")),
            }
        }
    }
    if let (Some(items), Some(arr)) = (s.get("items"), v.as_array()) {
        for (i, item) in arr.iter().enumerate() {
            validate(root, items, item, &format!("{path}[{i}]"), errors);
        }
    }
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
