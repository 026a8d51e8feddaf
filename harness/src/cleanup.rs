//! Cleanup on every exit path: a process-wide registry of what the harness started, emptied on
//! normal shutdown and by the Ctrl-C handler.

use std::{
    path::PathBuf,
    sync::{Mutex, OnceLock},
};

#[derive(Default)]
struct Registry {
    pids: Vec<u32>,
    dirs: Vec<PathBuf>,
    containers: Vec<String>,
    networks: Vec<String>,
}

fn registry() -> &'static Mutex<Registry> {
    static R: OnceLock<Mutex<Registry>> = OnceLock::new();
    R.get_or_init(Default::default)
}

/// Remembers a child process to kill if the run is interrupted.
pub fn register_pid(pid: u32) {
    if let Ok(mut r) = registry().lock() {
        r.pids.push(pid);
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
        r.dirs.push(dir);
    }
}

/// Remembers a container to remove if the run is interrupted.
pub fn register_container(name: String) {
    if let Ok(mut r) = registry().lock() {
        r.containers.push(name);
    }
}

/// Forgets a container that was removed normally.
pub fn unregister_container(name: &str) {
    if let Ok(mut r) = registry().lock() {
        r.containers.retain(|c| c != name);
    }
}

/// Remembers a network to remove at the end of the run.
pub fn register_network(name: String) {
    if let Ok(mut r) = registry().lock() {
        r.networks.push(name);
    }
}

/// Kills every registered process, removes every registered container, network and directory.
pub fn cleanup_now() {
    let (pids, dirs, containers, networks) = match registry().lock() {
        Ok(mut r) => (
            std::mem::take(&mut r.pids),
            std::mem::take(&mut r.dirs),
            std::mem::take(&mut r.containers),
            std::mem::take(&mut r.networks),
        ),
        Err(_) => return,
    };
    if !containers.is_empty() || !networks.is_empty() {
        // A fresh runtime on its own thread: this may run from a signal handler task or after
        // the main runtime is gone.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                let Ok(engine) = crate::container::Engine::connect().await else {
                    return;
                };
                for c in containers {
                    let _ = engine.remove_container(&c).await;
                }
                for n in networks {
                    let _ = engine.remove_network(&n).await;
                }
            });
        })
        .join();
    }
    for pid in pids {
        crate::server::process::kill_process(pid);
    }
    for dir in dirs {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Installs a Ctrl-C / SIGTERM handler on the runtime: it cleans up, then exits with 130.
///
/// Exiting from the handler is deliberate: an interrupted run has no conclusion to return, and
/// everything it started is gone once [`cleanup_now`] has run.
pub fn install_signal_handler(handle: &tokio::runtime::Handle) {
    handle.spawn(async {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return,
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("interrupted; stopping servers and removing scratch files");
        cleanup_now();
        std::process::exit(130);
    });
}
