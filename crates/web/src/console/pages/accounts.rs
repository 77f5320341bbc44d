//! The Accounts pages: the list (searched, filtered by state, sorted and
//! paged by the store, so 100,000 accounts cost what 1,000 do), bulk
//! actions on a selection behind one confirmation with a result per
//! account, each account's page with its own actions, activation in
//! person (one link per explicit action, shown again on reload, never
//! made again), and the SMS queue.

use std::fmt::Write as _;

use askama::Template;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Multipart, Query, State};
use axum::http::header;
use axum::response::Response;
use serde::Deserialize;
use switchboard_engine::accounts::{AccountSearch, BulkAction, MAX_PER_PAGE};
use switchboard_engine::views::{AccountState, ListedAccountView, SmsView};

use super::{
    Ask, Chrome, Confirmation, Fields, Flash, PagePath, SignedIn, St, blank_or, chrome,
    confirm_page, done, failure, file_field, ok, render, show, when, word,
};
use crate::console::session::ShownLink;
use crate::error::ApiError;
use crate::input::{self, path_number};

/// The messages of the queue the Accounts page shows, newest first.
const SMS_SHOWN: usize = 50;

/// An account as its own page shows it.
pub(super) struct AccountRow {
    pub username: String,
    pub name: String,
    pub phone: String,
    pub group: String,
    pub profile: String,
    pub sms: String,
}

fn account_row(a: &switchboard_provision::AccountView, latest_sms: Option<&SmsView>) -> AccountRow {
    AccountRow {
        username: a.username.to_string(),
        name: a
            .display_name
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        phone: a.phone.to_string(),
        group: a
            .group
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        profile: word(&a.profile),
        sms: latest_sms
            .map(|m| match &m.last_error {
                Some(e) if m.state != "sent" => format!("{} ({e})", m.state),
                _ => m.state.clone(),
            })
            .unwrap_or_default(),
    }
}

/// A row of the list: the account and where it is in its life.
struct ListRow {
    username: String,
    name: String,
    phone: String,
    group: String,
    profile: String,
    /// `no-link`, `link-sent`, `activated`, `registered`.
    state: String,
    /// "link sent 2026-12-03 18:00:00 UTC", "registered now from ...".
    state_text: String,
}

fn list_row(v: &ListedAccountView) -> ListRow {
    let a = account_row(&v.account, None);
    let state_text = match v.state {
        AccountState::NoLink => "no link".to_owned(),
        AccountState::LinkSent => {
            format!("link sent {}", v.link_made_at.map(when).unwrap_or_default())
        }
        AccountState::Activated => {
            format!("activated {}", v.activated_at.map(when).unwrap_or_default())
        }
        AccountState::Registered => v.registration.clone().unwrap_or_default(),
    };
    ListRow {
        username: a.username,
        name: a.name,
        phone: a.phone,
        group: a.group,
        profile: a.profile,
        state: word(&v.state),
        state_text,
    }
}

struct SmsRow {
    id: u64,
    username: String,
    to: String,
    state: String,
    attempts: u32,
    last_error: String,
    at: String,
    text: String,
}

/// A column head that sorts the list by itself, and again the other way.
struct SortHead {
    label: &'static str,
    href: String,
    /// `ascending`, `descending` or `none` (`aria-sort`).
    aria: &'static str,
}

/// A choice of a select: value, label, selected.
type Choice = (String, String, bool);

#[derive(Template)]
#[template(path = "accounts.html")]
struct AccountsPage {
    c: Chrome,
    q: String,
    states: Vec<Choice>,
    per_pages: Vec<Choice>,
    heads: Vec<SortHead>,
    rows: Vec<ListRow>,
    /// "1–50 of 10,000 accounts".
    range: String,
    page: u64,
    pages: u64,
    first: Option<String>,
    previous: Option<String>,
    next: Option<String>,
    last: Option<String>,
    /// This list's address, to come back to after a bulk action.
    back: String,
    registrations_known: bool,
    sms: Vec<SmsRow>,
}

