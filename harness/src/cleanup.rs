//! What killed runs left behind: reaped by the next run, and listed and removed by
//! `authlab clean`. (What a live run made is its scope's: [`crate::scope`].)

use crate::scope::Owner;
use std::path::{Path, PathBuf};

/// Removes scratch directories of runs whose process is gone (killed runs), keeping those of
/// live runs and of runs that asked to keep them (no `pid` file).
pub fn reap_orphaned_workdirs() {
    for dir in scratch_dirs(&std::env::temp_dir()) {
        // Only a run whose lock is free is provably over; one that asked to keep its files
        // has no `pid` file.
        if owner_of_dir(&dir) == Owner::Gone && dir.join("pid").exists() {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

/// The owner of a scratch directory `authlab-<run id>`.
fn owner_of_dir(dir: &Path) -> Owner {
    dir.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("authlab-"))
        .map_or(Owner::Unknown, crate::scope::owner)
}

/// Kills labelled processes of runs that are provably over (their lock is free): servers, and
/// what a wrapper binary forked, left by a run that was SIGKILLed.
///
/// A watchdog is left alone: one whose run was just killed is reaping it right now (killing it
/// mid-reap would leave the rest), and it exits by itself when done.
pub fn reap_orphaned_processes() {
    for (pid, run) in crate::scope::process::find_leftover_processes() {
        if crate::scope::owner(&run) == Owner::Gone && !is_watchdog(pid) {
            crate::scope::process::kill_process(pid);
        }
    }
}

/// Whether process `pid` is a run's watchdog (`authlab __watch`).
fn is_watchdog(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
        c.split(|b| *b == 0)
            .any(|arg| arg == crate::scope::WATCHDOG.as_bytes())
    })
}

/// Removes containers and networks of runs that were killed (their labels name a run whose
/// process is gone).
pub async fn reap_orphaned_containers(engine: &crate::container::Engine) {
    if let Ok(n) = engine.reap_orphans().await
        && n > 0
    {
        tracing::info!("removed {n} container(s)/network(s) left by killed runs");
    }
}

/// What authlab runs left on this machine, for `authlab clean`.
pub struct Leftovers {
    procs: Vec<(u32, String)>,
    dirs: Vec<PathBuf>,
    docker: Option<(
        crate::container::Engine,
        Vec<crate::container::ManagedObject>,
    )>,
    kind_clusters: Vec<String>,
    /// The `kind` executable, when there is one.
    kind: Option<crate::cluster::kind::Kind>,
    /// `authlab-*` Kind clusters left alone (without `--force`).
    kept_kind: Vec<String>,
    /// The kubeconfig cluster (`AUTHLAB_KUBECONFIG`), and the runs over whose objects are
    /// there, with those objects.
    cluster: Option<(
        crate::cluster::owner::Target,
        std::collections::BTreeMap<String, Vec<String>>,
    )>,
    /// Runs that are alive, whose objects are kept.
    live: Vec<String>,
    /// Runs whose containers and networks are in the engine but whose lock is not visible
    /// here (another machine, container or temp directory sharing the engine): kept.
    unseen: Vec<String>,
}

