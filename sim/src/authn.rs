//! Bearer-token authentication, reproducing the kube-apiserver authenticator chain:
//! the loopback token, the static admin token, legacy and bound service-account JWTs,
//! the `invalid bearer token` aggregation, and anonymous requests.

use std::{collections::BTreeMap, time::SystemTime};

use serde_json::{Map, Value};

use super::{
    core::Core,
    store::{Kind, Store, meta_str},
    tokens::{self, LEGACY_ISSUER},
    user::UserInfo,
};

/// Username of the sim's static admin token.
pub(crate) const ADMIN_USER: &str = "authlab:admin";
/// The error every failing bearer authenticator reports.
pub(crate) const INVALID_BEARER: &str = "invalid bearer token";
/// Leeway of the time claims (go-jose `DefaultLeeway`).
const LEEWAY_SECONDS: f64 = 60.0;

/// Formats errors like `utilerrors.Aggregate`: flattened, de-duplicated, bare when only one.
pub(crate) fn aggregate(messages: &[String]) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for m in messages {
        if !seen.contains(&m.as_str()) {
            seen.push(m);
        }
    }
    match seen.len() {
        0 => String::new(),
        1 => seen[0].to_string(),
        _ => format!("[{}]", seen.join(", ")),
    }
}

/// Go's `%q` of a `[]string`: `["a" "b"]`.
pub(crate) fn go_quote_list(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| Value::String(s.clone()).to_string())
        .collect();
    format!("[{}]", quoted.join(" "))
}

/// The bearer token of an `Authorization` header, as the bearertoken authenticator reads it.
pub(crate) fn bearer_token(header: Option<&str>) -> Option<&str> {
    let auth = header?.trim();
    let mut parts = auth.splitn(3, ' ');
    let scheme = parts.next()?;
    let token = parts.next()?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Authenticates an API request. `Err(Some(e))` is a failed credential, `Err(None)` no
/// credential with anonymous auth off; both are 401.
pub(crate) fn authenticate_request(
    core: &Core,
    store: &Store,
    authorization: Option<&str>,
) -> Result<UserInfo, Option<String>> {
    match bearer_token(authorization) {
        Some(token) => authenticate_token(core, store, token, None)
            .map(|(user, _)| user)
            .map_err(Some),
        None if core.settings.anonymous_auth => Ok(UserInfo::anonymous()),
        None => Err(None),
    }
}

/// Runs a bearer token through the chain. `requested` audiences default to the API
/// audiences. Returns the user and the audience intersection, or the aggregate error.
pub(crate) fn authenticate_token(
    core: &Core,
    store: &Store,
    token: &str,
    requested: Option<&[String]>,
) -> Result<(UserInfo, Vec<String>), String> {
    let api_auds = &core.settings.api_audiences;
    let requested: &[String] = match requested {
        Some(r) if !r.is_empty() => r,
        _ => api_auds,
    };
    let mut errors = Vec::new();
    let candidates = [
        static_token(core, token, requested),
        service_account_jwt(core, store, token, requested, true),
        service_account_jwt(core, store, token, requested, false),
    ];
    for outcome in candidates {
        match outcome {
            Outcome::Ok(mut user, auds) => {
                if !user.groups.iter().any(|g| g == "system:authenticated") {
                    user.groups.push("system:authenticated".into());
                }
                return Ok((user, auds));
            }
            Outcome::Err(e) => errors.push(e),
            Outcome::NotMine => {}
        }
    }
    if errors.is_empty() {
        errors.push(INVALID_BEARER.into());
    }
    // The loopback-token authenticator, first in the outer union, always adds its own error.
    let mut all = vec![INVALID_BEARER.to_string()];
    all.extend(errors);
    Err(aggregate(&all))
}

enum Outcome {
    NotMine,
    Err(String),
    Ok(UserInfo, Vec<String>),
}

/// The static admin token, wrapped audience-agnostically (API audiences ∩ requested).
fn static_token(core: &Core, token: &str, requested: &[String]) -> Outcome {
    let auds: Vec<String> = core
        .settings
        .api_audiences
        .iter()
        .filter(|a| requested.contains(a))
        .cloned()
        .collect();
    if auds.is_empty() || token != core.admin_token {
        return Outcome::NotMine;
    }
    Outcome::Ok(
        UserInfo {
            username: ADMIN_USER.into(),
            uid: String::new(),
            groups: vec!["system:masters".into(), "system:authenticated".into()],
            extra: BTreeMap::new(),
        },
        auds,
    )
}

/// What a validator learned about the service account.
#[derive(Default)]
struct SaInfo {
    namespace: String,
    name: String,
    uid: String,
    pod: Option<(String, String)>,
    node: Option<(String, String)>,
    credential_id: Option<String>,
}

impl SaInfo {
    fn user(self) -> UserInfo {
        let mut extra = BTreeMap::new();
        if let Some((n, u)) = &self.pod
            && !n.is_empty()
            && !u.is_empty()
        {
            extra.insert(
                "authentication.kubernetes.io/pod-name".into(),
                vec![n.clone()],
            );
            extra.insert(
                "authentication.kubernetes.io/pod-uid".into(),
                vec![u.clone()],
            );
        }
        if let Some(c) = self.credential_id {
            extra.insert("authentication.kubernetes.io/credential-id".into(), vec![c]);
        }
        if let Some((n, u)) = &self.node
            && !n.is_empty()
        {
            extra.insert(
                "authentication.kubernetes.io/node-name".into(),
                vec![n.clone()],
            );
            if !u.is_empty() {
                extra.insert(
                    "authentication.kubernetes.io/node-uid".into(),
                    vec![u.clone()],
                );
            }
        }
        UserInfo {
            username: format!("system:serviceaccount:{}:{}", self.namespace, self.name),
            uid: self.uid,
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{}", self.namespace),
            ],
            extra,
        }
    }
}

