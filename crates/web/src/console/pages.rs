//! The console's pages and form actions. Each action calls the same engine
//! operation as its JSON API route, then redirects (post/redirect/get) to
//! a page that shows the outcome once.

use askama::Template;
use axum::Extension;
use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts, Multipart, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use switchboard_domain::install::Platform;
use switchboard_domain::{CertName, NicName, ServiceId, Severity};
use switchboard_engine::views::{
    CertRequestView, CertView, DiffView, ExpiryView, NicState, NicView, PadlockView, PendingView,
    ServiceView,
};
use switchboard_engine::{EngineError, InputError};
use switchboard_store::RevisionSummary;

use super::session::{Flash, LOGIN_COOKIE, SESSION_COOKIE, random_token, same_token, set_cookie};
use super::{PasswordCheck, SignedIn, St, canonical, cookie, retry_after, wait_text};
use crate::api::Requester;
use crate::error::ApiError;
use crate::https::HttpsPeer;
use crate::input::{self, PathParam, path_number};

/// How long a change that could cut the administrator off stays on trial
/// before the appliance rolls it back by itself.
pub const TRIAL_SECONDS: u64 = 120;

pub(super) fn routes() -> Router<St> {
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/healthz", get(|| async { "ok\n" }))
        // No icon: an answer, so browsers do not follow a sign-in redirect.
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/static/console.css", get(css))
        .route("/static/console.js", get(js))
        .route("/", get(services_page))
        .route("/map.svg", get(map_svg))
        .route("/matrix", post(save_matrix))
        .route("/preset", post(preset))
        .route("/ports", post(set_port))
        .route("/discard", post(discard))
        .route("/certs", post(upload_cert))
        .route("/cert-requests", post(request_key))
        .route("/acme", post(acme_order))
        .route("/certs/{name}/renew", post(renew_cert))
        .route("/cas", post(add_cas))
        .route("/certs/{name}", get(cert_page))
        .route("/certs/{name}/delete", post(delete_cert))
        .route("/bind", post(bind))
        .route("/unbind", post(unbind))
        .route("/nics/{nic}", post(nic_settings))
        .route("/provisioning", post(provisioning))
        .route("/update", get(update_page).post(update))
        .route("/confirm", post(confirm))
        .route("/revisions", get(revisions_page))
        .route("/revisions/{number}", get(revision_page))
        .route("/revisions/{number}/rollback", post(rollback))
        .route("/compare", get(compare_page))
        .route("/calls", get(calls_page))
        .route("/fleet", get(fleet_page))
        .route("/bans", get(bans_page))
        .route("/bans/policy", post(ban_policy))
        .route("/bans/{address}/unban", post(unban))
        .route("/accounts", get(accounts_page).post(add_account))
        .route("/accounts/import", post(import_accounts))
        .route("/bulk/accounts", post(bulk))
        .route("/accounts/{username}", get(account_page).post(edit_account))
        .route("/accounts/{username}/activate", post(activate))
        .route("/accounts/{username}/qr", get(qr_page).post(make_link))
        .route("/accounts/{username}/delete", post(delete_account))
        .route("/accounts/{username}/revoke", post(revoke))
        .route("/sms/{id}/resend", post(resend_sms))
        .route("/password", get(password_page).post(change_password))
        .route("/openapi.json", get(openapi))
}

// ---- the frame of every page ----------------------------------------------

/// What the layout shows around every page.
pub struct Chrome {
    pub title: String,
    pub nav: &'static str,
    pub user: String,
    pub csrf: String,
    pub flash: Option<Flash>,
    pub pending: Option<PendingView>,
    /// Bound certificates near their end: the expiry banner.
    pub expiring: Vec<ExpiryView>,
    /// The signed-in administrator's role: the menu shows the pages it
    /// may open.
    pub role: crate::roles::Role,
}

impl Chrome {
    /// Whether the menu shows `path`: the role may open it.
    pub fn sees(&self, path: &str) -> bool {
        crate::roles::allowed(self.role, &axum::http::Method::GET, path)
    }

    /// The flash message of the form `id`.
    pub fn flash_at(&self, id: &str) -> Option<&Flash> {
        self.flash
            .as_ref()
            .filter(|f| f.form.as_deref() == Some(id))
    }

    /// The flash message of no form in particular: shown at the top.
    pub fn flash_top(&self) -> Option<&Flash> {
        self.flash.as_ref().filter(|f| f.form.is_none())
    }

    /// Whether a certificate of the expiry banner is an error (under 7
    /// days, or expired).
    pub fn expiry_is_error(&self) -> bool {
        self.expiring
            .iter()
            .any(|x| x.severity == switchboard_domain::Severity::Error)
    }
}

pub(super) async fn chrome(
    c: &St,
    s: &SignedIn,
    title: impl Into<String>,
    nav: &'static str,
) -> Chrome {
    let pending = c
        .engine
        .pending()
        .await
        .ok()
        .flatten()
        .map(|p| PendingView::of(p, jiff::Timestamp::now()));
    Chrome {
        title: title.into(),
        nav,
        user: s.session.user.clone(),
        csrf: s.session.csrf.clone(),
        flash: c.sessions.take_flash(&s.id),
        pending,
        expiring: c.engine.expiring().await.unwrap_or_default(),
        role: s.role,
    }
}

/// A page, or the error that kept it from being made, as a page.
fn show(page: Result<impl Template, ApiError>) -> Response {
    match page {
        Ok(p) => render(&p),
        Err(e) => error_page(e),
    }
}

/// `Path` for the pages: a segment that does not parse (an escape that is
/// not UTF-8) is the error page, `400 malformed-path`, as the API answers.
pub(super) struct PagePath<T>(pub(super) T);

impl<S, T> FromRequestParts<S> for PagePath<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned + Send,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        PathParam::<T>::from_request_parts(parts, state)
            .await
            .map(|PathParam(value)| PagePath(value))
            .map_err(error_page)
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    status: String,
    code: String,
    message: String,
    hint: String,
}

/// An error the API's code made (a CSRF refusal, an unknown URL, a body
/// over the limit, too many requests) as the console's HTML error page,
/// for a browser on a page: the same status, code, message and hint (the
/// response's [`ErrorWords`](crate::error::ErrorWords)), and the same
/// headers (`Retry-After`, `Connection: close`). Any other answer is kept
/// as it is.
pub(crate) fn html_error(response: Response) -> Response {
    let Some(e) = response
        .extensions()
        .get::<crate::error::ErrorWords>()
        .cloned()
    else {
        return response;
    };
    // The API's words for an unknown path are for programs.
    let (code, message, hint) = if e.code == "no-such-endpoint" {
        (
            "no-such-page".to_owned(),
            "there is no such page in the console".to_owned(),
            "use the menu at the top, or go back to the Services page".to_owned(),
        )
    } else {
        (e.code, e.message, e.hint)
    };
    let (mut parts, _json) = response.into_parts();
    let page = render(&ErrorPage {
        status: parts.status.to_string(),
        code,
        message,
        hint,
    });
    let (page_parts, page_body) = page.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    if let Some(t) = page_parts.headers.get(header::CONTENT_TYPE) {
        parts.headers.insert(header::CONTENT_TYPE, t.clone());
    }
    Response::from_parts(parts, page_body)
}

/// An error as an HTML page, with the API's status, code, message and hint.
pub(super) fn error_page(e: ApiError) -> Response {
    let status = e.status();
    let body = e.into_body();
    let mut response = render(&ErrorPage {
        status: status.to_string(),
        code: body.code.clone(),
        message: body.message,
        hint: body.hint,
    });
    *response.status_mut() = status;
    response
        .extensions_mut()
        .insert(crate::error::ErrorCode(body.code));
    response
}

/// A console form's fields; a form that does not parse (a missing or
/// malformed field) gets an error page, not the framework's plain text.
#[derive(axum::extract::FromRequest)]
#[from_request(via(axum::Form), rejection(FormError))]
pub(super) struct Fields<T>(pub(super) T);

pub(super) struct FormError(ApiError);

impl From<axum::extract::rejection::FormRejection> for FormError {
    fn from(r: axum::extract::rejection::FormRejection) -> Self {
        FormError(ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed-form",
            r.body_text(),
            "send the form from the console's page again",
        ))
    }
}

impl IntoResponse for FormError {
    fn into_response(self) -> Response {
        error_page(self.0)
    }
}

/// A destructive action's confirmation: what it will do, and the same
/// action again with `confirmed=yes` (a plain form: no JavaScript needed).
#[derive(Template)]
#[template(path = "confirm.html")]
pub(super) struct ConfirmPage {
    c: Chrome,
    question: String,
    consequences: Vec<String>,
    action: String,
    /// The action's own fields, sent again as they were.
    fields: Vec<(String, String)>,
    button: String,
    cancel: String,
}

