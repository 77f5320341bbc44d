//! The OpenAPI 3.0.3 description of the JSON API ([`api`](crate::api)),
//! for the console's API reference and for scripts that generate clients.
//!
//! Written by hand as JSON, next to the router it describes; the tests keep
//! the two together: every route of [`api::router`](crate::api::router) is
//! documented with the same methods and vice versa (the router's source is
//! parsed), every request body lists exactly the fields of the handler's
//! request type (all with `additionalProperties: false`, as the API denies
//! unknown fields), every `$ref` resolves, and the document deserializes as
//! OpenAPI.
//!
//! **Limits.** Response schemas are concise: the main properties and their
//! types, not every nested document (a revision's candidate and plan are
//! plain objects); the README's API table stays the reference for their
//! meaning. The sign-in routes of the console (which set the session
//! cookie) are not part of this API and are not described.

use serde_json::{Map, Value, json};
use switchboard_domain::ServiceId;

/// Names of the schemes in `components.securitySchemes`.
const COOKIE: &str = "cookieAuth";
const CSRF: &str = "csrfToken";

const DESCRIPTION: &str = "\
The JSON API of the switchboard daemon: every operation of the management console and of \
the `switchboard` command line is one of these requests.

**Transports and authentication.**
- On the daemon's local Unix socket (`/run/switchboard/api.sock`, mode 0600) no credential \
is sent: only root and the daemon's own user may connect (checked with `SO_PEERCRED`). \
This is the empty security requirement `{}` of each operation.
- Over HTTPS (the management console), every request carries the session cookie \
`__Host-switchboard-session` (scheme `cookieAuth`), and every request that is not a `GET` \
also carries the header `X-CSRF-Token` with the token of that session (scheme `csrfToken`); \
a request without them is refused with 401 or 403.

**Conventions.** Reads are `GET`, every change is `POST`, `PATCH` or `DELETE`; no state \
changes over `GET`. Bodies are JSON (`Content-Type: application/json`), at most 64 KiB \
(certificate uploads 1 MiB, CSV imports 2 MiB); unknown fields are refused. Edits change \
the candidate only: `POST /v1/update` applies it. Every error is the document \
`{\"error\": {\"code\", \"message\", \"hint\", \"diagnostics\"?, \"problems\"?}}` \
(`Error`); `code` is stable, `message` and `hint` are for people.";

