//! The client commands: one API call each, rendered as text or JSON.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use switchboard_domain::{Diagnostic, ServiceId};
use switchboard_engine::accounts::RegistrationsView;
use switchboard_engine::bans::{BanView, BansView};
use switchboard_engine::calls::CallView;
use switchboard_engine::views::*;
use switchboard_store::{Revision, RevisionSummary};
use switchboard_web::client::{Client, ClientError};
use switchboard_web::contract::*;
use switchboard_web::error::ErrorDocument;

use crate::{
    AccountCommand, AdminCommand, BansCommand, CaCommand, CertCommand, Command, FirewallCommand,
    MatrixEdit, NicCommand, Preset, ProvisioningCommand, RevisionsShow, SmsCommand,
};

/// Run one client command. API errors are printed compiler-style with
/// their code, hint and diagnostics, and give exit status 1.
pub async fn run(command: &Command, socket: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let client = Client::new(socket);
    match call(&client, command, json).await {
        Ok(text) => {
            crate::print_out(&text)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(ClientError::Api { body, .. }) if json => {
            crate::print_out(&pretty(&ErrorDocument { error: *body }))?;
            Ok(ExitCode::FAILURE)
        }
        Err(ClientError::Api { body, .. }) => {
            eprintln!(
                "error[{}]: {}\n  = hint: {}",
                body.code, body.message, body.hint
            );
            for d in &body.diagnostics {
                eprintln!("{d}");
            }
            Ok(ExitCode::FAILURE)
        }
        Err(e) => Err(e.into()),
    }
}

fn pretty<T: Serialize>(v: &T) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("\"{e}\""));
    s.push('\n');
    s
}

/// GET `path`, and render the answer as JSON or with `text`.
async fn show<T: DeserializeOwned + Serialize>(
    client: &Client,
    path: &str,
    json: bool,
    text: impl FnOnce(&T) -> String,
) -> Result<String, ClientError> {
    let v: T = client.get(path).await?;
    Ok(if json { pretty(&v) } else { text(&v) })
}

async fn edit<B: Serialize>(
    client: &Client,
    path: &str,
    body: &B,
    json: bool,
    what: &str,
) -> Result<String, ClientError> {
    let v: Edit = client.post(path, body).await?;
    if json {
        return Ok(pretty(&v));
    }
    let mut out = if v.changed {
        format!("candidate changed: {what}\n")
    } else {
        format!("no change: {what} already\n")
    };
    let errors: Vec<Diagnostic> = v
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .cloned()
        .collect();
    push_diagnostics(&mut out, &errors);
    let warnings = v.diagnostics.len() - errors.len();
    if warnings > 0 {
        let _ = writeln!(out, "{warnings} warning(s): see `switchboard status`");
    }
    out.push_str("(nothing is applied until `switchboard update`)\n");
    Ok(out)
}

