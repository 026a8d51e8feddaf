//! `authlab diagnose`: ranked causes from what a user has at hand.

use std::{path::PathBuf, process::ExitCode};

use anyhow::{Context, Result};
use clap::Args;

use crate::{diagnose, evidence, jwt, vault::VaultClient};

/// Evidence sources for `authlab diagnose` (give any subset).
#[derive(Args, Debug)]
pub struct DiagnoseArgs {
    /// Audit log file (JSON lines) or a file holding one entry; the last login response entry
    /// with an error is used (or the one with --request-id).
    #[arg(long)]
    audit: Option<PathBuf>,
    /// Request id of the audit entry to use.
    #[arg(long)]
    request_id: Option<String>,
    /// Server log file (run the server with log_level=debug to get `login unauthorized` lines).
    #[arg(long)]
    server_log: Option<PathBuf>,
    /// The client's JWT, `-` for standard input, or `@FILE`.
    #[arg(long)]
    jwt: Option<String>,
    /// What the client saw, e.g. "permission denied".
    #[arg(long)]
    login_error: Option<String>,
    /// Server address, to read the mount's config and role.
    #[arg(long, env = "VAULT_ADDR")]
    addr: Option<String>,
    /// Token for reading the config and role (needs read on auth/<mount>/config and role).
    #[arg(long, env = "VAULT_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Auth mount path, e.g. kubernetes.
    #[arg(long, default_value = "kubernetes")]
    mount: String,
    /// Role name.
    #[arg(long)]
    role: Option<String>,
}

fn read_arg(v: &str) -> Result<String> {
    if v == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .context("reading standard input")?;
        Ok(s.trim().to_string())
    } else if let Some(f) = v.strip_prefix('@') {
        Ok(std::fs::read_to_string(f)
            .with_context(|| format!("reading {f}"))?
            .trim()
            .to_string())
    } else {
        Ok(v.to_string())
    }
}

/// Runs the diagnosis and prints it.
pub async fn run(a: DiagnoseArgs) -> Result<ExitCode> {
    let mut input = diagnose::Input {
        now: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        ..Default::default()
    };
    let mut accessor = None;
    if let Some(path) = &a.audit {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading audit log {}", path.display()))?;
        let entries = evidence::parse_audit_log(&text);
        let entry = entries
            .iter()
            .rev()
            .filter(|e| e.kind == "response")
            .find(|e| match &a.request_id {
                Some(id) => e.request_id.as_deref() == Some(id.as_str()),
                None => {
                    e.path.ends_with("/login") && (e.error.is_some() || e.data_error.is_some())
                }
            })
            .with_context(|| {
                format!(
                    "{}: no login response entry with an error (or with the given --request-id) was found",
                    path.display()
                )
            })?;
        input.audit_error = entry.error.clone().or_else(|| entry.data_error.clone());
        accessor = entry.mount_accessor.clone();
        input.method = entry.raw["request"]["mount_type"]
            .as_str()
            .map(str::to_string);
        if let Some(j) = entry.raw["request"]["data"]["jwt"].as_str()
            && !j.starts_with("hmac-")
        {
            input.jwt = jwt::decode_unverified(j).ok();
        }
        eprintln!(
            "audit entry: {} {} error={:?}",
            entry.time,
            entry.path,
            input.audit_error.as_deref().unwrap_or("")
        );
    }
    if let Some(path) = &a.server_log {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading server log {}", path.display()))?;
        let lines = evidence::parse_server_log(&text);
        let lines = match &accessor {
            Some(acc) => evidence::log_for_accessor(&lines, acc),
            None => lines,
        };
        input.log = lines
            .iter()
            .filter(|l| {
                l.message.contains("login unauthorized")
                    || l.level == "ERROR"
                    || l.message.contains("error checking")
            })
            .map(|l| {
                let f: Vec<String> = l.fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("{} {}", l.message, f.join(" "))
            })
            .collect();
    }
    if let Some(j) = &a.jwt {
        input.jwt = Some(jwt::decode_unverified(&read_arg(j)?)?);
    }
    if let Some(e) = &a.login_error {
        input.login = Some((0, e.clone()));
    }
    if let Some(addr) = &a.addr {
        let client = VaultClient::new(addr, a.token.clone())?;
        let cfg = client.read(&format!("auth/{}/config", a.mount)).await?;
        if cfg.is_success() {
            input.config = Some(cfg.body["data"].clone());
        } else {
            eprintln!(
                "could not read auth/{}/config: {} {:?}",
                a.mount,
                cfg.status,
                cfg.errors()
            );
        }
        if let Some(role) = &a.role {
            let r = client
                .read(&format!("auth/{}/role/{role}", a.mount))
                .await?;
            if r.is_success() {
                input.role = Some(r.body["data"].clone());
            } else {
                eprintln!("could not read role {role}: {} {:?}", r.status, r.errors());
            }
        }
    }
    let findings = diagnose::diagnose(&input);
    print!("{}", diagnose::render(&input, &findings));
    Ok(if findings.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
