//! Reporting: progress lines, the summary table, JUnit XML, per-trial artifacts, and the
//! matrix report (observed signatures, differences between servers, Markdown and HTML).

pub mod artifacts;
mod build;
pub mod catalog_yaml;
pub mod changes;
pub mod difference;
pub mod files;
pub mod html;
pub mod junit;
pub mod markdown;
pub mod matrix;
pub mod progress;
pub mod shown;
/// Observed signatures (below the trial, which observes them; named here too).
pub use crate::signature;
pub mod summary;
mod write;
