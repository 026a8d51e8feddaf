//! The human-readable summary: one line per trial, per-phase timings, totals.

use std::{collections::BTreeMap, time::Duration};

use crate::trial::{TrialOutcome, Verdict};

/// The short word for a verdict.
pub fn word(v: &Verdict) -> &'static str {
    match v {
        Verdict::Passed => "ok",
        Verdict::Failed(_) => "FAILED",
        Verdict::Error(_) => "ERROR",
        Verdict::Ignored(_) => "ignored",
    }
}

/// Renders the final table and the per-phase timing totals.
pub fn render(outcomes: &[TrialOutcome], wall: Duration) -> String {
    let width = outcomes.iter().map(|o| o.name.len()).max().unwrap_or(10);
    let mut out = String::new();
    out.push_str(&format!(
        "{:<width$}  {:<7}  {:>8}\n",
        "trial", "result", "time"
    ));
    for o in outcomes {
        out.push_str(&format!(
            "{:<width$}  {:<7}  {:>6}ms\n",
            o.name,
            word(&o.verdict),
            o.total.as_millis()
        ));
        match &o.verdict {
            Verdict::Failed(m) => {
                for line in m {
                    out.push_str(&format!("    - {line}\n"));
                }
            }
            Verdict::Error(e) => out.push_str(&format!("    - {e}\n")),
            Verdict::Ignored(r) => out.push_str(&format!("    ({r})\n")),
            Verdict::Passed => {}
        }
        for what in &o.not_checked {
            out.push_str(&format!("    (not checked here: {what})\n"));
        }
        if let Some(dir) = &o.artifacts {
            out.push_str(&format!("    artifacts: {}\n", dir.display()));
        }
    }
    let mut phase_totals: BTreeMap<&str, Duration> = BTreeMap::new();
    for o in outcomes {
        for (p, d) in &o.phases {
            *phase_totals.entry(p).or_default() += *d;
        }
    }
    let count = |w: &str| outcomes.iter().filter(|o| word(&o.verdict) == w).count();
    out.push_str(&format!(
        "\n{} passed, {} failed, {} errors, {} ignored; {} trials in {:.1}s ({:.1} trials/s)\n",
        count("ok"),
        count("FAILED"),
        count("ERROR"),
        count("ignored"),
        outcomes.len(),
        wall.as_secs_f64(),
        outcomes.len() as f64 / wall.as_secs_f64().max(0.001)
    ));
    if let Some(longest) = outcomes.iter().max_by_key(|o| o.total) {
        // No schedule finishes the run sooner than its longest trial.
        out.push_str(&format!(
            "longest trial {:.1}s ({}): the floor under any schedule\n",
            longest.total.as_secs_f64(),
            longest.name
        ));
    }
    if !phase_totals.is_empty() {
        out.push_str("time per phase (summed over trials): ");
        out.push_str(
            &phase_totals
                .iter()
                .map(|(p, d)| format!("{p} {:.1}s", d.as_secs_f64()))
                .collect::<Vec<_>>()
                .join(", "),
        );
        out.push('\n');
    }
    out
}
