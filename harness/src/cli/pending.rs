//! `authlab bless review|accept|reject`: the pending files `run --bless` writes beside case
//! files (`<file>.new`), looked at and taken or dropped as insta's `cargo insta` does it.

use std::{
    io::{BufRead, IsTerminal, Write},
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{Context, Result};

/// What to do with the pending files.
#[derive(clap::Subcommand, Debug)]
pub(super) enum BlessCommand {
    /// Show each pending file as a diff against its case file; on a terminal, ask for each
    /// whether to accept (a), reject (r) or skip (s) it.
    Review(Selection),
    /// Move each pending file over its case file.
    Accept(Selection),
    /// Delete each pending file.
    Reject(Selection),
}

/// Which pending files.
#[derive(clap::Args, Debug)]
pub(super) struct Selection {
    /// Substrings of case file paths (all pending files when none).
    filters: Vec<String>,
    /// Case directory.
    #[arg(long, env = "AUTHLAB_CASES")]
    cases: Option<PathBuf>,
}

/// The case files under `dir` with a pending file, whose path contains one of `filters`:
/// (case, pending).
fn pending(dir: &Path, filters: &[String]) -> Result<Vec<(PathBuf, PathBuf)>> {
    let cases = crate::case::load::find_case_files(dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(cases
        .into_iter()
        .filter(|c| {
            let p = c.to_string_lossy();
            filters.is_empty() || filters.iter().any(|f| p.contains(f.as_str()))
        })
        .map(|c| {
            let new = crate::bless::pending_path(&c);
            (c, new)
        })
        .filter(|(_, new)| new.is_file())
        .collect())
}

/// A unified diff of `case` (or nothing) against `new`, as `git diff` shows one.
fn diff(case: &Path, old: &str, new: &str) -> String {
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(
            &case.display().to_string(),
            &format!("{} (pending)", case.display()),
        )
        .to_string()
}

fn accept(case: &Path, new: &Path) -> Result<()> {
    let text =
        std::fs::read_to_string(new).with_context(|| format!("reading {}", new.display()))?;
    // Only a file that still loads replaces a case.
    crate::case::load::parse(case, &text)
        .map_err(|e| anyhow::anyhow!("{} does not load, left pending: {e}", new.display()))?;
    std::fs::rename(new, case)
        .with_context(|| format!("moving {} over {}", new.display(), case.display()))
}

fn reject(new: &Path) -> Result<()> {
    std::fs::remove_file(new).with_context(|| format!("removing {}", new.display()))
}

pub(super) fn run(cmd: BlessCommand, settings: &crate::settings::Settings) -> Result<ExitCode> {
    let (sel, what) = match &cmd {
        BlessCommand::Review(s) => (s, "review"),
        BlessCommand::Accept(s) => (s, "accept"),
        BlessCommand::Reject(s) => (s, "reject"),
    };
    let dir = super::cases_dir(settings, sel.cases.clone())?;
    let files = pending(&dir, &sel.filters)?;
    if files.is_empty() {
        eprintln!(
            "authlab: no pending file under {} (`authlab run --bless` writes them)",
            dir.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut failed = false;
    let ask = what == "review" && std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let mut lines = std::io::stdin().lock().lines();
    for (case, new) in &files {
        let outcome = match what {
            "accept" => accept(case, new).map(|_| "accepted"),
            "reject" => reject(new).map(|_| "rejected"),
            _ => {
                let old = std::fs::read_to_string(case).unwrap_or_default();
                let text = std::fs::read_to_string(new)
                    .with_context(|| format!("reading {}", new.display()))?;
                out!("{}", diff(case, &old, &text));
                if !ask {
                    continue;
                }
                eprint!("accept (a), reject (r) or skip (s) {}? ", case.display());
                let _ = std::io::stderr().flush();
                match lines.next().transpose()?.as_deref().map(str::trim) {
                    Some("a") => accept(case, new).map(|_| "accepted"),
                    Some("r") => reject(new).map(|_| "rejected"),
                    _ => Ok("skipped"),
                }
            }
        };
        match outcome {
            Ok(done) => eprintln!("authlab: {done} {}", case.display()),
            Err(e) => {
                failed = true;
                eprintln!("authlab: {e:#}");
            }
        }
    }
    if what == "review" && !ask {
        eprintln!(
            "authlab: {} pending file(s) shown; `authlab bless accept [FILTER]` takes them, `authlab bless reject [FILTER]` drops them",
            files.len()
        );
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
