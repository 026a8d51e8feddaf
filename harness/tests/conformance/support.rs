//! Shared plumbing of the conformance suite: the cluster under test (from a kubeconfig),
//! raw HTTP as admin or as any bearer, per-test namespaces, JWT helpers and polling.

use std::{
    future::Future,
    path::Path,
    pin::Pin,
    sync::Mutex,
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context, Result, anyhow, bail, ensure};
use authlab::sim::{SimCluster, SimConfig};
use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use serde_json::{Value, json};

/// How a test ended when it did not fail.
pub enum Done {
    Passed,
    Ignored(String),
}

/// A boxed test future.
pub type Fut<'a> = Pin<Box<dyn Future<Output = Result<Done>> + Send + 'a>>;
/// A conformance test body.
pub type TestFn = for<'a> fn(&'a Env, &'a Scratch) -> Fut<'a>;

/// The cluster under test.
pub struct Env {
    pub admin: kube::Client,
    pub base: String,
    pub http: reqwest::Client,
    pub issuer: String,
    /// The cluster CA (PEM), from the kubeconfig.
    pub ca_pem: String,
    pub sim: Option<SimCluster>,
    /// The cluster's service-account signing key (PKCS#8 PEM), where it is known: the sim's,
    /// an API server authlab started, or `AUTHLAB_CONFORMANCE_SIGNING_KEY`.
    pub signing_key: Option<String>,
    /// The server's `/version` `gitVersion` (`v1.24.0-alpha.1`, `v1.33.1`): version-dependent
    /// checks judge by it.
    pub version: String,
    /// Serialises tests that change what anonymous callers may do.
    pub anonymous_lock: tokio::sync::Mutex<()>,
    /// A cluster authlab did not make (`AUTHLAB_CONFORMANCE_KUBECONFIG`): what its owners
    /// configured (an RBAC binding for anonymous discovery) may make a check not applicable.
    pub users: bool,
}

/// A response as raw parts.
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub text: String,
}

impl Resp {
    /// Status, headers and body text of an answer.
    pub async fn read(resp: reqwest::Response) -> Result<Resp> {
        let status = resp.status().as_u16();
        let headers = header_pairs(resp.headers());
        let text = resp.text().await?;
        Ok(Resp {
            status,
            headers,
            text,
        })
    }

    /// The body parsed as JSON (Null if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }

    /// A header value by (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Fails unless the status is `want`.
    pub fn expect(&self, want: u16) -> Result<&Self> {
        ensure!(
            self.status == want,
            "expected HTTP {want}, got {}: {}",
            self.status,
            self.text
        );
        Ok(self)
    }
}

/// Header names and values as text (a value that is not text is empty).
pub fn header_pairs(h: &axum::http::HeaderMap) -> Vec<(String, String)> {
    h.iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect()
}

fn cluster_ca(kc: &kube::config::Kubeconfig, base_dir: &Path) -> Result<(String, String)> {
    let ctx_name = kc
        .current_context
        .clone()
        .context("kubeconfig has no current-context")?;
    let ctx = kc
        .contexts
        .iter()
        .find(|c| c.name == ctx_name)
        .and_then(|c| c.context.clone())
        .with_context(|| format!("context {ctx_name} not found"))?;
    let cluster = kc
        .clusters
        .iter()
        .find(|c| c.name == ctx.cluster)
        .and_then(|c| c.cluster.clone())
        .with_context(|| format!("cluster {} not found", ctx.cluster))?;
    let server = cluster.server.clone().context("cluster has no server")?;
    let ca = if let Some(data) = &cluster.certificate_authority_data {
        String::from_utf8(
            STANDARD
                .decode(data.trim())
                .context("certificate-authority-data is not base64")?,
        )?
    } else if let Some(file) = &cluster.certificate_authority {
        std::fs::read_to_string(base_dir.join(file)).with_context(|| format!("reading {file}"))?
    } else {
        bail!("the cluster has no CA in the kubeconfig");
    };
    Ok((server.trim_end_matches('/').to_string(), ca))
}

