//! The API server's audit log, read as the request log trials judge (`expect.cluster_requests`):
//! what the server under test asked the API server during a login, as the sim records it.
//!
//! The policy records TokenReviews with request and response (the audiences asked for, the
//! outcome) and everything else as metadata. A marker request (`GET /version?authlab-mark=…`)
//! after the login tells when the log has caught up. Requests of the API server itself, of the
//! controllers and of authlab's admin client are not the server under test's, and are left out.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::sim::{RequestRecord, ReviewRecord};

/// The audit policy (`--audit-policy-file`).
pub const POLICY: &str = r#"apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: RequestResponse
    resources:
      - group: authentication.k8s.io
        resources: ["tokenreviews"]
  - level: Metadata
"#;

/// Users whose requests are the cluster's own or authlab's, not the server under test's.
const NOT_THE_SERVERS: &[&str] = &[
    "kubernetes-admin",
    "system:apiserver",
    "system:kube-controller-manager",
    "system:kube-scheduler",
];

/// Prefixes of users that are the cluster's own: kubelets, and the controllers and add-ons of
/// `kube-system` (kubeadm runs the controllers with their own service accounts).
const NOT_THE_SERVERS_PREFIXES: &[&str] = &["system:node:", "system:serviceaccount:kube-system:"];

/// Bound on waiting for the marker request to reach the log.
const CATCH_UP: Duration = Duration::from_secs(5);
/// How long the log is given after the marker, before it is read for the last time.
const SETTLE: Duration = Duration::from_millis(10);

/// Where an audit log is read: a file on this machine (an API server authlab started), or a
/// file inside a Kind node, read through Docker (the node's files belong to root there).
#[derive(Debug, Clone)]
enum Source {
    File(PathBuf),
    Node {
        engine: crate::container::Engine,
        container: String,
        path: String,
    },
}

/// An API server's audit log file.
#[derive(Debug, Clone)]
pub struct AuditLog {
    source: Source,
    /// Only requests from this address are the server under test's (on a cluster with
    /// workloads of its own: Kind's provisioner and CNI talk to the API server all the time).
    from: Option<String>,
}

impl AuditLog {
    /// The log at `path` (`--audit-log-path`).
    pub fn at(path: PathBuf) -> AuditLog {
        AuditLog {
            source: Source::File(path),
            from: None,
        }
    }

    /// The log at `path` inside the node container `container`.
    pub fn in_node(engine: crate::container::Engine, container: &str, path: &str) -> AuditLog {
        AuditLog {
            source: Source::Node {
                engine,
                container: container.to_string(),
                path: path.to_string(),
            },
            from: None,
        }
    }

    /// This log, keeping only requests whose source addresses include `ip`.
    pub fn from_address(&self, ip: Option<String>) -> AuditLog {
        AuditLog {
            source: self.source.clone(),
            from: ip,
        }
    }

    /// Where the log ends now.
    pub async fn offset(&self) -> u64 {
        match &self.source {
            Source::File(path) => std::fs::metadata(path).map_or(0, |m| m.len()),
            Source::Node {
                engine,
                container,
                path,
            } => engine
                .exec(container, &["stat", "-c", "%s", path], None)
                .await
                .ok()
                .and_then(|o| String::from_utf8_lossy(&o).trim().parse().ok())
                .unwrap_or(0),
        }
    }

    /// Whether the log exists (a reused cluster may have been made without one).
    pub async fn exists(&self) -> bool {
        match &self.source {
            Source::File(path) => path.is_file(),
            Source::Node {
                engine,
                container,
                path,
            } => engine
                .exec(container, &["test", "-f", path], None)
                .await
                .is_ok(),
        }
    }

    fn describe(&self) -> String {
        match &self.source {
            Source::File(path) => path.display().to_string(),
            Source::Node {
                container, path, ..
            } => format!("{path} in {container}"),
        }
    }

    async fn read_from(&self, offset: u64) -> Result<String> {
        match &self.source {
            Source::File(path) => read_file_from(path, offset),
            Source::Node {
                engine,
                container,
                path,
            } => {
                let start = format!("+{}", offset + 1);
                let out = engine
                    .exec(container, &["tail", "-c", &start, path], None)
                    .await
                    .with_context(|| format!("reading the audit log {}", self.describe()))?;
                Ok(String::from_utf8_lossy(&out).into_owned())
            }
        }
    }

