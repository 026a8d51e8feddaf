//! HTTP client for the Vault/OpenBao API: mounts, auth config and roles, policies, KV, login.
//!
//! Non-2xx answers are returned as [`ApiResponse`]s, not errors: trials assert on them. Only
//! transport failures are errors. Every request has a bounded timeout.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use reqwest::Method;
use serde_json::{Value, json};

/// An API answer: status, parsed body (Null when empty), raw text, and how long it took.
#[derive(Debug, Clone)]
pub struct ApiResponse {
    /// HTTP status.
    pub status: u16,
    /// Parsed JSON body, or Null.
    pub body: Value,
    /// Raw body text.
    pub raw: String,
    /// Round-trip time.
    pub elapsed: Duration,
}

impl ApiResponse {
    /// The `errors` array.
    pub fn errors(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| {
                        e.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| e.to_string())
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// A call to the server's API that failed, naming the request.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The request got no answer (connection refused, reset, timed out).
    #[error("{method} {url}")]
    Unanswered {
        /// The method.
        method: Method,
        /// The whole URL.
        url: String,
        /// What the HTTP client saw.
        #[source]
        source: reqwest::Error,
    },
    /// The answer could not be read to its end.
    #[error("reading the answer to {method} {url}")]
    Unread {
        /// The method.
        method: Method,
        /// The whole URL.
        url: String,
        /// What the HTTP client saw.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error status.
    #[error("{method} /v1/{path} answered {status}: {detail}")]
    Refused {
        /// The method.
        method: Method,
        /// The API path, below `/v1/`.
        path: String,
        /// The HTTP status.
        status: u16,
        /// The server's `errors`, else the start of its answer.
        detail: String,
    },
}

/// A client for one server, optionally with a token.
#[derive(Clone)]
pub struct VaultClient {
    base: String,
    token: Option<String>,
    /// `X-Vault-Namespace` of every request (a user's server: `VAULT_NAMESPACE`).
    namespace: Option<String>,
    http: reqwest::Client,
    /// Per-request timeout overriding the client's.
    timeout: Option<Duration>,
}

impl std::fmt::Debug for VaultClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token itself.
        f.debug_struct("VaultClient")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Connect timeout for API calls.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Whole-request timeout: above the server's own 90 s request limit, so a hanging TokenReview
/// surfaces as the server's answer rather than ours.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// A client builder with the given connect and whole-request timeouts that ignores proxy
/// variables (lab servers are reached directly).
fn http_builder(connect: Duration, request: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .connect_timeout(connect)
        .timeout(request)
        .no_proxy()
}

/// How to reach a user's server: what the vault CLI's environment (`VAULT_CACERT`,
/// `VAULT_CAPATH`, `VAULT_CLIENT_CERT`/`KEY`, `VAULT_SKIP_VERIFY`, `VAULT_TLS_SERVER_NAME`,
/// `VAULT_NAMESPACE`) says.
#[derive(Debug, Default, Clone)]
pub struct UserServer {
    /// CA certificates (PEM), each with what it was read from.
    pub ca_pems: Vec<(String, String)>,
    /// The client certificate and its key (PEM, together).
    pub identity_pem: Option<String>,
    /// Do not verify the server's certificate.
    pub skip_verify: bool,
    /// The name the certificate is checked for.
    pub tls_server_name: Option<String>,
    /// `X-Vault-Namespace`.
    pub namespace: Option<String>,
}

impl VaultClient {
    /// A client for `addr` (`http://127.0.0.1:8200`) with the default timeouts
    /// ([`CONNECT_TIMEOUT`], [`REQUEST_TIMEOUT`]).
    pub fn new(addr: &str, token: Option<String>) -> Result<Self> {
        Self::with_timeouts(addr, token, CONNECT_TIMEOUT, REQUEST_TIMEOUT)
    }

    /// A client for a user's server at `addr` whose TLS certificate `ca_pem` (PEM) signs, when
    /// given (else the system's roots).
    pub fn for_user(addr: &str, token: Option<String>, how: &UserServer) -> Result<Self> {
        let mut builder = http_builder(CONNECT_TIMEOUT, REQUEST_TIMEOUT);
        for (what, pem) in &how.ca_pems {
            for cert in reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .with_context(|| format!("{what} is not PEM"))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        if let Some(pem) = &how.identity_pem {
            builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).context(
                "the client certificate and key are not PEM (a certificate and its private key)",
            )?);
        }
        if how.skip_verify {
            builder = builder.danger_accept_invalid_certs(true);
        }
        let mut base = addr.trim_end_matches('/').to_string();
        if let Some(name) = &how.tls_server_name {
            // The certificate is checked for `name`, the connection made to `addr`'s host.
            let mut url =
                reqwest::Url::parse(&base).with_context(|| format!("{addr} is not a URL"))?;
            let to = url
                .socket_addrs(|| Some(8200))
                .with_context(|| format!("resolving {addr}"))?;
            builder = builder.resolve_to_addrs(name, &to);
            url.set_host(Some(name))
                .with_context(|| format!("{name} is not a host name"))?;
            base = url.as_str().trim_end_matches('/').to_string();
        }
        Ok(VaultClient {
            base,
            token,
            namespace: how.namespace.clone(),
            http: builder.build().context("building the HTTP client")?,
            timeout: None,
        })
    }

    /// A client for `addr` with the given connect and whole-request timeouts. Proxy variables
    /// are ignored: lab servers are reached directly.
    pub fn with_timeouts(
        addr: &str,
        token: Option<String>,
        connect: Duration,
        request: Duration,
    ) -> Result<Self> {
        let http = http_builder(connect, request)
            .build()
            .context("building the HTTP client")?;
        Ok(VaultClient {
            namespace: None,
            base: addr.trim_end_matches('/').to_string(),
            token,
            http,
            timeout: None,
        })
    }

    /// The same client with another token (None: no token header).
    pub fn with_token(&self, token: Option<String>) -> Self {
        VaultClient {
            token,
            ..self.clone()
        }
    }

    /// The same client with another whole-request timeout.
    pub fn with_request_timeout(&self, timeout: Duration) -> Self {
        VaultClient {
            timeout: Some(timeout),
            ..self.clone()
        }
    }

    /// The server address.
    pub fn addr(&self) -> &str {
        &self.base
    }

    /// Sends a request to `/v1/<path>`.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<ApiResponse> {
        let url = format!("{}/v1/{}", self.base, path.trim_start_matches('/'));
        self.send(&self.http, method, &url, body).await
    }

