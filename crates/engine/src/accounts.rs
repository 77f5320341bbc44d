//! Accounts, activation by SMS, the SMS queue, and the configuration
//! documents phones fetch with their single-use link.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU16;
use std::sync::Mutex as StdMutex;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use ring::rand::{SecureRandom, SystemRandom};
use switchboard_domain::ServiceId;
use switchboard_domain::provisioning::{ProvisioningChange, ProvisioningSettings};
use switchboard_provision::{
    Account, AccountView, ActivationToken, CertPin, Document, Ha1, NewAccount, Realm, SipPassword,
    SrtpPolicy, Taken, Username,
};
use switchboard_store::{
    AccountQuery, AccountRow, AccountSort, ActivationState, NewActivation, SmsRow, Store,
};
use switchboard_system::sms::{SendOutcome, Sms};
use tracing::{info, warn};

use crate::views::{
    AccountListView, AccountState, ActivationView, BulkResultView, EditView, ListedAccountView,
    RevokeView, SmsView,
};
use crate::{Engine, EngineError, InputError, Result};

/// The longest account search, in characters.
pub const MAX_SEARCH_CHARS: usize = 100;
/// The most accounts on one page of a listing.
pub const MAX_PER_PAGE: u64 = 200;
/// The most accounts one bulk action takes.
pub const MAX_BULK: usize = 1_000;

/// Which accounts to list, in which order, which page
/// ([`Engine::find_accounts`]); [`AccountSearch::new`] checks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSearch {
    text: Option<String>,
    state: Option<AccountState>,
    sort: AccountSort,
    descending: bool,
    page: u64,
    per_page: u64,
}

impl Default for AccountSearch {
    fn default() -> Self {
        AccountSearch {
            text: None,
            state: None,
            sort: AccountSort::Username,
            descending: false,
            page: 1,
            per_page: 50,
        }
    }
}

impl AccountSearch {
    /// A search: `text` at most [`MAX_SEARCH_CHARS`] characters without
    /// control characters (blank: every account), `state` and `sort` by
    /// name (`no-link`, ...; `username`, `name`, `phone`, `group`, a
    /// leading `-` for descending), `page` from 1, `per_page` 1 to
    /// [`MAX_PER_PAGE`]. Each absent value takes its default.
    pub fn new(
        text: Option<&str>,
        state: Option<&str>,
        sort: Option<&str>,
        page: Option<u64>,
        per_page: Option<u64>,
    ) -> Result<Self> {
        let bad = |m: String| EngineError::Input(InputError::AccountSearch(m));
        let d = AccountSearch::default();
        let text = text.map(str::trim).filter(|t| !t.is_empty());
        if let Some(t) = text {
            if t.chars().count() > MAX_SEARCH_CHARS {
                return Err(bad(format!(
                    "the search has {} characters",
                    t.chars().count()
                )));
            }
            if t.chars().any(char::is_control) {
                return Err(bad("the search holds a control character".into()));
            }
        }
        let state = match state.map(str::trim).filter(|s| !s.is_empty()) {
            None | Some("all") => None,
            Some(s) => Some(
                serde_json::from_value(serde_json::Value::String(s.into()))
                    .map_err(|_| bad(format!("no state is called {:?}", cut(s))))?,
            ),
        };
        let (descending, sort) = match sort.map(str::trim).filter(|s| !s.is_empty()) {
            None => (false, AccountSort::Username),
            Some(s) => {
                let (descending, key) = s.strip_prefix('-').map_or((false, s), |k| (true, k));
                let sort = match key {
                    "username" => AccountSort::Username,
                    "name" => AccountSort::Name,
                    "phone" => AccountSort::Phone,
                    "group" => AccountSort::Group,
                    _ => return Err(bad(format!("no sort is called {:?}", cut(s)))),
                };
                (descending, sort)
            }
        };
        let page = page.unwrap_or(d.page);
        if !(1..=1_000_000).contains(&page) {
            return Err(bad(format!(
                "page {page} does not exist: pages count from 1"
            )));
        }
        let per_page = per_page.unwrap_or(d.per_page);
        if !(1..=MAX_PER_PAGE).contains(&per_page) {
            return Err(bad(format!("{per_page} accounts per page")));
        }
        Ok(AccountSearch {
            text: text.map(str::to_owned),
            state,
            sort,
            descending,
            page,
            per_page,
        })
    }

    pub fn text(&self) -> &str {
        self.text.as_deref().unwrap_or("")
    }

    pub fn state(&self) -> Option<AccountState> {
        self.state
    }

    /// The sort as [`AccountSearch::new`] reads it (`-phone`).
    pub fn sort_key(&self) -> String {
        let key = match self.sort {
            AccountSort::Username => "username",
            AccountSort::Name => "name",
            AccountSort::Phone => "phone",
            AccountSort::Group => "group",
        };
        format!("{}{key}", if self.descending { "-" } else { "" })
    }

    pub fn page(&self) -> u64 {
        self.page
    }

    pub fn per_page(&self) -> u64 {
        self.per_page
    }

