//! Turning what a user has — a login answer, an audit entry, the server's log, the JWT, the
//! mount's config and role — into ranked causes with fixes.
//!
//! The rules key on the exact texts real OpenBao/Vault servers and API servers produce (see the
//! case catalog, which asserts each of them), and on comparisons of the JWT with the role and
//! config that need no server text (`checks`). A cause is named only when the evidence
//! determines it (score [`DETERMINED`] or more); otherwise the report says what is missing and,
//! for a bare client error, which causes produce it (`candidates`).

mod candidates;
mod checks;
pub mod inputs;

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

pub use candidates::Candidate;

use crate::jwt::DecodedJwt;

/// The score from which a finding determines the cause.
pub const DETERMINED: u8 = 80;

/// The evidence a diagnosis can use; every part is optional.
#[derive(Debug, Default, Clone)]
pub struct Input {
    /// Auth method of the mount (`kubernetes` or `jwt`), when known.
    pub method: Option<String>,
    /// The client's JWT, decoded.
    pub jwt: Option<DecodedJwt>,
    /// The client's JWT as given (used only to reproduce the server's TokenReview).
    pub jwt_text: Option<String>,
    /// Why the token given as the client's JWT is not one.
    pub jwt_error: Option<String>,
    /// The role's name, when known.
    pub role_name: Option<String>,
    /// Reading the role answered 404.
    pub role_missing: bool,
    /// A server log was given (even if nothing in it was about the login).
    pub log_given: bool,
    /// An audit log was given.
    pub audit_given: bool,
    /// The role as written or read back.
    pub role: Option<Value>,
    /// The mount's config as written or read back (`token_reviewer_jwt_set` counts as set).
    pub config: Option<Value>,
    /// Status and first error of the config write, if it failed.
    pub config_error: Option<(u16, String)>,
    /// Status and first error of the login.
    pub login: Option<(u16, String)>,
    /// Audit `error` / `response.data.error` of the login.
    pub audit_error: Option<String>,
    /// Relevant server-log texts (messages with their `err`/`error` values).
    pub log: Vec<String>,
    /// Follow-up requests after a successful login: status and first error.
    pub steps: Vec<(u16, String)>,
    /// The time token times are judged at (seconds since the epoch): the login's, when an
    /// audit entry gave it, else now.
    pub now: u64,
    /// `now` is the login's time (from the audit entry).
    pub at_login: bool,
    /// The server runs in a pod of the cluster (then, with no reviewer JWT and the local token
    /// not disabled, its own pod token is the TokenReview's bearer), when known.
    pub server_in_pod: Option<bool>,
}

/// A cause `diagnose` can name (what case files name in `expect.diagnosis`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Deserialize,
    serde::Serialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Cause {
    /// No CA configured where the server needs one.
    MissingCa,
    /// OIDC discovery of the issuer is not allowed anonymously.
    DiscoveryRbac,
    /// The discovered issuer differs from the configured one.
    DiscoveryIssuer,
    /// The configured CA does not sign the API server's certificate.
    WrongCa,
    /// The API server cannot be reached from the server.
    Unreachable,
    /// The reviewer may not create TokenReviews (no system:auth-delegator).
    ReviewerRbac,
    /// The API server rejects the reviewer token.
    ReviewerToken,
    /// The client's service account (or bound pod) is gone or re-created.
    ServiceAccountGone,
    /// The client token lacks the API audience it is reviewed with as a bearer.
    BearerAudience,
    /// The token was invalidated (its secret or object was deleted).
    TokenInvalidated,
    /// The token was signed by a key this cluster does not publish.
    ForeignToken,
    /// The TokenReview's audiences do not intersect the token's.
    TokenreviewAudience,
    /// The service-account name is not bound by the role.
    SaName,
    /// The namespace is not bound by the role.
    Namespace,
    /// The token's audiences do not include the role's bound audiences.
    Audience,
    /// The token's audiences do not include the role's audience.
    RoleAudience,
    /// The client token is expired or not yet valid.
    ClientTokenTime,
    /// The role does not exist.
    UnknownRole,
    /// The token is not a JWT.
    MalformedToken,
    /// The token's issuer is not the configured one.
    Issuer,
    /// The token's subject is not bound by the role.
    Subject,
    /// The login succeeded but the policy does not allow the request.
    Policy,
    /// A JWT login against a role of role_type `oidc`.
    RoleType,
    /// The token lacks the role's user_claim.
    UserClaim,
    /// kubernetes_host names the API server by an address its certificate does not hold.
    HostName,
}

