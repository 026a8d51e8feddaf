//! Ownership of cluster objects: every object authlab creates carries its labels, and authlab
//! changes or deletes only objects labelled with its own run. An object of the same name that
//! the cluster already had is a [`Collision`]: the trial is not applicable there.

use anyhow::{Context, Result};
use kube::{
    Api, Client,
    api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams},
};
use serde_json::Value;

/// The label every object authlab creates carries (`app.kubernetes.io/managed-by`, the
/// Kubernetes convention).
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Its value.
pub const MANAGED_BY_VALUE: &str = "authlab";
/// The label naming the run that created an object (the one its containers carry).
pub const RUN: &str = crate::container::LABEL_RUN;

/// The run objects are made for: what is labelled with it is this run's to change and delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    run: String,
}

/// An object the cluster already had, which a trial would change or delete.
#[derive(Debug, thiserror::Error)]
#[error("not applicable here: {object} {why}")]
pub struct Collision {
    /// `Kind namespace/name`.
    pub object: String,
    /// What is in the way.
    pub why: String,
}

impl Owner {
    /// The owner for run `run_id`.
    pub fn of_run(run_id: &str) -> Owner {
        Owner {
            run: run_id.to_string(),
        }
    }

    /// The run id.
    pub fn run(&self) -> &str {
        &self.run
    }

    /// Adds the ownership labels to an object about to be created.
    pub fn label(&self, obj: &mut Value) {
        let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
            return;
        };
        let labels = meta
            .entry("labels")
            .or_insert_with(|| Value::Object(Default::default()));
        if !labels.is_object() {
            *labels = Value::Object(Default::default());
        }
        if let Some(l) = labels.as_object_mut() {
            l.insert(MANAGED_BY.into(), MANAGED_BY_VALUE.into());
            l.insert(RUN.into(), Value::String(self.run.clone()));
        }
    }

    /// Whether this run made the object (whose `metadata.labels` are given).
    pub fn owns(&self, labels: Option<&std::collections::BTreeMap<String, String>>) -> bool {
        labels.and_then(|l| l.get(RUN)) == Some(&self.run)
    }

    /// Fails with a [`Collision`] unless this run made `existing`.
    pub fn check(&self, object: &str, existing: &DynamicObject) -> Result<(), Collision> {
        if self.owns(existing.metadata.labels.as_ref()) {
            return Ok(());
        }
        Err(Collision {
            object: object.to_string(),
            why: foreign_why(existing.metadata.labels.as_ref()),
        })
    }

    /// The label selector of this run's objects.
    pub fn selector(&self) -> String {
        format!("{RUN}={}", self.run)
    }
}

/// Why an existing object is not the run's to change.
fn foreign_why(labels: Option<&std::collections::BTreeMap<String, String>>) -> String {
    match labels.and_then(|l| l.get(RUN)) {
        Some(other) => format!(
            "exists already, made by authlab run {other} (`authlab clean` removes what a run that is over left)"
        ),
        None => "exists already and authlab did not make it; authlab changes and deletes only what it made".into(),
    }
}

/// Every kind a sweep looks at: what authlab applies, and its Lease. Namespaces come last
/// (deleting one deletes what is in it).
fn sweep_kinds() -> Vec<(&'static str, &'static str, &'static str, bool)> {
    let mut kinds: Vec<_> = crate::case::manifest::KINDS
        .iter()
        .copied()
        .filter(|(_, k, ..)| *k != "Namespace")
        .collect();
    kinds.push(("coordination.k8s.io/v1", "Lease", "leases", true));
    kinds.push(("v1", "Namespace", "namespaces", false));
    kinds
}

/// The runs that have objects in the cluster (labelled `managed-by=authlab`), each with what
/// it has there (`Kind namespace/name`).
pub async fn runs_in(client: &Client) -> Result<std::collections::BTreeMap<String, Vec<String>>> {
    let mut runs: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (api_version, kind, plural, namespaced) in sweep_kinds() {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let ar =
            ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
        let all: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        let lp = ListParams::default().labels(&format!("{MANAGED_BY}={MANAGED_BY_VALUE}"));
        let items = match all.list(&lp).await {
            Ok(l) => l.items,
            Err(kube::Error::Api(e)) if e.code == 404 => continue,
            Err(e) => return Err(e).with_context(|| format!("listing authlab's {kind} objects")),
        };
        for o in items {
            let Some(run) = o.metadata.labels.as_ref().and_then(|l| l.get(RUN)).cloned() else {
                continue;
            };
            let name = o.metadata.name.clone().unwrap_or_default();
            runs.entry(run)
                .or_default()
                .push(match &o.metadata.namespace {
                    Some(ns) if namespaced => format!("{kind} {ns}/{name}"),
                    _ => format!("{kind} {name}"),
                });
        }
    }
    Ok(runs)
}

