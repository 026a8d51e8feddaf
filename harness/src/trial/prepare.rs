//! Stage 1: the trial's cluster (a sim of its own, or the shared Kind, kubeconfig or
//! apiserver cluster, one trial at a time), its server, the names of its mounts, and the
//! placeholder values known before anything is applied (fault endpoints included).

use std::sync::Arc;

use anyhow::{Context, Result};

use super::{
    NotAvailable, Run,
    outputs::{ClusterView, Env, Faults, Names},
};
use crate::{
    case::{
        matrix::ClusterKind,
        model::{AuthMethod, Topology},
    },
    lab::{Runtime, servers::ServerHandle},
    placeholders::{Vars, substitute},
    sim::{ClosedPort, HangListener, ResetListener, SimCluster, SimConfig},
};

/// The trial's cluster, and the shared server it logs in to (None: its own pod server, started
/// once its objects exist).
pub(super) async fn cluster(run: &mut Run<'_>) -> Result<(ClusterView, Option<Arc<ServerHandle>>)> {
    super::eso::require_helm(run)?;
    match run.trial.cluster {
        ClusterKind::Sim => sim_cluster(run).await,
        ClusterKind::Apiserver => apiserver_cluster(run).await,
        _ => shared_cluster(run).await,
    }
}

/// What the later stages need on that cluster: its assumptions checked, placeholder values, fault
/// endpoints, names on the server and the expectations for this server and cluster.
pub(super) async fn prepare(
    run: &mut Run<'_>,
    cluster: ClusterView,
    server: Option<Arc<ServerHandle>>,
) -> Result<Env> {
    assumptions_hold(run, &cluster).await?;
    let mut vars = cluster_vars(run, &cluster)?;
    if run.trial.case.uses("cluster.dialed") {
        vars.insert("cluster.dialed".into(), dialed(&cluster).await?);
    }
    vars.insert("cluster.cert_ips".into(), cert_ips(&cluster).join(", "));
    run.made.faults = faults(run, &cluster, &mut vars).await?;
    let names = names(run);
    vars.insert("mount".into(), names.mount.clone());
    vars.insert("kv".into(), names.kv.clone());
    vars.insert("policy".into(), names.policy.clone());
    for (n, p) in &names.extra {
        vars.insert(format!("mount.{n}"), p.clone());
    }
    let spec = &run.trial.server;
    let expect = run
        .trial
        .case
        .case
        .expect_on(
            &spec.flavour.to_string(),
            &spec.version,
            cluster.kubernetes.as_deref(),
        )
        .clone();
    Ok(Env {
        cluster,
        server,
        names,
        vars,
        expect,
    })
}

