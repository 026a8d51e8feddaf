//! Whether a run is still alive: every run holds an exclusive lock on its own lock file for as
//! long as it lives, so a lock that can be taken proves its owner gone (a killed run's lock is
//! released by the kernel), where a process id could have been reused. And whether this run is
//! stopping: then nothing new may be created, and what is being created is waited for.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

static STOPPING: AtomicBool = AtomicBool::new(false);
/// What is being created now, by creation number (said when cleanup cannot wait any longer).
static CREATING: Mutex<Vec<(u64, String)>> = Mutex::new(Vec::new());
static NEXT: AtomicU64 = AtomicU64::new(0);
/// Woken each time the last creation under way ends.
static IDLE: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Marks this run as stopping (Ctrl-C, SIGTERM).
pub fn set_stopping() {
    STOPPING.store(true, Ordering::SeqCst);
}

/// True once this run is stopping.
pub fn stopping() -> bool {
    STOPPING.load(Ordering::SeqCst)
}

/// Held while an external resource (a container) is being created, so that cleanup waits for
/// it instead of missing it.
#[derive(Debug)]
pub struct Creating(u64);

impl Creating {
    /// Counts one creation of `what` (a container's or object's name) under way.
    pub fn start(what: impl Into<String>) -> Creating {
        let id = NEXT.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut c) = CREATING.lock() {
            c.push((id, what.into()));
        }
        Creating(id)
    }
}

impl Drop for Creating {
    fn drop(&mut self) {
        let idle = match CREATING.lock() {
            Ok(mut c) => {
                c.retain(|(id, _)| *id != self.0);
                c.is_empty()
            }
            Err(_) => true,
        };
        if idle {
            IDLE.notify_waiters();
        }
    }
}

/// Starts a creation of `what` unless the run is stopping (then None: make nothing). Held
/// across the one request that creates (a container, a cluster object), so that cleanup on a
/// signal either waits for it or it sees the stop.
pub fn begin(what: impl Into<String>) -> Option<Creating> {
    let c = Creating::start(what);
    (!stopping()).then_some(c)
}

/// What is being created now.
fn under_way() -> Vec<String> {
    CREATING
        .lock()
        .map(|c| c.iter().map(|(_, w)| w.clone()).collect())
        .unwrap_or_default()
}

/// Waits (at most `timeout`) until no creation is under way; on timeout, the names of those
/// still under way.
///
/// Asynchronous on purpose: the creations waited for are tasks of the same runtime, and a
/// worker blocked here could be the one that has to finish them.
pub async fn wait_for_creations(timeout: std::time::Duration) -> Result<(), Vec<String>> {
    let idle = async {
        loop {
            let woken = IDLE.notified();
            tokio::pin!(woken);
            // Registered before the check, so an end between the two is not missed.
            woken.as_mut().enable();
            if under_way().is_empty() {
                return;
            }
            woken.await;
        }
    };
    match tokio::time::timeout(timeout, idle).await {
        Ok(()) => Ok(()),
        Err(_) => Err(under_way()),
    }
}

use std::{
    fs::File,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};

/// The directory of run locks.
fn dir() -> PathBuf {
    std::env::temp_dir().join("authlab-locks")
}

fn path_of(run_id: &str) -> PathBuf {
    dir().join(format!("{run_id}.lock"))
}

/// The lock of a live run; released (and its file removed) when dropped.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
    path: PathBuf,
}

impl RunLock {
    /// Takes the lock of `run_id` for the life of the returned value.
    pub fn acquire(run_id: &str) -> Result<RunLock> {
        let dir = dir();
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = path_of(run_id);
        let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        file.try_lock()
            .map_err(|e| anyhow::anyhow!("locking {}: {e}", path.display()))?;
        if let Ok(mut held) = HELD.lock() {
            held.push(path.clone());
        }
        Ok(RunLock { _file: file, path })
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        if let Ok(mut held) = HELD.lock() {
            held.retain(|p| *p != self.path);
        }
    }
}

/// The lock files this process holds (an exit from the signal handler runs no destructor).
static HELD: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

/// Removes the lock files of this process's runs: called on the way out after a signal, once
/// everything the runs made is gone (the lock is released by the exit itself).
pub fn remove_held() {
    if let Ok(held) = HELD.lock() {
        for p in held.iter() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// What is known of a run's owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// It holds its lock: the run is alive.
    Live,
    /// Its lock is free: the run is over (it was killed).
    Gone,
    /// No lock of that run is visible here (another machine, another temp directory or
    /// container, or a run from before locks): not provably gone.
    Unknown,
}

/// The state of the owner of `run_id`.
pub fn owner(run_id: &str) -> Owner {
    owner_at(&path_of(run_id))
}

fn owner_at(path: &Path) -> Owner {
    let Ok(file) = File::open(path) else {
        return Owner::Unknown;
    };
    match file.try_lock() {
        Ok(()) => Owner::Gone,
        Err(std::fs::TryLockError::WouldBlock) => Owner::Live,
        Err(_) => Owner::Unknown,
    }
}

/// Removes the lock file of `run_id` if the run is gone (its leftovers reaped).
pub fn remove_if_gone(run_id: &str) {
    let path = path_of(run_id);
    if owner_at(&path) == Owner::Gone {
        let _ = std::fs::remove_file(&path);
    }
}

/// Removes the lock files of runs that are gone. Only after their leftovers of every kind
/// (processes, scratch directories, containers) were reaped (`authlab clean`): the lock is
/// what proves them orphans. A run's watchdog removes its own once it has reaped it.
pub fn remove_stale() {
    let Ok(rd) = std::fs::read_dir(dir()) else {
        return;
    };
    for p in rd.flatten().map(|e| e.path()) {
        if owner_at(&p) == Owner::Gone {
            let _ = std::fs::remove_file(&p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The creation cleanup waits for is a task of the same runtime, which must go on while
    /// cleanup waits (a wait that blocked its thread waited out the whole bound instead).
    #[tokio::test(flavor = "current_thread")]
    async fn cleanup_waits_for_a_creation_that_runs_on_its_own_runtime() {
        let making = Creating::start("container held-by-a-task");
        let task = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            drop(making);
        });
        let started = std::time::Instant::now();
        let waited = wait_for_creations(std::time::Duration::from_secs(10)).await;
        // Other tests of this binary may create at the same moment: only this one is checked.
        if let Err(still) = &waited {
            assert!(
                !still.iter().any(|w| w.contains("held-by-a-task")),
                "{still:?}"
            );
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        task.await.unwrap();
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_creation_not_finished_in_time_is_named() {
        let _making = Creating::start("container never-done");
        let still = wait_for_creations(std::time::Duration::from_millis(30))
            .await
            .unwrap_err();
        assert!(
            still.contains(&"container never-done".to_string()),
            "{still:?}"
        );
    }

    #[test]
    fn a_held_lock_is_live_and_a_released_one_gone() {
        let id = format!("rtest{}", std::process::id());
        assert_eq!(owner(&id), Owner::Unknown);
        let lock = RunLock::acquire(&id).unwrap();
        assert_eq!(owner(&id), Owner::Live);
        // A lock file left by a killed run: present, unlocked.
        std::mem::forget(lock);
        let path = path_of(&id);
        let stale = format!("{id}x");
        std::fs::copy(&path, path_of(&stale)).unwrap();
        assert_eq!(owner(&stale), Owner::Gone);
        remove_stale();
        assert!(!path_of(&stale).exists());
        assert_eq!(owner(&id), Owner::Live, "a live run's lock is kept");
        let _ = std::fs::remove_file(path);
    }
}
