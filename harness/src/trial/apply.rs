//! Stage 2: the case's objects, its tokens, the server pod (inside topology on the sim), and
//! the trial's auth mount, config, role, policy and KV mount on the server.

use std::{sync::Arc, time::Duration};

use anyhow::{Context, Result};
use serde_json::{Value, json};

use super::{
    Run,
    outputs::{Env, Mounts, Setup},
};
use crate::{
    case::effective,
    cluster::{objects, tokens},
    evidence::{Observed, wait_for},
    placeholders::{Vars, substitute, substitute_value},
    vault::VaultClient,
};

pub(super) async fn apply(run: &mut Run<'_>, env: &Env) -> Result<Setup> {
    let kube = &env.cluster.client;
    let owner = run.lab.clusters().owner();
    let all: Vec<Value> = run
        .trial
        .case
        .case
        .cluster
        .objects
        .iter()
        .flat_map(|obj| run.trial.case.objects_of(obj))
        .collect();
    // In three rounds, each at once: namespaces, then service accounts (a pod needs its
    // account to exist), then the rest. What a round tried is teardown's to remove.
    for round in [Some("Namespace"), Some("ServiceAccount"), None] {
        let these: Vec<&Value> = all
            .iter()
            .filter(|o| match round {
                Some(kind) => o["kind"] == kind,
                None => o["kind"] != "Namespace" && o["kind"] != "ServiceAccount",
            })
            .collect();
        let applied =
            futures_util::future::join_all(these.iter().map(|o| objects::apply(kube, &owner, o)))
                .await;
        run.made.applied.extend(these.into_iter().cloned());
        for r in applied {
            r?;
        }
    }
    if let (Some(other), Some(spec)) = (&env.cluster.other, &run.trial.case.case.cluster.other) {
        let client = other.kube_client()?;
        for obj in &spec.objects {
            for o in run.trial.case.objects_of(obj) {
                objects::apply(&client, &owner, &o)
                    .await
                    .context("applying an object to the second cluster")?;
                run.made.applied.push(o);
            }
        }
    }
    run.timer.lap("objects");
    let mut vars = env.vars.clone();
    let (client_jwt, reviewer_jwt) = obtain_tokens(run, env, &mut vars).await?;
    run.timer.lap("tokens");
    let server = match &env.server {
        Some(s) => s.clone(),
        None => {
            let s = match &env.cluster.ext {
                // A real pod of a Kind or kubeconfig cluster.
                Some(ext) if ext.owned.is_none() || ext.kind.is_some() => {
                    let name = env
                        .cluster
                        .pod_server
                        .as_deref()
                        .context("a pod server on a shared cluster has a name")?;
                    let (handle, objects) = super::pod::cluster_pod_server(run, ext, name).await?;
                    run.made.pod_objects = objects;
                    Arc::new(handle)
                }
                // Emulated: the sim, an API server authlab started.
                _ => {
                    run.made.pod_objects = vec![super::pod::server_pod(run.trial)];
                    let reused = run.made.reused_pod.take();
                    Arc::new(
                        super::pod::pod_server(run.lab, run.trial, &env.cluster, reused).await?,
                    )
                }
            };
            run.made.pod_server = Some(s.clone());
            if run.trial.case.uses("pod.jwt") {
                let t = super::pod::pod_token_file(&s).await?;
                vars.insert("pod.jwt".into(), t);
            }
            run.timer.lap("pod");
            s
        }
    };
    // The server's own address as the cluster sees its requests.
    let network = match &env.cluster.ext {
        Some(ext) if ext.kind.is_some() => run.lab.settings().kind_network(),
        _ => run.lab.docker().network_name(),
    };
    let server_ip = server.source_ip(&network, &env.cluster.host);
    vars.insert(
        "server.ip".into(),
        server_ip.clone().unwrap_or_else(|| "127.0.0.1".into()),
    );
    let log_offset = file_len(&server.server_log_path());
    let root = server.client();
    let written = configure(run, env, &root, &mut vars).await?;
    run.timer.lap("configure");
    Ok(Setup {
        server,
        root,
        client_jwt,
        reviewer_jwt,
        accessor: written.accessor,
        config: written.config,
        role: written.role,
        config_written: written.config_written,
        role_written: written.role_written,
        policy: written.policy,
        log_offset,
        vars,
        server_ip,
    })
}

