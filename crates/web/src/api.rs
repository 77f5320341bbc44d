//! The JSON API: one route per engine operation.
//!
//! Reads are `GET`, every change is `POST` (no state changes over `GET`).
//! Bodies are JSON, at most [`MAX_BODY`] bytes. Every error is a JSON
//! document `{"error": {"code", "message", "hint", "diagnostics"?}}`.
//!
//! Every request that may change something (any method but GET, HEAD and
//! OPTIONS) runs on behalf of its origin ([`audit_changes`]): the engine
//! records each change it makes, in words, under it; a request for which
//! nothing was recorded (refused, failed) is written as itself, `METHOD
//! /path` and its outcome. Never the body or the query string.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use switchboard_domain::ServiceId;
use switchboard_engine::views::*;
use switchboard_engine::{Engine, EngineError, InputError, Origin};
use switchboard_provision::AccountView;
use tracing::{debug, error};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt as _};
use utoipa_axum::routes;

use crate::contract::*;
use crate::error::{ApiError, ErrorCode};
use crate::input::{
    self, PathParam, ProvisioningChange, nic_settings_change, parse, parse_provision, path_number,
    provision_error,
};
use crate::openapi::error;

/// The largest request body accepted.
pub const MAX_BODY: usize = 64 * 1024;
/// The largest certificate upload request: the certificate and the key,
/// each at most `switchboard_pki::MAX_UPLOAD`, base64-encoded, and JSON.
pub const MAX_UPLOAD_BODY: usize = 1024 * 1024;
/// The longest revision comment accepted.
pub const MAX_COMMENT: usize = switchboard_domain::RevisionComment::MAX_CHARS;
/// Entries of the audit log answered when no `limit` is given.
pub const DEFAULT_AUDIT_LIMIT: usize = 200;
/// The largest `limit` of the audit log accepted.
pub const MAX_AUDIT_LIMIT: usize = 1000;

type AppState = Arc<Engine>;

/// The route table: every route of the API with its handler and its
/// OpenAPI operation (the handler's `#[utoipa::path]`); the router and the
/// [OpenAPI document](crate::openapi) are both made from it.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(status))
        .routes(routes!(monitor))
        .routes(routes!(nics))
        .routes(routes!(services))
        .routes(routes!(matrix))
        .routes(routes!(allow))
        .routes(routes!(deny))
        .routes(routes!(preset_production))
        .routes(routes!(set_port))
        .routes(routes!(discard))
        .routes(routes!(diff))
        .routes(routes!(update))
        .routes(routes!(rollback))
        .routes(routes!(confirm))
        .routes(routes!(revisions))
        .routes(routes!(revision))
        .routes(routes!(firewall))
        .routes(routes!(certs, import_cert).layer(body_limit(MAX_UPLOAD_BODY)))
        .routes(routes!(cert, delete_cert))
        .routes(routes!(cert_requests, request_cert))
        .routes(routes!(acme_cert))
        .routes(routes!(renew_cert))
        .routes(routes!(bind))
        .routes(routes!(unbind))
        .routes(routes!(cas, add_cas).layer(body_limit(MAX_UPLOAD_BODY)))
        .routes(routes!(set_nic))
        .routes(routes!(padlock))
        .routes(routes!(accounts, add_account))
        .routes(routes!(search_accounts))
        .routes(routes!(bulk_accounts))
        .routes(routes!(account, update_account, delete_account))
        .routes(routes!(import_accounts).layer(body_limit(MAX_UPLOAD_BODY * 2)))
        .routes(routes!(set_provisioning))
        .routes(routes!(activate))
        .routes(routes!(revoke))
        .routes(routes!(sms))
        .routes(routes!(resend_sms))
        .routes(routes!(audit))
        .routes(routes!(admin_password))
        .routes(routes!(admins, add_admin))
        .routes(routes!(change_admin, remove_admin))
        .routes(routes!(remove_admin_totp))
        .routes(routes!(totp_policy))
        .routes(routes!(begin_totp))
        .routes(routes!(confirm_totp))
        .routes(routes!(backup))
        .routes(routes!(restore).layer(body_limit(crate::https::MAX_REQUEST_BODY)))
        .routes(routes!(bans))
        .routes(routes!(set_ban_policy))
        .routes(routes!(unban))
        .routes(routes!(registrations))
        .routes(routes!(calls))
        .routes(routes!(fleet, fleet_join, fleet_leave))
}

pub fn router(engine: Arc<Engine>) -> Router {
    let (api, _) = routes().split_for_parts();
    api.fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(body_limit(MAX_BODY))
        .layer(middleware::from_fn_with_state(
            engine.clone(),
            audit_changes,
        ))
        .with_state(engine)
}

/// A response extension: this answer refused the request before it could
/// change or check anything (e.g. a throttled sign-in), and is not
/// written to the audit log, so that nobody can fill the log by knocking.
#[derive(Debug, Clone, Copy)]
pub struct NotAudited;

/// A request extension: nobody is signed in behind this request (the
/// console's public routes). Its answer is written to the audit log only
/// when it signed someone in ([`SignedInAs`]); otherwise it is only logged
/// (tracing, debug level), so that no anonymous client can fill the
/// durable log: not a malformed body, not a wrong password.
#[derive(Debug, Clone, Copy)]
pub struct Anonymous;

/// A response extension: this answer to an [`Anonymous`] request signed
/// someone in; it is audited under their origin.
#[derive(Debug, Clone)]
pub struct SignedInAs(pub Origin);

/// Middleware (`axum::middleware::from_fn_with_state(engine, audit_changes)`):
/// a request that may change something (any method but GET, HEAD and
/// OPTIONS) runs inside [`switchboard_engine::audit::on_behalf_of`] its
/// origin (the [`Requester`] extension; actor `unknown` without one), so
/// the engine records each change under it, in words. Once answered, a
/// request for which the engine recorded nothing is written as itself:
/// `METHOD /path` (never the body or the query string) and the outcome,
/// the status followed by the error code of a failure ([`ErrorCode`]),
/// prefixed `refused: ` (e.g. `refused: 409 pending-confirmation`); a
/// sign-in ([`SignedInAs`]) as `administrator NAME signed in`; answers
/// marked [`NotAudited`] are left out,
/// and so are the answers to [`Anonymous`] requests, but for a sign-in
/// ([`SignedInAs`]), and requests whose body did not arrive in time
/// ([`crate::https::BodyDeadline`]: refused before they changed anything).
/// A failed audit write is logged; the answer is sent all the same.
pub async fn audit_changes(
    State(engine): State<Arc<Engine>>,
    req: Request,
    next: Next,
) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    let origin = req
        .extensions()
        .get::<Requester>()
        .map(|r| r.0.clone())
        .unwrap_or_else(|| Origin {
            actor: "unknown".into(),
            address: "unknown".into(),
            arrival: None,
        });
    let anonymous = req.extensions().get::<Anonymous>().is_some();
    let action = format!("{} {}", req.method(), req.uri().path());
    let deadline = req
        .extensions()
        .get::<crate::https::BodyDeadline>()
        .cloned();
    // The engine records each change under this origin, where it happens.
    let (response, recorded) =
        switchboard_engine::audit::on_behalf_of(origin.clone(), next.run(req)).await;
    let body_too_slow = deadline.is_some_and(|d| d.passed());
    if response.extensions().get::<NotAudited>().is_some() || body_too_slow {
        return response;
    }
    let outcome = match response.extensions().get::<ErrorCode>() {
        Some(ErrorCode(code)) => format!("{} {code}", response.status().as_u16()),
        None => response.status().as_u16().to_string(),
    };
    let origin = match (anonymous, response.extensions().get::<SignedInAs>()) {
        (_, Some(SignedInAs(signed_in))) => {
            let entry = switchboard_engine::audit::Entry::new(
                "admin.sign-in",
                format!("administrator {} signed in", signed_in.actor),
                serde_json::json!({ "admin": signed_in.actor }),
            );
            if let Err(e) = engine.audit_entry(signed_in, entry, "done").await {
                error!(error = %e, "could not write the audit log");
            }
            return response;
        }
        (true, None) => {
            debug!(%action, %outcome, from = %origin.address, "anonymous request, not audited");
            return response;
        }
        (false, None) => origin,
    };
    // The engine described the change (or changes): nothing to add. A
    // request that changed nothing the engine records (refused, failed)
    // is written as itself, with its outcome.
    if recorded > 0 {
        return response;
    }
    // A console form that failed redirects (303) with its error code.
    let failed = !(response.status().is_success() || response.status().is_redirection())
        || response.extensions().get::<ErrorCode>().is_some();
    let outcome = if failed {
        format!("refused: {outcome}")
    } else {
        outcome
    };
    if let Err(e) = engine.audit(&origin, &action, &outcome).await {
        error!(error = %e, %action, %outcome, "could not write the audit log");
    }
    response
}

/// The body limit of a route (the innermost layer's wins): axum's
/// [`DefaultBodyLimit`] while a body is read, and [`WithinLimit`] for the
/// body a request announces, refused before it is read.
fn body_limit(
    max: usize,
) -> tower::ServiceBuilder<
    tower::layer::util::Stack<
        axum::Extension<BodyLimit>,
        tower::layer::util::Stack<DefaultBodyLimit, tower::layer::util::Identity>,
    >,
