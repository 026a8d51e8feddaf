//! The evidence a user has, read into an [`Input`]: the JSON of `vault read -format=json
//! auth/<mount>/config` and `…/role/<name>` (or their bare `data`), a JWT as text, file or
//! standard input (with or without `Bearer `), an audit log (HMAC'd or raw) and a server log in
//! any of [`crate::logs::LOG_FORMATS`].

use serde_json::Value;

use super::Input;
use crate::logs::{self, LogLine};

/// Evidence that cannot be read, named so the user can fix it.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// A file that is not the JSON it should be.
    #[error(
        "{what}: not JSON ({why}); give the output of `vault read -format=json {path}` (or `bao read -format=json …`), or its `data` object"
    )]
    NotJson {
        /// Which input (`--role FILE`).
        what: String,
        /// The path it should have been read from.
        path: String,
        /// Why.
        why: String,
    },
    /// JSON that is not an object.
    #[error(
        "{what}: a JSON object was expected (the output of `vault read -format=json {path}`, or its `data` object)"
    )]
    NotAnObject {
        /// Which input.
        what: String,
        /// The path it should have been read from.
        path: String,
    },
    /// A JWT that does not decode.
    #[error("--jwt: {0:#}; give the token itself (the file's content, without quotes)")]
    Jwt(anyhow::Error),
}

/// A token as users paste it: trimmed, without `Authorization:` / `Bearer `, quotes, or a
/// trailing newline.
pub fn jwt_text(text: &str) -> String {
    let mut t = text.trim();
    if let Some(rest) = t.strip_prefix("Authorization:") {
        t = rest.trim();
    }
    for p in ["Bearer ", "bearer "] {
        if let Some(rest) = t.strip_prefix(p) {
            t = rest.trim();
        }
    }
    t.trim_matches(|c| c == '"' || c == '\'').to_string()
}

/// Sets the JWT of `input` from its text.
pub fn set_jwt(input: &mut Input, text: &str) -> Result<(), InputError> {
    let t = jwt_text(text);
    input.jwt = Some(crate::jwt::decode_unverified(&t).map_err(InputError::Jwt)?);
    input.jwt_text = Some(t);
    Ok(())
}

/// The object a `read` answered: the `data` of `vault read -format=json` output, or the bare
/// object. `what` names the input and `path` what to read, for the error.
pub fn read_object(text: &str, what: &str, path: &str) -> Result<Value, InputError> {
    let v: Value = serde_json::from_str(text).map_err(|e| InputError::NotJson {
        what: what.into(),
        path: path.into(),
        why: e.to_string(),
    })?;
    let obj = match v.get("data") {
        Some(d) if d.is_object() && v.get("request_id").is_some() => d.clone(),
        Some(d) if d.is_object() && v.as_object().is_some_and(|o| o.len() <= 8) => d.clone(),
        _ => v,
    };
    if !obj.is_object() {
        return Err(InputError::NotAnObject {
            what: what.into(),
            path: path.into(),
        });
    }
    Ok(obj)
}

/// What an audit log gave.
#[derive(Debug, Default)]
pub struct AuditPick {
    /// The entry's time and path (for the user).
    pub summary: String,
    /// The mount's accessor (to pick the mount's server-log lines).
    pub accessor: Option<String>,
    /// Notes for the user (HMAC'd fields, a config write used instead of a login).
    pub notes: Vec<String>,
    /// When the chosen entry was written, and when the other login responses of its mount
    /// were: a server-log line belongs to the login nearest in time.
    pub logins: Option<LoginTimes>,
}

/// The time of the login the audit entry names, and of the other logins in the same log.
#[derive(Debug, Clone, Default)]
pub struct LoginTimes {
    /// The chosen login's response.
    pub at: chrono::DateTime<chrono::Utc>,
    /// Every other login response of the same mount.
    pub others: Vec<chrono::DateTime<chrono::Utc>>,
}

