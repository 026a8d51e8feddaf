//! Exit paths: real `authlab run`s interrupted with SIGINT or SIGTERM, or killed with SIGKILL,
//! sent to the process or to its whole group (what a terminal's Ctrl-C does), at several
//! moments, in both runtimes. Each must exit with 128 + the signal (or die of SIGKILL) and
//! leave nothing of its run behind: no process, no container or network, no scratch directory.
//! After SIGKILL that is the run's watchdog's work, done without another run.
//!
//! `AUTHLAB_FAULT_REPEAT=N` repeats every combination, and every other test of a killed or
//! stopped process, N times (default 1).

mod common;

use common::Needs;
use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

/// Where in a run the signal arrives.
#[derive(Debug, Clone, Copy)]
enum Moment {
    /// While the servers start.
    Startup,
    /// Once trials have finished and others are under way (pod containers among them).
    Trials,
}

/// How long a run may take to exit after SIGINT or SIGTERM.
const STOP_BOUND_SECS: u64 = 5;

fn repeat() -> usize {
    std::env::var("AUTHLAB_FAULT_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

fn docker() -> bool {
    Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `once` `AUTHLAB_FAULT_REPEAT` times.
fn repeated(once: fn()) {
    for _ in 0..repeat() {
        once();
    }
}

/// What is left of `run` once nothing is, or `bound` has passed (also waiting while `pending`
/// holds), and how long that took.
fn settled(run: &str, bound: Duration, pending: impl Fn() -> bool) -> (Vec<String>, Duration) {
    let start = Instant::now();
    let mut left = leftovers(run);
    while (pending() || !left.is_empty()) && start.elapsed() < bound {
        std::thread::sleep(Duration::from_millis(100));
        left = leftovers(run);
    }
    (left, start.elapsed())
}

/// What is left of `run`: processes labelled with it, its containers and networks, its
/// scratch directory.
fn leftovers(run: &str) -> Vec<String> {
    let mut out = Vec::new();
    let needle = format!("AUTHLAB_RUN_ID={run}");
    for pid in std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
    {
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if alive(pid) && env.split(|b| *b == 0).any(|v| v == needle.as_bytes()) {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            out.push(format!("process {pid} ({})", cmd.trim_end()));
        }
    }
    if docker() {
        for what in [&["ps", "-a", "-q"][..], &["network", "ls", "-q"][..]] {
            let o = Command::new("docker")
                .args(what)
                .args(["--filter", &format!("label=authlab.run-id={run}")])
                .output()
                .unwrap();
            for id in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                out.push(format!("docker {} {id}", what[0]));
            }
        }
    }
    let dir = std::env::temp_dir().join(format!("authlab-{run}"));
    if dir.exists() {
        out.push(format!("directory {}", dir.display()));
    }
    out
}

/// Starts a run, signals it at `moment`, and checks how it ended and what it left.
fn interrupt(runtime: &str, signal: i32, group: bool, moment: Moment) {
    interrupt_with(runtime, signal, group, moment, &[]);
}

/// [`interrupt`], with extra environment for the run.
fn interrupt_with(
    runtime: &str,
    signal: i32,
    group: bool,
    moment: Moment,
    env: &[(&str, &std::path::Path)],
) {
    let artifacts = tempfile::tempdir().unwrap();
    let mut child = std::os::unix::process::CommandExt::process_group(
        Command::new(env!("CARGO_BIN_EXE_authlab")).args([
            "run",
            "kubernetes::",
            "--servers",
            "openbao:2.7.2",
            "--runtime",
            runtime,
            "--jobs",
            "4",
        ]),
        0,
    )
    .env("AUTHLAB_ARTIFACTS", artifacts.path())
    .envs(env.iter().copied())
    .env_remove("CI")
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let pid = child.id() as i32;
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let started = Instant::now();
    let mut run = None;
    let mut lines = Vec::new();
    // Wait for the moment (bounded): the run id first, then the first finished trial.
    while started.elapsed() < Duration::from_secs(120) {
        let Ok(line) = rx.recv_timeout(Duration::from_secs(1)) else {
            continue;
        };
        if run.is_none() {
            run = line
                .strip_prefix("authlab: run ")
                .and_then(|r| r.split_whitespace().next())
                .map(str::to_string);
        }
        let trial_done = line.starts_with('[');
        lines.push(line);
        match moment {
            Moment::Startup if run.is_some() => break,
            Moment::Trials if trial_done => break,
            _ => {}
        }
    }
    let run = run.unwrap_or_else(|| panic!("no run id in {lines:#?}"));
    let target = if group {
        format!("-{pid}")
    } else {
        pid.to_string()
    };
    let sig = match signal {
        2 => "-INT",
        9 => "-KILL",
        _ => "-TERM",
    };
    assert!(
        Command::new("kill")
            .args([sig, "--", &target])
            .status()
            .unwrap()
            .success()
    );
    let signalled = Instant::now();
    let deadline = signalled + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "run {run} did not exit within 60 s of {sig}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let to_exit = signalled.elapsed();
    let what = format!(
        "{runtime} run {run}, {sig} to the {}, at {moment:?}",
        if group { "group" } else { "process" }
    );
    // What the run said after the signal (its stderr may stay open a little longer in a
    // watchdog it started: bounded).
    let mut after = Vec::new();
    let drained = Instant::now() + Duration::from_secs(5);
    while let Some(left) = drained.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => after.push(line),
            Err(_) => break,
        }
    }
    if signal != 9 {
        // Stopping is prompt (servers and containers are stopped at once, not waited out) and
        // quiet: nothing it removes on the way out is reported missing.
        assert!(
            to_exit < Duration::from_secs(STOP_BOUND_SECS),
            "{what}: exited {} ms after the signal (bound {STOP_BOUND_SECS} s)",
            to_exit.as_millis()
        );
        let warned: Vec<_> = after
            .iter()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .collect();
        assert!(
            warned.is_empty(),
            "{what}: warned while stopping: {warned:#?}"
        );
    }
    if signal == 9 {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "{what}: {status:?}");
    } else {
        assert_eq!(status.code(), Some(128 + signal), "{what}: {status:?}");
    }
    // Removal of containers is asynchronous in the engine (and after SIGKILL the watchdog's
    // work, with both cores busy): give it a bounded while.
    // A run that cleaned up after a signal leaves no lock either (after SIGKILL, the
    // watchdog removes it once every container is proven gone).
    let lock = std::env::temp_dir().join(format!("authlab-locks/{run}.lock"));
    // The watchdog's own bound after SIGKILL: a creation in flight at the death is waited for
    // 15 s, then 5 s of finding nothing.
    let bound = Duration::from_secs(if signal == 9 { 30 } else { 20 });
    let (left, took) = settled(&run, bound, || signal != 9 && lock.exists());
    assert!(left.is_empty(), "{what} left {left:?}");
    assert!(
        signal == 9 || !lock.exists(),
        "{what} left {}",
        lock.display()
    );
    eprintln!(
        "{what}: exited {} ms after the signal, nothing left {} ms later",
        to_exit.as_millis(),
        took.as_millis()
    );
}

