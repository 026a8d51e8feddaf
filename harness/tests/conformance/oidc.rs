//! §9 items 39–43: service-account issuer discovery and the bootstrap policy.

use anyhow::{Context, ensure};
use serde_json::{Value, json};

use crate::support::*;

const CONFIG: &str = "/.well-known/openid-configuration";
const JWKS: &str = "/openid/v1/jwks";

pub fn t39_discovery<'a>(env: &'a Env, s: &'a Scratch) -> Fut<'a> {
    Box::pin(async move {
        s.service_account(env, "web").await?;
        let (token, _) = s.mint(env, "web", json!({})).await?;
        let r = env.call("GET", CONFIG, Some(&token), None).await?;
        r.expect(200)?;
        same(
            r.header("content-type"),
            Some("application/json"),
            "Content-Type",
        )?;
        same(
            r.header("cache-control"),
            Some("public, max-age=3600"),
            "Cache-Control",
        )?;
        let body = r.json();
        let keys: Vec<&String> = body.as_object().context("not an object")?.keys().collect();
        ensure!(keys.len() == 5, "expected exactly five keys, got {keys:?}");
        // Byte layout matters here: compact JSON in the apiserver's field order.
        let order = [
            "issuer",
            "jwks_uri",
            "response_types_supported",
            "subject_types_supported",
            "id_token_signing_alg_values_supported",
        ];
        let positions: Vec<usize> = order
            .iter()
            .map(|k| {
                r.text
                    .find(&format!("\"{k}\":"))
                    .with_context(|| format!("no {k}"))
            })
            .collect::<anyhow::Result<_>>()?;
        ensure!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "field order differs: {}",
            r.text
        );
        ensure!(!r.text.contains('\n'), "not compact: {}", r.text);
        same(&body["issuer"], &json!(env.issuer), "issuer")?;
        ensure!(
            body["jwks_uri"]
                .as_str()
                .is_some_and(|u| u.ends_with("/openid/v1/jwks")),
            "jwks_uri: {}",
            body["jwks_uri"]
        );
        same(
            &body["response_types_supported"],
            &json!(["id_token"]),
            "response_types_supported",
        )?;
        same(
            &body["subject_types_supported"],
            &json!(["public"]),
            "subject_types_supported",
        )?;
        same(
            &body["id_token_signing_alg_values_supported"],
            &json!(["RS256"]),
            "algs",
        )?;
        Ok(Done::Passed)
    })
}

pub fn t40_jwks<'a>(env: &'a Env, s: &'a Scratch) -> Fut<'a> {
    Box::pin(async move {
        s.service_account(env, "web").await?;
        let (token, _) = s.mint(env, "web", json!({})).await?;
        let kid = decode_jwt(&token)?.0["kid"]
            .as_str()
            .context("kid")?
            .to_string();
        let r = env.call("GET", JWKS, Some(&token), None).await?;
        r.expect(200)?;
        same(
            r.header("content-type"),
            Some("application/jwk-set+json"),
            "Content-Type",
        )?;
        same(
            r.header("cache-control"),
            Some("public, max-age=3600"),
            "Cache-Control",
        )?;
        let keys = r.json()["keys"].as_array().cloned().context("no keys")?;
        for k in &keys {
            same(
                (&k["use"], &k["kty"], &k["alg"]),
                (&json!("sig"), &json!("RSA"), &json!("RS256")),
                "use/kty/alg",
            )?;
        }
        let jwk = keys
            .iter()
            .find(|k| k["kid"] == json!(kid))
            .context("no JWK with the token's kid")?;
        let (spki, n, e) = spki_from_jwk(jwk)?;
        same(kid_of(&spki), kid, "kid == b64url(SHA256(SPKI))")?;
        verify_with(&token, &n, &e)?;
        Ok(Done::Passed)
    })
}

