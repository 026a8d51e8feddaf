//! After every trial, whatever stage it reached: its mounts and policy removed from the
//! server, its own pod server stopped, what it applied to a shared cluster deleted, its sim
//! stopped (keeping the request log), and the shared cluster handed to the next trial.

use std::sync::Arc;

use super::Run;
use crate::{
    case::model::TokenKind, cluster::objects, lab::servers::ServerHandle, sim::SimCluster,
    vault::VaultClient,
};

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
pub(super) struct Made<'a> {
    /// The trial's own sim.
    pub sim: Option<SimCluster>,
    /// The trial's second cluster.
    pub other_sim: Option<SimCluster>,
    /// The shared cluster's client (what the trial applied there is deleted).
    pub shared: Option<kube::Client>,
    /// The turn on the shared cluster.
    pub exclusive: Option<tokio::sync::MutexGuard<'a, ()>>,
    /// Mounts and policy on the server.
    pub mounts: Option<Mounts>,
    /// The trial's own server pod (inside topology on the sim).
    pub pod_server: Option<Arc<ServerHandle>>,
    /// Fault endpoints, held until the trial is over.
    pub faults: super::prepare::Faults,
}

pub(super) async fn teardown(run: &mut Run<'_>) {
    let made = std::mem::take(&mut run.made);
    if let Some(m) = made.mounts {
        let _ = m.root.disable_auth(&m.auth).await;
        for e in &m.extra {
            let _ = m.root.disable_auth(e).await;
        }
        if let Some(kv) = &m.kv {
            let _ = m
                .root
                .request(reqwest::Method::DELETE, &format!("sys/mounts/{kv}"), None)
                .await;
        }
        let _ = m
            .root
            .request(
                reqwest::Method::DELETE,
                &format!("sys/policies/acl/{}", m.policy),
                None,
            )
            .await;
    }
    if let Some(mut s) = made.pod_server.and_then(Arc::into_inner) {
        s.stop().await;
    }
    if let Some(client) = made.shared {
        delete_applied(run, &client).await;
    }
    if let Some(sim) = made.sim {
        run.record.cluster_log = sim.request_log();
        sim.shutdown().await;
    }
    if let Some(other) = made.other_sim {
        other.shutdown().await;
    }
    drop(made.faults);
    drop(made.exclusive);
}

/// The cluster is shared: remove what this trial applied (namespaces stay; deleting them is
/// slow and a later trial may need them again), and the token Secrets it had made.
async fn delete_applied(run: &Run<'_>, client: &kube::Client) {
    for obj in run.record.objects.iter().rev() {
        if obj["kind"] == "Namespace" {
            continue;
        }
        let _ = objects::delete_applied(client, obj).await;
    }
    let case = &run.trial.case.case;
    for spec in case.reviewer.iter().chain(std::iter::once(&case.client)) {
        if spec.token == TokenKind::LegacySecret {
            let sa = &spec.service_account;
            let secret = spec
                .secret_name
                .clone()
                .unwrap_or_else(|| format!("{}-token", sa.name));
            let _ = objects::delete(client, &format!("Secret {}/{secret}", sa.namespace)).await;
        }
    }
}
