//! Manifests: files of one or more YAML documents, read into JSON objects.

use std::path::Path;

use anyhow::{Context, Result, anyhow};

/// Reads a manifest file (one or more YAML documents) into JSON objects.
pub fn read_manifest(path: &Path) -> Result<Vec<serde_json::Value>> {
    use std::io::Read;
    let meta =
        std::fs::metadata(path).with_context(|| format!("reading manifest {}", path.display()))?;
    anyhow::ensure!(meta.is_file(), "{} is not a regular file", path.display());
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_MANIFEST_BYTES + 1).read_to_end(&mut bytes))
        .with_context(|| format!("reading manifest {}", path.display()))?;
    anyhow::ensure!(
        bytes.len() as u64 <= MAX_MANIFEST_BYTES,
        "{} is larger than {} KiB",
        path.display(),
        MAX_MANIFEST_BYTES / 1024
    );
    let text = String::from_utf8(bytes)
        .with_context(|| format!("manifest {} is not UTF-8", path.display()))?;
    parse_documents(&text).with_context(|| format!("parsing manifest {}", path.display()))
}

/// Parses multi-document YAML into JSON values, skipping empty documents.
pub fn parse_documents(text: &str) -> Result<Vec<serde_json::Value>> {
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(text).map_err(|e| anyhow!("{e}"))?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// The kinds cases use: (apiVersion, kind, resource plural, namespaced).
pub const KINDS: &[(&str, &str, &str, bool)] = &[
    ("v1", "Namespace", "namespaces", false),
    ("v1", "ServiceAccount", "serviceaccounts", true),
    ("v1", "Secret", "secrets", true),
    ("v1", "Pod", "pods", true),
    ("v1", "ConfigMap", "configmaps", true),
    ("v1", "Node", "nodes", false),
    ("v1", "Service", "services", true),
    ("apps/v1", "StatefulSet", "statefulsets", true),
    (
        "rbac.authorization.k8s.io/v1",
        "ClusterRole",
        "clusterroles",
        false,
    ),
    (
        "rbac.authorization.k8s.io/v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        false,
    ),
    ("rbac.authorization.k8s.io/v1", "Role", "roles", true),
    (
        "external-secrets.io/v1",
        "ClusterSecretStore",
        "clustersecretstores",
        false,
    ),
    (
        "external-secrets.io/v1",
        "SecretStore",
        "secretstores",
        true,
    ),
    (
        "external-secrets.io/v1",
        "ExternalSecret",
        "externalsecrets",
        true,
    ),
    (
        "rbac.authorization.k8s.io/v1",
        "RoleBinding",
        "rolebindings",
        true,
    ),
];

/// The largest manifest file read.
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// Why `obj` (document `index`, 1-based) is not an object authlab can apply, if it is not.
pub fn check_object(obj: &serde_json::Value, index: usize) -> Option<String> {
    let Some(map) = obj.as_object() else {
        return Some(format!(
            "document {index} is not a Kubernetes object (a YAML mapping)"
        ));
    };
    for key in ["apiVersion", "kind", "metadata"] {
        if !map.contains_key(key) {
            return Some(format!("document {index} has no `{key}`"));
        }
    }
    let api_version = obj["apiVersion"].as_str().unwrap_or_default();
    let kind = obj["kind"].as_str().unwrap_or_default();
    if !KINDS
        .iter()
        .any(|(a, k, _, _)| *a == api_version && *k == kind)
    {
        return Some(format!(
            "document {index} is a `{kind}` ({api_version}), which authlab does not apply; it applies {}",
            KINDS
                .iter()
                .map(|(_, k, _, _)| *k)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if obj["metadata"]["name"].as_str().is_none_or(str::is_empty) {
        return Some(format!("document {index} has no `metadata.name`"));
    }
    None
}

/// The kinds authlab applies and lists, by name.
pub fn known_kinds() -> Vec<&'static str> {
    KINDS.iter().map(|(_, k, _, _)| *k).collect()
}

/// The `apiVersion` of a kind authlab knows.
pub fn api_version_of(kind: &str) -> Option<&'static str> {
    KINDS
        .iter()
        .find(|(_, k, _, _)| *k == kind)
        .map(|(v, ..)| *v)
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
    /// `--foreign`: the object may be one the trial did not make (deleted only when the user
    /// allows it too).
    pub foreign: bool,
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
        let (mut grace_period, mut force, mut foreign) = (None, false, false);
        for w in words {
            match w {
                "--force" => force = true,
                "--foreign" => foreign = true,
                _ => match w.strip_prefix("--grace-period=").map(str::parse::<u32>) {
                    Some(Ok(n)) => grace_period = Some(n),
                    _ => {
                        return Err(format!(
                            "`{w}` is not `--grace-period=<seconds>`, `--force` or `--foreign`"
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
            foreign,
        })
    }
}