> {
    tower::ServiceBuilder::new()
        .layer(DefaultBodyLimit::max(max))
        .layer(axum::Extension(BodyLimit(max)))
}

/// The largest body the route accepts (a request extension).
#[derive(Debug, Clone, Copy)]
struct BodyLimit(usize);

/// A request whose `Content-Length` is within its route's limit: one over
/// it is answered 413 at once, before a byte of its body is read.
struct WithinLimit;

impl<S: Send + Sync> FromRequestParts<S> for WithinLimit {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let BodyLimit(limit) = parts
            .extensions
            .get::<BodyLimit>()
            .copied()
            .unwrap_or(BodyLimit(MAX_BODY));
        match crate::https::announced_too_large(&parts.headers, limit) {
            None => Ok(WithinLimit),
            Some(announced) => Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                format!(
                    "the request announces {announced} bytes; this route reads at most {limit}"
                ),
                "requests are at most 64 KiB (certificate uploads 1 MiB, account files 2 MiB)",
            )),
        }
    }
}

/// `Json`, with our error document on rejection; a body announced over the
/// route's limit is refused before it is read ([`WithinLimit`]).
struct Body<T>(T);

impl<S, T> FromRequest<S> for Body<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let (mut parts, body) = req.into_parts();
        WithinLimit::from_request_parts(&mut parts, state).await?;
        let req = Request::from_parts(parts, body);
        let axum::Json(value) = axum::Json::<T>::from_request(req, state).await?;
        Ok(Body(value))
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let (status, code, hint) = match &r {
            JsonRejection::MissingJsonContentType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "not-json",
                "send the body as JSON with `Content-Type: application/json`",
            ),
            _ if r.status() == StatusCode::PAYLOAD_TOO_LARGE => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                "requests are at most 64 KiB (certificate uploads 1 MiB)",
            ),
            _ => (
                StatusCode::BAD_REQUEST,
                "malformed-json",
                "check the request body against the API reference in the README",
            ),
        };
        ApiError::new(status, code, r.body_text(), hint)
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed-query",
            r.body_text(),
            "revision numbers are whole numbers",
        )
    }
}

/// Who is asking, from where: filled in by the transport's middleware.
#[derive(Debug, Clone)]
pub struct Requester(pub Origin);

impl<S: Send + Sync> FromRequestParts<S> for Requester {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Requester>()
            .cloned()
            .ok_or_else(|| ApiError::internal("request without origin"))
    }
}

type ApiResult = Result<Response, ApiError>;

fn ok<T: serde::Serialize>(value: T) -> ApiResult {
    Ok(Json(value).into_response())
}

#[utoipa::path(
    get,
    path = "/v1/status",
    operation_id = "getStatus",
    summary = "The appliance at a glance",
    tag = "status",
    responses(
        (status = 200, description = "Done.", body = StatusView),
    ),
)]
async fn status(State(e): State<AppState>) -> ApiResult {
    ok(e.status().await?)
}

#[utoipa::path(
    get,
    path = "/v1/monitor",
    operation_id = "getMonitor",
    summary = "The state monitoring reads (what `switchboard check` judges)",
    tag = "status",
    responses(
        (status = 200, description = "Done.", body = switchboard_engine::monitor::MonitorView),
    ),
)]
async fn monitor(State(e): State<AppState>) -> ApiResult {
    ok(e.monitor().await?)
}

#[utoipa::path(
    get,
    path = "/v1/calls",
    operation_id = "listCalls",
    summary = "The calls in progress: parties, start, media NICs, SRTP, packets relayed",
    tag = "calls",
    responses(
        (status = 200, description = "Done.", body = Vec<switchboard_engine::calls::CallView>),
    ),
)]
async fn calls(State(e): State<AppState>) -> ApiResult {
    ok(e.calls().await?)
}

#[utoipa::path(
    get,
    path = "/v1/bans",
    operation_id = "listBans",
    summary = "The addresses banned now and the ban policy",
    tag = "bans",
    responses(
        (status = 200, description = "Done.", body = switchboard_engine::bans::BansView),
    ),
)]
async fn bans(State(e): State<AppState>) -> ApiResult {
    ok(e.bans().await?)
}

#[utoipa::path(
    post,
    path = "/v1/bans/policy",
    operation_id = "setBanPolicy",
    summary = "Change the ban policy (candidate); what is not given is kept",
    tag = "bans",
    request_body = switchboard_domain::BanPolicyChange,
    responses(
        (status = 200, description = "Done.", body = Edit),
        (status = 400, response = error::BadRequest),
    ),
)]
async fn set_ban_policy(
    State(e): State<AppState>,
    Body(r): Body<switchboard_domain::BanPolicyChange>,
) -> ApiResult {
    ok(e.set_ban_policy(&r).await?)
}

#[utoipa::path(
    delete,
    path = "/v1/bans/{address}",
    operation_id = "unban",
    summary = "Lift the ban of an address at once",
    tag = "bans",
    params(("address" = String, Path, description = "The banned IPv4 or IPv6 address.")),
    responses(
        (status = 200, description = "Done.", body = switchboard_engine::bans::BanView),
        (status = 400, response = error::BadRequest),
        (status = 404, response = error::NotFound),
    ),
)]
async fn unban(State(e): State<AppState>, PathParam(address): PathParam<String>) -> ApiResult {
    ok(e.unban(&address).await?)
}

#[utoipa::path(
    get,
    path = "/v1/nics",
    operation_id = "listNics",
    summary = "The NICs and their services",
    tag = "matrix",
    responses(
        (status = 200, description = "Done.", body = Vec<NicView>),
    ),
)]
async fn nics(State(e): State<AppState>) -> ApiResult {
    ok(e.nics().await?)
}

#[utoipa::path(
    get,
    path = "/v1/services",
    operation_id = "listServices",
    summary = "The service catalog, ports and NICs",
    tag = "matrix",
    responses(
        (status = 200, description = "Done.", body = Vec<ServiceView>),
    ),
)]
async fn services(State(e): State<AppState>) -> ApiResult {
    ok(e.services().await?)
}

#[utoipa::path(
    get,
    path = "/v1/matrix",
    operation_id = "getMatrix",
    summary = "The matrix, candidate and applied",
    tag = "matrix",
    responses(
        (status = 200, description = "Done.", body = MatrixView),
    ),
)]
async fn matrix(State(e): State<AppState>) -> ApiResult {
    ok(e.matrix().await?)
}

#[utoipa::path(
    post,
    path = "/v1/matrix/allow",
    operation_id = "allowCell",
    summary = "Expose a service on a NIC (candidate)",
    tag = "matrix",
    request_body = CellRequest,
    responses(
        (status = 200, description = "Done.", body = Edit),
        (status = 422, response = error::UnprocessableEntity),
    ),
)]
async fn allow(State(e): State<AppState>, Body(r): Body<CellRequest>) -> ApiResult {
    ok(e.set_cell(parse(&r.service)?, &parse(&r.nic)?, true)
        .await?)
}

#[utoipa::path(
    post,
    path = "/v1/matrix/deny",
    operation_id = "denyCell",
    summary = "Stop exposing a service on a NIC (candidate)",
    tag = "matrix",
    request_body = CellRequest,
    responses(
        (status = 200, description = "Done.", body = Edit),
        (status = 422, response = error::UnprocessableEntity),
    ),
)]
async fn deny(State(e): State<AppState>, Body(r): Body<CellRequest>) -> ApiResult {
    ok(e.set_cell(parse(&r.service)?, &parse(&r.nic)?, false)
        .await?)
}

#[utoipa::path(
    post,
    path = "/v1/preset/production",
    operation_id = "presetProduction",
    summary = "Apply the production preset to the candidate",
    tag = "matrix",
    request_body = PresetRequest,
    responses(
        (status = 200, description = "Done.", body = Edit),
        (status = 422, response = error::UnprocessableEntity),
    ),
)]
async fn preset_production(State(e): State<AppState>, Body(r): Body<PresetRequest>) -> ApiResult {
    ok(
        e.preset_production(&parse(&r.internal)?, &parse(&r.external)?)
            .await?,
    )
}

#[utoipa::path(
    post,
    path = "/v1/ports",
    operation_id = "setPorts",
    summary = "Change a service's ports (candidate)",
    tag = "matrix",
    request_body = PortRequest,
    responses(
        (status = 200, description = "Done.", body = Edit),
        (status = 422, response = error::UnprocessableEntity),
    ),
)]
async fn set_port(State(e): State<AppState>, Body(r): Body<PortRequest>) -> ApiResult {
    ok(e.set_port(parse(&r.service)?, parse(&r.ports)?).await?)
}

#[utoipa::path(
    post,
    path = "/v1/discard",
    operation_id = "discardCandidate",
    summary = "Discard the candidate's changes",
    tag = "revisions",
    responses(
        (status = 200, description = "Done.", body = Edit),
    ),
)]
async fn discard(State(e): State<AppState>) -> ApiResult {
    ok(e.discard().await?)
}

