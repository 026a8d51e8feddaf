//! Real OpenBao servers: start-up, the API client, evidence capture and per-trial isolation of
//! evidence.
//!
//! These run against the binary the project provisions for `openbao:2.7.2` (or
//! `AUTHLAB_TEST_SERVER`), provisioned if need be: a test that cannot have it fails. The one
//! that needs Docker is reported as ignored with the reason where Docker is not reachable (a
//! failure where the run requires it). Set `AUTHLAB_TEST_KEEP=1` to keep each server's directory
//! (config, server log, audit log) and print where it is.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

mod common;

use authlab::{
    case::{load, matrix},
    lab::{Lab, LabOptions},
    logs::{self, AuditEntry, LogLine},
    server::{
        OPENBAO_VERSIONS, ServerSpec,
        binary::{BinaryCache, version_of},
        process::{self, ProcessOptions, RunningServer},
    },
    trial,
    vault::VaultClient,
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::json;

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

/// The binary for `spec`, provisioned if need be; a test that cannot have it fails.
fn binary_for(rt: &tokio::runtime::Runtime, spec: &ServerSpec) -> PathBuf {
    rt.block_on(async {
        BinaryCache::new(common::settings())?
            .ensure(spec, &|l| eprintln!("{spec}: {l}"))
            .await
    })
    .unwrap_or_else(|e| panic!("the {spec} binary: {e:#}"))
}

/// Provisions the binary of [`spec`] (a test that cannot have it fails).
fn ensure_binary(rt: &tokio::runtime::Runtime) {
    binary_for(rt, &spec());
}

/// A directory for one server's files, kept when `AUTHLAB_TEST_KEEP=1`.
fn workdir(name: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix(&format!("authlab-{name}-"))
        .tempdir()
        .unwrap();
    if std::env::var("AUTHLAB_TEST_KEEP").is_ok_and(|v| v == "1") {
        eprintln!("{name}: keeping {}", dir.path().display());
        let mut dir = dir;
        dir.disable_cleanup(true);
        return dir;
    }
    dir
}

/// Starts the test server in `dir`.
fn start(rt: &tokio::runtime::Runtime, bin: &Path, dir: &Path, run_id: &str) -> RunningServer {
    let spec = spec();
    rt.block_on(RunningServer::start(
        &spec,
        bin,
        ProcessOptions::new(dir, run_id),
    ))
    .unwrap_or_else(|e| panic!("starting {spec}: {e:#}"))
}

/// A loopback port nothing listens on (connections are refused).
fn refused_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A self-signed CA certificate (PEM): kubernetes auth wants one with `disable_local_ca_jwt`.
fn ca_pem() -> String {
    rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()])
        .unwrap()
        .cert
        .pem()
}

