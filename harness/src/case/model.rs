//! The case model: one YAML file describes one scenario a user would put in a bug report.
//!
//! Every struct rejects unknown fields, so a typo in a case file is an error, not a silent
//! default. `cases/README.md` documents each field; `cases/schema.json` is generated from these
//! types (see [`crate::case::schema`]).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use super::sa_ref::ServiceAccountRef;

/// One scenario: cluster objects, server configuration, client, follow-up steps and expectations.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// What the scenario shows, in a sentence or two.
    pub about: String,
    /// Where the scenario comes from (a bug report, a document, "catalog").
    #[serde(default)]
    pub source: Option<String>,
    /// The auth method under test.
    pub auth: AuthMethod,
    /// How the server calls TokenReview (kubernetes auth only).
    #[serde(default)]
    pub mode: Option<KubeMode>,
    /// Where the server runs relative to the cluster.
    #[serde(default)]
    pub topology: Topology,
    /// Where the case applies; trials outside it are not generated.
    #[serde(default)]
    pub applies: Applies,
    /// The cluster side: settings and objects.
    #[serde(default)]
    pub cluster: ClusterSpec,
    /// The server side: auth config, role, policy.
    #[serde(default)]
    pub server: ServerSide,
    /// The reviewer token written as `token_reviewer_jwt` (reviewer-jwt mode).
    #[serde(default)]
    pub reviewer: Option<TokenSpec>,
    /// The client that logs in.
    pub client: TokenSpec,
    /// External Secrets Operator as a second client with the same service account (Kind only).
    #[serde(default)]
    pub eso: Option<EsoClient>,
    /// Where the client logs in (default `auth/${mount}/login`).
    #[serde(default)]
    pub login: LoginSpec,
    /// Cluster changes made after the client token was issued and before login.
    #[serde(default)]
    pub before_login: Vec<ClusterAction>,
    /// Follow-up requests made with the token the login returned.
    #[serde(default)]
    pub steps: Vec<Step>,
    /// What must be observed.
    pub expect: Expect,
    /// Replacements of `expect` where servers differ; keys are a flavour (`openbao`, `vault`)
    /// optionally with a version or version prefix (`openbao:2.6`, `openbao:2.6.1`).
    #[serde(default)]
    pub flavours: BTreeMap<String, FlavourOverride>,
    /// Replacements of `expect` by the cluster's Kubernetes version, where the API server
    /// answers differently: `"1.24"` (that minor version), `"<1.31"` (before 1.31) or
    /// `">=1.31"`. They take precedence over `flavours`. The sim models
    /// [`crate::sim::KUBERNETES_VERSION`].
    #[serde(default)]
    pub kubernetes: BTreeMap<String, FlavourOverride>,
    /// Servers on which the expected signatures were observed (e.g. `openbao:2.7.2`).
    #[serde(default)]
    pub observed_on: Vec<String>,
}

/// Auth method under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AuthMethod {
    /// The `kubernetes` auth method (TokenReview).
    Kubernetes,
    /// The `jwt` auth method against the service-account issuer.
    Jwt,
}

/// Which JWT the server presents to TokenReview.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum KubeMode {
    /// The server's own pod token (server inside the cluster).
    LocalToken,
    /// No reviewer JWT: the client's JWT reviews itself (`disable_local_ca_jwt=true`).
    ClientToken,
    /// A configured `token_reviewer_jwt`.
    ReviewerJwt,
}

/// Where the server runs relative to the cluster.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Topology {
    /// A process or container outside the cluster.
    #[default]
    Outside,
    /// A pod (or a container holding a mounted service-account token as a pod would).
    Inside,
}

/// Restricts which trials a case produces.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Applies {
    /// Flavours the case applies to (`openbao`, `vault`); empty means all.
    #[serde(default)]
    pub flavours: Vec<crate::server::Flavour>,
    /// Cluster kinds the case needs (`sim`, `kind`, `kubeconfig`); empty means all.
    #[serde(default)]
    pub clusters: Vec<super::cluster_kind::ClusterKind>,
    /// Why the case is limited, shown when a trial is not applicable.
    #[serde(default)]
    pub reason: Option<String>,
    /// What the case takes for granted about the cluster, checked before each trial: a cluster
    /// without it makes the trial not applicable there (saying what the cluster has).
    #[serde(default)]
    pub assumes: Vec<Assumption>,
}

