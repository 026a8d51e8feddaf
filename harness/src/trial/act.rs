//! Stage 3: the case's cluster changes before login, the login itself, and the follow-up
//! requests made with the token it returned.

use anyhow::{Context, Result};
use serde_json::{Value, json};

use super::{
    Run,
    outputs::{Acted, Env, Setup},
};
use crate::{
    case::model::ClusterAction,
    cluster::{objects, tokens},
    evidence::{AuthObserved, Observed},
};

pub(super) async fn act(run: &mut Run<'_>, env: &Env, setup: &Setup) -> Result<Acted> {
    change_cluster(run, env, setup).await?;
    let audit_offset = super::apply::file_len(&setup.server.audit_log_path());
    let mut acted = Acted {
        login: None,
        cluster_requests: Vec::new(),
        other_cluster_requests: None,
        steps: Vec::new(),
        auth: None,
        login_body: None,
        audit_offset,
    };
    let mut client_token = None;
    // A refused config or role write leaves nothing to log in to.
    if setup.config.status < 300 && setup.role.status < 300 {
        let sim = env.cluster.sim.as_ref();
        let before = sim.map(|s| s.request_log().len()).unwrap_or(0);
        let other_before = env.cluster.other.as_ref().map(|o| o.request_log().len());
        // On Kind the cluster's own workloads talk to the API server too: only the server's
        // address counts there.
        let on_kind = env.cluster.ext.as_ref().is_some_and(|e| e.kind.is_some());
        // A replaced server pod has a new address: ask the pod, not the setup.
        let server_ip = setup
            .server
            .cluster_pod()
            .and_then(|p| p.ip())
            .or_else(|| setup.server_ip.clone())
            .unwrap_or_else(|| "127.0.0.1".into());
        let audit = env.cluster.audit.as_ref().map(|a| {
            if on_kind {
                a.from_address(Some(server_ip.clone()))
            } else {
                a.clone()
            }
        });
        let audit_before = match &audit {
            Some(a) => Some(a.offset().await),
            None => None,
        };
        let anon = setup.root.with_token(None);
        let login = match &run.trial.case.case.login.path {
            // As the user wrote it, answered as the server answers it.
            Some(path) => {
                let path = crate::placeholders::substitute(path, &setup.vars);
                anon.post_as_is(
                    &path,
                    &json!({"role": env.names.login_role, "jwt": setup.client_jwt}),
                )
                .await?
            }
            None => {
                anon.login(
                    &env.names.login_mount,
                    &env.names.login_role,
                    &setup.client_jwt,
                )
                .await?
            }
        };
        acted.cluster_requests = match (sim, &audit, audit_before) {
            (Some(s), ..) => s.request_log().split_off(before),
            (None, Some(audit), Some(offset)) => audit
                .requests_since(&env.cluster.client, offset)
                .await
                .context("reading the API server's audit log")?,
            _ => Vec::new(),
        };
        acted.other_cluster_requests = env
            .cluster
            .other
            .as_ref()
            .zip(other_before)
            .map(|(o, before)| o.request_log().split_off(before));
        acted.login = Some(Observed::from(&login));
        client_token = login.body["auth"]["client_token"]
            .as_str()
            .map(str::to_string);
        if client_token.is_some() {
            acted.auth = Some(auth_of(&setup.root, &login.body["auth"], &setup.accessor).await?);
        }
        acted.login_body = Some(login.body);
    }
    run.timer.lap("login");
    acted.steps = steps(run, setup, client_token.as_deref(), &env.names.kv).await?;
    run.timer.lap("steps");
    Ok(acted)
}

/// The policies and metadata of a login's `auth`, and the name of its entity's alias on this
/// mount (read with the root token).
async fn auth_of(
    root: &crate::vault::VaultClient,
    auth: &Value,
    accessor: &str,
) -> Result<AuthObserved> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let metadata = auth["metadata"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string()),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let mut alias_name = None;
    if let Some(id) = auth["entity_id"].as_str().filter(|i| !i.is_empty()) {
        let e = root.read(&format!("identity/entity/id/{id}")).await?;
        alias_name = e.body["data"]["aliases"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["mount_accessor"] == accessor)
            .and_then(|a| a["name"].as_str().map(str::to_string));
    }
    Ok(AuthObserved {
        policies: strings(&auth["policies"]),
        metadata,
        alias_name,
    })
}

/// `before_login`: deletions, re-creations and further objects.
async fn change_cluster(run: &mut Run<'_>, env: &Env, setup: &Setup) -> Result<()> {
    let kube = &env.cluster.client;
    let owner = run.lab.clusters().owner();
    let allow_foreign = run.lab.settings().delete_foreign;
    // Something the client token's validity may rest on is gone (or made anew).
    let mut gone = false;
    for action in &run.trial.case.case.before_login {
        match action {
            ClusterAction::Delete(what) => {
                gone |= objects::delete(kube, &owner, what, allow_foreign).await?;
            }
            ClusterAction::RecreateServiceAccount(sa) => {
                objects::recreate_service_account(kube, &owner, &sa.namespace, &sa.name).await?;
                gone = true;
            }
            ClusterAction::Apply(obj) => {
                for o in run.trial.case.objects_of(obj) {
                    objects::apply(kube, &owner, &o).await?;
                    // Deleted at teardown with the case's other objects.
                    run.made.applied.push(o);
                }
            }
            ClusterAction::Wait(d) => {
                // Bounded at load (MAX_WAIT).
                let t = humantime::parse_duration(d)?;
                tokio::time::sleep(t.min(crate::case::model::MAX_WAIT)).await;
            }
            ClusterAction::ReplaceServerPod {} => {
                super::pod::renew_token(run, env, setup, true).await?;
            }
            ClusterAction::RotateServerToken {} => {
                super::pod::renew_token(run, env, setup, false).await?;
            }
        }
    }
    // A real API server sees a deletion in its authenticator a moment later (the sim at once):
    // the login is made once it does, as a user's would be some time after the change.
    if gone && env.cluster.sim.is_none() {
        let mut audiences = run
            .trial
            .case
            .case
            .cluster
            .settings
            .api_audiences
            .clone()
            .unwrap_or_default();
        audiences.push(env.cluster.issuer.clone());
        let rejected =
            tokens::until_rejected(kube, &setup.client_jwt, &audiences, GONE_WAIT).await?;
        if !rejected {
            tracing::debug!(
                "{}: the client token is still authenticated {} s after the change",
                run.trial.name,
                GONE_WAIT.as_secs()
            );
        }
    }
    Ok(())
}

/// Bound on waiting for a real API server to stop authenticating the client token once an
/// object it rests on is gone.
const GONE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The follow-up KV requests, made with the client token (each recorded as no answer when the
/// login gave none).
async fn steps(
    run: &Run<'_>,
    setup: &Setup,
    token: Option<&str>,
    kv: &str,
) -> Result<Vec<Observed>> {
    let mut out = Vec::new();
    for step in &run.trial.case.case.steps {
        let Some(token) = token else {
            out.push(Observed::default());
            continue;
        };
        let c = setup.root.with_token(Some(token.to_string()));
        let r = if let Some(p) = &step.kv_read {
            c.read(&format!("{kv}/data/{p}")).await?
        } else if let Some(p) = &step.kv_write {
            let body: Value = json!({"data": {"written_by": "authlab-client"}});
            c.write(&format!("{kv}/data/{p}"), &body).await?
        } else {
            continue;
        };
        out.push(Observed::from(&r));
    }
    Ok(out)
}