async fn call(client: &Client, command: &Command, json: bool) -> Result<String, ClientError> {
    match command {
        Command::Serve(_)
        | Command::Check(_)
        | Command::Assets { .. }
        | Command::Fleet { .. }
        | Command::Cert {
            command: CertCommand::Check(_),
        } => unreachable!("not a client command"),
        Command::Status => show(client, "/v1/status", json, status_text).await,
        Command::Nics => show(client, "/v1/nics", json, |v: &Vec<NicView>| nics_text(v)).await,
        Command::Services => {
            show(client, "/v1/services", json, |v: &Vec<ServiceView>| {
                services_text(v)
            })
            .await
        }
        Command::Matrix { edit: None } => show(client, "/v1/matrix", json, matrix_text).await,
        Command::Matrix {
            edit: Some(MatrixEdit::Allow { service, nic }),
        } => {
            let body = CellRequest {
                service: service.clone(),
                nic: nic.clone(),
            };
            edit(
                client,
                "/v1/matrix/allow",
                &body,
                json,
                &format!("{service} allowed on {nic}"),
            )
            .await
        }
        Command::Matrix {
            edit: Some(MatrixEdit::Deny { service, nic }),
        } => {
            let body = CellRequest {
                service: service.clone(),
                nic: nic.clone(),
            };
            edit(
                client,
                "/v1/matrix/deny",
                &body,
                json,
                &format!("{service} denied on {nic}"),
            )
            .await
        }
        Command::Preset {
            preset: Preset::Production { internal, external },
        } => {
            let body = PresetRequest {
                internal: internal.clone(),
                external: external.clone(),
            };
            let what = format!("production layout, internal {internal}, external {external}");
            edit(client, "/v1/preset/production", &body, json, &what).await
        }
        Command::Port { service, ports } => {
            let body = PortRequest {
                service: service.clone(),
                ports: ports.clone(),
            };
            edit(
                client,
                "/v1/ports",
                &body,
                json,
                &format!("{service} on port {ports}"),
            )
            .await
        }
        Command::Discard => {
            edit(
                client,
                "/v1/discard",
                &json!({}),
                json,
                "candidate is the applied revision",
            )
            .await
        }
        Command::Diff { from, to } => {
            let mut query = Vec::new();
            if let Some(f) = from {
                query.push(format!("from={f}"));
            }
            if let Some(t) = to {
                query.push(format!("to={t}"));
            }
            let path = format!("/v1/diff?{}", query.join("&"));
            show(client, &path, json, diff_text).await
        }
        Command::Update {
            comment,
            confirm_within,
        } => {
            let body = UpdateRequest {
                comment: comment.clone(),
                confirm_within: *confirm_within,
            };
            let v: UpdateView = client.post("/v1/update", &body).await?;
            Ok(if json { pretty(&v) } else { update_text(&v) })
        }
        Command::Rollback {
            revision,
            comment,
            confirm_within,
        } => {
            let body = RollbackRequest {
                revision: *revision,
                comment: comment.clone(),
                confirm_within: *confirm_within,
            };
            let v: UpdateView = client.post("/v1/rollback", &body).await?;
            Ok(if json { pretty(&v) } else { update_text(&v) })
        }
        Command::Confirm => {
            let v: ConfirmView = client.post("/v1/confirm", &json!({})).await?;
            Ok(if json {
                pretty(&v)
            } else {
                format!("revision {} confirmed\n", v.revision)
            })
        }
        Command::Revisions { show: None } => {
            show(client, "/v1/revisions", json, |v: &Vec<RevisionSummary>| {
                revisions_text(v)
            })
            .await
        }
        Command::Revisions {
            show: Some(RevisionsShow::Show { revision }),
        } => {
            show(
                client,
                &format!("/v1/revisions/{revision}"),
                json,
                revision_text,
            )
            .await
        }
        Command::Firewall {
            command: FirewallCommand::Show,
        } => show(client, "/v1/firewall", json, firewall_text).await,
        Command::Padlock => {
            show(client, "/v1/padlock", json, |v: &Vec<PadlockView>| {
                padlock_text(v)
            })
            .await
        }
        Command::Nic {
            command:
                NicCommand::Set {
                    nic,
                    hostname,
                    public_address,
                    resolvers,
                },
        } => {
            let body = NicSettingsRequest {
                nic: nic.clone(),
                hostname: hostname.clone(),
                public_address: public_address.clone(),
                resolvers: resolvers.clone(),
            };
            edit(
                client,
                "/v1/nics/settings",
                &body,
                json,
                &format!("settings of {nic}"),
            )
            .await
        }
        Command::Cert { command } => cert(client, command, json).await,
        Command::Account { command } => account(client, command, json).await,
        Command::Provisioning {
            command:
                ProvisioningCommand::Set {
                    sip_tls_hostname,
                    web_uri,
                    app_store,
                },
        } => {
            let body = ProvisioningRequest {
                sip_tls_hostname: sip_tls_hostname.clone(),
                web_uri: web_uri.clone(),
                app_stores: app_store.iter().cloned().collect(),
            };
            edit(
                client,
                "/v1/provisioning",
                &body,
                json,
                "provisioning settings",
            )
            .await
        }
        Command::Activate { username } => {
            let v: ActivationView = client
                .post(
                    "/v1/activate",
                    &ActivateRequest {
                        username: username.clone(),
                    },
                )
                .await?;
            Ok(if json {
                pretty(&v)
            } else {
                format!(
                    "activation link for {} queued as SMS {} to {} ({}); valid until {}\n",
                    v.username, v.sms_id, v.to, v.gateway, v.expires_at
                )
            })
        }
        Command::Revoke { username } => {
            let v: RevokeView = client
                .post(
                    "/v1/revoke",
                    &ActivateRequest {
                        username: username.clone(),
                    },
                )
                .await?;
            Ok(if json {
                pretty(&v)
            } else {
                format!(
                    "{}: {} link(s) revoked, {} message(s) withdrawn\n",
                    v.username, v.links, v.messages
                )
            })
        }
        Command::Sms {
            command: SmsCommand::List,
        } => show(client, "/v1/sms", json, |v: &Vec<SmsView>| sms_text(v)).await,
        Command::Sms {
            command: SmsCommand::Resend { id },
        } => {
            let v: SmsView = client
                .post(&format!("/v1/sms/{id}/resend"), &json!({}))
                .await?;
            Ok(if json {
                pretty(&v)
            } else {
                format!("SMS {} to {} queued again\n", v.id, v.to)
            })
        }
        Command::Admin {
            command:
                AdminCommand::SetPassword {
                    username,
                    password_file,
                },
        } => {
            let password = match password_file {
                Some(file) => crate::certcheck::read_password(file),
                None => password_from_stdin(username),
            }
            .map_err(|e| ClientError::Protocol(format!("{e:#}")))?;
            let body = PasswordRequest {
                username: Some(username.clone()),
                password,
                current_password: None,
            };
            let v: PasswordChanged = client.post("/v1/admin/password", &body).await?;
            Ok(if json {
                pretty(&v)
            } else {
                format!("password of {username} changed\n")
            })
        }
        Command::Admin {
            command: AdminCommand::List,
        } => {
            show(
                client,
                "/v1/admins",
                json,
                |v: &Vec<switchboard_engine::AdminView>| admins_text(v),
            )
            .await
        }
        Command::Admin {
            command:
                AdminCommand::Add {
                    username,
                    role,
                    password_file,
                },
        } => {
            let password = match password_file {
                Some(file) => crate::certcheck::read_password(file),
                None => password_from_stdin(username),
            }
            .map_err(|e| ClientError::Protocol(format!("{e:#}")))?;
            let role = parse_role(role)?;
            let body = NewAdminRequest {
                username: username.clone(),
                password,
                role,
            };
            let v: switchboard_engine::AdminView = client.post("/v1/admins", &body).await?;
            Ok(if json {
                pretty(&v)
            } else {
                format!("administrator {} added with role {}\n", v.username, v.role)
            })
        }
        Command::Admin {
            command: AdminCommand::Role { username, role },
        } => {
            let body = AdminChangeRequest {
                role: Some(parse_role(role)?),
                disabled: None,
            };
            admin_change(client, username, &body, json).await
        }
        Command::Admin {
            command: AdminCommand::Disable { username } | AdminCommand::Enable { username },
        } => {
            let disabled = matches!(
                command,
                Command::Admin {
                    command: AdminCommand::Disable { .. }
                }
            );
            let body = AdminChangeRequest {
                role: None,
                disabled: Some(disabled),
            };
            admin_change(client, username, &body, json).await
        }
        Command::Admin {
            command: AdminCommand::Remove { username },
        } => {
            let v: Deleted = client
                .delete(&format!("/v1/admins/{}", path_segment(username)))
                .await?;
            Ok(if json {
                pretty(&v)
            } else {
                format!(
                    "administrator {} removed; their sessions ended\n",
                    v.deleted
                )
            })
        }
        Command::Admin {
            command: AdminCommand::RemoveTotp { username },
        } => {
            let v: Deleted = client
                .delete(&format!("/v1/admins/{}/totp", path_segment(username)))
                .await?;
            Ok(if json {
                pretty(&v)
            } else {
                format!("{} removed\n", v.deleted)
            })
        }
        Command::Admin {
            command: AdminCommand::TotpRequired { role, required },
        } => {
            let body = TotpPolicyRequest {
                role: parse_role(role)?,
                required: required == "on",
            };
            let v: Vec<switchboard_engine::Role> =
                client.post("/v1/admin/totp-policy", &body).await?;
            Ok(if json {
                pretty(&v)
            } else if v.is_empty() {
                "no role requires a second factor\n".into()
            } else {
                format!(
                    "a second factor is required for: {}\n",
                    v.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ")
                )
            })
        }
        Command::Calls => show(client, "/v1/calls", json, |v: &Vec<CallView>| calls_text(v)).await,
        Command::Bans { command: None } => {
            show(client, "/v1/bans", json, |v: &BansView| bans_text(v)).await
        }
        Command::Bans {
            command:
                Some(BansCommand::Policy {
                    enabled,
                    failures,
                    window,
                    ban,
                    max_ban,
                    flood,
                    trusted,
                }),
        } => {
            let body = switchboard_domain::BanPolicyChange {
                enabled: *enabled,
                failures: *failures,
                window_secs: *window,
                ban_secs: *ban,
                max_ban_secs: *max_ban,
                flood_requests: *flood,
                trusted: trusted.as_ref().map(|t| {
                    t.split(',')
                        .map(str::trim)
                        .filter(|n| !n.is_empty())
                        .map(str::to_owned)
                        .collect()
                }),
            };
            edit(client, "/v1/bans/policy", &body, json, "ban policy").await
        }
        Command::Unban { address } => {
            let v: BanView = client
                .delete(&format!("/v1/bans/{}", path_segment(address)))
                .await?;
            Ok(if json {
                pretty(&v)
            } else {
                format!("ban of {} lifted\n", v.address)
            })
        }
        Command::Audit {
            limit,
            actor,
            kind,
            since,
            until,
            format,
        } => {
            let mut q = form_urlencoded::Serializer::new(String::new());
            if let Some(l) = limit {
                q.append_pair("limit", &l.to_string());
            }
            for (k, v) in [
                ("actor", actor),
                ("kind", kind),
                ("since", since),
                ("until", until),
                ("format", format),
            ] {
                if let Some(v) = v {
                    q.append_pair(k, v);
                }
            }
            let path = format!("/v1/audit?{}", q.finish());
            if format.is_some() {
                let bytes = client
                    .bytes(switchboard_web::client::Method::GET, &path, None)
                    .await?;
                return Ok(String::from_utf8_lossy(&bytes).into_owned());
            }
            show(client, &path, json, |v: &Vec<AuditView>| audit_text(v)).await
        }
        Command::Backup {
            out,
            passphrase_file,
        } => {
            let passphrase = passphrase(passphrase_file.as_deref(), "the backup")?;
            let body = serde_json::to_vec(&BackupRequest { passphrase })
                .map_err(|e| ClientError::Protocol(e.to_string()))?;
            let archive = client
                .bytes(
                    switchboard_web::client::Method::POST,
                    "/v1/backup",
                    Some(body),
                )
                .await?;
            write_private(out, &archive).map_err(|e| ClientError::Protocol(format!("{e:#}")))?;
            Ok(if json {
                pretty(&json!({ "file": out, "bytes": archive.len() }))
            } else {
                format!(
                    "backup written to {} ({} bytes, encrypted with the passphrase)\n",
                    out.display(),
                    archive.len()
                )
            })
        }
        Command::Restore {
            file,
            passphrase_file,
        } => {
            use base64::Engine as _;
            let archive = std::fs::read(file).map_err(|e| {
                ClientError::Protocol(format!("cannot read {}: {e}", file.display()))
            })?;
            if archive.len() > switchboard_engine::backup::MAX_ARCHIVE {
                return Err(ClientError::Protocol(format!(
                    "{} has {} bytes: not a switchboard backup (at most {})",
                    file.display(),
                    archive.len(),
                    switchboard_engine::backup::MAX_ARCHIVE
                )));
            }
            let passphrase = passphrase(passphrase_file.as_deref(), "the backup")?;
            let body = RestoreRequest {
                archive: base64::engine::general_purpose::STANDARD.encode(&archive),
                passphrase,
            };
            let v: switchboard_engine::backup::RestoreView =
                client.post("/v1/restore", &body).await?;
            Ok(if json { pretty(&v) } else { restore_text(&v) })
        }
    }
}

