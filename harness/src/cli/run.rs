//! `authlab run` (the matrix, its summary, JUnit and report, `--bless`) and `authlab report`.

use std::{path::PathBuf, process::ExitCode, sync::Arc, time::Instant};

use anyhow::Result;

use super::{Format, cases_dir};
use crate::{
    case::{load, matrix::ClusterKind},
    lab::{Lab, LabOptions, Runtime},
    report::{self, summary::Style},
    runner, select, settings,
    trial::Verdict,
};

/// The flags of `authlab run`.
#[derive(clap::Args, Debug)]
pub(super) struct RunArgs {
    /// Substrings of trial names to run (any of them; all trials when none).
    #[arg(add = clap_complete::ArgValueCompleter::new(super::case_names))]
    filters: Vec<String>,
    /// Filters are whole trial names.
    #[arg(long)]
    exact: bool,
    /// List the trials the selection holds, one name a line (`--format json`: objects with
    /// name, case, server and cluster), and run none (as `cargo test -- --list`).
    #[arg(long)]
    list: bool,
    /// Leave out trials whose name contains this (repeatable).
    #[arg(long, value_name = "FILTER")]
    skip: Vec<String>,
    /// Only cases of this auth method.
    #[arg(long, value_parser = ["kubernetes", "jwt"])]
    auth: Option<String>,
    /// Only cases of this Kubernetes auth mode.
    #[arg(long, value_parser = ["local-token", "client-token", "reviewer-jwt"])]
    mode: Option<String>,
    /// Only cases of this topology.
    #[arg(long, value_parser = ["outside", "inside"])]
    topology: Option<String>,
    /// Succeed when no trial ran (none matched, or all were ignored), as nextest's
    /// `--no-tests=pass`.
    #[arg(long)]
    allow_empty: bool,
    /// Record what the servers answered (expect, flavours per server where they differ,
    /// observed_on; the rest of the file kept) as snapshot tests record snapshots: into
    /// `<file>.new` beside each case file, to review with `authlab bless review` and take with
    /// `authlab bless accept` (as insta's pending snapshots). Refused under CI=true.
    #[arg(long)]
    bless: bool,
    /// With --bless: write into the case files themselves, with no pending file to review.
    #[arg(long, requires = "bless")]
    in_place: bool,
    /// Also show what passing trials observed.
    #[arg(long)]
    show_observed: bool,
    /// Write the matrix report (matrix.json, matrix.md, index.html) into this directory.
    #[arg(long, env = "AUTHLAB_REPORT", value_name = "DIR")]
    report: Option<PathBuf>,
    /// Output format of the summary on standard output (json: the matrix.json document).
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// Case directory.
    #[arg(long, env = "AUTHLAB_CASES")]
    cases: Option<PathBuf>,
    /// Servers, e.g. openbao:2.7.2,openbao:2.6.1,vault:1.21.1.
    #[arg(long)]
    servers: Option<String>,
    /// Cluster (default: AUTHLAB_CLUSTER, else sim).
    #[arg(long, value_enum)]
    cluster: Option<ClusterKind>,
    /// Where shared servers run (default: AUTHLAB_RUNTIME, else process).
    #[arg(long, value_enum)]
    runtime: Option<Runtime>,
    /// Write JUnit XML here.
    #[arg(long, env = "AUTHLAB_JUNIT")]
    junit: Option<PathBuf>,
    /// Write artifacts of failed trials under this directory (default: ./authlab-artifacts).
    #[arg(long, env = "AUTHLAB_ARTIFACTS")]
    artifacts: Option<PathBuf>,
    /// Keep scratch files (server data and logs).
    #[arg(long)]
    keep: bool,
    /// Trials at once. Not the number of cores: a trial mostly waits on its server and
    /// cluster (on 2 cores the sim matrix takes 29.2 s with 8, 34.9 s with 2).
    #[arg(long, short = 'j', default_value_t = 8)]
    jobs: usize,
    /// Run a trial that failed up to N more times. One that then passes is reported as
    /// FLAKY (in the summary, the report and JUnit's `flakyFailure`), never as a plain pass.
    #[arg(long, value_name = "N", default_value_t = 0, conflicts_with = "bless")]
    retries: u32,
    /// Start no trial after the first failure; those left are reported as not run.
    #[arg(long, overrides_with = "no_fail_fast")]
    fail_fast: bool,
    /// Run every trial whatever fails (the default; as cargo's and nextest's flag).
    #[arg(long, overrides_with = "fail_fast")]
    no_fail_fast: bool,
    /// With a real cluster (--cluster apiserver, kind, kubeconfig): also run each trial on the
    /// sim, and print per case where the sim and the real cluster disagreed.
    #[arg(long)]
    compare_sim: bool,
}

