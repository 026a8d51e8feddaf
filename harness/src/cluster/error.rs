//! What a failed call to a cluster's API says: the operation and its object (`deleting
//! ServiceAccount default/web`), with the client's error as its source.

/// A call to a cluster's API that failed.
#[derive(Debug, thiserror::Error)]
#[error("{op}")]
pub struct ClusterError {
    /// What was done to which object (`applying Secret vault/reviewer`).
    pub op: String,
    /// The API server's answer, or why there was none.
    #[source]
    pub source: kube::Error,
}

/// Names the operation of a failed API call.
pub(crate) trait Op<T> {
    /// The error as a [`ClusterError`] for the operation `op` says.
    fn op(self, op: impl FnOnce() -> String) -> Result<T, ClusterError>;
}

impl<T> Op<T> for Result<T, kube::Error> {
    fn op(self, op: impl FnOnce() -> String) -> Result<T, ClusterError> {
        self.map_err(|source| ClusterError { op: op(), source })
    }
}
