//! The run's clusters other than the per-trial sim: Kind clusters (one per distinct settings),
//! the kubeconfig cluster, the pools of API servers on the run's one etcd, the turns the run
//! holds on clusters other runs may share, the images loaded into Kind and ESO.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use anyhow::{Context, Result};

use super::{
    RunInfo, apiservers,
    docker::{Connected, Docker},
    keys::Keys,
    once::{Once, OnceMap, cell_for, locked, made, once},
};
use crate::{
    case::{matrix::ClusterKind, model::ClusterSettings},
    cluster::{
        apiserver::{ApiServer, Binaries, Etcd},
        external::{self, ExternalCluster},
        owner::{Owner, Target},
        turn::Turn,
    },
    server::ServerSpec,
};

/// The clusters a run shares between its trials.
pub struct Clusters {
    info: Arc<RunInfo>,
    docker: Arc<Docker>,
    keys: Arc<Keys>,
    /// The kubeconfig cluster, and the Kind clusters by name (one per distinct settings).
    external: OnceMap<String, ExternalCluster>,
    /// Kind clusters are created one at a time (each takes both cores for a while).
    kind_creation: tokio::sync::Mutex<()>,
    /// Server images loaded into Kind clusters: (cluster, server) → image.
    kind_images: OnceMap<(String, ServerSpec), String>,
    /// The run's etcd, for its API servers (`--cluster apiserver`).
    etcd: Once<String>,
    etcd_process: Mutex<Option<Etcd>>,
    /// A pool of API servers per distinct settings and listen address.
    apiservers: super::pool::PoolMap<String, crate::cluster::external::ExternalCluster>,
    /// The run's trials per distinct settings, when the run said (sizes the pools).
    planned: Mutex<HashMap<String, usize>>,
    /// What the run's plan began before any trial needs it: each setting's first API server,
    /// the Kind clusters; stopped at shutdown if still under way.
    warmups: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    apiserver_processes: Mutex<Vec<ApiServer>>,
    eso: Once<()>,
    /// The worlds of trials on the shared (Kind, kubeconfig) clusters: turns by object.
    worlds: Arc<super::worlds::Worlds>,
    /// Each planned trial's place in the run's order (turns on shared clusters follow it).
    order: Mutex<HashMap<String, usize>>,
    /// The run's turns on Kind and kubeconfig clusters other runs may use too.
    turns: Mutex<Vec<Turn>>,
    /// The scope's claims on the run's objects in each cluster it writes to.
    objects: Mutex<Vec<(Target, crate::scope::Tracked)>>,
}

impl Clusters {
    pub(crate) fn new(info: Arc<RunInfo>, docker: Arc<Docker>, keys: Arc<Keys>) -> Self {
        Clusters {
            info,
            docker,
            keys,
            external: OnceMap::default(),
            kind_creation: tokio::sync::Mutex::new(()),
            kind_images: OnceMap::default(),
            etcd: Once::new(),
            etcd_process: Mutex::new(None),
            apiservers: Mutex::new(HashMap::new()),
            planned: Mutex::new(HashMap::new()),
            warmups: Mutex::new(Vec::new()),
            apiserver_processes: Mutex::new(Vec::new()),
            eso: Once::new(),
            worlds: Arc::default(),
            order: Mutex::new(HashMap::new()),
            turns: Mutex::new(Vec::new()),
            objects: Mutex::new(Vec::new()),
        }
    }

    /// The owner of what the run creates in clusters (labelled with its run id).
    pub fn owner(&self) -> Owner {
        Owner::of_run(self.info.run_id())
    }