fn each(runtime: &str) {
    for _ in 0..repeat() {
        for (signal, group) in [
            (2, true),
            (2, false),
            (15, true),
            (15, false),
            (9, true),
            (9, false),
        ] {
            for moment in [Moment::Startup, Moment::Trials] {
                interrupt(runtime, signal, group, moment);
            }
        }
    }
}

fn interrupted_process_runs_leave_nothing() {
    each("process");
}

fn interrupted_container_runs_leave_nothing() {
    each("container");
}

/// A server binary given as a wrapper script that forks the server (no `exec`): what it forked
/// is stopped with it, after a run that ends normally and after one killed mid-run.
fn servers_forked_by_a_wrapper_binary_do_not_outlive_the_run() {
    repeated(servers_forked_by_a_wrapper_binary_do_not_outlive_the_run_once);
}

fn servers_forked_by_a_wrapper_binary_do_not_outlive_the_run_once() {
    let out = Command::new(env!("CARGO_BIN_EXE_authlab"))
        .args(["provision", "--servers", "openbao:2.7.2"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let bao = stdout
        .lines()
        .find_map(|l| l.strip_prefix("openbao:2.7.2\t"))
        .unwrap_or_else(|| panic!("no binary path in {stdout}"));
    let dir = tempfile::tempdir().unwrap();
    let wrapper = dir.path().join("bao-wrapper");
    std::fs::write(&wrapper, format!("#!/bin/sh\n{bao} \"$@\"\n")).unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    // Ends normally: the run's leftovers are checked by run id.
    let artifacts = tempfile::tempdir().unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_authlab"))
        .args([
            "run",
            "kubernetes::client_token::outside",
            "--servers",
            "openbao:2.7.2",
        ])
        .env("AUTHLAB_OPENBAO_BIN", &wrapper)
        .env("AUTHLAB_ARTIFACTS", artifacts.path())
        .env_remove("CI")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    let id = stderr
        .lines()
        .find_map(|l| l.strip_prefix("authlab: run "))
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no run id in {stderr}"));
    let (left, _) = settled(id, Duration::from_secs(10), || false);
    assert!(left.is_empty(), "a run with a wrapper binary left {left:?}");
    // Killed mid-run.
    for group in [false, true] {
        interrupt_with(
            "process",
            9,
            group,
            Moment::Trials,
            &[("AUTHLAB_OPENBAO_BIN", &wrapper)],
        );
    }
}

/// Starts `authlab lab up` with its state file at `state` and waits (at most 60 s) until the
/// file exists.
fn lab_up(state: &std::path::Path) -> std::process::Child {
    let mut lab = Command::new(env!("CARGO_BIN_EXE_authlab"))
        .args(["lab", "up", "--servers", "openbao:2.7.2"])
        .env("AUTHLAB_LAB_STATE", state)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !state.exists() {
        assert!(Instant::now() < deadline, "the lab did not come up in 60 s");
        assert!(lab.try_wait().unwrap().is_none(), "the lab exited");
        std::thread::sleep(Duration::from_millis(100));
    }
    lab
}

/// A lab killed with SIGKILL leaves neither its servers nor its state file (root tokens).
fn a_killed_lab_leaves_no_server_and_no_state_file() {
    repeated(a_killed_lab_leaves_no_server_and_no_state_file_once);
}

fn a_killed_lab_leaves_no_server_and_no_state_file_once() {
    let state_dir = tempfile::tempdir().unwrap();
    let state = state_dir.path().join("lab.json");
    let mut lab = lab_up(&state);
    let deadline = Instant::now() + Duration::from_secs(60);
    // The file appears before it is written: read it once it parses.
    let run = loop {
        let text = std::fs::read_to_string(&state).unwrap_or_default();
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
            break v["run_id"]
                .as_str()
                .expect("run_id in the state file")
                .to_string();
        }
        assert!(
            Instant::now() < deadline,
            "the state file never parsed: {text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    lab.kill().unwrap();
    let _ = lab.wait();
    let (left, _) = settled(&run, Duration::from_secs(10), || state.exists());
    assert!(left.is_empty(), "a killed lab left {left:?}");
    assert!(!state.exists(), "a killed lab left its state file");
}

/// `clean` beside a live lab leaves it serving; `lab down` with a stale state file (naming an
/// unrelated process) signals nothing.
fn clean_keeps_live_labs_and_lab_down_signals_only_the_lab() {
    repeated(clean_keeps_live_labs_and_lab_down_signals_only_the_lab_once);
}

fn clean_keeps_live_labs_and_lab_down_signals_only_the_lab_once() {
    let bin = env!("CARGO_BIN_EXE_authlab");
    let state_dir = tempfile::tempdir().unwrap();
    let state = state_dir.path().join("lab.json");
    // A stale state file naming an unrelated process.
    let mut sleeper = Command::new("sleep").arg("60").spawn().unwrap();
    std::fs::write(
        &state,
        format!(
            r#"{{"run_id":"rdeadbeef","pid":{},"servers":[]}}"#,
            sleeper.id()
        ),
    )
    .unwrap();
    let down = Command::new(bin)
        .args(["lab", "down"])
        .env("AUTHLAB_LAB_STATE", &state)
        .output()
        .unwrap();
    assert!(down.status.success(), "{down:?}");
    assert!(
        sleeper.try_wait().unwrap().is_none(),
        "lab down signalled a process that is not the lab"
    );
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    // A live lab survives `clean`.
    let mut lab = lab_up(&state);
    let clean = Command::new(bin).arg("clean").output().unwrap();
    assert!(clean.status.success(), "{clean:?}");
    assert!(
        String::from_utf8_lossy(&clean.stdout).contains("is live"),
        "{clean:?}"
    );
    let status = Command::new(bin)
        .args(["lab", "status"])
        .env("AUTHLAB_LAB_STATE", &state)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("health 200"),
        "the lab stopped serving after clean: {status:?}"
    );
    let down = Command::new(bin)
        .args(["lab", "down"])
        .env("AUTHLAB_LAB_STATE", &state)
        .output()
        .unwrap();
    assert!(down.status.success(), "{down:?}");
    let code = lab.wait().unwrap().code();
    assert_eq!(code, Some(143), "the lab stops on SIGTERM");
    assert!(!state.exists(), "the state file is removed");
}

/// A run stopped while pip downloads — killed outright, or interrupted — leaves no pip behind.
/// pip is stood in for by an interpreter that never answers, as with a silent package index.
fn pip_does_not_outlive_the_run() {
    repeated(pip_does_not_outlive_the_run_once);
}

fn pip_does_not_outlive_the_run_once() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("python3");
    std::fs::write(&fake, "#!/bin/sh\nexec sleep 300\n").unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    for sig in ["-KILL", "-INT", "-TERM"] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_authlab"))
            .args(["provision", "--servers", "openbao:9.9.9"])
            .env("AUTHLAB_CACHE", dir.path().join("cache"))
            .env("AUTHLAB_PYTHON", &fake)
            .env_remove("AUTHLAB_OPENBAO_BIN")
            .env_remove("AUTHLAB_BINARY_SOURCES")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Wait until the stand-in pip runs.
        let deadline = Instant::now() + Duration::from_secs(30);
        let pip = loop {
            if let Some(p) = pip_of(child.id()) {
                break p;
            }
            assert!(Instant::now() < deadline, "pip never started");
            std::thread::sleep(Duration::from_millis(50));
        };
        Command::new("kill")
            .args([sig, &child.id().to_string()])
            .status()
            .unwrap();
        let _ = child.wait();
        let gone = Instant::now() + Duration::from_secs(10);
        while alive(pip) {
            assert!(
                Instant::now() < gone,
                "pip {pip} outlived a run stopped with {sig}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The child of `parent` running `sleep 300` (the stand-in pip).
fn pip_of(parent: u32) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (_, rest) = stat.rsplit_once(") ")?;
        let ppid: u32 = rest.split_whitespace().nth(1)?.parse().ok()?;
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        (ppid == parent && cmd.starts_with(b"sleep")).then_some(pid)
    })
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| !s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z')))
}

/// Peak memory (KiB) and exit status of `cmd`, which must finish within `limit`.
// The child is reaped with wait4(2), which also reports its peak memory.
#[allow(unsafe_code, clippy::zombie_processes)]
fn peak_kib(mut cmd: Command, limit: Duration) -> (i64, std::process::ExitStatus, String) {
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let mut stderr = child.stderr.unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        let mut status = 0;
        // SAFETY: an all-zero rusage is a valid value; wait4 writes into the two locals.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: waits for our own child; the pointers are to live locals.
        unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        let _ = tx.send((
            usage.ru_maxrss,
            std::os::unix::process::ExitStatusExt::from_raw(status),
            text,
        ));
    });
    match rx.recv_timeout(limit) {
        Ok(r) => r,
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("{cmd:?} did not finish within {limit:?}");
        }
    }
}

