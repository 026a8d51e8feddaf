//! Loading the selected trials and running them concurrently in one lab (used by
//! `authlab run`; the `cargo test` runner drives the same pieces through libtest-mimic).

use std::{path::Path, sync::Arc, time::Instant};

use anyhow::{Result, anyhow};
use tokio::{sync::Semaphore, task::JoinSet};

use crate::{
    case::{
        LoadedCase, load,
        matrix::{self, ClusterKind, Trial},
    },
    lab::{
        Lab,
        trial::{self, TrialOutcome},
    },
    report::summary,
    server::ServerSpec,
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

/// Runs `trials` with at most `concurrency` at once, printing a progress line per trial to
/// stderr. Outcomes come back sorted by name.
pub async fn run_all(lab: Arc<Lab>, trials: Vec<Trial>, concurrency: usize) -> Vec<TrialOutcome> {
    let total = trials.len();
    let sem = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut set = JoinSet::new();
    let started = Instant::now();
    for t in trials {
        let lab = lab.clone();
        let sem = sem.clone();
        set.spawn(async move {
            let _permit = sem.acquire_owned().await;
            trial::run(&lab, &t).await
        });
    }
    let mut out = Vec::with_capacity(total);
    while let Some(res) = set.join_next().await {
        let o = match res {
            Ok(o) => o,
            Err(e) => {
                eprintln!("authlab: a trial task failed: {e}");
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
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}
