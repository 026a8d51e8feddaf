//! The compatibility matrix of one or more runs (`authlab run --report DIR`, merged by
//! `authlab report`): `matrix.json` holds every trial with what it observed, `matrix.md` and
//! `index.html` are rendered from it.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

pub use super::shown::Shown;
use super::signature::Signature;
use crate::trial::{TrialOutcome, Verdict};

/// Why a failure is a difference, and the block that records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Difference {
    /// Why (e.g. `the same expectations passed on openbao:2.7.0, openbao:2.7.2`).
    pub because: String,
    /// The servers (with this one) that answered this way where the expectations held elsewhere.
    pub servers: Vec<String>,
    /// The `flavours` key of the block.
    pub key: String,
    /// YAML to paste into the case file (a `flavours:` entry).
    pub block: String,
}

/// The version of the `matrix.json` layout.
pub const FORMAT: u32 = 1;

/// Errors of reading and writing reports.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A `matrix.json` that is not one.
    #[error(
        "{path} is not a matrix.json of authlab (format {FORMAT}): {why}; give the folder `authlab run --report DIR` wrote"
    )]
    NotAMatrix {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
}

/// Every trial of the runs a report covers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Matrix {
    /// [`FORMAT`].
    pub format: u32,
    /// The runs, in the order they were merged.
    pub runs: Vec<RunInfo>,
    /// The trials, sorted by name, then column.
    pub trials: Vec<Row>,
    /// Why the runs merged here are not alike (other cases, another authlab), when they were
    /// merged anyway (`authlab report --mixed`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mixed: Vec<String>,
}

/// Runs that should not be merged into one matrix.
#[derive(Debug, thiserror::Error)]
#[error(
    "these runs are not alike, so their trials do not compare: {}; merge runs of one authlab and one catalog, or pass --mixed to merge them anyway (the report then says so)",
    .0.join("; ")
)]
pub struct Unalike(pub Vec<String>);

/// One `authlab run` (or `cargo test` run).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunInfo {
    /// Run id.
    pub run_id: String,
    /// Start time (RFC 3339).
    pub started: String,
    /// Wall time in milliseconds.
    pub wall_ms: u64,
    /// The servers selected.
    pub servers: Vec<String>,
    /// The cluster kind.
    pub cluster: String,
    /// The cluster's Kubernetes version, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<String>,
    /// The authlab that ran it: version and commit ([`crate::VERSION`]).
    #[serde(default)]
    pub authlab: String,
    /// The digest of the case files it ran from ([`crate::case::load::digest`]).
    #[serde(default)]
    pub cases_digest: String,
}

/// One trial.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    /// Trial name.
    pub name: String,
    /// Case name.
    pub case: String,
    /// Auth method (`kubernetes`, `jwt`).
    pub auth: String,
    /// Kubernetes auth mode, when the case has one.
    pub mode: Option<String>,
    /// Topology (`outside`, `inside`).
    pub topology: String,
    /// `flavour:version`.
    pub server: String,
    /// Cluster kind.
    pub cluster: String,
    /// The cluster's Kubernetes version, when known.
    pub kubernetes: Option<String>,
    /// `passed`, `failed`, `error` or `ignored`.
    pub verdict: String,
    /// What did not hold (failed), the error, or why it was ignored.
    pub messages: Vec<String>,
    /// Expectations this cluster could not observe (never counted as held).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_checked: Vec<String>,
    /// What it observed (trials that got as far as judging).
    pub observed: Option<Signature>,
    /// The `flavours` key whose expectations applied (None: the case's `expect`).
    pub expect_key: Option<String>,
    /// The expectations that applied.
    pub expect: Option<serde_json::Value>,
    /// The case's `observed_on`.
    pub observed_on: Vec<String>,
    /// Wall time in milliseconds.
    pub total_ms: u64,
    /// Milliseconds per phase.
    pub phases: BTreeMap<String, u64>,
    /// Artifacts folder.
    pub artifacts: Option<String>,
    /// The run it belongs to.
    pub run_id: String,
    /// Set when the trial failed only because this server answers differently from the one its
    /// expectations were written for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub difference: Option<Difference>,
    /// Under `--retries`: how each earlier attempt ended. A passed trial with any is flaky.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier: Vec<String>,
}