    /// The requests made since `offset` by anyone but the cluster and authlab, once a marker
    /// request sent with `admin` has reached the log.
    pub async fn requests_since(
        &self,
        admin: &kube::Client,
        offset: u64,
    ) -> Result<Vec<RequestRecord>> {
        let mark = uuid::Uuid::new_v4().simple().to_string();
        let req = http::Request::get(format!("/version?authlab-mark={mark}")).body(Vec::new())?;
        admin
            .request_text(req)
            .await
            .context("sending the audit log's marker request")?;
        let mut wait = crate::wait::Wait::new("the marker request in the audit log", CATCH_UP)
            .every(Duration::from_millis(20))
            .start();
        loop {
            let text = self.read_from(offset).await?;
            if text.contains(&mark) {
                // In blocking mode an event is written before its handler returns, so what the
                // server had answered before the marker was sent is in the log before it; the
                // grace covers a large body flushed before its handler returned.
                tokio::time::sleep(SETTLE).await;
                return Ok(parse_from(
                    &self.read_from(offset).await?,
                    self.from.as_deref(),
                ));
            }
            if wait.tick().await.is_err() {
                bail!(
                    "waited {} s for the marker request to reach the audit log {}",
                    CATCH_UP.as_secs(),
                    self.describe()
                );
            }
        }
    }
}

fn read_file_from(path: &Path, offset: u64) -> Result<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path)
        .with_context(|| format!("opening the audit log {}", path.display()))?;
    f.seek(SeekFrom::Start(offset))?;
    let mut text = String::new();
    f.read_to_string(&mut text)
        .with_context(|| format!("reading the audit log {}", path.display()))?;
    Ok(text)
}

/// The requests of JSON audit lines, one per request (its last stage), in order.
pub fn parse(text: &str) -> Vec<RequestRecord> {
    parse_from(text, None)
}

/// [`parse`], keeping only requests from `from` when given.
fn parse_from(text: &str, from: Option<&str>) -> Vec<RequestRecord> {
    let mut events: Vec<Value> = Vec::new();
    for line in text.lines() {
        let Ok(ev) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        match events.iter_mut().find(|e| e["auditID"] == ev["auditID"]) {
            Some(e) => *e = ev,
            None => events.push(ev),
        }
    }
    events
        .iter()
        .filter(|ev| {
            let user = ev["user"]["username"].as_str().unwrap_or_default();
            !NOT_THE_SERVERS.contains(&user)
                && !NOT_THE_SERVERS_PREFIXES.iter().any(|p| user.starts_with(p))
                && from.is_none_or(|ip| {
                    ev["sourceIPs"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|s| s == ip))
                })
                && !ev["requestURI"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("authlab-mark=")
        })
        .enumerate()
        .map(|(i, ev)| record(i as u64 + 1, ev))
        .collect()
}

