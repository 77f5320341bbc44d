//! A real headless Chromium for browser tests, driven through chromedriver
//! (WebDriver) from a namespace of the lab, with [`fantoccini`].
//!
//! ```ignore
//! let browser = Browser::start(&lab.lan, &ca_pem);
//! let title = browser.run(|c| async move {
//!     browser::open(&c, "https://console.lan.test:8443/").await?;
//!     browser::screenshot(&c, &shots.join("console.png")).await?;
//!     Ok(c.title().await?)
//! });
//! ```
//!
//! Trust: Chromium on Linux takes local trust anchors from the NSS database
//! of the user, `$HOME/.pki/nssdb`. chromedriver runs with a fresh temporary
//! `HOME` whose database trusts exactly the given CA (and Chromium's own
//! root store, which no test certificate chains to): certificates of that
//! CA get a closed padlock, every other one Chromium's certificate error
//! page. Names: chromedriver runs under `ip netns exec`, so Chromium reads
//! the namespace's hosts file ([`Netns::set_hosts`]).

use std::future::Future;
use std::io::{Read as _, Write as _};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use switchboard_system::testlab::{Netns, run};

/// Debian's `chromium-driver`.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Debian's `chromium`: the browser itself, not the `/usr/bin/chromium`
/// wrapper script (which adds flags and extensions of its own).
pub const CHROMIUM: &str = "/usr/lib/chromium/chromium";
/// `libnss3-tools`: writes the NSS database Chromium reads its local trust
/// anchors from.
pub const CERTUTIL: &str = "/usr/bin/certutil";

/// What the browser tests need installed, for `require_or_skip`.
pub const PACKAGES: &str = "chromium, chromium-driver and libnss3-tools";

/// How long the helpers wait for an element, and the page-load timeout.
pub const WAIT: Duration = Duration::from_secs(10);

/// Whether chromedriver, Chromium and certutil are installed here.
pub fn installed() -> bool {
    [CHROMEDRIVER, CHROMIUM, CERTUTIL]
        .iter()
        .all(|p| Path::new(p).exists())
}

/// chromedriver running in a namespace, with its own temporary `HOME` (NSS
/// database, Chromium profiles, logs). On drop, chromedriver and every
/// Chromium it started are killed and the `HOME` is removed.
#[derive(Debug)]
pub struct Browser<'ns> {
    ns: &'ns Netns,
    port: u16,
    chromedriver: Child,
    home: tempfile::TempDir,
    sessions: AtomicU32,
}

