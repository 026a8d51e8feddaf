//! Existing clusters from a kubeconfig (k3d, minikube, Kind, a real cluster): what the harness
//! needs from it — a client, the API server URL and the CA the server must trust.

use std::path::Path;

use anyhow::{Context, Result, anyhow};
use base64::{Engine, engine::general_purpose::STANDARD};
use kube::config::{KubeConfigOptions, Kubeconfig};

/// What a lab takes from a kubeconfig.
#[derive(Debug, Clone)]
pub struct ClusterAccess {
    /// Context used.
    pub context: String,
    /// `clusters[].cluster.server` of that context.
    pub server: String,
    /// PEM of the cluster CA (`certificate-authority-data`, or the file it names), if any.
    pub ca_pem: Option<String>,
}

/// Reads the server URL and CA for `context` (the current context when None).
pub fn access(kc: &Kubeconfig, context: Option<&str>) -> Result<ClusterAccess> {
    let ctx_name = context
        .map(str::to_string)
        .or_else(|| kc.current_context.clone())
        .ok_or_else(|| anyhow!("the kubeconfig has no current-context; pass a context name"))?;
    let ctx = kc
        .contexts
        .iter()
        .find(|c| c.name == ctx_name)
        .and_then(|c| c.context.as_ref())
        .ok_or_else(|| anyhow!("context {ctx_name:?} is not in the kubeconfig"))?;
    let cluster = kc
        .clusters
        .iter()
        .find(|c| c.name == ctx.cluster)
        .and_then(|c| c.cluster.as_ref())
        .ok_or_else(|| {
            anyhow!(
                "cluster {:?} of context {ctx_name:?} is not in the kubeconfig",
                ctx.cluster
            )
        })?;
    let server = cluster
        .server
        .clone()
        .ok_or_else(|| anyhow!("cluster {:?} has no server", ctx.cluster))?;
    let ca_pem = if let Some(data) = &cluster.certificate_authority_data {
        let bytes = STANDARD
            .decode(data.trim())
            .context("certificate-authority-data is not base64")?;
        Some(String::from_utf8(bytes).context("certificate-authority-data is not PEM text")?)
    } else if let Some(file) = &cluster.certificate_authority {
        Some(
            std::fs::read_to_string(file)
                .with_context(|| format!("reading certificate-authority {file}"))?,
        )
    } else {
        None
    };
    Ok(ClusterAccess {
        context: ctx_name,
        server,
        ca_pem,
    })
}

/// Reads a kubeconfig file and builds a client for `context`.
pub async fn client(path: &Path, context: Option<&str>) -> Result<(kube::Client, ClusterAccess)> {
    let kc = Kubeconfig::read_from(path)
        .with_context(|| format!("reading kubeconfig {}", path.display()))?;
    let acc = access(&kc, context)?;
    let opts = KubeConfigOptions {
        context: Some(acc.context.clone()),
        ..Default::default()
    };
    let cfg = kube::Config::from_custom_kubeconfig(kc, &opts)
        .await
        .with_context(|| format!("loading context {} of {}", acc.context, path.display()))?;
    let client = kube::Client::try_from(cfg).context("building the Kubernetes client")?;
    Ok((client, acc))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KC: &str = r#"
apiVersion: v1
kind: Config
current-context: kind-authlab-x
clusters:
  - name: kind-authlab-x
    cluster:
      server: https://127.0.0.1:33815
      certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCkFBQQotLS0tLUVORCBDRVJUSUZJQ0FURS0tLS0tCg==
contexts:
  - name: kind-authlab-x
    context: { cluster: kind-authlab-x, user: kind-authlab-x }
users:
  - name: kind-authlab-x
    user: { token: abc }
"#;

    #[test]
    fn reads_server_and_ca() {
        let kc = Kubeconfig::from_yaml(KC).unwrap();
        let a = access(&kc, None).unwrap();
        assert_eq!(a.server, "https://127.0.0.1:33815");
        assert!(
            a.ca_pem
                .unwrap()
                .starts_with("-----BEGIN CERTIFICATE-----\nAAA")
        );
        assert!(
            access(&kc, Some("nope"))
                .unwrap_err()
                .to_string()
                .contains("\"nope\"")
        );
    }
}
