//! `authlab diagnose`: ranked causes from what a user has at hand.

use std::{path::PathBuf, process::ExitCode};

use anyhow::{Context, Result};
use clap::Args;

use crate::{
    diagnose::{self, inputs},
    logs,
    vault::VaultClient,
};

/// Evidence sources for `authlab diagnose` (give any subset).
#[derive(Args, Debug)]
#[command(after_help = DIAGNOSE_HELP)]
pub struct DiagnoseArgs {
    /// Audit log file (JSON lines) or a file holding one entry; the last login response entry
    /// with an error is used (or the one with --request-id).
    #[arg(long)]
    audit: Option<PathBuf>,
    /// Request id of the audit entry to use.
    #[arg(long)]
    request_id: Option<String>,
    /// The server runs in a pod of the cluster: with no token_reviewer_jwt (and
    /// disable_local_ca_jwt not set) its own pod token is the TokenReview's bearer.
    #[arg(long)]
    server_in_pod: bool,
    /// Server log file in any format: hclog text or JSON, as written, from journalctl or from
    /// kubectl logs (--timestamps). Run the server at log level debug for `login unauthorized`
    /// lines.
    #[arg(long)]
    server_log: Option<PathBuf>,
    /// The client's JWT, `-` for standard input, or `@FILE` (a `Bearer ` prefix is dropped).
    #[arg(long)]
    jwt: Option<String>,
    /// What the client saw, e.g. "permission denied".
    #[arg(long)]
    login_error: Option<String>,
    /// The mount's config: a file with the JSON of `vault read -format=json
    /// auth/<mount>/config` (or its `data`).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The role: a file with the JSON of `vault read -format=json auth/<mount>/role/<name>`
    /// (or its `data`), or with --addr the role's name to read.
    #[arg(long, value_name = "FILE|NAME")]
    role: Option<String>,
    /// Server address, to read the mount's config and role (default: VAULT_ADDR, else BAO_ADDR).
    #[arg(long)]
    addr: Option<String>,
    /// Token for reading the config and role (default: VAULT_TOKEN, else BAO_TOKEN, else the
    /// token helper's ~/.vault-token; needs read
    /// on auth/<mount>/config and role).
    #[arg(long)]
    token: Option<String>,
    /// CA certificate (PEM) of the server at --addr (default: VAULT_CACERT, else BAO_CACERT).
    #[arg(long, value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// Auth mount path, e.g. kubernetes.
    #[arg(long, default_value = "kubernetes")]
    mount: String,
    /// Also call the cluster as the server would: `GET <kubernetes_host>/version` with the
    /// configured CA, and — when no reviewer JWT is configured — the TokenReview the server
    /// makes with the client's own token (needs --addr and --jwt). Sends requests to the
    /// cluster named in the mount's config.
    #[arg(long)]
    probe: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    format: super::Format,
}

const DIAGNOSE_HELP: &str = "Exit codes: 0 the evidence determines a cause; 1 it does not (the report \
says what is missing and, for a bare client error, which causes produce it); 2 bad input.";

/// A token argument: itself, `-` for standard input, or `@FILE` (`what` names it in errors).
pub(super) fn read_text(what: &str, v: &str) -> Result<String> {
    use crate::input::{TOKEN_BYTES, read};
    if v == "-" {
        Ok(read(what, std::path::Path::new("-"), TOKEN_BYTES)?)
    } else if let Some(f) = v.strip_prefix('@') {
        Ok(read(what, std::path::Path::new(f), TOKEN_BYTES)?)
    } else {
        Ok(v.to_string())
    }
}

/// The token the vault CLI's token helper keeps (`~/.vault-token`), when there is one.
fn token_file(s: &crate::settings::Settings) -> Option<String> {
    let f = s.home.as_ref()?.join(".vault-token");
    let t = crate::input::read("~/.vault-token", &f, crate::input::TOKEN_BYTES).ok()?;
    Some(t.trim().to_string()).filter(|t| !t.is_empty())
}

/// How to reach the user's server, from `--ca-cert` and the vault CLI's variables.
fn user_server(
    ca_cert: Option<&std::path::Path>,
    s: &crate::settings::Settings,
) -> Result<crate::vault::UserServer> {
    let mut how = crate::vault::UserServer {
        skip_verify: s.vault_skip_verify,
        tls_server_name: s.vault_tls_server_name.clone(),
        namespace: s.vault_namespace.clone(),
        ..Default::default()
    };
    if let Some(p) = ca_cert
        .map(std::path::Path::to_path_buf)
        .or_else(|| s.vault_cacert.clone())
    {
        how.ca_pems
            .push((p.display().to_string(), read_file("--ca-cert", &p)?));
    }
    if let Some(dir) = &s.vault_capath {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .with_context(|| format!("VAULT_CAPATH {}: not a directory to read", dir.display()))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        for f in files {
            let text = read_file("VAULT_CAPATH", &f)?;
            // Certificates only: a CA directory often holds other files (hash links, keys).
            if text.contains("-----BEGIN CERTIFICATE-----") {
                how.ca_pems.push((f.display().to_string(), text));
            }
        }
    }
    match (&s.vault_client_cert, &s.vault_client_key) {
        (Some(c), Some(k)) => {
            how.identity_pem = Some(format!(
                "{}\n{}",
                read_file("VAULT_CLIENT_CERT", c)?,
                read_file("VAULT_CLIENT_KEY", k)?
            ))
        }
        (None, None) => {}
        _ => anyhow::bail!(
            "VAULT_CLIENT_CERT and VAULT_CLIENT_KEY go together: set both (or neither)"
        ),
    }
    Ok(how)
}

