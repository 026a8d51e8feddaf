//! Decoding JWTs for display (no verification): `authlab explain` and trial artifacts.

use anyhow::{Context, Result, bail};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

/// A JWT's decoded header and claims.
#[derive(Debug, Clone)]
pub struct DecodedJwt {
    /// The JOSE header.
    pub header: serde_json::Value,
    /// The claims.
    pub claims: serde_json::Value,
}

/// Decodes a compact JWS without checking its signature.
pub fn decode_unverified(token: &str) -> Result<DecodedJwt> {
    let token = token.trim();
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        bail!(
            "not a JWT: expected three dot-separated parts, found {}",
            parts.len()
        );
    }
    let part = |i: usize, what: &str| -> Result<serde_json::Value> {
        let bytes = URL_SAFE_NO_PAD
            .decode(parts[i].trim_end_matches('='))
            .with_context(|| format!("the JWT {what} is not base64url"))?;
        serde_json::from_slice(&bytes).with_context(|| format!("the JWT {what} is not JSON"))
    };
    Ok(DecodedJwt {
        header: part(0, "header")?,
        claims: part(1, "payload")?,
    })
}

impl DecodedJwt {
    /// `aud` as a list (a string `aud` becomes one element).
    pub fn audiences(&self) -> Vec<String> {
        match &self.claims["aud"] {
            serde_json::Value::String(s) => vec![s.clone()],
            serde_json::Value::Array(a) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// `(namespace, name)` of the service account, from the bound or legacy claim layout.
    pub fn service_account(&self) -> Option<(String, String)> {
        let c = &self.claims;
        if let (Some(ns), Some(n)) = (
            c["kubernetes.io"]["namespace"].as_str(),
            c["kubernetes.io"]["serviceaccount"]["name"].as_str(),
        ) {
            return Some((ns.into(), n.into()));
        }
        if let (Some(ns), Some(n)) = (
            c["kubernetes.io/serviceaccount/namespace"].as_str(),
            c["kubernetes.io/serviceaccount/service-account.name"].as_str(),
        ) {
            return Some((ns.into(), n.into()));
        }
        let sub = c["sub"].as_str()?;
        let rest = sub.strip_prefix("system:serviceaccount:")?;
        let (ns, n) = rest.split_once(':')?;
        Some((ns.into(), n.into()))
    }

    /// A readable multi-line rendering: header, claims, and times relative to `now`.
    pub fn render(&self, now: u64) -> String {
        let mut out = format!(
            "header: {}\nclaims: {}\n",
            self.header,
            serde_json::to_string_pretty(&self.claims).unwrap_or_default()
        );
        for key in ["iat", "nbf", "exp"] {
            if let Some(t) = self.claims[key].as_u64() {
                let rel = t as i64 - now as i64;
                let when = humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + std::time::Duration::from_secs(t),
                );
                let ago = if rel < 0 {
                    format!("{}s ago", -rel)
                } else {
                    format!("in {rel}s")
                };
                out.push_str(&format!("{key}: {when} ({ago})\n"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(claims: &str) -> String {
        format!(
            "{}.{}.sig",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","kid":"k"}"#),
            URL_SAFE_NO_PAD.encode(claims)
        )
    }

    #[test]
    fn decodes_bound_layout() {
        let d = decode_unverified(&tok(
            r#"{"aud":["vault"],"sub":"system:serviceaccount:a:b","kubernetes.io":{"namespace":"a","serviceaccount":{"name":"b"}}}"#,
        ))
        .unwrap();
        assert_eq!(d.audiences(), vec!["vault"]);
        assert_eq!(d.service_account(), Some(("a".into(), "b".into())));
    }

    #[test]
    fn decodes_legacy_layout_and_string_aud() {
        let d = decode_unverified(&tok(
            r#"{"aud":"x","kubernetes.io/serviceaccount/namespace":"n","kubernetes.io/serviceaccount/service-account.name":"s"}"#,
        ))
        .unwrap();
        assert_eq!(d.audiences(), vec!["x"]);
        assert_eq!(d.service_account(), Some(("n".into(), "s".into())));
    }

    #[test]
    fn rejects_garbage() {
        assert!(decode_unverified("abc").is_err());
    }
}
