//! The HTTPS management console: server-rendered pages (compile-checked
//! [askama] templates, usable without JavaScript) and the JSON API, on the
//! `console` service's port with the certificates bound to `console`.
//!
//! **Request path.** Every response gets the security headers
//! ([`security_headers`]). Then [`authenticate`]: only the sign-in page,
//! the static assets and the health check are served without a session;
//! any other page redirects to `/login` (with the page to come back to,
//! and whether a session ended), any other API call gets `401`. An error
//! on a page's path is an HTML page ([`html_errors`]), never JSON.
//! Every request that is not `GET`/`HEAD` must carry the session's CSRF
//! token (header `X-CSRF-Token`, or the form field `csrf`, which in a
//! multipart form must be the first part). The session's user, the
//! browser's address and the appliance address it reached become the
//! request's [`Origin`]: recorded with revisions and in the audit log, and
//! checked by the anti-lockout rule (arrival `console`).
//!
//! **Confirmation.** While a commit-confirmed revision is pending, every
//! console response closes its connection, so the banner's automatic
//! confirmation (a `fetch` from the page) can only succeed over a new TCP
//! connection, through the new firewall rules: if the browser cannot reach
//! the console any more, nothing confirms and the appliance rolls back. A
//! confirmation over a connection accepted before the revision was applied
//! is refused (`confirm-over-new-connection`), so not even a connection
//! the browser kept from before can confirm.
//!
//! **Roles.** After the session, every request passes the role check
//! ([`crate::roles`]): the administrator's role (read from the store at
//! each request, so a disabled or removed administrator's sessions end at
//! once) must allow the route's area. An administrator whose role requires
//! a second factor it has not enrolled reaches only its own pages
//! (`/me/totp`) until it has.
//!
//! **Limitations.** Sessions are in memory ([`session`]).

mod admin_pages;
pub(crate) mod pages;
pub mod session;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, FromRequest, Multipart, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use switchboard_domain::ServiceId;
use switchboard_engine::{Arrival, Engine, Origin};

use crate::api::{self, Requester};
use crate::error::ApiError;
use crate::https::HttpsPeer;
use crate::roles;
use session::{CSRF_HEADER, SESSION_COOKIE, Session, Sessions, Throttle, same_token};

/// What the console's handlers share.
#[derive(Debug)]
pub struct Console {
    pub engine: Arc<Engine>,
    pub sessions: Sessions,
    pub throttle: Throttle,
}

type St = Arc<Console>;

/// The largest request body the console reads (an account CSV import).
const MAX_CONSOLE_BODY: usize = 2 * api::MAX_UPLOAD_BODY + 64 * 1024;
// A larger body is refused by the listener before it is read.
const _: () = assert!(MAX_CONSOLE_BODY <= crate::https::MAX_REQUEST_BODY);

/// The console listener's routes: pages, static assets, the OpenAPI
/// document and the JSON API.
pub fn router(engine: Arc<Engine>) -> Router {
    let console = Arc::new(Console {
        engine: engine.clone(),
        sessions: Sessions::default(),
        throttle: Throttle::default(),
    });
    let api = api::router(engine.clone());
    // The API audits its own changes; the pages' form posts are audited
    // here (a route layer: not the fallback, so not twice).
    pages::routes()
        .merge(admin_pages::routes())
        .route_layer(middleware::from_fn_with_state(engine, api::audit_changes))
        .fallback_service(api)
        .layer(middleware::from_fn_with_state(
            console.clone(),
            authenticate,
        ))
        .layer(middleware::from_fn(html_errors))
        .layer(middleware::from_fn_with_state(
            console.clone(),
            security_headers,
        ))
        .with_state(console)
}

/// The signed-in request's session: its id (cookie) and contents.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub id: String,
    pub session: Session,
    /// The administrator's role at this request (the menu shows what it
    /// allows).
    pub role: roles::Role,
}

