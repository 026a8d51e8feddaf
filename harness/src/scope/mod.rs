//! One owner for what a run makes outside itself: processes, containers, networks, Kind
//! clusters, cluster objects, files and scratch directories.
//!
//! Everything is made through the scope: a creation is counted while it is under way
//! ([`begin`]), and what it made is claimed ([`claim`], [`spawn`]) as a [`Tracked`] guard,
//! which removes it when dropped unless it was released (the owner removed it, or keeps it on
//! purpose). A run's lock ([`open_run`]) and its watchdog are the scope's too. When the run
//! closes — at the end, or from the Ctrl-C / SIGTERM handler — what is still claimed is removed
//! stage by stage ([`Stage`]), the newest first within a stage.
//!
//! The scope's state is the process's one mutable static: the signal handler and the watchdog
//! see only what was claimed here.

mod claims;
mod creations;
mod lock;
pub mod process;
mod watchdog;

use std::{
    path::PathBuf,
    process::ChildStdin,
    sync::{Mutex, OnceLock},
    time::Duration,
};

pub use claims::{Stage, Tracked, claim, claim_with};
pub use creations::{Creating, begin, stopping};
pub use lock::{Owner, owner, remove_if_gone, remove_stale};
pub use watchdog::{InFlight, OnDeath, WATCHDOG, in_flight, uses_docker};

/// All that the scope holds for this process (its runs share one watchdog and one spawner).
struct Shared {
    claims: Mutex<claims::Claims>,
    creations: creations::Creations,
    /// The lock files this process holds (an exit from the signal handler runs no destructor).
    held: Mutex<Vec<PathBuf>>,
    /// The pipe to the watchdog, once started (None inside: it could not be, or it is gone).
    watchdog: OnceLock<Mutex<Option<ChildStdin>>>,
    spawner: OnceLock<Option<process::Spawner>>,
}

static SHARED: Shared = Shared {
    claims: Mutex::new(claims::Claims::new()),
    creations: creations::Creations::new(),
    held: Mutex::new(Vec::new()),
    watchdog: OnceLock::new(),
    spawner: OnceLock::new(),
};

/// A live run: holds its lock (proof to other runs and `authlab clean` that it is alive) and is
/// watched by the watchdog. Tell [`Run::done`] once the run has cleaned up after itself.
#[derive(Debug)]
pub struct Run {
    id: String,
    _lock: lock::RunLock,
}

/// Opens run `run_id`: takes its lock and has the watchdog remove what it leaves if the
/// process is killed (SIGKILL) or aborts. Nothing is made when the run is already stopping.
pub fn open_run(run_id: &str) -> anyhow::Result<Run> {
    let _making = begin(format!("the lock of run {run_id}")).ok_or_else(stopping_error)?;
    let lock = lock::RunLock::acquire(run_id)?;
    watchdog::watch(run_id);
    Ok(Run {
        id: run_id.to_string(),
        _lock: lock,
    })
}

impl Run {
    /// The run has removed everything it made: the watchdog forgets it.
    pub fn done(&self) {
        watchdog::send(&format!("done {}", self.id));
    }
}

/// The error of a creation refused because the run is stopping.
pub fn stopping_error() -> anyhow::Error {
    anyhow::anyhow!("the run is stopping")
}

/// Starts `cmd` (labelled with `run_id`, in its own process group, killed when this process
/// dies) and claims it: `what` names it while it starts. The process is the scope's to kill
/// from here on; release the claim once it has been reaped.
pub fn spawn(
    what: &str,
    mut cmd: std::process::Command,
    run_id: &str,
) -> anyhow::Result<(std::process::Child, Tracked)> {
    use anyhow::Context;
    process::label(&mut cmd, run_id);
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    process::die_with_parent(&mut cmd);
    let making = begin(what).ok_or_else(stopping_error)?;
    let child = process::spawn_detached(cmd).with_context(|| format!("starting {what}"))?;
    let pid = child.id();
    let tracked = claim(
        format!("process {pid} ({what})"),
        Stage::Processes,
        move || process::kill_group(pid),
    );
    drop(making);
    Ok((child, tracked))
}

/// A file removed when the run ends, however it ends (e.g. `lab up`'s state file, which holds
/// root tokens). Claimed before it is written.
pub fn claim_file(path: PathBuf) -> Tracked {
    let remove = path.clone();
    claim_with(
        format!("file {}", path.display()),
        Stage::Files,
        OnDeath::RemoveFile(path),
        move || {
            let _ = std::fs::remove_file(remove);
        },
    )
}

/// A scratch directory removed when the run ends. Claimed before it is made: a kill at any
/// moment from then on leaves nothing.
pub fn claim_dir(path: PathBuf) -> Tracked {
    let remove = path.clone();
    claim_with(
        format!("directory {}", path.display()),
        Stage::Dirs,
        OnDeath::RemoveDir(path),
        move || {
            let _ = std::fs::remove_dir_all(remove);
        },
    )
}

/// Removes everything still claimed, stage by stage; claims made after this are removed at
/// once. Called at the end of a run and from the signal handler.
pub fn close() {
    claims::close();
}

/// Installs a Ctrl-C / SIGTERM handler on the runtime: no further trial starts, creations under
/// way are waited for (at most 15 s), everything claimed is removed, and the process exits with
/// 130 (SIGINT) or 143 (SIGTERM).
///
/// Exiting from the handler is deliberate: an interrupted run has no conclusion to return, and
/// everything it started is gone once the scope has closed.
pub fn install_signal_handler(handle: &tokio::runtime::Handle) {
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
        SHARED.creations.set_stopping();
        tracing::info!("interrupted; stopping servers and removing scratch files");
        // What is being created now is finished (and claimed) first.
        if let Err(still) = SHARED.creations.wait_idle(Duration::from_secs(15)).await {
            tracing::warn!(
                "still being created after 15 s: {}; `authlab clean` removes what is left",
                still.join(", ")
            );
        }
        // Synchronous, with no await from here to the exit: a runtime dropped meanwhile (the
        // run returning its own error on seeing the stop) still lets this finish, exit code
        // and all.
        close();
        lock::remove_held();
        // A trial task may still write between here and the exit: the watchdog removes that
        // once this process is gone.
        watchdog::send("stopped *");
        std::process::exit(code);
    });
}

/// Runs the future `make` returns to its end on a thread and runtime of its own, and returns
/// its output (None when no thread or runtime could be had): for removals from a `Drop` or the
/// signal handler, which must neither need the caller's runtime nor block its only thread.
pub fn on_own_runtime<F, Fut, T>(make: F) -> Option<T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T>,
    T: Send + 'static,
{
    std::thread::Builder::new()
        .name("authlab-remove".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            Some(rt.block_on(make()))
        })
        .ok()?
        .join()
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests;
