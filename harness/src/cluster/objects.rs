//! Applying, deleting and re-creating Kubernetes objects for a trial (kube-rs, server-side apply).

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

use super::error::Op;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::{
    Api, Client,
    api::{
        ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
    },
};

/// Field manager name used for server-side apply.
pub const FIELD_MANAGER: &str = "authlab";

pub use crate::case::manifest::{
    DeleteSpec, api_version_of, known_kinds, parse_documents, read_manifest,
};

use crate::{case::manifest::KINDS as KNOWN, wait::Wait};

pub use super::owner::{Collision, Owner};

/// Resource plural and scope of a kind cases use.
fn resource_for(api_version: &str, kind: &str) -> Option<(&'static str, bool)> {
    KNOWN
        .iter()
        .find(|(v, k, _, _)| *v == api_version && *k == kind)
        .map(|(_, _, plural, namespaced)| (*plural, *namespaced))
}

/// The dynamic API of a kind authlab applies.
pub(crate) fn api_for(
    client: &Client,
    api_version: &str,
    kind: &str,
    ns: Option<&str>,
) -> Result<Api<DynamicObject>> {
    let (plural, namespaced) = resource_for(api_version, kind).ok_or_else(|| {
        anyhow!("object kind `{kind}` ({api_version}) is not one authlab applies; use Namespace, ServiceAccount, Secret, Pod, ConfigMap, Node, Service, StatefulSet, an RBAC kind or an External Secrets kind")
    })?;
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let ar = ApiResource::from_gvk_with_plural(&gvk, plural);
    Ok(if namespaced {
        Api::namespaced_with(client.clone(), ns.unwrap_or("default"), &ar)
    } else {
        Api::all_with(client.clone(), &ar)
    })
}

/// `Kind namespace/name`, or `Kind name` for a cluster-scoped object.
fn object_name(kind: &str, ns: Option<&str>, name: &str) -> String {
    match ns {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    }
}

/// Applies one object with server-side apply, labelled as `owner`'s. An object of that name
/// the cluster already has is changed only when `owner` made it: otherwise the apply fails with
/// a [`Collision`] (a Namespace the cluster has is used as it is, unchanged).
pub async fn apply(
    client: &Client,
    owner: &Owner,
    obj: &serde_json::Value,
) -> Result<DynamicObject> {
    let api_version = obj["apiVersion"]
        .as_str()
        .context("object has no apiVersion")?;
    let kind = obj["kind"].as_str().context("object has no kind")?;
    let name = obj["metadata"]["name"]
        .as_str()
        .with_context(|| format!("{kind} has no metadata.name"))?;
    let ns = obj["metadata"]["namespace"].as_str();
    let api = api_for(client, api_version, kind, ns)?;
    let what = object_name(kind, ns, name);
    if let Some(existing) = api.get_opt(name).await.op(|| format!("reading {what}"))?
        && !owner.owns(existing.metadata.labels.as_ref())
    {
        if kind == "Namespace" {
            return Ok(existing);
        }
        owner.check(&what, &existing)?;
    }
    let mut obj = obj.clone();
    owner.label(&mut obj);
    // Forced: the object is this run's, and a field another manager set on it (a controller
    // filling defaults) is the case's to set.
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let _making = crate::scope::begin(what.clone()).context("the run is stopping")?;
    Ok(api
        .patch(name, &pp, &Patch::Apply(&obj))
        .await
        .op(|| format!("applying {what}"))?)
}

/// Deletes an object `owner` applied (its apiVersion, kind, namespace and name are read from
/// it); one that is gone, or that is not `owner`'s, is left alone.
pub async fn delete_applied(client: &Client, owner: &Owner, obj: &serde_json::Value) -> Result<()> {
    let Some((api, name, what)) = api_of(client, obj)? else {
        return Ok(());
    };
    if !mine(&api, owner, &name, &what).await? {
        return Ok(());
    }
    match api.delete(&name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e)
            .op(|| format!("deleting {what}"))
            .map_err(anyhow::Error::new),
    }
}

