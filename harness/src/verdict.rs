//! The verdict: the one place a trial's evidence is judged against the case's expectations.
//! Everything that did not hold is a mismatch; an expectation this cluster cannot observe is
//! reported as not checked, never passed silently.

use crate::{
    case::model::{
        ClusterRequestsExpect, EsoExpect, Expect, RequestMatch, ResponseExpect, TextMatch,
    },
    diagnose::Cause,
    evidence::{EsoEvidence, EsoObserved, Evidence, Observed},
    logs::LogLine,
    matching::{describe, find_log_line, mismatch, text_matches, word_diff},
    placeholders::{Vars, substitute},
    sim::RequestRecord,
};

/// How a trial ended.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// Every expectation held.
    Passed,
    /// Expectations did not hold (one line each).
    Failed(Vec<String>),
    /// The trial could not run here (reason).
    Ignored(String),
    /// The lab could not carry the trial out (setup error).
    Error(String),
    /// Under `--bless`: the trial observed what the server answers, which is to be recorded;
    /// what did not hold of the expectations until now (one line each).
    Observed(Vec<String>),
}

/// The outcome of judging: what did not hold, and what could not be checked here.
#[derive(Debug, Clone, Default)]
pub struct Judgement {
    /// Expectations that did not hold (empty: passed).
    pub mismatches: Vec<String>,
    /// Expectations this cluster cannot observe, with why.
    pub not_checked: Vec<String>,
}

impl Judgement {
    /// The verdict: passed when nothing mismatched.
    pub fn verdict(&self) -> Verdict {
        if self.mismatches.is_empty() {
            Verdict::Passed
        } else {
            Verdict::Failed(self.mismatches.clone())
        }
    }
}

fn check_response(
    what: &str,
    want: &ResponseExpect,
    got: Option<&Observed>,
    vars: &Vars,
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
            out.push(mismatch(&format!("{what}.error"), m, first, vars));
        }
    }
    if let Some(w) = &want.warnings {
        let holds = w.len() == got.warnings.len()
            && w.iter()
                .zip(&got.warnings)
                .all(|(m, g)| text_matches(m, g, vars));
        if !holds {
            out.push(format!(
                "{what}.warnings: expected [{}], got {:?}",
                w.iter()
                    .map(|m| describe(m, vars))
                    .collect::<Vec<_>>()
                    .join(", "),
                got.warnings
            ));
        }
    }
}

/// A write the case expects to succeed unless it says otherwise.
fn check_write(
    what: &str,
    want: Option<&ResponseExpect>,
    got: Option<&Observed>,
    vars: &Vars,
    out: &mut Vec<String>,
) {
    match want {
        Some(w) => check_response(what, w, got, vars, out),
        None => {
            if let Some(g) = got
                && g.status >= 300
            {
                out.push(format!(
                    "{what}: the write failed with {} {:?}, and the case expects it to succeed",
                    g.status, g.errors
                ));
            }
        }
    }
}

/// The server-log message most like an exact expected one, as a word diff against it (none
/// when no line shares half its words).
fn nearest_line(m: &TextMatch, lines: &[LogLine], vars: &Vars) -> Option<String> {
    let TextMatch::Exact(s) = m else { return None };
    let want = substitute(s, vars);
    lines
        .iter()
        .map(|l| {
            let ratio = similar::TextDiff::from_words(want.as_str(), l.message.as_str()).ratio();
            (ratio, l)
        })
        .filter(|(r, _)| *r >= 0.5)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, l)| word_diff(&want, &l.message))
}