impl Row {
    /// The row of an outcome.
    pub fn of(o: &TrialOutcome, run_id: &str) -> Row {
        let t = &o.trial;
        let c = &t.case.case;
        let word = |v: serde_json::Value| v.as_str().map(str::to_string);
        let messages = match &o.verdict {
            Verdict::Passed => Vec::new(),
            Verdict::Failed(m) | Verdict::Observed(m) => m.clone(),
            Verdict::Error(e) | Verdict::Ignored(e) => vec![e.clone()],
        };
        let expect = c.expect_for(&t.server.flavour.to_string(), &t.server.version);
        Row {
            name: o.name.clone(),
            case: t.case.name.clone(),
            auth: serde_json::to_value(c.auth)
                .ok()
                .and_then(word)
                .unwrap_or_default(),
            mode: c
                .mode
                .and_then(|m| serde_json::to_value(m).ok())
                .and_then(word),
            topology: serde_json::to_value(c.topology)
                .ok()
                .and_then(word)
                .unwrap_or_default(),
            server: t.server.to_string(),
            cluster: t.cluster.as_str().to_string(),
            kubernetes: o.kubernetes.clone(),
            verdict: super::shown::status(&o.verdict).to_string(),
            messages,
            not_checked: o.not_checked.clone(),
            observed: o.observed.clone(),
            expect_key: o.expect_key.clone(),
            expect: serde_json::to_value(expect).ok(),
            observed_on: c.observed_on.clone(),
            total_ms: o.total.as_millis() as u64,
            phases: o
                .phases
                .iter()
                .map(|(p, d)| (p.to_string(), d.as_millis() as u64))
                .collect(),
            artifacts: o.artifacts.as_ref().map(|p| p.display().to_string()),
            run_id: run_id.to_string(),
            difference: None,
            earlier: o.earlier.clone(),
        }
    }

    /// How the trial is shown: its verdict, with a failure that is a difference apart.
    pub fn shown(&self) -> Shown {
        Shown::decide(
            &self.verdict,
            !self.earlier.is_empty(),
            self.difference.is_some(),
        )
    }

    /// The column a row sits in: the server, with the cluster and its Kubernetes version
    /// when it is not the sim.
    pub fn column(&self) -> String {
        match (self.cluster.as_str(), &self.kubernetes) {
            ("sim", _) => self.server.clone(),
            (c, Some(k)) => format!("{} on {c} {k}", self.server),
            (c, None) => format!("{} on {c}", self.server),
        }
    }

    /// What tells this trial from every other of a merged matrix: its name (case, server,
    /// cluster kind), and the cluster's Kubernetes version.
    pub fn key(&self) -> (&str, &str, Option<&str>) {
        (&self.name, &self.cluster, self.kubernetes.as_deref())
    }

    /// Its place among the rows of a case: server, then cluster and Kubernetes version.
    pub fn order(&self) -> ServerKey {
        ServerKey::parse(&self.server).with_cluster(&self.cluster, self.kubernetes.as_deref())
    }
}

impl Matrix {
    /// Reads the `matrix.json` in `path` (a report folder or the file itself).
    pub fn read(path: &Path) -> Result<Matrix, ReportError> {
        let file = if path.is_dir() {
            path.join("matrix.json")
        } else {
            path.to_path_buf()
        };
        let text = crate::input::read("report input", &file, crate::input::DOCUMENT_BYTES)
            .map_err(|e| match e {
                crate::input::InputError::Io { source, .. } => ReportError::Io {
                    path: file.clone(),
                    source,
                },
                other => ReportError::NotAMatrix {
                    path: file.clone(),
                    why: other.to_string(),
                },
            })?;
        let m: Matrix = serde_json::from_str(&text).map_err(|e| ReportError::NotAMatrix {
            path: file.clone(),
            why: e.to_string(),
        })?;
        if m.format != FORMAT {
            return Err(ReportError::NotAMatrix {
                path: file,
                why: format!("it is format {}", m.format),
            });
        }
        Ok(m)
    }