#[utoipa::path(
    get,
    path = "/v1/diff",
    operation_id = "getDiff",
    summary = "Compare two revisions, or a revision and the candidate",
    tag = "revisions",
    params(DiffQuery),
    responses(
        (status = 200, description = "Done.", body = DiffView),
        (status = 400, response = error::BadRequest),
        (status = 404, response = error::NotFound),
    ),
)]
async fn diff(State(e): State<AppState>, q: Result<Query<DiffQuery>, QueryRejection>) -> ApiResult {
    let Query(q) = q?;
    ok(e.diff(q.from, q.to).await?)
}

#[utoipa::path(
    post,
    path = "/v1/update",
    operation_id = "update",
    summary = "Validate, apply and record the candidate",
    tag = "revisions",
    request_body = UpdateRequest,
    responses(
        (status = 200, description = "Done.", body = UpdateView),
        (status = 409, response = error::Conflict),
        (status = 502, response = error::BadGateway),
    ),
)]
async fn update(
    State(e): State<AppState>,
    Requester(origin): Requester,
    Body(r): Body<UpdateRequest>,
) -> ApiResult {
    ok(e.update(&origin, &r.comment, r.confirm_within).await?)
}

#[utoipa::path(
    post,
    path = "/v1/rollback",
    operation_id = "rollback",
    summary = "Apply an earlier revision again",
    tag = "revisions",
    request_body = RollbackRequest,
    responses(
        (status = 200, description = "Done.", body = UpdateView),
        (status = 404, response = error::NotFound),
        (status = 409, response = error::Conflict),
        (status = 502, response = error::BadGateway),
    ),
)]
async fn rollback(
    State(e): State<AppState>,
    Requester(origin): Requester,
    Body(r): Body<RollbackRequest>,
) -> ApiResult {
    ok(
        e.rollback(&origin, r.revision, &r.comment, r.confirm_within)
            .await?,
    )
}

#[utoipa::path(
    post,
    path = "/v1/confirm",
    operation_id = "confirm",
    summary = "Confirm the pending revision",
    tag = "revisions",
    responses(
        (status = 200, description = "Done.", body = ConfirmView),
        (status = 409, response = error::Conflict),
    ),
)]
async fn confirm(State(e): State<AppState>, Requester(origin): Requester) -> ApiResult {
    ok(e.confirm(&origin).await?)
}

#[utoipa::path(
    get,
    path = "/v1/fleet",
    operation_id = "fleetStatus",
    summary = "The fleet as this appliance sees it: membership, contact with etcd, the group's live members",
    tag = "fleet",
    responses(
        (status = 200, description = "Done.", body = switchboard_engine::fleet::FleetView),
    ),
)]
async fn fleet(State(e): State<AppState>) -> ApiResult {
    ok(e.fleet_view().await?)
}

#[utoipa::path(
    post,
    path = "/v1/fleet",
    operation_id = "fleetJoin",
    summary = "Join a fleet: etcd, group, site, the role of each NIC (replaces an earlier membership)",
    tag = "fleet",
    request_body = switchboard_domain::fleet::Membership,
    responses(
        (status = 200, description = "Done.", body = switchboard_engine::fleet::FleetView),
        (status = 400, response = error::BadRequest),
        (status = 422, response = error::UnprocessableEntity),
    ),
)]
async fn fleet_join(
    State(e): State<AppState>,
    Body(m): Body<switchboard_domain::fleet::Membership>,
) -> ApiResult {
    e.fleet_join(&m).await?;
    ok(e.fleet_view().await?)
}

#[utoipa::path(
    delete,
    path = "/v1/fleet",
    operation_id = "fleetLeave",
    summary = "Leave the fleet: local Updates are the administrator's again",
    tag = "fleet",
    responses(
        (status = 200, description = "Done.", body = switchboard_engine::fleet::FleetView),
    ),
)]
async fn fleet_leave(State(e): State<AppState>) -> ApiResult {
    e.fleet_leave().await?;
    ok(e.fleet_view().await?)
}

#[utoipa::path(
    get,
    path = "/v1/revisions",
    operation_id = "listRevisions",
    summary = "The revisions, newest first",
    tag = "revisions",
    responses(
        (status = 200, description = "Done.", body = Vec<switchboard_store::RevisionSummary>),
    ),
)]
async fn revisions(State(e): State<AppState>) -> ApiResult {
    ok(e.revisions().await?)
}

#[utoipa::path(
    get,
    path = "/v1/revisions/{number}",
    operation_id = "getRevision",
    summary = "One revision in full",
    tag = "revisions",
    params(("number" = u64, Path, minimum = 1, description = "The revision number.")),
    responses(
        (status = 200, description = "Done.", body = switchboard_store::Revision),
        (status = 400, response = error::BadRequest),
        (status = 404, response = error::NotFound),
    ),
)]
async fn revision(State(e): State<AppState>, PathParam(number): PathParam<u64>) -> ApiResult {
    ok(e.revision(number).await?)
}

#[utoipa::path(
    get,
    path = "/v1/firewall",
    operation_id = "getFirewall",
    summary = "The ruleset applied and loaded",
    tag = "status",
    responses(
        (status = 200, description = "Done.", body = FirewallView),
    ),
)]
async fn firewall(State(e): State<AppState>) -> ApiResult {
    ok(e.firewall().await?)
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no-such-endpoint",
        "there is no such API endpoint",
        "the endpoints are listed in the OpenAPI document (GET /openapi.json on the console) and in the README",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "this endpoint does not take that method",
        "reads are GET, changes are POST",
    )
}

fn base64(field: &str, text: &str) -> Result<Vec<u8>, ApiError> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed-base64",
                format!("{field} is not base64: {e}"),
                "send file contents base64-encoded (standard alphabet, with padding)",
            )
        })
}

#[utoipa::path(
    post,
    path = "/v1/certs",
    operation_id = "importCert",
    summary = "Import a certificate (and its key)",
    tag = "certificates",
    request_body = ImportCertRequest,
    responses(
        (status = 200, description = "Done.", body = CertView),
        (status = 409, response = error::Conflict),
        (status = 422, response = error::UnprocessableEntity),
    ),
)]
async fn import_cert(State(e): State<AppState>, Body(r): Body<ImportCertRequest>) -> ApiResult {
    let name = parse(&r.name)?;
    let bundle = base64("bundle", &r.bundle)?;
    let key = r.key.as_deref().map(|k| base64("key", k)).transpose()?;
    ok(
        e.import_cert(&name, &bundle, key.as_deref(), r.password.as_deref())
            .await?,
    )
}

#[utoipa::path(
    get,
    path = "/v1/certs",
    operation_id = "listCerts",
    summary = "The stored certificates",
    tag = "certificates",
    responses(
        (status = 200, description = "Done.", body = Vec<CertView>),
    ),
)]
async fn certs(State(e): State<AppState>) -> ApiResult {
    ok(e.certs().await?)
}

#[utoipa::path(
    get,
    path = "/v1/certs/{name}",
    operation_id = "getCert",
    summary = "One certificate and its chain",
    tag = "certificates",
    params(("name" = String, Path, description = "The certificate's name.")),
    responses(
        (status = 200, description = "Done.", body = CertDetail),
        (status = 400, response = error::BadRequest),
        (status = 404, response = error::NotFound),
    ),
)]
async fn cert(State(e): State<AppState>, PathParam(name): PathParam<String>) -> ApiResult {
    let (cert, chain_pem) = e.cert(&parse(&name)?).await?;
    ok(CertDetail { cert, chain_pem })
}

#[utoipa::path(
    delete,
    path = "/v1/certs/{name}",
    operation_id = "deleteCert",
    summary = "Delete a certificate no binding uses",
    tag = "certificates",
    params(("name" = String, Path, description = "The certificate's name.")),
    responses(
        (status = 200, description = "Done.", body = Deleted),
        (status = 400, response = error::BadRequest),
        (status = 404, response = error::NotFound),
        (status = 409, response = error::Conflict),
    ),
)]
async fn delete_cert(State(e): State<AppState>, PathParam(name): PathParam<String>) -> ApiResult {
    let name = parse(&name)?;
    e.delete_cert(&name).await?;
    ok(Deleted {
        deleted: name.to_string(),
    })
}

#[utoipa::path(
    post,
    path = "/v1/cert-requests",
    operation_id = "requestCert",
    summary = "Make a key on the appliance and a signing request (PKCS#10) for it",
    description = "The key is kept under the certificate's name and never shown; import the CA's answer with `POST /v1/certs` without a key.",
    tag = "certificates",
    request_body = CertRequestRequest,
    responses(
        (status = 200, description = "Done.", body = CertRequestView),
        (status = 400, response = error::BadRequest),
        (status = 409, response = error::Conflict),
        (status = 422, response = error::UnprocessableEntity),
    ),
)]
async fn request_cert(State(e): State<AppState>, Body(r): Body<CertRequestRequest>) -> ApiResult {
    let name = parse(&r.name)?;
    let dns: Vec<&str> = r.dns.iter().map(String::as_str).collect();
    let ips: Vec<&str> = r.ips.iter().map(String::as_str).collect();
    let (key_type, names) = crate::input::cert_request(&dns, &ips, r.key_type.as_deref())?;
    ok(e.request_cert(&name, key_type, names).await?)
}