    /// Sends a request with this client's token and timeout through `http`.
    async fn send(
        &self,
        http: &reqwest::Client,
        method: Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<ApiResponse> {
        let mut req = http.request(method.clone(), url);
        if let Some(t) = &self.token {
            req = req.header("X-Vault-Token", t);
        }
        if let Some(n) = &self.namespace {
            req = req.header("X-Vault-Namespace", n);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        if let Some(t) = self.timeout {
            req = req.timeout(t);
        }
        let start = Instant::now();
        let resp = req.send().await.map_err(|source| VaultError::Unanswered {
            method: method.clone(),
            url: url.to_string(),
            source,
        })?;
        let status = resp.status().as_u16();
        let raw = resp.text().await.map_err(|source| VaultError::Unread {
            method: method.clone(),
            url: url.to_string(),
            source,
        })?;
        let body = if raw.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&raw).unwrap_or(Value::Null)
        };
        Ok(ApiResponse {
            status,
            body,
            raw,
            elapsed: start.elapsed(),
        })
    }

    /// `request`, with a non-2xx answer turned into an error naming method, path, status and
    /// the server's errors.
    async fn must(&self, method: Method, path: &str, body: Option<&Value>) -> Result<ApiResponse> {
        let r = self.request(method.clone(), path, body).await?;
        if !r.is_success() {
            let errors = r.errors();
            let detail = if errors.is_empty() {
                let raw: String = r.raw.trim().chars().take(300).collect();
                format!("{raw:?}")
            } else {
                format!("{errors:?}")
            };
            return Err(VaultError::Refused {
                method,
                path: path.to_string(),
                status: r.status,
                detail,
            }
            .into());
        }
        Ok(r)
    }

    /// `GET sys/health` (any status).
    pub async fn health(&self) -> Result<ApiResponse> {
        self.request(Method::GET, "sys/health", None).await
    }

    /// Enables an auth method at `path`.
    pub async fn enable_auth(&self, path: &str, kind: &str) -> Result<()> {
        self.must(
            Method::POST,
            &format!("sys/auth/{path}"),
            Some(&json!({"type": kind})),
        )
        .await
        .map(|_| ())
    }

