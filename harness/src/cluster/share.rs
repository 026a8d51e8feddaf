//! Which trials may be on one shared cluster (Kind, kubeconfig) at once, read from their cases.
//!
//! A trial's *world* is what it needs the cluster to hold: its case's objects and the legacy
//! token Secrets it has made. Trials with the same world share it (applied by each, idempotent
//! server-side apply; deleted by the last to leave). Two different worlds are on the cluster
//! together only when their *footprints* are disjoint: the names a trial's objects have, the
//! service accounts it names (client, reviewer, server pod: their absence may be what a case
//! is about) and the accounts its bindings grant to. A binding to a user or a group can change
//! what any request may do, so it touches everything. A trial that changes the cluster while
//! it runs (`delete`, `recreate_service_account`, `apply`, ESO's objects) shares with no one.

use std::{
    collections::BTreeSet,
    hash::{Hash, Hasher},
};

use serde_json::Value;

use crate::case::{
    matrix::Trial,
    model::{ClusterAction, Topology},
};

/// A footprint entry that touches every other.
const EVERYTHING: &str = "*";

/// What a trial needs a shared cluster to hold, and what it touches there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct World {
    /// The same for trials that need the same objects (also for those that share with no one).
    pub group: u64,
    /// Whether other trials of the same group may share it.
    pub shareable: bool,
    /// `Kind namespace/name` (or `Kind name`) of everything it touches; `*`: everything.
    pub footprint: BTreeSet<String>,
}

impl World {
    /// The world of `trial`'s case.
    pub fn of(trial: &Trial) -> World {
        let lc = &trial.case;
        let case = &lc.case;
        let objects: Vec<Value> = case
            .cluster
            .objects
            .iter()
            .flat_map(|o| lc.objects_of(o))
            .collect();
        let mut footprint = BTreeSet::new();
        let mut texts: Vec<String> = Vec::new();
        for o in &objects {
            footprint.insert(identity(o));
            footprint.extend(granted(o));
            texts.push(o.to_string());
        }
        let accounts = case
            .reviewer
            .iter()
            .chain(std::iter::once(&case.client))
            .map(|t| &t.service_account);
        for sa in accounts {
            footprint.insert(format!("ServiceAccount {}/{}", sa.namespace, sa.name));
        }
        for t in case.reviewer.iter().chain(std::iter::once(&case.client)) {
            if t.token == crate::case::model::TokenKind::LegacySecret {
                let sa = &t.service_account;
                let id = format!("Secret {}/{}", sa.namespace, t.legacy_secret_name());
                texts.push(format!("{id} of {}", sa.name));
                footprint.insert(id);
            }
        }
        if case.topology == Topology::Inside {
            let sa = case.pod_account();
            footprint.insert(format!("ServiceAccount {}/{}", sa.namespace, sa.name));
        }
        let mut changes = case.eso.is_some();
        for a in &case.before_login {
            match a {
                ClusterAction::Delete(spec) => {
                    changes = true;
                    if let Ok(d) = crate::case::manifest::DeleteSpec::parse(spec) {
                        footprint.insert(match &d.namespace {
                            Some(ns) => format!("{} {ns}/{}", d.kind, d.name),
                            None => format!("{} {}", d.kind, d.name),
                        });
                    }
                }
                ClusterAction::RecreateServiceAccount(sa) => {
                    changes = true;
                    footprint.insert(format!("ServiceAccount {}/{}", sa.namespace, sa.name));
                }
                ClusterAction::Apply(o) => {
                    changes = true;
                    for obj in lc.objects_of(o) {
                        footprint.insert(identity(&obj));
                        footprint.extend(granted(&obj));
                    }
                }
                // The trial's own pod, its own token: nothing shared changes.
                ClusterAction::Wait(_)
                | ClusterAction::ReplaceServerPod {}
                | ClusterAction::RotateServerToken {} => {}
            }
        }
        if changes {
            // ESO's objects have fixed names: the case shares the cluster with no one.
            footprint.insert(EVERYTHING.into());
        }
        texts.sort();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        texts.hash(&mut h);
        World {
            group: h.finish(),
            shareable: !changes,
            footprint,
        }
    }

