//! The case matrix as a test target: `cargo test -p harness` runs every case against every
//! selected server on the sim cluster, one libtest trial per (case, server).
//!
//! Names are `<case path>::<flavour>-<version>`, so substring filters, `--exact`, `--skip` and
//! `--list` work as with any Rust test; nextest runs it too (`cargo nextest run -p harness`).
//! Settings come from the environment (see `authlab --help`): `AUTHLAB_SERVERS`,
//! `OPENBAO_VERSION`, `VAULT_VERSION`, `AUTHLAB_CLUSTER`, `AUTHLAB_CASES`, `AUTHLAB_JUNIT`,
//! `AUTHLAB_ARTIFACTS`, `AUTHLAB_KEEP`, `AUTHLAB_REQUIRE`.

use std::{
    process::ExitCode,
    sync::{Arc, Mutex, OnceLock},
};

use authlab::{
    case::{LoadedCase, load, matrix},
    lab::{Lab, LabOptions},
    report, select, settings,
    trial::Verdict,
};
use libtest_mimic::{Arguments, Completion, Failed, Trial};

fn main() -> ExitCode {
    let mut args = Arguments::from_args();
    authlab::progress::init(authlab::settings::current().log.as_deref(), None);
    let mut trials = match select(&args) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("authlab: {e:#}");
            return ExitCode::from(2);
        }
    };
    if args.test_threads.is_none() {
        // Trials mostly wait on servers; more than one per core keeps both cores busy. Those
        // that only wait out a server's timeout get a thread each on top.
        let waiting = trials
            .iter()
            .filter(|t| authlab::runner::only_waits(t))
            .count();
        args.test_threads = Some(8 + waiting);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("authlab: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let handle = runtime.handle().clone();
    let lab: Arc<OnceLock<Result<Lab, String>>> = Arc::new(OnceLock::new());
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let started_at = std::time::SystemTime::now();
    let default_cluster = match select::cluster(authlab::settings::current(), None) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("authlab: {e:#}");
            return ExitCode::from(2);
        }
    };
    let cluster = Some(default_cluster);
    // Longest first (by earlier runs), so the longest trial does not start last; a listing
    // keeps the sorted order.
    let history = authlab::server::binary::BinaryCache::new(authlab::settings::current())
        .map(|c| authlab::runner::History::load(c.root()))
        .unwrap_or_default();
    if !args.list {
        authlab::scope::install_signal_handler(&handle);
        history.longest_first(&mut trials);
    }
    let history = Arc::new(Mutex::new(history));

    let tests: Vec<Trial> = trials
        .into_iter()
        .map(|t| {
            let handle = handle.clone();
            let lab = lab.clone();
            let outcomes = outcomes.clone();
            let name = t.name.clone();
            // Trials on Kind and apiserver are opt-in (`--ignored`) in a default run on the sim.
            let opt_in = t.cluster != default_cluster;
            Trial::ignorable_test(name, move || {
                if authlab::scope::stopping() {
                    return Err("interrupted before it started".into());
                }
                let lab = lab
                    .get_or_init(|| {
                        let mut opts =
                            LabOptions::new(default_cluster, authlab::settings::current());
                        opts.keep = settings::keep();
                        opts.runtime = select::runtime(authlab::settings::current(), None)
                            .map_err(|e| format!("{e:#}"))?;
                        opts.artifacts_dir = Some(artifacts_dir());
                        Lab::new(opts).map_err(|e| format!("{e:#}"))
                    })
                    .as_ref()
                    .map_err(|e| Failed::from(format!("setting up the lab: {e}")))?;
                let outcome = handle.block_on(authlab::runner::run_one(lab, &t));
                let verdict = outcome.verdict.clone();
                if let Ok(mut o) = outcomes.lock() {
                    o.push(outcome.clone());
                }
                let artifacts = outcome
                    .artifacts
                    .map(|d| format!("\nartifacts: {}", d.display()))
                    .unwrap_or_default();
                match verdict {
                    Verdict::Passed => Ok(Completion::Completed),
                    Verdict::Ignored(r) => Ok(Completion::ignored_with(r)),
                    Verdict::Failed(m) => Err(format!("{}{artifacts}", m.join("\n")).into()),
                    Verdict::Error(e) => Err(format!("{e}{artifacts}").into()),
                    // The test harness never records (no --bless here).
                    Verdict::Observed(m) => Err(m.join("\n").into()),
                }
            })
            .with_ignored_flag(opt_in)
        })
        .collect();

    let conclusion = libtest_mimic::run(&args, tests);

    if let Some(Ok(lab)) = lab.get() {
        runtime.block_on(lab.shutdown());
    }
    if !args.list
        && let (Ok(mut h), Ok(o)) = (history.lock(), outcomes.lock())
    {
        h.record(&o);
    }
    authlab::scope::close();
    if let Some(path) = &settings::current().junit
        && !args.list
    {
        let mut o = outcomes.lock().map(|o| o.clone()).unwrap_or_default();
        o.sort_by(|a, b| a.name.cmp(&b.name));
        let suite = format!("authlab-{}", cluster.map(|c| c.as_str()).unwrap_or("sim"));
        let shared = settings::current().nextest_run_id.as_deref();
        if let Err(e) = report::junit::write(path, &suite, &o, shared) {
            eprintln!("authlab: {e:#}");
        }
    }
    if let Some(dir) = &settings::current().report
        && !args.list
    {
        let mut o = outcomes.lock().map(|o| o.clone()).unwrap_or_default();
        o.sort_by(|a, b| a.name.cmp(&b.name));
        if settings::current().nextest_run_id.is_some() {
            eprintln!(
                "authlab: AUTHLAB_REPORT is not written under nextest (a process per trial); use `authlab run --report` or `cargo test`"
            );
        } else {
            let run = report::matrix::RunInfo {
                run_id: authlab::lab::new_run_id(),
                started: humantime::format_rfc3339_seconds(started_at).to_string(),
                wall_ms: started_at
                    .elapsed()
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0),
                servers: select::servers(authlab::settings::current(), None)
                    .map(|s| s.iter().map(|x| x.to_string()).collect())
                    .unwrap_or_default(),
                cluster: default_cluster.as_str().to_string(),
                cases_digest: authlab::case::load::digest(
                    &select::default_cases_dir(authlab::settings::current()).unwrap(),
                )
                .unwrap_or_default(),
                ..Default::default()
            };
            if let Err(e) = report::matrix::Matrix::of_run(run, &o).write(dir) {
                eprintln!("authlab: {e}");
            }
        }
    }
    conclusion.exit_code()
}

