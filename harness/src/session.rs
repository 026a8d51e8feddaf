//! One run from start to end, for both front-ends (`authlab run` and the `e2e` test target):
//! the selection, the lab (made on first use), trials run with their events told to a
//! reporter, and the end — the lab shut down, the scope closed, the run's history recorded —
//! as a [`Finished`] run that outputs ([`Output`]: JUnit, the matrix report) are written from.

use std::{
    path::PathBuf,
    sync::{Arc, OnceLock},
    time::{Duration, Instant, SystemTime},
};

use anyhow::Result;

use crate::{
    case::matrix::{ClusterKind, Trial},
    lab::{Lab, LabOptions},
    report::matrix::{Matrix, RunInfo},
    runner::{self, Filter, Reporter, Schedule},
    server::ServerSpec,
    trial::{TrialOutcome, Verdict},
};

/// What a run is made of: its cases, servers and cluster.
#[derive(Debug, Clone)]
pub struct Selection {
    /// The case directory.
    pub cases_dir: PathBuf,
    /// The servers, each trial runs on one.
    pub servers: Vec<ServerSpec>,
    /// The cluster the trials run on.
    pub cluster: ClusterKind,
}

impl Selection {
    /// The trials `filter` keeps, loaded and expanded from every case (all loader errors
    /// together).
    pub fn trials(&self, filter: &Filter) -> Result<Vec<Trial>> {
        Ok(filter.apply(runner::load_trials(
            &self.cases_dir,
            &self.servers,
            self.cluster,
        )?))
    }

    /// The run as the matrix report describes it (no id, times or trials yet).
    pub fn describe(&self) -> Result<RunInfo> {
        Ok(RunInfo {
            servers: self.servers.iter().map(|s| s.to_string()).collect(),
            cluster: self.cluster.as_str().to_string(),
            cases_digest: crate::case::load::digest(&self.cases_dir)?,
            ..Default::default()
        })
    }
}

/// A run under way: its lab is made when the first trial needs it.
pub struct Session {
    selection: Selection,
    opts: LabOptions,
    lab: OnceLock<Result<Arc<Lab>, String>>,
    started_at: SystemTime,
    started: Instant,
}

impl Session {
    /// Starts a run of `selection` in a lab made with `opts` (nothing is made yet).
    pub fn new(selection: Selection, opts: LabOptions) -> Session {
        Session {
            selection,
            opts,
            lab: OnceLock::new(),
            started_at: SystemTime::now(),
            started: Instant::now(),
        }
    }

    /// The run's id.
    pub fn run_id(&self) -> &str {
        &self.opts.run_id
    }

    /// The lab, made on first use (its error, when it could not be, for every trial).
    fn lab(&self) -> Result<&Arc<Lab>, String> {
        self.lab
            .get_or_init(|| {
                Lab::new(self.opts.clone())
                    .map(Arc::new)
                    .map_err(|e| format!("setting up the lab: {e:#}"))
            })
            .as_ref()
            .map_err(String::clone)
    }

    /// Runs `trials` as `schedule` says, in [`runner::order`], telling `reporter` what happens
    /// (see [`runner::run_all`]); outcomes sorted by name.
    pub async fn run(
        &self,
        trials: Vec<Trial>,
        schedule: Schedule,
        reporter: &mut dyn Reporter,
    ) -> Result<Vec<TrialOutcome>> {
        let lab = self.lab().map_err(anyhow::Error::msg)?.clone();
        let mut trials = trials;
        runner::order(lab.cache().root(), &mut trials);
        lab.plan(&trials).await;
        Ok(runner::run_all(lab, trials, schedule, reporter).await)
    }

    /// Runs one trial (a test harness's own scheduler runs each).
    pub async fn run_one(&self, t: &Trial) -> Result<TrialOutcome, String> {
        Ok(runner::run_one(self.lab()?, t).await)
    }

    /// Ends the run: its lab shut down, everything it made removed, the time each trial took
    /// recorded for the next run's order.
    pub async fn finish(self, mut outcomes: Vec<TrialOutcome>) -> Result<Finished> {
        let wall = self.started.elapsed();
        if let Some(Ok(lab)) = self.lab.get() {
            runner::History::load(lab.cache().root()).record(&outcomes);
            lab.shutdown().await;
        }
        crate::scope::close();
        outcomes.sort_by(|a, b| a.name.cmp(&b.name));
        let run = RunInfo {
            run_id: self.opts.run_id.clone(),
            started: humantime::format_rfc3339_seconds(self.started_at).to_string(),
            wall_ms: wall.as_millis() as u64,
            ..self.selection.describe()?
        };
        let matrix = Matrix::of_run(run, &outcomes);
        Ok(Finished {
            outcomes,
            matrix,
            wall,
        })
    }
}

