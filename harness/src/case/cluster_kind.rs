//! The kinds of cluster a lab runs against, as case files and flags name them.

/// The kind of cluster a lab runs against.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    clap::ValueEnum,
    serde::Deserialize,
    serde::Serialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ClusterKind {
    /// The built-in sim cluster.
    Sim,
    /// A Kind cluster created (or reused) with the `kind` CLI.
    Kind,
    /// An existing cluster from a kubeconfig.
    Kubeconfig,
    /// A real kube-apiserver (with etcd) that authlab starts on this machine.
    Apiserver,
}

impl ClusterKind {
    /// True for the built-in sim.
    pub fn is_sim(self) -> bool {
        self == ClusterKind::Sim
    }

    /// True for a cluster trials share (Kind, kubeconfig): they take turns there by object.
    pub fn is_shared(self) -> bool {
        matches!(self, ClusterKind::Kind | ClusterKind::Kubeconfig)
    }

    /// True where authlab owns the cluster's signing key and flags (the sim, an API server
    /// it starts, and Kind, whose clusters it creates with the case's settings and whose
    /// control-plane node holds the key): hand-made tokens and `cluster.settings` work there.
    pub fn owns_keys(self) -> bool {
        matches!(
            self,
            ClusterKind::Sim | ClusterKind::Apiserver | ClusterKind::Kind
        )
    }

    /// The name used in case files and flags.
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterKind::Sim => "sim",
            ClusterKind::Kind => "kind",
            ClusterKind::Kubeconfig => "kubeconfig",
            ClusterKind::Apiserver => "apiserver",
        }
    }
}

impl std::str::FromStr for ClusterKind {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "sim" => Ok(ClusterKind::Sim),
            "kind" => Ok(ClusterKind::Kind),
            "kubeconfig" => Ok(ClusterKind::Kubeconfig),
            "apiserver" => Ok(ClusterKind::Apiserver),
            other => anyhow::bail!(
                "unknown cluster `{other}`: expected `sim`, `kind`, `kubeconfig` or `apiserver` (flag --cluster / env AUTHLAB_CLUSTER)"
            ),
        }
    }
}