/// The list's query string; every value is text, parsed by
/// [`AccountSearch::new`] (a page number that is no number is its error).
#[derive(Debug, Default, Deserialize)]
pub(super) struct ListQuery {
    q: Option<String>,
    state: Option<String>,
    sort: Option<String>,
    page: Option<String>,
    per_page: Option<String>,
}

fn search_of(q: &ListQuery) -> Result<AccountSearch, ApiError> {
    let number = |v: &Option<String>, what: &str| -> Result<Option<u64>, ApiError> {
        v.as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| {
                path_number(
                    t,
                    what,
                    &format!("{what} is a whole number, per page 1 to {MAX_PER_PAGE}"),
                )
            })
            .transpose()
    };
    Ok(AccountSearch::new(
        q.q.as_deref(),
        q.state.as_deref(),
        q.sort.as_deref(),
        number(&q.page, "page")?,
        number(&q.per_page, "per page")?,
    )?)
}

/// The list's address for `search`.
fn list_href(search: &AccountSearch) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    if !search.text().is_empty() {
        out.append_pair("q", search.text());
    }
    if let Some(s) = search.state() {
        out.append_pair("state", &word(&s));
    }
    if search.sort_key() != "username" {
        out.append_pair("sort", &search.sort_key());
    }
    if search.page() != 1 {
        out.append_pair("page", &search.page().to_string());
    }
    if search.per_page() != AccountSearch::default().per_page() {
        out.append_pair("per_page", &search.per_page().to_string());
    }
    let query = out.finish();
    if query.is_empty() {
        "/accounts".to_owned()
    } else {
        format!("/accounts?{query}")
    }
}

/// 10000 as "10,000".
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

pub(super) async fn accounts_page(
    State(c): State<St>,
    Extension(s): Extension<SignedIn>,
    Query(q): Query<ListQuery>,
) -> Response {
    let page = async {
        let search = search_of(&q)?;
        let found = c.engine.find_accounts(&search).await?;
        let sms = c.engine.sms().await?;
        let pages = found.total.div_ceil(found.per_page).max(1);
        let at = |p: u64| list_href(&search.on_page(p));
        let shown_first = (found.page - 1) * found.per_page + 1;
        let range = if found.total == 0 {
            "no account".to_owned()
        } else if found.accounts.is_empty() {
            format!("no account on page {} of {pages}", found.page)
        } else {
            format!(
                "{}–{} of {} account{}",
                thousands(shown_first),
                thousands(shown_first + found.accounts.len() as u64 - 1),
                thousands(found.total),
                if found.total == 1 { "" } else { "s" }
            )
        };
        let sort = search.sort_key();
        let heads = [
            ("User name", "username"),
            ("Name", "name"),
            ("Phone", "phone"),
            ("Group", "group"),
        ]
        .into_iter()
        .map(|(label, key)| {
            let (aria, next) = if sort == key {
                ("ascending", format!("-{key}"))
            } else if sort == format!("-{key}") {
                ("descending", key.to_owned())
            } else {
                ("none", key.to_owned())
            };
            let sorted = AccountSearch::new(
                Some(search.text()),
                search.state().map(|s| word(&s)).as_deref(),
                Some(&next),
                Some(1),
                Some(search.per_page()),
            )
            .unwrap_or_default();
            SortHead {
                label,
                href: list_href(&sorted),
                aria,
            }
        })
        .collect();
        let state_word = search.state().map(|s| word(&s)).unwrap_or_default();
        let states = [
            ("", "All"),
            ("no-link", "No link"),
            ("link-sent", "Link sent"),
            ("activated", "Activated"),
            ("registered", "Registered now"),
        ]
        .into_iter()
        .map(|(v, l)| (v.to_owned(), l.to_owned(), v == state_word))
        .collect();
        let per_pages = [25u64, 50, 100, 200]
            .into_iter()
            .map(|n| (n.to_string(), n.to_string(), n == search.per_page()))
            .collect();
        let p = found.page;
        Ok::<_, ApiError>(AccountsPage {
            c: chrome(&c, &s, "Accounts", "accounts").await,
            q: search.text().to_owned(),
            states,
            per_pages,
            heads,
            rows: found.accounts.iter().map(list_row).collect(),
            range,
            page: p,
            pages,
            first: (p > 1).then(|| at(1)),
            previous: (p > 1).then(|| at(p - 1)),
            next: (p < pages).then(|| at(p + 1)),
            last: (p < pages).then(|| at(pages)),
            back: list_href(&search),
            registrations_known: found.registrations_known,
            sms: sms
                .iter()
                .rev()
                .take(SMS_SHOWN)
                .map(|m| SmsRow {
                    id: m.id,
                    username: m.username.clone().unwrap_or_default(),
                    to: m.to.clone(),
                    state: m.state.clone(),
                    attempts: m.attempts,
                    last_error: m.last_error.clone().unwrap_or_default(),
                    at: when(m.created_at),
                    text: m.text.clone().unwrap_or_default(),
                })
                .collect(),
        })
    }
    .await;
    show(page)
}

