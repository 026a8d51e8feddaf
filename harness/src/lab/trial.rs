//! Running one trial: cluster objects → tokens → server configuration → login → follow-up
//! steps → evidence → verdict, then cleanup of everything the trial created.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use serde_json::{Value, json};

use super::{
    Lab, cleanup, objects, tokens,
    verdict::{self, Evidence, Observed},
};
use crate::{
    case::{
        effective,
        load::resolve_manifest,
        matrix::{ClusterKind, Trial},
        model::{AuthMethod, ClusterAction, ObjectSource, Topology},
    },
    evidence,
    sim::{HangListener, SimCluster, SimConfig},
    vault::{ApiResponse, VaultClient},
};

/// How a trial ended.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// Every expectation held.
    Passed,
    /// Expectations did not hold (one line each).
    Failed(Vec<String>),
    /// The trial could not run here (reason).
    Ignored(String),
    /// The lab could not carry the trial out (setup error).
    Error(String),
}

/// The result of one trial.
#[derive(Debug, Clone)]
pub struct TrialOutcome {
    /// Trial name.
    pub name: String,
    /// Verdict.
    pub verdict: Verdict,
    /// Time spent per phase.
    pub phases: Vec<(&'static str, Duration)>,
    /// Total wall time.
    pub total: Duration,
    /// Artifacts folder, when one was written.
    pub artifacts: Option<PathBuf>,
    /// For an ignored trial: the requirement that was missing.
    pub requirement: Option<&'static str>,
}

/// What a trial recorded, for artifacts and diagnosis.
#[derive(Debug, Default)]
pub struct TrialRecord {
    /// Rendered server config of the shared server.
    pub server_config: String,
    /// Objects applied to the cluster.
    pub objects: Vec<Value>,
    /// Auth mount path.
    pub mount: String,
    /// Auth mount accessor.
    pub accessor: String,
    /// Config written to `auth/<mount>/config` (holds secrets).
    pub auth_config: Value,
    /// Role written.
    pub role: Value,
    /// Policy HCL.
    pub policy: String,
    /// Client JWT (secret).
    pub client_jwt: Option<String>,
    /// Reviewer JWT (secret).
    pub reviewer_jwt: Option<String>,
    /// Login response body.
    pub login_body: Option<Value>,
    /// Evidence collected.
    pub evidence: Evidence,
    /// Audit entries of the mount (raw JSON).
    pub audit_raw: Vec<Value>,
    /// Cluster request log for the whole trial.
    pub cluster_log: Vec<crate::sim::RequestRecord>,
    /// Placeholder values (may hold secrets).
    pub vars: BTreeMap<String, String>,
    /// Ranked causes from the trial's own evidence.
    pub findings: Vec<crate::diagnose::Finding>,
    /// The rendered diagnosis.
    pub diagnosis: String,
}

/// Runs one trial in `lab`. Never panics on bad input; errors become [`Verdict::Error`].
pub async fn run(lab: &Lab, trial: &Trial) -> TrialOutcome {
    run_recorded(lab, trial).await.0
}

/// Runs one trial and also returns everything it recorded (evidence, config, tokens).
pub async fn run_recorded(lab: &Lab, trial: &Trial) -> (TrialOutcome, TrialRecord) {
    let start = Instant::now();
    let mut phases = Vec::new();
    let mut record = TrialRecord::default();
    let mut requirement = None;
    let verdict = if let Some(reason) = &trial.not_applicable {
        Verdict::Ignored(reason.clone())
    } else {
        match execute(lab, trial, &mut phases, &mut record).await {
            Ok(mismatches) if mismatches.is_empty() => Verdict::Passed,
            Ok(mismatches) => Verdict::Failed(mismatches),
            Err(e) => match e.downcast_ref::<NotAvailable>() {
                Some(na) => {
                    requirement = Some(na.what);
                    Verdict::Ignored(na.reason.clone())
                }
                None => Verdict::Error(format!("{e:#}")),
            },
        }
    };
    let artifacts = match (&verdict, &lab.options().artifacts_dir) {
        (Verdict::Failed(_) | Verdict::Error(_), Some(dir)) => {
            crate::report::artifacts::write(dir, trial, &record, &verdict)
                .map_err(|e| {
                    eprintln!(
                        "authlab: could not write artifacts for {}: {e:#}",
                        trial.name
                    )
                })
                .ok()
        }
        _ => None,
    };
    let outcome = TrialOutcome {
        name: trial.name.clone(),
        verdict,
        requirement,
        phases,
        total: start.elapsed(),
        artifacts,
    };
    (outcome, record)
}

/// What a trial needs of its cluster.
pub struct ClusterView<'a> {
    /// The sim, when the cluster is one (it can sign hand-made tokens and logs requests).
    pub sim: Option<&'a SimCluster>,
    /// Admin client.
    pub client: kube::Client,
    /// API server URL as the server reaches it.
    pub url: String,
    /// Cluster CA (PEM).
    pub ca_pem: String,
    /// Service-account issuer.
    pub issuer: String,
    /// Service-account public key (PEM), when known.
    pub pubkey: Option<String>,
}

