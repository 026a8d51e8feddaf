//! The server-side configuration a case amounts to: the mode's defaults with the case's fields
//! merged over them (placeholders still in place).

use serde_json::{Map, Value, json};

use super::model::{AuthMethod, Case, KubeMode};

/// Merges `over` into `base`; a null in `over` removes the key.
pub fn merge(base: &mut Map<String, Value>, over: &Map<String, Value>) {
    for (k, v) in over {
        if v.is_null() {
            base.remove(k);
        } else {
            base.insert(k.clone(), v.clone());
        }
    }
}

/// The default `auth/<mount>/config` fields for the case's method and mode.
pub fn default_config(case: &Case) -> Map<String, Value> {
    let mut m = Map::new();
    if case.auth == AuthMethod::Kubernetes {
        m.insert("kubernetes_host".into(), json!("${cluster.url}"));
        if case.mode == Some(KubeMode::LocalToken) {
            // The server reads its pod's token and CA, as inside a cluster.
            return m;
        }
        m.insert("kubernetes_ca_cert".into(), json!("${cluster.ca}"));
        if matches!(
            case.mode,
            Some(KubeMode::ClientToken | KubeMode::ReviewerJwt)
        ) {
            m.insert("disable_local_ca_jwt".into(), json!(true));
        }
        if case.mode == Some(KubeMode::ReviewerJwt) {
            m.insert("token_reviewer_jwt".into(), json!("${reviewer.jwt}"));
        }
    }
    m
}

/// The default role fields; `policy` is the name of the policy the role grants.
pub fn default_role(case: &Case, policy: &str) -> Map<String, Value> {
    let mut m = Map::new();
    if case.auth == AuthMethod::Kubernetes {
        let sa = &case.client.service_account;
        m.insert("bound_service_account_names".into(), json!([sa.name]));
        m.insert(
            "bound_service_account_namespaces".into(),
            json!([sa.namespace]),
        );
    }
    if case.auth == AuthMethod::Jwt {
        m.insert("role_type".into(), json!("jwt"));
        m.insert("user_claim".into(), json!("sub"));
    }
    m.insert("token_policies".into(), json!([policy]));
    m.insert("token_ttl".into(), json!("1h"));
    m
}

/// The config the case writes.
pub fn config(case: &Case) -> Map<String, Value> {
    let mut c = default_config(case);
    merge(&mut c, &case.server.config);
    c
}

/// The role the case writes.
pub fn role(case: &Case, policy: &str) -> Map<String, Value> {
    let mut r = default_role(case, policy);
    merge(&mut r, &case.server.role);
    r
}

/// The policy HCL (with `${kv}` unreplaced).
pub fn policy(case: &Case) -> String {
    case.server.policy.clone().unwrap_or_else(|| {
        "path \"${kv}/data/allowed/*\" {\n  capabilities = [\"read\"]\n}\n".into()
    })
}
