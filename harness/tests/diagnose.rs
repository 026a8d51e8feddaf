//! `authlab diagnose` on the evidence a user really has: every failing case of the catalog is
//! run once (OpenBao 2.7.2, sim cluster), and its own evidence is handed to diagnose the way a
//! user would hand it over, in parts — (a) the server log alone, as hclog text and as hclog
//! JSON; (b) the JWT with the role and config files; (c) the audit entry with the JWT and the
//! role. For each part diagnose must name the case's cause where that part determines it
//! (`DETERMINES` below says where, and why not elsewhere), and elsewhere say what is missing
//! instead of guessing. The hit rate per input is printed.
//!
//! Needs the OpenBao 2.7.2 binary, provisioned if need be (a test that cannot have it fails).
//! Cases of the inside topology need Docker and are left out without it (their trials are
//! ignored, with the reason, as in any run).

use std::{collections::BTreeMap, sync::Arc};

use authlab::{
    case::{load, matrix},
    diagnose::{self, Cause, Input, inputs},
    lab::{Lab, LabOptions},
    logs::LogLine,
    trial::{self, TrialRecord, Verdict},
};

/// The parts of the evidence a user may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Part {
    LogText,
    LogJson,
    JwtRoleConfig,
    AuditJwtRole,
}

impl Part {
    const ALL: [Part; 4] = [
        Part::LogText,
        Part::LogJson,
        Part::JwtRoleConfig,
        Part::AuditJwtRole,
    ];

    fn label(self) -> &'static str {
        match self {
            Part::LogText => "(a) server log, hclog text",
            Part::LogJson => "(a) server log, hclog JSON",
            Part::JwtRoleConfig => "(b) JWT + role + config files",
            Part::AuditJwtRole => "(c) audit entry + JWT + role",
        }
    }
}

/// Whether a part of the evidence determines the trial's cause.
fn determines(part: Part, cause: Cause, rec: &TrialRecord) -> bool {
    use Cause::*;
    match part {
        // A server log tells what the server logged: a `login unauthorized` or ERROR line
        // carries the cause's text. Many rejections (bound names, audiences, a JWT's claims)
        // are answered to the client without a log line; and a 401 from the API server
        // (`service account unauthorized`) does not say whose token it rejected — the config
        // does.
        Part::LogText | Part::LogJson => rec.evidence.server_log.iter().any(|l| {
            (l.message.contains("login unauthorized") || l.level == "ERROR")
                && !l
                    .fields
                    .iter()
                    .any(|(_, v)| v.contains("service account unauthorized"))
        }),
        // What the role and config bind, against the token's claims and times; a missing CA
        // only where the config itself says the server has none of its own.
        Part::JwtRoleConfig => {
            matches!(
                cause,
                SaName
                    | Namespace
                    | RoleAudience
                    | Audience
                    | Subject
                    | Issuer
                    | ClientTokenTime
                    | MalformedToken
                    | BearerAudience
            ) || (cause == MissingCa
                && rec.auth_config["disable_local_ca_jwt"].as_bool() == Some(true))
                || (cause == ReviewerToken && reviewer_rejected(rec))
        }
        // The audit entry keeps the client error (400 texts in full, 403 as `permission
        // denied`), plus what the token and role tell.
        Part::AuditJwtRole => matches!(
            cause,
            SaName
                | Namespace
                | RoleAudience
                | Audience
                | Subject
                | Issuer
                | ClientTokenTime
                | MalformedToken
                | UnknownRole
        ),
    }
}

/// Whether the reviewer JWT the config holds is one the API server must reject: expired, or
/// for no API audience.
fn reviewer_rejected(rec: &TrialRecord) -> bool {
    let Some(r) = rec.auth_config["token_reviewer_jwt"]
        .as_str()
        .and_then(|t| authlab::jwt::decode_unverified(t).ok())
    else {
        return false;
    };
    let expired = r.claims["exp"].as_u64().is_some_and(|e| e < now());
    let iss = r.claims["iss"].as_str().unwrap_or("");
    let aud = r.audiences();
    expired
        || (!aud.is_empty()
            && !aud
                .iter()
                .any(|a| a == iss || a == "https://kubernetes.default.svc.cluster.local"))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
}

