//! Trials' turns on a shared cluster (Kind, kubeconfig), by object rather than by cluster: a
//! trial enters its [`World`] on the cluster and stays until its teardown. It joins trials
//! already there with the same world, opens its own beside worlds whose footprints it does not
//! touch, and otherwise waits. A world opened on the cluster is left by its last trial, who
//! deletes its objects while no one joins it.
//!
//! Waiting follows the run's order: a trial that would open a world waits behind waiters it
//! collides with that come before it in the run's order (then by arrival); one that joins a
//! world already there does not wait at all.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use tokio::sync::Notify;

use super::once::locked;
use crate::cluster::share::World;

/// The worlds on the run's shared clusters, and the trials waiting to enter one.
#[derive(Default)]
pub struct Worlds {
    state: Mutex<State>,
    changed: Notify,
}

#[derive(Default)]
struct State {
    next: u64,
    /// Worlds on a cluster, by id.
    present: BTreeMap<u64, Present>,
    /// Trials waiting to enter a world, by their place in the run's order, then arrival.
    waiting: BTreeMap<(u64, u64), (String, World)>,
}

struct Present {
    cluster: String,
    world: World,
    /// Trials in it.
    members: usize,
    /// Its last trial is deleting its objects: no one joins.
    leaving: bool,
}

impl State {
    /// The id of the world `world` may join or open on `cluster` now (`ticket`: its place in
    /// the queue), or None while it must wait.
    fn admit(&mut self, cluster: &str, world: &World, ticket: (u64, u64)) -> Option<u64> {
        let on_cluster = |p: &&Present| p.cluster == cluster;
        if world.shareable
            && let Some((&id, p)) = self.present.iter_mut().find(|(_, p)| {
                p.cluster == cluster
                    && !p.leaving
                    && p.world.shareable
                    && p.world.group == world.group
            })
        {
            p.members += 1;
            return Some(id);
        }
        let clear = self
            .present
            .values()
            .filter(on_cluster)
            .all(|p| world.apart(&p.world));
        let first = self
            .waiting
            .range(..ticket)
            .filter(|(_, (c, _))| c == cluster)
            .all(|(_, (_, w))| world.apart(w) || (world.shareable && w == world));
        if !(clear && first) {
            return None;
        }
        let id = self.next;
        self.next += 1;
        self.present.insert(
            id,
            Present {
                cluster: cluster.to_string(),
                world: world.clone(),
                members: 1,
                leaving: false,
            },
        );
        Some(id)
    }
}

impl Worlds {
    /// Enters `world` on `cluster` for the trial `rank`th in the run's order (None: after
    /// every trial the run ordered): joins it when it is there, opens it when nothing there
    /// collides with it, else waits until that is so.
    pub async fn enter(self: &Arc<Self>, cluster: &str, rank: Option<usize>, world: World) -> Stay {
        let ticket = {
            let mut s = locked(&self.state);
            let t = (rank.map_or(u64::MAX, |r| r as u64), s.next);
            s.next += 1;
            s.waiting.insert(t, (cluster.to_string(), world.clone()));
            t
        };
        // Out of the queue however the wait ends (a stopped run drops it).
        let queued = Queued {
            worlds: self.clone(),
            ticket,
        };
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let admitted = {
                let mut s = locked(&self.state);
                let id = s.admit(cluster, &world, ticket);
                if id.is_some() {
                    s.waiting.remove(&ticket);
                }
                id
            };
            if let Some(id) = admitted {
                // Out of the queue: a trial behind this one may now open a world beside it.
                drop(queued);
                return Stay {
                    worlds: self.clone(),
                    id,
                    departed: false,
                };
            }
            changed.await;
        }
    }

    /// Trials in worlds on `cluster`, and worlds there (for tests and progress).
    pub fn on(&self, cluster: &str) -> (usize, usize) {
        let s = locked(&self.state);
        let worlds: Vec<_> = s
            .present
            .values()
            .filter(|p| p.cluster == cluster)
            .collect();
        (worlds.iter().map(|p| p.members).sum(), worlds.len())
    }

    fn leave(&self, id: u64) {
        let mut s = locked(&self.state);
        let gone = match s.present.get_mut(&id) {
            Some(p) if p.members > 1 => {
                p.members -= 1;
                false
            }
            Some(_) => true,
            None => false,
        };
        if gone {
            s.present.remove(&id);
        }
        drop(s);
        if gone {
            self.changed.notify_waiters();
        }
    }
}

/// A trial's place in the queue, removed when it stops waiting.
struct Queued {
    worlds: Arc<Worlds>,
    ticket: (u64, u64),
}