#[derive(Deserialize)]
pub(super) struct AccountForm {
    phone: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    group: String,
    #[serde(default)]
    profile: String,
}

/// A new account; its page is next (where its activation is).
pub(super) async fn add_account(
    State(c): State<St>,
    Extension(s): Extension<SignedIn>,
    Fields(f): Fields<AccountForm>,
) -> Response {
    use switchboard_provision as p;
    let outcome = async {
        let new = p::NewAccount {
            username: None,
            display_name: blank_or(&f.name, |n| provision_parse!(p::DisplayName, n))?,
            phone: provision_parse!(p::PhoneNumber, f.phone)?,
            group: blank_or(&f.group, |g| provision_parse!(p::Group, g))?,
            profile: blank_or(&f.profile, |x| provision_parse!(p::ClientProfile, x))?
                .unwrap_or_default(),
        };
        c.engine.add_account(new).await.map_err(failure)
    }
    .await;
    match outcome {
        Ok(v) => done(
            &c,
            &s,
            ok(format!("account {} created for {}", v.username, v.phone)),
            &format!("/accounts/{}", v.username),
        ),
        Err(f) => done(&c, &s, Err(f), "/accounts#account-form"),
    }
}

pub(super) fn username(u: &str) -> Result<switchboard_provision::Username, Flash> {
    provision_parse!(switchboard_provision::Username, u)
}

/// The account's page, named as parsed (never the raw path), or the list.
fn account_href(u: &str) -> String {
    username(u).map_or_else(|_| "/accounts".to_owned(), |u| format!("/accounts/{u}"))
}

pub(super) async fn activate(
    State(c): State<St>,
    Extension(s): Extension<SignedIn>,
    PagePath(u): PagePath<String>,
) -> Response {
    let outcome = async {
        let v = c.engine.activate(&username(&u)?).await.map_err(failure)?;
        ok(format!(
            "activation SMS for {} queued to {} via {}",
            v.username, v.to, v.gateway
        ))
    }
    .await;
    done(&c, &s, outcome, &account_href(&u))
}

#[derive(Template)]
#[template(path = "qr.html")]
struct QrPage {
    c: Chrome,
    username: String,
    /// The link held for this account, with its QR code and expiry.
    shown: Option<(String, String, String)>,
}

/// The link this session made for `username` in person, as a QR code,
/// or a button to make one: loading the page never makes a link, and
/// shows the one made again until another is made. Not cached.
pub(super) async fn qr_page(
    State(c): State<St>,
    Extension(s): Extension<SignedIn>,
    PagePath(u): PagePath<String>,
) -> Response {
    let page = async {
        let u = username(&u).map_err(|f| {
            ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "invalid-username",
                f.message,
                f.hint,
            )
        })?;
        let v = c.engine.account(&u).await?;
        let held = s
            .session
            .shown_link
            .clone()
            .filter(|l| l.username == v.username.as_str());
        let shown = match held {
            None => None,
            Some(l) => {
                let text = l.link.clone();
                let qr = c
                    .engine
                    .cpu()
                    .run("QR code", move || crate::qr::svg(&text))
                    .await?
                    .map_err(|e| ApiError::internal(&format!("a QR code: {e}")))?;
                Some((l.link, qr, l.expires))
            }
        };
        Ok::<_, ApiError>(QrPage {
            c: chrome(
                &c,
                &s,
                format!("Activate {} in person", v.username),
                "accounts",
            )
            .await,
            username: v.username.to_string(),
            shown,
        })
    }
    .await;
    let mut response = show(page);
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