/// A sim cluster of the trial's own: its own objects, settings and request log. Inside the
/// cluster (and with the container runtime) the server is a container on the lab's network, so
/// the sim listens on that network's gateway.
async fn sim_cluster(run: &mut Run<'_>) -> Result<(ClusterView, Option<Arc<ServerHandle>>)> {
    let lab = run.lab;
    let case = &run.trial.case.case;
    let inside = case.topology == Topology::Inside;
    let host = listen_host(run).await?;
    let server = if inside {
        None
    } else {
        Some(lab.servers().get(&run.trial.server).await?)
    };
    run.timer.lap("server");
    // Bound now and handed to the sim, so the port in the URL (which the issuer may name) is
    // not taken by anything else before the sim serves on it. Inside, a pod server an earlier
    // trial gave back is taken, and the sim listens where its `KUBERNETES_SERVICE_*` point.
    let listener = if inside {
        reuse_pod(run, &host).await
    } else {
        None
    };
    let listener = match listener {
        Some(l) => l,
        None => std::net::TcpListener::bind((host.as_str(), 0))
            .with_context(|| format!("binding a port for the trial's sim cluster on {host}"))?,
    };
    let port = listener.local_addr()?.port();
    let url_vars = url_vars(&format!("https://{host}:{port}"));
    let settings = &case.cluster.settings;
    let cfg = SimConfig {
        issuer: settings
            .issuer
            .as_ref()
            .map(|i| substitute(i, &url_vars))
            .unwrap_or(SimConfig::default().issuer),
        api_audiences: settings.api_audiences.clone(),
        anonymous_auth: settings.anonymous_auth.unwrap_or(true),
        max_token_expiration: settings.max_token_expiration,
        port,
        bind: host.parse().context("the sim's listen address")?,
        extra_sans: vec![host.clone()],
        signing_key_pkcs8_pem: Some(lab.keys().sa_key().await?),
        tls_keys: Some(lab.keys().tls_keys().await?),
    };
    let sim = SimCluster::start_on(cfg, listener)
        .await
        .context("starting the trial's sim cluster")?;
    run.made.sim = Some(sim.clone());
    let other = other_cluster(run, &host).await?;
    let view = ClusterView {
        kubernetes: Some(crate::sim::KUBERNETES_VERSION.to_string()),
        client: sim.kube_client()?,
        url: sim.url(),
        ca_pem: sim.ca_pem(),
        issuer: sim.issuer(),
        pubkey: Some(sim.public_key_pem()),
        server_from_pods: None,
        pod_server: None,
        ext: None,
        signer: Some(crate::cluster::tokens::Signer::of_sim(&sim)),
        audit: None,
        host,
        sim: Some(sim),
        other,
    };
    Ok((view, server))
}

/// Fails with [`super::NotHere`] when the cluster lacks what the case assumes of it.
async fn assumptions_hold(run: &Run<'_>, cluster: &ClusterView) -> Result<()> {
    let reach = crate::cluster::facts::Reach {
        url: cluster.ext.as_ref().map_or(&cluster.url, |e| &e.url),
        ca_pem: &cluster.ca_pem,
    };
    for a in &run.trial.case.case.applies.assumes {
        if let Some(why) = crate::cluster::facts::unmet(*a, &reach)
            .await
            .with_context(|| format!("checking what the case assumes of the cluster ({a:?})"))?
        {
            return Err(super::NotHere(why).into());
        }
    }
    Ok(())
}

/// Whether the case has a second cluster.
fn wants_other(run: &Run<'_>) -> bool {
    let lc = &run.trial.case;
    lc.case.cluster.other.is_some()
        || [
            "other.url",
            "other.hostport",
            "other.issuer",
            "other.jwks_url",
        ]
        .iter()
        .any(|p| lc.uses(p))
}

/// The trial's second cluster, when the case has one: a sim on `host` with the foreign key.
async fn other_cluster(run: &mut Run<'_>, host: &str) -> Result<Option<SimCluster>> {
    if !wants_other(run) {
        return Ok(None);
    }
    let lab = run.lab;
    let listener = std::net::TcpListener::bind((host, 0))
        .with_context(|| format!("binding a port for the trial's second cluster on {host}"))?;
    let cfg = SimConfig {
        port: listener.local_addr()?.port(),
        bind: host.parse().context("the sim's listen address")?,
        extra_sans: vec![host.to_string()],
        signing_key_pkcs8_pem: Some(lab.keys().foreign_key().await?),
        tls_keys: Some(lab.keys().foreign_tls_keys().await?),
        ..SimConfig::default()
    };
    let o = SimCluster::start_on(cfg, listener)
        .await
        .context("starting the trial's second cluster")?;
    run.made.other_sim = Some(o.clone());
    Ok(Some(o))
}

/// Where a trial's own cluster listens: loopback for a server that is a local process, else
/// (inside, or the container runtime) the Docker network's gateway.
async fn listen_host(run: &Run<'_>) -> Result<String> {
    if outside_as_process(run) {
        return Ok("127.0.0.1".to_string());
    }
    run.lab
        .docker()
        .connected()
        .await
        .map(|d| d.gateway)
        .map_err(|e| {
            NotAvailable::err(
                "docker",
                format!("the inside topology needs Docker for pod emulation: {e:#}"),
            )
        })
}