    /// Disables the auth method at `path`.
    pub async fn disable_auth(&self, path: &str) -> Result<()> {
        self.must(Method::DELETE, &format!("sys/auth/{path}"), None)
            .await
            .map(|_| ())
    }

    /// The accessor of the auth mount at `path` (e.g. `auth_kubernetes_90a2cd19`).
    pub async fn auth_accessor(&self, path: &str) -> Result<String> {
        let r = self.must(Method::GET, "sys/auth", None).await?;
        let key = format!("{}/", path.trim_end_matches('/'));
        let data = if r.body["data"].is_object() {
            &r.body["data"]
        } else {
            &r.body
        };
        data[&key]["accessor"]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("no auth mount {key} in sys/auth"))
    }

    /// Tunes the auth mount at `path`.
    pub async fn tune_auth(&self, path: &str, body: &Value) -> Result<()> {
        self.must(Method::POST, &format!("sys/auth/{path}/tune"), Some(body))
            .await
            .map(|_| ())
    }

    /// Mounts a KV version 2 engine at `path`.
    pub async fn enable_kv2(&self, path: &str) -> Result<()> {
        self.must(
            Method::POST,
            &format!("sys/mounts/{path}"),
            Some(&json!({"type": "kv", "options": {"version": "2"}})),
        )
        .await
        .map(|_| ())
    }

    /// Writes an ACL policy.
    pub async fn put_policy(&self, name: &str, hcl: &str) -> Result<()> {
        self.must(
            Method::PUT,
            &format!("sys/policies/acl/{name}"),
            Some(&json!({"policy": hcl})),
        )
        .await
        .map(|_| ())
    }

    /// POSTs `body` to `path`, whatever the answer.
    pub async fn write(&self, path: &str, body: &Value) -> Result<ApiResponse> {
        self.request(Method::POST, path, Some(body)).await
    }

    /// GETs `path`, whatever the answer.
    pub async fn read(&self, path: &str) -> Result<ApiResponse> {
        self.request(Method::GET, path, None).await
    }

    /// POSTs `body` to `path` exactly as given (no path cleaning, no redirect followed): what a
    /// client sees when the user wrote the path.
    pub async fn post_as_is(&self, path: &str, body: &Value) -> Result<ApiResponse> {
        let http = http_builder(CONNECT_TIMEOUT, REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("building the HTTP client")?;
        let url = format!("{}/v1/{path}", self.base);
        self.send(&http, Method::POST, &url, Some(body)).await
    }

    /// Logs in at `auth/<mount>/login` with `role` and `jwt` (no token header).
    pub async fn login(&self, mount: &str, role: &str, jwt: &str) -> Result<ApiResponse> {
        self.with_token(None)
            .request(
                Method::POST,
                &format!("auth/{mount}/login"),
                Some(&json!({"role": role, "jwt": jwt})),
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, raw: &str) -> ApiResponse {
        ApiResponse {
            status,
            body: serde_json::from_str(raw).unwrap_or(Value::Null),
            raw: raw.to_string(),
            elapsed: Duration::ZERO,
        }
    }

    #[test]
    fn errors_and_success() {
        // As OpenBao answers a policy-denied KV read.
        let r = response(
            403,
            r#"{"errors":["1 error occurred:\n\t* permission denied\n\n"]}"#,
        );
        assert!(!r.is_success());
        assert_eq!(
            r.errors(),
            vec!["1 error occurred:\n\t* permission denied\n\n"]
        );
        let r = response(204, "");
        assert!(r.is_success());
        assert!(r.errors().is_empty());
        assert_eq!(r.body, Value::Null);
    }

    #[test]
    fn debug_output_hides_the_token() {
        let c = VaultClient::new("http://127.0.0.1:8200/", Some("s.secret".into())).unwrap();
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("s.secret") && shown.contains("<redacted>"),
            "{shown}"
        );
        assert_eq!(c.addr(), "http://127.0.0.1:8200");
        assert!(!format!("{:?}", c.with_token(None)).contains("redacted"));
    }

    /// Transport errors are errors naming the request; they come fast from a closed port.
    #[test]
    fn transport_errors_name_the_request() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let c = VaultClient::new(&format!("http://127.0.0.1:{port}"), None).unwrap();
        let e = rt.block_on(c.read("sys/health")).unwrap_err();
        assert!(
            format!("{e:#}").contains(&format!("GET http://127.0.0.1:{port}/v1/sys/health")),
            "{e:#}"
        );
    }
}
