//! The objects a trial gives ESO: a secret store that logs in with kubernetes auth, and an
//! ExternalSecret that copies one property of one KV v2 secret into a Secret.

use serde_json::{Value, json};

use crate::case::model::EsoStoreKind;

/// What the store needs to know.
#[derive(Debug, Clone)]
pub struct StoreSpec<'a> {
    /// Store kind.
    pub kind: EsoStoreKind,
    /// Store name (also the ExternalSecret's and the target Secret's).
    pub name: &'a str,
    /// The server as pods reach it (`http://host:8200`).
    pub server: &'a str,
    /// The trial's KV v2 mount.
    pub kv_mount: &'a str,
    /// The trial's kubernetes auth mount.
    pub auth_mount: &'a str,
    /// Role to log in as.
    pub role: &'a str,
    /// Service account ESO requests a token for: (namespace, name).
    pub service_account: (&'a str, &'a str),
    /// Namespace of the ExternalSecret (and of a `SecretStore`).
    pub namespace: &'a str,
    /// Audiences of that token (None: the API server's default).
    pub audiences: Option<&'a [String]>,
    /// Labels put on every object (run id, owner).
    pub labels: &'a serde_json::Map<String, Value>,
}

/// The API kind of a store kind (`ClusterSecretStore`, `SecretStore`).
pub fn store_api_kind(kind: EsoStoreKind) -> &'static str {
    match kind {
        EsoStoreKind::ClusterSecretStore => "ClusterSecretStore",
        EsoStoreKind::SecretStore => "SecretStore",
    }
}

/// The ClusterSecretStore or SecretStore.
pub fn store(s: &StoreSpec<'_>) -> Value {
    let (_, sa_name) = s.service_account;
    // No `namespace` in the reference, also for a cluster store: ESO then resolves the service
    // account in the ExternalSecret's namespace (`s.namespace`) and logs in when the
    // ExternalSecret syncs, so a failed login is the ExternalSecret's error. A cluster store
    // naming a namespace logs in itself while being validated, and a failure there leaves the
    // ExternalSecret with no more than "store is not ready".
    let mut sa_ref = json!({ "name": sa_name });
    if let Some(aud) = s.audiences {
        sa_ref["audiences"] = json!(aud);
    }
    let mut metadata = json!({ "name": s.name, "labels": s.labels });
    if s.kind == EsoStoreKind::SecretStore {
        metadata["namespace"] = json!(s.namespace);
    }
    json!({
        "apiVersion": "external-secrets.io/v1",
        "kind": store_api_kind(s.kind),
        "metadata": metadata,
        "spec": {
            "provider": {
                "vault": {
                    "server": s.server,
                    "path": s.kv_mount,
                    "version": "v2",
                    "auth": {
                        "kubernetes": {
                            "mountPath": s.auth_mount,
                            "role": s.role,
                            "serviceAccountRef": sa_ref,
                        }
                    }
                }
            }
        }
    })
}

