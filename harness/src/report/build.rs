//! Matrices built: one run's, and several runs' merged as one; either way the rows are sorted
//! and the failures that are differences between servers marked ([`super::difference`]).

use std::collections::BTreeMap;

use super::{
    difference,
    matrix::{FORMAT, Matrix, Row, RunInfo, Unalike},
};
use crate::trial::TrialOutcome;

impl Matrix {
    /// The matrix of one run.
    pub fn of_run(mut run: RunInfo, outcomes: &[TrialOutcome]) -> Matrix {
        if run.kubernetes.is_none() {
            run.kubernetes = outcomes.iter().find_map(|o| o.kubernetes.clone());
        }
        if run.authlab.is_empty() {
            run.authlab = crate::VERSION.to_string();
        }
        let trials = outcomes.iter().map(|o| Row::of(o, &run.run_id)).collect();
        let mut m = Matrix {
            format: FORMAT,
            runs: vec![run],
            trials,
            mixed: Vec::new(),
        };
        m.settle();
        m
    }

    /// Several matrices as one. Trials are told apart by every dimension ([`Row::key`]): only
    /// a trial that two of them ran on the same cluster and Kubernetes version is taken from
    /// the later one. Runs of different case files or another authlab are refused, unless
    /// `mixed`: then the matrix says how they differ.
    pub fn merge(parts: Vec<Matrix>, mixed: bool) -> Result<Matrix, Unalike> {
        let mut runs: Vec<RunInfo> = Vec::new();
        let mut trials: BTreeMap<(String, String, Option<String>), Row> = BTreeMap::new();
        let mut notes: Vec<String> = parts.iter().flat_map(|p| p.mixed.clone()).collect();
        for p in parts {
            runs.extend(p.runs);
            for t in p.trials {
                let (n, c, k) = t.key();
                trials.insert((n.to_string(), c.to_string(), k.map(str::to_string)), t);
            }
        }
        notes.extend(unalike(&runs));
        notes.dedup();
        if !notes.is_empty() && !mixed {
            return Err(Unalike(notes));
        }
        let mut m = Matrix {
            format: FORMAT,
            runs,
            trials: trials.into_values().collect(),
            mixed: notes,
        };
        m.settle();
        Ok(m)
    }

    /// Sorts the trials and works out which failures are differences between servers.
    fn settle(&mut self) {
        self.trials
            .sort_by(|a, b| (&a.name, a.order()).cmp(&(&b.name, b.order())));
        difference::classify(&mut self.trials);
    }
}

/// How the runs differ in what they ran: other case files, another authlab. Runs of an older
/// report that did not record either are taken as alike in it.
fn unalike(runs: &[RunInfo]) -> Vec<String> {
    let mut out = Vec::new();
    for (what, of) in [
        (
            "case files",
            (|r: &RunInfo| r.cases_digest.as_str()) as fn(&RunInfo) -> &str,
        ),
        ("authlab", |r: &RunInfo| r.authlab.as_str()),
    ] {
        let mut seen: Vec<(&str, Vec<&str>)> = Vec::new();
        for r in runs.iter().filter(|r| !of(r).is_empty()) {
            match seen.iter_mut().find(|(v, _)| *v == of(r)) {
                Some((_, ids)) => ids.push(&r.run_id),
                None => seen.push((of(r), vec![&r.run_id])),
            }
        }
        if seen.len() > 1 {
            out.push(format!(
                "{what} differ: {}",
                seen.iter()
                    .map(|(v, ids)| format!("{v} in run {}", ids.join(", ")))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    out
}
