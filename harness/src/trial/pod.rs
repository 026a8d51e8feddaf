//! The inside topology on the sim: the server as a pod, emulated in a container.

use anyhow::{Context, Result};
use serde_json::json;

use crate::{
    case::matrix::Trial,
    cluster::{objects, tokens},
    lab::Lab,
    sim::SimCluster,
};

/// Starts the trial's server as a pod would run: a container with the projected token of its
/// service account (bound to a Pod object, 3607 s, as kubelet requests it), the cluster CA and
/// the `KUBERNETES_SERVICE_*` variables.
pub(super) async fn pod_server(
    lab: &Lab,
    trial: &Trial,
    sim: &SimCluster,
    kube: &kube::Client,
) -> Result<crate::lab::servers::ServerHandle> {
    let case = &trial.case.case;
    let sa = case
        .server
        .pod_service_account
        .clone()
        .unwrap_or_else(|| crate::case::model::ServiceAccountRef::new("vault", "vault-auth"));
    let (ns, name) = (sa.namespace.as_str(), sa.name.as_str());
    let pod_name = format!("{}-0", trial.server.flavour);
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": pod_name, "namespace": ns, "labels": {"app.kubernetes.io/name": "openbao"}},
        "spec": {"serviceAccountName": name, "nodeName": "authlab-node",
                 "containers": [{"name": "server", "image": crate::container::image_tag(&trial.server)}]},
    });
    objects::apply(kube, &pod).await?;
    let spec = crate::case::model::TokenSpec {
        service_account: sa.clone(),
        cluster: Default::default(),
        token: crate::case::model::TokenKind::Projected,
        audiences: None,
        expiration_seconds: Some(3607),
        bound_pod: Some(pod_name),
        secret_name: None,
        claims: Default::default(),
        time_shift: None,
        foreign_key: false,
        literal: None,
    };
    let signers = tokens::Signers {
        cluster: Some(sim),
        foreign: None,
    };
    let token = tokens::obtain(kube, &spec, &signers)
        .await
        .with_context(|| format!("requesting the server pod's token for {sa}"))?;
    let (_, _, gateway) = lab.docker().await?;
    let pod = crate::container::PodIdentity {
        token,
        ca_pem: sim.ca_pem(),
        namespace: ns.to_string(),
        kubernetes_service_host: gateway,
        kubernetes_service_port: sim.port(),
    };
    lab.start_container(&trial.server, Some(pod), Some(&trial.name))
        .await
}