    /// The run's Kind cluster for `settings` (created or reused once per distinct settings), or
    /// its kubeconfig cluster (connected once).
    pub async fn external(
        &self,
        kind: ClusterKind,
        settings: &ClusterSettings,
    ) -> Result<ExternalCluster> {
        let key = match kind {
            ClusterKind::Kind => {
                let base = self
                    .info
                    .settings()
                    .kind_name
                    .clone()
                    .unwrap_or_else(|| "lab".into());
                crate::cluster::kind::name_for(&base, settings)
            }
            ClusterKind::Kubeconfig => "kubeconfig".to_string(),
            ClusterKind::Sim => anyhow::bail!("the sim cluster is per trial"),
            ClusterKind::Apiserver => {
                anyhow::bail!("an API server is per settings: use Clusters::apiserver")
            }
        };
        let cell = cell_for(&self.external, &key);
        once(&cell, async {
            let ext = match kind {
                ClusterKind::Kind => {
                    let Connected { engine, .. } = self.docker.connected().await?;
                    let network = self.info.settings().kind_network();
                    let _turn = self.kind_creation.lock().await;
                    // kind makes its network with the first cluster; its gateway is known after.
                    let mut ext = external::from_kind(
                        self.info.settings(),
                        self.info.workdir.clone(),
                        self.info.cache.root().join("kind"),
                        settings,
                        engine.clone(),
                        String::new(),
                        self.info.run_id(),
                    )
                    .await?;
                    let host = engine.network_gateway(&network).await?;
                    if let Some(o) = ext.owned.as_mut() {
                        o.host = host;
                    }
                    ext
                }
                _ => match &self.info.opts.kubeconfig {
                    Some((path, ctx)) => external::connect(path, ctx.as_deref(), None).await?,
                    None => external::from_kubeconfig(self.info.settings()).await?,
                },
            };
            self.take_turn_on(&ext).await?;
            Ok(ext)
        })
        .await
    }

    /// Says which cluster the run is about to write to, has its objects there removed however
    /// the run ends, and takes the run's turn on it (other runs may share it).
    async fn take_turn_on(&self, ext: &ExternalCluster) -> Result<()> {
        let run = self.info.run_id();
        tracing::info!(
            "cluster: context {} of {}, API server {}; authlab creates objects there labelled {}={run} and changes or deletes only those",
            ext.context,
            ext.target.kubeconfig.display(),
            ext.url,
            crate::cluster::owner::RUN,
        );
        let claim = ext.target.claim_objects(run);
        locked(&self.objects).push((ext.target.clone(), claim));
        let wait = std::time::Duration::from_secs(self.info.settings().cluster_wait.unwrap_or(600));
        let turn = crate::cluster::turn::acquire(&ext.client, &self.owner(), wait, |msg| {
            tracing::info!("{msg}")
        })
        .await?;
        locked(&self.turns).push(turn);
        Ok(())
    }

    /// A turn on one of the run's API servers for `settings` listening on `host`: that server,
    /// held by the caller alone until the [`apiservers::Member`] is dropped (waiting while
    /// every server of the pool is held). Fails with
    /// [`crate::cluster::apiserver::binaries::NotFound`] when the binaries are missing.
    pub async fn apiserver_turn(
        &self,
        settings: &ClusterSettings,
        host: &str,
    ) -> Result<apiservers::Member> {
        Binaries::locate(self.info.settings())?;
        let key = crate::cluster::apiserver::key(settings, host);
        let planned = locked(&self.planned)
            .get(&crate::cluster::apiserver::settings_key(settings))
            .copied();
        let pool = super::pool::pool_for(&self.apiservers, &key, || {
            apiservers::pool_size(self.info.settings().apiservers, planned)
        });
        Ok(pool.take().await)
    }

    /// Creates (or reuses) the Kind clusters of the settings in `plan` one after another, in
    /// the background, and loads into each the images of the servers that run as its pods
    /// (beside the next creation); a creation or load that fails here is tried again by the
    /// first trial that needs it (and fails it).
    pub fn plan_kind(self: &Arc<Self>, plan: Vec<(ClusterSettings, Vec<ServerSpec>)>) {
        let me = self.clone();
        self.keep_warmup(tokio::spawn(async move {
            // Owned by this task: stopped with it.
            let mut loads = tokio::task::JoinSet::new();
            for (s, pods) in plan {
                let ext = match me.external(ClusterKind::Kind, &s).await {
                    Ok(ext) => ext,
                    Err(e) => {
                        tracing::debug!("creating a Kind cluster ahead of the trials: {e:#}");
                        continue;
                    }
                };
                for spec in pods {
                    let (me, ext) = (me.clone(), ext.clone());
                    loads.spawn(async move {
                        if let Err(e) = me.pod_image(&spec, &ext).await {
                            tracing::debug!("loading {spec}'s image ahead of the trials: {e:#}");
                        }
                    });
                }
            }
            while loads.join_next().await.is_some() {}
        }));
    }

