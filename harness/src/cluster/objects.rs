//! Applying, deleting and re-creating Kubernetes objects for a trial (kube-rs, server-side apply).

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::{
    Api, Client,
    api::{
        ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
    },
};

/// Field manager name used for server-side apply.
pub const FIELD_MANAGER: &str = "authlab";

pub use crate::case::manifest::{parse_documents, read_manifest};

use crate::case::manifest::KINDS as KNOWN;

/// Resource plural and scope of a kind cases use.
fn resource_for(api_version: &str, kind: &str) -> Option<(&'static str, bool)> {
    KNOWN
        .iter()
        .find(|(v, k, _, _)| *v == api_version && *k == kind)
        .map(|(_, _, plural, namespaced)| (*plural, *namespaced))
}

/// The apiVersion of a kind cases use (each kind is known at one version).
fn api_version_of(kind: &str) -> Option<&'static str> {
    KNOWN
        .iter()
        .find(|(_, k, _, _)| *k == kind)
        .map(|(v, ..)| *v)
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

/// Applies one object with server-side apply (force), returning the stored object.
pub async fn apply(client: &Client, obj: &serde_json::Value) -> Result<DynamicObject> {
    let api_version = obj["apiVersion"]
        .as_str()
        .context("object has no apiVersion")?;
    let kind = obj["kind"].as_str().context("object has no kind")?;
    let name = obj["metadata"]["name"]
        .as_str()
        .with_context(|| format!("{kind} has no metadata.name"))?;
    let ns = obj["metadata"]["namespace"].as_str();
    let api = api_for(client, api_version, kind, ns)?;
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(name, &pp, &Patch::Apply(obj))
        .await
        .with_context(|| format!("applying {}", object_name(kind, ns, name)))
}

/// Deletes an object this harness applied (its apiVersion, kind, namespace and name are read
/// from it).
pub async fn delete_applied(client: &Client, obj: &serde_json::Value) -> Result<()> {
    fn str_at(v: &serde_json::Value) -> &str {
        v.as_str().unwrap_or_default()
    }
    delete_object(
        client,
        str_at(&obj["apiVersion"]),
        str_at(&obj["kind"]),
        obj["metadata"]["namespace"].as_str(),
        str_at(&obj["metadata"]["name"]),
        None,
    )
    .await
}

/// Removes an object a trial made from a shared cluster and waits (at most `timeout`) until it
/// is gone, so the next trial does not meet its previous incarnation still being deleted:
/// foreground propagation (dependents go first), and a pod is removed at once (grace period
/// 0) since a lab's pods have no kubelet to confirm a graceful deletion. Gone already is fine.
pub async fn remove_and_wait(
    client: &Client,
    obj: &serde_json::Value,
    timeout: Duration,
) -> Result<()> {
    let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    let (api_version, kind, name) = (
        s(&obj["apiVersion"]),
        s(&obj["kind"]),
        s(&obj["metadata"]["name"]),
    );
    let ns = obj["metadata"]["namespace"].as_str();
    let api = api_for(client, &api_version, &kind, ns)?;
    let what = object_name(&kind, ns, &name);
    let mut params = DeleteParams::foreground();
    if kind == "Pod" {
        params.grace_period_seconds = Some(0);
    }
    match api.delete(&name, &params).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("deleting {what}")),
    }
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if api
            .get_opt(&name)
            .await
            .with_context(|| format!("reading {what}"))?
            .is_none()
        {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "waited {} s for {what} to be deleted (finalizers or dependents left?)",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Deletes an object named `Kind namespace/name` or `Kind name`; a missing object is an error.
pub async fn delete(client: &Client, spec: &str) -> Result<()> {
    let d = DeleteSpec::parse(spec).map_err(|why| anyhow!("`{spec}`: {why}"))?;
    let api_version = api_version_of(&d.kind).unwrap_or("v1");
    delete_object(
        client,
        api_version,
        &d.kind,
        d.namespace.as_deref(),
        &d.name,
        d.grace_period,
    )
    .await
}

/// `<Kind> <namespace>/<name>` (or `<Kind> <name>`) with kubectl's `--grace-period=N` and
/// `--force` (which needs `--grace-period=0`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteSpec {
    /// Kind.
    pub kind: String,
    /// Namespace, for namespaced kinds.
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
    /// The grace period asked for (None: the object's own).
    pub grace_period: Option<u32>,
}

