//! Loading the selected trials and running them concurrently in one lab (used by
//! `authlab run`; the `cargo test` runner drives the same pieces through libtest-mimic).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::Instant,
};

use anyhow::{Result, anyhow};
use tokio::{sync::Semaphore, task::JoinSet};

use crate::{
    case::{
        LoadedCase, load,
        matrix::{self, ClusterKind, Trial},
    },
    lab::Lab,
    report::{artifacts, summary},
    server::ServerSpec,
    trial::{self, TrialOutcome, Verdict},
};

/// Loads every case under `cases_dir` and expands it; all loader errors are returned together.
pub fn load_trials(
    cases_dir: &Path,
    servers: &[ServerSpec],
    cluster: ClusterKind,
) -> Result<Vec<Trial>> {
    Ok(matrix::expand(&load_cases(cases_dir)?, servers, cluster))
}

/// Loads every case under `cases_dir`; all loader errors are returned together.
pub fn load_cases(cases_dir: &Path) -> Result<Vec<Arc<LoadedCase>>> {
    let cases = load::load_dir(cases_dir).map_err(|errs| {
        anyhow!(
            "{} case file(s) are invalid:\n{}",
            errs.len(),
            errs.iter()
                .map(|e| format!("  {e}"))
                .collect::<Vec<_>>()
                .join("\n")
        )
    })?;
    Ok(cases.into_iter().map(Arc::new).collect())
}

/// Keeps the trials whose name contains `filter` (all when None).
pub fn filter(trials: Vec<Trial>, filter: Option<&str>) -> Vec<Trial> {
    match filter {
        None => trials,
        Some(f) => trials.into_iter().filter(|t| t.name.contains(f)).collect(),
    }
}

/// Runs one trial and, when it failed and the lab keeps artifacts, writes them.
pub async fn run_one(lab: &Lab, t: &Trial) -> TrialOutcome {
    let (mut outcome, record) = trial::run_recorded(lab, t).await;
    if let (Verdict::Failed(_) | Verdict::Error(_), Some(dir)) =
        (&outcome.verdict, &lab.options().artifacts_dir)
    {
        outcome.artifacts = artifacts::write(dir, t, &record, &outcome.verdict)
            .map_err(|e| tracing::warn!("could not write artifacts for {}: {e:#}", t.name))
            .ok();
    }
    outcome
}

/// Trial durations of earlier runs (milliseconds by trial name), kept beside the binary cache.
#[derive(Debug, Default)]
pub struct History {
    path: Option<PathBuf>,
    ms: BTreeMap<String, u64>,
}

impl History {
    /// The history kept in the binary cache `cache_root` (empty when there is none yet).
    pub fn load(cache_root: &Path) -> History {
        let path = cache_root.join("trial-timings.json");
        let ms = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        History {
            path: Some(path),
            ms,
        }
    }

    /// Records the durations of the trials that ran and writes the history back.
    pub fn record(&mut self, outcomes: &[TrialOutcome]) {
        for o in outcomes {
            if matches!(o.verdict, Verdict::Passed | Verdict::Failed(_)) {
                self.ms.insert(o.name.clone(), o.total.as_millis() as u64);
            }
        }
        if let Some(path) = &self.path
            && let Ok(text) = serde_json::to_vec(&self.ms)
        {
            let tmp = path.with_extension("json.tmp");
            if std::fs::write(&tmp, text).is_ok() {
                let _ = std::fs::rename(&tmp, path);
            }
        }
    }

    /// How long `t` is expected to take: its last duration, else an estimate from what the case
    /// does (an endpoint that never answers waits out the server's 10 s TLS handshake timeout;
    /// a server pod is a container start).
    pub fn expected_ms(&self, t: &Trial) -> u64 {
        if let Some(ms) = self.ms.get(&t.name) {
            return *ms;
        }
        let case = &t.case;
        if t.not_applicable.is_some() {
            0
        } else if case.uses("hang.url") {
            10_000
        } else if case.case.topology == crate::case::model::Topology::Inside {
            1_500
        } else {
            300
        }
    }

    /// Orders `trials` longest first, so that the longest does not start last and set the
    /// run's wall time; equal ones keep their order.
    pub fn longest_first(&self, trials: &mut [Trial]) {
        trials.sort_by_key(|t| std::cmp::Reverse(self.expected_ms(t)));
    }
}

/// True for a trial that spends its time waiting for the server to give up on an endpoint that
/// never answers (so it needs no worker slot of its own).
pub fn only_waits(t: &Trial) -> bool {
    t.not_applicable.is_none() && t.case.uses("hang.url")
}

/// Runs `trials` with at most `concurrency` at once, longest first (by `history`), printing a
/// progress line per trial to stderr. Outcomes come back sorted by name.
pub async fn run_all(
    lab: Arc<Lab>,
    mut trials: Vec<Trial>,
    concurrency: usize,
) -> Vec<TrialOutcome> {
    let mut history = History::load(lab.cache().root());
    history.longest_first(&mut trials);
    let total = trials.len();
    let sem = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut set = JoinSet::new();
    let started = Instant::now();
    for t in trials {
        let lab = lab.clone();
        // A trial that only waits out a server's timeout takes no slot from the others.
        let sem = (!only_waits(&t)).then(|| sem.clone());
        set.spawn(async move {
            let _permit = match sem {
                Some(sem) => Some(sem.acquire_owned().await),
                None => None,
            };
            if crate::runlock::stopping() {
                // Interrupted while waiting for a slot: never started.
                std::future::pending::<()>().await;
            }
            run_one(&lab, &t).await
        });
    }
    let mut out = Vec::with_capacity(total);
    while let Some(res) = set.join_next().await {
        let o = match res {
            Ok(o) => o,
            Err(e) => {
                tracing::error!("a trial task failed: {e}");
                continue;
            }
        };
        let phases = o
            .phases
            .iter()
            .map(|(p, d)| format!("{p} {}ms", d.as_millis()))
            .collect::<Vec<_>>()
            .join(", ");
        eprintln!(
            "[{:>3}/{total}] {:<7} {} ({} ms{}) [{:.1}s]",
            out.len() + 1,
            summary::word(&o.verdict),
            o.name,
            o.total.as_millis(),
            if phases.is_empty() {
                String::new()
            } else {
                format!(": {phases}")
            },
            started.elapsed().as_secs_f64()
        );
        out.push(o);
    }
    history.record(&out);
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}
