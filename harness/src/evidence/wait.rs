//! Waiting for evidence to appear: polling with one timeout (the crate's [`crate::wait`]), for
//! log lines that are written after the answer they explain, and for controllers that settle
//! with retries. Running out is no error here: the last observation is judged.

use std::time::Duration;

use anyhow::Result;

/// Observes with `observe` every `every` until `done` holds or `timeout` has passed, and
/// returns the last observation: the verdict, not the wait, says what did not hold.
pub async fn wait_for<T, Fut>(
    timeout: Duration,
    every: Duration,
    mut observe: impl FnMut() -> Fut,
    done: impl Fn(&T) -> bool,
) -> Result<T>
where
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut wait = crate::wait::Wait::new("evidence", timeout)
        .every(every)
        .start();
    loop {
        let seen = observe().await?;
        if done(&seen) || wait.tick().await.is_err() {
            return Ok(seen);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn returns_once_done_or_at_the_deadline() {
        let mut n = 0;
        let got = wait_for(
            Duration::from_secs(5),
            Duration::from_millis(1),
            || {
                n += 1;
                let v = n;
                async move { Ok(v) }
            },
            |v| *v == 3,
        )
        .await
        .unwrap();
        assert_eq!(got, 3);
        let started = Instant::now();
        let last = wait_for(
            Duration::from_millis(30),
            Duration::from_millis(5),
            || async { Ok(0) },
            |v| *v == 1,
        )
        .await
        .unwrap();
        assert_eq!(last, 0);
        assert!(started.elapsed() >= Duration::from_millis(30));
    }
}
