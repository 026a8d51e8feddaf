//! The run's side of Docker: the engine, the run's own network, the server images built once
//! per run, the pods' shared network namespace, and server containers on them.

use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};

use super::{
    RunInfo,
    once::{Once, OnceMap, cell_for, locked, once},
    servers::ServerHandle,
};
use crate::{
    cleanup,
    container::{Engine, POD_PORTS, PodIdentity, PodNetwork, PortSlot, ServerImage},
    server::ServerSpec,
};

/// The engine, the run's network and its gateway (the host's address on it, where sim clusters
/// listen for containers).
#[derive(Clone)]
pub struct Connected {
    /// The engine.
    pub engine: Engine,
    /// The run's own network.
    pub network: String,
    /// The host's address on it.
    pub gateway: String,
}

/// Docker as the run uses it; connected on first use.
pub struct Docker {
    info: Arc<RunInfo>,
    connected: Once<Connected>,
    images: OnceMap<ServerSpec, ServerImage>,
    /// The network namespace the emulated pods share (created with the first pod).
    pod_network: Once<Arc<PodNetwork>>,
    /// The scope's claim on the run's network.
    network_claim: Mutex<Option<crate::scope::Tracked>>,
    /// Pod servers trials gave back, for the next trial of the same server version whose
    /// cluster listens where their `KUBERNETES_SERVICE_*` point.
    idle_pods: Mutex<Vec<(ServerSpec, ServerHandle)>>,
    /// Told when a pod server is given back, for a new one waiting for a port.
    pod_returned: tokio::sync::Notify,
}

/// How long a new pod server waits for a port of the pods' network.
const POD_SLOT_WAIT: std::time::Duration = std::time::Duration::from_secs(180);

impl Docker {
    pub(crate) fn new(info: Arc<RunInfo>) -> Self {
        Docker {
            info,
            connected: Once::new(),
            images: OnceMap::default(),
            pod_network: Once::new(),
            network_claim: Mutex::new(None),
            idle_pods: Mutex::new(Vec::new()),
            pod_returned: tokio::sync::Notify::new(),
        }
    }

    /// The engine, the run's network and its gateway address. Connected once.
    pub async fn connected(&self) -> Result<Connected> {
        once(&self.connected, async {
            let engine = Engine::connect(self.info.settings()).await?;
            crate::scope::uses_docker();
            cleanup::reap_orphaned_containers(&engine).await;
            let name = self.network_name();
            let creating = crate::scope::begin(format!("network {name}"))
                .ok_or_else(crate::scope::stopping_error)?;
            // Claimed before it is made (see `Lab::new`).
            let claim = engine.claim_network(&name);
            engine.create_network(&name, self.info.run_id()).await?;
            *locked(&self.network_claim) = Some(claim);
            drop(creating);
            let gateway = engine.network_gateway(&name).await?;
            Ok(Connected {
                engine,
                network: name,
                gateway,
            })
        })
        .await
    }

    /// The name of the run's own Docker network.
    pub fn network_name(&self) -> String {
        format!("authlab-{}", self.info.run_id())
    }

    /// The local server image for `spec`, built once per run when missing or stale.
    pub async fn server_image(&self, spec: &ServerSpec) -> Result<ServerImage> {
        let cell = cell_for(&self.images, spec);
        once(&cell, async {
            let Connected { engine, .. } = self.connected().await?;
            let progress = |line: &str| tracing::info!("{spec}: {line}");
            let bin = self.info.cache.ensure(spec, &progress).await?;
            crate::container::resolve_image(
                &engine,
                spec,
                &bin,
                self.info.settings().pull,
                &progress,
            )
            .await
        })
        .await
    }

    /// Starts a server container on the run's network, or on `network`; `pod` makes it a pod
    /// (its token, CA and service variables), `trial` labels it for one trial.
    pub async fn start_container(
        &self,
        spec: &ServerSpec,
        pod: Option<PodIdentity>,
        trial: Option<&str>,
        network: Option<&str>,
    ) -> Result<ServerHandle> {
        let Connected {
            engine,
            network: lab_network,
            ..
        } = self.connected().await?;
        let server_image = self.server_image(spec).await?;
        // A pod on the run's network joins the pods' namespace and listens on a port of its.
        let shared = match (&pod, network) {
            (Some(_), None) => {
                let net = self
                    .pod_network(&engine, &lab_network, &server_image, spec)
                    .await?;
                Some(Arc::new(crate::container::SharedNetns {
                    holder: net.holder().to_string(),
                    slot: self.pod_slot(&net).await?,
                }))
            }
            _ => None,
        };
        let official = server_image.official();
        let ServerImage {
            reference: image,
            binary: host_binary,
        } = server_image;
        let port = shared
            .as_ref()
            .map_or(crate::container::PORT, |sh| sh.slot.port);
        let cfg = crate::server::config::ServerConfig {
            listen: std::net::SocketAddr::from(([0, 0, 0, 0], port)),
            audit_file: crate::container::AUDIT_FILE.into(),
            log_level: "debug".into(),
            flavour: spec.flavour,
        };
        let name = format!(
            "authlab-{}-{}",
            self.info.run_id(),
            match trial {
                Some(_) => format!("t{}", self.info.next_id()),
                None => format!("{}-{}", spec.flavour, spec.version.replace('.', "-")),
            }
        );
        // Servers of the same version on another network (several on the Kind network, each
        // lent to one trial at a time) need names of their own.
        let (name, network) = match network {
            Some(other) if other != lab_network => (
                format!("{name}-{other}-{}", self.info.next_id()),
                other.to_string(),
            ),
            _ => (name, lab_network),
        };
        let opts = crate::container::ContainerServerOptions {
            image,
            official,
            flavour: spec.flavour,
            name: name.clone(),
            run_id: self.info.run_id().to_string(),
            trial: trial.map(str::to_string),
            network: Some(network),
            config_hcl: crate::server::config::render(&cfg),
            env: Vec::new(),
            pod,
            host_dir: self.info.workdir.join(&name),
            ready_timeout: std::time::Duration::from_secs(60),
            shared,
            host_binary,
        };
        let server = crate::container::ContainerServer::start(&engine, opts).await?;
        // A trial's own server is one of many: said under -v only.
        let (addr, ms) = (server.addr(), server.startup().as_millis());
        if trial.is_some() {
            tracing::debug!("{spec} ready in container {name} at {addr} in {ms} ms");
        } else {
            tracing::info!("{spec} ready in container {name} at {addr} in {ms} ms");
        }
        Ok(ServerHandle::container(spec, server))
    }