/// Where the run's API servers listen: [`crate::lab::Lab::apiserver_gateway`], else as
/// [`listen_host`].
async fn apiserver_host(run: &Run<'_>) -> Result<String> {
    match run.lab.apiserver_gateway().await {
        Some(gateway) => Ok(gateway),
        None => listen_host(run).await,
    }
}

/// Takes an idle pod server of the trial's server version whose service address is `host` (and
/// `port`, when given) for the trial's own pod server.
async fn take_pod(run: &mut Run<'_>, host: &str, port: Option<u16>) -> Option<u16> {
    let pod = run
        .lab
        .docker()
        .take_pod(&run.trial.server, host, port)
        .await?;
    let port = pod.container_server()?.pod_service()?.1;
    run.made.reused_pod = Some(pod);
    Some(port)
}

/// [`take_pod`], and the sim's listener on the pod's service port. A pod whose port something
/// else took meanwhile is removed.
async fn reuse_pod(run: &mut Run<'_>, host: &str) -> Option<std::net::TcpListener> {
    let port = take_pod(run, host, None).await?;
    match std::net::TcpListener::bind((host, port)) {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::debug!("{}: port {port} of an idle pod server: {e}", run.trial.name);
            if let Some(mut pod) = run.made.reused_pod.take() {
                pod.stop().await;
            }
            None
        }
    }
}

/// The run's API server for the case's settings (`--cluster apiserver`): shared by the trials
/// of the run with the same settings, which take turns and delete what they applied. Inside,
/// the trial's server is a pod of it, emulated (started once its objects exist).
async fn apiserver_cluster(run: &mut Run<'_>) -> Result<(ClusterView, Option<Arc<ServerHandle>>)> {
    let (lab, trial) = (run.lab, run.trial);
    let case = &trial.case.case;
    let host = apiserver_host(run).await?;
    // The trial's own API server of the pool, held until teardown: its turn.
    let member = match lab
        .clusters()
        .apiserver_turn(&case.cluster.settings, &host)
        .await
    {
        Ok(m) => m,
        Err(e) if e.is::<crate::cluster::apiserver::binaries::NotFound>() => {
            return Err(NotAvailable::err("apiserver", format!("{e:#}")));
        }
        Err(e) => return Err(e),
    };
    run.timer.lap("queue");
    let ext = lab
        .clusters()
        .apiserver(&member, &case.cluster.settings, &host)
        .await
        .context("starting the apiserver cluster")?;
    run.made.apiserver = Some(member);
    let server = if case.topology == Topology::Inside {
        if let Some(port) = super::outputs::url_port(&ext.url) {
            take_pod(run, &host, Some(port)).await;
        }
        None
    } else {
        Some(lab.servers().get(&trial.server).await?)
    };
    run.timer.lap("server");
    run.made.shared = Some(ext.client.clone());
    let other = other_cluster(run, &host).await?;
    let signer = ext.owned.as_ref().map(|o| crate::cluster::tokens::Signer {
        key_pem: o.signing_key_pem.clone(),
        issuer: ext.issuer.clone(),
    });
    let audit = ext.owned.as_ref().and_then(|o| o.audit.clone());
    let view = ClusterView {
        kubernetes: ext.version.clone(),
        sim: None,
        other,
        signer,
        audit,
        host,
        client: ext.client.clone(),
        url: ext.url.clone(),
        ca_pem: ext.ca_pem.clone(),
        issuer: ext.issuer.clone(),
        pubkey: ext.pubkey.clone(),
        server_from_pods: None,
        pod_server: None,
        ext: Some(ext),
    };
    Ok((view, server))
}

