//! Stage 4: the evidence — the login's audit entry and the mount's server-log lines (waiting
//! for a line the case expects, which the server may write after it answered), what ESO
//! reported, and the diagnosis of all that.

use std::time::Duration;

use anyhow::Result;

use super::{
    Run,
    outputs::{Acted, Env, Setup},
};
use crate::{
    case::model::AuthMethod,
    evidence::{self, EsoEvidence, Evidence, Observed},
    logs::{self, read_from},
    matching::find_log_line,
};

/// How long a log line the case expects may take to appear.
const LOG_WAIT: Duration = Duration::from_secs(3);

/// Where no line is expected but all of them are wanted (recording for `--bless`, a failed
/// login on a pod server, a diagnosis that may rest on a streamed log's lines): the log is
/// taken once it has not grown for this long (within [`LOG_WAIT`]).
const LOG_QUIET: Duration = Duration::from_millis(600);

/// What `collect` hands on: the evidence (ESO's, if any, is observed after it), the mount's
/// audit entries as the server wrote them, and the rendered diagnosis.
pub(super) struct Collected {
    /// The evidence.
    pub evidence: Evidence,
    /// The mount's audit entries (raw JSON).
    pub audit_raw: Vec<serde_json::Value>,
    /// The diagnosis, as `authlab diagnose` prints it.
    pub diagnosis: String,
}

pub(super) async fn collect(
    run: &mut Run<'_>,
    env: &Env,
    setup: &Setup,
    acted: Acted,
) -> Result<Collected> {
    let mount = &env.names.login_mount;
    let prefix = format!("auth/{mount}/");
    let login_path = format!("auth/{mount}/login");
    let is_login_response = |e: &logs::AuditEntry| {
        e.kind == "response" && (e.path == login_path || e.path.ends_with("/login"))
    };
    // A file audit device has written the entry before the answer left the server; a pod's
    // audit device writes to its log, which reaches authlab through the API server later, so
    // the entry is waited for there, and wherever the case expects one (a login at a path
    // that is no mount leaves none).
    let audit_path = setup.server.audit_log_path();
    let mine = evidence::wait_for(
        LOG_WAIT,
        Duration::from_millis(25),
        || async {
            let entries = logs::parse_audit_log(&read_from(&audit_path, acted.audit_offset));
            Ok(logs::audit_for_mount(
                &entries,
                &prefix,
                Some(&setup.accessor),
            ))
        },
        |mine| {
            acted.login.is_none()
                || mine.iter().any(is_login_response)
                || (env.expect.audit.is_none() && setup.server.cluster_pod().is_none())
        },
    )
    .await?;
    let audit_raw = mine.iter().map(|e| e.raw.clone()).collect();
    let audit_login = mine.iter().rev().find(|e| is_login_response(e)).cloned();
    let log_path = setup.server.server_log_path();
    let login_failed = acted.login.as_ref().is_some_and(|l| l.status >= 400);
    // A container's or pod's log reaches authlab through a stream, later than the answer:
    // where the diagnosis may rest on its lines (no login, or a failed one), it is let settle.
    let streamed =
        setup.server.container_server().is_some() || setup.server.cluster_pod().is_some();
    let diagnosed_from_log =
        env.expect.diagnosis.is_some() && acted.login.as_ref().is_none_or(|l| l.status >= 400);
    let settle = env.expect.server_log.is_none()
        && (run.lab.options().recording
            || (login_failed && setup.server.cluster_pod().is_some())
            || (streamed && diagnosed_from_log));
    // The last count of lines seen, and since when.
    let grown = std::sync::Mutex::new((usize::MAX, std::time::Instant::now()));
    let server_log = evidence::wait_for(
        LOG_WAIT,
        Duration::from_millis(25),
        || async {
            let lines = logs::parse_server_log(&read_from(&log_path, setup.log_offset));
            Ok(logs::log_for_accessor(&lines, &setup.accessor))
        },
        |lines| match &env.expect.server_log {
            Some(l) => find_log_line(l, lines, &setup.vars).is_some(),
            None if settle => {
                let Ok(mut g) = grown.lock() else {
                    return true;
                };
                if g.0 != lines.len() {
                    *g = (lines.len(), std::time::Instant::now());
                    false
                } else {
                    g.1.elapsed() >= LOG_QUIET
                }
            }
            None => true,
        },
    )
    .await?;
    let mut cluster_objects = Vec::new();
    for want in &env.expect.cluster_objects {
        let all = crate::cluster::objects::list(
            &env.cluster.client,
            &want.kind,
            want.namespace.as_deref(),
        )
        .await?;
        cluster_objects.push(all.iter().filter(|o| want.matches(o)).count());
    }
    run.timer.lap("evidence");
    let mut ev = Evidence {
        config: Some(setup.config.clone()),
        role: Some(setup.role.clone()),
        login: acted.login,
        audit_login,
        auth: acted.auth,
        server_log,
        cluster_requests: acted.cluster_requests,
        other_cluster_requests: acted.other_cluster_requests,
        cluster_objects,
        cluster_requests_recorded: env.cluster.sim.is_some() || env.cluster.audit.is_some(),
        steps: acted.steps,
        eso: EsoEvidence::NoClient,
        diagnosis: Vec::new(),
    };
    let input = diagnosis_input(run, setup, &ev);
    let report = crate::diagnose::report(&input);
    let diagnosis = crate::diagnose::render(&input, &report);
    ev.diagnosis = report.findings;
    Ok(Collected {
        evidence: ev,
        audit_raw,
        diagnosis,
    })
}

/// What `authlab diagnose` would be given for this trial: the trial's own evidence.
fn diagnosis_input(run: &Run<'_>, setup: &Setup, ev: &Evidence) -> crate::diagnose::Input {
    let first = |o: &Observed| (o.status, o.errors.first().cloned().unwrap_or_default());
    crate::diagnose::Input {
        method: Some(match run.trial.case.case.auth {
            AuthMethod::Kubernetes => "kubernetes".into(),
            AuthMethod::Jwt => "jwt".into(),
        }),
        jwt: crate::jwt::decode_unverified(&setup.client_jwt).ok(),
        jwt_text: None,
        jwt_error: None,
        role_name: None,
        role_missing: false,
        log_given: true,
        audit_given: true,
        role: Some(setup.role_written.clone()),
        config: Some(setup.config_written.clone()),
        config_error: ev.config.as_ref().filter(|c| c.status >= 300).map(first),
        login: ev.login.as_ref().map(first),
        audit_error: ev
            .audit_login
            .as_ref()
            .and_then(|a| a.error.clone().or_else(|| a.data_error.clone())),
        log: ev
            .server_log
            .iter()
            .filter(|l| l.level != "TRACE" && l.level != "INFO")
            .map(crate::logs::LogLine::text)
            .collect(),
        steps: ev.steps.iter().map(first).collect(),
        at_login: true,
        server_in_pod: Some(run.trial.case.case.topology == crate::case::model::Topology::Inside),
        now: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    }
}
