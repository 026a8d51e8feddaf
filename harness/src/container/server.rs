//! A server in a container: port 8200 published on 127.0.0.1, its config directory, the audit
//! directory (so evidence is read the same way as for a process) and a pod's service-account
//! files bind-mounted from the host (written there, so nothing is copied into the container and
//! a token is renewed with a file write), logs streamed to a host file.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail};
use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType};

use super::{Engine, LABEL_TRIAL};
use crate::{
    server::{
        Flavour,
        process::initialise,
        ready::{self, Stage},
    },
    vault::VaultClient,
};

/// Where kubelet mounts a pod's service-account files.
pub const SA_DIR: &str = "var/run/secrets/kubernetes.io/serviceaccount";
/// The server's port inside the container.
pub const PORT: u16 = 8200;

/// A pod's identity as kubelet provides it.
#[derive(Debug, Clone)]
pub struct PodIdentity {
    /// The projected service-account token.
    pub token: String,
    /// The cluster CA (PEM).
    pub ca_pem: String,
    /// The pod's namespace.
    pub namespace: String,
    /// `KUBERNETES_SERVICE_HOST`.
    pub kubernetes_service_host: String,
    /// `KUBERNETES_SERVICE_PORT`.
    pub kubernetes_service_port: u16,
}

/// How to start a server container.
#[derive(Debug, Clone)]
pub struct ContainerServerOptions {
    /// Image reference.
    pub image: String,
    /// An official image: run its binary directly, as root (the audit directory is a host
    /// bind mount).
    pub official: bool,
    /// Server flavour (initialisation differs slightly).
    pub flavour: Flavour,
    /// Container name.
    pub name: String,
    /// Run id label.
    pub run_id: String,
    /// Trial label.
    pub trial: Option<String>,
    /// Network to join.
    pub network: Option<String>,
    /// Server config (container paths).
    pub config_hcl: String,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// Pod emulation.
    pub pod: Option<PodIdentity>,
    /// Host directory for logs and the audit file.
    pub host_dir: PathBuf,
    /// Bound on start → ready.
    pub ready_timeout: Duration,
    /// Join the pods' network namespace (listening on the slot's port) instead of `network`.
    pub shared: Option<Arc<SharedNetns>>,
    /// The host's copy of the image's binary (a local image only), mounted read-only over the
    /// image's: the same bytes, read through the host's page cache instead of the image's
    /// filesystem at every start.
    pub host_binary: Option<PathBuf>,
}

/// A place in the pods' network namespace: its holder and the port held.
#[derive(Debug)]
pub struct SharedNetns {
    /// The holder container.
    pub holder: String,
    /// The port this server listens on, and where it is published.
    pub slot: super::PortSlot,
}

/// A running, initialised and unsealed server container.
#[derive(Debug)]
pub struct ContainerServer {
    engine: Engine,
    name: String,
    addr: String,
    root_token: String,
    audit_log: PathBuf,
    server_log: PathBuf,
    config_text: String,
    /// The host directory mounted as the pod's service-account files, for a pod.
    sa_dir: Option<PathBuf>,
    /// A pod's `KUBERNETES_SERVICE_HOST` and `KUBERNETES_SERVICE_PORT`.
    service: Option<(String, u16)>,
    startup: Duration,
    /// Create → the listener first answered `sys/health`.
    listening: Duration,
    /// Address on each joined network, read back after start.
    ips: HashMap<String, String>,
    /// The scope's claim on the container, until it is removed (dropped: removed then).
    claim: Option<crate::scope::Tracked>,
    /// Held until the container is gone (then another pod may listen on its port).
    _shared: Option<Arc<SharedNetns>>,
}

/// Writes `name` in `dir` (made when missing), readable by the container's user, through a
/// scratch file renamed into place.
fn write_host_file(dir: &std::path::Path, name: &str, data: &[u8]) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(name);
    let scratch = dir.join(format!(".{name}.new"));
    std::fs::write(&scratch, data)
        .and_then(|()| std::fs::set_permissions(&scratch, std::fs::Permissions::from_mode(0o644)))
        .and_then(|()| std::fs::rename(&scratch, &path))
        .with_context(|| format!("writing {}", path.display()))
}

