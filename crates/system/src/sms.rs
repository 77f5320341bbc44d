//! SMS gateways: the sending side of the Automatic Activation SMS.
//!
//! [`send`] hands one [`Sms`] to a [`Gateway`] and says whether it went out,
//! or whether trying again later can help ([`SmsError::Transient`]) or not
//! ([`SmsError::Permanent`]). It sends once and never retries by itself:
//! the daemon's persistent queue decides when to try again. Delivery is at
//! least once: when the connection breaks after the request was written,
//! the gateway may have taken the message and a retry sends it twice.
//!
//! - [`Gateway::Kannel`]: Kannel's HTTP `sendsms` interface (smsbox's
//!   `sendsms-port`), a GET with the message in its query, as Kannel wants it
//!   (it refuses form-encoded POST bodies). The text goes as UTF-8
//!   (`charset=UTF-8`); text that GSM-7 cannot carry goes as UCS-2
//!   (`coding=2`). Kannel's answers: `0: Accepted for delivery` and
//!   `3: Queued for later delivery` (202: the bearerbox took the message and
//!   delivers it when its SMSC is connected; retrying would send it twice)
//!   are sent; 503 `Temporal failure, try again later.` and every other 5xx,
//!   408 and 429 are transient; 403 `Authorization failed for sendsms`,
//!   403 `Not routable. Do not try again.`, 400 `Missing receiver number`
//!   and every other answer are permanent.
//! - [`Gateway::Webhook`]: a POST of `{"to": …, "text": …}` as JSON with an
//!   optional bearer token; any 2xx is sent (the answer's `id`, when it has
//!   one, is the gateway's message id).
//! - [`Gateway::Outbox`]: nothing leaves the machine; the daemon records the
//!   message where the administrator reads it ([`SendOutcome::Recorded`]).
//!
//! Secrets stay secret: passwords and bearer tokens are [`Secret`]s, whose
//! `Debug` is redacted; the SMS text (it carries a single-use activation
//! link) is never logged nor put in an error, and a gateway answer quoted in
//! an error has every secret and every long word of the text cut out. Logs
//! show the gateway kind, the last three digits of the number and the
//! outcome.
//!
//! Current limitations:
//! - Plain `http://` only: an `https://` gateway URL is refused. Fine for
//!   Kannel on loopback or a trusted network; a webhook on the Internet
//!   needs TLS (to come).
//! - A message longer than one SMS is split by the gateway. Kannel splits
//!   only when its `sendsms-user` group allows it (`max-messages` at least
//!   the text's parts, [`sms_length`]`(text).parts`, and `concatenation =
//!   true`) and otherwise cuts the text silently, so keep activation texts
//!   within the configured number of parts.

use std::fmt;
use std::time::Duration;

use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use switchboard_provision::{SmsEncoding, sms_length};
use tokio::net::TcpStream;
use tracing::{info, warn};
use zeroize::{Zeroize as _, Zeroizing};

/// A password or token: readable only through [`Secret::expose`], redacted
/// in `Debug`, wiped from memory when dropped.
#[derive(Clone, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The clear value, to put on the wire and nowhere else.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Secret {
        Secret(value.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// One message to one phone. `Debug` shows neither the text nor more than
/// the last three digits of the number.
#[derive(Clone)]
pub struct Sms {
    /// E.164: `+`, then 2 to 15 digits, the first not 0.
    pub to: String,
    /// Carries a single-use activation link: a secret.
    pub text: String,
}

impl fmt::Debug for Sms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sms")
            .field("to", &mask_number(&self.to))
            .field(
                "text",
                &format_args!("<redacted, {} chars>", self.text.chars().count()),
            )
            .finish()
    }
}

/// Where SMS go. `Debug` shows URLs without their query or user part.
#[derive(Clone)]
pub enum Gateway {
    /// Kannel's smsbox, e.g. `http://127.0.0.1:13013/cgi-bin/sendsms`, with a
    /// user of its `sendsms-user` group.
    Kannel {
        url: String,
        username: String,
        password: Secret,
        /// The sender shown on the phone; Kannel's `default-sender` or
        /// `global-sender` when `None`.
        from: Option<String>,
        /// Route through this `smsc-id`; Kannel's routing when `None`.
        smsc: Option<String>,
    },
    /// Any HTTP service taking `{"to", "text"}` as JSON.
    Webhook { url: String, bearer: Option<Secret> },
    /// No gateway: the daemon records the message for the administrator.
    Outbox,
}

impl Gateway {
    /// `kannel`, `webhook` or `outbox`, for logs and documents.
    pub fn kind(&self) -> &'static str {
        match self {
            Gateway::Kannel { .. } => "kannel",
            Gateway::Webhook { .. } => "webhook",
            Gateway::Outbox => "outbox",
        }
    }
}