/// Paths served without a session.
fn is_public(method: &Method, path: &str) -> bool {
    matches!(path, "/login" | "/healthz" | "/favicon.ico")
        || (method == Method::GET && path.starts_with("/static/"))
}

/// The value of cookie `name` in the request.
pub(crate) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn origin(user: &str, peer: &HttpsPeer) -> Origin {
    let (remote, local) = (canonical_addr(peer.remote), canonical_addr(peer.local));
    Origin {
        actor: user.to_owned(),
        address: format!("console from {remote} to {local}"),
        arrival: Some(Arrival {
            service: ServiceId::Console,
            local: local.ip(),
            port: local.port(),
        }),
    }
}

/// `::ffff:192.0.2.1` (an IPv4 client of a dual-stack listener) is 192.0.2.1.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn canonical_addr(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(canonical(a.ip()), a.port())
}

/// Errors on a page's path (an unknown URL, a CSRF refusal, a body over
/// the limit, too many requests) are HTML pages in the console's style,
/// with a way back; the API's paths keep their JSON documents.
async fn html_errors(req: Request, next: Next) -> Response {
    let page = !is_api(req.uri().path());
    let response = next.run(req).await;
    if page {
        pages::html_error(response)
    } else {
        response
    }
}

/// Whether a request is a browser's for a page (not the API's): its
/// errors are shown as HTML pages.
pub(crate) fn wants_page(headers: &HeaderMap, path: &str) -> bool {
    !is_api(path)
        && headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/html"))
}

/// Whether `path` is the API's (JSON errors), not a page's (HTML).
pub(crate) fn is_api(path: &str) -> bool {
    path.starts_with("/v1/") || path == "/openapi.json"
}

/// A path of this console to come back to after signing in: local, not
/// the sign-in itself, without anything a browser could read as another
/// host (`//x`, `/\x`) or a header break; else none.
pub(crate) fn safe_next(next: &str) -> Option<&str> {
    let path = next.split(['?', '#']).next().unwrap_or("");
    (next.starts_with('/')
        && !next.starts_with("//")
        && next.len() <= 1000
        && !next
            .chars()
            .any(|c| c.is_control() || c == '\\' || c.is_whitespace())
        && !matches!(path, "/login" | "/logout")
        && !is_api(path))
    .then_some(next)
}

/// Where the request came from, for the sign-in to return to: the page
/// itself for a GET, else the page whose form was sent (its `Referer`,
/// when it is this console's).
fn return_to(req: &Request) -> Option<String> {
    if matches!(*req.method(), Method::GET | Method::HEAD) {
        let path = req.uri().path_and_query().map(|p| p.as_str().to_owned())?;
        return safe_next(&path).map(str::to_owned);
    }
    // HTTP/1.1 names the host in a header, HTTP/2 in the request's URI.
    let host = match req.headers().get(header::HOST) {
        Some(h) => h.to_str().ok()?,
        None => req.uri().authority()?.as_str(),
    };
    let referer = req.headers().get(header::REFERER)?.to_str().ok()?;
    let rest = referer.strip_prefix("https://")?.strip_prefix(host)?;
    safe_next(rest).map(str::to_owned)
}

/// No (live) session: the API says `401`; a page goes to the sign-in,
/// which says the session ended when the browser had one, and comes back
/// here after it.
fn unauthenticated(req: &Request, had_session: bool) -> Response {
    let path = req.uri().path();
    if is_api(path) {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "sign in first",
            "sign in at /login; API calls carry the session cookie and the X-CSRF-Token header",
        )
        .into_response()
    } else {
        let mut to = form_urlencoded::Serializer::new(String::new());
        if let Some(next) = return_to(req) {
            to.append_pair("next", &next);
        }
        if had_session {
            let form = !matches!(*req.method(), Method::GET | Method::HEAD);
            to.append_pair("ended", if form { "form" } else { "page" });
        }
        let query = to.finish();
        if query.is_empty() {
            Redirect::to("/login").into_response()
        } else {
            Redirect::to(&format!("/login?{query}")).into_response()
        }
    }
}

