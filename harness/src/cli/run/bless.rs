//! `authlab run --bless`: each case the run observed is written with what its two
//! observations share.

use std::{process::ExitCode, sync::Arc};

use anyhow::Result;

use crate::{case::load, report, trial::Verdict};

/// A case and what each server observed of it.
type Observations = (
    Arc<load::LoadedCase>,
    Vec<(String, report::signature::Signature)>,
);

/// Blesses every case the run observed, with what its two observations (`first`, `again`)
/// share; exit 0 when each was written or already held.
pub(super) fn bless(
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