#[utoipa::path(
    post,
    path = "/v1/acme",
    operation_id = "acmeCert",
    summary = "Obtain a certificate from an ACME CA (RFC 8555)",
    description = "The key and its request are made on the appliance; the CA validates each name with tls-alpn-01 on the web services' listener (the names must resolve to the appliance, the matrix must open web there). The certificate is stored under its name, to bind like any other. A CA's refusal comes with its problem type and detail; nothing is stored then.",
    tag = "certificates",
    request_body = AcmeRequest,
    responses(
        (status = 200, description = "Issued and stored.", body = CertView),
        (status = 400, response = error::BadRequest),
        (status = 409, response = error::Conflict),
        (status = 502, response = error::BadGateway),
    ),
)]
async fn acme_cert(State(e): State<AppState>, Body(r): Body<AcmeRequest>) -> ApiResult {
    let domains: Vec<&str> = r.domains.iter().map(String::as_str).collect();
    let order = crate::input::acme_order(
        &r.name,
        &domains,
        r.directory,
        r.contact,
        r.challenge.as_deref(),
    )?;
    ok(e.acme_issue(order).await?)
}

#[utoipa::path(
    post,
    path = "/v1/certs/{name}/renew",
    operation_id = "renewCert",
    summary = "Renew a certificate from an ACME CA now",
    description = "A new key and certificate for the same names, stored as `NAME-N`, take the old one's place in every binding: applied as a new revision (actor `acme`) when the running revision presents it. The daemon does this by itself when a third of the lifetime is left; this asks for it now. Refused while a revision is on trial.",
    tag = "certificates",
    params(("name" = String, Path, description = "The certificate's name (the one in use).")),
    responses(
        (status = 200, description = "Renewed.", body = RenewalView),
        (status = 400, response = error::BadRequest),
        (status = 404, response = error::NotFound),
        (status = 409, response = error::Conflict),
        (status = 502, response = error::BadGateway),
    ),
)]
async fn renew_cert(State(e): State<AppState>, PathParam(name): PathParam<String>) -> ApiResult {
    ok(e.acme_renew(&parse(&name)?).await?)
}

#[utoipa::path(
    get,
    path = "/v1/cert-requests",
    operation_id = "listCertRequests",
    summary = "The keys made on the appliance that wait for their certificate, with their requests",
    tag = "certificates",
    responses(
        (status = 200, description = "Done.", body = Vec<CertRequestView>),
    ),
)]
async fn cert_requests(State(e): State<AppState>) -> ApiResult {
    ok(e.cert_requests().await?)
}

#[utoipa::path(
    post,
    path = "/v1/certs/bind",
    operation_id = "bindCert",
    summary = "Bind a certificate to a TLS service (candidate)",
    tag = "certificates",
    request_body = BindRequest,
    responses(
        (status = 200, description = "Done.", body = Edit),
        (status = 404, response = error::NotFound),
        (status = 409, response = error::Conflict),
        (status = 422, response = error::UnprocessableEntity),
    ),
)]
async fn bind(State(e): State<AppState>, Body(r): Body<BindRequest>) -> ApiResult {
    let nic = r.nic.as_deref().map(parse).transpose()?;
    ok(
        e.bind(parse(&r.service)?, nic.as_ref(), &parse(&r.cert)?, r.force)
            .await?,
    )
}

#[utoipa::path(
    post,
    path = "/v1/certs/unbind",
    operation_id = "unbindCert",
    summary = "Remove a binding (candidate)",
    tag = "certificates",
    request_body = UnbindRequest,
    responses(
        (status = 200, description = "Done.", body = Edit),
        (status = 409, response = error::Conflict),
        (status = 422, response = error::UnprocessableEntity),
    ),
)]
async fn unbind(State(e): State<AppState>, Body(r): Body<UnbindRequest>) -> ApiResult {
    let nic = r.nic.as_deref().map(parse).transpose()?;
    ok(e.unbind(parse(&r.service)?, nic.as_ref()).await?)
}

#[utoipa::path(
    post,
    path = "/v1/cas",
    operation_id = "addCas",
    summary = "Trust CA certificates",
    tag = "certificates",
    request_body = CasRequest,
    responses(
        (status = 200, description = "Done.", body = Vec<CaView>),
        (status = 422, response = error::UnprocessableEntity),
    ),
)]
async fn add_cas(State(e): State<AppState>, Body(r): Body<CasRequest>) -> ApiResult {
    ok(e.add_cas(&base64("certificates", &r.certificates)?).await?)
}

#[utoipa::path(
    get,
    path = "/v1/cas",
    operation_id = "listCas",
    summary = "The CA certificates trusted",
    tag = "certificates",
    responses(
        (status = 200, description = "Done.", body = Vec<CaView>),
    ),
)]
async fn cas(State(e): State<AppState>) -> ApiResult {
    ok(e.cas().await?)
}

#[utoipa::path(
    post,
    path = "/v1/nics/settings",
    operation_id = "setNic",
    summary = "A NIC's host name and public address (candidate)",
    tag = "certificates",
    request_body = NicSettingsRequest,
    responses(
        (status = 200, description = "Done.", body = Edit),
        (status = 422, response = error::UnprocessableEntity),
    ),
)]
async fn set_nic(State(e): State<AppState>, Body(r): Body<NicSettingsRequest>) -> ApiResult {
    let change = nic_settings_change(
        r.hostname.as_deref(),
        r.public_address.as_deref(),
        r.resolvers.as_deref(),
    )?;
    ok(e.change_nic(&parse(&r.nic)?, change).await?)
}

#[utoipa::path(
    get,
    path = "/v1/padlock",
    operation_id = "padlock",
    summary = "The padlock check of every TLS binding",
    tag = "certificates",
    responses(
        (status = 200, description = "Done.", body = Vec<PadlockView>),
    ),
)]
async fn padlock(State(e): State<AppState>) -> ApiResult {
    ok(e.padlock().await?)
}

#[utoipa::path(
    post,
    path = "/v1/accounts",
    operation_id = "addAccount",
    summary = "Create a SIP account",
    tag = "accounts",
    request_body = AccountRequest,
    responses(
        (status = 200, description = "Done.", body = AccountView),
        (status = 409, response = error::Conflict),
        (status = 422, response = error::UnprocessableEntity),
    ),
)]
async fn add_account(State(e): State<AppState>, Body(r): Body<AccountRequest>) -> ApiResult {
    use switchboard_provision as p;
    let new = p::NewAccount {
        username: r
            .username
            .as_deref()
            .map(|u| parse_provision!(p::Username, u))
            .transpose()?,
        display_name: r
            .name
            .as_deref()
            .map(|n| parse_provision!(p::DisplayName, n))
            .transpose()?,
        phone: parse_provision!(p::PhoneNumber, r.phone)?,
        group: r
            .group
            .as_deref()
            .map(|g| parse_provision!(p::Group, g))
            .transpose()?,
        profile: r
            .profile
            .as_deref()
            .map(|x| parse_provision!(p::ClientProfile, x))
            .transpose()?
            .unwrap_or_default(),
    };
    ok(e.add_account(new).await?)
}

#[utoipa::path(
    get,
    path = "/v1/accounts",
    operation_id = "listAccounts",
    summary = "The SIP accounts",
    tag = "accounts",
    responses(
        (status = 200, description = "Done.", body = Vec<AccountView>),
    ),
)]
async fn accounts(State(e): State<AppState>) -> ApiResult {
    ok(e.accounts().await?)
}

#[utoipa::path(
    get,
    path = "/v1/search/accounts",
    operation_id = "searchAccounts",
    summary = "A page of accounts, searched, filtered by state and sorted",
    tag = "accounts",
    params(AccountSearchQuery),
    responses(
        (status = 200, description = "Done.", body = AccountListView),
        (status = 400, response = error::BadRequest),
    ),
)]
async fn search_accounts(
    State(e): State<AppState>,
    q: Result<Query<AccountSearchQuery>, QueryRejection>,
) -> ApiResult {
    let Query(q) = q.map_err(|r| {
        ApiError::from(EngineError::Input(InputError::AccountSearch(r.body_text())))
    })?;
    let search = switchboard_engine::accounts::AccountSearch::new(
        q.q.as_deref(),
        q.state.as_deref(),
        q.sort.as_deref(),
        q.page,
        q.per_page,
    )?;
    ok(e.find_accounts(&search).await?)
}

#[utoipa::path(
    post,
    path = "/v1/bulk/accounts",
    operation_id = "bulkAccounts",
    summary = "One action on many accounts, with a result for each",
    tag = "accounts",
    request_body = BulkRequest,
    responses(
        (status = 200, description = "Each account's result, in order (a failed account does not stop the others).", body = Vec<BulkResultView>),
        (status = 400, response = error::BadRequest),
        (status = 422, response = error::UnprocessableEntity),
    ),
)]
async fn bulk_accounts(State(e): State<AppState>, Body(r): Body<BulkRequest>) -> ApiResult {
    let action = input::bulk_action(&r.action, r.group.as_deref())?;
    let usernames = input::usernames(&r.usernames)?;
    ok(e.bulk(&action, &usernames).await?)
}