impl Env {
    /// Connects to the kubeconfig's current context.
    pub async fn from_kubeconfig(path: &Path, sim: Option<SimCluster>) -> Result<Env> {
        let kc = kube::config::Kubeconfig::read_from(path)
            .with_context(|| format!("reading kubeconfig {}", path.display()))?;
        let (base, ca_pem) = cluster_ca(&kc, path.parent().unwrap_or(Path::new(".")))?;
        let config =
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .context("loading the kubeconfig")?;
        let admin = kube::Client::try_from(config).context("building the admin client")?;
        let http = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes())?])
            .user_agent("authlab-conformance")
            .timeout(Duration::from_secs(30))
            .build()?;
        let signing_key = sim.as_ref().map(|s| s.signing_key_pkcs8_pem());
        let mut env = Env {
            admin,
            base,
            http,
            issuer: String::new(),
            ca_pem: ca_pem.clone(),
            sim,
            signing_key,
            version: String::new(),
            anonymous_lock: tokio::sync::Mutex::new(()),
            users: false,
        };
        let v = env.admin_call("GET", "/version", None, None).await?;
        v.expect(200).context("reading /version")?;
        env.version = v.json()["gitVersion"]
            .as_str()
            .context("/version has no gitVersion")?
            .to_string();
        semver(&env.version).with_context(|| {
            format!(
                "/version's gitVersion {:?} is not a Kubernetes version",
                env.version
            )
        })?;
        let conf = env
            .admin_call("GET", "/.well-known/openid-configuration", None, None)
            .await?;
        conf.expect(200)
            .context("reading the issuer from the OIDC configuration")?;
        env.issuer = conf.json()["issuer"]
            .as_str()
            .context("no issuer")?
            .to_string();
        Ok(env)
    }

    /// A request as the kubeconfig's own user.
    pub async fn admin_call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        content_type: Option<&str>,
    ) -> Result<Resp> {
        let bytes = body
            .map(serde_json::to_vec)
            .transpose()?
            .unwrap_or_default();
        let req = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header("Accept", "application/json, */*")
            .header("Content-Type", content_type.unwrap_or("application/json"))
            .body(kube::client::Body::from(bytes))?;
        let resp = self
            .admin
            .send(req)
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = resp.status().as_u16();
        let headers = header_pairs(resp.headers());
        let text = String::from_utf8_lossy(&resp.into_body().collect_bytes().await?).into_owned();
        Ok(Resp {
            status,
            headers,
            text,
        })
    }

    /// A GET with the given bearer token and `Accept` header (None: no header).
    pub async fn get_accepting(
        &self,
        path: &str,
        bearer: &str,
        accept: Option<&str>,
    ) -> Result<Resp> {
        let mut req = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(bearer);
        if let Some(a) = accept {
            req = req.header("Accept", a);
        }
        let resp = req.send().await.with_context(|| format!("GET {path}"))?;
        Resp::read(resp).await
    }

    /// A request with the given bearer token (or none).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Resp> {
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            // As kubectl asks: JSON, else whatever the route produces.
            .header("Accept", "application/json, */*");
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/json")
                .body(serde_json::to_vec(b)?);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        Resp::read(resp).await
    }

    /// True when the server's version is `release` (`1.30.0`) or later; a pre-release
    /// (`1.24.0-alpha.1`) comes before its release, as in semver.
    pub fn at_least(&self, release: &str) -> bool {
        match (semver(&self.version), semver(release)) {
            (Some(have), Some(want)) => have >= want,
            _ => false,
        }
    }

    /// Signs `claims` with the cluster's own key (RS256, its `kid`), or an "ignored" reason
    /// where the key is not known.
    pub fn sign(&self, claims: &Value, why: &str) -> std::result::Result<String, Done> {
        let key = self.signing_key.as_deref().ok_or_else(|| {
            Done::Ignored(format!(
                "needs the cluster's signing key (the sim, --cluster apiserver, or AUTHLAB_CONFORMANCE_SIGNING_KEY): {why}"
            ))
        })?;
        authlab::sim::sign_token_with(key, claims)
            .map_err(|e| Done::Ignored(format!("the signing key could not sign: {e:#}")))
    }
}