    /// The pods' network namespace: its holder is created once per run (from the first pod's
    /// image), on the run's network, and removed at shutdown.
    async fn pod_network(
        &self,
        engine: &Engine,
        network: &str,
        image: &ServerImage,
        spec: &ServerSpec,
    ) -> Result<Arc<PodNetwork>> {
        once(&self.pod_network, async {
            let name = format!("authlab-{}-pods", self.info.run_id());
            let net = PodNetwork::create(
                engine,
                &name,
                self.info.run_id(),
                network,
                image,
                spec.flavour,
            )
            .await
            .with_context(|| format!("creating the pods' network holder {name}"))?;
            Ok(Arc::new(net))
        })
        .await
    }

    /// An idle pod server of `spec` whose `KUBERNETES_SERVICE_HOST` is `host` (and whose port
    /// is `port`, when given), taken for one trial alone: a server pod emulated once serves
    /// many trials, each giving it its own identity ([`ContainerServer::become_pod`]). One
    /// that no longer answers is removed.
    ///
    /// [`ContainerServer::become_pod`]: crate::container::ContainerServer::become_pod
    pub async fn take_pod(
        &self,
        spec: &ServerSpec,
        host: &str,
        port: Option<u16>,
    ) -> Option<ServerHandle> {
        loop {
            let mut pod = {
                let mut idle = locked(&self.idle_pods);
                let at = idle.iter().position(|(s, h)| {
                    s == spec
                        && h.container_server()
                            .and_then(|c| c.pod_service())
                            .is_some_and(|(h, p)| h == host && port.is_none_or(|want| want == p))
                })?;
                idle.swap_remove(at).1
            };
            match pod.client().health().await {
                Ok(h) if h.status == 200 => return Some(pod),
                _ => {
                    tracing::debug!("{spec}: an idle pod server no longer answers; removing it");
                    pod.stop().await;
                }
            }
        }
    }

    /// Gives a trial's pod server back for the next trial of `spec` (or for a new pod server
    /// waiting for its port).
    pub fn give_back_pod(&self, spec: &ServerSpec, pod: ServerHandle) {
        locked(&self.idle_pods).push((spec.clone(), pod));
        self.pod_returned.notify_one();
    }

    /// A port of the pods' network for a new pod server: a free one, else the one the oldest
    /// idle pod server gives up, else the first that a trial's pod frees or gives back, within
    /// [`POD_SLOT_WAIT`].
    async fn pod_slot(&self, net: &PodNetwork) -> Result<PortSlot> {
        let waiting = async {
            loop {
                if let Some(slot) = net.try_slot()? {
                    return Ok(slot);
                }
                // Registered before the idle list is read: a pod given back after the read
                // still wakes this wait.
                let returned = self.pod_returned.notified();
                let oldest = {
                    let mut idle = locked(&self.idle_pods);
                    (!idle.is_empty()).then(|| idle.remove(0).1)
                };
                if let Some(mut oldest) = oldest {
                    oldest.stop().await;
                    continue;
                }
                tokio::select! {
                    slot = net.next_slot() => return slot,
                    () = returned => {}
                }
            }
        };
        tokio::time::timeout(POD_SLOT_WAIT, waiting)
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "no free port in the pods' network after {} s ({POD_PORTS} pod servers \
                     at once, every one in a running trial)",
                    POD_SLOT_WAIT.as_secs()
                )
            })?
    }

    /// Removes the idle pod servers, the pods' holder and the run's network (after every
    /// container on them).
    pub(crate) async fn shutdown(&self) {
        let idle = std::mem::take(&mut *locked(&self.idle_pods));
        futures_util::future::join_all(idle.into_iter().map(|(_, mut pod)| async move {
            pod.stop().await;
        }))
        .await;
        let Some(Ok(Connected {
            engine, network, ..
        })) = self.connected.get()
        else {
            return;
        };
        if let Some(Ok(pods)) = self.pod_network.get()
            && let Err(e) = pods.remove(engine).await
        {
            tracing::warn!("{e:#}");
        }
        let removed = engine.remove_network(network).await;
        if let Err(e) = &removed {
            tracing::warn!("{e:#}");
        }
        let mut claim = locked(&self.network_claim);
        *claim = claim.take().and_then(|c| c.released_if(removed.is_ok()));
    }
}
