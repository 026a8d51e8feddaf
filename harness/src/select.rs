//! What a run selects — servers, cluster, runtime, the cases and artifacts directories — from
//! flags, else the settings, else the defaults.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::{
    case::matrix::ClusterKind,
    lab::Runtime,
    server::{DEFAULT_VAULT_VERSION, Flavour, OPENBAO_VERSIONS, ServerSpec},
    settings::Settings,
};

/// The default case directory: `AUTHLAB_CASES`, else `./cases` when it exists, else the
/// shipped catalog (see [`crate::shipped`]).
pub fn default_cases_dir(s: &Settings) -> Result<PathBuf> {
    let shipped = crate::shipped::locate(s);
    if let Some(d) = &s.cases {
        return Ok(d.clone());
    }
    let here = PathBuf::from("cases");
    if here.is_dir() {
        return Ok(here);
    }
    Ok(shipped?.join("cases"))
}

/// Parses a comma list of server specs (`openbao:2.7.2,vault:1.21.1`).
pub fn parse_servers(list: &str) -> Result<Vec<ServerSpec>> {
    let mut out = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let spec: ServerSpec = item.parse().with_context(|| {
            format!("server `{item}` in the server list: write flavour:version, e.g. openbao:2.7.2 or vault:{DEFAULT_VAULT_VERSION}")
        })?;
        if !out.contains(&spec) {
            out.push(spec);
        }
    }
    if out.is_empty() {
        bail!("the server list is empty: give at least one, e.g. openbao:2.7.2");
    }
    Ok(out)
}

/// Servers selected by `--servers`, then `AUTHLAB_SERVERS`, then `OPENBAO_VERSION` /
/// `VAULT_VERSION`, else every supported OpenBao version.
pub fn servers(s: &Settings, flag: Option<&str>) -> Result<Vec<ServerSpec>> {
    if let Some(f) = flag {
        return parse_servers(f);
    }
    if let Some(list) = &s.servers {
        return parse_servers(list).context("reading AUTHLAB_SERVERS");
    }
    let mut out = Vec::new();
    if let Some(v) = &s.openbao_version {
        out.push(ServerSpec {
            flavour: Flavour::OpenBao,
            version: v.clone(),
        });
    }
    if let Some(v) = &s.vault_version {
        out.push(ServerSpec {
            flavour: Flavour::Vault,
            version: v.clone(),
        });
    }
    if !out.is_empty() {
        return Ok(out);
    }
    Ok(OPENBAO_VERSIONS
        .iter()
        .map(|v| ServerSpec {
            flavour: Flavour::OpenBao,
            version: (*v).to_string(),
        })
        .collect())
}

/// The cluster kind from a flag or `AUTHLAB_CLUSTER` (default sim).
pub fn cluster(s: &Settings, flag: Option<ClusterKind>) -> Result<ClusterKind> {
    match (flag, &s.cluster) {
        (Some(k), _) => Ok(k),
        (None, Some(s)) => s.parse(),
        (None, None) => Ok(ClusterKind::Sim),
    }
}

/// The artifacts directory: `AUTHLAB_ARTIFACTS`, else `authlab-artifacts` in the current
/// directory.
pub fn artifacts_dir(s: &Settings) -> PathBuf {
    s.artifacts
        .clone()
        .unwrap_or_else(|| PathBuf::from("authlab-artifacts"))
}

/// The server runtime from a flag or `AUTHLAB_RUNTIME` (default process).
pub fn runtime(s: &Settings, flag: Option<Runtime>) -> Result<Runtime> {
    match (flag, &s.runtime) {
        (Some(r), _) => Ok(r),
        (None, Some(s)) => s.parse(),
        (None, None) => Ok(Runtime::Process),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_from_flags_lists_and_versions() {
        let s = Settings::from_lookup(|k| match k {
            "OPENBAO_VERSION" => Some("2.7.2".into()),
            "VAULT_VERSION" => Some("1.21.1".into()),
            _ => None,
        });
        let chosen = servers(&s, None).unwrap();
        assert_eq!(
            chosen.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            ["openbao:2.7.2", "vault:1.21.1"]
        );
        let flag = servers(&s, Some("openbao:2.6.1,openbao:2.6.1")).unwrap();
        assert_eq!(flag.len(), 1);
        assert!(servers(&s, Some(",")).is_err());
    }
}
