//! §9 items 14–31: TokenReview.

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

use crate::{authn::expired_token, support::*};

fn error_of(review: &Value) -> String {
    review["status"]["error"].as_str().unwrap_or("").to_string()
}

/// A failed review: no `authenticated`, `user == {}`, and the given error.
fn expect_failure(review: &Value, error: &str) -> Result<()> {
    ensure!(
        review["status"].get("authenticated").is_none(),
        "authenticated present: {review}"
    );
    same(&review["status"]["user"], &json!({}), "status.user")?;
    same(error_of(review).as_str(), error, "status.error")?;
    Ok(())
}

fn groups(ns: &str) -> Value {
    json!([
        "system:serviceaccounts",
        format!("system:serviceaccounts:{ns}"),
        "system:authenticated"
    ])
}

/// The `credential-id` a TokenReview of `token` carries in `extra` (`JTI=<jti>`), on versions
/// that put a `jti` in tokens; None before.
fn credential_id(env: &Env, token: &str) -> Result<Option<String>> {
    if !env.at_least(since::JTI) {
        return Ok(None);
    }
    let jti = decode_jwt(token)?.1["jti"]
        .as_str()
        .context("jti")?
        .to_string();
    Ok(Some(format!("JTI={jti}")))
}

/// [D] 201 on review; `extra` carries only the credential id for unbound tokens (none before
/// 1.30, whose tokens have no `jti`).
pub fn t14_valid_unbound<'a>(env: &'a Env, s: &'a Scratch) -> Fut<'a> {
    Box::pin(async move {
        let reviewer = s.reviewer(env).await?;
        let uid = s.service_account(env, "web").await?;
        let (token, _) = s.mint(env, "web", json!({})).await?;
        let extra = credential_id(env, &token)?;
        let r = review(env, &reviewer, &token, &[]).await?;
        let st = &r["status"];
        same(&st["authenticated"], &json!(true), "authenticated")?;
        same(
            &st["user"]["username"],
            &json!(format!("system:serviceaccount:{}:web", s.ns)),
            "username",
        )?;
        same(&st["user"]["uid"], &json!(uid), "uid")?;
        same(&st["user"]["groups"], &groups(&s.ns), "groups")?;
        same(&st["audiences"], &json!([env.issuer]), "status.audiences")?;
        let want = match extra {
            Some(id) => json!({"authentication.kubernetes.io/credential-id": [id]}),
            None => Value::Null,
        };
        same(&st["user"]["extra"], &want, "extra")?;
        Ok(Done::Passed)
    })
}

pub fn t15_pod_bound_extra<'a>(env: &'a Env, s: &'a Scratch) -> Fut<'a> {
    Box::pin(async move {
        let reviewer = s.reviewer(env).await?;
        s.service_account(env, "web").await?;
        let (node, node_uid) = s.node(env).await?;
        let pod = s.pod(env, "web-0", "web", Some(&node)).await?;
        let pod_uid = pod["metadata"]["uid"]
            .as_str()
            .context("pod uid")?
            .to_string();
        let (token, _) = s.mint(env, "web", pod_binding("web-0")).await?;
        let id = credential_id(env, &token)?;
        let r = review(env, &reviewer, &token, &[]).await?;
        let mut want = json!({
            "authentication.kubernetes.io/pod-name": ["web-0"],
            "authentication.kubernetes.io/pod-uid": [pod_uid],
        });
        if let Some(id) = id {
            want["authentication.kubernetes.io/credential-id"] = json!([id]);
        }
        if env.at_least(since::NODE_CLAIMS) {
            want["authentication.kubernetes.io/node-name"] = json!([node]);
            if !node_uid.is_empty() {
                want["authentication.kubernetes.io/node-uid"] = json!([node_uid]);
            }
        }
        same(&r["status"]["user"]["extra"], &want, "extra")?;
        Ok(Done::Passed)
    })
}

pub fn t16_vault_audience<'a>(env: &'a Env, s: &'a Scratch) -> Fut<'a> {
    Box::pin(async move {
        let reviewer = s.reviewer(env).await?;
        s.service_account(env, "web").await?;
        let (token, _) = s.mint(env, "web", json!({"audiences": ["vault"]})).await?;
        let r = review(env, &reviewer, &token, &["vault"]).await?;
        same(&r["status"]["authenticated"], &json!(true), "authenticated")?;
        same(
            &r["status"]["audiences"],
            &json!(["vault"]),
            "status.audiences",
        )?;
        Ok(Done::Passed)
    })
}

