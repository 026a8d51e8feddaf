//! `authlab run`: the matrix as a session, its summary, JUnit and report, and `--bless`.

mod args;
mod bless;
mod show;

use std::process::ExitCode;

use anyhow::Result;

pub(super) use args::RunArgs;

use super::cases_dir;
use crate::{
    case::matrix::ClusterKind,
    report::{progress::Lines, summary::Style},
    runner::Schedule,
    select,
    session::{Selection, Session},
    settings::Settings,
};

pub(super) async fn run(a: RunArgs, style: Style, s: &Settings) -> Result<ExitCode> {
    // First: a signal from here on takes the ordered way out (and exits 130/143).
    crate::scope::install_signal_handler(&tokio::runtime::Handle::current());
    let selection = Selection {
        cases_dir: cases_dir(s, a.cases.clone())?,
        servers: select::servers(s, a.servers.as_deref())?,
        cluster: select::cluster(s, a.cluster)?,
    };
    let cluster = selection.cluster;
    a.refuse_bless(s, cluster)?;
    let mut trials = selection.trials(&a.filter())?;
    if a.compare_sim && !cluster.is_sim() {
        // The same cases on the sim, beside the real cluster's trials.
        let picked: Vec<String> = trials.iter().map(|t| t.case.name.clone()).collect();
        let on_sim = Selection {
            cluster: ClusterKind::Sim,
            ..selection.clone()
        };
        let mut more = on_sim.trials(&Default::default())?;
        more.retain(|t| picked.contains(&t.case.name));
        trials.extend(more);
    }
    if a.list {
        show::list(&trials, a.format)?;
        return Ok(ExitCode::SUCCESS);
    }
    if trials.is_empty() {
        return show::nothing_matched(&selection, &a);
    }
    let opts = a.lab_options(s, cluster)?;
    show::starting(&opts.run_id, trials.len(), &selection);
    let session = Session::new(selection, opts);
    let again = a.bless.then(|| trials.clone());
    let mut lines = Lines { style };
    let outcomes = session.run(trials, a.schedule(), &mut lines).await?;
    // `--bless` records only what repeats: every trial is observed a second time.
    let again = match again {
        Some(trials) if !crate::scope::stopping() => {
            eprintln!(
                "authlab: observing each trial again: --bless records only what both observations share"
            );
            let once = Schedule {
                fail_fast: false,
                retries: 0,
                ..a.schedule()
            };
            session.run(trials, once, &mut lines).await?
        }
        _ => Vec::new(),
    };
    let run = session.finish(outcomes).await?;
    show::summary(
        &run,
        &a,
        crate::cli::output::stdout_style(style, s.no_color),
    )?;
    if a.bless {
        return bless::bless(&run.outcomes, &again, a.in_place);
    }
    show::differences(&run, &a, cluster.as_str());
    for output in a.outputs() {
        if let Some(line) = output.write(&run)? {
            eprintln!("authlab: {line}");
        }
    }
    Ok(show::exit(run.conclusion(a.allow_empty)))
}
