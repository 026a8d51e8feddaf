//! RBAC authorization: rule matching over (Cluster)Roles and their bindings, the default
//! bootstrap policy, and the Forbidden message.

use serde_json::{Value, json};

use super::{
    status::ApiError,
    store::{Kind, Store, meta_str},
    user::UserInfo,
};

/// What a request asks to do, as the authorizer sees it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Attributes {
    pub verb: String,
    pub resource_request: bool,
    pub api_group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    pub path: String,
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn has(list: &[String], want: &str) -> bool {
    list.iter().any(|x| x == "*" || x == want)
}

/// Whether one PolicyRule allows the request.
pub(crate) fn rule_allows(rule: &Value, a: &Attributes) -> bool {
    if !has(&strings(rule, "verbs"), &a.verb) {
        return false;
    }
    if !a.resource_request {
        return strings(rule, "nonResourceURLs").iter().any(|u| {
            u == "*" || *u == a.path || (u.ends_with('*') && a.path.starts_with(&u[..u.len() - 1]))
        });
    }
    if !has(&strings(rule, "apiGroups"), &a.api_group) {
        return false;
    }
    let resources = strings(rule, "resources");
    let resource_ok = if a.subresource.is_empty() {
        has(&resources, &a.resource)
    } else {
        let combined = format!("{}/{}", a.resource, a.subresource);
        let any_sub = format!("*/{}", a.subresource);
        resources
            .iter()
            .any(|r| r == "*" || *r == combined || *r == any_sub)
    };
    if !resource_ok {
        return false;
    }
    let names = strings(rule, "resourceNames");
    names.is_empty() || names.contains(&a.name)
}

/// Whether a binding subject is this user. `binding_ns` defaults ServiceAccount namespaces.
pub(crate) fn subject_matches(subject: &Value, user: &UserInfo, binding_ns: &str) -> bool {
    let kind = subject.get("kind").and_then(Value::as_str).unwrap_or("");
    let name = subject.get("name").and_then(Value::as_str).unwrap_or("");
    match kind {
        "User" => user.username == name,
        "Group" => user.groups.iter().any(|g| g == name),
        "ServiceAccount" => {
            let ns = subject
                .get("namespace")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .unwrap_or(binding_ns);
            user.username == format!("system:serviceaccount:{ns}:{name}")
        }
        _ => false,
    }
}

fn role_rules<'a>(store: &'a Store, role_ref: &Value, binding_ns: &str) -> Vec<&'a Value> {
    let kind = role_ref.get("kind").and_then(Value::as_str).unwrap_or("");
    let name = role_ref.get("name").and_then(Value::as_str).unwrap_or("");
    let role = match kind {
        "ClusterRole" => store.get(Kind::CLUSTER_ROLE, "", name),
        "Role" if !binding_ns.is_empty() => store.get(Kind::ROLE, binding_ns, name),
        _ => None,
    };
    role.and_then(|r| r.get("rules"))
        .and_then(Value::as_array)
        .map(|rules| rules.iter().collect())
        .unwrap_or_default()
}

/// RBAC decision (plus the `system:masters` short-cut); deny by default.
pub(crate) fn authorize(store: &Store, user: &UserInfo, a: &Attributes) -> bool {
    if user.groups.iter().any(|g| g == "system:masters") {
        return true;
    }
    let bound = |binding: &Value, binding_ns: &str| {
        binding
            .get("subjects")
            .and_then(Value::as_array)
            .is_some_and(|subs| subs.iter().any(|s| subject_matches(s, user, binding_ns)))
    };
    let allows = |binding: &Value, binding_ns: &str| {
        bound(binding, binding_ns)
            && binding.get("roleRef").is_some_and(|r| {
                role_rules(store, r, binding_ns)
                    .iter()
                    .any(|rule| rule_allows(rule, a))
            })
    };
    if store
        .list(Kind::CLUSTER_ROLE_BINDING, None)
        .into_iter()
        .any(|b| allows(b, ""))
    {
        return true;
    }
    if a.resource_request && !a.namespace.is_empty() {
        return store
            .list(Kind::ROLE_BINDING, Some(&a.namespace))
            .into_iter()
            .any(|b| allows(b, meta_str(b, "namespace").unwrap_or(&a.namespace)));
    }
    false
}

