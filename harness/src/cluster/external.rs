//! Clusters the lab does not simulate: an existing cluster from a kubeconfig, a Kind cluster
//! created (or reused) with the `kind` CLI, or a real API server authlab started. Trials on them run one at a time — they share the
//! cluster's namespaces — and delete the objects they applied afterwards.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

use crate::cluster::{kind, kubeconfig};

/// A cluster as trials see it.
#[derive(Clone)]
pub struct ExternalCluster {
    /// Admin client.
    pub client: kube::Client,
    /// API server URL as the harness and process servers reach it.
    pub url: String,
    /// The cluster CA (PEM).
    pub ca_pem: String,
    /// The service-account issuer (from the cluster's discovery document).
    pub issuer: String,
    /// The service-account public key (PEM), from the cluster's JWKS.
    pub pubkey: Option<String>,
    /// The Kind cluster, when the lab created or reused one.
    pub kind: Option<kind::KindCluster>,
    /// The API server's `gitVersion` (e.g. `v1.34.0`), when `/version` answered.
    pub version: Option<String>,
    /// Set for an API server authlab started (`--cluster apiserver`).
    pub owned: Option<Owned>,
    /// The kubeconfig and context it was reached through.
    pub target: crate::cluster::owner::Target,
    /// The context's name.
    pub context: String,
}

/// What authlab knows of an API server it started itself, or of a Kind cluster's (whose node
/// it can read).
#[derive(Clone)]
pub struct Owned {
    /// Its service-account signing key (PKCS#8 PEM): hand-made tokens are signed with it.
    pub signing_key_pem: String,
    /// The address it listens on.
    pub host: String,
    /// Its admin kubeconfig (holds a client key).
    pub kubeconfig: PathBuf,
    /// Its audit log: the requests it answered (None: a reused Kind cluster made without one).
    pub audit: Option<crate::cluster::apiserver::audit::AuditLog>,
    /// The control-plane node's address on the Kind network (Kind only).
    pub node_ip: Option<String>,
    /// The IP addresses its serving certificate names, in the certificate's order.
    pub cert_ips: Vec<String>,
}

/// The IP addresses a PEM certificate's subjectAltName holds, in order.
pub fn certificate_ips(pem_text: &str) -> Result<Vec<String>> {
    let block = pem::parse(pem_text).context("the certificate is not PEM")?;
    let (_, cert) = x509_parser::parse_x509_certificate(block.contents())
        .map_err(|e| anyhow::anyhow!("parsing the certificate: {e}"))?;
    let mut ips = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::IPAddress(b) = name {
                let ip = match b.len() {
                    4 => std::net::IpAddr::from(<[u8; 4]>::try_from(*b).unwrap_or_default()),
                    16 => std::net::IpAddr::from(<[u8; 16]>::try_from(*b).unwrap_or_default()),
                    _ => continue,
                };
                ips.push(ip.to_string());
            }
        }
    }
    Ok(ips)
}

impl std::fmt::Debug for ExternalCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalCluster")
            .field("url", &self.url)
            .finish()
    }
}

/// Connects to the cluster in `AUTHLAB_KUBECONFIG` (context `AUTHLAB_KUBE_CONTEXT`).
pub async fn from_kubeconfig(s: &crate::settings::Settings) -> Result<ExternalCluster> {
    let path = s.kubeconfig.clone().context(
        "the kubeconfig cluster needs AUTHLAB_KUBECONFIG=<path to a kubeconfig> (and optionally AUTHLAB_KUBE_CONTEXT)",
    )?;
    let context = s.kube_context.clone();
    connect(&path, context.as_deref(), None).await
}

/// Creates or reuses the Kind cluster `authlab-<AUTHLAB_KIND_NAME or "lab">` for `settings`
/// (another cluster, `…-<digest>`, for settings other than the defaults), and reads from its
/// control-plane node what authlab needs to own it as it owns an API server it starts: the
/// service-account signing key and the audit log. `host` is the host's address on the Kind
/// network (where fault endpoints and second clusters listen).
pub async fn from_kind(
    s: &crate::settings::Settings,
    workdir: PathBuf,
    policy_dir: PathBuf,
    settings: &crate::case::model::ClusterSettings,
    engine: crate::container::Engine,
    host: String,
    run_id: &str,
) -> Result<ExternalCluster> {
    let kind = kind::Kind::find(s)?;
    let base = s.kind_name.clone().unwrap_or_else(|| "lab".into());
    let name = kind::name_for(&base, settings);
    let image = kind::node_image(s.kind_node_image.as_deref(), s.k8s_version.as_deref());
    std::fs::create_dir_all(&policy_dir)
        .with_context(|| format!("creating {}", policy_dir.display()))?;
    let policy = policy_dir.join("audit-policy.yaml");
    std::fs::write(&policy, crate::cluster::apiserver::audit::POLICY)
        .with_context(|| format!("writing {}", policy.display()))?;
    let config = kind::render_config(kind::CLUSTER_CONFIG, &name, settings, &policy_dir)?;
    let (reuse, keep) = (s.kind_reuse, s.keep_cluster);
    let cluster_name = name.clone();
    let run_id = run_id.to_string();
    let kc = tokio::task::spawn_blocking(move || {
        kind.up(
            &cluster_name,
            &image,
            &config,
            &workdir,
            kind::Reuse { reuse, keep },
            &run_id,
        )
    })
    .await
    .context("the kind task failed")??;
    let path = kc.kubeconfig.clone();
    let mut ext = connect(&path, None, Some(kc)).await?;
    if let Some(want) = &settings.issuer {
        let want = want.replace("${cluster.url}", &kind::internal_server(&name));
        if ext.issuer != want {
            bail!(
                "the Kind cluster {name} has the issuer {}, the case needs {want}: it was made with other settings; delete it (`kind delete cluster --name {name}`) and run again",
                ext.issuer
            );
        }
    }
    let node = kind::control_plane(&name);
    let key = engine
        .exec(&node, &["cat", kind::NODE_SA_KEY], None)
        .await
        .with_context(|| {
            format!("reading the service-account signing key of Kind cluster {name}")
        })?;
    let audit = crate::cluster::apiserver::audit::AuditLog::in_node(
        engine.clone(),
        &node,
        kind::NODE_AUDIT_LOG,
    );
    let audit = if audit.exists().await {
        Some(audit)
    } else {
        tracing::warn!(
            "Kind cluster {name} has no audit log at {} (it was not made by this version of authlab): expect.cluster_requests is not checked there",
            kind::NODE_AUDIT_LOG
        );
        None
    };
    let cert = engine
        .exec(&node, &["cat", "/etc/kubernetes/pki/apiserver.crt"], None)
        .await
        .with_context(|| format!("reading the serving certificate of Kind cluster {name}"))?;
    let cert_ips = certificate_ips(&String::from_utf8_lossy(&cert))?;
    let node_ip = engine.container_ip(&node, &s.kind_network()).await.ok();
    ext.owned = Some(Owned {
        signing_key_pem: String::from_utf8(key).context("the signing key is not text")?,
        host,
        kubeconfig: path,
        audit,
        node_ip,
        cert_ips,
    });
    Ok(ext)
}