impl Drop for Queued {
    fn drop(&mut self) {
        locked(&self.worlds.state).waiting.remove(&self.ticket);
        self.worlds.changed.notify_waiters();
    }
}

/// A trial's stay in a world on a shared cluster; dropping it leaves.
pub struct Stay {
    worlds: Arc<Worlds>,
    id: u64,
    departed: bool,
}

impl std::fmt::Debug for Stay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stay").field("id", &self.id).finish()
    }
}

impl Stay {
    /// Leaves the world unless this trial is its last: then it stays (no one joins) and it is
    /// the caller's to delete the world's objects before dropping this. True for the last.
    pub fn last(&mut self) -> bool {
        let mut s = locked(&self.worlds.state);
        match s.present.get_mut(&self.id) {
            Some(p) if p.members > 1 => {
                p.members -= 1;
                self.departed = true;
                false
            }
            Some(p) => {
                p.leaving = true;
                true
            }
            None => false,
        }
    }
}

impl Drop for Stay {
    fn drop(&mut self) {
        if !self.departed {
            self.worlds.leave(self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{collections::BTreeSet, time::Duration};

    fn world(group: u64, shareable: bool, names: &[&str]) -> World {
        World {
            group,
            shareable,
            footprint: names.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>(),
        }
    }

    async fn enters(w: &Arc<Worlds>, cluster: &str, world: &World) -> Option<Stay> {
        tokio::time::timeout(
            Duration::from_millis(50),
            w.enter(cluster, None, world.clone()),
        )
        .await
        .ok()
    }

    /// The same objects are shared; colliding ones wait until the last trial has left (and
    /// deleted them); disjoint ones and other clusters go on beside.
    #[tokio::test(flavor = "current_thread")]
    async fn trials_share_a_world_wait_for_a_colliding_one_and_pass_disjoint_ones() {
        let w = Arc::new(Worlds::default());
        let a = world(1, true, &["ServiceAccount default/app"]);
        let b = world(
            2,
            true,
            &["ServiceAccount default/app", "ClusterRoleBinding x"],
        );
        let c = world(3, true, &["ServiceAccount other/app"]);
        let mut first = enters(&w, "kind", &a).await.expect("an empty cluster");
        let second = enters(&w, "kind", &a).await.expect("the same world");
        assert_eq!(w.on("kind"), (2, 1));
        assert!(enters(&w, "kind", &b).await.is_none(), "a colliding world");
        assert!(enters(&w, "other", &b).await.is_some(), "another cluster");
        let beside = enters(&w, "kind", &c).await.expect("a disjoint world");
        assert_eq!(w.on("kind"), (3, 2));
        drop(beside);
        assert!(!first.last(), "one more trial is in it");
        let mut second = second;
        assert!(second.last(), "the last one deletes");
        assert!(
            enters(&w, "kind", &a).await.is_none(),
            "no one joins a world being deleted"
        );
        drop(first);
        let waiter = tokio::spawn({
            let w = w.clone();
            async move { w.enter("kind", None, b).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        drop(second);
        let entered = tokio::time::timeout(Duration::from_secs(1), waiter).await;
        assert!(
            entered.is_ok(),
            "the colliding world enters once the last has left"
        );
    }

    /// A world that shares with no one (its trial deletes objects) is alone even with its own
    /// group; an earlier waiter goes before a later one it collides with.
    #[tokio::test(flavor = "current_thread")]
    async fn a_changing_trial_is_alone_and_waiters_keep_their_order() {
        let w = Arc::new(Worlds::default());
        let shared = world(1, true, &["ServiceAccount default/app"]);
        let alone = world(1, false, &["*", "ServiceAccount default/app"]);
        let other = world(2, true, &["ServiceAccount default/app", "Secret default/t"]);
        let first = enters(&w, "kind", &shared).await.expect("empty");
        assert!(enters(&w, "kind", &alone).await.is_none());
        let queued = tokio::spawn({
            let (w, alone) = (w.clone(), alone.clone());
            async move { w.enter("kind", None, alone).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let later = tokio::spawn({
            let w = w.clone();
            async move { w.enter("kind", None, other).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(first);
        let alone_in = tokio::time::timeout(Duration::from_secs(1), queued)
            .await
            .expect("the earlier waiter enters")
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!later.is_finished(), "the later one waits behind it");
        assert!(
            enters(&w, "kind", &shared).await.is_none(),
            "no one joins it"
        );
        drop(alone_in);
        tokio::time::timeout(Duration::from_secs(1), later)
            .await
            .expect("then the later one")
            .unwrap();
    }
}