/// The API, name and `Kind namespace/name` of an object (None: it names no kind and name).
fn api_of(
    client: &Client,
    obj: &serde_json::Value,
) -> Result<Option<(Api<DynamicObject>, String, String)>> {
    let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    let (api_version, kind, name) = (
        s(&obj["apiVersion"]),
        s(&obj["kind"]),
        s(&obj["metadata"]["name"]),
    );
    if kind.is_empty() || name.is_empty() {
        return Ok(None);
    }
    let ns = obj["metadata"]["namespace"].as_str();
    let api = api_for(client, &api_version, &kind, ns)?;
    let what = object_name(&kind, ns, &name);
    Ok(Some((api, name, what)))
}

/// Whether the object exists and `owner` made it (one that exists but is someone else's is
/// never `owner`'s to delete).
async fn mine(api: &Api<DynamicObject>, owner: &Owner, name: &str, what: &str) -> Result<bool> {
    let existing = api.get_opt(name).await.op(|| format!("reading {what}"))?;
    Ok(match existing {
        Some(o) if owner.owns(o.metadata.labels.as_ref()) => true,
        Some(_) => {
            tracing::debug!("{what} is not this run's: left as it is");
            false
        }
        None => false,
    })
}

/// Removes an object a trial made from a shared cluster and waits (at most `timeout`) until it
/// is gone, so the next trial does not meet its previous incarnation still being deleted:
/// foreground propagation (dependents go first), and a pod is removed at once (grace period
/// 0) since a lab's pods have no kubelet to confirm a graceful deletion. Gone already is fine;
/// an object `owner` did not make is never deleted.
pub async fn remove_and_wait(
    client: &Client,
    owner: &Owner,
    obj: &serde_json::Value,
    timeout: Duration,
) -> Result<()> {
    let Some((api, name, what)) = api_of(client, obj)? else {
        return Ok(());
    };
    if !mine(&api, owner, &name, &what).await? {
        return Ok(());
    }
    let mut params = DeleteParams::foreground();
    if obj["kind"] == "Pod" {
        params.grace_period_seconds = Some(0);
    }
    match api.delete(&name, &params).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
        Err(e) => {
            return Err(e)
                .op(|| format!("deleting {what}"))
                .map_err(anyhow::Error::new);
        }
    }
    if obj["kind"] == "StatefulSet" {
        remove_pods_of_set(client, obj, &name).await;
    }
    let mut wait = Wait::new(format!("{what} to be deleted"), timeout).start();
    loop {
        if api
            .get_opt(&name)
            .await
            .op(|| format!("reading {what}"))?
            .is_none()
        {
            return Ok(());
        }
        if wait.tick().await.is_err() {
            bail!(
                "waited {} s for {what} to be deleted (finalizers or dependents left?)",
                timeout.as_secs()
            );
        }
    }
}

/// The pods of a StatefulSet being deleted, removed at once (grace period 0) rather than
/// after the graceful stop its foreground deletion waits for; the set makes no new pod once
/// it is being deleted. One already gone is fine; any other failure leaves the pod to the set.
async fn remove_pods_of_set(client: &Client, set: &serde_json::Value, name: &str) {
    let Some(ns) = set["metadata"]["namespace"].as_str() else {
        return;
    };
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), ns);
    let now = DeleteParams {
        grace_period_seconds: Some(0),
        ..DeleteParams::default()
    };
    for i in 0..set["spec"]["replicas"].as_u64().unwrap_or(1) {
        if let Err(e) = pods.delete(&format!("{name}-{i}"), &now).await {
            tracing::debug!("removing pod {ns}/{name}-{i} of a deleted StatefulSet: {e}");
        }
    }
}

