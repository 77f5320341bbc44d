//! Console sessions, sign-in throttling and CSRF tokens, in memory.
//!
//! - A session id is 256 random bits, sent only in the `__Host-` cookie
//!   (Secure, HttpOnly, SameSite=Strict, Path=/). The table keys sessions by
//!   the SHA-256 of the id, so the table itself holds no usable cookie.
//! - A new id at every sign-in (no fixation); sign-out and the timeouts
//!   ([`IDLE_TIMEOUT`], [`ABSOLUTE_TIMEOUT`]) end a session.
//! - Every session has its own CSRF token (synchronizer pattern), compared
//!   in constant time; the sign-in form has one too, tied to a short-lived
//!   pre-session cookie.
//! - [`Throttle`]: failed sign-ins in a sliding window, as OWASP's
//!   authentication cheat sheet recommends: refused (without checking the
//!   password) per source address and user name past [`MAX_FAILURES`] and
//!   per source address past [`MAX_ADDRESS_FAILURES`]; per user name only
//!   slowed down ([`Attempt::delay`], at most [`MAX_USER_DELAY`]), never
//!   refused, so that nobody can lock an administrator out by failing in
//!   their name from elsewhere.
//!
//! **Limitations.** Sessions live in the daemon's memory: a restart signs
//! everyone out (the safe direction). The table is bounded
//! ([`MAX_SESSIONS`]); the oldest sessions are dropped first.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::digest::{SHA256, digest};
use ring::rand::{SecureRandom, SystemRandom};

/// The session cookie. `__Host-`: the browser keeps it only if it was set
/// over HTTPS, with `Secure`, `Path=/` and no `Domain`.
pub const SESSION_COOKIE: &str = "__Host-switchboard-session";
/// The pre-session cookie that ties the sign-in form to its browser.
pub const LOGIN_COOKIE: &str = "__Host-switchboard-login";
/// The header the JSON API wants the CSRF token in (the console's forms
/// send it as the `csrf` field).
pub const CSRF_HEADER: &str = "x-csrf-token";
/// A session ends after this long without a request.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// A session ends this long after sign-in, busy or not.
pub const ABSOLUTE_TIMEOUT: Duration = Duration::from_secs(12 * 3600);
/// Failed sign-ins allowed per (address, user name) in [`WINDOW`].
pub const MAX_FAILURES: usize = 5;
/// Failed sign-ins allowed per address, whatever the user names, in [`WINDOW`].
pub const MAX_ADDRESS_FAILURES: usize = 20;
/// Failed sign-ins for one user name, from anywhere, before each attempt
/// for it is slowed down.
pub const USER_DELAY_AFTER: usize = 5;
/// The slow-down per failure past [`USER_DELAY_AFTER`].
pub const USER_DELAY_STEP: Duration = Duration::from_millis(100);
/// The longest slow-down for one user name: a delay, never a refusal.
pub const MAX_USER_DELAY: Duration = Duration::from_secs(2);
/// The throttle's sliding window.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Sessions held at most.
pub const MAX_SESSIONS: usize = 256;

/// A `Set-Cookie` value for one of the console's `__Host-` cookies:
/// `Secure`, `HttpOnly`, `SameSite=Strict`, `Path=/`, no `Domain`;
/// `max_age` in seconds (`Some(0)` deletes it; `None`: until the browser
/// closes).
pub fn set_cookie(name: &str, value: &str, max_age: Option<u64>) -> String {
    let mut c = format!("{name}={value}; Path=/; Secure; HttpOnly; SameSite=Strict");
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    c
}

/// 256 random bits, base64url.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system's random number generator works");
    URL_SAFE_NO_PAD.encode(bytes)
}

fn key(id: &str) -> [u8; 32] {
    let mut k = [0u8; 32];
    k.copy_from_slice(digest(&SHA256, id.as_bytes()).as_ref());
    k
}

/// Whether two tokens are equal, without a timing side channel: what is
/// compared are their SHA-256 digests, which leak nothing about a token.
pub fn same_token(a: &str, b: &str) -> bool {
    key(a) == key(b)
}