/// Deletes every object labelled with one of `runs` (any namespace), returning what it
/// deleted as `Kind namespace/name`. A kind the cluster does not serve (the External Secrets
/// kinds without their CRDs) is passed over.
pub async fn sweep(client: &Client, runs: &[String]) -> Result<Vec<String>> {
    let mut deleted = Vec::new();
    for (api_version, kind, plural, namespaced) in sweep_kinds() {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let ar =
            ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
        let all: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        for run in runs {
            let lp = ListParams::default().labels(&format!("{RUN}={run}"));
            let items = match all.list(&lp).await {
                Ok(l) => l.items,
                Err(kube::Error::Api(e)) if e.code == 404 => continue,
                Err(e) => return Err(e).with_context(|| format!("listing {kind} of run {run}")),
            };
            for o in items {
                let name = o.metadata.name.clone().unwrap_or_default();
                let ns = o.metadata.namespace.clone();
                let api: Api<DynamicObject> = match (&ns, namespaced) {
                    (Some(ns), true) => Api::namespaced_with(client.clone(), ns, &ar),
                    _ => Api::all_with(client.clone(), &ar),
                };
                let mut params = DeleteParams::background();
                if kind == "Pod" {
                    params.grace_period_seconds = Some(0);
                }
                match api.delete(&name, &params).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 => continue,
                    Err(e) => {
                        return Err(e)
                            .with_context(|| format!("deleting {kind} {name} of run {run}"));
                    }
                }
                deleted.push(match ns {
                    Some(ns) if namespaced => format!("{kind} {ns}/{name}"),
                    _ => format!("{kind} {name}"),
                });
            }
        }
    }
    Ok(deleted)
}

/// Waits (at most `timeout`) until no namespace of `run` is left: a real cluster's namespace
/// controller removes a deleted namespace's contents first. Returns those still there.
pub async fn namespaces_gone(
    client: &Client,
    run: &str,
    timeout: std::time::Duration,
) -> Vec<String> {
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let lp = ListParams::default().labels(&format!("{RUN}={run}"));
    let mut wait =
        crate::wait::Wait::new(format!("the namespaces of run {run} to be gone"), timeout)
            .every(std::time::Duration::from_millis(250))
            .start();
    loop {
        let left: Vec<String> = match api.list(&lp).await {
            Ok(l) => l
                .items
                .into_iter()
                .filter_map(|n| n.metadata.name)
                .collect(),
            Err(_) => return Vec::new(),
        };
        if left.is_empty() || wait.tick().await.is_err() {
            return left;
        }
    }
}

/// A cluster the run writes to, as a process without the run's state reaches it: a kubeconfig
/// and its context (what the signal handler, the watchdog and `authlab clean` sweep).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Target {
    /// The kubeconfig file.
    pub kubeconfig: std::path::PathBuf,
    /// Its context (None: the current one).
    pub context: Option<String>,
}

impl Target {
    /// A client for the target.
    pub async fn client(&self) -> Result<Client> {
        Ok(
            super::kubeconfig::client(&self.kubeconfig, self.context.as_deref())
                .await?
                .0,
        )
    }

    /// Sweeps the objects of `runs` from the target, bounded by `timeout`.
    pub async fn sweep(
        &self,
        runs: &[String],
        timeout: std::time::Duration,
    ) -> Result<Vec<String>> {
        tokio::time::timeout(timeout, async {
            let client = self.client().await?;
            sweep(&client, runs).await
        })
        .await
        .with_context(|| {
            format!(
                "removing the objects of run(s) {} from the cluster of {} took over {} s",
                runs.join(", "),
                self.kubeconfig.display(),
                timeout.as_secs()
            )
        })?
    }

    /// Claims the objects run `run` makes in the target for the run's scope: swept (at most
    /// 20 s) should the run be stopped, or killed (the watchdog sweeps them then), unless the
    /// claim is released once the run has swept them itself.
    pub fn claim_objects(&self, run: &str) -> crate::scope::Tracked {
        let target = self.clone();
        let run = run.to_string();
        let json = serde_json::to_string(self).unwrap_or_default();
        crate::scope::claim_with(
            format!(
                "the objects of run {run} in the cluster of {}",
                self.kubeconfig.display()
            ),
            crate::scope::Stage::Objects,
            crate::scope::OnDeath::Sweep(json),
            move || {
                crate::scope::on_own_runtime(move || async move {
                    let within = std::time::Duration::from_secs(20);
                    match target.sweep(std::slice::from_ref(&run), within).await {
                        Ok(gone) if !gone.is_empty() => tracing::info!(
                            "removed {} object(s) of run {run} from the cluster of {}",
                            gone.len(),
                            target.kubeconfig.display()
                        ),
                        Ok(_) => {}
                        Err(e) => tracing::warn!("{e:#}; `authlab clean` removes them"),
                    }
                });
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_added_and_ownership_is_by_run() {
        let o = Owner::of_run("r1234abcd");
        let mut obj = serde_json::json!({"metadata": {"name": "a", "labels": {"app": "x"}}});
        o.label(&mut obj);
        let labels: std::collections::BTreeMap<String, String> =
            serde_json::from_value(obj["metadata"]["labels"].clone()).unwrap();
        assert_eq!(labels["app"], "x");
        assert_eq!(labels[MANAGED_BY], "authlab");
        assert!(o.owns(Some(&labels)));
        assert!(!Owner::of_run("r0").owns(Some(&labels)));
        assert!(!o.owns(None));
        let mut bare = serde_json::json!({"metadata": {"name": "b", "labels": null}});
        o.label(&mut bare);
        assert_eq!(bare["metadata"]["labels"][RUN], "r1234abcd");
    }

    #[test]
    fn a_foreign_object_says_whose_it_is() {
        let mut labels = std::collections::BTreeMap::new();
        assert!(foreign_why(Some(&labels)).contains("did not make it"));
        labels.insert(RUN.to_string(), "r9".to_string());
        assert!(foreign_why(Some(&labels)).contains("run r9"));
    }
}
