//! The case matrix as a test target: `cargo test -p harness` runs every case against every
//! selected server on the sim cluster, one libtest trial per (case, server).
//!
//! Names are `<case path>::<flavour>-<version>`, so substring filters, `--exact`, `--skip` and
//! `--list` work as with any Rust test; nextest runs it too (`cargo nextest run -p harness`).
//! Settings come from the environment (see `authlab --help`): `AUTHLAB_SERVERS`,
//! `OPENBAO_VERSION`, `VAULT_VERSION`, `AUTHLAB_CLUSTER`, `AUTHLAB_CASES`, `AUTHLAB_JUNIT`,
//! `AUTHLAB_ARTIFACTS`, `AUTHLAB_KEEP`, `AUTHLAB_REQUIRE`.

mod adapter;
mod select;

use std::{
    process::ExitCode,
    sync::{Arc, Mutex},
};

use authlab::{lab::LabOptions, session::Session};
use libtest_mimic::{Arguments, Trial};

fn main() -> ExitCode {
    match run(Arguments::from_args()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("authlab: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(mut args: Arguments) -> anyhow::Result<ExitCode> {
    let settings = authlab::settings::Settings::from_env();
    let s = &settings;
    authlab::progress::init(s.log.as_deref(), None);
    let (selection, mut trials) = select::trials(s, &args)?;
    // Trials mostly wait on servers; more than one per core keeps both cores busy. Those that
    // only wait out a server's timeout get a thread each on top.
    let waiting = trials.iter().filter(|t| authlab::runner::only_waits(t));
    args.test_threads = args.test_threads.or(Some(8 + waiting.count()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()?;
    let handle = runtime.handle().clone();
    let cluster = selection.cluster;
    let mut opts = LabOptions::new(cluster, s);
    opts.keep = s.keep;
    opts.runtime = authlab::select::runtime(s, None)?;
    opts.artifacts_dir = Some(adapter::artifacts_dir(s));
    if !args.list {
        authlab::scope::install_signal_handler(&handle);
        // Longest first (by earlier runs), so the longest trial does not start last.
        let cache = authlab::server::binary::BinaryCache::new(s)?;
        authlab::runner::History::load(cache.root()).longest_first(&mut trials);
    }
    let session = Arc::new(Session::new(selection, opts));
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let tests: Vec<Trial> = trials
        .into_iter()
        .map(|t| {
            let (handle, session, outcomes) = (handle.clone(), session.clone(), outcomes.clone());
            // Trials on Kind and apiserver are opt-in (`--ignored`) in a default run on the sim.
            let opt_in = t.cluster != cluster;
            Trial::ignorable_test(t.name.clone(), move || {
                if authlab::scope::stopping() {
                    return Err("interrupted before it started".into());
                }
                let outcome = handle.block_on(session.run_one(&t))?;
                let result = adapter::result(&outcome);
                outcomes.lock().expect("outcomes").push(outcome);
                result
            })
            .with_ignored_flag(opt_in)
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, tests);
    let session = Arc::into_inner(session).expect("every test is done with the session");
    if !args.list {
        let outcomes = std::mem::take(&mut *outcomes.lock().expect("outcomes"));
        let run = runtime.block_on(session.finish(outcomes))?;
        for output in adapter::outputs(s, cluster.as_str()) {
            if let Err(e) = output.write(&run) {
                eprintln!("authlab: {e:#}");
            }
        }
    }
    Ok(conclusion.exit_code())
}