/// `aud` as a list (a single string counts as one audience).
fn audiences_of(payload: &Map<String, Value>) -> Result<Vec<String>, String> {
    match payload.get("aud") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                "go-jose/go-jose/jwt: expected string or array value to unmarshal to Audience"
                    .into()
            }),
        Some(_) => Err(
            "go-jose/go-jose/jwt: expected string or array value to unmarshal to Audience".into(),
        ),
    }
}

/// One JWT service-account authenticator (legacy or bound), per `jwt.go` `AuthenticateToken`.
fn service_account_jwt(
    core: &Core,
    store: &Store,
    token: &str,
    requested: &[String],
    legacy: bool,
) -> Outcome {
    // 1. Not mine unless it is a JWT whose (unverified) issuer this authenticator accepts.
    let Some(payload) = tokens::unverified_payload(token) else {
        return Outcome::NotMine;
    };
    let Some(iss) = payload.get("iss").and_then(Value::as_str) else {
        return Outcome::NotMine;
    };
    let accepted = if legacy {
        iss == LEGACY_ISSUER
    } else {
        iss == core.settings.issuer
    };
    if !accepted {
        return Outcome::NotMine;
    }
    let Some(jws) = tokens::parse(token) else {
        return Outcome::NotMine;
    };
    // 3. Keys by kid (an empty kid tries every key).
    let kid = jws.header.get("kid").and_then(Value::as_str).unwrap_or("");
    if !kid.is_empty() && kid != core.key.kid() {
        return Outcome::Err("invalid signature, no keys found".into());
    }
    if jws.header.get("alg").and_then(Value::as_str) != Some("RS256") {
        return Outcome::Err("go-jose/go-jose: unknown/unsupported algorithm".into());
    }
    if !core
        .key
        .verify(jws.signing_input.as_bytes(), &jws.signature)
    {
        return Outcome::Err("go-jose/go-jose: error in cryptographic primitive".into());
    }
    // 5. Audiences.
    let mut token_auds = match audiences_of(&payload) {
        Ok(a) => a,
        Err(e) => return Outcome::Err(e),
    };
    let api_auds = &core.settings.api_audiences;
    if token_auds.is_empty() {
        token_auds = api_auds.clone();
    }
    let auds: Vec<String> = token_auds
        .iter()
        .filter(|a| requested.contains(a))
        .cloned()
        .collect();
    if auds.is_empty() && !api_auds.is_empty() {
        return Outcome::Err(format!(
            "token audiences {} is invalid for the target audiences {}",
            go_quote_list(&token_auds),
            go_quote_list(requested)
        ));
    }
    // 6–7. Claims and live objects.
    let info = if legacy {
        validate_legacy(store, token, &payload)
    } else {
        validate_bound(store, &payload)
    };
    match info {
        Ok(info) => Outcome::Ok(info.user(), auds),
        Err(e) => Outcome::Err(e),
    }
}