    /// The same search on another page.
    pub fn on_page(&self, page: u64) -> Self {
        AccountSearch {
            page,
            ..self.clone()
        }
    }
}

/// At most 40 characters of hostile input, for an error message.
fn cut(s: &str) -> String {
    s.chars().take(40).collect()
}

/// What a bulk action does to each account it is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BulkAction {
    /// Send an activation SMS.
    Activate,
    /// Revoke the unused links.
    Revoke,
    Delete,
    /// Put into a group, or out of any (`None`).
    SetGroup(Option<switchboard_provision::Group>),
}

impl BulkAction {
    /// The action's name, as the API takes it.
    pub fn name(&self) -> &'static str {
        match self {
            BulkAction::Activate => "activate",
            BulkAction::Revoke => "revoke",
            BulkAction::Delete => "delete",
            BulkAction::SetGroup(_) => "set-group",
        }
    }
}

/// Fetches of activation links per source address and minute.
const FETCHES_PER_MINUTE: u32 = 20;
/// Attempts before a queued SMS is given up.
const MAX_SMS_ATTEMPTS: u32 = 12;

pub(crate) fn random<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| EngineError::System("the system's random number generator failed".into()))?;
    Ok(bytes)
}

/// A new activation link for an account, not yet stored.
struct NewLink {
    account: Account,
    token: ActivationToken,
    link: switchboard_provision::ActivationLink,
    now: Timestamp,
    expires_at: Timestamp,
}

/// A fresh token and its link for `username`, with the running revision's
/// web services URI (phones get what is applied).
fn new_link(store: &Store, username: &Username) -> Result<NewLink> {
    let account = Engine::find(store, username)?;
    let web_uri = store
        .applied()?
        .and_then(|r| r.candidate.provisioning.web_uri)
        .ok_or(EngineError::ActivationUnavailable)?;
    let token = ActivationToken::from_entropy(random()?);
    let link = switchboard_provision::activation_link(&web_uri, &token);
    let now = Timestamp::now();
    Ok(NewLink {
        account,
        token,
        link,
        now,
        expires_at: now + switchboard_provision::DEFAULT_TOKEN_TTL,
    })
}

impl NewLink {
    /// What the administrator is told about it: `sms_id` 0 for a link
    /// handed over in person.
    fn view(&self, sms_id: u64, gateway: &str) -> ActivationView {
        ActivationView {
            username: self.account.username().to_string(),
            sms_id,
            to: switchboard_system::sms::mask_number(self.account.phone().as_str()),
            gateway: gateway.into(),
            expires_at: self.expires_at,
        }
    }
}

fn corrupt(what: &str) -> EngineError {
    EngineError::System(format!("a stored account has an unreadable {what}"))
}

fn account_of(row: &AccountRow) -> Result<Account> {
    let realm: Realm = row.realm.parse().map_err(|_| corrupt("realm"))?;
    Ok(Account::from_stored(
        row.username.parse().map_err(|_| corrupt("user name"))?,
        row.display_name
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|_| corrupt("display name"))?,
        row.phone.parse().map_err(|_| corrupt("phone number"))?,
        row.group
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|_| corrupt("group"))?,
        row.profile.parse().map_err(|_| corrupt("profile"))?,
        Ha1::from_stored(realm, &row.ha1).map_err(|_| corrupt("digest"))?,
    ))
}

fn row_of(a: &Account) -> AccountRow {
    AccountRow {
        username: a.username().to_string(),
        display_name: a.display_name().map(|n| n.to_string()),
        phone: a.phone().to_string(),
        group: a.group().map(|g| g.to_string()),
        profile: a.profile().as_str().to_owned(),
        realm: a.ha1().realm().to_string(),
        ha1: a.ha1().expose_hex(),
    }
}

/// A user name or phone number already in use, as the engine reports it.
fn conflict(c: &switchboard_provision::Conflict) -> EngineError {
    EngineError::Provision {
        code: c.code(),
        message: c.to_string(),
        hint: c.hint(),
    }
}

fn accounts_of(store: &Store) -> Result<Vec<Account>> {
    store.accounts()?.iter().map(account_of).collect()
}

/// What `update_account` changes (`None`: keep).
#[derive(Debug, Default)]
pub struct AccountChange {
    pub phone: Option<switchboard_provision::PhoneNumber>,
    /// `Some(None)` removes the display name.
    pub display_name: Option<Option<switchboard_provision::DisplayName>>,
    pub group: Option<Option<switchboard_provision::Group>>,
    pub profile: Option<switchboard_provision::ClientProfile>,
    pub new_password: bool,
}

/// One token to consume, and where its answer goes.
#[derive(Debug)]
pub(crate) struct Consume {
    hash: String,
    reply: tokio::sync::oneshot::Sender<Result<(Option<u64>, Option<AccountRow>)>>,
}