/// Exit code of a run in which no trial ran.
const NO_TRIAL_RAN: u8 = 4;

pub(super) async fn run(a: RunArgs, style: Style) -> Result<ExitCode> {
    let filter = runner::Filter {
        patterns: a.filters,
        exact: a.exact,
        skip: a.skip,
        auth: a.auth,
        mode: a.mode,
        topology: a.topology,
    };
    // First: a signal from here on takes the ordered way out (and exits 130/143).
    crate::scope::install_signal_handler(&tokio::runtime::Handle::current());
    let dir = cases_dir(a.cases)?;
    let servers = select::servers(settings::current(), a.servers.as_deref())?;
    let cluster = select::cluster(settings::current(), a.cluster)?;
    if a.bless && settings::current().ci {
        anyhow::bail!(
            "--bless writes case files, and under CI=true nobody reviews them: bless where you can look at the result (unset CI), and commit what `authlab bless accept` takes"
        );
    }
    if a.bless && !cluster.is_sim() {
        anyhow::bail!(
            "--bless records into `expect` and `flavours`, which are judged on the sim (Kubernetes {}); on --cluster {} a case's version-specific answers go into a `kubernetes:` entry written by hand from `--show-observed` (see cases/README.md)",
            crate::sim::KUBERNETES_VERSION,
            cluster.as_str()
        );
    }
    let mut trials = filter.apply(runner::load_trials(&dir, &servers, cluster)?);
    if a.compare_sim && !cluster.is_sim() {
        // The same cases on the sim, beside the real cluster's trials.
        let mut on_sim = runner::load_trials(&dir, &servers, ClusterKind::Sim)?;
        let picked: std::collections::BTreeSet<&str> =
            trials.iter().map(|t| t.case.name.as_str()).collect();
        on_sim.retain(|t| picked.contains(t.case.name.as_str()));
        trials.extend(on_sim);
    }
    if a.list {
        match a.format {
            Format::Json => outln!(
                "{}",
                serde_json::to_string_pretty(
                    &trials
                        .iter()
                        .map(|t| serde_json::json!({
                            "name": t.name,
                            "case": t.case.name,
                            "server": t.server.to_string(),
                            "cluster": t.cluster.as_str(),
                        }))
                        .collect::<Vec<_>>()
                )?
            ),
            Format::Human => {
                for t in &trials {
                    outln!("{}", t.name);
                }
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    if trials.is_empty() {
        if a.format == Format::Json {
            // Whoever reads standard output still gets the document, with no trial in it.
            let m = report::matrix::Matrix::of_run(
                report::matrix::RunInfo {
                    servers: servers.iter().map(|s| s.to_string()).collect(),
                    cluster: cluster.as_str().to_string(),
                    cases_digest: load::digest(&dir)?,
                    ..Default::default()
                },
                &[],
            );
            outln!("{}", serde_json::to_string_pretty(&m)?);
        }
        eprintln!(
            "authlab: no trial matches {} (see `authlab list` for case names; trial names are <case>::<flavour>-<version>)",
            if filter.patterns.is_empty() {
                "the selection".to_string()
            } else {
                format!("{:?}", filter.patterns)
            }
        );
        return Ok(if a.allow_empty {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(NO_TRIAL_RAN)
        });
    }
    let mut opts = LabOptions::new(cluster, crate::settings::current());
    opts.runtime = select::runtime(settings::current(), a.runtime)?;
    opts.keep = a.keep || settings::keep();
    opts.recording = a.bless;
    opts.artifacts_dir = Some(
        a.artifacts
            .unwrap_or_else(|| select::artifacts_dir(settings::current())),
    );
    let run_id = opts.run_id.clone();
    eprintln!(
        "authlab: run {} — {} trials, servers {}, cluster {}",
        opts.run_id,
        trials.len(),
        servers
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(","),
        cluster.as_str()
    );
    let lab = Arc::new(Lab::new(opts)?);
    let started_at = std::time::SystemTime::now();
    let started = Instant::now();
    let again = a.bless.then(|| trials.clone());
    let schedule = runner::Schedule {
        concurrency: a.jobs,
        fail_fast: a.fail_fast && !a.no_fail_fast,
        retries: a.retries,
    };
    let mut lines = report::progress::Lines { style };
    let outcomes = runner::run_all(lab.clone(), trials, schedule, &mut lines).await;
    // `--bless` records only what repeats: every trial is observed a second time.
    let again = match again {
        Some(trials) if !crate::scope::stopping() => {
            eprintln!(
                "authlab: observing each trial again: --bless records only what both observations share"
            );
            let once = runner::Schedule {
                fail_fast: false,
                retries: 0,
                ..schedule
            };
            runner::run_all(lab.clone(), trials, once, &mut lines).await
        }
        _ => Vec::new(),
    };
    let wall = started.elapsed();
    lab.shutdown().await;
    crate::scope::close();
    let matrix = report::matrix::Matrix::of_run(
        report::matrix::RunInfo {
            run_id,
            started: humantime::format_rfc3339_seconds(started_at).to_string(),
            wall_ms: wall.as_millis() as u64,
            servers: servers.iter().map(|s| s.to_string()).collect(),
            cluster: cluster.as_str().to_string(),
            cases_digest: load::digest(&dir)?,
            ..Default::default()
        },
        &outcomes,
    );
    match a.format {
        Format::Json => outln!("{}", serde_json::to_string_pretty(&matrix)?),
        Format::Human => {
            let differs = matrix
                .trials
                .iter()
                .filter(|t| t.difference.is_some())
                .map(|t| t.name.as_str())
                .collect();
            out!(
                "{}",
                report::summary::render(
                    &outcomes,
                    &differs,
                    wall,
                    super::output::stdout_style(style)
                )
            );
            if a.show_observed {
                for o in &outcomes {
                    if let Some(sig) = &o.observed {
                        outln!("{} observed:", o.name);
                        for (k, v) in sig.fields() {
                            outln!("    {k}: {v}");
                        }
                    }
                }
            }
        }
    }
    if a.bless {
        return bless(&outcomes, &again, a.in_place);
    }
    if a.compare_sim && a.format == Format::Human {
        let between = report::changes::between_clusters(&matrix);
        if between.is_empty() {
            outln!(
                "\nthe sim and {} observed the same in every case that ran on both",
                cluster.as_str()
            );
        } else {
            outln!("\n{}", report::changes::cluster_lines(&between).trim_end());
        }
    }
    if a.format == Format::Human {
        let mut shown = Vec::new();
        for t in &matrix.trials {
            if let Some(d) = &t.difference
                && !shown.contains(&(&t.case, &d.key))
            {
                shown.push((&t.case, &d.key));
                outln!(
                    "\n{} on {} differs: {}. What {} answered, as a block for the case file:\n{}",
                    t.case,
                    d.servers.join(", "),
                    d.because,
                    if d.servers.len() == 1 { "it" } else { "they" },
                    d.block
                );
            }
        }
    }
    let differences = matrix.counts().differences;
    if differences > 0 {
        eprintln!(
            "authlab: {differences} failed trial(s) only answer differently from the server their expectations were written for{}",
            if a.report.is_some() {
                "; the report holds a flavours block for each"
            } else {
                "; the blocks above hold what they answered"
            }
        );
    }
    if let Some(path) = a.junit {
        report::junit::write(&path, "authlab", &outcomes, None)?;
        eprintln!("authlab: JUnit written to {}", path.display());
    }
    if let Some(dir) = &a.report {
        matrix.write(dir)?;
        eprintln!(
            "authlab: report written to {} (matrix.json, matrix.md, index.html)",
            dir.display()
        );
    }
    let bad = outcomes
        .iter()
        .any(|o| matches!(o.verdict, Verdict::Failed(_) | Verdict::Error(_)));
    let ran = outcomes
        .iter()
        .any(|o| !matches!(o.verdict, Verdict::Ignored(_)));
    Ok(if bad {
        ExitCode::from(1)
    } else if !ran && !a.allow_empty {
        let mut reasons: Vec<&str> = outcomes
            .iter()
            .filter_map(|o| match &o.verdict {
                Verdict::Ignored(r) => Some(r.as_str()),
                _ => None,
            })
            .collect();
        reasons.sort();
        reasons.dedup();
        eprintln!(
            "authlab: no trial ran: every selected trial was ignored ({}); --allow-empty accepts that",
            reasons.into_iter().take(3).collect::<Vec<_>>().join("; ")
        );
        ExitCode::from(NO_TRIAL_RAN)
    } else {
        ExitCode::SUCCESS
    })
}

/// A case and what each server observed of it.
type Observations = (
    Arc<load::LoadedCase>,
    Vec<(String, report::signature::Signature)>,
);

/// Blesses every case the run observed, with what its two observations (`first`, `again`)
/// share; exit 0 when each was written or already held.
fn bless(
    first: &[crate::trial::TrialOutcome],
    again: &[crate::trial::TrialOutcome],
    in_place: bool,
) -> Result<ExitCode> {
    let mut by_case: std::collections::BTreeMap<std::path::PathBuf, Observations> =
        std::collections::BTreeMap::new();
    let mut failed = false;
    let mut pending = 0;
    let second: std::collections::BTreeMap<&str, &crate::trial::TrialOutcome> =
        again.iter().map(|o| (o.name.as_str(), o)).collect();
    for o in first {
        let entry = by_case
            .entry(o.trial.case.path.clone())
            .or_insert_with(|| (o.trial.case.clone(), Vec::new()));
        let observed = |o: &crate::trial::TrialOutcome| match (&o.verdict, &o.observed) {
            (Verdict::Passed | Verdict::Observed(_) | Verdict::Failed(_), Some(sig)) => {
                Some(sig.clone())
            }
            _ => None,
        };
        let twice = observed(o).zip(second.get(o.name.as_str()).and_then(|a| observed(a)));
        match (&o.verdict, twice) {
            (_, Some((sig, again))) => {
                let (shared, varied) = sig.shared_with(&again);
                if !varied.is_empty() {
                    eprintln!(
                        "authlab: {}: on {} not recorded, as two observations differed: {}",
                        o.trial.case.path.display(),
                        o.trial.server,
                        varied.join("; ")
                    );
                }
                entry.1.push((o.trial.server.to_string(), shared))
            }
            (Verdict::Ignored(_), None) => {}
            (_, None) => {
                failed = true;
                let why = match (observed(o), second.get(o.name.as_str())) {
                    (None, _) => format!(
                        "the trial did not get as far as observing ({})",
                        report::shown::Shown::verdict(&o.verdict).word()
                    ),
                    (Some(_), Some(a)) => format!(
                        "its second observation did not get as far ({})",
                        report::shown::Shown::verdict(&a.verdict).word()
                    ),
                    (Some(_), None) => "it was not observed a second time".to_string(),
                };
                eprintln!(
                    "authlab: {}: not blessed on {}: {why}",
                    o.trial.case.path.display(),
                    o.trial.server,
                );
            }
        }
    }
    for (path, (case, observed)) in &by_case {
        if observed.is_empty() {
            continue;
        }
        let servers: Vec<&str> = observed.iter().map(|(s, _)| s.as_str()).collect();
        match crate::bless::bless(case, observed, in_place) {
            Ok(crate::bless::Outcome::Written { expect, flavours }) => {
                if in_place {
                    eprintln!(
                        "authlab: blessed {} with what {} answered; it now records:",
                        path.display(),
                        servers.join(", ")
                    );
                } else {
                    pending += 1;
                    eprintln!(
                        "authlab: wrote {} with what {} answered; it records:",
                        crate::bless::pending_path(path).display(),
                        servers.join(", ")
                    );
                }
                for line in expect.lines() {
                    eprintln!("    {line}");
                }
                if !flavours.is_empty() {
                    eprintln!("    flavours: {}", flavours.join(", "));
                }
            }
            Ok(crate::bless::Outcome::Unchanged) => eprintln!(
                "authlab: {} already holds what {} answered",
                path.display(),
                servers.join(", ")
            ),
            Err(e) => {
                failed = true;
                eprintln!("authlab: {e}");
            }
        }
    }
    if pending > 0 {
        eprintln!(
            "authlab: {pending} pending file(s): `authlab bless review` shows each as a diff, `authlab bless accept` takes them, `authlab bless reject` drops them"
        );
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

pub(super) fn merge_reports(
    inputs: &[PathBuf],
    out: &std::path::Path,
    mixed: bool,
) -> Result<ExitCode> {
    let parts = inputs
        .iter()
        .map(|p| report::matrix::Matrix::read(p))
        .collect::<Result<Vec<_>, _>>()?;
    let merged = report::matrix::Matrix::merge(parts, mixed)?;
    for why in &merged.mixed {
        eprintln!("authlab: warning: merged anyway (--mixed): {why}");
    }
    let files = merged.write(out)?;
    eprintln!(
        "authlab: {} runs, {}",
        merged.runs.len(),
        merged.counts().sentence()
    );
    for f in files {
        outln!("{}", f.display());
    }
    Ok(ExitCode::SUCCESS)
}
