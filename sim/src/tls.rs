//! The sim's own CA and its serving certificate, and the rustls server configuration.

use std::sync::Arc;

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Names every serving certificate carries (those of a kubeadm apiserver, plus loopback).
pub(crate) const BASE_SANS: &[&str] = &[
    "127.0.0.1",
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
];

/// A CA and the serving certificate it signed.
pub(crate) struct ServingPki {
    pub ca_pem: String,
    pub ca_der: Vec<u8>,
    pub server_config: Arc<rustls::ServerConfig>,
}

/// A new RSA-2048 key pair (what kubeadm makes for its CA and the API server).
fn rsa() -> Result<KeyPair> {
    KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        .context("generating an RSA-2048 key")
}

/// New keys for a CA and its serving certificate.
pub fn generate_keys() -> Result<crate::config::TlsKeys> {
    Ok(crate::config::TlsKeys {
        ca_key_pkcs8_pem: rsa()?.serialize_pem(),
        serving_key_pkcs8_pem: rsa()?.serialize_pem(),
    })
}

fn key_from(pem: &str) -> Result<KeyPair> {
    KeyPair::from_pem_and_sign_algo(pem, &rcgen::PKCS_RSA_SHA256)
        .context("reading an RSA key (PKCS#8 PEM)")
}

/// Creates a fresh CA and a serving certificate for [`BASE_SANS`] plus `extra_sans`, with the
/// given keys (new RSA-2048 keys when None).
pub(crate) fn build(
    extra_sans: &[String],
    keys: Option<&crate::config::TlsKeys>,
) -> Result<ServingPki> {
    let (ca_key, leaf_key) = match keys {
        Some(k) => (
            key_from(&k.ca_key_pkcs8_pem)?,
            key_from(&k.serving_key_pkcs8_pem)?,
        ),
        None => (rsa()?, rsa()?),
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).context("CA parameters")?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "kubernetes"); // kubeadm (and so Kind) names its cluster CA so
    ca_params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .context("self-signing the CA")?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut sans: Vec<String> = BASE_SANS.iter().map(|s| s.to_string()).collect();
    for s in extra_sans {
        if !sans.contains(s) {
            sans.push(s.clone());
        }
    }
    let mut leaf = CertificateParams::new(sans).context("serving certificate names")?;
    leaf.distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    leaf.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.use_authority_key_identifier_extension = true;
    let leaf_cert = leaf
        .signed_by(&leaf_key, &issuer)
        .context("signing the serving certificate")?;

    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let chain = vec![
        CertificateDer::from(leaf_cert.der().to_vec()),
        CertificateDer::from(ca_cert.der().to_vec()),
    ];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS protocol versions")?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .context("building the TLS server configuration")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(ServingPki {
        ca_pem: ca_cert.pem(),
        ca_der: ca_cert.der().to_vec(),
        server_config: Arc::new(config),
    })
}