/// Consume tokens in batches: whatever arrived while the previous commit
/// was being written goes into the next one (one fsync each, nothing
/// acknowledged before its commit).
async fn group_commit(
    store: std::sync::Arc<tokio::sync::Mutex<Store>>,
    mut rx: tokio::sync::mpsc::Receiver<Consume>,
) {
    const MAX_BATCH: usize = 256;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        let hashes: Vec<String> = batch.iter().map(|c| c.hash.clone()).collect();
        let result = off_worker(&store, move |store| {
            let hashes: Vec<&str> = hashes.iter().map(String::as_str).collect();
            Ok(store.consume_tokens(&hashes, Timestamp::now())?)
        })
        .await;
        match result {
            Ok((applied, rows)) => {
                for (c, row) in batch.into_iter().zip(rows) {
                    let _ = c.reply.send(Ok((applied, row)));
                }
            }
            Err(e) => {
                let message = e.to_string();
                for c in batch {
                    let _ = c.reply.send(Err(EngineError::System(message.clone())));
                }
            }
        }
    }
}

/// Runs `f` on the store behind `store` on a blocking thread, so the
/// async worker that asked is free while SQLite writes and fsyncs.
pub(crate) async fn off_worker<T: Send + 'static>(
    store: &std::sync::Arc<tokio::sync::Mutex<Store>>,
    f: impl FnOnce(&mut Store) -> Result<T> + Send + 'static,
) -> Result<T> {
    let mut guard = store.clone().lock_owned().await;
    tokio::task::spawn_blocking(move || f(&mut guard))
        .await
        .map_err(|e| EngineError::System(format!("a store task failed: {e}")))?
}

/// What every document of the running revision shares: computed once per
/// revision (fetches are the hot path: one commit each, nothing else).
#[derive(Debug)]
pub(crate) struct DocumentContext {
    revision: u64,
    settings: ProvisioningSettings,
    port: NonZeroU16,
    pins: Vec<CertPin>,
}

/// Per-address fetch counting for the activation links.
#[derive(Debug, Default)]
pub(crate) struct RateLimit(StdMutex<HashMap<IpAddr, (Instant, u32)>>);

impl RateLimit {
    fn allow(&self, from: IpAddr) -> bool {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        map.retain(|_, (start, _)| now.duration_since(*start) < Duration::from_secs(60));
        let entry = map.entry(from.to_canonical()).or_insert((now, 0));
        entry.1 += 1;
        entry.1 <= FETCHES_PER_MINUTE
    }
}

fn sms_view(m: SmsRow) -> SmsView {
    SmsView {
        id: m.id,
        username: m.username,
        to: switchboard_system::sms::mask_number(&m.to),
        // Only the outbox shows its text: that is how an administrator
        // without a gateway hands links over.
        text: (m.state == "outbox").then_some(m.text),
        gateway: m.gateway,
        state: m.state,
        attempts: m.attempts,
        next_try_at: m.next_try_at,
        last_error: m.last_error,
        created_at: m.created_at,
    }
}

impl Engine {
    pub async fn add_account(&self, new: NewAccount) -> Result<AccountView> {
        let mut store = self.store.lock().await;
        let mut taken = Taken::from_accounts(&accounts_of(&store)?);
        let draft = taken
            .admit(new)
            .map_err(|conflicts| conflict(&conflicts[0]))?;
        let account = draft.into_account(SipPassword::from_entropy(random()?), &Realm::default());
        store.insert_accounts(&[row_of(&account)], Timestamp::now())?;
        self.sync_subscribers(&mut store).await?;
        info!(account = %account.username(), "account created");
        crate::audit::record_in(
            &mut store,
            &crate::audit::Entry::new(
                "account.add",
                format!("account {} created", account.username()),
                serde_json::json!({ "account": account.username().as_str() }),
            ),
            "done",
        );
        Ok(account.view())
    }

    pub async fn accounts(&self) -> Result<Vec<AccountView>> {
        Ok(accounts_of(&*self.store.lock().await)?
            .iter()
            .map(Account::view)
            .collect())
    }

    /// A page of accounts: searched, filtered by state and sorted in the
    /// store; whether each is registered is asked of Kamailio once.
    pub async fn find_accounts(&self, q: &AccountSearch) -> Result<AccountListView> {
        let registered = self.registration_summaries().await;
        let names: Vec<String> = registered
            .as_ref()
            .map(|r| r.keys().cloned().collect())
            .unwrap_or_default();
        let stored = |s: AccountState| match s {
            AccountState::NoLink => Some(ActivationState::NoLink),
            AccountState::LinkSent => Some(ActivationState::LinkSent),
            AccountState::Activated => Some(ActivationState::Activated),
            AccountState::Registered => None,
        };
        let query = AccountQuery {
            search: q.text.as_deref(),
            state: q.state.and_then(stored),
            // A registered account shows as registered, under that filter
            // only.
            among: (q.state == Some(AccountState::Registered)).then_some(names.as_slice()),
            except: (q.state.is_some_and(|s| s != AccountState::Registered) && !names.is_empty())
                .then_some(names.as_slice()),
            sort: q.sort,
            descending: q.descending,
            offset: (q.page - 1) * q.per_page,
            limit: q.per_page,
        };
        let listing = self.store.lock().await.list_accounts(&query)?;
        let accounts = listing
            .rows
            .into_iter()
            .map(|r| {
                let registration = registered.as_ref().map(|m| {
                    m.get(&r.account.username)
                        .cloned()
                        .unwrap_or_else(|| "not registered".into())
                });
                let state = if registered
                    .as_ref()
                    .is_some_and(|m| m.contains_key(&r.account.username))
                {
                    AccountState::Registered
                } else if r.activated_at.is_some() {
                    AccountState::Activated
                } else if r.linked_at.is_some() {
                    AccountState::LinkSent
                } else {
                    AccountState::NoLink
                };
                Ok(ListedAccountView {
                    account: account_of(&r.account)?.view(),
                    state,
                    link_made_at: r.linked_at,
                    activated_at: r.activated_at,
                    registration,
                })
            })
            .collect::<Result<_>>()?;
        Ok(AccountListView {
            accounts,
            total: listing.total,
            page: q.page,
            per_page: q.per_page,
            registrations_known: registered.is_some(),
        })
    }