    /// The columns (servers, with their cluster and its Kubernetes version), in server order.
    pub fn columns(&self) -> Vec<String> {
        let mut cols: Vec<(ServerKey, String)> = Vec::new();
        for t in &self.trials {
            let c = t.column();
            if !cols.iter().any(|(_, x)| *x == c) {
                cols.push((t.order(), c));
            }
        }
        cols.sort();
        cols.into_iter().map(|(_, c)| c).collect()
    }

    /// Trials by case, cases sorted; within a case, trials in column order.
    pub fn by_case(&self) -> Vec<(&str, Vec<&Row>)> {
        let mut out: BTreeMap<&str, Vec<&Row>> = BTreeMap::new();
        for t in &self.trials {
            out.entry(t.case.as_str()).or_default().push(t);
        }
        out.into_iter()
            .map(|(c, mut rows)| {
                rows.sort_by_key(|r| r.order());
                (c, rows)
            })
            .collect()
    }

    /// Counts of trials by verdict word, and of differences.
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for t in &self.trials {
            let shown = t.shown();
            match shown {
                s if s.passed() => c.passed += 1,
                s if s.failed() => c.failed += 1,
                Shown::Error => c.errors += 1,
                _ => c.ignored += 1,
            }
            c.differences += usize::from(shown == Shown::Differs);
            c.flaky += usize::from(shown == Shown::Flaky);
        }
        c
    }
}

impl Counts {
    /// `N trials: … passed, … failed (… of them differences between servers), … errors, …
    /// ignored`.
    pub fn sentence(&self) -> String {
        format!(
            "{} trials: {} passed{}, {} failed ({} of them differences between servers), {} errors, {} ignored",
            self.passed + self.failed + self.errors + self.ignored,
            self.passed,
            if self.flaky > 0 {
                format!(" ({} of them flaky: passed on a retry)", self.flaky)
            } else {
                String::new()
            },
            self.failed,
            self.differences,
            self.errors,
            self.ignored
        )
    }
}

/// Trials by verdict.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Passed.
    pub passed: usize,
    /// Failed (differences included).
    pub failed: usize,
    /// Failed only by a difference between servers.
    pub differences: usize,
    /// Errors.
    pub errors: usize,
    /// Ignored.
    pub ignored: usize,
    /// Passed only on a retry (counted in `passed` too).
    pub flaky: usize,
}

/// Orders servers: flavour, then version numerically (`2.10.0` after `2.9.1`), then cluster.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServerKey {
    /// Flavour.
    pub flavour: String,
    /// Numeric version components (non-numeric parts sort as 0).
    pub version: Vec<u64>,
    /// The version as written.
    pub text: String,
    /// Cluster kind (sim first), then Kubernetes version numerically.
    pub cluster: (bool, String, Vec<u64>),
}

impl ServerKey {
    /// Parses `flavour:version`.
    pub fn parse(server: &str) -> ServerKey {
        let (flavour, text) = server.split_once(':').unwrap_or((server, ""));
        ServerKey {
            flavour: flavour.to_string(),
            version: text
                .split(['.', '-'])
                .map(|p| p.parse().unwrap_or(0))
                .collect(),
            text: text.to_string(),
            cluster: (false, String::new(), Vec::new()),
        }
    }