impl Leftovers {
    /// Finds labelled processes, scratch directories, Docker objects (images only with
    /// `images`: they are a build cache), objects in the kubeconfig cluster and (with `force`)
    /// `authlab-*` Kind clusters. What live runs own, and processes, Docker and cluster objects
    /// of runs whose lock is not visible here, are left alone unless `force`; `only` keeps to
    /// what one run left.
    pub async fn find(
        settings: &crate::settings::Settings,
        images: bool,
        force: bool,
        only: Option<&str>,
    ) -> anyhow::Result<Leftovers> {
        let mut live = std::collections::BTreeSet::new();
        let mut unseen = std::collections::BTreeSet::new();
        let in_scope = |run: &str| only.is_none_or(|o| o == run);
        let mut keep = |run: &str| {
            if !in_scope(run) {
                return false;
            }
            let alive = !force && crate::scope::owner(run) == Owner::Live;
            if alive {
                live.insert(run.to_string());
            }
            !alive
        };
        let mut procs = Vec::new();
        for (pid, run) in crate::scope::process::find_leftover_processes() {
            // A live run whose lock is in another temp directory (or a lab's) is not provably
            // over: not ours to kill.
            if in_scope(&run) && !force && crate::scope::owner(&run) == Owner::Unknown {
                unseen.insert(run);
                continue;
            }
            if keep(&run) {
                procs.push((pid, run));
            }
        }
        let dirs = scratch_dirs(&std::env::temp_dir())
            .into_iter()
            .filter(|d| {
                let run = d.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                keep(run.trim_start_matches("authlab-"))
            })
            .collect();
        let docker = match crate::container::Engine::connect(settings).await {
            Ok(engine) => {
                let objs: Vec<_> = engine
                    .list_managed()
                    .await?
                    .into_iter()
                    .filter(|o| images || o.kind != "image")
                    .filter(|o| {
                        let Some(run) = o.run_id.as_deref() else {
                            return only.is_none();
                        };
                        if !in_scope(run) {
                            return false;
                        }
                        // The engine may be shared with runs whose locks this machine cannot
                        // see: not provably over, so not ours to remove.
                        if !force && crate::scope::owner(run) == Owner::Unknown {
                            unseen.insert(run.to_string());
                            return false;
                        }
                        keep(run)
                    })
                    .collect();
                Some((engine, objs))
            }
            Err(_) => None,
        };
        let kind = crate::cluster::kind::Kind::find(settings).ok();
        let kind_clusters = kind
            .as_ref()
            .and_then(|k| k.clusters().ok())
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c.starts_with(crate::cluster::kind::CLUSTER_PREFIX))
            .filter(|_| only.is_none());
        // A Kind cluster carries no mark of a live run using it, or of one that kept it.
        let (kind_clusters, kept_kind): (Vec<String>, Vec<String>) =
            kind_clusters.partition(|_| force);
        let cluster = match settings.kubeconfig.clone() {
            Some(kubeconfig) => {
                let target = crate::cluster::owner::Target {
                    kubeconfig,
                    context: settings.kube_context.clone(),
                };
                let client = target.client().await?;
                let mut runs = crate::cluster::owner::runs_in(&client).await?;
                // A run whose lock this machine cannot see may live elsewhere: kept.
                runs.retain(|run, _| {
                    if !in_scope(run) {
                        return false;
                    }
                    if !force && crate::scope::owner(run) == Owner::Unknown {
                        unseen.insert(run.clone());
                        return false;
                    }
                    keep(run)
                });
                Some((target, runs))
            }
            None => None,
        };
        Ok(Leftovers {
            procs,
            dirs,
            docker,
            kind_clusters,
            kind,
            kept_kind,
            cluster,
            live: live.into_iter().collect(),
            unseen: unseen.into_iter().collect(),
        })
    }

    /// One line per leftover.
    pub fn describe(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (pid, run) in &self.procs {
            out.push(format!("process {pid} (run {run})"));
        }
        for d in &self.dirs {
            out.push(format!("directory {}", d.display()));
        }
        if let Some((_, objs)) = &self.docker {
            for o in objs {
                out.push(format!(
                    "{} {} (run {})",
                    o.kind,
                    o.name,
                    o.run_id.as_deref().unwrap_or("-")
                ));
            }
        }
        for c in &self.kind_clusters {
            out.push(format!("kind cluster {c}"));
        }
        for c in &self.kept_kind {
            out.push(format!(
                "kind cluster {c}: kept (a live run may be using it, or AUTHLAB_KEEP_CLUSTER kept it; --force deletes it)"
            ));
        }
        if let Some((target, runs)) = &self.cluster {
            for (run, objects) in runs {
                for o in objects {
                    out.push(format!(
                        "{o} in the cluster of {} (run {run})",
                        target.kubeconfig.display()
                    ));
                }
            }
        }
        for run in &self.live {
            out.push(format!(
                "run {run} is live: its processes, containers and files are kept (--force removes them)"
            ));
        }
        for run in &self.unseen {
            out.push(format!(
                "run {run} has processes, containers, networks or cluster objects but no lock visible here (another machine, \
                 container or temp directory using this Docker engine or cluster?): kept (--force removes them)"
            ));
        }
        out
    }

    /// Removes them all (containers before networks: networks in use cannot be removed).
    pub async fn remove(&self) {
        for (pid, _) in &self.procs {
            crate::scope::process::kill_process(*pid);
        }
        for d in &self.dirs {
            if let Err(e) = std::fs::remove_dir_all(d) {
                tracing::warn!("could not remove {}: {e}", d.display());
            }
        }
        if let Some((engine, objs)) = &self.docker {
            let mut ordered = objs.clone();
            ordered.sort_by_key(|o| match o.kind.as_str() {
                "container" => 0,
                "network" => 1,
                _ => 2,
            });
            for o in &ordered {
                if let Err(e) = engine.remove_managed(o).await {
                    tracing::warn!("{e:#}");
                }
            }
        }
        if let Some((target, runs)) = &self.cluster
            && !runs.is_empty()
        {
            let runs: Vec<String> = runs.keys().cloned().collect();
            if let Err(e) = target
                .sweep(&runs, std::time::Duration::from_secs(60))
                .await
            {
                tracing::warn!("{e:#}");
            }
        }
        if let Some(kind) = &self.kind {
            for c in &self.kind_clusters {
                if let Err(e) = kind.run(&crate::cluster::kind::delete_args(c)) {
                    tracing::warn!("{e:#}");
                }
            }
        }
    }
}

/// The scratch directories of runs (`authlab-r*`) in `tmp`.
fn scratch_dirs(tmp: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(tmp)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.is_dir()
                        && p.file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with("authlab-r"))
                })
                .collect()
        })
        .unwrap_or_default()
}