/// The signed-in administrator's role does not allow this.
fn forbidden(path: &str, role: roles::Role) -> Response {
    let e = ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!("the {role} role does not allow this"),
        "operators manage accounts and activations, auditors read; ask an administrator",
    );
    if path.starts_with("/v1/") {
        e.into_response()
    } else {
        pages::error_page(e)
    }
}

/// The role requires a second factor this administrator has not enrolled:
/// only the enrolment (and signing out) until it is.
fn enrol_first(path: &str) -> Response {
    if path.starts_with("/v1/") {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "second-factor-required",
            "your role requires a second factor: enrol one first",
            "enrol at /me/totp in the console",
        )
        .into_response()
    } else {
        Redirect::to("/me/totp").into_response()
    }
}

fn csrf_refused() -> Response {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "csrf",
        "the request does not carry this session's CSRF token",
        "reload the page and try again; API clients send the token in the X-CSRF-Token header",
    )
    .into_response()
}

/// Sessions, CSRF and the request's origin.
async fn authenticate(State(console): State<St>, req: Request, next: Next) -> Response {
    let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<HttpsPeer>>().copied() else {
        return ApiError::internal("console request without its connection").into_response();
    };
    let path = req.uri().path().to_owned();
    if is_public(req.method(), &path) {
        let mut req = req;
        let anonymous = Origin {
            actor: "anonymous".into(),
            address: format!("console from {}", canonical_addr(peer.remote)),
            arrival: None,
        };
        req.extensions_mut().insert(Requester(anonymous));
        req.extensions_mut().insert(api::Anonymous);
        return next.run(req).await;
    }
    let signed_in = cookie(req.headers(), SESSION_COOKIE)
        .and_then(|id| console.sessions.get(id).map(|s| (id.to_owned(), s)));
    let Some((id, session)) = signed_in else {
        // A form of the console's own pages sent without a session can
        // only come from a page loaded while signed in: that session ended.
        let had_session = cookie(req.headers(), SESSION_COOKIE).is_some_and(|c| !c.is_empty())
            || (!matches!(*req.method(), Method::GET | Method::HEAD) && return_to(&req).is_some());
        return unauthenticated(&req, had_session);
    };
    // The user's password changed since this session signed in (on the
    // appliance, over the API, or in another session): it ends.
    if !session.holds_at(console.engine.password_generation(&session.user)) {
        console.sessions.remove(&id);
        return unauthenticated(&req, true);
    }
    // The administrator was disabled or removed meanwhile: the session ends.
    let state = match console.engine.admin_state(&session.user).await {
        Ok(state) => state,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let Some((role, must_enrol)) = state else {
        console.sessions.remove(&id);
        return unauthenticated(&req, true);
    };
    // The role check, in one place for pages and API alike.
    if must_enrol && roles::area_of(&path) != roles::Area::Own {
        return enrol_first(&path);
    }
    if !roles::allowed(role, req.method(), &path) {
        return forbidden(&path, role);
    }
    let safe = matches!(*req.method(), Method::GET | Method::HEAD);
    let req = if safe {
        req
    } else {
        match check_csrf(req, &session.csrf).await {
            Ok(req) => req,
            Err(refused) => return refused,
        }
    };
    let confirming =
        req.method() == Method::POST && matches!(path.as_str(), "/confirm" | "/v1/confirm");
    if confirming && let Some(refused) = stale_confirmation(&console, &peer).await {
        return refused;
    }
    let mut req = req;
    req.extensions_mut()
        .insert(Requester(origin(&session.user, &peer)));
    // Changing a password over the API checks the current one: as
    // throttled as a sign-in (counted before the check, refunded unless
    // it was wrong).
    let password_change = req.method() == Method::POST && path == "/v1/admin/password";
    let from = canonical(peer.remote.ip());
    let attempt = if password_change {
        match console.throttle.attempt(from, &session.user) {
            Ok(a) => Some(a),
            Err(wait) => return throttled(wait),
        }
    } else {
        None
    };
    let user = session.user.clone();
    let generation = console.engine.password_generation(&user);
    if password_change {
        console.sessions.changing_password(&id, generation);
    }
    req.extensions_mut().insert(role);
    req.extensions_mut().insert(SignedIn {
        id: id.clone(),
        session,
        role,
    });
    let response = next.run(req).await;
    if let Some(attempt) = attempt {
        let code = response
            .extensions()
            .get::<crate::error::ErrorCode>()
            .map(|c| c.0.clone());
        if response.status().is_success() {
            // The current password was right, and this session changed it:
            // it goes on under the new generation.
            console.throttle.succeeded(attempt);
            console.sessions.set_generation(&id, generation + 1);
        } else {
            if code.as_deref() != Some("wrong-password") {
                // Refused before the password was checked.
                console.throttle.refund(attempt);
            }
            console.sessions.set_generation(&id, generation);
        }
    }
    response
}

/// What a password check found.
pub(crate) enum PasswordCheck {
    Right,
    /// A sign-in's password and second factor were right.
    Granted {
        role: roles::Role,
        must_enrol: bool,
    },
    Wrong,
    /// Too many wrong ones lately: not even checked; try again after this.
    Throttled(std::time::Duration),
}

impl Console {
    /// Check `user`'s password, as throttled as a sign-in: the attempt is
    /// counted before the (slow) check and refunded when it was right; a
    /// user name that failed often lately, from anywhere, waits a little
    /// first (never refused for that).
    pub(crate) async fn check_password(
        &self,
        from: IpAddr,
        user: &str,
        password: &str,
    ) -> Result<PasswordCheck, switchboard_engine::EngineError> {
        let attempt = match self.throttle.attempt(from, user) {
            Ok(a) => a,
            Err(wait) => return Ok(PasswordCheck::Throttled(wait)),
        };
        if !attempt.delay().is_zero() {
            tokio::time::sleep(attempt.delay()).await;
        }
        match self.engine.verify_password(user, password).await {
            Ok(true) => {
                self.throttle.succeeded(attempt);
                Ok(PasswordCheck::Right)
            }
            // Counted.
            Ok(false) => Ok(PasswordCheck::Wrong),
            Err(e) => {
                self.throttle.refund(attempt);
                Err(e)
            }
        }
    }
}

impl Console {
    /// Check a sign-in (password, then the second factor if enrolled), as
    /// throttled as a password check: a wrong code counts as a failure.
    pub(crate) async fn check_sign_in(
        &self,
        from: IpAddr,
        origin: &Origin,
        user: &str,
        password: &str,
        code: &str,
    ) -> Result<PasswordCheck, switchboard_engine::EngineError> {
        let attempt = match self.throttle.attempt(from, user) {
            Ok(a) => a,
            Err(wait) => return Ok(PasswordCheck::Throttled(wait)),
        };
        if !attempt.delay().is_zero() {
            tokio::time::sleep(attempt.delay()).await;
        }
        match self.engine.sign_in(origin, user, password, code).await {
            Ok(switchboard_engine::SignIn::Granted { role, must_enrol }) => {
                self.throttle.succeeded(attempt);
                Ok(PasswordCheck::Granted { role, must_enrol })
            }
            // Counted.
            Ok(switchboard_engine::SignIn::Refused) => Ok(PasswordCheck::Wrong),
            Err(e) => {
                self.throttle.refund(attempt);
                Err(e)
            }
        }
    }
}

/// "Try again in N minute(s)", for a throttled password check.
pub(crate) fn wait_text(wait: std::time::Duration) -> String {
    format!(
        "too many wrong passwords: try again in {} minute(s)",
        wait.as_secs().div_ceil(60)
    )
}

/// Too many wrong passwords: try again after `wait`. Not audited (the
/// attempt was not even checked).
pub(crate) fn throttled(wait: std::time::Duration) -> Response {
    let mut response = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "throttled",
        wait_text(wait),
        "wait, then type the password carefully; repeated failures are in the audit log",
    )
    .into_response();
    retry_after(&mut response, wait);
    response
}

