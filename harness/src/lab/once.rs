//! Values made once per run and shared by every trial that needs them; a failure is kept too,
//! so every trial that needs a missing Docker or a cluster that could not be created is told,
//! without retrying.

use std::{
    collections::HashMap,
    hash::Hash,
    sync::{Arc, Mutex},
};

use anyhow::{Context, Result};
use tokio::sync::OnceCell;

/// A cell that holds the value, or the error of the one attempt to make it.
pub(crate) type Once<T> = OnceCell<Result<T, SharedError>>;

/// A map of such cells, one per key, made empty on first use.
pub(crate) type OnceMap<K, T> = Mutex<HashMap<K, Arc<Once<T>>>>;

/// An error kept in a [`Once`] cell, shown with its whole chain of causes.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct SharedError(pub(crate) Arc<str>);

/// The value of `cell`, made by `init` on first use.
pub(crate) async fn once<T: Clone>(
    cell: &Once<T>,
    init: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    // Boxed: the futures that start servers and clusters are large.
    let init = Box::pin(init);
    cell.get_or_init(|| async { init.await.map_err(|e| SharedError(format!("{e:#}").into())) })
        .await
        .clone()
        .map_err(anyhow::Error::new)
}

/// The cell for `key` in `map` (created empty on first use).
pub(crate) fn cell_for<K: Hash + Eq + Clone, T>(map: &OnceMap<K, T>, key: &K) -> Arc<Once<T>> {
    locked(map).entry(key.clone()).or_default().clone()
}

/// Every value made so far in `map` (failures and cells still being filled left out).
pub(crate) fn made<K, T: Clone>(map: &OnceMap<K, T>) -> Vec<T> {
    locked(map)
        .values()
        .filter_map(|c| c.get().and_then(|r| r.as_ref().ok()).cloned())
        .collect()
}

/// Takes every cell out of `map`, for shutdown.
pub(crate) fn drain<K, T>(map: &OnceMap<K, T>) -> Vec<Arc<Once<T>>> {
    locked(map).drain().map(|(_, v)| v).collect()
}

/// The lock's guard, also after a panic while it was held (what the lab keeps behind a lock is
/// still right to use and to clean up then).
pub(crate) fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The keys in `cell`, generated on first use (off the async threads: RSA takes a while).
pub(crate) async fn generated_once(
    cell: &OnceCell<crate::sim::TlsKeys>,
) -> Result<crate::sim::TlsKeys> {
    cell.get_or_try_init(|| async {
        tokio::task::spawn_blocking(crate::sim::generate_tls_keys)
            .await
            .context("the key generation task failed")?
    })
    .await
    .cloned()
}