/// What hangs or exhausts a naive loader (a FIFO, a link loop, a link to /dev/zero, a 2 MiB
/// file, non-UTF-8 text) and the malformed-case corpus: `check`, `list` and `run` each refuse
/// them within 20 s, naming the file, in under 100 MB.
fn bad_input_neither_hangs_nor_exceeds_100_mb() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("cases");
    std::fs::create_dir_all(d.join("sub")).unwrap();
    std::fs::write(d.join("latin1.yaml"), b"about: caf\xe9\n").unwrap();
    std::fs::write(d.join("huge.yaml"), vec![b'#'; 2 << 20]).unwrap();
    std::os::unix::fs::symlink("/dev/zero", d.join("zero.yaml")).unwrap();
    std::os::unix::fs::symlink(&d, d.join("sub/loop")).unwrap();
    assert!(
        Command::new("mkfifo")
            .arg(d.join("fifo.yaml"))
            .status()
            .unwrap()
            .success()
    );
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad-cases");
    for (args, dir, names) in [
        (&["check"][..], &d, "zero.yaml"),
        (&["list"][..], &d, "fifo.yaml"),
        (&["run", "--servers", "openbao:2.7.2"][..], &d, "huge.yaml"),
        (&["check"][..], &corpus, "unknown-placeholder.yaml"),
    ] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_authlab"));
        cmd.args(args).arg("--cases").arg(dir).env_remove("CI");
        let (kib, status, stderr) = peak_kib(cmd, Duration::from_secs(20));
        let what = format!("authlab {} --cases {}", args.join(" "), dir.display());
        assert!(!status.success(), "{what} accepted bad input");
        assert!(stderr.contains(names), "{what}: {stderr}");
        assert!(kib < 100 * 1024, "{what} peaked at {} MiB", kib / 1024);
        eprintln!("{what}: refused, peak {} MiB", kib / 1024);
    }
}