/// The client token, and the reviewer token (also into `${reviewer.jwt}`).
async fn obtain_tokens(
    run: &mut Run<'_>,
    env: &Env,
    vars: &mut Vars,
) -> Result<(String, Option<String>)> {
    let case = &run.trial.case.case;
    let owner = run.lab.clusters().owner();
    let foreign =
        if case.client.foreign_key || case.reviewer.as_ref().is_some_and(|r| r.foreign_key) {
            Some(tokens::Signer::of_sim(
                run.lab.keys().foreign_cluster().await?,
            ))
        } else {
            None
        };
    let signers = tokens::Signers {
        cluster: env.cluster.signer.clone(),
        foreign: foreign.clone(),
    };
    let other_signers = tokens::Signers {
        cluster: env.cluster.other.as_ref().map(tokens::Signer::of_sim),
        foreign,
    };
    let other_client = match &env.cluster.other {
        Some(o) => Some(o.kube_client()?),
        None => None,
    };
    let issuer = |t: &crate::case::model::TokenSpec| match (t.cluster, &other_client) {
        (crate::case::model::TokenCluster::Other, Some(c)) => (c, &other_signers),
        _ => (&env.cluster.client, &signers),
    };
    let mut reviewer_jwt = None;
    if let Some(r) = &case.reviewer {
        let (kube, signers) = issuer(r);
        let jwt = tokens::obtain(kube, &owner, r, signers)
            .await
            .context("obtaining the reviewer token")?;
        vars.insert("reviewer.jwt".into(), jwt.clone());
        reviewer_jwt = Some(jwt);
    }
    let (kube, signers) = issuer(&case.client);
    let client_jwt = tokens::obtain(kube, &owner, &case.client, signers)
        .await
        .context("obtaining the client token")?;
    Ok((client_jwt, reviewer_jwt))
}

/// What `configure` wrote on the server, and how the server answered.
struct Written {
    /// The accessor of the mount the client logs in at.
    accessor: String,
    /// The answer to that mount's config write.
    config: Observed,
    /// The answer to its role write.
    role: Observed,
    /// The config written (holds secrets).
    config_written: Value,
    /// The role written.
    role_written: Value,
    /// The policy's HCL.
    policy: String,
}