/// The Kubernetes releases whose behaviour version-dependent checks judge by (from the
/// feature gates' defaults in `pkg/features/kube_features.go` and `pkg/serviceaccount` of
/// each release).
pub mod since {
    /// No token Secret per service account (`LegacyServiceAccountTokenNoAutoGeneration`, on
    /// by default from 1.24.0).
    pub const NO_AUTO_TOKEN_SECRET: &str = "1.24.0";
    /// `jti` in TokenRequest tokens and `authentication.kubernetes.io/credential-id` in the
    /// TokenReview's `extra` (`ServiceAccountTokenJTI`, beta in 1.30).
    pub const JTI: &str = "1.30.0";
    /// `kubernetes.io.node` in pod-bound tokens, `node-name`/`node-uid` in `extra`
    /// (`ServiceAccountTokenPodNodeInfo`, beta in 1.30).
    pub const NODE_CLAIMS: &str = "1.30.0";
    /// Verification keys chosen by the token's `kid`: an unknown kid finds no keys (1.31;
    /// before, every key is tried and the JOSE library's error is reported).
    pub const KID_SELECTION: &str = "1.31.0";
    /// The JOSE library is `go-jose/go-jose` (1.33; before, `square/go-jose`).
    pub const GO_JOSE: &str = "1.33.0";
}

impl Env {
    /// The JOSE library's name in the server's errors.
    pub fn jose(&self) -> &'static str {
        if self.at_least(since::GO_JOSE) {
            "go-jose/go-jose"
        } else {
            "square/go-jose"
        }
    }
}

/// A `gitVersion` as (major, minor, patch, is-release): `v1.24.0-alpha.1` → (1, 24, 0, false),
/// which sorts before (1, 24, 0, true). Build metadata (`+abc`) is ignored.
pub fn semver(v: &str) -> Option<(u32, u32, u32, bool)> {
    let v = v.trim_start_matches('v');
    let v = v.split('+').next()?;
    let (core, pre) = match v.split_once('-') {
        Some((c, _)) => (c, true),
        None => (v, false),
    };
    let mut parts = core.split('.').map(|p| p.parse::<u32>().ok());
    Some((parts.next()??, parts.next()??, parts.next()??, !pre))
}

/// A per-test namespace and the cluster-scoped objects to remove afterwards.
pub struct Scratch {
    pub ns: String,
    cluster_objects: Mutex<Vec<String>>,
}

impl Scratch {
    /// Creates a uniquely named namespace.
    pub async fn new_in(env: &Env) -> Result<Scratch> {
        let ns = format!("conf-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        env.admin_call(
            "POST",
            "/api/v1/namespaces",
            Some(&json!({"metadata": {"name": ns}})),
            None,
        )
        .await?
        .expect(201)
        .context("creating the test namespace")?;
        Ok(Scratch {
            ns,
            cluster_objects: Mutex::new(Vec::new()),
        })
    }

    /// Remembers a cluster-scoped object path for cleanup.
    pub fn track(&self, path: String) {
        self.cluster_objects
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(path);
    }

    /// Deletes the namespace and tracked objects.
    pub async fn cleanup(&self, env: &Env) {
        let paths: Vec<String> = self
            .cluster_objects
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        for p in paths {
            let _ = env.admin_call("DELETE", &p, None, None).await;
        }
        let _ = env
            .admin_call(
                "DELETE",
                &format!("/api/v1/namespaces/{}", self.ns),
                None,
                None,
            )
            .await;
    }

