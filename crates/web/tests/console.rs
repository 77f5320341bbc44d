//! The console at the HTTP level, in process (the router, as the HTTPS
//! listener calls it): what needs a session, CSRF on every change, the
//! security headers, sign-in throttling, session cookies, hostile input
//! rendered inert, the audit trail. The same console in a real browser
//! over real TLS is tested by the daemon's `console` system test.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use switchboard_engine::{Engine, Origin};
use switchboard_web::https::HttpsPeer;
use switchboard_web::{api, console};
use tower::ServiceExt;

const PASSWORD: &str = "correct horse battery staple";

struct Console {
    app: Router,
    engine: Arc<Engine>,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
    /// The body as it came (a download).
    raw: Vec<u8>,
}

impl Answer {
    fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The `Set-Cookie` value for `name`, whole.
    fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{name}=")))
            .map(str::to_owned)
    }

    fn cookie_value(&self, name: &str) -> Option<String> {
        self.set_cookie(name)
            .map(|c| c.split(';').next().unwrap()[name.len() + 1..].to_owned())
    }
}

/// A browser's state: its cookies and the CSRF token of its pages.
#[derive(Default, Clone)]
struct Browser {
    session: Option<String>,
    csrf: Option<String>,
    /// Requests go over a connection opened then (kept alive), not a new one.
    opened: Option<std::time::Instant>,
}

impl Console {
    /// The audit log but the setup's entry (root setting admin's password).
    async fn audit_since_setup(&self) -> Vec<switchboard_engine::views::AuditView> {
        let mut log = self.engine.audit_log(1000).await.unwrap();
        log.retain(|a| !(a.kind == "admin.password" && a.actor == "root"));
        log
    }

    async fn new() -> Console {
        let engine = Arc::new(switchboard_engine::testing::booted().await);
        let root = Origin::local(0, None);
        engine
            .set_admin_password(&root, "admin", PASSWORD)
            .await
            .expect("password");
        Console {
            app: console::router(engine.clone()),
            engine,
        }
    }

    /// Send `req` from `from`, over a new connection, or over one opened
    /// at `opened`.
    async fn send_over(
        &self,
        from: &str,
        opened: Option<std::time::Instant>,
        mut req: Request<Body>,
    ) -> Answer {
        let peer = HttpsPeer {
            remote: from.parse().unwrap(),
            local: "192.0.2.1:8443".parse::<SocketAddr>().unwrap(),
            accepted: opened.unwrap_or_else(std::time::Instant::now),
        };
        req.extensions_mut().insert(ConnectInfo(peer));
        let response = self.app.clone().oneshot(req).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
            raw: bytes.to_vec(),
        }
    }

    async fn request(
        &self,
        b: &Browser,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<Body>,
    ) -> Answer {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(s) = &b.session {
            req = req.header(
                header::COOKIE,
                format!("{}={s}", console::session::SESSION_COOKIE),
            );
        }
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        self.send_over("192.0.2.2:40000", b.opened, req.body(body.into()).unwrap())
            .await
    }

    async fn get(&self, b: &Browser, path: &str) -> Answer {
        self.request(b, Method::GET, path, None, Body::empty())
            .await
    }

    /// A form post with the browser's CSRF token.
    async fn form(&self, b: &Browser, path: &str, fields: &[(&str, &str)]) -> Answer {
        let mut all = vec![("csrf", b.csrf.as_deref().unwrap_or(""))];
        all.extend_from_slice(fields);
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(all)
            .finish();
        self.request(
            b,
            Method::POST,
            path,
            Some("application/x-www-form-urlencoded"),
            body,
        )
        .await
    }

    /// An API call with the browser's session and CSRF header.
    async fn api(&self, b: &Browser, method: Method, path: &str, json: &str) -> Answer {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(s) = &b.session {
            req = req.header(
                header::COOKIE,
                format!("{}={s}", console::session::SESSION_COOKIE),
            );
        }
        if let Some(t) = &b.csrf {
            req = req.header("x-csrf-token", t);
        }
        self.send_over(
            "192.0.2.2:40000",
            b.opened,
            req.body(Body::from(json.to_owned())).unwrap(),
        )
        .await
    }

    /// Sign-in attempt from `from`: the login page, then its form.
    async fn try_sign_in(&self, from: &str, user: &str, password: &str) -> Answer {
        self.try_sign_in_with(from, user, password, &[]).await
    }

    /// Sign in as `user` (with a second factor's `code`, if any); the
    /// browser lands where the role's home is, which gives its CSRF token.
    async fn sign_in_as(&self, user: &str, password: &str, code: &str) -> Browser {
        let answer = self
            .try_sign_in_code("192.0.2.2:40000", user, password, code)
            .await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
        let session = answer
            .cookie_value(console::session::SESSION_COOKIE)
            .expect("a session cookie");
        let mut b = Browser {
            session: Some(session),
            ..Browser::default()
        };
        let page = self.get(&b, answer.location()).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        b.csrf = Some(meta_csrf(&page.body));
        b
    }

    async fn try_sign_in_code(&self, from: &str, user: &str, password: &str, code: &str) -> Answer {
        self.try_sign_in_with(from, user, password, &[("code", code)])
            .await
    }

    /// A sign-in with more fields (`code`, `next`, `ended`).
    async fn try_sign_in_with(
        &self,
        from: &str,
        user: &str,
        password: &str,
        more: &[(&str, &str)],
    ) -> Answer {
        let page = self
            .send_over(
                from,
                None,
                Request::get("/login").body(Body::empty()).unwrap(),
            )
            .await;
        assert_eq!(page.status, StatusCode::OK);
        let pre = page
            .cookie_value(console::session::LOGIN_COOKIE)
            .expect("the sign-in page sets its pre-session cookie");
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("csrf", pre.as_str()),
                ("username", user),
                ("password", password),
            ])
            .extend_pairs(more.iter().copied())
            .finish();
        let req = Request::post("/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(
                header::COOKIE,
                format!("{}={pre}", console::session::LOGIN_COOKIE),
            )
            .body(Body::from(body))
            .unwrap();
        self.send_over(from, None, req).await
    }

    async fn sign_in(&self) -> Browser {
        self.sign_in_with(PASSWORD).await
    }

    async fn sign_in_with(&self, password: &str) -> Browser {
        let answer = self.try_sign_in("192.0.2.2:40000", "admin", password).await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
        let session = answer
            .cookie_value(console::session::SESSION_COOKIE)
            .expect("a session cookie");
        let mut b = Browser {
            session: Some(session),
            ..Browser::default()
        };
        let page = self.get(&b, "/").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        b.csrf = Some(meta_csrf(&page.body));
        b
    }
}

fn meta_csrf(html: &str) -> String {
    let marker = "<meta name=\"csrf-token\" content=\"";
    let start = html.find(marker).expect("the page carries its CSRF token") + marker.len();
    html[start..start + html[start..].find('"').unwrap()].to_owned()
}

/// Every route of the console's pages, from its source, so that a route
/// added later is covered by these tests without anyone remembering to.
fn page_routes() -> Vec<(Method, String)> {
    let source = concat!(
        include_str!("../src/console/pages.rs"),
        include_str!("../src/console/admin_pages.rs")
    );
    let mut routes = Vec::new();
    for chunk in source.split(".route(\"").skip(1) {
        let path = &chunk[..chunk.find('"').unwrap()];
        let rest = &chunk[..chunk.find("))\n").unwrap_or(chunk.len())];
        let sample = path
            .replace("{name}", "bootstrap")
            .replace("{nic}", "lan0")
            .replace("{number}", "1")
            .replace("{username}", "100")
            .replace("{id}", "1");
        for (needle, method) in [("get(", Method::GET), ("post(", Method::POST)] {
            if rest.contains(needle) {
                routes.push((method, sample.clone()));
            }
        }
    }
    assert!(routes.len() > 25, "the route list parses: {routes:?}");
    assert_eq!(
        source.matches(".route(\"").count(),
        source.matches(".route(").count(),
        "every route on one line (`.route(\"/path\", ...)`), so this list has them all"
    );
    routes
}

/// Every route of the JSON API, from the OpenAPI document.
fn api_routes() -> Vec<(Method, String)> {
    let doc = switchboard_web::openapi::document();
    let mut routes = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let sample = path
            .replace("{name}", "bootstrap")
            .replace("{number}", "1")
            .replace("{username}", "100")
            .replace("{id}", "1");
        for m in item.as_object().unwrap().keys() {
            if let Ok(method) = m.to_uppercase().parse::<Method>() {
                routes.push((method, sample.clone()));
            }
        }
    }
    assert!(routes.len() > 25);
    routes
}

fn public(path: &str) -> bool {
    matches!(path, "/login" | "/healthz" | "/favicon.ico") || path.starts_with("/static/")
}

#[tokio::test]
async fn every_route_but_sign_in_and_assets_refuses_an_anonymous_request() {
    let c = Console::new().await;
    let anonymous = Browser::default();
    let revisions_before = c.engine.revisions().await.unwrap().len();
    let candidate_before = c.engine.candidate().await.unwrap();
    for (method, path) in page_routes().into_iter().chain(api_routes()) {
        if public(&path) {
            continue;
        }
        let a = c
            .request(
                &anonymous,
                method.clone(),
                &path,
                Some("application/json"),
                "{}",
            )
            .await;
        if path.starts_with("/v1/") || path == "/openapi.json" {
            assert_eq!(
                a.status,
                StatusCode::UNAUTHORIZED,
                "{method} {path}: {}",
                a.body
            );
            assert!(a.body.contains("\"unauthenticated\""), "{method} {path}");
        } else {
            assert_eq!(a.status, StatusCode::SEE_OTHER, "{method} {path}");
            // To the sign-in, which comes back to the page asked for.
            let back = if method == Method::GET {
                format!("/login?next={}", path.replace('/', "%2F"))
            } else {
                "/login".to_owned()
            };
            assert_eq!(a.location(), back, "{method} {path}");
        }
    }
    // An unknown path too, and a forged cookie.
    let forged = Browser {
        session: Some("A".repeat(43)),
        ..Browser::default()
    };
    assert_eq!(
        c.get(&forged, "/").await.location(),
        "/login?next=%2F&ended=page",
        "a cookie that opens no session is an ended session"
    );
    assert_eq!(
        c.get(&anonymous, "/v1/nothing-here").await.status,
        StatusCode::UNAUTHORIZED
    );
    // Nothing changed.
    assert_eq!(c.engine.revisions().await.unwrap().len(), revisions_before);
    assert_eq!(c.engine.candidate().await.unwrap(), candidate_before);
    // The public ones answer.
    for path in [
        "/login",
        "/healthz",
        "/static/console.css",
        "/static/console.js",
    ] {
        assert_eq!(
            c.get(&anonymous, path).await.status,
            StatusCode::OK,
            "{path}"
        );
    }
}

