//! Reporting: progress lines, the summary table, JUnit XML and per-trial artifacts.

pub mod artifacts;
pub mod junit;
pub mod summary;
