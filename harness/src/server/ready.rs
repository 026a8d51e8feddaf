//! Waiting for a starting server: `sys/health` polled until a stage is reached, bounded by a
//! deadline, with a liveness check between polls so a server that died is reported at once
//! instead of after the whole wait.

use std::time::{Duration, Instant};

use anyhow::Result;

use crate::{vault::VaultClient, wait::Wait};

/// What a wait is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The listener answers `sys/health` with any status (sealed, uninitialised).
    Listening,
    /// `sys/health` answers 200: initialised, unsealed and active.
    Active,
}

impl Stage {
    fn describe(self) -> &'static str {
        match self {
            Stage::Listening => "the listener to answer",
            Stage::Active => "an active, unsealed server (status 200)",
        }
    }

    fn reached(self, status: u16) -> bool {
        self == Stage::Listening || status == 200
    }
}

/// Whether a starting server still runs.
pub trait Liveness {
    /// Ok while it runs; an error saying how it ended otherwise.
    fn check(&mut self) -> impl Future<Output = Result<()>> + Send;
}

/// For servers whose death the caller learns some other way.
pub struct AssumeAlive;

impl Liveness for AssumeAlive {
    async fn check(&mut self) -> Result<()> {
        Ok(())
    }
}

/// How often a wait asks whether the server still runs.
const LIVENESS_EVERY: Duration = Duration::from_millis(200);

/// Polls `client`'s `sys/health` every `poll` until `stage` is reached. Between polls `alive`
/// is asked whether the server still runs (its error ends the wait); past `deadline` the wait
/// fails naming what it waited for and where.
pub async fn wait_for(
    client: &VaultClient,
    stage: Stage,
    deadline: Instant,
    poll: Duration,
    alive: &mut (impl Liveness + Send),
) -> Result<()> {
    let what = format!(
        "{} at {}/v1/sys/health",
        stage.describe(),
        client.addr().trim_end_matches('/')
    );
    let mut wait = Wait::until_deadline(what, deadline).every(poll).start();
    // Asking whether the server still runs costs more than a health probe (a container
    // inspect), so it is asked at most every LIVENESS_EVERY.
    let mut checked: Option<Instant> = None;
    loop {
        if let Ok(r) = client.health().await
            && stage.reached(r.status)
        {
            return Ok(());
        }
        if checked.is_none_or(|at| at.elapsed() >= LIVENESS_EVERY) {
            alive.check().await?;
            checked = Some(Instant::now());
        }
        wait.tick().await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client that gives up on each request after 100 ms.
    fn quick_client(addr: &str) -> VaultClient {
        let t = Duration::from_millis(100);
        VaultClient::with_timeouts(addr, None, t, t).unwrap()
    }

    #[tokio::test]
    async fn a_silent_address_times_out_naming_the_stage_and_address() {
        // A bound listener that is never accepted from: health requests time out.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = format!("http://{}", l.local_addr().unwrap());
        let client = quick_client(&addr);
        let deadline = Instant::now() + Duration::from_millis(300);
        let err = wait_for(
            &client,
            Stage::Active,
            deadline,
            Duration::from_millis(10),
            &mut AssumeAlive,
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("an active, unsealed server"), "{err}");
        assert!(err.contains(&format!("{addr}/v1/sys/health")), "{err}");
    }

    struct Died;

    impl Liveness for Died {
        async fn check(&mut self) -> Result<()> {
            anyhow::bail!("the server exited during start-up (exit status: 1)")
        }
    }

    #[tokio::test]
    async fn a_dead_server_ends_the_wait_before_the_deadline() {
        let client = quick_client("http://127.0.0.1:9");
        let started = Instant::now();
        let err = wait_for(
            &client,
            Stage::Listening,
            started + Duration::from_secs(30),
            Duration::from_millis(10),
            &mut Died,
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("exited during start-up"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
