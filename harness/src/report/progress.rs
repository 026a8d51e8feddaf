//! The progress lines of `authlab run`: a [`Reporter`] of the scheduler's events, printing a line
//! per finished trial (with `quiet`, only for those that did not plainly pass), one per retry,
//! and which trials are still running while nothing finishes.

use super::{shown::Shown, summary::Style};
use crate::runner::{Event, Reporter};

/// Prints the scheduler's events to standard error.
#[derive(Debug, Clone, Copy)]
pub struct Lines {
    /// How the lines look.
    pub style: Style,
}

impl Lines {
    /// The line an event prints, if it prints one.
    pub fn line(&self, e: &Event<'_>) -> Option<String> {
        match e {
            Event::Slow {
                longest,
                more,
                elapsed,
            } => {
                if self.style.quiet {
                    return None;
                }
                let mut text = longest
                    .iter()
                    .map(|l| match l.bound {
                        Some(b) => format!("{} ({} s; {b})", l.name, l.running_for.as_secs()),
                        None => format!("{} ({} s)", l.name, l.running_for.as_secs()),
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                if *more > 0 {
                    text.push_str(&format!(" and {more} more"));
                }
                Some(format!(
                    "authlab: still running: {text} [{:.1}s]",
                    elapsed.as_secs_f64()
                ))
            }
            Event::Retrying {
                outcome,
                next,
                tries,
            } => Some(format!(
                "authlab: {}: try {} of {tries} ended {}; trying again",
                outcome.name,
                next - 1,
                Shown::verdict(&outcome.verdict).word(),
            )),
            Event::Finished {
                outcome: o,
                done,
                total,
                elapsed,
            } => {
                let shown = Shown::of(o, false);
                if self.style.quiet && matches!(shown, Shown::Ok | Shown::Ignored) {
                    return None;
                }
                let phases = o
                    .phases
                    .iter()
                    .map(|(p, d)| format!("{p} {}ms", d.as_millis()))
                    .collect::<Vec<_>>()
                    .join(", ");
                Some(format!(
                    "[{done:>3}/{total}] {} {} ({} ms{}) [{:.1}s]",
                    shown.painted(7, self.style.color),
                    o.name,
                    o.total.as_millis(),
                    if phases.is_empty() {
                        String::new()
                    } else {
                        format!(": {phases}")
                    },
                    elapsed.as_secs_f64()
                ))
            }
        }
    }
}

impl Reporter for Lines {
    fn event(&mut self, e: &Event<'_>) {
        if let Some(line) = self.line(e) {
            eprintln!("{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{report::junit::tests::outcome, trial::Verdict};

    fn finished(o: &crate::trial::TrialOutcome, quiet: bool) -> Option<String> {
        Lines {
            style: Style {
                quiet,
                color: false,
            },
        }
        .line(&Event::Finished {
            outcome: o,
            done: 1,
            total: 2,
            elapsed: Duration::from_millis(1500),
        })
    }

    /// A trial's one line carries its final word: a pass after a failed try is FLAKY, and is
    /// shown under `-q` as anything that did not plainly pass is.
    #[test]
    fn the_finished_line_has_the_final_word() {
        let steady = outcome("openbao:2.7.2", Verdict::Passed);
        let line = finished(&steady, false).unwrap();
        assert!(line.starts_with("[  1/2] ok      "), "{line}");
        assert!(line.ends_with("[1.5s]"), "{line}");
        assert_eq!(finished(&steady, true), None);
        let mut flaky = steady.clone();
        flaky.earlier = vec!["FAILED login.status: expected 200, got 500".into()];
        let line = finished(&flaky, true).unwrap();
        assert!(line.contains("] FLAKY   "), "{line}");
        let failed = outcome("openbao:2.7.2", Verdict::Failed(vec!["x".into()]));
        let retry = Lines {
            style: Style::default(),
        }
        .line(&Event::Retrying {
            outcome: &failed,
            next: 2,
            tries: 3,
        })
        .unwrap();
        assert!(
            retry.ends_with(": try 1 of 3 ended FAILED; trying again"),
            "{retry}"
        );
    }
}
