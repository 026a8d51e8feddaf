//! Admin kubeconfig text and an admin kube-rs client for a sim cluster.

use anyhow::{Context, Result};
use base64::{Engine, engine::general_purpose::STANDARD};

/// The context (and cluster) name in sim kubeconfigs.
pub const CONTEXT: &str = "authlab-sim";

/// A kubeconfig with one cluster (CA data), one token user and context [`CONTEXT`].
pub(crate) fn render(server: &str, ca_pem: &str, token: &str) -> String {
    format!(
        "apiVersion: v1\n\
         kind: Config\n\
         clusters:\n\
         - name: {CONTEXT}\n  \
           cluster:\n    \
             server: {server}\n    \
             certificate-authority-data: {ca}\n\
         users:\n\
         - name: authlab-admin\n  \
           user:\n    \
             token: {token}\n\
         contexts:\n\
         - name: {CONTEXT}\n  \
           context:\n    \
             cluster: {CONTEXT}\n    \
             user: authlab-admin\n\
         current-context: {CONTEXT}\n\
         preferences: {{}}\n",
        ca = STANDARD.encode(ca_pem),
    )
}

/// A kube-rs client for `server`, trusting `ca_der` and sending `token`.
pub(crate) fn client(server: &str, ca_der: &[u8], token: &str) -> Result<kube::Client> {
    let uri: axum::http::Uri = server
        .parse()
        .with_context(|| format!("parsing sim URL {server}"))?;
    let mut config = kube::Config::new(uri);
    config.root_cert = Some(vec![ca_der.to_vec()]);
    config.default_namespace = "default".into();
    config.auth_info = serde_json::from_value(serde_json::json!({ "token": token }))
        .context("building the admin credentials")?;
    kube::Client::try_from(config).context("building the kube client for the sim")
}