/// A timestamp as servers and audit devices write it (RFC 3339, with `Z` or an offset, or
/// hclog's `+0000`).
fn time_of(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let s = s.trim();
    chrono::DateTime::parse_from_rfc3339(s)
        .or_else(|_| chrono::DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// Reads the login's response entry (the last with an error, or the one with `request_id`)
/// into `input`; without a failed login, the last failed config write of an auth mount.
pub fn audit(input: &mut Input, text: &str, request_id: Option<&str>) -> Result<AuditPick, String> {
    let entries = logs::parse_audit_log(text);
    if entries.is_empty() {
        return Err("holds no audit entries (JSON lines of a file audit device)".into());
    }
    let failed = |e: &&logs::AuditEntry| e.error.is_some() || e.data_error.is_some();
    let responses = || entries.iter().rev().filter(|e| e.kind == "response");
    let login = match request_id {
        Some(id) => responses().find(|e| e.request_id.as_deref() == Some(id)),
        None => responses().find(|e| e.path.ends_with("/login") && failed(e)),
    };
    let mut pick = AuditPick::default();
    let entry = match login {
        Some(e) => e,
        None => {
            let config = responses()
                .find(|e| e.path.starts_with("auth/") && e.path.ends_with("/config") && failed(e))
                .ok_or_else(|| match request_id {
                    Some(id) => format!("has no response entry with request id {id}"),
                    None => "has no failed login (nor failed auth config write) response entry"
                        .to_string(),
                })?;
            pick.notes.push(format!(
                "no failed login in the audit log; using the failed config write at {}",
                config.path
            ));
            let err = config
                .error
                .clone()
                .or_else(|| config.data_error.clone())
                .unwrap_or_default();
            input.config_error = Some((400, err));
            config
        }
    };
    if entry.path.ends_with("/login") {
        input.audit_error = entry.data_error.clone().or_else(|| entry.error.clone());
    }
    input.audit_given = true;
    pick.accessor = entry.mount_accessor.clone();
    if entry.path.ends_with("/login")
        && let Some(at) = time_of(&entry.time)
    {
        let others = responses()
            .filter(|e| {
                e.path.ends_with("/login")
                    && !std::ptr::eq(*e, entry)
                    && e.mount_accessor == entry.mount_accessor
            })
            .filter_map(|e| time_of(&e.time))
            .collect();
        pick.logins = Some(LoginTimes { at, others });
    }
    pick.summary = format!(
        "{} {} error={:?}",
        entry.time,
        entry.path,
        entry
            .error
            .as_deref()
            .or(entry.data_error.as_deref())
            .unwrap_or("")
    );
    input.method = input.method.take().or_else(|| {
        entry.raw["request"]["mount_type"]
            .as_str()
            .map(str::to_string)
    });
    let data = &entry.raw["request"]["data"];
    let hmac = |k: &str| data[k].as_str().is_some_and(|v| v.starts_with("hmac-"));
    match data["jwt"].as_str() {
        Some(j) if !j.starts_with("hmac-") && input.jwt.is_none() => {
            if let Ok(d) = crate::jwt::decode_unverified(j) {
                input.jwt = Some(d);
                input.jwt_text = Some(j.to_string());
            }
        }
        _ => {}
    }
    if let Some(role) = data["role"].as_str().filter(|r| !r.starts_with("hmac-")) {
        input.role_name.get_or_insert_with(|| role.to_string());
    }
    let hidden: Vec<&str> = ["jwt", "role"].into_iter().filter(|k| hmac(k)).collect();
    if !hidden.is_empty() {
        pick.notes.push(format!(
            "the audit device HMACs request data, so {} cannot be read here: give --jwt (and --role), or let the mount audit them in clear with `vault auth tune -audit-non-hmac-request-keys={} <mount>` (the device's log_raw=true shows everything, tokens included)",
            hidden.join(" and "),
            hidden.join(",")
        ));
    }
    Ok(pick)
}

/// The server-log lines worth reading for a login (`login unauthorized`, errors, discovery
/// checks), as `message key=value ...`, of the mount with `accessor` when it is known; and how
/// many lines of any mount the text held (0: nothing parsed).
///
/// With `logins` (from the audit entry), only the lines nearer in time to the chosen login than
/// to any other login of the mount are read: those of an earlier login are not this one's.
pub fn server_log(
    input: &mut Input,
    text: &str,
    accessor: Option<&str>,
    logins: Option<&LoginTimes>,
) -> usize {
    let all = logs::parse_any_server_log(text);
    let mine = |l: &LogLine| {
        let (Some(logins), Some(t)) = (logins, time_of(&l.time)) else {
            return true;
        };
        let far = |o: &chrono::DateTime<chrono::Utc>| (t - *o).abs();
        let d = far(&logins.at);
        logins.others.iter().all(|o| d <= far(o))
    };
    let lines: Vec<LogLine> = match accessor {
        Some(acc)
            if all
                .iter()
                .any(|l| l.module.as_deref().is_some_and(|m| m.ends_with(acc))) =>
        {
            logs::log_for_accessor(&all, acc)
        }
        _ => all.clone(),
    };
    input.log_given = true;
    input.log = lines
        .iter()
        .filter(|l| mine(l))
        .filter(|l| {
            l.message.contains("login unauthorized")
                || l.level == "ERROR"
                || l.message.contains("error checking")
        })
        .map(LogLine::text)
        .collect();
    if input.method.is_none() {
        input.method = lines.iter().find_map(|l| {
            let m = l.module.as_deref()?;
            m.strip_prefix("auth.")
                .and_then(|r| r.split('.').next())
                .filter(|t| *t == "kubernetes" || *t == "jwt")
                .map(str::to_string)
        });
    }
    all.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_taken_as_pasted() {
        for t in [
            "eyJa.eyJb.c",
            "  eyJa.eyJb.c\n",
            "Bearer eyJa.eyJb.c",
            "Authorization: Bearer eyJa.eyJb.c",
            "\"eyJa.eyJb.c\"",
        ] {
            assert_eq!(jwt_text(t), "eyJa.eyJb.c", "{t:?}");
        }
    }

    /// `bao read -format=json auth/kubernetes/role/r` of OpenBao 2.7.2, and its `data`.
    #[test]
    fn read_output_and_its_data_are_both_accepted() {
        let full = r#"{"request_id":"cabf2b41-27e9-fcf1-899f-40f96c0112df","lease_id":"","lease_duration":0,"renewable":false,"data":{"alias_name_source":"serviceaccount_uid","bound_service_account_names":["a"],"bound_service_account_namespaces":["b"],"token_policies":[]},"warnings":null}"#;
        let a = read_object(full, "--role", "auth/kubernetes/role/r").unwrap();
        assert_eq!(a["bound_service_account_names"][0], "a");
        let data = serde_json::to_string(&a).unwrap();
        assert_eq!(read_object(&data, "--role", "x").unwrap(), a);
        let e = read_object(
            "bound_service_account_names=a",
            "--role",
            "auth/kubernetes/role/r",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("vault read -format=json auth/kubernetes/role/r"),
            "{e}"
        );
        assert!(read_object("[1]", "--config", "x").is_err());
    }

    /// An audit device that HMACs request data hides the JWT and role: the note says so and
    /// how to see them; a failed config write stands in when no login failed.
    #[test]
    fn hmac_fields_and_config_writes() {
        let login = r#"{"type":"response","time":"2026-12-01T13:40:30.880033Z","request":{"id":"a","path":"auth/kubernetes/login","operation":"update","mount_type":"kubernetes","mount_accessor":"auth_kubernetes_1","data":{"jwt":"hmac-sha256:abc","role":"hmac-sha256:def"}},"error":"permission denied"}"#;
        let mut i = Input::default();
        let pick = audit(&mut i, login, None).unwrap();
        assert_eq!(i.audit_error.as_deref(), Some("permission denied"));
        assert_eq!(i.method.as_deref(), Some("kubernetes"));
        assert!(i.jwt.is_none() && i.role_name.is_none());
        assert!(
            pick.notes[0].contains("jwt and role")
                && pick.notes[0].contains("audit-non-hmac-request-keys=jwt,role"),
            "{:?}",
            pick.notes
        );
        let config = r#"{"type":"response","time":"2026-12-01T13:40:30Z","request":{"id":"b","path":"auth/jwt/config","operation":"update","mount_type":"jwt"},"response":{"data":{"error":"error checking oidc discovery URL"}},"error":""}"#;
        let mut i = Input::default();
        let pick = audit(&mut i, config, None).unwrap();
        assert_eq!(
            i.config_error,
            Some((400, "error checking oidc discovery URL".to_string()))
        );
        assert!(
            pick.notes[0].contains("auth/jwt/config"),
            "{:?}",
            pick.notes
        );
        assert!(audit(&mut Input::default(), "not json", None).is_err());
    }

    /// Two logins in one log: the server-log lines read are those of the login the audit
    /// entry names (nearest in time), not an earlier one's.
    #[test]
    fn the_log_lines_are_those_of_the_chosen_login() {
        let entry = |id: &str, at: &str| {
            format!(
                r#"{{"type":"response","time":"{at}","request":{{"id":"{id}","path":"auth/kubernetes/login","operation":"update","mount_type":"kubernetes","mount_accessor":"auth_kubernetes_1","data":{{"role":"app"}}}},"error":"permission denied"}}"#
            )
        };
        let audit_log = format!(
            "{}\n{}\n",
            entry("first", "2026-12-01T13:40:30.100Z"),
            entry("second", "2026-12-01T13:41:10.100Z")
        );
        let log = concat!(
            "2026-12-01T13:40:30.090Z [DEBUG] auth.kubernetes.auth_kubernetes_1: login unauthorized: err=\"service account name not authorized\"\n",
            "2026-12-01T13:41:10.095Z [DEBUG] auth.kubernetes.auth_kubernetes_1: login unauthorized: err=\"namespace not authorized\"\n",
        );
        for (id, want, not) in [
            ("first", "service account name", "namespace"),
            ("second", "namespace", "service account name"),
        ] {
            let mut i = Input::default();
            let pick = audit(&mut i, &audit_log, Some(id)).unwrap();
            server_log(&mut i, log, pick.accessor.as_deref(), pick.logins.as_ref());
            assert_eq!(i.log.len(), 1, "{id}: {:?}", i.log);
            assert!(
                i.log[0].contains(want) && !i.log[0].contains(not),
                "{id}: {:?}",
                i.log
            );
        }
        // Without an audit entry every line is read.
        let mut i = Input::default();
        server_log(&mut i, log, None, None);
        assert_eq!(i.log.len(), 2);
    }
}
