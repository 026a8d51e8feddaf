//! The pods' network namespace: one holder container per run, whose network namespace the
//! emulated pods' server containers join, as a pod's containers join its sandbox's. Creating a
//! namespace, its interface and a port proxy is most of what a container costs the engine;
//! joining one costs little. The holder publishes a fixed set of ports on loopback; each pod
//! server listens on one it holds for its life ([`PortSlot`]).

use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, anyhow};
use bollard::models::{ContainerCreateBody, HostConfig};

use super::{Engine, ServerImage};
use crate::server::Flavour;

/// Pod servers at once (ports the holder publishes).
pub const POD_PORTS: u16 = 16;
/// The first of them inside the namespace; they are two apart, as a server also listens on
/// the port after its own (its cluster listener). The holder's dev server takes 8199–8200.
const FIRST_PORT: u16 = 8201;

/// The holder and its free ports.
#[derive(Debug)]
pub struct PodNetwork {
    holder: String,
    free: Arc<Mutex<Vec<(u16, u16)>>>,
    slots: Arc<tokio::sync::Semaphore>,
    /// The scope's claim on the holder, until [`PodNetwork::remove`] removed it.
    claim: Mutex<Option<crate::scope::Tracked>>,
}

/// A port of the pods' namespace, held by one pod server; returned when dropped.
#[derive(Debug)]
pub struct PortSlot {
    /// The port inside the namespace.
    pub port: u16,
    /// Where it is published on loopback.
    pub host_port: u16,
    free: Arc<Mutex<Vec<(u16, u16)>>>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for PortSlot {
    fn drop(&mut self) {
        if let Ok(mut f) = self.free.lock() {
            f.push((self.port, self.host_port));
        }
    }
}

impl PodNetwork {
    /// Creates and starts the holder `name` on `network` (an idle dev-mode server on a port
    /// no pod uses), publishing [`POD_PORTS`] ports on loopback. Claimed for the run's scope
    /// before it is made; not made when the run is stopping.
    pub async fn create(
        engine: &Engine,
        name: &str,
        run_id: &str,
        network: &str,
        image: &ServerImage,
        flavour: Flavour,
    ) -> Result<PodNetwork> {
        let ports: Vec<u16> = (0..POD_PORTS).map(|i| FIRST_PORT + 2 * i).collect();
        let (exposed, bindings) = super::publish_on_loopback(&ports);
        let exe = flavour.exe();
        let body = ContainerCreateBody {
            image: Some(image.reference.clone()),
            entrypoint: image.official().then(|| vec![exe.to_string()]),
            cmd: Some(vec![
                "server".into(),
                "-dev".into(),
                "-dev-listen-address=127.0.0.1:8199".into(),
            ]),
            labels: Some(super::run_labels(run_id)),
            exposed_ports: Some(exposed),
            host_config: Some(HostConfig {
                port_bindings: Some(bindings),
                network_mode: Some(network.to_string()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let _making = crate::scope::begin(format!("container {name}"))
            .ok_or_else(crate::scope::stopping_error)?;
        // Dropped on an error below: the half-made holder is removed.
        let claim = engine.claim_container(name);
        engine.create_container(name, body).await?;
        engine.start(name).await?;
        let published = engine
            .inspect(name)
            .await?
            .network_settings
            .and_then(|s| s.ports)
            .unwrap_or_default();
        let mut free = Vec::new();
        for p in ports {
            let host = super::published_port(&published, p)
                .ok_or_else(|| anyhow!("port {p} of the pods' holder {name} was not published"))?;
            free.push((p, host));
        }
        Ok(PodNetwork {
            holder: name.to_string(),
            slots: Arc::new(tokio::sync::Semaphore::new(free.len())),
            free: Arc::new(Mutex::new(free)),
            claim: Mutex::new(Some(claim)),
        })
    }

    /// Removes the holder (once; kept claimed when the engine fails, so that the run's close
    /// tries again).
    pub async fn remove(&self, engine: &Engine) -> Result<()> {
        let claim = self.claim.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(claim) = claim else {
            return Ok(());
        };
        let removed = engine.remove_container(&self.holder).await;
        *self.claim.lock().unwrap_or_else(|p| p.into_inner()) = claim.released_if(removed.is_ok());
        Ok(removed?)
    }

    /// The holder's name (`container:<name>` is the pods' network mode).
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// A free port now, if any.
    pub fn try_slot(&self) -> Result<Option<PortSlot>> {
        match self.slots.clone().try_acquire_owned() {
            Ok(permit) => self.slot_with(permit).map(Some),
            Err(tokio::sync::TryAcquireError::NoPermits) => Ok(None),
            Err(tokio::sync::TryAcquireError::Closed) => {
                Err(anyhow!("the pods' network is closed"))
            }
        }
    }

    /// The next port freed, waiting with no bound of its own (the caller bounds the wait, as it
    /// may also free ports meanwhile).
    pub async fn next_slot(&self) -> Result<PortSlot> {
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .context("the pods' network is closed")?;
        self.slot_with(permit)
    }

    fn slot_with(&self, permit: tokio::sync::OwnedSemaphorePermit) -> Result<PortSlot> {
        let (port, host_port) = self
            .free
            .lock()
            .map_err(|_| anyhow!("pod port list poisoned"))?
            .pop()
            .context("a permit without a free port")?;
        Ok(PortSlot {
            port,
            host_port,
            free: self.free.clone(),
            _permit: permit,
        })
    }
}
