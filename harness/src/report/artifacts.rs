//! Artifacts of a failed trial: everything needed to understand it without re-running.
//!
//! Files whose names contain `.secret.` hold tokens (client/reviewer JWTs, the login response
//! with the client token, raw audit entries, the auth config with `token_reviewer_jwt`); no other
//! file does. The folder carries a `CONTAINS-SECRETS` marker; it is readable by its owner only
//! (0700, files 0600).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::{
    case::matrix::Trial,
    jwt,
    trial::{TrialRecord, Verdict},
};

/// Writes the artifacts of `trial` under `root/<trial name>/` and returns that folder.
pub fn write(root: &Path, trial: &Trial, rec: &TrialRecord, verdict: &Verdict) -> Result<PathBuf> {
    super::files::own_dir(root, 0o755).with_context(|| format!("creating {}", root.display()))?;
    let dir = root.join(trial.name.replace("::", "."));
    write_record(&dir, trial, rec, verdict)?;
    Ok(dir)
}

/// Writes the artifacts into `dir`, owner-only.
fn write_record(dir: &Path, trial: &Trial, rec: &TrialRecord, verdict: &Verdict) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    super::files::own_dir(dir, 0o700).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("restricting {}", dir.display()))?;
    let put = |name: &str, text: &str| -> Result<()> {
        super::files::replace(&dir.join(name), text.as_bytes(), 0o600)
            .with_context(|| format!("writing {name} in {}", dir.display()))
    };
    let verdict_text = match verdict {
        Verdict::Failed(m) => format!("FAILED\n{}\n", m.join("\n")),
        Verdict::Error(e) => format!("ERROR\n{e}\n"),
        Verdict::Passed => "PASSED\n".into(),
        Verdict::Ignored(r) => format!("IGNORED\n{r}\n"),
        Verdict::Observed(m) => format!("OBSERVED (for --bless)\n{}\n", m.join("\n")),
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
    // As `vault read -format=json` gives them: what a user hands to `diagnose`.
    for (name, v) in [
        ("auth-config.read.json", &rec.read_back.0),
        ("role.read.json", &rec.read_back.1),
    ] {
        if !v.is_null() {
            put(name, &serde_json::to_string_pretty(v).unwrap_or_default())?;
        }
    }
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
            "steps": ev.steps,
        }))
        .unwrap_or_default(),
    )?;
    if let Some(body) = &rec.login_body {
        put(
            "login-response.secret.json",
            &serde_json::to_string_pretty(body).unwrap_or_default(),
        )?;
    }
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
    let requests = |log: &[crate::sim::RequestRecord]| {
        log.iter()
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
            .join("\n")
    };
    // Both clusters of a trial that has two, each under a heading.
    let text = if ev.other_cluster_requests.is_some() || !rec.other_cluster_log.is_empty() {
        format!(
            "# the trial's cluster\n{}\n# the second cluster (cluster.other)\n{}",
            requests(&rec.cluster_log),
            requests(&rec.other_cluster_log)
        )
    } else {
        requests(&rec.cluster_log)
    };
    put("cluster-requests.txt", &text)?;
    if let Some(eso) = &rec.eso {
        put("eso.txt", eso)?;
    }
    put(
        "CONTAINS-SECRETS",
        "Files named *.secret.* hold service-account tokens, the login response with the client token, auth config with reviewer tokens, and raw audit entries (log_raw: tokens in clear text).\nThey come from a throwaway lab, but treat them as secrets.\n",
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::{os::unix::fs::PermissionsExt, sync::Arc};

    use serde_json::json;

    use super::*;
    use crate::{case::matrix, server::ServerSpec};

    /// No file but `*.secret.*` holds a token, and only the owner can read any of them.
    #[test]
    fn tokens_stay_in_secret_files_and_files_are_private() {
        let cases = Path::new(env!("CARGO_MANIFEST_DIR")).join("../cases");
        let file = cases.join("kubernetes/client-token/works.yaml");
        let case = Arc::new(crate::case::load::load_file(&cases, &file).unwrap());
        let spec: ServerSpec = "openbao:2.7.2".parse().unwrap();
        let trial = matrix::expand(&[case], &[spec], matrix::ClusterKind::Sim).remove(0);
        let (client, reviewer, token) = (
            "eyJclient.SENTINEL1",
            "eyJreviewer.SENTINEL2",
            "s.SENTINEL3",
        );
        let rec = TrialRecord {
            client_jwt: Some(client.into()),
            reviewer_jwt: Some(reviewer.into()),
            auth_config: json!({"token_reviewer_jwt": reviewer}),
            login_body: Some(json!({"auth": {"client_token": token}})),
            audit_raw: vec![
                json!({"request": {"data": {"jwt": client}}, "auth": {"client_token": token}}),
            ],
            ..Default::default()
        };
        let root = tempfile::tempdir().unwrap();
        let dir = write(
            root.path(),
            &trial,
            &rec,
            &Verdict::Failed(vec!["x".into()]),
        )
        .unwrap();
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let mut secret_files = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{name}");
            let text = std::fs::read_to_string(&path).unwrap();
            if name.contains(".secret.") {
                secret_files += 1;
                continue;
            }
            for t in [client, reviewer, token, "SENTINEL"] {
                assert!(!text.contains(t), "{name} holds a token");
            }
        }
        assert!(secret_files >= 5, "{secret_files}");
    }
}