impl Cause {
    /// Every cause, in declaration order.
    pub const ALL: &[Cause] = &[
        Cause::MissingCa,
        Cause::DiscoveryRbac,
        Cause::DiscoveryIssuer,
        Cause::WrongCa,
        Cause::Unreachable,
        Cause::ReviewerRbac,
        Cause::ReviewerToken,
        Cause::ServiceAccountGone,
        Cause::BearerAudience,
        Cause::TokenInvalidated,
        Cause::ForeignToken,
        Cause::TokenreviewAudience,
        Cause::SaName,
        Cause::Namespace,
        Cause::Audience,
        Cause::RoleAudience,
        Cause::ClientTokenTime,
        Cause::UnknownRole,
        Cause::MalformedToken,
        Cause::Issuer,
        Cause::Subject,
        Cause::Policy,
        Cause::RoleType,
        Cause::UserClaim,
        Cause::HostName,
    ];

    /// The stable identifier (`wrong-ca`).
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::MissingCa => "missing-ca",
            Cause::DiscoveryRbac => "discovery-rbac",
            Cause::DiscoveryIssuer => "discovery-issuer",
            Cause::WrongCa => "wrong-ca",
            Cause::Unreachable => "unreachable",
            Cause::ReviewerRbac => "reviewer-rbac",
            Cause::ReviewerToken => "reviewer-token",
            Cause::ServiceAccountGone => "service-account-gone",
            Cause::BearerAudience => "bearer-audience",
            Cause::TokenInvalidated => "token-invalidated",
            Cause::ForeignToken => "foreign-token",
            Cause::TokenreviewAudience => "tokenreview-audience",
            Cause::SaName => "sa-name",
            Cause::Namespace => "namespace",
            Cause::Audience => "audience",
            Cause::RoleAudience => "role-audience",
            Cause::ClientTokenTime => "client-token-time",
            Cause::UnknownRole => "unknown-role",
            Cause::MalformedToken => "malformed-token",
            Cause::Issuer => "issuer",
            Cause::Subject => "subject",
            Cause::Policy => "policy",
            Cause::RoleType => "role-type",
            Cause::UserClaim => "user-claim",
            Cause::HostName => "host-name",
        }
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for Cause {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// One possible cause.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable identifier (what case files name in `expect.diagnosis`).
    pub cause: Cause,
    /// One-line statement of the cause.
    pub title: String,
    /// The evidence it rests on.
    pub evidence: String,
    /// How to fix it.
    pub fix: String,
    /// Higher is more likely.
    pub score: u8,
}

const API_AUDIENCE: &str = "https://kubernetes.default.svc.cluster.local";

fn strs(v: &Value) -> Vec<String> {
    match v {
        Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        Value::String(s) => s
            .split(',')
            .map(|x| x.trim().to_string())
            .filter(|x| !x.is_empty())
            .collect(),
        _ => Vec::new(),
    }
}

impl Input {
    /// The error the client saw: the login's, else the audit entry's ("" when neither).
    pub fn client_error(&self) -> &str {
        self.login
            .as_ref()
            .map(|(_, e)| e.as_str())
            .or(self.audit_error.as_deref())
            .unwrap_or("")
    }

    fn all_errors(&self) -> Vec<&str> {
        let mut v: Vec<&str> = Vec::new();
        if let Some((_, e)) = &self.config_error {
            v.push(e);
        }
        if let Some((_, e)) = &self.login {
            v.push(e);
        }
        if let Some(e) = &self.audit_error {
            v.push(e);
        }
        v.extend(self.log.iter().map(String::as_str));
        v
    }

    fn any(&self, needle: &str) -> Option<&str> {
        self.all_errors().into_iter().find(|e| e.contains(needle))
    }

    fn reviewer_jwt_set(&self) -> bool {
        self.config.as_ref().is_some_and(|c| {
            c["token_reviewer_jwt_set"].as_bool() == Some(true)
                || c["token_reviewer_jwt"]
                    .as_str()
                    .is_some_and(|s| !s.is_empty())
        })
    }

    /// In a pod, with no reviewer JWT and `disable_local_ca_jwt` not set, the server reviews with
    /// its own pod token.
    fn local_token_is_bearer(&self) -> bool {
        self.server_in_pod == Some(true)
            && self
                .config
                .as_ref()
                .is_some_and(|c| c["disable_local_ca_jwt"].as_bool() != Some(true))
    }

