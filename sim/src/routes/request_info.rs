//! Parsing a request path into the authorizer's view of it (kube `RequestInfoFactory`).

use crate::rbac::Attributes;

/// A parsed API path.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct RequestInfo {
    pub resource_request: bool,
    pub verb: String,
    pub group: String,
    pub version: String,
    pub namespace: String,
    pub resource: String,
    pub name: String,
    pub subresource: String,
    pub path: String,
}

/// Whether `query` sets `key` to a true value (`true`/`1`).
pub(crate) fn query_flag(query: &str, key: &str) -> bool {
    query_value(query, key).is_some_and(|v| v == "true" || v == "1")
}

/// The first value of `key` in a query string (percent-decoding `%XX` and `+`).
pub(crate) fn query_value(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(
                    std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"),
                    16,
                ) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl RequestInfo {
    /// Parses `method` and `path` (without the query).
    pub fn parse(method: &str, path: &str, query: &str) -> RequestInfo {
        let mut info = RequestInfo {
            path: path.to_string(),
            verb: method.to_ascii_lowercase(),
            ..Default::default()
        };
        let segs: Vec<&str> = path
            .trim_start_matches('/')
            .trim_end_matches('/')
            .split('/')
            .collect();
        let rest: &[&str] = match segs.first() {
            Some(&"api") if segs.len() >= 3 => {
                info.version = segs[1].to_string();
                &segs[2..]
            }
            Some(&"apis") if segs.len() >= 4 => {
                info.group = segs[1].to_string();
                info.version = segs[2].to_string();
                &segs[3..]
            }
            _ => return info,
        };
        info.resource_request = true;
        let mut parts = rest;
        if parts[0] == "namespaces" && parts.len() > 1 {
            info.namespace = parts[1].to_string();
            if parts.len() > 2 && parts[2] != "status" && parts[2] != "finalize" {
                parts = &parts[2..];
            }
        }
        info.resource = parts[0].to_string();
        if parts.len() >= 2 {
            info.name = parts[1].to_string();
        }
        if parts.len() >= 3 {
            info.subresource = parts[2].to_string();
        }
        info.verb = match method {
            "GET" | "HEAD" if info.name.is_empty() => {
                if query_flag(query, "watch") {
                    "watch"
                } else {
                    "list"
                }
            }
            "GET" | "HEAD" => "get",
            "POST" => "create",
            "PUT" => "update",
            "PATCH" => "patch",
            "DELETE" if info.name.is_empty() => "deletecollection",
            "DELETE" => "delete",
            _ => "",
        }
        .to_string();
        info
    }

    /// The authorizer attributes of this request.
    pub fn attributes(&self) -> Attributes {
        Attributes {
            verb: self.verb.clone(),
            resource_request: self.resource_request,
            api_group: self.group.clone(),
            resource: self.resource.clone(),
            subresource: self.subresource.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            path: self.path.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let i = RequestInfo::parse(
            "POST",
            "/api/v1/namespaces/app/serviceaccounts/web/token",
            "",
        );
        assert_eq!(
            (
                i.verb.as_str(),
                i.namespace.as_str(),
                i.resource.as_str(),
                i.name.as_str(),
                i.subresource.as_str()
            ),
            ("create", "app", "serviceaccounts", "web", "token")
        );
        let i = RequestInfo::parse("GET", "/api/v1/namespaces/app", "");
        assert_eq!(
            (i.resource.as_str(), i.name.as_str(), i.namespace.as_str()),
            ("namespaces", "app", "app")
        );
        let i = RequestInfo::parse(
            "GET",
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            "watch=1",
        );
        assert_eq!(
            (i.verb.as_str(), i.group.as_str()),
            ("watch", "rbac.authorization.k8s.io")
        );
        let i = RequestInfo::parse("GET", "/apis/authentication.k8s.io/v1", "");
        assert!(!i.resource_request);
        assert_eq!(i.verb, "get");
        assert_eq!(
            query_value("a=1&labelSelector=x%3Dy", "labelSelector").as_deref(),
            Some("x=y")
        );
    }
}