/// How many log lines a start-up error carries.
const LOG_TAIL_LINES: usize = 20;

/// The container-side audit file.
pub const AUDIT_FILE: &str = "/openbao/audit/audit.log";

impl ContainerServer {
    /// Creates, fills, starts, waits for, initialises and unseals the container.
    pub async fn start(engine: &Engine, opts: ContainerServerOptions) -> Result<ContainerServer> {
        // Until the container is claimed (clean-up on a signal waits for this).
        let Some(creating) = crate::scope::begin(format!("container {}", opts.name)) else {
            bail!("the run is stopping: container {} not created", opts.name);
        };
        std::fs::create_dir_all(&opts.host_dir)
            .with_context(|| format!("creating {}", opts.host_dir.display()))?;
        let audit_dir = opts.host_dir.join("audit");
        std::fs::create_dir_all(&audit_dir)
            .with_context(|| format!("creating {}", audit_dir.display()))?;
        let config_dir = opts.host_dir.join("config");
        write_host_file(&config_dir, "server.hcl", opts.config_hcl.as_bytes())?;
        let sa_dir = match &opts.pod {
            Some(p) => {
                let dir = opts.host_dir.join("serviceaccount");
                write_host_file(&dir, "token", p.token.as_bytes())?;
                write_host_file(&dir, "ca.crt", p.ca_pem.as_bytes())?;
                write_host_file(&dir, "namespace", p.namespace.as_bytes())?;
                Some(dir)
            }
            None => None,
        };
        let started = Instant::now();
        let mut labels = super::run_labels(&opts.run_id);
        if let Some(t) = &opts.trial {
            labels.insert(LABEL_TRIAL.to_string(), t.clone());
        }
        let mut env: Vec<String> = opts.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if let Some(p) = &opts.pod {
            env.push(format!(
                "KUBERNETES_SERVICE_HOST={}",
                p.kubernetes_service_host
            ));
            env.push(format!(
                "KUBERNETES_SERVICE_PORT={}",
                p.kubernetes_service_port
            ));
            env.push(format!(
                "KUBERNETES_SERVICE_PORT_HTTPS={}",
                p.kubernetes_service_port
            ));
        }
        // In the pods' namespace: no namespace, interface or port proxy of its own.
        let (exposed_ports, port_bindings, network_mode) = match &opts.shared {
            Some(sh) => (None, None, Some(format!("container:{}", sh.holder))),
            None => {
                let (exposed, bindings) = super::publish_on_loopback(&[PORT]);
                (Some(exposed), Some(bindings), opts.network.clone())
            }
        };
        let exe = opts.flavour.exe();
        // Bind mounts whose source must exist: the engine never creates one (a `binds` entry
        // would re-create a scratch directory already removed, when the run is killed while
        // the container is being created).
        let bind = |source: &std::path::Path, target: String, read_only: bool| Mount {
            target: Some(target),
            source: Some(source.display().to_string()),
            typ: Some(MountType::BIND),
            read_only: Some(read_only),
            ..Default::default()
        };
        let mut mounts = vec![
            bind(&audit_dir, "/openbao/audit".into(), false),
            bind(&config_dir, "/openbao/config".into(), true),
        ];
        if let Some(dir) = &sa_dir {
            // Read-only, as kubelet mounts it.
            mounts.push(bind(dir, format!("/{SA_DIR}"), true));
        }
        if let Some(bin) = &opts.host_binary {
            mounts.push(Mount {
                target: Some(format!("/bin/{exe}")),
                source: Some(bin.display().to_string()),
                typ: Some(MountType::BIND),
                read_only: Some(true),
                ..Default::default()
            });
        }
        let body = ContainerCreateBody {
            image: Some(opts.image.clone()),
            entrypoint: opts.official.then(|| vec![exe.to_string()]),
            cmd: Some(vec![
                "server".into(),
                "-config=/openbao/config/server.hcl".into(),
            ]),
            user: opts.official.then(|| "0:0".to_string()),
            env: Some(env),
            labels: Some(labels),
            exposed_ports,
            host_config: Some(HostConfig {
                port_bindings,
                // A bind mount whose source must exist: the engine never creates it (a
                // `binds` entry would re-create a scratch directory already removed, when
                // the run is killed while the container is being created).
                mounts: Some(mounts),
                network_mode,
                ..Default::default()
            }),
            ..Default::default()
        };
        // Claimed before it is created: an engine that fails the request may still make it.
        let claim = engine.claim_container(&opts.name);
        engine.create_container(&opts.name, body).await?;
        if crate::scope::stopping() {
            // Clean-up may have run while the engine created it.
            // Not removed now: dropping the claim tries again.
            drop(claim.released_if(engine.remove_container(&opts.name).await.is_ok()));
            bail!("the run is stopping: container {} removed", opts.name);
        }
        drop(creating);
        let mut server = ContainerServer {
            engine: engine.clone(),
            name: opts.name.clone(),
            addr: String::new(),
            root_token: String::new(),
            audit_log: audit_dir.join("audit.log"),
            server_log: opts.host_dir.join("server.log"),
            config_text: opts.config_hcl.clone(),
            sa_dir,
            service: opts
                .pod
                .as_ref()
                .map(|p| (p.kubernetes_service_host.clone(), p.kubernetes_service_port)),
            startup: Duration::ZERO,
            listening: Duration::ZERO,
            ips: HashMap::new(),
            claim: Some(claim),
            _shared: opts.shared.clone(),
        };
        let res = server.bring_up(&opts, started).await;
        if let Err(e) = res {
            // Straight from the engine: the follower writing the host file may lag behind.
            let tail = match engine.log_tail(&opts.name, LOG_TAIL_LINES).await {
                Ok(t) => t,
                Err(_) => {
                    let text = std::fs::read_to_string(&server.server_log).unwrap_or_default();
                    let lines: Vec<&str> = text.lines().collect();
                    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
                }
            };
            let tail = tail.trim_end();
            let _ = server.remove().await;
            return Err(e.context(format!(
                "container {} ({}) did not become ready; last log lines:\n{tail}",
                opts.name, opts.image
            )));
        }
        server.startup = started.elapsed();
        Ok(server)
    }

