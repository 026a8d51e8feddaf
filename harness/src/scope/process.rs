//! Processes as the scope starts and stops them: labelled with their run, each leading its own
//! process group, killed when this process dies, found again by `authlab clean`.
//!
//! Every process carries `AUTHLAB_MANAGED=1` and `AUTHLAB_RUN_ID=<run>` in its environment, so
//! leftovers of killed runs are found by reading `/proc/<pid>/environ`
//! ([`find_leftover_processes`]).

use nix::{sys::signal::Signal, unistd::Pid};

type SpawnRequest = (
    std::process::Command,
    std::sync::mpsc::Sender<std::io::Result<std::process::Child>>,
);

/// The thread every child is spawned from.
pub(super) type Spawner = std::sync::Mutex<std::sync::mpsc::Sender<SpawnRequest>>;

/// Spawns `cmd` from one thread that lives as long as the process, so the child's
/// parent-death signal (which Linux ties to the spawning *thread*) fires only when the harness
/// itself exits, not when a runtime worker thread does.
pub fn spawn_detached(cmd: std::process::Command) -> std::io::Result<std::process::Child> {
    let tx = super::SHARED.spawner.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("authlab-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .ok()
            .map(|_| std::sync::Mutex::new(tx))
    });
    let tx = tx
        .as_ref()
        .ok_or_else(|| std::io::Error::other("could not start the process-spawner thread"))?;
    let (reply_tx, reply_rx) = std::sync::mpsc::channel();
    tx.lock()
        .map_err(|_| std::io::Error::other("spawner lock poisoned"))?
        .send((cmd, reply_tx))
        .map_err(|_| std::io::Error::other("the spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| std::io::Error::other("the spawner thread did not answer"))?
}

/// Kills the child if the harness dies (Linux `PR_SET_PDEATHSIG`).
#[allow(unsafe_code)]
pub fn die_with_parent(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only calls prctl, which is
    // async-signal-safe; it touches no memory shared with the parent. (`pre_exec` is unsafe
    // in itself: no crate offers a safe way to set a child's parent-death signal.)
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
        });
    }
}

/// Sends `sig` to `pid` (never to pid 0 or below, which would mean a group or everyone).
fn signal(pid: u32, sig: Signal) {
    if let Ok(pid) = i32::try_from(pid)
        && pid > 0
    {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), sig);
    }
}

/// SIGKILLs a process (cleanup of leftovers).
pub fn kill_process(pid: u32) {
    signal(pid, Signal::SIGKILL);
}

/// SIGKILLs a whole process group (a child started with its own group, and what it forked).
pub fn kill_group(pgid: u32) {
    signal_group(pgid, Signal::SIGKILL);
}

/// Sends `sig` to the process group `pgid` (never to group 0 or 1).
pub fn signal_group(pgid: u32, sig: Signal) {
    if let Ok(pgid) = i32::try_from(pgid)
        && pgid > 1
    {
        let _ = nix::sys::signal::killpg(Pid::from_raw(pgid), sig);
    }
}

/// SIGTERMs a process.
pub fn terminate_process(pid: u32) {
    signal(pid, Signal::SIGTERM);
}

/// Labels a child as run `run_id`'s (in its environment, inherited by what it forks), for
/// [`find_leftover_processes`].
pub fn label(cmd: &mut std::process::Command, run_id: &str) {
    cmd.env("AUTHLAB_MANAGED", "1")
        .env("AUTHLAB_RUN_ID", run_id);
}

/// Processes started by authlab that are still running: (pid, run id).
pub fn find_leftover_processes() -> Vec<(u32, String)> {
    let me = std::process::id();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter_map(|pid| {
            let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
            let vars: Vec<&[u8]> = env.split(|b| *b == 0).collect();
            if !vars.contains(&&b"AUTHLAB_MANAGED=1"[..]) {
                return None;
            }
            let run = vars
                .iter()
                .find_map(|v| v.strip_prefix(b"AUTHLAB_RUN_ID="))
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default();
            Some((pid, run))
        })
        .collect()
}