/// A fact about a cluster that a case's signature depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Assumption {
    /// Anonymous requests for the issuer's discovery document and keys are forbidden (403):
    /// nothing binds `system:service-account-issuer-discovery` to unauthenticated users.
    AnonymousDiscoveryForbidden,
    /// The cluster's CA is named as kubeadm names it (`CN=kubernetes`, so another kubeadm
    /// cluster's CA has the same name).
    KubeadmCaName,
}

/// Cluster-side settings and objects.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    /// API-server settings (sim cluster only).
    #[serde(default)]
    pub settings: ClusterSettings,
    /// Objects applied before the server is configured: a path (relative to the repository's
    /// `manifests/` parent or to the case file) or an inline object.
    #[serde(default)]
    pub objects: Vec<ObjectSource>,
    /// A second cluster of the trial (sim only): its own CA, signing key, objects and request
    /// log, at `${other.url}`; tokens with `cluster: other` come from it.
    #[serde(default)]
    pub other: Option<OtherCluster>,
}

/// The trial's second cluster.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OtherCluster {
    /// Objects applied to it.
    #[serde(default)]
    pub objects: Vec<ObjectSource>,
}

/// Which cluster issues a token.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TokenCluster {
    /// The trial's cluster.
    #[default]
    This,
    /// The trial's second cluster (`cluster.other`).
    Other,
}

/// API-server settings a case can change (honoured by the sim cluster).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterSettings {
    /// `--service-account-issuer` (default `https://kubernetes.default.svc.cluster.local`).
    #[serde(default)]
    pub issuer: Option<String>,
    /// `--api-audiences` (default: the issuer).
    #[serde(default)]
    pub api_audiences: Option<Vec<String>>,
    /// `--anonymous-auth` (default true).
    #[serde(default)]
    pub anonymous_auth: Option<bool>,
    /// `--service-account-max-token-expiration` in seconds.
    #[serde(default)]
    pub max_token_expiration: Option<u64>,
}

/// A Kubernetes object to apply: a manifest path, or `inline:` followed by the object.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum ObjectSource {
    /// Path to a YAML file (one or more documents).
    Path(String),
    /// An inline object.
    Inline(InlineObject),
}

/// An object written in the case file itself.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InlineObject {
    /// The object (apiVersion, kind, metadata, ...).
    pub inline: serde_json::Map<String, serde_json::Value>,
}

/// Server-side configuration of the auth mount.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerSide {
    /// Fields merged over the mode's default `auth/<mount>/config` (null removes a field).
    /// String values may use placeholders such as `${cluster.url}` and `${cluster.ca}`.
    #[serde(default)]
    pub config: serde_json::Map<String, serde_json::Value>,
    /// Fields of the role (`auth/<mount>/role/<name>`).
    #[serde(default)]
    pub role: serde_json::Map<String, serde_json::Value>,
    /// Role name used at login (default `app`); a different `login_role` tests unknown roles.
    #[serde(default)]
    pub role_name: Option<String>,
    /// Role name sent at login when it differs from the one written.
    #[serde(default)]
    pub login_role: Option<String>,
    /// Policy HCL attached to the role; `${kv}` is the trial's KV mount. Default: read on
    /// `${kv}/data/allowed/*`.
    #[serde(default)]
    pub policy: Option<String>,
    /// The server pod's service account (`namespace/name`) when the server runs inside the
    /// cluster (default `vault/vault-auth`); its pod token is what local-token mode reviews with.
    #[serde(default)]
    pub pod_service_account: Option<ServiceAccountRef>,
    /// Mount tuning (`sys/auth/<mount>/tune`).
    #[serde(default)]
    pub tune: serde_json::Map<String, serde_json::Value>,
    /// Further mounts of the same method beside the trial's, by name: each at
    /// `${mount.<name>}` with its own config and role (merged over the same defaults).
    #[serde(default)]
    pub mounts: BTreeMap<String, ExtraMount>,
}

/// A further auth mount of the trial.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtraMount {
    /// Fields merged over the mode's default config.
    #[serde(default)]
    pub config: serde_json::Map<String, serde_json::Value>,
    /// Fields merged over the default role (written under the same role name).
    #[serde(default)]
    pub role: serde_json::Map<String, serde_json::Value>,
}

