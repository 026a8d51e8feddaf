//! Evidence: what a trial observed — client answers, the login's audit entry, the mount's
//! server-log lines (read by [`crate::logs`]), the requests the cluster answered, what ESO
//! reported, and the diagnosis of all that.

mod eso;
mod wait;

pub use eso::{EsoCondition, EsoEvidence, EsoObserved};
pub use wait::wait_for;

use crate::{
    diagnose::Finding,
    logs::{AuditEntry, LogLine},
    sim::RequestRecord,
};

/// What a client request returned, reduced to what expectations look at.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Observed {
    /// HTTP status.
    pub status: u16,
    /// The `errors` array.
    pub errors: Vec<String>,
    /// The `warnings` array.
    pub warnings: Vec<String>,
}

impl From<&crate::vault::ApiResponse> for Observed {
    fn from(r: &crate::vault::ApiResponse) -> Self {
        Observed {
            status: r.status,
            errors: r.errors(),
            warnings: r.body["warnings"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|w| {
                            w.as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| w.to_string())
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// What a successful login produced.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct AuthObserved {
    /// `auth.policies`.
    pub policies: Vec<String>,
    /// `auth.metadata`.
    pub metadata: std::collections::BTreeMap<String, String>,
    /// The entity alias of this mount, when the entity could be read.
    pub alias_name: Option<String>,
}

impl Evidence {
    /// The requests answered during the login by `cluster` (`None`: every cluster of the
    /// trial, the trial's own first), or `None` when they were not recorded.
    pub fn requests_of(
        &self,
        cluster: Option<crate::case::model::TokenCluster>,
    ) -> Option<Vec<RequestRecord>> {
        use crate::case::model::TokenCluster;
        let this = self
            .cluster_requests_recorded
            .then(|| self.cluster_requests.clone());
        match cluster {
            Some(TokenCluster::This) => this,
            Some(TokenCluster::Other) => {
                Some(self.other_cluster_requests.clone().unwrap_or_default())
            }
            None => match (this, &self.other_cluster_requests) {
                (Some(mut all), Some(other)) => {
                    all.extend(other.iter().cloned());
                    Some(all)
                }
                (this, None) => this,
                // The second cluster's requests alone would say nothing of the first's.
                (None, Some(_)) => None,
            },
        }
    }

    /// Which cluster answered every request of the login, when the trial has two and only
    /// one of them was asked.
    pub fn only_asked(&self) -> Option<crate::case::model::TokenCluster> {
        use crate::case::model::TokenCluster;
        let other = self.other_cluster_requests.as_ref()?;
        if !self.cluster_requests_recorded {
            return None;
        }
        match (self.cluster_requests.is_empty(), other.is_empty()) {
            (false, true) => Some(TokenCluster::This),
            (true, false) => Some(TokenCluster::Other),
            _ => None,
        }
    }
}

/// Everything a trial collected, judged as a whole by [`crate::verdict::judge`].
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    /// Config write response.
    pub config: Option<Observed>,
    /// Role write response.
    pub role: Option<Observed>,
    /// Login response.
    pub login: Option<Observed>,
    /// Audit response entry of the login.
    pub audit_login: Option<AuditEntry>,
    /// What a successful login produced.
    pub auth: Option<AuthObserved>,
    /// Server-log lines of the trial's mount.
    pub server_log: Vec<LogLine>,
    /// Cluster requests answered during the login (see `cluster_requests_recorded`).
    pub cluster_requests: Vec<RequestRecord>,
    /// Requests the trial's second cluster (`cluster.other`) answered during the login; `None`
    /// when the trial has no second cluster (it is a sim: always recorded).
    pub other_cluster_requests: Option<Vec<RequestRecord>>,
    /// For each of the case's `cluster_objects`, how many objects matched after login.
    pub cluster_objects: Vec<usize>,
    /// Whether the cluster records the requests it answers (only the sim does).
    pub cluster_requests_recorded: bool,
    /// Responses to follow-up steps.
    pub steps: Vec<Observed>,
    /// What External Secrets Operator reported (cases with an `eso` client).
    pub eso: EsoEvidence,
    /// Ranked causes `authlab diagnose` names from the rest of this evidence.
    pub diagnosis: Vec<Finding>,
}
