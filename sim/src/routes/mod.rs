//! HTTP handling: one entry point that authenticates, authorizes, routes and logs.

pub(crate) mod discovery;
mod objects;
mod oidc;
pub(crate) mod request_info;
mod token_request;
mod token_review;

use std::{sync::Arc, time::SystemTime};

use axum::{
    Router,
    body::Body,
    extract::{Request, State},
    http::{HeaderMap, HeaderName, HeaderValue, Method, header},
    response::Response,
};

use super::{
    authn,
    core::Core,
    log::{RequestRecord, ReviewRecord},
    protobuf, rbac,
    status::{ApiError, json_response, to_json},
    user::UserInfo,
};
use request_info::{RequestInfo, query_value};

/// Largest request body the sim reads.
const MAX_BODY: usize = 16 << 20;

/// The router serving every path of the sim.
pub(crate) fn router(core: Arc<Core>) -> Router {
    Router::new().fallback(handle).with_state(core)
}

/// What a handler saw of the request.
pub(crate) struct Ctx<'a> {
    pub method: &'a Method,
    pub query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    pub pretty: bool,
    pub info: &'a RequestInfo,
    pub user: &'a UserInfo,
}

/// A handler's answer plus what the request log needs.
pub(crate) struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    pub content_type: &'static str,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub error: Option<String>,
    pub review: Option<ReviewRecord>,
}

impl Reply {
    /// A JSON reply with the given status.
    pub fn json<T: serde::Serialize + ?Sized>(status: u16, value: &T, pretty: bool) -> Reply {
        Reply {
            status,
            body: to_json(value, pretty),
            content_type: "application/json",
            headers: Vec::new(),
            error: None,
            review: None,
        }
    }

    /// A JSON reply from already-encoded bytes.
    pub fn raw(status: u16, body: Vec<u8>) -> Reply {
        Reply {
            status,
            body,
            content_type: "application/json",
            headers: Vec::new(),
            error: None,
            review: None,
        }
    }

    /// A Status error reply.
    pub fn error(e: &ApiError, pretty: bool) -> Reply {
        Reply {
            status: e.code,
            body: e.body(pretty),
            content_type: "application/json",
            headers: Vec::new(),
            error: Some(e.message.clone()),
            review: None,
        }
    }

    /// Adds a `Warning: 299 - "<text>"` header.
    pub fn warn(mut self, text: &str) -> Reply {
        let escaped = text.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{escaped}\"")) {
            self.headers.push((header::WARNING, v));
        }
        self
    }
}

impl From<ApiError> for Reply {
    fn from(e: ApiError) -> Reply {
        Reply::error(&e, false)
    }
}

/// Whether the apiserver would indent its JSON for this request.
fn pretty_print(query: &str, headers: &HeaderMap) -> bool {
    if let Some(p) = query_value(query, "pretty") {
        return matches!(p.as_str(), "true" | "1" | "t" | "T" | "TRUE" | "True");
    }
    let ua = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    ["curl", "Wget", "Mozilla/5.0"]
        .iter()
        .any(|p| ua.starts_with(p))
}

async fn handle(State(core): State<Arc<Core>>, req: Request) -> Response {
    let time = SystemTime::now();
    let (parts, body) = req.into_parts();
    let full_path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let query = parts.uri.query().unwrap_or("").to_string();
    let pretty = pretty_print(&query, &parts.headers);
    let (reply, user) = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(bytes) => process(
            &core,
            &parts.method,
            parts.uri.path(),
            &query,
            &parts.headers,
            &bytes,
            pretty,
        ),
        Err(_) => (
            Reply::error(
                &ApiError::bad_request("the request body could not be read or is too large"),
                pretty,
            ),
            None,
        ),
    };
    core.log.push(RequestRecord {
        seq: 0,
        time,
        method: parts.method.to_string(),
        path: full_path,
        user,
        status: reply.status,
        error: reply.error.clone(),
        review: reply.review.clone(),
    });
    let mut resp: Response = json_response(reply.status, reply.body, reply.content_type);
    for (k, v) in reply.headers {
        resp.headers_mut().append(k, v);
    }
    if parts.method == Method::HEAD {
        *resp.body_mut() = Body::empty();
    }
    resp
}