    /// `action` on each of `usernames` (1 to [`MAX_BULK`], duplicates
    /// once), in order, each with its own result: one account that fails
    /// does not stop the others. Deletions and group changes share one
    /// write to Kamailio's subscribers.
    pub async fn bulk(
        &self,
        action: &BulkAction,
        usernames: &[Username],
    ) -> Result<Vec<BulkResultView>> {
        if usernames.is_empty() || usernames.len() > MAX_BULK {
            return Err(EngineError::Input(InputError::Bulk(format!(
                "{} accounts given",
                usernames.len()
            ))));
        }
        let mut seen = std::collections::HashSet::new();
        let usernames: Vec<&Username> = usernames.iter().filter(|u| seen.insert(*u)).collect();
        let result = |u: &Username, r: Result<String>| match r {
            Ok(message) => BulkResultView {
                username: u.to_string(),
                ok: true,
                message,
                code: None,
            },
            Err(e) => BulkResultView {
                username: u.to_string(),
                ok: false,
                message: e.to_string(),
                code: Some(e.code().to_owned()),
            },
        };
        let mut out = Vec::with_capacity(usernames.len());
        match action {
            BulkAction::Activate => {
                for u in usernames {
                    let r = self
                        .activate(u)
                        .await
                        .map(|v| format!("activation SMS queued to {} via {}", v.to, v.gateway));
                    out.push(result(u, r));
                }
            }
            BulkAction::Revoke => {
                for u in usernames {
                    let r = self.revoke(u).await.map(|v| {
                        format!("{} link(s) and {} message(s) revoked", v.links, v.messages)
                    });
                    out.push(result(u, r));
                }
            }
            BulkAction::Delete | BulkAction::SetGroup(_) => {
                let mut store = self.store.lock().await;
                let mut changed = false;
                for u in usernames {
                    let r = match action {
                        BulkAction::SetGroup(group) => Self::find(&store, u).and_then(|mut a| {
                            a.set_group(group.clone());
                            store.update_account(&row_of(&a))?;
                            Ok(match group {
                                Some(g) => format!("put into group {g}"),
                                None => "taken out of its group".to_owned(),
                            })
                        }),
                        _ => match store.delete_account(u.as_str()) {
                            Ok(true) => Ok("deleted".to_owned()),
                            Ok(false) => Err(EngineError::NoSuchAccount(u.to_string())),
                            Err(e) => Err(e.into()),
                        },
                    };
                    if let Ok(words) = &r {
                        let (kind, group) = match action {
                            BulkAction::SetGroup(g) => {
                                ("account.update", g.as_ref().map(|g| g.to_string()))
                            }
                            _ => ("account.delete", None),
                        };
                        crate::audit::record_in(
                            &mut store,
                            &crate::audit::Entry::new(
                                kind,
                                format!("account {u} {words} (bulk action)"),
                                serde_json::json!({ "account": u.as_str(), "bulk": true, "group": group }),
                            ),
                            "done",
                        );
                    }
                    changed |= r.is_ok();
                    out.push(result(u, r));
                }
                if changed {
                    self.sync_subscribers(&mut store).await?;
                }
            }
        }
        let done = out.iter().filter(|r| r.ok).count();
        info!(
            action = action.name(),
            accounts = out.len(),
            done,
            "bulk action on accounts"
        );
        Ok(out)
    }

    fn find(store: &Store, username: &Username) -> Result<Account> {
        let row = store
            .account(username.as_str())?
            .ok_or_else(|| EngineError::NoSuchAccount(username.to_string()))?;
        account_of(&row)
    }

    pub async fn account(&self, username: &Username) -> Result<AccountView> {
        Ok(Self::find(&*self.store.lock().await, username)?.view())
    }

