//! The API servers of `--cluster apiserver`: for each distinct cluster setting (and listen
//! address) a pool of kube-apiservers on the run's one etcd, each under its own prefix, so
//! that as many trials run at once as there are servers. A trial takes one server for its
//! whole life ([`Member`]) and gives it back when it ends; servers start on first use, so a
//! setting only a few trials have starts only as many as ever ran at once.

use crate::cluster::external::ExternalCluster;

/// Memory a kube-apiserver and its share of etcd take while trials run, with room to spare.
const MEMORY_PER_SERVER: u64 = 1 << 30;

/// Most API servers a setting gets, whatever the machine.
const MOST: usize = 6;

/// Trials planned per API server before a setting gets another: starting one costs about as
/// much of the machine as this many trials on a started one.
const TRIALS_PER_SERVER: usize = 25;

/// How many API servers a setting gets: `AUTHLAB_APISERVERS`, else two per core (a trial
/// mostly waits on the API server and the OpenBao server, as on the sim), at most one per GiB
/// of available memory, at most [`MOST`], and at most one per [`TRIALS_PER_SERVER`] trials
/// of the setting when the run's plan says how many it has; at least one.
pub fn pool_size(configured: Option<usize>, planned: Option<usize>) -> usize {
    if let Some(n) = configured {
        return n.max(1);
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let by_memory = available_memory().map_or(usize::MAX, |b| (b / MEMORY_PER_SERVER) as usize);
    let by_plan = planned.map_or(usize::MAX, |n| n.div_ceil(TRIALS_PER_SERVER));
    (cores * 2).min(by_memory).min(by_plan).clamp(1, MOST)
}

/// `MemAvailable` of `/proc/meminfo`, in bytes.
fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The API servers of one setting, each started on first use.
pub type Pool = super::pool::Pool<ExternalCluster>;

/// A trial's hold on one API server of a pool.
pub type Member = super::pool::Member<ExternalCluster>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_size_is_configured_or_from_the_machine() {
        assert_eq!(pool_size(Some(3), Some(1)), 3);
        assert_eq!(pool_size(Some(0), None), 1);
        let n = pool_size(None, None);
        assert!((1..=MOST).contains(&n), "{n}");
        // A setting only a few trials have gets one server; many trials, the machine's size.
        assert_eq!(pool_size(None, Some(15)), 1);
        assert_eq!(pool_size(None, Some(0)), 1);
        assert_eq!(pool_size(None, Some(10_000)), n);
    }
}