/// A trial on a Kind or kubeconfig cluster: one at a time, objects deleted afterwards.
async fn execute_external(
    lab: &Lab,
    trial: &Trial,
    mut t: Timer<'_>,
    record: &mut TrialRecord,
    flavour: &str,
) -> Result<Vec<String>> {
    let case = &trial.case.case;
    let ext = lab.external_cluster(trial.cluster).await.map_err(|e| {
        NotAvailable::err(
            trial.cluster.as_str(),
            format!(
                "the {} cluster is not available: {e:#}",
                trial.cluster.as_str()
            ),
        )
    })?;
    let inside = case.topology == Topology::Inside;
    let server = if inside {
        lab.in_cluster_server(&trial.server, &ext).await?
    } else {
        lab.server(&trial.server).await?
    };
    record.server_config = server.config_text();
    t.lap("server");
    let _one_at_a_time = lab.exclusive.lock().await;
    t.lap("queue");
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    // A server in the cluster reaches the API server through its in-cluster Service.
    let url = if inside {
        "https://kubernetes.default.svc".to_string()
    } else {
        ext.url.clone()
    };
    vars.insert("cluster.url".into(), url);
    vars.insert(
        "cluster.hostport".into(),
        ext.url.trim_start_matches("https://").to_string(),
    );
    let view = ClusterView {
        sim: None,
        client: ext.client.clone(),
        url: ext.url.clone(),
        ca_pem: ext.ca_pem.clone(),
        issuer: ext.issuer.clone(),
        pubkey: ext.pubkey.clone(),
    };
    let result = execute_on_cluster(
        lab,
        trial,
        &view,
        &mut t,
        record,
        vars,
        flavour,
        inside.then_some(server),
    )
    .await;
    // The cluster is shared: remove what this trial applied (namespaces stay; deleting them
    // is slow and a later trial may need them again).
    for obj in record.objects.iter().rev() {
        let kind = obj["kind"].as_str().unwrap_or_default();
        if kind == "Namespace" {
            continue;
        }
        let name = obj["metadata"]["name"].as_str().unwrap_or_default();
        let target = match obj["metadata"]["namespace"].as_str() {
            Some(ns) => format!("{kind} {ns}/{name}"),
            None => format!("{kind} {name}"),
        };
        let _ = objects::delete(&ext.client, &target).await;
    }
    for spec in case.reviewer.iter().chain(std::iter::once(&case.client)) {
        if spec.token == crate::case::model::TokenKind::LegacySecret
            && let Some((ns, name)) = spec.service_account.split_once('/')
        {
            let secret = spec
                .secret_name
                .clone()
                .unwrap_or_else(|| format!("{name}-token"));
            let _ = objects::delete(&ext.client, &format!("Secret {ns}/{secret}")).await;
        }
    }
    result
}

/// A requirement of the trial that this machine lacks (reported as ignored, not failed, unless
/// the requirement is required: see [`crate::settings::required`]).
#[derive(Debug)]
pub struct NotAvailable {
    /// The requirement: `docker`, `kind`, `kubeconfig`, `cluster`.
    pub what: &'static str,
    /// Why it is not available.
    pub reason: String,
}