#[tokio::test]
async fn state_changes_need_the_session_csrf_token() {
    let c = Console::new().await;
    let b = c.sign_in().await;
    let candidate = c.engine.candidate().await.unwrap();
    let no_token = Browser {
        csrf: None,
        ..b.clone()
    };
    let wrong_token = Browser {
        csrf: Some(console::session::random_token()),
        ..b.clone()
    };
    for (method, path) in page_routes().into_iter().chain(api_routes()) {
        if method == Method::GET || public(&path) {
            continue;
        }
        for who in [&no_token, &wrong_token] {
            let a = if path.starts_with("/v1/") {
                c.api(who, method.clone(), &path, "{}").await
            } else {
                c.form(who, &path, &[("cell", "ssh@lan0"), ("shown", "ssh@lan0")])
                    .await
            };
            assert_eq!(
                a.status,
                StatusCode::FORBIDDEN,
                "{method} {path}: {}",
                a.body
            );
            // The API's JSON document; a page's form gets the same code on
            // an HTML page.
            let code = if path.starts_with("/v1/") {
                "\"csrf\""
            } else {
                "<span class=\"code\">csrf</span>"
            };
            assert!(a.body.contains(code), "{method} {path}: {}", a.body);
        }
    }
    assert_eq!(c.engine.candidate().await.unwrap(), candidate);
    // With the token, the same form works: ssh is denied on lan0 (ticked
    // cells stay, the one shown but not ticked goes).
    let a = c.form(&b, "/matrix", &[("shown", "ssh@lan0")]).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    let matrix = c.engine.matrix().await.unwrap();
    assert!(
        !matrix
            .candidate
            .allows(switchboard_domain::ServiceId::Ssh, &"lan0".parse().unwrap())
    );
    // A multipart form carries it as its first part.
    let boundary = "XyZ";
    let multipart = |token: &str| {
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{token}\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nx\r\n--{boundary}--\r\n"
        )
    };
    let ct = format!("multipart/form-data; boundary={boundary}");
    let a = c
        .request(&b, Method::POST, "/certs", Some(&ct), multipart("nope"))
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let a = c
        .request(
            &b,
            Method::POST,
            "/certs",
            Some(&ct),
            multipart(b.csrf.as_deref().unwrap()),
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    // No state change over GET: the change routes do not answer GET.
    for path in ["/matrix", "/logout", "/confirm", "/discard", "/preset"] {
        let a = c.get(&b, path).await;
        assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED, "GET {path}");
    }
}

