//! Matrix expansion: case × server (flavour/version) → trials with stable, sorted names.

use std::sync::Arc;

pub use super::cluster_kind::ClusterKind;
use super::load::LoadedCase;
use crate::server::ServerSpec;

/// One case run against one server on one cluster. Trials on Kind or a kubeconfig cluster carry
/// the cluster kind as a last name segment (`...::openbao-2.7.2::kind`).
#[derive(Debug, Clone)]
pub struct Trial {
    /// `<case name>::<flavour>-<version>`.
    pub name: String,
    /// The case.
    pub case: Arc<LoadedCase>,
    /// The server it runs against.
    pub server: ServerSpec,
    /// The cluster kind.
    pub cluster: ClusterKind,
    /// Set when the case does not apply here; the trial is reported ignored with this reason.
    pub not_applicable: Option<String>,
}

/// The trial name for a case and server.
pub fn trial_name(case_name: &str, server: &ServerSpec) -> String {
    format!("{case_name}::{}-{}", server.flavour, server.version)
}

/// Expands cases over servers, sorted by name.
pub fn expand(
    cases: &[Arc<LoadedCase>],
    servers: &[ServerSpec],
    cluster: ClusterKind,
) -> Vec<Trial> {
    let mut out = Vec::new();
    for case in cases {
        for server in servers {
            let flavour = server.flavour.to_string();
            let c = &case.case;
            let not_applicable = if !c.applies_to_flavour(server.flavour) {
                Some(format!(
                    "not applicable to {flavour}: {}",
                    c.applies
                        .reason
                        .as_deref()
                        .unwrap_or("the case lists other flavours")
                ))
            } else if !c.applies.clusters.is_empty() && !c.applies.clusters.contains(&cluster) {
                Some(format!(
                    "needs cluster {}: {}",
                    c.applies
                        .clusters
                        .iter()
                        .map(|k| k.as_str())
                        .collect::<Vec<_>>()
                        .join("/"),
                    c.applies
                        .reason
                        .as_deref()
                        .unwrap_or("the case lists other clusters")
                ))
            } else if c.topology == super::model::Topology::Inside
                && cluster == ClusterKind::Kubeconfig
                && (case.uses("pod.jwt")
                    || c.before_login.iter().any(|a| {
                        matches!(
                            a,
                            super::model::ClusterAction::ReplaceServerPod {}
                                | super::model::ClusterAction::RotateServerToken {}
                        )
                    }))
            {
                Some("the server pod's token file and storage are on its node, which authlab reaches on Kind only (a kubeconfig cluster's nodes are not authlab's)".into())
            } else {
                None
            };
            let suffix = match cluster {
                ClusterKind::Sim => String::new(),
                other => format!("::{}", other.as_str()),
            };
            out.push(Trial {
                name: format!("{}{suffix}", trial_name(&case.name, server)),
                case: case.clone(),
                server: server.clone(),
                cluster,
                not_applicable,
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> Vec<Arc<LoadedCase>> {
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../cases");
        crate::case::load::load_dir(&dir)
            .unwrap_or_else(|e| panic!("{} invalid case files", e.len()))
            .into_iter()
            .map(Arc::new)
            .collect()
    }

    /// Kind is the platform users run: every shipped case applies there (ESO's only need
    /// Kind's helm chart, which is checked when they run).
    #[test]
    fn every_shipped_case_applies_on_kind() {
        let servers: Vec<ServerSpec> = vec!["openbao:2.7.2".parse().unwrap()];
        let trials = expand(&shipped(), &servers, ClusterKind::Kind);
        let not: Vec<String> = trials
            .iter()
            .filter_map(|t| {
                t.not_applicable
                    .as_ref()
                    .map(|why| format!("{}: {why}", t.name))
            })
            .collect();
        assert!(
            not.is_empty(),
            "not applicable on Kind:\n{}",
            not.join("\n")
        );
    }

    /// On a kubeconfig cluster the inside topology runs too, except what needs the node.
    #[test]
    fn inside_runs_on_a_kubeconfig_cluster_except_what_needs_the_node() {
        let servers: Vec<ServerSpec> = vec!["openbao:2.7.2".parse().unwrap()];
        let trials = expand(&shipped(), &servers, ClusterKind::Kubeconfig);
        let inside: Vec<&Trial> = trials
            .iter()
            .filter(|t| {
                t.case.case.topology == super::super::model::Topology::Inside
                    && t.case.case.applies.clusters.is_empty()
            })
            .collect();
        assert!(inside.iter().any(|t| t.not_applicable.is_none()));
        for t in inside {
            let needs_node = t.case.uses("pod.jwt") || !t.case.case.before_login.is_empty();
            assert_eq!(
                t.not_applicable.is_some(),
                needs_node,
                "{}: {:?}",
                t.name,
                t.not_applicable
            );
        }
    }
}
