//! Reading what ESO reports: the ExternalSecret's `Ready` condition, the value it synced, and
//! the controller's reconcile errors for it (controller-runtime's JSON `Reconciler error` lines).

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::{
    Api,
    api::{ListParams, LogParams},
};
use serde_json::Value;

use super::NAMESPACE;

/// Label selector of the ESO controller pods (not the webhook or cert-controller).
pub const CONTROLLER_SELECTOR: &str = "app.kubernetes.io/name=external-secrets";

pub use crate::evidence::{EsoCondition as Condition, EsoObserved as Observed};

/// The `Ready` condition in an ExternalSecret's `status.conditions`.
pub fn ready_condition(es: &Value) -> Option<Condition> {
    es["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")
        .map(|c| Condition {
            status: c["status"].as_str().unwrap_or_default().to_string(),
            reason: c["reason"].as_str().unwrap_or_default().to_string(),
            message: c["message"].as_str().unwrap_or_default().to_string(),
        })
}

/// An object whose reconcile errors are read from the controller log: its kind (the key
/// controller-runtime logs it under), namespace (None: cluster-scoped) and name.
#[derive(Debug, Clone, Copy)]
pub struct LogSubject<'a> {
    /// `ExternalSecret`, `SecretStore` or `ClusterSecretStore`.
    pub kind: &'a str,
    /// Namespace of a namespaced object.
    pub namespace: Option<&'a str>,
    /// Name.
    pub name: &'a str,
}

impl LogSubject<'_> {
    fn is_named_in(&self, line: &Value) -> bool {
        let o = &line[self.kind];
        o.is_object()
            && o["name"] == self.name
            && match self.namespace {
                Some(ns) => o["namespace"] == ns,
                None => o["namespace"].as_str().unwrap_or_default().is_empty(),
            }
    }
}