/// A signed-in administrator's session.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: String,
    pub csrf: String,
    /// The user's password generation at sign-in
    /// (`Engine::password_generation`): the session ends when it moves on.
    pub generation: u64,
    /// While this session changes its own password: the generation that
    /// change will make, also accepted (a request of the same session
    /// running meanwhile must not end it).
    pub next_generation: Option<u64>,
    created: Instant,
    last_seen: Instant,
    /// A message for the next page (post/redirect/get).
    pub flash: Option<Flash>,
    /// The activation link this session made last, shown as a QR code
    /// until another is made: a reload shows it again, it never makes a
    /// second one. Held in memory only, with the session.
    pub shown_link: Option<ShownLink>,
}

/// An activation link made to be shown in person.
#[derive(Clone)]
pub struct ShownLink {
    pub username: String,
    pub link: String,
    pub expires: String,
}

impl std::fmt::Debug for ShownLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShownLink")
            .field("username", &self.username)
            .field("link", &"<redacted>")
            .finish()
    }
}

/// The outcome of the last action, shown once on the next page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flash {
    pub ok: bool,
    /// The error code of a failure (as in the API's error document), for
    /// the audit log; empty when it went well.
    pub code: String,
    pub message: String,
    pub hint: String,
    /// Diagnostics or problems, one line each.
    pub details: Vec<String>,
    /// The id of the form it belongs to: shown next to it, not at the top.
    pub form: Option<Box<str>>,
    /// Whether the page gives the form back what was typed into it (the
    /// console's script keeps it in the tab's session storage): after a
    /// failure, and after signing in again.
    pub restore: bool,
}

impl Flash {
    pub fn ok(message: impl Into<String>) -> Flash {
        Flash {
            ok: true,
            code: String::new(),
            message: message.into(),
            hint: String::new(),
            details: vec![],
            form: None,
            restore: false,
        }
    }

    pub fn error(code: &str, message: impl Into<String>, hint: impl Into<String>) -> Flash {
        Flash {
            ok: false,
            code: code.into(),
            message: message.into(),
            hint: hint.into(),
            details: vec![],
            form: None,
            restore: true,
        }
    }
}

#[derive(Debug, Default)]
pub struct Sessions {
    table: Mutex<HashMap<[u8; 32], Session>>,
}

impl Session {
    /// Whether the session still holds for the user's password
    /// `generation`.
    pub fn holds_at(&self, generation: u64) -> bool {
        self.generation == generation || self.next_generation == Some(generation)
    }
}

impl Sessions {
    /// A new session for `user`, whose password is at `generation`;
    /// returns its id (for the cookie only).
    pub fn create(&self, user: &str, generation: u64) -> String {
        self.create_at(user, generation, Instant::now())
    }

    fn create_at(&self, user: &str, generation: u64, now: Instant) -> String {
        let id = random_token();
        let mut table = self.table.lock().expect("sessions lock");
        table.retain(|_, s| alive(s, now));
        while table.len() >= MAX_SESSIONS {
            let oldest = table
                .iter()
                .min_by_key(|(_, s)| s.created)
                .map(|(k, _)| *k)
                .expect("the table is not empty");
            table.remove(&oldest);
        }
        table.insert(
            key(&id),
            Session {
                user: user.to_owned(),
                csrf: random_token(),
                generation,
                next_generation: None,
                created: now,
                last_seen: now,
                flash: None,
                shown_link: None,
            },
        );
        id
    }

    /// The live session with this id (its idle clock restarts), or `None`.
    pub fn get(&self, id: &str) -> Option<Session> {
        self.get_at(id, Instant::now())
    }

    fn get_at(&self, id: &str, now: Instant) -> Option<Session> {
        let mut table = self.table.lock().expect("sessions lock");
        let k = key(id);
        match table.get_mut(&k) {
            Some(s) if alive(s, now) => {
                s.last_seen = now;
                Some(s.clone())
            }
            Some(_) => {
                table.remove(&k);
                None
            }
            None => None,
        }
    }

    /// Take the session's flash message (shown once).
    pub fn take_flash(&self, id: &str) -> Option<Flash> {
        let mut table = self.table.lock().expect("sessions lock");
        table.get_mut(&key(id)).and_then(|s| s.flash.take())
    }

    pub fn set_flash(&self, id: &str, flash: Flash) {
        let mut table = self.table.lock().expect("sessions lock");
        if let Some(s) = table.get_mut(&key(id)) {
            s.flash = Some(flash);
        }
    }

