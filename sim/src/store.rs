//! The object store: every kind the sim serves, kept as JSON with server-set metadata.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::status::ApiError;

/// A resource type the sim serves over REST.
#[derive(Debug)]
pub(crate) struct ResourceType {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
}

impl ResourceType {
    /// `v1` or `<group>/<version>`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

const fn rt(
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
) -> ResourceType {
    ResourceType {
        group,
        version,
        plural,
        singular,
        kind,
        namespaced,
        short_names,
    }
}

/// Every stored kind (index = store key).
pub(crate) static RESOURCES: &[ResourceType] = &[
    rt(
        "",
        "v1",
        "namespaces",
        "namespace",
        "Namespace",
        false,
        &["ns"],
    ),
    rt(
        "",
        "v1",
        "serviceaccounts",
        "serviceaccount",
        "ServiceAccount",
        true,
        &["sa"],
    ),
    rt("", "v1", "secrets", "secret", "Secret", true, &[]),
    rt("", "v1", "pods", "pod", "Pod", true, &["po"]),
    rt(
        "",
        "v1",
        "configmaps",
        "configmap",
        "ConfigMap",
        true,
        &["cm"],
    ),
    rt("", "v1", "nodes", "node", "Node", false, &["no"]),
    rt("", "v1", "services", "service", "Service", true, &["svc"]),
    rt(
        "apps",
        "v1",
        "statefulsets",
        "statefulset",
        "StatefulSet",
        true,
        &["sts"],
    ),
    rt(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterroles",
        "clusterrole",
        "ClusterRole",
        false,
        &[],
    ),
    rt(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "clusterrolebinding",
        "ClusterRoleBinding",
        false,
        &[],
    ),
    rt(
        "rbac.authorization.k8s.io",
        "v1",
        "roles",
        "role",
        "Role",
        true,
        &[],
    ),
    rt(
        "rbac.authorization.k8s.io",
        "v1",
        "rolebindings",
        "rolebinding",
        "RoleBinding",
        true,
        &[],
    ),
    // Turns between clients, as Kubernetes components (and authlab runs) take them.
    rt(
        "coordination.k8s.io",
        "v1",
        "leases",
        "lease",
        "Lease",
        true,
        &[],
    ),
];

/// Store index of a kind, by its fixed position in [`RESOURCES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Kind(pub usize);

impl Kind {
    pub const NAMESPACE: Kind = Kind(0);
    pub const SERVICE_ACCOUNT: Kind = Kind(1);
    pub const SECRET: Kind = Kind(2);
    pub const POD: Kind = Kind(3);
    pub const CONFIG_MAP: Kind = Kind(4);
    pub const NODE: Kind = Kind(5);
    pub const CLUSTER_ROLE: Kind = Kind(8);
    pub const CLUSTER_ROLE_BINDING: Kind = Kind(9);
    pub const ROLE: Kind = Kind(10);
    pub const ROLE_BINDING: Kind = Kind(11);

    /// The type description.
    pub fn info(self) -> &'static ResourceType {
        &RESOURCES[self.0]
    }

    /// Finds a kind by group, version and plural.
    pub fn lookup(group: &str, version: &str, plural: &str) -> Option<Kind> {
        RESOURCES
            .iter()
            .position(|r| r.group == group && r.version == version && r.plural == plural)
            .map(Kind)
    }
}

/// All stored objects, keyed by kind, namespace ("" when cluster-scoped) and name.
#[derive(Default)]
pub(crate) struct Store {
    objects: BTreeMap<(Kind, String, String), Value>,
    resource_version: u64,
}

/// Reads `metadata.<field>` as a string.
pub(crate) fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

/// RFC 3339 time, seconds precision, UTC.
pub(crate) fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

impl Store {
    /// One object, if present.
    pub fn get(&self, kind: Kind, ns: &str, name: &str) -> Option<&Value> {
        self.objects.get(&(kind, scope(kind, ns), name.to_string()))
    }