/// An RS256 service-account token for `system:serviceaccount:<ns>:<name>`, shaped like a
/// projected kube token.
fn sa_token(ns: &str, name: &str) -> String {
    use aws_lc_rs::{rand::SystemRandom, rsa::KeyPair, signature::RSA_PKCS1_SHA256};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": "test"});
    let claims = json!({
        "iss": "https://kubernetes.default.svc.cluster.local",
        "sub": format!("system:serviceaccount:{ns}:{name}"),
        "aud": ["https://kubernetes.default.svc.cluster.local"],
        "exp": now + 3600, "iat": now, "nbf": now,
        "jti": uuid::Uuid::new_v4().to_string(),
        "kubernetes.io": {
            "namespace": ns,
            "pod": {"name": format!("{name}-0"), "uid": uuid::Uuid::new_v4().to_string()},
            "serviceaccount": {"name": name, "uid": uuid::Uuid::new_v4().to_string()},
        },
    });
    let enc = |v: &serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let input = format!("{}.{}", enc(&header), enc(&claims));
    let key = KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let mut sig = vec![0u8; key.public_modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        input.as_bytes(),
        &mut sig,
    )
    .unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// Enables kubernetes auth at `mount` pointing at `127.0.0.1:<port>`, with role `app` bound to
/// `default/app`; returns the mount's accessor.
async fn kubernetes_mount(client: &VaultClient, mount: &str, port: u16, ca: &str) -> String {
    client.enable_auth(mount, "kubernetes").await.unwrap();
    let r = client
        .write(
            &format!("auth/{mount}/config"),
            &json!({
                "kubernetes_host": format!("https://127.0.0.1:{port}"),
                "kubernetes_ca_cert": ca,
                "disable_local_ca_jwt": true,
            }),
        )
        .await
        .unwrap();
    assert!(r.is_success(), "config: {} {:?}", r.status, r.errors());
    let r = client
        .write(
            &format!("auth/{mount}/role/app"),
            &json!({
                "bound_service_account_names": ["app"],
                "bound_service_account_namespaces": ["default"],
                "token_policies": ["default"],
                "token_ttl": "1h",
            }),
        )
        .await
        .unwrap();
    assert!(r.is_success(), "role: {} {:?}", r.status, r.errors());
    client.auth_accessor(mount).await.unwrap()
}

/// The server's audit entries (the device writes synchronously, so they are there when the
/// response is).
fn audit(server: &RunningServer) -> Vec<AuditEntry> {
    logs::parse_audit_log(&std::fs::read_to_string(server.audit_log_path()).unwrap())
}

/// The `login unauthorized` line of the mount with `accessor`, waited for (the log is written
/// asynchronously).
fn login_unauthorized(
    rt: &tokio::runtime::Runtime,
    server: &RunningServer,
    accessor: &str,
) -> LogLine {
    let acc = accessor.to_string();
    rt.block_on(server.wait_for_log(
        move |l| {
            l.message == "login unauthorized"
                && l.module.as_deref().is_some_and(|m| m.ends_with(&acc))
        },
        Duration::from_secs(5),
    ))
    .unwrap_or_else(|| panic!("no `login unauthorized` line for {accessor}"))
}

/// A real server starts from its rendered config, is initialised and unsealed, logs at debug,
/// writes its declared audit device, and stops.
fn server_starts_logs_at_debug_audits_and_stops() {
    let rt = runtime();
    let spec = spec();
    let bin = binary_for(&rt, &spec);
    let version = version_of(&bin).unwrap();
    assert!(version.contains(&format!("v{}", spec.version)), "{version}");
    let dir = workdir("start");
    let mut server = start(&rt, &bin, dir.path(), "test-start");
    eprintln!(
        "{spec}: ready in {:?} ({:?})",
        server.startup(),
        server.startup_timings()
    );
    assert!(server.addr().starts_with("http://127.0.0.1:"));
    assert!(server.config_text().contains("audit \"file\" \"authlab\""));
    let client = server.client();
    let health = rt.block_on(client.health()).unwrap();
    assert_eq!(health.status, 200, "{}", health.raw);
    assert_eq!(health.body["initialized"], json!(true));
    assert_eq!(health.body["sealed"], json!(false));
    // Listed as declared in the config.
    let audit_devices = rt.block_on(client.read("sys/audit")).unwrap();
    assert!(
        audit_devices.raw.contains("authlab/"),
        "{}",
        audit_devices.raw
    );
    // Without a token: 403, and the ApiResponse carries the server's errors.
    let anon = rt
        .block_on(client.with_token(None).read("sys/mounts"))
        .unwrap();
    assert_eq!(anon.status, 403);
    assert_eq!(anon.errors(), vec!["permission denied".to_string()]);
    rt.block_on(client.enable_kv2("secret")).unwrap();
    rt.block_on(client.put_policy(
        "app-read",
        "path \"secret/data/app/*\" { capabilities = [\"read\"] }",
    ))
    .unwrap();
    let e = rt
        .block_on(client.enable_auth("bad", "no-such-kind"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("POST /v1/sys/auth/bad answered 400"), "{e}");
    // Debug lines appear in the server log.
    let debug = rt
        .block_on(server.wait_for_log(|l| l.level == "DEBUG", Duration::from_secs(5)))
        .expect("a DEBUG line");
    assert!(debug.module.is_some(), "{}", debug.raw);
    let entries = audit(&server);
    assert!(
        entries
            .iter()
            .any(|e| e.kind == "response" && e.path == "sys/policies/acl/app-read"),
        "no audit entry for the policy write"
    );
    let pid = server.pid().unwrap();
    rt.block_on(server.stop());
    assert!(!Path::new(&format!("/proc/{pid}")).exists() || is_zombie(pid));
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.split(") ").nth(1).is_some_and(|r| r.starts_with('Z')))
        .unwrap_or(true)
}

/// A kubernetes login whose TokenReview cannot connect: the client sees only `permission
/// denied`; the audit response entry has the same error; the cause is in a DEBUG line of the
/// mount's logger. The 400s keep their text in `response.data.error`.
fn kubernetes_login_failure_evidence() {
    let rt = runtime();
    let bin = binary_for(&rt, &spec());
    let dir = workdir("k8s");
    let server = start(&rt, &bin, dir.path(), "test-k8s");
    let client = server.client();
    let port = refused_port();
    let ca = ca_pem();
    let accessor = rt.block_on(kubernetes_mount(&client, "k8s-a", port, &ca));
    assert!(accessor.starts_with("auth_kubernetes_"), "{accessor}");
    let jwt = sa_token("default", "app");
    let login = rt.block_on(client.login("k8s-a", "app", &jwt)).unwrap();
    assert_eq!(login.status, 403, "{}", login.raw);
    assert_eq!(login.errors(), vec!["permission denied".to_string()]);
    let nope = rt.block_on(client.login("k8s-a", "nope", &jwt)).unwrap();
    assert_eq!(nope.status, 400);
    assert_eq!(
        nope.errors(),
        vec![r#"invalid role name "nope""#.to_string()]
    );
    let missing = rt.block_on(client.login("k8s-a", "app", "")).unwrap();
    assert_eq!(missing.status, 400);
    assert_eq!(missing.errors(), vec!["missing jwt".to_string()]);

    let line = login_unauthorized(&rt, &server, &accessor);
    assert_eq!(line.level, "DEBUG");
    assert_eq!(
        line.module.as_deref(),
        Some(format!("auth.kubernetes.{accessor}").as_str())
    );
    let err = &line.fields.iter().find(|(k, _)| k == "err").unwrap().1;
    assert_eq!(
        err,
        &format!(
            "Post \"https://127.0.0.1:{port}/apis/authentication.k8s.io/v1/tokenreviews\": \
             dial tcp 127.0.0.1:{port}: connect: connection refused"
        )
    );

    let mine = logs::audit_for_mount(&audit(&server), "auth/k8s-a/", Some(&accessor));
    let logins: Vec<_> = mine
        .iter()
        .filter(|e| e.path == "auth/k8s-a/login" && e.kind == "response")
        .collect();
    assert_eq!(logins.len(), 3, "{logins:#?}");
    assert_eq!(logins[0].error.as_deref(), Some("permission denied"));
    assert_eq!(logins[0].operation, "update");
    assert_eq!(logins[0].mount_point.as_deref(), Some("auth/k8s-a/"));
    assert_eq!(logins[1].error, None);
    assert_eq!(
        logins[1].data_error.as_deref(),
        Some(r#"invalid role name "nope""#)
    );
    assert_eq!(logins[2].data_error.as_deref(), Some("missing jwt"));
    // Request and response entries share the request id.
    let id = logins[0].request_id.clone().unwrap();
    assert!(
        mine.iter()
            .any(|e| e.kind == "request" && e.request_id.as_deref() == Some(&id))
    );
}

/// Eight kubernetes mounts, each pointing at its own refused port, logged in to concurrently:
/// each mount's slice of the audit log and of the server log holds its own entries only.
fn evidence_of_concurrent_mounts_is_sliced_per_mount() {
    let rt = runtime();
    let bin = binary_for(&rt, &spec());
    let dir = workdir("slices");
    let server = start(&rt, &bin, dir.path(), "test-slices");
    let client = server.client();
    let ca = ca_pem();
    let mounts: Vec<(String, u16, String)> = rt.block_on(async {
        let mut out = Vec::new();
        for i in 0..8 {
            let mount = format!("k8s-{i}");
            // Eight different ports: a port just let go may be handed out again.
            let mut port = refused_port();
            while out.iter().any(|(_, p, _)| *p == port) {
                port = refused_port();
            }
            let acc = kubernetes_mount(&client, &mount, port, &ca).await;
            out.push((mount, port, acc));
        }
        out
    });
    let jwt = sa_token("default", "app");
    let statuses = rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for (mount, _, _) in &mounts {
            let (c, m, j) = (client.clone(), mount.clone(), jwt.clone());
            set.spawn(async move { (m.clone(), c.login(&m, "app", &j).await.unwrap().status) });
        }
        set.join_all().await
    });
    assert!(statuses.iter().all(|(_, s)| *s == 403), "{statuses:?}");
    // The log is written asynchronously: wait for every mount's line, then read it once.
    for (_, _, acc) in &mounts {
        login_unauthorized(&rt, &server, acc);
    }
    let entries = audit(&server);
    let log = logs::parse_server_log(&std::fs::read_to_string(server.server_log_path()).unwrap());
    for (mount, port, acc) in &mounts {
        let prefix = format!("auth/{mount}/");
        let slice = logs::audit_for_mount(&entries, &prefix, Some(acc));
        // config + role + login, each a request and a response entry.
        assert_eq!(slice.len(), 6, "{mount}: {slice:#?}");
        for e in &slice {
            assert!(e.path.starts_with(&prefix), "{mount}: {}", e.path);
            assert_eq!(e.mount_accessor.as_deref(), Some(acc.as_str()));
        }
        let login = slice
            .iter()
            .find(|e| e.kind == "response" && e.path.ends_with("/login"))
            .unwrap();
        assert_eq!(login.error.as_deref(), Some("permission denied"));
        let lines = logs::log_for_accessor(&log, acc);
        assert!(!lines.is_empty());
        let unauthorized: Vec<_> = lines
            .iter()
            .filter(|l| l.message == "login unauthorized")
            .collect();
        assert_eq!(unauthorized.len(), 1, "{mount}: {unauthorized:#?}");
        let err = &unauthorized[0].fields[0].1;
        assert!(
            err.contains(&format!("127.0.0.1:{port}/")),
            "{mount}: {err}"
        );
        for (_, other_port, other_acc) in mounts.iter().filter(|m| &m.2 != acc) {
            assert!(!err.contains(&format!(":{other_port}/")), "{mount}: {err}");
            assert!(lines.iter().all(|l| !l.raw.contains(other_acc.as_str())));
        }
    }
}

/// Every supported OpenBao version starts, and its start-up time is printed (not asserted:
/// timings belong in reports).
fn every_supported_version_starts() {
    let rt = runtime();
    let dir = workdir("versions");
    for v in OPENBAO_VERSIONS {
        let spec: ServerSpec = format!("openbao:{v}").parse().unwrap();
        let bin = binary_for(&rt, &spec);
        let runs = rt
            .block_on(process::measure_startup(
                &spec,
                &bin,
                &dir.path().join(v),
                3,
            ))
            .unwrap_or_else(|e| panic!("{e:#}"));
        let ms: Vec<String> = runs
            .iter()
            .map(|t| format!("{:.0}", t.ready.as_secs_f64() * 1000.0))
            .collect();
        eprintln!(
            "{spec}: ready after [{}] ms (listening after {:.0} ms on the first start)",
            ms.join(", "),
            runs[0].listening.as_secs_f64() * 1000.0
        );
    }
}

/// A started server is found by its run id, and no longer once stopped.
fn leftover_servers_are_found_by_run_id() {
    let rt = runtime();
    let bin = binary_for(&rt, &spec());
    let dir = workdir("leftover");
    let run_id = format!("test-leftover-{}", uuid::Uuid::new_v4().simple());
    let mut server = start(&rt, &bin, dir.path(), &run_id);
    let pid = server.pid().unwrap();
    assert!(authlab::scope::process::find_leftover_processes().contains(&(pid, run_id.clone())));
    rt.block_on(server.stop());
    assert!(
        !authlab::scope::process::find_leftover_processes()
            .iter()
            .any(|(_, r)| r == &run_id)
    );
}

/// A server that exits at once, or never answers, fails start-up with what was waited for,
/// how long, and the end of its log.
fn failed_start_up_explains_itself() {
    use std::os::unix::fs::PermissionsExt;
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let script = |name: &str, body: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    };
    let exits = script(
        "exits",
        "echo \"Error parsing config: $2 is broken\" >&2\nexit 1",
    );
    let e = rt
        .block_on(RunningServer::start(
            &spec(),
            &exits,
            ProcessOptions::new(dir.path().join("a"), "test-fail"),
        ))
        .unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains("exited during start-up"), "{msg}");
    assert!(msg.contains("is broken"), "{msg}");
    let hangs = script("hangs", "echo listening never\nexec sleep 30");
    let mut opts = ProcessOptions::new(dir.path().join("b"), "test-fail");
    opts.ready_timeout = Duration::from_millis(300);
    let started = std::time::Instant::now();
    let e = rt
        .block_on(RunningServer::start(&spec(), &hangs, opts))
        .unwrap_err();
    let msg = format!("{e:#}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(msg.contains("timed out waiting for the listener"), "{msg}");
    assert!(msg.contains("listening never"), "{msg}");
    assert!(msg.contains("/v1/sys/health"), "{msg}");
    // A port taken between choosing and binding it: start-up tries other ports, then gives up.
    let tries = dir.path().join("tries");
    let taken = script(
        "taken",
        &format!(
            "echo try >> '{}'\necho 'Error initializing listener of type tcp: listen tcp4 \
             127.0.0.1:1: bind: address already in use' >&2\nexit 1",
            tries.display()
        ),
    );
    let e = rt
        .block_on(RunningServer::start(
            &spec(),
            &taken,
            ProcessOptions::new(dir.path().join("c"), "test-fail"),
        ))
        .unwrap_err();
    assert!(format!("{e:#}").contains("address already in use"), "{e:#}");
    assert_eq!(std::fs::read_to_string(&tries).unwrap().lines().count(), 3);
}