fn record(seq: u64, ev: &Value) -> RequestRecord {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let status = ev["responseStatus"]["code"].as_u64().unwrap_or(0) as u16;
    let user = Some(s(&ev["user"]["username"])).filter(|u| !u.is_empty());
    let path = s(&ev["requestURI"]);
    let review = path.contains("/tokenreviews").then(|| ReviewRecord {
        token_subject: ev["requestObject"]["spec"]["token"]
            .as_str()
            .and_then(subject_of),
        audiences: ev["requestObject"]["spec"]["audiences"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        authenticated: ev["responseObject"]["status"]["authenticated"] == true,
    });
    let error = ev["responseObject"]["status"]["error"]
        .as_str()
        .or_else(|| {
            (status >= 400)
                .then(|| ev["responseStatus"]["message"].as_str())
                .flatten()
        })
        .map(str::to_string);
    RequestRecord {
        seq,
        time: ev["requestReceivedTimestamp"]
            .as_str()
            .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
            .unwrap_or(std::time::UNIX_EPOCH),
        method: method_of(&s(&ev["verb"]), ev["objectRef"].is_object()),
        path,
        user,
        status,
        error,
        review,
    }
}

/// The HTTP method of an audit verb: a resource verb (`create`, `get`, `list`, …) or, for a
/// non-resource URL, the method itself in lower case.
fn method_of(verb: &str, resource: bool) -> String {
    let m = match (verb, resource) {
        ("create", true) => "POST",
        ("get" | "list" | "watch", true) => "GET",
        ("update", true) => "PUT",
        ("patch", true) => "PATCH",
        ("delete" | "deletecollection", true) => "DELETE",
        (other, _) => return other.to_ascii_uppercase(),
    };
    m.to_string()
}

/// `sub` of a JWT, read without verification.
fn subject_of(token: &str) -> Option<String> {
    crate::jwt::decode_unverified(token).ok()?.claims["sub"]
        .as_str()
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

    use super::*;

    #[test]
    fn audit_lines_become_the_requests_of_the_server_under_test() {
        let sub = URL_SAFE_NO_PAD.encode(br#"{"sub":"system:serviceaccount:default:app"}"#);
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#);
        let lines = [
            r#"{"auditID":"a","stage":"ResponseStarted","requestURI":"/api/v1/namespaces/default/pods","verb":"list","user":{},"objectRef":{"resource":"pods"},"responseStatus":{"code":401}}"#.to_string(),
            r#"{"auditID":"a","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/pods","verb":"list","user":{},"objectRef":{"resource":"pods"},"responseStatus":{"code":401,"message":"Authentication failed, attempted: bearer"},"requestReceivedTimestamp":"2026-12-01T16:15:01.337123Z"}"#.to_string(),
            format!(
                r#"{{"auditID":"b","stage":"ResponseComplete","requestURI":"/apis/authentication.k8s.io/v1/tokenreviews","verb":"create","user":{{"username":"system:serviceaccount:vault:vault-auth"}},"objectRef":{{"resource":"tokenreviews"}},"responseStatus":{{"code":201}},"requestObject":{{"spec":{{"token":"{h}.{sub}.s","audiences":["vault"]}}}},"responseObject":{{"status":{{"authenticated":true}}}}}}"#
            ),
            r#"{"auditID":"c","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/kube-system/configmaps","verb":"list","user":{"username":"system:kube-controller-manager"},"objectRef":{},"responseStatus":{"code":200}}"#.to_string(),
            r#"{"auditID":"d","stage":"ResponseComplete","requestURI":"/version?authlab-mark=x","verb":"get","user":{"username":"kubernetes-admin"},"responseStatus":{"code":200}}"#.to_string(),
            r#"{"auditID":"e","stage":"ResponseComplete","requestURI":"/openid/v1/jwks","verb":"get","user":{"username":"system:anonymous"},"responseStatus":{"code":200}}"#.to_string(),
        ];
        let reqs = parse(&lines.join("\n"));
        let shown: Vec<(String, String, u16, Option<String>)> = reqs
            .iter()
            .map(|r| (r.method.clone(), r.path.clone(), r.status, r.user.clone()))
            .collect();
        assert_eq!(
            shown,
            vec![
                (
                    "GET".into(),
                    "/api/v1/namespaces/default/pods".into(),
                    401,
                    None
                ),
                (
                    "POST".into(),
                    "/apis/authentication.k8s.io/v1/tokenreviews".into(),
                    201,
                    Some("system:serviceaccount:vault:vault-auth".into())
                ),
                (
                    "GET".into(),
                    "/openid/v1/jwks".into(),
                    200,
                    Some("system:anonymous".into())
                ),
            ]
        );
        let review = reqs[1].review.clone().unwrap();
        assert_eq!(
            review.token_subject.as_deref(),
            Some("system:serviceaccount:default:app")
        );
        assert_eq!(review.audiences, vec!["vault".to_string()]);
        assert!(review.authenticated);
        assert_eq!(
            reqs[0].error.as_deref(),
            Some("Authentication failed, attempted: bearer")
        );
        assert_eq!(reqs.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3]);
    }

    #[test]
    fn on_a_cluster_with_workloads_only_the_servers_address_counts() {
        let lines = [
            r#"{"auditID":"a","stage":"ResponseComplete","requestURI":"/apis/coordination.k8s.io/v1/namespaces/local-path-storage/leases/x","verb":"update","user":{"username":"system:serviceaccount:local-path-storage:local-path-provisioner-service-account"},"sourceIPs":["10.244.0.3"],"objectRef":{"resource":"leases"},"responseStatus":{"code":200}}"#,
            r#"{"auditID":"b","stage":"ResponseComplete","requestURI":"/api/v1/nodes/n","verb":"get","user":{"username":"system:node:authlab-lab-control-plane"},"sourceIPs":["172.18.0.2"],"objectRef":{"resource":"nodes"},"responseStatus":{"code":200}}"#,
            r#"{"auditID":"c","stage":"ResponseComplete","requestURI":"/apis/authentication.k8s.io/v1/tokenreviews","verb":"create","user":{"username":"system:serviceaccount:vault:vault-auth"},"sourceIPs":["172.18.0.3"],"objectRef":{"resource":"tokenreviews"},"responseStatus":{"code":201}}"#,
        ];
        let text = lines.join("\n");
        let all: Vec<String> = parse(&text).into_iter().map(|r| r.path).collect();
        assert_eq!(all.len(), 2, "{all:?}");
        let servers: Vec<String> = parse_from(&text, Some("172.18.0.3"))
            .into_iter()
            .map(|r| r.path)
            .collect();
        assert_eq!(servers, ["/apis/authentication.k8s.io/v1/tokenreviews"]);
    }
}