/// `text` as one path segment: everything but `[A-Za-z0-9.:_-]`
/// percent-encoded, so that the server sees (and refuses) what was typed.
fn path_segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b':' | b'_' | b'-' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn calls_text(calls: &[CallView]) -> String {
    if calls.is_empty() {
        return "no call in progress\n".into();
    }
    let mut out = String::new();
    for c in calls {
        let who = if c.caller.is_empty() {
            format!("(call {})", c.call_id)
        } else {
            format!("{} -> {}", c.caller, c.callee)
        };
        let since = c
            .answered_at
            .or(c.started_at)
            .map(|t| t.to_string())
            .unwrap_or_else(|| "?".into());
        let media = match c.srtp {
            Some(true) => format!(
                "SRTP ({}) via {}, {} packets relayed",
                c.crypto_suites.join(", "),
                c.media_nics.join(" <-> "),
                c.packets
            ),
            Some(false) => format!(
                "NOT SRTP via {}, {} packets relayed",
                c.media_nics.join(" <-> "),
                c.packets
            ),
            None => "no media at the relay".into(),
        };
        let _ = writeln!(out, "{who:<30} {:<10} since {since}  {media}", c.state);
    }
    out
}

fn bans_text(v: &BansView) -> String {
    let mut out = String::new();
    if v.bans.is_empty() {
        out.push_str("no address is banned\n");
    }
    for b in &v.bans {
        let _ = writeln!(
            out,
            "{:<40} {:<14} offence {:<3} {} s left (until {}){}",
            b.address.to_string(),
            b.reason,
            b.offences,
            b.remaining_secs,
            b.expires_at,
            match b.in_kernel {
                Some(false) => " NOT in the kernel's set",
                _ => "",
            }
        );
    }
    let p = &v.policy;
    let _ = writeln!(
        out,
        "policy:   {}",
        if p.enabled {
            format!(
                "ban after {} failed authentications within {} s, or {} requests within 2 s; {} s, doubled per repeat offence up to {} s",
                p.failures, p.window_secs, p.flood_requests, p.ban_secs, p.max_ban_secs
            )
        } else {
            "off: nobody is banned".into()
        }
    );
    let trusted: Vec<String> = p.trusted.iter().map(ToString::to_string).collect();
    let _ = writeln!(
        out,
        "trusted:  {}",
        if trusted.is_empty() {
            "none (addresses that registered are trusted while registered)".into()
        } else {
            trusted.join(", ")
        }
    );
    if v.candidate_policy.is_some() {
        out.push_str(
            "(the candidate's policy differs: it applies at the next `switchboard update`)\n",
        );
    }
    out
}