/// Where the client logs in.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginSpec {
    /// One of `server.mounts` instead of the trial's mount; its evidence is what is judged.
    #[serde(default)]
    pub mount: Option<String>,
    /// The login path as the user wrote it (e.g. `auth/${mount}//login`), sent as is; the
    /// answer is taken as the server gives it (redirects are not followed).
    #[serde(default)]
    pub path: Option<String>,
}

/// How a service-account token is obtained.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenSpec {
    /// `namespace/name` of the service account.
    pub service_account: ServiceAccountRef,
    /// The cluster that issues it (`other`: the case's second cluster).
    #[serde(default)]
    pub cluster: TokenCluster,
    /// Token kind.
    #[serde(default)]
    pub token: TokenKind,
    /// Audiences for a projected token (default: the API audiences).
    #[serde(default)]
    pub audiences: Option<Vec<String>>,
    /// `expirationSeconds` for a projected token.
    #[serde(default)]
    pub expiration_seconds: Option<u64>,
    /// Pod the projected token is bound to (must exist, e.g. from `cluster.objects`).
    #[serde(default)]
    pub bound_pod: Option<String>,
    /// Legacy token: name of the `kubernetes.io/service-account-token` Secret to create.
    #[serde(default)]
    pub secret_name: Option<String>,
    /// Hand-made token: claims merged over the projected-token layout (sim only).
    #[serde(default)]
    pub claims: serde_json::Map<String, serde_json::Value>,
    /// Hand-made token: seconds added to `iat`/`nbf`/`exp` (negative: in the past).
    #[serde(default)]
    pub time_shift: Option<i64>,
    /// Hand-made token: sign with a key the cluster does not know (same issuer).
    #[serde(default)]
    pub foreign_key: bool,
    /// Replace the token with this literal text (e.g. a malformed JWT).
    #[serde(default)]
    pub literal: Option<String>,
}

impl TokenSpec {
    /// The name of the legacy token Secret made for it: `secret_name`, else `<account>-token`.
    pub fn legacy_secret_name(&self) -> String {
        self.secret_name
            .clone()
            .unwrap_or_else(|| format!("{}-token", self.service_account.name))
    }
}

/// External Secrets Operator as a client: a secret store that logs in with the client's service
/// account and audiences, and an ExternalSecret that reads one secret of the trial's KV mount.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EsoClient {
    /// `ClusterSecretStore` (default) or `SecretStore` (in the client's namespace).
    #[serde(default)]
    pub store: EsoStoreKind,
    /// Secret read, relative to the trial's KV mount (default `allowed/config`).
    #[serde(default)]
    pub key: Option<String>,
    /// Property of that secret copied into the target Secret (default `username`).
    #[serde(default)]
    pub property: Option<String>,
    /// Namespace of the ExternalSecret (and of a `SecretStore`); default: the client service
    /// account's. A `ClusterSecretStore` resolves the service account in this namespace.
    #[serde(default)]
    pub namespace: Option<String>,
}

/// Kind of the ESO secret store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum EsoStoreKind {
    /// A cluster-wide store; the service account is resolved in the ExternalSecret's namespace.
    #[default]
    ClusterSecretStore,
    /// A store in the service account's namespace.
    SecretStore,
}

/// Kinds of client/reviewer tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TokenKind {
    /// TokenRequest (what kubelet projects into pods).
    #[default]
    Projected,
    /// Long-lived token from a `kubernetes.io/service-account-token` Secret.
    LegacySecret,
    /// A JWT built and signed by the harness (sim only).
    HandMade,
}

/// A change to the cluster between token issue and login.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum ClusterAction {
    /// Delete an object: `Kind namespace/name` or `Kind name`.
    Delete(String),
    /// Delete then re-create a service account (`namespace/name`): new UID.
    RecreateServiceAccount(ServiceAccountRef),
    /// Apply an object (path or inline).
    Apply(ObjectSource),
    /// Wait this long (e.g. `5s`; at most 30 s for all of a trial's waits together): a
    /// short-lived token expires.
    Wait(String),
    /// The server's pod is replaced, as after a restart (inside topology): its Pod object is
    /// deleted and re-created (a new UID) and the container's token file holds a token bound to
    /// the new pod; the server keeps running with its data.
    ReplaceServerPod {},
    /// The server pod's token file is rotated (inside topology): a new token bound to the same
    /// pod, as kubelet refreshes it.
    RotateServerToken {},
}