fn schema(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn array(items: Value) -> Value {
    json!({ "type": "array", "items": items })
}

fn string(description: &str) -> Value {
    json!({ "type": "string", "description": description })
}

fn nullable(mut v: Value) -> Value {
    v["nullable"] = json!(true);
    v
}

fn date_time() -> Value {
    json!({ "type": "string", "format": "date-time" })
}

fn integer(minimum: u64) -> Value {
    json!({ "type": "integer", "format": "int64", "minimum": minimum })
}

/// A response document: its properties (all present unless `optional`).
fn object(properties: Value, optional: &[&str]) -> Value {
    let required: Vec<&String> = properties
        .as_object()
        .map(|p| {
            p.keys()
                .filter(|k| !optional.contains(&k.as_str()))
                .collect()
        })
        .unwrap_or_default();
    json!({ "type": "object", "properties": properties, "required": required })
}

/// A request body: its properties, the `required` ones, nothing else.
fn request(properties: Value, required: &[&str]) -> Value {
    let mut v = json!({
        "type": "object",
        "properties": properties,
        "additionalProperties": false,
    });
    if !required.is_empty() {
        v["required"] = json!(required);
    }
    v
}

fn nic() -> Value {
    string("A network interface name (`eth0`).")
}

fn base64(what: &str) -> Value {
    json!({ "type": "string", "format": "byte", "description": what })
}

fn service_id() -> Value {
    json!({
        "type": "string",
        "description": "A service of the catalog.",
        "enum": ServiceId::all().map(ServiceId::as_str).collect::<Vec<_>>(),
    })
}

fn errors() -> Value {
    json!({
        // The error document.
        "Error": object(json!({ "error": schema("ErrorBody") }), &[]),
        "ErrorBody": object(json!({
            "code": string("Stable, kebab-case: what went wrong."),
            "message": string("What went wrong, for people."),
            "hint": string("What to do about it."),
            "diagnostics": array(schema("Diagnostic")),
            "problems": array(schema("CsvProblem")),
        }), &["diagnostics", "problems"]),
        "Diagnostic": object(json!({
            "code": string("Stable, kebab-case."),
            "severity": { "type": "string", "enum": ["error", "warning"] },
            "service": service_id(),
            "nic": string("The NIC concerned."),
            "message": { "type": "string" },
            "hint": { "type": "string" },
        }), &["service", "nic"]),
        "CsvProblem": object(json!({
            "line": integer(1),
            "column": string("The column concerned, when one is."),
            "code": { "type": "string" },
            "message": { "type": "string" },
            "hint": { "type": "string" },
        }), &["column"]),

    })
}

fn answers() -> Value {
    json!({
        // Answers.
        "Edit": object(json!({
            "changed": { "type": "boolean", "description": "Whether the candidate changed." },
            "diagnostics": array(schema("Diagnostic")),
        }), &[]),
        "Deleted": object(json!({ "deleted": string("The name of what was deleted.") }), &[]),
        "Pending": object(json!({
            "revision": integer(1),
            "previous": nullable(integer(1)),
            "deadline": date_time(),
            "seconds_left": { "type": "integer", "format": "int64" },
        }), &[]),
        "Status": object(json!({
            "version": { "type": "string" },
            "data_dir": { "type": "string" },
            "firewall_mode": { "type": "string", "enum": ["plan", "enforce"] },
            "applied_revision": nullable(integer(1)),
            "applied_at": nullable(date_time()),
            "pending": nullable(schema("Pending")),
            "candidate_changed": { "type": "boolean" },
            "errors": integer(0),
            "warnings": integer(0),
            "diagnostics": array(schema("Diagnostic")),
            "nics": integer(0),
            "unconfigured_nics": array(json!({ "type": "string" })),
            "new_nics": array(json!({ "type": "string" })),
            "padlocks": integer(0),
            "open_padlocks": array(string("`SERVICE on NIC`")),
            "sip": nullable(string("The SIP server's state.")),
        }), &[]),
        "Nic": object(json!({
            "name": { "type": "string" },
            "index": nullable(integer(0)),
            "mac": nullable(json!({ "type": "string" })),
            "up": { "type": "boolean" },
            "running": { "type": "boolean" },
            "configured": { "type": "boolean", "description": "Has an address that is not link-local." },
            "addresses": array(string("`ADDRESS/PREFIX`")),
            "state": { "type": "string", "enum": ["present", "new", "gone"] },
            "services": array(service_id()),
        }), &[]),
        "Service": object(json!({
            "id": service_id(),
            "label": { "type": "string" },
            "transport": { "type": "string", "enum": ["tcp", "udp"] },
            "ports": string("`5061` or `10000-20000`"),
            "default_ports": { "type": "string" },
            "tls": { "type": "boolean" },
            "served_by": { "type": "string" },
            "nics": array(string("NICs the candidate enables it on.")),
            "applied_nics": nullable(array(json!({ "type": "string" }))),
        }), &[]),
        "ResolvedMatrix": {
            "type": "object",
            "description": "Service id -> the NICs it is reachable on.",
            "additionalProperties": array(json!({ "type": "string" })),
        },
        "Matrix": object(json!({
            "mode": { "type": "string", "enum": ["factory", "explicit"] },
            "nics": array(json!({ "type": "string" })),
            "new_nics": array(json!({ "type": "string" })),
            "candidate": schema("ResolvedMatrix"),
            "applied_revision": nullable(integer(1)),
            "applied": nullable(schema("ResolvedMatrix")),
        }), &[]),
        "Update": object(json!({
            "revision": nullable(integer(1)),
            "no_change": { "type": "boolean" },
            "outcome": { "type": "string", "enum": ["applied", "failed", "pending", "rolled-back"] },
            "detail": { "type": "string" },
            "pending_until": nullable(date_time()),
            "warnings": array(schema("Diagnostic")),
        }), &[]),
        "Confirm": object(json!({
            "revision": integer(1),
            "detail": { "type": "string" },
        }), &[]),
        "RevisionSummary": object(json!({
            "number": integer(1),
            "created_at": date_time(),
            "actor": { "type": "string" },
            "origin": { "type": "string" },
            "kind": { "type": "string", "enum": ["update", "rollback"] },
            "rollback_of": nullable(integer(1)),
            "comment": { "type": "string" },
            "outcome": { "type": "string", "enum": ["applied", "failed", "pending", "rolled-back"] },
            "detail": { "type": "string" },
        }), &[]),
    })
}

fn answers_2() -> Value {
    json!({
        "Revision": {
            "allOf": [
                schema("RevisionSummary"),
                object(json!({
                    "candidate": { "type": "object", "description": "The configuration applied." },
                    "plan": object(json!({
                        "matrix": schema("ResolvedMatrix"),
                        "ruleset": string("The nftables script."),
                        "tls": array(json!({ "type": "object" })),
                    }), &["tls"]),
                    "warnings": array(schema("Diagnostic")),
                }), &[]),
            ],
        },
        "Firewall": object(json!({
            "mode": { "type": "string", "enum": ["plan", "enforce"] },
            "revision": nullable(integer(1)),
            "ruleset": nullable(string("The ruleset of the applied revision.")),
            "loaded": nullable(string("What the kernel has loaded (when enforcing).")),
        }), &[]),
        "Diff": object(json!({
            "from": string("`revision N`, `candidate` or `nothing applied`."),
            "to": { "type": "string" },
            "changed": { "type": "boolean" },
            "matrix": array(object(json!({
                "service": service_id(),
                "nic": { "type": "string" },
                "change": { "type": "string", "enum": ["added", "removed"] },
            }), &[])),
            "ports": array(object(json!({
                "service": service_id(),
                "from": { "type": "string" },
                "to": { "type": "string" },
            }), &[])),
            "ruleset": string("Unified diff of the two rulesets."),
        }), &[]),
    })
}

fn answers_3() -> Value {
    json!({
        "Cert": object(json!({
            "name": { "type": "string" },
            "subject": { "type": "string" },
            "issuer": { "type": "string" },
            "serial": { "type": "string" },
            "dns_names": array(json!({ "type": "string" })),
            "ip_addresses": array(json!({ "type": "string" })),
            "not_before": date_time(),
            "not_after": date_time(),
            "fingerprint": string("SHA-256, colon-separated hex."),
            "key": nullable(object(json!({
                "algorithm": { "type": "string" },
                "bits": integer(0),
            }), &[])),
            "is_self_signed": { "type": "boolean" },
            "is_ca": { "type": "boolean" },
            "has_key": { "type": "boolean" },
            "bootstrap": { "type": "boolean" },
            "validity": { "type": "string", "enum": ["valid", "expired", "not-yet-valid"] },
            "expires_in_days": { "type": "integer", "format": "int64" },
            "used_by": array(json!({ "type": "string" })),
        }), &[]),
        "CertDetail": object(json!({
            "cert": schema("Cert"),
            "chain_pem": string("The certificate and its chain, PEM (never a key)."),
        }), &[]),
        "Ca": object(json!({
            "fingerprint": { "type": "string" },
            "subject": { "type": "string" },
            "added_at": date_time(),
        }), &[]),
        "PadlockFinding": object(json!({
            "code": { "type": "string" },
            "severity": { "type": "string", "enum": ["error", "warning"] },
            "message": { "type": "string" },
            "hint": { "type": "string" },
        }), &[]),
        "Padlock": object(json!({
            "service": service_id(),
            "nic": { "type": "string" },
            "cert": nullable(json!({ "type": "string" })),
            "host": nullable(string("The name (or address) checked.")),
            "addresses": array(json!({ "type": "string" })),
            "ok": { "type": "boolean", "description": "A closed padlock: no finding is an error." },
            "findings": array(schema("PadlockFinding")),
        }), &[]),
        "Account": object(json!({
            "username": { "type": "string" },
            "display_name": nullable(json!({ "type": "string" })),
            "phone": string("E.164."),
            "group": nullable(json!({ "type": "string" })),
            "profile": { "type": "string", "enum": ["native", "linphone"] },
            "realm": { "type": "string" },
        }), &[]),
    })
}

fn answers_4() -> Value {
    json!({
        "Activation": object(json!({
            "username": { "type": "string" },
            "sms_id": integer(1),
            "to": string("The phone number, masked."),
            "gateway": { "type": "string" },
            "expires_at": date_time(),
        }), &[]),
        "Sms": object(json!({
            "id": integer(1),
            "username": nullable(json!({ "type": "string" })),
            "to": string("The phone number, masked."),
            "text": nullable(string("Shown for the outbox only.")),
            "gateway": { "type": "string" },
            "state": { "type": "string", "enum": ["queued", "sent", "failed", "outbox", "revoked"] },
            "attempts": integer(0),
            "next_try_at": date_time(),
            "last_error": nullable(json!({ "type": "string" })),
            "created_at": date_time(),
        }), &[]),
        "Revocation": object(json!({
            "username": { "type": "string" },
            "links": integer(0),
            "messages": integer(0),
        }), &[]),
        "AuditEntry": object(json!({
            "id": integer(1),
            "at": date_time(),
            "actor": { "type": "string" },
            "address": string("Where the request came from."),
            "action": string("`METHOD /path`, without the query string."),
            "outcome": string("The HTTP status, followed by the error code for a failure."),
        }), &[]),
        "PasswordChanged": object(json!({
            "username": { "type": "string" },
            "changed": { "type": "boolean" },
        }), &[]),

    })
}

fn requests() -> Value {
    json!({
        // Request bodies.
        "CellRequest": request(json!({ "service": service_id(), "nic": nic() }), &["service", "nic"]),
        "PresetRequest": request(json!({
            "internal": string("The NIC of the internal network."),
            "external": string("The NIC facing the Internet."),
        }), &["internal", "external"]),
        "PortRequest": request(json!({
            "service": service_id(),
            "ports": string("`5061` or `10000-20000`."),
        }), &["service", "ports"]),
        "UpdateRequest": request(json!({
            "comment": { "type": "string", "maxLength": 500, "default": "",
                         "description": "One line, recorded with the revision." },
            "confirm_within": nullable(json!({ "type": "integer", "format": "int64", "minimum": 0,
                "description": "Seconds within which `POST /v1/confirm` must be called, or the appliance reverts." })),
        }), &[]),
        "RollbackRequest": request(json!({
            "revision": integer(1),
            "comment": { "type": "string", "maxLength": 500, "default": "",
                         "description": "One line, recorded with the revision; blank: `rollback to revision N`." },
            "confirm_within": nullable(integer(0)),
        }), &["revision"]),
        "ImportCertRequest": request(json!({
            "name": string("The name to store it under."),
            "bundle": base64("The certificate file (PEM, DER or PKCS#12), base64."),
            "key": nullable(base64("The key file, base64, when separate.")),
            "password": nullable(json!({ "type": "string", "format": "password",
                "description": "The PKCS#12 password or the key's passphrase. Never logged." })),
        }), &["name", "bundle"]),
        "BindRequest": request(json!({
            "service": service_id(),
            "cert": string("A stored certificate's name."),
            "nic": nullable(string("One NIC; absent: the service's default binding.")),
            "force": { "type": "boolean", "default": false,
                       "description": "Bind even though the padlock check would fail." },
        }), &["service", "cert"]),
        "UnbindRequest": request(json!({
            "service": service_id(),
            "nic": nullable(nic()),
        }), &["service"]),
        "CasRequest": request(json!({
            "certificates": base64("CA certificates, PEM or DER, base64."),
        }), &["certificates"]),
        "NicSettingsRequest": request(json!({
            "nic": nic(),
            "hostname": nullable(string("The host name clients use for this NIC. Absent: kept; empty: cleared.")),
            "public_address": nullable(string("The address clients reach it at (behind NAT). Absent: kept; empty: cleared.")),
        }), &["nic"]),
        "AccountRequest": request(json!({
            "phone": string("E.164 (`+33612345678`)."),
            "username": nullable(string("Absent: made from the next free number.")),
            "name": nullable(string("Display name.")),
            "group": nullable(json!({ "type": "string" })),
            "profile": nullable(json!({ "type": "string", "enum": ["native", "linphone"] })),
        }), &["phone"]),
        "AccountUpdate": request(json!({
            "phone": nullable(json!({ "type": "string" })),
            "name": nullable(string("An empty string removes the name.")),
            "group": nullable(string("An empty string removes the group.")),
            "profile": nullable(json!({ "type": "string", "enum": ["native", "linphone"] })),
            "new_password": { "type": "boolean", "default": false,
                              "description": "Draw a new SIP password (the phone needs a new activation)." },
        }), &[]),
        "AccountsImportRequest": request(json!({
            "csv": base64("The CSV file, base64."),
        }), &["csv"]),
        "ProvisioningRequest": request(json!({
            "sip_tls_hostname": nullable(string("Absent: kept; empty: cleared.")),
            "web_uri": nullable(string("`https://HOST[:PORT]`. Absent: kept; empty: cleared.")),
            "app_stores": {
                "type": "object",
                "description": "Platform (`android`, `ios`, `other`) -> app store URL; an empty URL removes it.",
                "additionalProperties": { "type": "string" },
                "default": {},
            },
        }), &[]),
        "ActivateRequest": request(json!({ "username": { "type": "string" } }), &["username"]),
        "PasswordRequest": request(json!({
            "username": {
                "type": "string", "pattern": "^[a-z0-9._-]{1,32}$",
                "default": switchboard_engine::DEFAULT_ADMIN,
                "description": "The administrator's user name (created if it does not exist).",
            },
            "password": {
                "type": "string", "format": "password", "minLength": 12, "maxLength": 128,
                "description": "The new password: 12 to 128 characters, not only white space. Never logged.",
            },
            "current_password": nullable(json!({
                "type": "string", "format": "password",
                "description": "The current password: required when the request comes from the console (HTTPS).",
            })),
        }), &["password"]),
    })
}

fn schemas() -> Value {
    let mut all = Map::new();
    // In parts: one `json!` of them all is too deep for the macro.
    for part in [
        errors(),
        answers(),
        answers_2(),
        answers_3(),
        answers_4(),
        requests(),
    ] {
        let Value::Object(part) = part else {
            unreachable!("objects")
        };
        all.extend(part);
    }
    Value::Object(all)
}

/// The error responses, one per status, all with the error document.
const ERRORS: [(u16, &str, &str); 11] = [
    (
        400,
        "BadRequest",
        "The request is malformed or a value is invalid.",
    ),
    (
        401,
        "Unauthorized",
        "Over HTTPS: no valid session (sign in again).",
    ),
    (
        403,
        "Forbidden",
        "Not allowed: a peer other than root on the socket, a missing or wrong `X-CSRF-Token` over HTTPS, a wrong current password, or another administrator's password over the console.",
    ),
    (404, "NotFound", "No such revision, certificate or account."),
    (
        409,
        "Conflict",
        "Refused in the current state (diagnostics with errors, a pending confirmation, a certificate in use...).",
    ),
    (413, "PayloadTooLarge", "The body is too large."),
    (415, "UnsupportedMediaType", "The body is not sent as JSON."),
    (
        422,
        "UnprocessableEntity",
        "Well-formed but unusable: a certificate or CSV file that cannot be imported, a provisioning value or a matrix edit that is refused.",
    ),
    (
        429,
        "TooManyRequests",
        "Too many requests (activation link fetches, or wrong passwords over the console): try again after `Retry-After` seconds.",
    ),
    (
        500,
        "InternalError",
        "The appliance failed; details are in the daemon's log.",
    ),
    (
        502,
        "BadGateway",
        "The system refused to apply the change (firewall, Kamailio): the message says what it answered.",
    ),
];

fn error_responses() -> Value {
    let mut m = Map::new();
    for (_, name, description) in ERRORS {
        m.insert(
            name.into(),
            json!({
                "description": description,
                "content": { "application/json": { "schema": schema("Error") } },
            }),
        );
    }
    Value::Object(m)
}

/// One operation of the document.
struct Op {
    method: &'static str,
    path: &'static str,
    id: &'static str,
    summary: &'static str,
    tag: &'static str,
    /// The request body's schema (in `components.schemas`).
    body: Option<&'static str>,
    parameters: Value,
    /// The schema of the 200 answer.
    answer: Value,
    /// Error statuses besides those every operation may answer.
    errors: &'static [u16],
}

fn op(
    method: &'static str,
    path: &'static str,
    id: &'static str,
    summary: &'static str,
    tag: &'static str,
) -> Op {
    Op {
        method,
        path,
        id,
        summary,
        tag,
        body: None,
        parameters: json!([]),
        answer: json!({ "type": "object" }),
        errors: &[],
    }
}

impl Op {
    fn body(mut self, schema: &'static str) -> Op {
        self.body = Some(schema);
        self
    }
    fn answer(mut self, answer: Value) -> Op {
        self.answer = answer;
        self
    }
    fn errors(mut self, errors: &'static [u16]) -> Op {
        self.errors = errors;
        self
    }
    fn param(mut self, p: Value) -> Op {
        self.parameters.as_array_mut().expect("an array").push(p);
        self
    }

    fn to_json(&self) -> Value {
        let mut statuses: Vec<u16> = vec![401, 403, 500];
        if self.body.is_some() {
            statuses.extend([400, 413, 415]);
        }
        statuses.extend(self.errors);
        statuses.sort_unstable();
        statuses.dedup();
        let mut responses = Map::new();
        responses.insert(
            "200".into(),
            json!({
                "description": "Done.",
                "content": { "application/json": { "schema": self.answer } },
            }),
        );
        for status in statuses {
            let (_, name, _) = ERRORS
                .iter()
                .find(|(s, ..)| *s == status)
                .unwrap_or_else(|| panic!("no shared response for {status}"));
            responses.insert(
                status.to_string(),
                json!({ "$ref": format!("#/components/responses/{name}") }),
            );
        }
        let mut o = json!({
            "operationId": self.id,
            "summary": self.summary,
            "tags": [self.tag],
            "responses": responses,
        });
        if self.method != "get" {
            o["security"] = json!([{ COOKIE: [], CSRF: [] }, {}]);
        }
        if !self.parameters.as_array().is_some_and(Vec::is_empty) {
            o["parameters"] = self.parameters.clone();
        }
        if let Some(body) = self.body {
            o["requestBody"] = json!({
                "required": true,
                "content": { "application/json": { "schema": schema(body) } },
            });
        }
        o
    }
}

fn path_param(name: &str, schema: Value, description: &str) -> Value {
    json!({ "name": name, "in": "path", "required": true, "description": description, "schema": schema })
}

fn query_param(name: &str, schema: Value, description: &str) -> Value {
    json!({ "name": name, "in": "query", "required": false, "description": description, "schema": schema })
}

fn operations() -> Vec<Op> {
    let list = |name| array(schema(name));
    let revision = || integer(1);
    vec![
        op(
            "get",
            "/v1/status",
            "getStatus",
            "The appliance at a glance",
            "status",
        )
        .answer(schema("Status")),
        op(
            "get",
            "/v1/nics",
            "listNics",
            "The NICs and their services",
            "matrix",
        )
        .answer(list("Nic")),
        op(
            "get",
            "/v1/services",
            "listServices",
            "The service catalog, ports and NICs",
            "matrix",
        )
        .answer(list("Service")),
        op(
            "get",
            "/v1/matrix",
            "getMatrix",
            "The matrix, candidate and applied",
            "matrix",
        )
        .answer(schema("Matrix")),
        op(
            "post",
            "/v1/matrix/allow",
            "allowCell",
            "Expose a service on a NIC (candidate)",
            "matrix",
        )
        .body("CellRequest")
        .answer(schema("Edit"))
        .errors(&[422]),
        op(
            "post",
            "/v1/matrix/deny",
            "denyCell",
            "Stop exposing a service on a NIC (candidate)",
            "matrix",
        )
        .body("CellRequest")
        .answer(schema("Edit"))
        .errors(&[422]),
        op(
            "post",
            "/v1/preset/production",
            "presetProduction",
            "Apply the production preset to the candidate",
            "matrix",
        )
        .body("PresetRequest")
        .answer(schema("Edit"))
        .errors(&[422]),
        op(
            "post",
            "/v1/ports",
            "setPorts",
            "Change a service's ports (candidate)",
            "matrix",
        )
        .body("PortRequest")
        .answer(schema("Edit"))
        .errors(&[422]),
        op(
            "post",
            "/v1/discard",
            "discardCandidate",
            "Discard the candidate's changes",
            "revisions",
        )
        .answer(schema("Edit")),
        op(
            "get",
            "/v1/diff",
            "getDiff",
            "Compare two revisions, or a revision and the candidate",
            "revisions",
        )
        .param(query_param(
            "from",
            revision(),
            "A revision; absent: the applied one.",
        ))
        .param(query_param(
            "to",
            revision(),
            "A revision; absent: the candidate.",
        ))
        .answer(schema("Diff"))
        .errors(&[400, 404]),
        op(
            "post",
            "/v1/update",
            "update",
            "Validate, apply and record the candidate",
            "revisions",
        )
        .body("UpdateRequest")
        .answer(schema("Update"))
        .errors(&[409, 502]),
        op(
            "post",
            "/v1/rollback",
            "rollback",
            "Apply an earlier revision again",
            "revisions",
        )
        .body("RollbackRequest")
        .answer(schema("Update"))
        .errors(&[404, 409, 502]),
        op(
            "post",
            "/v1/confirm",
            "confirm",
            "Confirm the pending revision",
            "revisions",
        )
        .answer(schema("Confirm"))
        .errors(&[409]),
        op(
            "get",
            "/v1/revisions",
            "listRevisions",
            "The revisions, newest last",
            "revisions",
        )
        .answer(list("RevisionSummary")),
        op(
            "get",
            "/v1/revisions/{number}",
            "getRevision",
            "One revision in full",
            "revisions",
        )
        .param(path_param("number", revision(), "The revision number."))
        .answer(schema("Revision"))
        .errors(&[400, 404]),
        op(
            "get",
            "/v1/firewall",
            "getFirewall",
            "The ruleset applied and loaded",
            "status",
        )
        .answer(schema("Firewall")),
        op(
            "get",
            "/v1/certs",
            "listCerts",
            "The stored certificates",
            "certificates",
        )
        .answer(list("Cert")),
        op(
            "post",
            "/v1/certs",
            "importCert",
            "Import a certificate (and its key)",
            "certificates",
        )
        .body("ImportCertRequest")
        .answer(schema("Cert"))
        .errors(&[409, 422]),
        op(
            "get",
            "/v1/certs/{name}",
            "getCert",
            "One certificate and its chain",
            "certificates",
        )
        .param(path_param(
            "name",
            json!({ "type": "string" }),
            "The certificate's name.",
        ))
        .answer(schema("CertDetail"))
        .errors(&[400, 404]),
        op(
            "delete",
            "/v1/certs/{name}",
            "deleteCert",
            "Delete a certificate no binding uses",
            "certificates",
        )
        .param(path_param(
            "name",
            json!({ "type": "string" }),
            "The certificate's name.",
        ))
        .answer(schema("Deleted"))
        .errors(&[400, 404, 409]),
        op(
            "post",
            "/v1/certs/bind",
            "bindCert",
            "Bind a certificate to a TLS service (candidate)",
            "certificates",
        )
        .body("BindRequest")
        .answer(schema("Edit"))
        .errors(&[404, 409, 422]),
        op(
            "post",
            "/v1/certs/unbind",
            "unbindCert",
            "Remove a binding (candidate)",
            "certificates",
        )
        .body("UnbindRequest")
        .answer(schema("Edit"))
        .errors(&[409, 422]),
        op(
            "get",
            "/v1/cas",
            "listCas",
            "The CA certificates trusted",
            "certificates",
        )
        .answer(list("Ca")),
        op(
            "post",
            "/v1/cas",
            "addCas",
            "Trust CA certificates",
            "certificates",
        )
        .body("CasRequest")
        .answer(list("Ca"))
        .errors(&[422]),
        op(
            "post",
            "/v1/nics/settings",
            "setNic",
            "A NIC's host name and public address (candidate)",
            "certificates",
        )
        .body("NicSettingsRequest")
        .answer(schema("Edit"))
        .errors(&[422]),
        op(
            "get",
            "/v1/padlock",
            "padlock",
            "The padlock check of every TLS binding",
            "certificates",
        )
        .answer(list("Padlock")),
        op(
            "get",
            "/v1/accounts",
            "listAccounts",
            "The SIP accounts",
            "accounts",
        )
        .answer(list("Account")),
        op(
            "post",
            "/v1/accounts",
            "addAccount",
            "Create a SIP account",
            "accounts",
        )
        .body("AccountRequest")
        .answer(schema("Account"))
        .errors(&[409, 422]),
        op(
            "get",
            "/v1/accounts/{username}",
            "getAccount",
            "One account",
            "accounts",
        )
        .param(path_param(
            "username",
            json!({ "type": "string" }),
            "The account's user name.",
        ))
        .answer(schema("Account"))
        .errors(&[404, 422]),
        op(
            "patch",
            "/v1/accounts/{username}",
            "updateAccount",
            "Change an account",
            "accounts",
        )
        .param(path_param(
            "username",
            json!({ "type": "string" }),
            "The account's user name.",
        ))
        .body("AccountUpdate")
        .answer(schema("Account"))
        .errors(&[404, 409, 422, 502]),
        op(
            "delete",
            "/v1/accounts/{username}",
            "deleteAccount",
            "Delete an account",
            "accounts",
        )
        .param(path_param(
            "username",
            json!({ "type": "string" }),
            "The account's user name.",
        ))
        .answer(schema("Deleted"))
        .errors(&[404, 422, 502]),
        op(
            "post",
            "/v1/accounts/import",
            "importAccounts",
            "Create accounts from a CSV file (all or none)",
            "accounts",
        )
        .body("AccountsImportRequest")
        .answer(list("Account"))
        .errors(&[409, 422]),
        op(
            "post",
            "/v1/provisioning",
            "setProvisioning",
            "The provisioning settings (candidate)",
            "accounts",
        )
        .body("ProvisioningRequest")
        .answer(schema("Edit"))
        .errors(&[422]),
        op(
            "post",
            "/v1/activate",
            "activate",
            "Send an account's activation SMS",
            "accounts",
        )
        .body("ActivateRequest")
        .answer(schema("Activation"))
        .errors(&[404, 409, 422, 429]),
        op(
            "get",
            "/v1/sms",
            "listSms",
            "The SMS queue and outbox",
            "accounts",
        )
        .answer(list("Sms")),
        op(
            "post",
            "/v1/revoke",
            "revoke",
            "Kill an account's unused activation links and withdraw their undelivered SMS",
            "accounts",
        )
        .body("ActivateRequest")
        .answer(schema("Revocation"))
        .errors(&[404, 422]),
        op(
            "post",
            "/v1/sms/{id}/resend",
            "resendSms",
            "Queue a failed SMS again",
            "accounts",
        )
        .param(path_param(
            "id",
            json!({ "type": "integer", "minimum": 1 }),
            "The message's id (`GET /v1/sms`).",
        ))
        .answer(schema("Sms"))
        .errors(&[400, 404, 409]),
        op(
            "get",
            "/v1/audit",
            "listAudit",
            "The audit log of API requests, newest first",
            "admin",
        )
        .param(query_param(
            "limit",
            json!({ "type": "integer", "minimum": 1, "maximum": 1000, "default": 200 }),
            "How many entries, at most.",
        ))
        .answer(list("AuditEntry"))
        .errors(&[400]),
        op(
            "post",
            "/v1/admin/password",
            "setAdminPassword",
            "Set an administrator's password",
            "admin",
        )
        .body("PasswordRequest")
        .answer(schema("PasswordChanged"))
        .errors(&[400, 403, 413, 415, 429]),
    ]
}

/// The OpenAPI 3.0.3 document of the JSON API.
pub fn document() -> Value {
    let mut paths = Map::new();
    for o in operations() {
        let item = paths
            .entry(o.path)
            .or_insert_with(|| Value::Object(Map::new()));
        item[o.method] = o.to_json();
    }
    let responses = error_responses();
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "switchboard API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": DESCRIPTION,
            "license": { "name": "Apache-2.0" },
        },
        "tags": [
            { "name": "status", "description": "The appliance's state." },
            { "name": "matrix", "description": "Which service is reachable on which NIC." },
            { "name": "revisions", "description": "Update, rollback, confirm, history." },
            { "name": "certificates", "description": "TLS identity: certificates, bindings, padlocks." },
            { "name": "accounts", "description": "SIP accounts and their provisioning." },
            { "name": "admin", "description": "Administrators and the audit log." },
        ],
        "security": [{ COOKIE: [] }, {}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                COOKIE: {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "__Host-switchboard-session",
                    "description": "The console's session (HTTPS only; not used on the Unix socket).",
                },
                CSRF: {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-CSRF-Token",
                    "description": "The session's CSRF token, required with the cookie on every request that is not a GET.",
                },
            },
            "schemas": schemas(),
            "responses": responses,
        },
    })
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    const API: &str = include_str!("api.rs");
    const METHODS: [&str; 8] = [
        "get", "post", "put", "patch", "delete", "head", "options", "trace",
    ];

    /// The text inside the parenthesis `text` starts just after.
    fn inside_parens(text: &str) -> &str {
        let mut depth = 1;
        for (i, c) in text.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        return &text[..i];
                    }
                }
                _ => {}
            }
        }
        panic!("unbalanced parentheses in {text}")
    }

    fn is_ident(c: char) -> bool {
        c.is_alphanumeric() || c == '_'
    }

    /// Every (path, method) -> handler of `api::router`, from its source.
    fn routes() -> BTreeMap<(String, String), String> {
        let routes = routes_in(API);
        assert!(
            routes.len() >= 30,
            "the router's source was not read: {routes:?}"
        );
        routes
    }

    /// Every (path, method) -> handler of the function `router` in `source`.
    fn routes_in(source: &str) -> BTreeMap<(String, String), String> {
        let start = source
            .find("pub fn router(")
            .expect("api.rs has `pub fn router(`");
        let end = start + source[start..].find("\n}\n").expect("the end of `router`");
        let body: String = source[start..end]
            .lines()
            .map(|l| l.split("//").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n");
        for unsupported in [".nest(", ".merge(", ".route_service(", ".nest_service("] {
            assert!(
                !body.contains(unsupported),
                "api::router uses {unsupported}: teach this test to read those routes, and document them"
            );
        }
        let mut routes = BTreeMap::new();
        let mut rest = body.as_str();
        while let Some(i) = rest.find(".route(") {
            let args = inside_parens(&rest[i + ".route(".len()..]);
            let q1 = args.find('"').expect("a path literal");
            let q2 = q1 + 1 + args[q1 + 1..].find('"').expect("a path literal");
            let path = &args[q1 + 1..q2];
            let chain = &args[q2 + 1..];
            let mut found = 0;
            for method in METHODS {
                let pattern = format!("{method}(");
                for (at, _) in chain.match_indices(&pattern) {
                    if chain[..at].chars().next_back().is_some_and(is_ident) {
                        continue;
                    }
                    let handler: String = chain[at + pattern.len()..]
                        .trim_start()
                        .chars()
                        .take_while(|&c| is_ident(c) || c == ':')
                        .collect();
                    let handler = handler.rsplit("::").next().unwrap_or_default().to_owned();
                    let previous = routes.insert((path.to_owned(), method.to_owned()), handler);
                    assert!(previous.is_none(), "{method} {path} routed twice");
                    found += 1;
                }
            }
            assert!(found > 0, "no method found in the route {path}");
            rest = &rest[i + ".route(".len() + args.len()..];
        }
        routes
    }

    /// The signature of the handler `name` in api.rs, if it is there.
    fn signature(name: &str) -> Option<&'static str> {
        let start = API.find(&format!("async fn {name}("))?;
        let end = start + API[start..].find("->")?;
        Some(&API[start..end])
    }

    /// The type in `Wrapper<Type>` of a signature.
    fn extracted<'a>(signature: &'a str, wrapper: &str) -> Option<&'a str> {
        let i = signature.find(&format!("{wrapper}<"))? + wrapper.len() + 1;
        Some(&signature[i..i + signature[i..].find('>')?])
    }

    /// The fields of the struct `name` in api.rs, and whether each is
    /// required (neither an `Option` nor `#[serde(default)]`).
    fn fields(name: &str) -> BTreeMap<String, bool> {
        let start = API
            .find(&format!("struct {name} {{"))
            .unwrap_or_else(|| panic!("struct {name} in api.rs"));
        let end = start + API[start..].find("\n}").expect("the struct's end");
        let mut out = BTreeMap::new();
        let mut default = false;
        for line in API[start..end].lines().skip(1) {
            let line = line.trim();
            if line.starts_with("#[") {
                default |= line.contains("serde(default");
                assert!(
                    !line.contains("rename"),
                    "{name}: teach this test serde renames"
                );
                continue;
            }
            if line.starts_with("//") || line.is_empty() {
                continue;
            }
            let line = line.strip_prefix("pub ").unwrap_or(line);
            let (field, ty) = line.split_once(':').expect("`field: Type,`");
            out.insert(
                field.trim().to_owned(),
                !default && !ty.trim().starts_with("Option<"),
            );
            default = false;
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

    /// (path, method) -> operation of the document.
    fn documented(doc: &Value) -> BTreeMap<(String, String), &Value> {
        let mut out = BTreeMap::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                assert!(METHODS.contains(&method.as_str()), "{method} {path}");
                out.insert((path.clone(), method.clone()), op);
            }
        }
        out
    }

    #[test]
    fn the_document_is_openapi_and_every_ref_resolves() {
        let doc = document();
        let parsed: openapiv3::OpenAPI = serde_json::from_value(doc.clone()).unwrap();
        assert_eq!(parsed.openapi, "3.0.3");
        assert!(parsed.paths.paths.len() >= 30);

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
        // Every component is used.
        for kind in ["schemas", "responses"] {
            for name in doc["components"][kind].as_object().unwrap().keys() {
                let r = format!("#/components/{kind}/{name}");
                assert!(refs.contains(&r), "{r} is never used");
            }
        }
        // The error document as the API sends it is valid for the schema's shape.
        let error = &doc["components"]["schemas"]["ErrorBody"];
        let body = serde_json::to_value(crate::error::ErrorBody {
            code: "x".into(),
            message: "m".into(),
            hint: "h".into(),
            diagnostics: vec![],
            problems: vec![json!({"line": 2})],
        })
        .unwrap();
        for field in body.as_object().unwrap().keys() {
            assert!(error["properties"].get(field).is_some(), "{field}");
        }
        for field in error["required"].as_array().unwrap() {
            assert!(body.get(field.as_str().unwrap()).is_some(), "{field}");
        }
    }

    #[test]
    fn every_operation_is_complete() {
        let doc = document();
        let mut ids = BTreeSet::new();
        for ((path, method), op) in documented(&doc) {
            let id = op["operationId"].as_str().expect("an operationId");
            assert!(ids.insert(id.to_owned()), "operationId {id} twice");
            assert!(
                !op["summary"].as_str().unwrap_or_default().is_empty(),
                "{id}"
            );
            let responses = op["responses"].as_object().unwrap();
            assert!(responses.contains_key("200"), "{id}");
            assert_eq!(
                resolve(&doc, &responses["500"])["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/Error",
                "{id}"
            );
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
                .map(|p| p["name"].as_str().unwrap())
                .collect();
            assert_eq!(in_path, declared, "{id}");
            // Changes need the CSRF token with the cookie over HTTPS.
            if method != "get" {
                assert_eq!(
                    op["security"],
                    json!([{ COOKIE: [], CSRF: [] }, {}]),
                    "{id}"
                );
            } else {
                assert!(op.get("requestBody").is_none(), "{id}");
            }
        }
        let security = &doc["components"]["securitySchemes"];
        assert_eq!(security[COOKIE]["in"], "cookie");
        assert_eq!(security[COOKIE]["name"], "__Host-switchboard-session");
        assert_eq!(security[CSRF]["in"], "header");
        assert_eq!(security[CSRF]["name"], "X-CSRF-Token");
        // Every request body refuses unknown fields, and types each one.
        for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
            if name.ends_with("Request") || name == "AccountUpdate" {
                assert_eq!(schema["additionalProperties"], false, "{name}");
                for (field, p) in schema["properties"].as_object().unwrap() {
                    assert!(p.get("type").is_some(), "{name}.{field} has no type");
                }
            }
        }
    }

    #[test]
    fn every_route_is_documented_and_every_documented_route_exists() {
        let routed = routes();
        let doc = document();
        let documented = documented(&doc);
        for (path, method) in routed.keys() {
            assert!(
                documented.contains_key(&(path.clone(), method.clone())),
                "{} {path} is routed in api.rs but not documented in openapi.rs",
                method.to_uppercase()
            );
        }
        for (path, method) in documented.keys() {
            let key = (path.clone(), method.clone());
            assert!(
                routed.contains_key(&key),
                "{} {path} is documented but not routed",
                method.to_uppercase()
            );
        }
    }

    #[test]
    fn bodies_and_queries_match_the_handlers() {
        let doc = document();
        let documented = documented(&doc);
        for ((path, method), handler) in routes() {
            let op = documented[&(path.clone(), method.clone())];
            let signature = signature(&handler).unwrap_or_else(|| {
                panic!("handler {handler} of {method} {path} not found in api.rs")
            });
            // The body: declared iff the handler takes one, with its fields.
            let body = extracted(signature, "Body").or_else(|| extracted(signature, "Json"));
            match body {
                None => assert!(
                    op.get("requestBody").is_none(),
                    "{method} {path}: {handler} takes no body, the document declares one"
                ),
                Some(ty) => {
                    let request = op.get("requestBody").unwrap_or_else(|| {
                        panic!(
                            "{method} {path}: {handler} takes {ty}, the document declares no body"
                        )
                    });
                    assert_eq!(request["required"], true, "{method} {path}");
                    let schema = resolve(&doc, &request["content"]["application/json"]["schema"]);
                    assert_eq!(schema["additionalProperties"], false, "{ty}");
                    let want = fields(ty);
                    let properties: BTreeSet<&String> =
                        schema["properties"].as_object().unwrap().keys().collect();
                    assert_eq!(
                        properties,
                        want.keys().collect(),
                        "{method} {path}: the fields of {ty}"
                    );
                    let required: BTreeSet<&str> = schema["required"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|r| r.as_str().unwrap())
                        .collect();
                    let want_required: BTreeSet<&str> = want
                        .iter()
                        .filter(|(_, r)| **r)
                        .map(|(f, _)| f.as_str())
                        .collect();
                    assert_eq!(
                        required, want_required,
                        "{method} {path}: required fields of {ty}"
                    );
                }
            }
            // The query: the parameters are the fields of the handler's query type.
            let query: BTreeSet<&str> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "query")
                .map(|p| p["name"].as_str().unwrap())
                .collect();
            match extracted(signature, "Query") {
                None => assert!(query.is_empty(), "{method} {path}: no query in {handler}"),
                Some(ty) => assert_eq!(
                    query,
                    fields(ty).keys().map(String::as_str).collect(),
                    "{method} {path}: the fields of {ty}"
                ),
            }
        }
    }

    #[test]
    fn a_route_added_later_is_seen() {
        let source = "pub fn router(engine: Arc<Engine>) -> Router {
    Router::new()
        // .route(\"/v1/commented\", get(nothing))
        .route(\"/v1/status\", get(status))
        .route(
            \"/v1/new/{id}\",
            axum::routing::get(show_new)
                .put(replace_new)
                .layer(DefaultBodyLimit::max(MAX_BODY)),
        )
        .with_state(engine)
}
";
        let routes = routes_in(source);
        let keys: Vec<(&str, &str, &str)> = routes
            .iter()
            .map(|((p, m), h)| (p.as_str(), m.as_str(), h.as_str()))
            .collect();
        assert_eq!(
            keys,
            [
                ("/v1/new/{id}", "get", "show_new"),
                ("/v1/new/{id}", "put", "replace_new"),
                ("/v1/status", "get", "status"),
            ]
        );
        let doc = document();
        assert!(!documented(&doc).contains_key(&("/v1/new/{id}".into(), "get".into())));
    }

    #[test]
    fn the_route_parser_reads_multi_line_routes() {
        let routes = routes();
        let get = |p: &str, m: &str| routes.get(&(p.to_owned(), m.to_owned())).cloned();
        assert_eq!(get("/v1/certs", "get").as_deref(), Some("certs"));
        assert_eq!(get("/v1/certs", "post").as_deref(), Some("import_cert"));
        assert_eq!(
            get("/v1/accounts/{username}", "patch").as_deref(),
            Some("update_account")
        );
        assert_eq!(
            get("/v1/accounts/{username}", "delete").as_deref(),
            Some("delete_account")
        );
        assert_eq!(
            get("/v1/accounts/import", "post").as_deref(),
            Some("import_accounts")
        );
        assert_eq!(get("/v1/status", "post"), None);
    }
}
