//! The human-readable summary: one line per trial, per-phase timings, totals.
//!
//! Padded with `format!` rather than a table crate: two columns after the name, each line
//! followed by free-form detail lines a table would have to wrap, and the verdict word coloured
//! after padding ([`Shown::painted`]).

use std::{collections::BTreeMap, time::Duration};

use super::shown::Shown;
use crate::trial::{TrialOutcome, Verdict};

/// How progress and summary lines look.
#[derive(Debug, Clone, Copy, Default)]
pub struct Style {
    /// Less: no ignored trials in the table either, no progress of passing ones (`-q`).
    pub quiet: bool,
    /// ANSI colour on the verdict words.
    pub color: bool,
}

/// The one line of a rendered diagnosis a summary shows: the cause and the top finding.
fn diagnosis_line(text: &str) -> Option<String> {
    let cause = text.lines().find_map(|l| l.strip_prefix("cause: "))?;
    let top = text
        .lines()
        .find_map(|l| l.strip_prefix("1. ["))
        .and_then(|l| l.split_once("] "))
        .map(|(_, title)| title);
    Some(match top {
        Some(t) => format!("{cause}: {t}"),
        None => cause.to_string(),
    })
}

/// Renders the final table of the trials that did not pass (their progress lines showed the
/// passing ones; with `quiet`, the ignored ones are left out too), the count line and the
/// per-phase timing totals. An error several trials share is printed in full once; a failed
/// trial shows what `diagnose` made of it.
///
/// `differs`: the trials whose failure is only a difference between servers (see
/// [`super::difference`]), shown as `DIFFERS`.
pub fn render(
    outcomes: &[TrialOutcome],
    differs: &std::collections::BTreeSet<&str>,
    wall: Duration,
    style: Style,
) -> String {
    let listed: Vec<&TrialOutcome> = outcomes
        .iter()
        .filter(|o| match o.verdict {
            Verdict::Passed => o.flaky(),
            Verdict::Ignored(_) => !style.quiet,
            _ => true,
        })
        .collect();
    let width = listed.iter().map(|o| o.name.len()).max().unwrap_or(10);
    let mut out = String::new();
    if !listed.is_empty() {
        out.push_str(&format!(
            "{:<width$}  {:<7}  {:>8}\n",
            "trial", "result", "time"
        ));
    }
    let mut errors_seen: Vec<(&str, &str)> = Vec::new();
    for o in listed {
        // Padded before colouring: escape codes have no width.
        let w = Shown::of(o, differs.contains(o.name.as_str())).painted(7, style.color);
        out.push_str(&format!(
            "{:<width$}  {w}  {:>6}ms\n",
            o.name,
            o.total.as_millis()
        ));
        match &o.verdict {
            Verdict::Failed(m) => {
                for line in m {
                    out.push_str(&format!("    - {line}\n"));
                }
            }
            Verdict::Error(e) => match errors_seen.iter().find(|(t, _)| t == e) {
                Some((_, first)) => out.push_str(&format!("    - the same error as {first}\n")),
                None => {
                    out.push_str(&format!("    - {e}\n"));
                    errors_seen.push((e, &o.name));
                }
            },
            Verdict::Ignored(r) => out.push_str(&format!("    ({r})\n")),
            Verdict::Observed(m) => {
                for line in m {
                    out.push_str(&format!("    (to be recorded: {line})\n"));
                }
            }
            Verdict::Passed => {
                for (i, e) in o.earlier.iter().enumerate() {
                    out.push_str(&format!("    - try {} failed: {e}\n", i + 1));
                }
                out.push_str(&format!(
                    "    (passed on try {}: flaky, not a pass to rely on)\n",
                    o.earlier.len() + 1
                ));
            }
        }
        if let (Verdict::Failed(_), Some(key)) = (&o.verdict, &o.expect_key) {
            let (map, key) = match key.strip_prefix("kubernetes:") {
                Some(k) => ("kubernetes", k),
                None => ("flavours", key.as_str()),
            };
            out.push_str(&format!(
                "    (judged by {map}.\"{key}\", which replaces `expect` as a whole)\n"
            ));
        }
        if !o.earlier.is_empty() && !matches!(o.verdict, Verdict::Passed) {
            out.push_str(&format!(
                "    (did not pass on any of {} tries)\n",
                o.earlier.len() + 1
            ));
        }
        for what in &o.not_checked {
            out.push_str(&format!("    (not checked here: {what})\n"));
        }
        if matches!(o.verdict, Verdict::Failed(_) | Verdict::Error(_))
            && let Some(d) = o.diagnosis.as_deref().and_then(diagnosis_line)
        {
            out.push_str(&format!("    diagnosis: {d}\n"));
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
    let shown: Vec<Shown> = outcomes
        .iter()
        .map(|o| Shown::of(o, differs.contains(o.name.as_str())))
        .collect();
    let count = |keep: fn(Shown) -> bool| shown.iter().filter(|s| keep(**s)).count();
    let differ = count(|s| s == Shown::Differs);
    let observed = count(|s| s == Shown::Observed);
    let flaky = count(|s| s == Shown::Flaky);
    if !out.is_empty() {
        out.push('\n');
    }
    out.push_str(&format!(
        "{}{} passed{}, {} failed{}, {} errors, {} ignored; {} trials in {:.1}s ({:.1} trials/s)\n",
        if observed > 0 {
            format!("{observed} observed for --bless, ")
        } else {
            String::new()
        },
        count(Shown::passed),
        if flaky > 0 {
            format!(" ({flaky} flaky: passed only on a retry)")
        } else {
            String::new()
        },
        count(Shown::failed),
        if differ > 0 {
            format!(
                " ({differ} of them differ from the server their expectations were written for)"
            )
        } else {
            String::new()
        },
        count(|s| s == Shown::Error),
        count(|s| s == Shown::Ignored),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::junit::tests::outcome;

    /// A pass after failures is listed as FLAKY with each earlier failure, and counted.
    #[test]
    fn a_flaky_trial_is_not_shown_as_a_plain_pass() {
        let steady = outcome("openbao:2.6.1", Verdict::Passed);
        let mut flaky = outcome("openbao:2.7.2", Verdict::Passed);
        flaky.earlier = vec!["FAILED login.status: expected 200, got 500".into()];
        let text = render(
            &[steady, flaky.clone()],
            &Default::default(),
            Duration::from_secs(1),
            Style::default(),
        );
        assert!(text.contains(&format!("{}  FLAKY", flaky.name)), "{text}");
        assert!(
            text.contains("    - try 1 failed: FAILED login.status: expected 200, got 500"),
            "{text}"
        );
        assert!(
            text.contains("2 passed (1 flaky: passed only on a retry), 0 failed"),
            "{text}"
        );
        assert_eq!(text.matches("openbao-2.6.1").count(), 0, "{text}");
        // One that failed on every try says so.
        let mut stuck = outcome(
            "openbao:2.7.2",
            Verdict::Failed(vec!["login.status".into()]),
        );
        stuck.earlier = vec!["FAILED login.status".into()];
        let text = render(
            &[stuck],
            &Default::default(),
            Duration::from_secs(1),
            Style::default(),
        );
        assert!(
            text.contains("    (did not pass on any of 2 tries)\n"),
            "{text}"
        );
    }
}
