//! The session seen through libtest: a trial's outcome as a test's result, and what is
//! written at the end of the run.

use std::path::PathBuf;

use authlab::{
    session::{Junit, Output, Report},
    settings::Settings,
    trial::{TrialOutcome, Verdict},
};
use libtest_mimic::{Completion, Failed};

/// A trial's outcome as libtest's result (its artifacts named under a failure).
pub fn result(outcome: &TrialOutcome) -> Result<Completion, Failed> {
    let artifacts = outcome
        .artifacts
        .as_ref()
        .map(|d| format!("\nartifacts: {}", d.display()))
        .unwrap_or_default();
    match &outcome.verdict {
        Verdict::Passed => Ok(Completion::Completed),
        Verdict::Ignored(r) => Ok(Completion::ignored_with(r.clone())),
        Verdict::Failed(m) => Err(format!("{}{artifacts}", m.join("\n")).into()),
        Verdict::Error(e) => Err(format!("{e}{artifacts}").into()),
        // The test harness never records (no --bless here).
        Verdict::Observed(m) => Err(m.join("\n").into()),
    }
}

/// The artifacts directory: `AUTHLAB_ARTIFACTS`, else the workspace's `target/authlab-artifacts`.
pub fn artifacts_dir(s: &Settings) -> PathBuf {
    s.artifacts.clone().unwrap_or_else(|| {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/authlab-artifacts")
    })
}

/// `AUTHLAB_JUNIT` (shared by nextest's processes) and `AUTHLAB_REPORT` (not under nextest,
/// which runs a process per trial: said so instead).
pub fn outputs(s: &Settings, cluster: &str) -> Vec<Box<dyn Output>> {
    let mut out: Vec<Box<dyn Output>> = Vec::new();
    if let Some(path) = &s.junit {
        out.push(Box::new(Junit {
            path: path.clone(),
            suite: format!("authlab-{cluster}"),
            shared_run: s.nextest_run_id.clone(),
        }));
    }
    match (&s.report, &s.nextest_run_id) {
        (Some(_), Some(_)) => eprintln!(
            "authlab: AUTHLAB_REPORT is not written under nextest (a process per trial); use `authlab run --report` or `cargo test`"
        ),
        (Some(dir), None) => out.push(Box::new(Report(dir.clone()))),
        _ => {}
    }
    out
}