    /// Change an account; `new_password` gives it a new SIP password (the
    /// phone then needs a new activation: its document carries the old
    /// digest).
    pub async fn update_account(
        &self,
        username: &Username,
        change: AccountChange,
    ) -> Result<AccountView> {
        let mut store = self.store.lock().await;
        let mut account = Self::find(&store, username)?;
        if let Some(phone) = change.phone {
            let taken = Taken::from_accounts(&accounts_of(&store)?);
            if let Some(owner) = taken.phone_owner(&phone).filter(|o| *o != username) {
                return Err(conflict(&switchboard_provision::Conflict::PhoneTaken {
                    owner: owner.clone(),
                    phone,
                }));
            }
            account.set_phone(phone);
        }
        if let Some(name) = change.display_name {
            account.set_display_name(name);
        }
        if let Some(group) = change.group {
            account.set_group(group);
        }
        if let Some(profile) = change.profile {
            account.set_profile(profile);
        }
        if change.new_password {
            account.set_password(SipPassword::from_entropy(random()?), &Realm::default());
        }
        store.update_account(&row_of(&account))?;
        self.sync_subscribers(&mut store).await?;
        info!(account = %username, new_password = change.new_password, "account changed");
        let words = if change.new_password {
            format!("account {username} changed (new SIP password)")
        } else {
            format!("account {username} changed")
        };
        crate::audit::record_in(
            &mut store,
            &crate::audit::Entry::new(
                "account.update",
                words,
                serde_json::json!({ "account": username.as_str(), "new_password": change.new_password }),
            ),
            "done",
        );
        Ok(account.view())
    }

    pub async fn delete_account(&self, username: &Username) -> Result<()> {
        let mut store = self.store.lock().await;
        if !store.delete_account(username.as_str())? {
            return Err(EngineError::NoSuchAccount(username.to_string()));
        }
        self.sync_subscribers(&mut store).await?;
        info!(account = %username, "account deleted");
        crate::audit::record_in(
            &mut store,
            &crate::audit::Entry::new(
                "account.delete",
                format!("account {username} deleted"),
                serde_json::json!({ "account": username.as_str() }),
            ),
            "done",
        );
        Ok(())
    }

    /// Create every account of a CSV file, or none when any row is bad.
    pub async fn import_accounts(&self, csv: &[u8]) -> Result<Vec<AccountView>> {
        let mut store = self.store.lock().await;
        let taken = Taken::from_accounts(&accounts_of(&store)?);
        let drafts = switchboard_provision::import_csv(csv, &taken).map_err(|r| {
            EngineError::CsvRejected(
                r.problems
                    .iter()
                    .map(|p| serde_json::to_value(p).unwrap_or_default())
                    .collect(),
            )
        })?;
        let mut accounts = Vec::with_capacity(drafts.len());
        for d in drafts {
            accounts.push(d.into_account(SipPassword::from_entropy(random()?), &Realm::default()));
        }
        let rows: Vec<AccountRow> = accounts.iter().map(row_of).collect();
        store.insert_accounts(&rows, Timestamp::now())?;
        self.sync_subscribers(&mut store).await?;
        info!(accounts = rows.len(), "accounts imported");
        crate::audit::record_in(
            &mut store,
            &crate::audit::Entry::new(
                "accounts.import",
                format!("{} account(s) imported from a CSV file", rows.len()),
                serde_json::json!({ "accounts": rows.len() }),
            ),
            "done",
        );
        Ok(accounts.iter().map(Account::view).collect())
    }

    /// Consume one token through the group commit; its account's user name.
    async fn consume(&self, hash: String) -> Result<(Option<u64>, Option<AccountRow>)> {
        let tx = self.consumer.get_or_init(|| {
            let (tx, rx) = tokio::sync::mpsc::channel(1024);
            tokio::spawn(group_commit(self.phones.clone(), rx));
            tx
        });
        let (reply, answer) = tokio::sync::oneshot::channel();
        tx.send(Consume { hash, reply })
            .await
            .map_err(|_| EngineError::System("the token consumer stopped".into()))?;
        answer
            .await
            .map_err(|_| EngineError::System("the token consumer stopped".into()))?
    }

