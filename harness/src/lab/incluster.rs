//! The server inside a Kind cluster: `manifests/in-cluster/openbao.yaml` rendered per version
//! (its own namespace, the image authlab built and loaded into Kind), applied with kube-rs,
//! reached at the node's address through the NodePort Service, initialised and unsealed like
//! any other server. Audit entries go to stdout with the server log, which is streamed from the
//! pod's log into a host file, so evidence is read as for every other server.

use std::{path::Path, time::Duration};

use anyhow::{Context, Result, bail};
use futures_util::AsyncBufReadExt;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::{Api, api::LogParams};
use serde_json::Value;

use super::servers::ServerInfo;
use crate::cluster::objects;
use crate::{
    server::{ServerSpec, process::initialise},
    vault::VaultClient,
};

/// The namespace of a version's in-cluster server.
pub fn namespace(spec: &ServerSpec) -> String {
    format!(
        "authlab-server-{}-{}",
        spec.flavour,
        spec.version.replace(['.', '+'], "-")
    )
}

/// The manifest's objects for `spec`: namespace renamed, image set.
pub fn render(manifest: &str, spec: &ServerSpec, image: &str) -> Result<Vec<Value>> {
    let ns = namespace(spec);
    let mut docs = objects::parse_documents(manifest)?;
    for d in &mut docs {
        if d["kind"] == "Namespace" {
            d["metadata"]["name"] = Value::from(ns.clone());
        }
        if d["metadata"]["namespace"] == "authlab-server" {
            d["metadata"]["namespace"] = Value::from(ns.clone());
        }
        if d["kind"] == "ClusterRoleBinding" {
            d["metadata"]["name"] = Value::from(format!("{ns}-tokenreview"));
            if let Some(subjects) = d["subjects"].as_array_mut() {
                for s in subjects {
                    s["namespace"] = Value::from(ns.clone());
                }
            }
        }
        if d["kind"] == "StatefulSet" {
            d["spec"]["template"]["spec"]["containers"][0]["image"] = Value::from(image);
            if !image.starts_with("authlab/") {
                // An official image: run its binary directly.
                d["spec"]["template"]["spec"]["containers"][0]["command"] =
                    serde_json::json!([spec.flavour.to_string().replace("openbao", "bao")]);
            }
        }
        if d["kind"] == "ConfigMap" && spec.flavour == crate::server::Flavour::Vault {
            // Vault declares no audit devices in its config; it gets one through the API.
            if let Some(hcl) = d["data"]["server.hcl"].as_str() {
                let cut = hcl.find("audit \"file\"").unwrap_or(hcl.len());
                let hcl = format!("{}disable_mlock = true\n", &hcl[..cut]);
                d["data"]["server.hcl"] = Value::from(hcl);
            }
        }
    }
    Ok(docs)
}