/// The `error` of every controller log line (JSON; other lines are skipped) that reports a
/// failed reconcile of one of `subjects`, oldest first. Only the object key counts: the
/// top-level `name`/`namespace` of a line may be another kind's.
pub fn reconcile_errors(log: &str, subjects: &[LogSubject<'_>]) -> Vec<String> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .filter(|v| subjects.iter().any(|s| s.is_named_in(v)))
        .filter_map(|v| v["error"].as_str().map(str::to_string))
        .collect()
}

/// Reads the ExternalSecret `namespace/name`, its target Secret's `key`, and the controller's
/// reconcile errors since `since_seconds` ago for it and for its store (`store_kind`, same
/// name): a SecretStore logs in itself when it is validated.
pub async fn observe(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    store_kind: &str,
    key: &str,
    since_seconds: i64,
) -> Result<Observed> {
    let es_api = crate::cluster::objects::api_for(
        client,
        "external-secrets.io/v1",
        "ExternalSecret",
        Some(namespace),
    )?;
    let es = es_api
        .get_opt(name)
        .await
        .with_context(|| format!("reading ExternalSecret {namespace}/{name}"))?;
    let ready = es
        .map(|o| serde_json::to_value(o).unwrap_or_default())
        .and_then(|v| ready_condition(&v));
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let value = secrets
        .get_opt(name)
        .await
        .with_context(|| format!("reading Secret {namespace}/{name}"))?
        .and_then(|s| s.data)
        .and_then(|d| {
            d.get(key)
                .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        });
    let log = controller_log(client, since_seconds).await?;
    Ok(Observed {
        ready,
        value,
        controller_errors: reconcile_errors(
            &log,
            &[
                LogSubject {
                    kind: "ExternalSecret",
                    namespace: Some(namespace),
                    name,
                },
                LogSubject {
                    kind: store_kind,
                    namespace: (store_kind == "SecretStore").then_some(namespace),
                    name,
                },
            ],
        ),
    })
}

/// The ESO controller pods' log since `since_seconds` ago.
pub async fn controller_log(client: &kube::Client, since_seconds: i64) -> Result<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let list = pods
        .list(&ListParams::default().labels(CONTROLLER_SELECTOR))
        .await
        .with_context(|| {
            format!("listing ESO controller pods ({CONTROLLER_SELECTOR}) in {NAMESPACE}")
        })?;
    let mut out = String::new();
    for p in list.items {
        let Some(name) = p.metadata.name else {
            continue;
        };
        let params = LogParams {
            since_seconds: Some(since_seconds.max(1)),
            ..Default::default()
        };
        match pods.logs(&name, &params).await {
            Ok(text) => out.push_str(&text),
            Err(e) => out.push_str(&format!("(log of {name} unavailable: {e})\n")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        case::model::{EsoExpect, PatternMatch, TextMatch},
        placeholders::Vars,
        verdict::check_eso as judge,
    };

    /// Controller lines in the shape ESO logs a 403 at login, shortened to the fields read here.
    const LOG: &str = r#"{"level":"info","ts":1795400000.1,"msg":"Starting workers","controller":"externalsecret","worker count":1}
{"level":"error","ts":1795400004.25,"msg":"Reconciler error","controller":"externalsecret","controllerGroup":"external-secrets.io","controllerKind":"ExternalSecret","ExternalSecret":{"name":"app-config","namespace":"external-secrets"},"namespace":"external-secrets","name":"app-config","error":"error processing spec.data[0], err: unable to log in to auth method: unable to log in with Kubernetes auth: Error making API request.\n\nURL: PUT http://172.18.0.5:8200/v1/auth/kubernetes/login\nCode: 403. Errors:\n\n* permission denied"}
{"level":"error","ts":1795400005.0,"msg":"Reconciler error","controller":"externalsecret","ExternalSecret":{"name":"other","namespace":"external-secrets"},"error":"something else"}
{"level":"error","ts":1795400006.0,"msg":"Reconciler error","controller":"secretstore","SecretStore":{"name":"app-config","namespace":"external-secrets"},"namespace":"external-secrets","name":"app-config","error":"store failed to log in"}
{"level":"error","ts":1795400007.0,"msg":"Reconciler error","controller":"clustersecretstore","ClusterSecretStore":{"name":"app-config"},"name":"app-config","error":"cluster store failed to log in"}
not json at all"#;

    fn es(namespace: &str) -> LogSubject<'_> {
        LogSubject {
            kind: "ExternalSecret",
            namespace: Some(namespace),
            name: "app-config",
        }
    }

    #[test]
    fn reconcile_errors_are_those_of_the_named_objects() {
        let e = reconcile_errors(LOG, &[es("external-secrets")]);
        assert_eq!(
            e.len(),
            1,
            "a store of the same name and namespace is not the ExternalSecret"
        );
        assert!(e[0].contains("unable to log in with Kubernetes auth"));
        assert!(e[0].contains("Code: 403. Errors:\n\n* permission denied"));
        assert!(reconcile_errors(LOG, &[es("default")]).is_empty());
        let store = LogSubject {
            kind: "SecretStore",
            namespace: Some("external-secrets"),
            name: "app-config",
        };
        assert_eq!(
            reconcile_errors(LOG, &[es("external-secrets"), store]).len(),
            2
        );
        let cluster_store = LogSubject {
            kind: "ClusterSecretStore",
            namespace: None,
            name: "app-config",
        };
        assert_eq!(
            reconcile_errors(LOG, &[cluster_store]),
            vec!["cluster store failed to log in".to_string()]
        );
    }

    #[test]
    fn ready_condition_is_read() {
        let es = serde_json::json!({"status": {"conditions": [
            {"type": "Other", "status": "True"},
            {"type": "Ready", "status": "False", "reason": "SecretSyncedError", "message": "could not get secret data from provider"}
        ]}});
        let c = ready_condition(&es).unwrap();
        assert_eq!(c.status, "False");
        assert_eq!(c.reason, "SecretSyncedError");
        assert!(ready_condition(&serde_json::json!({"status": {}})).is_none());
    }

    fn contains(s: &str) -> TextMatch {
        TextMatch::Pattern(PatternMatch {
            contains: Some(s.into()),
            regex: None,
        })
    }

    #[test]
    fn judging() {
        let vars = Vars::new();
        let failed = Observed {
            ready: Some(Condition {
                status: "False".into(),
                reason: "SecretSyncedError".into(),
                message: "could not get secret data from provider".into(),
            }),
            value: None,
            controller_errors: reconcile_errors(LOG, &[es("external-secrets")]),
        };
        let expect_fail = EsoExpect {
            ready: false,
            reason: Some(TextMatch::Exact("SecretSyncedError".into())),
            controller_error: Some(contains("Code: 403")),
        };
        assert!(judge(&expect_fail, &failed, &vars).is_empty());
        let expect_ok = EsoExpect {
            ready: true,
            ..Default::default()
        };
        let m = judge(&expect_ok, &failed, &vars);
        assert_eq!(m.len(), 2, "{m:?}");
        assert!(m[0].contains("expected the ExternalSecret's Ready condition True, got False"));
        let synced = Observed {
            ready: Some(Condition {
                status: "True".into(),
                reason: "SecretSynced".into(),
                message: "secret synced".into(),
            }),
            value: Some("app".into()),
            controller_errors: vec![],
        };
        assert!(judge(&expect_ok, &synced, &vars).is_empty());
        let m = judge(&expect_fail, &synced, &vars);
        assert_eq!(m.len(), 3, "{m:?}");
        assert!(m[2].contains("logged no reconcile error"), "{m:?}");
    }
}
