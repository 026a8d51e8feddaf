//! The run's keys: the service-account signing key and TLS keys every sim cluster shares, the
//! foreign cluster that signs tokens no trial's cluster trusts, and an unrelated CA.

use anyhow::Result;
use tokio::sync::OnceCell;

use super::once::generated_once;
use crate::sim::{SimCluster, SimConfig, TlsKeys};

/// Keys made once per run, on first use.
#[derive(Default)]
pub struct Keys {
    sa_key: OnceCell<String>,
    tls_keys: OnceCell<TlsKeys>,
    foreign_tls_keys: OnceCell<TlsKeys>,
    foreign: OnceCell<SimCluster>,
    unrelated_ca: OnceCell<String>,
}

impl Keys {
    /// The service-account signing key every sim cluster of this run shares (one RSA key
    /// generation per run instead of one per trial).
    pub async fn sa_key(&self) -> Result<String> {
        self.sa_key
            .get_or_try_init(|| async {
                let sim = SimCluster::start(SimConfig {
                    tls_keys: Some(self.tls_keys().await?),
                    ..SimConfig::default()
                })
                .await?;
                let key = sim.signing_key_pkcs8_pem();
                sim.shutdown().await;
                Ok::<_, anyhow::Error>(key)
            })
            .await
            .cloned()
    }

    /// The RSA-2048 keys of the CA and serving certificate every trial's sim cluster uses (two
    /// key generations per run instead of two per trial; each sim still makes its own
    /// certificates).
    pub async fn tls_keys(&self) -> Result<TlsKeys> {
        generated_once(&self.tls_keys).await
    }

    /// The keys of another cluster's CA and serving certificate (the foreign cluster's, and
    /// every trial's second cluster's): its CA does not sign the trial cluster's certificate.
    pub async fn foreign_tls_keys(&self) -> Result<TlsKeys> {
        generated_once(&self.foreign_tls_keys).await
    }

    /// A sim cluster with its own key and the default issuer: tokens it signs look like
    /// tokens from another cluster.
    pub async fn foreign_cluster(&self) -> Result<&SimCluster> {
        self.foreign
            .get_or_try_init(|| async {
                SimCluster::start(SimConfig {
                    tls_keys: Some(self.foreign_tls_keys().await?),
                    ..SimConfig::default()
                })
                .await
            })
            .await
    }

    /// The signing key of [`Keys::foreign_cluster`]: a trial's second cluster signs with it, so
    /// its tokens are foreign to the trial's own cluster.
    pub async fn foreign_key(&self) -> Result<String> {
        Ok(self.foreign_cluster().await?.signing_key_pkcs8_pem())
    }

    /// PEM of a CA that has nothing to do with any cluster (another name, another key).
    pub fn unrelated_ca(&self) -> Result<String> {
        if let Some(pem) = self.unrelated_ca.get() {
            return Ok(pem.clone());
        }
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            crate::sim::go_name("authlab-unrelated-ca"),
        );
        let key =
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)?;
        let pem = params.self_signed(&key)?.pem();
        let _ = self.unrelated_ca.set(pem.clone());
        Ok(pem)
    }
}
