//! `authlab report`: matrix reports of several runs merged into one.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Result;

use crate::report;

pub(super) fn merge_reports(
    inputs: &[PathBuf],
    out: &std::path::Path,
    mixed: bool,
) -> Result<ExitCode> {
    let parts = inputs
        .iter()
        .map(|p| report::matrix::Matrix::read(p))
        .collect::<Result<Vec<_>, _>>()?;
    let merged = report::matrix::Matrix::merge(parts, mixed)?;
    for why in &merged.mixed {
        eprintln!("authlab: warning: merged anyway (--mixed): {why}");
    }
    let files = merged.write(out)?;
    eprintln!(
        "authlab: {} runs, {}",
        merged.runs.len(),
        merged.counts().sentence()
    );
    for f in files {
        outln!("{}", f.display());
    }
    Ok(ExitCode::SUCCESS)
}
