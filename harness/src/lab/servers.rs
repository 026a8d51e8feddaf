//! Servers as trials see them: started by this process, or attached from a long-lived lab
//! (`authlab lab up`) whose state file lists running servers.

use std::{path::PathBuf, time::Duration};

use super::{
    once::{OnceMap, cell_for, drain, once},
    state::{ServerInfo, read_state, state_path},
};
use crate::{
    container::ContainerServer,
    server::{ServerSpec, process::RunningServer},
    vault::VaultClient,
};

/// What a handle owns, when this run started the server.
#[derive(Debug)]
enum Owned {
    Process(Box<RunningServer>),
    Container(Box<ContainerServer>),
    /// A trial's server pod on a Kind or kubeconfig cluster (its objects are the trial's, and
    /// deleted with them).
    Pod(Box<super::incluster::ClusterPod>),
}

/// A server used by trials; owns the process or container when this run started it.
#[derive(Debug)]
pub struct ServerHandle {
    info: ServerInfo,
    owned: Option<Owned>,
    /// Built once: its connection pool is shared by every trial on this server.
    root: VaultClient,
}

fn root_client(info: &ServerInfo) -> VaultClient {
    VaultClient::new(&info.addr, Some(info.root_token.clone()))
        .expect("a client for a loopback address builds")
}

impl ServerHandle {
    /// Wraps a server this process started.
    pub fn owned(server: RunningServer) -> Self {
        let info = ServerInfo {
            spec: server.spec().to_string(),
            addr: server.addr(),
            root_token: server.root_token(),
            audit_log: server.audit_log_path(),
            server_log: server.server_log_path(),
            config_text: server.config_text(),
            pid: server.pid(),
            startup_ms: server.startup().as_millis() as u64,
        };
        ServerHandle {
            root: root_client(&info),
            info,
            owned: Some(Owned::Process(Box::new(server))),
        }
    }

    /// Wraps a server container this process started.
    pub fn container(spec: &ServerSpec, server: ContainerServer) -> Self {
        let info = ServerInfo {
            spec: spec.to_string(),
            addr: server.addr(),
            root_token: server.root_token(),
            audit_log: server.audit_log_path(),
            server_log: server.server_log_path(),
            config_text: server.config_text(),
            pid: None,
            startup_ms: server.startup().as_millis() as u64,
        };
        ServerHandle {
            root: root_client(&info),
            info,
            owned: Some(Owned::Container(Box::new(server))),
        }
    }

    /// Wraps a trial's server pod on a Kind or kubeconfig cluster.
    pub fn pod(info: ServerInfo, pod: super::incluster::ClusterPod) -> Self {
        ServerHandle {
            root: root_client(&info),
            info,
            owned: Some(Owned::Pod(Box::new(pod))),
        }
    }

    /// The trial's server pod on a Kind or kubeconfig cluster, when it is one.
    pub fn cluster_pod(&self) -> Option<&super::incluster::ClusterPod> {
        match &self.owned {
            Some(Owned::Pod(p)) => Some(p),
            _ => None,
        }
    }

    /// The address the server's requests to a cluster listening on `host` (an address of this
    /// machine) come from: a container's address on `network`, a pod's own address; for a
    /// local process, `host` itself unless it is loopback (a connection to a local address
    /// comes from that address).
    pub fn source_ip(&self, network: &str, host: &str) -> Option<String> {
        match &self.owned {
            Some(Owned::Container(c)) => c.container_ip(network),
            Some(Owned::Pod(p)) => p.ip(),
            Some(Owned::Process(_)) => host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| !ip.is_loopback())
                .then(|| host.to_string()),
            None => None,
        }
    }

    /// A server of a long-lived lab (not stopped by this process).
    pub fn attached(info: ServerInfo) -> Self {
        ServerHandle {
            root: root_client(&info),
            info,
            owned: None,
        }
    }

    /// Its description (for state files).
    pub fn info(&self) -> &ServerInfo {
        &self.info
    }

    /// The container's name, when it runs in one this process started.
    pub fn container_name(&self) -> Option<String> {
        match &self.owned {
            Some(Owned::Container(c)) => Some(c.name().to_string()),
            _ => None,
        }
    }

    /// The container, when it runs in one this process started.
    pub fn container_server(&self) -> Option<&ContainerServer> {
        match &self.owned {
            Some(Owned::Container(c)) => Some(c),
            _ => None,
        }
    }

    /// Whether this process started it.
    pub fn is_owned(&self) -> bool {
        self.owned.is_some()
    }

    /// API address.
    pub fn addr(&self) -> String {
        self.info.addr.clone()
    }

    /// Client with the root token.
    pub fn client(&self) -> VaultClient {
        self.root.clone()
    }

    /// Audit log file.
    pub fn audit_log_path(&self) -> PathBuf {
        self.info.audit_log.clone()
    }

    /// Server log file.
    pub fn server_log_path(&self) -> PathBuf {
        self.info.server_log.clone()
    }

    /// Rendered config.
    pub fn config_text(&self) -> String {
        self.info.config_text.clone()
    }

    /// Process id.
    pub fn pid(&self) -> Option<u32> {
        self.info.pid
    }

    /// Spawn → ready time.
    pub fn startup(&self) -> Duration {
        Duration::from_millis(self.info.startup_ms)
    }

    /// Stops the server if this process owns it (its claim is released once it is gone).
    pub async fn stop(&mut self) {
        match self.owned.as_mut() {
            Some(Owned::Process(s)) => s.stop().await,
            Some(Owned::Container(c)) => {
                if let Err(e) = c.remove().await {
                    tracing::warn!("{e:#}");
                }
            }
            Some(Owned::Pod(p)) => {
                if let Err(e) = p.remove_node_data().await {
                    tracing::warn!("{e:#}");
                }
            }
            None => {}
        }
    }
}

