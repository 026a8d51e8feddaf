//! Discovery documents: `/version`, `/api`, `/apis` and the per-group resource lists.

use std::sync::Arc;

use serde_json::{Value, json};

use super::Reply;
use crate::{core::Core, status::ApiError, store::RESOURCES};

/// The Kubernetes version the sim reports.
pub(crate) const GIT_VERSION: &str = "v1.33.1";

const OBJECT_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
];

/// Groups served under `/apis`: (group, version).
const GROUPS: &[(&str, &str)] = &[
    ("apps", "v1"),
    ("authentication.k8s.io", "v1"),
    ("coordination.k8s.io", "v1"),
    ("rbac.authorization.k8s.io", "v1"),
];

/// Answers a discovery path, or 404.
pub(crate) fn serve(core: &Arc<Core>, path: &str, pretty: bool) -> Result<Reply, ApiError> {
    let path = path.trim_end_matches('/');
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let doc = match segs.as_slice() {
        ["version"] => json!({
            "major": "1", "minor": "33", "gitVersion": GIT_VERSION,
            "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
            "buildDate": "2025-05-15T00:00:00Z", "goVersion": "go1.24.2", "compiler": "gc",
            "platform": "linux/amd64"
        }),
        ["api"] => {
            let host = core.url().trim_start_matches("https://").to_string();
            json!({"kind": "APIVersions", "versions": ["v1"],
                   "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}]})
        }
        ["api", "v1"] => resource_list("", "v1"),
        ["apis"] => {
            let groups: Vec<Value> = GROUPS.iter().map(|(g, v)| group_doc(g, v)).collect();
            json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        }
        ["apis", g] => {
            let (g, v) = GROUPS
                .iter()
                .find(|(name, _)| name == g)
                .ok_or_else(ApiError::no_route)?;
            let mut doc = group_doc(g, v);
            if let Some(o) = doc.as_object_mut() {
                o.insert("kind".into(), json!("APIGroup"));
                o.insert("apiVersion".into(), json!("v1"));
            }
            doc
        }
        ["apis", g, v] if GROUPS.contains(&(*g, *v)) => resource_list(g, v),
        ["openapi", "v3"] => openapi_root(),
        ["openapi", "v3", "api", "v1"] => openapi_group_version("", "v1"),
        ["openapi", "v3", "apis", g, v] if GROUPS.contains(&(*g, *v)) => {
            openapi_group_version(g, v)
        }
        _ => return Err(ApiError::no_route()),
    };
    Ok(Reply::json(200, &doc, pretty))
}

fn group_doc(group: &str, version: &str) -> Value {
    let gv = json!({"groupVersion": format!("{group}/{version}"), "version": version});
    json!({"name": group, "versions": [gv.clone()], "preferredVersion": gv})
}

fn resource_list(group: &str, version: &str) -> Value {
    let mut resources: Vec<Value> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .map(|r| {
            let mut doc = json!({
                "name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
                "kind": r.kind, "verbs": OBJECT_VERBS,
            });
            if !r.short_names.is_empty() {
                doc["shortNames"] = json!(r.short_names);
            }
            doc
        })
        .collect();
    match group {
        "" => resources.push(json!({
            "name": "serviceaccounts/token", "singularName": "", "namespaced": true,
            "group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest", "verbs": ["create"]
        })),
        "authentication.k8s.io" => {
            for (plural, singular, kind) in [
                ("selfsubjectreviews", "selfsubjectreview", "SelfSubjectReview"),
                ("tokenreviews", "tokenreview", "TokenReview"),
            ] {
                resources.push(json!({"name": plural, "singularName": singular, "namespaced": false,
                                      "kind": kind, "verbs": ["create"]}));
            }
        }
        _ => {}
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources})
}

/// `/openapi/v3`: where each group-version document lives.
fn openapi_root() -> Value {
    let mut paths = serde_json::Map::new();
    paths.insert(
        "api/v1".into(),
        json!({"serverRelativeURL": "/openapi/v3/api/v1"}),
    );
    for (g, v) in GROUPS {
        paths.insert(
            format!("apis/{g}/{v}"),
            json!({"serverRelativeURL": format!("/openapi/v3/apis/{g}/{v}")}),
        );
    }
    json!({ "paths": paths })
}

/// A minimal OpenAPI v3 document for one group-version: the PATCH operation of each kind,
/// declaring the `fieldValidation` parameter (clients then leave validation to the server).
fn openapi_group_version(group: &str, version: &str) -> Value {
    let mut paths = serde_json::Map::new();
    let prefix = if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    };
    // Create-only kinds have no PATCH in a real API server; listing one here only tells kubectl
    // that the server validates fields itself, so `kubectl create -f` needs no schema.
    let create_only: &[(&str, &str, &str, &str)] = &[
        ("authentication.k8s.io", "v1", "tokenreviews", "TokenReview"),
        (
            "authentication.k8s.io",
            "v1",
            "selfsubjectreviews",
            "SelfSubjectReview",
        ),
    ];
    let kinds = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .map(|r| (r.plural, r.kind, r.namespaced))
        .chain(
            create_only
                .iter()
                .filter(|(g, v, ..)| *g == group && *v == version)
                .map(|(_, _, plural, kind)| (*plural, *kind, false)),
        );
    for (plural, kind, namespaced) in kinds {
        let path = if namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{plural}/{{name}}")
        } else {
            format!("{prefix}/{plural}/{{name}}")
        };
        paths.insert(
            path,
            json!({"patch": {
                "operationId": format!("patch{kind}"),
                "x-kubernetes-action": "patch",
                "x-kubernetes-group-version-kind": {"group": group, "version": version, "kind": kind},
                "parameters": [
                    {"name": "dryRun", "in": "query", "schema": {"type": "string"}},
                    {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
                    {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
                    {"name": "force", "in": "query", "schema": {"type": "boolean"}}
                ],
                "responses": {"200": {"description": "OK"}}
            }}),
        );
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": GIT_VERSION},
        "paths": paths,
        "components": {"schemas": {}}
    })
}