/// The longest `wait` a case may ask for.
pub const MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// A follow-up request made with the login's client token.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Read `${kv}/data/<path>` (the harness writes a secret there first).
    #[serde(default)]
    pub kv_read: Option<String>,
    /// Write `${kv}/data/<path>`.
    #[serde(default)]
    pub kv_write: Option<String>,
    /// Expected response.
    pub expect: ResponseExpect,
}

/// Expected client response.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResponseExpect {
    /// HTTP status.
    pub status: u16,
    /// The first entry of the `errors` array.
    #[serde(default)]
    pub error: Option<TextMatch>,
    /// The response's `warnings`, in order (`[]`: the server warned of nothing).
    #[serde(default)]
    pub warnings: Option<Vec<TextMatch>>,
}

/// Everything a trial must observe.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Server config write (`auth/<mount>/config`); default: success.
    #[serde(default)]
    pub config: Option<ResponseExpect>,
    /// The role write (`auth/<mount>/role/<name>`); default: success. A refused role write is
    /// judged like the config write: no login follows it.
    #[serde(default)]
    pub role: Option<ResponseExpect>,
    /// The login response.
    #[serde(default)]
    pub login: Option<ResponseExpect>,
    /// The audit response entry of the login.
    #[serde(default)]
    pub audit: Option<AuditExpect>,
    /// What a successful login produced: the token's policies, its metadata, the entity alias.
    #[serde(default)]
    pub auth: Option<AuthExpect>,
    /// A server-log line of the mount (e.g. DEBUG `login unauthorized`).
    #[serde(default)]
    pub server_log: Option<LogExpect>,
    /// Requests the cluster answered during login.
    #[serde(default)]
    pub cluster_requests: Option<ClusterRequestsExpect>,
    /// Objects the cluster holds after the login, counted (e.g. that a service account has no
    /// token Secret).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cluster_objects: Vec<ObjectsExpect>,
    /// The cause `authlab diagnose` must name for this trial's evidence.
    #[serde(default)]
    pub diagnosis: Option<crate::diagnose::Cause>,
    /// What External Secrets Operator reports (cases with `eso`).
    #[serde(default)]
    pub eso: Option<EsoExpect>,
}

impl Expect {
    /// True when nothing is expected (`expect: {}`: to be recorded by `authlab run --bless`).
    pub fn is_empty(&self) -> bool {
        self.config.is_none()
            && self.role.is_none()
            && self.login.is_none()
            && self.audit.is_none()
            && self.auth.is_none()
            && self.server_log.is_none()
            && self.cluster_requests.is_none()
            && self.cluster_objects.is_empty()
            && self.diagnosis.is_none()
            && self.eso.is_none()
    }
}

/// Expectation on the ExternalSecret and the ESO controller.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EsoExpect {
    /// Whether the ExternalSecret's `Ready` condition becomes `True` (and the target Secret
    /// holds the value read).
    pub ready: bool,
    /// The `Ready` condition's reason (e.g. `SecretSynced`, `SecretSyncedError`).
    #[serde(default)]
    pub reason: Option<TextMatch>,
    /// The `error` of a controller reconcile-error log line for this ExternalSecret or its store.
    #[serde(default)]
    pub controller_error: Option<TextMatch>,
}

/// How many objects of a kind the cluster holds that match.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ObjectsExpect {
    /// Kind (`Secret`, `ServiceAccount`, `Pod`, ...).
    pub kind: String,
    /// Namespace (namespaced kinds).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// A Secret's `type` (e.g. `kubernetes.io/service-account-token`).
    #[serde(default, rename = "type")]
    pub secret_type: Option<String>,
    /// Annotations each must carry (e.g. `kubernetes.io/service-account.name: vault-auth`).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// How many match.
    pub count: usize,
}