/// The lab's Kind cluster for the case's settings, or its kubeconfig cluster, shared by the
/// trials of the run: trials take turns and delete what they applied. Inside, the trial's
/// server is a real pod of that cluster (started once its objects exist).
async fn shared_cluster(run: &mut Run<'_>) -> Result<(ClusterView, Option<Arc<ServerHandle>>)> {
    let (lab, trial) = (run.lab, run.trial);
    let case = &trial.case.case;
    let ext = lab
        .clusters()
        .external(trial.cluster, &case.cluster.settings)
        .await
        .map_err(|e| {
            let what = trial.cluster.as_str();
            NotAvailable::err(what, format!("the {what} cluster is not available: {e:#}"))
        })?;
    let inside = case.topology == Topology::Inside;
    let kind = ext.kind.as_ref();
    let name = kind.map_or("kubeconfig", |k| k.name.as_str());
    // The trial's turn: beside trials whose objects do not collide with its own.
    let world = crate::cluster::share::World::of(trial);
    run.made.world = Some(lab.clusters().enter(name, &trial.name, world).await);
    run.timer.lap("queue");
    // Inside: the trial's own server pod. Outside a Kind cluster: a container on the `kind`
    // network the trial holds alone (its requests to the cluster are told apart by their
    // source address), so the cluster's pods can reach it too. Outside any other cluster: the
    // lab's shared server.
    let server = if inside {
        None
    } else if kind.is_some() {
        let (held, server) = lab.servers().on_kind_network(&trial.server).await?;
        run.made.kind_server = Some(held);
        Some(server)
    } else {
        Some(lab.servers().get(&trial.server).await?)
    };
    run.timer.lap("server");
    run.made.shared = Some(ext.client.clone());
    // The trial's own server pod's name: trials in the same namespace may run at once.
    let pod_server = inside.then(|| {
        format!(
            "{}-{}{}",
            trial.server.flavour,
            lab.options().run_id,
            lab.next_id()
        )
    });
    // The API server as the server reaches it, and the server as pods reach it.
    let (url, server_from_pods) = if let Some(pod) = &pod_server {
        let ns = case.pod_account().namespace;
        (
            "https://kubernetes.default.svc".to_string(),
            Some(format!("http://{pod}.{ns}.svc:8200")),
        )
    } else if let Some(kc) = kind {
        let network = lab.settings().kind_network();
        let ip = server
            .as_ref()
            .and_then(|s| s.container_server())
            .and_then(|c| c.container_ip(&network));
        (
            crate::cluster::kind::internal_server(&kc.name),
            ip.map(|ip| format!("http://{ip}:8200")),
        )
    } else {
        (ext.url.clone(), None)
    };
    // Where fault endpoints and second clusters listen: the host's address on the Kind network
    // (servers there and the cluster's pods reach it), else loopback (a local server process).
    let host = ext
        .owned
        .as_ref()
        .map(|o| o.host.clone())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "127.0.0.1".into());
    if inside && kind.is_none() && wants_other(run) {
        return Err(NotAvailable::err(
            "cluster",
            "a second cluster is a sim on this machine, which a pod of a kubeconfig cluster cannot reach",
        ));
    }
    let other = other_cluster(run, &host).await?;
    let signer = ext.owned.as_ref().map(|o| crate::cluster::tokens::Signer {
        key_pem: o.signing_key_pem.clone(),
        issuer: ext.issuer.clone(),
    });
    let audit = ext.owned.as_ref().and_then(|o| o.audit.clone());
    let view = ClusterView {
        kubernetes: ext.version.clone(),
        sim: None,
        other,
        signer,
        audit,
        host,
        client: ext.client.clone(),
        url,
        ca_pem: ext.ca_pem.clone(),
        issuer: ext.issuer.clone(),
        pubkey: ext.pubkey.clone(),
        server_from_pods,
        pod_server,
        ext: Some(ext),
    };
    Ok((view, server))
}