    fn jwt_sa(&self) -> Option<(String, String)> {
        self.jwt.as_ref().and_then(DecodedJwt::service_account)
    }
}

/// A pusher of findings: `add(cause, score, title, evidence, fix)`.
pub(crate) fn adder(out: &mut Vec<Finding>) -> impl FnMut(Cause, u8, String, String, &str) + '_ {
    move |cause, score, title, evidence, fix| {
        out.push(Finding {
            cause,
            title,
            evidence,
            fix: fix.to_string(),
            score,
        })
    }
}

/// Ranks the likely causes, most likely first.
pub fn diagnose(input: &Input) -> Vec<Finding> {
    let mut out: Vec<Finding> = Vec::new();
    let mut add = adder(&mut out);

    // Config-write failures.
    if let Some(e) = input
        .any("kubernetes_ca_cert must be given")
        .or_else(|| input.any("serviceaccount/ca.crt: no such file"))
    {
        add(
            Cause::MissingCa,
            95,
            "the config has disable_local_ca_jwt=true but no kubernetes_ca_cert".into(),
            e.into(),
            "give kubernetes_ca_cert: the cluster CA (kubeconfig certificate-authority-data, base64-decoded, or ca.crt of any service-account token Secret)",
        );
    }
    if let Some(e) = input
        .any("cannot get path \\\"/.well-known/openid-configuration")
        .or_else(|| input.any("cannot get path \"/.well-known/openid-configuration"))
        .or_else(|| input.any("cannot get path \\\"/openid/v1/jwks"))
        .or_else(|| input.any("cannot get path \"/openid/v1/jwks"))
    {
        add(
            Cause::DiscoveryRbac,
            95,
            "the API server forbids anonymous access to service-account issuer discovery".into(),
            e.into(),
            "bind ClusterRole system:service-account-issuer-discovery to User system:anonymous (or Group system:unauthenticated), e.g. manifests/rbac/anonymous-issuer-discovery.yaml",
        );
    }
    if let Some(e) = input.any("issuer did not match the returned issuer") {
        add(
            Cause::DiscoveryIssuer,
            95,
            "the discovery URL is not the issuer the discovery document names".into(),
            e.into(),
            "set oidc_discovery_url to the cluster's issuer URL (reachable from the server), or use jwks_url / jwt_validation_pubkeys with bound_issuer",
        );
    }
    if input.any("error checking oidc discovery URL").is_some()
        && input.any("issuer did not match").is_none()
        && input.any("cannot get path").is_none()
        && input.any("x509").is_none()
    {
        add(
            Cause::DiscoveryIssuer,
            40,
            "the discovery check failed (older servers give no detail)".into(),
            input
                .any("error checking oidc discovery URL")
                .unwrap_or_default()
                .into(),
            "check that the discovery URL answers anonymously and that its issuer equals the URL; the server's ERROR log line has the detail",
        );
    }

    // TLS, reachability.
    if let Some(e) = input
        .any("x509: certificate is valid for")
        .filter(|e| e.contains(", not "))
    {
        add(
            Cause::HostName,
            96,
            "kubernetes_host names the API server by an address its certificate does not hold"
                .into(),
            e.into(),
            "set kubernetes_host to a name or address in the API server's certificate (kubectl config view --raw shows the one kubectl uses; openssl s_client -connect <host:port> </dev/null | openssl x509 -noout -ext subjectAltName lists them)",
        );
    }
    if let Some(e) = input
        .any("certificate signed by unknown authority")
        .or_else(|| {
            input
                .any("x509:")
                .filter(|e| !e.contains("x509: certificate is valid for"))
        })
    {
        add(
            Cause::WrongCa,
            95,
            "the CA the server was given did not sign the API server's certificate".into(),
            e.into(),
            "set kubernetes_ca_cert (or jwks_ca_pem / oidc_discovery_ca_pem) to the cluster's CA",
        );
    }
    for needle in [
        "connection refused",
        "connection reset by peer",
        "TLS handshake timeout",
        "no such host",
        "i/o timeout",
        "context canceled",
        "context deadline exceeded",
        "no route to host",
    ] {
        if let Some(e) = input.any(needle) {
            add(
                Cause::Unreachable,
                90,
                "the server cannot reach the API server at kubernetes_host".into(),
                e.into(),
                "set kubernetes_host to an address reachable from the server (outside the cluster: the API server's external address, not kubernetes.default.svc) and check firewalls/proxies",
            );
            break;
        }
    }

    // TokenReview answers.
    if let Some(e) = input
        .any("cannot create resource \\\"tokenreviews\\\"")
        .or_else(|| input.any("cannot create resource \"tokenreviews\""))
    {
        let user = e
            .split("User \\\"")
            .nth(1)
            .or_else(|| e.split("User \"").nth(1))
            .and_then(|r| r.split(['\\', '"']).next())
            .unwrap_or("the caller");
        let fix = if input.reviewer_jwt_set() {
            "bind the reviewer JWT's service account to ClusterRole system:auth-delegator"
        } else {
            "without token_reviewer_jwt each client's own token calls TokenReview: bind the client's service account to system:auth-delegator, or configure token_reviewer_jwt with a token of an account that has it"
        };
        add(
            Cause::ReviewerRbac,
            95,
            format!("{user} may not create TokenReviews"),
            e.into(),
            fix,
        );
    }
    if let Some(e) = input.any("failed to get namespace (code 403").or_else(|| {
        input.any("TokenReviewer JWT needs to be configured to use namespace selectors")
    }) {
        let needs_reviewer = e.contains("needs to be configured");
        add(
            if needs_reviewer {
                Cause::Namespace
            } else {
                Cause::ReviewerRbac
            },
            96,
            if needs_reviewer {
                "the role binds namespaces by selector, which needs a token_reviewer_jwt to read the client's namespace with".into()
            } else {
                "the account the server reads the client's namespace with may not get namespaces (the role binds namespaces by selector)".into()
            },
            e.into(),
            if needs_reviewer {
                "configure token_reviewer_jwt (an account that may create tokenreviews and get namespaces), or bind namespaces by name (bound_service_account_namespaces)"
            } else {
                "grant the reviewer get on namespaces (a ClusterRole with namespaces: get, bound to its service account), or bind namespaces by name"
            },
        );
    }
    if let Some(e) = input.any("service account unauthorized; this could mean") {
        // The API server answered 401 to the TokenReview call: the bearer was rejected.
        let aud = input
            .jwt
            .as_ref()
            .map(DecodedJwt::audiences)
            .unwrap_or_default();
        if input.config.is_none() {
            // Whether a reviewer JWT is configured decides whose token was rejected.
            for (cause, score, title) in [
                (
                    Cause::ReviewerToken,
                    60,
                    "the API server rejected the TokenReview's bearer (401): if a reviewer JWT is configured, it is expired, of the wrong audience or from another cluster",
                ),
                (
                    Cause::BearerAudience,
                    55,
                    "if no reviewer JWT is configured, the client's token is the bearer and may lack the API audience",
                ),
                (
                    Cause::ServiceAccountGone,
                    50,
                    "the client's service account (or bound pod) may be gone or re-created",
                ),
            ] {
                add(
                    cause,
                    score,
                    title.into(),
                    e.into(),
                    "the mount's config tells which: give --config (or --addr)",
                );
            }
        } else if !input.reviewer_jwt_set() && input.local_token_is_bearer() {
            // Local-token mode: the server's own token was rejected, not the client's.
            add(
                Cause::ReviewerToken,
                90,
                "the API server rejected the server's own pod token (local-token mode: no token_reviewer_jwt, so the server reviews with the token its pod mounts): it belongs to a pod or service account that is gone or re-created, or the server holds a stale copy".into(),
                e.into(),
                "restart the server pod so it reads its current token (and never pin that token as token_reviewer_jwt); check that the server pod's service account exists",
            );
        } else if input.reviewer_jwt_set() {
            add(Cause::ReviewerToken, 85, "the API server rejected the reviewer JWT (401): expired, wrong audience, or from another cluster".into(), e.into(),
                "issue a fresh reviewer token for the API audience (kubectl create token <sa> -n <ns>, no --audience) or a long-lived token Secret, and write it as token_reviewer_jwt");
            add(
                Cause::ServiceAccountGone,
                40,
                "the client's service account may have been deleted or re-created".into(),
                e.into(),
                "re-issue the client's token after re-creating its service account",
            );
        } else if !aud.is_empty() && !aud.iter().any(|a| a == API_AUDIENCE) {
            add(
                Cause::BearerAudience,
                90,
                format!(
                    "with no reviewer JWT the client's token is the TokenReview bearer, but its audiences {aud:?} lack the API audience"
                ),
                e.into(),
                "request the client token with both audiences (e.g. [vault, https://kubernetes.default.svc.cluster.local]), or configure token_reviewer_jwt",
            );
            add(
                Cause::ServiceAccountGone,
                30,
                "the client's service account may have been deleted or re-created".into(),
                e.into(),
                "re-issue the client's token after re-creating its service account",
            );
        } else {
            add(Cause::ServiceAccountGone, 80, "the client's token was rejected as a bearer: its service account (or bound pod) is probably gone or re-created".into(), e.into(),
                "re-create the service account and issue a new token; check that the token comes from this cluster");
            add(
                Cause::BearerAudience,
                30,
                "the client's token may lack the API audience".into(),
                e.into(),
                "request the client token with the API audience, or configure token_reviewer_jwt",
            );
        }
    }
    if let Some(e) = input
        .any("not found]")
        .filter(|e| e.contains("serviceaccounts"))
        .or_else(|| input.any("does not match claim"))
    {
        add(
            Cause::ServiceAccountGone,
            95,
            "the client's service account was deleted or re-created after its token was issued"
                .into(),
            e.into(),
            "issue a new token for the current service account (pods get one on restart)",
        );
    }
    if let Some(e) = input
        .any("service account token has been invalidated")
        .or_else(|| input.any("Token has been invalidated"))
    {
        add(
            Cause::TokenInvalidated,
            95,
            "the object the token was bound to (pod or Secret) no longer exists".into(),
            e.into(),
            "use a token from a running pod, or re-create the token Secret and use its new token",
        );
    }
    if let Some(e) = input
        .any("invalid signature, no keys found")
        .or_else(|| input.any("no known key successfully validated"))
        .or_else(|| input.any("failed to verify id token signature"))
        .or_else(|| input.any("error in cryptographic primitive"))
    {
        add(Cause::ForeignToken, 95, "the token was signed by a key this cluster does not publish (another cluster, or a rotated key)".into(), e.into(),
            "use a token issued by this cluster; for jwt auth refresh jwt_validation_pubkeys / the JWKS source");
    }
    if let Some(e) = input.any("is invalid for the target audiences") {
        add(
            Cause::TokenreviewAudience,
            90,
            "TokenReview rejected the token's audiences".into(),
            e.into(),
            "align the role's audience with the token's aud, or request the token for the audience the role names",
        );
    }

    // Local checks of the kubernetes method.
    if let Some(e) = input.any("service account name not authorized") {
        let evidence = match (input.jwt_sa(), input.role.as_ref()) {
            (Some((_, name)), Some(r)) => format!(
                "{e}: token service account {name:?}, role binds {:?}",
                strs(&r["bound_service_account_names"])
            ),
            _ => e.to_string(),
        };
        add(
            Cause::SaName,
            95,
            "the token's service-account name is not in the role's bound_service_account_names"
                .into(),
            evidence,
            "add the name to bound_service_account_names, or log in with the intended service account's token",
        );
    }
    if let Some(e) = input.any("namespace not authorized") {
        let evidence = match (input.jwt_sa(), input.role.as_ref()) {
            (Some((ns, _)), Some(r)) => format!(
                "{e}: token namespace {ns:?}, role binds {:?}",
                strs(&r["bound_service_account_namespaces"])
            ),
            _ => e.to_string(),
        };
        add(
            Cause::Namespace,
            95,
            "the token's namespace is not in the role's bound_service_account_namespaces".into(),
            evidence,
            "add the namespace to bound_service_account_namespaces (or a namespace selector)",
        );
    }
    if let Some(e) = input.any("invalid audience (aud) claim") {
        let aud = input
            .jwt
            .as_ref()
            .map(DecodedJwt::audiences)
            .unwrap_or_default();
        let (cause, want) =
            if input.method.as_deref() == Some("jwt") || e.starts_with("error validating token") {
                (
                    Cause::Audience,
                    input
                        .role
                        .as_ref()
                        .map(|r| strs(&r["bound_audiences"]))
                        .unwrap_or_default(),
                )
            } else {
                (
                    Cause::RoleAudience,
                    input
                        .role
                        .as_ref()
                        .map(|r| strs(&r["audience"]))
                        .unwrap_or_default(),
                )
            };
        add(
            cause,
            95,
            format!("the token's audiences {aud:?} do not include the role's {want:?}"),
            e.into(),
            "request the token for the role's audience (kubectl create token --audience, or the projected volume's audience), or change the role",
        );
    }
    if let Some(e) = input.any("audience claim found in JWT but no audiences bound") {
        add(
            Cause::Audience,
            95,
            "the token has an aud claim and the role binds no audiences".into(),
            e.into(),
            "set bound_audiences on the role to the token's audience",
        );
    }
    for needle in [
        "invalid expiration time (exp) claim",
        "invalid not before (nbf) claim",
        "invalid issued at (iat) claim",
    ] {
        if let Some(e) = input.any(needle) {
            let times = input
                .jwt
                .as_ref()
                .map(|j| {
                    format!(
                        " (iat {}, nbf {}, exp {}, now {})",
                        j.claims["iat"], j.claims["nbf"], j.claims["exp"], input.now
                    )
                })
                .unwrap_or_default();
            add(
                Cause::ClientTokenTime,
                95,
                "the token is outside its validity window".into(),
                format!("{e}{times}"),
                "use a fresh token (projected tokens rotate; re-read the file instead of caching it) and check clock skew between server and cluster",
            );
            break;
        }
    }
    if let Some(e) = input
        .any("invalid role name")
        .or_else(|| input.any("could not be found"))
    {
        add(
            Cause::UnknownRole,
            95,
            "the login names a role that does not exist on this mount".into(),
            e.into(),
            "fix the role name in the client's configuration, or create the role (list them: LIST auth/<mount>/role)",
        );
    }
    if let Some(e) = input
        .any("missing jwt")
        .or_else(|| input.any("compact JWS format"))
        .or_else(|| input.any("missing token"))
    {
        add(
            Cause::MalformedToken,
            95,
            "the client sent no JWT or something that is not one".into(),
            e.into(),
            "send the service-account token itself (the file's content at /var/run/secrets/kubernetes.io/serviceaccount/token)",
        );
    }
    if let Some(e) = input.any("invalid issuer (iss) claim") {
        let iss = input
            .jwt
            .as_ref()
            .and_then(|j| j.claims["iss"].as_str().map(str::to_string))
            .unwrap_or_default();
        add(
            Cause::Issuer,
            95,
            format!("the token's issuer {iss:?} is not the configured bound_issuer"),
            e.into(),
            "set bound_issuer to the cluster's service-account issuer (kubectl get --raw /.well-known/openid-configuration)",
        );
    }
    if let Some(e) = input.any("invalid subject (sub) claim") {
        let sub = input
            .jwt
            .as_ref()
            .and_then(|j| j.claims["sub"].as_str().map(str::to_string))
            .unwrap_or_default();
        add(
            Cause::Subject,
            95,
            format!("the token's subject {sub:?} is not the role's bound_subject"),
            e.into(),
            "set bound_subject to system:serviceaccount:<namespace>:<name> of the client",
        );
    }

    // Login worked, follow-up denied.
    if input.login.as_ref().is_some_and(|(s, _)| *s < 300)
        && let Some((_, e)) = input
            .steps
            .iter()
            .find(|(s, e)| *s == 403 && e.contains("permission denied"))
    {
        add(
            Cause::Policy,
            80,
            "login worked, but the token's policies do not allow the path".into(),
            e.clone(),
            "grant the path in the role's token_policies (for KV v2 the policy path needs the data/ segment)",
        );
    }

    drop(add);
    checks::check(input, &mut out);
    // At equal scores, what the server checks first: a role's bound name, namespace or
    // audience is refused before any TokenReview is made, so what a probe of the TokenReview
    // shows comes after it.
    out.sort_by(|a, b| {
        b.score
            .cmp(&a.score)
            .then(before_review(b.cause).cmp(&before_review(a.cause)))
            .then(a.cause.as_str().cmp(b.cause.as_str()))
    });
    // One finding per cause: the best-scored.
    let mut seen = Vec::new();
    out.retain(|f| {
        let new = !seen.contains(&f.cause);
        seen.push(f.cause);
        new
    });
    out
}

