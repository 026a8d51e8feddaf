//! Loading the selected trials and running them concurrently in one lab (used by
//! `authlab run`; the `cargo test` runner drives the same pieces through libtest-mimic).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Result, anyhow};
use tokio::{sync::Semaphore, task::JoinSet};

use crate::{
    case::{
        LoadedCase, load,
        matrix::{self, ClusterKind, Trial},
    },
    lab::Lab,
    report::{artifacts, shown::Shown},
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

/// Which trials a run takes, the way libtest selects tests: a trial is kept when its name
/// contains any of `patterns` (equals one, with `exact`; all trials when there are none), it
/// contains none of `skip`, and its case has the auth method, mode and topology asked for.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Substrings (or, with `exact`, whole names) of trial names.
    pub patterns: Vec<String>,
    /// Match whole names.
    pub exact: bool,
    /// Trials whose name contains one of these are left out.
    pub skip: Vec<String>,
    /// Auth method (`kubernetes`, `jwt`).
    pub auth: Option<String>,
    /// Kubernetes auth mode (`local-token`, `client-token`, `reviewer-jwt`).
    pub mode: Option<String>,
    /// Topology (`outside`, `inside`).
    pub topology: Option<String>,
}

impl Filter {
    /// Whether `t` is selected.
    pub fn keeps(&self, t: &Trial) -> bool {
        let word = |v: serde_json::Result<serde_json::Value>| {
            v.ok().and_then(|v| v.as_str().map(str::to_string))
        };
        let c = &t.case.case;
        // The name as the file is spelled (`rb-18` for the case `rb_18`) matches too.
        let spelled = format!(
            "{}{}",
            t.case.name.replace('_', "-"),
            &t.name[t.case.name.len().min(t.name.len())..]
        );
        let named = self.patterns.is_empty()
            || self.patterns.iter().any(|p| {
                if self.exact {
                    t.name == *p || spelled == *p
                } else {
                    t.name.contains(p.as_str()) || spelled.contains(p.as_str())
                }
            });
        named
            && !self.skip.iter().any(|s| t.name.contains(s.as_str()))
            && self
                .auth
                .as_ref()
                .is_none_or(|a| word(serde_json::to_value(c.auth)).as_ref() == Some(a))
            && self.mode.as_ref().is_none_or(|m| {
                c.mode.and_then(|x| word(serde_json::to_value(x))).as_ref() == Some(m)
            })
            && self
                .topology
                .as_ref()
                .is_none_or(|p| word(serde_json::to_value(c.topology)).as_ref() == Some(p))
    }

    /// The trials it keeps.
    pub fn apply(&self, trials: Vec<Trial>) -> Vec<Trial> {
        trials.into_iter().filter(|t| self.keeps(t)).collect()
    }
}

