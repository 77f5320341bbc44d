//! The OpenAPI document of the JSON API ([`api`](crate::api)), for the
//! console's API reference (`/openapi.json`) and for scripts that generate
//! clients.
//!
//! Generated, not written: the paths and operations come from the route
//! table ([`api::routes`](crate::api::routes), each handler's
//! `#[utoipa::path]`), the schemas from the types the server and the CLI
//! share ([`contract`](crate::contract), the engine's
//! [`views`](switchboard_engine::views)) with utoipa. This module adds
//! what is true of every operation: the description, the tags, the two
//! ways to authenticate (none on the Unix socket; the session cookie, and
//! the CSRF header for changes, over HTTPS) and the error responses every
//! operation may give (401, 403, 500; 400, 413, 415 with a body), all with
//! the error document. The document is kept as the golden file
//! `crates/web/openapi.json` (`UPDATE_EXPECT=1` refreshes it).
//!
//! **Limits.** A revision's candidate and plan, and the diff, are free-form
//! objects here (their shape is being reworked); the README's API table
//! stays the reference for their meaning. The sign-in routes of the console
//! (which set the session cookie) are not part of this API.

use serde_json::{Value, json};
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityRequirement, SecurityScheme};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{
    ContentBuilder, InfoBuilder, LicenseBuilder, OpenApi, Ref, RefOr, ResponseBuilder,
};
use utoipa::{PartialSchema, ToSchema};

use crate::error::ErrorDocument;

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
(`ErrorDocument`); `code` is stable, `message` and `hint` are for people.";

const TAGS: [(&str, &str); 9] = [
    ("status", "The appliance's state."),
    ("matrix", "Which service is reachable on which NIC."),
    ("revisions", "Update, rollback, confirm, history."),
    (
        "certificates",
        "TLS identity: certificates, bindings, padlocks.",
    ),
    ("accounts", "SIP accounts and their provisioning."),
    ("admin", "Administrators and the audit log."),
    (
        "bans",
        "The SIP edge: addresses banned for failed authentications or floods, and the policy.",
    ),
    (
        "calls",
        "Calls in progress between the accounts, and their media through the relay.",
    ),
    (
        "fleet",
        "The appliance in a fleet: its membership, its group's policy applied from etcd, the group's members.",
    ),
];

/// The error responses, one per status, all with the error document; the
/// operations refer to them by name (`response = error::Conflict`).
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

/// The error responses an operation names in its `#[utoipa::path]`
/// (`(status = 409, response = Conflict)`), besides those every operation
/// may give.
pub(crate) mod error {
    use utoipa::openapi::{RefOr, Response};

    macro_rules! responses {
        ($($name:ident),*) => {$(
            #[derive(Debug)]
            pub(crate) struct $name;
            impl<'r> utoipa::ToResponse<'r> for $name {
                fn response() -> (&'r str, RefOr<Response>) {
                    (stringify!($name), super::error_response(stringify!($name)))
                }
            }
        )*};
    }
    responses!(
        BadRequest,
        Forbidden,
        NotFound,
        Conflict,
        UnprocessableEntity,
        TooManyRequests,
        BadGateway
    );
}

fn error_response(name: &str) -> RefOr<utoipa::openapi::Response> {
    let description = ERRORS
        .iter()
        .find(|(_, n, _)| *n == name)
        .map_or("An error.", |(_, _, d)| d);
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(ErrorDocument::name())))
                .build(),
        )
        .build()
        .into()
}

/// Add what every operation shares to `op`: its security and its error
/// responses.
fn complete(method: &str, op: &mut Operation) {
    if method != "get" {
        let session =
            SecurityRequirement::new(COOKIE, Vec::<String>::new()).add(CSRF, Vec::<String>::new());
        op.security = Some(vec![session, SecurityRequirement::default()]);
    }
    let mut statuses = vec![401, 403, 500];
    if op.request_body.is_some() {
        statuses.extend([400, 413, 415]);
    }
    for status in statuses {
        let (_, name, _) = ERRORS
            .iter()
            .find(|(s, ..)| *s == status)
            .expect("every shared status has a response");
        op.responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| Ref::from_response_name(*name).into());
    }
}

/// The OpenAPI document of the JSON API, as utoipa's model.
pub fn openapi() -> OpenApi {
    let (_, mut doc) = crate::api::routes().split_for_parts();
    doc.info = InfoBuilder::new()
        .title("switchboard API")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(DESCRIPTION))
        .license(Some(LicenseBuilder::new().name("Apache-2.0").build()))
        .build();
    doc.tags = Some(
        TAGS.iter()
            .map(|(name, description)| {
                TagBuilder::new()
                    .name(*name)
                    .description(Some(*description))
                    .build()
            })
            .collect(),
    );
    doc.security = Some(vec![
        SecurityRequirement::new(COOKIE, Vec::<String>::new()),
        SecurityRequirement::default(),
    ]);
    for (path, item) in doc.paths.paths.iter_mut() {
        let ops = [
            ("get", &mut item.get),
            ("post", &mut item.post),
            ("put", &mut item.put),
            ("patch", &mut item.patch),
            ("delete", &mut item.delete),
        ];
        for (method, op) in ops {
            if let Some(op) = op {
                complete(method, op);
                debug_assert!(op.operation_id.is_some(), "{method} {path}");
            }
        }
    }
    let components = doc.components.get_or_insert_with(Default::default);
    components
        .schemas
        .insert(ErrorDocument::name().into_owned(), ErrorDocument::schema());
    let mut errors = Vec::new();
    ErrorDocument::schemas(&mut errors);
    components.schemas.extend(errors);
    for (_, name, _) in ERRORS {
        components
            .responses
            .insert(name.to_owned(), error_response(name));
    }
    let cookie = ApiKey::Cookie(ApiKeyValue::with_description(
        "__Host-switchboard-session",
        "The console's session (HTTPS only; not used on the Unix socket).",
    ));
    let csrf = ApiKey::Header(ApiKeyValue::with_description(
        "X-CSRF-Token",
        "The session's CSRF token, required with the cookie on every request that is not a GET.",
    ));
    components.add_security_scheme(COOKIE, SecurityScheme::ApiKey(cookie));
    components.add_security_scheme(CSRF, SecurityScheme::ApiKey(csrf));
    doc
}

/// The OpenAPI document of the JSON API, as JSON.
pub fn document() -> Value {
    serde_json::to_value(openapi()).unwrap_or_else(|e| json!({ "error": e.to_string() }))
}

#[cfg(test)]
mod tests;