/// The `confirmed` field of a destructive action's form.
#[derive(Debug, Default, Deserialize)]
pub(super) struct Confirmation {
    #[serde(default)]
    confirmed: String,
}

impl Confirmation {
    pub(super) fn yes(&self) -> bool {
        confirmed(&self.confirmed)
    }
}

/// Whether a form's `confirmed` field says the confirmation page sent it.
fn confirmed(field: &str) -> bool {
    field == "yes"
}

pub(super) fn render(t: &impl Template) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => ApiError::internal(&format!("rendering a page: {e}")).into_response(),
    }
}

/// A failed action, for the next page: the engine's message, hint and
/// diagnostics (the same texts as the API's error document).
pub(super) fn failure(e: impl Into<ApiError>) -> Flash {
    let body = e.into().into_body();
    let mut details: Vec<String> = body
        .diagnostics
        .iter()
        .map(|d| {
            let level = if d.severity == Severity::Error {
                "error"
            } else {
                "warning"
            };
            format!("{level} {}: {} — {}", d.code, d.message, d.hint)
        })
        .collect();
    details.extend(body.problems.iter().map(|p| {
        format!(
            "line {}: {} — {}",
            p["line"],
            p["message"].as_str().unwrap_or(""),
            p["hint"].as_str().unwrap_or("")
        )
    }));
    Flash {
        details,
        ..Flash::error(&body.code, body.message, body.hint)
    }
}

/// Show `outcome` on the next page and go there. With a fragment
/// (`/accounts#account-form`) the message is shown next to that form and
/// the browser scrolls to it. A failure's code goes with the redirect,
/// for the audit log (`303 unknown-nic`).
pub(super) fn done(c: &St, s: &SignedIn, outcome: Result<String, Flash>, to: &str) -> Response {
    let mut flash = outcome.map_or_else(|f| f, Flash::ok);
    flash.form = to.split_once('#').map(|(_, id)| id.into());
    let code = (!flash.ok).then(|| flash.code.clone());
    c.sessions.set_flash(&s.id, flash);
    let mut response = Redirect::to(to).into_response();
    if let Some(code) = code {
        response
            .extensions_mut()
            .insert(crate::error::ErrorCode(code));
    }
    response
}

pub(super) fn ok(message: impl Into<String>) -> Result<String, Flash> {
    Ok(message.into())
}

/// A form field that does not make sense.
fn bad_form(message: impl Into<String>) -> Flash {
    failure(ApiError::new(
        StatusCode::BAD_REQUEST,
        "malformed-form",
        message,
        "check the form's fields and send it again",
    ))
}

/// A form field as the API parses it ([`input::parse`]), trimmed.
fn parse<T: std::str::FromStr>(s: &str) -> Result<T, Flash>
where
    T::Err: Into<InputError>,
{
    input::parse(s.trim()).map_err(failure)
}

/// A provisioning field as the API parses it, trimmed.
macro_rules! provision_parse {
    ($ty:ty, $s:expr) => {
        input::parse_provision!($ty, $s.trim()).map_err(failure)
    };
}

mod accounts;
use accounts::{
    account_page, accounts_page, activate, add_account, bulk, delete_account, edit_account,
    import_accounts, make_link, qr_page, resend_sms, revoke,
};

/// Serde's name for a value (`applied`, `sip-tls`, ...).
fn word<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

pub(super) fn when(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
}

// ---- sign-in ---------------------------------------------------------------

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    csrf: String,
    error: Option<String>,
    /// Why the administrator is asked to sign in again.
    notice: Option<String>,
    /// The page to go back to after signing in.
    next: String,
    ended: String,
}

/// Where a sign-in goes back to, and why it was asked for: the query of
/// `/login` and the fields of its form.
#[derive(Debug, Default, Deserialize)]
struct Return {
    #[serde(default)]
    next: String,
    /// `page` or `form`: the session had ended.
    #[serde(default)]
    ended: String,
}

impl Return {
    fn next(&self) -> Option<&str> {
        super::safe_next(&self.next)
    }

    fn notice(&self) -> Option<String> {
        let back = self.next().map_or_else(String::new, |n| {
            format!(" to go back to {}", n.split('?').next().unwrap_or(n))
        });
        match self.ended.as_str() {
            "form" => Some(format!(
                "Your session ended (it expired or was signed out) before the form was sent; nothing was changed. Sign in again{back}: what you typed is kept in this tab."
            )),
            "page" => Some(format!(
                "Your session ended (it expired or was signed out). Sign in again{back}."
            )),
            _ => None,
        }
    }
}