/// Authentication, authorization and routing; returns the reply and the authenticated user.
fn process(
    core: &Arc<Core>,
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
    pretty: bool,
) -> (Reply, Option<String>) {
    let info = RequestInfo::parse(method.as_str(), path, query);
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let user = {
        let store = core.store();
        match authn::authenticate_request(core, &store, authorization) {
            Ok(user) => {
                if !rbac::authorize(&store, &user, &info.attributes()) {
                    let e = rbac::forbidden(&user, &info.attributes());
                    return (Reply::error(&e, pretty), Some(user.username));
                }
                user
            }
            Err(detail) => {
                let mut reply = Reply::error(&ApiError::unauthorized(), false);
                reply.error = detail;
                return (reply, None);
            }
        }
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // Typed clients (kubectl's imperative commands) send protobuf; decode the kinds they use.
    let decoded;
    let body = if !body.is_empty() && content_type.contains("protobuf") {
        match protobuf::decode_object(body).and_then(|v| serde_json::to_vec(&v).ok()) {
            Some(json) => {
                decoded = json;
                decoded.as_slice()
            }
            None => {
                let e = ApiError::unsupported_media_type(content_type);
                return (Reply::error(&e, pretty), Some(user.username));
            }
        }
    } else if !body.is_empty() && content_type.contains("cbor") {
        let e = ApiError::unsupported_media_type(content_type);
        return (Reply::error(&e, pretty), Some(user.username));
    } else {
        body
    };
    let ctx = Ctx {
        method,
        query,
        headers,
        body,
        pretty,
        info: &info,
        user: &user,
    };
    let reply = route(core, &ctx).unwrap_or_else(|e| Reply::error(&e, pretty));
    (reply, Some(user.username))
}

fn route(core: &Arc<Core>, ctx: &Ctx<'_>) -> Result<Reply, ApiError> {
    let info = ctx.info;
    if !info.resource_request {
        return non_resource(core, ctx);
    }
    match (
        info.group.as_str(),
        info.version.as_str(),
        info.resource.as_str(),
    ) {
        ("authentication.k8s.io", "v1", "tokenreviews")
            if info.namespace.is_empty() && info.name.is_empty() =>
        {
            expect_method(ctx, Method::POST)?;
            token_review::create(core, ctx)
        }
        ("authentication.k8s.io", "v1", "selfsubjectreviews")
            if info.namespace.is_empty() && info.name.is_empty() =>
        {
            expect_method(ctx, Method::POST)?;
            token_review::self_subject_review(ctx)
        }
        ("", "v1", "serviceaccounts")
            if info.subresource == "token" && !info.namespace.is_empty() =>
        {
            expect_method(ctx, Method::POST)?;
            token_request::create(core, ctx)
        }
        _ => objects::handle(core, ctx),
    }
}

fn expect_method(ctx: &Ctx<'_>, m: Method) -> Result<(), ApiError> {
    if *ctx.method == m {
        Ok(())
    } else {
        Err(ApiError::method_not_allowed())
    }
}

fn non_resource(core: &Arc<Core>, ctx: &Ctx<'_>) -> Result<Reply, ApiError> {
    let path = ctx.info.path.as_str();
    if *ctx.method != Method::GET && *ctx.method != Method::HEAD {
        return Err(ApiError::no_route());
    }
    match path {
        "/healthz" | "/livez" | "/readyz" => Ok(Reply {
            status: 200,
            body: b"ok".to_vec(),
            content_type: "text/plain; charset=utf-8",
            headers: Vec::new(),
            error: None,
            review: None,
        }),
        "/.well-known/openid-configuration" => oidc::configuration(core, ctx.headers),
        "/openid/v1/jwks" => oidc::jwks(core, ctx.headers),
        _ => discovery::serve(core, path, ctx.pretty),
    }
}
