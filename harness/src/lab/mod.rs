//! The lab: the run's shared state — the binary cache, one server per (flavour, version), the
//! service-account signing key, Docker, the shared cluster, scratch space. Trials
//! ([`crate::trial`]) run in it.

pub mod apiservers;
pub mod incluster;
pub mod servers;
pub mod state;

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use anyhow::{Context, Result};
use tokio::sync::OnceCell;

use crate::{
    case::matrix::ClusterKind,
    cleanup,
    cluster::external,
    container::Engine,
    lab::servers::ServerHandle,
    server::{ServerSpec, binary::BinaryCache, process::RunningServer},
    settings::Settings,
    sim::{SimCluster, SimConfig},
};

/// Where shared servers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Runtime {
    /// Local processes.
    Process,
    /// Docker containers on the lab's network.
    Container,
}

impl std::str::FromStr for Runtime {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "process" => Ok(Runtime::Process),
            "container" => Ok(Runtime::Container),
            other => anyhow::bail!(
                "unknown server runtime `{other}`: expected `process` or `container` (flag --runtime / env AUTHLAB_RUNTIME)"
            ),
        }
    }
}

/// How a lab is set up.
#[derive(Debug, Clone)]
pub struct LabOptions {
    /// Cluster kind.
    pub cluster: ClusterKind,
    /// Where shared servers run.
    pub runtime: Runtime,
    /// Kubeconfig and context for the kubeconfig cluster (default: `AUTHLAB_KUBECONFIG`,
    /// `AUTHLAB_KUBE_CONTEXT`).
    pub kubeconfig: Option<(std::path::PathBuf, Option<String>)>,
    /// Where failed trials leave their artifacts (None: no artifacts).
    pub artifacts_dir: Option<PathBuf>,
    /// Keep scratch files (server data, logs) after the run.
    pub keep: bool,
    /// Identifier of this run (labels processes and scratch files).
    pub run_id: String,
    /// The environment's settings (default: this process's).
    pub settings: Settings,
    /// The run records what servers answer (`--bless`): a trial that observed is not judged
    /// failed by the expectations it is about to replace.
    pub recording: bool,
}

impl LabOptions {
    /// Options with a fresh run id, under `settings` (resolved once by the front-end).
    pub fn new(cluster: ClusterKind, settings: &crate::settings::Settings) -> Self {
        LabOptions {
            cluster,
            runtime: Runtime::Process,
            kubeconfig: None,
            artifacts_dir: None,
            keep: false,
            run_id: new_run_id(),
            settings: settings.clone(),
            recording: false,
        }
    }
}

/// The once-per-run cell for `spec` in a per-server map (created empty on first use).
fn cell_for<T>(
    map: &Mutex<HashMap<ServerSpec, Arc<OnceCell<T>>>>,
    spec: &ServerSpec,
) -> Arc<OnceCell<T>> {
    let mut map = map.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    map.entry(spec.clone()).or_default().clone()
}

