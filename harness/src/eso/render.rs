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
    let (sa_ns, sa_name) = s.service_account;
    // No `namespace` in the reference, also for a cluster store: ESO then resolves the service
    // account in the ExternalSecret's namespace (which is `sa_ns`) and logs in when the
    // ExternalSecret syncs, so a failed login is the ExternalSecret's error. A cluster store
    // naming a namespace logs in itself while being validated, and a failure there leaves the
    // ExternalSecret with no more than "store is not ready".
    let mut sa_ref = json!({ "name": sa_name });
    if let Some(aud) = s.audiences {
        sa_ref["audiences"] = json!(aud);
    }
    let mut metadata = json!({ "name": s.name, "labels": s.labels });
    if s.kind == EsoStoreKind::SecretStore {
        metadata["namespace"] = json!(sa_ns);
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
            "namespace": s.service_account.0,
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
}
