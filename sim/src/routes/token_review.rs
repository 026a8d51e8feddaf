//! `POST /apis/authentication.k8s.io/v1/tokenreviews` and `selfsubjectreviews`.

use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::{Ctx, Reply};
use crate::{authn, core::Core, log::ReviewRecord, status::ApiError, tokens, user::UserInfo};

#[derive(Serialize)]
struct TokenReviewOut<'a> {
    kind: &'static str,
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    metadata: Map<String, Value>,
    spec: SpecOut<'a>,
    status: StatusOut,
}

#[derive(Serialize)]
struct SpecOut<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    token: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    audiences: &'a [String],
}

#[derive(Serialize)]
struct StatusOut {
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    authenticated: bool,
    user: UserInfo,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    audiences: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    error: String,
}

fn echo_metadata(req: &Value) -> Map<String, Value> {
    let mut metadata = req
        .get("metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    metadata.entry("creationTimestamp").or_insert(Value::Null);
    metadata
}

/// Reviews `spec.token` through the full authenticator chain; failures are still 201.
pub(crate) fn create(core: &Arc<Core>, ctx: &Ctx<'_>) -> Result<Reply, ApiError> {
    let req: Value = serde_json::from_slice(ctx.body)
        .map_err(|e| ApiError::bad_request(format!("error decoding TokenReview: {e}")))?;
    let token = req
        .pointer("/spec/token")
        .and_then(Value::as_str)
        .unwrap_or("");
    let audiences: Vec<String> = req
        .pointer("/spec/audiences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if token.is_empty() {
        return Err(ApiError::bad_request(
            "token is required for TokenReview in authentication",
        ));
    }
    let outcome = {
        let store = core.store();
        authn::authenticate_token(core, &store, token, Some(&audiences))
    };
    let status = match outcome {
        Ok((user, auds)) => StatusOut {
            authenticated: true,
            user,
            audiences: auds,
            error: String::new(),
        },
        Err(error) => StatusOut {
            authenticated: false,
            user: UserInfo::default(),
            audiences: Vec::new(),
            error,
        },
    };
    let review = ReviewRecord {
        token_subject: tokens::unverified_payload(token)
            .and_then(|p| p.get("sub").and_then(Value::as_str).map(str::to_string)),
        audiences: audiences.clone(),
        authenticated: status.authenticated,
    };
    let error = (!status.error.is_empty()).then(|| status.error.clone());
    let out = TokenReviewOut {
        kind: "TokenReview",
        api_version: "authentication.k8s.io/v1",
        metadata: echo_metadata(&req),
        spec: SpecOut {
            token,
            audiences: &audiences,
        },
        status,
    };
    let mut reply = Reply::json(201, &out, ctx.pretty);
    reply.error = error;
    reply.review = Some(review);
    Ok(reply)
}

/// `SelfSubjectReview`: who the caller is (used by `kubectl auth whoami`).
pub(crate) fn self_subject_review(ctx: &Ctx<'_>) -> Result<Reply, ApiError> {
    let req: Value = serde_json::from_slice(ctx.body).unwrap_or_else(|_| json!({}));
    let out = json!({
        "kind": "SelfSubjectReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": echo_metadata(&req),
        "status": {"userInfo": ctx.user},
    });
    Ok(Reply::json(201, &out, ctx.pretty))
}