impl NotAvailable {
    fn err(what: &'static str, reason: impl Into<String>) -> anyhow::Error {
        anyhow::Error::new(NotAvailable {
            what,
            reason: reason.into(),
        })
    }
}

impl std::fmt::Display for NotAvailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for NotAvailable {}

struct Timer<'a> {
    phases: &'a mut Vec<(&'static str, Duration)>,
    at: Instant,
}

impl Timer<'_> {
    fn lap(&mut self, name: &'static str) {
        let now = Instant::now();
        self.phases.push((name, now - self.at));
        self.at = now;
    }
}

fn observed(r: &ApiResponse) -> Observed {
    Observed {
        status: r.status,
        errors: r.errors(),
    }
}

/// Replaces placeholders in every string of a JSON value.
fn substitute_value(v: &Value, vars: &BTreeMap<String, String>) -> Value {
    match v {
        Value::String(s) => Value::String(verdict::substitute(s, vars)),
        Value::Array(a) => Value::Array(a.iter().map(|x| substitute_value(x, vars)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (k.clone(), substitute_value(x, vars)))
                .collect(),
        ),
        other => other.clone(),
    }
}

async fn execute(
    lab: &Lab,
    trial: &Trial,
    phases: &mut Vec<(&'static str, Duration)>,
    record: &mut TrialRecord,
) -> Result<Vec<String>> {
    let lc = &trial.case;
    let case = &lc.case;
    let flavour = trial.server.flavour.to_string();
    let mut t = Timer {
        phases,
        at: Instant::now(),
    };

    if trial.cluster != ClusterKind::Sim {
        return execute_external(lab, trial, t, record, &flavour).await;
    }
    // Inside the cluster the server is a container (pod emulation) on the lab's network, and
    // the trial's sim listens on that network's gateway so the container reaches it.
    let host = if case.topology == Topology::Inside
        || lab.options().runtime == super::Runtime::Container
    {
        let (_, _, gateway) = lab.docker().await.map_err(|e| {
            NotAvailable::err(
                "docker",
                format!("the inside topology needs Docker for pod emulation: {e:#}"),
            )
        })?;
        gateway
    } else {
        "127.0.0.1".to_string()
    };
    if case.topology != Topology::Inside {
        let server = lab.server(&trial.server).await?;
        record.server_config = server.config_text();
    }
    t.lap("server");

    // A sim cluster per trial: its own objects, settings and request log.
    let settings = &case.cluster.settings;
    let port = free_port(&host)?;
    let url = format!("https://{host}:{port}");
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    vars.insert("cluster.url".into(), url.clone());
    vars.insert("cluster.hostport".into(), format!("{host}:{port}"));
    let cfg = SimConfig {
        issuer: settings
            .issuer
            .as_ref()
            .map(|i| verdict::substitute(i, &vars))
            .unwrap_or(SimConfig::default().issuer),
        api_audiences: settings.api_audiences.clone(),
        anonymous_auth: settings.anonymous_auth.unwrap_or(true),
        max_token_expiration: settings.max_token_expiration,
        port,
        bind: host.parse().context("the sim's listen address")?,
        extra_sans: vec![host.clone()],
        signing_key_pkcs8_pem: Some(lab.sa_key().await?),
    };
    let sim = SimCluster::start(cfg)
        .await
        .context("starting the trial's sim cluster")?;
    let view = ClusterView {
        sim: Some(&sim),
        client: sim.kube_client()?,
        url: sim.url(),
        ca_pem: sim.ca_pem(),
        issuer: sim.issuer(),
        pubkey: Some(sim.public_key_pem()),
    };
    let result = execute_on_cluster(lab, trial, &view, &mut t, record, vars, &flavour, None).await;
    record.cluster_log = sim.request_log();
    sim.shutdown().await;
    result
}

fn free_port(host: &str) -> Result<u16> {
    let l = std::net::TcpListener::bind((host, 0))
        .with_context(|| format!("finding a free port on {host}"))?;
    Ok(l.local_addr()?.port())
}

#[allow(clippy::too_many_arguments)]
async fn execute_on_cluster(
    lab: &Lab,
    trial: &Trial,
    cv: &ClusterView<'_>,
    t: &mut Timer<'_>,
    record: &mut TrialRecord,
    mut vars: BTreeMap<String, String>,
    flavour: &str,
    given_server: Option<Arc<super::servers::ServerHandle>>,
) -> Result<Vec<String>> {
    let lc = &trial.case;
    let case = &lc.case;
    let kube = cv.client.clone();
    vars.insert("cluster.ca".into(), cv.ca_pem.clone());
    vars.insert("cluster.issuer".into(), cv.issuer.clone());
    vars.insert(
        "cluster.jwks_url".into(),
        format!("{}/openid/v1/jwks", cv.url),
    );
    match &cv.pubkey {
        Some(k) => {
            vars.insert("cluster.pubkey".into(), k.clone());
        }
        None if lc.text.contains("${cluster.pubkey}") => {
            return Err(NotAvailable::err(
                "cluster",
                "the cluster's service-account public key could not be read from its JWKS",
            ));
        }
        None => {}
    }

    for obj in &case.cluster.objects {
        for o in load_objects(lc, obj)? {
            objects::apply(&kube, &o).await?;
            record.objects.push(o);
        }
    }
    t.lap("objects");

    let foreign = if token_needs_foreign(case) {
        Some(lab.foreign_cluster().await?)
    } else {
        None
    };
    let signers = tokens::Signers {
        cluster: cv.sim,
        foreign,
    };
    if let Some(r) = &case.reviewer {
        let jwt = tokens::obtain(&kube, r, &signers)
            .await
            .context("obtaining the reviewer token")?;
        vars.insert("reviewer.jwt".into(), jwt.clone());
        record.reviewer_jwt = Some(jwt);
    }
    let client_jwt = tokens::obtain(&kube, &case.client, &signers)
        .await
        .context("obtaining the client token")?;
    record.client_jwt = Some(client_jwt.clone());
    t.lap("tokens");

    // Fault endpoints, created only when the case refers to them, where the server can reach
    // them (the sim's own address).
    let host = match cv.sim {
        Some(sim) => sim
            .url()
            .trim_start_matches("https://")
            .rsplit_once(':')
            .map(|(h, _)| h.to_string())
            .unwrap_or_else(|| "127.0.0.1".into()),
        None => "127.0.0.1".into(),
    };
    let text = &lc.text;
    let _hang = if text.contains("${hang.url}") {
        let h = HangListener::bind_on(&host).await?;
        vars.insert("hang.url".into(), h.url());
        Some(h)
    } else {
        None
    };
    if text.contains("${unrelated.ca}") {
        vars.insert("unrelated.ca".into(), lab.unrelated_ca()?);
    }
    if text.contains("${other.ca}") {
        vars.insert("other.ca".into(), lab.foreign_cluster().await?.ca_pem());
    }
    if text.contains("${unreachable.url}") {
        let url = crate::sim::unused_url_on(&host)?;
        vars.insert(
            "unreachable.hostport".into(),
            url.trim_start_matches("https://").to_string(),
        );
        vars.insert("unreachable.url".into(), url);
    }

    let id = format!("{}{}", lab.options().run_id, lab.next_id());
    let server = if let Some(s) = given_server {
        s
    } else if case.topology == Topology::Inside {
        let sim = cv.sim.ok_or_else(|| {
            NotAvailable::err(
                "in-cluster server",
                "the inside topology runs on the sim cluster (pod emulation); on Kind and existing clusters it needs the in-cluster server, which is not available yet",
            )
        })?;
        let s = pod_server(lab, trial, sim, &kube).await?;
        record.server_config = s.config_text();
        t.lap("pod");
        Arc::new(s)
    } else {
        lab.server(&trial.server).await?
    };
    let root = server.client();
    let kind = match case.auth {
        AuthMethod::Kubernetes => "kubernetes",
        AuthMethod::Jwt => "jwt",
    };
    let mount = format!("{}-{id}", if kind == "kubernetes" { "k8s" } else { "jwt" });
    let kv = format!("kv-{id}");
    let policy_name = format!("authlab-{id}");
    vars.insert("mount".into(), mount.clone());
    vars.insert("kv".into(), kv.clone());
    record.mount = mount.clone();

    let log_offset = file_len(&server.server_log_path());
    let outcome = configure_and_login(
        trial,
        &root,
        &kube,
        &server,
        &mut vars,
        record,
        t,
        &Names {
            kind,
            mount: &mount,
            kv: &kv,
            policy: &policy_name,
        },
        &client_jwt,
        cv.sim,
        log_offset,
        flavour,
    )
    .await;

    // Remove what the trial created on the shared server, whatever happened.
    let _ = root.disable_auth(&mount).await;
    let _ = root
        .request(reqwest::Method::DELETE, &format!("sys/mounts/{kv}"), None)
        .await;
    let _ = root
        .request(
            reqwest::Method::DELETE,
            &format!("sys/policies/acl/{policy_name}"),
            None,
        )
        .await;
    record.vars = vars;
    if case.topology == Topology::Inside
        && cv.sim.is_some()
        && let Some(mut s) = Arc::into_inner(server)
    {
        s.stop().await;
        if let Some(name) = s.container_name() {
            cleanup::unregister_container(&name);
        }
    }
    outcome
}

/// Starts the trial's server as a pod would run: a container with the projected token of its
/// service account (bound to a Pod object, 3607 s, as kubelet requests it), the cluster CA and
/// the `KUBERNETES_SERVICE_*` variables.
async fn pod_server(
    lab: &Lab,
    trial: &Trial,
    sim: &SimCluster,
    kube: &kube::Client,
) -> Result<super::servers::ServerHandle> {
    let case = &trial.case.case;
    let sa = case
        .server
        .pod_service_account
        .clone()
        .unwrap_or_else(|| "vault/vault-auth".into());
    let (ns, name) = tokens::split_sa(&sa)?;
    let pod_name = format!("{}-0", trial.server.flavour);
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": pod_name, "namespace": ns, "labels": {"app.kubernetes.io/name": "openbao"}},
        "spec": {"serviceAccountName": name, "nodeName": "authlab-node",
                 "containers": [{"name": "server", "image": crate::container::image_tag(&trial.server)}]},
    });
    objects::apply(kube, &pod).await?;
    let spec = crate::case::model::TokenSpec {
        service_account: sa.clone(),
        token: crate::case::model::TokenKind::Projected,
        audiences: None,
        expiration_seconds: Some(3607),
        bound_pod: Some(pod_name),
        secret_name: None,
        claims: Default::default(),
        time_shift: None,
        foreign_key: false,
        literal: None,
    };
    let signers = tokens::Signers {
        cluster: Some(sim),
        foreign: None,
    };
    let token = tokens::obtain(kube, &spec, &signers)
        .await
        .with_context(|| format!("requesting the server pod's token for {sa}"))?;
    let (_, _, gateway) = lab.docker().await?;
    let pod = crate::container::PodIdentity {
        token,
        ca_pem: sim.ca_pem(),
        namespace: ns.to_string(),
        kubernetes_service_host: gateway,
        kubernetes_service_port: sim.port(),
    };
    lab.start_container(&trial.server, Some(pod), Some(&trial.name))
        .await
}

struct Names<'a> {
    kind: &'a str,
    mount: &'a str,
    kv: &'a str,
    policy: &'a str,
}

fn file_len(p: &std::path::Path) -> u64 {
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

fn token_needs_foreign(case: &crate::case::Case) -> bool {
    case.client.foreign_key || case.reviewer.as_ref().is_some_and(|r| r.foreign_key)
}

fn load_objects(lc: &crate::case::LoadedCase, obj: &ObjectSource) -> Result<Vec<Value>> {
    match obj {
        ObjectSource::Path(p) => {
            let path =
                resolve_manifest(lc, p).with_context(|| format!("manifest {p} not found"))?;
            objects::read_manifest(&path)
        }
        ObjectSource::Inline(m) => Ok(vec![Value::Object(m.inline.clone())]),
    }
}

#[allow(clippy::too_many_arguments)]
async fn configure_and_login(
    trial: &Trial,
    root: &VaultClient,
    kube: &kube::Client,
    server: &super::servers::ServerHandle,
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