/// The auth mount (tuned), its config and role, the policy and, for a trial whose steps read
/// or write secrets, a seeded KV v2 mount.
async fn configure(
    run: &mut Run<'_>,
    env: &Env,
    root: &VaultClient,
    vars: &mut Vars,
) -> Result<Written> {
    let case = &run.trial.case.case;
    let n = &env.names;
    // A KV mount costs the server a mount and its storage upgrade: made only where steps,
    // ESO or the case's own text (`${kv}`) use it.
    let needs_kv = case
        .steps
        .iter()
        .any(|s| s.kv_read.is_some() || s.kv_write.is_some())
        || case.eso.is_some()
        || run.trial.case.uses("kv");
    run.made.mounts = Some(Mounts {
        root: root.clone(),
        auth: n.mount.clone(),
        extra: n.extra.iter().map(|(_, p)| p.clone()).collect(),
        kv: needs_kv.then(|| n.kv.clone()),
        policy: n.policy.clone(),
    });
    root.enable_auth(&n.mount, n.kind).await?;
    let accessor = root.auth_accessor(&n.mount).await?;
    vars.insert("accessor".into(), accessor.clone());
    if !case.server.tune.is_empty() {
        root.tune_auth(&n.mount, &Value::Object(case.server.tune.clone()))
            .await?;
    }
    if needs_kv {
        root.enable_kv2(&n.kv).await?;
    }
    let policy = substitute(&effective::policy(case), vars);
    root.put_policy(&n.policy, &policy).await?;
    if needs_kv {
        for path in ["allowed/config", "denied/config"] {
            seed(root, &n.kv, path).await?;
        }
    }
    let mut config_written = substitute_value(&Value::Object(effective::config(case)), vars);
    let config_resp = root
        .write(&format!("auth/{}/config", n.mount), &config_written)
        .await?;
    let mut role_written = substitute_value(&Value::Object(effective::role(case, &n.policy)), vars);
    let role_resp = root
        .write(&format!("auth/{}/role/{}", n.mount, n.role), &role_written)
        .await?;
    let mut role = Observed::from(&role_resp);
    let mut config = Observed::from(&config_resp);
    let mut login_accessor = accessor;
    for (name, path) in &n.extra {
        let extra = &case.server.mounts[name];
        root.enable_auth(path, n.kind).await?;
        let acc = root.auth_accessor(path).await?;
        vars.insert(format!("accessor.{name}"), acc.clone());
        let mut c = effective::default_config(case);
        effective::merge(&mut c, &extra.config);
        let c = substitute_value(&Value::Object(c), vars);
        let mut r = effective::default_role(case, &n.policy);
        effective::merge(&mut r, &extra.role);
        let r = substitute_value(&Value::Object(r), vars);
        let cr = root.write(&format!("auth/{path}/config"), &c).await?;
        let rr = root
            .write(&format!("auth/{path}/role/{}", n.role), &r)
            .await?;
        if *path == n.login_mount {
            // The mount the client logs in at is the one judged.
            config_written = c;
            role_written = r;
            config = Observed::from(&cr);
            role = Observed::from(&rr);
            login_accessor = acc;
        } else {
            anyhow::ensure!(
                cr.is_success() && rr.is_success(),
                "configuring the further mount {name}: {} {:?} / {} {:?}",
                cr.status,
                cr.errors(),
                rr.status,
                rr.errors()
            );
        }
    }
    Ok(Written {
        accessor: login_accessor,
        config,
        role,
        config_written,
        role_written,
        policy,
    })
}

/// Reads the login mount's config and role back as a user holds them (`vault read
/// -format=json`), for the artifacts of a trial that did not pass; nothing when a write failed.
pub(super) async fn read_back(env: &Env, setup: &Setup) -> (Value, Value) {
    if setup.config.status >= 300 || setup.role.status >= 300 {
        return Default::default();
    }
    let n = &env.names;
    let (config_path, role_path) = (
        format!("auth/{}/config", n.login_mount),
        format!("auth/{}/role/{}", n.login_mount, n.role),
    );
    let (c, r) = tokio::join!(setup.root.read(&config_path), setup.root.read(&role_path));
    (
        c.map(|c| c.body).unwrap_or_default(),
        r.map(|r| r.body).unwrap_or_default(),
    )
}

/// Writes one secret into a fresh KV v2 mount, which upgrades its storage first and refuses
/// writes meanwhile (up to 15 s).
async fn seed(root: &VaultClient, kv: &str, path: &str) -> Result<()> {
    let body = json!({"data": {"username": "app", "written_by": "authlab"}});
    let upgrading = |r: &crate::vault::ApiResponse| {
        r.errors()
            .iter()
            .any(|e| e.contains("Upgrading from non-versioned"))
    };
    let r = wait_for(
        Duration::from_secs(15),
        Duration::from_millis(20),
        || {
            let path = format!("{kv}/data/{path}");
            let body = &body;
            async move { root.write(&path, body).await }
        },
        |r| !upgrading(r),
    )
    .await?;
    anyhow::ensure!(
        r.is_success(),
        "seeding {kv}/{path} failed: {} {:?} (waited up to 15 s for the KV v2 mount to finish upgrading)",
        r.status,
        r.errors()
    );
    Ok(())
}

pub(super) fn file_len(p: &std::path::Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}
