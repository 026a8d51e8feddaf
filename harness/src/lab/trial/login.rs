//! Configuring the trial's mount, logging in, follow-up steps, and reading the evidence.

use super::*;

#[allow(clippy::too_many_arguments)]
pub(super) async fn configure_and_login(
    trial: &Trial,
    root: &VaultClient,
    kube: &kube::Client,
    server: &crate::lab::servers::ServerHandle,
    vars: &mut BTreeMap<String, String>,
    record: &mut TrialRecord,
    t: &mut Timer<'_>,
    n: &Names<'_>,
    client_jwt: &str,
    sim: Option<&SimCluster>,
    log_offset: u64,
    flavour: &str,
) -> Result<Vec<String>> {
    let lc = &trial.case;
    let case = &lc.case;
    root.enable_auth(n.mount, n.kind).await?;
    let accessor = root.auth_accessor(n.mount).await?;
    record.accessor = accessor.clone();
    vars.insert("accessor".into(), accessor.clone());
    if !case.server.tune.is_empty() {
        root.tune_auth(n.mount, &Value::Object(case.server.tune.clone()))
            .await?;
    }
    root.enable_kv2(n.kv).await?;
    let policy = verdict::substitute(&effective::policy(case), vars);
    root.put_policy(n.policy, &policy).await?;
    record.policy = policy;
    for path in ["allowed/config", "denied/config"] {
        // A fresh KV v2 mount upgrades its storage first and refuses writes meanwhile.
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let r = root
                .write(
                    &format!("{}/data/{path}", n.kv),
                    &json!({"data": {"username": "app", "written_by": "authlab"}}),
                )
                .await?;
            if r.is_success() {
                break;
            }
            let upgrading = r
                .errors()
                .iter()
                .any(|e| e.contains("Upgrading from non-versioned"));
            anyhow::ensure!(
                upgrading && Instant::now() < deadline,
                "seeding {}/{path} failed: {} {:?} (waited up to 15 s for the KV v2 mount to finish upgrading)",
                n.kv,
                r.status,
                r.errors()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    let config = substitute_value(&Value::Object(effective::config(case)), vars);
    record.auth_config = config.clone();
    let config_resp = root
        .write(&format!("auth/{}/config", n.mount), &config)
        .await?;
    record.evidence.config = Some(observed(&config_resp));

    let role_name = case
        .server
        .role_name
        .clone()
        .unwrap_or_else(|| "app".into());
    let role = substitute_value(&Value::Object(effective::role(case, n.policy)), vars);
    record.role = role.clone();
    let role_resp = root
        .write(&format!("auth/{}/role/{role_name}", n.mount), &role)
        .await?;
    anyhow::ensure!(
        role_resp.is_success(),
        "writing role {role_name} failed: {} {:?} (role: {role})",
        role_resp.status,
        role_resp.errors()
    );
    t.lap("configure");

    for action in &case.before_login {
        match action {
            ClusterAction::Delete(what) => objects::delete(kube, what).await?,
            ClusterAction::RecreateServiceAccount(sa) => {
                let (ns, name) = tokens::split_sa(sa)?;
                objects::recreate_service_account(kube, ns, name).await?;
            }
            ClusterAction::Apply(obj) => {
                for o in load_objects(lc, obj)? {
                    objects::apply(kube, &o).await?;
                }
            }
        }
    }

    let expect = case.expect_for(flavour, &trial.server.version);
    let audit_offset = file_len(&server.audit_log_path());
    let mut client_token = None;
    if config_resp.is_success() {
        let before = sim.map(|s| s.request_log().len()).unwrap_or(0);
        let login_role = case.server.login_role.as_deref().unwrap_or(&role_name);
        let anon = root.with_token(None);
        let login = anon.login(n.mount, login_role, client_jwt).await?;
        record.evidence.cluster_requests = sim
            .map(|s| s.request_log().split_off(before))
            .unwrap_or_default();
        record.evidence.login = Some(observed(&login));
        client_token = login.body["auth"]["client_token"]
            .as_str()
            .map(str::to_string);
        record.login_body = Some(login.body.clone());
    }
    t.lap("login");

    for step in &case.steps {
        let Some(token) = &client_token else {
            record.evidence.steps.push(Observed::default());
            continue;
        };
        let c = root.with_token(Some(token.clone()));
        let r = if let Some(p) = &step.kv_read {
            c.read(&format!("{}/data/{p}", n.kv)).await?
        } else if let Some(p) = &step.kv_write {
            c.write(
                &format!("{}/data/{p}", n.kv),
                &json!({"data": {"written_by": "authlab-client"}}),
            )
            .await?
        } else {
            continue;
        };
        record.evidence.steps.push(observed(&r));
    }
    t.lap("steps");

    // Evidence: audit entries from this trial's login, server-log lines of this mount.
    let login_path = format!("auth/{}/login", n.mount);
    let audit_text = read_from(&server.audit_log_path(), audit_offset);
    let entries = evidence::parse_audit_log(&audit_text);
    let mine = evidence::audit_for_mount(&entries, &format!("auth/{}/", n.mount), Some(&accessor));
    record.audit_raw = mine.iter().map(|e| e.raw.clone()).collect();
    record.evidence.audit_login = mine
        .iter()
        .rev()
        .find(|e| e.kind == "response" && e.path == login_path)
        .cloned();
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let text = read_from(&server.server_log_path(), log_offset);
        let lines = evidence::parse_server_log(&text);
        record.evidence.server_log = evidence::log_for_accessor(&lines, &accessor);
        let satisfied = expect
            .server_log
            .as_ref()
            .is_none_or(|l| verdict::find_log_line(l, &record.evidence.server_log, vars).is_some());
        if satisfied || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    t.lap("evidence");

    let steps: Vec<_> = case.steps.iter().map(|s| s.expect.clone()).collect();
    let mut expect = expect.clone();
    if sim.is_none() {
        // Only the sim records the requests it answers.
        expect.cluster_requests = None;
    }
    let mut mismatches = verdict::judge(&expect, &steps, &record.evidence, vars);
    let input = diagnosis_input(case, record);
    let expect = &expect;
    record.findings = crate::diagnose::diagnose(&input);
    record.diagnosis = crate::diagnose::render(&input, &record.findings);
    if let Some(want) = &expect.diagnosis {
        let got: Vec<&str> = record.findings.iter().map(|f| f.cause).collect();
        if got.first() != Some(&want.as_str()) {
            mismatches.push(format!(
                "diagnosis: expected the top cause {want:?}, got {got:?}"
            ));
        }
    }
    Ok(mismatches)
}

pub(super) fn file_len(p: &std::path::Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

fn read_from(p: &std::path::Path, offset: u64) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let mut s = String::new();
    if let Ok(mut f) = std::fs::File::open(p) {
        let _ = f.seek(SeekFrom::Start(offset));
        let mut buf = Vec::new();
        let _ = f.read_to_end(&mut buf);
        s = String::from_utf8_lossy(&buf).into_owned();
    }
    s
}

/// What `authlab diagnose` would be given for this trial: the trial's own evidence.
fn diagnosis_input(case: &crate::case::Case, record: &TrialRecord) -> crate::diagnose::Input {
    let ev = &record.evidence;
    let first = |o: &Observed| (o.status, o.errors.first().cloned().unwrap_or_default());
    crate::diagnose::Input {
        method: Some(match case.auth {
            AuthMethod::Kubernetes => "kubernetes".into(),
            AuthMethod::Jwt => "jwt".into(),
        }),
        jwt: record
            .client_jwt
            .as_deref()
            .and_then(|t| crate::jwt::decode_unverified(t).ok()),
        jwt_text: None,
        role: Some(record.role.clone()),
        config: Some(record.auth_config.clone()),
        config_error: ev.config.as_ref().filter(|c| c.status >= 300).map(first),
        login: ev.login.as_ref().map(first),
        audit_error: ev
            .audit_login
            .as_ref()
            .and_then(|a| a.error.clone().or_else(|| a.data_error.clone())),
        log: ev
            .server_log
            .iter()
            .filter(|l| l.level != "TRACE" && l.level != "INFO")
            .map(|l| {
                let fields: Vec<String> =
                    l.fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("{} {}", l.message, fields.join(" "))
            })
            .collect(),
        steps: ev.steps.iter().map(first).collect(),
        now: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    }
}