    /// The document context of the running revision, cached until the
    /// applied revision changes.
    async fn document_context(&self, current: u64) -> Result<std::sync::Arc<DocumentContext>> {
        if let Some(c) = self
            .documents
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .filter(|c| c.revision == current)
        {
            return Ok(c.clone());
        }
        let (facts, context) = (self.facts(), self.context());
        let (current, applied) = off_worker(&self.phones, move |store| {
            let current = store
                .applied_number()?
                .ok_or(EngineError::ActivationUnavailable)?;
            let applied = store.applied()?.ok_or(EngineError::ActivationUnavailable)?;
            Ok((
                current,
                Self::upgraded_with(store, facts, &context, applied)?,
            ))
        })
        .await?;
        let port = NonZeroU16::new(applied.plan.provisioning.sip_tls_port)
            .ok_or_else(|| EngineError::System("port 0".into()))?;
        let pins = applied
            .plan
            .provisioning
            .pins
            .iter()
            .map(|p| p.parse::<CertPin>())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| EngineError::System(format!("a pin of the plan: {e}")))?;
        let context = std::sync::Arc::new(DocumentContext {
            revision: current,
            settings: applied.candidate.provisioning,
            port,
            pins,
        });
        *self.documents.lock().unwrap_or_else(|p| p.into_inner()) = Some(context.clone());
        Ok(context)
    }

    /// The candidate's provisioning settings.
    pub async fn provisioning(&self) -> Result<ProvisioningSettings> {
        Ok(Self::candidate_of(&*self.store.lock().await)?.provisioning)
    }

    /// The app store page for a phone whose browser sent `user_agent`, from
    /// the running revision's settings.
    pub async fn install_link(&self, user_agent: &str) -> Result<Option<String>> {
        let applied = off_worker(&self.phones, |store| Ok(store.applied()?)).await?;
        Ok(applied.and_then(|r| {
            switchboard_domain::install::install_link(
                user_agent,
                &r.candidate.provisioning.app_stores,
            )
            .map(|u| u.to_string())
        }))
    }

    /// Replace the provisioning settings (see [`Engine::change_provisioning`]).
    pub async fn set_provisioning(&self, settings: ProvisioningSettings) -> Result<EditView<()>> {
        self.edit_provisioning(|_| settings).await
    }

    /// Change some of the provisioning settings and keep the others, in one
    /// edit under the engine's lock: two administrators changing different
    /// settings at once both keep their change. The SIP/TLS host name and
    /// the web services URI must each be covered by a certificate bound to
    /// its service.
    pub async fn change_provisioning(&self, change: ProvisioningChange) -> Result<EditView<()>> {
        self.edit_provisioning(|old| change.applied_to(old)).await
    }

    async fn edit_provisioning(
        &self,
        next: impl FnOnce(&ProvisioningSettings) -> ProvisioningSettings,
    ) -> Result<EditView<()>> {
        let what = crate::audit::Entry::new(
            "provisioning.settings",
            "provisioning settings changed",
            serde_json::json!({}),
        );
        self.edit_with(what, |store, c, _| {
            let settings = next(&c.provisioning);
            let mut covers = Vec::new();
            for service in [ServiceId::SipTls, ServiceId::Web] {
                let mut certs = Vec::new();
                for n in c.bindings.certificates_of(service) {
                    if let Some(cert) = store.cert(n)? {
                        certs.push(cert.info);
                    }
                }
                covers.push(certs);
            }
            let findings = switchboard_provision::check_settings(
                &settings,
                |h| covers[0].iter().any(|i| i.covers(h)),
                |h| covers[1].iter().any(|i| i.covers(h)),
            );
            if let Some(f) = findings.iter().find(|f| f.is_error()) {
                return Err(EngineError::Provision {
                    code: f.code.as_str(),
                    message: f.message.clone(),
                    hint: "bind a certificate that covers it first (`switchboard cert bind`), or use a name the bound certificate covers",
                });
            }
            c.provisioning = settings;
            Ok(())
        })
        .await
    }

    /// A single-use, expiring link for `username`, sent by SMS (queued for
    /// the gateway, or kept in the outbox). Uses the running revision's
    /// provisioning settings: phones get what is applied.
    pub async fn activate(&self, username: &Username) -> Result<ActivationView> {
        let mut store = self.store.lock().await;
        let new = new_link(&store, username)?;
        let text = switchboard_provision::activation_sms(new.account.display_name(), &new.link);
        let gateway = self.config.sms_gateway.kind();
        let sms_id = store.activate(&NewActivation {
            username: username.as_str(),
            token_hash: &new.token.hash().to_string(),
            expires_at: new.expires_at,
            sms_to: new.account.phone().as_str(),
            sms_text: text.expose(),
            gateway,
            at: new.now,
        })?;
        info!(account = %username, sms = sms_id, gateway, "activation link created and queued");
        crate::audit::record_in(
            &mut store,
            &crate::audit::Entry::new(
                "account.activate",
                format!("activation link for {username} sent by SMS ({gateway})"),
                serde_json::json!({ "account": username.as_str(), "sms": sms_id, "gateway": gateway }),
            ),
            "done",
        );
        Ok(new.view(sms_id, gateway))
    }

    /// A single-use, expiring link for `username`, handed over in person
    /// (the console shows it as a QR code, once): no SMS. The link holds
    /// the token: it is for the administrator's screen only, never logged.
    pub async fn activate_in_person(
        &self,
        username: &Username,
    ) -> Result<(ActivationView, switchboard_provision::ActivationLink)> {
        let mut store = self.store.lock().await;
        let new = new_link(&store, username)?;
        store.add_activation(
            username.as_str(),
            &new.token.hash().to_string(),
            new.expires_at,
            new.now,
        )?;
        info!(account = %username, "activation link created for hand-over in person");
        crate::audit::record_in(
            &mut store,
            &crate::audit::Entry::new(
                "account.activate",
                format!("activation link for {username} made for hand-over in person"),
                serde_json::json!({ "account": username.as_str(), "in_person": true }),
            ),
            "done",
        );
        Ok((new.view(0, "in person"), new.link))
    }

    /// Kill every unused activation link of `username` and withdraw its
    /// messages not yet delivered (a lost phone, a wrong number).
    pub async fn revoke(&self, username: &Username) -> Result<RevokeView> {
        let mut store = self.store.lock().await;
        Self::find(&store, username)?;
        let (links, messages) = store.revoke_activations(username.as_str(), Timestamp::now())?;
        info!(account = %username, links, messages, "activation links revoked");
        crate::audit::record_in(
            &mut store,
            &crate::audit::Entry::new(
                "account.revoke",
                format!(
                    "activation links of {username} revoked ({links} link(s), {messages} message(s))"
                ),
                serde_json::json!({ "account": username.as_str(), "links": links, "messages": messages }),
            ),
            "done",
        );
        Ok(RevokeView {
            username: username.to_string(),
            links,
            messages,
        })
    }

    /// Send a failed message again (queued now, attempts from zero),
    /// unless the link it carries has expired meanwhile.
    pub async fn resend_sms(&self, id: u64) -> Result<SmsView> {
        let mut store = self.store.lock().await;
        let m = store
            .sms()?
            .into_iter()
            .find(|m| m.id == id)
            .ok_or(EngineError::NoSuchSms(id))?;
        let not = |why: String| EngineError::SmsNotResendable { id, why };
        if m.state != "failed" {
            return Err(not(format!("it is {}", m.state)));
        }
        let now = Timestamp::now();
        if m.created_at + switchboard_provision::DEFAULT_TOKEN_TTL <= now {
            return Err(not("the link in it has expired".into()));
        }
        let m = store
            .sms_requeue(id, now)?
            .ok_or(EngineError::NoSuchSms(id))?;
        info!(sms = id, "failed SMS queued again");
        crate::audit::record_in(
            &mut store,
            &crate::audit::Entry::new(
                "sms.resend",
                format!("SMS {id} queued again"),
                serde_json::json!({ "sms": id }),
            ),
            "done",
        );
        Ok(sms_view(m))
    }

    pub async fn sms(&self) -> Result<Vec<SmsView>> {
        Ok(self
            .store
            .lock()
            .await
            .sms()?
            .into_iter()
            .map(sms_view)
            .collect())
    }

    /// One pass over the due messages of the queue: sent, or tried again
    /// later with backoff (2 s doubling, at most an hour), or given up.
    /// A gateway outage loses nothing: the queue is in the store.
    pub async fn deliver_sms(&self) -> Result<usize> {
        let due = self.store.lock().await.sms_due(Timestamp::now())?;
        let mut sent = 0;
        for m in due {
            let sms = Sms {
                to: m.to.clone(),
                text: m.text.clone(),
            };
            let result = switchboard_system::sms::send(
                &self.config.sms_gateway,
                &sms,
                Duration::from_secs(10),
            )
            .await;
            let now = Timestamp::now();
            let mut store = self.store.lock().await;
            match result {
                Ok(SendOutcome::Sent { .. }) | Ok(SendOutcome::Recorded) => {
                    store.sms_attempted(m.id, "sent", now, None, now)?;
                    sent += 1;
                }
                Err(e) if e.is_transient() && m.attempts + 1 < MAX_SMS_ATTEMPTS => {
                    let wait = SignedDuration::from_secs((2i64 << m.attempts.min(11)).min(3600));
                    warn!(sms = m.id, attempt = m.attempts + 1, error = %e, "SMS not sent; trying again later");
                    store.sms_attempted(m.id, "queued", now + wait, Some(&e.to_string()), now)?;
                }
                Err(e) => {
                    warn!(sms = m.id, error = %e, "SMS given up");
                    store.sms_attempted(m.id, "failed", now, Some(&e.to_string()), now)?;
                }
            }
        }
        Ok(sent)
    }

    /// The configuration document behind an activation link: the token is
    /// used up by this call (atomically; a second fetch, like an unknown
    /// or expired token, gets [`EngineError::LinkGone`]).
    pub async fn fetch_document(&self, token: &str, from: IpAddr) -> Result<Document> {
        if !self.fetch_limit.allow(from) {
            return Err(EngineError::RateLimited);
        }
        let token =
            ActivationToken::parse_path_segment(token).map_err(|_| EngineError::LinkGone)?;
        let (applied, row) = self.consume(token.hash().to_string()).await?;
        let row = row.ok_or(EngineError::LinkGone)?;
        let applied = applied.ok_or(EngineError::ActivationUnavailable)?;
        let account = account_of(&row)?;
        let context = self.document_context(applied).await?;
        let (settings, port, pins) = (&context.settings, context.port, &context.pins);
        let username = account.username().clone();
        let doc = switchboard_provision::document(
            &account,
            settings,
            port,
            pins,
            SrtpPolicy::Mandatory,
            Timestamp::now(),
        )
        .map_err(|e| EngineError::Provision {
            code: e.code(),
            message: e.to_string(),
            hint: e.hint(),
        })?;
        info!(account = %username, "configuration document fetched; its link is now dead");
        Ok(doc)
    }
}

