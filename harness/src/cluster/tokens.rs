//! Obtaining the client and reviewer tokens a case describes.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::{
    authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec},
    core::v1::{Pod, ServiceAccount},
};
use kube::{Api, Client, api::PostParams};

use super::objects;
use crate::{
    case::model::{TokenKind, TokenSpec},
    sim::SimCluster,
};

/// Where a token is signed for hand-made tokens.
pub struct Signers<'a> {
    /// The trial's cluster (sim).
    pub cluster: Option<&'a SimCluster>,
    /// A cluster with another key and the same default issuer.
    pub foreign: Option<&'a SimCluster>,
}

/// Obtains the token described by `spec`.
pub async fn obtain(client: &Client, spec: &TokenSpec, signers: &Signers<'_>) -> Result<String> {
    if let Some(lit) = &spec.literal {
        return Ok(lit.clone());
    }
    let (ns, name) = (
        spec.service_account.namespace.as_str(),
        spec.service_account.name.as_str(),
    );
    match spec.token {
        TokenKind::Projected => projected(client, ns, name, spec).await,
        TokenKind::LegacySecret => {
            let secret = spec
                .secret_name
                .clone()
                .unwrap_or_else(|| format!("{name}-token"));
            objects::legacy_token(client, ns, name, &secret).await
        }
        TokenKind::HandMade => hand_made(client, ns, name, spec, signers).await,
    }
}

async fn projected(client: &Client, ns: &str, name: &str, spec: &TokenSpec) -> Result<String> {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let bound_object_ref = match &spec.bound_pod {
        None => None,
        Some(pod) => {
            let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
            let p = pods
                .get(pod)
                .await
                .with_context(|| format!("reading pod {ns}/{pod} to bind the token to"))?;
            Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(pod.clone()),
                uid: p.metadata.uid,
            })
        }
    };
    let req = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: spec.audiences.clone(),
            expiration_seconds: spec.expiration_seconds.map(|e| e as i64),
            bound_object_ref,
            ..Default::default()
        }),
        ..Default::default()
    };
    let resp = api
        .create_token_request(name, &PostParams::default(), &req)
        .await
        .with_context(|| format!("requesting a token for service account {ns}/{name}"))?;
    resp.status
        .and_then(|s| s.token)
        .filter(|t| !t.is_empty())
        .with_context(|| format!("the TokenRequest for {ns}/{name} returned no token"))
}

async fn hand_made(
    client: &Client,
    ns: &str,
    name: &str,
    spec: &TokenSpec,
    signers: &Signers<'_>,
) -> Result<String> {
    let signer = if spec.foreign_key {
        signers.foreign
    } else {
        signers.cluster
    };
    let Some(signer) = signer else {
        bail!("hand-made tokens need the sim cluster (it holds the signing key)");
    };
    let issuer = signers
        .cluster
        .map(|c| c.issuer())
        .unwrap_or_else(|| signer.issuer());
    // The UID of a live service account, or a fresh one when the case makes a token for an
    // account that does not exist.
    let uid = objects::service_account_uid(client, ns, name)
        .await
        .unwrap_or_else(|_| uuid::Uuid::new_v4().to_string());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let shift = spec.time_shift.unwrap_or(0);
    let iat = now + shift;
    let exp = iat + spec.expiration_seconds.unwrap_or(3600) as i64;
    let aud = spec
        .audiences
        .clone()
        .unwrap_or_else(|| vec![issuer.clone()]);
    let mut claims = serde_json::json!({
        "aud": aud,
        "exp": exp,
        "iat": iat,
        "iss": issuer,
        "jti": uuid::Uuid::new_v4().to_string(),
        "kubernetes.io": {"namespace": ns, "serviceaccount": {"name": name, "uid": uid}},
        "nbf": iat,
        "sub": format!("system:serviceaccount:{ns}:{name}"),
    });
    if let Some(obj) = claims.as_object_mut() {
        for (k, v) in &spec.claims {
            if v.is_null() {
                obj.remove(k);
            } else {
                obj.insert(k.clone(), v.clone());
            }
        }
    }
    Ok(signer.sign_token(&claims))
}
