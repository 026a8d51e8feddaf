//! Whether a run is still alive: every run holds an exclusive lock on its own lock file for as
//! long as it lives, so a lock that can be taken proves its owner gone (a killed run's lock is
//! released by the kernel), where a process id could have been reused.

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
pub(super) struct RunLock {
    _file: File,
    path: PathBuf,
}

impl RunLock {
    /// Takes the lock of `run_id` for the life of the returned value.
    pub(super) fn acquire(run_id: &str) -> Result<RunLock> {
        let dir = dir();
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = path_of(run_id);
        let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        file.try_lock()
            .map_err(|e| anyhow::anyhow!("locking {}: {e}", path.display()))?;
        super::SHARED
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(path.clone());
        Ok(RunLock { _file: file, path })
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        super::SHARED
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|p| *p != self.path);
    }
}

/// Removes the lock files of this process's runs: called on the way out after a signal, once
/// everything the runs made is gone (the lock is released by the exit itself).
pub(super) fn remove_held() {
    let held = super::SHARED.held.lock().unwrap_or_else(|p| p.into_inner());
    for p in held.iter() {
        let _ = std::fs::remove_file(p);
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