impl fmt::Debug for Gateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Gateway::Kannel {
                url,
                username,
                password,
                from,
                smsc,
            } => f
                .debug_struct("Kannel")
                .field("url", &display_url(url))
                .field("username", username)
                .field("password", password)
                .field("from", from)
                .field("smsc", smsc)
                .finish(),
            Gateway::Webhook { url, bearer } => f
                .debug_struct("Webhook")
                .field("url", &display_url(url))
                .field("bearer", bearer)
                .finish(),
            Gateway::Outbox => f.write_str("Outbox"),
        }
    }
}

/// What became of a message that did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// The gateway took it (Kannel: accepted, or queued by its bearerbox
    /// until the SMSC is there); its message id when it gave one.
    Sent { gateway_id: Option<String> },
    /// The outbox: nothing was sent, the daemon records the message.
    Recorded,
}

/// Why a message did not go out. The text says what is wrong and what to
/// do, and never holds the message text, a password or a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmsError {
    /// Trying again later may work: the gateway is down, slow, overloaded.
    #[error("{0}")]
    Transient(String),
    /// Trying again as it is will not work: bad credentials, a refused or
    /// invalid number, a gateway URL that is wrong.
    #[error("{0}")]
    Permanent(String),
}

impl SmsError {
    pub fn is_transient(&self) -> bool {
        matches!(self, SmsError::Transient(_))
    }
}

/// Whether `number` is E.164 as written on the wire: `+`, then 2 to 15
/// digits, the first not 0.
pub fn is_e164(number: &str) -> bool {
    let Some(digits) = number.strip_prefix('+') else {
        return false;
    };
    (2..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

/// The number as logs may show it: its last three digits (`…678`).
pub fn mask_number(number: &str) -> String {
    let digits: Vec<char> = number.chars().filter(char::is_ascii_digit).collect();
    let tail: String = digits[digits.len().saturating_sub(3)..].iter().collect();
    format!("…{tail}")
}

/// Send `sms` through `gateway`, giving up after `timeout` (connection,
/// request and answer together). Logs the outcome with the number's last
/// three digits only.
pub async fn send(
    gateway: &Gateway,
    sms: &Sms,
    timeout: Duration,
) -> Result<SendOutcome, SmsError> {
    let result = send_unlogged(gateway, sms, timeout).await;
    let to = mask_number(&sms.to);
    match &result {
        Ok(SendOutcome::Sent { gateway_id }) => info!(
            gateway = gateway.kind(),
            %to,
            gateway_id = gateway_id.as_deref().unwrap_or("-"),
            "SMS handed to the gateway"
        ),
        Ok(SendOutcome::Recorded) => info!(gateway = "outbox", %to, "SMS recorded in the outbox"),
        Err(e) => warn!(
            gateway = gateway.kind(),
            %to,
            transient = e.is_transient(),
            error = %e,
            "SMS not sent"
        ),
    }
    result
}

async fn send_unlogged(
    gateway: &Gateway,
    sms: &Sms,
    timeout: Duration,
) -> Result<SendOutcome, SmsError> {
    if !is_e164(&sms.to) {
        return Err(SmsError::Permanent(format!(
            "the phone number ending in {} is not in E.164 form (+ and 2 to 15 digits, e.g. \
             +4915112345678); correct the account's number",
            mask_number(&sms.to)
        )));
    }
    if sms.text.is_empty() {
        return Err(SmsError::Permanent(
            "the message is empty; nothing to send".to_owned(),
        ));
    }
    match gateway {
        Gateway::Outbox => Ok(SendOutcome::Recorded),
        Gateway::Kannel {
            url,
            username,
            password,
            from,
            smsc,
        } => {
            let endpoint = Endpoint::parse(url)?;
            let query = Zeroizing::new(kannel_query(
                endpoint.query.as_deref(),
                username,
                password,
                from.as_deref(),
                smsc.as_deref(),
                sms,
            ));
            let request = endpoint
                .request("GET", &format!("{}?{}", endpoint.path, query.as_str()))
                .body(Full::new(Bytes::new()))
                .map_err(|_| {
                    SmsError::Permanent(
                        "cannot build the request to Kannel; check the gateway URL".to_owned(),
                    )
                })?;
            let (status, body) = exchange(&endpoint, request, timeout).await?;
            let redactor = Redactor::new(sms, &[password.expose()]);
            kannel_outcome(status, &body, &redactor)
        }
        Gateway::Webhook { url, bearer } => {
            let endpoint = Endpoint::parse(url)?;
            let body = Zeroizing::new(
                serde_json::to_vec(&serde_json::json!({ "to": sms.to, "text": sms.text }))
                    .unwrap_or_default(),
            );
            let mut request = endpoint
                .request("POST", &endpoint.path_and_query())
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::ACCEPT, "application/json, text/plain;q=0.9");
            if let Some(token) = bearer {
                let value = Zeroizing::new(format!("Bearer {}", token.expose()));
                let mut value = HeaderValue::from_str(&value).map_err(|_| {
                    SmsError::Permanent(
                        "the webhook's bearer token holds characters an HTTP header cannot \
                         carry; set the token again"
                            .to_owned(),
                    )
                })?;
                value.set_sensitive(true);
                request = request.header(header::AUTHORIZATION, value);
            }
            let request = request
                .body(Full::new(Bytes::copy_from_slice(&body)))
                .map_err(|_| {
                    SmsError::Permanent(
                        "cannot build the request to the webhook; check its URL".to_owned(),
                    )
                })?;
            let (status, answer) = exchange(&endpoint, request, timeout).await?;
            let secrets: Vec<&str> = bearer.iter().map(Secret::expose).collect();
            webhook_outcome(status, &answer, &Redactor::new(sms, &secrets))
        }
    }
}

/// The query Kannel's `sendsms` takes, appended to the URL's own query.
fn kannel_query(
    existing: Option<&str>,
    username: &str,
    password: &Secret,
    from: Option<&str>,
    smsc: Option<&str>,
    sms: &Sms,
) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("username", username)
        .append_pair("password", password.expose())
        .append_pair("to", &sms.to)
        .append_pair("text", &sms.text)
        .append_pair("charset", "UTF-8");
    if sms_length(&sms.text).encoding == SmsEncoding::Ucs2 {
        query.append_pair("coding", "2");
    }
    if let Some(from) = from {
        query.append_pair("from", from);
    }
    if let Some(smsc) = smsc {
        query.append_pair("smsc", smsc);
    }
    let ours = query.finish();
    // The URL's own query is already encoded: it goes first, as it is.
    match existing.filter(|q| !q.is_empty()) {
        Some(existing) => format!("{existing}&{ours}"),
        None => ours,
    }
}

