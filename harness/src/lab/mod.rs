//! The lab: what a run shares between its trials, by concern — its keys ([`keys`]), Docker
//! ([`docker`]), its servers ([`servers`]) and its clusters ([`clusters`]), over the run's
//! options, scratch directory and binary cache ([`RunInfo`]). Trials ([`crate::trial`]) run in
//! it; each part is made on first use and shut down in turn, servers first.

pub mod apiservers;
pub mod clusters;
pub mod docker;
pub mod incluster;
pub mod keys;
mod once;
pub mod pool;
pub mod servers;
pub mod state;
pub mod worlds;

pub use once::SharedError;

use std::{
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use anyhow::{Context, Result};

use crate::{case::matrix::ClusterKind, cleanup, server::binary::BinaryCache, settings::Settings};

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

/// A new run id: `r` + 8 hex digits.
pub fn new_run_id() -> String {
    format!("r{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

/// What every part of the lab knows of the run: its options, scratch directory and binary
/// cache.
pub struct RunInfo {
    /// The options the lab was made with.
    pub opts: LabOptions,
    /// Scratch directory of this run.
    pub workdir: PathBuf,
    /// The binary cache.
    pub cache: BinaryCache,
    counter: AtomicU64,
}

impl RunInfo {
    /// The environment's settings.
    pub fn settings(&self) -> &Settings {
        &self.opts.settings
    }

    /// The run's id.
    pub fn run_id(&self) -> &str {
        &self.opts.run_id
    }

    /// A number unique within this run.
    pub fn next_id(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::Relaxed)
    }
}

/// State shared by all trials of a run, by concern.
pub struct Lab {
    info: Arc<RunInfo>,
    keys: Arc<keys::Keys>,
    docker: Arc<docker::Docker>,
    servers: Arc<servers::Servers>,
    clusters: Arc<clusters::Clusters>,
    /// The scope's claim on the scratch directory (none when it is kept).
    workdir_claim: Mutex<Option<crate::scope::Tracked>>,
    /// Held while the lab lives: proves the run alive to other runs and `authlab clean`.
    run: crate::scope::Run,
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
        let info = Arc::new(RunInfo {
            opts,
            workdir,
            cache,
            counter: AtomicU64::new(0),
        });
        let keys = Arc::new(keys::Keys::default());
        let docker = Arc::new(docker::Docker::new(info.clone()));
        Ok(Lab {
            servers: Arc::new(servers::Servers::new(info.clone(), docker.clone())),
            clusters: Arc::new(clusters::Clusters::new(
                info.clone(),
                docker.clone(),
                keys.clone(),
            )),
            info,
            keys,
            docker,
            workdir_claim: Mutex::new(workdir_claim),
            run,
        })
    }

    /// The options the lab was made with.
    pub fn options(&self) -> &LabOptions {
        &self.info.opts
    }

    /// The environment's settings.
    pub fn settings(&self) -> &Settings {
        self.info.settings()
    }

    /// Scratch directory of this run.
    pub fn workdir(&self) -> &std::path::Path {
        &self.info.workdir
    }

    /// The binary cache.
    pub fn cache(&self) -> &BinaryCache {
        &self.info.cache
    }

    /// A number unique within this lab.
    pub fn next_id(&self) -> u64 {
        self.info.next_id()
    }

    /// The run's keys.
    pub fn keys(&self) -> &keys::Keys {
        &self.keys
    }

    /// Docker as the run uses it.
    pub fn docker(&self) -> &docker::Docker {
        &self.docker
    }

    /// The run's shared servers.
    pub fn servers(&self) -> &servers::Servers {
        &self.servers
    }

    /// The clusters the run shares between trials.
    pub fn clusters(&self) -> &clusters::Clusters {
        &self.clusters
    }

    /// Where the run's API servers listen (`--cluster apiserver`) when Docker is there: the
    /// Docker network's gateway, so that one pool per setting serves servers outside (a local
    /// process reaches that address of the host as it reaches loopback) and pods alike. None
    /// without Docker: then a local process's API servers listen on loopback.
    pub async fn apiserver_gateway(&self) -> Option<String> {
        self.docker.connected().await.ok().map(|d| d.gateway)
    }

    /// Takes the run's trials before they start, where knowing them all helps: on
    /// `--cluster apiserver`, each setting's pool is sized by its trials and its first server
    /// starts at once; on `--cluster kind`, the clusters of every setting are created in turn
    /// from the start, not when a setting's first trial comes.
    pub async fn plan(&self, trials: &[crate::case::matrix::Trial]) {
        let shared: Vec<_> = trials.iter().filter(|t| t.cluster.is_shared()).collect();
        self.clusters.plan_turns(&shared);
        self.plan_kind(trials);
        let settings: Vec<_> = trials
            .iter()
            .filter(|t| t.cluster == crate::case::matrix::ClusterKind::Apiserver)
            .map(|t| &t.case.case.cluster.settings)
            .collect();
        if settings.is_empty() {
            return;
        }
        let host = self
            .apiserver_gateway()
            .await
            .unwrap_or_else(|| "127.0.0.1".to_string());
        self.clusters.plan_apiservers(&settings, &host);
    }

    /// On `--cluster kind`: each setting's cluster, the images of the servers that run as its
    /// pods, and the first server on the Kind network of each version whose trials run outside
    /// (once the first cluster has made that network).
    fn plan_kind(&self, trials: &[crate::case::matrix::Trial]) {
        use crate::{case::model::Topology, server::ServerSpec};
        let mut kind: Vec<(crate::case::model::ClusterSettings, Vec<ServerSpec>)> = Vec::new();
        let mut outside: Vec<ServerSpec> = Vec::new();
        let on_kind = trials
            .iter()
            .filter(|t| t.cluster == ClusterKind::Kind && t.not_applicable.is_none());
        for t in on_kind {
            let s = &t.case.case.cluster.settings;
            let at = match kind.iter().position(|(k, _)| k == s) {
                Some(at) => at,
                None => {
                    kind.push((s.clone(), Vec::new()));
                    kind.len() - 1
                }
            };
            let specs = if t.case.case.topology == Topology::Inside {
                &mut kind[at].1
            } else {
                &mut outside
            };
            if !specs.contains(&t.server) {
                specs.push(t.server.clone());
            }
        }
        let Some((first, _)) = kind.first().cloned() else {
            return;
        };
        self.clusters.plan_kind(kind);
        let (clusters, servers) = (self.clusters.clone(), self.servers.clone());
        self.clusters.keep_warmup(tokio::spawn(async move {
            if clusters.external(ClusterKind::Kind, &first).await.is_err() {
                return;
            }
            let started = outside.iter().map(|spec| {
                let servers = servers.clone();
                async move {
                    if let Err(e) = servers.on_kind_network(spec).await {
                        tracing::debug!("starting a {spec} server ahead of the trials: {e:#}");
                    }
                }
            });
            futures_util::future::join_all(started).await;
        }));
    }

    /// Shuts the parts down in turn: servers (they use the clusters and Docker), clusters (the
    /// run's objects removed while they are up, then Kind clusters deleted), Docker (the pods'
    /// holder and the run's network), then the scratch directory unless kept.
    pub async fn shutdown(&self) {
        // Nothing begun ahead of the trials may start a server while they stop.
        self.clusters.stop_warmups().await;
        self.servers.shutdown().await;
        self.clusters.shutdown().await;
        self.docker.shutdown().await;
        if let Some(claim) = once::locked(&self.workdir_claim).take() {
            let _ = std::fs::remove_dir_all(&self.info.workdir);
            claim.release();
        }
        self.run.done();
    }
}