impl<'ns> Browser<'ns> {
    /// Start chromedriver inside `ns`, trusting the CA certificate(s) in
    /// `trusted_ca_pem` (PEM), and wait until it is ready.
    pub fn start(ns: &'ns Netns, trusted_ca_pem: &Path) -> Browser<'ns> {
        let home = tempfile::Builder::new()
            .prefix("sbt-browser-")
            .tempdir()
            .expect("temporary HOME");
        let nssdb = home.path().join(".pki/nssdb");
        std::fs::create_dir_all(&nssdb).expect("create the NSS database directory");
        let db = format!("sql:{}", nssdb.display());
        run(std::process::Command::new(CERTUTIL).args(["-N", "--empty-password", "-d", &db]))
            .expect("create the NSS database");
        run(std::process::Command::new(CERTUTIL)
            .args(["-A", "-t", "C,,", "-n", "testca", "-i"])
            .arg(trusted_ca_pem)
            .args(["-d", &db]))
        .expect("trust the test CA in the NSS database");

        let port = ns.enter(|| {
            std::net::TcpListener::bind(("127.0.0.1", 0))
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
        });
        let port = port.expect("a free port for chromedriver");
        let log = std::fs::File::create(home.path().join("chromedriver.log")).expect("log file");
        let chromedriver = ns
            .command(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .env("HOME", home.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            // chromedriver leads a group of its own, which the Chromium
            // processes it starts join: one kill ends them all.
            .process_group(0)
            .spawn()
            .expect("start chromedriver");
        let mut browser = Browser {
            ns,
            port,
            chromedriver,
            home,
            sessions: AtomicU32::new(0),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = browser.chromedriver.try_wait() {
                panic!("chromedriver exited ({status})\n{}", browser.log_tail());
            }
            if browser.status().is_ok_and(|s| s.contains("\"ready\":true")) {
                return browser;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not become ready\n{}",
                browser.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// chromedriver's URL, valid inside the namespace only.
    pub fn webdriver_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The temporary `HOME` (NSS database, profiles, `chromedriver.log`).
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// chromedriver's `/status` document (fetched from inside the namespace).
    fn status(&self) -> std::io::Result<String> {
        let port = self.port;
        self.ns.enter(move || {
            let wait = Duration::from_secs(2);
            let mut s = std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), wait)?;
            s.set_read_timeout(Some(wait))?;
            write!(
                s,
                "GET /status HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n"
            )?;
            // chromedriver may keep the connection open: read until the
            // document's `ready` field is in.
            let mut answer = Vec::new();
            let mut buf = [0u8; 4096];
            while !answer.windows(7).any(|w| w == b"\"ready\"") {
                match s.read(&mut buf)? {
                    0 => break,
                    n => answer.extend_from_slice(&buf[..n]),
                }
            }
            Ok(String::from_utf8_lossy(&answer).into_owned())
        })
    }

    /// Open a new WebDriver session (a fresh Chromium with a profile of its
    /// own) and run `f` with it on a thread inside the namespace, on a
    /// current-thread tokio runtime; the session is closed afterwards.
    /// Returns what `f` returns; panics, with chromedriver's log, when the
    /// session cannot start or `f` fails.
    pub fn run<T, F, Fut>(&self, f: F) -> T
    where
        T: Send,
        F: FnOnce(Client) -> Fut + Send,
        Fut: Future<Output = anyhow::Result<T>>,
    {
        self.run_with::<&str, _, _, _>(&[], f)
    }

    /// [`Browser::run`] with more Chromium command-line arguments, e.g.
    /// `--ignore-certificate-errors-spki-list=PIN` (an administrator who
    /// checked a certificate's fingerprint).
    pub fn run_with<S, T, F, Fut>(&self, extra_args: &[S], f: F) -> T
    where
        S: AsRef<str>,
        T: Send,
        F: FnOnce(Client) -> Fut + Send,
        Fut: Future<Output = anyhow::Result<T>>,
    {
        let url = self.webdriver_url();
        let session = self.sessions.fetch_add(1, Ordering::Relaxed);
        let capabilities = self.capabilities(session, extra_args);
        let result = self.ns.enter(move || -> anyhow::Result<T> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("tokio runtime")?;
            runtime.block_on(async move {
                let client =
                    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                        .capabilities(capabilities)
                        .connect(&url)
                        .await
                        .context("start a WebDriver session (Chromium)")?;
                let result = f(client.clone()).await;
                let closed = client.close().await;
                let value = result?;
                closed.context("close the WebDriver session")?;
                Ok(value)
            })
        });
        result.unwrap_or_else(|e| panic!("browser: {e:#}\n{}", self.log_tail()))
    }

    fn capabilities<S: AsRef<str>>(
        &self,
        session: u32,
        extra_args: &[S],
    ) -> fantoccini::wd::Capabilities {
        let profile = self.home.path().join(format!("profile-{session}"));
        let mut capabilities = serde_json::json!({
            "browserName": "chrome",
            "acceptInsecureCerts": false,
            "timeouts": { "pageLoad": WAIT.as_millis() as u64, "script": WAIT.as_millis() as u64 },
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--window-size=1280,1024",
                    "--no-first-run",
                    "--no-default-browser-check",
                    "--disable-background-networking",
                    "--disable-component-update",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        });
        if let Some(args) = capabilities["goog:chromeOptions"]["args"].as_array_mut() {
            args.extend(extra_args.iter().map(|a| a.as_ref().into()));
        }
        match capabilities {
            serde_json::Value::Object(map) => map,
            _ => unreachable!("an object"),
        }
    }

    /// The last lines of chromedriver's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text =
            std::fs::read_to_string(self.home.path().join("chromedriver.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let mut out = String::from("--- chromedriver.log (last lines)\n");
        for l in &lines[lines.len().saturating_sub(20)..] {
            out.push_str(l);
            out.push('\n');
        }
        out
    }
}

impl Drop for Browser<'_> {
    fn drop(&mut self) {
        use rustix::process::{Pid, Signal, kill_process, kill_process_group};
        let leader = Pid::from_child(&self.chromedriver);
        let _ = kill_process_group(leader, Signal::KILL);
        let _ = self.chromedriver.kill();
        let _ = self.chromedriver.wait();
        // A Chromium process that left the group (none is known to) still
        // names a profile under our HOME on its command line.
        let home = self.home.path().as_os_str().as_encoded_bytes().to_vec();
        let me = std::process::id();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok())
            else {
                continue;
            };
            if pid as u32 == me {
                continue;
            }
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            if cmdline.windows(home.len()).any(|w| w == home.as_slice())
                && let Some(pid) = Pid::from_raw(pid)
            {
                let _ = kill_process(pid, Signal::KILL);
            }
        }
        if std::thread::panicking() {
            let _ = writeln!(std::io::stderr(), "{}", self.log_tail());
        }
    }
}

/// Navigate to `url` and wait for the page; an error when Chromium shows
/// its certificate error page instead (see [`certificate_error`]).
pub async fn open(client: &Client, url: &str) -> anyhow::Result<()> {
    client
        .goto(url)
        .await
        .with_context(|| format!("open {url}"))?;
    if let Some(error) = certificate_error(client).await? {
        anyhow::bail!("open {url}: Chromium refused the certificate: {error}");
    }
    Ok(())
}

/// Navigate to `url`, which must give Chromium's certificate error page;
/// returns its error code (e.g. `NET::ERR_CERT_AUTHORITY_INVALID`).
pub async fn open_refused(client: &Client, url: &str) -> anyhow::Result<String> {
    // chromedriver answers the navigation with an error or not, depending
    // on the version; what the page shows afterwards is what counts.
    let _ = client.goto(url).await;
    certificate_error(client)
        .await?
        .with_context(|| format!("{url} loaded without a certificate error"))
}

/// When the current page is Chromium's certificate error page, its error
/// code (e.g. `NET::ERR_CERT_AUTHORITY_INVALID`).
pub async fn certificate_error(client: &Client) -> anyhow::Result<Option<String>> {
    let found = client.find_all(Locator::Css("#error-code")).await?;
    let Some(code) = found.first() else {
        return Ok(None);
    };
    let code = code.text().await?;
    Ok(code.contains("CERT").then_some(code))
}

/// The first element matching `css`, waiting up to [`WAIT`] for it.
pub async fn wait_for(client: &Client, css: &str) -> anyhow::Result<Element> {
    client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(css))
        .await
        .with_context(|| format!("waiting for `{css}`"))
}

/// The visible text of the first element matching `css` (waited for).
pub async fn text_of(client: &Client, css: &str) -> anyhow::Result<String> {
    let element = wait_for(client, css).await?;
    element
        .text()
        .await
        .with_context(|| format!("text of `{css}`"))
}

/// Save a PNG of the viewport at `path`, creating its directory.
pub async fn screenshot(client: &Client, path: &Path) -> anyhow::Result<()> {
    let png = client.screenshot().await.context("screenshot")?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    std::fs::write(path, png).with_context(|| format!("write {}", path.display()))
}
