//! Case-file YAML in the catalog's own style, for what `--bless` records and the `flavours`
//! blocks a run prints.

use serde_json::Value;

/// `v` as YAML in the catalog's own style: nested maps as blocks, a map of plain values (and
/// every list item) in flow style on one line (`login: { status: 403, error: "…" }`), keys in
/// the order case files write them, strings quoted only where YAML needs it. Hand-written: the
/// YAML serializers emit one style for a whole document.
pub fn render(v: &Value) -> String {
    let mut out = String::new();
    if let Value::Object(m) = v {
        yaml_block(m, 0, &mut out);
    } else {
        out.push_str(&flow(v));
        out.push('\n');
    }
    out
}

/// The keys of `m` in case-file order, nulls left out (absent and null are the same there).
fn ordered_keys(m: &serde_json::Map<String, Value>) -> Vec<&String> {
    let mut keys: Vec<&String> = m
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, _)| k)
        .collect();
    keys.sort_by_key(|k| {
        (
            KEY_ORDER
                .iter()
                .position(|f| f == k)
                .unwrap_or(KEY_ORDER.len()),
            *k,
        )
    });
    keys
}

/// Keys that case files write first, in this order; the rest follow alphabetically.
const KEY_ORDER: &[&str] = &[
    "config",
    "role",
    "login",
    "audit",
    "auth",
    "server_log",
    "cluster_requests",
    "cluster_objects",
    "kind",
    "method",
    "path",
    "namespace",
    "name",
    "type",
    "status",
    "user",
    "level",
    "message",
    "error",
    "warnings",
    "count",
];

/// A value that holds no map: one line in flow style.
fn plain(v: &Value) -> bool {
    match v {
        Value::Object(_) => false,
        Value::Array(a) => a.iter().all(|x| !x.is_object() && !x.is_array()),
        _ => true,
    }
}

fn yaml_block(m: &serde_json::Map<String, Value>, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    for k in ordered_keys(m) {
        let v = &m[k];
        // Server keys (`openbao:2.6`) quoted, as the catalog writes them.
        let key = if k.contains(':') {
            Value::String(k.clone()).to_string()
        } else {
            scalar(k, false)
        };
        out.push_str(&format!("{pad}{key}:"));
        match v {
            Value::Object(inner) if inner.values().all(plain) => {
                out.push_str(&format!(" {}\n", flow(v)));
            }
            Value::Object(inner) => {
                out.push('\n');
                yaml_block(inner, indent + 2, out);
            }
            Value::Array(items) if !items.is_empty() && !plain(v) => {
                out.push('\n');
                for item in items {
                    out.push_str(&format!("{pad}  - {}\n", flow(item)));
                }
            }
            _ => out.push_str(&format!(" {}\n", flow(v))),
        }
    }
}

fn flow(v: &Value) -> String {
    match v {
        Value::Object(m) if m.values().all(Value::is_null) => "{}".into(),
        Value::Object(m) => format!(
            "{{ {} }}",
            ordered_keys(m)
                .into_iter()
                .map(|k| format!("{}: {}", scalar(k, true), flow(&m[k])))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Array(a) => format!("[{}]", a.iter().map(flow).collect::<Vec<_>>().join(", ")),
        Value::String(s) => scalar(s, true),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

/// A string as a YAML scalar: plain where that reads back as the same string, else in single
/// quotes (when it holds a `"`) or double quotes with JSON's escapes (valid YAML).
fn scalar(s: &str, in_flow: bool) -> String {
    let special_start = s.starts_with(|c: char| "-?:,[]{}#&*!|>'\"%@`".contains(c) || c == ' ');
    let ambiguous = matches!(
        s.to_ascii_lowercase().as_str(),
        "" | "~" | "null" | "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n"
    ) || s.parse::<f64>().is_ok()
        || s.starts_with("0x")
        || s.starts_with("0o");
    let breaks = s.contains(": ")
        || s.contains(" #")
        || s.ends_with(':')
        || s.ends_with(' ')
        || s.contains('"')
        || s.chars().any(|c| c.is_control())
        || (in_flow && s.contains([',', '[', ']', '{', '}']));
    if !special_start && !ambiguous && !breaks {
        s.to_string()
    } else if s.contains('"') && !s.chars().any(|c| c.is_control()) {
        format!("'{}'", s.replace('\'', "''"))
    } else {
        Value::String(s.to_string()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Whatever the values, the YAML reads back as the same document, in the catalog's style.
    #[test]
    fn any_value_round_trips_in_the_catalogs_style() {
        let doc = json!({"expect": {
            "login": {"status": 403, "error": "invalid role name \"nope\""},
            "audit": {"error": "a: b, [c] {d} #e", "data_error": null},
            "server_log": {"level": "debug", "message": "login unauthorized", "fields": {"err": "x: y"}},
            "cluster_requests": {"made": [{"method": "POST", "path": "/apis/authentication.k8s.io/v1/tokenreviews"}], "tokenreview_status": 201},
            "cluster_objects": [{"kind": "Secret", "namespace": "default", "count": 1}],
            "odd": ["true", "1.5", "", " lead", "trail ", "it's", "-dash", "tab\there", "line\nbreak", "~", "ok"],
        }, "flavours": {"openbao:2.6": {"expect": {"login": {"status": 400}}}}});
        let text = render(&doc);
        assert!(
            text.contains("  login: { status: 403, error: 'invalid role name \"nope\"' }\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "  cluster_objects:\n    - { kind: Secret, namespace: default, count: 1 }\n"
            ),
            "{text}"
        );
        assert!(text.contains("  \"openbao:2.6\":\n"), "{text}");
        let back: Value = serde_saphyr::from_str(&text).unwrap();
        let mut want = doc.clone();
        want["expect"]["audit"]
            .as_object_mut()
            .unwrap()
            .remove("data_error");
        assert_eq!(back, want, "{text}");
    }
}
