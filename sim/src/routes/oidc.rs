//! Service-account issuer discovery: `/.well-known/openid-configuration` and `/openid/v1/jwks`.

use std::sync::Arc;

use serde::Serialize;

use super::Reply;
use crate::{core::Core, keys::Jwk, status::ApiError};

#[derive(Serialize)]
struct Configuration<'a> {
    issuer: &'a str,
    jwks_uri: String,
    response_types_supported: [&'static str; 1],
    subject_types_supported: [&'static str; 1],
    id_token_signing_alg_values_supported: [&'static str; 1],
}

#[derive(Serialize)]
struct KeySet<'a> {
    keys: [Jwk<'a>; 1],
}

/// Whether an `Accept` header admits `produced` (`type/subtype`): no header, `*/*`, `type/*`
/// or the type itself, in any entry not weighted `q=0`.
pub(crate) fn accepts(accept: Option<&str>, produced: &str) -> bool {
    let Some(accept) = accept.map(str::trim).filter(|a| !a.is_empty()) else {
        return true;
    };
    let (ty, _) = produced.split_once('/').unwrap_or((produced, ""));
    accept.split(',').any(|entry| {
        let mut parts = entry.split(';').map(str::trim);
        let range = parts.next().unwrap_or("").to_ascii_lowercase();
        let refused = parts.any(|p| {
            p.strip_prefix("q=")
                .and_then(|q| q.parse::<f32>().ok())
                .is_some_and(|q| q == 0.0)
        });
        !refused && (range == "*/*" || range == format!("{ty}/*") || range == produced)
    })
}

/// The answer of a route declared with the one type `produced` to a request whose `Accept`
/// does not admit it: `406: Not Acceptable` as plain text, as the API server's REST framework
/// writes it (None: the request may be served).
pub(crate) fn not_acceptable(headers: &axum::http::HeaderMap, produced: &str) -> Option<Reply> {
    let accept = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    (!accepts(accept, produced)).then(|| Reply {
        status: 406,
        body: b"406: Not Acceptable".to_vec(),
        content_type: "text/plain; charset=utf-8",
        headers: Vec::new(),
        error: Some("406: Not Acceptable".into()),
        review: None,
    })
}

/// The endpoints exist only for an `https` issuer without query or fragment.
fn enabled(core: &Core) -> bool {
    let iss = &core.settings.issuer;
    iss.starts_with("https://") && !iss.contains('?') && !iss.contains('#')
}

fn reply(body: Vec<u8>, content_type: &'static str) -> Reply {
    Reply {
        status: 200,
        body,
        content_type,
        headers: vec![(
            axum::http::header::CACHE_CONTROL,
            axum::http::HeaderValue::from_static("public, max-age=3600"),
        )],
        error: None,
        review: None,
    }
}

/// The OpenID provider configuration (always compact JSON).
pub(crate) fn configuration(
    core: &Arc<Core>,
    headers: &axum::http::HeaderMap,
) -> Result<Reply, ApiError> {
    if !enabled(core) {
        return Err(ApiError::no_route());
    }
    if let Some(r) = not_acceptable(headers, "application/json") {
        return Ok(r);
    }
    let doc = Configuration {
        issuer: &core.settings.issuer,
        jwks_uri: format!("{}/openid/v1/jwks", core.url()),
        response_types_supported: ["id_token"],
        subject_types_supported: ["public"],
        id_token_signing_alg_values_supported: ["RS256"],
    };
    let body = serde_json::to_vec(&doc).map_err(|e| ApiError::internal(&e.to_string()))?;
    Ok(reply(body, "application/json"))
}

/// The JSON Web Key Set of the service-account signing key (always compact JSON).
/// Declared with the one type `application/jwk-set+json`: a request that accepts only
/// `application/json` gets 406.
pub(crate) fn jwks(core: &Arc<Core>, headers: &axum::http::HeaderMap) -> Result<Reply, ApiError> {
    if !enabled(core) {
        return Err(ApiError::no_route());
    }
    if let Some(r) = not_acceptable(headers, "application/jwk-set+json") {
        return Ok(r);
    }
    let body = serde_json::to_vec(&KeySet {
        keys: [core.key.jwk()],
    })
    .map_err(|e| ApiError::internal(&e.to_string()))?;
    Ok(reply(body, "application/jwk-set+json"))
}

#[cfg(test)]
mod tests {
    use super::accepts;

    #[test]
    fn accept_ranges() {
        let jwks = "application/jwk-set+json";
        for a in [
            None,
            Some(""),
            Some("*/*"),
            Some("application/*"),
            Some(jwks),
            Some("application/json, */*"),
        ] {
            assert!(accepts(a, jwks), "{a:?}");
        }
        for a in [
            Some("application/json"),
            Some("text/plain"),
            Some("*/*;q=0"),
            Some("application/json;q=0.9"),
        ] {
            assert!(!accepts(a, jwks), "{a:?}");
        }
    }
}
