//! The sim cluster: a built-in HTTPS stand-in for the authentication surface of a
//! Kubernetes API server (TokenRequest, TokenReview, RBAC, OIDC discovery, legacy token
//! Secrets and the objects they depend on).
//!
//! Behaviour follows the kube-apiserver of Kind 1.30–1.34: the authenticator chain and its
//! `[invalid bearer token, …]` errors, RBAC with the bootstrap policy, exact Status bodies.
//! Successful authentications are not cached, so deletions take effect at once.

mod authn;
mod config;
mod core;
mod fault;
mod keys;
pub mod kubeconfig;
mod log;
mod protobuf;
mod rbac;
mod routes;
mod serve;
mod status;
mod store;
mod tls;
mod tokens;
mod user;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context, Result};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

pub use config::{DEFAULT_ISSUER, SimConfig, TlsKeys};
pub use fault::{ClosedPort, Forwarder, HangListener, ResetListener, SimMode};
pub use kubeconfig::CONTEXT as KUBECONFIG_CONTEXT;
pub use log::{RequestRecord, ReviewRecord};
pub use serve::serve_foreground;
pub use tls::{
    ApiServerPki, apiserver_pki, generate_keys as generate_tls_keys, go_name, serving_cert_ips,
};

/// The Kubernetes version the sim models (what its `/version` answers).
pub const KUBERNETES_VERSION: &str = routes::discovery::GIT_VERSION;

/// Signs `claims` with a PKCS#8 PEM RSA key as a cluster does (`RS256`, `kid` the SHA-256 of
/// the public key): hand-made tokens for a real API server that verifies with that key.
pub fn sign_token_with(key_pkcs8_pem: &str, claims: &serde_json::Value) -> anyhow::Result<String> {
    tokens::sign(&keys::SigningKey::from_pkcs8_pem(key_pkcs8_pem)?, claims)
}

/// The claims of a legacy Secret-based token (what the tokens controller signs).
pub fn legacy_token_claims(
    namespace: &str,
    secret: &str,
    sa_name: &str,
    sa_uid: &str,
) -> serde_json::Value {
    tokens::legacy_claims(namespace, secret, sa_name, sa_uid)
}

/// SPKI PEM of the public half of a PKCS#8 PEM RSA key.
pub fn public_key_pem_of(key_pkcs8_pem: &str) -> anyhow::Result<String> {
    Ok(keys::SigningKey::from_pkcs8_pem(key_pkcs8_pem)?
        .public_pem()
        .to_string())
}

use self::core::{Core, Settings};
use fault::{FaultAcceptor, ModeSwitch};
use keys::SigningKey;

/// A running sim cluster. Cloning shares the same server.
#[derive(Clone)]
pub struct SimCluster {
    core: Arc<Core>,
    port: u16,
    ca_der: Arc<Vec<u8>>,
    handle: axum_server::Handle<SocketAddr>,
    task: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl std::fmt::Debug for SimCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimCluster")
            .field("url", &self.url())
            .finish()
    }
}

fn random_token() -> String {
    let bytes: Vec<u8> = uuid::Uuid::new_v4()
        .as_bytes()
        .iter()
        .chain(uuid::Uuid::new_v4().as_bytes())
        .copied()
        .collect();
    URL_SAFE_NO_PAD.encode(bytes)
}

impl SimCluster {
    /// Generates keys and certificates, binds the port and starts serving.
    pub async fn start(cfg: SimConfig) -> Result<SimCluster> {
        let listener = std::net::TcpListener::bind((cfg.bind, cfg.port))
            .with_context(|| format!("binding the sim cluster to {}:{}", cfg.bind, cfg.port))?;
        Self::start_on(cfg, listener).await
    }

