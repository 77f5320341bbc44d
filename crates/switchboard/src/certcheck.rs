//! `switchboard cert check`: the padlock check of a certificate file,
//! offline and without the daemon, so an administrator can test a
//! certificate before importing it. Exit status 0 only for a closed padlock.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::CliError;
use serde_json::json;
use switchboard_pki::{Host, ImportError, PrivateKey, TrustAnchors};

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The certificate: PEM (chain and key in any order), DER or PKCS#12.
    #[arg(long, value_name = "FILE")]
    bundle: PathBuf,
    /// The private key, when it is in a file of its own.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// CA certificates to trust besides the system's roots (a private PKI).
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// A file holding the PKCS#12 password or key passphrase (first line).
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// The name (or address) clients connect to.
    #[arg(long, value_name = "NAME")]
    hostname: String,
    /// Check as of this time (RFC 3339) instead of now.
    #[arg(long, value_name = "TIME")]
    at: Option<jiff::Timestamp>,
}

fn unreadable(what: &str, path: &Path, e: &std::io::Error) -> CliError {
    CliError::new(
        "unreadable-file",
        format!("cannot read {what}{}: {e}", path.display()),
        "check the path and that you may read the file",
    )
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    // The upload limit is enforced by the parser; refuse absurd files early.
    let len = std::fs::metadata(path)
        .map_err(|e| unreadable("", path, &e))?
        .len();
    if len > 16 * switchboard_pki::MAX_UPLOAD as u64 {
        return Err(CliError::new(
            "oversize",
            format!("{} is {len} bytes: not a certificate file", path.display()),
            "a certificate, its chain and its key take a few kilobytes: check that you picked the right file",
        )
        .into());
    }
    Ok(std::fs::read(path).map_err(|e| unreadable("", path, &e))?)
}

/// The first line of a password file, without its line ending.
pub fn read_password(path: &Path) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| unreadable("the password file ", path, &e))?;
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

fn import_error(what: &str, e: &ImportError, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        let doc = json!({ "error": { "code": e.code(), "message": format!("{what}: {e}"), "hint": e.hint() } });
        crate::print_out(&format!("{doc:#}\n"))?;
    } else {
        eprintln!("error[{}]: {what}: {e}\n  = hint: {}", e.code(), e.hint());
    }
    Ok(ExitCode::FAILURE)
}

pub fn run(args: &CheckArgs, json: bool) -> anyhow::Result<ExitCode> {
    let host: Host = args.hostname.parse().map_err(|e| {
        CliError::new(
            "invalid-hostname",
            format!("--hostname {:?}: {e}", args.hostname),
            "give the DNS name or IP address phones connect to, such as voip.example.test",
        )
    })?;
    let password = args
        .password_file
        .as_deref()
        .map(read_password)
        .transpose()?;
    let bundle = match switchboard_pki::import(&read(&args.bundle)?, None, password.as_deref()) {
        Ok(b) => b,
        Err(e) => return import_error(&args.bundle.display().to_string(), &e, json),
    };
    let key = match &args.key {
        Some(path) => match PrivateKey::parse(&read(path)?, password.as_deref()) {
            Ok(k) => Some(k),
            Err(e) => return import_error(&path.display().to_string(), &e, json),
        },
        None => None,
    };
    let mut anchors = match switchboard_pki::system_roots() {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "warning: the system's trusted CAs cannot be read ({e}); only --ca-file is trusted"
            );
            TrustAnchors::default()
        }
    };
    if let Some(path) = &args.ca_file {
        let cas = switchboard_pki::read_certificates(&read(path)?)
            .and_then(|certs| TrustAnchors::from_ca_certs(&certs));
        match cas {
            Ok(cas) => anchors.extend(cas),
            Err(e) => return import_error(&path.display().to_string(), &e, json),
        }
    }
    let now = args.at.unwrap_or_else(jiff::Timestamp::now);
    let report = switchboard_pki::check(&bundle, key.as_ref(), &anchors, &host, now);
    let mut text = String::new();
    if json {
        let doc = json!({ "ok": report.ok, "host": host, "at": now, "certificate": bundle.info(), "chain_length": bundle.chain().len(), "unrelated_certificates": bundle.unused().len(), "findings": report.findings });
        let _ = writeln!(text, "{doc:#}");
    } else {
        let info = bundle.info();
        let names = crate::cli::cert_names(info);
        let _ = writeln!(text, "certificate: {}", info.subject);
        let _ = writeln!(text, "issuer:      {}", info.issuer);
        let _ = writeln!(text, "names:       {}", names.join(", "));
        let _ = writeln!(
            text,
            "valid:       {} to {}",
            info.not_before, info.not_after
        );
        let _ = writeln!(text, "sha256:      {}", info.fingerprint);
        let _ = writeln!(text, "chain:       {} certificate(s)", bundle.chain().len());
        if !bundle.unused().is_empty() {
            let _ = writeln!(
                text,
                "unrelated:   {} certificate(s) of the bundle, not on the chain (ignored, never served)",
                bundle.unused().len()
            );
        }
        for f in &report.findings {
            let _ = writeln!(text, "{f}");
        }
        let verdict = if report.ok { "closed" } else { "NO closed" };
        let _ = writeln!(text, "{verdict} padlock for {host}");
    }
    crate::print_out(&text)?;
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
