//! Running one trial as a pipeline of typed stages, each taking what the one before returned:
//!
//! `prepare` (cluster, server, names, placeholders) → `apply` (objects, tokens, mounts) →
//! `act` (cluster changes, login, steps) → `collect` (audit entry, server-log lines, ESO,
//! diagnosis: the [`Evidence`]) → [`crate::verdict::judge`], then `teardown` of everything the
//! trial created, whatever happened.

mod act;
mod apply;
mod collect;
mod eso;
mod outputs;
mod pod;
mod prepare;
mod teardown;

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use serde_json::Value;

pub use crate::verdict::Verdict;
use crate::{
    case::matrix::Trial, evidence::Evidence, lab::Lab, placeholders::Vars, signature::Signature,
    verdict::Judgement,
};

/// The result of one trial.
#[derive(Debug, Clone)]
pub struct TrialOutcome {
    /// Trial name.
    pub name: String,
    /// Verdict.
    pub verdict: Verdict,
    /// Expectations this cluster could not observe (reported, never counted as passed).
    pub not_checked: Vec<String>,
    /// Time spent per phase.
    pub phases: Vec<(&'static str, Duration)>,
    /// Total wall time.
    pub total: Duration,
    /// Artifacts folder, when one was written.
    pub artifacts: Option<PathBuf>,
    /// For an ignored trial: the requirement that was missing.
    pub requirement: Option<&'static str>,
    /// The trial (case, server, cluster).
    pub trial: Trial,
    /// When it started.
    pub started: std::time::SystemTime,
    /// What it observed, for trials that got as far as judging.
    pub observed: Option<Signature>,
    /// The `flavours` key whose expectations applied (None: the case's `expect`).
    pub expect_key: Option<String>,
    /// The cluster's Kubernetes version, once known.
    pub kubernetes: Option<String>,
    /// The diagnosis of a trial that did not pass (rendered).
    pub diagnosis: Option<String>,
    /// Under `--retries`: how each earlier attempt ended (first line). A trial that passed
    /// after any of them is flaky.
    pub earlier: Vec<String>,
}

impl TrialOutcome {
    /// Passed, but only after failing first (under `--retries`).
    pub fn flaky(&self) -> bool {
        matches!(self.verdict, Verdict::Passed) && !self.earlier.is_empty()
    }
}

/// What a trial made and saw, for artifacts and tests.
#[derive(Debug, Default)]
pub struct TrialRecord {
    /// Rendered server config of the server.
    pub server_config: String,
    /// Objects applied to the cluster.
    pub objects: Vec<Value>,
    /// Auth mount path.
    pub mount: String,
    /// Auth mount accessor.
    pub accessor: String,
    /// Config written to `auth/<mount>/config` (holds secrets).
    pub auth_config: Value,
    /// Role written.
    pub role: Value,
    /// The config and role as the server gives them back (`vault read -format=json
    /// auth/<mount>/config` and `…/role/<name>`: `token_reviewer_jwt_set`, no JWT, TTLs in
    /// seconds), read after they were written; Null when a write failed.
    pub read_back: (Value, Value),
    /// Policy HCL.
    pub policy: String,
    /// Client JWT (secret).
    pub client_jwt: Option<String>,
    /// Reviewer JWT (secret).
    pub reviewer_jwt: Option<String>,
    /// Login response body (holds the client token).
    pub login_body: Option<Value>,
    /// Evidence collected.
    pub evidence: Evidence,
    /// Audit entries of the mount (raw JSON).
    pub audit_raw: Vec<Value>,
    /// Cluster request log for the whole trial.
    pub cluster_log: Vec<crate::sim::RequestRecord>,
    /// The second cluster's (`cluster.other`) request log for the whole trial.
    pub other_cluster_log: Vec<crate::sim::RequestRecord>,
    /// Placeholder values (may hold secrets).
    pub vars: Vars,
    /// The rendered diagnosis.
    pub diagnosis: String,
    /// What ESO reported (cases with an `eso` client).
    pub eso: Option<String>,
    /// The cluster's Kubernetes version (`v1.33.1`), once known.
    pub kubernetes: Option<String>,
}

/// A requirement of the trial that this machine lacks (reported as ignored, not failed, unless
/// the requirement is required: see [`crate::settings::Settings::required`]).
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct NotAvailable {
    /// The requirement: `docker`, `kind`, `kubeconfig`, `cluster`, `helm`.
    pub what: &'static str,
    /// Why it is not available.
    pub reason: String,
}

/// The cluster lacks what the case assumes of it: the trial is not applicable there.
#[derive(Debug, thiserror::Error)]
#[error("not applicable here: {0}")]
pub struct NotHere(pub String);

impl NotAvailable {
    fn err(what: &'static str, reason: impl Into<String>) -> anyhow::Error {
        anyhow::Error::new(NotAvailable {
            what,
            reason: reason.into(),
        })
    }
}

/// Per-phase wall times of one trial.
#[derive(Debug)]
struct Timer {
    phases: Vec<(&'static str, Duration)>,
    at: Instant,
}

impl Timer {
    fn new() -> Self {
        Timer {
            phases: Vec::new(),
            at: Instant::now(),
        }
    }

