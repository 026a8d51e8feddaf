//! The inside topology: on the sim and on an API server authlab starts, the server as a pod
//! emulated in a container (a real Pod object, its real bound token, the cluster's CA); on Kind
//! and kubeconfig clusters, a real pod of the cluster ([`crate::lab::incluster`]).

use anyhow::{Context, Result};
use serde_json::json;

use crate::{
    case::matrix::Trial,
    cluster::{objects, tokens},
    lab::Lab,
};

/// The trial's server as a pod would run: a container with the projected token of its service
/// account (bound to a Pod object, 3607 s, as kubelet requests it), the cluster CA and the
/// `KUBERNETES_SERVICE_*` variables. `reused`, a pod server an earlier trial gave back, takes
/// this pod's identity instead of a new container being started.
pub(super) async fn pod_server(
    lab: &Lab,
    trial: &Trial,
    cluster: &super::outputs::ClusterView,
    reused: Option<crate::lab::servers::ServerHandle>,
) -> Result<crate::lab::servers::ServerHandle> {
    let kube = &cluster.client;
    let sa = trial.case.case.pod_account();
    let ns = sa.namespace.as_str();
    let pod_name = format!("{}-0", trial.server.flavour);
    let owner = lab.clusters().owner();
    objects::apply(kube, &owner, &server_pod(trial)).await?;
    let token = pod_token(kube, &owner, &sa, &pod_name).await?;
    let gateway = lab.docker().connected().await?.gateway;
    let port = cluster.port()?;
    let identity = crate::container::PodIdentity {
        token,
        ca_pem: cluster.ca_pem.clone(),
        namespace: ns.to_string(),
        kubernetes_service_host: gateway,
        kubernetes_service_port: port,
    };
    if let Some(mut pod) = reused {
        let became = pod
            .container_server()
            .context("an idle pod server is no container")
            .and_then(|c| c.become_pod(&identity));
        match became {
            Ok(()) => return Ok(pod),
            Err(e) => {
                tracing::debug!("{}: {e:#}; starting a new pod server", trial.name);
                pod.stop().await;
            }
        }
    }
    lab.docker()
        .start_container(&trial.server, Some(identity), Some(&trial.name), None)
        .await
}

/// The server's Pod object.
pub(super) fn server_pod(trial: &Trial) -> serde_json::Value {
    let sa = trial.case.case.pod_account();
    let pod_name = format!("{}-0", trial.server.flavour);
    pod_object(trial, &sa.namespace, &sa.name, &pod_name)
}

fn pod_object(trial: &Trial, ns: &str, sa: &str, pod_name: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": pod_name, "namespace": ns, "labels": {"app.kubernetes.io/name": "openbao"}},
        "spec": {"serviceAccountName": sa, "nodeName": "authlab-node",
                 "containers": [{"name": "server", "image": crate::container::image_tag(&trial.server)}]},
    })
}

/// A token of the pod's service account bound to the pod, as kubelet requests it.
async fn pod_token(
    kube: &kube::Client,
    owner: &objects::Owner,
    sa: &crate::case::model::ServiceAccountRef,
    pod_name: &str,
) -> Result<String> {
    let spec = crate::case::model::TokenSpec {
        service_account: sa.clone(),
        cluster: Default::default(),
        token: crate::case::model::TokenKind::Projected,
        audiences: None,
        expiration_seconds: Some(3607),
        bound_pod: Some(pod_name.to_string()),
        secret_name: None,
        claims: Default::default(),
        time_shift: None,
        foreign_key: false,
        literal: None,
    };
    tokens::obtain(kube, owner, &spec, &tokens::Signers::default())
        .await
        .with_context(|| format!("requesting the server pod's token for {sa}"))
}

