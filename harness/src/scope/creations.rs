//! Whether the run is stopping, and what is being created now: once stopping, nothing new is
//! made, and the clean-up waits for what is under way instead of missing it.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use super::SHARED;

pub(super) struct Creations {
    stopping: AtomicBool,
    /// What is being created now, by creation number (said when clean-up cannot wait longer).
    under_way: Mutex<Vec<(u64, String)>>,
    next: AtomicU64,
    /// Woken each time the last creation under way ends.
    idle: tokio::sync::Notify,
}

impl Creations {
    pub(super) const fn new() -> Creations {
        Creations {
            stopping: AtomicBool::new(false),
            under_way: Mutex::new(Vec::new()),
            next: AtomicU64::new(0),
            idle: tokio::sync::Notify::const_new(),
        }
    }

    pub(super) fn set_stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    fn start(&self, what: String) -> Creating {
        let id = self.next.fetch_add(1, Ordering::SeqCst);
        self.under_way
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((id, what));
        Creating(id)
    }

    fn under_way(&self) -> Vec<String> {
        let list = self.under_way.lock().unwrap_or_else(|p| p.into_inner());
        list.iter().map(|(_, w)| w.clone()).collect()
    }

    /// Waits (at most `timeout`) until no creation is under way; on timeout, the names of
    /// those still under way.
    ///
    /// Asynchronous on purpose: the creations waited for are tasks of the same runtime, and a
    /// worker blocked here could be the one that has to finish them.
    pub(super) async fn wait_idle(&self, timeout: Duration) -> Result<(), Vec<String>> {
        let idle = async {
            loop {
                let woken = self.idle.notified();
                tokio::pin!(woken);
                // Registered before the check, so an end between the two is not missed.
                woken.as_mut().enable();
                if self.under_way().is_empty() {
                    return;
                }
                woken.await;
            }
        };
        match tokio::time::timeout(timeout, idle).await {
            Ok(()) => Ok(()),
            Err(_) => Err(self.under_way()),
        }
    }
}

/// True once this run is stopping (Ctrl-C, SIGTERM): nothing new is to be made.
pub fn stopping() -> bool {
    SHARED.creations.stopping.load(Ordering::SeqCst)
}

/// Held while something outside the run (a process, container or cluster object) is being
/// created and until it is claimed, so that clean-up waits for it instead of missing it.
#[derive(Debug)]
#[must_use = "a creation is counted while this is held"]
pub struct Creating(u64);

impl Drop for Creating {
    fn drop(&mut self) {
        let idle = {
            let mut list = SHARED
                .creations
                .under_way
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            list.retain(|(id, _)| *id != self.0);
            list.is_empty()
        };
        if idle {
            SHARED.creations.idle.notify_waiters();
        }
    }
}

/// Starts a creation of `what` unless the run is stopping (then None: make nothing). Held
/// across the request that creates and until what it made is claimed, so that clean-up on a
/// signal either waits for it or it sees the stop.
pub fn begin(what: impl Into<String>) -> Option<Creating> {
    let c = SHARED.creations.start(what.into());
    (!stopping()).then_some(c)
}

#[cfg(test)]
pub(super) async fn wait_idle(timeout: Duration) -> Result<(), Vec<String>> {
    SHARED.creations.wait_idle(timeout).await
}
