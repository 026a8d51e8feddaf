//! Facts of a cluster that cases assume (`applies.assumes`), checked before a trial: a cluster
//! without one makes the trial not applicable there, never a failure of the server.

use anyhow::{Context, Result};

use crate::case::model::Assumption;

/// The subject kubeadm gives a cluster CA, as DER: `CN=kubernetes` as a PrintableString.
const KUBEADM_CA_SUBJECT: &[u8] = &[
    0x30, 0x15, 0x31, 0x13, 0x30, 0x11, 0x06, 0x03, 0x55, 0x04, 0x03, 0x13, 0x0a, b'k', b'u', b'b',
    b'e', b'r', b'n', b'e', b't', b'e', b's',
];

/// Where the cluster is reached from this machine, and the CA it presents.
pub struct Reach<'a> {
    /// The API server URL.
    pub url: &'a str,
    /// The cluster CA (PEM).
    pub ca_pem: &'a str,
}

/// Why `assumption` does not hold on the cluster (None: it holds).
pub async fn unmet(assumption: Assumption, reach: &Reach<'_>) -> Result<Option<String>> {
    match assumption {
        Assumption::AnonymousDiscoveryForbidden => anonymous_discovery(reach).await,
        Assumption::KubeadmCaName => Ok(kubeadm_ca(reach.ca_pem)?),
    }
}

/// Anonymous GETs of the discovery document and the keys, each answered 403.
async fn anonymous_discovery(reach: &Reach<'_>) -> Result<Option<String>> {
    let ca = reqwest::Certificate::from_pem(reach.ca_pem.as_bytes())
        .context("the cluster CA is not PEM")?;
    let http = reqwest::Client::builder()
        .add_root_certificate(ca)
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .context("building an anonymous HTTP client")?;
    for path in ["/.well-known/openid-configuration", "/openid/v1/jwks"] {
        let url = format!("{}{path}", reach.url.trim_end_matches('/'));
        let status = http
            .get(&url)
            .send()
            .await
            .with_context(|| format!("GET {url} without credentials"))?
            .status();
        if status != reqwest::StatusCode::FORBIDDEN {
            return Ok(Some(format!(
                "the case assumes anonymous requests for the issuer's discovery are forbidden, but GET {path} without credentials was answered {status}{}",
                if status.is_success() {
                    " (the cluster's RBAC lets unauthenticated users read it: a binding of system:service-account-issuer-discovery to system:unauthenticated or system:anonymous)"
                } else {
                    ""
                }
            )));
        }
    }
    Ok(None)
}

/// The cluster CA's subject is kubeadm's.
fn kubeadm_ca(ca_pem: &str) -> Result<Option<String>> {
    let der = pem::parse(ca_pem).context("the cluster CA is not PEM")?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.contents())
        .map_err(|e| anyhow::anyhow!("parsing the cluster CA: {e}"))?;
    if cert.subject().as_raw() == KUBEADM_CA_SUBJECT {
        return Ok(None);
    }
    Ok(Some(format!(
        "the case assumes a CA named as kubeadm names it (CN=kubernetes), but the cluster's CA is `{}`: the server's TLS error then names no candidate CA",
        cert.subject()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_sim_has_what_cases_assume_and_a_foreign_ca_does_not() {
        let sim = crate::sim::SimCluster::start(Default::default())
            .await
            .unwrap();
        let url = sim.url();
        let ca = sim.ca_pem();
        let reach = Reach {
            url: &url,
            ca_pem: &ca,
        };
        for a in [
            Assumption::AnonymousDiscoveryForbidden,
            Assumption::KubeadmCaName,
        ] {
            assert_eq!(unmet(a, &reach).await.unwrap(), None, "{a:?}");
        }
        sim.shutdown().await;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "minikubeCA");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().unwrap();
        let other = params.self_signed(&key).unwrap().pem();
        let why = kubeadm_ca(&other).unwrap().expect("not kubeadm's");
        assert!(why.contains("minikubeCA"), "{why}");
    }
}