/// Kannel's answer, read.
fn kannel_outcome(
    status: StatusCode,
    body: &[u8],
    redactor: &Redactor,
) -> Result<SendOutcome, SmsError> {
    let answer = redactor.excerpt(body);
    let code = status.as_u16();
    if status.is_success() {
        // "0: Accepted for delivery", "3: Queued for later delivery", and
        // "Sent." with `immediate-sendsms-reply`.
        return if answer.starts_with("0:") || answer.starts_with("3:") || answer == "Sent." {
            Ok(SendOutcome::Sent { gateway_id: None })
        } else {
            Err(SmsError::Permanent(format!(
                "the gateway URL answered HTTP {code} \"{answer}\", which is not Kannel's \
                 sendsms answer; check that the URL is smsbox's sendsms-port and path \
                 (e.g. http://127.0.0.1:13013/cgi-bin/sendsms)"
            )))
        };
    }
    if code == 403 && answer.starts_with("Authorization failed") {
        return Err(SmsError::Permanent(format!(
            "Kannel refused the username or password (HTTP 403 \"{answer}\"); set the ones of \
             a sendsms-user group of Kannel's configuration"
        )));
    }
    if is_transient_status(status) {
        return Err(SmsError::Transient(format!(
            "Kannel cannot take the message now (HTTP {code} \"{answer}\"); it will be tried \
             again"
        )));
    }
    Err(SmsError::Permanent(format!(
        "Kannel refused the message (HTTP {code} \"{answer}\"); check the number and the \
         gateway settings (sender, SMSC id, allowed prefixes)"
    )))
}

/// The webhook's answer, read.
fn webhook_outcome(
    status: StatusCode,
    body: &[u8],
    redactor: &Redactor,
) -> Result<SendOutcome, SmsError> {
    let code = status.as_u16();
    if status.is_success() {
        return Ok(SendOutcome::Sent {
            gateway_id: message_id(body),
        });
    }
    let answer = redactor.excerpt(body);
    if is_transient_status(status) {
        return Err(SmsError::Transient(format!(
            "the SMS webhook cannot take the message now (HTTP {code} \"{answer}\"); it will \
             be tried again"
        )));
    }
    let hint = match code {
        401 | 403 => "check the webhook's bearer token",
        300..=399 => "the webhook URL redirects; set the final URL",
        404 | 405 => "check the webhook URL",
        _ => "check the number and the webhook's settings",
    };
    Err(SmsError::Permanent(format!(
        "the SMS webhook refused the message (HTTP {code} \"{answer}\"); {hint}"
    )))
}

/// 5xx, 408 Request Timeout, 425 Too Early, 429 Too Many Requests.
fn is_transient_status(status: StatusCode) -> bool {
    status.is_server_error() || matches!(status.as_u16(), 408 | 425 | 429)
}

/// `id` or `message_id` of a JSON answer, when it is a short string or a
/// number.
fn message_id(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let id = value.get("id").or_else(|| value.get("message_id"))?;
    let id = match id {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => return None,
    };
    (!id.is_empty() && id.len() <= 128 && id.chars().all(|c| c.is_ascii_graphic())).then_some(id)
}

