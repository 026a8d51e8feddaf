//! The run's watchdog: a small process of its own (`authlab __watch`) that outlives a run
//! killed with SIGKILL, or one that aborted, and then removes what the run left at once,
//! instead of leaving it for the next run to reap.
//!
//! The run holds the write end of the watchdog's standard input for its whole life and sends
//! it one line per fact: a run it owns (`run <id>`), a file or directory to remove if the run
//! dies (`file <path>`, `dir <path>`), a run that cleaned up after itself (`done <id>`).
//! End of input without `done` means the run died: the watchdog then kills the processes
//! labelled with its runs, removes their containers and networks, and the files and
//! directories it was told of. It sits in its own process group, so a Ctrl-C to the run's
//! group reaches the run (which cleans up) and not the watchdog.

use std::{collections::BTreeSet, path::PathBuf};

use crate::wait::Wait;

/// What the watchdog was told.
#[derive(Debug, Default, PartialEq)]
struct Told {
    runs: BTreeSet<String>,
    paths: Vec<(PathBuf, bool)>,
    docker: bool,
    /// Containers and networks whose creation had not returned.
    in_flight: BTreeSet<String>,
    /// Kind clusters to delete.
    kind: BTreeSet<String>,
    /// Clusters to sweep of the runs' objects.
    clusters: Vec<crate::cluster::owner::Target>,
    /// The runs cleaned up after a signal: only their paths and locks are left to remove.
    stopped: bool,
}

impl Told {
    fn line(&mut self, line: &str) {
        match line.split_once(' ') {
            Some(("run", id)) => {
                self.runs.insert(id.to_string());
            }
            Some(("done", id)) => {
                if id == "*" {
                    self.runs.clear();
                }
                self.runs.remove(id);
                if self.runs.is_empty() {
                    // Every run cleaned up after itself, its files included.
                    *self = Told::default();
                }
            }
            Some(("stopped", "*")) => self.stopped = true,
            Some(("file", p)) => self.paths.push((PathBuf::from(p), false)),
            Some(("dir", p)) => self.paths.push((PathBuf::from(p), true)),
            Some(("making", n)) => {
                self.in_flight.insert(n.to_string());
            }
            Some(("made", n)) => {
                self.in_flight.remove(n);
            }
            Some(("kind", n)) => {
                self.kind.insert(n.to_string());
            }
            Some(("kept", n)) => {
                self.kind.remove(n);
            }
            Some(("kube", j)) => {
                if let Ok(t) = serde_json::from_str(j)
                    && !self.clusters.contains(&t)
                {
                    self.clusters.push(t);
                }
            }
            Some(("unkube", j)) => {
                if let Ok(t) = serde_json::from_str::<crate::cluster::owner::Target>(j) {
                    self.clusters.retain(|c| *c != t);
                }
            }
            _ if line == "docker" => self.docker = true,
            _ => {}
        }
    }
}

/// The watchdog itself: reads what the run tells it until the run is gone, then removes what
/// the run left (Docker and `kind` reached as `settings`, read from the environment the run
/// passed on, say). Returns when done.
pub async fn serve(settings: &crate::settings::Settings) {
    let told = tokio::task::spawn_blocking(|| {
        use std::io::BufRead;
        let mut told = Told::default();
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            told.line(&line);
        }
        told
    })
    .await
    .unwrap_or_default();
    if told.runs.is_empty() {
        return;
    }
    if told.stopped {
        tidy(&told).await;
    } else {
        reap(&told, settings).await;
    }
}

/// After runs that cleaned up on a signal have exited: removes the paths noted for them (a
/// task may have written there after the clean-up) and their locks, now free.
async fn tidy(told: &Told) {
    remove_paths(told).await;
    for run in &told.runs {
        crate::scope::remove_if_gone(run);
    }
}

