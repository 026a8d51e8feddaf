//! External Secrets Operator as a client of the server under test (Kind clusters only).
//!
//! ESO is installed once per lab with the `helm` CLI, given a secret store that logs in with the
//! case's client service account and audiences (ESO requests that token itself), and asked to
//! sync one secret of the trial's KV mount. What it reports — the ExternalSecret's `Ready`
//! condition, the synced Secret and the controller's reconcile error — is checked like the
//! server's own evidence.

pub mod install;
pub mod observe;
pub mod render;

/// Namespace ESO is installed into.
pub const NAMESPACE: &str = "external-secrets";
