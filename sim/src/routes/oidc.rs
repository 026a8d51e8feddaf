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
pub(crate) fn configuration(core: &Arc<Core>) -> Result<Reply, ApiError> {
    if !enabled(core) {
        return Err(ApiError::no_route());
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
pub(crate) fn jwks(core: &Arc<Core>) -> Result<Reply, ApiError> {
    if !enabled(core) {
        return Err(ApiError::no_route());
    }
    let body = serde_json::to_vec(&KeySet {
        keys: [core.key.jwk()],
    })
    .map_err(|e| ApiError::internal(&e.to_string()))?;
    Ok(reply(body, "application/jwk-set+json"))
}