/// Connects to the cluster of a kubeconfig (`context`: default the current one).
pub async fn connect(
    path: &std::path::Path,
    context: Option<&str>,
    kind: Option<kind::KindCluster>,
) -> Result<ExternalCluster> {
    let (client, access) = kubeconfig::client(path, context).await?;
    let ca_pem = access.ca_pem.clone().with_context(|| {
        format!(
            "{} has no certificate-authority(-data) for its cluster; the server needs the CA",
            path.display()
        )
    })?;
    let discovery: serde_json::Value = get_json(&client, "/.well-known/openid-configuration")
        .await
        .context("reading the cluster's service-account issuer discovery document")?;
    let issuer = discovery["issuer"]
        .as_str()
        .context("the discovery document has no issuer")?
        .to_string();
    let jwks = get_json(&client, "/openid/v1/jwks").await.ok();
    let pubkey = jwks.as_ref().and_then(|j| {
        let k = j["keys"].as_array()?.iter().find(|k| k["kty"] == "RSA")?;
        rsa_pem(k["n"].as_str()?, k["e"].as_str()?).ok()
    });
    let version = client.apiserver_version().await.ok().map(|v| v.git_version);
    Ok(ExternalCluster {
        owned: None,
        target: crate::cluster::owner::Target {
            kubeconfig: path.to_path_buf(),
            context: Some(access.context.clone()),
        },
        context: access.context.clone(),
        version,
        client,
        url: access.server.trim_end_matches('/').to_string(),
        ca_pem,
        issuer,
        pubkey,
        kind,
    })
}

async fn get_json(client: &kube::Client, path: &str) -> Result<serde_json::Value> {
    let req = http::Request::get(path).body(Vec::new())?;
    let text = client
        .request_text(req)
        .await
        .with_context(|| format!("GET {path}"))?;
    serde_json::from_str(&text).with_context(|| format!("GET {path} did not return JSON"))
}

/// SPKI PEM of an RSA public key given as JWK `n` and `e` (base64url).
pub fn rsa_pem(n: &str, e: &str) -> Result<String> {
    let n = URL_SAFE_NO_PAD
        .decode(n.trim_end_matches('='))
        .context("JWK n is not base64url")?;
    let e = URL_SAFE_NO_PAD
        .decode(e.trim_end_matches('='))
        .context("JWK e is not base64url")?;
    let spki = rsa_spki_der(&n, &e)?;
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    Ok(pem::encode_config(
        &pem::Pem::new("PUBLIC KEY", spki),
        config,
    ))
}

/// The DER `SubjectPublicKeyInfo` of an RSA public key (big-endian modulus and exponent,
/// leading zero bytes allowed).
pub fn rsa_spki_der(n: &[u8], e: &[u8]) -> Result<Vec<u8>> {
    use aws_lc_rs::encoding::AsDer;
    let trim = |b: &[u8]| {
        b.iter()
            .position(|x| *x != 0)
            .map_or(Vec::new(), |i| b[i..].to_vec())
    };
    let (n, e) = (trim(n), trim(e));
    if n.is_empty() || e.is_empty() {
        bail!("empty RSA key component");
    }
    let der = aws_lc_rs::rsa::PublicKeyComponents { n, e }
        .as_der()
        .map_err(|_| anyhow::anyhow!("the modulus and exponent do not form an RSA public key"))?;
    Ok(der.as_ref().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn jwk_converts_to_the_same_pem_the_sim_publishes() {
        let sim = crate::sim::SimCluster::start(Default::default())
            .await
            .unwrap();
        let client = sim.kube_client().unwrap();
        let jwks = get_json(&client, "/openid/v1/jwks").await.unwrap();
        let k = &jwks["keys"][0];
        let pem = rsa_pem(k["n"].as_str().unwrap(), k["e"].as_str().unwrap()).unwrap();
        assert_eq!(pem.trim(), sim.public_key_pem().trim());
        sim.shutdown().await;
    }
}
