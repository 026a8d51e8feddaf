//! Admin kubeconfig text and an admin kube-rs client for a sim cluster.

use anyhow::{Context, Result};
use base64::{Engine, engine::general_purpose::STANDARD};

/// The context (and cluster) name in sim kubeconfigs.
pub const CONTEXT: &str = "authlab-sim";

/// A kubeconfig with one cluster (CA data), one token user and context [`CONTEXT`].
pub(crate) fn render(server: &str, ca_pem: &str, token: &str) -> String {
    let user = kube::config::AuthInfo {
        token: Some(token.to_string().into()),
        ..Default::default()
    };
    document(CONTEXT, server, ca_pem, "authlab-admin", user)
}

/// A kubeconfig with cluster and context `name` (`server`, trusting `ca_pem`) and one user, as
/// YAML: kube-rs's own types serialized, so every value is written as YAML needs it.
pub fn document(
    name: &str,
    server: &str,
    ca_pem: &str,
    user_name: &str,
    user: kube::config::AuthInfo,
) -> String {
    use kube::config::{Cluster, Context, Kubeconfig, NamedAuthInfo, NamedCluster, NamedContext};
    let kc = Kubeconfig {
        api_version: Some("v1".into()),
        kind: Some("Config".into()),
        clusters: vec![NamedCluster {
            name: name.into(),
            cluster: Some(Cluster {
                server: Some(server.into()),
                certificate_authority_data: Some(STANDARD.encode(ca_pem)),
                ..Default::default()
            }),
            ..Default::default()
        }],
        auth_infos: vec![NamedAuthInfo {
            name: user_name.into(),
            auth_info: Some(user),
            ..Default::default()
        }],
        contexts: vec![NamedContext {
            name: name.into(),
            context: Some(Context {
                cluster: name.into(),
                user: Some(user_name.into()),
                ..Default::default()
            }),
            ..Default::default()
        }],
        current_context: Some(name.into()),
        ..Default::default()
    };
    // Each value on its line, as kubectl writes it (no folded base64).
    let mut options = serde_saphyr::SerializerOptions::default();
    options.prefer_block_scalars = false;
    serde_saphyr::to_string_with_options(&kc, options).unwrap_or_default()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// What is written reads back through kube-rs as the same cluster, user and context.
    #[test]
    fn a_document_reads_back() {
        let user = kube::config::AuthInfo {
            client_certificate_data: Some("Y2VydA==".into()),
            client_key_data: Some("a2V5".to_string().into()),
            ..Default::default()
        };
        let pem = "-----BEGIN CERTIFICATE-----\n".to_string()
            + &"A".repeat(300)
            + "\n-----END CERTIFICATE-----\n";
        let text = document("c: x", "https://127.0.0.1:6443", &pem, "admin", user);
        let ca_line = format!("certificate-authority-data: {}\n", STANDARD.encode(&pem));
        assert!(
            text.contains(&ca_line),
            "one line, as kubectl writes it: {text}"
        );
        let kc = kube::config::Kubeconfig::from_yaml(&text).unwrap();
        assert_eq!(kc.current_context.as_deref(), Some("c: x"), "{text}");
        let cluster = kc.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server.as_deref(), Some("https://127.0.0.1:6443"));
        assert_eq!(
            cluster.certificate_authority_data.as_deref(),
            Some(STANDARD.encode(&pem).as_str())
        );
        let ctx = kc.contexts[0].context.as_ref().unwrap();
        assert_eq!(
            (ctx.cluster.as_str(), ctx.user.as_deref()),
            ("c: x", Some("admin"))
        );
        let auth = kc.auth_infos[0].auth_info.as_ref().unwrap();
        assert_eq!(auth.client_certificate_data.as_deref(), Some("Y2VydA=="));
        let token = render("https://h:1", "PEM", "tok");
        let kc = kube::config::Kubeconfig::from_yaml(&token).unwrap();
        use secrecy::ExposeSecret;
        assert_eq!(
            kc.auth_infos[0]
                .auth_info
                .as_ref()
                .unwrap()
                .token
                .as_ref()
                .unwrap()
                .expose_secret(),
            "tok",
            "{token}"
        );
    }
}
