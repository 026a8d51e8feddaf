//! JWS compact tokens: signing with the sim key, unverified parsing, and the claim sets of
//! bound (TokenRequest) and legacy (Secret) service-account tokens.

use anyhow::Result;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::{Map, Value, json};

use super::keys::SigningKey;

/// The issuer of legacy Secret-based tokens.
pub(crate) const LEGACY_ISSUER: &str = "kubernetes/serviceaccount";
/// `expirationSeconds` that triggers the warn-only extension of pod-bound tokens.
pub(crate) const WARN_ONLY_SECONDS: i64 = 3607;
/// The extended lifetime of warn-only tokens (one year).
pub(crate) const EXTENSION_SECONDS: i64 = 31_536_000;

/// Returns a copy of `v` with object keys sorted at every level (go-jose's map merge order).
pub(crate) fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let mut out = Map::new();
            for k in keys {
                out.insert(k.clone(), sorted(&m[k]));
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// Signs `claims` as `{"alg":"RS256","kid":<kid>}` compact JWS; keys are sorted.
pub(crate) fn sign(key: &SigningKey, claims: &Value) -> Result<String> {
    let header = format!(
        "{{\"alg\":\"RS256\",\"kid\":{}}}",
        Value::String(key.kid().into())
    );
    let payload = serde_json::to_string(&sorted(claims))?;
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let sig = key.sign(input.as_bytes())?;
    Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig)))
}

/// A compact JWS split into its parts; nothing is verified.
pub(crate) struct Jws<'a> {
    pub header: Map<String, Value>,
    pub signing_input: &'a str,
    pub signature: Vec<u8>,
}

/// Reads the payload of a three-part token without checking anything else.
pub(crate) fn unverified_payload(token: &str) -> Option<Map<String, Value>> {
    let mut parts = token.split('.');
    let (_, p, _) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(p.trim_end_matches('=')).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// Parses a compact JWS (header, payload and signature must all decode).
pub(crate) fn parse(token: &str) -> Option<Jws<'_>> {
    if token.starts_with('{') {
        return None;
    }
    let (signing_input, sig) = token.rsplit_once('.')?;
    let (h, _) = signing_input.split_once('.')?;
    let header = match serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).ok()?).ok()? {
        Value::Object(m) => m,
        _ => return None,
    };
    unverified_payload(token)?;
    let signature = URL_SAFE_NO_PAD.decode(sig).ok()?;
    Some(Jws {
        header,
        signing_input,
        signature,
    })
}

/// A `{name, uid}` reference; `uid` is left out when empty (Go `omitempty`).
pub(crate) fn obj_ref(name: &str, uid: &str) -> Value {
    let mut m = Map::new();
    if !name.is_empty() {
        m.insert("name".into(), json!(name));
    }
    if !uid.is_empty() {
        m.insert("uid".into(), json!(uid));
    }
    Value::Object(m)
}

/// Inputs of a bound token's claim set.
pub(crate) struct BoundClaims<'a> {
    pub issuer: &'a str,
    pub namespace: &'a str,
    pub sa_name: &'a str,
    pub sa_uid: &'a str,
    pub audiences: &'a [String],
    pub now: i64,
    pub lifetime: i64,
    pub warn_after: Option<i64>,
    pub pod: Option<(String, String)>,
    pub node: Option<(String, String)>,
    pub secret: Option<(String, String)>,
    pub jti: String,
}

impl BoundClaims<'_> {
    /// The claim set, laid out as `token.Claims` builds it.
    pub fn to_value(&self) -> Value {
        let mut k8s = Map::new();
        k8s.insert("namespace".into(), json!(self.namespace));
        k8s.insert("serviceaccount".into(), obj_ref(self.sa_name, self.sa_uid));
        if let Some((n, u)) = &self.secret {
            k8s.insert("secret".into(), obj_ref(n, u));
        }
        if let Some((n, u)) = &self.pod {
            k8s.insert("pod".into(), obj_ref(n, u));
            if let Some((n, u)) = &self.node {
                k8s.insert("node".into(), obj_ref(n, u));
            }
        }
        if let Some(w) = self.warn_after {
            k8s.insert("warnafter".into(), json!(self.now + w));
        }
        sorted(&json!({
            "aud": self.audiences,
            "exp": self.now + self.lifetime,
            "iat": self.now,
            "iss": self.issuer,
            "jti": self.jti,
            "kubernetes.io": Value::Object(k8s),
            "nbf": self.now,
            "sub": format!("system:serviceaccount:{}:{}", self.namespace, self.sa_name),
        }))
    }
}

/// The claim set of a legacy Secret-based token.
pub(crate) fn legacy_claims(namespace: &str, secret: &str, sa_name: &str, sa_uid: &str) -> Value {
    json!({
        "iss": LEGACY_ISSUER,
        "kubernetes.io/serviceaccount/namespace": namespace,
        "kubernetes.io/serviceaccount/secret.name": secret,
        "kubernetes.io/serviceaccount/service-account.name": sa_name,
        "kubernetes.io/serviceaccount/service-account.uid": sa_uid,
        "sub": format!("system:serviceaccount:{namespace}:{sa_name}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_claims_layout() {
        let auds = vec!["https://kubernetes.default.svc.cluster.local".to_string()];
        let c = BoundClaims {
            issuer: "https://kubernetes.default.svc.cluster.local",
            namespace: "app",
            sa_name: "web",
            sa_uid: "u1",
            audiences: &auds,
            now: 1000,
            lifetime: EXTENSION_SECONDS,
            warn_after: Some(WARN_ONLY_SECONDS),
            pod: Some(("p".into(), "pu".into())),
            node: Some(("n".into(), String::new())),
            secret: None,
            jti: "j".into(),
        }
        .to_value();
        let text = serde_json::to_string(&c).unwrap();
        assert_eq!(
            text,
            "{\"aud\":[\"https://kubernetes.default.svc.cluster.local\"],\"exp\":31537000,\"iat\":1000,\"iss\":\"https://kubernetes.default.svc.cluster.local\",\"jti\":\"j\",\"kubernetes.io\":{\"namespace\":\"app\",\"node\":{\"name\":\"n\"},\"pod\":{\"name\":\"p\",\"uid\":\"pu\"},\"serviceaccount\":{\"name\":\"web\",\"uid\":\"u1\"},\"warnafter\":4607},\"nbf\":1000,\"sub\":\"system:serviceaccount:app:web\"}"
        );
    }

    #[test]
    fn sign_and_parse() {
        let key = SigningKey::generate().unwrap();
        let tok = sign(&key, &json!({"z": 1, "a": {"y": 2, "b": 3}})).unwrap();
        let jws = parse(&tok).unwrap();
        assert_eq!(jws.header["kid"], json!(key.kid()));
        assert!(key.verify(jws.signing_input.as_bytes(), &jws.signature));
        let payload = tok.split('.').nth(1).unwrap();
        let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        assert_eq!(raw, "{\"a\":{\"b\":3,\"y\":2},\"z\":1}");
        assert!(parse("garbage").is_none());
        assert!(parse("{\"a\":1}.b.c").is_none());
    }
}