/// Causes the Kubernetes method finds from the token and role alone, before its TokenReview.
fn before_review(c: Cause) -> bool {
    matches!(c, Cause::SaName | Cause::Namespace | Cause::RoleAudience)
}

/// What `diagnose` concludes from an input.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The cause, when the evidence determines it.
    pub cause: Option<Cause>,
    /// Every finding, most likely first.
    pub findings: Vec<Finding>,
    /// Without a cause: the evidence that would tell, most telling first.
    pub missing: Vec<String>,
    /// Without a cause, for a bare client error: the causes that produce it and the evidence
    /// given does not exclude.
    pub candidates: Vec<Candidate>,
    /// The causes of that error the evidence given excludes.
    pub ruled_out: Vec<RuledOut>,
}

/// A cause the evidence given excludes.
#[derive(Debug, Clone, Serialize)]
pub struct RuledOut {
    /// The cause.
    pub cause: Cause,
    /// The evidence that excludes it.
    pub why: String,
}

/// Diagnoses `input` into a [`Report`].
pub fn report(input: &Input) -> Report {
    let findings = diagnose(input);
    let cause = findings
        .first()
        .filter(|f| f.score >= DETERMINED)
        .map(|f| f.cause);
    let (missing, candidates, ruled_out) = if cause.is_some() {
        (Vec::new(), Vec::new(), Vec::new())
    } else {
        let mut c = candidates::for_client_error(input.client_error());
        // What the evidence rules out is left out (and said); what it rules in goes first.
        let mut ruled_out: Vec<RuledOut> = Vec::new();
        if !c.is_empty() {
            for (cause, why) in checks::ruled_out(input) {
                if c.iter().any(|x| x.cause == cause) && !ruled_out.iter().any(|r| r.cause == cause)
                {
                    ruled_out.push(RuledOut { cause, why });
                }
            }
        }
        c.retain(|c| !ruled_out.iter().any(|r| r.cause == c.cause));
        c.sort_by_key(|c| !findings.iter().any(|f| f.cause == c.cause));
        (missing(input, &findings), c, ruled_out)
    };
    Report {
        cause,
        findings,
        missing,
        candidates,
        ruled_out,
    }
}