fn url_vars(url: &str) -> Vars {
    let mut vars = Vars::new();
    vars.insert("cluster.url".into(), url.to_string());
    vars.insert(
        "cluster.hostport".into(),
        url.trim_start_matches("https://").to_string(),
    );
    if let Some((_, port)) = url.rsplit_once(':') {
        vars.insert(
            "cluster.port".into(),
            port.trim_end_matches('/').to_string(),
        );
    }
    vars
}

fn cluster_vars(run: &Run<'_>, cv: &ClusterView) -> Result<Vars> {
    let mut vars = url_vars(&cv.url);
    vars.insert("cluster.ca".into(), cv.ca_pem.clone());
    vars.insert("cluster.issuer".into(), cv.issuer.clone());
    vars.insert(
        "cluster.jwks_url".into(),
        format!("{}/openid/v1/jwks", cv.url),
    );
    match &cv.pubkey {
        Some(k) => {
            vars.insert("cluster.pubkey".into(), k.clone());
        }
        None if run.trial.case.uses("cluster.pubkey") => {
            return Err(NotAvailable::err(
                "cluster",
                "the cluster's service-account public key could not be read from its JWKS",
            ));
        }
        None => {}
    }
    Ok(vars)
}

/// `ip:port` the server dials for the cluster URL: the URL's own address, a Kind node's
/// address for its name, the `kubernetes` Service's cluster IP for `kubernetes.default.svc`.
async fn dialed(cv: &ClusterView) -> Result<String> {
    let hostport = cv.url.trim_start_matches("https://").trim_end_matches('/');
    let (host, port) = hostport.rsplit_once(':').unwrap_or((hostport, "443"));
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(format!("{host}:{port}"));
    }
    if host.starts_with("kubernetes.default") {
        let svc: k8s_openapi::api::core::v1::Service =
            kube::Api::namespaced(cv.client.clone(), "default")
                .get("kubernetes")
                .await
                .context("reading Service default/kubernetes")?;
        let ip = svc
            .spec
            .and_then(|s| s.cluster_ip)
            .context("Service default/kubernetes has no cluster IP")?;
        return Ok(format!("{ip}:{port}"));
    }
    let node = cv
        .ext
        .as_ref()
        .and_then(|e| e.owned.as_ref())
        .and_then(|o| o.node_ip.clone())
        .with_context(|| format!("the address of {host} is not known"))?;
    Ok(format!("{node}:{port}"))
}

/// The IP addresses the cluster's serving certificate names.
fn cert_ips(cv: &ClusterView) -> Vec<String> {
    match cv.ext.as_ref().and_then(|e| e.owned.as_ref()) {
        Some(o) => o.cert_ips.clone(),
        None if cv.sim.is_some() => crate::sim::serving_cert_ips(std::slice::from_ref(&cv.host)),
        None => Vec::new(),
    }
}

/// Whether the trial's server is a local process (outside the cluster, the process runtime).
fn outside_as_process(run: &Run<'_>) -> bool {
    run.trial.case.case.topology != Topology::Inside
        && run.lab.options().runtime == Runtime::Process
}

