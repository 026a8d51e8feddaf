//! Obtaining the client and reviewer tokens a case describes.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::{
    authentication::v1::{
        BoundObjectReference, TokenRequest, TokenRequestSpec, TokenReview, TokenReviewSpec,
    },
    core::v1::{Pod, ServiceAccount},
};
use kube::{Api, Client, api::PostParams};

use super::objects;
use crate::{
    case::model::{TokenKind, TokenSpec},
    sim::SimCluster,
};

/// Waits (at most `bound`) until the API server of `client` no longer authenticates `token`,
/// after an object its validity rests on (its account, Secret or pod) is gone: the API server's
/// authenticator reads those objects from its own informers, which a busy API server updates a
/// moment after the deletion. Reviewed for the token's own audiences and `audiences`, plus one
/// no one else asks for: the API server caches a successful review for a while by token and
/// audiences, and the server under test must not meet this one's. True once rejected; false
/// if it still authenticated at the end.
pub async fn until_rejected(
    client: &Client,
    token: &str,
    audiences: &[String],
    bound: std::time::Duration,
) -> Result<bool> {
    let mut auds = crate::jwt::decode_unverified(token)
        .map(|d| d.audiences())
        .unwrap_or_default();
    auds.extend(audiences.iter().cloned());
    auds.push(format!("authlab-lookup-{}", uuid::Uuid::new_v4().simple()));
    let review = TokenReview {
        spec: TokenReviewSpec {
            token: token.to_string(),
            audiences: Some(auds),
        },
        ..Default::default()
    };
    let api: Api<TokenReview> = Api::all(client.clone());
    let mut wait = crate::wait::Wait::new("the API server to reject the client token", bound)
        .every(std::time::Duration::from_millis(100))
        .start();
    loop {
        let answer = api
            .create(&PostParams::default(), &review)
            .await
            .context("reviewing the client token")?;
        if !answer.status.and_then(|s| s.authenticated).unwrap_or(false) {
            return Ok(true);
        }
        if wait.tick().await.is_err() {
            return Ok(false);
        }
    }
}

/// A key that signs hand-made tokens as a cluster does, with the issuer they carry.
#[derive(Clone)]
pub struct Signer {
    /// PKCS#8 PEM of the service-account signing key.
    pub key_pem: String,
    /// The cluster's service-account issuer.
    pub issuer: String,
}

impl Signer {
    /// The key and issuer of a sim cluster.
    pub fn of_sim(sim: &SimCluster) -> Signer {
        Signer {
            key_pem: sim.signing_key_pkcs8_pem(),
            issuer: sim.issuer(),
        }
    }

    /// Signs `claims` (RS256, the key's `kid`).
    pub fn sign(&self, claims: &serde_json::Value) -> Result<String> {
        crate::sim::sign_token_with(&self.key_pem, claims)
    }
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

/// Where a token is signed for hand-made tokens.
#[derive(Default)]
pub struct Signers {
    /// The trial's cluster (the sim, or an API server authlab started).
    pub cluster: Option<Signer>,
    /// A cluster with another key and the same default issuer.
    pub foreign: Option<Signer>,
}

/// Obtains the token described by `spec`.
pub async fn obtain(
    client: &Client,
    owner: &objects::Owner,
    spec: &TokenSpec,
    signers: &Signers,
) -> Result<String> {
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
            objects::legacy_token(client, owner, ns, name, &spec.legacy_secret_name()).await
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
    signers: &Signers,
) -> Result<String> {
    let signer = if spec.foreign_key {
        signers.foreign.as_ref()
    } else {
        signers.cluster.as_ref()
    };
    let Some(signer) = signer else {
        bail!(
            "hand-made tokens need a cluster whose signing key authlab holds (the sim, or --cluster apiserver)"
        );
    };
    let issuer = signers
        .cluster
        .as_ref()
        .map(|c| c.issuer.clone())
        .unwrap_or_else(|| signer.issuer.clone());
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
    signer.sign(&claims)
}