/// Make a link to show in person (the explicit action), then show it.
pub(super) async fn make_link(
    State(c): State<St>,
    Extension(s): Extension<SignedIn>,
    PagePath(u): PagePath<String>,
) -> Response {
    let made = async {
        let (v, link) = c
            .engine
            .activate_in_person(&username(&u)?)
            .await
            .map_err(failure)?;
        Ok::<_, Flash>((v, link))
    }
    .await;
    match made {
        Ok((v, link)) => {
            c.sessions.show_link(
                &s.id,
                ShownLink {
                    username: v.username.clone(),
                    link: link.expose().to_owned(),
                    expires: when(v.expires_at),
                },
            );
            done(
                &c,
                &s,
                ok(format!("a new link for {} is shown below", v.username)),
                &format!("/accounts/{}/qr", v.username),
            )
        }
        Err(f) => done(&c, &s, Err(f), &account_href(&u)),
    }
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    c: Chrome,
    a: AccountRow,
    /// "registered now from 192.0.2.2 over TLS", "not registered".
    registration: String,
    contacts: Vec<ContactRow>,
}

struct ContactRow {
    contact: String,
    source: String,
    transport: String,
    user_agent: String,
    expires: u64,
}

pub(super) async fn account_page(
    State(c): State<St>,
    Extension(s): Extension<SignedIn>,
    PagePath(u): PagePath<String>,
) -> Response {
    let page = async {
        let u: switchboard_provision::Username =
            u.parse()
                .map_err(|e: switchboard_provision::InvalidUsername| {
                    ApiError::from(switchboard_engine::EngineError::Provision {
                        code: e.code(),
                        message: e.to_string(),
                        hint: e.hint(),
                    })
                })?;
        let a = c.engine.account(&u).await?;
        let sms = c.engine.sms().await?;
        let latest = sms
            .iter()
            .filter(|m| m.username.as_deref() == Some(a.username.as_str()))
            .max_by_key(|m| m.id);
        // Kamailio not answering is not the page's failure: it says so.
        let (registration, contacts) = match c.engine.registrations(&u).await {
            Ok(r) => (
                r.summary,
                r.contacts
                    .into_iter()
                    .map(|r| ContactRow {
                        contact: r.contact,
                        source: r.source.unwrap_or_default(),
                        transport: r.transport.to_uppercase(),
                        user_agent: r.user_agent,
                        expires: r.expires_secs,
                    })
                    .collect(),
            ),
            Err(e) => (format!("unknown: {e}"), vec![]),
        };
        Ok::<_, ApiError>(AccountPage {
            c: chrome(&c, &s, format!("Account {}", a.username), "accounts").await,
            a: account_row(&a, latest),
            registration,
            contacts,
        })
    }
    .await;
    show(page)
}

#[derive(Deserialize)]
pub(super) struct EditAccountForm {
    phone: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    group: String,
    profile: String,
    #[serde(default)]
    new_password: Option<String>,
}

/// Every field of the form is the account's new value (blank name or
/// group: none).
pub(super) async fn edit_account(
    State(c): State<St>,
    Extension(s): Extension<SignedIn>,
    PagePath(u): PagePath<String>,
    Fields(f): Fields<EditAccountForm>,
) -> Response {
    use switchboard_provision as p;
    let outcome = async {
        let change = switchboard_engine::accounts::AccountChange {
            phone: Some(provision_parse!(p::PhoneNumber, f.phone)?),
            display_name: Some(blank_or(&f.name, |n| provision_parse!(p::DisplayName, n))?),
            group: Some(blank_or(&f.group, |g| provision_parse!(p::Group, g))?),
            profile: Some(provision_parse!(p::ClientProfile, f.profile)?),
            new_password: f.new_password.is_some(),
        };
        let v = c
            .engine
            .update_account(&username(&u)?, change)
            .await
            .map_err(failure)?;
        ok(if f.new_password.is_some() {
            format!(
                "account {} saved with a new SIP password: the phone needs a new activation",
                v.username
            )
        } else {
            format!("account {} saved", v.username)
        })
    }
    .await;
    done(
        &c,
        &s,
        outcome,
        &format!("{}#account-edit", account_href(&u)),
    )
}