/// The evidence that would determine the cause, most telling first.
fn missing(input: &Input, findings: &[Finding]) -> Vec<String> {
    let mut m = Vec::new();
    let unauthorized = findings.iter().any(|f| f.cause == Cause::ReviewerToken);
    if unauthorized && input.config.is_none() {
        m.push("the mount's config (--config FILE with the JSON of `vault read -format=json auth/<mount>/config`, or --addr): whether token_reviewer_jwt is set tells reviewer-token from bearer-audience and service-account-gone".to_string());
    }
    if !input.log_given {
        m.push(format!(
            "the server's log at debug level (--server-log FILE): its `login unauthorized` line names the cause; {}",
            candidates::DEBUG_LOG
        ));
    } else if input.log.is_empty() {
        m.push(format!(
            "a `login unauthorized` line: the log given has none for this login; {}",
            candidates::DEBUG_LOG
        ));
    }
    if !input.audit_given && input.audit_error.is_none() {
        m.push("the login's audit entry (--audit FILE: the audit device's log)".into());
    }
    if input.jwt.is_none() && input.jwt_error.is_none() {
        m.push("the client's JWT (--jwt @FILE, or - for standard input)".into());
    }
    if input.role.is_none() {
        m.push("the role (--role FILE with the JSON of `vault read -format=json auth/<mount>/role/<name>`, or --addr with --role NAME)".into());
    }
    if input.config.is_none() && !unauthorized {
        m.push("the mount's config (--config FILE, or --addr)".into());
    }
    m
}