/// Removes what the runs in `told` left: their processes, containers and networks, and the
/// paths noted for them.
async fn reap(told: &Told, settings: &crate::settings::Settings) {
    // First, while its clusters are there (a Kind cluster is deleted below): the runs'
    // objects in them.
    let runs: Vec<String> = told.runs.iter().cloned().collect();
    for target in &told.clusters {
        let _ = target
            .sweep(&runs, std::time::Duration::from_secs(20))
            .await;
    }
    let ours = || {
        crate::scope::process::find_leftover_processes()
            .into_iter()
            .filter(|(_, run)| told.runs.contains(run))
            .map(|(pid, _)| pid)
            .collect::<Vec<_>>()
    };
    // Killed, then waited for (at most 5 s): a dying server may still write into the scratch
    // directory removed below.
    let mut wait = Wait::new(
        "the dead run's servers to exit",
        std::time::Duration::from_secs(5),
    )
    .start();
    loop {
        let left = ours();
        if left.is_empty() {
            break;
        }
        for pid in left {
            crate::scope::process::kill_process(pid);
        }
        if wait.tick().await.is_err() {
            break;
        }
    }
    remove_paths(told).await;
    // Its nodes are containers labelled by kind, not by the run: deleted by name.
    let kind: Vec<String> = told.kind.iter().cloned().collect();
    if !kind.is_empty() {
        match crate::cluster::kind::Kind::find(settings) {
            Ok(bin) => {
                let _ = tokio::task::spawn_blocking(move || {
                    crate::cluster::kind::delete_clusters(&bin, &kind)
                })
                .await;
            }
            Err(e) => tracing::warn!("{e:#}"),
        }
    }
    let mut all_gone = true;
    if told.docker {
        all_gone = false;
        if let Ok(engine) = crate::container::Engine::connect(settings).await {
            // A creation the run had asked for may complete in the engine after it died (a
            // busy engine takes seconds), and a network keeps the endpoints of removed
            // containers for a while: look again every half second until every creation in
            // flight at the death was found (or 15 s passed) and nothing was found for 5 s (at
            // most 60 s).
            let seen = std::sync::Mutex::new(BTreeSet::new());
            let ours = |o: &crate::container::ManagedObject| {
                let mine = o.run_id.as_ref().is_some_and(|r| told.runs.contains(r));
                if mine && let Ok(mut s) = seen.lock() {
                    s.insert(o.name.trim_start_matches('/').to_string());
                }
                mine
            };
            let pending = || {
                seen.lock()
                    .map(|s| told.in_flight.iter().any(|n| !s.contains(n)))
                    .unwrap_or(true)
            };
            let mut wait = Wait::new(
                "the dead run's containers and networks to be gone",
                std::time::Duration::from_secs(60),
            )
            .every(std::time::Duration::from_millis(500))
            .start();
            let mut last_found = std::time::Instant::now();
            loop {
                match engine.remove_where(ours).await {
                    Ok((0, _)) if reaped(last_found.elapsed(), wait.elapsed(), pending()) => {
                        all_gone = true;
                        break;
                    }
                    Ok((0, _)) => {}
                    Ok(_) => last_found = std::time::Instant::now(),
                    // The engine did not answer: that proves nothing either way.
                    Err(_) => last_found = std::time::Instant::now(),
                }
                if wait.tick().await.is_err() {
                    break;
                }
            }
        }
        // Containers wrote into their bind-mounted directories until they were removed.
        remove_paths(told).await;
    }
    // The lock of a run proves its leftovers orphaned: kept while any may remain, so that the
    // next run or `authlab clean` reaps them.
    if all_gone {
        for run in &told.runs {
            crate::scope::remove_if_gone(run);
        }
    }
}

/// Whether the engine's leftovers of a dead run are all gone: nothing was found for 5 s, and
/// every creation in flight at the death was seen, or was given up on after 15 s (the engine
/// drops a request whose client died before it was carried out: that one never appears).
fn reaped(quiet: std::time::Duration, since_death: std::time::Duration, unseen: bool) -> bool {
    quiet >= std::time::Duration::from_secs(5)
        && (!unseen || since_death >= std::time::Duration::from_secs(15))
}

/// Removes the files and directories the run noted (a directory still being written to is
/// tried again, for at most 2 s).
async fn remove_paths(told: &Told) {
    for (path, dir) in &told.paths {
        let mut wait = Wait::new(
            format!("{} to be removed", path.display()),
            std::time::Duration::from_secs(2),
        )
        .every(std::time::Duration::from_millis(200))
        .start();
        loop {
            let removed = if *dir {
                std::fs::remove_dir_all(path)
            } else {
                std::fs::remove_file(path)
            };
            match removed {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    if wait.tick().await.is_err() {
                        break;
                    }
                }
                _ => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Kind cluster being created is deleted if the run dies, unless it was deleted or kept
    /// first.
    #[test]
    fn kind_clusters_are_remembered_until_kept() {
        let mut t = Told::default();
        for l in [
            "run r1",
            "kind authlab-lab",
            "kind authlab-lab-1234abcd",
            "kept authlab-lab",
        ] {
            t.line(l);
        }
        assert_eq!(
            t.kind.iter().map(String::as_str).collect::<Vec<_>>(),
            ["authlab-lab-1234abcd"]
        );
        t.line("done r1");
        assert!(t.kind.is_empty(), "a run that cleaned up left none");
    }

    #[test]
    fn an_unseen_creation_holds_the_reaping_for_a_bounded_while() {
        let s = std::time::Duration::from_secs;
        assert!(!reaped(s(4), s(30), false), "not quiet for 5 s yet");
        assert!(reaped(s(5), s(6), false));
        assert!(
            !reaped(s(5), s(6), true),
            "a creation in flight was not seen"
        );
        assert!(reaped(s(5), s(15), true), "given up on after 15 s");
    }

    #[test]
    fn done_forgets_a_run_and_its_paths() {
        let mut t = Told::default();
        for l in ["run r1", "run r2", "dir /tmp/authlab-r1", "docker", "junk"] {
            t.line(l);
        }
        assert_eq!(t.runs.len(), 2);
        assert_eq!(t.paths.len(), 1);
        assert!(t.docker);
        t.line("done r1");
        assert_eq!(t.paths.len(), 1, "r2 may still die");
        t.line("file /tmp/state");
        t.line("done r2");
        assert_eq!(t, Told::default());
        t.line("run r3");
        t.line("making authlab-r3-t1");
        t.line("making authlab-r3");
        t.line("made authlab-r3");
        assert_eq!(t.in_flight, BTreeSet::from(["authlab-r3-t1".to_string()]));
        t.line("done *");
        assert_eq!(t, Told::default());
    }
}
