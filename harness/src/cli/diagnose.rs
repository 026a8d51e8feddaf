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
    /// Also call the cluster as the server would: `GET <kubernetes_host>/version` with the
    /// configured CA, and — when no reviewer JWT is configured — the TokenReview the server
    /// makes with the client's own token (needs --addr and --jwt). Sends requests to the
    /// cluster named in the mount's config.
    #[arg(long)]
    probe: bool,
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
        let text = read_arg(j)?;
        input.jwt = Some(jwt::decode_unverified(&text)?);
        input.jwt_text = Some(text);
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
    if a.probe {
        probe(&mut input).await?;
    }
    let findings = diagnose::diagnose(&input);
    out!("{}", diagnose::render(&input, &findings));
    Ok(if findings.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Reproduces the server's calls to the cluster and adds what they answered to the evidence.
async fn probe(input: &mut diagnose::Input) -> Result<()> {
    let Some(cfg) = input.config.clone() else {
        anyhow::bail!("--probe needs the mount's config: give --addr and --token (and --mount)");
    };
    let host = cfg["kubernetes_host"]
        .as_str()
        .context("the mount's config has no kubernetes_host")?
        .trim_end_matches('/')
        .to_string();
    let mut builder = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(15))
        .no_proxy();
    if let Some(ca) = cfg["kubernetes_ca_cert"].as_str().filter(|c| !c.is_empty()) {
        for cert in reqwest::Certificate::from_pem_bundle(ca.as_bytes())
            .context("kubernetes_ca_cert is not PEM")?
        {
            builder = builder.add_root_certificate(cert);
        }
    }
    let http = builder.build()?;
    match http.get(format!("{host}/version")).send().await {
        Ok(r) => outln!("probe: GET {host}/version -> {}", r.status().as_u16()),
        Err(e) => {
            let chain = format!("{:#}", anyhow::Error::new(e));
            outln!("probe: GET {host}/version failed: {chain}");
            input.log.push(format!("probe: {chain}"));
            return Ok(());
        }
    }
    let reviewer_set = cfg["token_reviewer_jwt_set"].as_bool() == Some(true);
    match (&input.jwt_text, reviewer_set) {
        (Some(jwt), false) => {
            let aud = input
                .jwt
                .as_ref()
                .map(crate::jwt::DecodedJwt::audiences)
                .unwrap_or_default();
            let role_aud: Vec<String> = input
                .role
                .as_ref()
                .and_then(|r| r["audience"].as_str().map(|a| vec![a.to_string()]))
                .unwrap_or(aud);
            let body = serde_json::json!({"metadata": {}, "spec": {"token": jwt, "audiences": role_aud}, "status": {"user": {}}});
            let r = http
                .post(format!("{host}/apis/authentication.k8s.io/v1/tokenreviews"))
                .bearer_auth(jwt)
                .json(&body)
                .send()
                .await
                .context("posting the TokenReview")?;
            let status = r.status().as_u16();
            let text = r.text().await.unwrap_or_default();
            outln!("probe: TokenReview with the client's token as bearer -> {status}");
            match status {
                401 => input.log.push("probe: service account unauthorized; this could mean it has been deleted or recreated with a new token".into()),
                403 => input.log.push(format!("probe: {}", text.trim())),
                _ => {
                    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                    if let Some(e) = v["status"]["error"].as_str() {
                        input.log.push(format!("probe: lookup failed: {e}"));
                    }
                }
            }
        }
        (None, false) => outln!("probe: give --jwt to reproduce the TokenReview"),
        (_, true) => outln!(
            "probe: a reviewer JWT is configured; the server does not return it, so its TokenReview cannot be reproduced here"
        ),
    }
    Ok(())
}
