//! Manifests: files of one or more YAML documents, read into JSON objects.

use std::path::Path;

use anyhow::{Context, Result, anyhow};

/// Reads a manifest file (one or more YAML documents) into JSON objects.
pub fn read_manifest(path: &Path) -> Result<Vec<serde_json::Value>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading manifest {}", path.display()))?;
    parse_documents(&text).with_context(|| format!("parsing manifest {}", path.display()))
}

/// Parses multi-document YAML into JSON values, skipping empty documents.
pub fn parse_documents(text: &str) -> Result<Vec<serde_json::Value>> {
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(text).map_err(|e| anyhow!("{e}"))?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}