    /// Hold `link` as the one this session shows.
    pub fn show_link(&self, id: &str, link: ShownLink) {
        let mut table = self.table.lock().expect("sessions lock");
        if let Some(s) = table.get_mut(&key(id)) {
            s.shown_link = Some(link);
        }
    }

    pub fn remove(&self, id: &str) {
        self.table.lock().expect("sessions lock").remove(&key(id));
    }

    /// The session `id` goes on under the user's password `generation`
    /// (after its own change of password, or when the change failed).
    pub fn set_generation(&self, id: &str, generation: u64) {
        if let Some(s) = self.table.lock().expect("sessions lock").get_mut(&key(id)) {
            s.generation = generation;
            s.next_generation = None;
        }
    }

    /// The session `id` is about to change its own password: the
    /// generation after `current` is accepted too until
    /// [`Sessions::set_generation`].
    pub fn changing_password(&self, id: &str, current: u64) {
        if let Some(s) = self.table.lock().expect("sessions lock").get_mut(&key(id)) {
            s.next_generation = Some(current + 1);
        }
    }

    /// End every session of `user` (after a password change), except `keep`.
    pub fn remove_user(&self, user: &str, keep: Option<&str>) {
        let keep = keep.map(key);
        self.table
            .lock()
            .expect("sessions lock")
            .retain(|k, s| s.user != user || Some(*k) == keep);
    }
}

fn alive(s: &Session, now: Instant) -> bool {
    now.duration_since(s.last_seen) < IDLE_TIMEOUT
        && now.duration_since(s.created) < ABSOLUTE_TIMEOUT
}

/// Password attempts, counted per address, per (address, user name) and
/// per user name. An attempt counts as failed from the moment it is let
/// through ([`Throttle::attempt`], one lock for the check and the count):
/// so parallel guesses cannot all pass the check before the first failure
/// is counted. An attempt that checked nothing is taken back
/// ([`Throttle::refund`]); a right password also clears the counts of its
/// address and of its (address, user name) ([`Throttle::succeeded`]).
///
/// Only the address and the (address, user name) counts refuse; the user
/// name's count, which anyone anywhere can raise, only slows its attempts
/// down ([`Attempt::delay`]).
#[derive(Debug, Default)]
pub struct Throttle {
    failures: Mutex<HashMap<Key, VecDeque<Instant>>>,
}

/// What a failure is counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Addr(IpAddr),
    AddrUser(IpAddr, String),
    User(String),
}

impl Key {
    /// Failures that refuse the next attempt; `None`: never refuses.
    fn limit(&self) -> Option<usize> {
        match self {
            Key::Addr(_) => Some(MAX_ADDRESS_FAILURES),
            Key::AddrUser(..) => Some(MAX_FAILURES),
            Key::User(_) => None,
        }
    }
}

impl Throttle {
    /// Let an attempt from `from` for `user` through, counted as failed
    /// until refunded; or, past a limit of the address or of the address
    /// and user name in [`WINDOW`], how long until one may be tried.
    pub fn attempt(&self, from: IpAddr, user: &str) -> Result<Attempt, Duration> {
        self.attempt_at(from, user, Instant::now())
    }

    fn attempt_at(&self, from: IpAddr, user: &str, now: Instant) -> Result<Attempt, Duration> {
        let mut failures = self.failures.lock().expect("throttle lock");
        // Bounded: forget everything stale when the map grows large.
        if failures.len() > 10_000 {
            failures.retain(|_, t| t.back().is_some_and(|t| now.duration_since(*t) < WINDOW));
        }
        let keys = keys(from, user);
        let mut wait = Duration::ZERO;
        let mut user_failures = 0;
        for k in &keys {
            let Some(times) = failures.get_mut(k) else {
                continue;
            };
            while times
                .front()
                .is_some_and(|t| now.duration_since(*t) >= WINDOW)
            {
                times.pop_front();
            }
            match (k.limit(), times.front()) {
                (Some(limit), Some(oldest)) if times.len() >= limit => {
                    wait = wait.max(WINDOW - now.duration_since(*oldest));
                }
                (None, _) => user_failures = times.len(),
                _ => {}
            }
        }
        if !wait.is_zero() {
            return Err(wait);
        }
        for k in &keys {
            failures.entry(k.clone()).or_default().push_back(now);
        }
        let past =
            u32::try_from(user_failures.saturating_sub(USER_DELAY_AFTER)).unwrap_or(u32::MAX);
        Ok(Attempt {
            keys,
            at: now,
            delay: USER_DELAY_STEP.saturating_mul(past).min(MAX_USER_DELAY),
        })
    }