/// `Retry-After` for a throttled answer, which is not audited.
pub(crate) fn retry_after(response: &mut Response, wait: std::time::Duration) {
    if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response.extensions_mut().insert(api::NotAudited);
}

/// A confirmation of the revision on trial must come over a connection
/// opened after that revision was applied: one kept alive from before
/// went through the old firewall rules and proves nothing about the new
/// ones. The refusal closes the connection (as every answer does while a
/// revision is pending), so the browser's next try opens a new one.
async fn stale_confirmation(console: &Console, peer: &HttpsPeer) -> Option<Response> {
    let pending = console.engine.pending().await.ok().flatten()?;
    let in_place = console.engine.trial_applied_at(pending.revision)?;
    (peer.accepted <= in_place).then(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "confirm-over-new-connection",
            "this connection was opened before the change on trial: confirming over it would not show that the console can still be reached",
            "send the confirmation again: this connection closes, and the next request opens a new one",
        )
        .into_response()
    })
}

/// The request back, if it carries `expected` in the `X-CSRF-Token`
/// header or in its form; its body is read (bounded) to look.
async fn check_csrf(req: Request, expected: &str) -> Result<Request, Response> {
    if let Some(token) = req.headers().get(CSRF_HEADER) {
        return if token.to_str().is_ok_and(|t| same_token(t, expected)) {
            Ok(req)
        } else {
            Err(csrf_refused())
        };
    }
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_CONSOLE_BODY)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                "the request is too large",
                "uploads are at most 1 MiB (account files 2 MiB)",
            )
            .into_response()
        })?;
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let token = if content_type.starts_with("application/x-www-form-urlencoded") {
        form_urlencoded::parse(&bytes)
            .find(|(k, _)| k == "csrf")
            .map(|(_, v)| v.into_owned())
    } else if content_type.starts_with("multipart/form-data") {
        first_multipart_csrf(&parts.headers, bytes.clone()).await
    } else {
        None
    };
    if token.is_some_and(|t| same_token(&t, expected)) {
        Ok(Request::from_parts(parts, Body::from(bytes)))
    } else {
        Err(csrf_refused())
    }
}