/// Cuts secrets out of a gateway's answer before it goes into an error.
struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    /// The credentials, the text, its words of 8 characters or more (the
    /// link) and the number, as they are, URL-encoded and JSON-escaped;
    /// longest first, so that a secret containing another is cut whole.
    fn new(sms: &Sms, credentials: &[&str]) -> Redactor {
        let mut plain: Vec<&str> = credentials
            .iter()
            .copied()
            .filter(|s| !s.is_empty())
            .collect();
        // Shorter pieces of the message are no secret, and cutting them
        // would garble the answer.
        let mut message: Vec<&str> = vec![&sms.text, sms.to.trim_start_matches('+')];
        message.extend(
            sms.text
                .split_whitespace()
                .filter(|w| w.chars().count() >= 8),
        );
        plain.extend(message.into_iter().filter(|s| s.chars().count() >= 4));
        let mut secrets: Vec<String> = Vec::new();
        for s in plain {
            secrets.push(s.to_owned());
            secrets.push(form_urlencoded::byte_serialize(s.as_bytes()).collect());
            if let Ok(json) = serde_json::to_string(s) {
                secrets.push(json.trim_matches('"').to_owned());
            }
        }
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        Redactor { secrets }
    }

    /// The first non-empty line of `body`, secrets replaced, control
    /// characters blanked; withheld when long.
    fn excerpt(&self, body: &[u8]) -> String {
        let text = String::from_utf8_lossy(body);
        let mut line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("")
            .to_owned();
        for secret in &self.secrets {
            if !secret.is_empty() && line.contains(secret.as_str()) {
                line = line.replace(secret.as_str(), "[redacted]");
            }
        }
        let line: String = line
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        if line.is_empty() {
            "(empty answer)".to_owned()
        } else if line.chars().count() > 200 {
            "(long answer, not shown)".to_owned()
        } else {
            line
        }
    }
}

/// An `http://` gateway URL, taken apart. No `Debug`: its query may hold
/// a token.
struct Endpoint {
    /// `host[:port]`, for the Host header and messages.
    authority: String,
    /// Without the brackets of an IPv6 literal.
    host: String,
    port: u16,
    path: String,
    query: Option<String>,
}

impl Endpoint {
    fn parse(url: &str) -> Result<Endpoint, SmsError> {
        let bad = |what: &str| {
            SmsError::Permanent(format!("the gateway URL {} {what}", display_url(url)))
        };
        let uri: Uri = url.trim().parse().map_err(|_| {
            SmsError::Permanent(
                "the gateway URL is not a valid URL; write it like \
                 http://127.0.0.1:13013/cgi-bin/sendsms"
                    .to_owned(),
            )
        })?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(bad(
                    "uses https, which is not supported yet; use http:// to a gateway on this \
                     machine or a trusted network",
                ));
            }
            _ => return Err(bad("must start with http://")),
        }
        let authority = uri.authority().ok_or_else(|| bad("has no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad(
                "holds a user name or password; set them as the gateway's credentials instead",
            ));
        }
        let host = authority.host();
        if host.is_empty() {
            return Err(bad("has no host"));
        }
        Ok(Endpoint {
            authority: authority.as_str().to_owned(),
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port: authority.port_u16().unwrap_or(80),
            path: match uri.path() {
                "" => "/".to_owned(),
                p => p.to_owned(),
            },
            query: uri.query().map(str::to_owned),
        })
    }

    fn path_and_query(&self) -> String {
        match &self.query {
            Some(q) => format!("{}?{q}", self.path),
            None => self.path.clone(),
        }
    }

    fn request(&self, method: &str, target: &str) -> hyper::http::request::Builder {
        Request::builder()
            .method(method)
            .uri(target)
            .header(header::HOST, self.authority.as_str())
            .header(header::USER_AGENT, "switchboard")
            .header(header::CONNECTION, "close")
    }
}

/// Largest gateway answer read.
const MAX_ANSWER: usize = 16 * 1024;