#[utoipa::path(
    get,
    path = "/v1/accounts/{username}",
    operation_id = "getAccount",
    summary = "One account",
    tag = "accounts",
    params(("username" = String, Path, description = "The account's user name.")),
    responses(
        (status = 200, description = "Done.", body = AccountView),
        (status = 404, response = error::NotFound),
        (status = 422, response = error::UnprocessableEntity),
    ),
)]
async fn account(State(e): State<AppState>, PathParam(username): PathParam<String>) -> ApiResult {
    ok(e.account(&parse_provision!(
        switchboard_provision::Username,
        username
    )?)
    .await?)
}

#[utoipa::path(
    get,
    path = "/v1/accounts/{username}/registrations",
    operation_id = "getRegistrations",
    summary = "The contacts an account has registered now, read from Kamailio",
    tag = "accounts",
    params(("username" = String, Path, description = "The account's user name.")),
    responses(
        (status = 200, description = "Done.", body = switchboard_engine::accounts::RegistrationsView),
        (status = 404, response = error::NotFound),
        (status = 422, response = error::UnprocessableEntity),
        (status = 502, response = error::BadGateway),
    ),
)]
async fn registrations(
    State(e): State<AppState>,
    PathParam(username): PathParam<String>,
) -> ApiResult {
    ok(e.registrations(&parse_provision!(
        switchboard_provision::Username,
        username
    )?)
    .await?)
}

#[utoipa::path(
    delete,
    path = "/v1/accounts/{username}",
    operation_id = "deleteAccount",
    summary = "Delete an account",
    tag = "accounts",
    params(("username" = String, Path, description = "The account's user name.")),
    responses(
        (status = 200, description = "Done.", body = Deleted),
        (status = 404, response = error::NotFound),
        (status = 422, response = error::UnprocessableEntity),
        (status = 502, response = error::BadGateway),
    ),
)]
async fn delete_account(
    State(e): State<AppState>,
    PathParam(username): PathParam<String>,
) -> ApiResult {
    let username = parse_provision!(switchboard_provision::Username, username)?;
    e.delete_account(&username).await?;
    ok(Deleted {
        deleted: username.to_string(),
    })
}

#[utoipa::path(
    post,
    path = "/v1/accounts/import",
    operation_id = "importAccounts",
    summary = "Create accounts from a CSV file (all or none)",
    tag = "accounts",
    request_body = CsvImportRequest,
    responses(
        (status = 200, description = "Done.", body = Vec<AccountView>),
        (status = 409, response = error::Conflict),
        (status = 422, response = error::UnprocessableEntity),
    ),
)]
async fn import_accounts(State(e): State<AppState>, Body(r): Body<CsvImportRequest>) -> ApiResult {
    ok(e.import_accounts(&base64("csv", &r.csv)?).await?)
}

#[utoipa::path(
    post,
    path = "/v1/provisioning",
    operation_id = "setProvisioning",
    summary = "Change the provisioning settings (candidate); what is not given is kept",
    tag = "accounts",
    request_body = ProvisioningRequest,
    responses(
        (status = 200, description = "Done.", body = Edit),
        (status = 422, response = error::UnprocessableEntity),
    ),
)]
async fn set_provisioning(
    State(e): State<AppState>,
    Body(r): Body<ProvisioningRequest>,
) -> ApiResult {
    use switchboard_domain::install::Platform;
    let mut app_stores = Vec::new();
    for (platform, url) in &r.app_stores {
        let known: Platform = serde_json::from_value(serde_json::Value::String(platform.clone()))
            .map_err(|_| {
            provision_error(
                "unknown-platform",
                format!(
                    "unknown platform {:?}",
                    platform.chars().take(32).collect::<String>()
                ),
                "the platforms are android, ios and other",
            )
        })?;
        app_stores.push((known, url.as_str()));
    }
    let change = ProvisioningChange {
        sip_tls_hostname: r.sip_tls_hostname.as_deref(),
        web_uri: r.web_uri.as_deref(),
        app_stores,
    }
    .parse()?;
    ok(e.change_provisioning(change).await?)
}

#[utoipa::path(
    post,
    path = "/v1/activate",
    operation_id = "activate",
    summary = "Send an account's activation SMS",
    tag = "accounts",
    request_body = ActivateRequest,
    responses(
        (status = 200, description = "Done.", body = ActivationView),
        (status = 404, response = error::NotFound),
        (status = 409, response = error::Conflict),
        (status = 422, response = error::UnprocessableEntity),
        (status = 429, response = error::TooManyRequests),
    ),
)]
async fn activate(State(e): State<AppState>, Body(r): Body<ActivateRequest>) -> ApiResult {
    ok(e.activate(&parse_provision!(
        switchboard_provision::Username,
        r.username
    )?)
    .await?)
}

#[utoipa::path(
    post,
    path = "/v1/revoke",
    operation_id = "revoke",
    summary = "Kill an account's unused activation links and withdraw their undelivered SMS",
    tag = "accounts",
    request_body = ActivateRequest,
    responses(
        (status = 200, description = "Done.", body = RevokeView),
        (status = 404, response = error::NotFound),
        (status = 422, response = error::UnprocessableEntity),
    ),
)]
async fn revoke(State(e): State<AppState>, Body(r): Body<ActivateRequest>) -> ApiResult {
    ok(e.revoke(&parse_provision!(
        switchboard_provision::Username,
        r.username
    )?)
    .await?)
}

#[utoipa::path(
    get,
    path = "/v1/sms",
    operation_id = "listSms",
    summary = "The SMS queue and outbox",
    tag = "accounts",
    responses(
        (status = 200, description = "Done.", body = Vec<SmsView>),
    ),
)]
async fn sms(State(e): State<AppState>) -> ApiResult {
    ok(e.sms().await?)
}

#[utoipa::path(
    post,
    path = "/v1/sms/{id}/resend",
    operation_id = "resendSms",
    summary = "Queue a failed SMS again",
    tag = "accounts",
    params(("id" = u64, Path, minimum = 1, description = "The message's id (`GET /v1/sms`).")),
    responses(
        (status = 200, description = "Done.", body = SmsView),
        (status = 400, response = error::BadRequest),
        (status = 404, response = error::NotFound),
        (status = 409, response = error::Conflict),
    ),
)]
async fn resend_sms(State(e): State<AppState>, PathParam(id): PathParam<String>) -> ApiResult {
    let id = path_number(
        &id,
        "SMS ids",
        "list the messages with `switchboard sms list`",
    )?;
    ok(e.resend_sms(id).await?)
}

#[utoipa::path(
    patch,
    path = "/v1/accounts/{username}",
    operation_id = "updateAccount",
    summary = "Change an account",
    tag = "accounts",
    request_body = AccountUpdate,
    params(("username" = String, Path, description = "The account's user name.")),
    responses(
        (status = 200, description = "Done.", body = AccountView),
        (status = 404, response = error::NotFound),
        (status = 409, response = error::Conflict),
        (status = 422, response = error::UnprocessableEntity),
        (status = 502, response = error::BadGateway),
    ),
)]
async fn update_account(
    State(e): State<AppState>,
    PathParam(username): PathParam<String>,
    Body(r): Body<AccountUpdate>,
) -> ApiResult {
    use switchboard_provision as p;
    let optional = |v: Option<String>| v.map(|s| if s.is_empty() { None } else { Some(s) });
    let change = switchboard_engine::accounts::AccountChange {
        phone: r
            .phone
            .as_deref()
            .map(|x| parse_provision!(p::PhoneNumber, x))
            .transpose()?,
        display_name: optional(r.name)
            .map(|n| n.map(|n| parse_provision!(p::DisplayName, n)).transpose())
            .transpose()?,
        group: optional(r.group)
            .map(|g| g.map(|g| parse_provision!(p::Group, g)).transpose())
            .transpose()?,
        profile: r
            .profile
            .as_deref()
            .map(|x| parse_provision!(p::ClientProfile, x))
            .transpose()?,
        new_password: r.new_password,
    };
    let username = parse_provision!(p::Username, username)?;
    ok(e.update_account(&username, change).await?)
}

fn bad_query(message: String) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "malformed-query",
        message,
        format!(
            "limit is a whole number from 1 to {MAX_AUDIT_LIMIT} ({MAX_AUDIT_EXPORT} for csv or jsonl), since and until RFC 3339 times, format json, csv or jsonl, e.g. /v1/audit?actor=alice&kind=cert&since=2026-12-01T00:00:00Z&format=csv"
        ),
    )
}

/// The entries of an audit export at most.
pub const MAX_AUDIT_EXPORT: usize = 100_000;