    /// Creates a ServiceAccount and returns its UID.
    pub async fn service_account(&self, env: &Env, name: &str) -> Result<String> {
        let r = env
            .admin_call(
                "POST",
                &format!("/api/v1/namespaces/{}/serviceaccounts", self.ns),
                Some(&json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}})),
                None,
            )
            .await?;
        r.expect(201)
            .with_context(|| format!("creating service account {name}"))?;
        Ok(r.json()["metadata"]["uid"]
            .as_str()
            .context("no uid")?
            .to_string())
    }

    /// Creates an object at a namespaced collection path (`pods`, `secrets`, …).
    pub async fn create(&self, env: &Env, resource: &str, obj: Value) -> Result<Value> {
        let r = env
            .admin_call(
                "POST",
                &format!("/api/v1/namespaces/{}/{resource}", self.ns),
                Some(&obj),
                None,
            )
            .await?;
        r.expect(201)
            .with_context(|| format!("creating {resource}"))?;
        Ok(r.json())
    }

    /// POSTs a TokenRequest as admin and returns the raw response.
    pub async fn token_request(&self, env: &Env, sa: &str, spec: Value) -> Result<Resp> {
        env.admin_call(
            "POST",
            &format!("/api/v1/namespaces/{}/serviceaccounts/{sa}/token", self.ns),
            Some(&json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec})),
            None,
        )
        .await
    }

    /// Mints a token (must succeed) and returns it with the response object.
    pub async fn mint(&self, env: &Env, sa: &str, spec: Value) -> Result<(String, Value)> {
        let r = self.token_request(env, sa, spec).await?;
        r.expect(201)
            .with_context(|| format!("minting a token for {sa}"))?;
        let body = r.json();
        let token = body["status"]["token"]
            .as_str()
            .context("no status.token")?
            .to_string();
        Ok((token, body))
    }

    /// A pod running as `sa`, scheduled on `node` when given.
    pub async fn pod(&self, env: &Env, name: &str, sa: &str, node: Option<&str>) -> Result<Value> {
        let mut spec = json!({"serviceAccountName": sa,
                              "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]});
        if let Some(n) = node {
            spec["nodeName"] = json!(n);
        }
        self.create(
            env,
            "pods",
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}),
        )
        .await
    }

    /// A reviewer service account bound to `system:auth-delegator`; returns its token.
    pub async fn reviewer(&self, env: &Env) -> Result<String> {
        self.service_account(env, "reviewer").await?;
        let crb = format!("{}-reviewer", self.ns);
        env.admin_call(
            "POST",
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            Some(&json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                         "metadata": {"name": crb},
                         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:auth-delegator"},
                         "subjects": [{"kind": "ServiceAccount", "name": "reviewer", "namespace": self.ns}]})),
            None,
        )
        .await?
        .expect(201)
        .context("binding the reviewer")?;
        self.track(format!(
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{crb}"
        ));
        let (token, _) = self.mint(env, "reviewer", json!({})).await?;
        Ok(token)
    }

    /// A node name for pod-bound tokens: an existing Node, or a Node created for the test.
    pub async fn node(&self, env: &Env) -> Result<(String, String)> {
        let nodes = env.admin_call("GET", "/api/v1/nodes", None, None).await?;
        nodes.expect(200)?;
        if let Some(n) = nodes.json()["items"]
            .as_array()
            .and_then(|a| a.first().cloned())
        {
            let name = n["metadata"]["name"]
                .as_str()
                .context("node name")?
                .to_string();
            let uid = n["metadata"]["uid"].as_str().unwrap_or("").to_string();
            return Ok((name, uid));
        }
        let name = format!("{}-node", self.ns);
        let r = env
            .admin_call(
                "POST",
                "/api/v1/nodes",
                Some(&json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})),
                None,
            )
            .await?;
        r.expect(201)?;
        self.track(format!("/api/v1/nodes/{name}"));
        Ok((
            name,
            r.json()["metadata"]["uid"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        ))
    }
}

/// Posts a TokenReview as `reviewer`, retrying briefly while RBAC catches up (403).
pub async fn review(env: &Env, reviewer: &str, token: &str, audiences: &[&str]) -> Result<Value> {
    let mut spec = json!({"token": token});
    if !audiences.is_empty() {
        spec["audiences"] = json!(audiences);
    }
    let body = json!({"metadata": {}, "spec": spec, "status": {"user": {}}});
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = env
            .call(
                "POST",
                "/apis/authentication.k8s.io/v1/tokenreviews",
                Some(reviewer),
                Some(&body),
            )
            .await?;
        if r.status == 403 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        r.expect(201).context("TokenReview")?;
        return Ok(r.json());
    }
}

