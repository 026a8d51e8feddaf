//! Cleanup on every exit path, in one place: a process-wide registry of what this run started
//! (emptied on normal shutdown and by the Ctrl-C handler), the reaping of what killed runs left
//! behind, and `authlab clean`.

use crate::runlock::Owner;
use std::{
    path::{Path, PathBuf},
    sync::{Mutex, OnceLock},
};

#[derive(Default)]
struct Registry {
    pids: Vec<u32>,
    dirs: Vec<PathBuf>,
    containers: Vec<String>,
    networks: Vec<String>,
    files: Vec<PathBuf>,
    kind_clusters: Vec<(crate::cluster::kind::Kind, String)>,
    /// Clusters the run writes to, and the run: its objects there are swept.
    clusters: Vec<(crate::cluster::owner::Target, String)>,
    /// Set once cleanup has run: what registers after that is removed at once.
    closed: bool,
}

fn registry() -> &'static Mutex<Registry> {
    static R: OnceLock<Mutex<Registry>> = OnceLock::new();
    R.get_or_init(Default::default)
}

/// Remembers a child process to kill if the run is interrupted: one that leads its own
/// process group, killed with everything it forked.
pub fn register_pid(pid: u32) {
    if let Ok(mut r) = registry().lock() {
        if r.closed {
            crate::server::process::kill_group(pid);
        } else {
            r.pids.push(pid);
        }
    }
}

/// Forgets a child process that was stopped normally.
pub fn unregister_pid(pid: u32) {
    if let Ok(mut r) = registry().lock() {
        r.pids.retain(|p| *p != pid);
    }
}

/// Remembers a scratch directory to remove if the run is interrupted.
pub fn register_dir(dir: PathBuf) {
    if let Ok(mut r) = registry().lock() {
        if r.closed {
            let _ = std::fs::remove_dir_all(&dir);
        } else {
            crate::watchdog::remove_on_death(&dir, true);
            r.dirs.push(dir);
        }
    }
}

/// Remembers a file to remove when the run ends, however it ends (e.g. `lab up`'s state file,
/// which holds root tokens).
pub fn register_file(path: PathBuf) {
    if let Ok(mut r) = registry().lock() {
        crate::watchdog::remove_on_death(&path, false);
        r.files.push(path);
    }
}

/// Remembers a container (in `engine`) to remove if the run is interrupted.
pub fn register_container(name: String, engine: &crate::container::Engine) {
    let closed = match registry().lock() {
        Ok(mut r) if !r.closed => {
            r.containers.push(name.clone());
            false
        }
        _ => true,
    };
    if closed {
        // Cleanup already ran: a container that starts now is removed at once.
        let _ = engine.remove_container_blocking(&name);
    }
}

/// Forgets a container that was removed normally.
pub fn unregister_container(name: &str) {
    if let Ok(mut r) = registry().lock() {
        r.containers.retain(|c| c != name);
    }
}

/// Remembers a Kind cluster the run is creating, to delete if the run is interrupted (the
/// watchdog is told too, for a run that is killed).
pub fn register_kind_cluster(kind: &crate::cluster::kind::Kind, name: &str) {
    if let Ok(mut r) = registry().lock() {
        r.kind_clusters.push((kind.clone(), name.to_string()));
    }
    crate::watchdog::delete_kind_on_death(name);
}

/// Forgets a Kind cluster that was deleted normally, or that is to be kept.
pub fn unregister_kind_cluster(name: &str) {
    if let Ok(mut r) = registry().lock() {
        r.kind_clusters.retain(|(_, n)| n != name);
    }
    crate::watchdog::keep_kind(name);
}

/// Remembers a cluster run `run` creates objects in (a kubeconfig or Kind cluster): if the run
/// is interrupted, or killed (the watchdog is told), every object labelled with it is deleted.
pub fn register_cluster(target: &crate::cluster::owner::Target, run: &str) {
    if let Ok(mut r) = registry().lock() {
        r.clusters.push((target.clone(), run.to_string()));
    }
    crate::watchdog::sweep_on_death(target);
}

