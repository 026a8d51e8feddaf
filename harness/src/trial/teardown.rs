//! After every trial, whatever stage it reached: its mounts and policy removed from the
//! server, its own pod server stopped, its server pod's objects deleted from a shared cluster
//! (and its world's objects, by the last trial in the world), its sim stopped (keeping the
//! request log), and its turn on the shared cluster and the servers it held given back.

use std::sync::Arc;

use super::Run;
use crate::{case::model::TokenKind, cluster::objects};

/// What teardown leaves for the trial's record.
pub(super) struct TornDown {
    /// What could not be removed from a shared cluster (the trial then ends in ERROR: the next
    /// one would meet it).
    pub left: Vec<String>,
    /// The objects the trial applied.
    pub applied: Vec<serde_json::Value>,
    /// The trial's sim's whole request log.
    pub cluster_log: Option<Vec<crate::sim::RequestRecord>>,
    /// Its second cluster's.
    pub other_cluster_log: Option<Vec<crate::sim::RequestRecord>>,
}

pub(super) async fn teardown(run: &mut Run<'_>) -> TornDown {
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
    // An emulated pod server goes back for the next trial once this trial's sim is gone (the
    // next one's sim listens on the port its `KUBERNETES_SERVICE_PORT` names); a real pod of
    // a shared cluster is stopped.
    // (A pod taken in `prepare` is still `reused_pod` only when `apply` never made it the
    // trial's pod server.)
    let mut give_back = made.reused_pod;
    if let Some(mut s) = made.pod_server.and_then(Arc::into_inner) {
        if s.container_server()
            .is_some_and(|c| c.pod_service().is_some())
        {
            give_back = Some(s);
        } else {
            s.stop().await;
        }
    }
    // Its world's objects are deleted by the last trial in it (the others leave them to it);
    // its own server pod's objects by each.
    let mut world = made.world;
    let last = world.as_mut().is_none_or(|w| w.last());
    let left = match made.shared {
        Some(client) => {
            let world_objects = last.then_some(made.applied.as_slice());
            delete_applied(run, &client, made.pod_objects, world_objects).await
        }
        None => Vec::new(),
    };
    let mut cluster_log = None;
    if let Some(sim) = made.sim {
        cluster_log = Some(sim.request_log());
        sim.shutdown().await;
    }
    let mut other_cluster_log = None;
    if let Some(other) = made.other_sim {
        other_cluster_log = Some(other.request_log());
        other.shutdown().await;
    }
    drop(made.faults);
    if let Some(pod) = give_back {
        run.lab.docker().give_back_pod(&run.trial.server, pod);
    }
    drop(world);
    drop(made.kind_server);
    drop(made.apiserver);
    TornDown {
        left,
        applied: made.applied,
        cluster_log,
        other_cluster_log,
    }
}

/// The cluster is shared: remove the trial's server pod and, when it is the last in its world
/// (`applied`), what it applied (also in `before_login`; namespaces stay until the run ends:
/// deleting them is slow and a later trial may need them again) and the token Secrets it had
/// made, at once, each waited for until gone: the next world starts from a cluster without
/// them. Only what this run made is deleted.
async fn delete_applied(
    run: &Run<'_>,
    client: &kube::Client,
    pod: Vec<serde_json::Value>,
    applied: Option<&[serde_json::Value]>,
) -> Vec<String> {
    let case = &run.trial.case.case;
    let last = applied.is_some();
    let applied = applied.unwrap_or_default();
    let secrets = case
        .reviewer
        .iter()
        .chain(std::iter::once(&case.client))
        .filter(|spec| last && spec.token == TokenKind::LegacySecret)
        .map(|spec| {
            serde_json::json!({"apiVersion": "v1", "kind": "Secret",
                               "metadata": {"name": spec.legacy_secret_name(),
                                            "namespace": spec.service_account.namespace}})
        });
    let objects: Vec<serde_json::Value> = secrets
        .chain(pod.into_iter().rev())
        .chain(
            applied
                .iter()
                .rev()
                .filter(|o| o["kind"] != "Namespace")
                .cloned(),
        )
        .collect();
    let owner = run.lab.clusters().owner();
    // All at once: foreground propagation removes each object's dependents before it, and
    // each deletion is waited for on its own.
    futures_util::future::join_all(
        objects
            .iter()
            .map(|obj| objects::remove_and_wait(client, &owner, obj, DELETE_TIMEOUT)),
    )
    .await
    .into_iter()
    .filter_map(|r| r.err().map(|e| format!("{e:#}")))
    .collect()
}

/// Bound on waiting for one deleted object to be gone.
const DELETE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