/// Runs one trial and, when it failed and the lab keeps artifacts, writes them.
pub async fn run_one(lab: &Lab, t: &Trial) -> TrialOutcome {
    let (mut outcome, record) = trial::run_recorded(lab, t).await;
    if !matches!(outcome.verdict, Verdict::Passed | Verdict::Ignored(_))
        && !record.diagnosis.is_empty()
    {
        outcome.diagnosis = Some(record.diagnosis.clone());
    }
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

/// The order a run starts its trials in: longest first (by the history of earlier runs in the
/// cache at `cache_root`), the trials of a shared cluster grouped by world ([`by_world`]).
pub fn order(cache_root: &Path, trials: &mut Vec<Trial>) {
    History::load(cache_root).longest_first(trials);
    by_world(trials);
}

/// Groups the trials of a shared cluster (Kind, kubeconfig) by world, keeping the order
/// otherwise: trials that need the same objects share the cluster (see
/// [`crate::lab::worlds`]) and wait for other worlds, so they should arrive together. A group
/// stands where its first trial stood; those that share with no one come last in it.
pub fn by_world(trials: &mut Vec<Trial>) {
    let mut anchors: std::collections::HashMap<u64, usize> = std::collections::HashMap::new();
    let mut keyed: Vec<((usize, bool), Trial)> = trials
        .drain(..)
        .enumerate()
        .map(|(i, t)| {
            let key = if t.cluster.is_shared() && t.not_applicable.is_none() {
                let w = crate::cluster::share::World::of(&t);
                (*anchors.entry(w.group).or_insert(i), !w.shareable)
            } else {
                (i, false)
            };
            (key, t)
        })
        .collect();
    // Stable: within a group, the order given.
    keyed.sort_by_key(|(key, _)| *key);
    trials.extend(keyed.into_iter().map(|(_, t)| t));
}

/// True for a trial that spends its time waiting — for the server to give up on an endpoint
/// that never answers, or as its case's `wait` says — so it needs no worker slot of its own.
pub fn only_waits(t: &Trial) -> bool {
    t.not_applicable.is_none()
        && (t.case.uses("hang.url")
            || t.case
                .case
                .before_login
                .iter()
                .any(|a| matches!(a, crate::case::model::ClusterAction::Wait(_))))
}

/// Why a trial did not run under `--fail-fast`.
pub const NOT_RUN_AFTER_FAILURE: &str =
    "not run: --fail-fast stops starting trials after the first failure";

/// What the scheduler tells its reporter, in the order it happens. It never prints: progress
/// lines are one reporter ([`crate::report::progress::Lines`]); others collect.
#[derive(Debug)]
pub enum Event<'a> {
    /// Trials have been running for a while with nothing finishing: the longest (three at
    /// most, longest first), with how many more there are.
    Slow {
        /// The longest running.
        longest: &'a [LongRunning],
        /// Trials running that long besides those.
        more: usize,
        /// Since the run started.
        elapsed: Duration,
    },
    /// A try of a trial did not pass and it is run again (`--retries`).
    Retrying {
        /// The try that did not pass.
        outcome: &'a TrialOutcome,
        /// The try about to start (2 for the first retry).
        next: u32,
        /// Tries the trial has in all.
        tries: u32,
    },
    /// A trial ended, with its final verdict (after every retry it had).
    Finished {
        /// What it ended with.
        outcome: &'a TrialOutcome,
        /// How many trials have finished, this one included.
        done: usize,
        /// Trials in the run.
        total: usize,
        /// Since the run started.
        elapsed: Duration,
    },
}

/// A trial that has been running for a while.
#[derive(Debug, Clone)]
pub struct LongRunning {
    /// The trial.
    pub name: String,
    /// How long it has run.
    pub running_for: Duration,
    /// The bound it waits out, when it only waits.
    pub bound: Option<&'static str>,
}