/// Fault endpoints and CAs, made only when the case refers to them, where the server can reach
/// them (the sim's own address).
async fn faults(run: &Run<'_>, cv: &ClusterView, vars: &mut Vars) -> Result<Faults> {
    let lc = &run.trial.case;
    let host = cv.host.clone();
    let mut faults = Faults::default();
    if lc.uses("hang.url") {
        let h = HangListener::bind_on(&host).await?;
        vars.insert("hang.url".into(), h.url());
        faults._hang = Some(h);
    }
    if lc.uses("reset.url") {
        let r = ResetListener::bind_on(&host).await?;
        vars.insert("reset.url".into(), r.url());
        vars.insert(
            "reset.hostport".into(),
            r.url().trim_start_matches("https://").to_string(),
        );
        faults._reset = Some(r);
    }
    if lc.uses("cluster.unnamed_url") || lc.uses("cluster.unnamed_host") {
        if !run.trial.cluster.owns_keys() {
            return Err(super::NotAvailable::err(
                "cluster",
                "${cluster.unnamed_url} is made on the sim, apiserver and Kind clusters only",
            ));
        }
        let node_ip = cv
            .ext
            .as_ref()
            .and_then(|e| e.owned.as_ref())
            .and_then(|o| o.node_ip.clone());
        let (url, f) = match node_ip {
            // Kind: the host's address on the Kind network, forwarded to the node.
            Some(node) => {
                let f =
                    crate::sim::Forwarder::start((host.as_str(), 0), (node.as_str(), 6443)).await?;
                (format!("https://{host}:{}", f.port()), f)
            }
            // The API server at a loopback address its certificate does not name, for a
            // server that is a local process (the API server itself may listen on the Docker
            // gateway).
            None if outside_as_process(run) => {
                let port = cv.port()?;
                let f = crate::sim::Forwarder::start(("127.0.0.2", port), (host.as_str(), port))
                    .await?;
                (format!("https://127.0.0.2:{port}"), f)
            }
            None => {
                return Err(super::NotAvailable::err(
                    "cluster",
                    "${cluster.unnamed_url} needs the server as a local process (127.0.0.2 is loopback only for processes)",
                ));
            }
        };
        let unnamed_host = url
            .trim_start_matches("https://")
            .rsplit_once(':')
            .map(|(h, _)| h.to_string())
            .unwrap_or_default();
        vars.insert("cluster.unnamed_url".into(), url);
        vars.insert("cluster.unnamed_host".into(), unnamed_host);
        faults._unnamed = Some(f);
    }
    if lc.uses("unrelated.ca") {
        vars.insert("unrelated.ca".into(), run.lab.keys().unrelated_ca()?);
    }
    if let Some(o) = &cv.other {
        vars.insert("other.url".into(), o.url());
        vars.insert(
            "other.hostport".into(),
            o.url().trim_start_matches("https://").to_string(),
        );
        vars.insert("other.ca".into(), o.ca_pem());
        vars.insert("other.issuer".into(), o.issuer());
        vars.insert(
            "other.jwks_url".into(),
            format!("{}/openid/v1/jwks", o.url()),
        );
    } else if lc.uses("other.ca") {
        vars.insert(
            "other.ca".into(),
            run.lab.keys().foreign_cluster().await?.ca_pem(),
        );
    }
    if lc.uses("unreachable.url") || lc.uses("unreachable.hostport") {
        let closed = ClosedPort::on(&host)?;
        vars.insert(
            "unreachable.hostport".into(),
            closed.url().trim_start_matches("https://").to_string(),
        );
        vars.insert("unreachable.url".into(), closed.url().to_string());
        faults._unreachable = Some(closed);
    }
    Ok(faults)
}

fn names(run: &Run<'_>) -> Names {
    let case = &run.trial.case.case;
    let id = format!("{}{}", run.lab.options().run_id, run.lab.next_id());
    let (kind, prefix) = match case.auth {
        AuthMethod::Kubernetes => ("kubernetes", "k8s"),
        AuthMethod::Jwt => ("jwt", "jwt"),
    };
    let role = case
        .server
        .role_name
        .clone()
        .unwrap_or_else(|| "app".into());
    let mount = format!("{prefix}-{id}");
    let extra: Vec<(String, String)> = case
        .server
        .mounts
        .keys()
        .map(|n| (n.clone(), format!("{mount}-{n}")))
        .collect();
    let login_mount = case
        .login
        .mount
        .as_ref()
        .and_then(|m| extra.iter().find(|(n, _)| n == m))
        .map(|(_, p)| p.clone())
        .unwrap_or_else(|| mount.clone());
    Names {
        kind,
        extra,
        login_mount,
        mount,
        kv: format!("kv-{id}"),
        policy: format!("authlab-{id}"),
        login_role: case
            .server
            .login_role
            .clone()
            .unwrap_or_else(|| role.clone()),
        role,
    }
}
