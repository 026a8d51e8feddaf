//! §9 items 32–38: legacy Secret-based tokens.

use anyhow::{Context, Result, ensure};
use base64::{Engine, engine::general_purpose::STANDARD};
use serde_json::{Value, json};

use crate::support::*;

fn token_secret(name: &str, sa: Option<&str>) -> Value {
    let mut meta = json!({"name": name});
    if let Some(sa) = sa {
        meta["annotations"] = json!({"kubernetes.io/service-account.name": sa});
    }
    json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token", "metadata": meta})
}

/// Creates a token Secret for `sa` and waits until the tokens controller filled it.
async fn filled_secret(env: &Env, s: &Scratch, name: &str, sa: &str) -> Result<Value> {
    s.create(env, "secrets", token_secret(name, Some(sa)))
        .await?;
    let path = format!("/api/v1/namespaces/{}/secrets/{name}", s.ns);
    poll(15, "data.token in the token Secret", || async {
        let r = env.admin_call("GET", &path, None, None).await?;
        let v = r.json();
        Ok(v["data"]["token"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
            .then_some(v))
    })
    .await
}

fn data(secret: &Value, key: &str) -> Result<String> {
    let b64 = secret["data"][key]
        .as_str()
        .with_context(|| format!("no data.{key}"))?;
    Ok(String::from_utf8(STANDARD.decode(b64)?)?)
}

/// [D] only the field error is asserted (the `Secret "<n>" is invalid:` prefix is derived).
pub fn t32_missing_annotation<'a>(env: &'a Env, s: &'a Scratch) -> Fut<'a> {
    Box::pin(async move {
        let r = env
            .admin_call(
                "POST",
                &format!("/api/v1/namespaces/{}/secrets", s.ns),
                Some(&token_secret("tok", None)),
                None,
            )
            .await?;
        r.expect(422)?;
        let msg = r.json()["message"].as_str().unwrap_or("").to_string();
        ensure!(
            msg.contains(
                "metadata.annotations[kubernetes.io/service-account.name]: Required value"
            ),
            "message: {msg}"
        );
        Ok(Done::Passed)
    })
}

pub fn t33_controller_fills<'a>(env: &'a Env, s: &'a Scratch) -> Fut<'a> {
    Box::pin(async move {
        let uid = s.service_account(env, "vault-auth").await?;
        let secret = filled_secret(env, s, "vault-auth-token", "vault-auth").await?;
        same(
            secret["metadata"]["annotations"]["kubernetes.io/service-account.uid"].clone(),
            json!(uid),
            "uid annotation",
        )?;
        same(data(&secret, "namespace")?, s.ns.clone(), "data.namespace")?;
        ensure!(
            data(&secret, "ca.crt")?.contains("BEGIN CERTIFICATE"),
            "data.ca.crt is not a PEM certificate"
        );
        let token = data(&secret, "token")?;
        let (header, payload, _) = decode_jwt(&token)?;
        same(header["alg"].clone(), json!("RS256"), "alg")?;
        ensure!(
            header["kid"].as_str().is_some_and(|k| k.len() == 43),
            "kid: {header}"
        );
        same(
            payload,
            json!({
                "iss": "kubernetes/serviceaccount",
                "kubernetes.io/serviceaccount/namespace": s.ns,
                "kubernetes.io/serviceaccount/secret.name": "vault-auth-token",
                "kubernetes.io/serviceaccount/service-account.name": "vault-auth",
                "kubernetes.io/serviceaccount/service-account.uid": uid,
                "sub": format!("system:serviceaccount:{}:vault-auth", s.ns),
            }),
            "legacy claims",
        )?;
        Ok(Done::Passed)
    })
}

pub fn t34_missing_sa_deletes_secret<'a>(env: &'a Env, s: &'a Scratch) -> Fut<'a> {
    Box::pin(async move {
        s.create(env, "secrets", token_secret("orphan", Some("ghost")))
            .await?;
        let path = format!("/api/v1/namespaces/{}/secrets/orphan", s.ns);
        poll(15, "the orphan token Secret to be deleted", || async {
            Ok((env.admin_call("GET", &path, None, None).await?.status == 404).then_some(()))
        })
        .await?;
        Ok(Done::Passed)
    })
}

pub fn t35_review_legacy<'a>(env: &'a Env, s: &'a Scratch) -> Fut<'a> {
    Box::pin(async move {
        let reviewer = s.reviewer(env).await?;
        let uid = s.service_account(env, "vault-auth").await?;
        let token = data(&filled_secret(env, s, "tok", "vault-auth").await?, "token")?;
        let r = review(env, &reviewer, &token, &[]).await?;
        let st = &r["status"];
        same(&st["authenticated"], &json!(true), "authenticated")?;
        same(
            &st["user"]["username"],
            &json!(format!("system:serviceaccount:{}:vault-auth", s.ns)),
            "username",
        )?;
        same(&st["user"]["uid"], &json!(uid), "uid")?;
        same(&st["audiences"], &json!([env.issuer]), "status.audiences")?;
        let extra = st["user"]["extra"].as_object().cloned().unwrap_or_default();
        ensure!(
            !extra
                .keys()
                .any(|k| k.contains("pod-") || k.contains("node-")),
            "legacy token has pod/node extra: {extra:?}"
        );
        Ok(Done::Passed)
    })
}

/// [D] a legacy token counts as carrying the API audiences.
pub fn t36_legacy_vault_audience<'a>(env: &'a Env, s: &'a Scratch) -> Fut<'a> {
    Box::pin(async move {
        let reviewer = s.reviewer(env).await?;
        s.service_account(env, "vault-auth").await?;
        let token = data(&filled_secret(env, s, "tok", "vault-auth").await?, "token")?;
        let r = review(env, &reviewer, &token, &["vault"]).await?;
        let want = format!(
            "[invalid bearer token, token audiences [\"{}\"] is invalid for the target audiences [\"vault\"]]",
            env.issuer
        );
        same(
            r["status"]["error"].as_str().unwrap_or(""),
            want.as_str(),
            "status.error",
        )?;
        same(&r["status"]["user"], &json!({}), "status.user")?;
        Ok(Done::Passed)
    })
}

pub fn t37_secret_deleted<'a>(env: &'a Env, s: &'a Scratch) -> Fut<'a> {
    Box::pin(async move {
        let reviewer = s.reviewer(env).await?;
        s.service_account(env, "vault-auth").await?;
        let token = data(&filled_secret(env, s, "tok", "vault-auth").await?, "token")?;
        env.admin_call(
            "DELETE",
            &format!("/api/v1/namespaces/{}/secrets/tok", s.ns),
            None,
            None,
        )
        .await?
        .expect(200)?;
        let want = "[invalid bearer token, Token has been invalidated]";
        poll(30, want, || async {
            let r = review(env, &reviewer, &token, &[]).await?;
            Ok((r["status"]["error"].as_str() == Some(want)).then_some(()))
        })
        .await?;
        Ok(Done::Passed)
    })
}

pub fn t38_sa_creates_no_secret<'a>(env: &'a Env, s: &'a Scratch) -> Fut<'a> {
    Box::pin(async move {
        if !env.at_least(since::NO_AUTO_TOKEN_SECRET) {
            return auto_token_secret(env, s).await;
        }
        s.service_account(env, "plain").await?;
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let sa = env
            .admin_call(
                "GET",
                &format!("/api/v1/namespaces/{}/serviceaccounts/plain", s.ns),
                None,
                None,
            )
            .await?;
        sa.expect(200)?;
        ensure!(
            sa.json()["secrets"].as_array().is_none_or(|a| a.is_empty()),
            "sa.secrets is not empty: {}",
            sa.text
        );
        let secrets = env
            .admin_call(
                "GET",
                &format!("/api/v1/namespaces/{}/secrets", s.ns),
                None,
                None,
            )
            .await?;
        secrets.expect(200)?;
        let tokens: Vec<Value> = secrets.json()["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|s| s["type"] == "kubernetes.io/service-account-token")
            .collect();
        ensure!(tokens.is_empty(), "token Secrets appeared: {tokens:?}");
        Ok(Done::Passed)
    })
}

/// Before 1.24.0 the tokens controller makes a token Secret for each new service account and
/// lists it in the account's `secrets`.
async fn auto_token_secret(env: &Env, s: &Scratch) -> Result<Done> {
    s.service_account(env, "plain").await?;
    let path = format!("/api/v1/namespaces/{}/serviceaccounts/plain", s.ns);
    let what = format!(
        "the tokens controller of {} to make a token Secret for the new service account (as before {})",
        env.version,
        since::NO_AUTO_TOKEN_SECRET
    );
    let name = poll(15, &what, || async {
        let sa = env.admin_call("GET", &path, None, None).await?;
        sa.expect(200)?;
        Ok(sa.json()["secrets"][0]["name"].as_str().map(str::to_string))
    })
    .await?;
    let secret = env
        .admin_call(
            "GET",
            &format!("/api/v1/namespaces/{}/secrets/{name}", s.ns),
            None,
            None,
        )
        .await?;
    secret.expect(200)?;
    same(
        &secret.json()["type"],
        &json!("kubernetes.io/service-account-token"),
        "type of the account's Secret",
    )?;
    Ok(Done::Passed)
}
