//! The OpenAPI 3 document served at `/api/v1/openapi.json`, built from the access
//! [`super::policy::POLICY`] table so every route (and who may call it) is in it.

use serde_json::{Map, Value, json};

use super::{
    ErrorKind,
    policy::{Access, POLICY},
};

/// The whole document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for r in POLICY {
        let params: Vec<Value> = r
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
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
        let mut responses = json!({
            "200": { "description": "success" },
            "400": { "description": "invalid request; the body names the field", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
        });
        if !matches!(r.access, Access::Public) {
            responses["401"] = json!({ "description": "no or invalid credentials" });
            responses["403"] = json!({ "description": "the caller's role may not do this" });
        }
        let op = json!({
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