/// The first line of standard input, without its line break.
fn password_from_stdin(username: &str) -> anyhow::Result<String> {
    use std::io::{BufRead as _, IsTerminal as _};
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("new password for {username} (one line; it is shown as you type): ");
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .map_err(|e| anyhow::anyhow!("cannot read the password from standard input: {e}"))?;
    let end = line.trim_end_matches(['\n', '\r']).len();
    line.truncate(end);
    Ok(line)
}

fn audit_text(entries: &[AuditView]) -> String {
    if entries.is_empty() {
        return "no entry\n".into();
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|a| {
            vec![
                a.at.to_string(),
                a.actor.clone(),
                a.address.clone(),
                a.kind.clone(),
                a.action.clone(),
                a.outcome.clone(),
            ]
        })
        .collect();
    table(&["TIME", "ACTOR", "FROM", "KIND", "WHAT", "OUTCOME"], &rows)
}

fn admins_text(admins: &[switchboard_engine::AdminView]) -> String {
    let rows: Vec<Vec<String>> = admins
        .iter()
        .map(|a| {
            vec![
                a.username.clone(),
                a.role.to_string(),
                if a.disabled { "disabled" } else { "enabled" }.into(),
                match (a.totp, a.totp_required) {
                    (true, _) => format!("totp ({} recovery codes)", a.recovery_codes),
                    (false, true) => "none (required)".into(),
                    (false, false) => "none".into(),
                },
            ]
        })
        .collect();
    table(&["NAME", "ROLE", "STATE", "SECOND FACTOR"], &rows)
}

fn restore_text(v: &switchboard_engine::backup::RestoreView) -> String {
    let mut out = format!(
        "backup of {} restored into the candidate: {} certificate(s) and {} account(s) added, administrators restored: {}\n",
        v.created_at,
        v.certificates_added.len(),
        v.accounts_added,
        v.admins_restored.join(", ")
    );
    if v.diff.summary.is_empty() {
        out.push_str("the candidate is the applied configuration: nothing to update\n");
    } else {
        out.push_str(
            "changes from the applied revision (review them, then `switchboard update`):\n",
        );
        for line in &v.diff.summary {
            let _ = writeln!(out, "  {line}");
        }
    }
    out
}

fn parse_role(role: &str) -> Result<switchboard_engine::Role, ClientError> {
    role.parse().map_err(|_| {
        ClientError::Protocol(format!(
            "unknown role {role:?}: give administrator, operator or auditor"
        ))
    })
}

async fn admin_change(
    client: &Client,
    username: &str,
    body: &AdminChangeRequest,
    json: bool,
) -> Result<String, ClientError> {
    let v: switchboard_engine::AdminView = client
        .post(&format!("/v1/admins/{}", path_segment(username)), body)
        .await?;
    Ok(if json {
        pretty(&v)
    } else {
        format!(
            "{}: {}, {}\n",
            v.username,
            v.role,
            if v.disabled {
                "disabled (sessions ended)"
            } else {
                "enabled"
            }
        )
    })
}

/// A passphrase: the first line of `file`, or of standard input.
fn passphrase(file: Option<&Path>, what: &str) -> Result<String, ClientError> {
    match file {
        Some(f) => crate::certcheck::read_password(f),
        None => password_from_stdin(what),
    }
    .map_err(|e| ClientError::Protocol(format!("{e:#}")))
}

/// Write `bytes` to `path`, readable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

fn push_diagnostics(out: &mut String, diagnostics: &[Diagnostic]) {
    for d in diagnostics {
        let _ = writeln!(out, "{d}");
    }
}

fn status_text(s: &StatusView) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "switchboard {}  (data in {})", s.version, s.data_dir);
    let _ = writeln!(out, "firewall:  {:?} mode", s.firewall_mode);
    match (s.applied_revision, s.applied_at) {
        (Some(n), Some(at)) => {
            let _ = writeln!(out, "applied:   revision {n} ({at})");
        }
        _ => {
            let _ = writeln!(
                out,
                "applied:   nothing yet (factory state: every service on every NIC)"
            );
        }
    }
    if let Some(p) = &s.pending {
        let back = p
            .previous
            .map_or("the factory state".to_owned(), |n| format!("revision {n}"));
        let _ = writeln!(
            out,
            "PENDING:   revision {} must be confirmed (`switchboard confirm`) within {} s, or it rolls back to {back}",
            p.revision, p.seconds_left
        );
    }
    let pending = if s.candidate_changed {
        "the candidate has changes; see `switchboard diff`, apply with `switchboard update`"
    } else {
        "the candidate is the applied revision"
    };
    let _ = writeln!(out, "candidate: {pending}");
    let _ = writeln!(
        out,
        "NICs:      {} ({} without address{})",
        s.nics,
        s.unconfigured_nics.len(),
        if s.new_nics.is_empty() {
            String::new()
        } else {
            format!(", new: {}", s.new_nics.join(", "))
        }
    );
    let _ = writeln!(
        out,
        "SIP:       {}",
        s.sip.as_deref().unwrap_or("no SIP server is running (start the daemon with --sip kamailio); the firewall still enforces the SIP rows")
    );
    let _ = writeln!(
        out,
        "media:     {}",
        s.media.as_deref().unwrap_or("no media relay is running (start the daemon with --media rtpengine); calls are refused, the firewall still enforces the rtp row")
    );
    let _ = writeln!(
        out,
        "bans:      {} address(es) banned now, {} in the last day (see `switchboard bans`)",
        s.bans.active, s.bans.recent
    );
    for x in &s.expiring {
        let level = match x.severity {
            switchboard_domain::Severity::Error => "error",
            switchboard_domain::Severity::Warning => "warning",
        };
        let _ = writeln!(
            out,
            "{level}[{}]: {}\n  = hint: {}",
            x.code, x.message, x.hint
        );
    }
    if s.open_padlocks.is_empty() {
        let _ = writeln!(
            out,
            "padlock:   closed for all {} TLS binding(s)",
            s.padlocks
        );
    } else {
        let _ = writeln!(
            out,
            "padlock:   OPEN for {} (see `switchboard padlock`)",
            s.open_padlocks.join(", ")
        );
    }
    let _ = writeln!(
        out,
        "checks:    {} error(s), {} warning(s)",
        s.errors, s.warnings
    );
    push_diagnostics(&mut out, &s.diagnostics);
    out
}

