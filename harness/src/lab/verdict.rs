//! Matching a trial's evidence against the case's expectations.

use std::collections::BTreeMap;

use crate::{
    case::model::{ClusterRequestsExpect, Expect, LogExpect, ResponseExpect, TextMatch},
    evidence::{AuditEntry, LogLine},
    sim::RequestRecord,
};

/// What a client request returned, reduced to what expectations look at.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Observed {
    /// HTTP status.
    pub status: u16,
    /// The `errors` array.
    pub errors: Vec<String>,
}

/// Everything a trial collected.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    /// Config write response.
    pub config: Option<Observed>,
    /// Login response.
    pub login: Option<Observed>,
    /// Audit response entry of the login.
    pub audit_login: Option<AuditEntry>,
    /// Server-log lines of the trial's mount.
    pub server_log: Vec<LogLine>,
    /// Cluster requests answered during the login.
    pub cluster_requests: Vec<RequestRecord>,
    /// Responses to follow-up steps.
    pub steps: Vec<Observed>,
}

/// Replaces `${name}` placeholders.
pub fn substitute(text: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = text.to_string();
    for (k, v) in vars {
        out = out.replace(&format!("${{{k}}}"), v);
    }
    out
}

/// Replaces `${name}` placeholders in a regular expression with their escaped values.
pub fn substitute_escaped(pattern: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = pattern.to_string();
    for (k, v) in vars {
        out = out.replace(&format!("${{{k}}}"), &regex::escape(v));
    }
    out
}

/// True when `actual` satisfies `m` (after substitution).
pub fn text_matches(m: &TextMatch, actual: &str, vars: &BTreeMap<String, String>) -> bool {
    match m {
        TextMatch::Exact(s) => substitute(s, vars) == actual,
        TextMatch::Pattern(p) => {
            p.contains
                .as_ref()
                .is_none_or(|c| actual.contains(&substitute(c, vars)))
                && p.regex.as_ref().is_none_or(|r| {
                    regex::Regex::new(&substitute_escaped(r, vars))
                        .is_ok_and(|re| re.is_match(actual))
                })
        }
    }
}

fn describe(m: &TextMatch, vars: &BTreeMap<String, String>) -> String {
    match m {
        TextMatch::Exact(s) => format!("{:?}", substitute(s, vars)),
        TextMatch::Pattern(p) => {
            let mut parts = Vec::new();
            if let Some(c) = &p.contains {
                parts.push(format!("containing {:?}", substitute(c, vars)));
            }
            if let Some(r) = &p.regex {
                parts.push(format!("matching /{}/", substitute_escaped(r, vars)));
            }
            parts.join(" and ")
        }
    }
}

fn check_response(
    what: &str,
    want: &ResponseExpect,
    got: Option<&Observed>,
    vars: &BTreeMap<String, String>,
    out: &mut Vec<String>,
) {
    let Some(got) = got else {
        out.push(format!("{what}: no response was recorded"));
        return;
    };
    if got.status != want.status {
        out.push(format!(
            "{what}.status: expected {}, got {} (errors: {:?})",
            want.status, got.status, got.errors
        ));
    }
    if let Some(m) = &want.error {
        let first = got.errors.first().map(String::as_str).unwrap_or("");
        if !text_matches(m, first, vars) {
            out.push(format!(
                "{what}.error: expected {}, got {:?}",
                describe(m, vars),
                first
            ));
        }
    }
}

