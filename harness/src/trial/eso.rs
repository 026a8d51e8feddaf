//! External Secrets Operator as a second client on a Kind cluster: after the harness's own
//! login, ESO is given a store that logs in with the same service account and audiences and an
//! ExternalSecret reading one secret; what it reports (its `Ready` condition, the synced value,
//! the controller's reconcile errors) is evidence for `expect.eso`.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::{Value, json};

use super::{
    NotAvailable, Run,
    outputs::{Env, Setup},
};
use crate::{
    case::{matrix::ClusterKind, model::EsoClient},
    cluster::objects,
    eso,
    evidence::{EsoEvidence, wait_for},
    placeholders::substitute,
};

/// How long ESO gets to report the expected state (it retries failed syncs with backoff).
const SETTLE: Duration = Duration::from_secs(120);

/// ESO's evidence when it is not run for this trial: the case has no ESO client, or the
/// trial is not on Kind.
pub(super) fn not_run(trial: &crate::case::matrix::Trial) -> Option<EsoEvidence> {
    match &trial.case.case.eso {
        None => Some(EsoEvidence::NoClient),
        Some(_) if trial.cluster != ClusterKind::Kind => Some(EsoEvidence::NotRun(format!(
            "ESO is checked on Kind clusters only (this trial ran on {:?})",
            trial.cluster
        ))),
        Some(_) => None,
    }
}

/// Fails with [`NotAvailable`] when this trial would run ESO and helm is missing: checked
/// before anything starts, so the trial is ignored at once rather than after its server pod
/// and objects were set up for nothing.
pub(super) fn require_helm(run: &Run<'_>) -> Result<()> {
    if not_run(run.trial).is_none() {
        eso::install::helm_binary(run.lab.settings())
            .map_err(|e| NotAvailable::err("helm", format!("{e:#}")))?;
    }
    Ok(())
}

/// ESO's evidence for this trial: run on Kind, recorded as not run elsewhere.
pub(super) async fn observe(run: &mut Run<'_>, env: &Env, setup: &Setup) -> Result<EsoEvidence> {
    if let Some(ev) = not_run(run.trial) {
        return Ok(ev);
    }
    let client = run
        .trial
        .case
        .case
        .eso
        .as_ref()
        .context("the case has no `eso` client")?;
    observe_on_kind(run, env, setup, client).await
}

async fn observe_on_kind(
    run: &mut Run<'_>,
    env: &Env,
    setup: &Setup,
    client_spec: &EsoClient,
) -> Result<EsoEvidence> {
    let case = &run.trial.case.case;
    let expect = env
        .expect
        .eso
        .clone()
        .context("the case has an `eso` client but no `expect.eso` for this server")?;
    let ext = env
        .cluster
        .ext
        .as_ref()
        .context("ESO needs the Kind cluster")?;
    let kc = ext.kind.as_ref().ok_or_else(|| {
        NotAvailable::err(
            "kind",
            "ESO cases run only on a Kind cluster (--cluster kind)",
        )
    })?;
    let helm = eso::install::helm_binary(run.lab.settings())
        .map_err(|e| NotAvailable::err("helm", format!("{e:#}")))?;
    run.lab
        .clusters()
        .eso_installed(helm, kc.kubeconfig.clone())
        .await?;
    let server = env.cluster.server_from_pods.as_deref().context(
        "the server's address as the cluster's pods reach it is unknown (a server outside the cluster must be a container on the kind network)",
    )?;
    let sa = &case.client.service_account;
    let (sa_ns, sa_name) = (sa.namespace.as_str(), sa.name.as_str());
    let es_ns = client_spec.namespace.as_deref().unwrap_or(sa_ns);
    let mut labels = serde_json::Map::new();
    labels.insert("app.kubernetes.io/managed-by".into(), json!("authlab"));
    labels.insert("authlab.run".into(), json!(run.lab.options().run_id));
    let name = format!("authlab-{}", env.names.mount);
    let key = substitute(
        client_spec.key.as_deref().unwrap_or("allowed/config"),
        &setup.vars,
    );
    let property = client_spec.property.as_deref().unwrap_or("username");
    let spec = eso::render::StoreSpec {
        kind: client_spec.store,
        name: &name,
        server,
        kv_mount: &env.names.kv,
        auth_mount: &env.names.mount,
        role: &env.names.login_role,
        service_account: (sa_ns, sa_name),
        namespace: es_ns,
        audiences: case.client.audiences.as_deref(),
        labels: &labels,
    };
    let kube = &env.cluster.client;
    let started = Instant::now();
    let objects = [
        eso::render::store(&spec),
        eso::render::external_secret(&spec, &key, property),
    ];
    let mut applied = Vec::new();
    let observed = async {
        for obj in &objects {
            apply_when_webhook_answers(kube, &run.lab.clusters().owner(), obj).await?;
            // Also listed with the trial's other objects, so they go even if this trial is
            // cut short (the target Secret is owned by the ExternalSecret and goes with it).
            run.made.applied.push(obj.clone());
            applied.push(obj);
        }
        let store_kind = eso::render::store_api_kind(client_spec.store);
        wait_for(
            SETTLE,
            Duration::from_secs(1),
            || {
                let since = started.elapsed().as_secs() as i64 + 5;
                eso::observe::observe(kube, es_ns, &name, store_kind, property, since)
            },
            |seen| crate::verdict::check_eso(&expect, seen, &setup.vars).is_empty(),
        )
        .await
    }
    .await;
    // Stop ESO's retries now, before the trial removes its mounts from the shared server: a
    // store left behind would keep logging in to a mount that is gone.
    for obj in applied.iter().rev() {
        let _ = objects::delete_applied(kube, &run.lab.clusters().owner(), obj).await;
    }
    Ok(EsoEvidence::Seen {
        external_secret: format!("{es_ns}/{name}"),
        after_secs: started.elapsed().as_secs(),
        settle_secs: SETTLE.as_secs(),
        observed: observed?,
    })
}

/// Applies `obj`, retrying for up to a minute while ESO's admission webhook is not answering yet
/// (it needs its certificate right after install).
async fn apply_when_webhook_answers(
    client: &kube::Client,
    owner: &objects::Owner,
    obj: &Value,
) -> Result<()> {
    let res = wait_for(
        Duration::from_secs(60),
        Duration::from_secs(2),
        || async { Ok(objects::apply(client, owner, obj).await.map(|_| ())) },
        |r: &Result<()>| match r {
            Ok(()) => true,
            Err(e) => !format!("{e:#}").contains("webhook"),
        },
    )
    .await?;
    res.map_err(|e| {
        e.context(
            "ESO's webhook did not accept the object within 60 s (see `kubectl -n external-secrets get pods`)",
        )
    })
}
