//! `POST /api/v1/namespaces/{ns}/serviceaccounts/{name}/token` (TokenRequest).

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::{Ctx, Reply};
use crate::{
    core::Core,
    status::ApiError,
    store::{Kind, meta_str},
    tokens::{self, BoundClaims, EXTENSION_SECONDS, WARN_ONLY_SECONDS},
};

const GROUP: &str = "authentication.k8s.io";
const MIN_SECONDS: i64 = 600;
const MAX_SECONDS: i64 = 1 << 32;

#[derive(Serialize)]
struct TokenRequestOut {
    kind: &'static str,
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    metadata: Map<String, Value>,
    spec: SpecOut,
    status: StatusOut,
}

#[derive(Serialize)]
struct SpecOut {
    audiences: Vec<String>,
    #[serde(rename = "expirationSeconds")]
    expiration_seconds: i64,
    #[serde(rename = "boundObjectRef")]
    bound_object_ref: Value,
}

#[derive(Serialize)]
struct StatusOut {
    token: String,
    #[serde(rename = "expirationTimestamp")]
    expiration_timestamp: String,
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// `schema.GroupVersionKind.String()`.
fn gvk_string(api_version: &str, kind: &str) -> String {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    format!("{group}/{version}, Kind={kind}")
}

/// Mints a bound service-account token, following `token.go` `Create`.
pub(crate) fn create(core: &Arc<Core>, ctx: &Ctx<'_>) -> Result<Reply, ApiError> {
    let ns = ctx.info.namespace.as_str();
    let name = ctx.info.name.as_str();
    let req: Value = if ctx.body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(ctx.body)
            .map_err(|e| ApiError::bad_request(format!("error decoding TokenRequest: {e}")))?
    };
    let mut metadata = req
        .get("metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let spec = req.get("spec").cloned().unwrap_or_else(|| json!({}));
    let field = |k: &str| {
        metadata
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let (body_name, body_ns) = (field("name"), field("namespace"));
    let invalid = |path: &str, value: &str, what: &str| {
        ApiError::invalid(
            GROUP,
            "TokenRequest",
            name,
            vec![(
                path.into(),
                "FieldValueInvalid",
                format!(
                    "Invalid value: \"{value}\": must match the service account {what} if specified"
                ),
            )],
        )
    };
    if !body_name.is_empty() && body_name != name {
        return Err(invalid("metadata.name", &body_name, "name"));
    }
    if !body_ns.is_empty() && body_ns != ns {
        return Err(invalid("metadata.namespace", &body_ns, "namespace"));
    }
    let mut audiences: Vec<String> = spec
        .get("audiences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let mut expiration = match spec.get("expirationSeconds") {
        None | Some(Value::Null) => 3600,
        Some(v) => v
            .as_i64()
            .ok_or_else(|| ApiError::bad_request("spec.expirationSeconds must be an integer"))?,
    };
    let bound = spec
        .get("boundObjectRef")
        .filter(|v| v.is_object())
        .cloned();

    let store = core.store();
    let sa = store
        .get(Kind::SERVICE_ACCOUNT, ns, name)
        .ok_or_else(|| ApiError::not_found("", "serviceaccounts", name))?;
    let sa_uid = meta_str(sa, "uid").unwrap_or("").to_string();
    if audiences.is_empty() {
        audiences = core.settings.api_audiences.clone();
    }
    let now = SystemTime::now();
    metadata.insert("name".into(), json!(name));
    metadata.insert("namespace".into(), json!(ns));
    metadata.insert("creationTimestamp".into(), json!(rfc3339(now)));

    if !(MIN_SECONDS..=MAX_SECONDS).contains(&expiration) {
        let why = if expiration < MIN_SECONDS {
            "may not specify a duration less than 10 minutes"
        } else {
            "may not specify a duration larger than 2^32 seconds"
        };
        return Err(ApiError::invalid(
            GROUP,
            "TokenRequest",
            "",
            vec![(
                "spec.expirationSeconds".into(),
                "FieldValueInvalid",
                format!("Invalid value: {expiration}: {why}"),
            )],
        ));
    }

    let (mut pod, mut node, mut secret) = (None, None, None);
    if let Some(r) = &bound {
        let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let (kind, api_version, ref_name, ref_uid) =
            (s("kind"), s("apiVersion"), s("name"), s("uid"));
        let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
        let live_uid = match (group, kind.as_str()) {
            ("", "Pod") => {
                let p = store
                    .get(Kind::POD, ns, &ref_name)
                    .ok_or_else(|| ApiError::not_found("", "pods", &ref_name))?;
                let pod_sa = p
                    .pointer("/spec/serviceAccountName")
                    .and_then(Value::as_str)
                    .unwrap_or("default");
                if pod_sa != name {
                    return Err(ApiError::bad_request(format!(
                        "cannot bind token for serviceaccount \"{name}\" to pod running with different serviceaccount name."
                    )));
                }
                let uid = meta_str(p, "uid").unwrap_or("").to_string();
                pod = Some((ref_name.clone(), uid.clone()));
                if let Some(node_name) = p
                    .pointer("/spec/nodeName")
                    .and_then(Value::as_str)
                    .filter(|n| !n.is_empty())
                {
                    let node_uid = store
                        .get(Kind::NODE, "", node_name)
                        .and_then(|n| meta_str(n, "uid"))
                        .unwrap_or("")
                        .to_string();
                    node = Some((node_name.to_string(), node_uid));
                }
                uid
            }
            ("", "Secret") => {
                let sec = store
                    .get(Kind::SECRET, ns, &ref_name)
                    .ok_or_else(|| ApiError::not_found("", "secrets", &ref_name))?;
                let uid = meta_str(sec, "uid").unwrap_or("").to_string();
                secret = Some((ref_name.clone(), uid.clone()));
                uid
            }
            ("", "Node") => {
                let n = store
                    .get(Kind::NODE, "", &ref_name)
                    .ok_or_else(|| ApiError::not_found("", "nodes", &ref_name))?;
                let uid = meta_str(n, "uid").unwrap_or("").to_string();
                node = Some((ref_name.clone(), uid.clone()));
                uid
            }
            _ => {
                return Err(ApiError::bad_request(format!(
                    "cannot bind token to object of type {}",
                    gvk_string(&api_version, &kind)
                )));
            }
        };
        if !ref_uid.is_empty() && ref_uid != live_uid {
            return Err(ApiError::conflict(
                group,
                &kind,
                &ref_name,
                &format!(
                    "the UID in the bound object reference ({ref_uid}) does not match the UID in record. The object might have been deleted and then recreated"
                ),
            ));
        }
    }
    drop(store);

    let mut warning = None;
    if let Some(max) = core.settings.max_token_expiration.map(|m| m as i64)
        && max > 0
        && expiration > max
    {
        warning = Some(format!(
            "requested expiration of {expiration} seconds shortened to {max} seconds"
        ));
        expiration = max;
    }
    let all_api_audiences = audiences
        .iter()
        .all(|a| core.settings.api_audiences.contains(a));
    let (lifetime, warn_after) =
        if pod.is_some() && expiration == WARN_ONLY_SECONDS && all_api_audiences {
            (EXTENSION_SECONDS, Some(expiration))
        } else {
            (expiration, None)
        };
    let claims = BoundClaims {
        issuer: &core.settings.issuer,
        namespace: ns,
        sa_name: name,
        sa_uid: &sa_uid,
        audiences: &audiences,
        now: unix(now),
        lifetime,
        warn_after,
        pod,
        node,
        secret,
        jti: uuid::Uuid::new_v4().to_string(),
    }
    .to_value();
    let token =
        tokens::sign(&core.key, &claims).map_err(|e| ApiError::internal(&format!("{e:#}")))?;
    let out = TokenRequestOut {
        kind: "TokenRequest",
        api_version: "authentication.k8s.io/v1",
        metadata,
        spec: SpecOut {
            audiences,
            expiration_seconds: expiration,
            bound_object_ref: bound.unwrap_or(Value::Null),
        },
        status: StatusOut {
            token,
            expiration_timestamp: rfc3339(now + Duration::from_secs(expiration as u64)),
        },
    };
    let reply = Reply::json(201, &out, ctx.pretty);
    Ok(match warning {
        Some(w) => reply.warn(&w),
        None => reply,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gvk_strings() {
        assert_eq!(
            gvk_string("apps/v1", "Deployment"),
            "apps/v1, Kind=Deployment"
        );
        assert_eq!(gvk_string("v1", "ConfigMap"), "/v1, Kind=ConfigMap");
    }
}
