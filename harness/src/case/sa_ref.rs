//! A service account named in a case file as `<namespace>/<name>`: parsed once, at load.

use std::{borrow::Cow, fmt, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `<namespace>/<name>` of a service account.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceAccountRef {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl ServiceAccountRef {
    /// A reference from its two parts.
    pub fn new(namespace: &str, name: &str) -> ServiceAccountRef {
        ServiceAccountRef {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

/// The message of a value that is not `<namespace>/<name>` (the loader's fix keys on it).
pub const NOT_A_REF: &str = "is not `<namespace>/<name>`";

impl FromStr for ServiceAccountRef {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                Ok(ServiceAccountRef::new(ns, name))
            }
            _ => Err(format!("`{s}` {NOT_A_REF}")),
        }
    }
}

impl fmt::Display for ServiceAccountRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl Serialize for ServiceAccountRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ServiceAccountRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for ServiceAccountRef {
    fn schema_name() -> Cow<'static, str> {
        "ServiceAccountRef".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "`<namespace>/<name>` of a service account.",
            "type": "string",
            "pattern": "^[^/]+/[^/]+$"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_namespace_and_name_and_refuses_the_rest() {
        let r: ServiceAccountRef = "vault/vault-auth".parse().unwrap();
        assert_eq!(r, ServiceAccountRef::new("vault", "vault-auth"));
        assert_eq!(r.to_string(), "vault/vault-auth");
        for bad in ["vault", "/x", "x/", "a/b/c", ""] {
            let e = bad.parse::<ServiceAccountRef>().unwrap_err();
            assert!(e.contains(NOT_A_REF), "{bad}: {e}");
        }
    }
}