/// One request on a new connection, within `timeout`.
async fn exchange(
    endpoint: &Endpoint,
    request: Request<Full<Bytes>>,
    timeout: Duration,
) -> Result<(StatusCode, Bytes), SmsError> {
    let at = &endpoint.authority;
    let work = async {
        let stream = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
            .await
            .map_err(|e| {
                SmsError::Transient(format!(
                    "cannot connect to the SMS gateway at {at}: {e}; is it running?"
                ))
            })?;
        let _ = stream.set_nodelay(true);
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
                .await
                .map_err(|e| {
                    SmsError::Transient(format!("cannot talk HTTP to the SMS gateway at {at}: {e}"))
                })?;
        // Drives the connection; aborted with it when this future is
        // dropped (timeout) or done.
        let _driver = AbortOnDrop(tokio::spawn(async move {
            let _ = connection.await;
        }));
        let response = sender.send_request(request).await.map_err(|e| {
            SmsError::Transient(format!("the SMS gateway at {at} did not answer: {e}"))
        })?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| {
                SmsError::Transient(format!(
                    "the answer of the SMS gateway at {at} was cut off: {e}"
                ))
            })?
            .to_bytes();
        Ok((status, body))
    };
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or_else(|_| {
            Err(SmsError::Transient(format!(
                "the SMS gateway at {at} did not answer within {} ms",
                timeout.as_millis()
            )))
        })
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `scheme://host[:port]/path` of `url`, without user part, query or
/// fragment (where tokens hide), for messages and `Debug`.
fn display_url(url: &str) -> String {
    let Ok(uri) = url.trim().parse::<Uri>() else {
        return "(not a valid URL)".to_owned();
    };
    let host = uri
        .authority()
        .map(|a| {
            let s = a.as_str();
            s.rsplit_once('@').map_or(s, |(_, h)| h).to_owned()
        })
        .unwrap_or_default();
    format!("{}://{host}{}", uri.scheme_str().unwrap_or("?"), uri.path())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;

    const TO: &str = "+4915112345678";
    const PASSWORD: &str = "pa55-w0rd&x";
    const LINK_TEXT: &str = "Activate: https://voip.example.test/p/Zq8_k-3xT&y=1+2 now";

    /// One request as the fake gateway saw it.
    #[derive(Debug, Clone)]
    struct Seen {
        method: String,
        target: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Seen {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }

        fn query(&self) -> &str {
            self.target.split_once('?').map_or("", |(_, q)| q)
        }

        fn param(&self, name: &str) -> Option<String> {
            form_urlencoded::parse(self.query().as_bytes())
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        }
    }

    type Answer = Arc<dyn Fn(&Seen) -> (u16, String) + Send + Sync>;

    /// A tiny HTTP/1.1 server on 127.0.0.1 answering every request with
    /// `answer`, after `delay`.
    struct FakeGateway {
        addr: SocketAddr,
        seen: Arc<Mutex<Vec<Seen>>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for FakeGateway {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    impl FakeGateway {
        async fn start(delay: Duration, answer: Answer) -> FakeGateway {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let seen = Arc::new(Mutex::new(Vec::new()));
            let log = seen.clone();
            let task = tokio::spawn(async move {
                loop {
                    let Ok((mut conn, _)) = listener.accept().await else {
                        return;
                    };
                    let log = log.clone();
                    let answer = answer.clone();
                    tokio::spawn(async move {
                        let Some(req) = read_request(&mut conn).await else {
                            return;
                        };
                        log.lock().unwrap().push(req.clone());
                        tokio::time::sleep(delay).await;
                        let (status, body) = answer(&req);
                        let reply = format!(
                            "HTTP/1.1 {status} X\r\nContent-Type: text/html\r\n\
                             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = conn.write_all(reply.as_bytes()).await;
                        let _ = conn.shutdown().await;
                    });
                }
            });
            FakeGateway { addr, seen, task }
        }

        /// Always the same answer, like Kannel's smsbox.
        async fn answering(status: u16, body: &str) -> FakeGateway {
            let body = body.to_owned();
            FakeGateway::start(Duration::ZERO, Arc::new(move |_| (status, body.clone()))).await
        }

        fn url(&self) -> String {
            format!("http://{}/cgi-bin/sendsms", self.addr)
        }

        fn seen(&self) -> Vec<Seen> {
            self.seen.lock().unwrap().clone()
        }

        fn kannel(&self) -> Gateway {
            Gateway::Kannel {
                url: self.url(),
                username: "switchboard".to_owned(),
                password: Secret::new(PASSWORD),
                from: None,
                smsc: None,
            }
        }
    }

    async fn read_request(conn: &mut tokio::net::TcpStream) -> Option<Seen> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            let n = conn.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8(buf[..head_end].to_vec()).ok()?;
        let mut lines = head.split("\r\n");
        let mut first = lines.next()?.split(' ');
        let (method, target) = (first.next()?.to_owned(), first.next()?.to_owned());
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = buf[head_end..].to_vec();
        while body.len() < length {
            let n = conn.read(&mut chunk).await.ok()?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
        Some(Seen {
            method,
            target,
            headers,
            body,
        })
    }

    fn sms(text: &str) -> Sms {
        Sms {
            to: TO.to_owned(),
            text: text.to_owned(),
        }
    }

    const T: Duration = Duration::from_secs(5);

    fn assert_no_secret(e: &SmsError) {
        let s = format!("{e} {e:?}");
        for secret in [
            PASSWORD,
            "pa55-w0rd",
            LINK_TEXT,
            "Zq8_k-3xT",
            "4915112345678",
        ] {
            assert!(!s.contains(secret), "{secret:?} leaked into {s:?}");
        }
    }

    #[tokio::test]
    async fn kannel_accepted_with_the_query_encoded() {
        let gw = FakeGateway::answering(202, "0: Accepted for delivery").await;
        let out = send(&gw.kannel(), &sms(LINK_TEXT), T).await;
        assert_eq!(out, Ok(SendOutcome::Sent { gateway_id: None }));
        let seen = gw.seen();
        assert_eq!(seen.len(), 1);
        let r = &seen[0];
        assert_eq!(r.method, "GET");
        assert!(r.target.starts_with("/cgi-bin/sendsms?"), "{}", r.target);
        // Raw encoding: `&`, `+`, `/`, `:` and spaces do not break the query.
        assert!(
            r.query().contains(
                "text=Activate%3A+https%3A%2F%2Fvoip.example.test%2Fp%2FZq8_k-3xT%26y%3D1%2B2+now"
            ),
            "{}",
            r.query()
        );
        assert!(r.query().contains("to=%2B4915112345678"), "{}", r.query());
        assert!(
            r.query().contains("password=pa55-w0rd%26x"),
            "{}",
            r.query()
        );
        assert_eq!(r.param("text").as_deref(), Some(LINK_TEXT));
        assert_eq!(r.param("to").as_deref(), Some(TO));
        assert_eq!(r.param("username").as_deref(), Some("switchboard"));
        assert_eq!(r.param("password").as_deref(), Some(PASSWORD));
        assert_eq!(r.param("charset").as_deref(), Some("UTF-8"));
        assert_eq!(
            r.param("coding"),
            None,
            "GSM-7 text goes with the default coding"
        );
        assert_eq!(r.param("from"), None);
        assert_eq!(r.param("smsc"), None);
        assert_eq!(r.header("host"), Some(gw.addr.to_string().as_str()));
    }

    #[tokio::test]
    async fn kannel_non_gsm_text_goes_as_ucs2_utf8_encoded() {
        let gw = FakeGateway::answering(202, "0: Accepted for delivery").await;
        let gateway = Gateway::Kannel {
            url: gw.url(),
            username: "u".to_owned(),
            password: Secret::new("p"),
            from: Some("Switch Board".to_owned()),
            smsc: Some("fake".to_owned()),
        };
        let text = "Grüße, привет 😀";
        assert_eq!(
            send(&gateway, &sms(text), T).await,
            Ok(SendOutcome::Sent { gateway_id: None })
        );
        let r = &gw.seen()[0];
        assert!(
            r.query().contains(
                "text=Gr%C3%BC%C3%9Fe%2C+%D0%BF%D1%80%D0%B8%D0%B2%D0%B5%D1%82+%F0%9F%98%80"
            ),
            "{}",
            r.query()
        );
        assert_eq!(r.param("coding").as_deref(), Some("2"));
        assert_eq!(r.param("charset").as_deref(), Some("UTF-8"));
        assert_eq!(r.param("text").as_deref(), Some(text));
        assert_eq!(r.param("from").as_deref(), Some("Switch Board"));
        assert_eq!(r.param("smsc").as_deref(), Some("fake"));
    }

    #[tokio::test]
    async fn kannel_url_query_is_kept() {
        let gw = FakeGateway::answering(202, "0: Accepted for delivery").await;
        let gateway = Gateway::Kannel {
            url: format!("{}?dlr-mask=0", gw.url()),
            username: "u".to_owned(),
            password: Secret::new("p"),
            from: None,
            smsc: None,
        };
        send(&gateway, &sms("hi"), T).await.unwrap();
        let r = &gw.seen()[0];
        assert!(
            r.query().starts_with("dlr-mask=0&username=u&"),
            "{}",
            r.query()
        );
    }

    #[tokio::test]
    async fn kannel_queued_for_later_is_sent() {
        let gw = FakeGateway::answering(202, "3: Queued for later delivery").await;
        assert_eq!(
            send(&gw.kannel(), &sms(LINK_TEXT), T).await,
            Ok(SendOutcome::Sent { gateway_id: None })
        );
    }

    #[tokio::test]
    async fn kannel_refusals_are_permanent() {
        for (status, body) in [
            (403, "Authorization failed for sendsms"),
            (400, "Missing receiver number, rejected"),
            (403, "Not routable. Do not try again."),
            (404, "Unknown service"),
            (200, "<html>some other web server</html>"),
        ] {
            let gw = FakeGateway::answering(status, body).await;
            let err = send(&gw.kannel(), &sms(LINK_TEXT), T).await.unwrap_err();
            assert!(!err.is_transient(), "{status} {body}: {err}");
            assert_no_secret(&err);
            assert!(err.to_string().contains(&status.to_string()), "{err}");
        }
        let gw = FakeGateway::answering(403, "Authorization failed for sendsms").await;
        let err = send(&gw.kannel(), &sms(LINK_TEXT), T).await.unwrap_err();
        assert!(err.to_string().contains("username or password"), "{err}");
    }

    #[tokio::test]
    async fn kannel_server_errors_are_transient() {
        for (status, body) in [
            (503, "Temporal failure, try again later."),
            (500, "oops"),
            (429, "slow down"),
        ] {
            let gw = FakeGateway::answering(status, body).await;
            let err = send(&gw.kannel(), &sms(LINK_TEXT), T).await.unwrap_err();
            assert!(err.is_transient(), "{status}: {err}");
            assert_no_secret(&err);
        }
    }

    #[tokio::test]
    async fn connection_refused_is_transient() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let gateway = Gateway::Kannel {
            url: format!("http://{addr}/cgi-bin/sendsms"),
            username: "u".to_owned(),
            password: Secret::new(PASSWORD),
            from: None,
            smsc: None,
        };
        let err = send(&gateway, &sms(LINK_TEXT), T).await.unwrap_err();
        assert!(err.is_transient(), "{err}");
        assert!(err.to_string().contains("cannot connect"), "{err}");
        assert_no_secret(&err);
    }

    #[tokio::test]
    async fn a_slow_gateway_times_out_transiently() {
        let gw = FakeGateway::start(
            Duration::from_secs(30),
            Arc::new(|_| (202, "0: Accepted for delivery".to_owned())),
        )
        .await;
        let started = std::time::Instant::now();
        let err = send(&gw.kannel(), &sms(LINK_TEXT), Duration::from_millis(300))
            .await
            .unwrap_err();
        let took = started.elapsed();
        assert!(err.is_transient(), "{err}");
        assert!(err.to_string().contains("within 300 ms"), "{err}");
        assert!(took < Duration::from_secs(2), "took {took:?}");
        assert_no_secret(&err);
    }

    #[tokio::test]
    async fn echoed_secrets_are_cut_from_errors() {
        // A gateway that quotes the request back, URL-encoded and decoded.
        let gw = FakeGateway::start(
            Duration::ZERO,
            Arc::new(|r: &Seen| {
                (
                    400,
                    format!(
                        "bad request {} text={}",
                        r.target,
                        r.param("text").unwrap_or_default()
                    ),
                )
            }),
        )
        .await;
        let err = send(&gw.kannel(), &sms(LINK_TEXT), T).await.unwrap_err();
        assert!(!err.is_transient());
        assert_no_secret(&err);
        // ... and a webhook that echoes the link alone, or the token.
        let gw = FakeGateway::start(
            Duration::ZERO,
            Arc::new(|r: &Seen| {
                (
                    422,
                    format!(
                        "no good: https://voip.example.test/p/Zq8_k-3xT&y=1+2 {}",
                        r.header("authorization").unwrap_or_default()
                    ),
                )
            }),
        )
        .await;
        let gateway = Gateway::Webhook {
            url: gw.url(),
            bearer: Some(Secret::new("tok3n-very-secret")),
        };
        let err = send(&gateway, &sms(LINK_TEXT), T).await.unwrap_err();
        assert_no_secret(&err);
        assert!(!err.to_string().contains("tok3n"), "{err}");
        assert!(err.to_string().contains("[redacted]"), "{err}");
    }

    #[tokio::test]
    async fn invalid_numbers_are_refused_before_any_request() {
        let gw = FakeGateway::answering(202, "0: Accepted for delivery").await;
        for to in [
            "4915112345678",
            "+49 151 1234",
            "+0151",
            "+1",
            "+1234567890123456",
            "+49151a",
            "+49151 +49152",
        ] {
            let m = Sms {
                to: to.to_owned(),
                text: "hi".to_owned(),
            };
            let err = send(&gw.kannel(), &m, T).await.unwrap_err();
            assert!(!err.is_transient(), "{to}: {err}");
            assert!(err.to_string().contains("E.164"), "{err}");
        }
        let err = send(&Gateway::Outbox, &sms(""), T).await.unwrap_err();
        assert!(!err.is_transient());
        assert!(gw.seen().is_empty());
    }

    #[tokio::test]
    async fn urls_that_cannot_work_are_permanent() {
        for url in [
            "https://sms.example.test/send",
            "ftp://127.0.0.1/x",
            "not a url",
            "http://user:pw@127.0.0.1:13013/cgi-bin/sendsms",
        ] {
            let gateway = Gateway::Webhook {
                url: url.to_owned(),
                bearer: None,
            };
            let err = send(&gateway, &sms(LINK_TEXT), T).await.unwrap_err();
            assert!(!err.is_transient(), "{url}: {err}");
            assert!(!err.to_string().contains("pw@"), "{err}");
        }
    }

    #[tokio::test]
    async fn webhook_posts_json_with_the_bearer_token() {
        let gw = FakeGateway::start(
            Duration::ZERO,
            Arc::new(|_| (201, r#"{"id":"msg-42","status":"queued"}"#.to_owned())),
        )
        .await;
        let gateway = Gateway::Webhook {
            url: format!("http://{}/v1/sms?tenant=7", gw.addr),
            bearer: Some(Secret::new("tok3n")),
        };
        assert_eq!(
            send(&gateway, &sms(LINK_TEXT), T).await,
            Ok(SendOutcome::Sent {
                gateway_id: Some("msg-42".to_owned())
            })
        );
        let r = &gw.seen()[0];
        assert_eq!(r.method, "POST");
        assert_eq!(r.target, "/v1/sms?tenant=7");
        assert_eq!(r.header("authorization"), Some("Bearer tok3n"));
        assert_eq!(r.header("content-type"), Some("application/json"));
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body, serde_json::json!({ "to": TO, "text": LINK_TEXT }));

        // No token, no header; an answer without an id.
        let gw = FakeGateway::answering(200, "ok").await;
        let gateway = Gateway::Webhook {
            url: gw.url(),
            bearer: None,
        };
        assert_eq!(
            send(&gateway, &sms("hi"), T).await,
            Ok(SendOutcome::Sent { gateway_id: None })
        );
        assert_eq!(gw.seen()[0].header("authorization"), None);
    }

    #[tokio::test]
    async fn webhook_statuses() {
        for (status, transient) in [
            (500, true),
            (502, true),
            (429, true),
            (401, false),
            (400, false),
            (301, false),
        ] {
            let gw = FakeGateway::answering(status, "{\"error\":\"x\"}").await;
            let gateway = Gateway::Webhook {
                url: gw.url(),
                bearer: Some(Secret::new("tok3n")),
            };
            let err = send(&gateway, &sms(LINK_TEXT), T).await.unwrap_err();
            assert_eq!(err.is_transient(), transient, "{status}: {err}");
            assert_no_secret(&err);
        }
    }

    #[tokio::test]
    async fn outbox_records() {
        assert_eq!(
            send(&Gateway::Outbox, &sms(LINK_TEXT), T).await,
            Ok(SendOutcome::Recorded)
        );
    }

    #[test]
    fn debug_shows_no_secret() {
        let gateway = Gateway::Kannel {
            url: "http://kannel:13013/cgi-bin/sendsms?password=inurl".to_owned(),
            username: "switchboard".to_owned(),
            password: Secret::new(PASSWORD),
            from: None,
            smsc: None,
        };
        let webhook = Gateway::Webhook {
            url: "http://me:hunter2@sms.test/hook?key=k3y".to_owned(),
            bearer: Some(Secret::new("tok3n")),
        };
        let shown = format!("{gateway:?} {webhook:?} {:?}", sms(LINK_TEXT));
        for secret in [
            PASSWORD,
            "inurl",
            "hunter2",
            "k3y",
            "tok3n",
            "Zq8_k",
            "4915112345678",
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(
            shown.contains("http://kannel:13013/cgi-bin/sendsms"),
            "{shown}"
        );
        assert!(shown.contains("…678"), "{shown}");
    }

    #[test]
    fn codings_and_segments() {
        // The choice and the parts are switchboard-provision's `sms_length`.
        let coding = |text: &str| sms_length(text).encoding;
        let segments = |text: &str| sms_length(text).parts;
        assert_eq!(coding("Hello @ £5 & [x] {y} ~ € | ^ \\"), SmsEncoding::Gsm7);
        assert_eq!(coding("Grüße è Ä"), SmsEncoding::Gsm7);
        assert_eq!(coding("back`tick"), SmsEncoding::Ucs2);
        assert_eq!(coding("привет"), SmsEncoding::Ucs2);
        assert_eq!(sms_length("a€[").units, 5);
        assert_eq!(segments(&"a".repeat(160)), 1);
        assert_eq!(segments(&"a".repeat(161)), 2);
        assert_eq!(segments(&"a".repeat(306)), 2);
        assert_eq!(segments(&"a".repeat(307)), 3);
        assert_eq!(segments(&"€".repeat(80)), 1);
        assert_eq!(segments(&"€".repeat(81)), 2);
        assert_eq!(segments(&"Ж".repeat(70)), 1);
        assert_eq!(segments(&"Ж".repeat(71)), 2);
        assert_eq!(segments(&"😀".repeat(35)), 1);
        assert_eq!(segments(&"😀".repeat(36)), 2);
    }

    #[test]
    fn e164_and_masking() {
        assert!(is_e164("+4915112345678"));
        assert!(is_e164("+12"));
        assert!(!is_e164("+012"));
        assert!(!is_e164("004915112345678"));
        assert_eq!(mask_number("+4915112345678"), "…678");
        assert_eq!(mask_number("+1"), "…1");
        assert_eq!(mask_number("x"), "…");
    }
}