    fn lap(&mut self, name: &'static str) {
        let now = Instant::now();
        self.phases.push((name, now - self.at));
        self.at = now;
    }
}

/// One trial under way: what every stage needs, and what the trial made (so that `teardown`
/// can remove it, whatever stage failed).
struct Run<'a> {
    lab: &'a Lab,
    trial: &'a Trial,
    timer: Timer,
    made: outputs::Made,
}

/// Runs one trial in `lab`. Never panics on bad input; errors become [`Verdict::Error`].
pub async fn run(lab: &Lab, trial: &Trial) -> TrialOutcome {
    run_recorded(lab, trial).await.0
}

/// Runs one trial and also returns everything it recorded (evidence, config, tokens).
pub async fn run_recorded(lab: &Lab, trial: &Trial) -> (TrialOutcome, TrialRecord) {
    let start = Instant::now();
    let started = std::time::SystemTime::now();
    let mut run = Run {
        lab,
        trial,
        timer: Timer::new(),
        made: outputs::Made::default(),
    };
    // What the trial reached, noted by the pipeline from each stage's output as it returns:
    // the artifacts show it whatever stage failed. ESO's part is known before anything runs.
    let mut record = TrialRecord {
        eso: eso::not_run(trial).and_then(|e| e.report()),
        ..TrialRecord::default()
    };
    let mut requirement = None;
    let mut not_checked = Vec::new();
    let mut observed = None;
    let verdict = if let Some(reason) = &trial.not_applicable {
        Verdict::Ignored(reason.clone())
    } else {
        // Boxed: the pipeline's future is large, and trials may run on small test threads.
        let result = Box::pin(pipeline(&mut run, &mut record)).await;
        let torn = teardown::teardown(&mut run).await;
        record.note_teardown(&torn);
        let left = torn.left;
        let result = match (result, left.is_empty()) {
            (Err(e), _) => Err(e),
            (ok, true) => ok,
            (Ok(_), false) => Err(anyhow::anyhow!(
                "teardown left objects on the shared cluster: {}",
                left.join("; ")
            )),
        };
        match result {
            Ok((judged, signature)) => {
                not_checked = judged.not_checked.clone();
                observed = Some(signature);
                judged.verdict()
            }
            Err(e) => {
                if let Some(na) = e.downcast_ref::<NotAvailable>() {
                    requirement = Some(na.what);
                    Verdict::Ignored(na.reason.clone())
                } else if let Some(c) = e.downcast_ref::<crate::cluster::owner::Collision>() {
                    // What the cluster has is not this machine's lack: no requirement.
                    Verdict::Ignored(c.to_string())
                } else if let Some(n) = e.downcast_ref::<NotHere>() {
                    Verdict::Ignored(n.to_string())
                } else {
                    Verdict::Error(format!("{e:#}"))
                }
            }
        }
    };
    // Decided here, once, before anything prints it: a requirement that CI=true or
    // AUTHLAB_REQUIRE asks for fails the trial that lacked it.
    let verdict = match (verdict, requirement) {
        (Verdict::Ignored(r), Some(what)) if lab.settings().required(what) => {
            Verdict::Failed(vec![format!(
                "required but not available ({what}; CI=true or AUTHLAB_REQUIRE): {r}"
            )])
        }
        // Under --bless, what the trial observed is what it is for.
        (Verdict::Failed(m), _) if lab.options().recording && observed.is_some() => {
            Verdict::Observed(m)
        }
        (v, _) => v,
    };
    let outcome = TrialOutcome {
        name: trial.name.clone(),
        verdict,
        not_checked,
        requirement,
        phases: run.timer.phases,
        total: start.elapsed(),
        artifacts: None,
        trial: trial.clone(),
        started,
        observed,
        expect_key: trial.case.case.expect_key_on(
            &trial.server.flavour.to_string(),
            &trial.server.version,
            record.kubernetes.as_deref(),
        ),
        kubernetes: record.kubernetes.clone(),
        diagnosis: None,
        earlier: Vec::new(),
    };
    (outcome, record)
}

/// prepare → apply → act → collect (and ESO) → judge; each stage's output is noted in
/// `record` as it returns.
async fn pipeline(
    run: &mut Run<'_>,
    record: &mut TrialRecord,
) -> anyhow::Result<(Judgement, Signature)> {
    let (cluster, server) = prepare::cluster(run).await?;
    record.note_cluster(&cluster, server.as_deref());
    let env = prepare::prepare(run, cluster, server).await?;
    record.note_env(&env);
    let setup = apply::apply(run, &env).await?;
    record.note_setup(&setup);
    let acted = act::act(run, &env, &setup).await?;
    record.note_acted(&acted);
    let collected = collect::collect(run, &env, &setup, acted).await?;
    let mut evidence = record.note_collected(collected);
    evidence.eso = eso::observe(run, &env, &setup).await?;
    record.note_eso(&evidence);
    let steps: Vec<_> = run
        .trial
        .case
        .case
        .steps
        .iter()
        .map(|s| s.expect.clone())
        .collect();
    let judged = crate::verdict::judge(&env.expect, &steps, &evidence, &setup.vars);
    if !judged.mismatches.is_empty() {
        record.read_back = apply::read_back(&env, &setup).await;
    }
    let signature = crate::signature::observe(&env.expect, &evidence, &setup.vars);
    Ok((judged, signature))
}