/// Forgets a cluster whose objects the run removed itself.
pub fn unregister_cluster(target: &crate::cluster::owner::Target) {
    if let Ok(mut r) = registry().lock() {
        r.clusters.retain(|(t, _)| t != target);
    }
    crate::watchdog::swept(target);
}

/// Remembers a network to remove at the end of the run.
pub fn register_network(name: String) {
    if let Ok(mut r) = registry().lock() {
        r.networks.push(name);
    }
}

/// Forgets a network that was removed normally.
pub fn unregister_network(name: &str) {
    if let Ok(mut r) = registry().lock() {
        r.networks.retain(|n| n != name);
    }
}

/// Kills every registered process, removes every registered container, network and directory
/// (Docker reached as `settings` say).
pub fn cleanup_now(settings: &crate::settings::Settings) {
    let (pids, dirs, containers, networks, files, kind_clusters, clusters) = match registry().lock()
    {
        Ok(mut r) => (
            std::mem::take(&mut r.pids),
            std::mem::take(&mut r.dirs),
            std::mem::take(&mut r.containers),
            std::mem::take(&mut r.networks),
            std::mem::take(&mut r.files),
            std::mem::take(&mut r.kind_clusters),
            std::mem::take(&mut r.clusters),
        ),
        Err(_) => return,
    };
    if let Ok(mut r) = registry().lock() {
        r.closed = true;
    }
    // First, while the clusters are still there: the run's objects in them.
    if !clusters.is_empty() {
        sweep_clusters(clusters);
    }
    for file in files {
        let _ = std::fs::remove_file(file);
    }
    if !containers.is_empty() || !networks.is_empty() {
        // A fresh runtime on its own thread: this may run from a signal handler task or after
        // the main runtime is gone.
        let settings = settings.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                let Ok(engine) = crate::container::Engine::connect(&settings).await else {
                    return;
                };
                for c in containers {
                    let _ = engine.remove_container(&c).await;
                }
                for n in networks {
                    // A container that was removed a moment ago may still hold the network.
                    let mut wait = crate::wait::Wait::new(
                        format!("network {n} to be removed"),
                        std::time::Duration::from_secs(5),
                    )
                    .every(std::time::Duration::from_millis(200))
                    .start();
                    // Ok also when it is already gone.
                    while engine.remove_network(&n).await.is_err() && wait.tick().await.is_ok() {}
                }
            });
        })
        .join();
    }
    for pid in pids {
        crate::server::process::kill_group(pid);
    }
    // After the processes: a `kind create` still running is stopped first.
    // One pass per `kind` executable (a run has one): its wait for stragglers covers them all.
    let mut by_kind: Vec<(crate::cluster::kind::Kind, Vec<String>)> = Vec::new();
    for (kind, name) in kind_clusters {
        match by_kind.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, names)) => names.push(name),
            None => by_kind.push((kind, vec![name])),
        }
    }
    for (kind, names) in by_kind {
        delete_kind_clusters(&kind, &names);
    }
    for dir in dirs {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Deletes the objects labelled with their run from each cluster (on a thread with a runtime
/// of its own: this may run from a signal handler task), bounded at 20 s per cluster.
fn sweep_clusters(clusters: Vec<(crate::cluster::owner::Target, String)>) {
    let _ = std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            for (target, run) in clusters {
                match target
                    .sweep(
                        std::slice::from_ref(&run),
                        std::time::Duration::from_secs(20),
                    )
                    .await
                {
                    Ok(gone) if !gone.is_empty() => tracing::info!(
                        "removed {} object(s) of run {run} from the cluster of {}",
                        gone.len(),
                        target.kubeconfig.display()
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::warn!("{e:#}; `authlab clean` removes them"),
                }
            }
        });
    })
    .join();
}