fn read_file(what: &str, path: &std::path::Path) -> Result<String> {
    Ok(crate::input::read(
        what,
        path,
        crate::input::DOCUMENT_BYTES,
    )?)
}

fn read_log(what: &str, path: &std::path::Path) -> Result<String> {
    Ok(crate::input::read_log(what, path)?)
}

/// Runs the diagnosis and prints it.
pub async fn run(a: DiagnoseArgs, s: &crate::settings::Settings) -> Result<ExitCode> {
    let mut input = diagnose::Input {
        now: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        server_in_pod: a.server_in_pod.then_some(true),
        ..Default::default()
    };
    let mut notes: Vec<String> = Vec::new();
    let mut accessor = None;
    let mut logins = None;
    if let Some(path) = &a.audit {
        let text = read_log("--audit", path)?;
        let pick = inputs::audit(&mut input, &text, a.request_id.as_deref())
            .map_err(|why| anyhow::anyhow!("--audit {}: {why}", path.display()))?;
        eprintln!("audit entry: {}", pick.summary);
        if let Some(t) = pick
            .summary
            .split_whitespace()
            .next()
            .and_then(|t| humantime::parse_rfc3339_weak(t.trim_end_matches('Z')).ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        {
            // Token times are judged at the login, not now.
            input.now = t.as_secs();
            input.at_login = true;
        }
        accessor = pick.accessor;
        logins = pick.logins;
        notes.extend(pick.notes);
    }
    if let Some(path) = &a.server_log {
        let text = read_log("--server-log", path)?;
        if text.trim().is_empty() {
            notes.push(format!(
                "--server-log {}: the file is empty (was the server's log level debug, and the log collected after the login?)",
                path.display()
            ));
        } else if inputs::server_log(&mut input, &text, accessor.as_deref(), logins.as_ref()) == 0 {
            notes.push(format!(
                "--server-log {}: no line parsed as a server log entry; the formats read are {}",
                path.display(),
                logs::LOG_FORMATS
            ));
        }
    }
    if let Some(j) = &a.jwt {
        let text = read_text("--jwt", j)?;
        if let Err(e) = inputs::set_jwt(&mut input, &text) {
            // A token that is not a JWT is a finding, not bad input.
            input.jwt_error = Some(e.to_string());
        }
    }
    if let Some(e) = &a.login_error {
        input.login = Some((0, e.clone()));
    }
    if let Some(path) = &a.config {
        let path_in = format!("auth/{}/config", a.mount);
        input.config = Some(inputs::read_object(
            &read_file("--config", path)?,
            "--config",
            &path_in,
        )?);
    }
    let role_file = a
        .role
        .as_deref()
        .map(|r| r.strip_prefix('@').unwrap_or(r))
        .map(PathBuf::from)
        .filter(|p| p.is_file());
    if let Some(path) = &role_file {
        let path_in = format!("auth/{}/role/<name>", a.mount);
        input.role = Some(inputs::read_object(
            &read_file("--role", path)?,
            "--role",
            &path_in,
        )?);
    }
    let addr = a.addr.clone().or_else(|| s.vault_addr.clone());
    match (&addr, &a.role, &role_file) {
        (None, Some(name), None) => anyhow::bail!(
            "--role {name}: no such file, and reading a role by name needs --addr (or VAULT_ADDR / BAO_ADDR); or give --role FILE with the JSON of `vault read -format=json auth/{}/role/{name}`",
            a.mount
        ),
        (Some(addr), _, _) => {
            let token = a
                .token
                .clone()
                .or_else(|| s.vault_token.clone())
                .or_else(|| token_file(s));
            let client =
                VaultClient::for_user(addr, token, &user_server(a.ca_cert.as_deref(), s)?)?;
            if input.config.is_none() {
                let cfg = client.read(&format!("auth/{}/config", a.mount)).await?;
                if cfg.is_success() {
                    input.config = Some(cfg.body["data"].clone());
                } else {
                    notes.push(format!(
                        "reading auth/{}/config at {addr}: {} {:?}",
                        a.mount,
                        cfg.status,
                        cfg.errors()
                    ));
                }
            }
            if let (Some(role), None) = (&a.role, &role_file) {
                input.role_name = Some(role.clone());
                let r = client
                    .read(&format!("auth/{}/role/{role}", a.mount))
                    .await?;
                if r.is_success() {
                    input.role = Some(r.body["data"].clone());
                } else if r.status == 404 {
                    input.role_missing = true;
                } else {
                    notes.push(format!(
                        "reading role {role}: {} {:?}",
                        r.status,
                        r.errors()
                    ));
                }
            }
        }
        _ => {}
    }
    if a.probe {
        probe(&mut input).await?;
    }
    let report = diagnose::report(&input);
    match a.format {
        super::Format::Json => outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "cause": report.cause,
                "findings": report.findings,
                "missing": report.missing,
                "candidates": report.candidates,
                "ruled_out": report.ruled_out,
                "notes": notes,
            }))?
        ),
        super::Format::Human => {
            for n in &notes {
                eprintln!("note: {n}");
            }
            out!("{}", diagnose::render(&input, &report));
        }
    }
    Ok(if report.cause.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
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