/// One registered contact of an account, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegistrationView {
    /// The Contact URI the phone registered.
    pub contact: String,
    /// The address the REGISTER came from (without port), when recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// `udp`, `tcp` or `tls`: how it reached Kamailio.
    pub transport: String,
    /// The socket it arrived on (`tls:198.51.100.1:5061`).
    pub socket: String,
    pub user_agent: String,
    /// Seconds until it expires.
    pub expires_secs: u64,
}

/// An account's registrations.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegistrationsView {
    pub username: String,
    /// `None` when Kamailio could not be asked (not driven, not running).
    pub registered: Option<bool>,
    pub contacts: Vec<RegistrationView>,
    /// In words: "registered now from 192.0.2.2 over TLS", "not registered".
    pub summary: String,
}

/// The address of a `sip:ADDR:PORT;...` received URI (IPv6 in brackets).
fn source_of(received: &str) -> Option<String> {
    let rest = received.strip_prefix("sip:")?;
    let hostport = rest.split(';').next()?;
    let host = if let Some(v6) = hostport.strip_prefix('[') {
        v6.split_once(']')?.0
    } else {
        hostport.rsplit_once(':').map_or(hostport, |(h, _)| h)
    };
    host.parse::<std::net::IpAddr>().ok().map(|a| a.to_string())
}