/// The filter of an audit query, checked.
pub fn audit_filter(
    q: &AuditQuery,
) -> Result<(switchboard_store::AuditFilter, &'static str), ApiError> {
    let format = match q.format.as_deref().unwrap_or("json") {
        "json" => "json",
        "csv" => "csv",
        "jsonl" => "jsonl",
        other => {
            return Err(bad_query(format!(
                "format {:?} is not one of json, csv, jsonl",
                other.chars().take(20).collect::<String>()
            )));
        }
    };
    let max = if format == "json" {
        MAX_AUDIT_LIMIT
    } else {
        MAX_AUDIT_EXPORT
    };
    let limit = q.limit.unwrap_or(if format == "json" {
        DEFAULT_AUDIT_LIMIT
    } else {
        MAX_AUDIT_EXPORT
    });
    if !(1..=max).contains(&limit) {
        return Err(bad_query(format!(
            "a limit of {limit} is not accepted: give 1 to {max}"
        )));
    }
    let time = |name: &str, t: &Option<String>| -> Result<Option<jiff::Timestamp>, ApiError> {
        match t.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
            None => Ok(None),
            Some(t) => t.parse().map(Some).map_err(|_| {
                bad_query(format!(
                    "{name} {:?} is not an RFC 3339 time",
                    t.chars().take(40).collect::<String>()
                ))
            }),
        }
    };
    let text = |t: &Option<String>| {
        t.as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| {
                t.chars()
                    .take(switchboard_engine::audit::MAX_AUDIT_TEXT)
                    .collect()
            })
    };
    Ok((
        switchboard_store::AuditFilter {
            actor: text(&q.actor),
            kind: text(&q.kind),
            since: time("since", &q.since)?,
            until: time("until", &q.until)?,
            limit,
        },
        format,
    ))
}

/// The entries in `format`: JSON, or an export (CSV, JSON Lines) to save.
pub fn audit_answer(entries: &[AuditView], format: &str) -> Response {
    let (body, content_type, file) = match format {
        "csv" => (
            switchboard_engine::audit::to_csv(entries),
            "text/csv; charset=utf-8",
            "audit.csv",
        ),
        "jsonl" => (
            switchboard_engine::audit::to_jsonl(entries),
            "application/jsonl",
            "audit.jsonl",
        ),
        _ => return Json(entries).into_response(),
    };
    (
        [
            (axum::http::header::CONTENT_TYPE, content_type.to_owned()),
            (
                axum::http::header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file}\""),
            ),
        ],
        body,
    )
        .into_response()
}

#[utoipa::path(
    get,
    path = "/v1/audit",
    operation_id = "listAudit",
    summary = "The audit log of changes, newest first, filtered by actor, kind and time; as JSON, CSV or JSON Lines",
    tag = "admin",
    params(AuditQuery),
    responses(
        (status = 200, description = "Done: JSON; with `format=csv`, text/csv; with `format=jsonl`, application/jsonl.", body = Vec<AuditView>),
        (status = 400, response = error::BadRequest),
    ),
)]
async fn audit(
    State(e): State<AppState>,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> ApiResult {
    let Query(q) = q.map_err(|r| bad_query(r.body_text()))?;
    let (filter, format) = audit_filter(&q)?;
    let entries = e.audit_query(&filter).await?;
    Ok(audit_answer(&entries, format))
}

/// The body of a password change, refused without repeating any of it:
/// a parser's message may quote a value.
fn password_body(
    body: Result<axum::Json<PasswordRequest>, JsonRejection>,
) -> Result<PasswordRequest, ApiError> {
    match body {
        Ok(axum::Json(r)) => Ok(r),
        Err(r @ JsonRejection::MissingJsonContentType(_)) => Err(r.into()),
        Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(r.into()),
        Err(_) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed-json",
            "the body is not a password change: expected a JSON object with username, password and, from the console, current_password (strings), and nothing else",
            "check the request body against the API reference in the README",
        )),
    }
}

#[utoipa::path(
    post,
    path = "/v1/admin/password",
    operation_id = "setAdminPassword",
    summary = "Set an administrator's password",
    tag = "admin",
    request_body = PasswordRequest,
    responses(
        (status = 200, description = "Done.", body = PasswordChanged),
        (status = 403, response = error::Forbidden),
        (status = 429, response = error::TooManyRequests),
    ),
)]
async fn admin_password(
    State(e): State<AppState>,
    Requester(origin): Requester,
    _: WithinLimit,
    body: Result<axum::Json<PasswordRequest>, JsonRejection>,
) -> ApiResult {
    let r = password_body(body)?;
    let from_console = origin
        .arrival
        .is_some_and(|a| a.service == ServiceId::Console);
    let username = r.username.unwrap_or_else(|| {
        if from_console {
            origin.actor.clone()
        } else {
            switchboard_engine::DEFAULT_ADMIN.to_owned()
        }
    });
    if from_console {
        if username != origin.actor {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "not-your-password",
                "over the console an administrator changes their own password only",
                "sign in as that administrator, or use `switchboard admin set-password` on the appliance",
            ));
        }
        let current = r.current_password.as_deref().unwrap_or_default();
        if !e.verify_password(&username, current).await? {
            return Err(EngineError::WrongPassword.into());
        }
    }
    e.set_admin_password(&origin, &username, &r.password)
        .await?;
    ok(PasswordChanged {
        username,
        changed: true,
    })
}

#[utoipa::path(
    get,
    path = "/v1/admins",
    operation_id = "listAdmins",
    summary = "The administrators, their roles and second factors",
    tag = "admin",
    responses((status = 200, description = "Done.", body = Vec<switchboard_engine::AdminView>)),
)]
async fn admins(State(e): State<AppState>) -> ApiResult {
    ok(e.admins().await?)
}

#[utoipa::path(
    post,
    path = "/v1/admins",
    operation_id = "addAdmin",
    summary = "Add an administrator with a role and an initial password",
    tag = "admin",
    request_body = NewAdminRequest,
    responses(
        (status = 200, description = "Done.", body = switchboard_engine::AdminView),
        (status = 400, response = error::BadRequest),
        (status = 409, response = error::Conflict),
    ),
)]
async fn add_admin(State(e): State<AppState>, Body(r): Body<NewAdminRequest>) -> ApiResult {
    ok(e.add_admin(&r.username, &r.password, r.role).await?)
}

#[utoipa::path(
    post,
    path = "/v1/admins/{username}",
    operation_id = "changeAdmin",
    summary = "Change an administrator's role, or disable or enable it (its sessions end)",
    tag = "admin",
    params(("username" = String, Path, description = "The administrator's name.")),
    request_body = AdminChangeRequest,
    responses(
        (status = 200, description = "Done.", body = switchboard_engine::AdminView),
        (status = 404, response = error::NotFound),
        (status = 409, response = error::Conflict),
    ),
)]
async fn change_admin(
    State(e): State<AppState>,
    PathParam(username): PathParam<String>,
    Body(r): Body<AdminChangeRequest>,
) -> ApiResult {
    // Applied in turn (the role first), each checked on its own: a
    // refused second change leaves the first one made.
    let mut view = None;
    if let Some(role) = r.role {
        view = Some(e.set_admin_role(&username, role).await?);
    }
    if let Some(disabled) = r.disabled {
        view = Some(e.set_admin_disabled(&username, disabled).await?);
    }
    match view {
        Some(v) => ok(v),
        None => ok(e
            .admins()
            .await?
            .into_iter()
            .find(|a| a.username == username)
            .ok_or(EngineError::NoSuchAdmin(username))?),
    }
}

#[utoipa::path(
    delete,
    path = "/v1/admins/{username}",
    operation_id = "removeAdmin",
    summary = "Remove an administrator (its sessions end)",
    tag = "admin",
    params(("username" = String, Path, description = "The administrator's name.")),
    responses(
        (status = 200, description = "Done.", body = Deleted),
        (status = 404, response = error::NotFound),
        (status = 409, response = error::Conflict),
    ),
)]
async fn remove_admin(
    State(e): State<AppState>,
    PathParam(username): PathParam<String>,
) -> ApiResult {
    e.remove_admin(&username).await?;
    ok(Deleted { deleted: username })
}

#[utoipa::path(
    delete,
    path = "/v1/admins/{username}/totp",
    operation_id = "removeAdminTotp",
    summary = "Remove an administrator's second factor and recovery codes (a lost phone)",
    tag = "admin",
    params(("username" = String, Path, description = "The administrator's name.")),
    responses(
        (status = 200, description = "Done.", body = Deleted),
        (status = 404, response = error::NotFound),
    ),
)]
async fn remove_admin_totp(
    State(e): State<AppState>,
    PathParam(username): PathParam<String>,
) -> ApiResult {
    e.remove_totp(&username).await?;
    ok(Deleted {
        deleted: format!("second factor of {username}"),
    })
}

#[utoipa::path(
    post,
    path = "/v1/admin/totp-policy",
    operation_id = "setTotpPolicy",
    summary = "Whether the administrators of a role must sign in with a second factor",
    tag = "admin",
    request_body = TotpPolicyRequest,
    responses((status = 200, description = "Done.", body = Vec<switchboard_engine::Role>)),
)]
async fn totp_policy(State(e): State<AppState>, Body(r): Body<TotpPolicyRequest>) -> ApiResult {
    e.set_totp_required(r.role, r.required).await?;
    ok(e.totp_required_roles().await?)
}

