//! A new run's start-up reaper kills the processes killed runs left, but never a watchdog still
//! reaping its killed run (killing it mid-reap would leave the rest of that run behind).
//!
//! A test binary of its own: `authlab clean`, which other fault tests run, may kill any process
//! of a run that is over, watchdogs included, and tests of one binary run at once.

use std::process::{Command, Stdio};

#[test]
fn a_new_run_does_not_kill_a_watchdog_mid_reap() {
    let run = format!("rreaping{}", std::process::id());
    let locks = std::env::temp_dir().join("authlab-locks");
    std::fs::create_dir_all(&locks).unwrap();
    // A free lock: its run is provably over, as after a SIGKILL.
    let lock = locks.join(format!("{run}.lock"));
    std::fs::write(&lock, b"").unwrap();
    let bin = env!("CARGO_BIN_EXE_authlab");
    // A watchdog (its standard input still open: it waits for its run), labelled with the run.
    let mut watchdog = Command::new(bin)
        .arg("__watch")
        .env("AUTHLAB_MANAGED", "1")
        .env("AUTHLAB_RUN_ID", &run)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // And a server the killed run left: the reaper must kill that one.
    let mut server = Command::new("sleep")
        .arg("300")
        .env("AUTHLAB_MANAGED", "1")
        .env("AUTHLAB_RUN_ID", &run)
        .spawn()
        .unwrap();
    let out = Command::new(bin)
        .args([
            "run",
            "--exact",
            "kubernetes::token::garbage_jwt::openbao-2.7.2",
        ])
        .args(["--servers", "openbao:2.7.2"])
        .env_remove("CI")
        .output()
        .unwrap();
    let watchdog_survived = watchdog.try_wait().unwrap().is_none();
    let server_survived = server.try_wait().unwrap().is_none();
    drop(watchdog.stdin.take());
    let _ = watchdog.wait();
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_file(&lock);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        watchdog_survived,
        "the new run killed the watchdog of a run that is over"
    );
    assert!(
        !server_survived,
        "the new run left the process a killed run left"
    );
}