/// A TokenRequest spec binding the token to pod `name` of the test's namespace.
pub fn pod_binding(name: &str) -> Value {
    json!({"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": name}})
}

/// Polls `check` every 200 ms until it returns `Some`, or fails after `secs`.
pub async fn poll<T, F, Fu>(secs: u64, what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fu,
    Fu: Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut last_err = None;
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = Some(e),
        }
        if Instant::now() >= deadline {
            return Err(anyhow!(
                "timed out after {secs}s waiting for {what} (last error: {last_err:?})"
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Decoded JWT parts: header JSON, payload JSON and the raw payload text.
pub fn decode_jwt(token: &str) -> Result<(Value, Value, String)> {
    let parts: Vec<&str> = token.split('.').collect();
    ensure!(parts.len() == 3, "not a compact JWS");
    let header = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0])?)?;
    let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(parts[1])?)?;
    Ok((header, serde_json::from_str(&raw)?, raw))
}

/// Seconds since the epoch.
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Parses an RFC 3339 timestamp to seconds since the epoch.
pub fn unix_of(ts: &str) -> Result<i64> {
    let t = humantime::parse_rfc3339(ts).with_context(|| format!("bad timestamp {ts}"))?;
    Ok(t.duration_since(SystemTime::UNIX_EPOCH)?.as_secs() as i64)
}

/// Asserts `|a - b| <= slack`.
pub fn near(a: i64, b: i64, slack: i64, what: &str) -> Result<()> {
    ensure!(
        (a - b).abs() <= slack,
        "{what}: {a} is not within {slack}s of {b}"
    );
    Ok(())
}

/// Asserts equality with a readable message.
pub fn same<T: PartialEq + std::fmt::Debug>(got: T, want: T, what: &str) -> Result<()> {
    ensure!(got == want, "{what}: got {got:?}, want {want:?}");
    Ok(())
}

/// Whether `s` looks like a UUID.
pub fn is_uuid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok() && s.len() == 36
}

/// The SPKI DER of an RSA JWK (`n`, `e`), built independently of the server under test.
pub fn spki_from_jwk(jwk: &Value) -> Result<(Vec<u8>, Vec<u8>, Vec<u8>)> {
    let n = URL_SAFE_NO_PAD.decode(jwk["n"].as_str().context("no n")?)?;
    let e = URL_SAFE_NO_PAD.decode(jwk["e"].as_str().context("no e")?)?;
    // The library's encoder, not the sim's: the sim's published key is what is under test.
    Ok((authlab::cluster::external::rsa_spki_der(&n, &e)?, n, e))
}

/// `kid` as Kubernetes computes it: b64url(SHA-256(SPKI DER)).
pub fn kid_of(spki: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, spki))
}

/// Verifies an RS256 token against a JWK's modulus and exponent.
pub fn verify_with(token: &str, n: &[u8], e: &[u8]) -> Result<()> {
    let (input, sig) = token.rsplit_once('.').context("not a JWS")?;
    let sig = URL_SAFE_NO_PAD.decode(sig)?;
    aws_lc_rs::signature::RsaPublicKeyComponents { n, e }
        .verify(
            &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
            input.as_bytes(),
            &sig,
        )
        .map_err(|_| anyhow!("RS256 signature does not verify with the JWK"))
}

/// The token with one bit of its signature flipped.
pub fn flip_signature(token: &str) -> Result<String> {
    let (input, sig) = token.rsplit_once('.').context("not a JWS")?;
    let mut sig = URL_SAFE_NO_PAD.decode(sig)?;
    sig[10] ^= 0x01;
    Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig)))
}

/// A token signed by a different key with the same issuer (another cluster's key).
pub async fn foreign_token(env: &Env, claims: &Value) -> Result<String> {
    let other = SimCluster::start(SimConfig {
        issuer: env.issuer.clone(),
        ..Default::default()
    })
    .await?;
    let token = other.sign_token(claims);
    other.shutdown().await;
    Ok(token)
}

/// The apiserver's fixed 401 body.
pub const UNAUTHORIZED_BODY: &str = r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}"#;