/// Deletes an object named `Kind namespace/name` or `Kind name`; a missing object is an error.
/// An object `owner` did not make is a [`Collision`], unless the action says `--foreign` and
/// the user allows it (`allow_foreign`, from `AUTHLAB_DELETE_FOREIGN=1`). True when the object
/// is gone at once (false: it is being deleted gracefully, or waits for finalizers).
pub async fn delete(
    client: &Client,
    owner: &Owner,
    spec: &str,
    allow_foreign: bool,
) -> Result<bool> {
    let d = DeleteSpec::parse(spec).map_err(|why| anyhow!("`{spec}`: {why}"))?;
    let api_version = api_version_of(&d.kind).unwrap_or("v1");
    let ns = d.namespace.as_deref();
    let api = api_for(client, api_version, &d.kind, ns)?;
    let what = object_name(&d.kind, ns, &d.name);
    let existing = api.get(&d.name).await.op(|| format!("deleting {what}"))?;
    let allowed = d.foreign && allow_foreign;
    if !(owner.owns(existing.metadata.labels.as_ref()) || allowed) {
        let mut c = owner.check(&what, &existing).expect_err("not owned");
        c.why.push_str(if d.foreign {
            " (the case allows deleting it with `--foreign`; the user has not: AUTHLAB_DELETE_FOREIGN=1)"
        } else {
            " (a `delete:` of an object the trial did not make needs `--foreign` in the case and AUTHLAB_DELETE_FOREIGN=1 from the user)"
        });
        return Err(c.into());
    }
    let params = DeleteParams {
        grace_period_seconds: d.grace_period,
        ..DeleteParams::default()
    };
    api.delete(&d.name, &params)
        .await
        .op(|| format!("deleting {what}"))?;
    Ok(api
        .get_opt(&d.name)
        .await
        .op(|| format!("reading {what}"))?
        .is_none())
}

/// The objects of `kind` (in `ns`, for a namespaced kind), as the API returns them.
pub async fn list(client: &Client, kind: &str, ns: Option<&str>) -> Result<Vec<serde_json::Value>> {
    let api_version = api_version_of(kind).unwrap_or("v1");
    let api = api_for(client, api_version, kind, ns)?;
    let items = api
        .list(&kube::api::ListParams::default())
        .await
        .op(|| format!("listing {kind} in {}", ns.unwrap_or("the cluster")))?;
    Ok(items
        .items
        .into_iter()
        .filter_map(|o| serde_json::to_value(o).ok())
        .collect())
}

/// Deletes and re-creates a service account `owner` made, which gives it a new UID (one it
/// did not make is a [`Collision`]).
pub async fn recreate_service_account(
    client: &Client,
    owner: &Owner,
    ns: &str,
    name: &str,
) -> Result<()> {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let old = api
        .get(name)
        .await
        .op(|| format!("reading service account {ns}/{name}"))?;
    if !owner.owns(old.metadata.labels.as_ref()) {
        let dynamic = api_for(client, "v1", "ServiceAccount", Some(ns))?
            .get(name)
            .await
            .op(|| format!("reading service account {ns}/{name}"))?;
        owner.check(&format!("ServiceAccount {ns}/{name}"), &dynamic)?;
    }
    api.delete(name, &DeleteParams::default())
        .await
        .op(|| format!("deleting service account {ns}/{name}"))?;
    let mut fresh = ServiceAccount::default();
    fresh.metadata.name = Some(name.to_string());
    fresh.metadata.namespace = Some(ns.to_string());
    fresh.metadata.labels = old.metadata.labels;
    fresh.metadata.annotations = old.metadata.annotations;
    // Deletion may take a moment on a real cluster: retry the create briefly.
    let mut wait = Wait::new(
        format!("service account {ns}/{name} to be gone before it is made again"),
        Duration::from_secs(30),
    )
    .every(Duration::from_millis(100))
    .start();
    loop {
        let making = crate::scope::begin(format!("ServiceAccount {ns}/{name}"))
            .context("the run is stopping")?;
        let made = api.create(&PostParams::default(), &fresh).await;
        drop(making);
        match made {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 && !wait.expired() => {
                let _ = wait.tick().await;
            }
            Err(e) => {
                return Err(e)
                    .op(|| format!("re-creating service account {ns}/{name}"))
                    .map_err(anyhow::Error::new);
            }
        }
    }
}