/// The ExternalSecret (in the service account's namespace), syncing `key`'s `property` into the
/// Secret of the same name. One sync is all a trial needs; failures are retried by ESO itself.
pub fn external_secret(s: &StoreSpec<'_>, key: &str, property: &str) -> Value {
    json!({
        "apiVersion": "external-secrets.io/v1",
        "kind": "ExternalSecret",
        "metadata": {
            "name": s.name,
            "namespace": s.namespace,
            "labels": s.labels,
        },
        "spec": {
            "refreshInterval": "1h",
            "secretStoreRef": { "name": s.name, "kind": store_api_kind(s.kind) },
            "target": { "name": s.name, "creationPolicy": "Owner" },
            "data": [{
                "secretKey": property,
                "remoteRef": { "key": key, "property": property },
            }],
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: EsoStoreKind, audiences: Option<&[String]>) -> StoreSpec<'_> {
        static LABELS: std::sync::OnceLock<serde_json::Map<String, Value>> =
            std::sync::OnceLock::new();
        StoreSpec {
            kind,
            name: "authlab-r1-7",
            server: "http://172.18.0.5:8200",
            kv_mount: "kv-r17",
            auth_mount: "k8s-r17",
            role: "app",
            service_account: ("external-secrets", "vault-auth"),
            namespace: "external-secrets",
            audiences,
            labels: LABELS.get_or_init(|| {
                json!({"app.kubernetes.io/managed-by": "authlab"})
                    .as_object()
                    .unwrap()
                    .clone()
            }),
        }
    }

    #[test]
    fn cluster_store_resolves_the_service_account_where_the_external_secret_is() {
        let aud = vec!["vault".to_string()];
        let v = store(&spec(EsoStoreKind::ClusterSecretStore, Some(&aud)));
        assert_eq!(v["kind"], "ClusterSecretStore");
        assert!(v["metadata"].get("namespace").is_none());
        let vault = &v["spec"]["provider"]["vault"];
        assert_eq!(vault["server"], "http://172.18.0.5:8200");
        assert_eq!(vault["path"], "kv-r17");
        assert_eq!(vault["version"], "v2");
        let k = &vault["auth"]["kubernetes"];
        assert_eq!(k["mountPath"], "k8s-r17");
        assert_eq!(k["role"], "app");
        assert_eq!(
            k["serviceAccountRef"],
            json!({"name": "vault-auth", "audiences": ["vault"]})
        );
    }

    #[test]
    fn namespaced_store_and_default_audiences() {
        let v = store(&spec(EsoStoreKind::SecretStore, None));
        assert_eq!(v["kind"], "SecretStore");
        assert_eq!(v["metadata"]["namespace"], "external-secrets");
        assert_eq!(
            v["spec"]["provider"]["vault"]["auth"]["kubernetes"]["serviceAccountRef"],
            json!({"name": "vault-auth"})
        );
    }

    #[test]
    fn external_secret_reads_one_property() {
        let s = spec(EsoStoreKind::ClusterSecretStore, None);
        let v = external_secret(&s, "allowed/config", "username");
        assert_eq!(v["metadata"]["namespace"], "external-secrets");
        assert_eq!(
            v["spec"]["secretStoreRef"],
            json!({"name": "authlab-r1-7", "kind": "ClusterSecretStore"})
        );
        assert_eq!(v["spec"]["target"]["name"], "authlab-r1-7");
        assert_eq!(
            v["spec"]["data"][0],
            json!({"secretKey": "username", "remoteRef": {"key": "allowed/config", "property": "username"}})
        );
        assert_eq!(
            v["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "authlab"
        );
    }

    /// A cluster store used from a namespace that lacks the service account: the reference
    /// names no namespace, so ESO looks for the account where the ExternalSecret is.
    #[test]
    fn an_external_secret_in_another_namespace() {
        let mut s = spec(EsoStoreKind::ClusterSecretStore, None);
        s.namespace = "apps";
        let store = store(&s);
        let sa_ref = &store["spec"]["provider"]["vault"]["auth"]["kubernetes"]["serviceAccountRef"];
        assert_eq!(sa_ref, &json!({"name": "vault-auth"}));
        assert!(store["metadata"].get("namespace").is_none());
        let es = external_secret(&s, "allowed/config", "username");
        assert_eq!(es["metadata"]["namespace"], "apps");
        assert_eq!(es["spec"]["secretStoreRef"]["kind"], "ClusterSecretStore");
        // A namespaced store lives with its ExternalSecret.
        let mut n = spec(EsoStoreKind::SecretStore, None);
        n.namespace = "apps";
        assert_eq!(super::store(&n)["metadata"]["namespace"], "apps");
    }

    /// The shipped case of this setup renders the same way.
    #[test]
    fn the_reported_case_puts_the_external_secret_in_its_namespace() {
        let cases = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../cases");
        let file = cases.join("reported/eso-cluster-store-from-another-namespace.yaml");
        let lc = crate::case::load::load_file(&cases, &file).unwrap();
        let eso = lc.case.eso.as_ref().unwrap();
        assert_eq!(eso.store, EsoStoreKind::ClusterSecretStore);
        let ns = eso.namespace.as_deref().unwrap();
        assert_ne!(ns, lc.case.client.service_account.namespace);
        let mut s = spec(eso.store, None);
        s.service_account = (
            &lc.case.client.service_account.namespace,
            &lc.case.client.service_account.name,
        );
        s.namespace = ns;
        assert_eq!(external_secret(&s, "k", "p")["metadata"]["namespace"], ns);
        assert!(
            store(&s)["spec"]["provider"]["vault"]["auth"]["kubernetes"]["serviceAccountRef"]
                .get("namespace")
                .is_none()
        );
    }
}
