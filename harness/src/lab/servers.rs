//! Servers as trials see them: started by this process, or attached from a long-lived lab
//! (`authlab lab up`) whose state file lists running servers.

use std::{path::PathBuf, time::Duration};

use super::state::{ServerInfo, read_state, state_path};
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

    /// The address the server's requests to a cluster come from on `network` (a container's
    /// address there, a pod's own address), when it is not this machine's loopback.
    pub fn source_ip(&self, network: &str) -> Option<String> {
        match &self.owned {
            Some(Owned::Container(c)) => c.container_ip(network),
            Some(Owned::Pod(p)) => p.ip(),
            _ => None,
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
