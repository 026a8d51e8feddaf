//! The file audit device's JSON lines (request and response entries, raw or HMAC'd).

use serde_json::Value;

/// One audit entry.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    /// `request` or `response`.
    pub kind: String,
    /// Entry time.
    pub time: String,
    /// `request.path`.
    pub path: String,
    /// `request.operation`.
    pub operation: String,
    /// `request.mount_accessor`.
    pub mount_accessor: Option<String>,
    /// `request.mount_point`.
    pub mount_point: Option<String>,
    /// `request.id`.
    pub request_id: Option<String>,
    /// Top-level `error`.
    pub error: Option<String>,
    /// `response.data.error` (where 400 answers keep their text).
    pub data_error: Option<String>,
    /// The whole entry.
    pub raw: Value,
}

fn s(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

/// Parses JSON lines; lines that are not complete JSON objects (e.g. one being written) are
/// skipped.
pub fn parse_audit_log(text: &str) -> Vec<AuditEntry> {
    text.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line.trim()).ok())
        .filter(|v| v.is_object())
        .map(|raw| AuditEntry {
            kind: s(&raw["type"]).unwrap_or_default(),
            time: s(&raw["time"]).unwrap_or_default(),
            path: s(&raw["request"]["path"]).unwrap_or_default(),
            operation: s(&raw["request"]["operation"]).unwrap_or_default(),
            mount_accessor: s(&raw["request"]["mount_accessor"]),
            mount_point: s(&raw["request"]["mount_point"]),
            request_id: s(&raw["request"]["id"]),
            error: s(&raw["error"]).filter(|e| !e.is_empty()),
            data_error: s(&raw["response"]["data"]["error"]).filter(|e| !e.is_empty()),
            raw,
        })
        .collect()
}

/// Entries whose path starts with `mount_path_prefix` (e.g. `auth/k8s-x/`) and, when given,
/// whose mount accessor matches.
pub fn audit_for_mount(
    entries: &[AuditEntry],
    mount_path_prefix: &str,
    accessor: Option<&str>,
) -> Vec<AuditEntry> {
    entries
        .iter()
        .filter(|e| e.path.starts_with(mount_path_prefix))
        .filter(|e| match (accessor, &e.mount_accessor) {
            (Some(a), Some(m)) => a == m,
            _ => true,
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Shapes as OpenBao 2.7.2 writes them (file device, log_raw).
    const LOG: &str = r#"{"time":"2026-11-22T23:40:01.1Z","type":"request","auth":{"token_type":"default"},"request":{"id":"a1","operation":"update","mount_point":"auth/k8s-a/","mount_type":"kubernetes","mount_accessor":"auth_kubernetes_aaaa1111","path":"auth/k8s-a/login","data":{"jwt":"x","role":"app"}}}
{"time":"2026-11-22T23:40:01.2Z","type":"response","auth":{"token_type":"default"},"request":{"id":"a1","operation":"update","mount_point":"auth/k8s-a/","mount_type":"kubernetes","mount_accessor":"auth_kubernetes_aaaa1111","path":"auth/k8s-a/login"},"response":{"mount_type":"kubernetes"},"error":"permission denied"}
{"time":"2026-11-22T23:40:01.3Z","type":"response","request":{"id":"b1","operation":"update","mount_accessor":"auth_kubernetes_bbbb2222","path":"auth/k8s-b/login"},"response":{"data":{"error":"missing jwt"}}}
{"time":"2026-11-22T23:40:01.4Z","type":"resp"#;

    #[test]
    fn parses_and_slices() {
        let all = parse_audit_log(LOG);
        assert_eq!(all.len(), 3);
        let a = audit_for_mount(&all, "auth/k8s-a/", Some("auth_kubernetes_aaaa1111"));
        assert_eq!(a.len(), 2);
        assert_eq!(a[1].error.as_deref(), Some("permission denied"));
        let b = audit_for_mount(&all, "auth/k8s-b/", None);
        assert_eq!(b[0].data_error.as_deref(), Some("missing jwt"));
        assert_eq!(b[0].error, None);
    }
}