impl ObjectsExpect {
    /// `Secret vault (type …, annotations …)`, for messages.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{} {}",
            self.kind,
            self.namespace.as_deref().unwrap_or("(cluster)")
        );
        if let Some(n) = &self.name {
            s.push_str(&format!("/{n}"));
        }
        if let Some(t) = &self.secret_type {
            s.push_str(&format!(" of type {t}"));
        }
        for (k, v) in &self.annotations {
            s.push_str(&format!(" with {k}={v}"));
        }
        s
    }

    /// Whether `obj` (as the API returns it) is one of them.
    pub fn matches(&self, obj: &serde_json::Value) -> bool {
        let meta = &obj["metadata"];
        self.name
            .as_ref()
            .is_none_or(|n| meta["name"] == n.as_str())
            && self
                .secret_type
                .as_ref()
                .is_none_or(|t| obj["type"] == t.as_str())
            && self
                .annotations
                .iter()
                .all(|(k, v)| meta["annotations"][k] == v.as_str())
    }
}

/// Expectation on what a successful login produced.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthExpect {
    /// `auth.policies` of the login response, in order (e.g. `[default, app-policy]`).
    #[serde(default)]
    pub policies: Option<Vec<String>>,
    /// Entries of `auth.metadata` (e.g. `service_account_name`).
    #[serde(default)]
    pub metadata: BTreeMap<String, TextMatch>,
    /// The name of the entity alias the login made on this mount (what `alias_name_source`
    /// decides).
    #[serde(default)]
    pub alias_name: Option<TextMatch>,
}

/// Expectation on the login's audit response entry.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditExpect {
    /// Top-level `error` of the response entry.
    #[serde(default)]
    pub error: Option<TextMatch>,
    /// `response.data.error` (400 answers keep their text there).
    #[serde(default)]
    pub data_error: Option<TextMatch>,
}

/// Expectation on a server-log line of the trial's mount.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogExpect {
    /// Level (`DEBUG`, `ERROR`, ...).
    #[serde(default)]
    pub level: Option<String>,
    /// The message text before the key/value pairs.
    pub message: TextMatch,
    /// Key/value pairs (e.g. `err`).
    #[serde(default)]
    pub fields: BTreeMap<String, TextMatch>,
}

/// Expectation on the cluster's request log during login.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterRequestsExpect {
    /// The cluster the expectation is about: `this` (the trial's cluster) or `other` (the
    /// case's second cluster). Unset: the requests of every cluster of the trial, together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<TokenCluster>,
    /// No request reached the cluster (the server decided locally).
    #[serde(default)]
    pub none: bool,
    /// A TokenReview was answered with this status.
    #[serde(default)]
    pub tokenreview_status: Option<u16>,
    /// User the TokenReview call authenticated as (`None` when authentication failed).
    #[serde(default)]
    pub tokenreview_user: Option<TextMatch>,
    /// Audiences the server asked TokenReview to check.
    #[serde(default)]
    pub tokenreview_audiences: Option<Vec<String>>,
    /// Requests the cluster must have answered during login (any request, e.g. the namespace
    /// GET of a `bound_service_account_namespace_selector`), each matched by what it gives.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub made: Vec<RequestMatch>,
    /// Requests that must not have been made during login.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_made: Vec<RequestMatch>,
}

/// A request the cluster answered, matched by method, path, status and user (each optional
/// but the path).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestMatch {
    /// HTTP method (`GET`, `POST`).
    #[serde(default)]
    pub method: Option<String>,
    /// The path, with its query string (e.g. `/api/v1/namespaces/default`).
    pub path: TextMatch,
    /// The status the cluster answered.
    #[serde(default)]
    pub status: Option<u16>,
    /// The user it authenticated (`system:anonymous`; empty when authentication failed).
    #[serde(default)]
    pub user: Option<TextMatch>,
}

/// Per-flavour replacement of expectations.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlavourOverride {
    /// Replaces the case's `expect` for this flavour.
    pub expect: Expect,
}

/// A text matcher: exact string, or `{contains: ..}`, or `{regex: ..}`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum TextMatch {
    /// Exact equality (after placeholder substitution).
    Exact(String),
    /// A substring or pattern.
    Pattern(PatternMatch),
}

/// Substring or regular-expression match.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PatternMatch {
    /// Substring that must occur.
    #[serde(default)]
    pub contains: Option<String>,
    /// Regular expression that must match somewhere.
    #[serde(default)]
    pub regex: Option<String>,
}