/// The value of the first part of a multipart body, if it is named `csrf`.
async fn first_multipart_csrf(headers: &HeaderMap, bytes: Bytes) -> Option<String> {
    let mut probe = Request::new(Body::from(bytes));
    *probe.headers_mut() = headers.clone();
    let mut multipart = Multipart::from_request(probe, &()).await.ok()?;
    let field = multipart.next_field().await.ok()??;
    if field.name() != Some("csrf") {
        return None;
    }
    field.text().await.ok()
}

/// Headers on every console response: a strict CSP (scripts and styles
/// from the console itself only, no framing), HSTS, nosniff,
/// no caching of pages; a referrer for the console's own pages only; `Connection: close` while a revision is pending.
async fn security_headers(State(console): State<St>, req: Request, next: Next) -> Response {
    let is_static = req.uri().path().starts_with("/static/");
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    let set = |h: &mut HeaderMap, name: header::HeaderName, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
         connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    set(h, header::STRICT_TRANSPORT_SECURITY, "max-age=31536000");
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    // The console's own pages only: a form sent after the session ended
    // tells the sign-in which page to go back to.
    set(h, header::REFERRER_POLICY, "same-origin");
    set(
        h,
        header::HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
    set(
        h,
        header::HeaderName::from_static("permissions-policy"),
        "camera=(), microphone=(), geolocation=()",
    );
    if !is_static {
        set(h, header::CACHE_CONTROL, "no-store");
    }
    if console.engine.pending().await.ok().flatten().is_some() {
        set(h, header::CONNECTION, "close");
    }
    response
}