/// The sign-in page. Its token is the browser's pre-session cookie, kept
/// if the browser has a well-formed one: a second load of the page (another
/// tab, a redirected favicon request) must not void the form already shown.
fn login_form(
    headers: &HeaderMap,
    status: StatusCode,
    error: Option<String>,
    back: &Return,
) -> Response {
    let token = cookie(headers, LOGIN_COOKIE)
        .filter(|t| {
            t.len() == 43
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map_or_else(random_token, str::to_owned);
    let cookie = set_cookie(LOGIN_COOKIE, &token, Some(3600));
    let page = render(&LoginPage {
        csrf: token,
        error,
        notice: back.notice(),
        next: back.next().unwrap_or("").to_owned(),
        ended: if back.ended == "form" { "form" } else { "" }.to_owned(),
    });
    (status, [(header::SET_COOKIE, cookie)], page).into_response()
}

async fn login_page(headers: HeaderMap, Query(back): Query<Return>) -> Response {
    login_form(&headers, StatusCode::OK, None, &back)
}

/// The longest user name or password a sign-in looks at, in bytes (the
/// longest password, in UTF-8).
const MAX_CREDENTIAL: usize = 4 * switchboard_engine::MAX_PASSWORD_CHARS;

/// The sign-in form's fields, when it has all three (and the second
/// factor's code, empty when not given), and where it goes back to.
fn login_fields(body: &[u8]) -> (Option<(String, String, String, String)>, Return) {
    let (mut csrf, mut user, mut password, mut code) = (None, None, None, String::new());
    let mut back = Return::default();
    for (k, v) in form_urlencoded::parse(body) {
        match &*k {
            "csrf" => csrf = Some(v.into_owned()),
            "username" => user = Some(v.into_owned()),
            "password" => password = Some(v.into_owned()),
            "code" => code = v.chars().take(64).collect(),
            "next" => back.next = v.chars().take(1000).collect(),
            "ended" => back.ended = v.chars().take(10).collect(),
            _ => {}
        }
    }
    let fields = (|| Some((csrf?, user?, password?, code)))();
    (fields, back)
}

async fn login(
    State(c): State<St>,
    ConnectInfo(peer): ConnectInfo<HttpsPeer>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let pre = cookie(&headers, LOGIN_COOKIE).unwrap_or("");
    let (fields, back) = login_fields(&body);
    let fields = fields.filter(|(csrf, _, _, _)| !pre.is_empty() && same_token(pre, csrf));
    let Some((_, user, password, code)) = fields else {
        // Not a sign-in attempt at all (not from our form, or not a form):
        // not audited either, so nobody fills the log by knocking.
        let mut response = login_form(
            &headers,
            StatusCode::FORBIDDEN,
            Some("The sign-in form expired. Try again.".into()),
            &back,
        );
        response.extensions_mut().insert(crate::api::NotAudited);
        return response;
    };
    let from = canonical(peer.remote.ip());
    let user = user.trim();
    // The generation the session will hold: read before the (slow) check,
    // so a password changed meanwhile ends it rather than blessing it.
    let generation = c.engine.password_generation(user);
    let checked = if user.len() > MAX_CREDENTIAL || password.len() > MAX_CREDENTIAL {
        // Too long to be right: a wrong attempt, counted without checking.
        match c
            .throttle
            .attempt(from, &user.chars().take(64).collect::<String>())
        {
            Ok(_counted) => Ok(PasswordCheck::Wrong),
            Err(wait) => Ok(PasswordCheck::Throttled(wait)),
        }
    } else {
        c.check_sign_in(from, &super::origin(user, &peer), user, &password, &code)
            .await
    };
    match checked {
        Ok(PasswordCheck::Throttled(wait)) => {
            let mut response = login_form(
                &headers,
                StatusCode::TOO_MANY_REQUESTS,
                Some(format!(
                    "Too many failed sign-ins. Try again in {} minute(s).",
                    wait.as_secs().div_ceil(60)
                )),
                &back,
            );
            retry_after(&mut response, wait);
            response
        }
        Ok(PasswordCheck::Right) => error_page(ApiError::internal("a sign-in without its role")),
        Ok(PasswordCheck::Granted { role, must_enrol }) => {
            // A new id at every sign-in: a planted cookie is never promoted.
            if let Some(old) = cookie(&headers, SESSION_COOKIE) {
                c.sessions.remove(old);
            }
            let id = c.sessions.create(user, generation);
            tracing::info!(user, %from, "console sign-in");
            // Back where the administrator was, when the role allows it;
            // else the role's home (or the enrolment its role requires).
            let next = back.next().filter(|n| {
                !must_enrol
                    && crate::roles::allowed(
                        role,
                        &axum::http::Method::GET,
                        n.split('?').next().unwrap_or(n),
                    )
            });
            let mut response = match next {
                Some(next) => {
                    if back.ended == "form" {
                        c.sessions.set_flash(
                            &id,
                            Flash {
                                restore: true,
                                ..Flash::ok(format!(
                                    "Signed in again as {user}. What you typed is back in the form: check it and send it again."
                                ))
                            },
                        );
                    }
                    Redirect::to(next).into_response()
                }
                None => super::admin_pages::landing(role, must_enrol),
            };
            // Audited, under the user now signed in (failures are not:
            // anonymous requests write no durable row).
            response
                .extensions_mut()
                .insert(crate::api::SignedInAs(super::origin(user, &peer)));
            for value in [
                set_cookie(SESSION_COOKIE, &id, None),
                set_cookie(LOGIN_COOKIE, "", Some(0)),
            ] {
                if let Ok(v) = value.parse() {
                    response.headers_mut().append(header::SET_COOKIE, v);
                }
            }
            response
        }
        Ok(PasswordCheck::Wrong) => {
            tracing::warn!(%from, "console sign-in failed");
            login_form(
                &headers,
                StatusCode::UNAUTHORIZED,
                Some("Wrong user name or password (or authentication code).".into()),
                &back,
            )
        }
        Err(e) => error_page(e.into()),
    }
}

async fn logout(State(c): State<St>, Extension(s): Extension<SignedIn>) -> Response {
    c.sessions.remove(&s.id);
    let clear = set_cookie(SESSION_COOKIE, "", Some(0));
    ([(header::SET_COOKIE, clear)], Redirect::to("/login")).into_response()
}

#[derive(Template)]
#[template(path = "password.html")]
struct PasswordPage {
    c: Chrome,
}

async fn password_page(State(c): State<St>, Extension(s): Extension<SignedIn>) -> Response {
    render(&PasswordPage {
        c: chrome(&c, &s, "Password", "password").await,
    })
}

#[derive(Deserialize)]
struct PasswordForm {
    #[allow(dead_code)]
    csrf: String,
    current: String,
    new: String,
    again: String,
}

async fn change_password(
    State(c): State<St>,
    Extension(s): Extension<SignedIn>,
    ConnectInfo(peer): ConnectInfo<HttpsPeer>,
    Requester(origin): Requester,
    Fields(f): Fields<PasswordForm>,
) -> Response {
    let user = s.session.user.clone();
    let from = canonical(peer.remote.ip());
    let outcome = async {
        if f.new != f.again {
            return Err(Flash::error(
                "passwords-differ",
                "the two new passwords differ",
                "type the same new password twice",
            ));
        }
        // As throttled as a sign-in: a session left open is not a way to
        // guess the password.
        match c
            .check_password(from, &user, &f.current)
            .await
            .map_err(failure)?
        {
            PasswordCheck::Right | PasswordCheck::Granted { .. } => {}
            PasswordCheck::Wrong => {
                return Err(Flash::error(
                    "wrong-password",
                    "the current password is wrong",
                    "type the password you signed in with",
                ));
            }
            PasswordCheck::Throttled(wait) => {
                return Err(Flash::error(
                    "throttled",
                    wait_text(wait),
                    "wait, then type the password you signed in with",
                ));
            }
        }
        // This session goes on under the new password; its requests in
        // flight meanwhile too. Every other session of this user ends.
        let generation = c.engine.password_generation(&user);
        c.sessions.changing_password(&s.id, generation);
        let changed = c.engine.set_admin_password(&origin, &user, &f.new).await;
        c.sessions
            .set_generation(&s.id, generation + u64::from(changed.is_ok()));
        changed.map_err(failure)?;
        c.sessions.remove_user(&user, Some(&s.id));
        ok("password changed; other sessions were signed out")
    }
    .await;
    done(&c, &s, outcome, "/password")
}

// ---- the Services page -----------------------------------------------------

/// One NIC column of the matrix.
struct NicColumn {
    name: String,
    addresses: String,
    configured: bool,
    state: &'static str,
    hostname: String,
    public_address: String,
    resolvers: String,
}

/// One cell of the matrix.
struct Cell {
    value: String,
    /// "sql on lan0": what the checkbox says to a screen reader.
    label: String,
    id: String,
    checked: bool,
    /// The candidate differs from the applied revision here.
    pending: bool,
}

struct Row {
    id: String,
    label: String,
    ports: String,
    transport: String,
    tls: bool,
    cells: Vec<Cell>,
}

struct CertRow {
    name: String,
    subject: String,
    names: String,
    issuer: String,
    expires: String,
    expires_in_days: i64,
    validity: String,
    has_key: bool,
    bootstrap: bool,
    used_by: String,
    /// `closed`, `open`, or empty when no binding is checked.
    padlock: &'static str,
    /// For a certificate from an ACME CA, how it renews itself.
    acme: Option<AcmeRow>,
}

struct AcmeRow {
    next: String,
    /// Why a due renewal waits, or why the last attempt failed.
    problem: String,
}

struct PadlockRow {
    service: String,
    nic: String,
    cert: String,
    host: String,
    ok: bool,
    findings: Vec<String>,
}

#[derive(Template)]
#[template(path = "services.html")]
struct ServicesPage {
    c: Chrome,
    mode: String,
    nics: Vec<NicColumn>,
    rows: Vec<Row>,
    new_nics: Vec<String>,
    /// The production preset's default internal and external NICs.
    preset: (String, String),
    certs: Vec<CertRow>,
    /// Keys made on the appliance that wait for their certificate.
    requests: Vec<CertRequestView>,
    padlocks: Vec<PadlockRow>,
    tls_services: Vec<String>,
    sip_tls_hostname: String,
    web_uri: String,
    store_android: String,
    store_ios: String,
    /// Per service: id, label, ports, default ports.
    ports: Vec<(String, String, String, String)>,
    map: String,
    changed: bool,
    applied_revision: Option<u64>,
}

fn nic_column(n: &NicView, settings: Option<&switchboard_domain::NicSettings>) -> NicColumn {
    NicColumn {
        name: n.name.clone(),
        addresses: n.addresses.join(", "),
        configured: n.configured,
        state: match n.state {
            NicState::Present => "present",
            NicState::New => "new",
            NicState::Gone => "gone",
        },
        hostname: settings
            .and_then(|s| s.hostname.as_ref())
            .map(ToString::to_string)
            .unwrap_or_default(),
        public_address: settings
            .and_then(|s| s.public_address)
            .map(|a| a.to_string())
            .unwrap_or_default(),
        resolvers: settings
            .map(|s| s.resolvers.to_string())
            .unwrap_or_default(),
    }
}

fn rows(services: &[ServiceView], nics: &[String]) -> Vec<Row> {
    services
        .iter()
        .map(|s| Row {
            id: s.id.to_string(),
            label: s.label.clone(),
            ports: s.ports.to_string(),
            transport: word(&s.transport),
            tls: s.tls,
            cells: nics
                .iter()
                .map(|n| {
                    let checked = s.nics.contains(n);
                    let applied = s.applied_nics.as_ref().map(|a| a.contains(n));
                    Cell {
                        value: format!("{}@{n}", s.id),
                        label: format!("{} on {n}", s.id),
                        id: format!("cell-{}-{n}", s.id),
                        checked,
                        pending: applied != Some(checked),
                    }
                })
                .collect(),
        })
        .collect()
}

fn cert_row(v: &CertView, padlocks: &[PadlockView]) -> CertRow {
    let mine: Vec<_> = padlocks
        .iter()
        .filter(|p| p.cert.as_deref() == Some(v.name.as_str()))
        .collect();
    let names: Vec<String> = v
        .info
        .dns_names
        .iter()
        .cloned()
        .chain(v.info.ip_addresses.iter().map(ToString::to_string))
        .collect();
    CertRow {
        name: v.name.clone(),
        subject: v.info.subject.clone(),
        names: names.join(", "),
        issuer: v.info.issuer.clone(),
        expires: when(v.info.not_after),
        expires_in_days: v.expires_in_days,
        validity: word(&v.validity),
        has_key: v.has_key,
        bootstrap: v.bootstrap,
        used_by: v.used_by.join(", "),
        padlock: if mine.is_empty() {
            ""
        } else if mine.iter().all(|p| p.ok) {
            "closed"
        } else {
            "open"
        },
        acme: v.acme.as_ref().map(|a| AcmeRow {
            next: when(a.next_renewal),
            problem: match (&a.waiting, &a.last_error) {
                (Some(w), _) => w.clone(),
                (None, Some(e)) => {
                    format!("the last attempt failed ({} in a row): {e}", a.failures)
                }
                (None, None) => String::new(),
            },
        }),
    }
}

fn padlock_row(p: &PadlockView) -> PadlockRow {
    PadlockRow {
        service: p.service.to_string(),
        nic: p.nic.clone(),
        cert: p.cert.clone().unwrap_or_default(),
        host: p.host.clone().unwrap_or_default(),
        ok: p.ok,
        findings: p
            .findings
            .iter()
            .map(|f| format!("{}: {} — {}", f.code, f.message, f.hint))
            .collect(),
    }
}

/// What the Services page and the map read from the engine.
struct Snapshot {
    nics: Vec<NicView>,
    services: Vec<ServiceView>,
    padlocks: Vec<PadlockView>,
}

async fn snapshot(c: &St) -> Result<Snapshot, ApiError> {
    Ok(Snapshot {
        nics: c.engine.nics().await?,
        services: c.engine.services().await?,
        padlocks: c.engine.padlock().await?,
    })
}

/// The production preset's defaults: the NIC the administrator's session
/// came in through is the internal one (an administrator sits inside), the
/// first other NIC with an address the external one.
fn preset_defaults(nics: &[NicColumn], origin: &switchboard_engine::Origin) -> (String, String) {
    let arrival = origin.arrival.map(|a| a.local.to_string());
    let on_arrival = |n: &&NicColumn| {
        arrival.as_deref().is_some_and(|ip| {
            n.addresses
                .split(", ")
                .any(|a| a.split('/').next() == Some(ip))
        })
    };
    let configured = || nics.iter().filter(|n| n.configured);
    let internal = nics
        .iter()
        .find(on_arrival)
        .or_else(|| configured().next())
        .map(|n| n.name.clone())
        .unwrap_or_default();
    let external = configured()
        .find(|n| n.name != internal)
        .map(|n| n.name.clone())
        .unwrap_or_default();
    (internal, external)
}

async fn services_page(
    State(c): State<St>,
    Extension(s): Extension<SignedIn>,
    Requester(origin): Requester,
) -> Response {
    let page = async {
        let snap = snapshot(&c).await?;
        let matrix = c.engine.matrix().await?;
        let candidate = c.engine.candidate().await?;
        let status_changed = c.engine.diff(None, None).await?.changed;
        let nics: Vec<NicColumn> = matrix
            .nics
            .iter()
            .map(|name| {
                let settings = name
                    .parse::<NicName>()
                    .ok()
                    .and_then(|n| candidate.nics.get(&n));
                match snap.nics.iter().find(|n| &n.name == name) {
                    Some(n) => nic_column(n, settings),
                    None => NicColumn {
                        name: name.clone(),
                        addresses: String::new(),
                        configured: false,
                        state: "gone",
                        hostname: String::new(),
                        public_address: String::new(),
                        resolvers: String::new(),
                    },
                }
            })
            .collect();
        let certs = c.engine.certs().await?;
        let requests = c.engine.cert_requests().await?;
        let preset = preset_defaults(&nics, &origin);
        let store = |p: Platform| {
            candidate
                .provisioning
                .app_stores
                .get(&p)
                .map(ToString::to_string)
                .unwrap_or_default()
        };
        Ok::<_, ApiError>(ServicesPage {
            c: chrome(&c, &s, "Services", "services").await,
            mode: matrix.mode.clone(),
            rows: rows(&snap.services, &matrix.nics),
            nics,
            preset,
            new_nics: matrix.new_nics.clone(),
            certs: certs.iter().map(|v| cert_row(v, &snap.padlocks)).collect(),
            requests,
            padlocks: snap.padlocks.iter().map(padlock_row).collect(),
            tls_services: ServiceId::all()
                .filter(|s| s.info().tls)
                .map(|s| s.to_string())
                .collect(),
            sip_tls_hostname: candidate
                .provisioning
                .sip_tls_hostname
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            web_uri: candidate
                .provisioning
                .web_uri
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            store_android: store(Platform::Android),
            store_ios: store(Platform::Ios),
            ports: snap
                .services
                .iter()
                .map(|v| {
                    (
                        v.id.to_string(),
                        v.label.clone(),
                        v.ports.to_string(),
                        v.default_ports.to_string(),
                    )
                })
                .collect(),
            map: crate::map::render(&snap.nics, &snap.services, &snap.padlocks),
            changed: status_changed,
            applied_revision: matrix.applied_revision,
        })
    }
    .await;
    show(page)
}

async fn map_svg(State(c): State<St>) -> Response {
    match snapshot(&c).await {
        Ok(snap) => (
            [(header::CONTENT_TYPE, "image/svg+xml")],
            crate::map::render(&snap.nics, &snap.services, &snap.padlocks),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// The matrix form: every cell shown (`shown`) and those ticked (`cell`),
/// each `SERVICE@NIC`.
async fn save_matrix(
    State(c): State<St>,
    Extension(s): Extension<SignedIn>,
    body: axum::body::Bytes,
) -> Response {
    let outcome = async {
        let mut shown = BTreeSet::new();
        let mut ticked = BTreeSet::new();
        for (k, v) in form_urlencoded::parse(&body) {
            match &*k {
                "shown" => shown.insert(v.into_owned()),
                "cell" => ticked.insert(v.into_owned()),
                _ => false,
            };
        }
        if shown.len() > 10_000 {
            return Err(bad_form("too many matrix cells in one form"));
        }
        let services = c.engine.services().await.map_err(failure)?;
        let mut changes = 0;
        for cell in &shown {
            let Some((service, nic)) = cell.split_once('@') else {
                return Err(bad_form(format!(
                    "a matrix cell is SERVICE@NIC, not {cell:?}"
                )));
            };
            let service: ServiceId = parse(service)?;
            let nic: NicName = parse(nic)?;
            let want = ticked.contains(cell);
            let now = services
                .iter()
                .find(|v| v.id == service)
                .is_some_and(|v| v.nics.iter().any(|n| n == nic.as_str()));
            if want != now {
                c.engine
                    .set_cell(service, &nic, want)
                    .await
                    .map_err(failure)?;
                changes += 1;
            }
        }
        ok(format!(
            "matrix saved ({changes} cell(s) changed); press Update to apply it"
        ))
    }
    .await;
    done(&c, &s, outcome, "/#matrix")
}

#[derive(Deserialize)]
struct PresetForm {
    internal: String,
    external: String,
}

async fn preset(
    State(c): State<St>,
    Extension(s): Extension<SignedIn>,
    Fields(f): Fields<PresetForm>,
) -> Response {
    let outcome = async {
        let (i, e) = (parse(&f.internal)?, parse(&f.external)?);
        c.engine
            .preset_production(&i, &e)
            .await
            .map_err(failure)?;
        ok(format!(
            "suggested production layout set (internal {i}, external {e}); review it and press Update"
        ))
    }
    .await;
    done(&c, &s, outcome, "/#matrix")
}

#[derive(Deserialize)]
struct PortForm {
    service: String,
    ports: String,
}

async fn set_port(
    State(c): State<St>,
    Extension(s): Extension<SignedIn>,
    Fields(f): Fields<PortForm>,
) -> Response {
    let outcome = async {
        let service: ServiceId = parse(&f.service)?;
        let ports: switchboard_domain::PortRange = parse(&f.ports)?;
        c.engine.set_port(service, ports).await.map_err(failure)?;
        ok(format!(
            "{service} on port {ports}; press Update to apply it"
        ))
    }
    .await;
    done(&c, &s, outcome, "/#ports")
}

/// What a confirmation page asks ([`ConfirmPage`] without its chrome).
pub(super) struct Ask {
    pub(super) question: String,
    pub(super) consequences: Vec<String>,
    pub(super) action: String,
    pub(super) fields: Vec<(String, String)>,
    pub(super) button: &'static str,
    pub(super) cancel: String,
}

/// The confirmation page of a destructive action.
pub(super) async fn confirm_page(c: &St, s: &SignedIn, nav: &'static str, ask: Ask) -> Response {
    render(&ConfirmPage {
        c: chrome(c, s, ask.question.clone(), nav).await,
        question: ask.question,
        consequences: ask.consequences,
        action: ask.action,
        fields: ask.fields,
        button: ask.button.to_owned(),
        cancel: ask.cancel,
    })
}

/// `changes` in words, for a confirmation: what the action would undo or
/// apply.
fn changes_of(diff: Result<DiffView, EngineError>, none: &str) -> Vec<String> {
    match diff {
        Ok(d) if d.changed => d
            .summary
            .into_iter()
            .map(|l| format!("Changes: {l}"))
            .collect(),
        Ok(_) => vec![none.to_owned()],
        Err(e) => vec![format!("What changes cannot be shown: {e}")],
    }
}

async fn discard(
    State(c): State<St>,
    Extension(s): Extension<SignedIn>,
    Fields(confirmed): Fields<Confirmation>,
) -> Response {
    if !confirmed.yes() {
        let mut consequences = vec![
            "The candidate goes back to the running revision: these edits are lost.".to_owned(),
        ];
        consequences.extend(changes_of(
            c.engine.diff(None, None).await,
            "There is no edit to lose.",
        ));
        let ask = Ask {
            question: "Discard the edits not applied yet?".into(),
            consequences,
            action: "/discard".into(),
            fields: vec![],
            button: "Discard the edits",
            cancel: "/".into(),
        };
        return confirm_page(&c, &s, "services", ask).await;
    }
    let outcome = match c.engine.discard().await {
        Ok(v) if v.changed => ok("edits discarded: the candidate is the applied revision again"),
        Ok(_) => ok("nothing to discard"),
        Err(e) => Err(failure(e)),
    };
    done(&c, &s, outcome, "/")
}

// ---- certificates ------------------------------------------------------------

/// The most a certificate or key file may weigh.
const MAX_FILE: usize = switchboard_pki::MAX_UPLOAD;

async fn upload_cert(
    State(c): State<St>,
    Extension(s): Extension<SignedIn>,
    mut form: Multipart,
) -> Response {
    let outcome = async {
        let (mut name, mut bundle, mut key, mut password) = (String::new(), vec![], None, None);
        let bad = bad_form;
        while let Some(field) = form
            .next_field()
            .await
            .map_err(|e| bad(format!("the upload is not a valid form ({e})")))?
        {
            let field_name = field.name().unwrap_or("").to_owned();
            let data = field
                .bytes()
                .await
                .map_err(|e| bad(format!("the upload was cut short ({e})")))?;
            if data.len() > MAX_FILE {
                return Err(failure(EngineError::Import {
                    code: "oversize",
                    message: format!("{field_name} is larger than {MAX_FILE} bytes"),
                    hint: "upload the certificate and its key as separate files of at most 1 MiB each",
                }));
            }
            match field_name.as_str() {
                "name" => name = String::from_utf8_lossy(&data).trim().to_owned(),
                "bundle" => bundle = data.to_vec(),
                "key" if !data.is_empty() => key = Some(data.to_vec()),
                "password" if !data.is_empty() => {
                    password = Some(String::from_utf8_lossy(&data).into_owned())
                }
                _ => {}
            }
        }
        let name: CertName = parse(&name)?;
        if bundle.is_empty() {
            return Err(bad("choose a certificate file to upload".into()));
        }
        let v = c
            .engine
            .import_cert(&name, &bundle, key.as_deref(), password.as_deref())
            .await
            .map_err(failure)?;
        ok(format!(
            "certificate {} imported ({}, expires {})",
            v.name,
            v.info.subject,
            when(v.info.not_after)
        ))
    }
    .await;
    done(&c, &s, outcome, "/#certificates")
}

/// The bytes of the upload form's `file` field; `missing` says what to
/// choose when there is none, or it is empty.
pub(super) async fn file_field(form: &mut Multipart, missing: &str) -> Result<Vec<u8>, Flash> {
    let mut file = Vec::new();
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| bad_form(format!("the upload is not a valid form ({e})")))?
    {
        if field.name() == Some("file") {
            file = field
                .bytes()
                .await
                .map_err(|e| bad_form(format!("the upload was cut short ({e})")))?
                .to_vec();
        }
    }
    if file.is_empty() {
        return Err(bad_form(missing));
    }
    Ok(file)
}

/// Trust the CA certificate(s) of an uploaded file (for the padlock check).
async fn add_cas(
    State(c): State<St>,
    Extension(s): Extension<SignedIn>,
    mut form: Multipart,
) -> Response {
    let outcome = async {
        let file = file_field(&mut form, "choose a CA certificate file").await?;
        let added = c.engine.add_cas(&file).await.map_err(failure)?;
        let subjects: Vec<_> = added.iter().map(|a| a.subject.as_str()).collect();
        ok(format!("trusted CA(s) added: {}", subjects.join("; ")))
    }
    .await;
    done(&c, &s, outcome, "/#certificates")
}

#[derive(Template)]
#[template(path = "cert.html")]
struct CertPage {
    c: Chrome,
    cert: CertRow,
    serial: String,
    fingerprint: String,
    not_before: String,
    key: String,
    self_signed: bool,
    chain_pem: String,
}

async fn cert_page(
    State(c): State<St>,
    Extension(s): Extension<SignedIn>,
    PagePath(name): PagePath<String>,
) -> Response {
    let page = async {
        let name: CertName = name
            .parse()
            .map_err(|e: switchboard_domain::tls::InvalidCertName| EngineError::Input(e.into()))?;
        let (v, chain_pem) = c.engine.cert(&name).await?;
        let padlocks = c.engine.padlock().await?;
        Ok::<_, ApiError>(CertPage {
            c: chrome(&c, &s, format!("Certificate {}", v.name), "services").await,
            serial: v.info.serial.clone(),
            fingerprint: v.info.fingerprint.to_string(),
            not_before: when(v.info.not_before),
            key: v.info.key.map(|k| word(&k)).unwrap_or_default(),
            self_signed: v.info.is_self_signed,
            cert: cert_row(&v, &padlocks),
            chain_pem,
        })
    }
    .await;
    show(page)
}

async fn delete_cert(
    State(c): State<St>,
    Extension(s): Extension<SignedIn>,
    PagePath(name): PagePath<String>,
    Fields(confirmed): Fields<Confirmation>,
) -> Response {
    if !confirmed.yes() {
        let Ok(cert) = parse::<CertName>(&name) else {
            return done(
                &c,
                &s,
                Err(bad_form("no such certificate name")),
                "/#certificates",
            );
        };
        let ask = Ask {
            question: format!("Delete certificate {cert}?"),
            consequences: vec![
                "Its private key, if the appliance holds it, is erased: this cannot be undone."
                    .into(),
                "A certificate still bound to a service is refused: unbind it and Update first."
                    .into(),
            ],
            action: format!("/certs/{cert}/delete"),
            fields: vec![],
            button: "Delete the certificate",
            cancel: "/#certificates".into(),
        };
        return confirm_page(&c, &s, "services", ask).await;
    }
    let outcome = async {
        let name: CertName = parse(&name)?;
        c.engine.delete_cert(&name).await.map_err(failure)?;
        ok(format!("certificate {name} deleted"))
    }
    .await;
    done(&c, &s, outcome, "/#certificates")
}

/// The form that orders a certificate from an ACME CA: names separated
/// by spaces or commas, one contact address (optional).
#[derive(Deserialize)]
struct AcmeForm {
    name: String,
    #[serde(default)]
    domains: String,
    #[serde(default)]
    directory: String,
    #[serde(default)]
    contact: String,
    #[serde(default)]
    challenge: String,
}

async fn acme_order(
    State(c): State<St>,
    Extension(s): Extension<SignedIn>,
    Fields(f): Fields<AcmeForm>,
) -> Response {
    let outcome = async {
        let domains: Vec<&str> = words(&f.domains);
        let contact = match f.contact.trim() {
            "" => vec![],
            email if email.starts_with("mailto:") => vec![email.to_owned()],
            email => vec![format!("mailto:{email}")],
        };
        let order = crate::input::acme_order(
            &f.name,
            &domains,
            f.directory.trim().to_owned(),
            contact,
            Some(&f.challenge),
        )
        .map_err(failure)?;
        let v = c.engine.acme_issue(order).await.map_err(failure)?;
        ok(format!(
            "certificate {} issued by the ACME CA; bind it below, then Update. It renews itself.",
            v.name
        ))
    }
    .await;
    done(&c, &s, outcome, "/#certificates")
}

async fn renew_cert(
    State(c): State<St>,
    Extension(s): Extension<SignedIn>,
    PagePath(name): PagePath<String>,
) -> Response {
    let outcome = async {
        let name: CertName = parse(&name)?;
        let v = c.engine.acme_renew(&name).await.map_err(failure)?;
        ok(match (&v.replaced, v.revision) {
            (Some(old), Some(n)) => format!("{} replaces {old}, applied as revision {n}", v.cert),
            (Some(old), None) => format!("{} replaces {old} in the candidate", v.cert),
            (None, _) => format!("{} is not due", v.cert),
        })
    }
    .await;
    done(&c, &s, outcome, "/#certificates")
}

/// The words of a form field, separated by spaces or commas.
fn words(text: &str) -> Vec<&str> {
    text.split(|ch: char| ch == ',' || ch.is_whitespace())
        .filter(|x| !x.is_empty())
        .collect()
}

/// The form that makes a key on the appliance: names separated by spaces
/// or commas.
#[derive(Deserialize)]
struct RequestForm {
    name: String,
    #[serde(default)]
    dns: String,
    #[serde(default)]
    ips: String,
    #[serde(default)]
    key_type: String,
}

async fn request_key(
    State(c): State<St>,
    Extension(s): Extension<SignedIn>,
    Fields(f): Fields<RequestForm>,
) -> Response {
    let outcome = async {
        let name: CertName = parse(&f.name)?;
        let (dns, ips) = (words(&f.dns), words(&f.ips));
        let (key_type, names) =
            crate::input::cert_request(&dns, &ips, Some(&f.key_type)).map_err(failure)?;
        let v = c
            .engine
            .request_cert(&name, key_type, names)
            .await
            .map_err(failure)?;
        ok(format!(
            "a {} key was made on the appliance for {}: give its signing request (below) to your CA, then import the certificate it returns under the name {} without a key",
            v.key_type,
            v.names.join(", "),
            v.name
        ))
    }
    .await;
    done(&c, &s, outcome, "/#requests")
}

#[derive(Deserialize)]
struct BindForm {
    service: String,
    /// Empty: every NIC (the service's default).
    #[serde(default)]
    nic: String,
    #[serde(default)]
    cert: String,
}

/// `None` for a blank field, else what `parse` makes of it (trimmed).
fn blank_or<T>(
    field: &str,
    parse: impl FnOnce(&str) -> Result<T, Flash>,
) -> Result<Option<T>, Flash> {
    match field.trim() {
        "" => Ok(None),
        text => parse(text).map(Some),
    }
}

async fn bind(
    State(c): State<St>,
    Extension(s): Extension<SignedIn>,
    Fields(f): Fields<BindForm>,
) -> Response {
    let outcome = async {
        let service: ServiceId = parse(&f.service)?;
        let nic: Option<NicName> = blank_or(&f.nic, parse)?;
        let cert: CertName = parse(&f.cert)?;
        c.engine
            .bind(service, nic.as_ref(), &cert, false)
            .await
            .map_err(failure)?;
        let on = nic.map_or("every NIC".to_owned(), |n| n.to_string());
        ok(format!(
            "{service} on {on} bound to {cert}; press Update to apply it"
        ))
    }
    .await;
    done(&c, &s, outcome, "/#bindings")
}

async fn unbind(
    State(c): State<St>,
    Extension(s): Extension<SignedIn>,
    Fields(f): Fields<BindForm>,
) -> Response {
    let outcome = async {
        let service: ServiceId = parse(&f.service)?;
        let nic: Option<NicName> = blank_or(&f.nic, parse)?;
        c.engine
            .unbind(service, nic.as_ref())
            .await
            .map_err(failure)?;
        ok(format!(
            "binding of {service} removed; press Update to apply it"
        ))
    }
    .await;
    done(&c, &s, outcome, "/#bindings")
}

#[derive(Deserialize)]
struct NicForm {
    #[serde(default)]
    hostname: String,
    #[serde(default)]
    public_address: String,
    #[serde(default)]
    resolvers: String,
}

async fn nic_settings(
    State(c): State<St>,
    Extension(s): Extension<SignedIn>,
    PagePath(nic): PagePath<String>,
    Fields(f): Fields<NicForm>,
) -> Response {
    let outcome = async {
        let nic: NicName = parse(&nic)?;
        // The fields of the form are the new values (blank: none).
        let change = input::nic_settings_change(
            Some(&f.hostname),
            Some(&f.public_address),
            Some(&f.resolvers),
        )
        .map_err(failure)?;
        c.engine.change_nic(&nic, change).await.map_err(failure)?;
        ok(format!(
            "settings of {nic} saved; press Update to apply them"
        ))
    }
    .await;
    done(&c, &s, outcome, "/#matrix")
}

#[derive(Deserialize)]
struct ProvisioningForm {
    #[serde(default)]
    sip_tls_hostname: String,
    #[serde(default)]
    web_uri: String,
    /// The app store page of each platform (blank: none).
    #[serde(default)]
    store_android: String,
    #[serde(default)]
    store_ios: String,
}

async fn provisioning(
    State(c): State<St>,
    Extension(s): Extension<SignedIn>,
    Fields(f): Fields<ProvisioningForm>,
) -> Response {
    let outcome = async {
        // Every field of the form is the new value (blank: none).
        let change = input::ProvisioningChange {
            sip_tls_hostname: Some(&f.sip_tls_hostname),
            web_uri: Some(&f.web_uri),
            app_stores: vec![
                (Platform::Android, &f.store_android),
                (Platform::Ios, &f.store_ios),
            ],
        }
        .parse()
        .map_err(failure)?;
        c.engine
            .change_provisioning(change)
            .await
            .map_err(failure)?;
        ok("provisioning settings saved; press Update to apply them")
    }
    .await;
    done(&c, &s, outcome, "/#provisioning")
}

// ---- Update, confirmation, revisions -------------------------------------------

struct DiagnosticRow {
    error: bool,
    code: String,
    message: String,
    hint: String,
}

#[derive(Template)]
#[template(path = "update.html")]
struct UpdatePage {
    c: Chrome,
    diagnostics: Vec<DiagnosticRow>,
    errors: usize,
    diff: DiffRows,
    /// `SERVICE on NIC` when this Update would cut the session off.
    lockout: Option<String>,
    trial_seconds: u64,
}

/// A diff, ready to show.
struct DiffRows {
    from: String,
    to: String,
    changed: bool,
    cells: Vec<(String, String, bool)>,
    ports: Vec<(String, String, String)>,
    /// Every other change in words: sockets, certificates, names, settings.
    changes: Vec<String>,
    /// What the change does to phones and browsers.
    notes: Vec<(String, String)>,
    ruleset: String,
    kamailio_cfg: String,
    kamailio_tls: String,
    media: String,
}

impl From<DiffView> for DiffRows {
    fn from(d: DiffView) -> DiffRows {
        let diff = d.diff;
        DiffRows {
            from: d.from,
            to: d.to,
            changed: d.changed,
            cells: diff
                .matrix
                .iter()
                .map(|c| {
                    (
                        c.service.to_string(),
                        c.nic.clone(),
                        c.change == switchboard_engine::views::Change::Added,
                    )
                })
                .collect(),
            ports: diff
                .ports
                .iter()
                .map(|p| (p.service.to_string(), p.from.to_string(), p.to.to_string()))
                .collect(),
            // The summary says the matrix and the ports first.
            changes: d
                .summary
                .into_iter()
                .skip(diff.matrix.len() + diff.ports.len())
                .collect(),
            notes: diff.notes.into_iter().map(|n| (n.code, n.text)).collect(),
            ruleset: diff.ruleset,
            kamailio_cfg: diff.kamailio.cfg,
            kamailio_tls: diff.kamailio.tls_cfg,
            media: diff.media,
        }
    }
}

async fn update_page(
    State(c): State<St>,
    Extension(s): Extension<SignedIn>,
    Requester(origin): Requester,
) -> Response {
    let page = async {
        let status = c.engine.status().await?;
        let diff = c.engine.diff(None, None).await?;
        let lockout = c
            .engine
            .lockout_preview(&origin)
            .await?
            .map(|(service, nic)| format!("{service} on {nic}"));
        Ok::<_, ApiError>(UpdatePage {
            c: chrome(&c, &s, "Review and Update", "services").await,
            errors: status.errors,
            diagnostics: status
                .diagnostics
                .iter()
                .map(|d| DiagnosticRow {
                    error: d.severity == Severity::Error,
                    code: d.code.to_string(),
                    message: d.message.clone(),
                    hint: d.hint.clone(),
                })
                .collect(),
            diff: diff.into(),
            lockout,
            trial_seconds: TRIAL_SECONDS,
        })
    }
    .await;
    show(page)
}

#[derive(Deserialize)]
struct UpdateForm {
    #[serde(default)]
    comment: String,
    /// Apply on trial: rolled back unless confirmed.
    #[serde(default)]
    trial: Option<String>,
    /// How long the trial lasts (the engine accepts 1 to 3600 s).
    #[serde(default)]
    trial_seconds: Option<u64>,
}

/// Where the browser goes after revision `applied` is in place: `page`,
/// on the console's new port when the revision moved it away from the
/// port this request came in on (the session cookie goes with it: cookies
/// do not depend on the port). The host is the one the browser asked for,
/// when it parses as a name or address, else the address it arrived at.
async fn after_apply(
    c: &St,
    origin: &switchboard_engine::Origin,
    headers: &HeaderMap,
    applied: Option<u64>,
    page: &str,
) -> String {
    let (Some(arrival), Some(n)) = (origin.arrival.as_ref(), applied) else {
        return page.to_owned();
    };
    let Ok(r) = c.engine.revision(n).await else {
        return page.to_owned();
    };
    let port = r.plan.port(ServiceId::Console).first();
    if arrival.service != ServiceId::Console || port == arrival.port {
        return page.to_owned();
    }
    let asked = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| {
            // `name:port`, `[v6]:port`, or a bare name.
            let host = match h.strip_prefix('[') {
                Some(rest) => rest.split(']').next()?,
                None => h.rsplit_once(':').map_or(h, |(host, _)| host),
            };
            host.parse::<switchboard_domain::Host>().ok()
        });
    let host = match asked {
        Some(switchboard_domain::Host::Name(name)) => name.to_string(),
        Some(switchboard_domain::Host::Ip(ip)) => bracketed(ip),
        None => bracketed(canonical(arrival.local)),
    };
    format!("https://{host}:{port}{page}")
}

fn bracketed(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        v4 => v4.to_string(),
    }
}

async fn update(
    State(c): State<St>,
    Extension(s): Extension<SignedIn>,
    Requester(origin): Requester,
    headers: HeaderMap,
    Fields(f): Fields<UpdateForm>,
) -> Response {
    let outcome = async {
        let window = f
            .trial
            .is_some()
            .then(|| f.trial_seconds.unwrap_or(TRIAL_SECONDS));
        let v = c
            .engine
            .update(&origin, &f.comment, window)
            .await
            .map_err(failure)?;
        let mut message = match (v.no_change, v.pending_until) {
            (true, _) => "nothing to update: the candidate is the applied revision".to_owned(),
            (false, Some(_)) => format!(
                "revision {} applied on trial: it is kept only once confirmed",
                v.revision.unwrap_or_default()
            ),
            (false, None) => format!("revision {} applied", v.revision.unwrap_or_default()),
        };
        for w in &v.warnings {
            message.push_str(&format!("; warning: {}", w.message));
        }
        Ok((message, v.revision))
    }
    .await;
    match outcome {
        Ok((message, revision)) => {
            let to = after_apply(&c, &origin, &headers, revision, "/").await;
            done(&c, &s, ok(message), &to)
        }
        Err(e) => done(&c, &s, Err(e), "/update"),
    }
}

async fn confirm(
    State(c): State<St>,
    Extension(s): Extension<SignedIn>,
    Requester(origin): Requester,
) -> Response {
    let outcome = match c.engine.confirm(&origin).await {
        Ok(v) => ok(format!("revision {} confirmed", v.revision)),
        Err(e) => Err(failure(e)),
    };
    done(&c, &s, outcome, "/")
}

struct RevisionRow {
    number: u64,
    at: String,
    actor: String,
    origin: String,
    kind: String,
    comment: String,
    outcome: String,
    detail: String,
}

fn revision_row(r: &RevisionSummary) -> RevisionRow {
    RevisionRow {
        number: r.number,
        at: when(r.created_at),
        actor: r.actor.clone(),
        origin: r.origin.clone(),
        kind: word(&r.kind),
        comment: r.comment.clone(),
        outcome: word(&r.outcome),
        detail: r.detail.clone(),
    }
}

#[derive(Template)]
#[template(path = "revisions.html")]
struct RevisionsPage {
    c: Chrome,
    revisions: Vec<RevisionRow>,
}

async fn revisions_page(State(c): State<St>, Extension(s): Extension<SignedIn>) -> Response {
    match c.engine.revisions().await {
        Ok(list) => render(&RevisionsPage {
            c: chrome(&c, &s, "Revisions", "revisions").await,
            revisions: list.iter().rev().map(revision_row).collect(),
        }),
        Err(e) => error_page(e.into()),
    }
}

#[derive(Template)]
#[template(path = "revision.html")]
struct RevisionPage {
    c: Chrome,
    r: RevisionRow,
    diff: DiffRows,
    /// The revision's plan in words (sockets, TLS table, names, phones).
    plan: Vec<String>,
    ruleset: String,
}

async fn revision_page(
    State(c): State<St>,
    Extension(s): Extension<SignedIn>,
    PagePath(number): PagePath<String>,
) -> Response {
    let page = async {
        let number = path_number(&number, "revision numbers", "pick a revision from the list")?;
        let r = c.engine.revision(number).await?;
        let before = (number > 1).then_some(number - 1);
        let diff = match before {
            Some(b) => c.engine.diff(Some(b), Some(number)).await?,
            None => c.engine.diff(None, Some(number)).await?,
        };
        Ok::<_, ApiError>(RevisionPage {
            c: chrome(&c, &s, format!("Revision {number}"), "revisions").await,
            r: revision_row(&r.summary),
            diff: diff.into(),
            plan: r.plan.summary(),
            ruleset: r.plan.ruleset.clone(),
        })
    }
    .await;
    show(page)
}

#[derive(Deserialize)]
struct CompareQuery {
    from: u64,
    to: u64,
}

#[derive(Template)]
#[template(path = "compare.html")]
struct ComparePage {
    c: Chrome,
    diff: DiffRows,
}

async fn compare_page(
    State(c): State<St>,
    Extension(s): Extension<SignedIn>,
    q: Result<Query<CompareQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let page = async {
        let Query(q) = q?;
        let diff = c.engine.diff(Some(q.from), Some(q.to)).await?;
        Ok::<_, ApiError>(ComparePage {
            c: chrome(
                &c,
                &s,
                format!("Revision {} → {}", q.from, q.to),
                "revisions",
            )
            .await,
            diff: diff.into(),
        })
    }
    .await;
    show(page)
}

#[derive(Deserialize)]
struct RollbackForm {
    /// Blank: `rollback to revision N`.
    #[serde(default)]
    comment: String,
    #[serde(default)]
    trial: Option<String>,
    #[serde(default)]
    confirmed: String,
}

async fn rollback(
    State(c): State<St>,
    Extension(s): Extension<SignedIn>,
    Requester(origin): Requester,
    headers: HeaderMap,
    PagePath(number): PagePath<String>,
    Fields(f): Fields<RollbackForm>,
) -> Response {
    if !confirmed(&f.confirmed) {
        let Ok(n) = path_number(&number, "revision numbers", "pick a revision from the list")
        else {
            return done(
                &c,
                &s,
                Err(bad_form("no such revision number")),
                "/revisions",
            );
        };
        let mut consequences = vec![format!(
            "The appliance runs what revision {n} ran again, as a new revision{}.",
            if f.trial.is_some() {
                ", on trial: rolled back by itself unless confirmed"
            } else {
                ", applied at once"
            }
        )];
        consequences.extend(changes_of(
            c.engine.diff(None, Some(n)).await,
            "Nothing changes on the system: it already runs this.",
        ));
        let mut fields = vec![("comment".to_owned(), f.comment.clone())];
        if f.trial.is_some() {
            fields.push(("trial".into(), "1".into()));
        }
        let ask = Ask {
            question: format!("Roll back to revision {n}?"),
            consequences,
            action: format!("/revisions/{n}/rollback"),
            fields,
            button: "Roll back",
            cancel: "/revisions".into(),
        };
        return confirm_page(&c, &s, "revisions", ask).await;
    }
    let outcome = async {
        let number = path_number(&number, "revision numbers", "pick a revision from the list")
            .map_err(failure)?;
        let window = f.trial.is_some().then_some(TRIAL_SECONDS);
        let v = c
            .engine
            .rollback(&origin, number, &f.comment, window)
            .await
            .map_err(failure)?;
        let message = format!(
            "rolled back to revision {number}: revision {} {}",
            v.revision.unwrap_or_default(),
            if v.pending_until.is_some() {
                "applied on trial"
            } else {
                "applied"
            }
        );
        Ok((message, v.revision))
    }
    .await;
    match outcome {
        Ok((message, revision)) => {
            let to = after_apply(&c, &origin, &headers, revision, "/revisions").await;
            done(&c, &s, ok(message), &to)
        }
        Err(e) => done(&c, &s, Err(e), "/revisions"),
    }
}

// ---- calls ------------------------------------------------------------------------

struct CallRow {
    parties: String,
    state: String,
    since: String,
    media: String,
    srtp: &'static str,
    packets: u64,
}

#[derive(Template)]
#[template(path = "calls.html")]
struct CallsPage {
    c: Chrome,
    calls: Vec<CallRow>,
    /// Whether the media relay runs, in words.
    relay: String,
}

async fn calls_page(State(c): State<St>, Extension(s): Extension<SignedIn>) -> Response {
    let page = async {
        let calls = c.engine.calls().await?;
        let relay = c.engine.status().await?.media.unwrap_or_else(|| {
            "no media relay (the daemon runs without --media rtpengine): calls are refused".into()
        });
        Ok::<_, ApiError>(CallsPage {
            c: chrome(&c, &s, "Calls", "calls").await,
            calls: calls
                .iter()
                .map(|v| CallRow {
                    parties: if v.caller.is_empty() {
                        v.call_id.clone()
                    } else {
                        format!("{} \u{2192} {}", v.caller, v.callee)
                    },
                    state: v.state.clone(),
                    since: v.answered_at.or(v.started_at).map(when).unwrap_or_default(),
                    media: v.media_nics.join(" \u{2194} "),
                    srtp: match v.srtp {
                        Some(true) => "yes",
                        Some(false) => "NO",
                        None => "no media yet",
                    },
                    packets: v.packets,
                })
                .collect(),
            relay,
        })
    }
    .await;
    show(page)
}

// ---- fleet ------------------------------------------------------------------------

struct FleetMemberRow {
    appliance: String,
    site: String,
    policy_revision: i64,
    outcome: String,
    local_revision: String,
    drift: &'static str,
    open_padlocks: String,
    reported_at: String,
}

struct FleetSummary {
    appliance: String,
    group: String,
    site: String,
    contact: String,
    last: String,
    members: Vec<FleetMemberRow>,
}

#[derive(Template)]
#[template(path = "fleet.html")]
struct FleetPage {
    c: Chrome,
    fleet: Option<FleetSummary>,
}

async fn fleet_page(State(c): State<St>, Extension(s): Extension<SignedIn>) -> Response {
    let page = async {
        let v = c.engine.fleet_view().await?;
        let fleet = v.joined.then(|| FleetSummary {
            appliance: v.appliance.clone().unwrap_or_default(),
            group: v.group.clone().unwrap_or_default(),
            site: v.site.clone().unwrap_or_default(),
            contact: match (v.connected, &v.last_contact) {
                (true, _) => "In contact with etcd.".into(),
                (false, Some(at)) => format!(
                    "Out of contact with etcd since {at} ({}): the last applied revision keeps running.",
                    v.error.as_deref().unwrap_or("no answer")
                ),
                (false, None) => format!(
                    "Not in contact with etcd yet ({}).",
                    v.error.as_deref().unwrap_or("connecting")
                ),
            },
            last: match &v.last {
                Some(l) => format!(
                    "Last policy revision {} (attempt {}): {}{}",
                    l.policy_revision,
                    l.attempt,
                    serde_json::to_value(l.outcome)
                        .ok()
                        .and_then(|o| o.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    if l.detail.is_empty() {
                        String::new()
                    } else {
                        format!(" \u{2014} {}", l.detail)
                    }
                ),
                None => "No policy applied yet.".into(),
            },
            members: v
                .members
                .iter()
                .map(|m| FleetMemberRow {
                    appliance: m.appliance.clone(),
                    site: m.site.clone(),
                    policy_revision: m.policy_revision,
                    outcome: serde_json::to_value(m.outcome)
                        .ok()
                        .and_then(|o| o.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    local_revision: m.local_revision.map_or("-".into(), |r| r.to_string()),
                    drift: if m.drift { "yes" } else { "no" },
                    open_padlocks: m.open_padlocks.join(", "),
                    reported_at: m.reported_at.clone(),
                })
                .collect(),
        });
        Ok::<_, ApiError>(FleetPage {
            c: chrome(&c, &s, "Fleet", "fleet").await,
            fleet,
        })
    }
    .await;
    show(page)
}

// ---- bans -------------------------------------------------------------------------

struct BanRow {
    address: String,
    reason: String,
    offences: u32,
    remaining: u64,
    until: String,
    in_kernel: &'static str,
}

/// The policy's fields as the form shows them.
#[derive(Default)]
struct BanPolicyFields {
    enabled: bool,
    failures: String,
    window_secs: String,
    ban_secs: String,
    max_ban_secs: String,
    flood_requests: String,
    trusted: String,
}

#[derive(Template)]
#[template(path = "bans.html")]
struct BansPage {
    c: Chrome,
    bans: Vec<BanRow>,
    policy: String,
    /// The candidate's policy in words when it differs, else empty.
    candidate: String,
    form: BanPolicyFields,
}

fn policy_words(p: &switchboard_domain::BanPolicy) -> String {
    if !p.enabled {
        return "off: nobody is banned".into();
    }
    let trusted: Vec<String> = p.trusted.iter().map(ToString::to_string).collect();
    format!(
        "ban after {} failed authentications within {} s, or {} requests within 2 s; for {} s, doubled per repeat offence up to {} s; trusted: {}",
        p.failures,
        p.window_secs,
        p.flood_requests,
        p.ban_secs,
        p.max_ban_secs,
        if trusted.is_empty() {
            "none".into()
        } else {
            trusted.join(", ")
        }
    )
}

async fn bans_page(State(c): State<St>, Extension(s): Extension<SignedIn>) -> Response {
    let page = async {
        let v = c.engine.bans().await?;
        let shown = v
            .candidate_policy
            .clone()
            .unwrap_or_else(|| v.policy.clone());
        Ok::<_, ApiError>(BansPage {
            c: chrome(&c, &s, "Bans", "bans").await,
            bans: v
                .bans
                .iter()
                .map(|b| BanRow {
                    address: b.address.to_string(),
                    reason: b.reason.clone(),
                    offences: b.offences,
                    remaining: b.remaining_secs,
                    until: when(b.expires_at),
                    in_kernel: match b.in_kernel {
                        Some(true) => "yes",
                        Some(false) => "NO",
                        None => "not enforced (--firewall plan)",
                    },
                })
                .collect(),
            policy: policy_words(&v.policy),
            candidate: v
                .candidate_policy
                .as_ref()
                .map(policy_words)
                .unwrap_or_default(),
            form: BanPolicyFields {
                enabled: shown.enabled,
                failures: shown.failures.to_string(),
                window_secs: shown.window_secs.to_string(),
                ban_secs: shown.ban_secs.to_string(),
                max_ban_secs: shown.max_ban_secs.to_string(),
                flood_requests: shown.flood_requests.to_string(),
                trusted: shown
                    .trusted
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            },
        })
    }
    .await;
    show(page)
}

#[derive(Deserialize)]
struct BanPolicyForm {
    #[serde(default)]
    enabled: Option<String>,
    failures: String,
    window_secs: String,
    ban_secs: String,
    max_ban_secs: String,
    flood_requests: String,
    #[serde(default)]
    trusted: String,
}

/// Every field of the form is the policy's new value.
async fn ban_policy(
    State(c): State<St>,
    Extension(s): Extension<SignedIn>,
    Fields(f): Fields<BanPolicyForm>,
) -> Response {
    let outcome = async {
        let number = |name: &str, v: &str| {
            v.trim().parse::<u32>().map_err(|_| {
                bad_form(format!(
                    "{name} must be a whole number, not {:?}",
                    v.chars().take(32).collect::<String>()
                ))
            })
        };
        let change = switchboard_domain::BanPolicyChange {
            enabled: Some(f.enabled.is_some()),
            failures: Some(number("failures", &f.failures)?),
            window_secs: Some(number("the window", &f.window_secs)?),
            ban_secs: Some(number("the first ban", &f.ban_secs)?),
            max_ban_secs: Some(number("the longest ban", &f.max_ban_secs)?),
            flood_requests: Some(number("the flood limit", &f.flood_requests)?),
            trusted: Some(
                f.trusted
                    .split(',')
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .map(str::to_owned)
                    .collect(),
            ),
        };
        c.engine.set_ban_policy(&change).await.map_err(failure)?;
        ok("ban policy saved; press Update to apply it")
    }
    .await;
    done(&c, &s, outcome, "/bans")
}

async fn unban(
    State(c): State<St>,
    Extension(s): Extension<SignedIn>,
    PagePath(address): PagePath<String>,
) -> Response {
    let outcome = async {
        let v = c.engine.unban(&address).await.map_err(failure)?;
        ok(format!("ban of {} lifted", v.address))
    }
    .await;
    done(&c, &s, outcome, "/bans")
}

// ---- assets ---------------------------------------------------------------------

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        include_str!("../../static/console.css"),
    )
        .into_response()
}

async fn js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        include_str!("../../static/console.js"),
    )
        .into_response()
}

async fn openapi() -> Response {
    axum::Json(crate::openapi::document()).into_response()
}