/// The trial's server as a real pod of the shared cluster `ext`, its objects named `name`, with
/// those objects (deleted at teardown).
pub(super) async fn cluster_pod_server(
    run: &super::Run<'_>,
    ext: &crate::cluster::external::ExternalCluster,
    name: &str,
) -> Result<(crate::lab::servers::ServerHandle, Vec<serde_json::Value>)> {
    let (lab, trial) = (run.lab, run.trial);
    let sa = trial.case.case.pod_account();
    let image = lab.clusters().pod_image(&trial.server, ext).await?;
    let n = lab.next_id();
    let replaces = trial
        .case
        .case
        .before_login
        .iter()
        .any(|a| matches!(a, crate::case::model::ClusterAction::ReplaceServerPod {}));
    let node = match &ext.kind {
        Some(kc) => {
            let engine = lab.docker().connected().await?.engine;
            Some((engine, crate::cluster::kind::control_plane(&kc.name)))
        }
        None => None,
    };
    let opts = crate::lab::incluster::PodOptions {
        name,
        spec: &trial.server,
        image: &image,
        namespace: &sa.namespace,
        service_account: &sa.name,
        persistent: replaces.then(|| format!("{}-{n}", lab.options().run_id)),
        run_id: &lab.options().run_id,
        log_file: crate::lab::incluster::log_path(lab.workdir(), n),
        node,
    };
    let objects = crate::lab::incluster::render(&opts)?;
    let started = crate::lab::incluster::start(&ext.client, opts).await;
    let (info, pod) = started.with_context(|| {
        format!(
            "starting the server pod {}/{} ({image})",
            sa.namespace,
            crate::lab::incluster::pod_name(name)
        )
    })?;
    tracing::debug!(
        "{} ready in pod {}/{} at {} in {} ms",
        trial.server,
        sa.namespace,
        crate::lab::incluster::pod_name(name),
        info.addr,
        info.startup_ms
    );
    Ok((crate::lab::servers::ServerHandle::pod(info, pod), objects))
}

/// The server pod's token file, as the pod reads it.
pub(super) async fn pod_token_file(server: &crate::lab::servers::ServerHandle) -> Result<String> {
    if let Some(p) = server.cluster_pod() {
        return p.token().await;
    }
    let c = server
        .container_server()
        .context("the server is not a pod of this trial")?;
    c.pod_token().context("reading the server pod's token")
}

/// A new token in the server pod's token file: for the same pod (`replace`: false, kubelet's
/// refresh), or for a new pod of the same name that replaces the old one (`replace`: true, a
/// restart: the old pod's tokens are invalid from then on).
pub(super) async fn renew_token(
    run: &super::Run<'_>,
    env: &super::outputs::Env,
    setup: &super::outputs::Setup,
    replace: bool,
) -> Result<()> {
    let trial = run.trial;
    let kube = &env.cluster.client;
    let owner = run.lab.clusters().owner();
    let sa = trial.case.case.pod_account();
    if let Some(pod) = setup.server.cluster_pod() {
        // A real pod: replaced, its StatefulSet makes a new one, whose token kubelet writes;
        // refreshed, what kubelet does at 80 % of the token's life, done now.
        if replace {
            return pod.replace().await;
        }
        let token = pod_token(kube, &owner, &sa, pod.name()).await?;
        return pod.refresh_token(&token).await;
    }
    let container = setup
        .server
        .container_server()
        .context("the server is not a pod of this trial")?;
    let pod_name = format!("{}-0", trial.server.flavour);
    if replace {
        // Gone at once, as once its kubelet confirmed the deletion: a StatefulSet re-creates
        // the pod only then.
        objects::delete(
            kube,
            &owner,
            &format!("Pod {}/{pod_name} --grace-period=0 --force", sa.namespace),
            false,
        )
        .await?;
        let pod = pod_object(trial, &sa.namespace, &sa.name, &pod_name);
        objects::apply(kube, &owner, &pod).await?;
    }
    let token = pod_token(kube, &owner, &sa, &pod_name).await?;
    container
        .write_pod_token(&token)
        .context("writing the new token into the server pod's token file")
}