fn cases_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../cases")
}

/// The trials of the shipped case files `files` on [`spec`] and the sim.
fn sim_trials(files: &[&str]) -> Vec<matrix::Trial> {
    let dir = cases_dir();
    let cases: Vec<_> = files
        .iter()
        .map(|n| Arc::new(load::load_file(&dir, &dir.join(n)).unwrap()))
        .collect();
    matrix::expand(&cases, &[spec()], matrix::ClusterKind::Sim)
}

/// A lab for sim trials.
fn sim_lab() -> Lab {
    Lab::new(LabOptions::new(
        matrix::ClusterKind::Sim,
        common::settings(),
    ))
    .unwrap()
}

/// Eight trials at once against one server: each trial's audit entries and server-log lines
/// belong to its own mount only, and each has the entries its failure produces.
fn parallel_trials_see_only_their_own_evidence() {
    let rt = runtime();
    ensure_binary(&rt);
    let trials = sim_trials(&[
        "kubernetes/client-token/missing-auth-delegator.yaml",
        "kubernetes/client-token/token-without-api-audience.yaml",
        "kubernetes/reviewer-jwt/reviewer-without-rbac.yaml",
        "kubernetes/token/service-account-deleted.yaml",
        "kubernetes/token/pod-deleted.yaml",
        "kubernetes/client-token/api-unreachable.yaml",
        "kubernetes/token/garbage-jwt.yaml",
        "reported/kb-tokenreview-forbidden-client-token.yaml",
    ]);
    assert_eq!(trials.len(), 8);
    let lab = Arc::new(sim_lab());
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
fn audience_failure_evidence_from_a_real_server() {
    let rt = runtime();
    ensure_binary(&rt);
    let t = sim_trials(&["kubernetes/client-token/token-without-api-audience.yaml"]).remove(0);
    let lab = sim_lab();
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

/// A pod's identity in namespace `vault` behind the `kubernetes` Service's usual address.
fn pod_identity(token: &str) -> authlab::container::PodIdentity {
    authlab::container::PodIdentity {
        token: token.into(),
        ca_pem: "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n".into(),
        namespace: "vault".into(),
        kubernetes_service_host: "10.96.0.1".into(),
        kubernetes_service_port: 443,
    }
}

/// A server container with a pod identity: the service-account files are where kubelet puts
/// them, the token can be rotated in place, the audit log reaches the host, and removal leaves
/// nothing behind.
fn pod_emulation_container() {
    let rt = runtime();
    ensure_binary(&rt);
    let engine = rt
        .block_on(authlab::container::Engine::connect(common::settings()))
        .expect("Docker, checked before the test");
    let lab = sim_lab();
    rt.block_on(async {
        let pod = pod_identity("first-token");
        let mut h = lab
            .docker()
            .start_container(&spec(), Some(pod), Some("pod-test"), None)
            .await
            .unwrap();
        let name = h.container_name().unwrap();
        assert_eq!(h.client().health().await.unwrap().status, 200);
        let dir = format!("/{}", authlab::container::SA_DIR);
        let server = h.container_server().unwrap();
        assert_eq!(
            server.read_file(&format!("{dir}/token")).await.unwrap(),
            b"first-token"
        );
        assert_eq!(
            server.read_file(&format!("{dir}/namespace")).await.unwrap(),
            b"vault"
        );
        // Renewed on the host, seen at once inside (a read-only mount, as kubelet's).
        server.write_pod_token("rotated-token").unwrap();
        assert_eq!(server.pod_token().unwrap(), "rotated-token");
        assert_eq!(
            server.read_file(&format!("{dir}/token")).await.unwrap(),
            b"rotated-token"
        );
        // The server's own requests are audited into the host-side file.
        h.client().read("sys/mounts").await.unwrap();
        let audit = std::fs::read_to_string(h.audit_log_path()).unwrap();
        assert!(audit.contains("\"path\":\"sys/mounts\""), "{audit}");
        h.stop().await;
        let left = engine.list_managed().await.unwrap();
        assert!(
            !left.iter().any(|o| o.name == name),
            "container {name} left behind"
        );
    });
    rt.block_on(lab.shutdown());
}

/// Inside trials one after another on one server version: the second is served by the pod
/// container the first gave back, with its own token, CA and namespace files, and both pass;
/// the pod is removed with the lab.
fn a_pod_server_serves_the_next_trial_with_its_identity() {
    let rt = runtime();
    ensure_binary(&rt);
    let trials = sim_trials(&[
        "kubernetes/local-token/works.yaml",
        "kubernetes/local-token/pod-without-auth-delegator.yaml",
    ]);
    let lab = sim_lab();
    let engine = rt
        .block_on(authlab::container::Engine::connect(common::settings()))
        .expect("Docker, checked before the test");
    let run = &lab.options().run_id;
    let mut seen = Vec::new();
    for t in &trials {
        let (outcome, _) = rt.block_on(trial::run_recorded(&lab, t));
        assert!(
            matches!(outcome.verdict, trial::Verdict::Passed),
            "{}: {:?}",
            outcome.name,
            outcome.verdict
        );
        seen.push(rt.block_on(trial_containers(&engine, run)));
    }
    assert_eq!(
        seen[0].len(),
        1,
        "one pod container after the first trial: {seen:?}"
    );
    assert_eq!(
        seen[0], seen[1],
        "the second trial started a pod of its own"
    );
    rt.block_on(lab.shutdown());
    assert_eq!(
        rt.block_on(trial_containers(&engine, run)),
        Vec::<String>::new(),
        "pods left after shutdown"
    );
}

/// Every port of the pods' network held by a trial's pod and one more pod wanted: it waits,
/// and the pod a trial gives back while it waits makes way for it (a pod given back to an
/// idle list nobody reads would hold its port until the wait ran out).
fn a_pod_waiting_for_a_port_takes_the_one_a_trial_gives_back() {
    let rt = runtime();
    ensure_binary(&rt);
    let lab = sim_lab();
    let pod = |n: usize| pod_identity(&format!("token-{n}"));
    let docker = lab.docker();
    let spec = spec();
    rt.block_on(async {
        let held: Vec<_> = futures_util::future::join_all(
            (0..usize::from(authlab::container::POD_PORTS))
                .map(|n| docker.start_container(&spec, Some(pod(n)), Some("held"), None)),
        )
        .await
        .into_iter()
        .map(|h| h.expect("a pod server while ports are free"))
        .collect();
        let waiting = docker.start_container(&spec, Some(pod(99)), Some("waiting"), None);
        let give_back = async {
            // Given back once the last pod is surely waiting.
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            let mut held = held.into_iter();
            docker.give_back_pod(&spec, held.next().unwrap());
            held
        };
        let (last, held) = tokio::time::timeout(
            std::time::Duration::from_secs(60),
            futures_util::future::join(waiting, give_back),
        )
        .await
        .expect("the waiting pod got the port given back within 60 s");
        let mut last = last.expect("the last pod server");
        assert_eq!(last.client().health().await.unwrap().status, 200);
        last.stop().await;
        for mut h in held {
            h.stop().await;
        }
    });
    let engine = rt
        .block_on(authlab::container::Engine::connect(common::settings()))
        .expect("Docker, checked before the test");
    let run = &lab.options().run_id;
    rt.block_on(lab.shutdown());
    assert_eq!(
        rt.block_on(trial_containers(&engine, run)),
        Vec::<String>::new(),
        "pods left after shutdown"
    );
}

/// The names of run `run`'s trial containers (`authlab-<run>-t<n>`), sorted.
async fn trial_containers(engine: &authlab::container::Engine, run: &str) -> Vec<String> {
    let prefix = format!("authlab-{run}-t");
    let mut names: Vec<String> = engine
        .list_managed()
        .await
        .unwrap()
        .into_iter()
        .filter(|o| o.kind == "container" && o.name.starts_with(&prefix))
        .map(|o| o.name)
        .collect();
    names.sort();
    names
}

/// The kubeconfig cluster path end to end: an API server reached only through a kubeconfig
/// (here the sim, served on its own), trials one at a time, objects removed afterwards.
fn cases_run_against_a_cluster_given_by_kubeconfig() {
    let rt = runtime();
    ensure_binary(&rt);
    let dir = cases_dir();
    let names = [
        "kubernetes/client-token/works.yaml",
        "kubernetes/client-token/missing-auth-delegator.yaml",
        "kubernetes/reviewer-jwt/works-legacy-reviewer-token.yaml",
        "jwt/jwks-url-works.yaml",
        "kubernetes/token/expired-client-token.yaml",
    ];
    let cases: Vec<_> = names
        .iter()
        .map(|n| Arc::new(load::load_file(&dir, &dir.join(n)).unwrap()))
        .collect();
    let sim = rt
        .block_on(authlab::sim::SimCluster::start(Default::default()))
        .unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let kc = scratch.path().join("kubeconfig");
    std::fs::write(&kc, sim.kubeconfig_yaml(None)).unwrap();
    let mut opts = LabOptions::new(matrix::ClusterKind::Kubeconfig, common::settings());
    opts.kubeconfig = Some((kc, None));
    let lab = Lab::new(opts).unwrap();
    let trials = matrix::expand(&cases, &[spec()], matrix::ClusterKind::Kubeconfig);
    for t in &trials {
        let (outcome, _) = rt.block_on(trial::run_recorded(&lab, t));
        match (&outcome.verdict, t.not_applicable.is_some()) {
            (trial::Verdict::Passed, false) | (trial::Verdict::Ignored(_), true) => {}
            (v, _) => panic!("{}: {v:?}", outcome.name),
        }
    }
    // Nothing the trials applied is left (namespaces aside).
    let crbs = rt.block_on(async {
        let api: kube::Api<k8s_openapi::api::rbac::v1::ClusterRoleBinding> =
            kube::Api::all(sim.kube_client().unwrap());
        api.list(&Default::default()).await.unwrap()
    });
    assert!(
        !crbs
            .items
            .iter()
            .any(|b| b.metadata.name.as_deref() == Some("internal-app-tokenreview")),
        "a trial's ClusterRoleBinding was left behind"
    );
    rt.block_on(lab.shutdown());
    rt.block_on(sim.shutdown());
}

/// Without kube-apiserver and etcd, an apiserver trial is ignored, saying where authlab looked
/// and how to get them, and names its requirement (`AUTHLAB_REQUIRE=apiserver` fails it).
fn apiserver_trials_without_binaries_are_ignored_with_how_to_get_them() {
    let rt = runtime();
    let dir = cases_dir();
    let case = load::load_file(&dir, &dir.join("kubernetes/client-token/works.yaml")).unwrap();
    let mut opts = LabOptions::new(matrix::ClusterKind::Apiserver, common::settings());
    opts.settings.path = Some("/nonexistent".into());
    opts.settings.kube_apiserver_bin = Some("/nonexistent/kube-apiserver".into());
    opts.settings.kubebuilder_assets = None;
    let lab = Lab::new(opts).unwrap();
    let trials = matrix::expand(&[Arc::new(case)], &[spec()], matrix::ClusterKind::Apiserver);
    let (outcome, _) = rt.block_on(trial::run_recorded(&lab, &trials[0]));
    assert!(outcome.name.ends_with("::apiserver"), "{}", outcome.name);
    match &outcome.verdict {
        trial::Verdict::Ignored(why) => {
            assert!(why.contains("kube-apiserver not found"), "{why}");
            assert!(
                why.contains("AUTHLAB_KUBE_APISERVER_BIN=/nonexistent/kube-apiserver"),
                "{why}"
            );
            assert!(why.contains("setup-envtest"), "{why}");
        }
        v => panic!("{v:?}"),
    }
    assert_eq!(outcome.requirement, Some("apiserver"));
    rt.block_on(lab.shutdown());
}

fn main() -> std::process::ExitCode {
    common::run(vec![
        common::test(
            "server_starts_logs_at_debug_audits_and_stops",
            common::Needs::Nothing,
            server_starts_logs_at_debug_audits_and_stops,
        ),
        common::test(
            "kubernetes_login_failure_evidence",
            common::Needs::Nothing,
            kubernetes_login_failure_evidence,
        ),
        common::test(
            "evidence_of_concurrent_mounts_is_sliced_per_mount",
            common::Needs::Nothing,
            evidence_of_concurrent_mounts_is_sliced_per_mount,
        ),
        common::test(
            "every_supported_version_starts",
            common::Needs::Nothing,
            every_supported_version_starts,
        ),
        common::test(
            "leftover_servers_are_found_by_run_id",
            common::Needs::Nothing,
            leftover_servers_are_found_by_run_id,
        ),
        common::test(
            "failed_start_up_explains_itself",
            common::Needs::Nothing,
            failed_start_up_explains_itself,
        ),
        common::test(
            "parallel_trials_see_only_their_own_evidence",
            common::Needs::Nothing,
            parallel_trials_see_only_their_own_evidence,
        ),
        common::test(
            "audience_failure_evidence_from_a_real_server",
            common::Needs::Nothing,
            audience_failure_evidence_from_a_real_server,
        ),
        common::test(
            "pod_emulation_container",
            common::Needs::Docker,
            pod_emulation_container,
        ),
        common::test(
            "a_pod_server_serves_the_next_trial_with_its_identity",
            common::Needs::Docker,
            a_pod_server_serves_the_next_trial_with_its_identity,
        ),
        common::test(
            "a_pod_waiting_for_a_port_takes_the_one_a_trial_gives_back",
            common::Needs::Docker,
            a_pod_waiting_for_a_port_takes_the_one_a_trial_gives_back,
        ),
        common::test(
            "cases_run_against_a_cluster_given_by_kubeconfig",
            common::Needs::Nothing,
            cases_run_against_a_cluster_given_by_kubeconfig,
        ),
        common::test(
            "apiserver_trials_without_binaries_are_ignored_with_how_to_get_them",
            common::Needs::Nothing,
            apiserver_trials_without_binaries_are_ignored_with_how_to_get_them,
        ),
    ])
}