impl DeleteSpec {
    /// Parses the text of a `delete:` action.
    pub fn parse(spec: &str) -> std::result::Result<DeleteSpec, String> {
        let mut words = spec.split_whitespace();
        let (Some(kind), Some(target)) = (words.next(), words.next()) else {
            return Err("it should be `<Kind> <namespace>/<name>` or `<Kind> <name>`".into());
        };
        let (namespace, name) = match target.split_once('/') {
            Some((ns, name)) => (Some(ns.to_string()), name.to_string()),
            None => (None, target.to_string()),
        };
        let (mut grace_period, mut force) = (None, false);
        for w in words {
            match w {
                "--force" => force = true,
                _ => match w.strip_prefix("--grace-period=").map(str::parse::<u32>) {
                    Some(Ok(n)) => grace_period = Some(n),
                    _ => {
                        return Err(format!(
                            "`{w}` is not `--grace-period=<seconds>` or `--force`"
                        ));
                    }
                },
            }
        }
        if force && grace_period != Some(0) {
            return Err("`--force` goes with `--grace-period=0`, as kubectl has it".into());
        }
        Ok(DeleteSpec {
            kind: kind.to_string(),
            namespace,
            name,
            grace_period,
        })
    }
}

async fn delete_object(
    client: &Client,
    api_version: &str,
    kind: &str,
    ns: Option<&str>,
    name: &str,
    grace_period: Option<u32>,
) -> Result<()> {
    let api = api_for(client, api_version, kind, ns)?;
    let params = DeleteParams {
        grace_period_seconds: grace_period,
        ..DeleteParams::default()
    };
    api.delete(name, &params)
        .await
        .with_context(|| format!("deleting {}", object_name(kind, ns, name)))?;
    Ok(())
}

/// The objects of `kind` (in `ns`, for a namespaced kind), as the API returns them.
pub async fn list(client: &Client, kind: &str, ns: Option<&str>) -> Result<Vec<serde_json::Value>> {
    let api_version = api_version_of(kind).unwrap_or("v1");
    let api = api_for(client, api_version, kind, ns)?;
    let items = api
        .list(&kube::api::ListParams::default())
        .await
        .with_context(|| format!("listing {kind} in {}", ns.unwrap_or("the cluster")))?;
    Ok(items
        .items
        .into_iter()
        .filter_map(|o| serde_json::to_value(o).ok())
        .collect())
}

/// Deletes and re-creates a service account, which gives it a new UID.
pub async fn recreate_service_account(client: &Client, ns: &str, name: &str) -> Result<()> {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let old = api
        .get(name)
        .await
        .with_context(|| format!("reading service account {ns}/{name}"))?;
    api.delete(name, &DeleteParams::default())
        .await
        .with_context(|| format!("deleting service account {ns}/{name}"))?;
    let mut fresh = ServiceAccount::default();
    fresh.metadata.name = Some(name.to_string());
    fresh.metadata.namespace = Some(ns.to_string());
    fresh.metadata.labels = old.metadata.labels;
    fresh.metadata.annotations = old.metadata.annotations;
    // Deletion may take a moment on a real cluster: retry the create briefly.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match api.create(&PostParams::default(), &fresh).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => {
                return Err(e).with_context(|| format!("re-creating service account {ns}/{name}"));
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

/// Creates a `kubernetes.io/service-account-token` Secret and waits (bounded) until the
/// tokens controller has filled in `data.token`.
pub async fn legacy_token(
    client: &Client,
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
    let obj = serde_json::json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
        "metadata": {"name": secret_name, "namespace": ns, "annotations": annotations},
    });
    let secret: Secret = serde_json::from_value(obj)?;
    match api.create(&PostParams::default(), &secret).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => {
            return Err(e).with_context(|| format!("creating token secret {ns}/{secret_name}"));
        }
    }
    let wait = Duration::from_secs(30);
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if let Some(s) = api
            .get_opt(secret_name)
            .await
            .with_context(|| format!("reading token secret {ns}/{secret_name}"))?
            && let Some(tok) = s.data.as_ref().and_then(|d| d.get("token"))
            && !tok.0.is_empty()
        {
            return String::from_utf8(tok.0.clone()).context("token secret holds non-UTF-8 data");
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "waited {}s for the tokens controller to fill data.token of secret {ns}/{secret_name} (service account {sa}); does the service account exist?",
                wait.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
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
