//! A pool of servers of one kind, each lent to one trial at a time and started on first use:
//! the API servers of one setting under `--cluster apiserver`, the servers of one version on
//! the Kind network (a trial's requests to the cluster are told apart by their source
//! address). A pool only starts as many as ever were held at once.

use std::{
    collections::HashMap,
    hash::Hash,
    sync::{Arc, Mutex},
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::once::{Once, locked};

/// One server of a pool: started on first use.
pub type Server<T> = Arc<Once<T>>;

/// Pools by key (setting, server version), each made on first use.
pub type PoolMap<K, T> = Mutex<HashMap<K, Arc<Pool<T>>>>;

/// The pool for `key` in `map`, made with `size()` servers on first use.
pub fn pool_for<K: Hash + Eq + Clone, T>(
    map: &PoolMap<K, T>,
    key: &K,
    size: impl FnOnce() -> usize,
) -> Arc<Pool<T>> {
    locked(map)
        .entry(key.clone())
        .or_insert_with(|| Arc::new(Pool::new(size())))
        .clone()
}

/// The servers of one pool.
pub struct Pool<T> {
    /// Those no trial holds, the most recently given back last.
    free: Mutex<Vec<Server<T>>>,
    /// One permit per server.
    slots: Arc<Semaphore>,
}

impl<T> Pool<T> {
    /// A pool of `size` servers, none started.
    pub fn new(size: usize) -> Pool<T> {
        Pool {
            free: Mutex::new((0..size).map(|_| Server::default()).collect()),
            slots: Arc::new(Semaphore::new(size)),
        }
    }

    /// Waits for a server no trial holds, preferring one that is already started (or failed
    /// to start: its error is the answer), and holds it until the [`Member`] is dropped.
    pub async fn take(self: &Arc<Self>) -> Member<T> {
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the pool's semaphore is never closed");
        let server = {
            let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
            let at = free
                .iter()
                .rposition(|s| s.initialized())
                .unwrap_or(free.len() - 1);
            free.remove(at)
        };
        Member {
            server: Some(server),
            pool: self.clone(),
            _permit: permit,
        }
    }

    /// The servers no trial holds (at shutdown: all of them, once every trial has ended).
    pub fn drain(&self) -> Vec<Server<T>> {
        std::mem::take(&mut *self.free.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// A trial's hold on one server of a pool.
pub struct Member<T> {
    server: Option<Server<T>>,
    pool: Arc<Pool<T>>,
    _permit: OwnedSemaphorePermit,
}

impl<T> Member<T> {
    /// The server held.
    pub fn server(&self) -> &Server<T> {
        self.server.as_ref().expect("held until dropped")
    }
}

impl<T> Drop for Member<T> {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            // Before the permit is released (fields drop after this), so the next taker finds it.
            self.pool
                .free
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As many holders at once as servers; a started server is taken before one never started.
    #[tokio::test(flavor = "current_thread")]
    async fn a_pool_lends_each_server_to_one_trial_and_prefers_started_ones() {
        let pool = Arc::new(Pool::<()>::new(2));
        let a = pool.take().await;
        let b = pool.take().await;
        assert!(!Arc::ptr_eq(a.server(), b.server()));
        let third = tokio::time::timeout(std::time::Duration::from_millis(50), pool.take()).await;
        assert!(third.is_err(), "a third holder of two servers");
        a.server()
            .get_or_init(|| async { Err(super::super::once::SharedError("started".into())) })
            .await;
        let started = a.server().clone();
        drop(b);
        drop(a);
        let again = pool.take().await;
        assert!(Arc::ptr_eq(again.server(), &started));
    }
}