/// The signed-in administrator (over the console); on the local socket
/// there is none.
fn me(origin: &Origin) -> Result<String, ApiError> {
    if origin
        .arrival
        .is_some_and(|a| a.service == ServiceId::Console)
    {
        Ok(origin.actor.clone())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "console-only",
            "a second factor is enrolled by the administrator it is for, signed in to the console",
            "sign in to the console and open Second factor",
        ))
    }
}

#[utoipa::path(
    post,
    path = "/v1/me/totp",
    operation_id = "beginTotp",
    summary = "Begin the signed-in administrator's TOTP enrolment: a new secret, shown once",
    tag = "admin",
    responses(
        (status = 200, description = "Done.", body = switchboard_engine::TotpEnrolment),
        (status = 403, response = error::Forbidden),
    ),
)]
async fn begin_totp(State(e): State<AppState>, Requester(origin): Requester) -> ApiResult {
    ok(e.begin_totp(&me(&origin)?).await?)
}

#[utoipa::path(
    post,
    path = "/v1/me/totp/confirm",
    operation_id = "confirmTotp",
    summary = "Confirm the enrolment with the authenticator's code: the recovery codes, shown once",
    tag = "admin",
    request_body = TotpCodeRequest,
    responses(
        (status = 200, description = "Done.", body = switchboard_engine::RecoveryCodes),
        (status = 403, response = error::Forbidden),
        (status = 409, response = error::Conflict),
    ),
)]
async fn confirm_totp(
    State(e): State<AppState>,
    Requester(origin): Requester,
    Body(r): Body<TotpCodeRequest>,
) -> ApiResult {
    ok(e.confirm_totp(&me(&origin)?, &r.code).await?)
}

#[utoipa::path(
    post,
    path = "/v1/backup",
    operation_id = "backup",
    summary = "The whole configuration as an age file encrypted to the passphrase",
    tag = "admin",
    request_body = BackupRequest,
    responses(
        (status = 200, description = "The archive.", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 409, response = error::Conflict),
    ),
)]
async fn backup(State(e): State<AppState>, Body(r): Body<BackupRequest>) -> ApiResult {
    let archive = e.backup(&r.passphrase).await?;
    Ok(backup_answer(archive))
}

/// The archive as a download.
pub fn backup_answer(archive: Vec<u8>) -> Response {
    let name = format!(
        "switchboard-{}.age",
        jiff::Timestamp::now().strftime("%Y%m%d-%H%M%S")
    );
    (
        [
            (
                axum::http::header::CONTENT_TYPE,
                "application/octet-stream".to_owned(),
            ),
            (
                axum::http::header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        archive,
    )
        .into_response()
}

#[utoipa::path(
    post,
    path = "/v1/restore",
    operation_id = "restore",
    summary = "Restore an archive: its certificates, accounts and administrators added, its candidate in place of this one's (to review and Update)",
    tag = "admin",
    request_body = RestoreRequest,
    responses(
        (status = 200, description = "Done.", body = switchboard_engine::backup::RestoreView),
        (status = 400, response = error::BadRequest),
        (status = 409, response = error::Conflict),
    ),
)]
async fn restore(State(e): State<AppState>, Body(r): Body<RestoreRequest>) -> ApiResult {
    use base64::Engine as _;
    let archive = base64::engine::general_purpose::STANDARD
        .decode(r.archive.trim())
        .map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "backup-damaged",
                "the archive is not base64",
                "send the age file base64-encoded in `archive`",
            )
        })?;
    ok(e.restore(&archive, &r.passphrase).await?)
}

#[cfg(test)]
mod tests {
    use axum::body::Body as HttpBody;
    use axum::http::Request as HttpRequest;
    use http_body_util::BodyExt as _;
    use serde_json::json;
    use switchboard_engine::Arrival;
    use tower::ServiceExt as _;

    use super::*;

    fn engine() -> Arc<Engine> {
        Arc::new(Engine::in_memory().expect("engine"))
    }

    fn console() -> Origin {
        Origin {
            actor: "admin".into(),
            address: "console from 192.0.2.2".into(),
            arrival: Some(Arrival {
                service: ServiceId::Console,
                local: "192.0.2.1".parse().expect("ip"),
                port: 8443,
            }),
        }
    }

    /// POST `body` to `path` as `origin` (none: no `Requester`); the
    /// status and the error code.
    async fn post(
        e: &Arc<Engine>,
        origin: Option<Origin>,
        path: &str,
        body: serde_json::Value,
    ) -> (u16, String) {
        let mut req = HttpRequest::post(path)
            .header("content-type", "application/json")
            .body(HttpBody::from(body.to_string()))
            .expect("request");
        if let Some(o) = origin {
            req.extensions_mut().insert(Requester(o));
        }
        let resp = router(e.clone()).oneshot(req).await.expect("answer");
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        let doc: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        (
            status,
            doc["error"]["code"].as_str().unwrap_or("").to_owned(),
        )
    }

