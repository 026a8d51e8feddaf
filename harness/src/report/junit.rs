//! JUnit XML for `authlab run --junit` and `cargo test` (`AUTHLAB_JUNIT`).

use std::path::Path;

use anyhow::{Context, Result};
use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use crate::trial::{TrialOutcome, Verdict};

/// Writes one test suite with a test case per trial outcome.
pub fn write(path: &Path, suite_name: &str, outcomes: &[TrialOutcome]) -> Result<()> {
    let mut report = Report::new("authlab");
    let mut suite = TestSuite::new(suite_name);
    for o in outcomes {
        let status = match &o.verdict {
            Verdict::Passed => TestCaseStatus::success(),
            Verdict::Ignored(reason) => {
                let mut s = TestCaseStatus::skipped();
                s.set_message(reason.as_str());
                s
            }
            Verdict::Failed(m) => {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                s.set_message(m.first().cloned().unwrap_or_default());
                s.set_description(m.join("\n"));
                s
            }
            Verdict::Error(e) => {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
                s.set_message(e.lines().next().unwrap_or_default().to_string());
                s.set_description(e.as_str());
                s
            }
        };
        let (class, name) = o.name.rsplit_once("::").unwrap_or(("authlab", &o.name));
        let mut case = TestCase::new(name.to_string(), status);
        case.set_classname(class.to_string());
        case.set_time(o.total);
        suite.add_test_case(case);
    }
    report.add_test_suite(suite);
    let xml = report.to_string().context("rendering JUnit XML")?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).ok();
    }
    std::fs::write(path, xml).with_context(|| format!("writing JUnit XML to {}", path.display()))
}
