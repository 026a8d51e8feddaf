//! One way to wait, as kube-runtime's `await_condition` under a timeout and testcontainers'
//! `WaitFor` have it: a condition checked at an interval under one bound, with progress notes
//! on long waits, and a wait that runs out saying what it waited for and how long.
//!
//! A [`Wait`] is started into a [`Ticker`]; the caller checks its condition (and, where a process
//! could die under it, that process's liveness) and calls [`Ticker::tick`] between checks:
//! the tick sleeps the interval, notes progress, and fails once the bound is reached. Checks
//! borrow whatever they need mutably (a child to `try_wait`, a reader's offset), which a
//! closure-driven poller cannot express. [`Wait::until`] is the short form for a check that
//! needs nothing mutable.

use std::time::{Duration, Instant};

/// A wait that ran out.
#[derive(Debug, thiserror::Error)]
#[error("timed out waiting for {what} (waited {:.1} s)", after.as_secs_f64())]
pub struct TimedOut {
    /// What was waited for.
    pub what: String,
    /// How long.
    pub after: Duration,
}

/// What to wait for, for how long, and how often to check.
#[derive(Debug, Clone)]
pub struct Wait {
    what: String,
    bound: Duration,
    every: Duration,
    note_every: Option<Duration>,
}

impl Wait {
    /// A wait for `what` (a phrase: "kube-apiserver to answer /readyz"), at most `bound`,
    /// checked every 50 ms.
    pub fn new(what: impl Into<String>, bound: Duration) -> Wait {
        Wait {
            what: what.into(),
            bound,
            every: Duration::from_millis(50),
            note_every: None,
        }
    }

    /// A wait that ends at `deadline` (a bound shared by several waits).
    pub fn until_deadline(what: impl Into<String>, deadline: Instant) -> Wait {
        Wait::new(what, deadline.saturating_duration_since(Instant::now()))
    }

    /// Checks every `every`.
    pub fn every(mut self, every: Duration) -> Wait {
        self.every = every;
        self
    }

    /// Says at INFO every `every` that it is still waiting, and how long of how long.
    pub fn noting_every(mut self, every: Duration) -> Wait {
        self.note_every = Some(every);
        self
    }

    /// What it waits for.
    pub fn what(&self) -> &str {
        &self.what
    }

    /// The bound.
    pub fn bound(&self) -> Duration {
        self.bound
    }

    /// Starts the clock.
    pub fn start(self) -> Ticker {
        let now = Instant::now();
        Ticker {
            started: now,
            noted: now,
            wait: self,
        }
    }

    /// Checks `ready` until it yields a value, which it returns; an error of `ready` ends the
    /// wait with it.
    pub async fn until<T, Fut>(self, mut ready: impl FnMut() -> Fut) -> anyhow::Result<T>
    where
        Fut: Future<Output = anyhow::Result<Option<T>>>,
    {
        let mut t = self.start();
        loop {
            if let Some(v) = ready().await? {
                return Ok(v);
            }
            t.tick().await?;
        }
    }
}

/// A wait under way.
#[derive(Debug)]
pub struct Ticker {
    wait: Wait,
    started: Instant,
    noted: Instant,
}

impl Ticker {
    /// How long it has waited.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Whether the bound has been reached.
    pub fn expired(&self) -> bool {
        self.elapsed() >= self.wait.bound
    }

    /// The error of this wait running out now.
    pub fn timed_out(&self) -> TimedOut {
        TimedOut {
            what: self.wait.what.clone(),
            after: self.elapsed(),
        }
    }

    /// Between two checks: fails once the bound is reached, else notes progress when due and
    /// sleeps the interval (never past the bound).
    pub async fn tick(&mut self) -> Result<(), TimedOut> {
        let nap = self.next()?;
        tokio::time::sleep(nap).await;
        Ok(())
    }

    /// [`Ticker::tick`] for code that is not async (a drop, a signal path): sleeps the thread.
    pub fn tick_blocking(&mut self) -> Result<(), TimedOut> {
        let nap = self.next()?;
        std::thread::sleep(nap);
        Ok(())
    }

    /// Waits (blocking) for `child` to exit, checking each interval: its exit status, or None
    /// once the bound is reached, when it has been killed and reaped.
    pub fn exit_of(
        &mut self,
        child: &mut std::process::Child,
    ) -> std::io::Result<Option<std::process::ExitStatus>> {
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(Some(status));
            }
            if self.tick_blocking().is_err() {
                let _ = child.kill();
                let _ = child.wait();
                return Ok(None);
            }
        }
    }

    /// The sleep before the next check, or the error when there is no time left.
    fn next(&mut self) -> Result<Duration, TimedOut> {
        let waited = self.elapsed();
        if waited >= self.wait.bound {
            return Err(self.timed_out());
        }
        if let Some(every) = self.wait.note_every
            && self.noted.elapsed() >= every
        {
            self.noted = Instant::now();
            tracing::info!(
                "waiting for {}: {} s of {} s",
                self.wait.what,
                waited.as_secs(),
                self.wait.bound.as_secs()
            );
        }
        Ok(self.wait.every.min(self.wait.bound - waited))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_that_outlives_the_bound_is_killed_and_one_that_exits_is_seen() {
        let mut slow = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let mut wait = Wait::new("sleep", Duration::from_millis(100))
            .every(Duration::from_millis(20))
            .start();
        assert_eq!(wait.exit_of(&mut slow).unwrap(), None);
        assert!(wait.elapsed() < Duration::from_secs(5));
        assert!(slow.try_wait().unwrap().is_some(), "killed and reaped");
        let mut quick = std::process::Command::new("true").spawn().unwrap();
        let mut wait = Wait::new("true", Duration::from_secs(10)).start();
        assert!(wait.exit_of(&mut quick).unwrap().unwrap().success());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_wait_returns_once_ready_or_says_what_it_waited_for() {
        let mut n = 0;
        let got = Wait::new("three checks", Duration::from_secs(5))
            .every(Duration::from_millis(1))
            .until(|| {
                n += 1;
                let v = n;
                async move { Ok((v == 3).then_some(v)) }
            })
            .await
            .unwrap();
        assert_eq!(got, 3);

        let started = Instant::now();
        let err = Wait::new("a condition that never holds", Duration::from_millis(30))
            .every(Duration::from_millis(5))
            .until(|| async { Ok(None::<()>) })
            .await
            .unwrap_err();
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(30), "{waited:?}");
        assert!(waited < Duration::from_secs(2), "{waited:?}");
        let text = err.to_string();
        let said: f64 = text
            .strip_prefix("timed out waiting for a condition that never holds (waited ")
            .and_then(|t| t.strip_suffix(" s)"))
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("{text}"));
        // What it says it waited is what it waited, to a tenth of a second.
        assert!(
            (said - waited.as_secs_f64()).abs() <= 0.1,
            "{text} after {waited:?}"
        );
        assert!(err.downcast_ref::<TimedOut>().is_some());

        // A check's own error ends the wait at once.
        let started = Instant::now();
        let err = Wait::new("a server that died", Duration::from_secs(10))
            .until(|| async { Err::<Option<()>, _>(anyhow::anyhow!("it exited with 1")) })
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "it exited with 1");
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn a_blocking_tick_never_sleeps_past_the_bound() {
        let mut t = Wait::new("nothing", Duration::from_millis(40))
            .every(Duration::from_secs(10))
            .start();
        let started = Instant::now();
        assert!(t.tick_blocking().is_ok());
        assert!(t.tick_blocking().is_err());
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