    /// The attempt checked nothing (the request was refused for another
    /// reason): it does not count.
    pub fn refund(&self, attempt: Attempt) {
        let mut failures = self.failures.lock().expect("throttle lock");
        for k in &attempt.keys {
            if let Some(times) = failures.get_mut(k)
                && let Some(i) = times.iter().rposition(|t| *t == attempt.at)
            {
                times.remove(i);
            }
        }
    }

    /// The password was right: the attempt does not count, and the
    /// counts of the address and of the address and user name start again
    /// (a guesser of this user name elsewhere stays slowed down).
    pub fn succeeded(&self, attempt: Attempt) {
        let [addr, pair, _] = attempt.keys.clone();
        self.refund(attempt);
        let mut failures = self.failures.lock().expect("throttle lock");
        failures.remove(&addr);
        failures.remove(&pair);
    }
}

/// One attempt let through by [`Throttle::attempt`], counted as failed
/// until given back.
#[derive(Debug)]
#[must_use = "an attempt counts as failed unless refunded or succeeded"]
pub struct Attempt {
    /// The address's key, the address and user name's, the user name's.
    keys: [Key; 3],
    at: Instant,
    delay: Duration,
}

impl Attempt {
    /// How long to wait before checking the password: zero unless the
    /// user name failed more than [`USER_DELAY_AFTER`] times in [`WINDOW`]
    /// from anywhere, then [`USER_DELAY_STEP`] per failure past that, at
    /// most [`MAX_USER_DELAY`].
    pub fn delay(&self) -> Duration {
        self.delay
    }
}