/// A new run id: `r` + 8 hex digits.
pub fn new_run_id() -> String {
    format!("r{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

/// A value made once per run and shared; a failure is kept too (so every trial that needs a
/// missing Docker or a Kind cluster that could not be created is told, without retrying).
/// The keys in `cell`, generated on first use (off the async threads: RSA takes a while).
async fn generated_once(cell: &OnceCell<crate::sim::TlsKeys>) -> Result<crate::sim::TlsKeys> {
    cell.get_or_try_init(|| async {
        tokio::task::spawn_blocking(crate::sim::generate_tls_keys)
            .await
            .context("the key generation task failed")?
    })
    .await
    .cloned()
}

type Once<T> = OnceCell<Result<T, SharedError>>;
type ImageCell = Arc<Once<crate::container::ServerImage>>;
type ServerCell = Arc<Once<Arc<ServerHandle>>>;
type ImageRefCell = Arc<Once<String>>;

/// An error kept in a [`Once`] cell, shown with its whole chain of causes.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct SharedError(Arc<str>);

/// The value of `cell`, made by `init` on first use.
async fn once<T: Clone>(
    cell: &Once<T>,
    init: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    // Boxed: the futures that start servers and clusters are large.
    let init = Box::pin(init);
    cell.get_or_init(|| async { init.await.map_err(|e| SharedError(format!("{e:#}").into())) })
        .await
        .clone()
        .map_err(anyhow::Error::new)
}

/// State shared by all trials of a run.
pub struct Lab {
    opts: LabOptions,
    workdir: PathBuf,
    cache: BinaryCache,
    servers: Mutex<HashMap<ServerSpec, ServerCell>>,
    /// Server images loaded into Kind clusters: (cluster, server) → image.
    kind_images: Mutex<HashMap<(String, ServerSpec), ImageRefCell>>,
    kind_network: Mutex<HashMap<ServerSpec, ServerCell>>,
    sa_key: OnceCell<String>,
    tls_keys: OnceCell<crate::sim::TlsKeys>,
    foreign_tls_keys: OnceCell<crate::sim::TlsKeys>,
    foreign: OnceCell<SimCluster>,
    unrelated_ca: OnceCell<String>,
    docker: Once<(Engine, String, String)>,
    /// The kubeconfig cluster, and the Kind clusters by name (one per distinct settings).
    external: Mutex<HashMap<String, Arc<Once<external::ExternalCluster>>>>,
    /// Kind clusters are created one at a time (each takes both cores for a while).
    kind_creation: tokio::sync::Mutex<()>,
    /// The run's etcd, for its API servers (`--cluster apiserver`).
    etcd: Once<String>,
    etcd_process: Mutex<Option<crate::cluster::apiserver::Etcd>>,
    /// A pool of API servers per distinct settings and listen address.
    apiservers: Mutex<HashMap<String, Arc<apiservers::Pool>>>,
    apiserver_processes: Mutex<Vec<crate::cluster::apiserver::ApiServer>>,
    eso: Once<()>,
    /// The network namespace the emulated pods share (created with the first pod).
    pod_network: Once<Arc<crate::container::PodNetwork>>,
    /// Trials on a shared (non-sim) cluster run one at a time.
    pub(crate) exclusive: tokio::sync::Mutex<()>,
    /// The run's turns on Kind and kubeconfig clusters other runs may use too.
    turns: Mutex<Vec<crate::cluster::turn::Turn>>,
    images: Mutex<HashMap<ServerSpec, ImageCell>>,
    counter: AtomicU64,
    /// The scope's claims on the lab's own Docker network and its scratch directory, and on
    /// the run's objects in each cluster it writes to (by kubeconfig and context).
    claims: Mutex<Claims>,
    /// Held while the lab lives: proves the run alive to other runs and `authlab clean`.
    run: crate::scope::Run,
}

/// What the lab itself has claimed (servers, clusters and pods hold their own claims).
#[derive(Default)]
struct Claims {
    workdir: Option<crate::scope::Tracked>,
    network: Option<crate::scope::Tracked>,
    objects: Vec<(crate::cluster::owner::Target, crate::scope::Tracked)>,
}

impl Lab {
    /// Creates a lab (starts nothing yet: servers start on first use).
    pub fn new(opts: LabOptions) -> Result<Lab> {
        let cache = BinaryCache::new(&opts.settings)?;
        cleanup::reap_orphaned_workdirs();
        cleanup::reap_orphaned_processes();
        // Cleanup on a signal waits for this, or this sees the run stopping and makes nothing
        // (not even its lock).
        let creating = crate::scope::begin(format!("the scratch directory of run {}", opts.run_id))
            .ok_or_else(crate::scope::stopping_error)?;
        let run = crate::scope::open_run(&opts.run_id)?;
        let workdir = std::env::temp_dir().join(format!("authlab-{}", opts.run_id));
        // Before it exists: a kill at any moment from here on leaves nothing.
        let workdir_claim = (!opts.keep).then(|| crate::scope::claim_dir(workdir.clone()));
        std::fs::create_dir_all(&workdir)
            .with_context(|| format!("creating scratch directory {}", workdir.display()))?;
        if !opts.keep {
            std::fs::write(workdir.join("pid"), std::process::id().to_string())
                .with_context(|| format!("writing {}", workdir.join("pid").display()))?;
        }
        drop(creating);
        Ok(Lab {
            opts,
            workdir,
            cache,
            servers: Mutex::new(HashMap::new()),
            kind_images: Mutex::new(HashMap::new()),
            kind_network: Mutex::new(HashMap::new()),
            sa_key: OnceCell::new(),
            tls_keys: OnceCell::new(),
            foreign_tls_keys: OnceCell::new(),
            foreign: OnceCell::new(),
            unrelated_ca: OnceCell::new(),
            docker: OnceCell::new(),
            external: Mutex::new(HashMap::new()),
            kind_creation: tokio::sync::Mutex::new(()),
            etcd: OnceCell::new(),
            etcd_process: Mutex::new(None),
            apiservers: Mutex::new(HashMap::new()),
            apiserver_processes: Mutex::new(Vec::new()),
            eso: OnceCell::new(),
            pod_network: OnceCell::new(),
            exclusive: tokio::sync::Mutex::new(()),
            turns: Mutex::new(Vec::new()),
            images: Mutex::new(HashMap::new()),
            counter: AtomicU64::new(0),
            claims: Mutex::new(Claims {
                workdir: workdir_claim,
                ..Claims::default()
            }),
            run,
        })
    }

    fn claims(&self) -> std::sync::MutexGuard<'_, Claims> {
        self.claims.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The options the lab was made with.
    pub fn options(&self) -> &LabOptions {
        &self.opts
    }

    /// The environment's settings.
    pub fn settings(&self) -> &Settings {
        &self.opts.settings
    }

    /// Scratch directory of this run.
    pub fn workdir(&self) -> &std::path::Path {
        &self.workdir
    }

    /// The binary cache.
    pub fn cache(&self) -> &BinaryCache {
        &self.cache
    }

    /// A number unique within this lab.
    pub fn next_id(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::Relaxed)
    }

    /// The running server for `spec`: a long-lived lab's (`authlab lab up`) when one runs it,
    /// else started on first use and shared afterwards.
    pub async fn server(&self, spec: &ServerSpec) -> Result<Arc<ServerHandle>> {
        let cell = cell_for(&self.servers, spec);
        once(&cell, async {
            if let Some(h) = servers::attach(spec, self.settings()).await {
                tracing::info!("{spec}: using the running lab's server at {}", h.addr());
                return Ok(Arc::new(h));
            }
            let started = match self.opts.runtime {
                Runtime::Process => match self.start_server(spec).await {
                    Ok(s) => Ok(s),
                    // Every trial on this server depends on this one start: a start that
                    // failed (not ready in time on a loaded machine, a port taken twice) is
                    // tried once more before its error becomes all of theirs.
                    Err(e) if !crate::scope::stopping() => {
                        tracing::warn!("{spec}: {e:#}; starting it once more");
                        self.start_server(spec)
                            .await
                            .with_context(|| format!("the first start failed too: {e:#}"))
                    }
                    Err(e) => Err(e),
                }
                .map(ServerHandle::owned),
                Runtime::Container => self.start_container(spec, None, None).await,
            };
            started.map(Arc::new)
        })
        .await
    }

    /// Starts a server process for `spec` (binary provisioned on demand).
    pub async fn start_server(&self, spec: &ServerSpec) -> Result<RunningServer> {
        let progress = |line: &str| tracing::info!("{spec}: {line}");
        let bin = self.cache.ensure(spec, &progress).await?;
        let dir = self
            .workdir
            .join(format!("{}-{}", spec.flavour, spec.version));
        let opts = crate::server::process::ProcessOptions {
            workdir: dir,
            run_id: self.opts.run_id.clone(),
            ready_timeout: std::time::Duration::from_secs(30),
        };
        // Registered for cleanup as soon as it is spawned.
        let server = RunningServer::start(spec, &bin, opts).await?;
        tracing::info!(
            "{spec} ready at {} in {} ms",
            server.addr(),
            server.startup().as_millis()
        );
        Ok(server)
    }

    /// The service-account signing key every sim cluster of this lab shares (one RSA
    /// key generation per run instead of one per trial).
    pub async fn sa_key(&self) -> Result<String> {
        self.sa_key
            .get_or_try_init(|| async {
                let sim = SimCluster::start(SimConfig {
                    tls_keys: Some(self.tls_keys().await?),
                    ..SimConfig::default()
                })
                .await?;
                let key = sim.signing_key_pkcs8_pem();
                sim.shutdown().await;
                Ok::<_, anyhow::Error>(key)
            })
            .await
            .cloned()
    }

    /// The RSA-2048 keys of the CA and serving certificate every trial's sim cluster uses (two
    /// key generations per run instead of two per trial; each sim still makes its own
    /// certificates).
    pub async fn tls_keys(&self) -> Result<crate::sim::TlsKeys> {
        generated_once(&self.tls_keys).await
    }

    /// The keys of another cluster's CA and serving certificate (the foreign cluster's, and
    /// every trial's second cluster's): its CA does not sign the trial cluster's certificate.
    pub async fn foreign_tls_keys(&self) -> Result<crate::sim::TlsKeys> {
        generated_once(&self.foreign_tls_keys).await
    }

    /// A sim cluster with its own key and the default issuer: tokens it signs look like
    /// tokens from another cluster.
    pub async fn foreign_cluster(&self) -> Result<&SimCluster> {
        self.foreign
            .get_or_try_init(|| async {
                SimCluster::start(SimConfig {
                    tls_keys: Some(self.foreign_tls_keys().await?),
                    ..SimConfig::default()
                })
                .await
            })
            .await
    }

    /// The signing key of [`Lab::foreign_cluster`]: a trial's second cluster signs with it, so
    /// its tokens are foreign to the trial's own cluster.
    pub async fn foreign_key(&self) -> Result<String> {
        Ok(self.foreign_cluster().await?.signing_key_pkcs8_pem())
    }

    /// Docker for this lab: the engine, the lab's network and its gateway address (the host's
    /// address on it, where sim clusters listen for containers). Connected once.
    pub async fn docker(&self) -> Result<(Engine, String, String)> {
        once(&self.docker, async {
            let engine = Engine::connect(self.settings()).await?;
            crate::scope::uses_docker();
            cleanup::reap_orphaned_containers(&engine).await;
            let name = self.docker_network_name();
            let creating = crate::scope::begin(format!("network {name}"))
                .ok_or_else(crate::scope::stopping_error)?;
            // Claimed before it is made (see `Lab::new`).
            let claim = engine.claim_network(&name);
            engine.create_network(&name, &self.opts.run_id).await?;
            self.claims().network = Some(claim);
            drop(creating);
            let gw = engine.network_gateway(&name).await?;
            Ok((engine, name, gw))
        })
        .await
    }

    /// The owner of what the run creates in clusters (labelled with its run id).
    pub fn owner(&self) -> crate::cluster::owner::Owner {
        crate::cluster::owner::Owner::of_run(&self.opts.run_id)
    }

    /// The name of the lab's own Docker network.
    pub fn docker_network_name(&self) -> String {
        format!("authlab-{}", self.opts.run_id)
    }

    /// The lab's Kind cluster for `settings` (created or reused once per distinct settings), or
    /// its kubeconfig cluster (connected once).
    pub async fn external_cluster(
        &self,
        kind: ClusterKind,
        settings: &crate::case::model::ClusterSettings,
    ) -> Result<external::ExternalCluster> {
        let key = match kind {
            ClusterKind::Kind => {
                let base = self
                    .settings()
                    .kind_name
                    .clone()
                    .unwrap_or_else(|| "lab".into());
                crate::cluster::kind::name_for(&base, settings)
            }
            ClusterKind::Kubeconfig => "kubeconfig".to_string(),
            ClusterKind::Sim => anyhow::bail!("the sim cluster is per trial"),
            ClusterKind::Apiserver => {
                anyhow::bail!("an API server is per settings: use Lab::apiserver_cluster")
            }
        };
        let cell = {
            let mut map = self
                .external
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            map.entry(key).or_default().clone()
        };
        once(&cell, async {
            let ext = match kind {
                ClusterKind::Kind => {
                    let (engine, ..) = self.docker().await?;
                    let network = self.settings().kind_network();
                    let _turn = self.kind_creation.lock().await;
                    // kind makes its network with the first cluster; its gateway is known after.
                    let mut ext = external::from_kind(
                        self.settings(),
                        self.workdir.clone(),
                        self.cache.root().join("kind"),
                        settings,
                        engine.clone(),
                        String::new(),
                        &self.opts.run_id,
                    )
                    .await?;
                    let host = engine.network_gateway(&network).await?;
                    if let Some(o) = ext.owned.as_mut() {
                        o.host = host;
                    }
                    ext
                }
                _ => match &self.opts.kubeconfig {
                    Some((path, ctx)) => external::connect(path, ctx.as_deref(), None).await?,
                    None => external::from_kubeconfig(self.settings()).await?,
                },
            };
            self.take_turn_on(&ext).await?;
            Ok(ext)
        })
        .await
    }

    /// Says which cluster the run is about to write to, has its objects there removed however
    /// the run ends, and takes the run's turn on it (other runs may share it).
    async fn take_turn_on(&self, ext: &external::ExternalCluster) -> Result<()> {
        let run = &self.opts.run_id;
        tracing::info!(
            "cluster: context {} of {}, API server {}; authlab creates objects there labelled {}={run} and changes or deletes only those",
            ext.context,
            ext.target.kubeconfig.display(),
            ext.url,
            crate::cluster::owner::RUN,
        );
        let claim = ext.target.claim_objects(run);
        self.claims().objects.push((ext.target.clone(), claim));
        let wait = std::time::Duration::from_secs(self.settings().cluster_wait.unwrap_or(600));
        let turn = crate::cluster::turn::acquire(&ext.client, &self.owner(), wait, |msg| {
            tracing::info!("{msg}")
        })
        .await?;
        self.turns
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(turn);
        Ok(())
    }

    /// Every Kind and kubeconfig cluster the lab connected to.
    fn external_clusters(&self) -> Vec<external::ExternalCluster> {
        self.external
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .values()
            .filter_map(|c| c.get().and_then(|r| r.as_ref().ok()).cloned())
            .collect()
    }

    /// A turn on one of the run's API servers for `settings` listening on `host`: that server,
    /// held by the caller alone until the [`apiservers::Member`] is dropped (waiting while
    /// every server of the pool is held). Fails with
    /// [`crate::cluster::apiserver::binaries::NotFound`] when the binaries are missing.
    pub async fn apiserver_turn(
        &self,
        settings: &crate::case::model::ClusterSettings,
        host: &str,
    ) -> Result<apiservers::Member> {
        crate::cluster::apiserver::Binaries::locate(self.settings())?;
        let key = crate::cluster::apiserver::key(settings, host);
        let pool = {
            let mut map = self
                .apiservers
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            map.entry(key)
                .or_insert_with(|| {
                    Arc::new(apiservers::Pool::new(apiservers::pool_size(
                        self.settings().apiservers,
                    )))
                })
                .clone()
        };
        Ok(pool.take().await)
    }

    /// The API server `member` holds (of the pool for `settings` and `host`), started on first
    /// use with the run's etcd.
    pub async fn apiserver_cluster(
        &self,
        member: &apiservers::Member,
        settings: &crate::case::model::ClusterSettings,
        host: &str,
    ) -> Result<external::ExternalCluster> {
        use crate::cluster::apiserver::{self, ApiServer, ApiServerOptions, Binaries};
        let bins = Binaries::locate(self.settings())?;
        once(member.server(), async {
            let etcd_url = self.etcd(&bins).await?;
            let n = self.next_id();
            let sa_key = self.sa_key().await?;
            let tls_keys = self.tls_keys().await?;
            tracing::info!(
                "starting kube-apiserver {} on {host} (up to {} s)",
                bins.apiserver.display(),
                apiserver::APISERVER_TIMEOUT.as_secs()
            );
            let server = ApiServer::start(ApiServerOptions {
                bins: &bins,
                etcd_url: &etcd_url,
                etcd_prefix: format!("/authlab/{n}"),
                dir: self.workdir.join(format!("apiserver-{n}")),
                host: host.to_string(),
                settings,
                sa_key_pem: &sa_key,
                tls_keys: &tls_keys,
                run_id: &self.opts.run_id,
            })
            .await?;
            let (ready, controllers) = server.startup;
            tracing::info!(
                "kube-apiserver ready at {} in {} ms, {} in {} ms",
                server.url,
                ready.as_millis(),
                if server.real_controllers {
                    "kube-controller-manager"
                } else {
                    "authlab's controllers"
                },
                controllers.as_millis()
            );
            let (kubeconfig, url, audit) = (
                server.kubeconfig.clone(),
                server.url.clone(),
                server.audit.clone(),
            );
            self.apiserver_processes
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push(server);
            let mut ext = external::connect(&kubeconfig, None, None)
                .await
                .with_context(|| format!("connecting to the API server at {url}"))?;
            ext.owned = Some(external::Owned {
                signing_key_pem: sa_key,
                host: host.to_string(),
                kubeconfig,
                audit: Some(audit),
                node_ip: None,
                cert_ips: crate::sim::serving_cert_ips(&[host.to_string()]),
            });
            Ok(ext)
        })
        .await
    }

    /// The run's etcd (started on first use).
    async fn etcd(&self, bins: &crate::cluster::apiserver::Binaries) -> Result<String> {
        once(&self.etcd, async {
            tracing::info!(
                "starting etcd {} (up to {} s)",
                bins.etcd.display(),
                crate::cluster::apiserver::ETCD_TIMEOUT.as_secs()
            );
            let etcd = crate::cluster::apiserver::Etcd::start(
                &bins.etcd,
                &self.workdir.join("etcd"),
                &self.opts.run_id,
            )
            .await?;
            tracing::info!(
                "etcd ready at {} in {} ms",
                etcd.url,
                etcd.startup.as_millis()
            );
            let url = etcd.url.clone();
            *self
                .etcd_process
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(etcd);
            Ok(url)
        })
        .await
    }

    /// The image the cluster `ext` runs for `spec`: on Kind, authlab's local image, loaded
    /// into the cluster's nodes once per run; elsewhere the one `AUTHLAB_POD_IMAGE` names
    /// (`{flavour}` and `{version}` filled in), else the official image, which the cluster
    /// pulls.
    pub async fn pod_image(
        &self,
        spec: &ServerSpec,
        ext: &external::ExternalCluster,
    ) -> Result<String> {
        let Some(kc) = ext.kind.clone() else {
            return Ok(match &self.settings().pod_image {
                Some(t) => t
                    .replace("{flavour}", &spec.flavour.to_string())
                    .replace("{version}", &spec.version),
                None => crate::container::official_tag(spec),
            });
        };
        let cell = {
            let mut map = self
                .kind_images
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            map.entry((kc.name.clone(), spec.clone()))
                .or_default()
                .clone()
        };
        once(&cell, async {
            let image = self.server_image(spec).await?.reference;
            tracing::info!("{spec}: loading {image} into Kind cluster {}", kc.name);
            let img = image.clone();
            tokio::task::spawn_blocking(move || kc.load_image(&img))
                .await
                .context("the kind task failed")??;
            Ok(image)
        })
        .await
    }

    /// The server for `spec` outside a Kind cluster: a container on the `kind` Docker network, so
    /// it reaches the API server at the internal address (`https://<cluster>-control-plane:6443`)
    /// and pods reach it at its address on that network. Started once per run.
    pub async fn kind_network_server(&self, spec: &ServerSpec) -> Result<Arc<ServerHandle>> {
        let cell = cell_for(&self.kind_network, spec);
        once(&cell, async {
            let network = self.settings().kind_network();
            self.start_container_on(spec, None, None, Some(&network))
                .await
                .map(Arc::new)
        })
        .await
    }

    /// External Secrets Operator installed in the cluster of `kubeconfig` with `helm` (once per
    /// run; an existing release is upgraded in place, which is a no-op at the same version).
    pub async fn eso_installed(
        &self,
        helm: std::path::PathBuf,
        kubeconfig: std::path::PathBuf,
    ) -> Result<()> {
        once(&self.eso, async move {
                let source = crate::eso::install::ChartSource::from_settings(self.settings());
                tracing::info!(
                    "installing External Secrets Operator ({source:?}) with helm; waiting up to 300 s for its deployments"
                );
                let started = std::time::Instant::now();
                let res = tokio::task::spawn_blocking(move || {
                    crate::eso::install::install(
                        &helm,
                        &source,
                        &kubeconfig,
                        std::time::Duration::from_secs(300),
                    )
                })
                .await
                .context("the helm task failed")
                .and_then(|r| r);
                if res.is_ok() {
                    tracing::info!(
                        "External Secrets Operator ready in {} s",
                        started.elapsed().as_secs()
                    );
                }
                res
        })
        .await
    }

    /// The local server image for `spec`, built once per run when missing or stale.
    pub async fn server_image(&self, spec: &ServerSpec) -> Result<crate::container::ServerImage> {
        let cell = cell_for(&self.images, spec);
        once(&cell, async {
            let (engine, ..) = self.docker().await?;
            let progress = |line: &str| tracing::info!("{spec}: {line}");
            let bin = self.cache.ensure(spec, &progress).await?;
            crate::container::resolve_image(&engine, spec, &bin, self.settings().pull, &progress)
                .await
        })
        .await
    }

    /// Starts a server container on the lab's network; `pod` makes it a pod (its token, CA and
    /// service variables), `trial` labels it for one trial.
    pub async fn start_container(
        &self,
        spec: &ServerSpec,
        pod: Option<crate::container::PodIdentity>,
        trial: Option<&str>,
    ) -> Result<ServerHandle> {
        self.start_container_on(spec, pod, trial, None).await
    }

    /// [`Self::start_container`] on `network` instead of the lab's own network.
    async fn start_container_on(
        &self,
        spec: &ServerSpec,
        pod: Option<crate::container::PodIdentity>,
        trial: Option<&str>,
        network: Option<&str>,
    ) -> Result<ServerHandle> {
        let (engine, lab_network, _) = self.docker().await?;
        let server_image = self.server_image(spec).await?;
        // A pod on the lab's network joins the pods' namespace and listens on a port of its.
        let shared = match (&pod, network) {
            (Some(_), None) => {
                let net = self
                    .pod_network(&engine, &lab_network, &server_image, spec)
                    .await?;
                Some(Arc::new(crate::container::SharedNetns {
                    holder: net.holder().to_string(),
                    slot: net.slot().await?,
                }))
            }
            _ => None,
        };
        let official = server_image.official();
        let crate::container::ServerImage {
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
            self.opts.run_id,
            match trial {
                Some(_) => format!("t{}", self.next_id()),
                None => format!("{}-{}", spec.flavour, spec.version.replace('.', "-")),
            }
        );
        // A second shared server of the same version on another network needs its own name.
        let (name, network) = match network {
            Some(other) if other != lab_network => (format!("{name}-{other}"), other.to_string()),
            _ => (name, lab_network),
        };
        let opts = crate::container::ContainerServerOptions {
            image,
            official,
            flavour: spec.flavour,
            name: name.clone(),
            run_id: self.opts.run_id.clone(),
            trial: trial.map(str::to_string),
            network: Some(network),
            config_hcl: crate::server::config::render(&cfg),
            env: Vec::new(),
            pod,
            host_dir: self.workdir.join(&name),
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
    /// image), on the lab's network, and removed at shutdown.
    async fn pod_network(
        &self,
        engine: &Engine,
        network: &str,
        image: &crate::container::ServerImage,
        spec: &ServerSpec,
    ) -> Result<Arc<crate::container::PodNetwork>> {
        once(&self.pod_network, async {
            let name = format!("authlab-{}-pods", self.opts.run_id);
            let net = crate::container::PodNetwork::create(
                engine,
                &name,
                &self.opts.run_id,
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

    /// PEM of a CA that has nothing to do with any cluster (another name, another key).
    pub fn unrelated_ca(&self) -> Result<String> {
        if let Some(pem) = self.unrelated_ca.get() {
            return Ok(pem.clone());
        }
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            crate::sim::go_name("authlab-unrelated-ca"),
        );
        let key =
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)?;
        let pem = params.self_signed(&key)?.pem();
        let _ = self.unrelated_ca.set(pem.clone());
        Ok(pem)
    }

    /// Stops every server and removes scratch files unless kept.
    pub async fn shutdown(&self) {
        let mut cells: Vec<ServerCell> = Vec::new();
        for map in [&self.servers, &self.kind_network] {
            let mut map = map.lock().expect("server map lock");
            cells.extend(map.drain().map(|(_, v)| v));
        }
        // Stopped together: each waits for its server to exit.
        let stops = cells.into_iter().filter_map(|cell| {
            let server = Arc::into_inner(cell)?.into_inner()?.ok()?;
            let mut server = Arc::into_inner(server)?;
            Some(async move { server.stop().await })
        });
        futures_util::future::join_all(stops).await;
        let apiservers: Vec<_> = std::mem::take(
            &mut *self
                .apiserver_processes
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        let etcd = self
            .etcd_process
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if !apiservers.is_empty() || etcd.is_some() {
            let _ = tokio::task::spawn_blocking(move || {
                for mut a in apiservers {
                    a.stop();
                }
                if let Some(mut e) = etcd {
                    e.stop();
                }
            })
            .await;
        }
        // The run's objects in Kind and kubeconfig clusters (namespaces too), then its turns.
        let turns: Vec<_> = std::mem::take(
            &mut *self
                .turns
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        for t in turns {
            t.release().await;
        }
        for ext in self.external_clusters() {
            match crate::cluster::owner::sweep(&ext.client, std::slice::from_ref(&self.opts.run_id))
                .await
            {
                Ok(gone) => {
                    if !gone.is_empty() {
                        tracing::debug!("removed from the cluster: {}", gone.join(", "));
                    }
                    if gone.iter().any(|g| g.starts_with("Namespace ")) {
                        tracing::info!(
                            "waiting (up to 60 s) for the cluster to finish deleting this run's namespaces"
                        );
                        let left = crate::cluster::owner::namespaces_gone(
                            &ext.client,
                            &self.opts.run_id,
                            std::time::Duration::from_secs(60),
                        )
                        .await;
                        if !left.is_empty() {
                            tracing::warn!(
                                "the cluster has not finished deleting namespace(s) {} after 60 s (finalizers?); they are labelled {}={}",
                                left.join(", "),
                                crate::cluster::owner::RUN,
                                self.opts.run_id
                            );
                        }
                    }
                    let mut claims = self.claims();
                    if let Some(at) = claims.objects.iter().position(|(t, _)| *t == ext.target) {
                        claims.objects.remove(at).1.release();
                    }
                }
                Err(e) => tracing::warn!(
                    "removing this run's objects from the cluster of {}: {e:#}",
                    ext.target.kubeconfig.display()
                ),
            }
        }
        let keep = self.opts.keep || self.settings().keep_cluster;
        for kc in self.external_clusters().into_iter().filter_map(|e| e.kind) {
            let down = tokio::task::spawn_blocking(move || kc.down(keep)).await;
            if let Ok(Err(e)) = down {
                tracing::warn!("{e:#}");
            }
        }
        if let Some(Ok((engine, network, _))) = self.docker.get() {
            if let Some(Ok(pods)) = self.pod_network.get()
                && let Err(e) = pods.remove(engine).await
            {
                tracing::warn!("{e:#}");
            }
            let removed = engine.remove_network(network).await;
            if let Err(e) = &removed {
                tracing::warn!("{e:#}");
            }
            let mut claims = self.claims();
            claims.network = claims
                .network
                .take()
                .and_then(|c| c.released_if(removed.is_ok()));
        }
        if let Some(claim) = self.claims().workdir.take() {
            let _ = std::fs::remove_dir_all(&self.workdir);
            claim.release();
        }
        self.run.done();
    }
}