/// A log line as hclog writes it with `log_format = "json"`.
fn to_json(l: &LogLine) -> String {
    let mut o = serde_json::Map::new();
    o.insert("@level".into(), l.level.to_lowercase().into());
    o.insert("@message".into(), l.message.clone().into());
    if let Some(m) = &l.module {
        o.insert("@module".into(), m.clone().into());
    }
    o.insert("@timestamp".into(), l.time.clone().into());
    for (k, v) in &l.fields {
        o.insert(k.clone(), v.clone().into());
    }
    serde_json::Value::Object(o).to_string()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The input a user with `part` of the trial's evidence gives diagnose.
fn input(part: Part, rec: &TrialRecord) -> Input {
    let mut i = Input {
        now: now(),
        ..Default::default()
    };
    let role = serde_json::to_string(&rec.role).unwrap();
    let config = serde_json::to_string(&rec.auth_config).unwrap();
    let jwt = |i: &mut Input| {
        if let Err(e) = inputs::set_jwt(i, rec.client_jwt.as_deref().unwrap_or("")) {
            i.jwt_error = Some(e.to_string());
        }
    };
    match part {
        Part::LogText | Part::LogJson => {
            let text: Vec<String> = rec
                .evidence
                .server_log
                .iter()
                .map(|l| {
                    if part == Part::LogJson {
                        to_json(l)
                    } else {
                        l.raw.clone()
                    }
                })
                .collect();
            inputs::server_log(&mut i, &text.join("\n"), None, None);
        }
        Part::JwtRoleConfig => {
            jwt(&mut i);
            i.role = Some(inputs::read_object(&role, "--role", "role").unwrap());
            i.config = Some(inputs::read_object(&config, "--config", "config").unwrap());
        }
        Part::AuditJwtRole => {
            let text: Vec<String> = rec.audit_raw.iter().map(|v| v.to_string()).collect();
            // A login the server refused before it wrote the entry leaves none to give.
            let _ = inputs::audit(&mut i, &text.join("\n"), None);
            i.audit_given = true;
            jwt(&mut i);
            i.role = Some(inputs::read_object(&role, "--role", "role").unwrap());
        }
    }
    i
}

#[derive(Default)]
struct Tally {
    named: usize,
    missing: usize,
    wrong: Vec<String>,
}

#[test]
fn every_failing_case_is_diagnosed_from_partial_evidence() {
    let rt = runtime();
    let spec: authlab::server::ServerSpec = "openbao:2.7.2".parse().unwrap();
    let cache = authlab::server::binary::BinaryCache::new(settings()).unwrap();
    if let Err(e) = rt.block_on(cache.ensure(&spec, &|_| {})) {
        panic!("OpenBao 2.7.2 cannot be provisioned: {e:#}");
    }
    let cases_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../cases");
    let cases: Vec<Arc<load::LoadedCase>> = load::load_dir(&cases_dir)
        .unwrap()
        .into_iter()
        .filter(|c| {
            c.case.expects_failure()
                && c.case.eso.is_none()
                && c.case.expect_for("openbao", "2.7.2").diagnosis.is_some()
        })
        .map(Arc::new)
        .collect();
    let trials = matrix::expand(&cases, &[spec], matrix::ClusterKind::Sim);
    let lab = Arc::new(Lab::new(LabOptions::new(matrix::ClusterKind::Sim, settings())).unwrap());
    let records: Vec<(matrix::Trial, trial::TrialOutcome, TrialRecord)> = rt.block_on(async {
        let sem = Arc::new(tokio::sync::Semaphore::new(8));
        let mut set = tokio::task::JoinSet::new();
        for t in trials {
            let (lab, sem) = (lab.clone(), sem.clone());
            set.spawn(async move {
                let _p = sem.acquire().await;
                let (o, r) = trial::run_recorded(&lab, &t).await;
                (t, o, r)
            });
        }
        let mut out = Vec::new();
        while let Some(r) = set.join_next().await {
            out.push(r.unwrap());
        }
        lab.shutdown().await;
        out
    });
    let mut tally: BTreeMap<Part, Tally> = BTreeMap::new();
    let mut ran = 0;
    let mut lines = Vec::new();
    for (t, o, rec) in &records {
        match &o.verdict {
            Verdict::Passed => {}
            Verdict::Ignored(why) => {
                eprintln!("left out: {} ({why})", t.name);
                continue;
            }
            other => panic!(
                "{} did not pass, so its evidence is not the case's: {other:?}",
                t.name
            ),
        }
        ran += 1;
        let want = t
            .case
            .case
            .expect_for("openbao", "2.7.2")
            .diagnosis
            .unwrap();
        let mut row = format!("{:<55} {:<22}", t.case.name, want.as_str());
        for part in Part::ALL {
            let i = input(part, rec);
            let report = diagnose::report(&i);
            let entry = tally.entry(part).or_default();
            let mark = match report.cause {
                Some(c) if c == want => {
                    entry.named += 1;
                    "named"
                }
                Some(c) => {
                    entry.wrong.push(format!(
                        "{}: {} named {c}, the cause is {want}\n{}",
                        t.case.name,
                        part.label(),
                        diagnose::render(&i, &report)
                    ));
                    "WRONG"
                }
                None if !report.missing.is_empty() => {
                    entry.missing += 1;
                    if determines(part, want, rec) {
                        entry.wrong.push(format!(
                            "{}: {} determines {want}, but diagnose named none\n{}",
                            t.case.name,
                            part.label(),
                            diagnose::render(&i, &report)
                        ));
                        "NONE"
                    } else {
                        "missing"
                    }
                }
                None => {
                    entry.wrong.push(format!(
                        "{}: {} named no cause and no missing evidence",
                        t.case.name,
                        part.label()
                    ));
                    "SILENT"
                }
            };
            row.push_str(&format!(" {mark:<8}"));
        }
        lines.push(row);
    }
    lines.sort();
    eprintln!(
        "{:<55} {:<22} {:<8} {:<8} {:<8} {:<8}",
        "case", "cause", "(a)text", "(a)json", "(b)", "(c)"
    );
    for l in &lines {
        eprintln!("{l}");
    }
    let mut failures = Vec::new();
    for (part, t) in &tally {
        eprintln!(
            "{}: named the cause in {}/{ran}, said what is missing in {}, wrong or silent in {}",
            part.label(),
            t.named,
            t.missing,
            t.wrong.len()
        );
        failures.extend(t.wrong.iter().cloned());
    }
    assert!(ran >= 30, "only {ran} failing cases ran");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// An unsigned token with `claims` (diagnose reads claims, never signatures).
fn token(claims: serde_json::Value) -> String {
    use base64::Engine;
    let b = |v: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    format!(
        "{}.{}.c2ln",
        b(&serde_json::json!({"alg": "RS256"})),
        b(&claims)
    )
}

fn diagnose_cli(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_authlab"));
    for k in [
        "VAULT_ADDR",
        "BAO_ADDR",
        "VAULT_TOKEN",
        "BAO_TOKEN",
        "VAULT_CACERT",
        "BAO_CACERT",
    ] {
        c.env_remove(k);
    }
    // Nothing of the vault CLI's own setup on this machine: its other variables, its token file.
    for (k, _) in std::env::vars() {
        if k.starts_with("VAULT_") || k.starts_with("BAO_") {
            c.env_remove(k);
        }
    }
    c.env("HOME", "/nonexistent");
    let out = c
        .arg("diagnose")
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The headline: a bare `permission denied` lists what produces it, with the check for each.
#[test]
fn permission_denied_alone_lists_the_candidates_with_their_checks() {
    let (code, out, _) = diagnose_cli(&["--login-error", "permission denied"], &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("cause: not determined"), "{out}");
    let first = out
        .find("[reviewer-rbac]")
        .expect("reviewer-rbac is a candidate");
    let later = out
        .find("[service-account-gone]")
        .expect("and service-account-gone");
    assert!(first < later, "ranked: {out}");
    assert!(
        out.contains("kubectl auth can-i create tokenreviews"),
        "{out}"
    );
    assert!(
        out.contains("sys/loggers"),
        "the debug log is the next step: {out}"
    );
    let (code, json, _) = diagnose_cli(
        &["--login-error", "permission denied", "--format", "json"],
        &[],
    );
    assert_eq!(code, Some(1));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(v["cause"].is_null());
    assert!(v["candidates"].as_array().unwrap().len() >= 6);
    assert!(!v["missing"].as_array().unwrap().is_empty());
    // The checks the server answers with their own error are not what a bare one means.
    let out_of_it: Vec<&str> = v["ruled_out"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["cause"].as_str())
        .collect();
    assert_eq!(
        out_of_it,
        ["sa-name", "namespace", "role-audience", "client-token-time"]
    );
    assert!(!out.contains("] the token's namespace is not in"), "{out}");
}

/// A bare `permission denied` with the token, the role and the config the user has: the causes
/// they already rule out are not listed (they were: the whole list, whatever was given), and the
/// report says why each was left out.
#[test]
fn permission_denied_leaves_out_what_the_evidence_rules_out() {
    let dir = tempfile::tempdir().unwrap();
    let now = now() as i64;
    let jwt = token(serde_json::json!({
        "iss": "https://kubernetes.default.svc.cluster.local",
        "aud": ["https://kubernetes.default.svc.cluster.local"],
        "sub": "system:serviceaccount:app:app",
        "exp": now + 600, "iat": now - 60, "nbf": now - 60,
        "kubernetes.io": {"namespace": "app", "serviceaccount": {"name": "app", "uid": "u"}},
    }));
    let role = dir.path().join("role.json");
    std::fs::write(
        &role,
        serde_json::json!({"data": {"bound_service_account_names": ["app"], "bound_service_account_namespaces": ["a*"], "token_policies": ["p"]}}).to_string(),
    )
    .unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        serde_json::json!({"data": {"kubernetes_host": "https://k:6443", "token_reviewer_jwt_set": true}}).to_string(),
    )
    .unwrap();
    let (code, out, err) = diagnose_cli(
        &[
            "--login-error",
            "permission denied",
            "--jwt",
            &jwt,
            "--role",
            role.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--format",
            "json",
        ],
        &[],
    );
    assert_eq!(code, Some(1), "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let causes = |k: &str| -> Vec<String> {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|c| c["cause"].as_str().unwrap().to_string())
            .collect()
    };
    let listed = causes("candidates");
    let out_of_it = causes("ruled_out");
    for (gone, because) in [
        ("sa-name", "bound_service_account_names"),
        ("namespace", "bound_service_account_namespaces"),
        ("role-audience", "no audience"),
        ("client-token-time", "valid at"),
        ("bearer-audience", "token_reviewer_jwt is set"),
    ] {
        assert!(
            !listed.iter().any(|c| c == gone),
            "{gone} listed: {listed:?}"
        );
        let why = v["ruled_out"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["cause"] == gone)
            .unwrap_or_else(|| panic!("{gone} not said: {out_of_it:?}"))["why"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(why.contains(because), "{gone}: {why}");
    }
    // What only the cluster can tell stays.
    for left in [
        "reviewer-rbac",
        "reviewer-token",
        "service-account-gone",
        "wrong-ca",
    ] {
        assert!(
            listed.iter().any(|c| c == left),
            "{left} missing: {listed:?}"
        );
    }
    // A server log with the API server's 401: it was reached, over TLS it trusted.
    let log = dir.path().join("server.log");
    std::fs::write(
        &log,
        "2026-12-01T13:40:30.880Z [DEBUG] auth.kubernetes.auth_kubernetes_1: login unauthorized: err=\"lookup failed: service account unauthorized; this could mean it has been deleted or recreated with a new token\"\n",
    )
    .unwrap();
    let (_, text, _) = diagnose_cli(
        &[
            "--login-error",
            "permission denied",
            "--server-log",
            log.to_str().unwrap(),
        ],
        &[],
    );
    assert!(text.contains("ruled out by the evidence given:"), "{text}");
    assert!(!text.contains(" [wrong-ca] kubernetes_ca_cert"), "{text}");
    assert!(
        text.contains("  - [wrong-ca] the server's log holds"),
        "{text}"
    );
}

/// Inputs as users have them: a token file with a `Bearer ` prefix, a role file with the whole
/// `read -format=json` output; an expired token alone is a cause.
#[test]
fn files_as_users_have_them() {
    let dir = tempfile::tempdir().unwrap();
    let now = now() as i64;
    let sa = |ns: &str| {
        serde_json::json!({
            "iss": "https://kubernetes.default.svc.cluster.local",
            "aud": ["vault"],
            "sub": format!("system:serviceaccount:{ns}:app"),
            "exp": now + 600, "iat": now - 60, "nbf": now - 60,
            "kubernetes.io": {"namespace": ns, "serviceaccount": {"name": "app", "uid": "u"}},
        })
    };
    let jwt = dir.path().join("token");
    std::fs::write(&jwt, format!("Bearer {}\n", token(sa("app")))).unwrap();
    let role = dir.path().join("role.json");
    std::fs::write(
        &role,
        serde_json::json!({"request_id": "r", "lease_id": "", "renewable": false, "lease_duration": 0,
            "data": {"bound_service_account_names": ["app"], "bound_service_account_namespaces": ["other"], "token_policies": []},
            "warnings": null}).to_string(),
    )
    .unwrap();
    let at = format!("@{}", jwt.display());
    let (code, out, err) = diagnose_cli(&["--jwt", &at, "--role", role.to_str().unwrap()], &[]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("cause: namespace"), "{out}");
    assert!(
        out.contains(r#"token namespace "app", role binds ["other"]"#),
        "{out}"
    );
    // An expired token alone.
    let mut claims = sa("app");
    claims["exp"] = (now - 3600).into();
    let (code, out, _) = diagnose_cli(&["--jwt", &token(claims)], &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("cause: client-token-time"), "{out}");
    // A role given by name needs a server to read it from.
    let (code, _, err) = diagnose_cli(&["--role", "app"], &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--addr"), "{err}");
    // A server log in no known format says so, naming the formats.
    let log = dir.path().join("server.log");
    std::fs::write(&log, "nothing here\nat all\n").unwrap();
    let (_, _, err) = diagnose_cli(&["--server-log", log.to_str().unwrap()], &[]);
    assert!(
        err.contains("no line parsed") && err.contains("hclog JSON"),
        "{err}"
    );
    // A bad role file names the file and what to give.
    std::fs::write(&role, "bound_service_account_names=app").unwrap();
    let (code, _, err) = diagnose_cli(&["--role", role.to_str().unwrap()], &[]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("--role") && err.contains("read -format=json"),
        "{err}"
    );
}

/// A role whose bound names and namespaces are globs with several `*` (which the servers
/// accept, and which logged in with 200) is not blamed for the token's name or namespace.
#[test]
fn globs_with_several_stars_bind_as_on_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let now = now() as i64;
    let claims = serde_json::json!({
        "iss": "https://kubernetes.default.svc.cluster.local",
        "aud": ["vault"],
        "sub": "system:serviceaccount:team-a-prod:internal-app",
        "exp": now + 600, "iat": now - 60, "nbf": now - 60,
        "kubernetes.io": {"namespace": "team-a-prod", "serviceaccount": {"name": "internal-app", "uid": "u"}},
    });
    let role = dir.path().join("role.json");
    let write_role = |names: &str, namespaces: &str| {
        std::fs::write(
            &role,
            serde_json::json!({"data": {
                "bound_service_account_names": [names],
                "bound_service_account_namespaces": [namespaces],
                "token_policies": []}})
            .to_string(),
        )
        .unwrap();
    };
    write_role("inter*-a*p", "team-*-p*d");
    let jwt = token(claims);
    let (_, out, err) = diagnose_cli(&["--jwt", &jwt, "--role", role.to_str().unwrap()], &[]);
    for wrong in ["cause: namespace", "cause: sa-name"] {
        assert!(!out.contains(wrong), "{wrong}: {out}{err}");
    }
    // The same globs, one character off, are still caught.
    write_role("inter*-a*x", "team-*-p*d");
    let (_, out, _) = diagnose_cli(&["--jwt", &jwt, "--role", role.to_str().unwrap()], &[]);
    assert!(out.contains("cause: sa-name"), "{out}");
}

/// Read live with the usual environment: a role that answers 404 is the unknown-role cause,
/// a role bound elsewhere is compared with the token.
#[test]
fn a_live_server_through_bao_addr_and_bao_token() {
    let rt = runtime();
    let spec: authlab::server::ServerSpec = "openbao:2.7.2".parse().unwrap();
    let cache = authlab::server::binary::BinaryCache::new(settings()).unwrap();
    if let Err(e) = rt.block_on(cache.ensure(&spec, &|_| {})) {
        panic!("OpenBao 2.7.2 cannot be provisioned: {e:#}");
    }
    let lab = Lab::new(LabOptions::new(matrix::ClusterKind::Sim, settings())).unwrap();
    let info = rt.block_on(async {
        let server = lab.servers().get(&spec).await.unwrap();
        let c = server.client();
        c.enable_auth("diag", "kubernetes").await.unwrap();
        let r = c
            .write(
                "auth/diag/config",
                &serde_json::json!({"kubernetes_host": "https://127.0.0.1:1", "disable_local_ca_jwt": true,
                    "kubernetes_ca_cert": authlab::sim::SimCluster::start(Default::default()).await.unwrap().ca_pem()}),
            )
            .await
            .unwrap();
        assert!(r.is_success(), "{r:?}");
        let r = c
            .write(
                "auth/diag/role/app",
                &serde_json::json!({"bound_service_account_names": ["app"], "bound_service_account_namespaces": ["other"]}),
            )
            .await
            .unwrap();
        assert!(r.is_success(), "{r:?}");
        // The same mount and role in a namespace of its own, which only VAULT_NAMESPACE reaches.
        let r = c
            .write("sys/namespaces/team", &serde_json::json!({}))
            .await
            .unwrap();
        assert!(r.is_success(), "{r:?}");
        let team = authlab::vault::VaultClient::for_user(
            &server.info().addr,
            Some(server.info().root_token.clone()),
            &authlab::vault::UserServer {
                namespace: Some("team".into()),
                ..Default::default()
            },
        )
        .unwrap();
        team.enable_auth("inteam", "kubernetes").await.unwrap();
        let r = team
            .write(
                "auth/inteam/role/app",
                &serde_json::json!({"bound_service_account_names": ["app"], "bound_service_account_namespaces": ["other"]}),
            )
            .await
            .unwrap();
        assert!(r.is_success(), "{r:?}");
        server.info().clone()
    });
    let env = [
        ("BAO_ADDR", info.addr.as_str()),
        ("BAO_TOKEN", info.root_token.as_str()),
    ];
    let (code, out, err) = diagnose_cli(&["--mount", "diag", "--role", "nope"], &env);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("cause: unknown-role"), "{out}");
    let now = now() as i64;
    let jwt = token(serde_json::json!({
        "iss": "https://kubernetes.default.svc.cluster.local", "aud": ["vault"], "exp": now + 600,
        "sub": "system:serviceaccount:app:app",
        "kubernetes.io": {"namespace": "app", "serviceaccount": {"name": "app", "uid": "u"}},
    }));
    let (code, out, err) = diagnose_cli(&["--mount", "diag", "--role", "app", "--jwt", &jwt], &env);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("cause: namespace"), "{out}");
    // The vault CLI's habits: the namespace from VAULT_NAMESPACE, the token from the token
    // helper's ~/.vault-token.
    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join(".vault-token"),
        format!("{}\n", info.root_token),
    )
    .unwrap();
    let home_dir = home.path().to_str().unwrap();
    let in_team = [
        ("VAULT_ADDR", info.addr.as_str()),
        ("HOME", home_dir),
        ("VAULT_NAMESPACE", "team"),
    ];
    let (code, out, err) = diagnose_cli(
        &["--mount", "inteam", "--role", "app", "--jwt", &jwt],
        &in_team,
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("cause: namespace"), "{out}");
    let (_, out, err) = diagnose_cli(
        &["--mount", "inteam", "--role", "app", "--jwt", &jwt],
        &in_team[..2],
    );
    assert!(
        !out.contains("cause: namespace"),
        "outside the namespace: {out}{err}"
    );
    // A client certificate without its key is bad input, named.
    let (code, _, err) = diagnose_cli(
        &["--mount", "diag", "--role", "app"],
        &[
            ("VAULT_ADDR", info.addr.as_str()),
            ("HOME", home_dir),
            ("VAULT_CLIENT_CERT", "/etc/hostname"),
        ],
    );
    assert_eq!(code, Some(2));
    assert!(err.contains("VAULT_CLIENT_KEY"), "{err}");
    rt.block_on(lab.shutdown());
}

/// `explain` takes a token as `diagnose --jwt` does (`@FILE`, `-`, a `Bearer ` prefix), and
/// speaks JSON.
#[test]
fn explain_takes_what_diagnose_takes() {
    let dir = tempfile::tempdir().unwrap();
    let now = now() as i64;
    let tok = token(serde_json::json!({
        "aud": ["vault"], "sub": "system:serviceaccount:apps:web", "exp": now + 600,
        "kubernetes.io": {"namespace": "apps", "serviceaccount": {"name": "web", "uid": "u"}},
    }));
    let file = dir.path().join("token");
    std::fs::write(&file, format!("Bearer {tok}\n")).unwrap();
    let explain = |args: &[&str], stdin: Option<&str>| {
        use std::io::Write;
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_authlab"))
            .arg("explain")
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = c.stdin.take().unwrap();
        input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
        drop(input);
        let out = c.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let at = format!("@{}", file.display());
    let (code, out, err) = explain(&[&at, "--format", "json"], None);
    assert_eq!(code, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["service_account"]["name"], "web");
    assert_eq!(v["audiences"][0], "vault");
    let left = v["times"]["exp"]["seconds_from_now"].as_i64().unwrap();
    assert!((590..=600).contains(&left), "{left}");
    let (code, out, _) = explain(&["-"], Some(&format!("Bearer {tok}")));
    assert_eq!(code, Some(0));
    assert!(out.contains("service account: apps/web"), "{out}");
    let (code, _, err) = explain(&["@/nonexistent/token"], None);
    assert_eq!(code, Some(2));
    assert!(err.contains("/nonexistent/token"), "{err}");
}

/// Logs as users collect them from a cluster node or Docker: a CRI container log from
/// /var/log/pods and a Docker json-file log read as the server's own; an empty file says so.
#[test]
fn logs_from_pods_and_docker_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let line = r#"2026-12-01T13:40:30.880Z [DEBUG] auth.kubernetes.auth_kubernetes_1: login unauthorized: err="tokenreviews.authentication.k8s.io is forbidden: User \"system:serviceaccount:default:internal-app\" cannot create resource \"tokenreviews\" in API group \"authentication.k8s.io\" at the cluster scope""#;
    let cri = dir.path().join("0.log");
    std::fs::write(
        &cri,
        format!("2026-12-01T13:40:30.880033123Z stderr F {line}\n"),
    )
    .unwrap();
    let docker = dir.path().join("container-json.log");
    std::fs::write(
        &docker,
        format!(
            "{{\"log\":{},\"stream\":\"stderr\",\"time\":\"2026-12-01T13:40:30.88Z\"}}\n",
            serde_json::to_string(&format!("{line}\n")).unwrap()
        ),
    )
    .unwrap();
    for f in [&cri, &docker] {
        let (code, out, err) = diagnose_cli(&["--server-log", f.to_str().unwrap()], &[]);
        assert_eq!(code, Some(0), "{}: {out}{err}", f.display());
        assert!(
            out.contains("cause: reviewer-rbac"),
            "{}: {out}",
            f.display()
        );
    }
    let empty = dir.path().join("empty.log");
    std::fs::write(&empty, "").unwrap();
    let (_, _, err) = diagnose_cli(&["--server-log", empty.to_str().unwrap()], &[]);
    assert!(err.contains("the file is empty"), "{err}");
}

/// A child process killed when dropped.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        authlab::scope::process::terminate_process(self.0.id());
        let _ = self.0.wait();
    }
}

