//! `switchboard`: the daemon (`switchboard serve`) and the command line.
//!
//! `serve` owns the data directory and the system; every other command is a
//! client of its API on the local Unix socket, so the CLI has no power the
//! console lacks (but the operator's `fleet policy|rollout|status`, which
//! talk to a fleet's etcd, not to this appliance). Read commands take `--json` and print the API's document
//! as is (the README lists the fields).
//!
//! This crate is the edge: it wires the crates together, parses arguments
//! and the configuration file (`config`: `serve`'s settings, flags winning
//! over the file), renders text for people and turns errors into exit
//! codes (`anyhow` is allowed here and nowhere else). `check` is the
//! Nagios plugin over the monitoring socket; `serve` tells systemd when it
//! is ready and feeds its watchdog; `debian/` holds what the Debian package
//! adds to the binary (unit, configuration, NRPE example).

mod certcheck;
mod check;
mod cli;
mod config;
mod fleet;
mod serve;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "switchboard",
    version,
    about = "Control plane of a secure-VoIP appliance: which service is reachable on which NIC.",
    long_about = None
)]
pub struct Args {
    /// Data directory (store and lock). Default: /var/lib/switchboard as
    /// root, ~/.local/state/switchboard otherwise.
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The daemon's API socket. Default: /run/switchboard/api.sock as root,
    /// DATA_DIR/api.sock otherwise.
    #[arg(long, global = true, env = "SWITCHBOARD_SOCKET", value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Print the API's JSON document instead of text (read commands and edits).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: own the store and the system, serve the API.
    Serve(serve::ServeArgs),
    /// The appliance at a glance: applied revision, pending changes, diagnostics.
    Status,
    /// Health for monitoring: OK, WARNING or CRITICAL, and why (exit status
    /// 0, 1, 2; 3 when the daemon cannot be asked), the Nagios plugin
    /// convention; `--nagios` prints the plugin's line with perfdata.
    Check(check::CheckArgs),
    /// The NICs the kernel reports, with their addresses and services.
    Nics,
    /// The service catalog, with ports and NICs.
    Services,
    /// Show the services x NICs matrix, or edit a cell of it.
    Matrix {
        #[command(subcommand)]
        edit: Option<MatrixEdit>,
    },
    /// Replace the matrix with a suggested layout.
    Preset {
        #[command(subcommand)]
        preset: Preset,
    },
    /// Set the port (or range, FIRST-LAST) a service listens on.
    Port { service: String, ports: String },
    /// Throw away the candidate's edits (back to the applied revision).
    Discard,
    /// What an Update would change (or what changed between two revisions).
    Diff {
        #[arg(long)]
        from: Option<u64>,
        #[arg(long)]
        to: Option<u64>,
    },
    /// Validate, plan, apply and record the candidate as a new revision.
    Update {
        /// A note recorded with the revision.
        #[arg(long, short = 'm', default_value = "")]
        comment: String,
        /// Apply as pending: unless `switchboard confirm` comes within
        /// SECONDS, the appliance rolls back by itself. Required for an
        /// Update that would cut off the session it comes from.
        #[arg(long, value_name = "SECONDS")]
        confirm_within: Option<u64>,
    },
    /// Apply the configuration of an earlier revision again, as a new revision.
    Rollback {
        revision: u64,
        /// A note recorded with the revision (default: `rollback to revision N`).
        #[arg(long, short = 'm', default_value = "")]
        comment: String,
        #[arg(long, value_name = "SECONDS")]
        confirm_within: Option<u64>,
    },
    /// Keep the revision applied with --confirm-within.
    Confirm,
    /// The history of revisions, or one revision in full.
    Revisions {
        #[command(subcommand)]
        show: Option<RevisionsShow>,
    },
    /// Settings of one NIC.
    Nic {
        #[command(subcommand)]
        command: NicCommand,
    },
    /// The padlock check of every TLS service on every NIC it is enabled on.
    Padlock,
    /// Phone accounts.
    Account {
        #[command(subcommand)]
        command: AccountCommand,
    },
    /// The SIP/TLS host name and web services URI phones are given.
    Provisioning {
        #[command(subcommand)]
        command: ProvisioningCommand,
    },
    /// Send ACCOUNT a single-use activation link by SMS.
    Activate { username: String },
    /// Kill ACCOUNT's unused activation links and withdraw its SMS not yet
    /// delivered (a lost phone, a wrong number).
    Revoke { username: String },
    /// The SMS queue and outbox.
    Sms {
        #[command(subcommand)]
        command: SmsCommand,
    },
    /// Certificates.
    Cert {
        #[command(subcommand)]
        command: CertCommand,
    },
    /// The firewall.
    Firewall {
        #[command(subcommand)]
        command: FirewallCommand,
    },
    /// The console's administrators.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// The SIP edge's bans: the addresses banned now (reason, offences,
    /// expiry) and the ban policy; `bans policy` changes the policy.
    Bans {
        #[command(subcommand)]
        command: Option<BansCommand>,
    },
    /// A fleet of appliances on etcd: join one (this appliance), and the
    /// operator's policies, rollouts and status.
    Fleet {
        #[command(subcommand)]
        command: fleet::FleetCommand,
    },
    /// The calls in progress: who calls whom, since when, the NICs the
    /// media goes through, SRTP or not, packets relayed.
    Calls,
    /// Lift the ban of ADDRESS at once (kernel and Kamailio).
    Unban { address: String },
    /// The audit log of changes: what changed (in words), who (`system`
    /// for the appliance itself, `acme` for renewals), from where, and how
    /// it ended (newest first); filtered by actor, kind and time, or
    /// exported as CSV or JSON Lines.
    Audit {
        /// How many entries (1 to 1000; an export up to 100,000).
        #[arg(long)]
        limit: Option<usize>,
        /// Only this actor's entries (e.g. alice, root, system, acme).
        #[arg(long)]
        actor: Option<String>,
        /// Only this kind (cert.bind) or family of kinds (cert).
        #[arg(long)]
        kind: Option<String>,
        /// Only entries at or after this time (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// Only entries before this time (RFC 3339).
        #[arg(long)]
        until: Option<String>,
        /// Export as `csv` or `jsonl` (JSON Lines) on standard output.
        #[arg(long, value_name = "FORMAT")]
        format: Option<String>,
    },
    /// Download the whole configuration (candidate, revisions, certificates
    /// with their keys, accounts, administrators) into FILE, encrypted with
    /// a passphrase (age; the first line of --passphrase-file, or of
    /// standard input).
    Backup {
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[arg(long, value_name = "FILE")]
        passphrase_file: Option<PathBuf>,
    },
    /// Restore a backup into the candidate (certificates, accounts and
    /// administrators added; the candidate replaced): review the diff shown
    /// and `switchboard update`. A wrong passphrase changes nothing.
    Restore {
        file: PathBuf,
        #[arg(long, value_name = "FILE")]
        passphrase_file: Option<PathBuf>,
    },
    /// Write the man pages (man1/) and shell completions (bash, zsh, fish)
    /// of this command line into DIR (for the package; `cargo xtask deb`).
    #[command(hide = true)]
    Assets {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

/// The man pages and completions, generated from the CLI's definition.
fn assets(out: &std::path::Path) -> anyhow::Result<std::process::ExitCode> {
    use clap::CommandFactory as _;
    use clap_complete::Shell;
    let man = out.join("man1");
    let completions = out.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    clap_mangen::generate_to(Args::command(), &man)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut Args::command(), "switchboard", &completions)?;
    }
    Ok(std::process::ExitCode::SUCCESS)
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Set an administrator's console password (the administrator is
    /// created if needed). The password is the first line of --password-file,
    /// or of standard input.
    SetPassword {
        #[arg(long, default_value = "admin")]
        username: String,
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
    /// The administrators: roles, state, second factor.
    List,
    /// Add an administrator with ROLE (administrator, operator, auditor);
    /// the initial password is read as for set-password.
    Add {
        username: String,
        #[arg(long)]
        role: String,
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
    /// Give an administrator another role (its sessions end).
    Role { username: String, role: String },
    /// Disable an administrator: its sessions end, it cannot sign in.
    Disable { username: String },
    /// Enable a disabled administrator.
    Enable { username: String },
    /// Remove an administrator (its sessions end).
    Remove { username: String },
    /// Remove an administrator's second factor (a lost phone).
    RemoveTotp { username: String },
    /// Whether the administrators of ROLE must sign in with a second factor.
    TotpRequired {
        role: String,
        #[arg(value_parser = ["on", "off"])]
        required: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum MatrixEdit {
    /// Make SERVICE reachable on NIC.
    Allow { service: String, nic: String },
    /// Make SERVICE unreachable on NIC.
    Deny { service: String, nic: String },
}

#[derive(Debug, Subcommand)]
pub enum Preset {
    /// Console, SSH, SQL, NRPE, metrics and SIP/UDP on the internal NIC; SIP/TLS, web
    /// services and RTP on the external one.
    Production {
        #[arg(long)]
        internal: String,
        #[arg(long)]
        external: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum RevisionsShow {
    /// One revision in full: candidate, plan, warnings.
    Show { revision: u64 },
}

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Would this certificate give a closed padlock for NAME? Offline: no
    /// daemon needed, nothing stored. Exit status 0 only if it would.
    Check(certcheck::CheckArgs),
    /// Make a key on the appliance (kept there, never shown) and print a
    /// PKCS#10 signing request for it; import the CA's answer with `cert
    /// import NAME --bundle signed.pem` (no key).
    Request {
        name: String,
        /// A DNS name to certify (repeat for more; `*.` for a wildcard).
        #[arg(long, value_name = "NAME")]
        dns: Vec<String>,
        /// An IP address to certify (repeat for more).
        #[arg(long, value_name = "ADDRESS")]
        ip: Vec<String>,
        /// `ecdsa-p256` (default) or `rsa-3072`.
        #[arg(long, value_name = "TYPE")]
        key_type: Option<String>,
    },
    /// The keys made with `cert request` that wait for their certificate.
    Requests,
    /// Obtain a certificate from an ACME CA (RFC 8555), e.g. Let's Encrypt:
    /// the key is made on the appliance, each name proven by tls-alpn-01 on
    /// the web services' listener (the names must resolve to the appliance
    /// and web be open there). Bind it like any other certificate.
    Acme {
        name: String,
        /// A DNS name to certify (repeat for more, at most 10).
        #[arg(long, value_name = "NAME", required = true)]
        domain: Vec<String>,
        /// The CA's directory URL.
        #[arg(long, value_name = "URL")]
        directory: String,
        /// A contact for the account, `mailto:…` (repeat for more).
        #[arg(long, value_name = "URI")]
        contact: Vec<String>,
        /// `tls-alpn-01` (default; on the web services' port) or `http-01`
        /// (on the http service, which must be open on port 80).
        #[arg(long)]
        challenge: Option<String>,
    },
    /// Renew a certificate from an ACME CA now (the daemon does it by
    /// itself when a third of its lifetime is left): a new key and
    /// certificate, `NAME-N`, take its place in every binding, applied as a
    /// revision by `acme`.
    Renew { name: String },
    /// Store a certificate (PEM chain and key in any order, DER, PKCS#12).
    /// For a key made with `cert request NAME`, give the CA's answer
    /// without --key: it is attached to that key.
    Import {
        name: String,
        #[arg(long, value_name = "FILE")]
        bundle: PathBuf,
        /// The private key, when it is in a file of its own.
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// A file holding the PKCS#12 password or the key's passphrase.
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
    /// The stored certificates.
    List,
    /// One certificate, with its chain (never its key).
    Show { name: String },
    /// Delete a certificate no binding uses.
    Delete { name: String },
    /// Make SERVICE present CERT (its default, or on --nic only).
    Bind {
        service: String,
        cert: String,
        #[arg(long)]
        nic: Option<String>,
        /// Bind even an expired or not yet valid certificate.
        #[arg(long)]
        force: bool,
    },
    /// Remove SERVICE's default binding, or its binding on --nic.
    Unbind {
        service: String,
        #[arg(long)]
        nic: Option<String>,
    },
    /// The CAs trusted besides the system's roots (private PKIs).
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Create an account (a strong SIP password is generated; only its
    /// digest is kept).
    Add {
        #[arg(long)]
        phone: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        username: Option<String>,
        #[arg(long)]
        group: Option<String>,
        /// `native` or `linphone`.
        #[arg(long)]
        profile: Option<String>,
    },
    /// Every account; with a search, a filter or a page: one page of those
    /// that match, with each account's state.
    List {
        /// Found in the user name, name, group or phone number.
        #[arg(long)]
        search: Option<String>,
        /// `no-link`, `link-sent`, `activated` or `registered`.
        #[arg(long)]
        state: Option<String>,
        /// `username`, `name`, `phone` or `group`; `-` before it descends.
        #[arg(long, allow_hyphen_values = true)]
        sort: Option<String>,
        #[arg(long)]
        page: Option<u64>,
        #[arg(long)]
        per_page: Option<u64>,
    },
    Show {
        username: String,
    },
    /// Change an account (an empty --name or --group removes it).
    Set {
        username: String,
        #[arg(long)]
        phone: Option<String>,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        group: Option<String>,
        #[arg(long)]
        profile: Option<String>,
        /// Give it a new SIP password (the phone needs a new activation).
        #[arg(long)]
        new_password: bool,
    },
    Delete {
        username: String,
    },
    /// Create every account of a CSV file (phone,name,group,profile,username),
    /// or none if any row is bad.
    Import {
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProvisioningCommand {
    /// Change the provisioning settings (what is not given is kept; an
    /// empty value clears it; a value of only white space is refused).
    Set {
        #[arg(long)]
        sip_tls_hostname: Option<String>,
        #[arg(long)]
        web_uri: Option<String>,
        /// PLATFORM=URL (android, ios, other): where /install sends phones.
        #[arg(long, value_name = "PLATFORM=URL", value_parser = platform_url)]
        app_store: Vec<(String, String)>,
    },
}

/// `PLATFORM=URL` (an empty URL clears the platform's store).
fn platform_url(arg: &str) -> Result<(String, String), String> {
    arg.split_once('=')
        .map(|(platform, url)| (platform.to_owned(), url.to_owned()))
        .ok_or_else(|| format!("{arg:?} is not PLATFORM=URL"))
}

#[derive(Debug, Subcommand)]
pub enum BansCommand {
    /// Change the ban policy (candidate; what is not given is kept).
    Policy {
        /// Ban at all (true) or never (false).
        #[arg(long)]
        enabled: Option<bool>,
        /// Failed authentications from one address that ban it.
        #[arg(long)]
        failures: Option<u32>,
        /// Seconds the failures are counted in.
        #[arg(long, value_name = "SECS")]
        window: Option<u32>,
        /// Seconds a first ban lasts (doubled for each repeat offence).
        #[arg(long = "ban", value_name = "SECS")]
        ban: Option<u32>,
        /// The longest ban, seconds.
        #[arg(long = "max-ban", value_name = "SECS")]
        max_ban: Option<u32>,
        /// Requests from one address within 2 s that count as a flood.
        #[arg(long)]
        flood: Option<u32>,
        /// Networks never banned, comma-separated (replaces the list; an
        /// empty value clears it).
        #[arg(long, value_name = "NET,...")]
        trusted: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum SmsCommand {
    /// The queue and the outbox, newest first.
    List,
    /// Queue a failed message again (while the link in it is valid).
    Resend { id: u64 },
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Trust the CA certificate(s) of FILE (PEM or DER).
    Add { file: PathBuf },
    /// The CAs added.
    List,
}

#[derive(Debug, Subcommand)]
pub enum NicCommand {
    /// Declare the DNS name clients use for this NIC's address, the
    /// public address in front of it (NAT), and the DNS servers its clients
    /// use when they differ from the appliance's (split horizon: the
    /// padlock check asks them). What is not given is kept; an empty value
    /// clears it.
    Set {
        nic: String,
        #[arg(long)]
        hostname: Option<String>,
        #[arg(long)]
        public_address: Option<String>,
        /// Up to 3 addresses, separated by commas.
        #[arg(long, value_name = "ADDRESSES")]
        resolvers: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum FirewallCommand {
    /// The ruleset of the applied revision.
    Show,
}

pub(crate) fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

impl Args {
    fn data_dir(&self) -> PathBuf {
        if let Some(d) = &self.data_dir {
            return d.clone();
        }
        if is_root() {
            return PathBuf::from("/var/lib/switchboard");
        }
        let state = std::env::var_os("XDG_STATE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
            .unwrap_or_else(|| PathBuf::from("."));
        state.join("switchboard")
    }

    fn socket(&self) -> PathBuf {
        if let Some(s) = &self.socket {
            return s.clone();
        }
        if is_root() {
            PathBuf::from("/run/switchboard/api.sock")
        } else {
            self.data_dir().join("api.sock")
        }
    }
}

/// The exit status of a command whose standard output was closed before it
/// finished printing (`switchboard status | head -1`): what a shell reports
/// for a Unix tool ended by SIGPIPE (128 + 13).
const EXIT_READER_GONE: u8 = 141;

/// Print a command's output. Every command prints through here (never
/// `print!`, which panics when the reader has gone away): a closed pipe is
/// an error that ends the command quietly ([`EXIT_READER_GONE`]).
pub(crate) fn print_out(text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// Whether `e` is standard output's reader having gone away.
fn reader_gone(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// A refusal of the command line's own, before the daemon is asked (an
/// argument that does not parse, a file that cannot be read): a stable code
/// and a hint, like the API's errors, so `--json` can print it as one.
#[derive(Debug)]
pub(crate) struct CliError {
    pub code: &'static str,
    pub message: String,
    pub hint: String,
}

impl CliError {
    pub(crate) fn new(
        code: &'static str,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        CliError {
            code,
            message: message.into(),
            hint: hint.into(),
        }
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

/// The API's error document (`{"error": {code, message, hint}}`), on
/// standard output, for a failure under `--json`.
pub(crate) fn print_json_error(code: &str, message: &str, hint: &str) {
    let doc = serde_json::json!({ "error": { "code": code, "message": message, "hint": hint } });
    // A reader gone away has nothing left to read.
    let _ = print_out(&format!("{doc:#}\n"));
}

/// Whether `--json` is among the raw arguments, for errors found before
/// they are parsed (it is a global flag: it may come anywhere).
fn wants_json() -> bool {
    std::env::args_os()
        .take_while(|a| a != "--")
        .any(|a| a == "--json")
}

fn main() -> std::process::ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) if wants_json() && e.use_stderr() => {
            let message = e.kind().as_str().map_or_else(
                || e.to_string(),
                |kind| {
                    // clap's first line, without its `error: ` prefix.
                    let rendered = e.to_string();
                    let first = rendered.lines().next().unwrap_or(kind);
                    first.strip_prefix("error: ").unwrap_or(first).to_owned()
                },
            );
            print_json_error(
                "invalid-arguments",
                &message,
                "see `switchboard help` and the command's --help",
            );
            return std::process::ExitCode::from(2);
        }
        Err(e) => e.exit(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = match &args.command {
        Command::Serve(serve_args) => {
            runtime.block_on(serve::run(serve_args, args.data_dir(), args.socket()))
        }
        Command::Cert {
            command: CertCommand::Check(check),
        } => certcheck::run(check, args.json),
        Command::Check(check) => {
            let socket = check::api_socket(args.socket.as_deref(), args.socket());
            runtime.block_on(check::run(check, &socket, args.json))
        }
        Command::Assets { out } => assets(out),
        Command::Fleet { command } => {
            runtime.block_on(fleet::run(command, &args.socket(), args.json))
        }
        command => runtime.block_on(cli::run(command, &args.socket(), args.json)),
    };
    match result {
        Ok(code) => code,
        Err(e) if reader_gone(&e) => std::process::ExitCode::from(EXIT_READER_GONE),
        Err(e) if args.json => {
            let (code, hint) = match e.downcast_ref::<CliError>() {
                Some(refusal) => (refusal.code, refusal.hint.as_str()),
                None => (
                    "failed",
                    "see the message; run again without --json for details",
                ),
            };
            print_json_error(code, &format!("{e:#}"), hint);
            std::process::ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