/// Deletes Kind clusters (each `kind delete cluster`, which also removes a half-made one),
/// saying so, since each takes seconds.
///
/// A node container whose creation the engine was still finishing when `kind create` was
/// stopped appears after the delete: the names are looked for again, and deleted again, until
/// none has been seen for 3 s (at most 30 s).
pub fn delete_kind_clusters(kind: &crate::cluster::kind::Kind, names: &[String]) {
    use crate::cluster::kind::delete_args;
    let delete = |name: &str| {
        if let Err(e) = kind.run(&delete_args(name)) {
            tracing::warn!("deleting Kind cluster {name}: {e:#}");
        }
    };
    for name in names {
        tracing::info!("deleting Kind cluster {name}");
        delete(name);
    }
    if names.is_empty() {
        return;
    }
    // Deleted again while any is seen, until none was for 3 s (at most 30 s).
    let mut wait = crate::wait::Wait::new(
        "Kind clusters to stay deleted",
        std::time::Duration::from_secs(30),
    )
    .every(std::time::Duration::from_millis(500))
    .start();
    let mut last_seen = std::time::Instant::now();
    while last_seen.elapsed() < std::time::Duration::from_secs(3) && wait.tick_blocking().is_ok() {
        let now = kind.clusters().unwrap_or_default();
        for name in names.iter().filter(|n| now.contains(n)) {
            last_seen = std::time::Instant::now();
            delete(name);
        }
    }
}

/// Installs a Ctrl-C / SIGTERM handler on the runtime: no further trial starts, everything the
/// run registered is removed, and the process exits with 130 (SIGINT) or 143 (SIGTERM).
///
/// Exiting from the handler is deliberate: an interrupted run has no conclusion to return, and
/// everything it started is gone once [`cleanup_now`] has run.
pub fn install_signal_handler(
    handle: &tokio::runtime::Handle,
    settings: &crate::settings::Settings,
) {
    let settings = settings.clone();
    handle.spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return,
            };
        // 128 + the signal's number, as shells report it.
        let code = tokio::select! {
            _ = tokio::signal::ctrl_c() => 130,
            _ = term.recv() => 143,
        };
        crate::runlock::set_stopping();
        tracing::info!("interrupted; stopping servers and removing scratch files");
        // Containers being created now are finished (and removed by their creator) first.
        if let Err(still) =
            crate::runlock::wait_for_creations(std::time::Duration::from_secs(15)).await
        {
            tracing::warn!(
                "still being created after 15 s: {}; `authlab clean` removes what is left",
                still.join(", ")
            );
        }
        cleanup_now(&settings);
        crate::runlock::remove_held();
        // A trial task may still write between here and the exit: the watchdog removes that
        // once this process is gone.
        crate::watchdog::stopped();
        std::process::exit(code);
    });
}

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
        .map_or(Owner::Unknown, crate::runlock::owner)
}

/// Kills labelled processes of runs that are provably over (their lock is free): servers, and
/// what a wrapper binary forked, left by a run that was SIGKILLed.
///
/// A watchdog is left alone: one whose run was just killed is reaping it right now (killing it
/// mid-reap would leave the rest), and it exits by itself when done.
pub fn reap_orphaned_processes() {
    for (pid, run) in crate::server::process::find_leftover_processes() {
        if crate::runlock::owner(&run) == Owner::Gone && !is_watchdog(pid) {
            crate::server::process::kill_process(pid);
        }
    }
}

/// Whether process `pid` is a run's watchdog (`authlab __watch`).
fn is_watchdog(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
        c.split(|b| *b == 0)
            .any(|arg| arg == crate::watchdog::SUBCOMMAND.as_bytes())
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
            let alive = !force && crate::runlock::owner(run) == Owner::Live;
            if alive {
                live.insert(run.to_string());
            }
            !alive
        };
        let mut procs = Vec::new();
        for (pid, run) in crate::server::process::find_leftover_processes() {
            // A live run whose lock is in another temp directory (or a lab's) is not provably
            // over: not ours to kill.
            if in_scope(&run) && !force && crate::runlock::owner(&run) == Owner::Unknown {
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
                        if !force && crate::runlock::owner(run) == Owner::Unknown {
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
                    if !force && crate::runlock::owner(run) == Owner::Unknown {
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
            crate::server::process::kill_process(*pid);
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