    /// Whether a trial of this world may be on the cluster while one of `other` is: they share
    /// it, or they are [`World::apart`].
    pub fn beside(&self, other: &World) -> bool {
        (self.shareable && other.shareable && self.group == other.group) || self.apart(other)
    }

    /// Whether the two touch no name in common (nor does either touch everything).
    pub fn apart(&self, other: &World) -> bool {
        !self.footprint.contains(EVERYTHING)
            && !other.footprint.contains(EVERYTHING)
            && self.footprint.is_disjoint(&other.footprint)
    }
}

/// `Kind namespace/name`, or `Kind name` for an object without a namespace.
fn identity(o: &Value) -> String {
    let kind = o["kind"].as_str().unwrap_or_default();
    let name = o["metadata"]["name"].as_str().unwrap_or_default();
    match o["metadata"]["namespace"].as_str() {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    }
}

/// The accounts a binding grants to (`*` for a user or a group: anyone may be one).
fn granted(o: &Value) -> Vec<String> {
    let kind = o["kind"].as_str().unwrap_or_default();
    if kind != "RoleBinding" && kind != "ClusterRoleBinding" {
        return Vec::new();
    }
    let own_ns = o["metadata"]["namespace"].as_str().unwrap_or("default");
    o["subjects"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| match s["kind"].as_str() {
            Some("ServiceAccount") => format!(
                "ServiceAccount {}/{}",
                s["namespace"].as_str().unwrap_or(own_ns),
                s["name"].as_str().unwrap_or_default()
            ),
            _ => EVERYTHING.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::matrix::ClusterKind;

    /// The world of the shipped case in `file` (under `cases/`, without `.yaml`).
    fn world(file: &str) -> World {
        let cases = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../cases");
        let path = cases.join(format!("{file}.yaml"));
        let lc = crate::case::load::load_file(&cases, &path).expect("a shipped case");
        let trial = crate::case::matrix::expand(
            &[std::sync::Arc::new(lc)],
            &["openbao:2.7.2".parse().unwrap()],
            ClusterKind::Kind,
        )
        .remove(0);
        World::of(&trial)
    }

    /// Trials that need the same objects share them; one whose point is a binding's absence
    /// never meets a trial that has it.
    #[test]
    fn the_same_objects_are_shared_and_a_missing_binding_stays_missing() {
        let works = world("kubernetes/local-token/works");
        let audience = world("kubernetes/local-token/works-with-role-audience");
        let without = world("kubernetes/local-token/pod-without-auth-delegator");
        assert!(works.shareable && works.beside(&audience));
        assert!(!works.beside(&without) && !without.beside(&works));
        let reviewer = world("kubernetes/reviewer-jwt/reviewer-without-rbac");
        assert_eq!(
            reviewer.group, without.group,
            "same objects, other topology"
        );
        assert!(reviewer.beside(&without));
    }

    /// A trial that deletes what it applied shares with no one, not even its own group.
    #[test]
    fn a_trial_that_deletes_shares_with_no_one() {
        let deleted = world("kubernetes/token/service-account-deleted");
        let works = world("kubernetes/reviewer-jwt/works");
        assert_eq!(deleted.group, works.group);
        assert!(!deleted.shareable);
        assert!(!deleted.beside(&works) && !works.beside(&deleted) && !deleted.beside(&deleted));
    }

    /// A binding to a group (anonymous discovery) touches every other world; worlds that name
    /// nothing in common are on the cluster together.
    #[test]
    fn a_group_binding_touches_everything_and_disjoint_worlds_meet() {
        let discovery = world("jwt/jwks-url-works");
        assert!(discovery.footprint.contains(EVERYTHING));
        let guide = world("reported/guide-auth-delegator-long-lived-reviewer");
        assert!(!discovery.beside(&guide));
        let jwt = world("jwt/pubkeys-works");
        assert!(
            jwt.beside(&guide) && guide.beside(&jwt),
            "{jwt:?} {guide:?}"
        );
    }
}