/// Returns every mismatch between `expect` and `ev` (empty: the trial passed).
pub fn judge(
    expect: &Expect,
    steps: &[ResponseExpect],
    ev: &Evidence,
    vars: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut out = Vec::new();
    match &expect.config {
        Some(c) => check_response("config", c, ev.config.as_ref(), vars, &mut out),
        None => {
            if let Some(c) = &ev.config
                && c.status >= 300
            {
                out.push(format!(
                    "config: the auth config write failed with {} {:?}, and the case expects it to succeed",
                    c.status, c.errors
                ));
            }
        }
    }
    if let Some(l) = &expect.login {
        check_response("login", l, ev.login.as_ref(), vars, &mut out);
    }
    if let Some(a) = &expect.audit {
        match &ev.audit_login {
            None => {
                out.push("audit: no response entry for the login was found in the audit log".into())
            }
            Some(entry) => {
                for (field, m, actual) in [
                    ("error", &a.error, &entry.error),
                    ("data_error", &a.data_error, &entry.data_error),
                ] {
                    if let Some(m) = m {
                        let actual = actual.as_deref().unwrap_or("");
                        if !text_matches(m, actual, vars) {
                            out.push(format!(
                                "audit.{field}: expected {}, got {actual:?}",
                                describe(m, vars)
                            ));
                        }
                    }
                }
            }
        }
    }
    if let Some(l) = &expect.server_log
        && find_log_line(l, &ev.server_log, vars).is_none()
    {
        let seen: Vec<String> = ev
            .server_log
            .iter()
            .filter(|x| x.level != "TRACE")
            .map(|x| x.raw.clone())
            .collect();
        out.push(format!(
            "server_log: no line of the mount has message {}{}; lines seen: {seen:?}",
            describe(&l.message, vars),
            if l.fields.is_empty() {
                String::new()
            } else {
                format!(
                    " with {}",
                    l.fields
                        .iter()
                        .map(|(k, v)| format!("{k} {}", describe(v, vars)))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        ));
    }
    if let Some(c) = &expect.cluster_requests {
        check_cluster(c, &ev.cluster_requests, vars, &mut out);
    }
    for (i, want) in steps.iter().enumerate() {
        check_response(
            &format!("steps[{i}]"),
            want,
            ev.steps.get(i),
            vars,
            &mut out,
        );
    }
    out
}

/// The first server-log line that satisfies `l`.
pub fn find_log_line<'a>(
    l: &LogExpect,
    lines: &'a [LogLine],
    vars: &BTreeMap<String, String>,
) -> Option<&'a LogLine> {
    lines.iter().find(|line| {
        l.level
            .as_ref()
            .is_none_or(|lv| lv.eq_ignore_ascii_case(&line.level))
            && text_matches(&l.message, &line.message, vars)
            && l.fields.iter().all(|(k, m)| {
                line.fields
                    .iter()
                    .any(|(lk, lv)| lk == k && text_matches(m, lv, vars))
            })
    })
}

fn check_cluster(
    c: &ClusterRequestsExpect,
    reqs: &[RequestRecord],
    vars: &BTreeMap<String, String>,
    out: &mut Vec<String>,
) {
    let summary = || {
        reqs.iter()
            .map(|r| format!("{} {} -> {}", r.method, r.path, r.status))
            .collect::<Vec<_>>()
    };
    if c.none && !reqs.is_empty() {
        out.push(format!(
            "cluster_requests.none: expected no request to reach the cluster during login, got {:?}",
            summary()
        ));
    }
    let review = reqs.iter().find(|r| r.path.contains("/tokenreviews"));
    if c.tokenreview_status.is_some()
        || c.tokenreview_user.is_some()
        || c.tokenreview_audiences.is_some()
    {
        let Some(r) = review else {
            out.push(format!(
                "cluster_requests: expected a TokenReview during login, got {:?}",
                summary()
            ));
            return;
        };
        if let Some(s) = c.tokenreview_status
            && r.status != s
        {
            out.push(format!(
                "cluster_requests.tokenreview_status: expected {s}, got {} ({:?})",
                r.status, r.error
            ));
        }
        if let Some(m) = &c.tokenreview_user {
            let user = r.user.as_deref().unwrap_or("");
            if !text_matches(m, user, vars) {
                out.push(format!(
                    "cluster_requests.tokenreview_user: expected {}, got {user:?}",
                    describe(m, vars)
                ));
            }
        }
        if let Some(a) = &c.tokenreview_audiences {
            let got = r
                .review
                .as_ref()
                .map(|x| x.audiences.clone())
                .unwrap_or_default();
            let want: Vec<String> = a.iter().map(|s| substitute(s, vars)).collect();
            if got != want {
                out.push(format!(
                    "cluster_requests.tokenreview_audiences: expected {want:?}, got {got:?}"
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::model::PatternMatch;

    #[test]
    fn exact_and_pattern_matching() {
        let mut vars = BTreeMap::new();
        vars.insert("cluster.url".to_string(), "https://127.0.0.1:9".to_string());
        assert!(text_matches(
            &TextMatch::Exact("Post \"${cluster.url}/x\"".into()),
            "Post \"https://127.0.0.1:9/x\"",
            &vars
        ));
        let p = TextMatch::Pattern(PatternMatch {
            contains: Some("denied".into()),
            regex: Some("^perm".into()),
        });
        assert!(text_matches(&p, "permission denied", &vars));
        assert!(!text_matches(&p, "denied permission", &vars));
    }

    #[test]
    fn status_mismatch_is_reported() {
        let expect = Expect {
            login: Some(ResponseExpect {
                status: 403,
                error: Some(TextMatch::Exact("permission denied".into())),
            }),
            ..Default::default()
        };
        let ev = Evidence {
            login: Some(Observed {
                status: 200,
                errors: vec![],
            }),
            ..Default::default()
        };
        let m = judge(&expect, &[], &ev, &BTreeMap::new());
        assert_eq!(m.len(), 2, "{m:?}");
        assert!(m[0].contains("expected 403, got 200"));
    }
}
