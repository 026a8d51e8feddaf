//! Trials on a shared cluster (Kind or a kubeconfig): one at a time, cleaned up afterwards.

use super::*;

/// A trial on a Kind or kubeconfig cluster: one at a time, objects deleted afterwards.
pub(super) async fn execute_external(
    lab: &Lab,
    trial: &Trial,
    mut t: Timer<'_>,
    record: &mut TrialRecord,
    flavour: &str,
) -> Result<Vec<String>> {
    let case = &trial.case.case;
    let ext = lab.external_cluster(trial.cluster).await.map_err(|e| {
        NotAvailable::err(
            trial.cluster.as_str(),
            format!(
                "the {} cluster is not available: {e:#}",
                trial.cluster.as_str()
            ),
        )
    })?;
    let inside = case.topology == Topology::Inside;
    let kind = ext.kind.as_ref();
    // Inside: the server pod. Outside a Kind cluster: a container on the `kind` network, so the
    // cluster's pods can reach it too. Outside any other cluster: the lab's shared server.
    let server = if inside {
        lab.in_cluster_server(&trial.server, &ext).await?
    } else if kind.is_some() {
        lab.kind_network_server(&trial.server).await?
    } else {
        lab.server(&trial.server).await?
    };
    record.server_config = server.config_text();
    t.lap("server");
    let _one_at_a_time = lab.exclusive.lock().await;
    t.lap("queue");
    // The API server as the server reaches it, and the server as pods reach it.
    let (url, server_from_pods) = if inside {
        (
            "https://kubernetes.default.svc".to_string(),
            Some(format!(
                "http://openbao.{}.svc:8200",
                crate::lab::incluster::namespace(&trial.server)
            )),
        )
    } else if let Some(kc) = kind {
        let ip = server
            .container_server()
            .and_then(|c| c.container_ip(&crate::cluster::kind::network()));
        (
            crate::cluster::kind::internal_server(&kc.name),
            ip.map(|ip| format!("http://{ip}:8200")),
        )
    } else {
        (ext.url.clone(), None)
    };
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    vars.insert("cluster.url".into(), url.clone());
    vars.insert(
        "cluster.hostport".into(),
        url.trim_start_matches("https://").to_string(),
    );
    let view = ClusterView {
        sim: None,
        client: ext.client.clone(),
        url,
        ca_pem: ext.ca_pem.clone(),
        issuer: ext.issuer.clone(),
        pubkey: ext.pubkey.clone(),
        server_from_pods,
    };
    let result = execute_on_cluster(
        lab,
        trial,
        &view,
        &mut t,
        record,
        vars,
        flavour,
        Some(server),
    )
    .await;
    // The cluster is shared: remove what this trial applied (namespaces stay; deleting them
    // is slow and a later trial may need them again).
    for obj in record.objects.iter().rev() {
        if obj["kind"] == "Namespace" {
            continue;
        }
        let _ = objects::delete_applied(&ext.client, obj).await;
    }
    for spec in case.reviewer.iter().chain(std::iter::once(&case.client)) {
        if spec.token == crate::case::model::TokenKind::LegacySecret
            && let Some((ns, name)) = spec.service_account.split_once('/')
        {
            let secret = spec
                .secret_name
                .clone()
                .unwrap_or_else(|| format!("{name}-token"));
            let _ = objects::delete(&ext.client, &format!("Secret {ns}/{secret}")).await;
        }
    }
    result
}