/// Renders the report and the JWT-beside-role comparison for people.
pub fn render(input: &Input, report: &Report) -> String {
    let mut s = String::new();
    if let Some(j) = &input.jwt {
        let _ = writeln!(s, "token:");
        if let Some((ns, name)) = j.service_account() {
            let _ = writeln!(s, "  service account  {ns}/{name}");
        }
        let _ = writeln!(s, "  audiences        {:?}", j.audiences());
        let _ = writeln!(
            s,
            "  issuer           {}",
            j.claims["iss"].as_str().unwrap_or("-")
        );
        if let Some(exp) = j.claims["exp"].as_i64() {
            let left = exp - input.now as i64;
            let when = if input.at_login { "the login" } else { "now" };
            let _ = writeln!(
                s,
                "  expires          {}",
                if left < 0 {
                    format!("{} s before {when}", -left)
                } else {
                    format!("{left} s after {when}")
                }
            );
        }
        if let Some(pod) = j.claims["kubernetes.io"]["pod"]["name"].as_str() {
            let _ = writeln!(s, "  bound to pod     {pod}");
        }
        if j.claims["kubernetes.io/serviceaccount/secret.name"].is_string() {
            let _ = writeln!(
                s,
                "  kind             legacy token Secret (no expiry, no audience)"
            );
        }
    }
    if let Some(r) = &input.role {
        let _ = writeln!(s, "role:");
        for key in [
            "bound_service_account_names",
            "bound_service_account_namespaces",
            "bound_service_account_namespace_selector",
            "audience",
            "role_type",
            "bound_audiences",
            "bound_subject",
            "user_claim",
        ] {
            if !r[key].is_null() && r[key] != "" {
                let _ = writeln!(s, "  {key:<40} {}", r[key]);
            }
        }
    }
    match report.cause {
        Some(c) => {
            let _ = writeln!(s, "cause: {c}");
        }
        None => {
            let _ = writeln!(s, "cause: not determined by the evidence given");
        }
    }
    for (i, f) in report.findings.iter().enumerate() {
        let _ = writeln!(
            s,
            "{}. [{}] {}{}\n   evidence: {}\n   fix: {}",
            i + 1,
            f.cause,
            f.title,
            if f.score >= DETERMINED {
                ""
            } else {
                " (possible)"
            },
            f.evidence,
            f.fix
        );
    }
    if !report.candidates.is_empty() {
        let _ = writeln!(
            s,
            "a `permission denied` login has one of these causes, most often reported first; each with the check that tells it apart:"
        );
        for (i, c) in report.candidates.iter().enumerate() {
            let _ = writeln!(
                s,
                "{:>2}. [{}] {}\n    check: {}",
                i + 1,
                c.cause,
                c.what,
                c.check
            );
        }
    }
    if !report.ruled_out.is_empty() {
        let _ = writeln!(s, "ruled out by the evidence given:");
        for r in &report.ruled_out {
            let _ = writeln!(s, "  - [{}] {}", r.cause, r.why);
        }
    }
    if !report.missing.is_empty() {
        let _ = writeln!(s, "to determine the cause, give:");
        for m in &report.missing {
            let _ = writeln!(s, "  - {m}");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_tokenreview_names_user() {
        let input = Input {
            login: Some((403, "permission denied".into())),
            log: vec![r#"login unauthorized: err={"message":"tokenreviews.authentication.k8s.io is forbidden: User \"system:serviceaccount:default:internal-app\" cannot create resource \"tokenreviews\" in API group"}"#.into()],
            ..Default::default()
        };
        let f = diagnose(&input);
        assert_eq!(f[0].cause, "reviewer-rbac");
        assert!(
            f[0].title
                .contains("system:serviceaccount:default:internal-app"),
            "{}",
            f[0].title
        );
    }

    #[test]
    fn unauthorized_bearer_ranks_audience_without_reviewer() {
        let token = format!(
            "e30.{}.x",
            base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                r#"{"aud":["vault"]}"#
            )
        );
        let mut input = Input {
            jwt: crate::jwt::decode_unverified(&token).ok(),
            log: vec!["login unauthorized: lookup failed: service account unauthorized; this could mean it has been deleted or recreated with a new token".into()],
            ..Default::default()
        };
        // Whose token was rejected depends on the config: without it, no cause is named.
        let r = report(&input);
        assert_eq!(r.cause, None);
        assert!(
            r.missing[0].contains("token_reviewer_jwt"),
            "{:?}",
            r.missing
        );
        input.config = Some(serde_json::json!({"kubernetes_host": "https://k:6443"}));
        assert_eq!(report(&input).cause, Some(Cause::BearerAudience));
        input.config = Some(serde_json::json!({"token_reviewer_jwt_set": true}));
        assert_eq!(report(&input).cause, Some(Cause::ReviewerToken));
    }

    /// Local-token mode: the rejected bearer is the server's own pod token, and the client is
    /// not blamed (it was `bearer-audience` / `service-account-gone` about the client).
    #[test]
    fn local_token_mode_names_the_servers_own_token() {
        let mut input = Input {
            log: vec!["login unauthorized: lookup failed: service account unauthorized; this could mean it has been deleted or recreated with a new token".into()],
            config: Some(serde_json::json!({"kubernetes_host": "https://k:6443", "disable_local_ca_jwt": false})),
            server_in_pod: Some(true),
            ..Default::default()
        };
        let r = report(&input);
        assert_eq!(r.cause, Some(Cause::ReviewerToken));
        assert!(
            r.findings
                .iter()
                .all(|f| f.cause != Cause::ServiceAccountGone && f.cause != Cause::BearerAudience),
            "{:?}",
            r.findings
        );
        assert!(
            r.findings[0].title.contains("server's own pod token"),
            "{:?}",
            r.findings[0]
        );
        // The local token disabled: the client's token is the bearer again.
        input.config = Some(
            serde_json::json!({"kubernetes_host": "https://k:6443", "disable_local_ca_jwt": true}),
        );
        assert_eq!(report(&input).cause, Some(Cause::ServiceAccountGone));
    }
}
