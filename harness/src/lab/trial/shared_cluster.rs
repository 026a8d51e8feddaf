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
    let server = if inside {
        lab.in_cluster_server(&trial.server, &ext).await?
    } else {
        lab.server(&trial.server).await?
    };
    record.server_config = server.config_text();
    t.lap("server");
    let _one_at_a_time = lab.exclusive.lock().await;
    t.lap("queue");
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    // A server in the cluster reaches the API server through its in-cluster Service.
    let url = if inside {
        "https://kubernetes.default.svc".to_string()
    } else {
        ext.url.clone()
    };
    vars.insert("cluster.url".into(), url);
    vars.insert(
        "cluster.hostport".into(),
        ext.url.trim_start_matches("https://").to_string(),
    );
    let view = ClusterView {
        sim: None,
        client: ext.client.clone(),
        url: ext.url.clone(),
        ca_pem: ext.ca_pem.clone(),
        issuer: ext.issuer.clone(),
        pubkey: ext.pubkey.clone(),
    };
    let result = execute_on_cluster(
        lab,
        trial,
        &view,
        &mut t,
        record,
        vars,
        flavour,
        inside.then_some(server),
    )
    .await;
    // The cluster is shared: remove what this trial applied (namespaces stay; deleting them
    // is slow and a later trial may need them again).
    for obj in record.objects.iter().rev() {
        let kind = obj["kind"].as_str().unwrap_or_default();
        if kind == "Namespace" {
            continue;
        }
        let name = obj["metadata"]["name"].as_str().unwrap_or_default();
        let target = match obj["metadata"]["namespace"].as_str() {
            Some(ns) => format!("{kind} {ns}/{name}"),
            None => format!("{kind} {name}"),
        };
        let _ = objects::delete(&ext.client, &target).await;
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
