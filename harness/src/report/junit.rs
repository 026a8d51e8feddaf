//! JUnit XML for `authlab run --junit` and `cargo test` (`AUTHLAB_JUNIT`): a test case per
//! trial, named by the whole trial name (classname: the suite, as nextest does), with the case, the server, version,
//! cluster and Kubernetes version as properties and the artifacts folder and diagnosis in
//! `system-out`; the suite carries its start time and wall time.
//!
//! Under nextest, which runs each trial in a process of its own, the processes of one run
//! (`NEXTEST_RUN_ID`) add their trials to one file instead of overwriting it.

use std::os::unix::fs::OpenOptionsExt;
use std::{
    io::{Read, Seek, Write},
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use anyhow::{Context, Result};
use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};
use serde::{Deserialize, Serialize};

use crate::trial::{TrialOutcome, Verdict};

/// One test case, as kept between the processes of a nextest run.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Case {
    name: String,
    classname: String,
    /// `passed`, `failed`, `error`, `skipped`.
    status: String,
    message: Option<String>,
    description: Option<String>,
    started_ms: u64,
    time_ms: u64,
    properties: Vec<(String, String)>,
    system_out: Option<String>,
    /// A passed trial's earlier failed attempts (`--retries`), as nextest writes them:
    /// `<flakyFailure>` elements.
    #[serde(default)]
    flaky: Vec<String>,
}

/// Test cases written so far by the processes of one nextest run.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Shared {
    run: String,
    cases: Vec<Case>,
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn case_of(o: &TrialOutcome, suite: &str) -> Case {
    let (status, message, description) = match &o.verdict {
        Verdict::Passed => ("passed", None, None),
        Verdict::Ignored(r) => ("skipped", Some(r.clone()), None),
        // Recorded, not judged: neither a pass nor a failure.
        Verdict::Observed(_) => ("skipped", Some("observed for --bless".to_string()), None),
        Verdict::Failed(m) => ("failed", m.first().cloned(), Some(m.join("\n"))),
        Verdict::Error(e) => (
            "error",
            e.lines().next().map(str::to_string),
            Some(e.clone()),
        ),
    };
    let t = &o.trial;
    let mut properties = vec![
        ("case".to_string(), t.case.name.clone()),
        ("server".to_string(), t.server.to_string()),
        ("flavour".to_string(), t.server.flavour.to_string()),
        ("version".to_string(), t.server.version.clone()),
        ("cluster".to_string(), t.cluster.as_str().to_string()),
    ];
    if let Some(k) = &o.kubernetes {
        properties.push(("kubernetes".to_string(), k.clone()));
    }
    if !o.not_checked.is_empty() {
        properties.push(("not_checked".to_string(), o.not_checked.len().to_string()));
    }
    let mut system_out = String::new();
    for what in &o.not_checked {
        system_out.push_str(&format!("not checked here: {what}\n"));
    }
    if let Some(dir) = &o.artifacts {
        system_out.push_str(&format!("artifacts: {}\n", dir.display()));
    }
    if let Some(d) = &o.diagnosis {
        system_out.push_str(&format!("diagnosis:\n{d}"));
    }
    Case {
        name: o.name.clone(),
        classname: suite.to_string(),
        status: status.to_string(),
        message,
        description,
        started_ms: millis(o.started),
        time_ms: o.total.as_millis() as u64,
        properties,
        system_out: (!system_out.is_empty()).then_some(system_out),
        flaky: o.earlier.clone(),
    }
}