/// Judges the evidence of a trial against its expectations (`steps`: those of the follow-up
/// requests, in order).
pub fn judge(expect: &Expect, steps: &[ResponseExpect], ev: &Evidence, vars: &Vars) -> Judgement {
    let mut out = Vec::new();
    if expect.is_empty() {
        out.push(
            "expect is empty: record what the server answers with `authlab run --bless <case>`"
                .into(),
        );
    }
    let mut not_checked = Vec::new();
    check_write(
        "config",
        expect.config.as_ref(),
        ev.config.as_ref(),
        vars,
        &mut out,
    );
    if ev.config.as_ref().is_none_or(|c| c.status < 300) {
        check_write(
            "role",
            expect.role.as_ref(),
            ev.role.as_ref(),
            vars,
            &mut out,
        );
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
                            out.push(mismatch(&format!("audit.{field}"), m, actual, vars));
                        }
                    }
                }
            }
        }
    }
    for (want, got) in expect.cluster_objects.iter().zip(&ev.cluster_objects) {
        if want.count != *got {
            out.push(format!(
                "cluster_objects: expected {} {}, found {got}",
                want.count,
                want.describe()
            ));
        }
    }
    if let Some(a) = &expect.auth {
        check_auth(a, ev.auth.as_ref(), vars, &mut out);
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
        let nearest = nearest_line(&l.message, &ev.server_log, vars)
            .map(|n| format!("; nearest: {n}"))
            .unwrap_or_default();
        out.push(format!(
            "server_log: no line of the mount has message {}{}{nearest}; lines seen: {seen:?}",
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
        match ev.requests_of(c.cluster) {
            Some(reqs) => check_cluster(c, &reqs, vars, &mut out),
            None => not_checked.push(
                "expect.cluster_requests: only the sim and the API servers authlab starts record the requests they answer".into(),
            ),
        }
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
    if let Some(want) = expect.diagnosis {
        let got: Vec<Cause> = ev.diagnosis.iter().map(|f| f.cause).collect();
        let determined = ev
            .diagnosis
            .first()
            .is_some_and(|f| f.score >= crate::diagnose::DETERMINED);
        if got.first() != Some(&want) || !determined {
            out.push(format!(
                "diagnosis: expected the cause {:?}, got {:?}{}",
                want.as_str(),
                got.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
                if determined { "" } else { " (none determined)" }
            ));
        }
    }
    match (&expect.eso, &ev.eso) {
        (
            Some(want),
            EsoEvidence::Seen {
                external_secret,
                settle_secs,
                observed,
                ..
            },
        ) => {
            let m = check_eso(want, observed, vars);
            if !m.is_empty() {
                out.extend(m);
                out.push(format!(
                    "eso: still not as expected after waiting {settle_secs} s for ExternalSecret {external_secret} ({observed})"
                ));
            }
        }
        (Some(_), EsoEvidence::NotRun(why)) => not_checked.push(format!("expect.eso: {why}")),
        (Some(_), EsoEvidence::NoClient) | (None, _) => {}
    }
    Judgement {
        mismatches: out,
        not_checked,
    }
}

fn check_auth(
    a: &crate::case::model::AuthExpect,
    got: Option<&crate::evidence::AuthObserved>,
    vars: &Vars,
    out: &mut Vec<String>,
) {
    let Some(got) = got else {
        out.push("auth: the login returned no token, so it produced nothing to check".into());
        return;
    };
    if let Some(p) = &a.policies
        && p.iter().map(|x| substitute(x, vars)).collect::<Vec<_>>() != got.policies
    {
        out.push(format!(
            "auth.policies: expected {p:?}, got {:?}",
            got.policies
        ));
    }
    for (k, m) in &a.metadata {
        let v = got.metadata.get(k).map(String::as_str).unwrap_or("");
        if !text_matches(m, v, vars) {
            out.push(mismatch(&format!("auth.metadata.{k}"), m, v, vars));
        }
    }
    if let Some(m) = &a.alias_name {
        let v = got.alias_name.as_deref().unwrap_or("");
        if !text_matches(m, v, vars) {
            out.push(mismatch("auth.alias_name", m, v, vars));
        }
    }
}

fn check_cluster(
    c: &ClusterRequestsExpect,
    reqs: &[RequestRecord],
    vars: &Vars,
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
    let matches = |m: &RequestMatch, r: &RequestRecord| {
        m.method
            .as_ref()
            .is_none_or(|x| x.eq_ignore_ascii_case(&r.method))
            && text_matches(&m.path, &r.path, vars)
            && m.status.is_none_or(|s| s == r.status)
            && m.user
                .as_ref()
                .is_none_or(|u| text_matches(u, r.user.as_deref().unwrap_or(""), vars))
    };
    let describe_req = |m: &RequestMatch| {
        format!(
            "{} {}{}{}",
            m.method.as_deref().unwrap_or("any method"),
            describe(&m.path, vars),
            m.status.map(|s| format!(" -> {s}")).unwrap_or_default(),
            m.user
                .as_ref()
                .map(|u| format!(" as {}", describe(u, vars)))
                .unwrap_or_default()
        )
    };
    for m in &c.made {
        if !reqs.iter().any(|r| matches(m, r)) {
            out.push(format!(
                "cluster_requests.made: expected {}, got {:?}",
                describe_req(m),
                summary()
            ));
        }
    }
    for m in &c.not_made {
        if let Some(r) = reqs.iter().find(|r| matches(m, r)) {
            out.push(format!(
                "cluster_requests.not_made: {} was made: {} {} -> {}",
                describe_req(m),
                r.method,
                r.path,
                r.status
            ));
        }
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
                out.push(mismatch("cluster_requests.tokenreview_user", m, user, vars));
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

/// Mismatches between `expect.eso` and what ESO reported (empty: the expectation holds).
pub fn check_eso(expect: &EsoExpect, seen: &EsoObserved, vars: &Vars) -> Vec<String> {
    let mut out = Vec::new();
    let want = if expect.ready { "True" } else { "False" };
    match &seen.ready {
        Some(c) if c.status == want => {}
        Some(c) => out.push(format!(
            "eso: expected the ExternalSecret's Ready condition {want}, got {} ({}: {})",
            c.status, c.reason, c.message
        )),
        None => out.push(format!(
            "eso: expected the ExternalSecret's Ready condition {want}, but it has none"
        )),
    }
    if expect.ready && seen.value.is_none() {
        out.push(
            "eso: the ExternalSecret is expected to sync, but its target Secret holds no value"
                .into(),
        );
    }
    if let Some(m) = &expect.reason {
        let got = seen.ready.as_ref().map(|c| c.reason.as_str()).unwrap_or("");
        if !text_matches(m, got, vars) {
            out.push(format!("eso.reason: expected {m:?}, got {got:?}"));
        }
    }
    if let Some(m) = &expect.controller_error
        && !seen
            .controller_errors
            .iter()
            .any(|e| text_matches(m, e, vars))
    {
        out.push(match seen.controller_errors.last() {
            Some(e) => format!("eso.controller_error: expected {m:?}; the controller logged {e:?}"),
            None => format!(
                "eso.controller_error: expected {m:?}, but the controller logged no reconcile error for this ExternalSecret"
            ),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::model::TextMatch;

    #[test]
    fn status_mismatch_is_reported() {
        let expect = Expect {
            login: Some(ResponseExpect {
                status: 403,
                error: Some(TextMatch::Exact("permission denied".into())),
                warnings: None,
            }),
            ..Default::default()
        };
        let ev = Evidence {
            login: Some(Observed {
                status: 200,
                errors: vec![],
                ..Default::default()
            }),
            ..Default::default()
        };
        let m = judge(&expect, &[], &ev, &Vars::new()).mismatches;
        assert_eq!(m.len(), 2, "{m:?}");
        assert!(m[0].contains("expected 403, got 200"));
    }

    #[test]
    fn what_the_cluster_cannot_observe_is_not_checked() {
        let expect = Expect {
            login: Some(ResponseExpect {
                status: 200,
                error: None,
                warnings: None,
            }),
            cluster_requests: Some(ClusterRequestsExpect {
                none: true,
                ..Default::default()
            }),
            eso: Some(EsoExpect::default()),
            ..Default::default()
        };
        let ev = Evidence {
            login: Some(Observed {
                status: 200,
                errors: vec![],
                ..Default::default()
            }),
            eso: EsoEvidence::NotRun("ESO runs on Kind only".into()),
            ..Default::default()
        };
        let j = judge(&expect, &[], &ev, &Vars::new());
        assert!(j.mismatches.is_empty(), "{:?}", j.mismatches);
        assert_eq!(j.not_checked.len(), 2, "{:?}", j.not_checked);
        assert!(matches!(j.verdict(), Verdict::Passed));
    }

    #[test]
    fn the_diagnosis_is_judged_with_the_rest() {
        let expect = Expect {
            login: Some(ResponseExpect {
                status: 403,
                error: None,
                warnings: None,
            }),
            diagnosis: Some(Cause::WrongCa),
            ..Default::default()
        };
        let ev = Evidence {
            login: Some(Observed {
                status: 403,
                errors: vec![],
                ..Default::default()
            }),
            ..Default::default()
        };
        let m = judge(&expect, &[], &ev, &Vars::new()).mismatches;
        assert_eq!(m.len(), 1, "{m:?}");
        assert!(
            m[0].starts_with("diagnosis: expected the cause \"wrong-ca\""),
            "{m:?}"
        );
    }
}