pub fn t17_audience_intersection<'a>(env: &'a Env, s: &'a Scratch) -> Fut<'a> {
    Box::pin(async move {
        let reviewer = s.reviewer(env).await?;
        s.service_account(env, "web").await?;
        let (token, _) = s
            .mint(env, "web", json!({"audiences": ["vault", "other"]}))
            .await?;
        let r = review(env, &reviewer, &token, &["other", "x"]).await?;
        same(&r["status"]["authenticated"], &json!(true), "authenticated")?;
        same(
            &r["status"]["audiences"],
            &json!(["other"]),
            "status.audiences",
        )?;
        Ok(Done::Passed)
    })
}

/// [D] the loopback authenticator's `invalid bearer token` is always first.
pub fn t18_audience_mismatch_default<'a>(env: &'a Env, s: &'a Scratch) -> Fut<'a> {
    Box::pin(async move {
        let reviewer = s.reviewer(env).await?;
        s.service_account(env, "web").await?;
        let (token, _) = s.mint(env, "web", json!({"audiences": ["vault"]})).await?;
        let r = review(env, &reviewer, &token, &[]).await?;
        let want = format!(
            "[invalid bearer token, token audiences [\"vault\"] is invalid for the target audiences [\"{}\"]]",
            env.issuer
        );
        expect_failure(&r, &want)?;
        Ok(Done::Passed)
    })
}

pub fn t19_requested_vault<'a>(env: &'a Env, s: &'a Scratch) -> Fut<'a> {
    Box::pin(async move {
        let reviewer = s.reviewer(env).await?;
        s.service_account(env, "web").await?;
        let (token, _) = s.mint(env, "web", json!({})).await?;
        let r = review(env, &reviewer, &token, &["vault"]).await?;
        let want = format!(
            "[invalid bearer token, token audiences [\"{}\"] is invalid for the target audiences [\"vault\"]]",
            env.issuer
        );
        expect_failure(&r, &want)?;
        Ok(Done::Passed)
    })
}

pub fn t20_expired<'a>(env: &'a Env, s: &'a Scratch) -> Fut<'a> {
    Box::pin(async move {
        s.service_account(env, "web").await?;
        let token = match expired_token(env, s, "web").await? {
            Ok(t) => t,
            Err(done) => return Ok(done),
        };
        let reviewer = s.reviewer(env).await?;
        let r = review(env, &reviewer, &token, &[]).await?;
        expect_failure(
            &r,
            "[invalid bearer token, service account token has expired]",
        )?;
        Ok(Done::Passed)
    })
}

/// Polls reviews of `token` until `status.error == want` (a real apiserver caches successes
/// for 10 s, so up to 30 s are allowed).
async fn review_until(env: &Env, reviewer: &str, token: &str, want: &str) -> Result<Value> {
    poll(30, &format!("TokenReview error `{want}`"), || async {
        let r = review(env, reviewer, token, &[]).await?;
        Ok((error_of(&r) == want).then_some(r))
    })
    .await
}

/// Deletes the pod at `path` with grace period 0 and waits until its bound `token` reviews as
/// invalidated.
async fn delete_now_and_expect_invalidated(
    env: &Env,
    path: &str,
    reviewer: &str,
    token: &str,
) -> Result<()> {
    env.admin_call(
        "DELETE",
        path,
        Some(&json!({"gracePeriodSeconds": 0})),
        None,
    )
    .await?
    .expect(200)?;
    let want = "[invalid bearer token, service account token has been invalidated]";
    let r = review_until(env, reviewer, token, want).await?;
    expect_failure(&r, want)
}

pub fn t21_pod_deleted<'a>(env: &'a Env, s: &'a Scratch) -> Fut<'a> {
    Box::pin(async move {
        let reviewer = s.reviewer(env).await?;
        s.service_account(env, "web").await?;
        s.pod(env, "web-0", "web", None).await?;
        let (token, _) = s.mint(env, "web", pod_binding("web-0")).await?;
        same(
            &review(env, &reviewer, &token, &[]).await?["status"]["authenticated"],
            &json!(true),
            "before delete",
        )?;
        delete_now_and_expect_invalidated(
            env,
            &format!("/api/v1/namespaces/{}/pods/web-0", s.ns),
            &reviewer,
            &token,
        )
        .await?;
        Ok(Done::Passed)
    })
}