/// Reads a service account's UID.
pub async fn service_account_uid(client: &Client, ns: &str, name: &str) -> Result<String> {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let sa = api.get(name).await.with_context(|| {
        format!("reading service account {ns}/{name} (does the case create it in cluster.objects?)")
    })?;
    sa.metadata.uid.context("service account has no uid")
}

/// Creates a `kubernetes.io/service-account-token` Secret, labelled as `owner`'s, and waits
/// (bounded) until the tokens controller has filled in `data.token`. A Secret of that name
/// that `owner` did not make is a [`Collision`]: it is neither read nor, later, deleted.
pub async fn legacy_token(
    client: &Client,
    owner: &Owner,
    ns: &str,
    sa: &str,
    secret_name: &str,
) -> Result<String> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    // The account's UID is named too: on a real cluster the tokens controller may still be
    // handling the deletion of an earlier account of the same name (a previous trial's), and
    // it deletes every token Secret of that name whose UID does not tell them apart.
    let mut annotations = serde_json::json!({"kubernetes.io/service-account.name": sa});
    if let Ok(uid) = service_account_uid(client, ns, sa).await {
        annotations["kubernetes.io/service-account.uid"] = serde_json::json!(uid);
    }
    let mut obj = serde_json::json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
        "metadata": {"name": secret_name, "namespace": ns, "annotations": annotations},
    });
    owner.label(&mut obj);
    let secret: Secret = serde_json::from_value(obj)?;
    let making =
        crate::scope::begin(format!("Secret {ns}/{secret_name}")).context("the run is stopping")?;
    let made = api.create(&PostParams::default(), &secret).await;
    drop(making);
    match made {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let existing = api_for(client, "v1", "Secret", Some(ns))?
                .get(secret_name)
                .await
                .op(|| format!("reading token secret {ns}/{secret_name}"))?;
            owner.check(&format!("Secret {ns}/{secret_name}"), &existing)?;
        }
        Err(e) => {
            return Err(e)
                .op(|| format!("creating token secret {ns}/{secret_name}"))
                .map_err(anyhow::Error::new);
        }
    }
    let bound = Duration::from_secs(30);
    let mut wait = Wait::new(format!("data.token of secret {ns}/{secret_name}"), bound).start();
    loop {
        if let Some(s) = api
            .get_opt(secret_name)
            .await
            .op(|| format!("reading token secret {ns}/{secret_name}"))?
            && let Some(tok) = s.data.as_ref().and_then(|d| d.get("token"))
            && !tok.0.is_empty()
        {
            return String::from_utf8(tok.0.clone()).context("token secret holds non-UTF-8 data");
        }
        if wait.tick().await.is_err() {
            bail!(
                "waited {}s for the tokens controller to fill data.token of secret {ns}/{secret_name} (service account {sa}); does the service account exist?",
                bound.as_secs()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deletion_finds_each_kinds_api_version() {
        assert_eq!(api_version_of("Secret"), Some("v1"));
        assert_eq!(api_version_of("StatefulSet"), Some("apps/v1"));
        assert_eq!(
            api_version_of("RoleBinding"),
            Some("rbac.authorization.k8s.io/v1")
        );
        assert_eq!(
            api_version_of("ExternalSecret"),
            Some("external-secrets.io/v1")
        );
        assert_eq!(api_version_of("Deployment"), None);
    }

    #[test]
    fn multi_document_yaml_parses() {
        let docs = parse_documents(
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {name: b, namespace: a}\n",
        )
        .unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1]["kind"], "ServiceAccount");
    }

    #[test]
    fn unknown_kind_is_named() {
        assert!(resource_for("v1", "Frobnicator").is_none());
        assert_eq!(resource_for("v1", "Secret"), Some(("secrets", true)));
    }
}