    async fn bring_up(&mut self, opts: &ContainerServerOptions, started: Instant) -> Result<()> {
        self.engine.start(&self.name).await?;
        self.engine.follow_logs(&self.name, self.server_log.clone());
        let info = self.engine.inspect(&self.name).await?;
        let settings = info.network_settings.unwrap_or_default();
        self.ips = settings
            .networks
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(net, ep)| Some((net, ep.ip_address.filter(|ip| !ip.is_empty())?)))
            .collect();
        let port = match &opts.shared {
            Some(sh) => sh.slot.host_port,
            None => settings
                .ports
                .and_then(|p| super::published_port(&p, PORT))
                .ok_or_else(|| {
                    anyhow!("port {PORT} of container {} was not published", self.name)
                })?,
        };
        self.addr = format!("http://127.0.0.1:{port}");
        // Short per-request bounds while waiting: a probe stuck in Docker's port proxy must not
        // eat the whole wait.
        let client = VaultClient::with_timeouts(
            &self.addr,
            None,
            Duration::from_secs(2),
            Duration::from_secs(10),
        )?;
        let deadline = started + opts.ready_timeout;
        self.wait(&client, deadline, Stage::Listening).await?;
        self.listening = started.elapsed();
        self.root_token = initialise(&client, opts.flavour, AUDIT_FILE).await?;
        self.wait(&client, deadline, Stage::Active).await
    }

    async fn wait(&self, client: &VaultClient, deadline: Instant, stage: Stage) -> Result<()> {
        let mut alive = ContainerAlive {
            engine: &self.engine,
            name: &self.name,
        };
        ready::wait_for(
            client,
            stage,
            deadline,
            Duration::from_millis(20),
            &mut alive,
        )
        .await
    }

    /// `http://127.0.0.1:<published port>`.
    pub fn addr(&self) -> String {
        self.addr.clone()
    }

    /// Container name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Container name (same as [`Self::name`]).
    pub fn container_name(&self) -> &str {
        &self.name
    }

    /// The container's address on `network`, if it joined it.
    pub fn container_ip(&self, network: &str) -> Option<String> {
        self.ips.get(network).cloned()
    }

    /// Root token (secret).
    pub fn root_token(&self) -> String {
        self.root_token.clone()
    }

    /// Host path of the audit log.
    pub fn audit_log_path(&self) -> PathBuf {
        self.audit_log.clone()
    }

    /// Host path of the streamed container log.
    pub fn server_log_path(&self) -> PathBuf {
        self.server_log.clone()
    }

    /// The config the server runs with.
    pub fn config_text(&self) -> String {
        self.config_text.clone()
    }

    /// Create → initialised, unsealed and active.
    pub fn startup(&self) -> Duration {
        self.startup
    }

    /// Create → the listener first answered `sys/health` (before initialisation).
    pub fn listening_after(&self) -> Duration {
        self.listening
    }

    /// Reads a file inside the container, as the server sees it.
    pub async fn read_file(&self, path: &str) -> Result<Vec<u8>> {
        self.engine.read_file(&self.name, path).await
    }

    /// The pod's token file, as the server reads it.
    pub fn pod_token(&self) -> Result<String> {
        let path = self.sa_file("token")?;
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    }

    /// Replaces the pod's token file (kubelet's refresh, or a restarted pod's new token): written
    /// beside it and renamed over it, so the server never reads half a token.
    pub fn write_pod_token(&self, token: &str) -> Result<()> {
        let dir = self.sa_dir.as_ref().context("the server is not a pod")?;
        write_host_file(dir, "token", token.as_bytes())
    }

    /// A pod's `KUBERNETES_SERVICE_HOST` and `KUBERNETES_SERVICE_PORT` (None: not a pod).
    pub fn pod_service(&self) -> Option<(&str, u16)> {
        self.service.as_ref().map(|(h, p)| (h.as_str(), *p))
    }

    /// Gives the pod another identity, as a new pod of the same service address would have:
    /// its token, CA and namespace files replaced (each renamed into place).
    pub fn become_pod(&self, pod: &PodIdentity) -> Result<()> {
        anyhow::ensure!(
            self.pod_service()
                == Some((
                    pod.kubernetes_service_host.as_str(),
                    pod.kubernetes_service_port
                )),
            "the pod {} has KUBERNETES_SERVICE_* of another address than {}:{}",
            self.name,
            pod.kubernetes_service_host,
            pod.kubernetes_service_port
        );
        let dir = self.sa_dir.as_ref().context("the server is not a pod")?;
        write_host_file(dir, "namespace", pod.namespace.as_bytes())?;
        write_host_file(dir, "ca.crt", pod.ca_pem.as_bytes())?;
        write_host_file(dir, "token", pod.token.as_bytes())
    }

    fn sa_file(&self, name: &str) -> Result<PathBuf> {
        Ok(self
            .sa_dir
            .as_ref()
            .context("the server is not a pod")?
            .join(name))
    }

    /// Force-removes the container and its anonymous volumes, consuming the handle.
    pub async fn stop_and_remove(mut self) -> Result<()> {
        self.remove().await
    }

    /// Force-removes the container and its anonymous volumes (idempotent). One not removed so
    /// is force-removed when dropped (its claim removes it, on a thread and runtime of its
    /// own), or when the run closes.
    pub async fn remove(&mut self) -> Result<()> {
        let Some(claim) = self.claim.take() else {
            return Ok(());
        };
        let removed = self.engine.remove_container(&self.name).await;
        self.claim = claim.released_if(removed.is_ok());
        Ok(removed?)
    }
}

/// A container is alive while the engine reports it running.
struct ContainerAlive<'a> {
    engine: &'a Engine,
    name: &'a str,
}

impl ready::Liveness for ContainerAlive<'_> {
    async fn check(&mut self) -> Result<()> {
        let running = self
            .engine
            .inspect(self.name)
            .await
            .ok()
            .and_then(|i| i.state)
            .and_then(|s| s.running)
            .unwrap_or(false);
        if !running {
            bail!("container {} exited during start-up", self.name);
        }
        Ok(())
    }
}