fn render(suite_name: &str, cases: &[Case]) -> Result<String> {
    let mut report = Report::new("authlab");
    let mut suite = TestSuite::new(suite_name);
    if let (Some(start), Some(end)) = (
        cases.iter().map(|c| c.started_ms).min(),
        cases.iter().map(|c| c.started_ms + c.time_ms).max(),
    ) {
        if let Some(t) = chrono::DateTime::from_timestamp_millis(start as i64) {
            suite.set_timestamp(t.fixed_offset());
        }
        suite.set_time(Duration::from_millis(end - start));
    }
    for c in cases {
        let mut status = match c.status.as_str() {
            "passed" => TestCaseStatus::success(),
            "skipped" => TestCaseStatus::skipped(),
            "failed" => TestCaseStatus::non_success(NonSuccessKind::Failure),
            _ => TestCaseStatus::non_success(NonSuccessKind::Error),
        };
        if let Some(m) = &c.message {
            status.set_message(m.as_str());
        }
        if let Some(d) = &c.description {
            status.set_description(d.as_str());
        }
        if c.status == "passed" {
            status.add_reruns(c.flaky.iter().map(|m| {
                let mut r = quick_junit::TestRerun::new(NonSuccessKind::Failure);
                r.message = Some(m.as_str().into());
                r
            }));
        }
        let mut case = TestCase::new(c.name.clone(), status);
        case.set_classname(c.classname.clone());
        case.set_time(Duration::from_millis(c.time_ms));
        if let Some(t) = chrono::DateTime::from_timestamp_millis(c.started_ms as i64) {
            case.set_timestamp(t.fixed_offset());
        }
        for (k, v) in &c.properties {
            case.add_property(Property::new(k.as_str(), v.as_str()));
        }
        if let Some(out) = &c.system_out {
            case.set_system_out(out.as_str());
        }
        suite.add_test_case(case);
    }
    report.add_test_suite(suite);
    report.to_string().context("rendering JUnit XML")
}

