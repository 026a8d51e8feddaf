//! What the stages hand on, each in its own type: `prepare`'s [`Env`], `apply`'s [`Setup`],
//! `act`'s [`Acted`], and what a trial made that outlives a stage ([`Made`]), which `teardown`
//! removes whatever stage the trial reached.

use std::sync::Arc;

use anyhow::{Context, Result};

use crate::{
    case::model::Expect,
    cluster::external::ExternalCluster,
    evidence::{AuthObserved, Observed},
    lab::servers::ServerHandle,
    placeholders::Vars,
    sim::{ClosedPort, HangListener, RequestRecord, ResetListener, SimCluster},
    vault::VaultClient,
};

/// What a trial needs of its cluster.
pub(super) struct ClusterView {
    /// Its Kubernetes version (`v1.33.1`), when known.
    pub kubernetes: Option<String>,
    /// The sim, when the cluster is one (it signs hand-made tokens and logs requests).
    pub sim: Option<SimCluster>,
    /// The trial's second cluster (`cluster.other`, or a case naming `${other.url}`).
    pub other: Option<SimCluster>,
    /// The cluster's signing key, where authlab holds it (hand-made tokens).
    pub signer: Option<crate::cluster::tokens::Signer>,
    /// The address the cluster listens on, where fault endpoints are made.
    pub host: String,
    /// The audit log of an API server authlab started (its request log).
    pub audit: Option<crate::cluster::apiserver::audit::AuditLog>,
    /// The shared cluster, when the trial runs on one.
    pub ext: Option<ExternalCluster>,
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
    /// The name of the trial's own server pod's StatefulSet and Service on a shared cluster
    /// (its pod is `<name>-0`).
    pub pod_server: Option<String>,
}

impl ClusterView {
    /// The port of the API server URL.
    pub fn port(&self) -> Result<u16> {
        url_port(&self.url).with_context(|| format!("the cluster URL {} has no port", self.url))
    }
}

/// The port of an API server URL (`https://host:port`, a trailing `/` allowed).
pub(super) fn url_port(url: &str) -> Option<u16> {
    url.rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
}

/// Names of what the trial creates on the server.
pub(super) struct Names {
    /// Auth method type (`kubernetes`, `jwt`).
    pub kind: &'static str,
    /// Auth mount path.
    pub mount: String,
    /// KV v2 mount path.
    pub kv: String,
    /// ACL policy name.
    pub policy: String,
    /// Role written.
    pub role: String,
    /// Role the client logs in with.
    pub login_role: String,
    /// Further mounts: (name, path).
    pub extra: Vec<(String, String)>,
    /// The mount the client logs in at.
    pub login_mount: String,
}

/// Endpoints that fail the way networks do, held for the whole trial so no other listener
/// can take their ports.
#[derive(Default)]
pub(super) struct Faults {
    pub _hang: Option<HangListener>,
    pub _reset: Option<ResetListener>,
    pub _unnamed: Option<crate::sim::Forwarder>,
    pub _unreachable: Option<ClosedPort>,
}

/// What `prepare` returns.
pub(super) struct Env {
    /// The cluster.
    pub cluster: ClusterView,
    /// The shared server (None: the trial's own pod server, started once objects exist).
    pub server: Option<Arc<ServerHandle>>,
    /// Names on the server.
    pub names: Names,
    /// Placeholder values known so far.
    pub vars: Vars,
    /// The expectations for this server.
    pub expect: Expect,
}

/// What `apply` returns.
pub(super) struct Setup {
    /// The server the trial logs in to.
    pub server: Arc<ServerHandle>,
    /// Its root client.
    pub root: VaultClient,
    /// The client's JWT (secret).
    pub client_jwt: String,
    /// The reviewer's JWT, when the case has one (secret).
    pub reviewer_jwt: Option<String>,
    /// The accessor of the mount the client logs in at.
    pub accessor: String,
    /// The answer to the config write.
    pub config: Observed,
    /// The answer to the role write.
    pub role: Observed,
    /// The config written to the login mount (holds secrets).
    pub config_written: serde_json::Value,
    /// The role written there.
    pub role_written: serde_json::Value,
    /// The policy's HCL.
    pub policy: String,
    /// Where the server log stood before the mount existed.
    pub log_offset: u64,
    /// Placeholder values, now with the reviewer token and the accessor.
    pub vars: Vars,
    /// The server's address as the cluster sees its requests (None: loopback).
    pub server_ip: Option<String>,
}

/// What `act` returns.
pub(super) struct Acted {
    /// The login's answer (None: the config write failed, so no login was made).
    pub login: Option<Observed>,
    /// Requests the cluster answered during the login.
    pub cluster_requests: Vec<RequestRecord>,
    /// Requests the second cluster answered during the login (None: the trial has none).
    pub other_cluster_requests: Option<Vec<RequestRecord>>,
    /// Answers to the follow-up steps.
    pub steps: Vec<Observed>,
    /// What a successful login produced.
    pub auth: Option<AuthObserved>,
    /// The login's whole answer (holds the client token).
    pub login_body: Option<serde_json::Value>,
    /// Where the audit log stood before the login.
    pub audit_offset: u64,
}