/// The CSV file of many accounts: all created, or none (every bad row
/// reported).
pub(super) async fn import_accounts(
    State(c): State<St>,
    Extension(s): Extension<SignedIn>,
    mut form: Multipart,
) -> Response {
    let outcome = async {
        let file = file_field(&mut form, "choose a CSV file").await?;
        let created = c.engine.import_accounts(&file).await.map_err(failure)?;
        ok(format!("{} account(s) created", created.len()))
    }
    .await;
    done(&c, &s, outcome, "/accounts#import-form")
}

/// The confirmation of `action` on account `u`, unless it was confirmed.
async fn confirm_one(
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
    let href = account_href(u);
    let ask = Ask {
        question,
        consequences,
        action: format!("{href}/{action}"),
        fields: vec![],
        button,
        cancel: href,
    };
    Some(confirm_page(c, s, "accounts", ask).await)
}

pub(super) async fn revoke(
    State(c): State<St>,
    Extension(s): Extension<SignedIn>,
    PagePath(u): PagePath<String>,
    Fields(confirmed): Fields<Confirmation>,
) -> Response {
    let question = format!("Revoke the activation links of {}?", clean(&u));
    let consequences = vec![
        "Every link of this account not used yet stops working at once.".to_owned(),
        "Messages not delivered yet are withdrawn, their text erased.".to_owned(),
        "A phone already activated keeps working.".to_owned(),
    ];
    if let Some(page) = confirm_one(
        &c,
        &s,
        &u,
        &confirmed,
        "revoke",
        (question, consequences, "Revoke the links"),
    )
    .await
    {
        return page;
    }
    let outcome = async {
        let v = c.engine.revoke(&username(&u)?).await.map_err(failure)?;
        ok(format!(
            "{}: {} link(s) revoked, {} message(s) withdrawn",
            v.username, v.links, v.messages
        ))
    }
    .await;
    done(&c, &s, outcome, &account_href(&u))
}

pub(super) async fn delete_account(
    State(c): State<St>,
    Extension(s): Extension<SignedIn>,
    PagePath(u): PagePath<String>,
    Fields(confirmed): Fields<Confirmation>,
) -> Response {
    let question = format!("Delete account {}?", clean(&u));
    let consequences = vec![
        "Its phone can no longer register or call; its links stop working.".to_owned(),
        "This cannot be undone: a new account gets a new SIP password.".to_owned(),
    ];
    if let Some(page) = confirm_one(
        &c,
        &s,
        &u,
        &confirmed,
        "delete",
        (question, consequences, "Delete the account"),
    )
    .await
    {
        return page;
    }
    let outcome = async {
        let u = username(&u)?;
        c.engine.delete_account(&u).await.map_err(failure)?;
        ok(format!("account {u} deleted"))
    }
    .await;
    match outcome {
        Ok(m) => done(&c, &s, Ok(m), "/accounts"),
        Err(f) => done(&c, &s, Err(f), &account_href(&u)),
    }
}

/// A user name from the path, for a question: as parsed, or said to be
/// invalid (the action then refuses it with its error).
fn clean(u: &str) -> String {
    username(u).map_or_else(|_| "(an invalid user name)".to_owned(), |u| u.to_string())
}

pub(super) async fn resend_sms(
    State(c): State<St>,
    Extension(s): Extension<SignedIn>,
    PagePath(id): PagePath<String>,
) -> Response {
    let outcome = async {
        let id = path_number(&id, "SMS ids", "pick a message from the list").map_err(failure)?;
        let v = c.engine.resend_sms(id).await.map_err(failure)?;
        ok(format!("SMS {} to {} queued again", v.id, v.to))
    }
    .await;
    done(&c, &s, outcome, "/accounts#sms")
}