    fn with_cluster(mut self, cluster: &str, kubernetes: Option<&str>) -> ServerKey {
        let version = kubernetes
            .unwrap_or_default()
            .trim_start_matches('v')
            .split(['.', '-', '+'])
            .map(|p| p.parse().unwrap_or(0))
            .collect();
        self.cluster = (cluster != "sim", cluster.to_string(), version);
        self
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::report::{html, markdown};

    /// A row of `case` on openbao 2.7.2 on the sim with `verdict`, and `fields` (a JSON object
    /// of row fields) over it: for the report renderers' tests.
    pub(crate) fn row_with(case: &str, verdict: &str, fields: serde_json::Value) -> Row {
        let mut v = serde_json::json!({
            "name": format!("{case}::openbao-2.7.2"), "case": case, "auth": "kubernetes",
            "mode": null, "topology": "outside", "server": "openbao:2.7.2", "cluster": "sim",
            "kubernetes": null, "verdict": verdict, "messages": [], "observed": null,
            "expect_key": null, "expect": null, "observed_on": [], "total_ms": 1, "phases": {},
            "artifacts": null, "run_id": "r", "difference": null
        });
        if let (Some(row), serde_json::Value::Object(f)) = (v.as_object_mut(), fields) {
            row.extend(f);
        }
        serde_json::from_value(v).expect("a row")
    }

    fn row(kubernetes: &str, verdict: &str) -> Row {
        Row {
            name: "c::openbao-2.7.2::kind".into(),
            case: "c".into(),
            auth: "kubernetes".into(),
            mode: None,
            topology: "outside".into(),
            server: "openbao:2.7.2".into(),
            cluster: "kind".into(),
            kubernetes: Some(kubernetes.into()),
            verdict: verdict.into(),
            messages: Vec::new(),
            not_checked: Vec::new(),
            observed: None,
            expect_key: None,
            expect: None,
            observed_on: Vec::new(),
            total_ms: 1,
            phases: Default::default(),
            artifacts: None,
            run_id: format!("r-{kubernetes}"),
            difference: None,
            earlier: Vec::new(),
        }
    }

    fn run(kubernetes: &str, verdict: &str, digest: &str) -> Matrix {
        let mut m = Matrix::of_run(
            RunInfo {
                run_id: format!("r-{kubernetes}"),
                cluster: "kind".into(),
                cases_digest: digest.into(),
                ..Default::default()
            },
            &[],
        );
        m.trials.push(row(kubernetes, verdict));
        m
    }

    /// The nightly's Kind jobs name their trials alike: merged by name, the 1.33 failure was
    /// overwritten by the 1.34 pass.
    #[test]
    fn a_merge_of_three_kubernetes_versions_keeps_every_failure() {
        let m = Matrix::merge(
            vec![
                run("v1.34.0", "passed", "sha256:a"),
                run("v1.33.1", "failed", "sha256:a"),
                run("v1.32.2", "passed", "sha256:a"),
            ],
            false,
        )
        .unwrap();
        assert_eq!(m.trials.len(), 3);
        assert_eq!(m.counts().failed, 1);
        assert_eq!(
            m.columns(),
            [
                "openbao:2.7.2 on kind v1.32.2",
                "openbao:2.7.2 on kind v1.33.1",
                "openbao:2.7.2 on kind v1.34.0"
            ]
        );
        let md = markdown::render(&m);
        assert!(md.contains("openbao:2.7.2 on kind v1.33.1"), "{md}");
        assert!(md.contains("FAILED"), "{md}");
        // The same trial run again on the same version: the later one counts.
        let again = Matrix::merge(
            vec![
                run("v1.33.1", "failed", "sha256:a"),
                run("v1.33.1", "passed", "sha256:a"),
            ],
            false,
        )
        .unwrap();
        assert_eq!(again.trials.len(), 1);
        assert_eq!(again.trials[0].verdict, "passed");
    }

    #[test]
    fn runs_of_other_cases_are_refused_or_flagged() {
        let parts = || {
            vec![
                run("v1.34.0", "passed", "sha256:a"),
                run("v1.33.1", "failed", "sha256:b"),
            ]
        };
        let e = Matrix::merge(parts(), false).unwrap_err().to_string();
        assert!(e.contains("case files differ"), "{e}");
        assert!(e.contains("sha256:a in run r-v1.34.0"), "{e}");
        assert!(e.contains("--mixed"), "{e}");
        let m = Matrix::merge(parts(), true).unwrap();
        assert_eq!(m.mixed.len(), 1);
        assert!(markdown::render(&m).contains("not alike"));
        assert!(html::render(&m).contains("not alike"));
        // A merge of the merged report keeps saying so.
        let json = serde_json::to_string(&m).unwrap();
        let back: Matrix = serde_json::from_str(&json).unwrap();
        assert!(Matrix::merge(vec![back], false).is_err());
        // Older reports recorded neither: taken as alike.
        assert!(
            Matrix::merge(
                vec![run("v1.34.0", "passed", ""), run("v1.33.1", "passed", "")],
                false
            )
            .is_ok()
        );
    }
}
