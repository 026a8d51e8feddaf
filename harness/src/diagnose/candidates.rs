//! What a bare client error can mean: for `permission denied` from a Kubernetes or JWT login,
//! the causes that produce it, most often reported first, each with the one command that tells
//! it apart from the others.

use serde::Serialize;

use super::Cause;

/// One cause a client error can have.
#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    /// The cause.
    pub cause: Cause,
    /// What is wrong when it is this.
    pub what: &'static str,
    /// The command (or step) that tells it apart.
    pub check: &'static str,
}

/// The causes of a Kubernetes-auth `permission denied`, most often reported first (the server
/// hides the reason from the client; its debug log and the audit entry keep it).
const PERMISSION_DENIED: &[(Cause, &str, &str)] = &[
    (
        Cause::ReviewerRbac,
        "the account that calls TokenReview (the reviewer JWT's, or without one each client's own) lacks system:auth-delegator",
        "kubectl auth can-i create tokenreviews.authentication.k8s.io --as=system:serviceaccount:<namespace>:<reviewer or client service account>",
    ),
    (
        Cause::SaName,
        "the token's service account is not in the role's bound_service_account_names",
        "authlab explain <jwt> beside `vault read auth/<mount>/role/<role>` (or authlab diagnose --jwt @token --role role.json)",
    ),
    (
        Cause::Namespace,
        "the token's namespace is not in the role's bound_service_account_namespaces",
        "authlab diagnose --jwt @token --role role.json (role.json: vault read -format=json auth/<mount>/role/<role>)",
    ),
    (
        Cause::RoleAudience,
        "the role's audience is not among the token's audiences",
        "authlab explain <jwt> (aud) beside the role's audience",
    ),
    (
        Cause::ReviewerToken,
        "the reviewer JWT expired (kubectl create token lasts 1 h) or belongs to another cluster",
        "authlab explain <token_reviewer_jwt> (exp, iss); kubectl create token <sa> --duration=… or a long-lived token Secret",
    ),
    (
        Cause::BearerAudience,
        "without a reviewer JWT the client's token is the TokenReview bearer and lacks the API audience",
        "authlab diagnose --jwt @token --config config.json (config.json: vault read -format=json auth/<mount>/config)",
    ),
    (
        Cause::WrongCa,
        "kubernetes_ca_cert does not sign the API server's certificate",
        "authlab diagnose --addr $VAULT_ADDR --mount <mount> --probe (calls <kubernetes_host>/version with the configured CA)",
    ),
    (
        Cause::Unreachable,
        "the server cannot reach kubernetes_host",
        "authlab diagnose --addr $VAULT_ADDR --mount <mount> --probe, from where the server runs",
    ),
    (
        Cause::ServiceAccountGone,
        "the service account (or the pod the token is bound to) was deleted or re-created after the token was issued",
        "kubectl get sa <name> -n <namespace> -o jsonpath='{.metadata.uid}' against the token's kubernetes.io.serviceaccount.uid (authlab explain <jwt>)",
    ),
    (
        Cause::ClientTokenTime,
        "the client's token expired or is not yet valid",
        "authlab explain <jwt> (exp, nbf against now)",
    ),
    (
        Cause::ForeignToken,
        "the token was issued by another cluster (or signed by a rotated key)",
        "authlab explain <jwt> (iss) against kubectl get --raw /.well-known/openid-configuration",
    ),
];

/// The step that names the cause exactly, whatever it is.
pub const DEBUG_LOG: &str = "turn on the server's debug log (`vault write sys/loggers level=debug`; only the mount's: `vault write sys/loggers/auth.kubernetes.<mount accessor> level=debug`, names as `vault read sys/loggers` lists them; or log_level = \"debug\" in the server config), log in again, and give the log: authlab diagnose --server-log <file>";

/// The candidates for a client error, if it is one this knows.
pub fn for_client_error(error: &str) -> Vec<Candidate> {
    if !error.contains("permission denied") {
        return Vec::new();
    }
    PERMISSION_DENIED
        .iter()
        .map(|(cause, what, check)| Candidate {
            cause: *cause,
            what,
            check,
        })
        .collect()
}
