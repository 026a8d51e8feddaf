//! Running one trial: cluster objects → tokens → server configuration → login → follow-up
//! steps → evidence → verdict, then cleanup of everything the trial created.

mod eso;
mod login;
mod pod;
mod shared_cluster;

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
    /// What ESO reported (cases with an `eso` client).
    pub eso: Option<String>,
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
    /// The server's address as the cluster's pods reach it (shared clusters only).
    pub server_from_pods: Option<String>,
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
        return shared_cluster::execute_external(lab, trial, t, record, &flavour).await;
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
    // Bound now and handed to the sim, so the port in the URL (which the issuer may name) is
    // not taken by anything else before the sim serves on it.
    let listener = std::net::TcpListener::bind((host.as_str(), 0))
        .with_context(|| format!("binding a port for the trial's sim cluster on {host}"))?;
    let port = listener.local_addr()?.port();
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
    let sim = SimCluster::start_on(cfg, listener)
        .await
        .context("starting the trial's sim cluster")?;
    let view = ClusterView {
        sim: Some(&sim),
        client: sim.kube_client()?,
        url: sim.url(),
        ca_pem: sim.ca_pem(),
        issuer: sim.issuer(),
        pubkey: Some(sim.public_key_pem()),
        server_from_pods: None,
    };
    let result = execute_on_cluster(lab, trial, &view, &mut t, record, vars, &flavour, None).await;
    record.cluster_log = sim.request_log();
    sim.shutdown().await;
    result
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
    given_server: Option<Arc<crate::lab::servers::ServerHandle>>,
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
    // Held for the whole trial, so no other trial's listener can make it reachable.
    let _unreachable = if text.contains("${unreachable.url}") {
        let closed = crate::sim::ClosedPort::on(&host)?;
        vars.insert(
            "unreachable.hostport".into(),
            closed.url().trim_start_matches("https://").to_string(),
        );
        vars.insert("unreachable.url".into(), closed.url().to_string());
        Some(closed)
    } else {
        None
    };

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
        let s = pod::pod_server(lab, trial, sim, &kube).await?;
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

    let log_offset = login::file_len(&server.server_log_path());
    let names = Names {
        kind,
        mount: &mount,
        kv: &kv,
        policy: &policy_name,
    };
    let outcome = login::configure_and_login(
        trial,
        &root,
        &kube,
        &server,
        &mut vars,
        record,
        t,
        &names,
        &client_jwt,
        cv.sim,
        log_offset,
        flavour,
    )
    .await;
    // ESO runs only where it can be installed; elsewhere the case's own login is what is judged.
    let eso_client = case
        .eso
        .as_ref()
        .filter(|_| trial.cluster == ClusterKind::Kind);
    if case.eso.is_some() && eso_client.is_none() {
        record.eso = Some(format!(
            "not run: ESO is checked on Kind clusters only (this trial ran on {:?})\n",
            trial.cluster
        ));
    }
    let outcome = match (outcome, eso_client) {
        (Ok(mut mismatches), Some(eso_client)) => {
            eso::run(lab, trial, cv, eso_client, &names, &vars, record, flavour)
                .await
                .map(|more| {
                    mismatches.extend(more);
                    mismatches
                })
        }
        (outcome, _) => outcome,
    };

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

struct Names<'a> {
    kind: &'a str,
    mount: &'a str,
    kv: &'a str,
    policy: &'a str,
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
