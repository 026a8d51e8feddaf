//! The sim's own CA and its serving certificate, and the rustls server configuration.

use std::sync::Arc;

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, DnValue, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Names every serving certificate carries, in kubeadm's order: the service names and the
/// first address of the service range (10.96.0.0/12); then the listen address is added, then
/// the loopback names Kind adds (`certSANs`). Go names the IP SANs in this order when an
/// address is not among them (`valid for 10.96.0.1, 127.0.0.1, not 127.0.0.2`).
pub(crate) const BASE_SANS: &[&str] = &[
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
    "10.96.0.1",
];

/// The names Kind's cluster configuration adds to the serving certificate.
const LOOPBACK_SANS: &[&str] = &["localhost", "127.0.0.1"];

/// A CA and the serving certificate it signed.
pub(crate) struct ServingPki {
    pub ca_pem: String,
    pub ca_der: Vec<u8>,
    pub server_config: Arc<rustls::ServerConfig>,
}

/// A name attribute as Go's `crypto/x509` (and so kubeadm) encodes it: a PrintableString when
/// every character is one, else a UTF8String. Go compares issuer and subject names byte for
/// byte when it picks candidate issuers, so the encoding decides which errors it reports (the
/// "possibly because of ..." hint names a candidate whose signature did not verify).
pub fn go_name(value: &str) -> DnValue {
    let printable = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || " '()*+,-./:=?".contains(c));
    match rcgen::string::PrintableString::try_from(value) {
        Ok(p) if printable => DnValue::PrintableString(p),
        _ => DnValue::Utf8String(value.to_string()),
    }
}

/// The names of the serving certificate: [`BASE_SANS`], then `extra_sans`, then Kind's
/// loopback names, each once.
fn serving_sans(extra_sans: &[String]) -> Vec<String> {
    let mut sans: Vec<String> = BASE_SANS.iter().map(|s| s.to_string()).collect();
    for s in extra_sans
        .iter()
        .map(String::as_str)
        .chain(LOOPBACK_SANS.iter().copied())
    {
        if !sans.iter().any(|have| have == s) {
            sans.push(s.to_string());
        }
    }
    sans
}

/// The IP addresses the serving certificate for `extra_sans` names, in its order (as Go lists
/// them in `x509: certificate is valid for …`).
pub fn serving_cert_ips(extra_sans: &[String]) -> Vec<String> {
    serving_sans(extra_sans)
        .into_iter()
        .filter(|s| s.parse::<std::net::IpAddr>().is_ok())
        .collect()
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

/// A CA, its serving certificate and an admin client certificate, as PEM files of a real
/// API server's PKI (what `--cluster apiserver` hands to kube-apiserver and its clients).
#[derive(Clone)]
pub struct ApiServerPki {
    /// The cluster CA (`CN=kubernetes`).
    pub ca_pem: String,
    /// The CA's key (PKCS#8).
    pub ca_key_pem: String,
    /// The serving certificate (`CN=kube-apiserver`, kubeadm's names plus the extra ones).
    pub serving_cert_pem: String,
    /// Its key (PKCS#8).
    pub serving_key_pem: String,
    /// A client certificate in `system:masters` (`CN=kubernetes-admin`, as kubeadm's admin).
    pub admin_cert_pem: String,
    /// Its key (PKCS#8).
    pub admin_key_pem: String,
}

impl std::fmt::Debug for ApiServerPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServerPki").finish_non_exhaustive()
    }
}

struct Made {
    ca: rcgen::Certificate,
    ca_key_pem: String,
    issuer: Issuer<'static, KeyPair>,
    leaf: rcgen::Certificate,
    leaf_key: KeyPair,
}

/// The parameters of a certificate the CA signs: names, organizations, common name and use.
fn end_entity(
    sans: Vec<String>,
    organizations: &[&str],
    common_name: &str,
    usage: ExtendedKeyUsagePurpose,
) -> Result<CertificateParams> {
    let mut p = CertificateParams::new(sans).context("certificate names")?;
    for o in organizations {
        p.distinguished_name
            .push(DnType::OrganizationName, go_name(o));
    }
    p.distinguished_name
        .push(DnType::CommonName, go_name(common_name));
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![usage];
    p.use_authority_key_identifier_extension = true;
    Ok(p)
}

/// The CA and the serving certificate for [`BASE_SANS`] plus `extra_sans`.
fn make(extra_sans: &[String], keys: Option<&crate::config::TlsKeys>) -> Result<Made> {
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
        .push(DnType::CommonName, go_name("kubernetes")); // kubeadm (and so Kind) names its cluster CA so
    // kubeadm's CA key usages (client-go's NewSelfSignedCACert).
    ca_params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
        KeyUsagePurpose::KeyCertSign,
    ];
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .context("self-signing the CA")?;
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf = end_entity(
        serving_sans(extra_sans),
        &[],
        "kube-apiserver",
        ExtendedKeyUsagePurpose::ServerAuth,
    )?;
    let leaf_cert = leaf
        .signed_by(&leaf_key, &issuer)
        .context("signing the serving certificate")?;
    Ok(Made {
        ca: ca_cert,
        ca_key_pem,
        issuer,
        leaf: leaf_cert,
        leaf_key,
    })
}

/// The PKI of a real API server: CA and serving certificate with `keys` (the sim's names plus
/// `extra_sans`), and a new admin client key.
pub fn apiserver_pki(extra_sans: &[String], keys: &crate::config::TlsKeys) -> Result<ApiServerPki> {
    let m = make(extra_sans, Some(keys))?;
    let admin_key = rsa()?;
    let admin = end_entity(
        Vec::new(),
        &["system:masters"],
        "kubernetes-admin",
        ExtendedKeyUsagePurpose::ClientAuth,
    )?;
    let admin_cert = admin
        .signed_by(&admin_key, &m.issuer)
        .context("signing the admin client certificate")?;
    Ok(ApiServerPki {
        ca_pem: m.ca.pem(),
        ca_key_pem: m.ca_key_pem,
        serving_cert_pem: m.leaf.pem(),
        serving_key_pem: m.leaf_key.serialize_pem(),
        admin_cert_pem: admin_cert.pem(),
        admin_key_pem: admin_key.serialize_pem(),
    })
}

/// Creates a fresh CA and a serving certificate for [`BASE_SANS`] plus `extra_sans`, with the
/// given keys (new RSA-2048 keys when None).
pub(crate) fn build(
    extra_sans: &[String],
    keys: Option<&crate::config::TlsKeys>,
) -> Result<ServingPki> {
    let Made {
        ca: ca_cert,
        leaf: leaf_cert,
        leaf_key,
        ..
    } = make(extra_sans, keys)?;
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    // The serving certificate alone, as kube-apiserver serves kubeadm's `apiserver.crt`: a
    // CA sent along would be one more candidate issuer to Go's verifier.
    let chain = vec![CertificateDer::from(leaf_cert.der().to_vec())];
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