/// Waits (at most 60 s) for `path` to hold something that parses.
fn wait_for_file(path: &std::path::Path, what: &str, child: &mut std::process::Child) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.ends_with('\n') || text.trim_end().ends_with('}') {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what} did not come up in 60 s"
        );
        assert!(child.try_wait().unwrap().is_none(), "{what} exited");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The README's walk from a lab to diagnose, as a user takes it: `lab up` and `sim serve`, the
/// CLI pointed at the lab's server with `eval "$(authlab lab env)"`, Kubernetes auth written
/// with `bao write`, a login the server refuses, then `diagnose --role --jwt @FILE --probe`.
#[test]
fn from_a_lab_to_diagnose_as_the_readme_walks() {
    let spec: authlab::server::ServerSpec = "openbao:2.7.2".parse().unwrap();
    let cache = authlab::server::binary::BinaryCache::new(settings()).unwrap();
    let rt = runtime();
    let bao = rt
        .block_on(cache.ensure(&spec, &|_| {}))
        .unwrap_or_else(|e| panic!("OpenBao 2.7.2 cannot be provisioned: {e:#}"));
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("lab.json");
    let kubeconfig = dir.path().join("sim.kubeconfig");
    let authlab = |args: &[&str]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_authlab"));
        c.args(args)
            .env("AUTHLAB_LAB_STATE", &state)
            .env("NO_COLOR", "1");
        c
    };
    let mut lab = Killed(
        authlab(&["lab", "up", "--servers", "openbao:2.7.2"])
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("lab.err")).unwrap())
            .spawn()
            .unwrap(),
    );
    let mut sim = Killed(
        authlab(&[
            "sim",
            "serve",
            "--kubeconfig-out",
            kubeconfig.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap(),
    );
    let lab_state = wait_for_file(&state, "the lab", &mut lab.0);
    let kc = wait_for_file(&kubeconfig, "the sim", &mut sim.0);
    // `lab up` says how to point the CLIs at it, without the root token.
    let root: serde_json::Value = serde_json::from_str(&lab_state).unwrap();
    let root_token = root["servers"][0]["root_token"].as_str().unwrap();
    let said = std::fs::read_to_string(dir.path().join("lab.err")).unwrap();
    assert!(
        said.contains("eval \"$(authlab lab env openbao:2.7.2)\""),
        "{said}"
    );
    assert!(
        !said.contains(root_token),
        "the root token in lab up's output"
    );
    // eval "$(authlab lab env)"
    let out = authlab(&["lab", "env"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let exports: Vec<(String, String)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("export ")?.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
        .collect();
    let var = |k: &str| {
        exports
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("lab env exports no {k}: {exports:?}"))
    };
    assert_eq!(var("VAULT_TOKEN"), root_token);
    assert_eq!(var("BAO_ADDR"), var("VAULT_ADDR"));
    let out = authlab(&["lab", "env", "openbao:2.6.1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("it runs openbao:2.7.2"),
        "{out:?}"
    );

    // The cluster side, as kubectl would do it: a namespace, a service account, its token.
    let parsed = kube::config::Kubeconfig::from_yaml(&kc).unwrap();
    let cluster = parsed.clusters[0].cluster.clone().unwrap();
    let host = cluster.server.unwrap();
    let admin: serde_json::Value = serde_saphyr::from_str(&kc).unwrap();
    let admin = admin["users"][0]["user"]["token"]
        .as_str()
        .unwrap()
        .to_string();
    use base64::Engine;
    let ca = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(cluster.certificate_authority_data.unwrap())
            .unwrap(),
    )
    .unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca).unwrap();
    let jwt = rt.block_on(async {
        let http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
            .build()
            .unwrap();
        let post = |path: &str, body: serde_json::Value| {
            http.post(format!("{host}{path}"))
                .bearer_auth(&admin)
                .json(&body)
                .send()
        };
        for (path, body) in [
            (
                "/api/v1/namespaces",
                serde_json::json!({"metadata": {"name": "app"}}),
            ),
            (
                "/api/v1/namespaces/app/serviceaccounts",
                serde_json::json!({"metadata": {"name": "web"}}),
            ),
        ] {
            let r = post(path, body).await.unwrap();
            assert!(r.status().is_success(), "{path}: {r:?}");
        }
        let r = post(
            "/api/v1/namespaces/app/serviceaccounts/web/token",
            serde_json::json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"audiences": ["vault"]}}),
        )
        .await
        .unwrap();
        let v: serde_json::Value = r.json().await.unwrap();
        v["status"]["token"].as_str().unwrap().to_string()
    });
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, &jwt).unwrap();

    // The server side with the bao CLI, as the README shows it with vault.
    let cli = |args: &[&str]| {
        let mut c = std::process::Command::new(&bao);
        c.args(args).env("HOME", dir.path());
        for (k, _) in std::env::vars() {
            if k.starts_with("VAULT_") || k.starts_with("BAO_") {
                c.env_remove(k);
            }
        }
        c.envs(exports.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        c.output().unwrap()
    };
    for args in [
        vec!["auth", "enable", "kubernetes"],
        vec![
            "write",
            "auth/kubernetes/config",
            &format!("kubernetes_host={host}"),
            &format!("kubernetes_ca_cert=@{}", ca_file.display()),
        ],
        vec![
            "write",
            "auth/kubernetes/role/web",
            "bound_service_account_names=web",
            "bound_service_account_namespaces=default",
            "audience=vault",
        ],
    ] {
        let out = cli(&args);
        assert!(out.status.success(), "bao {args:?}: {out:?}");
    }
    let login = cli(&[
        "write",
        "auth/kubernetes/login",
        "role=web",
        &format!("jwt=@{}", token_file.display()),
    ]);
    assert!(
        String::from_utf8_lossy(&login.stderr).contains("namespace not authorized"),
        "{login:?}"
    );
    let env: Vec<(&str, &str)> = exports
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let (code, out, err) = diagnose_cli(
        &[
            "--role",
            "web",
            "--jwt",
            &format!("@{}", token_file.display()),
            "--probe",
        ],
        &env,
    );
    assert_eq!(code, Some(0), "{out}{err}");
    // The probe's TokenReview is refused too (the client's token lacks the API audience), but
    // the server refuses the namespace before it ever reviews: that is the cause.
    assert!(out.contains("probe: TokenReview"), "{out}");
    assert!(out.contains("cause: namespace"), "{out}");
}