/// The attached server for `spec`, if a live lab runs one that answers health checks.
pub async fn attach(
    spec: &ServerSpec,
    settings: &crate::settings::Settings,
) -> Option<ServerHandle> {
    let state = read_state(&state_path(settings))?;
    let info = state
        .servers
        .into_iter()
        .find(|s| s.spec == spec.to_string())?;
    let client = VaultClient::new(&info.addr, None).ok()?;
    let healthy = client.health().await.is_ok_and(|r| r.status == 200);
    healthy.then(|| ServerHandle::attached(info))
}

/// Servers of one version on the Kind network at most: each is held by one trial at a time
/// (the cluster tells a trial's requests apart by their source address), and a trial mostly
/// waits on the cluster while it holds one.
const KIND_SERVERS_PER_VERSION: usize = 4;

/// A trial's hold on a server on the Kind network.
pub type KindServer = super::pool::Member<std::sync::Arc<ServerHandle>>;

/// The run's servers: one per server version, as a process or a container, shared by trials;
/// and pools of containers per version on the Kind network, each lent to one trial at a time.
/// Each started on first use (or attached from a long-lived lab).
pub struct Servers {
    info: std::sync::Arc<super::RunInfo>,
    docker: std::sync::Arc<super::docker::Docker>,
    shared: OnceMap<ServerSpec, std::sync::Arc<ServerHandle>>,
    kind_network: super::pool::PoolMap<ServerSpec, std::sync::Arc<ServerHandle>>,
}

impl Servers {
    pub(crate) fn new(
        info: std::sync::Arc<super::RunInfo>,
        docker: std::sync::Arc<super::docker::Docker>,
    ) -> Self {
        Servers {
            info,
            docker,
            shared: OnceMap::default(),
            kind_network: Default::default(),
        }
    }

    /// The running server for `spec`: a long-lived lab's (`authlab lab up`) when one runs it,
    /// else started on first use and shared afterwards.
    pub async fn get(&self, spec: &ServerSpec) -> anyhow::Result<std::sync::Arc<ServerHandle>> {
        use anyhow::Context;
        let cell = cell_for(&self.shared, spec);
        once(&cell, async {
            if let Some(h) = attach(spec, self.info.settings()).await {
                tracing::info!("{spec}: using the running lab's server at {}", h.addr());
                return Ok(std::sync::Arc::new(h));
            }
            let started = match self.info.opts.runtime {
                super::Runtime::Process => match self.start_process(spec).await {
                    Ok(s) => Ok(s),
                    // Every trial on this server depends on this one start: a start that
                    // failed (not ready in time on a loaded machine, a port taken twice) is
                    // tried once more before its error becomes all of theirs.
                    Err(e) if !crate::scope::stopping() => {
                        tracing::warn!("{spec}: {e:#}; starting it once more");
                        self.start_process(spec)
                            .await
                            .with_context(|| format!("the first start failed too: {e:#}"))
                    }
                    Err(e) => Err(e),
                }
                .map(ServerHandle::owned),
                super::Runtime::Container => {
                    self.docker.start_container(spec, None, None, None).await
                }
            };
            started.map(std::sync::Arc::new)
        })
        .await
    }

    /// Starts a server process for `spec` (binary provisioned on demand).
    pub async fn start_process(&self, spec: &ServerSpec) -> anyhow::Result<RunningServer> {
        let progress = |line: &str| tracing::info!("{spec}: {line}");
        let bin = self.info.cache.ensure(spec, &progress).await?;
        let opts = crate::server::process::ProcessOptions {
            workdir: self
                .info
                .workdir
                .join(format!("{}-{}", spec.flavour, spec.version)),
            run_id: self.info.run_id().to_string(),
            ready_timeout: Duration::from_secs(30),
        };
        // Claimed by the run's scope as soon as it is spawned.
        let server = RunningServer::start(spec, &bin, opts).await?;
        tracing::info!(
            "{spec} ready at {} in {} ms",
            server.addr(),
            server.startup().as_millis()
        );
        Ok(server)
    }

    /// A server for `spec` outside a Kind cluster, held by the caller alone until the
    /// [`KindServer`] is dropped: a container on the `kind` Docker network, so it reaches the
    /// API server at the internal address (`https://<cluster>-control-plane:6443`) and pods
    /// reach it at its address on that network. Started on first use; waits while every server
    /// of the version is held.
    pub async fn on_kind_network(
        &self,
        spec: &ServerSpec,
    ) -> anyhow::Result<(KindServer, std::sync::Arc<ServerHandle>)> {
        let pool = super::pool::pool_for(&self.kind_network, spec, || KIND_SERVERS_PER_VERSION);
        let member = pool.take().await;
        let server = once(member.server(), async {
            let network = self.info.settings().kind_network();
            self.docker
                .start_container(spec, None, None, Some(&network))
                .await
                .map(std::sync::Arc::new)
        })
        .await?;
        Ok((member, server))
    }

    /// Stops every server this run started, together (each waits for its server to exit).
    pub(crate) async fn shutdown(&self) {
        let mut cells = drain(&self.shared);
        let pools: Vec<_> = super::once::locked(&self.kind_network)
            .drain()
            .map(|(_, p)| p)
            .collect();
        cells.extend(pools.iter().flat_map(|p| p.drain()));
        let stops = cells.into_iter().filter_map(|cell| {
            let server = std::sync::Arc::into_inner(cell)?.into_inner()?.ok()?;
            let mut server = std::sync::Arc::into_inner(server)?;
            Some(async move { server.stop().await })
        });
        futures_util::future::join_all(stops).await;
    }
}
