//! §9 items 1–9: TokenRequest.

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

use crate::support::*;

/// The kid computed from the cluster's JWKS (the cluster's `sa.pub`).
async fn expected_kid(env: &Env) -> Result<String> {
    let r = env.admin_call("GET", "/openid/v1/jwks", None, None).await?;
    r.expect(200)?;
    let jwk = r.json()["keys"][0].clone();
    let (spki, _, _) = spki_from_jwk(&jwk)?;
    Ok(kid_of(&spki))
}

/// [D] 201 for a create verb; the kid is recomputed from the published JWK.
pub fn t01_defaults<'a>(env: &'a Env, s: &'a Scratch) -> Fut<'a> {
    Box::pin(async move {
        s.service_account(env, "web").await?;
        let before = now_unix();
        let (token, body) = s.mint(env, "web", json!({})).await?;
        same(
            &body["spec"]["audiences"],
            &json!([env.issuer]),
            "spec.audiences",
        )?;
        same(
            &body["spec"]["expirationSeconds"],
            &json!(3600),
            "spec.expirationSeconds",
        )?;
        let exp_ts = unix_of(
            body["status"]["expirationTimestamp"]
                .as_str()
                .context("no expirationTimestamp")?,
        )?;
        near(exp_ts, before + 3600, 60, "status.expirationTimestamp")?;
        let (header, _, _) = decode_jwt(&token)?;
        let kid = expected_kid(env).await?;
        same(header, json!({"alg": "RS256", "kid": kid}), "JOSE header")?;
        Ok(Done::Passed)
    })
}

pub fn t02_claims<'a>(env: &'a Env, s: &'a Scratch) -> Fut<'a> {
    Box::pin(async move {
        let uid = s.service_account(env, "web").await?;
        let (token, _) = s.mint(env, "web", json!({})).await?;
        let (_, p, raw) = decode_jwt(&token)?;
        same(&p["iss"], &json!(env.issuer), "iss")?;
        same(
            &p["sub"],
            &json!(format!("system:serviceaccount:{}:web", s.ns)),
            "sub",
        )?;
        same(&p["aud"], &json!([env.issuer]), "aud (an array)")?;
        same(&p["nbf"], &p["iat"], "nbf == iat")?;
        let (iat, exp) = (
            p["iat"].as_i64().context("iat")?,
            p["exp"].as_i64().context("exp")?,
        );
        same(exp - iat, 3600, "exp - iat")?;
        if env.at_least(since::JTI) {
            ensure!(
                is_uuid(p["jti"].as_str().unwrap_or("")),
                "jti is not a UUID: {}",
                p["jti"]
            );
        } else {
            ensure!(
                p.get("jti").is_none(),
                "{} has a jti (from {})",
                env.version,
                since::JTI
            );
        }
        same(
            &p["kubernetes.io"],
            &json!({"namespace": s.ns, "serviceaccount": {"name": "web", "uid": uid}}),
            "kubernetes.io",
        )?;
        // Byte layout is the point here: keys sorted at every level, compact.
        same(serde_json::to_string(&p)?, raw, "payload key order")?;
        Ok(Done::Passed)
    })
}

pub fn t03_min_expiration<'a>(env: &'a Env, s: &'a Scratch) -> Fut<'a> {
    Box::pin(async move {
        s.service_account(env, "web").await?;
        let r = s
            .token_request(env, "web", json!({"expirationSeconds": 599}))
            .await?;
        r.expect(422)?;
        let msg = r.json()["message"].as_str().unwrap_or("").to_string();
        ensure!(
            msg.contains("may not specify a duration less than 10 minutes"),
            "message: {msg}"
        );
        Ok(Done::Passed)
    })
}

pub fn t04_audiences<'a>(env: &'a Env, s: &'a Scratch) -> Fut<'a> {
    Box::pin(async move {
        s.service_account(env, "web").await?;
        let (token, body) = s.mint(env, "web", json!({"audiences": ["vault"]})).await?;
        same(
            &body["spec"]["audiences"],
            &json!(["vault"]),
            "spec.audiences",
        )?;
        same(
            decode_jwt(&token)?.1["aud"].clone(),
            json!(["vault"]),
            "aud",
        )?;
        Ok(Done::Passed)
    })
}