fn str_at<'a>(v: Option<&'a Value>, key: &str) -> &'a str {
    v.and_then(|v| v.get(key))
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn numeric(payload: &Map<String, Value>, key: &str) -> Result<Option<f64>, String> {
    match payload.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(_) => Err(format!(
            "json: cannot unmarshal non-number into Go struct field Claims.{key} of type jwt.NumericDate"
        )),
    }
}

fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Bound-token validator (`claims.go` `Validate`).
fn validate_bound(store: &Store, payload: &Map<String, Value>) -> Result<SaInfo, String> {
    let now = now_seconds();
    if let Some(nbf) = numeric(payload, "nbf")?
        && now + LEEWAY_SECONDS < nbf
    {
        return Err("service account token is not valid yet".into());
    }
    if let Some(exp) = numeric(payload, "exp")?
        && now - LEEWAY_SECONDS > exp
    {
        return Err("service account token has expired".into());
    }
    if let Some(iat) = numeric(payload, "iat")?
        && now + LEEWAY_SECONDS < iat
    {
        return Err("service account token is issued in the future".into());
    }
    let k8s = payload.get("kubernetes.io");
    let namespace = str_at(k8s, "namespace");
    let sa_ref = k8s.and_then(|k| k.get("serviceaccount"));
    let (sa_name, sa_uid) = (str_at(sa_ref, "name"), str_at(sa_ref, "uid"));
    let sa = store
        .get(Kind::SERVICE_ACCOUNT, namespace, sa_name)
        .ok_or_else(|| format!("serviceaccounts \"{sa_name}\" not found"))?;
    let live_uid = meta_str(sa, "uid").unwrap_or("");
    if live_uid != sa_uid {
        return Err(format!(
            "service account UID ({live_uid}) does not match claim ({sa_uid})"
        ));
    }
    let as_ref = |key: &str| {
        k8s.and_then(|k| k.get(key))
            .filter(|v| v.is_object())
            .map(|v| {
                (
                    str_at(Some(v), "name").to_string(),
                    str_at(Some(v), "uid").to_string(),
                )
            })
    };
    let secret_ref = as_ref("secret");
    let pod_ref = as_ref("pod");
    let node_ref = as_ref("node");
    if let Some((name, uid)) = &secret_ref {
        check_ref(
            store,
            Kind::SECRET,
            namespace,
            name,
            uid,
            "secret",
            "secret",
        )?;
    }
    if let Some((name, uid)) = &pod_ref {
        check_ref(store, Kind::POD, namespace, name, uid, "pod", "pod")?;
    } else if let Some((name, uid)) = &node_ref {
        check_ref(store, Kind::NODE, "", name, uid, "node", "node")?;
    }
    let jti = payload.get("jti").and_then(Value::as_str).unwrap_or("");
    Ok(SaInfo {
        namespace: namespace.into(),
        name: sa_name.into(),
        uid: sa_uid.into(),
        pod: pod_ref,
        node: node_ref,
        credential_id: (!jti.is_empty()).then(|| format!("JTI={jti}")),
    })
}

fn check_ref(
    store: &Store,
    kind: Kind,
    ns: &str,
    name: &str,
    uid: &str,
    what: &str,
    claim: &str,
) -> Result<(), String> {
    let obj = store
        .get(kind, ns, name)
        .ok_or_else(|| "service account token has been invalidated".to_string())?;
    let live = meta_str(obj, "uid").unwrap_or("");
    if live != uid {
        return Err(format!(
            "{what} UID ({live}) does not match service account {claim} ref claim ({uid})"
        ));
    }
    // An object being deleted still validates its tokens until its deletionTimestamp is more
    // than the validator's leeway (60 s) in the past.
    if let Some(at) = meta_str(obj, "deletionTimestamp")
        && let Ok(t) = humantime::parse_rfc3339_weak(at)
        && t + std::time::Duration::from_secs(60) < std::time::SystemTime::now()
    {
        return Err("service account token has been invalidated".into());
    }
    Ok(())
}