/// Applies the server for `spec`, waits for it, initialises it and starts streaming its log
/// into `log_file`.
pub async fn start(
    client: &kube::Client,
    manifest_path: &Path,
    spec: &ServerSpec,
    image: &str,
    log_file: &Path,
) -> Result<ServerInfo> {
    let started = std::time::Instant::now();
    let manifest = std::fs::read_to_string(manifest_path)
        .with_context(|| format!("reading {}", manifest_path.display()))?;
    let docs = render(&manifest, spec, image)?;
    for d in &docs {
        objects::apply(client, d).await?;
    }
    let ns = namespace(spec);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let wait = Duration::from_secs(180);
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let ready = pods.get_opt("openbao-0").await?.is_some_and(|p| {
            p.status
                .and_then(|s| s.conditions)
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        });
        if ready {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "waited {} s for pod {ns}/openbao-0 to become ready (is the image {image} loaded into the cluster?)",
                wait.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let svc: Service = Api::namespaced(client.clone(), &ns)
        .get("openbao")
        .await
        .with_context(|| format!("reading service {ns}/openbao"))?;
    let node_port = svc
        .spec
        .and_then(|s| s.ports)
        .and_then(|p| p.first().and_then(|p| p.node_port))
        .context("service openbao has no node port")?;
    let nodes: Api<Node> = Api::all(client.clone());
    let node_ip = nodes
        .list(&Default::default())
        .await
        .context("listing nodes")?
        .items
        .into_iter()
        .filter_map(|n| n.status?.addresses)
        .flatten()
        .find(|a| a.type_ == "InternalIP")
        .map(|a| a.address)
        .context("no node has an InternalIP address")?;
    let addr = format!("http://{node_ip}:{node_port}");
    stream_log(pods, log_file.to_path_buf());
    let probe =
        VaultClient::with_timeouts(&addr, None, Duration::from_secs(2), Duration::from_secs(10))?;
    let root_token = initialise(&probe, spec.flavour, "stdout").await?;
    Ok(ServerInfo {
        spec: spec.to_string(),
        addr,
        root_token,
        audit_log: log_file.to_path_buf(),
        server_log: log_file.to_path_buf(),
        config_text: docs
            .iter()
            .find(|d| d["kind"] == "ConfigMap")
            .and_then(|d| d["data"]["server.hcl"].as_str())
            .unwrap_or_default()
            .to_string(),
        pid: None,
        startup_ms: started.elapsed().as_millis() as u64,
    })
}

/// Follows the pod's log into `path` (audit JSON lines and server log lines together).
fn stream_log(pods: Api<Pod>, path: std::path::PathBuf) {
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let Ok(mut file) = tokio::fs::File::create(&path).await else {
            return;
        };
        let params = LogParams {
            follow: true,
            container: Some("openbao".into()),
            ..Default::default()
        };
        let Ok(stream) = pods.log_stream("openbao-0", &params).await else {
            return;
        };
        let mut lines = stream.lines();
        while let Some(Ok(line)) = futures_util::StreamExt::next(&mut lines).await {
            if file
                .write_all(format!("{line}\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
            let _ = file.flush().await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> String {
        std::fs::read_to_string(
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../manifests/in-cluster/openbao.yaml"),
        )
        .unwrap()
    }

    #[test]
    fn renders_one_namespace_per_version_with_the_image() {
        let spec: ServerSpec = "openbao:2.7.2".parse().unwrap();
        let docs = render(&manifest(), &spec, "authlab/openbao:2.7.2").unwrap();
        let ns = "authlab-server-openbao-2-7-2";
        assert!(
            docs.iter()
                .any(|d| d["kind"] == "Namespace" && d["metadata"]["name"] == ns)
        );
        for d in docs
            .iter()
            .filter(|d| d["kind"] != "Namespace" && d["kind"] != "ClusterRoleBinding")
        {
            assert_eq!(d["metadata"]["namespace"], ns, "{}", d["kind"]);
        }
        let crb = docs
            .iter()
            .find(|d| d["kind"] == "ClusterRoleBinding")
            .unwrap();
        assert_eq!(crb["subjects"][0]["namespace"], ns);
        assert_eq!(crb["roleRef"]["name"], "system:auth-delegator");
        let sts = docs.iter().find(|d| d["kind"] == "StatefulSet").unwrap();
        assert_eq!(
            sts["spec"]["template"]["spec"]["containers"][0]["image"],
            "authlab/openbao:2.7.2"
        );
        let svc = docs.iter().find(|d| d["kind"] == "Service").unwrap();
        assert_eq!(svc["spec"]["type"], "NodePort");
        let cm = docs.iter().find(|d| d["kind"] == "ConfigMap").unwrap();
        let hcl = cm["data"]["server.hcl"].as_str().unwrap();
        assert!(
            hcl.contains("log_level     = \"debug\"") && hcl.contains("file_path = \"stdout\""),
            "{hcl}"
        );
        hcl::parse(hcl).unwrap();
    }

    #[test]
    fn vault_gets_no_audit_stanza() {
        let spec: ServerSpec = "vault:1.21.1".parse().unwrap();
        let docs = render(&manifest(), &spec, "hashicorp/vault:1.21.1").unwrap();
        let cm = docs.iter().find(|d| d["kind"] == "ConfigMap").unwrap();
        let hcl = cm["data"]["server.hcl"].as_str().unwrap();
        assert!(
            !hcl.contains("audit \"file\"") && hcl.contains("disable_mlock"),
            "{hcl}"
        );
        let sts = docs.iter().find(|d| d["kind"] == "StatefulSet").unwrap();
        assert_eq!(
            sts["spec"]["template"]["spec"]["containers"][0]["command"][0],
            "vault"
        );
    }
}