impl Case {
    /// The service account the server pod runs as (inside topology): `server.pod_service_account`,
    /// else `vault/vault-auth`.
    pub fn pod_account(&self) -> ServiceAccountRef {
        self.server
            .pod_service_account
            .clone()
            .unwrap_or_else(|| ServiceAccountRef::new("vault", "vault-auth"))
    }

    /// The expectations that apply to a server: the most specific `flavours` key that matches
    /// (`openbao:2.6.1` over `openbao:2.6` over `openbao`), else `expect`.
    pub fn expect_for(&self, flavour: &str, version: &str) -> &Expect {
        self.expect_key_for(flavour, version)
            .and_then(|k| self.flavours.get(k))
            .map(|o| &o.expect)
            .unwrap_or(&self.expect)
    }

    /// The expectations for a server on a cluster of Kubernetes version `kubernetes`
    /// (`v1.24.0`): a matching `kubernetes` entry, else [`Case::expect_for`].
    pub fn expect_on(&self, flavour: &str, version: &str, kubernetes: Option<&str>) -> &Expect {
        match self.kubernetes_key_for(kubernetes) {
            Some(k) => &self.kubernetes[k].expect,
            None => self.expect_for(flavour, version),
        }
    }

    /// The key of the expectations [`Case::expect_on`] takes: `kubernetes:<key>`, a
    /// `flavours` key, or None for the case's `expect`.
    pub fn expect_key_on(
        &self,
        flavour: &str,
        version: &str,
        kubernetes: Option<&str>,
    ) -> Option<String> {
        match self.kubernetes_key_for(kubernetes) {
            Some(k) => Some(format!("kubernetes:{k}")),
            None => self.expect_key_for(flavour, version).map(str::to_string),
        }
    }

    /// The `kubernetes` key matching a cluster version (an exact minor wins over a range).
    fn kubernetes_key_for(&self, kubernetes: Option<&str>) -> Option<&str> {
        let minor = kubernetes.and_then(kubernetes_minor)?;
        let mut keys: Vec<&String> = self
            .kubernetes
            .keys()
            .filter(|k| kubernetes_key_matches(k, minor) == Some(true))
            .collect();
        keys.sort_by_key(|k| k.starts_with(['<', '>']));
        keys.first().map(|k| k.as_str())
    }

    /// The `flavours` key [`Case::expect_for`] takes for a server (None: the case's `expect`).
    pub fn expect_key_for(&self, flavour: &str, version: &str) -> Option<&str> {
        self.flavours
            .keys()
            .filter(|key| override_matches(key, flavour, version))
            .max_by_key(|key| key.len())
            .map(String::as_str)
    }

    /// For each `flavours` and `kubernetes` entry (`flavours."openbao:2.6"`), the fields of
    /// `expect` its replacement leaves out (so they are not checked where it applies).
    pub fn override_gaps(&self) -> Vec<(String, Vec<&'static str>)> {
        let fields = |e: &Expect| {
            [
                ("config", e.config.is_some()),
                ("role", e.role.is_some()),
                ("login", e.login.is_some()),
                ("audit", e.audit.is_some()),
                ("auth", e.auth.is_some()),
                ("server_log", e.server_log.is_some()),
                ("cluster_requests", e.cluster_requests.is_some()),
                ("diagnosis", e.diagnosis.is_some()),
                ("eso", e.eso.is_some()),
            ]
        };
        self.flavours
            .iter()
            .map(|(k, o)| (format!("flavours.\"{k}\""), o))
            .chain(
                self.kubernetes
                    .iter()
                    .map(|(k, o)| (format!("kubernetes.\"{k}\""), o)),
            )
            .filter_map(|(k, o)| {
                let gaps: Vec<&'static str> = fields(&self.expect)
                    .into_iter()
                    .zip(fields(&o.expect))
                    .filter(|((_, base), (_, over))| *base && !*over)
                    .map(|((name, _), _)| name)
                    .collect();
                (!gaps.is_empty()).then(|| (k.clone(), gaps))
            })
            .collect()
    }

    /// True when the case expects the login to fail.
    pub fn expects_failure(&self) -> bool {
        let failed = |e: &Expect| {
            e.login.as_ref().is_some_and(|l| l.status >= 300)
                || e.config.as_ref().is_some_and(|c| c.status >= 300)
                || e.role.as_ref().is_some_and(|r| r.status >= 300)
        };
        failed(&self.expect) || self.flavours.values().any(|o| failed(&o.expect))
    }

