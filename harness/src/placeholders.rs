//! `${name}` placeholders in case files: which a case uses (found once, at load) and their
//! substitution in strings, regular expressions and JSON values.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// Placeholder values of one trial (some hold secrets: tokens, CAs).
pub type Vars = BTreeMap<String, String>;

/// Every placeholder a trial can fill, with what it stands for.
pub const KNOWN: &[(&str, &str)] = &[
    ("cluster.url", "the API server URL as the server reaches it"),
    ("cluster.hostport", "host:port of that URL"),
    (
        "cluster.dialed",
        "ip:port the server dials for that URL (Go names dialled addresses, never host names)",
    ),
    (
        "cluster.cert_ips",
        "the IP addresses the API server's serving certificate names, as Go lists them",
    ),
    (
        "server.ip",
        "the address the server's connections come from (127.0.0.1 for a local process; a container's or pod's own)",
    ),
    ("cluster.ca", "the cluster CA (PEM)"),
    ("cluster.issuer", "the service-account issuer"),
    ("cluster.jwks_url", "the cluster's /openid/v1/jwks URL"),
    ("cluster.pubkey", "the service-account public key (PEM)"),
    ("reviewer.jwt", "the reviewer token"),
    (
        "pod.jwt",
        "the server pod's token as mounted when it started (inside topology)",
    ),
    ("hang.url", "an endpoint that accepts and never answers"),
    (
        "reset.url",
        "an endpoint that accepts, reads the first bytes and resets the connection",
    ),
    ("reset.hostport", "host:port of that endpoint"),
    ("cluster.port", "the port of the API server URL"),
    (
        "cluster.unnamed_url",
        "the API server at an address its certificate does not name (127.0.0.2 for a local server; the host's address on the Kind network there)",
    ),
    ("cluster.unnamed_host", "the address of that URL"),
    ("unreachable.url", "an address that refuses connections"),
    ("unreachable.hostport", "host:port of that address"),
    ("unrelated.ca", "a CA that belongs to no cluster"),
    (
        "other.ca",
        "another cluster's CA (the trial's second cluster's, when it has one)",
    ),
    ("other.url", "the trial's second cluster's API server URL"),
    ("other.hostport", "host:port of that URL"),
    (
        "other.issuer",
        "the second cluster's service-account issuer",
    ),
    ("other.jwks_url", "the second cluster's /openid/v1/jwks URL"),
    ("mount", "the trial's auth mount path"),
    ("kv", "the trial's KV v2 mount path"),
    (
        "policy",
        "the name of the trial's ACL policy (the role's token_policies)",
    ),
    ("accessor", "the trial's auth mount accessor"),
];

/// The placeholder names `text` refers to.
pub fn used_in(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) => {
                let name = &after[..end];
                if !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
                {
                    out.insert(name.to_string());
                }
                rest = &after[end + 1..];
            }
            None => break,
        }
    }
    out
}

/// Replaces `${name}` placeholders.
pub fn substitute(text: &str, vars: &Vars) -> String {
    let mut out = text.to_string();
    for (k, v) in vars {
        out = out.replace(&format!("${{{k}}}"), v);
    }
    out
}

/// Replaces `${name}` placeholders in a regular expression with their escaped values.
pub fn substitute_escaped(pattern: &str, vars: &Vars) -> String {
    let mut out = pattern.to_string();
    for (k, v) in vars {
        out = out.replace(&format!("${{{k}}}"), &regex::escape(v));
    }
    out
}

/// Replaces placeholders in every string of a JSON value.
pub fn substitute_value(v: &Value, vars: &Vars) -> Value {
    match v {
        Value::String(s) => Value::String(substitute(s, vars)),
        Value::Array(a) => Value::Array(a.iter().map(|x| substitute_value(x, vars)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (k.clone(), substitute_value(x, vars)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_each_placeholder_once() {
        let used = used_in("a ${cluster.url} b ${kv}/x ${cluster.url} ${ not } $x ${");
        assert_eq!(
            used.into_iter().collect::<Vec<_>>(),
            vec!["cluster.url".to_string(), "kv".to_string()]
        );
    }

    #[test]
    fn substitutes_strings_regexes_and_json() {
        let mut vars = Vars::new();
        vars.insert("kv".into(), "kv_1.2".into());
        assert_eq!(substitute("${kv}/data", &vars), "kv_1.2/data");
        assert_eq!(substitute_escaped("^${kv}$", &vars), "^kv_1\\.2$");
        let v = substitute_value(&serde_json::json!({"a": ["${kv}", 1]}), &vars);
        assert_eq!(v, serde_json::json!({"a": ["kv_1.2", 1]}));
    }
}