/// A failed trial's artifacts hold the config and role as `vault read -format=json` gives
/// them back (no reviewer JWT, `token_reviewer_jwt_set: true`), and diagnose determines the
/// cause from that form as the README shows.
#[test]
fn the_read_back_form_in_the_artifacts_is_what_diagnose_takes() {
    let spec: authlab::server::ServerSpec = "openbao:2.7.2".parse().unwrap();
    let cache = authlab::server::binary::BinaryCache::new(settings()).unwrap();
    if let Err(e) = runtime().block_on(cache.ensure(&spec, &|_| {})) {
        panic!("OpenBao 2.7.2 cannot be provisioned: {e:#}");
    }
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let tmp = tempfile::tempdir().unwrap();
    let cases = tmp.path().join("cases");
    std::fs::create_dir_all(&cases).unwrap();
    // The shipped case, made to fail so that its artifacts are written.
    let text = std::fs::read_to_string(
        repo.join("cases/kubernetes/reviewer-jwt/reviewer-token-expired.yaml"),
    )
    .unwrap();
    std::fs::write(
        cases.join("expired.yaml"),
        text.replace("status: 403", "status: 299"),
    )
    .unwrap();
    for m in [
        "manifests/sa/internal-app.yaml",
        "manifests/sa/vault-auth.yaml",
        "manifests/rbac/vault-auth-delegator.yaml",
    ] {
        let to = tmp.path().join(m);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(repo.join(m), to).unwrap();
    }
    let artifacts = tmp.path().join("artifacts");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_authlab"))
        .args(["run", "-q", "--servers", "openbao:2.7.2", "--cases"])
        .arg(&cases)
        .arg("--artifacts")
        .arg(&artifacts)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let dir = std::fs::read_dir(&artifacts)
        .unwrap()
        .flatten()
        .find(|e| e.path().is_dir())
        .expect("an artifacts folder")
        .path();
    let read: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("auth-config.read.json")).unwrap())
            .unwrap();
    assert_eq!(read["data"]["token_reviewer_jwt_set"], true, "{read}");
    assert!(read["data"].get("token_reviewer_jwt").is_none(), "{read}");
    let role: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("role.read.json")).unwrap())
            .unwrap();
    assert_eq!(role["data"]["token_ttl"], 3600, "{role}");
    let log = dir.join("server.log");
    let config = dir.join("auth-config.read.json");
    let (code, out, err) = diagnose_cli(
        &[
            "--server-log",
            log.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("cause: reviewer-token"), "{out}");
}

/// The settings of this test process, read from the environment once.
fn settings() -> &'static authlab::settings::Settings {
    static S: std::sync::OnceLock<authlab::settings::Settings> = std::sync::OnceLock::new();
    S.get_or_init(authlab::settings::Settings::from_env)
}
