//! A run's turn on a cluster that other authlab runs may use too (a kubeconfig cluster, a
//! reused Kind cluster): a `Lease` in the cluster, the way Kubernetes components take turns.
//! A second run waits (saying for whom, bounded) until the first releases it or stops
//! renewing it; the Lease carries the run's labels, so whatever removes the run's objects
//! removes it too.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::MicroTime,
    jiff::Timestamp,
};
use kube::{
    Api, Client,
    api::{DeleteParams, PostParams},
};

use super::owner::Owner;

/// The Lease's namespace and name.
pub const NAMESPACE: &str = "default";
/// The Lease's name.
pub const NAME: &str = "authlab-turn";
/// How long a Lease that is not renewed stays valid.
const DURATION_SECS: i32 = 30;
/// How often the holder renews it.
const RENEW_EVERY: Duration = Duration::from_secs(10);

/// The run's turn: renewed in the background until released.
pub struct Turn {
    api: Api<Lease>,
    owner: Owner,
    renewer: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Turn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Turn").field("owner", &self.owner).finish()
    }
}

/// The holder identity of this run.
fn identity(owner: &Owner) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    format!(
        "authlab run {} (pid {} on {host})",
        owner.run(),
        std::process::id()
    )
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}

/// Whether `lease` is held by someone other than `me` and still valid; returns the holder
/// and how many seconds ago it was renewed.
fn held_by_other(lease: &Lease, owner: &Owner) -> Option<(String, i64)> {
    if owner.owns(lease.metadata.labels.as_ref()) {
        return None;
    }
    let spec = lease.spec.as_ref()?;
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty())?;
    let renewed = spec.renew_time.as_ref().or(spec.acquire_time.as_ref())?;
    let ago = Timestamp::now().as_second() - renewed.0.as_second();
    let valid = i64::from(spec.lease_duration_seconds.unwrap_or(DURATION_SECS));
    (ago < valid).then_some((holder, ago))
}

/// Takes the turn on the cluster of `client` for `owner`, waiting at most `wait` for another
/// run to release it; `waiting` is told (every 10 s) whom it waits for.
pub async fn acquire(
    client: &Client,
    owner: &Owner,
    wait: Duration,
    waiting: impl Fn(&str),
) -> Result<Turn> {
    let api: Api<Lease> = Api::namespaced(client.clone(), NAMESPACE);
    let mut turn = crate::wait::Wait::new(format!("the Lease {NAMESPACE}/{NAME}"), wait)
        .every(Duration::from_secs(1))
        .start();
    let mut last_said: Option<tokio::time::Instant> = None;
    loop {
        let mine = lease_for(owner, None);
        let making = crate::scope::begin(format!("Lease {NAMESPACE}/{NAME}"))
            .context("the run is stopping")?;
        let made = api.create(&PostParams::default(), &mine).await;
        drop(making);
        match made {
            Ok(_) => break,
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("creating the Lease {NAMESPACE}/{NAME} that gives this run its turn on the cluster")
                });
            }
        }
        let Some(current) = api
            .get_opt(NAME)
            .await
            .with_context(|| format!("reading the Lease {NAMESPACE}/{NAME}"))?
        else {
            continue;
        };
        match held_by_other(&current, owner) {
            None => {
                // Expired (its run stopped renewing it) or ours: taken over, unless another
                // run was quicker (a conflict, tried again).
                let rv = current.metadata.resource_version.clone();
                let taken = lease_for(owner, rv);
                let making = crate::scope::begin(format!("Lease {NAMESPACE}/{NAME}"))
                    .context("the run is stopping")?;
                let made = api.replace(NAME, &PostParams::default(), &taken).await;
                drop(making);
                match made {
                    Ok(_) => break,
                    Err(kube::Error::Api(e)) if e.code == 409 => continue,
                    Err(e) => {
                        return Err(e)
                            .with_context(|| format!("taking over the Lease {NAMESPACE}/{NAME}"));
                    }
                }
            }
            Some((holder, ago)) => {
                if turn.expired() {
                    bail!(
                        "another run uses this cluster: {holder} holds the Lease {NAMESPACE}/{NAME} (renewed {ago} s ago); waited {} s for it (AUTHLAB_CLUSTER_WAIT sets how long)",
                        wait.as_secs()
                    );
                }
                if last_said.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                    waiting(&format!(
                        "waiting for the cluster: {holder} holds the Lease {NAMESPACE}/{NAME} (renewed {ago} s ago); waiting up to {} s more",
                        wait.saturating_sub(turn.elapsed()).as_secs()
                    ));
                    last_said = Some(tokio::time::Instant::now());
                }
                // Run out: the next look names the holder.
                let _ = turn.tick().await;
            }
        }
    }
    let renewer = tokio::spawn(renew(api.clone(), owner.clone()));
    Ok(Turn {
        api,
        owner: owner.clone(),
        renewer,
    })
}

/// The Lease as `owner` holds it (`rv`: the version it replaces).
fn lease_for(owner: &Owner, rv: Option<String>) -> Lease {
    let mut obj = serde_json::json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": NAME, "namespace": NAMESPACE},
    });
    owner.label(&mut obj);
    let mut lease: Lease = serde_json::from_value(obj).unwrap_or_default();
    lease.metadata.resource_version = rv;
    lease.spec = Some(LeaseSpec {
        holder_identity: Some(identity(owner)),
        lease_duration_seconds: Some(DURATION_SECS),
        acquire_time: Some(now()),
        renew_time: Some(now()),
        ..Default::default()
    });
    lease
}

/// Renews the Lease every [`RENEW_EVERY`] while the run holds it.
async fn renew(api: Api<Lease>, owner: Owner) {
    loop {
        tokio::time::sleep(RENEW_EVERY).await;
        let renewed = async {
            let mut lease = api.get(NAME).await?;
            if !owner.owns(lease.metadata.labels.as_ref()) {
                bail!("another run took it over");
            }
            if let Some(spec) = lease.spec.as_mut() {
                spec.renew_time = Some(now());
            }
            api.replace(NAME, &PostParams::default(), &lease).await?;
            anyhow::Ok(())
        }
        .await;
        if let Err(e) = renewed {
            tracing::warn!("renewing this run's Lease {NAMESPACE}/{NAME} on the cluster: {e:#}");
        }
    }
}

impl Turn {
    /// Ends the turn: the Lease is deleted (if it is still this run's).
    pub async fn release(self) {
        self.renewer.abort();
        if let Ok(Some(l)) = self.api.get_opt(NAME).await
            && self.owner.owns(l.metadata.labels.as_ref())
            && let Err(e) = self.api.delete(NAME, &DeleteParams::default()).await
        {
            tracing::warn!("deleting this run's Lease {NAMESPACE}/{NAME}: {e}");
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_held_by_another_run_only_while_it_is_renewed() {
        let me = Owner::of_run("r1");
        let other = Owner::of_run("r2");
        let mut lease = lease_for(&other, None);
        let (holder, ago) = held_by_other(&lease, &me).expect("held by r2");
        assert!(holder.contains("authlab run r2"), "{holder}");
        assert!(ago <= 1);
        assert!(held_by_other(&lease, &other).is_none(), "its own");
        let old = Timestamp::now().as_second() - 31;
        lease.spec.as_mut().unwrap().renew_time =
            Some(MicroTime(Timestamp::from_second(old).unwrap()));
        assert!(held_by_other(&lease, &me).is_none(), "expired");
    }
}
