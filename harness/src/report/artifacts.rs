//! Artifacts of a failed trial: everything needed to understand it without re-running.
//!
//! Files whose names contain `.secret.` hold tokens (client/reviewer JWTs, raw audit entries, the auth config with
//! `token_reviewer_jwt`); the folder carries a `CONTAINS-SECRETS` marker.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::{
    case::matrix::Trial,
    jwt,
    trial::{TrialRecord, Verdict},
};

/// Writes the artifacts of `trial` under `root/<trial name>/` and returns that folder.
pub fn write(root: &Path, trial: &Trial, rec: &TrialRecord, verdict: &Verdict) -> Result<PathBuf> {
    let dir = root.join(trial.name.replace("::", "."));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let put = |name: &str, text: &str| -> Result<()> {
        std::fs::write(dir.join(name), text).with_context(|| format!("writing {name}"))
    };
    let verdict_text = match verdict {
        Verdict::Failed(m) => format!("FAILED\n{}\n", m.join("\n")),
        Verdict::Error(e) => format!("ERROR\n{e}\n"),
        Verdict::Passed => "PASSED\n".into(),
        Verdict::Ignored(r) => format!("IGNORED\n{r}\n"),
    };
    put("verdict.txt", &verdict_text)?;
    put("case.yaml", &trial.case.text)?;
    put("server-config.hcl", &rec.server_config)?;
    put(
        "objects.json",
        &serde_json::to_string_pretty(&rec.objects).unwrap_or_default(),
    )?;
    put(
        "auth-config.secret.json",
        &serde_json::to_string_pretty(&rec.auth_config).unwrap_or_default(),
    )?;
    put(
        "role.json",
        &serde_json::to_string_pretty(&rec.role).unwrap_or_default(),
    )?;
    put("policy.hcl", &rec.policy)?;
    put("diagnosis.txt", &rec.diagnosis)?;
    put(
        "mount.txt",
        &format!("path: auth/{}\naccessor: {}\n", rec.mount, rec.accessor),
    )?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    for (name, tok) in [("client", &rec.client_jwt), ("reviewer", &rec.reviewer_jwt)] {
        if let Some(tok) = tok {
            put(&format!("{name}-jwt.secret.txt"), tok)?;
            let decoded = match jwt::decode_unverified(tok) {
                Ok(d) => d.render(now),
                Err(e) => format!("not decodable: {e:#}\n"),
            };
            put(&format!("{name}-jwt.decoded.txt"), &decoded)?;
        }
    }
    let ev = &rec.evidence;
    put(
        "client.json",
        &serde_json::to_string_pretty(&serde_json::json!({
            "config_write": ev.config,
            "login": ev.login,
            "login_body": rec.login_body,
            "steps": ev.steps,
        }))
        .unwrap_or_default(),
    )?;
    put(
        "audit.secret.jsonl",
        &rec.audit_raw
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join("\n"),
    )?;
    put(
        "server.log",
        &ev.server_log
            .iter()
            .map(|l| l.raw.clone())
            .collect::<Vec<_>>()
            .join("\n"),
    )?;
    put(
        "cluster-requests.txt",
        &rec.cluster_log
            .iter()
            .map(|r| {
                format!(
                    "{} {} user={} -> {}{}",
                    r.method,
                    r.path,
                    r.user.as_deref().unwrap_or("(unauthenticated)"),
                    r.status,
                    r.error
                        .as_deref()
                        .map(|e| format!(" error={e}"))
                        .unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("\n"),
    )?;
    if let Some(eso) = &rec.eso {
        put("eso.txt", eso)?;
    }
    put(
        "CONTAINS-SECRETS",
        "Files named *.secret.* hold service-account tokens, auth config with reviewer tokens, and raw audit entries (log_raw: tokens in clear text).\nThey come from a throwaway lab, but treat them as secrets.\n",
    )?;
    Ok(dir)
}