/// Writes one test suite with a test case per trial outcome. With `shared_run` (nextest's
/// run id) the file is shared with the run's other processes: their cases are kept and this
/// process's added, under a lock.
pub fn write(
    path: &Path,
    suite_name: &str,
    outcomes: &[TrialOutcome],
    shared_run: Option<&str>,
) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let mut cases: Vec<Case> = outcomes.iter().map(|o| case_of(o, suite_name)).collect();
    let Some(run) = shared_run else {
        let xml = render(suite_name, &cases)?;
        return super::files::replace(path, xml.as_bytes(), 0o644)
            .with_context(|| format!("writing JUnit XML to {}", path.display()));
    };
    let state_path = PathBuf::from(format!("{}.nextest.json", path.display()));
    let mut state_file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        // Never through a link planted in its place.
        .custom_flags(libc::O_NOFOLLOW)
        .open(&state_path)
        .with_context(|| format!("opening {}", state_path.display()))?;
    state_file
        .lock()
        .with_context(|| format!("locking {}", state_path.display()))?;
    let mut text = String::new();
    state_file.read_to_string(&mut text).ok();
    let mut shared: Shared = serde_json::from_str(&text).unwrap_or_default();
    if shared.run != run {
        // Another run's file: this run starts it afresh.
        shared = Shared {
            run: run.to_string(),
            cases: Vec::new(),
        };
    }
    shared
        .cases
        .retain(|c| !cases.iter().any(|n| n.name == c.name));
    shared.cases.append(&mut cases);
    shared.cases.sort_by(|a, b| a.name.cmp(&b.name));
    let xml = render(suite_name, &shared.cases)?;
    let tmp = path.with_extension("xml.tmp");
    super::files::replace(&tmp, xml.as_bytes(), 0o644)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    state_file.set_len(0)?;
    state_file.rewind()?;
    state_file.write_all(serde_json::to_string(&shared)?.as_bytes())?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use std::{path::Path, sync::Arc, time::Duration};

    use super::*;
    use crate::{case::matrix, server::ServerSpec};

    /// An outcome of the catalog's `client-token/works` case on `server` (for report tests).
    pub(crate) fn outcome(server: &str, verdict: Verdict) -> TrialOutcome {
        let cases = Path::new(env!("CARGO_MANIFEST_DIR")).join("../cases");
        let file = cases.join("kubernetes/client-token/works.yaml");
        let case = Arc::new(crate::case::load::load_file(&cases, &file).unwrap());
        let spec: ServerSpec = server.parse().unwrap();
        let trial = matrix::expand(&[case], &[spec], matrix::ClusterKind::Sim).remove(0);
        TrialOutcome {
            name: trial.name.clone(),
            verdict,
            not_checked: Vec::new(),
            phases: Vec::new(),
            total: Duration::from_millis(250),
            artifacts: Some("/tmp/artifacts/x".into()),
            requirement: None,
            trial,
            started: SystemTime::now(),
            observed: None,
            expect_key: None,
            kubernetes: Some("v1.33.1".into()),
            diagnosis: Some("top cause: wrong-ca\n".into()),
            earlier: Vec::new(),
        }
    }

    fn names(path: &Path) -> Vec<String> {
        let s =
            junit_parser::from_reader(std::io::BufReader::new(std::fs::File::open(path).unwrap()))
                .unwrap();
        s.suites[0]
            .cases
            .iter()
            .map(|c| c.original_name.clone())
            .collect()
    }

    /// A trial that passed on a retry is written as nextest writes a flaky test: passed, with
    /// a `<flakyFailure>` per earlier attempt.
    #[test]
    fn a_flaky_trial_carries_its_earlier_failures() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junit.xml");
        let mut o = outcome("openbao:2.7.2", Verdict::Passed);
        o.earlier = vec!["login.status: expected 200, got 500".into()];
        assert!(o.flaky());
        write(&path, "authlab-sim", std::slice::from_ref(&o), None).unwrap();
        let xml = std::fs::read_to_string(&path).unwrap();
        assert!(
            xml.contains("<flakyFailure message=\"login.status: expected 200, got 500\""),
            "{xml}"
        );
        assert!(!xml.contains("<failure"), "{xml}");
    }

    /// The processes of one nextest run add to one file; a new run starts it afresh.
    #[test]
    fn processes_of_one_nextest_run_share_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junit.xml");
        let a = outcome("openbao:2.7.2", Verdict::Passed);
        let b = outcome(
            "openbao:2.6.1",
            Verdict::Failed(vec!["login.status".into()]),
        );
        write(
            &path,
            "authlab-sim",
            std::slice::from_ref(&a),
            Some("run-1"),
        )
        .unwrap();
        write(
            &path,
            "authlab-sim",
            std::slice::from_ref(&b),
            Some("run-1"),
        )
        .unwrap();
        // A retry replaces the trial's earlier entry.
        write(
            &path,
            "authlab-sim",
            std::slice::from_ref(&b),
            Some("run-1"),
        )
        .unwrap();
        assert_eq!(names(&path), [b.name.clone(), a.name.clone()]);
        let xml = std::fs::read_to_string(&path).unwrap();
        assert!(xml.contains("artifacts: /tmp/artifacts/x"), "{xml}");
        assert!(xml.contains("top cause: wrong-ca"), "{xml}");
        write(
            &path,
            "authlab-sim",
            std::slice::from_ref(&a),
            Some("run-2"),
        )
        .unwrap();
        assert_eq!(names(&path), std::slice::from_ref(&a.name));
        // Outside nextest the file holds this process's trials only.
        write(&path, "authlab-sim", std::slice::from_ref(&b), None).unwrap();
        assert_eq!(names(&path), [b.name]);
    }

    /// An expectation the cluster could not observe is said, not passed over.
    #[test]
    fn what_was_not_checked_is_said() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junit.xml");
        let mut a = outcome("openbao:2.7.2", Verdict::Passed);
        a.not_checked = vec![
            "expect.cluster_requests: only the sim and the API servers authlab starts record the requests they answer".into(),
        ];
        write(&path, "authlab-kind", &[a], None).unwrap();
        let xml = std::fs::read_to_string(&path).unwrap();
        assert!(
            xml.contains("not checked here: expect.cluster_requests"),
            "{xml}"
        );
        assert!(xml.contains("name=\"not_checked\" value=\"1\""), "{xml}");
    }
}
