//! Kubernetes `Status` error bodies (field order as the apiserver writes them) and JSON responses.

use axum::{
    body::Body,
    http::{HeaderValue, StatusCode, header},
    response::Response,
};
use serde::Serialize;

/// `metav1.StatusDetails`, with Go's `omitempty` behaviour.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub(crate) struct Details {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub group: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<Cause>,
}

/// One `StatusCause` of an Invalid error.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct Cause {
    pub reason: &'static str,
    pub message: String,
    pub field: String,
}

/// An API error as the apiserver reports it: HTTP code, reason and message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Box<Details>>,
}

/// `metav1.Status` in wire order.
#[derive(Serialize)]
struct StatusBody<'a> {
    kind: &'static str,
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    metadata: serde_json::Map<String, serde_json::Value>,
    status: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    message: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<&'a Details>,
    #[serde(skip_serializing_if = "is_zero")]
    code: u16,
}

fn is_zero(c: &u16) -> bool {
    *c == 0
}

/// `<resource>` or `<resource>.<group>`, as `schema.GroupResource.String()`.
pub(crate) fn group_resource(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    }
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: String, details: Option<Details>) -> Self {
        ApiError {
            code,
            reason,
            message,
            details: details.map(Box::new),
        }
    }

    /// 404 `<resource> "<name>" not found`.
    pub fn not_found(group: &str, resource: &str, name: &str) -> Self {
        let details = Details {
            name: name.into(),
            group: group.into(),
            kind: resource.into(),
            ..Default::default()
        };
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", group_resource(group, resource)),
            Some(details),
        )
    }

    /// 404 for a path no route serves.
    pub fn no_route() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource".into(),
            Some(Details::default()),
        )
    }

    /// 405 for a verb the resource does not support.
    pub fn method_not_allowed() -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource".into(),
            Some(Details::default()),
        )
    }

    /// 409 `<resource> "<name>" already exists`.
    pub fn already_exists(group: &str, resource: &str, name: &str) -> Self {
        let details = Details {
            name: name.into(),
            group: group.into(),
            kind: resource.into(),
            ..Default::default()
        };
        Self::new(
            409,
            "AlreadyExists",
            format!(
                "{} \"{name}\" already exists",
                group_resource(group, resource)
            ),
            Some(details),
        )
    }

    /// 409 `Operation cannot be fulfilled on <gr> "<name>": <msg>`.
    pub fn conflict(group: &str, resource: &str, name: &str, msg: &str) -> Self {
        let details = Details {
            name: name.into(),
            group: group.into(),
            kind: resource.into(),
            ..Default::default()
        };
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {msg}",
                group_resource(group, resource)
            ),
            Some(details),
        )
    }

    /// 400 BadRequest with a bare message.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message.into(), None)
    }

    /// 415 for a body type the sim does not decode.
    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml (got {content_type})"
            ),
            Some(Details::default()),
        )
    }

    /// 422 Invalid: `<Kind>[.<group>] "<name>" is invalid: <field>: <msg>`.
    /// Each cause is `(field, kind-of-error reason, message without the field)`.
    pub fn invalid(
        group: &str,
        kind: &str,
        name: &str,
        causes: Vec<(String, &'static str, String)>,
    ) -> Self {
        let joined: Vec<String> = causes.iter().map(|(f, _, m)| format!("{f}: {m}")).collect();
        let text = if joined.len() == 1 {
            joined[0].clone()
        } else {
            format!("[{}]", joined.join(", "))
        };
        let details = Details {
            name: name.into(),
            group: group.into(),
            kind: kind.into(),
            causes: causes
                .into_iter()
                .map(|(field, reason, message)| Cause {
                    reason,
                    message,
                    field,
                })
                .collect(),
            ..Default::default()
        };
        Self::new(
            422,
            "Invalid",
            format!(
                "{} \"{name}\" is invalid: {text}",
                group_resource(group, kind)
            ),
            Some(details),
        )
    }

    /// 403 Forbidden as `apierrors.NewForbidden` builds it.
    pub fn forbidden(group: &str, resource: &str, name: &str, msg: &str) -> Self {
        let message = if group.is_empty() && resource.is_empty() {
            format!("forbidden: {msg}")
        } else if name.is_empty() {
            format!("{} is forbidden: {msg}", group_resource(group, resource))
        } else {
            format!(
                "{} \"{name}\" is forbidden: {msg}",
                group_resource(group, resource)
            )
        };
        let details = Details {
            name: name.into(),
            group: group.into(),
            kind: resource.into(),
            ..Default::default()
        };
        Self::new(403, "Forbidden", message, Some(details))
    }

    /// 401 with the fixed body the authentication filter writes.
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized".into(), None)
    }

    /// 500 InternalError.
    pub fn internal(msg: &str) -> Self {
        Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {msg}"),
            Some(Details {
                causes: vec![Cause {
                    reason: "UnexpectedServerResponse",
                    message: msg.into(),
                    field: String::new(),
                }],
                ..Default::default()
            }),
        )
    }

    /// The Status body bytes (compact or indented).
    pub fn body(&self, pretty: bool) -> Vec<u8> {
        let body = StatusBody {
            kind: "Status",
            api_version: "v1",
            metadata: serde_json::Map::new(),
            status: "Failure",
            message: &self.message,
            reason: self.reason,
            details: self.details.as_deref(),
            code: self.code,
        };
        to_json(&body, pretty)
    }
}