/// Legacy Secret-token validator (`legacy.go` `Validate`, with lookup).
fn validate_legacy(
    store: &Store,
    token: &str,
    payload: &Map<String, Value>,
) -> Result<SaInfo, String> {
    let get = |k: &str| payload.get(k).and_then(Value::as_str).unwrap_or("");
    let sub = get("sub");
    if sub.is_empty() {
        return Err("sub claim is missing".into());
    }
    let namespace = get("kubernetes.io/serviceaccount/namespace");
    if namespace.is_empty() {
        return Err("namespace claim is missing".into());
    }
    let secret_name = get("kubernetes.io/serviceaccount/secret.name");
    if secret_name.is_empty() {
        return Err("secretName claim is missing".into());
    }
    let sa_name = get("kubernetes.io/serviceaccount/service-account.name");
    if sa_name.is_empty() {
        return Err("serviceAccountName claim is missing".into());
    }
    let sa_uid = get("kubernetes.io/serviceaccount/service-account.uid");
    if sa_uid.is_empty() {
        return Err("serviceAccountUID claim is missing".into());
    }
    if sub != format!("system:serviceaccount:{namespace}:{sa_name}") {
        return Err("sub claim is invalid".into());
    }
    let secret = store
        .get(Kind::SECRET, namespace, secret_name)
        .ok_or_else(|| "Token has been invalidated".to_string())?;
    let stored = secret
        .pointer("/data/token")
        .and_then(Value::as_str)
        .and_then(|b| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.decode(b).ok()
        })
        .unwrap_or_default();
    if !constant_time_eq(&stored, token.as_bytes()) {
        return Err("Token does not match server's copy".into());
    }
    let sa = store
        .get(Kind::SERVICE_ACCOUNT, namespace, sa_name)
        .ok_or_else(|| format!("serviceaccounts \"{sa_name}\" not found"))?;
    let live_uid = meta_str(sa, "uid").unwrap_or("");
    if live_uid != sa_uid {
        return Err(format!(
            "ServiceAccount UID ({live_uid}) does not match claim ({sa_uid})"
        ));
    }
    const INVALID_SINCE: &str = "kubernetes.io/legacy-token-invalid-since";
    if secret
        .pointer("/metadata/labels")
        .and_then(|l| l.get(INVALID_SINCE))
        .is_some()
    {
        return Err(format!(
            "the token in secret {namespace}/{secret_name} for service account {namespace}/{sa_name} has been marked invalid. Use tokens from the TokenRequest API or manually created secret-based tokens, or remove the '{INVALID_SINCE}' label from the secret to temporarily allow use of this token"
        ));
    }
    Ok(SaInfo {
        namespace: namespace.into(),
        name: sa_name.into(),
        uid: sa_uid.into(),
        ..Default::default()
    })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregate_formatting() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            aggregate(&s(&["invalid bearer token", "invalid bearer token"])),
            "invalid bearer token"
        );
        assert_eq!(
            aggregate(&s(&[
                "invalid bearer token",
                "service account token has expired"
            ])),
            "[invalid bearer token, service account token has expired]"
        );
        assert_eq!(aggregate(&s(&["a", "b", "a", "c"])), "[a, b, c]");
    }

    #[test]
    fn go_quoting() {
        assert_eq!(go_quote_list(&["vault".into()]), "[\"vault\"]");
        assert_eq!(go_quote_list(&["a".into(), "b".into()]), "[\"a\" \"b\"]");
    }

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer_token(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer_token(Some("bearer abc")), Some("abc"));
        assert_eq!(bearer_token(Some("Basic abc")), None);
        assert_eq!(bearer_token(Some("Bearer ")), None);
        assert_eq!(bearer_token(None), None);
    }
}