/// The discovery routes are declared with one type each (`application/json`,
/// `application/jwk-set+json`): a request that accepts only another type gets 406, one that
/// sends no Accept, `*/*` or the type itself gets the document.
pub fn t44_content_negotiation<'a>(env: &'a Env, s: &'a Scratch) -> Fut<'a> {
    Box::pin(async move {
        s.service_account(env, "web").await?;
        let (token, _) = s.mint(env, "web", json!({})).await?;
        for (path, produced, other) in [
            (JWKS, "application/jwk-set+json", "application/json"),
            (
                "/.well-known/openid-configuration",
                "application/json",
                "application/jwk-set+json",
            ),
        ] {
            env.get_accepting(path, &token, Some(other))
                .await?
                .expect(406)
                .with_context(|| format!("GET {path} accepting only {other}"))?;
            for accept in [None, Some("*/*"), Some(produced)] {
                let r = env.get_accepting(path, &token, accept).await?;
                r.expect(200)
                    .with_context(|| format!("GET {path} with Accept {accept:?}"))?;
                same(r.header("content-type"), Some(produced), "Content-Type")?;
            }
        }
        Ok(Done::Passed)
    })
}

fn anonymous_403(path: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": format!("forbidden: User \"system:anonymous\" cannot get path \"{path}\""),
           "reason": "Forbidden", "details": {}, "code": 403})
}

pub fn t41_anonymous_forbidden<'a>(env: &'a Env, _s: &'a Scratch) -> Fut<'a> {
    Box::pin(async move {
        let _guard = env.anonymous_lock.lock().await;
        for path in [CONFIG, JWKS] {
            let r = env.call("GET", path, None, None).await?;
            if env.users && r.status == 200 {
                return Ok(Done::Ignored(format!(
                    "not applicable here: the cluster lets anonymous users GET {path} (its RBAC binds system:service-account-issuer-discovery to them)"
                )));
            }
            r.expect(403)?;
            same(r.json(), anonymous_403(path), path)?;
            ensure!(
                r.text.contains("\"details\":{}"),
                "details must be present and empty: {}",
                r.text
            );
        }
        Ok(Done::Passed)
    })
}

pub fn t42_unauthenticated_binding<'a>(env: &'a Env, s: &'a Scratch) -> Fut<'a> {
    Box::pin(async move {
        let _guard = env.anonymous_lock.lock().await;
        let name = format!("{}-anonymous-discovery", s.ns);
        let path = format!("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{name}");
        env.admin_call(
            "POST",
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            Some(&json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                         "metadata": {"name": name},
                         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                     "name": "system:service-account-issuer-discovery"},
                         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:unauthenticated"}]})),
            None,
        )
        .await?
        .expect(201)?;
        let result = async {
            for p in [CONFIG, JWKS] {
                poll(15, &format!("anonymous GET {p} to be allowed"), || async {
                    Ok((env.call("GET", p, None, None).await?.status == 200).then_some(()))
                })
                .await?;
            }
            anyhow::Ok(())
        }
        .await;
        // Remove the binding at once (other tests expect anonymous discovery to be denied).
        let _ = env.admin_call("DELETE", &path, None, None).await;
        result?;
        Ok(Done::Passed)
    })
}

pub fn t43_bootstrap_policy<'a>(env: &'a Env, _s: &'a Scratch) -> Fut<'a> {
    Box::pin(async move {
        let r = env
            .admin_call(
                "GET",
                "/apis/rbac.authorization.k8s.io/v1/clusterroles/system:auth-delegator",
                None,
                None,
            )
            .await?;
        r.expect(200)?;
        same(
            r.json()["rules"].clone(),
            json!([{"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
                   {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]}]),
            "system:auth-delegator rules",
        )?;
        let r = env
            .admin_call(
                "GET",
                "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/system:service-account-issuer-discovery",
                None,
                None,
            )
            .await?;
        r.expect(200)?;
        let body = r.json();
        same(
            &body["roleRef"]["name"],
            &json!("system:service-account-issuer-discovery"),
            "roleRef",
        )?;
        same(
            &body["subjects"],
            &json!([{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:serviceaccounts"}]),
            "subjects",
        )?;
        Ok(Done::Passed)
    })
}