    /// Keeps `task`, something begun ahead of the trials, to be stopped at shutdown if it is
    /// still under way.
    pub(crate) fn keep_warmup(&self, task: tokio::task::JoinHandle<()>) {
        locked(&self.warmups).push(task);
    }

    /// Stops what was begun ahead of the trials and is still under way.
    pub(crate) async fn stop_warmups(&self) {
        let warmups = std::mem::take(&mut *locked(&self.warmups));
        for w in warmups {
            w.abort();
            let _ = w.await;
        }
    }

    /// A trial's turn on the shared cluster `name` (a Kind cluster's name, or the kubeconfig
    /// cluster's) for the objects of `world`: beside trials whose objects it does not touch,
    /// with those of the same objects, after those it collides with (see
    /// [`super::worlds`]). Held until dropped.
    pub async fn enter(
        &self,
        name: &str,
        trial: &str,
        world: crate::cluster::share::World,
    ) -> super::worlds::Stay {
        let rank = locked(&self.order).get(trial).copied();
        self.worlds.enter(name, rank, world).await
    }

    /// Takes the run's order of the trials on shared clusters: a trial waiting for its turn
    /// there goes before those after it (in particular before trials that need no worker slot
    /// and so start waiting at once).
    pub fn plan_turns(&self, trials: &[&crate::case::matrix::Trial]) {
        let mut order = locked(&self.order);
        for (i, t) in trials.iter().enumerate() {
            order.insert(t.name.clone(), i);
        }
    }

    /// Takes the run's plan for `--cluster apiserver`: how many trials each distinct setting
    /// has (sizing its pool), and starts each setting's first API server on `host` at once,
    /// in the background, so that no trial late in the run waits for a start-up. A start-up
    /// that fails here is retried by the first trial that needs the server (and fails it).
    pub fn plan_apiservers(self: &Arc<Self>, settings: &[&ClusterSettings], host: &str) {
        if Binaries::locate(self.info.settings()).is_err() {
            return;
        }
        let mut planned = locked(&self.planned);
        let mut first = Vec::new();
        for s in settings {
            let n = planned
                .entry(crate::cluster::apiserver::settings_key(s))
                .or_insert(0);
            if *n == 0 {
                first.push((*s).clone());
            }
            *n += 1;
        }
        drop(planned);
        for s in first {
            let (me, host) = (self.clone(), host.to_string());
            self.keep_warmup(tokio::spawn(async move {
                let Ok(member) = me.apiserver_turn(&s, &host).await else {
                    return;
                };
                if let Err(e) = me.apiserver(&member, &s, &host).await {
                    tracing::debug!("starting an API server ahead of the trials: {e:#}");
                }
            }));
        }
    }

