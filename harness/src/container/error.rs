//! What a failed call to the Docker engine says: the operation and its subject (`creating
//! container authlab-r1-t3`), with the engine's own error as its source.

/// A Docker engine call that failed.
#[derive(Debug, thiserror::Error)]
#[error("{op}")]
pub struct DockerError {
    /// What was done to which object (`inspecting network authlab-r1`).
    pub op: String,
    /// The engine's answer.
    #[source]
    pub source: bollard::errors::Error,
}

/// Names the operation of a failed engine call.
pub(crate) trait Op<T> {
    /// The error as a [`DockerError`] for the operation `op` says.
    fn op(self, op: impl FnOnce() -> String) -> Result<T, DockerError>;
}

impl<T> Op<T> for Result<T, bollard::errors::Error> {
    fn op(self, op: impl FnOnce() -> String) -> Result<T, DockerError> {
        self.map_err(|source| DockerError { op: op(), source })
    }
}