/// A pod scheduled to a node is deleted gracefully: it stays, with a `deletionTimestamp` its
/// grace period ahead, until its kubelet confirms, and the tokens bound to it stay valid (until
/// that timestamp is more than 60 s past). Deleting it with grace period 0 removes it.
pub fn t21b_pod_terminating<'a>(env: &'a Env, s: &'a Scratch) -> Fut<'a> {
    Box::pin(async move {
        let reviewer = s.reviewer(env).await?;
        s.service_account(env, "web").await?;
        let (node, _) = s.node(env).await?;
        s.pod(env, "web-1", "web", Some(&node)).await?;
        let (token, _) = s.mint(env, "web", pod_binding("web-1")).await?;
        let path = format!("/api/v1/namespaces/{}/pods/web-1", s.ns);
        env.admin_call(
            "DELETE",
            &path,
            Some(&json!({"gracePeriodSeconds": 30})),
            None,
        )
        .await?
        .expect(200)?;
        let r = env.admin_call("GET", &path, None, None).await?;
        r.expect(200)?;
        let pod = r.json();
        if pod["metadata"]["deletionTimestamp"].as_str().is_none() {
            anyhow::bail!("the terminating pod has no deletionTimestamp: {pod}");
        }
        same(
            &pod["metadata"]["deletionGracePeriodSeconds"],
            &json!(30),
            "deletionGracePeriodSeconds",
        )?;
        same(
            &review(env, &reviewer, &token, &[]).await?["status"]["authenticated"],
            &json!(true),
            "a token of a terminating pod",
        )?;
        delete_now_and_expect_invalidated(env, &path, &reviewer, &token).await?;
        Ok(Done::Passed)
    })
}

pub fn t22_sa_recreated<'a>(env: &'a Env, s: &'a Scratch) -> Fut<'a> {
    Box::pin(async move {
        let reviewer = s.reviewer(env).await?;
        let old = s.service_account(env, "web").await?;
        let (token, _) = s.mint(env, "web", json!({})).await?;
        env.admin_call(
            "DELETE",
            &format!("/api/v1/namespaces/{}/serviceaccounts/web", s.ns),
            None,
            None,
        )
        .await?
        .expect(200)?;
        let new = poll(30, "re-creating the service account", || async {
            match s.service_account(env, "web").await {
                Ok(uid) => Ok(Some(uid)),
                Err(e) => Err(e),
            }
        })
        .await?;
        let want = format!(
            "[invalid bearer token, service account UID ({new}) does not match claim ({old})]"
        );
        let r = review_until(env, &reviewer, &token, &want).await?;
        expect_failure(&r, &want)?;
        Ok(Done::Passed)
    })
}

/// [D] the getter's NotFound text is passed through as is.
pub fn t23_sa_deleted<'a>(env: &'a Env, s: &'a Scratch) -> Fut<'a> {
    Box::pin(async move {
        let reviewer = s.reviewer(env).await?;
        s.service_account(env, "web").await?;
        let (token, _) = s.mint(env, "web", json!({})).await?;
        env.admin_call(
            "DELETE",
            &format!("/api/v1/namespaces/{}/serviceaccounts/web", s.ns),
            None,
            None,
        )
        .await?
        .expect(200)?;
        let want = "[invalid bearer token, serviceaccounts \"web\" not found]";
        let r = review_until(env, &reviewer, &token, want).await?;
        expect_failure(&r, want)?;
        Ok(Done::Passed)
    })
}

/// [D] 1.31+ key choice by kid: an unknown kid finds no keys; before, every key is tried and
/// the JOSE library's verification error is reported.
pub fn t24_foreign_key<'a>(env: &'a Env, s: &'a Scratch) -> Fut<'a> {
    Box::pin(async move {
        let reviewer = s.reviewer(env).await?;
        s.service_account(env, "web").await?;
        let (token, _) = s.mint(env, "web", json!({})).await?;
        // Same claims and issuer, signed by another key (another cluster's sa.key).
        let foreign = foreign_token(env, &decode_jwt(&token)?.1).await?;
        let r = review(env, &reviewer, &foreign, &[]).await?;
        let want = if env.at_least(since::KID_SELECTION) {
            "[invalid bearer token, invalid signature, no keys found]".to_string()
        } else {
            format!(
                "[invalid bearer token, {}: error in cryptographic primitive]",
                env.jose()
            )
        };
        expect_failure(&r, &want)?;
        Ok(Done::Passed)
    })
}

pub fn t25_flipped_signature<'a>(env: &'a Env, s: &'a Scratch) -> Fut<'a> {
    Box::pin(async move {
        let reviewer = s.reviewer(env).await?;
        s.service_account(env, "web").await?;
        let (token, _) = s.mint(env, "web", json!({})).await?;
        let r = review(env, &reviewer, &flip_signature(&token)?, &[]).await?;
        expect_failure(
            &r,
            &format!(
                "[invalid bearer token, {}: error in cryptographic primitive]",
                env.jose()
            ),
        )?;
        Ok(Done::Passed)
    })
}