    /// Objects of a kind, in one namespace or (None) all of them, ordered by namespace and name.
    pub fn list(&self, kind: Kind, ns: Option<&str>) -> Vec<&Value> {
        self.objects
            .iter()
            .filter(|((k, n, _), _)| *k == kind && ns.is_none_or(|want| n == want))
            .map(|(_, v)| v)
            .collect()
    }

    /// The current list resourceVersion.
    pub fn resource_version(&self) -> String {
        self.resource_version.to_string()
    }

    fn next_rv(&mut self) -> String {
        self.resource_version += 1;
        self.resource_version.to_string()
    }

    /// Stores a new object, filling uid, resourceVersion, creationTimestamp and namespace.
    pub fn create(&mut self, kind: Kind, ns: &str, mut obj: Value) -> Result<Value, ApiError> {
        let info = kind.info();
        let ns = scope(kind, ns);
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request is not a JSON object",
            ));
        }
        let meta = obj
            .as_object_mut()
            .map(|o| o.entry("metadata").or_insert_with(|| json!({})))
            .and_then(Value::as_object_mut)
            .ok_or_else(|| ApiError::bad_request("metadata must be an object"))?;
        let mut name = meta
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if name.is_empty()
            && let Some(prefix) = meta.get("generateName").and_then(Value::as_str)
        {
            let suffix: String = uuid::Uuid::new_v4().simple().to_string()[..5].to_string();
            name = format!("{prefix}{suffix}");
            meta.insert("name".into(), json!(name));
        }
        if name.is_empty() {
            return Err(ApiError::invalid(
                info.group,
                info.kind,
                "",
                vec![(
                    "metadata.name".into(),
                    "FieldValueRequired",
                    "Required value: name or generateName is required".into(),
                )],
            ));
        }
        if let Some(bad) = invalid_name(&name) {
            return Err(ApiError::invalid(
                info.group,
                info.kind,
                &name,
                vec![(
                    "metadata.name".into(),
                    "FieldValueInvalid",
                    format!("Invalid value: \"{name}\": {bad}"),
                )],
            ));
        }
        if let Some(given) = meta.get("namespace").and_then(Value::as_str)
            && info.namespaced
            && !given.is_empty()
            && given != ns
        {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        if info.namespaced {
            meta.insert("namespace".into(), json!(ns));
        } else {
            meta.remove("namespace");
        }
        let key = (kind, ns.clone(), name.clone());
        if self.objects.contains_key(&key) {
            return Err(ApiError::already_exists(info.group, info.plural, &name));
        }
        meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
        meta.remove("deletionTimestamp");
        let rv = self.next_rv();
        meta.insert("resourceVersion".into(), json!(rv));
        set_type_meta(&mut obj, info);
        self.objects.insert(key, obj.clone());
        Ok(obj)
    }

    /// Replaces an existing object, keeping its identity; a stale resourceVersion conflicts.
    pub fn update(
        &mut self,
        kind: Kind,
        ns: &str,
        name: &str,
        mut obj: Value,
    ) -> Result<Value, ApiError> {
        let info = kind.info();
        let key = (kind, scope(kind, ns), name.to_string());
        let Some(old) = self.objects.get(&key) else {
            return Err(ApiError::not_found(info.group, info.plural, name));
        };
        let old_meta = old.get("metadata").cloned().unwrap_or_else(|| json!({}));
        let meta = obj
            .as_object_mut()
            .map(|o| o.entry("metadata").or_insert_with(|| json!({})))
            .and_then(Value::as_object_mut)
            .ok_or_else(|| ApiError::bad_request("metadata must be an object"))?;
        if let Some(given) = meta.get("name").and_then(Value::as_str)
            && given != name
        {
            return Err(ApiError::bad_request(
                "the name of the object does not match the name on the URL",
            ));
        }
        if let Some(rv) = meta.get("resourceVersion").and_then(Value::as_str)
            && !rv.is_empty()
            && Some(rv) != old_meta.get("resourceVersion").and_then(Value::as_str)
        {
            return Err(ApiError::conflict(
                info.group,
                info.plural,
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        meta.insert("name".into(), json!(name));
        for keep in ["uid", "creationTimestamp", "namespace"] {
            match old_meta.get(keep) {
                Some(v) => meta.insert(keep.into(), v.clone()),
                None => meta.remove(keep),
            };
        }
        let rv = self.next_rv();
        meta.insert("resourceVersion".into(), json!(rv));
        set_type_meta(&mut obj, info);
        self.objects.insert(key, obj.clone());
        Ok(obj)
    }

    /// Marks an object as being deleted (`deletionTimestamp`, `deletionGracePeriodSeconds`),
    /// returning it as stored.
    pub fn mark_deleting(
        &mut self,
        kind: Kind,
        ns: &str,
        name: &str,
        at: &str,
        grace: i64,
    ) -> Result<Value, ApiError> {
        let info = kind.info();
        let rv = self.next_rv();
        let obj = self
            .objects
            .get_mut(&(kind, scope(kind, ns), name.to_string()))
            .ok_or_else(|| ApiError::not_found(info.group, info.plural, name))?;
        if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("deletionTimestamp".into(), json!(at));
            meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
            meta.insert("resourceVersion".into(), json!(rv));
        }
        Ok(obj.clone())
    }

    /// Removes an object, returning it.
    pub fn delete(&mut self, kind: Kind, ns: &str, name: &str) -> Result<Value, ApiError> {
        let info = kind.info();
        let ns = scope(kind, ns);
        let removed = self
            .objects
            .remove(&(kind, ns.clone(), name.to_string()))
            .ok_or_else(|| ApiError::not_found(info.group, info.plural, name))?;
        if kind == Kind::NAMESPACE {
            self.objects
                .retain(|(k, n, _), _| !(k.info().namespaced && *n == name));
        }
        self.next_rv();
        Ok(removed)
    }
}

fn scope(kind: Kind, ns: &str) -> String {
    if kind.info().namespaced {
        ns.to_string()
    } else {
        String::new()
    }
}

fn set_type_meta(obj: &mut Value, info: &ResourceType) {
    if let Some(o) = obj.as_object_mut() {
        let mut typed = Map::new();
        typed.insert("kind".into(), json!(info.kind));
        typed.insert("apiVersion".into(), json!(info.api_version()));
        for (k, v) in std::mem::take(o) {
            if k != "kind" && k != "apiVersion" {
                typed.insert(k, v);
            }
        }
        *o = typed;
    }
}

/// Why `name` is not a valid DNS-1123 subdomain, if it is not.
fn invalid_name(name: &str) -> Option<&'static str> {
    let ok = name.len() <= 253
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.' || b == b':'
        })
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    (!ok).then_some(
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_get_conflict_delete() {
        let mut s = Store::default();
        let sa = s
            .create(
                Kind::SERVICE_ACCOUNT,
                "app",
                json!({"metadata": {"name": "web"}}),
            )
            .unwrap();
        assert_eq!(sa["kind"], "ServiceAccount");
        assert_eq!(sa["metadata"]["namespace"], "app");
        assert!(meta_str(&sa, "uid").is_some());
        let e = s
            .create(
                Kind::SERVICE_ACCOUNT,
                "app",
                json!({"metadata": {"name": "web"}}),
            )
            .unwrap_err();
        assert_eq!(e.code, 409);
        assert_eq!(e.message, "serviceaccounts \"web\" already exists");
        assert!(s.get(Kind::SERVICE_ACCOUNT, "app", "web").is_some());
        s.create(Kind::NAMESPACE, "", json!({"metadata": {"name": "app"}}))
            .unwrap();
        s.delete(Kind::NAMESPACE, "", "app").unwrap();
        assert!(s.get(Kind::SERVICE_ACCOUNT, "app", "web").is_none());
        let e = s.delete(Kind::CLUSTER_ROLE, "", "x").unwrap_err();
        assert_eq!(
            e.message,
            "clusterroles.rbac.authorization.k8s.io \"x\" not found"
        );
    }
}