/// A `Status` of kind Success (returned by DELETE).
pub(crate) fn success_status(details: Details, pretty: bool) -> Vec<u8> {
    let body = StatusBody {
        kind: "Status",
        api_version: "v1",
        metadata: serde_json::Map::new(),
        status: "Success",
        message: "",
        reason: "",
        details: Some(&details),
        code: 0,
    };
    to_json(&body, pretty)
}

/// Serialises compactly, or indented by two spaces like Go's `json.Indent`.
pub(crate) fn to_json<T: Serialize + ?Sized>(value: &T, pretty: bool) -> Vec<u8> {
    let out = if pretty {
        serde_json::to_vec_pretty(value)
    } else {
        serde_json::to_vec(value)
    };
    let mut out = out.unwrap_or_else(|_| b"{}".to_vec());
    out.push(b'\n');
    out
}

/// A response with the given status, body and content type.
pub(crate) fn json_response(code: u16, body: Vec<u8>, content_type: &'static str) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unauthorized_body_is_byte_exact() {
        let body = ApiError::unauthorized().body(false);
        assert_eq!(
            String::from_utf8(body).unwrap(),
            "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"Unauthorized\",\"reason\":\"Unauthorized\",\"code\":401}\n"
        );
    }

    #[test]
    fn nonresource_forbidden_keeps_empty_details() {
        let e = ApiError::forbidden(
            "",
            "",
            "",
            "User \"system:anonymous\" cannot get path \"/x\"",
        );
        let s = String::from_utf8(e.body(false)).unwrap();
        assert!(s.contains(
            "\"message\":\"forbidden: User \\\"system:anonymous\\\" cannot get path \\\"/x\\\"\""
        ));
        assert!(s.contains("\"details\":{},\"code\":403"));
    }

    #[test]
    fn invalid_message_for_core_and_group_kinds() {
        let e = ApiError::invalid(
            "authentication.k8s.io",
            "TokenRequest",
            "",
            vec![(
                "spec.expirationSeconds".into(),
                "FieldValueInvalid",
                "Invalid value: 599: may not specify a duration less than 10 minutes".into(),
            )],
        );
        assert_eq!(
            e.message,
            "TokenRequest.authentication.k8s.io \"\" is invalid: spec.expirationSeconds: Invalid value: 599: may not specify a duration less than 10 minutes"
        );
        let e = ApiError::not_found("", "serviceaccounts", "nope");
        assert_eq!(e.message, "serviceaccounts \"nope\" not found");
    }
}
