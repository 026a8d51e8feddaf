//! What `authlab run` prints: the listing (`--list`), the run's first line, the summary and
//! what follows it, and why nothing ran.

use std::process::ExitCode;

use anyhow::Result;

use super::{RunArgs, args::NO_TRIAL_RAN};
use crate::{
    case::matrix::Trial,
    cli::Format,
    report::{self, summary::Style},
    session::{Conclusion, Finished, Selection},
};

/// `--list`: one name a line, or (`--format json`) objects with name, case, server and cluster.
pub(super) fn list(trials: &[Trial], format: Format) -> Result<()> {
    match format {
        Format::Json => {
            let items: Vec<_> = trials
                .iter()
                .map(|t| {
                    serde_json::json!({
                        "name": t.name,
                        "case": t.case.name,
                        "server": t.server.to_string(),
                        "cluster": t.cluster.as_str(),
                    })
                })
                .collect();
            outln!("{}", serde_json::to_string_pretty(&items)?);
        }
        Format::Human => {
            for t in trials {
                outln!("{}", t.name);
            }
        }
    }
    Ok(())
}

/// No trial matches: the (empty) document under `--format json`, and why, on standard error.
pub(super) fn nothing_matched(selection: &Selection, a: &RunArgs) -> Result<ExitCode> {
    if a.format == Format::Json {
        // Whoever reads standard output still gets the document, with no trial in it.
        let m = report::matrix::Matrix::of_run(selection.describe()?, &[]);
        outln!("{}", serde_json::to_string_pretty(&m)?);
    }
    eprintln!(
        "authlab: no trial matches {} (see `authlab list` for case names; trial names are <case>::<flavour>-<version>)",
        if a.filters.is_empty() {
            "the selection".to_string()
        } else {
            format!("{:?}", a.filters)
        }
    );
    Ok(if a.allow_empty {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(NO_TRIAL_RAN)
    })
}

/// The run's first line: its id, how many trials, on what.
pub(super) fn starting(run_id: &str, trials: usize, selection: &Selection) {
    let servers: Vec<String> = selection.servers.iter().map(|s| s.to_string()).collect();
    eprintln!(
        "authlab: run {run_id} — {trials} trials, servers {}, cluster {}",
        servers.join(","),
        selection.cluster.as_str()
    );
}

/// The summary on standard output (`--format json`: the matrix document), with what passing
/// trials observed under `--show-observed`.
pub(super) fn summary(run: &Finished, a: &RunArgs, stdout: Style) -> Result<()> {
    if a.format == Format::Json {
        outln!("{}", serde_json::to_string_pretty(&run.matrix)?);
        return Ok(());
    }
    let differs = run
        .matrix
        .trials
        .iter()
        .filter(|t| t.difference.is_some())
        .map(|t| t.name.as_str())
        .collect();
    let shown = report::summary::render(&run.outcomes, &differs, run.wall, stdout);
    out!("{shown}");
    if a.show_observed {
        for o in &run.outcomes {
            if let Some(sig) = &o.observed {
                outln!("{} observed:", o.name);
                for (k, v) in sig.fields() {
                    outln!("    {k}: {v}");
                }
            }
        }
    }
    Ok(())
}

/// After the summary: where the sim and the real cluster disagreed (`--compare-sim`), each
/// difference between servers as a block for the case file, and how many there were.
pub(super) fn differences(run: &Finished, a: &RunArgs, cluster: &str) {
    let matrix = &run.matrix;
    if a.format == Format::Human {
        if a.compare_sim {
            let between = report::changes::between_clusters(matrix);
            if between.is_empty() {
                outln!("\nthe sim and {cluster} observed the same in every case that ran on both");
            } else {
                outln!("\n{}", report::changes::cluster_lines(&between).trim_end());
            }
        }
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
}

/// The exit code of a run that ended so, saying why when no trial ran.
pub(super) fn exit(conclusion: Conclusion) -> ExitCode {
    match conclusion {
        Conclusion::Passed => ExitCode::SUCCESS,
        Conclusion::Failed => ExitCode::from(1),
        Conclusion::NoneRan(reasons) => {
            eprintln!(
                "authlab: no trial ran: every selected trial was ignored ({}); --allow-empty accepts that",
                reasons.join("; ")
            );
            ExitCode::from(NO_TRIAL_RAN)
        }
    }
}