/// [D] two identical `invalid bearer token` errors de-duplicate to one, unbracketed.
pub fn t26_garbage<'a>(env: &'a Env, s: &'a Scratch) -> Fut<'a> {
    Box::pin(async move {
        let reviewer = s.reviewer(env).await?;
        let r = review(env, &reviewer, "garbage", &[]).await?;
        expect_failure(&r, "invalid bearer token")?;
        Ok(Done::Passed)
    })
}

pub fn t27_empty_token<'a>(env: &'a Env, s: &'a Scratch) -> Fut<'a> {
    Box::pin(async move {
        let reviewer = s.reviewer(env).await?;
        let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": ""}});
        let r = poll(10, "RBAC for the reviewer", || async {
            let r = env
                .call(
                    "POST",
                    "/apis/authentication.k8s.io/v1/tokenreviews",
                    Some(&reviewer),
                    Some(&body),
                )
                .await?;
            Ok((r.status != 403).then_some(r))
        })
        .await?;
        r.expect(400)?;
        same(
            r.json()["message"].clone(),
            json!("token is required for TokenReview in authentication"),
            "message",
        )?;
        Ok(Done::Passed)
    })
}

pub fn t28_reviewer_forbidden<'a>(env: &'a Env, s: &'a Scratch) -> Fut<'a> {
    Box::pin(async move {
        s.service_account(env, "web").await?;
        let (token, _) = s.mint(env, "web", json!({})).await?;
        let body = json!({"spec": {"token": token}});
        let r = env
            .call(
                "POST",
                "/apis/authentication.k8s.io/v1/tokenreviews",
                Some(&token),
                Some(&body),
            )
            .await?;
        r.expect(403)?;
        let want = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("tokenreviews.authentication.k8s.io is forbidden: User \"system:serviceaccount:{}:web\" cannot create resource \"tokenreviews\" in API group \"authentication.k8s.io\" at the cluster scope", s.ns),
            "reason": "Forbidden",
            "details": {"group": "authentication.k8s.io", "kind": "tokenreviews"},
            "code": 403
        });
        same(r.json(), want, "403 body")?;
        Ok(Done::Passed)
    })
}

pub fn t29_invalid_reviewer_401<'a>(env: &'a Env, s: &'a Scratch) -> Fut<'a> {
    Box::pin(async move {
        let reviewer = s.reviewer(env).await?;
        let body = json!({"spec": {"token": reviewer}});
        let path = "/apis/authentication.k8s.io/v1/tokenreviews";
        // The reviewer's own JWT with a broken signature is an invalid bearer: 401, not 403.
        env.call("POST", path, Some(&flip_signature(&reviewer)?), Some(&body))
            .await?
            .expect(401)?;
        // An expired reviewer JWT (only the sim can mint one).
        if let Ok(expired) = expired_token(env, s, "reviewer").await? {
            env.call("POST", path, Some(&expired), Some(&body))
                .await?
                .expect(401)?;
        }
        Ok(Done::Passed)
    })
}

pub fn t30_reviewer_vault_audience_401<'a>(env: &'a Env, s: &'a Scratch) -> Fut<'a> {
    Box::pin(async move {
        s.reviewer(env).await?;
        let (vault_only, _) = s
            .mint(env, "reviewer", json!({"audiences": ["vault"]}))
            .await?;
        let body = json!({"spec": {"token": vault_only}});
        env.call(
            "POST",
            "/apis/authentication.k8s.io/v1/tokenreviews",
            Some(&vault_only),
            Some(&body),
        )
        .await?
        .expect(401)?;
        Ok(Done::Passed)
    })
}

pub fn t31_anonymous_review_403<'a>(env: &'a Env, _s: &'a Scratch) -> Fut<'a> {
    Box::pin(async move {
        let body = json!({"spec": {"token": "x"}});
        let r = env
            .call(
                "POST",
                "/apis/authentication.k8s.io/v1/tokenreviews",
                None,
                Some(&body),
            )
            .await?;
        r.expect(403)?;
        same(
            r.json()["message"].clone(),
            json!(
                "tokenreviews.authentication.k8s.io is forbidden: User \"system:anonymous\" cannot create resource \"tokenreviews\" in API group \"authentication.k8s.io\" at the cluster scope"
            ),
            "message",
        )?;
        Ok(Done::Passed)
    })
}