    #[tokio::test]
    async fn ban_endpoints_refuse_bad_input_and_change_nothing() {
        let e = engine();
        let before = e.candidate().await.expect("candidate");
        for body in [
            json!({"failures": 0}),
            json!({"failures": -1}),
            json!({"failures": "5"}),
            json!({"failures": 4294967296u64}),
            json!({"trusted": ["192.0.2.1/24"]}),
            json!({"trusted": "192.0.2.0/24"}),
            json!({"trusted": ["x".repeat(10_000)]}),
            json!({"unknown": 1}),
            json!({"ban_secs": 600, "max_ban_secs": 60}),
        ] {
            let (status, code) = post(&e, Some(console()), "/v1/bans/policy", body.clone()).await;
            assert_eq!(status, 400, "{body}: {code}");
        }
        assert_eq!(e.candidate().await.expect("candidate"), before);
        let (status, _) = post(
            &e,
            Some(console()),
            "/v1/bans/policy",
            json!({"failures": 8}),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(e.candidate().await.expect("candidate").bans.failures, 8);
        for (path, want) in [
            ("/v1/bans/not-an-address", (400, "invalid-address")),
            ("/v1/bans/192.0.2.0%2F24", (400, "invalid-address")),
            ("/v1/bans/198.51.100.9", (404, "not-banned")),
            ("/v1/bans/2001:db8::9", (404, "not-banned")),
        ] {
            let mut req = HttpRequest::delete(path)
                .body(HttpBody::empty())
                .expect("request");
            req.extensions_mut().insert(Requester(console()));
            let resp = router(e.clone()).oneshot(req).await.expect("answer");
            let status = resp.status().as_u16();
            let bytes = resp.into_body().collect().await.expect("body").to_bytes();
            let doc: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
            assert_eq!(
                (status, doc["error"]["code"].as_str().unwrap_or("")),
                want,
                "{path}"
            );
        }
    }

    /// A leaf and its key encrypted with PBKDF2 at the most iterations
    /// accepted: the costliest import allowed, a second or more of CPU.
    fn costly_import(name: &str) -> serde_json::Value {
        use base64::Engine as _;
        use switchboard_pki::testpki;
        let p = testpki::pki();
        let dir = testpki::tempdir();
        let d = dir.path();
        testpki::write(d, "key.pem", p.leaf.key_pem());
        testpki::encrypt_key(
            d,
            "key.pem",
            "enc.pem",
            switchboard_pki::MAX_PBKDF2_ITERATIONS,
        );
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        json!({
            "name": name,
            "bundle": b64([p.leaf.pem(), p.intermediate.pem()].concat().as_bytes()),
            "key": b64(&testpki::read(d, "enc.pem")),
            "password": "pw",
        })
    }

    fn request(
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> HttpRequest<HttpBody> {
        let mut req = HttpRequest::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json")
            .body(body.map_or_else(HttpBody::empty, |b| HttpBody::from(b.to_string())))
            .expect("request");
        req.extensions_mut().insert(Requester(console()));
        req
    }

    async fn cert_names(e: &Arc<Engine>) -> Vec<String> {
        e.certs()
            .await
            .expect("certs")
            .into_iter()
            .map(|c| c.name)
            .collect()
    }

    /// Until the engine's CPU pool runs a job (a minute at most).
    async fn until_busy(e: &Arc<Engine>) {
        let busy = async {
            while e.cpu().busy() == 0 {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(60), busy)
            .await
            .expect("the import runs in the CPU pool");
    }

    // The test runtime has a single thread: were the import computed on
    // it, nothing else would be answered until it ended.
    #[tokio::test]
    async fn the_api_answers_while_a_costly_import_runs() {
        let e = engine();
        let import = tokio::spawn(router(e.clone()).oneshot(request(
            "POST",
            "/v1/certs",
            Some(&costly_import("costly")),
        )));
        until_busy(&e).await;
        let status = router(e.clone())
            .oneshot(request("GET", "/v1/status", None))
            .await
            .expect("answer");
        assert_eq!(status.status().as_u16(), 200);
        assert!(
            !import.is_finished(),
            "the status was answered while the import ran"
        );
        let imported = import.await.expect("joined").expect("answer");
        assert_eq!(imported.status().as_u16(), 200);
        assert!(cert_names(&e).await.contains(&"costly".to_owned()));
    }

    #[tokio::test]
    async fn an_import_whose_client_went_away_stores_nothing() {
        let e = engine();
        let import = router(e.clone()).oneshot(request(
            "POST",
            "/v1/certs",
            Some(&costly_import("abandoned")),
        ));
        // The server drops the handler's future when the connection
        // closes: here, once the import's job runs.
        tokio::select! {
            _ = import => panic!("the import ended before its client went away"),
            () = until_busy(&e) => {}
        }
        e.cpu().idle().await;
        assert!(!cert_names(&e).await.contains(&"abandoned".to_owned()));
    }

    #[tokio::test]
    async fn the_console_must_give_the_current_password() {
        let e = engine();
        let first = e.ensure_admin().await.expect("ensure").expect("created");
        let path = "/v1/admin/password";
        let new = "a new console password";
        let missing = json!({"username": "admin", "password": new});
        assert_eq!(
            post(&e, Some(console()), path, missing).await,
            (403, "wrong-password".into())
        );
        let wrong = json!({"password": new, "current_password": "not it at all"});
        assert_eq!(
            post(&e, Some(console()), path, wrong).await,
            (403, "wrong-password".into())
        );
        let unknown = json!({"username": "ghost", "password": new, "current_password": first});
        assert_eq!(
            post(&e, Some(console()), path, unknown).await,
            (403, "not-your-password".into()),
            "the console creates no administrator, changes no other one"
        );
        assert!(e.verify_password("admin", &first).await.expect("verify"));
        let right = json!({"password": new, "current_password": first});
        assert_eq!(
            post(&e, Some(console()), path, right).await,
            (200, "".into())
        );
        assert!(e.verify_password("admin", new).await.expect("verify"));
        // Over SSH (the local socket), no current password is needed.
        let ssh = Origin {
            arrival: Some(Arrival {
                service: ServiceId::Ssh,
                ..console().arrival.expect("arrival")
            }),
            ..console()
        };
        let again = json!({"password": "set over ssh, no current"});
        assert_eq!(post(&e, Some(ssh), path, again).await, (200, "".into()));

        let log = e.audit_log(10).await.expect("audit");
        let outcomes: Vec<&str> = log.iter().map(|a| a.outcome.as_str()).collect();
        assert_eq!(
            outcomes,
            [
                "done",
                "done",
                "refused: 403 not-your-password",
                "refused: 403 wrong-password",
                "refused: 403 wrong-password"
            ]
        );
        // The changes in words (by the engine), the refusals as requests.
        let actions: Vec<(&str, &str)> = log
            .iter()
            .map(|a| (a.kind.as_str(), a.action.as_str()))
            .collect();
        assert_eq!(
            actions[0],
            ("admin.password", "password of administrator admin changed")
        );
        assert_eq!(
            actions[1],
            ("admin.password", "password of administrator admin changed")
        );
        assert!(
            actions[2..]
                .iter()
                .all(|a| *a == ("request", "POST /v1/admin/password"))
        );
        assert_eq!(log[1].address, "console from 192.0.2.2");
        // Never a password.
        let text = serde_json::to_string(&log).expect("json");
        assert!(!text.contains(new) && !text.contains(&first), "{text}");
    }

    #[tokio::test]
    async fn a_request_without_origin_is_audited_as_unknown() {
        let e = engine();
        let (status, code) = post(&e, None, "/v1/confirm", json!({})).await;
        assert_eq!((status, code.as_str()), (500, "internal"));
        let log = e.audit_log(10).await.expect("audit");
        assert_eq!(log.len(), 1);
        assert_eq!(
            (log[0].actor.as_str(), log[0].action.as_str()),
            ("unknown", "POST /v1/confirm")
        );
        assert_eq!(log[0].outcome, "refused: 500 internal");
    }

    /// Two clients of the API change different provisioning settings at
    /// once, 1,000 times: both changes are kept every time.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_provisioning_requests_both_keep_their_change() {
        let e = Arc::new(switchboard_engine::testing::booted().await);
        let host = switchboard_system::dns::hostname();
        for i in 0..1000u32 {
            let uri = format!("https://198.51.100.1:{}", 1000 + i);
            let sip = if i % 2 == 0 { host.as_str() } else { "" };
            let web = json!({ "web_uri": uri });
            let other = json!({ "sip_tls_hostname": sip });
            let (a, b) = (e.clone(), e.clone());
            let one = tokio::spawn(async move { post(&a, None, "/v1/provisioning", web).await });
            let two = tokio::spawn(async move { post(&b, None, "/v1/provisioning", other).await });
            assert_eq!(one.await.expect("task"), (200, String::new()));
            assert_eq!(two.await.expect("task"), (200, String::new()));
            let now = e.provisioning().await.expect("settings");
            assert_eq!(now.web_uri.map(|u| u.to_string()), Some(uri), "round {i}");
            assert_eq!(
                now.sip_tls_hostname
                    .map(|h| h.to_string())
                    .unwrap_or_default(),
                sip,
                "round {i}"
            );
        }
    }

    #[tokio::test]
    async fn renewing_what_is_not_an_acme_certificate_is_refused_and_changes_nothing() {
        let e = Arc::new(switchboard_engine::testing::booted().await);
        let certs = e.certs().await.expect("certs").len();
        let revisions = e.revisions().await.expect("revisions").len();
        let long = format!("/v1/certs/{}/renew", "a".repeat(20_000));
        for (path, status, code) in [
            ("/v1/certs/bootstrap/renew", 409, "not-renewable"),
            ("/v1/certs/nope/renew", 404, "no-such-cert"),
            ("/v1/certs/..%2Fetc/renew", 400, "invalid-cert-name"),
            ("/v1/certs/%00/renew", 400, "invalid-cert-name"),
            (long.as_str(), 400, "invalid-cert-name"),
        ] {
            assert_eq!(
                post(&e, Some(console()), path, json!({})).await,
                (status, code.to_owned()),
                "{}",
                &path[..path.len().min(60)]
            );
        }
        assert_eq!(e.certs().await.expect("certs").len(), certs);
        assert_eq!(e.revisions().await.expect("revisions").len(), revisions);
    }

    #[tokio::test]
    async fn a_key_request_answers_its_csr_and_bad_input_changes_nothing() {
        let e = engine();
        let requests = |e: Arc<Engine>| async move { e.cert_requests().await.expect("list").len() };
        let long_name = "a".repeat(70_000);
        let cases = [
            (
                json!({"name": "r1", "dns": ["voip.example.test"], "key_type": "dsa"}),
                422,
                "unknown-key-type",
            ),
            (
                json!({"name": "r1", "dns": ["not a name"]}),
                422,
                "invalid-name",
            ),
            (
                json!({"name": "r1", "dns": ["*.test"]}),
                422,
                "invalid-name",
            ),
            (
                json!({"name": "r1", "ips": ["300.1.1.1"]}),
                422,
                "invalid-name",
            ),
            (json!({"name": "r1"}), 422, "request-without-names"),
            (
                json!({"name": "r1", "dns": (0..=100).map(|i| format!("h{i}.example.test")).collect::<Vec<_>>()}),
                422,
                "too-many-names",
            ),
            (
                json!({"name": "../etc", "dns": ["voip.example.test"]}),
                400,
                "invalid-cert-name",
            ),
            (
                json!({"name": "r1", "dns": ["voip.example.test"], "key": "x"}),
                400,
                "malformed-json",
            ),
            (json!({"name": "r1", "dns": [long_name]}), 413, "too-large"),
        ];
        for (body, status, code) in cases {
            let (got, got_code) =
                post(&e, Some(console()), "/v1/cert-requests", body.clone()).await;
            assert_eq!(
                (got, got_code.as_str()),
                (status, code),
                "{}",
                &body.to_string()[..body.to_string().len().min(200)]
            );
            assert_eq!(requests(e.clone()).await, 0, "{code}: nothing stored");
        }

        let body = json!({"name": "r1", "dns": ["voip.example.test"], "ips": ["192.0.2.10"]});
        let resp = router(e.clone())
            .oneshot(request("POST", "/v1/cert-requests", Some(&body)))
            .await
            .expect("answer");
        assert_eq!(resp.status(), StatusCode::OK);
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("PRIVATE KEY"), "{text}");
        let doc: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(doc["key_type"], "ecdsa-p256");
        assert_eq!(doc["names"], json!(["voip.example.test", "192.0.2.10"]));
        assert!(
            doc["csr_pem"]
                .as_str()
                .is_some_and(|c| c.starts_with("-----BEGIN CERTIFICATE REQUEST-----"))
        );
        assert_eq!(
            post(&e, Some(console()), "/v1/cert-requests", body).await,
            (409, "cert-exists".to_owned())
        );

        let resp = router(e.clone())
            .oneshot(request("GET", "/v1/cert-requests", None))
            .await
            .expect("answer");
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        assert!(!String::from_utf8_lossy(&bytes).contains("PRIVATE KEY"));
        let list: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(list.as_array().map(Vec::len), Some(1));
    }
}