    /// The API server `member` holds (of the pool for `settings` and `host`), started on first
    /// use with the run's etcd.
    pub async fn apiserver(
        &self,
        member: &apiservers::Member,
        settings: &ClusterSettings,
        host: &str,
    ) -> Result<ExternalCluster> {
        use crate::cluster::apiserver::{self, ApiServerOptions};
        let bins = Binaries::locate(self.info.settings())?;
        once(member.server(), async {
            let etcd_url = self.etcd(&bins).await?;
            let n = self.info.next_id();
            let sa_key = self.keys.sa_key().await?;
            let tls_keys = self.keys.tls_keys().await?;
            tracing::info!(
                "starting kube-apiserver {} on {host} (up to {} s)",
                bins.apiserver.display(),
                apiserver::APISERVER_TIMEOUT.as_secs()
            );
            let server = ApiServer::start(ApiServerOptions {
                bins: &bins,
                etcd_url: &etcd_url,
                etcd_prefix: format!("/authlab/{n}"),
                dir: self.info.workdir.join(format!("apiserver-{n}")),
                host: host.to_string(),
                settings,
                sa_key_pem: &sa_key,
                tls_keys: &tls_keys,
                run_id: self.info.run_id(),
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
            locked(&self.apiserver_processes).push(server);
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
    async fn etcd(&self, bins: &Binaries) -> Result<String> {
        once(&self.etcd, async {
            tracing::info!(
                "starting etcd {} (up to {} s)",
                bins.etcd.display(),
                crate::cluster::apiserver::ETCD_TIMEOUT.as_secs()
            );
            let etcd = Etcd::start(
                &bins.etcd,
                &self.info.workdir.join("etcd"),
                self.info.run_id(),
            )
            .await?;
            tracing::info!(
                "etcd ready at {} in {} ms",
                etcd.url,
                etcd.startup.as_millis()
            );
            let url = etcd.url.clone();
            *locked(&self.etcd_process) = Some(etcd);
            Ok(url)
        })
        .await
    }

    /// The image the cluster `ext` runs for `spec`: on Kind, authlab's local image, loaded
    /// into the cluster's nodes once per run; elsewhere the one `AUTHLAB_POD_IMAGE` names
    /// (`{flavour}` and `{version}` filled in), else the official image, which the cluster
    /// pulls.
    pub async fn pod_image(&self, spec: &ServerSpec, ext: &ExternalCluster) -> Result<String> {
        let Some(kc) = ext.kind.clone() else {
            return Ok(match &self.info.settings().pod_image {
                Some(t) => t
                    .replace("{flavour}", &spec.flavour.to_string())
                    .replace("{version}", &spec.version),
                None => crate::container::official_tag(spec),
            });
        };
        let cell = cell_for(&self.kind_images, &(kc.name.clone(), spec.clone()));
        once(&cell, async {
            let image = self.docker.server_image(spec).await?.reference;
            tracing::info!("{spec}: loading {image} into Kind cluster {}", kc.name);
            let img = image.clone();
            tokio::task::spawn_blocking(move || kc.load_image(&img))
                .await
                .context("the kind task failed")??;
            Ok(image)
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
            let source = crate::eso::install::ChartSource::from_settings(self.info.settings());
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

    /// Stops the API servers and etcd, releases the run's turns, removes the run's objects from
    /// Kind and kubeconfig clusters (namespaces too), then deletes the Kind clusters it made
    /// (unless kept).
    pub(crate) async fn shutdown(&self) {
        self.stop_warmups().await;
        let apiservers = std::mem::take(&mut *locked(&self.apiserver_processes));
        let etcd = locked(&self.etcd_process).take();
        if !apiservers.is_empty() || etcd.is_some() {
            let _ = tokio::task::spawn_blocking(move || {
                // At once: each waits up to 10 s for its processes to exit after SIGTERM.
                std::thread::scope(|s| {
                    for mut a in apiservers {
                        s.spawn(move || a.stop());
                    }
                });
                if let Some(mut e) = etcd {
                    e.stop();
                }
            })
            .await;
        }
        let turns = std::mem::take(&mut *locked(&self.turns));
        for t in turns {
            t.release().await;
        }
        let clusters = made(&self.external);
        for ext in &clusters {
            self.sweep(ext).await;
        }
        let keep = self.info.opts.keep || self.info.settings().keep_cluster;
        for kc in clusters.into_iter().filter_map(|e| e.kind) {
            let down = tokio::task::spawn_blocking(move || kc.down(keep)).await;
            if let Ok(Err(e)) = down {
                tracing::warn!("{e:#}");
            }
        }
    }

    /// Removes the run's objects from `ext`, waiting (up to 60 s) for its namespaces to go.
    async fn sweep(&self, ext: &ExternalCluster) {
        let run = self.info.run_id();
        let gone = match crate::cluster::owner::sweep(&ext.client, &[run.to_string()]).await {
            Ok(gone) => gone,
            Err(e) => {
                tracing::warn!(
                    "removing this run's objects from the cluster of {}: {e:#}",
                    ext.target.kubeconfig.display()
                );
                return;
            }
        };
        if !gone.is_empty() {
            tracing::debug!("removed from the cluster: {}", gone.join(", "));
        }
        if gone.iter().any(|g| g.starts_with("Namespace ")) {
            tracing::info!(
                "waiting (up to 60 s) for the cluster to finish deleting this run's namespaces"
            );
            let left = crate::cluster::owner::namespaces_gone(
                &ext.client,
                run,
                std::time::Duration::from_secs(60),
            )
            .await;
            if !left.is_empty() {
                tracing::warn!(
                    "the cluster has not finished deleting namespace(s) {} after 60 s (finalizers?); they are labelled {}={run}",
                    left.join(", "),
                    crate::cluster::owner::RUN,
                );
            }
        }
        let mut objects = locked(&self.objects);
        if let Some(at) = objects.iter().position(|(t, _)| *t == ext.target) {
            objects.remove(at).1.release();
        }
    }
}