/// A finished run.
#[derive(Debug)]
pub struct Finished {
    /// Every trial's outcome, by name.
    pub outcomes: Vec<TrialOutcome>,
    /// The matrix report of the run.
    pub matrix: Matrix,
    /// Wall time, from the session's start.
    pub wall: Duration,
}

/// How a run ended, for its exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conclusion {
    /// No trial failed or errored, and some ran (or none had to).
    Passed,
    /// A trial failed or errored.
    Failed,
    /// No trial ran: every selected one was ignored, for these reasons (three at most).
    NoneRan(Vec<String>),
}

impl Finished {
    /// How the run ended; with `allow_empty`, a run in which every trial was ignored passes.
    pub fn conclusion(&self, allow_empty: bool) -> Conclusion {
        let bad = self
            .outcomes
            .iter()
            .any(|o| matches!(o.verdict, Verdict::Failed(_) | Verdict::Error(_)));
        let ran = self
            .outcomes
            .iter()
            .any(|o| !matches!(o.verdict, Verdict::Ignored(_)));
        if bad {
            return Conclusion::Failed;
        }
        if ran || allow_empty {
            return Conclusion::Passed;
        }
        let mut reasons: Vec<String> = self
            .outcomes
            .iter()
            .filter_map(|o| match &o.verdict {
                Verdict::Ignored(r) => Some(r.clone()),
                _ => None,
            })
            .collect();
        reasons.sort();
        reasons.dedup();
        reasons.truncate(3);
        Conclusion::NoneRan(reasons)
    }
}

/// Something written from a finished run (JUnit, the matrix report).
pub trait Output {
    /// Writes it; the line to tell the user, if any.
    fn write(&self, run: &Finished) -> Result<Option<String>>;
}

/// JUnit XML (one suite, a test case per trial) at `path`.
#[derive(Debug, Clone)]
pub struct Junit {
    /// Where.
    pub path: PathBuf,
    /// The suite's name.
    pub suite: String,
    /// Nextest's run id, when the file is shared by its processes.
    pub shared_run: Option<String>,
}

impl Output for Junit {
    fn write(&self, run: &Finished) -> Result<Option<String>> {
        crate::report::junit::write(
            &self.path,
            &self.suite,
            &run.outcomes,
            self.shared_run.as_deref(),
        )?;
        Ok(Some(format!("JUnit written to {}", self.path.display())))
    }
}

/// The matrix report (matrix.json, matrix.md, index.html) in a directory.
#[derive(Debug, Clone)]
pub struct Report(pub PathBuf);

impl Output for Report {
    fn write(&self, run: &Finished) -> Result<Option<String>> {
        run.matrix.write(&self.0)?;
        Ok(Some(format!(
            "report written to {} (matrix.json, matrix.md, index.html)",
            self.0.display()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(version: &str, verdict: Verdict) -> TrialOutcome {
        crate::report::junit::tests::outcome(&format!("openbao:{version}"), verdict)
    }

    fn finished(outcomes: Vec<TrialOutcome>) -> Finished {
        Finished {
            matrix: Matrix::of_run(RunInfo::default(), &outcomes),
            outcomes,
            wall: Duration::ZERO,
        }
    }

    #[test]
    fn a_run_fails_on_a_failure_and_passes_only_when_something_ran() {
        let ignored = |r: &str| outcome("2.7.2", Verdict::Ignored(r.to_string()));
        let run = finished(vec![outcome("2.6.1", Verdict::Passed), ignored("b")]);
        assert_eq!(run.conclusion(false), Conclusion::Passed);
        let run = finished(vec![
            outcome("2.6.1", Verdict::Error("boom".into())),
            ignored("b"),
        ]);
        assert_eq!(run.conclusion(true), Conclusion::Failed);
        let run = finished(vec![
            ignored("needs x"),
            ignored("needs x"),
            ignored("needs y"),
        ]);
        assert_eq!(
            run.conclusion(false),
            Conclusion::NoneRan(vec!["needs x".into(), "needs y".into()])
        );
        assert_eq!(run.conclusion(true), Conclusion::Passed);
    }
}
