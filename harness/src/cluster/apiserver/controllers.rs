//! What trials need of kube-controller-manager when its binary is not there (envtest's assets
//! have none), done the way its controllers do it:
//! - serviceaccount: every active namespace gets a `default` service account;
//! - serviceaccount-token: a `kubernetes.io/service-account-token` Secret of an existing
//!   account gets `token` (a legacy token signed with the cluster's key), `ca.crt`, `namespace`
//!   and the account's UID annotation; one whose account is gone (or replaced) is deleted;
//! - namespace: a terminating namespace's objects are deleted, then its `kubernetes` finalizer
//!   is removed;
//! - garbage collector, for foreground deletion: an object being deleted in the foreground
//!   loses its `foregroundDeletion` finalizer once no object names it as owner.
//!
//! It polls (every 200 ms) rather than watches: the lab's cluster holds a few dozen objects.

use std::{collections::BTreeMap, time::Duration};

use anyhow::Result;
use k8s_openapi::{
    ByteString,
    api::{
        core::v1::{ConfigMap, Namespace, Pod, Secret, ServiceAccount},
        rbac::v1::{Role, RoleBinding},
    },
};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, PostParams},
};

const NAME_KEY: &str = "kubernetes.io/service-account.name";
const UID_KEY: &str = "kubernetes.io/service-account.uid";
const TOKEN_TYPE: &str = "kubernetes.io/service-account-token";

/// The stand-in, running until dropped.
pub(super) struct Emulated {
    task: tokio::task::JoinHandle<()>,
}

