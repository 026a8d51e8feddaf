//! The shared state behind a sim cluster: settings, keys, objects, request log and the
//! tokens controller.

use std::{
    sync::{Arc, Mutex, MutexGuard, OnceLock},
    time::Duration,
};

use base64::{Engine, engine::general_purpose::STANDARD};
use serde_json::{Value, json};

use super::{
    fault::ModeSwitch,
    keys::SigningKey,
    log::RequestLog,
    rbac,
    store::{Kind, Store, meta_str},
    tokens,
};

/// Annotation naming the service account of a token Secret.
pub(crate) const SA_NAME_ANNOTATION: &str = "kubernetes.io/service-account.name";
/// Annotation carrying the service account UID of a token Secret.
pub(crate) const SA_UID_ANNOTATION: &str = "kubernetes.io/service-account.uid";
/// Secret type of legacy service-account tokens.
pub(crate) const SA_TOKEN_TYPE: &str = "kubernetes.io/service-account-token";

/// Settings the request handlers consult.
pub(crate) struct Settings {
    pub issuer: String,
    pub api_audiences: Vec<String>,
    pub anonymous_auth: bool,
    pub max_token_expiration: Option<u64>,
}

/// Everything a running sim shares between its connections.
pub(crate) struct Core {
    pub settings: Settings,
    pub key: SigningKey,
    pub store: Mutex<Store>,
    pub log: RequestLog,
    pub mode: ModeSwitch,
    pub ca_pem: String,
    pub admin_token: String,
    /// `https://<bind>:<port>`, known once bound.
    pub url: OnceLock<String>,
}

impl Core {
    /// Locks the store (a poisoned lock is recovered: the data stays consistent per call).
    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The sim's base URL.
    pub fn url(&self) -> &str {
        self.url
            .get()
            .map(String::as_str)
            .unwrap_or("https://127.0.0.1")
    }

    /// Creates a namespace with its `default` ServiceAccount and `kube-root-ca.crt` ConfigMap.
    pub fn create_namespace_contents(&self, store: &mut Store, ns: &str) {
        let _ = store.create(
            Kind::SERVICE_ACCOUNT,
            ns,
            json!({"metadata": {"name": "default"}}),
        );
        let _ = store.create(
            Kind::CONFIG_MAP,
            ns,
            json!({"metadata": {"name": "kube-root-ca.crt",
                                "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."}},
                   "data": {"ca.crt": self.ca_pem}}),
        );
    }

    /// Fills the default objects: namespaces and the bootstrap RBAC policy.
    pub fn bootstrap(&self) {
        let mut store = self.store();
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let _ = store.create(
                Kind::NAMESPACE,
                "",
                json!({"metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}},
                       "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}),
            );
            self.create_namespace_contents(&mut store, ns);
        }
        for (kind, obj) in rbac::bootstrap_policy() {
            let _ = store.create(kind, "", obj);
        }
    }
}

/// Whether a Secret is a legacy token Secret still waiting for its token.
pub(crate) fn needs_token(secret: &Value) -> bool {
    secret.get("type").and_then(Value::as_str) == Some(SA_TOKEN_TYPE)
        && secret
            .pointer("/data/token")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
}

/// Schedules the tokens controller for one Secret: shortly after, it fills `data.token`,
/// `data.ca.crt`, `data.namespace` and the UID annotation, or deletes the Secret when its
/// service account is missing.
pub(crate) fn schedule_token_fill(core: &Arc<Core>, ns: String, name: String) {
    let core = Arc::clone(core);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        fill_token_secret(&core, &ns, &name);
    });
}

fn fill_token_secret(core: &Core, ns: &str, name: &str) {
    let mut store = core.store();
    let Some(secret) = store.get(Kind::SECRET, ns, name).cloned() else {
        return;
    };
    if !needs_token(&secret) {
        return;
    }
    let annotations = secret.pointer("/metadata/annotations");
    let sa_name = annotations
        .and_then(|a| a.get(SA_NAME_ANNOTATION))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let want_uid = annotations
        .and_then(|a| a.get(SA_UID_ANNOTATION))
        .and_then(Value::as_str)
        .map(str::to_string);
    let sa_uid = store
        .get(Kind::SERVICE_ACCOUNT, ns, &sa_name)
        .and_then(|sa| meta_str(sa, "uid"))
        .map(str::to_string);
    let sa_uid = match (sa_uid, want_uid) {
        (Some(live), Some(want)) if !want.is_empty() && live != want => None,
        (live, _) => live,
    };
    let Some(sa_uid) = sa_uid else {
        let _ = store.delete(Kind::SECRET, ns, name);
        return;
    };
    let claims = tokens::legacy_claims(ns, name, &sa_name, &sa_uid);
    let Ok(token) = tokens::sign(&core.key, &claims) else {
        return;
    };
    let mut updated = secret;
    if let Some(obj) = updated.as_object_mut() {
        let data = obj.entry("data").or_insert_with(|| json!({}));
        if !data.is_object() {
            *data = json!({});
        }
        if let Some(d) = data.as_object_mut() {
            d.insert("token".into(), json!(STANDARD.encode(&token)));
            d.insert("ca.crt".into(), json!(STANDARD.encode(&core.ca_pem)));
            d.entry("namespace")
                .or_insert_with(|| json!(STANDARD.encode(ns)));
        }
    }
    if let Some(meta) = updated.get_mut("metadata").and_then(Value::as_object_mut) {
        let ann = meta.entry("annotations").or_insert_with(|| json!({}));
        if let Some(a) = ann.as_object_mut() {
            a.insert(SA_UID_ANNOTATION.into(), json!(sa_uid));
        }
        meta.remove("resourceVersion");
    }
    let _ = store.update(Kind::SECRET, ns, name, updated);
}

/// The tokens controller's reaction to a deleted ServiceAccount: its token Secrets go too.
pub(crate) fn delete_sa_token_secrets(store: &mut Store, ns: &str, sa_name: &str, sa_uid: &str) {
    let doomed: Vec<String> = store
        .list(Kind::SECRET, Some(ns))
        .into_iter()
        .filter(|s| {
            let ann = s.pointer("/metadata/annotations");
            let get = |k: &str| ann.and_then(|a| a.get(k)).and_then(Value::as_str);
            s.get("type").and_then(Value::as_str) == Some(SA_TOKEN_TYPE)
                && get(SA_NAME_ANNOTATION) == Some(sa_name)
                && get(SA_UID_ANNOTATION).is_none_or(|u| u == sa_uid)
        })
        .filter_map(|s| meta_str(s, "name").map(str::to_string))
        .collect();
    for name in doomed {
        let _ = store.delete(Kind::SECRET, ns, &name);
    }
}