/// The artifacts directory: `AUTHLAB_ARTIFACTS`, else the workspace's `target/authlab-artifacts`.
fn artifacts_dir() -> std::path::PathBuf {
    settings::current().artifacts.clone().unwrap_or_else(|| {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/authlab-artifacts")
    })
}

/// Loads the trials; with `--exact NAME` only the one case file that NAME points at is parsed.
fn select(args: &Arguments) -> anyhow::Result<Vec<matrix::Trial>> {
    let cases_dir = select::default_cases_dir(authlab::settings::current()).unwrap();
    let servers = select::servers(authlab::settings::current(), None)?;
    let cluster = select::cluster(authlab::settings::current(), None)?;
    if args.exact
        && let Some(name) = &args.filter
        && let Some((case_name, _server)) = name
            .trim_end_matches("::kind")
            .trim_end_matches("::kubeconfig")
            .trim_end_matches("::apiserver")
            .rsplit_once("::")
        && let Some(file) = load::file_for_name(&cases_dir, case_name)
    {
        let case = load::load_file(&cases_dir, &file).map_err(|e| anyhow::anyhow!("{e}"))?;
        let cases: Vec<Arc<LoadedCase>> = vec![Arc::new(case)];
        return Ok(with_kind(
            matrix::expand(&cases, &servers, cluster),
            &cases,
            &servers,
            cluster,
        ));
    }
    let cases = authlab::runner::load_cases(&cases_dir)?;
    Ok(with_kind(
        matrix::expand(&cases, &servers, cluster),
        &cases,
        &servers,
        cluster,
    ))
}

/// In a run on the sim, the trials that can also run on Kind or on a real API server are listed
/// again, for Kind and for `apiserver`, as opt-in (`--ignored`) trials.
fn with_kind(
    mut trials: Vec<matrix::Trial>,
    cases: &[Arc<LoadedCase>],
    servers: &[authlab::server::ServerSpec],
    cluster: matrix::ClusterKind,
) -> Vec<matrix::Trial> {
    if cluster == matrix::ClusterKind::Sim {
        for other in [matrix::ClusterKind::Kind, matrix::ClusterKind::Apiserver] {
            trials.extend(
                matrix::expand(cases, servers, other)
                    .into_iter()
                    .filter(|t| t.not_applicable.is_none()),
            );
        }
        trials.sort_by(|a, b| a.name.cmp(&b.name));
    }
    trials
}