/// The 403 the apiserver writes for a denied request.
pub(crate) fn forbidden(user: &UserInfo, a: &Attributes) -> ApiError {
    let u = Value::String(user.username.clone()).to_string();
    if !a.resource_request {
        let msg = format!(
            "User {u} cannot {} path {}",
            a.verb,
            Value::String(a.path.clone())
        );
        return ApiError::forbidden("", "", "", &msg);
    }
    let mut resource = a.resource.clone();
    if !a.subresource.is_empty() {
        resource = format!("{resource}/{}", a.subresource);
    }
    let q = |s: &str| Value::String(s.to_string()).to_string();
    let msg = if a.namespace.is_empty() {
        format!(
            "User {u} cannot {} resource {} in API group {} at the cluster scope",
            a.verb,
            q(&resource),
            q(&a.api_group)
        )
    } else {
        format!(
            "User {u} cannot {} resource {} in API group {} in the namespace {}",
            a.verb,
            q(&resource),
            q(&a.api_group),
            q(&a.namespace)
        )
    };
    ApiError::forbidden(&a.api_group, &a.resource, &a.name, &msg)
}

/// The bootstrap ClusterRoles and ClusterRoleBindings the sim starts with.
pub(crate) fn bootstrap_policy() -> Vec<(Kind, Value)> {
    let role = |name: &str, rules: Value| {
        (
            Kind::CLUSTER_ROLE,
            json!({"metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
                                "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
                   "rules": rules}),
        )
    };
    let binding = |name: &str, role: &str, groups: &[&str]| {
        let subjects: Vec<Value> = groups
            .iter()
            .map(|g| json!({"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": g}))
            .collect();
        (
            Kind::CLUSTER_ROLE_BINDING,
            json!({"metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
                                "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                   "subjects": subjects}),
        )
    };
    vec![
        role(
            "cluster-admin",
            json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                   {"nonResourceURLs": ["*"], "verbs": ["*"]}]),
        ),
        role(
            "system:auth-delegator",
            json!([{"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
                   {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]}]),
        ),
        role(
            "system:service-account-issuer-discovery",
            json!([{"nonResourceURLs": ["/.well-known/openid-configuration", "/.well-known/openid-configuration/",
                                        "/openid/v1/jwks", "/openid/v1/jwks/"],
                    "verbs": ["get"]}]),
        ),
        role(
            "system:public-info-viewer",
            json!([{"nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"],
                    "verbs": ["get"]}]),
        ),
        role(
            "system:discovery",
            json!([{"nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez",
                                        "/openapi", "/openapi/*", "/readyz", "/version", "/version/"],
                    "verbs": ["get"]}]),
        ),
        role(
            "system:basic-user",
            json!([{"apiGroups": ["authorization.k8s.io"],
                    "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"], "verbs": ["create"]},
                   {"apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"], "verbs": ["create"]}]),
        ),
        binding("cluster-admin", "cluster-admin", &["system:masters"]),
        binding(
            "system:service-account-issuer-discovery",
            "system:service-account-issuer-discovery",
            &["system:serviceaccounts"],
        ),
        binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            &["system:authenticated", "system:unauthenticated"],
        ),
        binding(
            "system:discovery",
            "system:discovery",
            &["system:authenticated"],
        ),
        binding(
            "system:basic-user",
            "system:basic-user",
            &["system:authenticated"],
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(
        verb: &str,
        group: &str,
        resource: &str,
        sub: &str,
        ns: &str,
        name: &str,
    ) -> Attributes {
        Attributes {
            verb: verb.into(),
            resource_request: true,
            api_group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            namespace: ns.into(),
            name: name.into(),
            path: String::new(),
        }
    }

    #[test]
    fn rule_matching() {
        let rule =
            json!({"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]});
        assert!(rule_allows(
            &rule,
            &attrs("create", "", "serviceaccounts", "token", "app", "web")
        ));
        assert!(!rule_allows(
            &rule,
            &attrs("create", "", "serviceaccounts", "", "app", "web")
        ));
        assert!(!rule_allows(
            &rule,
            &attrs("get", "", "serviceaccounts", "token", "app", "web")
        ));
        let named = json!({"apiGroups": ["*"], "resources": ["secrets"], "verbs": ["get"], "resourceNames": ["a"]});
        assert!(rule_allows(
            &named,
            &attrs("get", "", "secrets", "", "x", "a")
        ));
        assert!(!rule_allows(
            &named,
            &attrs("get", "", "secrets", "", "x", "b")
        ));
        let paths = json!({"nonResourceURLs": ["/api/*"], "verbs": ["get"]});
        let mut a = Attributes {
            verb: "get".into(),
            path: "/api/v1".into(),
            ..Default::default()
        };
        assert!(rule_allows(&paths, &a));
        a.path = "/apis".into();
        assert!(!rule_allows(&paths, &a));
    }

    #[test]
    fn forbidden_messages() {
        let user = UserInfo {
            username: "system:serviceaccount:vault:vault".into(),
            ..Default::default()
        };
        let e = forbidden(
            &user,
            &attrs(
                "create",
                "authentication.k8s.io",
                "tokenreviews",
                "",
                "",
                "",
            ),
        );
        assert_eq!(
            e.message,
            "tokenreviews.authentication.k8s.io is forbidden: User \"system:serviceaccount:vault:vault\" cannot create resource \"tokenreviews\" in API group \"authentication.k8s.io\" at the cluster scope"
        );
        let e = forbidden(
            &user,
            &attrs("create", "", "serviceaccounts", "token", "app", "web"),
        );
        assert_eq!(
            e.message,
            "serviceaccounts \"web\" is forbidden: User \"system:serviceaccount:vault:vault\" cannot create resource \"serviceaccounts/token\" in API group \"\" in the namespace \"app\""
        );
    }

    #[test]
    fn bindings_and_default_policy() {
        let mut store = Store::default();
        for (kind, obj) in bootstrap_policy() {
            store.create(kind, "", obj).unwrap();
        }
        let anon = UserInfo::anonymous();
        let get_path = |p: &str| Attributes {
            verb: "get".into(),
            path: p.into(),
            ..Default::default()
        };
        assert!(authorize(&store, &anon, &get_path("/version")));
        assert!(!authorize(&store, &anon, &get_path("/openid/v1/jwks")));
        let sa = UserInfo {
            username: "system:serviceaccount:app:web".into(),
            groups: vec![
                "system:serviceaccounts".into(),
                "system:serviceaccounts:app".into(),
                "system:authenticated".into(),
            ],
            ..Default::default()
        };
        assert!(authorize(&store, &sa, &get_path("/openid/v1/jwks")));
        let review = attrs(
            "create",
            "authentication.k8s.io",
            "tokenreviews",
            "",
            "",
            "",
        );
        assert!(!authorize(&store, &sa, &review));
        store
            .create(
                Kind::CLUSTER_ROLE_BINDING,
                "",
                json!({"metadata": {"name": "r"},
                       "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:auth-delegator"},
                       "subjects": [{"kind": "ServiceAccount", "name": "web", "namespace": "app"}]}),
            )
            .unwrap();
        assert!(authorize(&store, &sa, &review));
        let token = attrs("create", "", "serviceaccounts", "token", "app", "web");
        assert!(!authorize(&store, &sa, &token));
        store
            .create(Kind::ROLE, "app", json!({"metadata": {"name": "t"},
                "rules": [{"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]}]}))
            .unwrap();
        store
            .create(
                Kind::ROLE_BINDING,
                "app",
                json!({"metadata": {"name": "t"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "t"},
                "subjects": [{"kind": "ServiceAccount", "name": "web"}]}),
            )
            .unwrap();
        assert!(authorize(&store, &sa, &token));
    }
}