/// [D] standard NotFound text from the service-account getter.
pub fn t05_missing_sa<'a>(env: &'a Env, s: &'a Scratch) -> Fut<'a> {
    Box::pin(async move {
        let r = s.token_request(env, "nope", json!({})).await?;
        r.expect(404)?;
        same(
            r.json()["message"].clone(),
            json!("serviceaccounts \"nope\" not found"),
            "message",
        )?;
        Ok(Done::Passed)
    })
}

pub fn t06_pod_other_sa<'a>(env: &'a Env, s: &'a Scratch) -> Fut<'a> {
    Box::pin(async move {
        s.service_account(env, "web").await?;
        s.service_account(env, "other").await?;
        s.pod(env, "app-0", "other", None).await?;
        let r = s.token_request(env, "web", pod_binding("app-0")).await?;
        r.expect(400)?;
        same(
            r.json()["message"].clone(),
            json!(
                "cannot bind token for serviceaccount \"web\" to pod running with different serviceaccount name."
            ),
            "message",
        )?;
        Ok(Done::Passed)
    })
}

pub fn t07_pod_bound_claims<'a>(env: &'a Env, s: &'a Scratch) -> Fut<'a> {
    Box::pin(async move {
        s.service_account(env, "web").await?;
        let (node, node_uid) = s.node(env).await?;
        let pod = s.pod(env, "app-0", "web", Some(&node)).await?;
        let pod_uid = pod["metadata"]["uid"].as_str().context("pod uid")?;
        let (token, _) = s.mint(env, "web", pod_binding("app-0")).await?;
        let k = decode_jwt(&token)?.1["kubernetes.io"].clone();
        same(
            &k["pod"],
            &json!({"name": "app-0", "uid": pod_uid}),
            "kubernetes.io.pod",
        )?;
        let node_claim = if env.at_least(since::NODE_CLAIMS) {
            json!({"name": node, "uid": node_uid})
        } else {
            Value::Null
        };
        same(&k["node"], &node_claim, "kubernetes.io.node")?;
        Ok(Done::Passed)
    })
}

pub fn t08_warn_only_extension<'a>(env: &'a Env, s: &'a Scratch) -> Fut<'a> {
    Box::pin(async move {
        s.service_account(env, "web").await?;
        s.pod(env, "app-0", "web", None).await?;
        let before = now_unix();
        let (token, body) = s
            .mint(
                env,
                "web",
                json!({"audiences": [env.issuer], "expirationSeconds": 3607,
                       "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "app-0"}}),
            )
            .await?;
        let p = decode_jwt(&token)?.1;
        let iat = p["iat"].as_i64().context("iat")?;
        same(
            p["exp"].as_i64().context("exp")? - iat,
            31_536_000,
            "exp - iat",
        )?;
        same(
            p["kubernetes.io"]["warnafter"]
                .as_i64()
                .context("warnafter")?
                - iat,
            3607,
            "warnafter - iat",
        )?;
        let exp_ts = unix_of(
            body["status"]["expirationTimestamp"]
                .as_str()
                .context("expirationTimestamp")?,
        )?;
        near(exp_ts, before + 3607, 60, "status.expirationTimestamp")?;
        Ok(Done::Passed)
    })
}

/// [D] message and details derived from §4.1 rules (`details.name` = the SA).
pub fn t09_forbidden<'a>(env: &'a Env, s: &'a Scratch) -> Fut<'a> {
    Box::pin(async move {
        s.service_account(env, "web").await?;
        s.service_account(env, "caller").await?;
        let (caller, _) = s.mint(env, "caller", json!({})).await?;
        let r = env
            .call(
                "POST",
                &format!("/api/v1/namespaces/{}/serviceaccounts/web/token", s.ns),
                Some(&caller),
                Some(&json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}})),
            )
            .await?;
        r.expect(403)?;
        let body = r.json();
        let want = format!(
            "serviceaccounts \"web\" is forbidden: User \"system:serviceaccount:{ns}:caller\" cannot create resource \"serviceaccounts/token\" in API group \"\" in the namespace \"{ns}\"",
            ns = s.ns
        );
        same(body["message"].clone(), Value::String(want), "message")?;
        same(
            body["details"].clone(),
            json!({"name": "web", "kind": "serviceaccounts"}),
            "details",
        )?;
        Ok(Done::Passed)
    })
}
