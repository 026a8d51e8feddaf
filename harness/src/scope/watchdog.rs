//! The scope's side of the watchdog (`authlab __watch`, a hidden subcommand): started with the
//! first run, told one line per fact on its standard input, which this process holds
//! open for its whole life.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{ChildStdin, Command, Stdio},
    sync::Mutex,
};

use super::SHARED;

/// The hidden subcommand the watchdog runs as.
pub const WATCHDOG: &str = "__watch";

/// The `authlab` binary: this one, or for a test binary (`target/<profile>/deps/<name>`) the
/// one cargo built beside it.
fn program() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    if exe.file_name().is_some_and(|n| n == "authlab") {
        return Some(exe);
    }
    let sibling = exe.parent()?.parent()?.join("authlab");
    sibling.is_file().then_some(sibling)
}

/// Starts the watchdog, labelled with the first run it watches (so that `authlab clean`
/// leaves it alone while that run lives).
fn start(run_id: &str) -> Option<ChildStdin> {
    let Some(program) = program() else {
        tracing::debug!(
            "no authlab binary found for the watchdog: a killed run is reaped by the next run"
        );
        return None;
    };
    let mut cmd = Command::new(&program);
    super::process::label(&mut cmd, run_id);
    cmd.arg(WATCHDOG)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    match cmd.spawn() {
        Ok(mut child) => child.stdin.take(),
        Err(e) => {
            tracing::warn!(
                "could not start the watchdog ({}): {e}; a killed run is reaped by the next run",
                program.display()
            );
            None
        }
    }
}

/// Tells the watchdog one line, if this process has one.
pub(super) fn send(line: &str) {
    if let Some(pipe) = SHARED.watchdog.get() {
        let mut p = pipe.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = p.as_mut()
            && w.write_all(format!("{line}\n").as_bytes()).is_err()
        {
            // The watchdog is gone (killed by someone): nothing more to tell it.
            *p = None;
        }
    }
}

/// Starts watching run `run_id` (the watchdog is started on first use).
pub(super) fn watch(run_id: &str) {
    SHARED.watchdog.get_or_init(|| Mutex::new(start(run_id)));
    send(&format!("run {run_id}"));
}

/// This process uses Docker: the watchdog looks for containers and networks of its runs (by
/// their labels) should the process die.
pub fn uses_docker() {
    send("docker");
}

/// What the watchdog removes if the process dies before a claim is released.
#[derive(Debug, Clone)]
pub enum OnDeath {
    /// Nothing of its own (containers and networks are found by label, processes are killed by
    /// their parent-death signal).
    Nothing,
    /// A file.
    RemoveFile(PathBuf),
    /// A directory and what it holds.
    RemoveDir(PathBuf),
    /// A Kind cluster, by name.
    DeleteKind(String),
    /// The run's objects in a cluster: the cluster's target, as JSON.
    Sweep(String),
}

impl OnDeath {
    /// The line told when claimed, and the one told when released (if any). A value that is
    /// not one line is not told.
    pub(super) fn lines(self) -> (Option<String>, Option<String>) {
        let one_line = |s: &str| !s.contains('\n');
        let path = |p: &Path| p.to_str().filter(|p| one_line(p)).map(str::to_string);
        match self {
            OnDeath::Nothing => (None, None),
            // A path stays with the watchdog until the run is done: it may be written again.
            OnDeath::RemoveFile(p) => (path(&p).map(|p| format!("file {p}")), None),
            OnDeath::RemoveDir(p) => (path(&p).map(|p| format!("dir {p}")), None),
            OnDeath::DeleteKind(n) if one_line(&n) => {
                (Some(format!("kind {n}")), Some(format!("kept {n}")))
            }
            OnDeath::Sweep(j) if one_line(&j) => {
                (Some(format!("kube {j}")), Some(format!("unkube {j}")))
            }
            OnDeath::DeleteKind(_) | OnDeath::Sweep(_) => (None, None),
        }
    }
}

/// Held while the engine creates a container or network named `name`: should the process die
/// before this is dropped, the engine may still finish creating it, and the watchdog waits
/// for it.
#[derive(Debug)]
#[must_use = "the creation is in flight while this is held"]
pub struct InFlight(String);

/// Tells the watchdog `name` is being created, until the returned value is dropped.
pub fn in_flight(name: &str) -> InFlight {
    send(&format!("making {name}"));
    InFlight(name.to_string())
}

impl Drop for InFlight {
    fn drop(&mut self) {
        send(&format!("made {}", self.0));
    }
}
