use std::collections::BTreeSet;

use expect_test::expect_file;
use serde_json::{Value, json};

use super::*;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// (path, method) -> operation.
fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("a path item") {
            assert!(METHODS.contains(&method.as_str()), "{method} {path}");
            out.push((path.clone(), method.clone(), op));
        }
    }
    out
}

fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => doc
            .pointer(r.strip_prefix('#').expect("a local $ref"))
            .unwrap_or_else(|| panic!("{r} does not resolve")),
        None => v,
    }
}

#[test]
fn the_document_is_the_golden_file() {
    let mut text = serde_json::to_string_pretty(&document()).expect("JSON");
    text.push('\n');
    expect_file!["../../openapi.json"].assert_eq(&text);
}

#[test]
fn every_ref_resolves_and_every_component_is_used() {
    let doc = document();
    fn walk(doc: &Value, v: &Value, refs: &mut BTreeSet<String>) {
        match v {
            Value::Object(m) => {
                if let Some(r) = m.get("$ref") {
                    let r = r.as_str().expect("a string $ref");
                    assert!(
                        r.strip_prefix('#').and_then(|p| doc.pointer(p)).is_some(),
                        "{r} does not resolve"
                    );
                    refs.insert(r.to_owned());
                }
                m.values().for_each(|v| walk(doc, v, refs));
            }
            Value::Array(a) => a.iter().for_each(|v| walk(doc, v, refs)),
            _ => {}
        }
    }
    let mut refs = BTreeSet::new();
    walk(&doc, &doc, &mut refs);
    for name in doc["components"]["responses"]
        .as_object()
        .expect("responses")
        .keys()
    {
        let r = format!("#/components/responses/{name}");
        assert!(refs.contains(&r), "{r} is never used");
    }
    // Every route of the router is an operation of the document.
    assert!(operations(&doc).len() >= 38);
}

#[test]
fn every_operation_is_complete() {
    let doc = document();
    let mut ids = BTreeSet::new();
    for (path, method, op) in operations(&doc) {
        let id = op["operationId"].as_str().expect("an operationId");
        assert!(ids.insert(id.to_owned()), "operationId {id} twice");
        assert!(
            !op["summary"].as_str().unwrap_or_default().is_empty(),
            "{id}"
        );
        assert_eq!(op["tags"].as_array().map(Vec::len), Some(1), "{id}");
        let responses = op["responses"].as_object().expect("responses");
        assert!(responses.contains_key("200"), "{id}");
        for (status, response) in responses {
            if status != "200" {
                assert_eq!(
                    resolve(&doc, response)["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorDocument",
                    "{id} {status}"
                );
            }
        }
        for status in ["401", "403", "500"] {
            assert!(responses.contains_key(status), "{id} {status}");
        }
        // Path parameters: declared, required, and only those.
        let in_path: BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        let declared: BTreeSet<&str> = op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "path")
            .inspect(|p| assert_eq!(p["required"], true, "{id}"))
            .map(|p| p["name"].as_str().expect("a name"))
            .collect();
        assert_eq!(in_path, declared, "{id}");
        if method == "get" {
            assert!(op.get("requestBody").is_none(), "{id}");
            assert!(op.get("security").is_none(), "{id}");
        } else {
            // Changes need the CSRF token with the cookie over HTTPS.
            assert_eq!(
                op["security"],
                json!([{ COOKIE: [], CSRF: [] }, {}]),
                "{id}"
            );
        }
        if let Some(body) = op.get("requestBody") {
            assert_eq!(body["required"], true, "{id}");
            for status in ["400", "413", "415"] {
                assert!(responses.contains_key(status), "{id} {status}");
            }
            // Every request document refuses unknown fields and types each one.
            let schema = resolve(&doc, &body["content"]["application/json"]["schema"]);
            assert_eq!(schema["additionalProperties"], false, "{id}");
            for (field, p) in schema["properties"].as_object().expect("properties") {
                assert!(
                    p.get("type").is_some() || p.get("$ref").is_some() || p.get("oneOf").is_some(),
                    "{id}: {field} has no type"
                );
            }
        }
    }
    let security = &doc["components"]["securitySchemes"];
    assert_eq!(security[COOKIE]["in"], "cookie");
    assert_eq!(security[COOKIE]["name"], "__Host-switchboard-session");
    assert_eq!(security[CSRF]["in"], "header");
    assert_eq!(security[CSRF]["name"], "X-CSRF-Token");
}

#[test]
fn the_documented_limits_are_the_enforced_ones() {
    let doc = document();
    let schemas = &doc["components"]["schemas"];
    let max = crate::api::MAX_COMMENT;
    assert_eq!(
        schemas["UpdateRequest"]["properties"]["comment"]["maxLength"],
        max
    );
    assert_eq!(
        schemas["RollbackRequest"]["properties"]["comment"]["maxLength"],
        max
    );
    let password = &schemas["PasswordRequest"]["properties"]["password"];
    assert_eq!(
        password["minLength"],
        switchboard_engine::MIN_PASSWORD_CHARS
    );
    assert_eq!(
        password["maxLength"],
        switchboard_engine::MAX_PASSWORD_CHARS
    );
    assert_eq!(
        schemas["ProvisioningRequest"]["properties"]["web_uri"]["maxLength"],
        switchboard_domain::provisioning::WebUri::MAX_LEN
    );
    let services: Vec<&str> = schemas["ServiceId"]["enum"]
        .as_array()
        .expect("an enum")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let catalog: Vec<&str> = switchboard_domain::ServiceId::all()
        .map(switchboard_domain::ServiceId::as_str)
        .collect();
    assert_eq!(services, catalog);
}

#[test]
fn the_error_document_the_api_sends_fits_its_schema() {
    let doc = document();
    let error = &doc["components"]["schemas"]["ErrorBody"];
    let body = serde_json::to_value(crate::error::ErrorBody {
        code: "x".into(),
        message: "m".into(),
        hint: "h".into(),
        diagnostics: vec![],
        problems: vec![json!({"line": 2})],
    })
    .expect("JSON");
    for field in body.as_object().expect("an object").keys() {
        assert!(error["properties"].get(field).is_some(), "{field}");
    }
    for field in error["required"].as_array().expect("required") {
        assert!(
            body.get(field.as_str().expect("a name")).is_some(),
            "{field}"
        );
    }
}
