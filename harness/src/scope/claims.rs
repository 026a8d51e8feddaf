//! What the run has made and not yet removed, each with the way to remove it.

use super::{SHARED, watchdog};

/// When a claim is removed as the run closes: stage by stage in this order (cluster objects
/// while their clusters are still there, a `kind create` process before its cluster), the newest
/// claim first within a stage, the claims of one stage together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// Objects the run made in a cluster it does not own (swept by label).
    Objects,
    /// Files (a lab's state file).
    Files,
    /// Docker containers.
    Containers,
    /// Docker networks (after the containers that use them).
    Networks,
    /// Child processes (each killed with its process group).
    Processes,
    /// Kind clusters.
    Clusters,
    /// Scratch directories (last: the processes and containers above write there).
    Dirs,
}

type Remove = Box<dyn FnOnce() + Send>;

struct Claim {
    id: u64,
    stage: Stage,
    remove: Remove,
    /// Told to the watchdog when the claim is released (the resource no longer needs it).
    on_release: Option<String>,
}

/// The claims of this process, in the order they were made.
pub(super) struct Claims {
    list: Vec<Claim>,
    next: u64,
    /// Set once the scope has closed: what is claimed after that is removed at once.
    closed: bool,
}

impl Claims {
    pub(super) const fn new() -> Claims {
        Claims {
            list: Vec::new(),
            next: 0,
            closed: false,
        }
    }
}

/// A claim on something the run made. Dropped, it removes what it claims (blocking: on a
/// thread or runtime of its own where that needs one); [`Tracked::release`] forgets it instead,
/// once its owner has removed it (or keeps it on purpose).
#[must_use = "a claim dropped at once removes what it claims"]
pub struct Tracked {
    id: u64,
    what: String,
}

impl std::fmt::Debug for Tracked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tracked({})", self.what)
    }
}

impl Tracked {
    /// What is claimed (e.g. `container authlab-r1-t3`).
    pub fn what(&self) -> &str {
        &self.what
    }

    /// Released when `removed` (its owner removed what it claims), else handed back: an
    /// owner whose removal failed keeps the claim, so that dropping it or the run's close
    /// tries again.
    pub fn released_if(self, removed: bool) -> Option<Tracked> {
        if removed {
            self.release();
            None
        } else {
            Some(self)
        }
    }

    /// Forgets the claim: what it claims is gone, or is to be kept.
    pub fn release(self) {
        let _ = take(self.id);
        std::mem::forget(self);
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Some(remove) = take(self.id) {
            remove();
        }
    }
}

/// Takes claim `id` off the list: its removal, if it was still there.
fn take(id: u64) -> Option<Remove> {
    let mut claims = SHARED.claims.lock().unwrap_or_else(|p| p.into_inner());
    let at = claims.list.iter().position(|c| c.id == id)?;
    let claim = claims.list.remove(at);
    drop(claims);
    if let Some(line) = &claim.on_release {
        watchdog::send(line);
    }
    Some(claim.remove)
}

/// Claims `what` (e.g. `container authlab-r1-t3`), removed by `remove` (best effort, blocking,
/// bounded) at `stage` when the run closes, or when the returned guard is dropped.
pub fn claim(
    what: impl Into<String>,
    stage: Stage,
    remove: impl FnOnce() + Send + 'static,
) -> Tracked {
    claim_with(what, stage, watchdog::OnDeath::Nothing, remove)
}

/// [`claim`], and the watchdog is told what to remove should the process die first.
pub fn claim_with(
    what: impl Into<String>,
    stage: Stage,
    on_death: watchdog::OnDeath,
    remove: impl FnOnce() + Send + 'static,
) -> Tracked {
    let what = what.into();
    let (told, on_release) = on_death.lines();
    let mut claims = SHARED.claims.lock().unwrap_or_else(|p| p.into_inner());
    let id = claims.next;
    claims.next += 1;
    if claims.closed {
        // The run has closed: what starts now is removed at once.
        drop(claims);
        remove();
        return Tracked { id, what };
    }
    if let Some(line) = &told {
        watchdog::send(line);
    }
    claims.list.push(Claim {
        id,
        stage,
        remove: Box::new(remove),
        on_release,
    });
    Tracked { id, what }
}

/// Removes every claim, stage by stage, and marks the scope closed.
pub(super) fn close() {
    let mut list = {
        let mut claims = SHARED.claims.lock().unwrap_or_else(|p| p.into_inner());
        claims.closed = true;
        std::mem::take(&mut claims.list)
    };
    // Newest first within a stage: what was made later may depend on what was made before.
    list.reverse();
    list.sort_by_key(|c| c.stage);
    let mut list = list.into_iter().peekable();
    while let Some(first) = list.next() {
        let stage = first.stage;
        let mut group = vec![first.remove];
        while let Some(next) = list.next_if(|c| c.stage == stage) {
            group.push(next.remove);
        }
        // One stage's removals together: each may wait on an engine, a cluster or `kind`.
        std::thread::scope(|s| {
            for remove in group {
                s.spawn(remove);
            }
        });
    }
}
