//! Settings of a sim cluster.

use std::net::{IpAddr, Ipv4Addr};

/// The issuer Kind/kubeadm clusters use by default.
pub const DEFAULT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// Settings of a sim cluster; `Default` mirrors a Kind control plane.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// `--service-account-issuer`: the `iss` of minted tokens and the issuer in discovery.
    pub issuer: String,
    /// `--api-audiences`; `None` means `[issuer]`, the kube-apiserver default.
    pub api_audiences: Option<Vec<String>>,
    /// `--anonymous-auth`: requests without a bearer token become `system:anonymous`.
    pub anonymous_auth: bool,
    /// `--service-account-max-token-expiration` in seconds; `None` means no cap.
    pub max_token_expiration: Option<u64>,
    /// Address to listen on.
    pub bind: IpAddr,
    /// Port to listen on; 0 picks a free one.
    pub port: u16,
    /// Extra DNS names or IP addresses for the serving certificate.
    pub extra_sans: Vec<String>,
    /// A PKCS#8 PEM RSA key to sign service-account tokens with; `None` generates RSA-2048.
    pub signing_key_pkcs8_pem: Option<String>,
    /// The keys of the cluster CA and the serving certificate (RSA-2048, as kubeadm makes
    /// them); `None` generates both. Each start makes a new CA certificate and serving
    /// certificate with them, so sharing keys saves the key generation only.
    pub tls_keys: Option<TlsKeys>,
}

/// PKCS#8 PEM keys of a cluster CA and its serving certificate.
#[derive(Debug, Clone)]
pub struct TlsKeys {
    /// The CA's key.
    pub ca_key_pkcs8_pem: String,
    /// The serving certificate's key.
    pub serving_key_pkcs8_pem: String,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            issuer: DEFAULT_ISSUER.to_string(),
            api_audiences: None,
            anonymous_auth: true,
            max_token_expiration: None,
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            extra_sans: Vec::new(),
            signing_key_pkcs8_pem: None,
            tls_keys: None,
        }
    }
}

impl SimConfig {
    /// The API audiences in effect (`[issuer]` when unset).
    pub fn effective_api_audiences(&self) -> Vec<String> {
        self.api_audiences
            .clone()
            .unwrap_or_else(|| vec![self.issuer.clone()])
    }
}