    /// Whether the case applies to a flavour.
    pub fn applies_to_flavour(&self, flavour: crate::server::Flavour) -> bool {
        self.applies.flavours.is_empty() || self.applies.flavours.contains(&flavour)
    }
}

/// A Kubernetes `gitVersion` as (minor, is a release): `v1.24.0-alpha.1` → (24, false),
/// `v1.33.1` → (33, true). Major 1 only.
pub fn kubernetes_minor(version: &str) -> Option<(u32, bool)> {
    let v = semver::Version::parse(version.trim_start_matches('v')).ok()?;
    if v.major != 1 {
        return None;
    }
    Some((u32::try_from(v.minor).ok()?, v.pre.is_empty()))
}

/// Whether a `kubernetes` key matches a version (`kubernetes_minor`'s form): `1.24` is every
/// 1.24 build, `<1.24` is before 1.24.0 (its pre-releases included, as in semver's order),
/// `>=1.24` is 1.24.0 on. None when the key is not one of those forms. Not `semver::VersionReq`:
/// its requirements never match a pre-release of another version (`1.24` would leave out
/// `v1.24.0-alpha.1`), and a pre-release API server is what the v1.24 rig builds.
pub fn kubernetes_key_matches(key: &str, (minor, release): (u32, bool)) -> Option<bool> {
    let (op, v) = if let Some(v) = key.strip_prefix(">=") {
        (">=", v)
    } else if let Some(v) = key.strip_prefix('<') {
        ("<", v)
    } else {
        ("=", key)
    };
    let want: u32 = v.strip_prefix("1.")?.parse().ok()?;
    Some(match op {
        ">=" => minor > want || (minor == want && release),
        "<" => minor < want || (minor == want && !release),
        _ => minor == want,
    })
}

/// Whether a `flavours` key (`openbao`, `openbao:2.6`, `openbao:2.6.1`) matches a server.
/// A version part matches whole dot-separated components from the left.
pub fn override_matches(key: &str, flavour: &str, version: &str) -> bool {
    match key.split_once(':') {
        None => key == flavour,
        Some((f, v)) => f == flavour && (version == v || version.starts_with(&format!("{v}."))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_keys_match_by_version_with_pre_releases_before_their_release() {
        let v = |s: &str| kubernetes_minor(s).unwrap();
        assert_eq!(v("v1.24.0-alpha.1"), (24, false));
        assert_eq!(v("v1.33.1"), (33, true));
        assert_eq!(v("v1.30.0+k3s1"), (30, true));
        assert_eq!(kubernetes_minor("v2.0.0"), None);
        let m = |k: &str, ver: &str| kubernetes_key_matches(k, v(ver)).unwrap();
        assert!(m("1.24", "v1.24.0-alpha.1") && m("1.24", "v1.24.17"));
        assert!(m("<1.24", "v1.24.0-alpha.1") && m("<1.24", "v1.23.5"));
        assert!(!m("<1.24", "v1.24.0") && m(">=1.24", "v1.24.0"));
        assert!(!m(">=1.24", "v1.24.0-alpha.1") && m(">=1.24", "v1.34.0"));
        assert_eq!(kubernetes_key_matches("latest", (30, true)), None);
        assert_eq!(kubernetes_key_matches("2.4", (30, true)), None);
    }

    /// A `flavours` entry that leaves out a field of `expect` is named with that field.
    #[test]
    fn override_gaps_name_the_fields_left_out() {
        let case: Case = serde_saphyr::from_str(
            r#"
about: x
auth: jwt
client: { service_account: default/a }
expect:
  config: { status: 400, error: e }
  diagnosis: discovery-issuer
flavours:
  "openbao:2.6":
    expect:
      config: { status: 400, error: short }
"#,
        )
        .unwrap();
        assert_eq!(
            case.override_gaps(),
            [("flavours.\"openbao:2.6\"".to_string(), vec!["diagnosis"])]
        );
        assert_eq!(case.expect_key_for("openbao", "2.6.2"), Some("openbao:2.6"));
        assert_eq!(case.expect_key_for("openbao", "2.7.0"), None);
    }
}