/// Left-aligned columns.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(cell);
            } else {
                let _ = write!(l, "{cell:<w$}  ");
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.to_vec(), &mut out);
    for row in rows {
        line(row.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

fn list(items: &[impl ToString]) -> String {
    if items.is_empty() {
        "-".into()
    } else {
        items
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn nics_text(nics: &[NicView]) -> String {
    let rows: Vec<Vec<String>> = nics
        .iter()
        .map(|n| {
            let state = match n.state {
                NicState::Present => "",
                NicState::New => " (new)",
                NicState::Gone => " (gone)",
            };
            let link = match (n.state, n.up, n.running) {
                (NicState::Gone, _, _) => "-",
                (_, false, _) => "down",
                (_, true, false) => "no-carrier",
                (_, true, true) => "up",
            };
            let addrs = if n.configured || !n.addresses.is_empty() {
                list(&n.addresses)
            } else {
                "-".into()
            };
            vec![
                format!("{}{state}", n.name),
                link.into(),
                n.mac.clone().unwrap_or_else(|| "-".into()),
                if n.configured {
                    addrs
                } else {
                    format!("{addrs} (not configured)")
                },
                list(&n.services),
            ]
        })
        .collect();
    table(&["NIC", "LINK", "MAC", "ADDRESSES", "SERVICES"], &rows)
}

fn services_text(services: &[ServiceView]) -> String {
    let rows: Vec<Vec<String>> = services
        .iter()
        .map(|s| {
            vec![
                s.id.to_string(),
                format!("{}/{}", s.transport, s.ports),
                if s.tls { "yes" } else { "-" }.into(),
                list(&s.nics),
                s.label.clone(),
            ]
        })
        .collect();
    table(&["SERVICE", "PORTS", "TLS", "NICS", "LABEL"], &rows)
}

fn matrix_text(m: &MatrixView) -> String {
    let mut header = vec!["SERVICE".to_owned()];
    header.extend(m.nics.iter().map(|n| {
        if m.new_nics.contains(n) {
            format!("{n}*")
        } else {
            n.clone()
        }
    }));
    let rows: Vec<Vec<String>> = ServiceId::all()
        .map(|s| {
            let mut row = vec![s.to_string()];
            for nic in &m.nics {
                let on = m.candidate.nics_of(s).iter().any(|n| n.as_str() == nic);
                let was = m
                    .applied
                    .as_ref()
                    .map(|a| a.nics_of(s).iter().any(|n| n.as_str() == nic));
                row.push(
                    match (on, was) {
                        (true, Some(false)) => "+",
                        (false, Some(true)) => "-",
                        (true, _) => "x",
                        (false, _) => ".",
                    }
                    .into(),
                );
            }
            row
        })
        .collect();
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    let mut out = table(&header, &rows);
    let applied = match m.applied_revision {
        Some(n) => format!("revision {n}"),
        None => "nothing".into(),
    };
    let _ = writeln!(
        out,
        "\nx allowed  . denied  + to be allowed / - to be denied by the next Update (applied: {applied}; mode: {})",
        m.mode
    );
    if !m.new_nics.is_empty() {
        let _ = writeln!(out, "* new NIC: no service until you assign one");
    }
    out
}

fn diff_text(d: &DiffView) -> String {
    let mut out = format!("from {} to {}\n", d.from, d.to);
    if !d.changed {
        out.push_str("no difference\n");
        return out;
    }
    for c in &d.diff.matrix {
        let sign = match c.change {
            Change::Added => "+",
            Change::Removed => "-",
        };
        let _ = writeln!(out, "{sign} {} on {}", c.service, c.nic);
    }
    // The summary says the matrix first: its other lines follow.
    for line in d.summary.iter().skip(d.diff.matrix.len()) {
        let _ = writeln!(out, "~ {line}");
    }
    for n in &d.diff.notes {
        let _ = writeln!(out, "! {}", n.text);
    }
    for (what, text) in [
        ("firewall ruleset", &d.diff.ruleset),
        ("kamailio.cfg", &d.diff.kamailio.cfg),
        ("Kamailio tls.cfg", &d.diff.kamailio.tls_cfg),
        ("rtpengine.conf", &d.diff.media),
    ] {
        if !text.is_empty() {
            let _ = write!(out, "\n{what}:\n{text}");
        }
    }
    out
}

fn update_text(u: &UpdateView) -> String {
    let mut out = String::new();
    match (u.no_change, u.revision) {
        (true, Some(n)) => {
            let _ = writeln!(
                out,
                "nothing to update: revision {n} is applied and the candidate is the same"
            );
        }
        (_, Some(n)) => {
            let _ = writeln!(out, "revision {n}: {:?}: {}", u.outcome, u.detail);
            if let Some(deadline) = u.pending_until {
                let _ = writeln!(
                    out,
                    "PENDING: confirm with `switchboard confirm` before {deadline}, or the appliance rolls back by itself"
                );
            }
        }
        (_, None) => {
            let _ = writeln!(out, "{}", u.detail);
        }
    }
    push_diagnostics(&mut out, &u.warnings);
    out
}

fn revisions_text(revs: &[RevisionSummary]) -> String {
    if revs.is_empty() {
        return "no revision yet: `switchboard update` makes the first\n".into();
    }
    let rows: Vec<Vec<String>> = revs
        .iter()
        .map(|r| {
            let kind = match r.rollback_of {
                Some(n) => format!("rollback to {n}"),
                None => "update".into(),
            };
            vec![
                r.number.to_string(),
                r.created_at.to_string(),
                r.actor.clone(),
                r.origin.clone(),
                kind,
                serde_json::to_value(r.outcome)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                r.comment.clone(),
            ]
        })
        .collect();
    table(
        &["REV", "TIME", "WHO", "FROM", "KIND", "OUTCOME", "COMMENT"],
        &rows,
    )
}

fn revision_text(r: &Revision) -> String {
    let s = &r.summary;
    let mut out = format!(
        "revision {} ({:?}) by {} from {} at {}\noutcome: {:?}: {}\n",
        s.number, s.kind, s.actor, s.origin, s.created_at, s.outcome, s.detail
    );
    if !s.comment.is_empty() {
        let _ = writeln!(out, "comment: {}", s.comment);
    }
    out.push_str("matrix:\n");
    for service in ServiceId::all() {
        let nics: Vec<String> = r
            .plan
            .matrix
            .nics_of(service)
            .iter()
            .map(|n| n.to_string())
            .collect();
        let _ = writeln!(out, "  {service:<8} {}", list(&nics));
    }
    for line in r.plan.summary() {
        let _ = writeln!(out, "{line}");
    }
    push_diagnostics(&mut out, &r.warnings);
    let _ = write!(out, "\nfirewall ruleset:\n{}", r.plan.ruleset);
    if let Some(k) = &r.plan.kamailio {
        let _ = write!(
            out,
            "\nkamailio.cfg:\n{}\nKamailio tls.cfg:\n{}",
            k.cfg, k.tls_cfg
        );
    }
    if let Some(m) = &r.plan.media {
        let _ = write!(out, "\nrtpengine.conf:\n{}", m.conf);
    }
    out
}

fn firewall_text(f: &FirewallView) -> String {
    match (&f.revision, &f.ruleset) {
        (Some(n), Some(ruleset)) => {
            let mut out = format!("# ruleset of revision {n} ({:?} mode)\n{ruleset}", f.mode);
            if let Some(loaded) = &f.loaded {
                let _ = write!(out, "\n# loaded in the kernel:\n{loaded}");
            }
            out
        }
        _ => "no revision applied yet: no firewall (every service answers on every NIC)\n".into(),
    }
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn read_file(path: &std::path::Path) -> Result<Vec<u8>, ClientError> {
    std::fs::read(path)
        .map_err(|e| ClientError::Protocol(format!("cannot read {}: {e}", path.display())))
}

async fn cert(client: &Client, command: &CertCommand, json: bool) -> Result<String, ClientError> {
    match command {
        CertCommand::Check(_) => unreachable!("offline"),
        CertCommand::Import {
            name,
            bundle,
            key,
            password_file,
        } => {
            let password = password_file
                .as_deref()
                .map(crate::certcheck::read_password)
                .transpose()
                .map_err(|e| ClientError::Protocol(format!("{e:#}")))?;
            let body = ImportCertRequest {
                name: name.clone(),
                bundle: b64(&read_file(bundle)?),
                key: key.as_deref().map(read_file).transpose()?.map(|k| b64(&k)),
                password,
            };
            let v: CertView = client.post("/v1/certs", &body).await?;
            Ok(if json {
                pretty(&v)
            } else {
                format!("imported {}\n{}", v.name, cert_text(&v))
            })
        }
        CertCommand::Request {
            name,
            dns,
            ip,
            key_type,
        } => {
            let body = CertRequestRequest {
                name: name.clone(),
                dns: dns.clone(),
                ips: ip.clone(),
                key_type: key_type.clone(),
            };
            let v: CertRequestView = client.post("/v1/cert-requests", &body).await?;
            Ok(if json {
                pretty(&v)
            } else {
                // The request alone on standard output, so that it can be
                // redirected to a file for the CA; the rest on standard error.
                eprintln!(
                    "made a {} key for {} on the appliance (kept there, never shown); give this request to your CA, then: switchboard cert import {} --bundle signed.pem",
                    v.key_type,
                    v.names.join(", "),
                    v.name
                );
                v.csr_pem
            })
        }
        CertCommand::Acme {
            name,
            domain,
            directory,
            contact,
            challenge,
        } => {
            let body = AcmeRequest {
                name: name.clone(),
                domains: domain.clone(),
                directory: directory.clone(),
                contact: contact.clone(),
                challenge: challenge.clone(),
            };
            let v: CertView = client.post("/v1/acme", &body).await?;
            Ok(if json {
                pretty(&v)
            } else {
                format!(
                    "issued {} by {directory} (key made on the appliance)\n{}\nbind it: switchboard cert bind SERVICE {}",
                    v.name,
                    cert_text(&v),
                    v.name
                )
            })
        }
        CertCommand::Renew { name } => {
            let v: RenewalView = client
                .post(&format!("/v1/certs/{}/renew", path_segment(name)), &())
                .await?;
            Ok(if json {
                pretty(&v)
            } else {
                let applied = match v.revision {
                    Some(n) => format!("applied as revision {n}"),
                    None => "bound in the candidate only: the running revision did not present it"
                        .to_owned(),
                };
                match &v.replaced {
                    Some(old) => format!("renewed: {} replaces {old}, {applied}\n", v.cert),
                    None => format!("{} is not due: nothing renewed\n", v.cert),
                }
            })
        }
        CertCommand::Requests => {
            show(
                client,
                "/v1/cert-requests",
                json,
                |v: &Vec<CertRequestView>| {
                    if v.is_empty() {
                        return "no key waits for its certificate\n".to_owned();
                    }
                    v.iter()
                        .map(|r| {
                            format!(
                                "{}  {}  {}  made {}\n{}",
                                r.name,
                                r.key_type,
                                r.names.join(", "),
                                r.created_at,
                                r.csr_pem
                            )
                        })
                        .collect()
                },
            )
            .await
        }
        CertCommand::List => {
            show(client, "/v1/certs", json, |v: &Vec<CertView>| certs_text(v)).await
        }
        CertCommand::Show { name } => {
            let v: CertDetail = client.get(&format!("/v1/certs/{name}")).await?;
            if json {
                return Ok(pretty(&v));
            }
            Ok(format!("{}\n{}", cert_text(&v.cert), v.chain_pem))
        }
        CertCommand::Delete { name } => {
            let v: Deleted = client.delete(&format!("/v1/certs/{name}")).await?;
            Ok(if json {
                pretty(&v)
            } else {
                format!("deleted {name}\n")
            })
        }
        CertCommand::Bind {
            service,
            cert,
            nic,
            force,
        } => {
            let body = BindRequest {
                service: service.clone(),
                cert: cert.clone(),
                nic: nic.clone(),
                force: *force,
            };
            let on = nic.as_ref().map(|n| format!(" on {n}")).unwrap_or_default();
            edit(
                client,
                "/v1/certs/bind",
                &body,
                json,
                &format!("{service}{on} presents {cert}"),
            )
            .await
        }
        CertCommand::Unbind { service, nic } => {
            let body = UnbindRequest {
                service: service.clone(),
                nic: nic.clone(),
            };
            edit(
                client,
                "/v1/certs/unbind",
                &body,
                json,
                &format!("{service} unbound"),
            )
            .await
        }
        CertCommand::Ca {
            command: CaCommand::Add { file },
        } => {
            let body = CasRequest {
                certificates: b64(&read_file(file)?),
            };
            let v: Vec<CaView> = client.post("/v1/cas", &body).await?;
            Ok(if json { pretty(&v) } else { cas_text(&v) })
        }
        CertCommand::Ca {
            command: CaCommand::List,
        } => show(client, "/v1/cas", json, |v: &Vec<CaView>| cas_text(v)).await,
    }
}

/// The names a certificate covers: its DNS names, then its IP addresses.
pub fn cert_names(info: &switchboard_pki::CertInfo) -> Vec<String> {
    let mut names = info.dns_names.clone();
    names.extend(info.ip_addresses.iter().map(|a| a.to_string()));
    names
}

fn cert_text(c: &CertView) -> String {
    let names = cert_names(&c.info);
    let mut flags = Vec::new();
    if c.info.is_self_signed {
        flags.push("SELF-SIGNED");
    }
    if c.bootstrap {
        flags.push("made at first start");
    }
    if !c.has_key {
        flags.push("NO KEY");
    }
    match c.validity {
        switchboard_domain::Validity::Expired => flags.push("EXPIRED"),
        switchboard_domain::Validity::NotYetValid => flags.push("NOT YET VALID"),
        switchboard_domain::Validity::Valid => {}
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "name:     {}{}",
        c.name,
        if flags.is_empty() {
            String::new()
        } else {
            format!("  [{}]", flags.join(", "))
        }
    );
    let _ = writeln!(out, "subject:  {}", c.info.subject);
    let _ = writeln!(out, "issuer:   {}", c.info.issuer);
    let _ = writeln!(out, "names:    {}", list(&names));
    let _ = writeln!(
        out,
        "valid:    {} to {} ({} days left)",
        c.info.not_before, c.info.not_after, c.expires_in_days
    );
    let _ = writeln!(out, "sha256:   {}", c.info.fingerprint);
    let _ = writeln!(out, "used by:  {}", list(&c.used_by));
    if let Some(a) = &c.acme {
        let _ = writeln!(
            out,
            "ACME:     {} for {} by {} (certificate {} of the order {})",
            a.directory,
            list(&a.domains),
            a.challenge,
            a.generation,
            a.first_name
        );
        let _ = writeln!(out, "renewal:  next at {}", a.next_renewal);
        if let Some(w) = &a.waiting {
            let _ = writeln!(out, "          waiting: {w}");
        }
        if let Some(at) = a.renewed_at {
            let _ = writeln!(out, "          last renewed at {at}");
        }
        if let (Some(at), Some(error)) = (a.last_attempt, &a.last_error) {
            let _ = writeln!(
                out,
                "          last attempt at {at} failed ({} in a row): {error}",
                a.failures
            );
        }
    }
    out
}

fn certs_text(certs: &[CertView]) -> String {
    let rows: Vec<Vec<String>> = certs
        .iter()
        .map(|c| {
            let names = cert_names(&c.info);
            let state = match (c.validity, c.info.is_self_signed, c.has_key) {
                (_, _, false) => "no key".to_owned(),
                (switchboard_domain::Validity::Expired, _, _) => "EXPIRED".to_owned(),
                (switchboard_domain::Validity::NotYetValid, _, _) => "not yet valid".to_owned(),
                (_, true, _) => format!("self-signed, {} days", c.expires_in_days),
                _ => format!("{} days", c.expires_in_days),
            };
            vec![
                c.name.clone(),
                list(&names),
                c.info.issuer.clone(),
                state,
                list(&c.used_by),
            ]
        })
        .collect();
    table(&["NAME", "NAMES", "ISSUER", "VALIDITY", "USED BY"], &rows)
}

fn cas_text(cas: &[CaView]) -> String {
    let rows: Vec<Vec<String>> = cas
        .iter()
        .map(|c| {
            vec![
                c.subject.clone(),
                c.fingerprint.clone(),
                c.added_at.to_string(),
            ]
        })
        .collect();
    table(&["CA", "SHA256", "ADDED"], &rows)
}

fn padlock_text(checks: &[PadlockView]) -> String {
    let mut out = String::new();
    for p in checks {
        let lock = if p.ok {
            "closed padlock"
        } else {
            "OPEN PADLOCK"
        };
        let _ = writeln!(
            out,
            "{:<8} on {:<6} {:<15} cert {} for {}",
            p.service,
            p.nic,
            lock,
            p.cert.as_deref().unwrap_or("-"),
            p.host.as_deref().unwrap_or("-"),
        );
        for f in &p.findings {
            let level = match f.severity {
                switchboard_domain::Severity::Error => "error",
                switchboard_domain::Severity::Warning => "warning",
            };
            let _ = writeln!(
                out,
                "  {level}[{}]: {}\n    = hint: {}",
                f.code, f.message, f.hint
            );
        }
    }
    if checks.is_empty() {
        out.push_str("no TLS service is enabled on any NIC\n");
    }
    out
}

async fn account(
    client: &Client,
    command: &AccountCommand,
    json: bool,
) -> Result<String, ClientError> {
    type Accounts = Vec<switchboard_provision::AccountView>;
    match command {
        AccountCommand::Add {
            phone,
            name,
            username,
            group,
            profile,
        } => {
            let body = AccountRequest {
                phone: phone.clone(),
                username: username.clone(),
                name: name.clone(),
                group: group.clone(),
                profile: profile.clone(),
            };
            let v: switchboard_provision::AccountView = client.post("/v1/accounts", &body).await?;
            Ok(if json {
                pretty(&v)
            } else {
                format!("created account {} for {}\n", v.username, v.phone)
            })
        }
        AccountCommand::List {
            search: None,
            state: None,
            sort: None,
            page: None,
            per_page: None,
        } => {
            show(client, "/v1/accounts", json, |v: &Accounts| {
                accounts_text(v)
            })
            .await
        }
        AccountCommand::List {
            search,
            state,
            sort,
            page,
            per_page,
        } => {
            let mut query = form_urlencoded::Serializer::new(String::new());
            for (k, v) in [
                ("q", search.clone()),
                ("state", state.clone()),
                ("sort", sort.clone()),
                ("page", page.map(|p| p.to_string())),
                ("per_page", per_page.map(|p| p.to_string())),
            ] {
                if let Some(v) = v {
                    query.append_pair(k, &v);
                }
            }
            let path = format!("/v1/search/accounts?{}", query.finish());
            show(client, &path, json, |v: &AccountListView| {
                let views: Vec<_> = v.accounts.iter().map(|a| a.account.clone()).collect();
                let mut out = accounts_text(&views);
                for a in &v.accounts {
                    let state = match a.state {
                        AccountState::NoLink => "no link".to_owned(),
                        AccountState::LinkSent => format!(
                            "link sent {}",
                            a.link_made_at.map(|t| t.to_string()).unwrap_or_default()
                        ),
                        AccountState::Activated => format!(
                            "activated {}",
                            a.activated_at.map(|t| t.to_string()).unwrap_or_default()
                        ),
                        AccountState::Registered => a.registration.clone().unwrap_or_default(),
                    };
                    let _ = writeln!(out, "{}: {state}", a.account.username);
                }
                let first = (v.page - 1) * v.per_page + 1;
                let _ = writeln!(
                    out,
                    "{} of {} account(s), page {} of {}",
                    if v.accounts.is_empty() {
                        "none".to_owned()
                    } else {
                        format!("{first}-{}", first + v.accounts.len() as u64 - 1)
                    },
                    v.total,
                    v.page,
                    v.total.div_ceil(v.per_page).max(1)
                );
                out
            })
            .await
        }
        AccountCommand::Show { username } => {
            let name = path_segment(username);
            let account: switchboard_provision::AccountView =
                client.get(&format!("/v1/accounts/{name}")).await?;
            let reg: RegistrationsView = client
                .get(&format!("/v1/accounts/{name}/registrations"))
                .await?;
            if json {
                let mut v = serde_json::to_value(&account).unwrap_or_default();
                v["registrations"] = serde_json::to_value(&reg).unwrap_or_default();
                return Ok(pretty(&v));
            }
            let mut out = accounts_text(std::slice::from_ref(&account));
            let _ = writeln!(out, "SIP: {}", reg.summary);
            for c in &reg.contacts {
                let _ = writeln!(
                    out,
                    "  {} from {} over {} ({}), {} s left, {}",
                    c.contact,
                    c.source.as_deref().unwrap_or("?"),
                    c.transport.to_uppercase(),
                    c.socket,
                    c.expires_secs,
                    if c.user_agent.is_empty() {
                        "no user agent"
                    } else {
                        &c.user_agent
                    }
                );
            }
            Ok(out)
        }
        AccountCommand::Set {
            username,
            phone,
            name,
            group,
            profile,
            new_password,
        } => {
            let body = AccountUpdate {
                phone: phone.clone(),
                name: name.clone(),
                group: group.clone(),
                profile: profile.clone(),
                new_password: *new_password,
            };
            let v: switchboard_provision::AccountView = client
                .patch(&format!("/v1/accounts/{username}"), &body)
                .await?;
            Ok(if json {
                pretty(&v)
            } else {
                let again = if *new_password {
                    " (new SIP password: activate the phone again)"
                } else {
                    ""
                };
                format!("changed account {}{again}\n", v.username)
            })
        }
        AccountCommand::Delete { username } => {
            let v: Deleted = client.delete(&format!("/v1/accounts/{username}")).await?;
            Ok(if json {
                pretty(&v)
            } else {
                format!("deleted account {username}\n")
            })
        }
        AccountCommand::Import { file } => {
            let body = CsvImportRequest {
                csv: b64(&read_file(file)?),
            };
            let v: Accounts = client.post("/v1/accounts/import", &body).await?;
            Ok(if json {
                pretty(&v)
            } else {
                format!("imported {} account(s)\n{}", v.len(), accounts_text(&v))
            })
        }
    }
}

fn accounts_text(accounts: &[switchboard_provision::AccountView]) -> String {
    let rows: Vec<Vec<String>> = accounts
        .iter()
        .map(|a| {
            vec![
                a.username.to_string(),
                a.phone.to_string(),
                a.display_name
                    .as_ref()
                    .map(|n| n.to_string())
                    .unwrap_or_default(),
                a.group.as_ref().map(|g| g.to_string()).unwrap_or_default(),
                a.profile.as_str().to_owned(),
            ]
        })
        .collect();
    table(&["USERNAME", "PHONE", "NAME", "GROUP", "PROFILE"], &rows)
}

fn sms_text(messages: &[SmsView]) -> String {
    let mut out = String::new();
    for m in messages {
        let _ = writeln!(
            out,
            "#{} to {} via {}: {} (attempts {}){}",
            m.id,
            m.to,
            m.gateway,
            m.state,
            m.attempts,
            m.last_error
                .as_ref()
                .map(|e| format!(", last error: {e}"))
                .unwrap_or_default()
        );
        if let Some(text) = &m.text {
            let _ = writeln!(out, "    {text}");
        }
    }
    if messages.is_empty() {
        out.push_str("no SMS yet\n");
    }
    out
}