impl Emulated {
    pub(super) fn start(client: Client, sa_key_pem: &str, ca_pem: &str) -> Result<Emulated> {
        // Checked once here, so a bad key fails the start rather than every token.
        crate::sim::public_key_pem_of(sa_key_pem)?;
        let (key, ca) = (sa_key_pem.to_string(), ca_pem.to_string());
        let task = tokio::spawn(async move {
            loop {
                if let Err(e) = pass(&client, &key, &ca).await {
                    tracing::debug!("authlab's controllers: {e:#}");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Ok(Emulated { task })
    }
}

impl Drop for Emulated {
    /// Stops the stand-in.
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pass(client: &Client, key: &str, ca: &str) -> Result<()> {
    let lp = ListParams::default();
    let namespaces = Api::<Namespace>::all(client.clone()).list(&lp).await?;
    let accounts = Api::<ServiceAccount>::all(client.clone()).list(&lp).await?;
    let uid_of = |ns: &str, name: &str| {
        accounts
            .items
            .iter()
            .find(|s| {
                s.metadata.namespace.as_deref() == Some(ns)
                    && s.metadata.name.as_deref() == Some(name)
                    && s.metadata.deletion_timestamp.is_none()
            })
            .and_then(|s| s.metadata.uid.clone())
    };
    for ns in &namespaces.items {
        let Some(name) = ns.metadata.name.as_deref() else {
            continue;
        };
        if ns.metadata.deletion_timestamp.is_some() {
            finalize(client, ns, name).await?;
        } else if uid_of(name, "default").is_none() {
            let sa = ServiceAccount {
                metadata: kube::api::ObjectMeta {
                    name: Some("default".into()),
                    ..Default::default()
                },
                ..Default::default()
            };
            let api = Api::<ServiceAccount>::namespaced(client.clone(), name);
            let _ = api.create(&PostParams::default(), &sa).await;
        }
    }
    foreground(client).await?;
    let secrets = Api::<Secret>::all(client.clone()).list(&lp).await?;
    for s in &secrets.items {
        if s.type_.as_deref() != Some(TOKEN_TYPE) || s.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let (Some(ns), Some(name)) = (s.metadata.namespace.as_deref(), s.metadata.name.as_deref())
        else {
            continue;
        };
        let ann = s.metadata.annotations.clone().unwrap_or_default();
        let Some(sa) = ann.get(NAME_KEY) else {
            continue;
        };
        let api = Api::<Secret>::namespaced(client.clone(), ns);
        let live_uid = uid_of(ns, sa);
        let stale = match (&live_uid, ann.get(UID_KEY)) {
            (None, _) => true,
            (Some(live), Some(named)) => live != named,
            (Some(_), None) => false,
        };
        if stale {
            // The tokens controller deletes the token Secrets of an account that is gone.
            let _ = api.delete(name, &DeleteParams::default()).await;
            continue;
        }
        let has_token = s
            .data
            .as_ref()
            .and_then(|d| d.get("token"))
            .is_some_and(|t| !t.0.is_empty());
        if has_token {
            continue;
        }
        let uid = live_uid.unwrap_or_default();
        let token =
            crate::sim::sign_token_with(key, &crate::sim::legacy_token_claims(ns, name, sa, &uid))?;
        let mut filled = s.clone();
        let mut data = filled.data.take().unwrap_or_default();
        data.insert("token".into(), ByteString(token.into_bytes()));
        data.insert("ca.crt".into(), ByteString(ca.as_bytes().to_vec()));
        data.insert("namespace".into(), ByteString(ns.as_bytes().to_vec()));
        filled.data = Some(data);
        let mut ann: BTreeMap<String, String> = ann;
        ann.insert(UID_KEY.into(), uid);
        filled.metadata.annotations = Some(ann);
        // A conflict (the Secret changed meanwhile) is retried on the next pass.
        let _ = api.replace(name, &PostParams::default(), &filled).await;
    }
    Ok(())
}

/// Finishes foreground deletions whose dependents are gone (among the kinds trials make).
async fn foreground(client: &Client) -> Result<()> {
    let mut all = Vec::new();
    for (api_version, kind, plural, _) in crate::case::manifest::KINDS {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let ar = kube::api::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk(group, version, kind),
            plural,
        );
        let api: Api<kube::api::DynamicObject> = Api::all_with(client.clone(), &ar);
        // A kind the cluster does not serve (External Secrets without its CRDs) has none.
        if let Ok(list) = api.list(&ListParams::default()).await {
            all.extend(list.items.into_iter().map(|o| (api_version, kind, o)));
        }
    }
    let owners: std::collections::BTreeSet<String> = all
        .iter()
        .flat_map(|(_, _, o)| o.metadata.owner_references.iter().flatten())
        .map(|r| r.uid.clone())
        .collect();
    for (api_version, kind, o) in &all {
        let finalizers = o.metadata.finalizers.clone().unwrap_or_default();
        if o.metadata.deletion_timestamp.is_none()
            || !finalizers.iter().any(|f| f == "foregroundDeletion")
            || o.metadata.uid.as_ref().is_some_and(|u| owners.contains(u))
        {
            continue;
        }
        let (Some(name), ns) = (o.metadata.name.as_deref(), o.metadata.namespace.as_deref()) else {
            continue;
        };
        let api = crate::cluster::objects::api_for(client, api_version, kind, ns)?;
        let left: Vec<&String> = finalizers
            .iter()
            .filter(|f| *f != "foregroundDeletion")
            .collect();
        let patch = serde_json::json!({"metadata": {"finalizers": left}});
        let _ = api
            .patch(
                name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await;
    }
    Ok(())
}

/// Deletes a terminating namespace's objects (the kinds trials make), then removes its
/// `kubernetes` finalizer once none is left.
async fn finalize(client: &Client, ns: &Namespace, name: &str) -> Result<()> {
    let finalizers = ns
        .spec
        .as_ref()
        .and_then(|s| s.finalizers.clone())
        .unwrap_or_default();
    if !finalizers.iter().any(|f| f == "kubernetes") {
        return Ok(());
    }
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    let lp = ListParams::default();
    let mut left = 0;
    macro_rules! purge {
        ($($k:ty),*) => {$(
            let api = Api::<$k>::namespaced(client.clone(), name);
            let items = api.list(&lp).await?.items;
            left += items.len();
            if !items.is_empty() {
                let _ = api.delete_collection(&dp, &lp).await;
            }
        )*};
    }
    purge!(Pod, Secret, ConfigMap, RoleBinding, Role, ServiceAccount);
    if left > 0 {
        return Ok(());
    }
    let mut done = ns.clone();
    if let Some(spec) = done.spec.as_mut() {
        spec.finalizers = Some(
            finalizers
                .into_iter()
                .filter(|f| f != "kubernetes")
                .collect(),
        );
    }
    let body = serde_json::to_vec(&done)?;
    let req = http::Request::put(format!("/api/v1/namespaces/{name}/finalize"))
        .header("content-type", "application/json")
        .body(body)?;
    client.request_text(req).await?;
    Ok(())
}