/// A network whose run has no lock visible here (another machine or container sharing the
/// engine) is not `clean`'s to remove: it is named and kept; `--force` would remove it (asked
/// with `--dry-run`: a forced clean would also stop the other tests' live runs).
fn clean_keeps_what_runs_it_cannot_see_own() {
    let run = format!("rforeign{}", std::process::id());
    let net = format!("authlab-{run}");
    let made = Command::new("docker")
        .args([
            "network",
            "create",
            "--label",
            "authlab.managed=true",
            "--label",
        ])
        .arg(format!("authlab.run-id={run}"))
        .arg(&net)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let bin = env!("CARGO_BIN_EXE_authlab");
    let clean = Command::new(bin).arg("clean").output().unwrap();
    let said = String::from_utf8_lossy(&clean.stdout).into_owned();
    let kept = leftovers(&run);
    let force = Command::new(bin)
        .args(["clean", "--force", "--dry-run"])
        .output()
        .unwrap();
    let _ = Command::new("docker")
        .args(["network", "rm", &net])
        .output();
    assert!(clean.status.success(), "{clean:?}");
    assert!(
        said.contains(&format!(
            "run {run} has processes, containers, networks or cluster objects but no lock"
        )),
        "{said}"
    );
    assert_eq!(
        kept.len(),
        1,
        "clean removed a network it cannot tell is orphaned"
    );
    assert!(force.status.success(), "{force:?}");
    let forced = String::from_utf8_lossy(&force.stdout);
    assert!(
        forced.contains(&format!("network {net} (run {run})")),
        "clean --force would not remove it: {forced}"
    );
}