#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    let c = Console::new().await;
    let b = c.sign_in().await;
    let anonymous = Browser::default();
    let answers = [
        c.get(&anonymous, "/login").await,
        c.get(&anonymous, "/").await,
        c.get(&b, "/").await,
        c.get(&b, "/revisions").await,
        c.get(&b, "/v1/status").await,
        c.get(&b, "/v1/no-such-route").await,
        c.get(&b, "/static/console.js").await,
        c.api(&b, Method::POST, "/v1/matrix/allow", "{broken").await,
    ];
    for a in &answers {
        let h = |name: &str| {
            a.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_else(|| panic!("{name} missing ({})", a.status))
                .to_owned()
        };
        let csp = h("content-security-policy");
        assert!(csp.contains("default-src 'none'"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert!(h("strict-transport-security").starts_with("max-age="));
        assert_eq!(h("x-content-type-options"), "nosniff");
        assert_eq!(h("referrer-policy"), "same-origin");
        assert_eq!(h("x-frame-options"), "DENY");
    }
    // Pages are not cached.
    assert_eq!(answers[2].headers["cache-control"], "no-store");
}

#[tokio::test]
async fn session_cookies_are_host_only_secure_and_new_at_every_sign_in() {
    let c = Console::new().await;
    let a = c.try_sign_in("192.0.2.2:40000", "admin", PASSWORD).await;
    let cookie = a
        .set_cookie(console::session::SESSION_COOKIE)
        .expect("session cookie");
    assert!(cookie.starts_with("__Host-"));
    for attribute in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie} lacks {attribute}");
    }
    assert!(!cookie.contains("Domain"), "{cookie}");
    let first = a.cookie_value(console::session::SESSION_COOKIE).unwrap();
    let second = c.sign_in().await;
    assert_ne!(Some(first.clone()), second.session);
    // Signing out ends the session on the server, not just in the browser.
    let a = c.form(&second, "/logout", &[]).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(
        c.get(&second, "/").await.location(),
        "/login?next=%2F&ended=page"
    );
    assert_eq!(
        c.get(&second, "/v1/status").await.status,
        StatusCode::UNAUTHORIZED
    );
    // The first session is still there: sign-out ends only its own.
    let first = Browser {
        session: Some(first),
        ..Browser::default()
    };
    assert_eq!(c.get(&first, "/").await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_tenth_wrong_password_is_throttled_and_then_even_the_right_one() {
    let c = Console::new().await;
    let from = "192.0.2.9:5555";
    let mut statuses = Vec::new();
    for _ in 0..9 {
        statuses.push(c.try_sign_in(from, "admin", "wrong password!").await.status);
    }
    // Five wrong ones are checked; from the sixth on, none is.
    let max = console::session::MAX_FAILURES;
    assert!(
        statuses[..max]
            .iter()
            .all(|s| *s == StatusCode::UNAUTHORIZED),
        "{statuses:?}"
    );
    assert!(
        statuses[max..]
            .iter()
            .all(|s| *s == StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    let tenth = c.try_sign_in(from, "admin", "wrong password!").await;
    assert_eq!(tenth.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(tenth.headers.contains_key(header::RETRY_AFTER));
    assert!(tenth.body.contains("Too many failed sign-ins"));
    // While throttled, the right password is not even checked.
    let right = c.try_sign_in(from, "admin", PASSWORD).await;
    assert_eq!(right.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(right.set_cookie(console::session::SESSION_COOKIE).is_none());
    // Anonymous requests write no audit row, failed sign-ins included
    // (nobody fills the log by knocking); a sign-in is audited, under the
    // user signed in.
    assert!(c.audit_since_setup().await.is_empty());
    c.sign_in().await;
    let log = c.engine.audit_log(100).await.unwrap();
    let logins: Vec<_> = log.iter().filter(|e| e.kind == "admin.sign-in").collect();
    assert_eq!(logins.len(), 1, "{log:?}");
    assert_eq!(
        (
            logins[0].actor.as_str(),
            logins[0].action.as_str(),
            logins[0].outcome.as_str()
        ),
        ("admin", "administrator admin signed in", "done"),
        "{log:?}"
    );
    assert!(logins[0].address.contains("192.0.2."), "{log:?}");
    assert!(log.iter().all(|e| e.actor != "anonymous"), "{log:?}");
    let audit = serde_json::to_string(&log).unwrap();
    assert!(!audit.contains("wrong password"));
    assert!(!audit.contains(PASSWORD));
}

#[tokio::test]
async fn the_sign_in_form_needs_its_own_token() {
    let c = Console::new().await;
    // A cross-site form post has no pre-session cookie.
    let body = format!(
        "csrf=x&username=admin&password={}",
        PASSWORD.replace(' ', "+")
    );
    let req = Request::post("/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap();
    let a = c.send_over("192.0.2.2:40000", None, req).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(a.set_cookie(console::session::SESSION_COOKIE).is_none());
}

#[tokio::test]
async fn hostile_certificate_text_is_rendered_inert() {
    use switchboard_pki::testpki::{Ca, leaf_params};
    let c = Console::new().await;
    let b = c.sign_in().await;
    let ca = Ca::root("Evil <b>CA</b>");
    let mut params = leaf_params(&["voip.example.test"]);
    params.distinguished_name.remove(rcgen::DnType::CommonName);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "<script>alert(1)</script>");
    let leaf = ca.leaf_with(params, rcgen::KeyPair::generate().unwrap());
    let bundle = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, leaf.pem());
    let key = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, leaf.key_pem());
    let a = c
        .api(
            &b,
            Method::POST,
            "/v1/certs",
            &format!(r#"{{"name":"evil","bundle":"{bundle}","key":"{key}"}}"#),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    for path in ["/", "/certs/evil"] {
        let page = c.get(&b, path).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(!page.body.contains("<script>alert"), "{path}");
        assert!(!page.body.contains("<b>CA</b>"), "{path}");
        // Escaped, in whichever entity form the template engine writes.
        assert!(
            page.body
                .contains("&#60;script&#62;alert(1)&#60;/script&#62;")
                || page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{path}: the subject is not shown escaped"
        );
    }
}

#[tokio::test]
async fn console_changes_are_audited_with_user_and_address() {
    let c = Console::new().await;
    let b = c.sign_in().await;
    c.form(&b, "/matrix", &[("shown", "sql@wan0")]).await;
    let a = c
        .form(
            &b,
            "/preset",
            &[("internal", "lan0"), ("external", "no such nic!")],
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    let log = c.engine.audit_log(100).await.unwrap();
    // The change in words, by the engine, under the signed-in user.
    let matrix = log
        .iter()
        .find(|e| e.kind.starts_with("matrix."))
        .expect("the matrix form is audited");
    assert_eq!(matrix.actor, "admin");
    assert!(matrix.address.contains("192.0.2.2"), "{}", matrix.address);
    assert!(
        matrix.action.ends_with(" on wan0") && matrix.action.contains("sql"),
        "{}",
        matrix.action
    );
    assert!(
        log.iter().all(|e| e.action != "POST /matrix"),
        "a described change is not written twice"
    );
    // The page shows the error; the audit log has the attempt and why it
    // failed.
    let preset = log
        .iter()
        .find(|e| e.action == "POST /preset")
        .expect("the preset form is audited");
    assert_eq!(preset.outcome, "refused: 303 invalid-nic-name");
    let page = c.get(&b, "/audit").await;
    assert!(page.body.contains(&matrix.action));
    // An API call through the console is audited once, not twice.
    c.api(&b, Method::POST, "/v1/discard", "").await;
    let log = c.engine.audit_log(100).await.unwrap();
    assert_eq!(
        log.iter().filter(|e| e.kind == "candidate.discard").count(),
        1
    );
}

#[tokio::test]
async fn bad_form_input_gets_a_clear_message_and_changes_nothing() {
    let c = Console::new().await;
    let b = c.sign_in().await;
    let candidate = c.engine.candidate().await.unwrap();
    let long = "x".repeat(5000);
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("/matrix", vec![("shown", "ssh-lan0")]),
        ("/matrix", vec![("shown", "telnet@lan0")]),
        ("/matrix", vec![("shown", "ssh@no such nic")]),
        ("/preset", vec![("internal", "lan0"), ("external", "lan0")]),
        ("/provisioning", vec![("sip_tls_hostname", "not a host!")]),
        (
            "/provisioning",
            vec![("web_uri", "http://voip.example.test")],
        ),
        ("/provisioning", vec![("web_uri", &long)]),
        ("/provisioning", vec![("web_uri", " \t ")]),
        ("/bind", vec![("service", "ssh"), ("cert", "bootstrap")]),
        ("/bind", vec![("service", "web"), ("cert", "<none>")]),
        ("/nics/lan0", vec![("public_address", "300.1.1.1")]),
        ("/update", vec![("comment", &long)]),
        ("/accounts", vec![("phone", "12345")]),
        ("/ports", vec![("service", "ssh"), ("ports", "70000")]),
        ("/ports", vec![("service", "ssh"), ("ports", "30-20")]),
        ("/ports", vec![("service", "telnet"), ("ports", "23")]),
        (
            "/provisioning",
            vec![("store_android", "javascript:alert(1)")],
        ),
        (
            "/provisioning",
            vec![("store_ios", "http://apps.example.test/x")],
        ),
        (
            "/accounts",
            vec![("phone", "+41791234567"), ("name", &long)],
        ),
    ];
    for (path, fields) in cases {
        let a = c.form(&b, path, &fields).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{path} {fields:?}");
        let page = c.get(&b, a.location()).await;
        assert!(
            page.body.contains("class=\"flash error\""),
            "{path} {fields:?}: no error shown"
        );
        assert!(!page.body.contains(&long), "{path}: echoes the whole input");
    }
    assert_eq!(c.engine.candidate().await.unwrap(), candidate);
    assert!(c.engine.accounts().await.unwrap().is_empty());
    // A body past the limit is refused before anything reads it.
    let huge = format!(
        "csrf={}&comment={}",
        b.csrf.as_deref().unwrap(),
        "y".repeat(3 << 20)
    );
    let a = c
        .request(
            &b,
            Method::POST,
            "/update",
            Some("application/x-www-form-urlencoded"),
            huge,
        )
        .await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn a_trial_is_confirmed_only_over_a_connection_opened_after_it() {
    let c = Console::new().await;
    let b = c.sign_in().await;
    // A connection the browser kept open from before the Update.
    let kept = Browser {
        opened: Some(std::time::Instant::now()),
        ..b.clone()
    };
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    c.form(&b, "/matrix", &[("shown", "nrpe@wan0")]).await;
    let a = c
        .form(&b, "/update", &[("trial", "1"), ("trial_seconds", "60")])
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    let pending = c.engine.pending().await.unwrap().expect("on trial");
    // While pending, every answer closes its connection.
    let page = c.get(&b, "/").await;
    assert_eq!(page.headers["connection"], "close");
    assert!(page.body.contains("id=\"pending\""));
    // Over the old connection: refused, both ways, nothing confirmed.
    for a in [
        c.api(&kept, Method::POST, "/v1/confirm", "").await,
        c.form(&kept, "/confirm", &[]).await,
    ] {
        assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.body);
        assert!(a.body.contains("confirm-over-new-connection"), "{}", a.body);
        assert_eq!(a.headers["connection"], "close");
    }
    assert_eq!(
        c.engine.pending().await.unwrap().map(|p| p.revision),
        Some(pending.revision)
    );
    // Over a new one: confirmed.
    let a = c.api(&b, Method::POST, "/v1/confirm", "").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(c.engine.pending().await.unwrap().is_none());
    assert!(!c.get(&b, "/").await.headers.contains_key("connection"));
}

#[tokio::test]
async fn guessing_the_current_password_is_throttled_too() {
    let c = Console::new().await;
    let b = c.sign_in().await;
    let mut statuses = Vec::new();
    for _ in 0..console::session::MAX_FAILURES {
        let a = c
            .api(
                &b,
                Method::POST,
                "/v1/admin/password",
                r#"{"username":"admin","password":"a new password 123","current_password":"guess"}"#,
            )
            .await;
        statuses.push(a.status);
    }
    assert!(
        statuses.iter().all(|s| *s == StatusCode::FORBIDDEN),
        "{statuses:?}"
    );
    // The next one is refused without checking, even with the right one.
    let body = format!(
        r#"{{"username":"admin","password":"a new password 123","current_password":"{PASSWORD}"}}"#
    );
    let a = c.api(&b, Method::POST, "/v1/admin/password", &body).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.body);
    assert!(a.body.contains("\"throttled\""));
    // The form too.
    let a = c
        .form(
            &b,
            "/password",
            &[
                ("current", PASSWORD),
                ("new", "another password 1"),
                ("again", "another password 1"),
            ],
        )
        .await;
    let page = c.get(&b, a.location()).await;
    assert!(
        page.body.contains("too many wrong passwords"),
        "{}",
        page.body
    );
    // Nothing changed.
    assert!(c.engine.verify_password("admin", PASSWORD).await.unwrap());
}

#[tokio::test]
async fn ports_and_app_store_pages_from_the_console() {
    let c = Console::new().await;
    let b = c.sign_in().await;
    let a = c
        .form(&b, "/ports", &[("service", "ssh"), ("ports", "2222")])
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    let candidate = c.engine.candidate().await.unwrap();
    assert_eq!(
        candidate
            .port(switchboard_domain::ServiceId::Ssh)
            .to_string(),
        "2222"
    );
    let store = "https://play.google.com/store/apps/details?id=org.example.phone";
    c.form(&b, "/provisioning", &[("store_android", store)])
        .await;
    let page = c.get(&b, "/").await;
    assert!(
        page.body.contains("value=\"2222\""),
        "the page shows the new port"
    );
    let settings = c.engine.provisioning().await.unwrap();
    assert_eq!(
        settings
            .app_stores
            .get(&switchboard_domain::install::Platform::Android)
            .map(ToString::to_string)
            .as_deref(),
        Some(store)
    );
    // A blank field removes it.
    c.form(&b, "/provisioning", &[("store_android", "")]).await;
    assert!(c.engine.provisioning().await.unwrap().app_stores.is_empty());
}

#[tokio::test]
async fn the_bans_page_edits_the_policy_and_refuses_bad_input() {
    let c = Console::new().await;
    let b = c.sign_in().await;
    let page = c.get(&b, "/bans").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("id=\"no-bans\""), "{}", page.body);
    assert!(
        page.body
            .contains("ban after 5 failed authentications within 600 s")
    );
    let policy = |failures: &str, trusted: &str| {
        vec![
            ("enabled", "1".to_owned()),
            ("failures", failures.to_owned()),
            ("window_secs", "60".to_owned()),
            ("ban_secs", "300".to_owned()),
            ("max_ban_secs", "3600".to_owned()),
            ("flood_requests", "100".to_owned()),
            ("trusted", trusted.to_owned()),
        ]
    };
    let candidate = c.engine.candidate().await.unwrap();
    let long = "9".repeat(5000);
    for fields in [
        policy("0", ""),
        policy("five", ""),
        policy(&long, ""),
        policy("5", "192.0.2.1/24"),
        policy("5", "<script>alert(1)</script>"),
    ] {
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let a = c.form(&b, "/bans/policy", &fields).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER);
        let page = c.get(&b, a.location()).await;
        assert!(
            page.body.contains("class=\"flash error\""),
            "{fields:?}: no error shown"
        );
        assert!(!page.body.contains(&long) && !page.body.contains("<script>alert"));
    }
    for path in [
        "/bans/192.0.2.0%2F24/unban",
        "/bans/not-an-address/unban",
        "/bans/198.51.100.9/unban",
    ] {
        let a = c.form(&b, path, &[]).await;
        let page = c.get(&b, a.location()).await;
        assert!(
            page.body.contains("class=\"flash error\""),
            "{path}: no error shown"
        );
    }
    assert_eq!(
        c.engine.candidate().await.unwrap(),
        candidate,
        "nothing changed"
    );
    let fields = policy("10", "192.0.2.0/24, 2001:db8::/32");
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    c.form(&b, "/bans/policy", &fields).await;
    let now = c.engine.candidate().await.unwrap().bans;
    assert_eq!(
        (now.failures, now.window_secs, now.trusted.len()),
        (10, 60, 2)
    );
    let page = c.get(&b, "/bans").await;
    assert!(
        page.body.contains("The candidate&#x27;s policy differs")
            || page.body.contains("The candidate's policy differs"),
        "{}",
        page.body
    );
}

#[tokio::test]
async fn accounts_activation_and_revocation_from_the_console() {
    let c = Console::new().await;
    let b = c.sign_in().await;
    // Activation needs an applied web services URI (covered by the
    // first-start certificate: the host name).
    let host = switchboard_system::dns::hostname();
    let uri = format!("https://{host}");
    let a = c
        .form(
            &b,
            "/provisioning",
            &[("sip_tls_hostname", &host), ("web_uri", &uri)],
        )
        .await;
    assert!(
        c.get(&b, a.location())
            .await
            .body
            .contains("class=\"flash ok\""),
        "provisioning saved"
    );
    c.form(&b, "/update", &[]).await;
    c.form(
        &b,
        "/accounts",
        &[("phone", "+15550100177"), ("name", "Bo")],
    )
    .await;
    let user = c.engine.accounts().await.unwrap()[0].username.to_string();
    let a = c.form(&b, &format!("/accounts/{user}/activate"), &[]).await;
    assert_eq!(a.location(), format!("/accounts/{user}"), "its own page");
    let page = c.get(&b, a.location()).await;
    assert!(page.body.contains("queued to"), "{}", page.body);
    let list = c.get(&b, "/accounts").await;
    assert!(
        list.body.contains("/p/"),
        "the outbox shows the link to hand over"
    );
    assert!(list.body.contains(">link sent 20"), "{}", list.body);
    // Revoking asks first, and changes nothing until it is confirmed.
    let a = c.form(&b, &format!("/accounts/{user}/revoke"), &[]).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(
        a.body
            .contains(&format!("Revoke the activation links of {user}?")),
        "{}",
        a.body
    );
    assert!(c.get(&b, "/accounts").await.body.contains("/p/"));
    let a = c
        .form(
            &b,
            &format!("/accounts/{user}/revoke"),
            &[("confirmed", "yes")],
        )
        .await;
    let page = c.get(&b, a.location()).await;
    assert!(
        page.body
            .contains("1 link(s) revoked, 1 message(s) withdrawn"),
        "{}",
        page.body
    );
    let page = c.get(&b, "/accounts").await;
    assert!(!page.body.contains("/p/"), "the withdrawn link is gone");
    assert!(page.body.contains(">revoked<"));
    // Re-send: only failed messages; an outbox one is refused with a reason.
    let id = c.engine.sms().await.unwrap()[0].id;
    let a = c.form(&b, &format!("/sms/{id}/resend"), &[]).await;
    let page = c.get(&b, a.location()).await;
    assert!(page.body.contains("cannot be sent again"), "{}", page.body);
}

/// A multipart form with the browser's CSRF token first and one file.
fn multipart_file(b: &Browser, field: &str, file: &str) -> (String, String) {
    let boundary = "sbBoundary7";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"f.csv\"\r\n\
         Content-Type: text/csv\r\n\r\n{file}\r\n--{boundary}--\r\n",
        b.csrf.as_deref().unwrap_or("")
    );
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[tokio::test]
async fn accounts_are_imported_and_edited_from_the_console() {
    let c = Console::new().await;
    let b = c.sign_in().await;
    // A file with a bad row: every problem shown, no account created.
    let (ct, body) = multipart_file(
        &b,
        "file",
        "phone,name\n+15550100111,Bob\n12345,<script>Eve</script>\n+15550100111,Twice\n",
    );
    let a = c
        .request(&b, Method::POST, "/accounts/import", Some(&ct), body)
        .await;
    let page = c.get(&b, a.location()).await;
    assert!(page.body.contains("class=\"flash error\""), "{}", page.body);
    assert!(page.body.contains("line 3"), "{}", page.body);
    assert!(page.body.contains("line 4"), "{}", page.body);
    assert!(!page.body.contains("<script>Eve"), "escaped");
    assert!(c.engine.accounts().await.unwrap().is_empty());
    // A good one: all created.
    let (ct, body) = multipart_file(
        &b,
        "file",
        "phone,name,profile\n+15550100111,Bob,linphone\n+15550100112,Carol,\n",
    );
    let a = c
        .request(&b, Method::POST, "/accounts/import", Some(&ct), body)
        .await;
    let page = c.get(&b, a.location()).await;
    assert!(page.body.contains("2 account(s) created"), "{}", page.body);
    let bob = c.engine.accounts().await.unwrap()[0].username.to_string();

    // Edit Bob: every field; a bad phone number changes nothing.
    let page = c.get(&b, &format!("/accounts/{bob}")).await;
    assert!(page.body.contains("value=\"Bob\""), "{}", page.body);
    // No Kamailio here: the registration is said to be unknown, not absent.
    assert!(
        page.body
            .contains("id=\"registration\">unknown: Kamailio is not running"),
        "{}",
        page.body
    );
    let list = c.get(&b, "/accounts").await;
    assert!(
        list.body.contains("id=\"registrations-unknown\"")
            && list.body.contains("<td class=\"state\">no link</td>"),
        "{}",
        list.body
    );
    let a = c
        .form(
            &b,
            &format!("/accounts/{bob}"),
            &[
                ("phone", "555"),
                ("name", "Robert"),
                ("group", ""),
                ("profile", "native"),
            ],
        )
        .await;
    assert!(
        c.get(&b, a.location())
            .await
            .body
            .contains("class=\"flash error\"")
    );
    let before = c.engine.account(&bob.parse().unwrap()).await.unwrap();
    assert_eq!(before.display_name.unwrap().to_string(), "Bob");
    let a = c
        .form(
            &b,
            &format!("/accounts/{bob}"),
            &[
                ("phone", "+15550100113"),
                ("name", "Robert"),
                ("group", "sales"),
                ("profile", "native"),
                ("new_password", "1"),
            ],
        )
        .await;
    let page = c.get(&b, a.location()).await;
    assert!(page.body.contains("new SIP password"), "{}", page.body);
    let after = c.engine.account(&bob.parse().unwrap()).await.unwrap();
    assert_eq!(after.display_name.unwrap().to_string(), "Robert");
    assert_eq!(after.phone.to_string(), "+15550100113");
    assert_eq!(after.group.unwrap().to_string(), "sales");
    assert_eq!(word_of(&after.profile), "native");
}

fn word_of<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_password_change_ends_the_other_sessions_whichever_way_it_is_made() {
    let c = Console::new().await;
    let root = Origin::local(0, None);
    // On the appliance (`switchboard admin set-password`): every session ends.
    let a = c.sign_in().await;
    c.engine
        .set_admin_password(&root, "admin", "another long password")
        .await
        .unwrap();
    assert_eq!(
        c.get(&a, "/").await.location(),
        "/login?next=%2F&ended=page"
    );
    assert_eq!(
        c.get(&a, "/v1/status").await.status,
        StatusCode::UNAUTHORIZED
    );
    c.engine
        .set_admin_password(&root, "admin", PASSWORD)
        .await
        .unwrap();
    // Over the API, from one session: that one goes on, the other ends.
    let (a, b) = (c.sign_in().await, c.sign_in().await);
    let body = format!(
        r#"{{"username":"admin","password":"a third long password","current_password":"{PASSWORD}"}}"#
    );
    let changed = c.api(&a, Method::POST, "/v1/admin/password", &body).await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
    assert_eq!(c.get(&a, "/").await.status, StatusCode::OK);
    assert_eq!(
        c.get(&b, "/").await.location(),
        "/login?next=%2F&ended=page"
    );
    // Over the console, an administrator changes only their own password.
    let other = r#"{"username":"ops","password":"a long password 2","current_password":"x"}"#;
    let refused = c.api(&a, Method::POST, "/v1/admin/password", other).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(refused.body.contains("not-your-password"));
    // With the form: the same.
    let a2 = c.sign_in_with("a third long password").await;
    let form = c
        .form(
            &a2,
            "/password",
            &[
                ("current", "a third long password"),
                ("new", "the fourth password"),
                ("again", "the fourth password"),
            ],
        )
        .await;
    assert_eq!(form.status, StatusCode::SEE_OTHER);
    assert_eq!(c.get(&a2, "/").await.status, StatusCode::OK);
    assert_eq!(
        c.get(&a, "/").await.location(),
        "/login?next=%2F&ended=page"
    );
    assert!(
        c.engine
            .verify_password("admin", "the fourth password")
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn a_sign_in_with_a_long_unicode_password_works() {
    let c = Console::new().await;
    // 128 characters, 384 bytes in UTF-8: the longest password accepted.
    let long: String = "鍵".repeat(128);
    c.engine
        .set_admin_password(&Origin::local(0, None), "admin", &long)
        .await
        .unwrap();
    let b = c.sign_in_with(&long).await;
    assert!(b.session.is_some());
}

#[tokio::test]
async fn malformed_forms_and_bad_names_get_an_error_page() {
    let c = Console::new().await;
    let b = c.sign_in().await;
    let candidate = c.engine.candidate().await.unwrap();
    // A missing field, a malformed number: a page that says which.
    for (path, fields) in [
        ("/preset", vec![("internal", "lan0")]),
        ("/update", vec![("trial", "1"), ("trial_seconds", "soon")]),
        ("/ports", vec![("service", "ssh")]),
    ] {
        let a = c.form(&b, path, &fields).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{path}");
        assert!(
            a.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        assert!(a.body.contains("malformed-form"), "{path}: {}", a.body);
    }
    // A page for something that does not exist, or cannot be named so.
    let a = c.get(&b, "/certs/no-such-cert").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert!(
        a.body.contains("no-such-cert") && a.body.contains("<html"),
        "{}",
        a.body
    );
    let a = c.get(&b, "/revisions/twelve").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.body.contains("<html"));
    let a = c.get(&b, "/accounts/%3Cscript%3E").await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.body);
    assert!(!a.body.contains("<script>"), "escaped");
    assert_eq!(c.engine.candidate().await.unwrap(), candidate);
}

#[tokio::test]
async fn knocking_counts_or_leaves_no_trace() {
    let c = Console::new().await;
    let from = "192.0.2.77:4000";
    // Not a sign-in form at all: refused, not audited, not counted.
    for body in ["", "csrf=", "username=admin&password=x", "%%%"] {
        let req = Request::post("/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap();
        let a = c.send_over(from, None, req).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{body:?}");
    }
    assert!(
        c.audit_since_setup().await.is_empty(),
        "knocking leaves no trace"
    );
    // Over-long credentials: wrong attempts, counted without a check.
    let long = "x".repeat(600);
    for _ in 0..console::session::MAX_FAILURES {
        assert_eq!(
            c.try_sign_in(from, "admin", &long).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        c.try_sign_in(from, "admin", &long).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn a_refused_password_change_does_not_clear_the_address_count() {
    let c = Console::new().await;
    let b = c.sign_in().await; // from 192.0.2.2
    for _ in 0..console::session::MAX_FAILURES - 1 {
        assert_eq!(
            c.try_sign_in("192.0.2.2:40000", "ghost", "guess")
                .await
                .status,
            StatusCode::UNAUTHORIZED
        );
    }
    // Refused before any password is checked: the attempt is given back,
    // the address's earlier failures are not forgotten.
    let other = r#"{"username":"x","password":"a long password 2","current_password":"x"}"#;
    let a = c.api(&b, Method::POST, "/v1/admin/password", other).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(
        c.try_sign_in("192.0.2.2:40000", "ghost", "guess")
            .await
            .status,
        StatusCode::UNAUTHORIZED,
        "the fifth"
    );
    assert_eq!(
        c.try_sign_in("192.0.2.2:40000", "ghost", "guess")
            .await
            .status,
        StatusCode::TOO_MANY_REQUESTS,
        "the sixth"
    );
}

#[tokio::test]
async fn the_production_preset_proposes_the_admins_nic_as_internal() {
    let c = Console::new().await;
    let b = c.sign_in().await; // arriving on 192.0.2.1, lan0
    let page = c.get(&b, "/").await;
    let select = |id: &str| {
        let start = page.body.find(&format!("id=\"{id}\"")).expect(id);
        let end = start + page.body[start..].find("</select>").expect("end");
        page.body[start..end].to_owned()
    };
    assert!(
        select("preset-internal").contains("<option value=\"lan0\" selected>"),
        "{}",
        select("preset-internal")
    );
    // The external one: the other NIC with an address (dmz0 has none).
    assert!(
        select("preset-external").contains("<option value=\"wan0\" selected>"),
        "{}",
        select("preset-external")
    );
}

#[tokio::test]
async fn a_path_that_does_not_parse_gets_an_error_page_or_document_not_plain_text() {
    let c = Console::new().await;
    let b = c.sign_in().await;
    for path in ["/certs/%FF", "/accounts/%FF", "/revisions/%FF"] {
        let a = c.get(&b, path).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{path}");
        assert!(a.body.contains("malformed-path"), "{path}: {}", a.body);
        assert!(a.body.contains("<html"), "{path}: an HTML page: {}", a.body);
    }
    for path in [
        "/certs/%FF/delete",
        "/accounts/%FF/revoke",
        "/sms/%FF/resend",
    ] {
        let a = c.form(&b, path, &[]).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{path}");
        assert!(a.body.contains("malformed-path"), "{path}: {}", a.body);
    }
    for (method, path) in [
        (Method::GET, "/v1/certs/%FF"),
        (Method::GET, "/v1/accounts/%FF"),
        (Method::POST, "/v1/sms/%FF/resend"),
    ] {
        let a = c.api(&b, method, path, "").await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{path}");
        let doc: serde_json::Value = serde_json::from_str(&a.body).expect("the error document");
        assert_eq!(doc["error"]["code"], "malformed-path", "{path}");
    }
}

#[tokio::test]
async fn a_revision_comment_is_one_line_from_the_forms_and_the_api_alike() {
    let c = Console::new().await;
    let b = c.sign_in().await;
    let over_long = "x".repeat(501);
    let bad = ["two\nlines", "a tab\there", "bell\u{7}", over_long.as_str()];
    for comment in bad {
        let a = c.form(&b, "/update", &[("comment", comment)]).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{comment:?}");
        let page = c.get(&b, a.location()).await;
        assert!(
            page.body.contains("class=\"flash error\"") && page.body.contains("one line"),
            "{comment:?}: no error shown"
        );
        let json = serde_json::json!({ "comment": comment }).to_string();
        let a = c.api(&b, Method::POST, "/v1/update", &json).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{comment:?}");
        assert!(a.body.contains("\"invalid-comment\""), "{}", a.body);
    }
    assert!(c.engine.revisions().await.unwrap().is_empty());
    // A good comment is recorded trimmed; a rollback takes one too.
    let a = c.form(&b, "/update", &[("comment", "  first  ")]).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    let a = c
        .form(
            &b,
            "/revisions/1/rollback",
            &[("comment", "back\r\nagain"), ("confirmed", "yes")],
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    let json = r#"{"revision": 1, "comment": "line\nbreak"}"#;
    let a = c.api(&b, Method::POST, "/v1/rollback", json).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.body.contains("\"invalid-comment\""), "{}", a.body);
    let comments: Vec<String> = c
        .engine
        .revisions()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.comment)
        .collect();
    assert_eq!(comments, ["first"]);
    // Every refusal has the same code in the audit log.
    let outcomes: Vec<String> = c
        .engine
        .audit_log(100)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.outcome.contains("comment"))
        .map(|a| a.outcome)
        .collect();
    assert_eq!(outcomes.len(), 2 * bad.len() + 2, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .all(|o| o == "refused: 303 invalid-comment" || o == "refused: 400 invalid-comment"),
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn a_console_port_change_is_reviewed_and_sends_the_browser_to_the_new_port() {
    let c = Console::new().await;
    let b = c.sign_in().await;
    let a = c.form(&b, "/update", &[("comment", "first")]).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    let a = c
        .form(&b, "/ports", &[("service", "console"), ("ports", "9443")])
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    let review = c.get(&b, "/update").await;
    assert!(
        review
            .body
            .contains("your browser will reconnect on port 9443"),
        "{}",
        review.body
    );
    for (host, location) in [
        (
            Some("console.lan.test:8443"),
            "https://console.lan.test:9443/",
        ),
        (None, "https://192.0.2.1:9443/"),
    ] {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs([("csrf", b.csrf.as_deref().unwrap()), ("trial", "on")])
            .finish();
        let mut req = Request::post("/update")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(
                header::COOKIE,
                format!(
                    "{}={}",
                    console::session::SESSION_COOKIE,
                    b.session.as_deref().unwrap()
                ),
            );
        if let Some(h) = host {
            req = req.header(header::HOST, h);
        }
        let a = c
            .send_over(
                "192.0.2.2:40000",
                b.opened,
                req.body(Body::from(body)).unwrap(),
            )
            .await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
        assert_eq!(
            a.headers
                .get(header::LOCATION)
                .and_then(|l| l.to_str().ok()),
            Some(location)
        );
        // Back to 8443 for the next round: the trial is taken back.
        c.engine
            .expire_pending(jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1))
            .await
            .expect("rolled back");
    }
}

/// A request announcing a JSON body of `length` bytes that never sends a
/// byte of it (a client that stopped), with `b`'s session and CSRF token.
fn never_sent(b: &Browser, path: &str, length: usize) -> Request<Body> {
    let body = Body::from_stream(futures::stream::pending::<Result<Vec<u8>, std::io::Error>>());
    let session = b.session.as_deref().unwrap_or("");
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, length.to_string())
        .header(
            header::COOKIE,
            format!("{}={session}", console::session::SESSION_COOKIE),
        )
        .header("x-csrf-token", b.csrf.as_deref().unwrap_or(""))
        .body(body)
        .unwrap()
}

#[tokio::test]
async fn a_body_announced_over_the_routes_limit_is_refused_before_it_is_read() {
    let c = Console::new().await;
    let b = c.sign_in().await;
    // 64 KiB for the API's routes, 1 MiB for a certificate, 2 MiB for an
    // account file: one byte more is refused, though none has arrived.
    for (path, limit) in [
        ("/v1/matrix/allow", api::MAX_BODY),
        ("/v1/certs", api::MAX_UPLOAD_BODY),
        ("/v1/accounts/import", 2 * api::MAX_UPLOAD_BODY),
        ("/v1/admin/password", api::MAX_BODY),
    ] {
        let answer = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            c.send_over("192.0.2.2:40000", b.opened, never_sent(&b, path, limit + 1)),
        )
        .await
        .unwrap_or_else(|_| panic!("{path}: no answer while the body is missing"));
        assert_eq!(
            answer.status,
            StatusCode::PAYLOAD_TOO_LARGE,
            "{path}: {}",
            answer.body
        );
        assert!(
            answer.body.contains("\"too-large\""),
            "{path}: {}",
            answer.body
        );
    }
}

#[tokio::test]
async fn the_administrator_signs_in_from_the_lan_while_another_address_has_just_failed_100_times() {
    let c = Console::new().await;
    let mut refused = 0;
    for i in 0..100 {
        let a = c
            .try_sign_in("198.51.100.2:5000", "admin", &format!("guess {i}"))
            .await;
        refused += usize::from(a.status == StatusCode::TOO_MANY_REQUESTS);
    }
    // The guesser is refused past its own limit...
    assert_eq!(refused, 100 - console::session::MAX_FAILURES);
    // ...and the administrator, from the LAN, is let in (a little slowed
    // down, never refused).
    let started = std::time::Instant::now();
    let b = c.sign_in().await;
    assert!(started.elapsed() <= console::session::MAX_USER_DELAY * 3);
    assert_eq!(c.get(&b, "/").await.status, StatusCode::OK);
}

/// A request body that breaks off: what a client that goes away mid-body
/// sends.
struct Truncated(bool);

impl hyper::body::Body for Truncated {
    type Data = hyper::body::Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let first = !self.0;
        self.0 = true;
        std::task::Poll::Ready(Some(if first {
            Ok(hyper::body::Frame::data("csrf=abc&user".into()))
        } else {
            Err(std::io::ErrorKind::UnexpectedEof.into())
        }))
    }
}

#[tokio::test]
async fn anonymous_garbage_writes_no_audit_row() {
    let c = Console::new().await;
    let mut statuses = std::collections::BTreeSet::new();
    for i in 0..50 {
        let req = Request::post(if i % 2 == 0 { "/login" } else { "/v1/matrix" })
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::new(Truncated(false)))
            .unwrap();
        statuses.insert(c.send_over("203.0.113.9:7000", None, req).await.status);
    }
    assert!(statuses.contains(&StatusCode::BAD_REQUEST), "{statuses:?}");
    assert!(c.audit_since_setup().await.is_empty(), "{statuses:?}");
    // A signed-in change is still audited.
    let b = c.sign_in().await;
    let a = c.api(&b, Method::POST, "/v1/discard", "").await;
    let log = c.engine.audit_log(100).await.unwrap();
    assert!(
        log.iter()
            .any(|e| e.kind == "candidate.discard" && e.actor == "admin"),
        "{}: {log:?}",
        a.status
    );
}

#[tokio::test]
async fn the_expiry_banner_warns_at_30_days_and_turns_to_an_error_at_7() {
    use switchboard_pki::testpki::{leaf_params, pki, with_validity};
    let c = Console::new().await;
    let b = c.sign_in().await;
    let page = c.get(&b, "/").await;
    assert!(!page.body.contains(r#"id="expiry""#), "nothing expires yet");
    let p = pki();
    let now = jiff::Timestamp::now();
    let days = |d: i64| now + jiff::SignedDuration::from_hours(24 * d);
    for (name, left, nic) in [("month", 20, "wan0"), ("week", 5, "lan0")] {
        let params = with_validity(leaf_params(&["voip.example.test"]), days(-60), days(left));
        let leaf = p
            .intermediate
            .leaf_with(params, rcgen::KeyPair::generate().unwrap());
        let cert: switchboard_domain::CertName = name.parse().unwrap();
        c.engine
            .import_cert(
                &cert,
                format!("{}{}", leaf.pem(), leaf.key_pem()).as_bytes(),
                None,
                None,
            )
            .await
            .expect("import");
        c.engine
            .bind(
                switchboard_domain::ServiceId::SipTls,
                Some(&nic.parse().unwrap()),
                &cert,
                false,
            )
            .await
            .expect("bind");
        let page = c.get(&b, "/").await;
        let banner = page
            .body
            .split(r#"<section id="expiry""#)
            .nth(1)
            .and_then(|rest| rest.split("</section>").next())
            .unwrap_or_else(|| panic!("{name}: no expiry banner"));
        let (class, headline) = match name {
            "month" => (r#"class="banner warn""#, "within 30 days"),
            _ => (r#"class="banner error""#, "within 7 days"),
        };
        assert!(
            banner.contains(class) && banner.contains(headline),
            "{name}: {banner}"
        );
        assert!(banner.contains("certificate month expires"), "{banner}");
        assert!(banner.contains("presented by sip-tls on wan0"), "{banner}");
    }
}

#[tokio::test]
async fn an_acme_order_from_the_console_refuses_bad_fields_and_leaves_nothing() {
    let c = Console::new().await;
    let b = c.sign_in().await;
    let certs = c.engine.certs().await.unwrap().len();
    let dir = "https://acme.example.test/directory";
    let many = (0..=10)
        .map(|i| format!("h{i}.example.test"))
        .collect::<Vec<_>>()
        .join(" ");
    let huge = "a".repeat(5000);
    for (fields, code) in [
        (
            vec![
                ("name", "le"),
                ("domains", "voip.example.test"),
                ("directory", "http://acme.example.test/dir"),
            ],
            "invalid-acme-request",
        ),
        (
            vec![("name", "le"), ("domains", ""), ("directory", dir)],
            "invalid-acme-request",
        ),
        (
            vec![("name", "le"), ("domains", &many), ("directory", dir)],
            "invalid-acme-request",
        ),
        (
            vec![
                ("name", "le"),
                ("domains", "not_a name!"),
                ("directory", dir),
            ],
            "invalid-hostname",
        ),
        (
            vec![
                ("name", "le"),
                ("domains", "voip.example.test"),
                ("directory", dir),
                ("contact", "a@b\r\nBcc: x@y"),
            ],
            "invalid-acme-request",
        ),
        (
            vec![
                ("name", "le"),
                ("domains", "voip.example.test"),
                ("directory", &huge),
            ],
            "invalid-acme-request",
        ),
        (
            vec![
                ("name", "<script>"),
                ("domains", "voip.example.test"),
                ("directory", dir),
            ],
            "invalid-cert-name",
        ),
    ] {
        let a = c.form(&b, "/acme", &fields).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{fields:?}");
        let last = &c.engine.audit_log(1).await.unwrap()[0];
        assert_eq!(
            (last.action.as_str(), last.outcome.clone()),
            ("POST /acme", format!("refused: 303 {code}")),
            "{:?}",
            &fields[..fields.len().min(2)]
        );
        let page = c.get(&b, "/").await;
        assert!(
            page.body.contains(r#"class="flash error""#),
            "the error is shown"
        );
    }
    assert_eq!(
        c.engine.certs().await.unwrap().len(),
        certs,
        "nothing stored"
    );
    assert!(
        c.engine.cert_requests().await.unwrap().is_empty(),
        "no key left"
    );
    // Renewing what is not from an ACME CA: refused, said so.
    let a = c.form(&b, "/certs/bootstrap/renew", &[]).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(
        c.engine.audit_log(1).await.unwrap()[0].outcome,
        "refused: 303 not-renewable"
    );
    // The form is on the page, labelled.
    let page = c.get(&b, "/").await;
    assert!(page.body.contains(r#"id="acme-form""#));
    assert!(page.body.contains("Directory URL"));
}

#[tokio::test]
async fn a_key_is_made_from_the_console_and_its_request_shown_never_the_key() {
    let c = Console::new().await;
    let b = c.sign_in().await;
    // Hostile and malformed fields: refused with the API's codes, nothing made.
    for (fields, code) in [
        (vec![("name", "r1"), ("dns", "not a name!")], "invalid-name"),
        (vec![("name", "r1"), ("ips", "999.1.1.1")], "invalid-name"),
        (
            vec![("name", "r1"), ("dns", "a.test"), ("key_type", "dsa")],
            "unknown-key-type",
        ),
        (vec![("name", "r1")], "request-without-names"),
        (
            vec![("name", "<script>"), ("dns", "a.test")],
            "invalid-cert-name",
        ),
    ] {
        let a = c.form(&b, "/cert-requests", &fields).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{fields:?}");
        let last = &c.engine.audit_log(1).await.unwrap()[0];
        assert_eq!(
            (last.action.as_str(), last.outcome.clone()),
            ("POST /cert-requests", format!("refused: 303 {code}")),
            "{fields:?}"
        );
        let page = c.get(&b, "/").await;
        assert!(
            page.body.contains(r#"class="flash error""#),
            "{fields:?}: the error is shown"
        );
        assert!(
            c.engine.cert_requests().await.unwrap().is_empty(),
            "{fields:?}"
        );
    }
    let many = (0..=100)
        .map(|i| format!("h{i}.example.test"))
        .collect::<Vec<_>>()
        .join(" ");
    c.form(&b, "/cert-requests", &[("name", "r1"), ("dns", &many)])
        .await;
    assert_eq!(
        c.engine.audit_log(1).await.unwrap()[0].outcome,
        "refused: 303 too-many-names"
    );

    let a = c
        .form(
            &b,
            "/cert-requests",
            &[
                ("name", "voip-next"),
                ("dns", "voip.example.test, *.example.test"),
                ("ips", "198.51.100.1"),
                ("key_type", "ecdsa-p256"),
            ],
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    let page = c.get(&b, "/").await;
    assert!(
        page.body.contains(r#"id="request-voip-next""#),
        "the request is listed"
    );
    assert!(page.body.contains("-----BEGIN CERTIFICATE REQUEST-----"));
    assert!(
        page.body
            .contains("voip.example.test, *.example.test, 198.51.100.1")
    );
    assert!(!page.body.contains("PRIVATE KEY"), "never the key");
    // Withdrawn with the certificates' delete.
    c.form(&b, "/certs/voip-next/delete", &[("confirmed", "yes")])
        .await;
    assert!(c.engine.cert_requests().await.unwrap().is_empty());
}

/// Every message sent to a place (`done(.., "/page#place")`) has that
/// place on a page (`{% let here = "place" %}`), so no message is lost.
#[test]
fn every_message_sent_to_a_form_has_its_place_on_a_page() {
    let sources = [
        include_str!("../src/console/pages.rs"),
        include_str!("../src/console/pages/accounts.rs"),
    ];
    let templates = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/templates"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    let mut places = 0;
    for source in sources {
        for chunk in source
            .split('"')
            .filter(|c| c.starts_with('/') && c.contains('#'))
        {
            let place = chunk.split('#').nth(1).unwrap();
            if place.is_empty() || place.contains(['{', ' ']) {
                continue;
            }
            places += 1;
            assert!(
                templates.contains(&format!("{{% let here = \"{place}\" %}}")),
                "no template places the messages of #{place}"
            );
        }
    }
    assert!(places > 10, "the anchors parse: {places}");
}

/// Accounts found by search and state, paged; a bulk action asks once,
/// then acts on each account with its own result; hostile bulk forms are
/// refused and change nothing.
#[tokio::test]
async fn accounts_are_searched_paged_and_acted_on_in_bulk_from_the_console() {
    let c = Console::new().await;
    let b = c.sign_in().await;
    let mut csv = String::from("phone,name,group\n");
    for i in 0..120 {
        let group = if i % 3 == 0 { "sales" } else { "field" };
        csv.push_str(&format!("+1555010{i:04},Person {i},{group}\n"));
    }
    c.engine.import_accounts(csv.as_bytes()).await.unwrap();
    let page = c.get(&b, "/accounts?per_page=25&page=2").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("26–50 of 120 accounts"), "{}", page.body);
    assert!(page.body.contains("Page 2 of 5"));
    let page = c.get(&b, "/accounts?q=SALES&sort=-phone").await;
    assert!(page.body.contains("1–40 of 40 accounts"), "{}", page.body);
    assert!(page.body.contains("aria-sort=\"descending\""));
    // Hostile or impossible queries: the error page, nothing else.
    for bad in [
        "/accounts?page=0",
        "/accounts?per_page=100000",
        "/accounts?sort=ha1",
        "/accounts?state=%3Cscript%3E",
        "/accounts?page=x",
    ] {
        let a = c.get(&b, bad).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(!a.body.contains("<script>"), "{bad}: {}", a.body);
    }
    let long = format!("/accounts?q={}", "x".repeat(101));
    assert_eq!(c.get(&b, &long).await.status, StatusCode::BAD_REQUEST);

    let users: Vec<String> = c.engine.accounts().await.unwrap()[..3]
        .iter()
        .map(|a| a.username.to_string())
        .collect();
    let before = c.engine.accounts().await.unwrap().len();
    let mut fields = vec![("action", "delete"), ("back", "/accounts?q=x")];
    fields.extend(users.iter().map(|u| ("u", u.as_str())));
    let ask = c.form(&b, "/bulk/accounts", &fields).await;
    assert_eq!(ask.status, StatusCode::OK);
    assert!(ask.body.contains("Delete 3 accounts?"), "{}", ask.body);
    assert_eq!(
        c.engine.accounts().await.unwrap().len(),
        before,
        "only asked"
    );
    fields.push(("confirmed", "yes"));
    fields.push(("u", "nobody"));
    let done = c.form(&b, "/bulk/accounts", &fields).await;
    assert!(done.body.contains("3 done, 1 failed."), "{}", done.body);
    assert!(
        done.body.contains("there is no account nobody"),
        "{}",
        done.body
    );
    assert!(
        done.body.contains("href=\"/accounts?q=x\""),
        "back to the list"
    );
    assert_eq!(c.engine.accounts().await.unwrap().len(), before - 3);
    // Refused as a whole, nothing done: no selection, an unknown action,
    // a user name that cannot be one, a group that cannot be one, a way
    // back elsewhere.
    let one = c.engine.accounts().await.unwrap()[0].username.to_string();
    for bad in [
        vec![("action", "delete"), ("confirmed", "yes")],
        vec![
            ("action", "drop table"),
            ("u", one.as_str()),
            ("confirmed", "yes"),
        ],
        vec![("action", "delete"), ("u", "../etc"), ("confirmed", "yes")],
        vec![
            ("action", "set-group"),
            ("group", "a\u{0}b"),
            ("u", one.as_str()),
            ("confirmed", "yes"),
        ],
    ] {
        let a = c.form(&b, "/bulk/accounts", &bad).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{bad:?}");
        assert_eq!(a.location(), "/accounts#bulk-form");
        let page = c.get(&b, a.location()).await;
        assert!(page.body.contains("class=\"flash error\""), "{bad:?}");
    }
    assert_eq!(c.engine.accounts().await.unwrap().len(), before - 3);
    let a = c
        .form(
            &b,
            "/bulk/accounts",
            &[
                ("action", "set-group"),
                ("group", "vip"),
                ("u", &one),
                ("back", "https://evil.example/"),
                ("confirmed", "yes"),
            ],
        )
        .await;
    assert!(
        a.body.contains("href=\"/accounts\""),
        "never back elsewhere"
    );
    let page = c.get(&b, "/accounts?q=vip").await;
    assert!(page.body.contains("1–1 of 1 account"), "{}", page.body);
}

/// In person: loading the page never makes a link; the explicit action
/// makes one, which a reload shows again.
#[tokio::test]
async fn the_qr_page_makes_one_link_per_explicit_action() {
    let c = Console::new().await;
    let b = c.sign_in().await;
    let host = switchboard_system::dns::hostname();
    let uri = format!("https://{host}");
    c.form(
        &b,
        "/provisioning",
        &[("sip_tls_hostname", &host), ("web_uri", &uri)],
    )
    .await;
    c.form(&b, "/update", &[]).await;
    c.form(&b, "/accounts", &[("phone", "+15550100155")]).await;
    let user = c.engine.accounts().await.unwrap()[0].username.to_string();
    let qr = format!("/accounts/{user}/qr");
    let page = c.get(&b, &qr).await;
    assert!(page.body.contains("id=\"no-link\""), "{}", page.body);
    let links = |body: &str| body.matches("/p/").count();
    assert_eq!(links(&page.body), 0);
    let made = c.form(&b, &qr, &[]).await;
    assert_eq!(made.location(), qr);
    let first = c.get(&b, &qr).await;
    assert_eq!(first.headers["cache-control"], "no-store");
    let link = |body: &str| {
        let start = body.find("id=\"activation-link\">").unwrap() + 21;
        body[start..start + body[start..].find('<').unwrap()].to_owned()
    };
    let shown = link(&first.body);
    assert!(shown.contains("/p/"), "{shown}");
    for _ in 0..3 {
        assert_eq!(
            link(&c.get(&b, &qr).await.body),
            shown,
            "a reload shows it again"
        );
    }
    let list = c
        .api(
            &b,
            Method::GET,
            &format!("/v1/search/accounts?q={user}"),
            "",
        )
        .await;
    assert!(
        list.body.contains("\"state\":\"link-sent\""),
        "{}",
        list.body
    );
    c.form(&b, &qr, &[]).await;
    assert_ne!(
        link(&c.get(&b, &qr).await.body),
        shown,
        "a new action, a new link"
    );
    // Another session does not see this one's link.
    let other = c.sign_in().await;
    assert!(c.get(&other, &qr).await.body.contains("id=\"no-link\""));
}

/// Errors on pages are pages; the API keeps its documents. A sign-in
/// goes back to where the administrator was, never elsewhere.
#[tokio::test]
async fn errors_are_pages_and_a_new_sign_in_returns_to_the_page() {
    let c = Console::new().await;
    let b = c.sign_in().await;
    let a = c.get(&b, "/no/such/page").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert!(
        a.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(a.body.contains("Back to the console"), "{}", a.body);
    let a = c.get(&b, "/v1/no/such/thing").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert!(
        a.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    // After the session ends, the sign-in says so and comes back.
    let ended = c
        .get(
            &Browser {
                session: Some("B".repeat(43)),
                ..Browser::default()
            },
            "/accounts?q=ann",
        )
        .await;
    assert_eq!(
        ended.location(),
        "/login?next=%2Faccounts%3Fq%3Dann&ended=page"
    );
    let signed = c
        .try_sign_in_with(
            "192.0.2.2:40000",
            "admin",
            PASSWORD,
            &[("next", "/accounts?q=ann"), ("ended", "form")],
        )
        .await;
    assert_eq!(signed.location(), "/accounts?q=ann");
    let session = signed
        .cookie_value(console::session::SESSION_COOKIE)
        .unwrap();
    let back = Browser {
        session: Some(session),
        ..Browser::default()
    };
    let page = c.get(&back, "/accounts?q=ann").await;
    assert!(
        page.body.contains("data-restore=\"\""),
        "the form is given back: {}",
        page.body
    );
    for hostile in [
        "//evil.example/",
        "/\\evil.example",
        "https://evil.example/",
        "/login",
        "/v1/status",
        "/a\r\nSet-Cookie: x=y",
        "javascript:alert(1)",
    ] {
        let a = c
            .try_sign_in_with("192.0.2.2:40000", "admin", PASSWORD, &[("next", hostile)])
            .await;
        assert_eq!(a.location(), "/", "{hostile:?}");
    }
}

/// Every route, pages and API, for each role: what the role table refuses
/// is answered 403 (`forbidden`) before any handler runs, and changes
/// nothing; what it allows is not refused for the role.
#[tokio::test]
async fn every_route_is_checked_against_the_role_table() {
    use switchboard_web::roles::{Role, allowed};
    let c = Console::new().await;
    let admin = c.sign_in().await;
    for (name, role) in [("ops", "operator"), ("audit", "auditor")] {
        let body = format!(
            r#"{{"username":"{name}","password":"a long password {name}","role":"{role}"}}"#
        );
        let a = c.api(&admin, Method::POST, "/v1/admins", &body).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    }
    let revisions = c.engine.revisions().await.unwrap().len();
    let candidate = c.engine.candidate().await.unwrap();
    let admins = c.engine.admins().await.unwrap();
    for (name, role) in [("ops", Role::Operator), ("audit", Role::Auditor)] {
        let b = c
            .sign_in_as(name, &format!("a long password {name}"), "")
            .await;
        let mut refused = 0;
        for (method, path) in page_routes().into_iter().chain(api_routes()) {
            if public(&path) || path == "/logout" {
                continue;
            }
            let a = c
                .request(&b, method.clone(), &path, Some("application/json"), "{}")
                .await;
            let a = if method == Method::GET {
                a
            } else {
                c.api(&b, method.clone(), &path, "{}").await
            };
            if allowed(role, &method, &path) {
                assert!(
                    !(a.status == StatusCode::FORBIDDEN && a.body.contains("forbidden")),
                    "{role} {method} {path} allowed by the table but refused: {}",
                    a.body
                );
            } else {
                refused += 1;
                assert_eq!(
                    a.status,
                    StatusCode::FORBIDDEN,
                    "{role} {method} {path}: {}",
                    a.body
                );
                assert!(
                    a.body.contains("forbidden"),
                    "{role} {method} {path}: {}",
                    a.body
                );
            }
        }
        assert!(refused > 20, "{role}: {refused} routes refused");
        // The operator is refused on the Services page and its API.
        if role == Role::Operator {
            let page = c.get(&b, "/").await;
            assert_eq!(page.status, StatusCode::FORBIDDEN);
            assert!(
                page.body.contains("operator role does not allow"),
                "{}",
                page.body
            );
            let api = c
                .api(
                    &b,
                    Method::POST,
                    "/v1/matrix/allow",
                    r#"{"service":"sql","nic":"wan0"}"#,
                )
                .await;
            assert_eq!(api.status, StatusCode::FORBIDDEN);
            // Accounts are theirs.
            assert_eq!(c.get(&b, "/accounts").await.status, StatusCode::OK);
        }
    }
    // Nothing the refused requests carried changed anything.
    assert_eq!(c.engine.revisions().await.unwrap().len(), revisions);
    assert_eq!(c.engine.candidate().await.unwrap(), candidate);
    assert_eq!(c.engine.admins().await.unwrap(), admins);
}

/// Disabling an administrator ends their open session at its next request.
#[tokio::test]
async fn a_disabled_administrator_s_session_ends_at_once() {
    let c = Console::new().await;
    let admin = c.sign_in().await;
    let a = c
        .api(
            &admin,
            Method::POST,
            "/v1/admins",
            r#"{"username":"ops","password":"operator password","role":"operator"}"#,
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let ops = c.sign_in_as("ops", "operator password", "").await;
    assert_eq!(c.get(&ops, "/accounts").await.status, StatusCode::OK);
    // Disabling asks first, and changes nothing until confirmed.
    let ask = c.form(&admin, "/admins/ops/disable", &[]).await;
    assert!(
        ask.body.contains("Disable administrator ops?"),
        "{}",
        ask.body
    );
    assert_eq!(c.get(&ops, "/accounts").await.status, StatusCode::OK);
    let a = c
        .form(&admin, "/admins/ops/disable", &[("confirmed", "yes")])
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    let after = c.get(&ops, "/accounts").await;
    assert_eq!(
        (after.status, after.location()),
        (StatusCode::SEE_OTHER, "/login?next=%2Faccounts&ended=page")
    );
    let api = c.api(&ops, Method::GET, "/v1/accounts", "").await;
    assert_eq!(api.status, StatusCode::UNAUTHORIZED);
    // Nor can they sign in again.
    let again = c
        .try_sign_in("192.0.2.2:40000", "ops", "operator password")
        .await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED);
    // The last administrator cannot be disabled: the page says why.
    let last = c
        .form(&admin, "/admins/admin/disable", &[("confirmed", "yes")])
        .await;
    assert_eq!(last.status, StatusCode::SEE_OTHER);
    let page = c.get(&admin, "/admins").await;
    assert!(
        page.body.contains("last enabled administrator"),
        "{}",
        page.body
    );
    let log = c.engine.audit_log(100).await.unwrap();
    assert!(log.iter().any(|e| e.kind == "admin.disable"
        && e.action == "administrator ops disabled"
        && e.actor == "admin"));
}

fn code_now(secret_b32: &str, offset: i64) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let secret = data_encoding::BASE32_NOPAD
        .decode(secret_b32.as_bytes())
        .unwrap();
    let step = (jiff::Timestamp::now().as_second() / 30 + offset) as u64;
    let mut mac = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(&secret).unwrap();
    mac.update(&step.to_be_bytes());
    let d = mac.finalize().into_bytes();
    let o = usize::from(d[19] & 0x0f);
    let bin = u32::from_be_bytes([d[o] & 0x7f, d[o + 1], d[o + 2], d[o + 3]]);
    format!("{:06}", bin % 1_000_000)
}

/// A second factor enrolled over the API: the sign-in then needs a code
/// (computed here from the secret, independently of the engine's TOTP), a
/// code works once, a recovery code once.
#[tokio::test]
async fn a_totp_sign_in_needs_the_code_and_a_code_works_once() {
    let c = Console::new().await;
    let admin = c.sign_in().await;
    let begun = c.api(&admin, Method::POST, "/v1/me/totp", "").await;
    assert_eq!(begun.status, StatusCode::OK, "{}", begun.body);
    let v: serde_json::Value = serde_json::from_str(&begun.body).unwrap();
    let secret = v["secret"].as_str().unwrap().to_owned();
    let wrong = c
        .api(
            &admin,
            Method::POST,
            "/v1/me/totp/confirm",
            r#"{"code":"000000"}"#,
        )
        .await;
    assert_eq!(wrong.status, StatusCode::CONFLICT, "{}", wrong.body);
    let confirm = format!(r#"{{"code":"{}"}}"#, code_now(&secret, -1));
    let codes = c
        .api(&admin, Method::POST, "/v1/me/totp/confirm", &confirm)
        .await;
    assert_eq!(codes.status, StatusCode::OK, "{}", codes.body);
    let codes: serde_json::Value = serde_json::from_str(&codes.body).unwrap();
    let recovery = codes["codes"][0].as_str().unwrap().to_owned();
    // Password alone: refused.
    let alone = c.try_sign_in("192.0.2.2:40000", "admin", PASSWORD).await;
    assert_eq!(alone.status, StatusCode::UNAUTHORIZED);
    let now = code_now(&secret, 0);
    c.sign_in_as("admin", PASSWORD, &now).await;
    let replay = c
        .try_sign_in_code("192.0.2.2:40000", "admin", PASSWORD, &now)
        .await;
    assert_eq!(
        replay.status,
        StatusCode::UNAUTHORIZED,
        "a used code is refused"
    );
    c.sign_in_as("admin", PASSWORD, &recovery).await;
    let again = c
        .try_sign_in_code("192.0.2.2:40000", "admin", PASSWORD, &recovery)
        .await;
    assert_eq!(
        again.status,
        StatusCode::UNAUTHORIZED,
        "a recovery code is used once"
    );
    // The recovery code's use is audited, from where it came.
    let entries = c.engine.audit_log(100).await.unwrap();
    let used = entries
        .iter()
        .find(|e| e.kind == "admin.recovery-code")
        .expect("the recovery code's use is audited");
    assert_eq!(used.actor, "admin");
    assert!(
        used.address.starts_with("console from 192.0.2.2"),
        "{used:?}"
    );
    assert!(used.action.contains("9 left"), "{used:?}");
    // No secret in the audit log or the administrators' list.
    let log = serde_json::to_string(&entries).unwrap();
    let list = c.api(&admin, Method::GET, "/v1/admins", "").await.body;
    for text in [&log, &list] {
        assert!(
            !text.contains(&secret) && !text.contains(&recovery),
            "{text}"
        );
    }
}

/// A role that requires a second factor: its administrator without one
/// signs in to enrol only (pages lead there, the API refuses), then goes on.
#[tokio::test]
async fn a_required_second_factor_is_enrolled_before_anything_else() {
    let c = Console::new().await;
    let admin = c.sign_in().await;
    let a = c
        .api(
            &admin,
            Method::POST,
            "/v1/admins",
            r#"{"username":"ops","password":"operator password","role":"operator"}"#,
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let a = c
        .form(&admin, "/admins/totp-policy", &[("operator", "on")])
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    let answer = c
        .try_sign_in("192.0.2.2:40000", "ops", "operator password")
        .await;
    assert_eq!(answer.location(), "/me/totp");
    let ops = c.sign_in_as("ops", "operator password", "").await;
    let accounts = c.get(&ops, "/accounts").await;
    assert_eq!(accounts.location(), "/me/totp");
    let api = c.api(&ops, Method::GET, "/v1/accounts", "").await;
    assert_eq!(api.status, StatusCode::FORBIDDEN);
    assert!(api.body.contains("second-factor-required"), "{}", api.body);
    let page = c.get(&ops, "/me/totp").await;
    assert!(
        page.body.contains("Your role requires a second factor"),
        "{}",
        page.body
    );
    // Enrolled, the accounts are theirs again.
    let begun = c.api(&ops, Method::POST, "/v1/me/totp", "").await;
    let v: serde_json::Value = serde_json::from_str(&begun.body).unwrap();
    let code = code_now(v["secret"].as_str().unwrap(), 0);
    let done = c
        .api(
            &ops,
            Method::POST,
            "/v1/me/totp/confirm",
            &format!(r#"{{"code":"{code}"}}"#),
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert_eq!(c.get(&ops, "/accounts").await.status, StatusCode::OK);
}

/// The backup page downloads an age file; the restore form refuses a wrong
/// passphrase (a message, nothing changed) and restores with the right one,
/// showing the diff to review.
#[tokio::test]
async fn backup_and_restore_from_the_console_pages() {
    let c = Console::new().await;
    let admin = c.sign_in().await;
    let differ = c
        .form(
            &admin,
            "/backup",
            &[
                ("passphrase", "a long passphrase"),
                ("again", "another one!!"),
            ],
        )
        .await;
    assert_eq!(differ.status, StatusCode::SEE_OTHER);
    let short = c
        .form(
            &admin,
            "/backup",
            &[("passphrase", "short"), ("again", "short")],
        )
        .await;
    assert_eq!(short.status, StatusCode::SEE_OTHER);
    let page = c.get(&admin, "/backup").await;
    assert!(page.body.contains("12 to 256"), "{}", page.body);
    let file = c
        .form(
            &admin,
            "/backup",
            &[
                ("passphrase", "a long passphrase"),
                ("again", "a long passphrase"),
            ],
        )
        .await;
    assert_eq!(
        file.status,
        StatusCode::OK,
        "{}",
        c.get(&admin, "/backup").await.body
    );
    assert!(
        file.headers[header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .contains(".age")
    );
    let archive = file.raw.clone();
    assert!(archive.starts_with(b"age-encryption.org/v1"));

    let other = Console::new().await;
    let b = other.sign_in().await;
    let before = other.engine.candidate().await.unwrap();
    let restore = |passphrase: &'static str| {
        let boundary = "XBOUNDARYX";
        let mut body = Vec::new();
        for (name, value, file) in [
            ("csrf", b.csrf.clone().unwrap().into_bytes(), false),
            ("file", archive.clone(), true),
            ("passphrase", passphrase.as_bytes().to_vec(), false),
        ] {
            body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
            let disposition = if file {
                format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"b.age\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                )
            } else {
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n")
            };
            body.extend_from_slice(disposition.as_bytes());
            body.extend_from_slice(&value);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        body
    };
    let ct = "multipart/form-data; boundary=XBOUNDARYX";
    let wrong = other
        .request(
            &b,
            Method::POST,
            "/restore",
            Some(ct),
            restore("not the passphrase"),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::SEE_OTHER);
    let page = other.get(&b, "/backup").await;
    assert!(
        page.body.contains("does not open this archive"),
        "{}",
        page.body
    );
    assert_eq!(other.engine.candidate().await.unwrap(), before);
    let right = other
        .request(
            &b,
            Method::POST,
            "/restore",
            Some(ct),
            restore("a long passphrase"),
        )
        .await;
    assert_eq!(right.status, StatusCode::OK, "{}", right.body);
    assert!(
        right.body.contains("restored into the candidate"),
        "{}",
        right.body
    );
    assert!(right.body.contains("id=\"restore-diff\""));
    let log = other.engine.audit_log(10).await.unwrap();
    assert!(
        log.iter()
            .any(|e| e.kind == "config.restore" && e.actor == "admin")
    );
}

/// The menu shows each role the pages it may open, and no other.
#[tokio::test]
async fn the_menu_shows_what_the_role_may_open() {
    let c = Console::new().await;
    let admin = c.sign_in().await;
    for (name, role) in [("ops", "operator"), ("audit", "auditor")] {
        let body = format!(
            r#"{{"username":"{name}","password":"a long password {name}","role":"{role}"}}"#
        );
        let a = c.api(&admin, Method::POST, "/v1/admins", &body).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    }
    let menu = |body: &str| -> Vec<String> {
        let nav = &body[body.find("<nav aria-label=\"Main\">").unwrap()..];
        let nav = &nav[..nav.find("</nav>").unwrap()];
        nav.split("href=\"")
            .skip(1)
            .map(|h| h[..h.find('"').unwrap()].to_owned())
            .collect()
    };
    let all = menu(&c.get(&admin, "/accounts").await.body);
    assert!(
        all.contains(&"/backup".to_owned()) && all.contains(&"/".to_owned()),
        "{all:?}"
    );
    let ops = c.sign_in_as("ops", "a long password ops", "").await;
    assert_eq!(
        menu(&c.get(&ops, "/accounts").await.body),
        ["/accounts", "/me/totp", "/openapi.json", "/password"]
    );
    let audit = c.sign_in_as("audit", "a long password audit", "").await;
    let seen = menu(&c.get(&audit, "/").await.body);
    assert!(seen.contains(&"/audit".to_owned()), "{seen:?}");
    // Auditors read everything but the backup (every secret).
    assert!(!seen.contains(&"/backup".to_owned()), "{seen:?}");
    assert!(seen.contains(&"/accounts".to_owned()), "{seen:?}");
    // Every link shown opens.
    for (who, links) in [
        (&ops, menu(&c.get(&ops, "/accounts").await.body)),
        (&audit, seen),
    ] {
        for link in links {
            let status = c.get(who, &link).await.status;
            assert_eq!(status, StatusCode::OK, "{link}");
        }
    }
}
