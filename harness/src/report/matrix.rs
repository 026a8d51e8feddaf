//! The compatibility matrix of one or more runs (`authlab run --report DIR`, merged by
//! `authlab report`): `matrix.json` holds every trial with what it observed, `matrix.md` and
//! `index.html` are rendered from it.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::{difference, html, markdown, signature::Signature};
use crate::trial::{TrialOutcome, Verdict};

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
    /// The trials, sorted by name.
    pub trials: Vec<Row>,
}

/// One `authlab run` (or `cargo test` run).
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    pub difference: Option<difference::Difference>,
}

impl Row {
    /// The verdict word of a verdict.
    pub fn verdict_word(v: &Verdict) -> &'static str {
        match v {
            Verdict::Passed => "passed",
            Verdict::Failed(_) => "failed",
            Verdict::Error(_) => "error",
            Verdict::Ignored(_) => "ignored",
            Verdict::Observed(_) => "observed",
        }
    }

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
            verdict: Self::verdict_word(&o.verdict).to_string(),
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
        }
    }

    /// How the trial is shown: its verdict, with a failure that is a difference apart.
    pub fn shown(&self) -> Shown {
        match (self.verdict.as_str(), self.difference.is_some()) {
            ("passed", _) => Shown::Ok,
            ("failed", true) => Shown::Differs,
            ("failed", false) => Shown::Failed,
            ("error", _) => Shown::Error,
            _ => Shown::Ignored,
        }
    }

    /// The column a row sits in: the server, with the cluster when it is not the sim.
    pub fn column(&self) -> String {
        if self.cluster == "sim" {
            self.server.clone()
        } else {
            format!("{} on {}", self.server, self.cluster)
        }
    }
}

impl Matrix {
    /// The matrix of one run.
    pub fn of_run(run: RunInfo, outcomes: &[TrialOutcome]) -> Matrix {
        let trials = outcomes.iter().map(|o| Row::of(o, &run.run_id)).collect();
        let mut m = Matrix {
            format: FORMAT,
            runs: vec![run],
            trials,
        };
        m.settle();
        m
    }

    /// Several matrices as one: a trial that two of them ran is taken from the later one.
    pub fn merge(parts: Vec<Matrix>) -> Matrix {
        let mut runs = Vec::new();
        let mut trials: BTreeMap<String, Row> = BTreeMap::new();
        for p in parts {
            runs.extend(p.runs);
            for t in p.trials {
                trials.insert(t.name.clone(), t);
            }
        }
        let mut m = Matrix {
            format: FORMAT,
            runs,
            trials: trials.into_values().collect(),
        };
        m.settle();
        m
    }

    /// Sorts the trials and works out which failures are differences between servers.
    fn settle(&mut self) {
        self.trials.sort_by(|a, b| a.name.cmp(&b.name));
        difference::classify(&mut self.trials);
    }

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

    /// Writes `matrix.json`, `matrix.md` and `index.html` into `dir` (created when missing) and
    /// returns their paths.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>, ReportError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ReportError::Io { path, source }
        };
        super::files::own_dir(dir, 0o755).map_err(io(dir))?;
        let json = serde_json::to_string_pretty(self).expect("a matrix serializes");
        let files = [
            ("matrix.json", json),
            ("matrix.md", markdown::render(self)),
            ("index.html", html::render(self)),
        ];
        let mut out = Vec::new();
        for (name, text) in files {
            let path = dir.join(name);
            super::files::replace(&path, text.as_bytes(), 0o644).map_err(io(&path))?;
            out.push(path);
        }
        Ok(out)
    }

    /// The columns (servers, with their cluster), in server order.
    pub fn columns(&self) -> Vec<String> {
        let mut cols: Vec<(ServerKey, String)> = Vec::new();
        for t in &self.trials {
            let c = t.column();
            if !cols.iter().any(|(_, x)| *x == c) {
                cols.push((ServerKey::parse(&t.server).with_cluster(&t.cluster), c));
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
                rows.sort_by_key(|r| ServerKey::parse(&r.server).with_cluster(&r.cluster));
                (c, rows)
            })
            .collect()
    }

    /// Counts of trials by verdict word, and of differences.
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for t in &self.trials {
            match t.verdict.as_str() {
                "passed" => c.passed += 1,
                "failed" => c.failed += 1,
                "error" => c.errors += 1,
                _ => c.ignored += 1,
            }
            if t.difference.is_some() {
                c.differences += 1;
            }
        }
        c
    }
}

impl Counts {
    /// `N trials: … passed, … failed (… of them differences between servers), … errors, …
    /// ignored`.
    pub fn sentence(&self) -> String {
        format!(
            "{} trials: {} passed, {} failed ({} of them differences between servers), {} errors, {} ignored",
            self.passed + self.failed + self.errors + self.ignored,
            self.passed,
            self.failed,
            self.differences,
            self.errors,
            self.ignored
        )
    }
}

/// How a trial is shown in the Markdown and HTML reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    /// Passed.
    Ok,
    /// Failed only by a difference between servers.
    Differs,
    /// Failed.
    Failed,
    /// Errored.
    Error,
    /// Ignored.
    Ignored,
}

impl Shown {
    /// The filter word and CSS class (`passed`, `differs`, `failed`, `error`, `ignored`).
    pub fn class(self) -> &'static str {
        match self {
            Shown::Ok => "passed",
            Shown::Differs => "differs",
            Shown::Failed => "failed",
            Shown::Error => "error",
            Shown::Ignored => "ignored",
        }
    }

    /// The word a cell shows.
    pub fn word(self) -> &'static str {
        match self {
            Shown::Ok => "ok",
            Shown::Differs => "differs",
            Shown::Failed => "FAILED",
            Shown::Error => "ERROR",
            Shown::Ignored => "ignored",
        }
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
    /// Cluster kind (sim first).
    pub cluster: (bool, String),
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
            cluster: (false, String::new()),
        }
    }

    fn with_cluster(mut self, cluster: &str) -> ServerKey {
        self.cluster = (cluster != "sim", cluster.to_string());
        self
    }
}
