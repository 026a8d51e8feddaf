//! Evidence: what a trial observed — client answers, the login's audit entry, the mount's
//! server-log lines, the requests the cluster answered, what ESO reported, and the diagnosis
//! of all that — and the readers that slice audit and server logs per trial (by mount path and
//! accessor) so parallel trials never see each other's entries.

mod audit;
mod eso;
mod serverlog;
mod wait;

pub use audit::{AuditEntry, audit_for_mount, parse_audit_log};
pub use eso::{EsoCondition, EsoEvidence, EsoObserved};
pub use serverlog::{
    LOG_FORMATS, LogLine, log_for_accessor, parse_any_server_log, parse_server_log,
};
pub use wait::wait_for;

use crate::{diagnose::Finding, sim::RequestRecord};

/// The text of the file at `path` from byte `offset` on (empty when it cannot be read): what a
/// log gained since `offset`.
pub fn read_from(path: &std::path::Path, offset: u64) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let mut buf = Vec::new();
    if let Ok(mut f) = std::fs::File::open(path)
        && f.seek(SeekFrom::Start(offset)).is_ok()
    {
        let _ = f.read_to_end(&mut buf);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

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