fn keys(from: IpAddr, user: &str) -> [Key; 3] {
    // Bounded length: user names are capped where they are accepted.
    let user = user.to_lowercase();
    [
        Key::Addr(from),
        Key::AddrUser(from, user.clone()),
        Key::User(user),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 3));

    #[test]
    fn sessions_expire_when_idle_and_absolutely() {
        let s = Sessions::default();
        let t0 = Instant::now();
        let id = s.create_at("admin", 0, t0);
        assert_eq!(s.get_at(&id, t0).unwrap().user, "admin");
        // Kept busy: lives past the idle timeout, not past the absolute one.
        let mut t = t0;
        while t < t0 + ABSOLUTE_TIMEOUT - IDLE_TIMEOUT {
            t += IDLE_TIMEOUT / 2;
            assert!(s.get_at(&id, t).is_some());
        }
        assert!(s.get_at(&id, t0 + ABSOLUTE_TIMEOUT).is_none());
        // Idle.
        let id = s.create_at("admin", 0, t0);
        assert!(s.get_at(&id, t0 + IDLE_TIMEOUT).is_none());
        // Gone once expired, even if the clock were to go back.
        assert!(s.get_at(&id, t0).is_none());
    }

    #[test]
    fn ids_and_tokens_are_unique_and_unguessable_in_shape() {
        let s = Sessions::default();
        let a = s.create("admin", 0);
        let b = s.create("admin", 0);
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_ne!(s.get(&a).unwrap().csrf, s.get(&b).unwrap().csrf);
        assert!(s.get("").is_none());
        assert!(s.get(&"A".repeat(43)).is_none());
        s.remove(&a);
        assert!(s.get(&a).is_none());
        assert!(s.get(&b).is_some());
        s.remove_user("admin", None);
        assert!(s.get(&b).is_none());
    }

    #[test]
    fn a_session_holds_at_its_generation_and_while_changing_at_the_next() {
        let s = Sessions::default();
        let id = s.create("admin", 3);
        let session = || s.get(&id).expect("live");
        assert!(session().holds_at(3));
        assert!(!session().holds_at(4));
        s.changing_password(&id, 3);
        assert!(session().holds_at(3) && session().holds_at(4));
        s.set_generation(&id, 4);
        assert!(!session().holds_at(3) && session().holds_at(4));
    }

    #[test]
    fn the_table_is_bounded() {
        let s = Sessions::default();
        let first = s.create("admin", 0);
        for _ in 0..MAX_SESSIONS {
            s.create("admin", 0);
        }
        assert!(s.get(&first).is_none());
        assert!(s.table.lock().unwrap().len() <= MAX_SESSIONS);
    }

    #[test]
    fn throttle_refuses_per_address_and_user_and_per_address_and_only_slows_a_user_down() {
        let t = Throttle::default();
        let t0 = Instant::now();
        for i in 0..MAX_FAILURES {
            assert!(t.attempt_at(A, "admin", t0).is_ok(), "attempt {i}");
        }
        let wait = t.attempt_at(A, "admin", t0).unwrap_err();
        assert!(wait <= WINDOW && wait > WINDOW - Duration::from_secs(1));
        // The same user name from elsewhere: let through, not delayed yet.
        let other = t.attempt_at(B, "ADMIN", t0).expect("another address");
        assert_eq!(other.delay(), Duration::ZERO);
        t.succeeded(other);
        // Another user name from the same address: let through, up to the
        // address's own limit.
        for i in MAX_FAILURES..MAX_ADDRESS_FAILURES {
            let _counted = t
                .attempt_at(A, &format!("user{i}"), t0)
                .expect("under the address limit");
        }
        assert!(t.attempt_at(A, "someone", t0).is_err());
        // The window moves on.
        assert!(t.attempt_at(A, "admin", t0 + WINDOW).is_ok());
    }

    #[test]
    fn a_hundred_failures_for_a_user_elsewhere_delay_it_a_little_and_never_refuse() {
        let t = Throttle::default();
        let t0 = Instant::now();
        for i in 0..100u8 {
            let from = IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, i));
            for _ in 0..MAX_FAILURES {
                let _counted = t.attempt_at(from, "admin", t0).expect("its own limit");
            }
        }
        let right = t.attempt_at(A, "admin", t0).expect("never refused");
        assert_eq!(right.delay(), MAX_USER_DELAY);
        t.succeeded(right);
        let early = Throttle::default();
        for n in 0..USER_DELAY_AFTER + 3 {
            let a = early.attempt_at(B, &format!("x{n}"), t0).expect("free");
            early.refund(a);
            let a = early
                .attempt_at(
                    IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, n as u8)),
                    "root",
                    t0,
                )
                .expect("free");
            let past = n.saturating_sub(USER_DELAY_AFTER) as u32;
            assert_eq!(a.delay(), USER_DELAY_STEP * past, "after {n} failures");
        }
    }

    #[test]
    fn a_right_password_is_refunded_and_parallel_guesses_are_counted_at_once() {
        let t = Throttle::default();
        let t0 = Instant::now();
        // Right passwords, many times: never throttled.
        for _ in 0..3 * MAX_FAILURES {
            let a = t.attempt_at(A, "admin", t0).expect("let through");
            t.succeeded(a);
        }
        // Attempts that checked nothing do not count either, but they do
        // not clear earlier failures of the address.
        for _ in 0..MAX_FAILURES - 1 {
            let _counted = t.attempt_at(A, "guess", t0).expect("let through");
        }
        for _ in 0..3 * MAX_FAILURES {
            let a = t.attempt_at(A, "guess", t0).expect("let through");
            t.refund(a);
        }
        let _last = t.attempt_at(A, "guess", t0).expect("the fifth");
        assert!(
            t.attempt_at(A, "guess", t0).is_err(),
            "the address and user name are at their limit"
        );
        // Guesses in flight at once: the sixth is refused before any
        // answer came back.
        for _ in 0..MAX_FAILURES {
            let _counted = t.attempt_at(B, "admin", t0).expect("let through");
        }
        assert!(t.attempt_at(B, "admin", t0).is_err());
    }
    #[test]
    fn tokens_compare_in_constant_time_and_exactly() {
        let a = random_token();
        assert!(same_token(&a, &a.clone()));
        assert!(!same_token(&a, &random_token()));
        assert!(!same_token(&a, &a[..42]));
        assert!(!same_token(&a, ""));
    }
}
