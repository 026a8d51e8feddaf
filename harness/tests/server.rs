//! Real OpenBao servers: start-up, evidence capture and per-trial isolation of evidence.
//!
//! These run against the binary the project provisions for `openbao:2.7.2` (or
//! `AUTHLAB_TEST_SERVER`). Without a binary they are skipped with the reason, except under
//! `CI=true`, where that fails.

use std::sync::Arc;

use authlab::{
    case::{load, matrix},
    lab::{Lab, LabOptions, trial},
    server::{ServerSpec, binary::BinaryCache},
};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
}

fn spec() -> ServerSpec {
    std::env::var("AUTHLAB_TEST_SERVER")
        .unwrap_or_else(|_| "openbao:2.7.2".into())
        .parse()
        .unwrap()
}

/// True when the binary is there; otherwise skips (or fails under CI=true).
fn have_binary(rt: &tokio::runtime::Runtime) -> bool {
    let spec = spec();
    let res = rt.block_on(async {
        BinaryCache::from_env()?
            .ensure(&spec, &|l| eprintln!("{spec}: {l}"))
            .await
    });
    match res {
        Ok(_) => true,
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => panic!("{e:#}"),
        Err(e) => {
            eprintln!("skipped: {e:#}");
            false
        }
    }
}

fn cases_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../cases")
}

/// Eight trials at once against one server: each trial's audit entries and server-log lines
/// belong to its own mount only, and each has the entries its failure produces.
#[test]
fn parallel_trials_see_only_their_own_evidence() {
    let rt = runtime();
    if !have_binary(&rt) {
        return;
    }
    let dir = cases_dir();
    let names = [
        "kubernetes/client-token/missing-auth-delegator.yaml",
        "kubernetes/client-token/token-without-api-audience.yaml",
        "kubernetes/reviewer-jwt/reviewer-without-rbac.yaml",
        "kubernetes/token/service-account-deleted.yaml",
        "kubernetes/token/pod-deleted.yaml",
        "kubernetes/client-token/api-unreachable.yaml",
        "kubernetes/token/garbage-jwt.yaml",
        "reported/kb-tokenreview-forbidden-client-token.yaml",
    ];
    let cases: Vec<_> = names
        .iter()
        .map(|n| Arc::new(load::load_file(&dir, &dir.join(n)).unwrap()))
        .collect();
    let trials = matrix::expand(&cases, &[spec()], matrix::ClusterKind::Sim);
    assert_eq!(trials.len(), 8);
    let lab = Arc::new(Lab::new(LabOptions::new(matrix::ClusterKind::Sim)).unwrap());
    let results = rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for t in trials {
            let lab = lab.clone();
            set.spawn(async move { trial::run_recorded(&lab, &t).await });
        }
        let mut out = Vec::new();
        while let Some(r) = set.join_next().await {
            out.push(r.unwrap());
        }
        out
    });
    let mut accessors = std::collections::HashSet::new();
    for (outcome, rec) in &results {
        assert!(
            matches!(outcome.verdict, trial::Verdict::Passed),
            "{}: {:?}",
            outcome.name,
            outcome.verdict
        );
        assert!(accessors.insert(rec.accessor.clone()), "accessor reused");
        let prefix = format!("auth/{}/", rec.mount);
        assert!(
            !rec.audit_raw.is_empty(),
            "{}: no audit entries",
            outcome.name
        );
        for e in &rec.audit_raw {
            let path = e["request"]["path"].as_str().unwrap_or_default();
            assert!(
                path.starts_with(&prefix),
                "{}: foreign audit entry {path}",
                outcome.name
            );
        }
        assert!(
            !rec.evidence.server_log.is_empty(),
            "{}: no log lines",
            outcome.name
        );
        for l in &rec.evidence.server_log {
            assert!(
                l.module
                    .as_deref()
                    .is_some_and(|m| m.ends_with(&rec.accessor)),
                "{}: foreign log line {}",
                outcome.name,
                l.raw
            );
        }
    }
    rt.block_on(lab.shutdown());
}

/// A bad role audience in client-token mode: the client error, the audit response entry with
/// its error, and the debug `login unauthorized` line with the TokenReview cause.
#[test]
fn audience_failure_evidence_from_a_real_server() {
    let rt = runtime();
    if !have_binary(&rt) {
        return;
    }
    let dir = cases_dir();
    let file = dir.join("kubernetes/client-token/token-without-api-audience.yaml");
    let case = Arc::new(load::load_file(&dir, &file).unwrap());
    let t = matrix::expand(&[case], &[spec()], matrix::ClusterKind::Sim).remove(0);
    let lab = Lab::new(LabOptions::new(matrix::ClusterKind::Sim)).unwrap();
    let (outcome, rec) = rt.block_on(trial::run_recorded(&lab, &t));
    assert!(
        matches!(outcome.verdict, trial::Verdict::Passed),
        "{:?}",
        outcome.verdict
    );
    let login = rec.evidence.login.as_ref().unwrap();
    assert_eq!(login.status, 403);
    assert_eq!(login.errors, vec!["permission denied".to_string()]);
    let audit = rec.evidence.audit_login.as_ref().unwrap();
    assert_eq!(audit.kind, "response");
    assert_eq!(audit.error.as_deref(), Some("permission denied"));
    let line = rec
        .evidence
        .server_log
        .iter()
        .find(|l| l.message == "login unauthorized")
        .expect("a login unauthorized line");
    assert_eq!(line.level, "DEBUG");
    assert!(
        line.fields
            .iter()
            .any(|(k, v)| k == "err" && v.contains("service account unauthorized"))
    );
    let review = rec
        .evidence
        .cluster_requests
        .iter()
        .find(|r| r.path.contains("tokenreviews"))
        .expect("a TokenReview reached the cluster");
    assert_eq!(review.status, 401);
    rt.block_on(lab.shutdown());
}
