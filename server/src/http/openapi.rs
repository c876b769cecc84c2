//! The OpenAPI 3 document served at `/api/v1/openapi.json`, built from the access
//! [`super::policy::POLICY`] table so every route (and who may call it) is in it.

use serde_json::{Map, Value, json};

use super::{
    ErrorKind,
    policy::{Access, POLICY},
};

/// What the document says of one operation beyond the policy table: its query parameters,
/// its body, its success answer and the failures it answers besides the ones every operation
/// of its access class has. Kept beside the handlers' query and body structs by hand; the
/// API fuzzing test (`tests/tests/api_fuzz.rs`) sends what this describes and fails on an
/// answer the document does not list.
struct Shape {
    query: Vec<Value>,
    /// The JSON schema of a required `application/json` body (or another content type).
    body: Option<(&'static str, Value)>,
    /// Success status and content types (empty: no content check).
    ok: (&'static str, &'static [&'static str]),
    /// Further failure statuses (answered with the `Error` shape).
    errors: &'static [&'static str],
    /// A route of Prometheus's query API: its own failures come in Prometheus's shape
    /// (`PromError`), those of the access check in the `Error` shape.
    prom: bool,
}

const JSON: &[&str] = &["application/json"];

fn q(name: &str, schema: Value, description: &str) -> Value {
    json!({ "name": name, "in": "query", "required": false, "schema": schema, "description": description })
}

fn int() -> Value {
    json!({ "type": "integer", "format": "int64" })
}

fn string() -> Value {
    json!({ "type": "string" })
}

/// An object with exactly `props` (the handlers reject unknown fields), `required` among them.
fn object(props: Value, required: &[&str]) -> Value {
    let mut o = json!({ "type": "object", "properties": props, "additionalProperties": false });
    if !required.is_empty() {
        o["required"] = json!(required);
    }
    o
}

/// The fields every acting call takes: who acts (ignored for a logged-in caller).
fn by() -> Value {
    json!({ "type": "string", "description": "the acting person; ignored when the caller is logged in (the caller acts)" })
}

fn shape(method: &str, path: &str) -> Shape {
    let mut s = Shape {
        query: vec![],
        body: None,
        ok: ("200", JSON),
        errors: &[],
        prom: false,
    };
    let prom_params = |names: &[(&str, &str)]| -> Vec<Value> {
        names
            .iter()
            .map(|(n, d)| {
                if n.ends_with("[]") {
                    json!({ "name": n, "in": "query", "required": false, "schema": { "type": "array", "items": string() }, "style": "form", "explode": true, "description": d })
                } else {
                    q(n, string(), d)
                }
            })
            .collect()
    };
    let prom_form = |names: &[(&str, &str)]| -> Value {
        let props: Map<String, Value> = names
            .iter()
            .map(|(n, d)| {
                // A form field repeated or not encodes the same: any value is valid.
                let schema = if n.ends_with("[]") {
                    json!({ "description": d })
                } else {
                    json!({ "type": "string", "description": d })
                };
                (n.to_string(), schema)
            })
            .collect();
        json!({ "type": "object", "properties": props })
    };
    const TIME: &str = "Unix seconds (fractions allowed) or RFC 3339";
    let instant: &[(&str, &str)] = &[
        ("query", "PromQL expression"),
        ("time", TIME),
        ("timeout", "evaluation time limit, at most 30s"),
    ];
    let prom_range: &[(&str, &str)] = &[
        ("query", "PromQL expression"),
        ("start", TIME),
        ("end", TIME),
        (
            "step",
            "resolution: float seconds or a duration such as 15s",
        ),
        ("timeout", "evaluation time limit, at most 30s"),
    ];
    let select: &[(&str, &str)] = &[
        ("match[]", "series selector (repeatable)"),
        ("start", TIME),
        ("end", TIME),
    ];
    let range = || {
        vec![
            q("from", int(), "start, Unix milliseconds"),
            q("to", int(), "end, Unix milliseconds"),
        ]
    };
    let review = || {
        object(
            json!({ "by": by(), "comment": { "type": "string", "nullable": true } }),
            &[],
        )
    };
    match (method, path) {
        ("GET", "/api/v1/contracts/{id}/status") => s.errors = &["404", "503"],
        ("GET", "/api/v1/contracts/{id}/assessment") => {
            s.query = vec![q(
                "period",
                string(),
                "2026-10, 2026-Q3, 2026 or 2026-10-01..2026-10-15 (default: the current month); at most 366 days",
            )];
            s.errors = &["404", "503"];
        }
        ("GET", "/api/v1/contracts/{id}/inspections")
        | ("GET", "/api/v1/contracts/{id}/events") => {
            s.query = range();
            s.errors = &["404"];
        }
        ("POST", "/api/v1/contracts/{id}/events") => {
            s.body = Some((
                "application/json",
                object(
                    json!({
                        "category": string(),
                        "at_ms": { "type": "integer", "format": "int64", "nullable": true },
                        "evidence": string(),
                    }),
                    &["category", "evidence"],
                ),
            ));
            s.errors = &["404"];
        }
        ("GET", "/api/v1/contracts/{id}/membership") => s.errors = &["404"],
        ("POST", "/api/v1/contracts/{id}/membership") => {
            s.body = Some((
                "application/json",
                object(
                    json!({
                        "action": { "type": "string", "enum": ["assign", "unassign"] },
                        "system": string(),
                        "kind": { "type": "string", "enum": ["host", "probe"] },
                        "subject": string(),
                        "effective_from_ms": { "type": "integer", "format": "int64", "nullable": true },
                        "reason": string(),
                    }),
                    &["action", "system", "kind", "subject", "reason"],
                ),
            ));
            s.errors = &["404", "409"];
        }
        ("GET", "/api/v1/reports") => {
            s.query = vec![q("contract", string(), "only this contract's reports")];
        }
        ("POST", "/api/v1/reports") => {
            s.body = Some((
                "application/json",
                object(
                    json!({
                        "contract": string(),
                        "period": string(),
                        "formats": { "type": "array", "nullable": true, "items": { "type": "string", "enum": ["html", "pdf", "xlsx", "json"] } },
                        "lang": { "type": "string", "nullable": true },
                    }),
                    &["contract", "period"],
                ),
            ));
            s.ok = ("201", JSON);
            s.errors = &["404", "409", "422", "503"];
        }
        ("GET", "/api/v1/reports/{id}/{format}") => {
            s.ok = (
                "200",
                &[
                    "text/html",
                    "application/pdf",
                    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                    "application/json",
                    "application/gzip",
                ],
            );
            s.errors = &["404"];
        }
        ("GET", "/api/v1/appeals") => {
            s.query = vec![
                q("contract", string(), "only this contract's appeals"),
                q(
                    "period",
                    string(),
                    "only this period's appeals (2026-10, ...)",
                ),
            ];
            s.errors = &["404"];
        }
        ("POST", "/api/v1/appeals") => {
            let attachment = object(
                json!({
                    "name": string(),
                    "content_type": string(),
                    "data": { "type": "string", "description": "the file, base64 (standard alphabet, padded)" },
                }),
                &["name", "content_type", "data"],
            );
            s.body = Some((
                "application/json",
                object(
                    json!({
                        "report_id": int(),
                        "target": { "type": "object", "description": "what is appealed: {kind: deduction, item, subject} | {kind: outage, system, start_ms} | {kind: incident_clock, incident, clock} | {kind: inspection, inspection, scheduled_ms}" },
                        "reason": string(),
                        "attachments": { "type": "array", "items": attachment },
                    }),
                    &["report_id", "target", "reason"],
                ),
            ));
            s.ok = ("201", JSON);
            // 409: after the appeal window (the deadline named) or not a deduction of the draft.
            s.errors = &["404", "409", "503"];
        }
        ("POST", "/api/v1/appeals/{id}/decision") => {
            s.body = Some((
                "application/json",
                object(
                    json!({
                        "outcome": { "type": "string", "enum": ["upheld", "overturned", "adjusted"] },
                        "reason": string(),
                        "approved_points": { "type": "number", "nullable": true },
                        "approved_minutes": { "type": "number", "nullable": true },
                    }),
                    &["outcome", "reason"],
                ),
            ));
            s.errors = &["404", "409", "503"];
        }
        ("POST", "/api/v1/reports/{id}/sign-off") => s.errors = &["404", "409", "503"],
        ("GET", "/api/v1/appeals/{id}/attachments/{name}") => {
            // The content type the appellant gave the file.
            s.ok = ("200", &["*/*"]);
            s.errors = &["404"];
        }
        ("GET", "/api/v1/incidents") => {
            s.query = vec![q(
                "open",
                json!({ "type": "boolean" }),
                "only incidents not restored",
            )];
        }
        ("POST", "/api/v1/incidents") => {
            s.body = Some((
                "application/json",
                object(
                    json!({
                        "title": string(),
                        "level": int(),
                        "labels": { "type": "object", "additionalProperties": { "type": "string" } },
                        "detected_ms": { "type": "integer", "format": "int64", "nullable": true },
                        "by": by(),
                        "note": { "type": "string", "nullable": true },
                    }),
                    &["title", "level"],
                ),
            ));
        }
        ("GET", "/api/v1/incidents/{id}") => s.errors = &["404"],
        ("POST", "/api/v1/incidents/{id}/{action}") => {
            s.body = Some((
                "application/json",
                object(
                    json!({
                        "by": by(),
                        "at_ms": { "type": "integer", "format": "int64", "nullable": true },
                        "text": { "type": "string", "nullable": true },
                        "level": { "type": "integer", "format": "int64", "nullable": true },
                        "reason": { "type": "string", "nullable": true },
                    }),
                    &[],
                ),
            ));
            s.errors = &["404", "409"];
        }
        ("GET", "/api/v1/incident-requests") => {
            s.query = vec![q("status", string(), "pending, approved or rejected")];
        }
        ("POST", "/api/v1/incident-requests/{id}/{decision}")
        | ("POST", "/api/v1/exclusions/{id}/{decision}") => {
            s.body = Some(("application/json", review()));
            s.errors = &["404", "409"];
        }
        ("GET", "/ack/{token}") | ("POST", "/ack/{token}") => {
            // A page for the person who clicked the mail's link, not an API answer.
            s.ok = ("200", &["text/html"]);
            // 202: a follower replica's acknowledgement the leader took but has not confirmed.
            s.errors = &["202h", "404h", "409h", "410h", "503h"];
        }
        ("POST", "/api/v1/notify/groups/{id}/{action}") => {
            s.body = Some(("application/json", object(json!({ "by": by() }), &[])));
            s.errors = &["404", "409", "503"];
        }
        ("GET", "/api/v1/notify/groups/{id}/acks") => s.errors = &["404"],
        ("GET", "/api/v1/notify/log") => {
            s.query = vec![
                q("group", string(), "only this alert group's notifications"),
                q(
                    "limit",
                    json!({ "type": "integer", "minimum": 1, "maximum": 10000 }),
                    "at most this many, newest first (default 500)",
                ),
            ];
        }
        ("POST", "/api/v1/silences") => {
            s.body = Some((
                "application/json",
                object(
                    json!({
                        "matchers": { "type": "array", "items": string() },
                        "starts_ms": { "type": "integer", "format": "int64", "nullable": true },
                        "ends_ms": int(),
                        "by": by(),
                        "comment": string(),
                    }),
                    &["matchers", "ends_ms", "comment"],
                ),
            ));
        }
        ("POST", "/api/v1/silences/{id}/expire") => s.errors = &["404", "409"],
        ("POST", "/api/v1/exclusions") => {
            s.body = Some((
                "application/json",
                object(
                    json!({
                        "kind": string(),
                        "matchers": { "type": "array", "items": string() },
                        "from_ms": int(),
                        "to_ms": int(),
                        "recurrence": { "type": "object", "nullable": true },
                        "reason": string(),
                        "by": by(),
                    }),
                    &["kind", "matchers", "from_ms", "to_ms", "reason"],
                ),
            ));
        }
        ("POST", "/api/v1/ingest") => {
            s.body = Some((
                yunwei_proto::CONTENT_TYPE,
                json!({ "type": "string", "format": "binary", "description": "a gzip-compressed JSON batch (Content-Encoding: gzip)" }),
            ));
            s.errors = &["409", "415", "503"];
        }
        ("POST", "/api/v1/write") => {
            s.body = Some((
                "application/x-protobuf",
                json!({ "type": "string", "format": "binary", "description": "a snappy-compressed (block format) protobuf prometheus.WriteRequest (Content-Encoding: snappy; remote write 1.0)" }),
            ));
            s.ok = ("204", &[]);
            s.errors = &["415", "429", "503"];
        }
        ("POST", "/api/v1/remote-write/senders") => {
            s.body = Some((
                "application/json",
                object(json!({ "name": string() }), &["name"]),
            ));
            s.ok = ("201", JSON);
            s.errors = &["409"];
        }
        ("POST", "/api/v1/remote-write/senders/{name}/revoke") => s.errors = &["404"],
        ("POST", "/api/v1/enroll") => {
            let facts = object(
                json!({
                    "hostname": string(), "os": string(), "kernel": string(), "arch": string(),
                    "agent_version": string(),
                    "labels": { "type": "object", "additionalProperties": { "type": "string" } },
                }),
                &["hostname", "os", "kernel", "arch", "agent_version"],
            );
            s.body = Some((
                "application/json",
                object(
                    json!({ "secret": string(), "host": facts }),
                    &["secret", "host"],
                ),
            ));
            s.errors = &["503"];
        }
        ("GET", "/api/v1/hosts/{id}") => {
            s.query = vec![
                q("from", string(), "start: Unix seconds or RFC 3339"),
                q("to", string(), "end: Unix seconds or RFC 3339"),
            ];
            s.errors = &["404"];
        }
        ("GET", "/api/v1/query") | ("POST", "/api/v1/query") => {
            s.prom = true;
            s.errors = &["422", "503"];
            if method == "GET" {
                s.query = prom_params(instant);
            } else {
                s.body = Some(("application/x-www-form-urlencoded", prom_form(instant)));
            }
        }
        ("GET", "/api/v1/query_range") | ("POST", "/api/v1/query_range") => {
            s.prom = true;
            s.errors = &["422", "503"];
            if method == "GET" {
                s.query = prom_params(prom_range);
            } else {
                s.body = Some(("application/x-www-form-urlencoded", prom_form(prom_range)));
            }
        }
        ("GET", "/api/v1/series" | "/api/v1/labels")
        | ("POST", "/api/v1/series" | "/api/v1/labels") => {
            s.prom = true;
            s.errors = &["422"];
            if method == "GET" {
                s.query = prom_params(select);
            } else {
                s.body = Some(("application/x-www-form-urlencoded", prom_form(select)));
            }
        }
        ("GET", "/api/v1/label/{name}/values") => {
            s.prom = true;
            s.errors = &["422"];
            s.query = prom_params(select);
        }
        ("GET", "/api/v1/metadata") => {
            s.prom = true;
            s.query = prom_params(&[
                ("metric", "one metric name"),
                ("limit", "most metrics to return"),
            ]);
        }
        ("GET", "/api/v1/status/buildinfo") => s.prom = true,
        ("GET", "/api/v1/yunwei/series") => {
            s.query = vec![
                q("match", string(), "a PromQL series selector"),
                q("from", string(), "start: Unix seconds or RFC 3339"),
                q("to", string(), "end: Unix seconds or RFC 3339"),
                q(
                    "step",
                    string(),
                    "resolution, a Prometheus duration such as 1m",
                ),
                q(
                    "source",
                    json!({ "type": "string", "enum": ["auto", "raw", "rollup"] }),
                    "raw points, hourly rollups, or chosen by the range (default)",
                ),
            ];
        }
        ("GET", "/metrics") => s.ok = ("200", &["text/plain"]),
        ("GET", "/healthz") => s.ok = ("200", &["text/plain"]),
        ("GET", "/readyz") => {
            s.ok = ("200", &["text/plain"]);
            s.errors = &["503"];
        }
        ("POST", "/api/v1/auth/login") => {
            s.body = Some((
                "application/json",
                object(
                    json!({ "user": string(), "password": string() }),
                    &["user", "password"],
                ),
            ));
            // 401: a wrong user name or password, or a locked account.
            s.errors = &["401", "429"];
        }
        ("POST", "/api/v1/users") => {
            s.body = Some((
                "application/json",
                object(
                    json!({
                        "name": string(),
                        "role": { "type": "string", "enum": crate::auth::Role::ALL.map(crate::auth::Role::as_str).to_vec() },
                        "password": string(),
                    }),
                    &["name", "role", "password"],
                ),
            ));
            s.ok = ("201", JSON);
            s.errors = &["409"];
        }
        ("POST", "/api/v1/users/{name}/password") => {
            s.body = Some((
                "application/json",
                object(json!({ "password": string() }), &["password"]),
            ));
            s.errors = &["404"];
        }
        ("POST", "/api/v1/users/{name}/disable")
        | ("POST", "/api/v1/users/{name}/enable")
        | ("POST", "/api/v1/users/{name}/unlock") => s.errors = &["404"],
        ("GET", "/api/v1/audit") => {
            s.query = vec![
                q("before", int(), "rows before this sequence number"),
                q("limit", int(), "at most this many rows"),
            ];
        }
        ("GET", "/") => s.ok = ("200", &["text/html"]),
        ("GET", "/assets/{file}") => {
            s.ok = ("200", &["text/javascript", "text/css"]);
            s.errors = &["404"];
        }
        _ => {}
    }
    s
}

/// A failure answer in the `Error` shape (`NNN`), or as a page for a person (`NNNh`).
fn error_response(code: &str) -> (String, Value) {
    if let Some(code) = code.strip_suffix('h') {
        return (
            code.to_string(),
            json!({ "description": "a page saying why", "content": { "text/html": { "schema": { "type": "string" } } } }),
        );
    }
    let description = match code {
        "400" => "invalid request; the body names the field",
        "401" => "no or invalid credentials",
        "403" => "the caller's role may not do this",
        "404" => "no such resource",
        "408" => "the body was not sent in time",
        "409" => "conflicts with the current state",
        "413" => "the body is too large",
        "415" => "wrong content type or encoding",
        "422" => {
            "cannot be produced: the report format here, or the query (Prometheus API: execution error)"
        }
        "429" => "too many at once; retry after the Retry-After header",
        "503" => "unavailable for now (busy, over its time limit, or shutting down)",
        _ => "failure",
    };
    (
        code.to_string(),
        json!({ "description": description, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }),
    )
}

/// The whole document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for r in POLICY {
        let shape = shape(r.method, r.path);
        let mut params: Vec<Value> = r
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        params.extend(shape.query.iter().cloned());
        let (security, roles) = match r.access {
            Access::Public => (json!([]), "anyone".to_string()),
            Access::Agent => (json!([{ "agentToken": [] }]), "agents".to_string()),
            a => (
                json!([{ "sessionCookie": [] }, { "apiToken": [] }]),
                a.roles()
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
        };
        let mut responses = Map::new();
        let (ok, types) = shape.ok;
        let content: Map<String, Value> = types
            .iter()
            .map(|t| (t.to_string(), json!({ "schema": {} })))
            .collect();
        responses.insert(
            ok.to_string(),
            json!({ "description": "success", "content": content }),
        );
        // Every operation: a request the server cannot take (400), a body too large or not
        // sent in time (413, 408, applied before any handler).
        let mut errors: Vec<&str> = vec!["400", "408", "413"];
        if !matches!(r.access, Access::Public) {
            errors.extend(["401", "403"]);
        }
        if shape
            .body
            .as_ref()
            .is_some_and(|(t, _)| *t == "application/json")
        {
            errors.push("415");
        }
        errors.extend(shape.errors);
        for code in errors {
            let (code, mut response) = error_response(code);
            if shape.prom {
                response["content"]["application/json"]["schema"] = json!({ "oneOf": [
                    { "$ref": "#/components/schemas/Error" },
                    { "$ref": "#/components/schemas/PromError" },
                ] });
            }
            responses.insert(code, response);
        }
        let mut op = json!({
            "summary": r.summary,
            "description": format!("Allowed for: {roles}."),
            "x-yunwei-access": match r.access {
                Access::Perm(p) => p.as_str(),
                Access::Public => "public",
                Access::Agent => "agent",
                Access::Authenticated => "authenticated",
            },
            "parameters": params,
            "security": security,
            "responses": responses,
        });
        if let Some((content_type, schema)) = shape.body {
            // Prometheus's API takes its parameters from the query string as well: a form
            // body is optional there.
            op["requestBody"] = json!({ "required": !shape.prom, "content": { content_type: { "schema": schema } } });
        }
        paths
            .entry(r.path.to_string())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("path items are objects")
            .insert(r.method.to_lowercase(), op);
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "yunwei API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "O&M monitoring and SLA assessment. State-changing calls with the session cookie must send the X-CSRF-Token header from /api/v1/auth/me or the login response.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "sessionCookie": { "type": "apiKey", "in": "cookie", "name": super::authz::COOKIE },
                "apiToken": { "type": "http", "scheme": "bearer" },
                "agentToken": { "type": "http", "scheme": "bearer", "description": "the agent token from /api/v1/enroll" },
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": {
                        "error": {
                            "type": "object",
                            "properties": {
                                "kind": { "type": "string", "enum": ErrorKind::ALL.map(ErrorKind::as_str).to_vec() },
                                "field": { "type": "string", "nullable": true },
                                "message": { "type": "string" },
                            },
                            "required": ["kind", "message"],
                        }
                    },
                    "required": ["error"],
                },
                "PromError": {
                    "type": "object",
                    "description": "a failure of Prometheus's query API, in Prometheus's shape",
                    "properties": {
                        "status": { "type": "string", "enum": ["error"] },
                        "errorType": { "type": "string", "enum": ["bad_data", "execution", "timeout", "internal"] },
                        "error": { "type": "string" },
                    },
                    "required": ["status", "errorType", "error"],
                }
            },
        },
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_policy_route_is_documented_with_its_method() {
        let doc = super::document();
        for r in crate::http::policy::POLICY {
            assert!(
                doc["paths"][r.path][r.method.to_lowercase()].is_object(),
                "{} {} missing",
                r.method,
                r.path
            );
        }
    }

    #[test]
    fn the_error_schema_lists_every_kind() {
        let doc = super::document();
        let kinds = &doc["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["kind"]
            ["enum"];
        let listed: Vec<&str> = kinds
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|k| k.as_str())
            .collect();
        let all: Vec<&str> = super::ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(listed, all);
    }
}
