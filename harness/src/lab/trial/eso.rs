//! External Secrets Operator as a second client on a Kind cluster: after the harness's own
//! login, ESO is given a store that logs in with the same service account and audiences and an
//! ExternalSecret reading one secret; its `Ready` condition, the synced value and the
//! controller's reconcile error are judged against `expect.eso`.

use super::*;
use crate::{case::model::EsoClient, eso};

/// How long ESO gets to report the expected state (it retries failed syncs with backoff).
const SETTLE: Duration = Duration::from_secs(120);

#[allow(clippy::too_many_arguments)]
pub(super) async fn run(
    lab: &Lab,
    trial: &Trial,
    cv: &ClusterView<'_>,
    client_spec: &EsoClient,
    names: &Names<'_>,
    vars: &BTreeMap<String, String>,
    record: &mut TrialRecord,
    flavour: &str,
) -> Result<Vec<String>> {
    let case = &trial.case.case;
    let expect = case
        .expect_for(flavour, &trial.server.version)
        .eso
        .clone()
        .context("the case has an `eso` client but no `expect.eso` for this server")?;
    let ext = lab.external_cluster(trial.cluster).await?;
    let kc = ext.kind.as_ref().ok_or_else(|| {
        NotAvailable::err(
            "kind",
            "ESO cases run only on a Kind cluster (--cluster kind)",
        )
    })?;
    let helm =
        eso::install::helm_binary().map_err(|e| NotAvailable::err("helm", format!("{e:#}")))?;
    lab.eso_installed(helm, kc.kubeconfig.clone()).await?;
    let server = cv.server_from_pods.as_deref().context(
        "the server's address as the cluster's pods reach it is unknown (a server outside the cluster must be a container on the kind network)",
    )?;
    let (sa_ns, sa_name) = case
        .client
        .service_account
        .split_once('/')
        .context("client.service_account is not <namespace>/<name>")?;
    let role = case
        .server
        .login_role
        .clone()
        .or_else(|| case.server.role_name.clone());
    let role = role.unwrap_or_else(|| "app".into());
    let mut labels = serde_json::Map::new();
    labels.insert("app.kubernetes.io/managed-by".into(), json!("authlab"));
    labels.insert("authlab.run".into(), json!(lab.options().run_id));
    let name = format!("authlab-{}", names.mount);
    let key = verdict::substitute(client_spec.key.as_deref().unwrap_or("allowed/config"), vars);
    let property = client_spec.property.as_deref().unwrap_or("username");
    let spec = eso::render::StoreSpec {
        kind: client_spec.store,
        name: &name,
        server,
        kv_mount: names.kv,
        auth_mount: names.mount,
        role: &role,
        service_account: (sa_ns, sa_name),
        audiences: case.client.audiences.as_deref(),
        labels: &labels,
    };
    let started = Instant::now();
    let mut applied = Vec::new();
    let observed = async {
        for obj in [
            eso::render::store(&spec),
            eso::render::external_secret(&spec, &key, property),
        ] {
            apply_when_webhook_answers(&cv.client, &obj).await?;
            // Also listed with the trial's other objects, so they go even if this trial is
            // cut short (the target Secret is owned by the ExternalSecret and goes with it).
            record.objects.push(obj.clone());
            applied.push(obj);
        }
        let store_kind = eso::render::store_api_kind(client_spec.store);
        let deadline = Instant::now() + SETTLE;
        loop {
            let since = started.elapsed().as_secs() as i64 + 5;
            let seen = eso::observe::observe(&cv.client, sa_ns, &name, store_kind, property, since)
                .await?;
            let mismatches = eso::observe::judge(&expect, &seen, vars);
            if mismatches.is_empty() || Instant::now() >= deadline {
                return anyhow::Ok((seen, mismatches));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    .await;
    // Stop ESO's retries now, before the trial removes its mounts from the shared server: a
    // store left behind would keep logging in to a mount that is gone.
    for obj in applied.iter().rev() {
        let _ = objects::delete_applied(&cv.client, obj).await;
    }
    let (seen, mismatches) = observed?;
    record.eso = Some(format!(
        "ExternalSecret {sa_ns}/{name} after {} s: {seen}\n\ncontroller errors:\n{}\n",
        started.elapsed().as_secs(),
        seen.controller_errors.join("\n---\n")
    ));
    Ok(if mismatches.is_empty() {
        mismatches
    } else {
        let mut m = mismatches;
        m.push(format!(
            "eso: still not as expected after waiting {} s for ExternalSecret {sa_ns}/{name} ({seen})",
            SETTLE.as_secs()
        ));
        m
    })
}

/// Applies `obj`, retrying for up to a minute while ESO's admission webhook is not answering yet
/// (it needs its certificate right after install).
async fn apply_when_webhook_answers(client: &kube::Client, obj: &Value) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match objects::apply(client, obj).await {
            Ok(_) => return Ok(()),
            Err(e) if format!("{e:#}").contains("webhook") && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(e) => {
                return Err(e.context(
                    "ESO's webhook did not accept the object within 60 s (see `kubectl -n external-secrets get pods`)",
                ));
            }
        }
    }
}