/// A live run's process whose lock is in another temp directory is not `clean`'s to kill: it is
/// named and kept; `--run` keeps to one run, and `--force --run <it>` stops it. Kind clusters
/// are left alone without `--force`.
fn clean_is_scoped_and_kills_no_process_it_cannot_tell_is_orphaned() {
    let run = format!("rlive{}", std::process::id());
    let mut other = Command::new("sleep")
        .arg("60")
        .env("AUTHLAB_MANAGED", "1")
        .env("AUTHLAB_RUN_ID", &run)
        .spawn()
        .unwrap();
    let bin = env!("CARGO_BIN_EXE_authlab");
    let clean = Command::new(bin).arg("clean").output().unwrap();
    let said = String::from_utf8_lossy(&clean.stdout).into_owned();
    let survived = other.try_wait().unwrap().is_none() && alive(other.id());
    let scoped = Command::new(bin)
        .args(["clean", "--force", "--run", "rsomeoneelse"])
        .output()
        .unwrap();
    let survived_scoped = other.try_wait().unwrap().is_none();
    let forced = Command::new(bin)
        .args(["clean", "--force", "--run", &run])
        .output()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut stopped = false;
    while Instant::now() < deadline {
        if other.try_wait().unwrap().is_some() {
            stopped = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = other.kill();
    let _ = other.wait();
    assert!(clean.status.success() && scoped.status.success() && forced.status.success());
    assert!(
        survived,
        "clean killed a process whose run it cannot see: {said}"
    );
    assert!(
        said.contains(&format!("run {run} has processes")),
        "clean names the run it keeps: {said}"
    );
    assert!(
        !said.contains("\nkind cluster authlab-") || said.contains("kept"),
        "{said}"
    );
    assert!(
        survived_scoped,
        "clean --run rsomeoneelse touched another run"
    );
    assert!(
        stopped,
        "clean --force --run {run} did not stop it: {}",
        String::from_utf8_lossy(&forced.stdout)
    );
}

/// Endless inputs to `diagnose` (`/dev/zero` as the server log, as the audit log and as
/// `--jwt @…`): each is refused within 20 s, naming the flag, in under 150 MB.
fn diagnose_refuses_endless_input_in_bounded_memory() {
    for args in [
        &["diagnose", "--server-log", "/dev/zero"][..],
        &["diagnose", "--audit", "/dev/zero"][..],
        &["diagnose", "--jwt", "@/dev/zero"][..],
    ] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_authlab"));
        cmd.args(args);
        let (kib, status, err) = peak_kib(cmd, Duration::from_secs(20));
        let what = args.join(" ");
        assert_eq!(status.code(), Some(2), "{what}: {status:?} {err}");
        assert!(
            err.contains(args[1]) && err.contains("larger than"),
            "{what}: {err}"
        );
        assert!(kib < 150 * 1024, "{what} peaked at {} MiB", kib / 1024);
        eprintln!("{what}: refused, peak {} MiB", kib / 1024);
    }
}

fn main() -> std::process::ExitCode {
    common::run(vec![
        common::test(
            "interrupted_process_runs_leave_nothing",
            Needs::Nothing,
            interrupted_process_runs_leave_nothing,
        ),
        common::test(
            "interrupted_container_runs_leave_nothing",
            Needs::Docker,
            interrupted_container_runs_leave_nothing,
        ),
        common::test(
            "servers_forked_by_a_wrapper_binary_do_not_outlive_the_run",
            Needs::Nothing,
            servers_forked_by_a_wrapper_binary_do_not_outlive_the_run,
        ),
        common::test(
            "a_killed_lab_leaves_no_server_and_no_state_file",
            Needs::Nothing,
            a_killed_lab_leaves_no_server_and_no_state_file,
        ),
        common::test(
            "clean_keeps_live_labs_and_lab_down_signals_only_the_lab",
            Needs::Nothing,
            clean_keeps_live_labs_and_lab_down_signals_only_the_lab,
        ),
        common::test(
            "pip_does_not_outlive_the_run",
            Needs::Nothing,
            pip_does_not_outlive_the_run,
        ),
        common::test(
            "bad_input_neither_hangs_nor_exceeds_100_mb",
            Needs::Nothing,
            bad_input_neither_hangs_nor_exceeds_100_mb,
        ),
        common::test(
            "clean_keeps_what_runs_it_cannot_see_own",
            Needs::Docker,
            clean_keeps_what_runs_it_cannot_see_own,
        ),
        common::test(
            "clean_is_scoped_and_kills_no_process_it_cannot_tell_is_orphaned",
            Needs::Nothing,
            clean_is_scoped_and_kills_no_process_it_cannot_tell_is_orphaned,
        ),
        common::test(
            "diagnose_refuses_endless_input_in_bounded_memory",
            Needs::Nothing,
            diagnose_refuses_endless_input_in_bounded_memory,
        ),
    ])
}