/// What the trial created on the server.
pub(super) struct Mounts {
    /// Root client of the server.
    pub root: VaultClient,
    /// Auth mount path.
    pub auth: String,
    /// Further auth mounts.
    pub extra: Vec<String>,
    /// KV mount path, when the trial made one (its steps read or write secrets).
    pub kv: Option<String>,
    /// Policy name.
    pub policy: String,
}

/// Everything a trial made that outlives a stage, for `teardown`.
#[derive(Default)]
pub(super) struct Made {
    /// The case's objects applied to its clusters, in order.
    pub applied: Vec<serde_json::Value>,
    /// The trial's own sim.
    pub sim: Option<SimCluster>,
    /// The trial's second cluster.
    pub other_sim: Option<SimCluster>,
    /// The shared cluster's client (what the trial applied there is deleted).
    pub shared: Option<kube::Client>,
    /// The trial's turn on the shared cluster: its stay in its world there.
    pub world: Option<crate::lab::worlds::Stay>,
    /// The server on the Kind network the trial holds alone.
    pub kind_server: Option<crate::lab::servers::KindServer>,
    /// The API server of the pool the trial holds (its turn on it).
    pub apiserver: Option<crate::lab::apiservers::Member>,
    /// Mounts and policy on the server.
    pub mounts: Option<Mounts>,
    /// The trial's own server pod (inside topology on the sim or an apiserver cluster).
    pub pod_server: Option<Arc<ServerHandle>>,
    /// A pod server an earlier trial gave back, taken for this trial's pod (until `apply`
    /// makes it the trial's pod server).
    pub reused_pod: Option<ServerHandle>,
    /// Its objects (the emulated pod's Pod; a real pod's StatefulSet, Service and
    /// ConfigMap), deleted from a shared cluster.
    pub pod_objects: Vec<serde_json::Value>,
    /// Fault endpoints, held until the trial is over.
    pub faults: Faults,
}

/// How the pipeline notes each stage's output in the trial's record as the stage returns (no
/// stage writes the record itself): the artifacts show what the trial reached.
impl super::TrialRecord {
    /// The cluster, and the shared server `prepare` found.
    pub(super) fn note_cluster(&mut self, cluster: &ClusterView, server: Option<&ServerHandle>) {
        self.kubernetes = cluster.kubernetes.clone();
        if let Some(s) = server {
            self.server_config = s.config_text();
        }
    }

    /// What `prepare` returned.
    pub(super) fn note_env(&mut self, env: &Env) {
        self.mount = env.names.login_mount.clone();
        self.vars = env.vars.clone();
    }

    /// What `apply` returned.
    pub(super) fn note_setup(&mut self, setup: &Setup) {
        self.server_config = setup.server.config_text();
        self.client_jwt = Some(setup.client_jwt.clone());
        self.reviewer_jwt = setup.reviewer_jwt.clone();
        self.accessor = setup.accessor.clone();
        self.auth_config = setup.config_written.clone();
        self.role = setup.role_written.clone();
        self.policy = setup.policy.clone();
        self.evidence.config = Some(setup.config.clone());
        self.evidence.role = Some(setup.role.clone());
        self.vars = setup.vars.clone();
    }

    /// What `act` returned.
    pub(super) fn note_acted(&mut self, acted: &Acted) {
        self.login_body = acted.login_body.clone();
        self.evidence.login = acted.login.clone();
        self.evidence.cluster_requests = acted.cluster_requests.clone();
        self.evidence.other_cluster_requests = acted.other_cluster_requests.clone();
        self.evidence.steps = acted.steps.clone();
    }

    /// What `collect` returned; its evidence goes on to ESO and the judge.
    pub(super) fn note_collected(
        &mut self,
        collected: super::collect::Collected,
    ) -> crate::evidence::Evidence {
        self.audit_raw = collected.audit_raw;
        self.diagnosis = collected.diagnosis;
        self.evidence = collected.evidence.clone();
        collected.evidence
    }

    /// The evidence with what ESO reported.
    pub(super) fn note_eso(&mut self, evidence: &crate::evidence::Evidence) {
        self.eso = evidence.eso.report();
        self.evidence = evidence.clone();
    }

    /// What teardown left: the objects applied, the sims' whole request logs (elsewhere the
    /// login's requests, read from the API server's audit log).
    pub(super) fn note_teardown(&mut self, torn: &super::teardown::TornDown) {
        self.objects = torn.applied.clone();
        self.cluster_log = torn
            .cluster_log
            .clone()
            .unwrap_or_else(|| self.evidence.cluster_requests.clone());
        self.other_cluster_log = torn.other_cluster_log.clone().unwrap_or_default();
    }
}
