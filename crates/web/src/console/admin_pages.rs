//! The console's pages for administration: the audit log (filters and
//! export), the administrators (roles, disabling, removal, the second
//! factor's policy), the signed-in administrator's own second factor
//! (enrolment with a QR code and a confirmation code, recovery codes shown
//! once), and backup and restore. Each action calls the same engine
//! operation as its API route; which role may reach which page is decided
//! before (`crate::roles`).

use askama::Template;
use axum::Extension;
use axum::Router;
use axum::extract::{Multipart, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use switchboard_engine::{AdminView, Role};

use super::pages::{
    Ask, Confirmation, Fields, chrome, confirm_page, done, error_page, failure, ok, render, when,
};
use super::session::Flash;
use super::{SignedIn, St};
use crate::contract::AuditQuery;
use crate::error::ApiError;

pub(super) fn routes() -> Router<St> {
    Router::new()
        .route("/audit", get(audit_page))
        .route("/admins", get(admins_page).post(add_admin))
        .route("/admins/totp-policy", post(totp_policy))
        .route("/admins/{username}/role", post(set_role))
        .route("/admins/{username}/disable", post(disable))
        .route("/admins/{username}/enable", post(enable))
        .route("/admins/{username}/delete", post(remove))
        .route("/admins/{username}/totp/delete", post(remove_totp))
        .route("/me/totp", get(totp_page).post(begin_totp))
        .route("/me/totp/confirm", post(confirm_totp))
        .route("/backup", get(backup_page).post(backup))
        .route("/restore", post(restore))
}

// ---- audit log ------------------------------------------------------------------

struct AuditRow {
    at: String,
    actor: String,
    address: String,
    kind: String,
    action: String,
    outcome: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    c: super::pages::Chrome,
    entries: Vec<AuditRow>,
    actor: String,
    kind: String,
    since: String,
    until: String,
    /// The filter as a query string, for the export links.
    query: String,
}

async fn audit_page(
    State(c): State<St>,
    Extension(s): Extension<SignedIn>,
    q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let page = async {
        let Query(mut q) = q.map_err(ApiError::from)?;
        q.format = None;
        q.limit = Some(q.limit.unwrap_or(500).min(crate::api::MAX_AUDIT_LIMIT));
        let (filter, _) = crate::api::audit_filter(&q)?;
        let list = c.engine.audit_query(&filter).await?;
        let query = {
            let mut query = form_urlencoded::Serializer::new(String::new());
            for (k, v) in [
                ("actor", &q.actor),
                ("kind", &q.kind),
                ("since", &q.since),
                ("until", &q.until),
            ] {
                if let Some(v) = v.as_deref().filter(|v| !v.trim().is_empty()) {
                    query.append_pair(k, v.trim());
                }
            }
            query.finish()
        };
        let text = |v: Option<String>| v.unwrap_or_default();
        Ok::<_, ApiError>(AuditPage {
            c: chrome(&c, &s, "Audit log", "audit").await,
            entries: list
                .into_iter()
                .map(|a| AuditRow {
                    at: when(a.at),
                    actor: a.actor,
                    address: a.address,
                    kind: a.kind,
                    action: a.action,
                    outcome: a.outcome,
                })
                .collect(),
            query,
            actor: text(q.actor),
            kind: text(q.kind),
            since: text(q.since),
            until: text(q.until),
        })
    }
    .await;
    match page {
        Ok(p) => render(&p),
        Err(e) => error_page(e),
    }
}

// ---- administrators ---------------------------------------------------------------

#[derive(Template)]
#[template(path = "admins.html")]
struct AdminsPage {
    c: super::pages::Chrome,
    admins: Vec<AdminView>,
    roles: Vec<(&'static str, bool)>,
    may_change: bool,
}

async fn admins_page(
    State(c): State<St>,
    Extension(s): Extension<SignedIn>,
    Extension(role): Extension<Role>,
) -> Response {
    let page = async {
        let admins = c.engine.admins().await?;
        let required = c.engine.totp_required_roles().await?;
        Ok::<_, switchboard_engine::EngineError>(AdminsPage {
            c: chrome(&c, &s, "Administrators", "admins").await,
            admins,
            roles: Role::ALL
                .iter()
                .map(|r| (r.as_str(), required.contains(r)))
                .collect(),
            may_change: role == Role::Administrator,
        })
    }
    .await;
    match page {
        Ok(p) => render(&p),
        Err(e) => error_page(e.into()),
    }
}

#[derive(Deserialize)]
struct NewAdminForm {
    username: String,
    password: String,
    role: String,
}

fn role(text: &str) -> Result<Role, Flash> {
    text.parse::<Role>().map_err(failure)
}

async fn add_admin(
    State(c): State<St>,
    Extension(s): Extension<SignedIn>,
    Fields(f): Fields<NewAdminForm>,
) -> Response {
    let outcome = async {
        let r = role(&f.role)?;
        let a = c
            .engine
            .add_admin(f.username.trim(), &f.password, r)
            .await
            .map_err(failure)?;
        ok(format!("administrator {} added ({})", a.username, a.role))
    }
    .await;
    done(&c, &s, outcome, "/admins")
}

#[derive(Deserialize)]
struct RoleForm {
    role: String,
}

async fn set_role(
    State(c): State<St>,
    Extension(s): Extension<SignedIn>,
    super::pages::PagePath(u): super::pages::PagePath<String>,
    Fields(f): Fields<RoleForm>,
) -> Response {
    let outcome = async {
        let a = c
            .engine
            .set_admin_role(&u, role(&f.role)?)
            .await
            .map_err(failure)?;
        ok(format!("{} is now {}", a.username, a.role))
    }
    .await;
    done(&c, &s, outcome, "/admins")
}

/// The confirmation of `action` on administrator `u`, unless confirmed.
async fn ask_first(
    c: &St,
    s: &SignedIn,
    u: &str,
    confirmed: &Confirmation,
    action: &str,
    (question, consequences, button): (String, Vec<String>, &'static str),
) -> Option<Response> {
    if confirmed.yes() {
        return None;
    }
    let Ok(name) = switchboard_engine::auth::admin_name(u) else {
        return Some(done(
            c,
            s,
            Err(failure(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid-admin-name",
                "no administrator has that name",
                "pick an administrator from the list",
            ))),
            "/admins",
        ));
    };
    let ask = Ask {
        question: question.replace("{}", name),
        consequences,
        action: format!("/admins/{name}/{action}"),
        fields: vec![],
        button,
        cancel: "/admins".into(),
    };
    Some(confirm_page(c, s, "admins", ask).await)
}

async fn disable(
    State(c): State<St>,
    Extension(s): Extension<SignedIn>,
    super::pages::PagePath(u): super::pages::PagePath<String>,
    Fields(confirmed): Fields<Confirmation>,
) -> Response {
    let ask = (
        "Disable administrator {}?".to_owned(),
        vec![
            "Their open sessions end at once; they cannot sign in until enabled again.".to_owned(),
        ],
        "Disable",
    );
    if let Some(page) = ask_first(&c, &s, &u, &confirmed, "disable", ask).await {
        return page;
    }
    set_disabled(&c, &s, &u, true).await
}

async fn enable(
    State(c): State<St>,
    Extension(s): Extension<SignedIn>,
    super::pages::PagePath(u): super::pages::PagePath<String>,
) -> Response {
    set_disabled(&c, &s, &u, false).await
}

/// Disable (every session of theirs ends) or enable administrator `u`.
async fn set_disabled(c: &St, s: &SignedIn, u: &str, disabled: bool) -> Response {
    let outcome = async {
        c.engine
            .set_admin_disabled(u, disabled)
            .await
            .map_err(failure)?;
        if disabled {
            c.sessions.remove_user(u, None);
            ok(format!("{u} disabled; their sessions ended"))
        } else {
            ok(format!("{u} enabled"))
        }
    }
    .await;
    done(c, s, outcome, "/admins")
}

async fn remove(
    State(c): State<St>,
    Extension(s): Extension<SignedIn>,
    super::pages::PagePath(u): super::pages::PagePath<String>,
    Fields(confirmed): Fields<Confirmation>,
) -> Response {
    let ask = (
        "Remove administrator {}?".to_owned(),
        vec![
            "Their open sessions end at once; their password and second factor are erased."
                .to_owned(),
            "This cannot be undone: a new administrator of that name starts afresh.".to_owned(),
        ],
        "Remove",
    );
    if let Some(page) = ask_first(&c, &s, &u, &confirmed, "delete", ask).await {
        return page;
    }
    let outcome = async {
        c.engine.remove_admin(&u).await.map_err(failure)?;
        c.sessions.remove_user(&u, None);
        ok(format!("{u} removed; their sessions ended"))
    }
    .await;
    let to = if u == s.session.user {
        "/login"
    } else {
        "/admins"
    };
    done(&c, &s, outcome, to)
}

async fn remove_totp(
    State(c): State<St>,
    Extension(s): Extension<SignedIn>,
    super::pages::PagePath(u): super::pages::PagePath<String>,
    Fields(confirmed): Fields<Confirmation>,
) -> Response {
    let ask = (
        "Remove the second factor of {}?".to_owned(),
        vec![
            "They sign in with their password alone until they enrol again (if their role allows)."
                .to_owned(),
        ],
        "Remove the second factor",
    );
    if let Some(page) = ask_first(&c, &s, &u, &confirmed, "totp/delete", ask).await {
        return page;
    }
    let outcome = async {
        c.engine.remove_totp(&u).await.map_err(failure)?;
        ok(format!("second factor of {u} removed"))
    }
    .await;
    done(&c, &s, outcome, "/admins")
}

#[derive(Deserialize)]
struct PolicyForm {
    /// Checked roles; every role not named is optional.
    #[serde(default)]
    administrator: Option<String>,
    #[serde(default)]
    operator: Option<String>,
    #[serde(default)]
    auditor: Option<String>,
}

async fn totp_policy(
    State(c): State<St>,
    Extension(s): Extension<SignedIn>,
    Fields(f): Fields<PolicyForm>,
) -> Response {
    let outcome = async {
        for (r, on) in [
            (Role::Administrator, f.administrator.is_some()),
            (Role::Operator, f.operator.is_some()),
            (Role::Auditor, f.auditor.is_some()),
        ] {
            c.engine.set_totp_required(r, on).await.map_err(failure)?;
        }
        ok("second factor policy saved")
    }
    .await;
    done(&c, &s, outcome, "/admins")
}

// ---- own second factor ----------------------------------------------------------------

#[derive(Template)]
#[template(path = "totp.html")]
struct TotpPage {
    c: super::pages::Chrome,
    enrolled: bool,
    required: bool,
    /// An enrolment begun: the QR code (SVG), the secret (Base32).
    qr: Option<String>,
    secret: String,
    /// Recovery codes, once.
    codes: Vec<String>,
}

async fn totp_page(State(c): State<St>, Extension(s): Extension<SignedIn>) -> Response {
    let me = c
        .engine
        .admins()
        .await
        .ok()
        .and_then(|l| l.into_iter().find(|a| a.username == s.session.user));
    render(&TotpPage {
        c: chrome(&c, &s, "Second factor", "totp").await,
        enrolled: me.as_ref().is_some_and(|a| a.totp),
        required: me.as_ref().is_some_and(|a| a.totp_required),
        qr: None,
        secret: String::new(),
        codes: Vec::new(),
    })
}

async fn begin_totp(State(c): State<St>, Extension(s): Extension<SignedIn>) -> Response {
    let page = async {
        let e = c.engine.begin_totp(&s.session.user).await?;
        let uri = e.uri.clone();
        let qr = c
            .engine
            .cpu()
            .run("QR code", move || crate::qr::svg(&uri))
            .await?
            .map_err(|e| ApiError::internal(&format!("the QR code: {e}")))?;
        Ok::<_, ApiError>(TotpPage {
            c: chrome(&c, &s, "Second factor", "totp").await,
            enrolled: false,
            required: false,
            qr: Some(qr),
            secret: e.secret,
            codes: Vec::new(),
        })
    }
    .await;
    match page {
        Ok(p) => render(&p),
        Err(e) => error_page(e),
    }
}

#[derive(Deserialize)]
struct CodeForm {
    code: String,
}

async fn confirm_totp(
    State(c): State<St>,
    Extension(s): Extension<SignedIn>,
    Fields(f): Fields<CodeForm>,
) -> Response {
    match c.engine.confirm_totp(&s.session.user, &f.code).await {
        Ok(codes) => render(&TotpPage {
            c: chrome(&c, &s, "Second factor", "totp").await,
            enrolled: true,
            required: false,
            qr: None,
            secret: String::new(),
            codes: codes.codes,
        }),
        Err(e) => done(&c, &s, Err(failure(e)), "/me/totp"),
    }
}

// ---- backup and restore ---------------------------------------------------------------

#[derive(Template)]
#[template(path = "backup.html")]
struct BackupPage {
    c: super::pages::Chrome,
    min: usize,
    restored: Option<switchboard_engine::backup::RestoreView>,
}

async fn backup_page(State(c): State<St>, Extension(s): Extension<SignedIn>) -> Response {
    render(&BackupPage {
        c: chrome(&c, &s, "Backup and restore", "backup").await,
        min: switchboard_engine::backup::MIN_PASSPHRASE_CHARS,
        restored: None,
    })
}

#[derive(Deserialize)]
struct BackupForm {
    passphrase: String,
    again: String,
}

async fn backup(
    State(c): State<St>,
    Extension(s): Extension<SignedIn>,
    Fields(f): Fields<BackupForm>,
) -> Response {
    if f.passphrase != f.again {
        let flash = Flash::error(
            "passphrases-differ",
            "the two passphrases differ",
            "type the same passphrase twice",
        );
        return done(&c, &s, Err(flash), "/backup");
    }
    match c.engine.backup(&f.passphrase).await {
        Ok(archive) => crate::api::backup_answer(archive),
        Err(e) => done(&c, &s, Err(failure(e)), "/backup"),
    }
}

async fn restore(
    State(c): State<St>,
    Extension(s): Extension<SignedIn>,
    mut form: Multipart,
) -> Response {
    let outcome = async {
        let bad = |m: String| {
            failure(ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed-form",
                m,
                "choose the archive and type its passphrase",
            ))
        };
        let (mut archive, mut passphrase) = (Vec::new(), None);
        while let Some(field) = form
            .next_field()
            .await
            .map_err(|e| bad(format!("the upload is not a valid form ({e})")))?
        {
            match field.name() {
                Some("file") => {
                    archive = field
                        .bytes()
                        .await
                        .map_err(|e| bad(format!("the upload was cut short ({e})")))?
                        .to_vec();
                }
                Some("passphrase") => {
                    passphrase = Some(
                        field
                            .text()
                            .await
                            .map_err(|e| bad(format!("the upload was cut short ({e})")))?,
                    );
                }
                _ => {}
            }
        }
        if archive.is_empty() {
            return Err(bad("choose the archive file".into()));
        }
        let passphrase = passphrase.unwrap_or_default();
        c.engine
            .restore(&archive, &passphrase)
            .await
            .map_err(failure)
    }
    .await;
    match outcome {
        Ok(v) => render(&BackupPage {
            c: chrome(&c, &s, "Backup and restore", "backup").await,
            min: switchboard_engine::backup::MIN_PASSPHRASE_CHARS,
            restored: Some(v),
        }),
        Err(flash) => done(&c, &s, Err(flash), "/backup"),
    }
}

/// Where a signed-in administrator of `role` goes (`/me/totp` first when
/// its role requires a second factor it has not enrolled).
pub(super) fn landing(role: Role, must_enrol: bool) -> Response {
    if must_enrol {
        Redirect::to("/me/totp").into_response()
    } else {
        Redirect::to(crate::roles::home(role)).into_response()
    }
}