impl Engine {
    /// The contacts `username` has registered now, read from Kamailio over
    /// its RPC interface (`ul.dump`).
    pub async fn registrations(&self, username: &Username) -> Result<RegistrationsView> {
        Self::find(&*self.store.lock().await, username)?;
        let name = username.to_string();
        let Some(ctl) = self.kamailio_ctl() else {
            return Ok(RegistrationsView {
                username: name,
                registered: None,
                contacts: vec![],
                summary: "unknown: Kamailio is not running".into(),
            });
        };
        let all = switchboard_system::kamailio::registrations(&ctl)
            .await
            .map_err(|e| EngineError::System(e.to_string()))?;
        Ok(registrations_of(name, all))
    }

    /// Every account's registration in words, by user name (accounts not
    /// listed are not registered); `None` when Kamailio cannot be asked.
    pub async fn registration_summaries(&self) -> Option<HashMap<String, String>> {
        let ctl = self.kamailio_ctl()?;
        let all = switchboard_system::kamailio::registrations(&ctl)
            .await
            .ok()?;
        let mut by_user: HashMap<String, Vec<switchboard_system::kamailio::Contact>> =
            HashMap::new();
        for c in all {
            by_user.entry(c.aor.clone()).or_default().push(c);
        }
        Some(
            by_user
                .into_iter()
                .map(|(user, contacts)| {
                    let v = registrations_of(user.clone(), contacts);
                    (user, v.summary)
                })
                .collect(),
        )
    }
}

/// The registrations of `name` among `all` Kamailio's contacts.
fn registrations_of(
    name: String,
    all: Vec<switchboard_system::kamailio::Contact>,
) -> RegistrationsView {
    let contacts: Vec<RegistrationView> = all
        .into_iter()
        .filter(|c| c.aor == name)
        .map(|c| RegistrationView {
            source: c.received.as_deref().and_then(source_of),
            transport: c.socket.split(':').next().unwrap_or("").to_owned(),
            contact: c.address,
            socket: c.socket,
            user_agent: c.user_agent,
            expires_secs: c.expires_secs,
        })
        .collect();
    let summary = match contacts.first() {
        None => "not registered".to_owned(),
        Some(c) => format!(
            "registered now from {} over {}{}",
            c.source.as_deref().unwrap_or("an unrecorded address"),
            c.transport.to_uppercase(),
            if contacts.len() > 1 {
                format!(" (and {} more)", contacts.len() - 1)
            } else {
                String::new()
            }
        ),
    };
    RegistrationsView {
        username: name,
        registered: Some(!contacts.is_empty()),
        contacts,
        summary,
    }
}

#[cfg(test)]
mod registration_tests {
    use super::*;

    #[test]
    fn the_source_address_comes_from_the_received_uri() {
        assert_eq!(
            source_of("sip:198.51.100.2:40000;transport=tls").as_deref(),
            Some("198.51.100.2")
        );
        assert_eq!(
            source_of("sip:[2001:db8::2]:5060").as_deref(),
            Some("2001:db8::2")
        );
        assert_eq!(source_of("sip:192.0.2.2").as_deref(), Some("192.0.2.2"));
        for bad in [
            "",
            "192.0.2.2",
            "sip:host.example:5060",
            "sip:[2001:db8::2",
            "sip:<script>",
        ] {
            assert_eq!(source_of(bad), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn registrations_of_an_unknown_account_and_without_kamailio() {
        let e = Engine::in_memory().expect("engine");
        let nobody: Username = "1999".parse().expect("name");
        assert_eq!(
            e.registrations(&nobody).await.expect_err("unknown").code(),
            "no-such-account"
        );
    }
}
