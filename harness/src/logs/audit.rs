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

    // Captured from OpenBao 2.7.2 (file device declared in the config, `log_raw`), two
    // kubernetes mounts; only the login JWTs were shortened. The first line is the device's own
    // start-up test entry; the last one was cut off mid-write.
    const LOG: &str = r#"{"time":"2026-11-22T23:47:53.434406288Z","type":"request","auth":{"token_type":"default"},"request":{"id":"2da235ee-2c09-cf9b-0f95-40fee37448f8","operation":"update","namespace":{"id":"root"},"path":"sys/audit/test"}}
{"time":"2026-11-22T23:47:53.527335892Z","type":"request","auth":{"policy_results":{"allowed":true},"token_type":"default"},"request":{"id":"940e1a78-0cd9-4023-df4d-22d0f11ecadc","operation":"update","mount_point":"auth/k8s-a/","mount_type":"kubernetes","mount_accessor":"auth_kubernetes_21adb6bf","mount_running_version":"v2.7.2+builtin.bao","mount_class":"auth","namespace":{"id":"root"},"path":"auth/k8s-a/login","data":{"jwt":"eyJhbGciOiJSUzI1NiJ9.e30.c2ln","role":"app"},"remote_address":"127.0.0.1","remote_port":53104}}
{"time":"2026-11-22T23:47:53.528116677Z","type":"response","auth":{"policy_results":{"allowed":true},"token_type":"default"},"request":{"id":"940e1a78-0cd9-4023-df4d-22d0f11ecadc","operation":"update","mount_point":"auth/k8s-a/","mount_type":"kubernetes","mount_accessor":"auth_kubernetes_21adb6bf","mount_running_version":"v2.7.2+builtin.bao","mount_class":"auth","namespace":{"id":"root"},"path":"auth/k8s-a/login","data":{"jwt":"eyJhbGciOiJSUzI1NiJ9.e30.c2ln","role":"app"},"remote_address":"127.0.0.1","remote_port":53104},"response":{"mount_point":"auth/k8s-a/","mount_type":"kubernetes","mount_accessor":"auth_kubernetes_21adb6bf","mount_running_plugin_version":"v2.7.2+builtin.bao","mount_class":"auth"},"error":"permission denied"}
{"time":"2026-11-22T23:47:53.529078181Z","type":"response","auth":{"policy_results":{"allowed":true},"token_type":"default"},"request":{"id":"b73318aa-296d-c526-0217-3ca38864aa5f","operation":"update","mount_point":"auth/k8s-ab/","mount_type":"kubernetes","mount_accessor":"auth_kubernetes_0c4e91aa","mount_running_version":"v2.7.2+builtin.bao","mount_class":"auth","namespace":{"id":"root"},"path":"auth/k8s-ab/login","data":{"jwt":"eyJhbGciOiJSUzI1NiJ9.e30.c2ln","role":"nope"},"remote_address":"127.0.0.1","remote_port":53104},"response":{"mount_point":"auth/k8s-ab/","mount_type":"kubernetes","mount_accessor":"auth_kubernetes_0c4e91aa","mount_running_plugin_version":"v2.7.2+builtin.bao","mount_class":"auth","data":{"error":"invalid role name \"nope\""}}}
{"time":"2026-11-22T23:47:53.529717304Z","type":"response","auth":{"policy_results":{"allowed":true},"token_type":"default"},"request":{"id":"042c08fa-8160-fcd6-f1fa-540b8653618c","operation":"update","mount_point":"auth/k8s-a/","mount_type":"kubernetes","mount_accessor":"auth_kubernetes_21adb6bf","mount_running_version":"v2.7.2+builtin.bao","mount_class":"auth","namespace":{"id":"root"},"path":"auth/k8s-a/login","data":{"jwt":"","role":"app"},"remote_address":"127.0.0.1","remote_port":53104},"response":{"mount_point":"auth/k8s-a/","mount_type":"kubernetes","mount_accessor":"auth_kubernetes_21adb6bf","mount_running_plugin_version":"v2.7.2+builtin.bao","mount_class":"auth","data":{"error":"missing jwt"}}}
{"time":"2026-11-22T23:47:53.530717304Z","type":"request","auth":{"policy_results":{"allowed":true},"token_type":"default"},"request":{"id":"1"#;

    #[test]
    fn parses_real_entries_and_skips_a_partial_line() {
        let all = parse_audit_log(LOG);
        assert_eq!(all.len(), 5);
        assert_eq!(all[0].path, "sys/audit/test");
        assert_eq!(all[0].mount_accessor, None);
        let denied = &all[2];
        assert_eq!(denied.kind, "response");
        assert_eq!(denied.time, "2026-11-22T23:47:53.528116677Z");
        assert_eq!(denied.operation, "update");
        assert_eq!(denied.path, "auth/k8s-a/login");
        assert_eq!(denied.mount_point.as_deref(), Some("auth/k8s-a/"));
        assert_eq!(
            denied.mount_accessor.as_deref(),
            Some("auth_kubernetes_21adb6bf")
        );
        assert_eq!(
            denied.request_id.as_deref(),
            Some("940e1a78-0cd9-4023-df4d-22d0f11ecadc")
        );
        assert_eq!(denied.error.as_deref(), Some("permission denied"));
        assert_eq!(denied.data_error, None);
        assert_eq!(denied.raw["request"]["data"]["role"], "app");
        // 400s keep their text in response.data.error, with no top-level error.
        assert_eq!(all[3].error, None);
        assert_eq!(
            all[3].data_error.as_deref(),
            Some(r#"invalid role name "nope""#)
        );
        assert_eq!(all[4].data_error.as_deref(), Some("missing jwt"));
    }

    #[test]
    fn slices_by_mount_path_and_accessor() {
        let all = parse_audit_log(LOG);
        let a = audit_for_mount(&all, "auth/k8s-a/", Some("auth_kubernetes_21adb6bf"));
        assert_eq!(a.len(), 3);
        assert!(a.iter().all(|e| e.path.starts_with("auth/k8s-a/")));
        // `auth/k8s-ab/` shares the text `auth/k8s-a` but is another mount.
        let ab = audit_for_mount(&all, "auth/k8s-ab/", None);
        assert_eq!(ab.len(), 1);
        assert_eq!(
            ab[0].mount_accessor.as_deref(),
            Some("auth_kubernetes_0c4e91aa")
        );
        // A remounted path with a new accessor: the old entries are not this mount's.
        assert!(audit_for_mount(&all, "auth/k8s-a/", Some("auth_kubernetes_ffffffff")).is_empty());
    }

    #[test]
    fn garbage_is_skipped() {
        assert!(parse_audit_log("").is_empty());
        assert!(parse_audit_log("not json\n[1,2]\n\"s\"\n{\"time\":").is_empty());
    }
}