    /// As [`Self::start`], serving on `listener`, bound by the caller (who can then know the
    /// address before the sim starts without another process taking the port meanwhile);
    /// `cfg.bind` still decides the host in the sim's URL, `cfg.port` is not used.
    pub async fn start_on(cfg: SimConfig, listener: std::net::TcpListener) -> Result<SimCluster> {
        let key_pem = cfg.signing_key_pkcs8_pem.clone();
        let sans = cfg.extra_sans.clone();
        let tls_keys = cfg.tls_keys.clone();
        let (key, pki) = tokio::task::spawn_blocking(move || -> Result<_> {
            let key = match key_pem {
                Some(pem) => SigningKey::from_pkcs8_pem(&pem)?,
                None => SigningKey::generate()?,
            };
            Ok((key, tls::build(&sans, tls_keys.as_ref())?))
        })
        .await
        .context("key generation task failed")??;

        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let host = match cfg.bind {
            std::net::IpAddr::V4(ip) if ip.is_unspecified() => "127.0.0.1".to_string(),
            std::net::IpAddr::V4(ip) => ip.to_string(),
            std::net::IpAddr::V6(ip) if ip.is_unspecified() => "[::1]".to_string(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        };
        let url = format!("https://{host}:{}", addr.port());

        let core = Arc::new(Core {
            settings: Settings {
                api_audiences: cfg.effective_api_audiences(),
                issuer: cfg.issuer.clone(),
                anonymous_auth: cfg.anonymous_auth,
                max_token_expiration: cfg.max_token_expiration,
            },
            key,
            store: Mutex::new(store::Store::default()),
            log: log::RequestLog::default(),
            mode: ModeSwitch::default(),
            ca_pem: pki.ca_pem.clone(),
            admin_token: random_token(),
            url: Default::default(),
        });
        let _ = core.url.set(url);
        core.bootstrap();

        let handle = axum_server::Handle::new();
        let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(
            axum_server::tls_rustls::RustlsConfig::from_config(pki.server_config.clone()),
        )
        .acceptor(FaultAcceptor {
            mode: core.mode.clone(),
        });
        let server = axum_server::from_tcp(listener)
            .context("adopting the sim listener")?
            .acceptor(acceptor)
            .handle(handle.clone());
        let app = routes::router(Arc::clone(&core));
        let task = tokio::spawn(async move {
            if let Err(e) = server.serve(app.into_make_service()).await {
                tracing::warn!(error = %e, "sim cluster server stopped");
            }
        });
        Ok(SimCluster {
            core,
            port: addr.port(),
            ca_der: Arc::new(pki.ca_der),
            handle,
            task: Arc::new(Mutex::new(Some(task))),
        })
    }

    /// `https://<address>:<port>`.
    pub fn url(&self) -> String {
        self.core.url().to_string()
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// PEM of the sim's own CA, which signed the serving certificate.
    pub fn ca_pem(&self) -> String {
        self.core.ca_pem.clone()
    }

    /// The static admin bearer token (user `authlab:admin`, group `system:masters`).
    pub fn admin_token(&self) -> String {
        self.core.admin_token.clone()
    }

    /// The service-account issuer.
    pub fn issuer(&self) -> String {
        self.core.settings.issuer.clone()
    }

    /// PKCS#8 PEM of the service-account signing key.
    pub fn signing_key_pkcs8_pem(&self) -> String {
        self.core.key.pkcs8_pem().to_string()
    }

    /// SPKI PEM of the service-account public key.
    pub fn public_key_pem(&self) -> String {
        self.core.key.public_pem().to_string()
    }

    /// The `kid` of tokens this sim signs.
    pub fn key_id(&self) -> String {
        self.core.key.kid().to_string()
    }

    /// An admin kubeconfig (context `authlab-sim`); `server_url` overrides the server address.
    pub fn kubeconfig_yaml(&self, server_url: Option<&str>) -> String {
        kubeconfig::render(
            server_url.unwrap_or(self.core.url()),
            &self.core.ca_pem,
            &self.core.admin_token,
        )
    }

    /// A kube-rs client authenticated as the admin user.
    pub fn kube_client(&self) -> Result<kube::Client> {
        kubeconfig::client(self.core.url(), &self.ca_der, &self.core.admin_token)
    }

    /// Signs arbitrary claims with this sim's key and `kid` (keys are sorted).
    pub fn sign_token(&self, claims: &serde_json::Value) -> String {
        tokens::sign(&self.core.key, claims).unwrap_or_default()
    }

    /// Every request answered so far, in order.
    pub fn request_log(&self) -> Vec<RequestRecord> {
        self.core.log.snapshot()
    }

    /// Changes how new connections are treated.
    pub fn set_mode(&self, mode: SimMode) {
        self.core.mode.set(mode);
    }

    /// Stops serving and closes every connection.
    pub async fn shutdown(self) {
        self.handle
            .graceful_shutdown(Some(Duration::from_millis(200)));
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task
            && tokio::time::timeout(Duration::from_secs(2), task)
                .await
                .is_err()
        {
            self.handle.shutdown();
        }
    }
}