#[derive(Template)]
#[template(path = "bulk.html")]
struct BulkResultsPage {
    c: Chrome,
    what: String,
    done: usize,
    failed: usize,
    results: Vec<(String, bool, String)>,
    back: String,
}

/// The list to come back to: a path of the Accounts list only.
fn back_to(back: Option<&str>) -> String {
    back.filter(|b| {
        (*b == "/accounts" || b.starts_with("/accounts?"))
            && b.len() <= 600
            && !b.chars().any(|c| c.is_control() || c == '\\')
    })
    .unwrap_or("/accounts")
    .to_owned()
}

/// A bulk action on the accounts ticked (`u`, repeated): first a
/// confirmation naming them, then the action, with each account's result.
pub(super) async fn bulk(
    State(c): State<St>,
    Extension(s): Extension<SignedIn>,
    body: Bytes,
) -> Response {
    let mut names = Vec::new();
    let (mut action, mut group, mut back, mut confirmed) = (None, None, None, false);
    for (k, v) in form_urlencoded::parse(&body) {
        match &*k {
            "u" => names.push(v.into_owned()),
            "action" => action = Some(v.into_owned()),
            "group" => group = Some(v.into_owned()),
            "back" => back = Some(v.into_owned()),
            "confirmed" => confirmed = v == "yes",
            _ => {}
        }
    }
    let back = back_to(back.as_deref());
    let parsed = async {
        let action = input::bulk_action(action.as_deref().unwrap_or(""), group.as_deref())
            .map_err(failure)?;
        let users = input::usernames(&names).map_err(failure)?;
        if users.is_empty() {
            return Err(super::bad_form(
                "no account is selected: tick the accounts to act on",
            ));
        }
        Ok((action, users))
    }
    .await;
    let (action, users) = match parsed {
        Ok(p) => p,
        Err(f) => return done(&c, &s, Err(f), &format!("{back}#bulk-form")),
    };
    let what = match &action {
        BulkAction::Activate => "Send an activation SMS to".to_owned(),
        BulkAction::Revoke => "Revoke the activation links of".to_owned(),
        BulkAction::Delete => "Delete".to_owned(),
        BulkAction::SetGroup(Some(g)) => format!("Put into group {g}"),
        BulkAction::SetGroup(None) => "Take out of their group".to_owned(),
    };
    let count = format!(
        "{} account{}",
        users.len(),
        if users.len() == 1 { "" } else { "s" }
    );
    if !confirmed {
        let mut consequences = vec![];
        if action == BulkAction::Delete {
            consequences.push(
                "Their phones can no longer register or call. This cannot be undone.".to_owned(),
            );
        }
        let mut listed = String::from("Accounts: ");
        for (i, u) in users.iter().enumerate() {
            let _ = write!(listed, "{}{u}", if i > 0 { ", " } else { "" });
        }
        consequences.push(listed);
        let mut fields: Vec<(String, String)> = vec![
            ("action".into(), action.name().into()),
            ("back".into(), back.clone()),
        ];
        if let BulkAction::SetGroup(Some(g)) = &action {
            fields.push(("group".into(), g.to_string()));
        }
        fields.extend(users.iter().map(|u| ("u".to_owned(), u.to_string())));
        let ask = Ask {
            question: format!("{what} {count}?"),
            consequences,
            action: "/bulk/accounts".into(),
            fields,
            button: "Yes, do it",
            cancel: back,
        };
        return confirm_page(&c, &s, "accounts", ask).await;
    }
    match c.engine.bulk(&action, &users).await {
        Ok(results) => {
            let done_count = results.iter().filter(|r| r.ok).count();
            render(&BulkResultsPage {
                c: chrome(&c, &s, "Bulk action", "accounts").await,
                what: format!("{what} {count}"),
                done: done_count,
                failed: results.len() - done_count,
                results: results
                    .into_iter()
                    .map(|r| (r.username, r.ok, r.message))
                    .collect(),
                back,
            })
        }
        Err(e) => done(&c, &s, Err(failure(e)), &format!("{back}#bulk-form")),
    }
}