/// Receives the scheduler's events.
pub trait Reporter: Send {
    /// One event.
    fn event(&mut self, e: &Event<'_>);
}

/// A reporter that drops every event.
impl Reporter for () {
    fn event(&mut self, _: &Event<'_>) {}
}

/// How the scheduler runs a set of trials.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// Trials at once (those that only wait take no slot).
    pub concurrency: usize,
    /// Start no trial after the first that failed.
    pub fail_fast: bool,
    /// Run a trial that failed or errored up to this many more times, at once, as nextest's
    /// `--retries`: one that passes on a retry keeps its earlier failures and is flaky; one that
    /// never passes keeps its last failure.
    pub retries: u32,
}

/// The first line of how a try ended, for the record of an earlier attempt.
fn first_line(v: &Verdict) -> String {
    let text = match v {
        Verdict::Failed(m) | Verdict::Observed(m) => m.first().cloned().unwrap_or_default(),
        Verdict::Error(e) | Verdict::Ignored(e) => e.clone(),
        Verdict::Passed => String::new(),
    };
    format!(
        "{} {}",
        Shown::verdict(v).word(),
        text.lines().next().unwrap_or_default()
    )
}

/// How often the trials still running are named while nothing finishes.
const STILL_RUNNING_EVERY: Duration = Duration::from_secs(5);

/// A trial's tries, each at once after the one before did not pass, up to `1 + retries`;
/// `retrying` hears of each retry. The outcome is the last try's with the earlier ones' first
/// lines.
async fn run_tries(
    lab: &Lab,
    t: &Trial,
    retries: u32,
    retrying: &tokio::sync::mpsc::UnboundedSender<(TrialOutcome, u32)>,
) -> TrialOutcome {
    let mut earlier = Vec::new();
    let mut o = run_one(lab, t).await;
    for next in 2..=retries + 1 {
        if !matches!(o.verdict, Verdict::Failed(_) | Verdict::Error(_)) || crate::scope::stopping()
        {
            break;
        }
        let _ = retrying.send((o.clone(), next));
        earlier.push(first_line(&o.verdict));
        o = run_one(lab, t).await;
    }
    o.earlier = earlier;
    o
}

/// Runs `trials` as `schedule` says, starting them in the order given ([`order`]), telling
/// `reporter` of each retry, each finished trial and, while trials take longer than 5 s, which
/// ones. Outcomes come back sorted by name.
pub async fn run_all(
    lab: Arc<Lab>,
    trials: Vec<Trial>,
    schedule: Schedule,
    reporter: &mut dyn Reporter,
) -> Vec<TrialOutcome> {
    let total = trials.len();
    let sem = Arc::new(Semaphore::new(schedule.concurrency.max(1)));
    let mut set = JoinSet::new();
    let started = Instant::now();
    let running: Running = Arc::default();
    let (retry_tx, mut retry_rx) = tokio::sync::mpsc::unbounded_channel();
    // Set at the first failure under `fail_fast`: trials not started by then are not run.
    let failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Slots are taken in the order of `trials` (as given), not in whatever order the
    // tasks happen to be polled: the n-th slot-taking trial waits for turn n.
    let (turn_tx, turn_rx) = tokio::sync::watch::channel(0usize);
    let turn_tx = Arc::new(turn_tx);
    let mut turns = 0usize;
    for mut t in trials {
        let lab = lab.clone();
        let running = running.clone();
        let failed = failed.clone();
        let retry_tx = retry_tx.clone();
        // A trial that only waits out a server's timeout takes no slot from the others.
        let slot = (!only_waits(&t)).then(|| {
            turns += 1;
            (sem.clone(), turns - 1, turn_rx.clone(), turn_tx.clone())
        });
        set.spawn(async move {
            let _permit = match slot {
                Some((sem, mine, mut turn, next)) => {
                    let _ = turn.wait_for(|t| *t >= mine).await;
                    let permit = sem.acquire_owned().await;
                    next.send_modify(|t| *t += 1);
                    Some(permit)
                }
                None => None,
            };
            if crate::scope::stopping() {
                // Interrupted while waiting for a slot: never started.
                std::future::pending::<()>().await;
            }
            if schedule.fail_fast && failed.load(std::sync::atomic::Ordering::SeqCst) {
                t.not_applicable = Some(NOT_RUN_AFTER_FAILURE.to_string());
            }
            let bound = if t.case.uses("hang.url") {
                Some("waits out the server's 10 s TLS handshake timeout for an endpoint that never answers")
            } else if only_waits(&t) {
                Some("waits as its case's before_login says")
            } else {
                None
            };
            if let Ok(mut r) = running.lock() {
                r.insert(t.name.clone(), (Instant::now(), bound));
            }
            let o = run_tries(&lab, &t, schedule.retries, &retry_tx).await;
            if crate::scope::stopping() {
                // Cut off by the stop (its servers and objects removed under it): what it
                // ended with is no finding, and the run exits without a conclusion.
                std::future::pending::<()>().await;
            }
            if let Ok(mut r) = running.lock() {
                r.remove(&t.name);
            }
            if matches!(o.verdict, Verdict::Failed(_) | Verdict::Error(_)) {
                failed.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            o
        });
    }
    drop(retry_tx);
    let mut out = Vec::with_capacity(total);
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + STILL_RUNNING_EVERY,
        STILL_RUNNING_EVERY,
    );
    loop {
        let res = tokio::select! {
            r = set.join_next() => match r {
                Some(r) => r,
                None => break,
            },
            Some((outcome, next)) = retry_rx.recv() => {
                reporter.event(&Event::Retrying { outcome: &outcome, next, tries: schedule.retries + 1 });
                continue;
            }
            _ = tick.tick() => {
                let (longest, more) = still_running(&running);
                if !longest.is_empty() {
                    reporter.event(&Event::Slow { longest: &longest, more, elapsed: started.elapsed() });
                }
                continue;
            }
        };
        let o = match res {
            Ok(o) => o,
            Err(e) => {
                tracing::error!("a trial task failed: {e}");
                continue;
            }
        };
        out.push(o);
        reporter.event(&Event::Finished {
            outcome: out.last().expect("just pushed"),
            done: out.len(),
            total,
            elapsed: started.elapsed(),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Trials under way: when each started and, for one that waits out a known bound, which.
type Running = Arc<std::sync::Mutex<BTreeMap<String, (Instant, Option<&'static str>)>>>;

/// The trials running for longer than [`STILL_RUNNING_EVERY`], longest first (three at most),
/// and how many more there are.
fn still_running(running: &Running) -> (Vec<LongRunning>, usize) {
    let Ok(r) = running.lock() else {
        return (Vec::new(), 0);
    };
    let mut long: Vec<LongRunning> = r
        .iter()
        .map(|(n, (at, bound))| LongRunning {
            name: n.clone(),
            running_for: at.elapsed(),
            bound: *bound,
        })
        .filter(|l| l.running_for >= STILL_RUNNING_EVERY)
        .collect();
    long.sort_by_key(|l| std::cmp::Reverse(l.running_for));
    let more = long.len().saturating_sub(3);
    long.truncate(3);
    (long, more)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trials() -> Vec<Trial> {
        let cases = Path::new(env!("CARGO_MANIFEST_DIR")).join("../cases");
        let file = cases.join("kubernetes/client-token/api-unreachable.yaml");
        let case = Arc::new(load::load_file(&cases, &file).unwrap());
        let servers: Vec<ServerSpec> = ["openbao:2.6.1", "openbao:2.7.2"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        matrix::expand(&[case], &servers, ClusterKind::Sim)
    }

    fn kept(f: &Filter) -> Vec<String> {
        f.apply(trials()).into_iter().map(|t| t.name).collect()
    }

    #[test]
    fn filters_select_like_libtest() {
        let all = Filter::default();
        assert_eq!(kept(&all).len(), 2);
        // The file's spelling matches as the case name does.
        for p in [
            "api-unreachable",
            "api_unreachable",
            "client-token::api-unreachable::openbao-2.6.1",
        ] {
            let f = Filter {
                patterns: vec![p.into()],
                ..Default::default()
            };
            assert!(!kept(&f).is_empty(), "{p}");
        }
        let exact = Filter {
            patterns: vec!["kubernetes::client_token::api_unreachable::openbao-2.7.2".into()],
            exact: true,
            ..Default::default()
        };
        assert_eq!(kept(&exact).len(), 1);
        let skip = Filter {
            skip: vec!["openbao-2.6".into()],
            ..Default::default()
        };
        assert_eq!(
            kept(&skip),
            ["kubernetes::client_token::api_unreachable::openbao-2.7.2"]
        );
        let by_kind = |auth: &str, mode: &str, topology: &str| Filter {
            auth: Some(auth.into()),
            mode: Some(mode.into()),
            topology: Some(topology.into()),
            ..Default::default()
        };
        assert_eq!(
            kept(&by_kind("kubernetes", "client-token", "outside")).len(),
            2
        );
        assert!(kept(&by_kind("jwt", "client-token", "outside")).is_empty());
        assert!(kept(&by_kind("kubernetes", "reviewer-jwt", "outside")).is_empty());
        assert!(kept(&by_kind("kubernetes", "client-token", "inside")).is_empty());
    }

    /// On Kind, trials of one world come together, those that share with no one last in
    /// their group; on the sim the order is kept.
    #[test]
    fn trials_on_a_shared_cluster_are_grouped_by_world() {
        let cases = Path::new(env!("CARGO_MANIFEST_DIR")).join("../cases");
        let files = [
            "kubernetes/token/service-account-deleted",
            "kubernetes/client-token/works",
            "kubernetes/local-token/works",
            "kubernetes/reviewer-jwt/works",
        ];
        let loaded: Vec<_> = files
            .iter()
            .map(|f| Arc::new(load::load_file(&cases, &cases.join(format!("{f}.yaml"))).unwrap()))
            .collect();
        let server: ServerSpec = "openbao:2.7.2".parse().unwrap();
        let order = |cluster| {
            let mut t: Vec<Trial> = loaded
                .iter()
                .flat_map(|c| {
                    matrix::expand(
                        std::slice::from_ref(c),
                        std::slice::from_ref(&server),
                        cluster,
                    )
                })
                .collect();
            by_world(&mut t);
            t.into_iter()
                .map(|t| {
                    t.case
                        .name
                        .rsplit("::")
                        .take(2)
                        .collect::<Vec<_>>()
                        .join("<")
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(
            order(ClusterKind::Kind),
            [
                "works<local_token",
                "works<reviewer_jwt",
                "service_account_deleted<token",
                "works<client_token"
            ]
        );
        assert_eq!(
            order(ClusterKind::Sim),
            [
                "service_account_deleted<token",
                "works<client_token",
                "works<local_token",
                "works<reviewer_jwt"
            ]
        );
    }
}
