//! The word a trial is shown with — in progress lines, the summary, JUnit-free reports (Markdown,
//! HTML) and the counts — decided in one function, [`Shown::decide`].

use crate::trial::{TrialOutcome, Verdict};

/// How a trial is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    /// Passed.
    Ok,
    /// Passed after failing (under `--retries`).
    Flaky,
    /// Failed only by a difference between servers.
    Differs,
    /// Failed.
    Failed,
    /// Errored.
    Error,
    /// Ignored.
    Ignored,
    /// Observed for `--bless`, with nothing to judge against.
    Observed,
}

/// The verdict as the matrix document spells it (`passed`, `failed`, `error`, `ignored`,
/// `observed`).
pub fn status(v: &Verdict) -> &'static str {
    match v {
        Verdict::Passed => "passed",
        Verdict::Failed(_) => "failed",
        Verdict::Error(_) => "error",
        Verdict::Ignored(_) => "ignored",
        Verdict::Observed(_) => "observed",
    }
}

impl Shown {
    /// How a trial whose verdict is `status` (see [`status`]) is shown: a pass after failed
    /// tries (`retried`) is flaky, a failure that is only a difference between servers
    /// (`differs`) differs. The one place this is decided.
    pub fn decide(status: &str, retried: bool, differs: bool) -> Shown {
        match status {
            "passed" if retried => Shown::Flaky,
            "passed" => Shown::Ok,
            "failed" if differs => Shown::Differs,
            "failed" => Shown::Failed,
            "error" => Shown::Error,
            "observed" => Shown::Observed,
            _ => Shown::Ignored,
        }
    }

    /// How the outcome `o` is shown (`differs`: its failure is only a difference between servers).
    pub fn of(o: &TrialOutcome, differs: bool) -> Shown {
        Shown::decide(status(&o.verdict), !o.earlier.is_empty(), differs)
    }

    /// How a verdict alone is shown (one try, no difference known).
    pub fn verdict(v: &Verdict) -> Shown {
        Shown::decide(status(v), false, false)
    }

    /// The filter word and CSS class.
    pub fn class(self) -> &'static str {
        match self {
            Shown::Ok => "passed",
            Shown::Flaky => "flaky",
            Shown::Differs => "differs",
            Shown::Failed => "failed",
            Shown::Error => "error",
            Shown::Ignored => "ignored",
            Shown::Observed => "observed",
        }
    }

    /// The word.
    pub fn word(self) -> &'static str {
        match self {
            Shown::Ok => "ok",
            Shown::Flaky => "FLAKY",
            Shown::Differs => "DIFFERS",
            Shown::Failed => "FAILED",
            Shown::Error => "ERROR",
            Shown::Ignored => "ignored",
            Shown::Observed => "observed",
        }
    }

    /// Whether the trial counts as passed (a flaky one does, and is counted as flaky too).
    pub fn passed(self) -> bool {
        matches!(self, Shown::Ok | Shown::Flaky)
    }

    /// Whether the trial counts as failed (a difference does).
    pub fn failed(self) -> bool {
        matches!(self, Shown::Failed | Shown::Differs)
    }

    /// The word padded to `width` and then, with `color`, coloured (escape codes have no width).
    pub fn painted(self, width: usize, color: bool) -> String {
        let w = self.word();
        let pad = " ".repeat(width.saturating_sub(w.len()));
        if !color {
            return format!("{w}{pad}");
        }
        let code = match self {
            Shown::Ok => "32",
            Shown::Failed | Shown::Error => "1;31",
            Shown::Flaky | Shown::Differs | Shown::Ignored => "33",
            Shown::Observed => "36",
        };
        format!("\x1b[{code}m{w}\x1b[0m{pad}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_function_decides_every_word() {
        assert_eq!(Shown::decide("passed", false, false), Shown::Ok);
        assert_eq!(Shown::decide("passed", true, false), Shown::Flaky);
        assert_eq!(Shown::decide("failed", false, true), Shown::Differs);
        assert_eq!(Shown::decide("failed", true, false), Shown::Failed);
        assert_eq!(Shown::decide("error", false, true), Shown::Error);
        assert_eq!(Shown::decide("observed", false, false), Shown::Observed);
        assert_eq!(Shown::decide("ignored", false, false), Shown::Ignored);
        assert_eq!(Shown::Flaky.painted(7, false), "FLAKY  ");
        assert_eq!(Shown::Ok.painted(4, true), "\x1b[32mok\x1b[0m  ");
    }
}
