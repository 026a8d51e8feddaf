use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use super::*;

/// The creation clean-up waits for is a task of the same runtime, which must go on while
/// clean-up waits (a wait that blocked its thread waited out the whole bound instead).
#[tokio::test(flavor = "current_thread")]
async fn cleanup_waits_for_a_creation_that_runs_on_its_own_runtime() {
    let making = begin("container held-by-a-task").expect("not stopping");
    let task = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(making);
    });
    let started = std::time::Instant::now();
    let waited = creations::wait_idle(Duration::from_secs(10)).await;
    // Other tests of this binary may create at the same moment: only this one is checked.
    if let Err(still) = &waited {
        assert!(
            !still.iter().any(|w| w.contains("held-by-a-task")),
            "{still:?}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    task.await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn a_creation_not_finished_in_time_is_named() {
    let _making = begin("container never-done").expect("not stopping");
    let still = creations::wait_idle(Duration::from_millis(30))
        .await
        .unwrap_err();
    assert!(
        still.contains(&"container never-done".to_string()),
        "{still:?}"
    );
}

type Log = Arc<Mutex<Vec<&'static str>>>;

/// A log of removals, and a removal that writes its name there.
fn counter() -> (Log, impl Fn(&'static str) -> Box<dyn FnOnce() + Send>) {
    let log = Log::default();
    let l = log.clone();
    (log, move |name| {
        let l = l.clone();
        Box::new(move || l.lock().unwrap().push(name))
    })
}

/// A claim dropped unreleased removes what it claims, once; a released one does not.
#[test]
fn a_dropped_claim_removes_and_a_released_one_does_not() {
    let (log, removal) = counter();
    let dropped = claim("thing one", Stage::Files, removal("one"));
    let released = claim("thing two", Stage::Files, removal("two"));
    assert_eq!(dropped.what(), "thing one");
    drop(dropped);
    released.release();
    assert_eq!(*log.lock().unwrap(), vec!["one"]);
    // An owner whose removal failed gets its claim back (dropped, it tries again).
    let removed = claim("thing three", Stage::Files, removal("three")).released_if(true);
    assert!(removed.is_none());
    let failed = claim("thing four", Stage::Files, removal("four")).released_if(false);
    assert_eq!(failed.as_ref().map(Tracked::what), Some("thing four"));
    drop(failed);
    assert_eq!(*log.lock().unwrap(), vec!["one", "four"]);
}

#[test]
fn a_claim_is_told_to_the_watchdog_only_when_it_can_be_one_line() {
    let (told, released) = OnDeath::DeleteKind("authlab-x".into()).lines();
    assert_eq!(told.as_deref(), Some("kind authlab-x"));
    assert_eq!(released.as_deref(), Some("kept authlab-x"));
    assert_eq!(OnDeath::DeleteKind("a\nb".into()).lines(), (None, None));
    let (told, released) = OnDeath::RemoveDir("/tmp/authlab-r1".into()).lines();
    assert_eq!(told.as_deref(), Some("dir /tmp/authlab-r1"));
    assert_eq!(released, None, "a path stays told until the run is done");
}

/// A spawned process is claimed: dropping the claim kills it (with its group).
#[test]
fn a_spawned_process_is_killed_when_its_claim_is_dropped() {
    let mut cmd = std::process::Command::new("sleep");
    cmd.arg("30");
    let (mut child, claim) = spawn("sleep 30", cmd, "rtest-spawn").unwrap();
    drop(claim);
    let mut wait = crate::wait::Wait::new("the process to die", Duration::from_secs(5)).start();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        wait.tick_blocking().expect("killed within 5 s");
    };
    assert!(!status.success(), "{status}");
}
