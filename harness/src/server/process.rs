//! Servers as local processes: start from a rendered config, wait for readiness, initialise
//! and unseal, stop on drop, on Ctrl-C, and when the harness itself dies.
//!
//! Start-up is a real `server -config=<file>` followed by `PUT sys/init` (one key share,
//! threshold one) and `PUT sys/unseal`, not `-dev`: dev mode pre-mounts engines, keeps its own
//! listener settings and cannot declare audit devices the way a production config does, so a
//! lab on a dev server would not meet the server its users run. The cost is one init and one
//! unseal request (a few milliseconds with in-memory storage).
//!
//! Every process carries `AUTHLAB_MANAGED=1` and `AUTHLAB_RUN_ID=<run>` in its environment, so
//! `authlab clean` finds leftovers of crashed runs by reading `/proc/<pid>/environ`
//! ([`find_leftover_processes`]).

use nix::sys::signal::Signal;
use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use serde_json::json;

use crate::scope::process::{kill_group, signal_group};

use super::{
    Flavour, ServerSpec,
    config::{self, ServerConfig},
    ready,
};
use crate::{logs::LogLine, vault::VaultClient, wait::Wait};

/// How a server process is started.
#[derive(Debug, Clone)]
pub struct ProcessOptions {
    /// Scratch directory for config, logs and audit file.
    pub workdir: PathBuf,
    /// Run id (labels the process).
    pub run_id: String,
    /// Bound on start → ready.
    pub ready_timeout: Duration,
}

/// Default bound on spawn → ready.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(30);

impl ProcessOptions {
    /// Options with the default ready timeout (30 s).
    pub fn new(workdir: impl Into<PathBuf>, run_id: impl Into<String>) -> Self {
        ProcessOptions {
            workdir: workdir.into(),
            run_id: run_id.into(),
            ready_timeout: DEFAULT_READY_TIMEOUT,
        }
    }
}

/// Where start-up time went, each measured from spawn.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StartupTimings {
    /// The listener answered `sys/health` (sealed, uninitialised).
    pub listening: Duration,
    /// `sys/init` and `sys/unseal` done (and, for Vault, the audit device enabled).
    pub unsealed: Duration,
    /// `sys/health` answered 200: active and ready for requests.
    pub ready: Duration,
}

/// How many times start-up is retried when the chosen port was taken in the meantime.
const PORT_ATTEMPTS: usize = 3;

/// A running, initialised and unsealed server process.
pub struct RunningServer {
    spec: ServerSpec,
    child: Option<std::process::Child>,
    /// The scope's claim on the process, released once it has been reaped.
    claim: Option<crate::scope::Tracked>,
    addr: String,
    root_token: String,
    audit_log: PathBuf,
    server_log: PathBuf,
    config_text: String,
    timings: StartupTimings,
    client: VaultClient,
}

/// A server that did not come up or was refused while being initialised, naming the step.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The process ended before it was ready.
    #[error("the server exited during start-up ({0})")]
    Exited(std::process::ExitStatus),
    /// A step of initialising it was refused.
    #[error("{step} answered {status}: {errors:?}")]
    Refused {
        /// `sys/init`, `sys/unseal`, enabling the audit device.
        step: &'static str,
        /// The HTTP status.
        status: u16,
        /// The server's `errors`.
        errors: Vec<String>,
    },
    /// `sys/init` answered without a value it always gives.
    #[error("sys/init returned no {0}")]
    Missing(&'static str),
}

impl ServerError {
    fn refused(step: &'static str, r: &crate::vault::ApiResponse) -> Self {
        ServerError::Refused {
            step,
            status: r.status,
            errors: r.errors(),
        }
    }
}

/// A loopback port that was free a moment ago (the listener is dropped before the server binds
/// it; [`RunningServer::start`] retries when another process took it in between).
fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free loopback port")?;
    Ok(l.local_addr()?.port())
}

/// The only variables a server process inherits.
const SERVER_KEEPS_ENV: &[&str] = &["PATH", "HOME", "TMPDIR", "TZ"];

/// The `server -config=…` command: output to `server_log`, labelled, with a clean environment.
fn server_command(
    bin: &Path,
    config_path: &Path,
    server_log: &Path,
    opts: &ProcessOptions,
) -> Result<std::process::Command> {
    let log = std::fs::File::create(server_log)
        .with_context(|| format!("creating {}", server_log.display()))?;
    let log2 = log
        .try_clone()
        .with_context(|| format!("duplicating the handle of {}", server_log.display()))?;
    let mut cmd = std::process::Command::new(bin);
    cmd.arg("server")
        .arg(format!("-config={}", config_path.display()))
        .current_dir(&opts.workdir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log2));
    // A clean environment: OpenBao reads BAO_* and VAULT_* (an address, a token, a log level,
    // a CA), and Go reads proxies, GODEBUG, GOMAXPROCS and SSL_CERT_* — any of them inherited
    // would change what the lab server does, and how differs between the Go releases the
    // server versions are built with.
    cmd.env_clear();
    for k in SERVER_KEEPS_ENV {
        if let Some(v) = std::env::var_os(k) {
            cmd.env(k, v);
        }
    }
    cmd.env("BAO_LOG_LEVEL", "debug")
        .env("VAULT_LOG_LEVEL", "debug");
    // Labelled, and in its own process group, stopped as a whole (a wrapper script given as
    // the binary, and what it forks, go with it): as the scope spawns it.
    Ok(cmd)
}

/// Starts and stops a server `runs` times in a row (each in its own subdirectory of `workdir`)
/// and returns each start's timings: what `scripts/bench` reports as server start-up.
pub async fn measure_startup(
    spec: &ServerSpec,
    bin: &Path,
    workdir: &Path,
    runs: usize,
) -> Result<Vec<StartupTimings>> {
    let mut out = Vec::with_capacity(runs);
    for i in 0..runs {
        let opts = ProcessOptions::new(workdir.join(format!("startup-{i}")), "measure-startup");
        let mut server = RunningServer::start(spec, bin, opts)
            .await
            .with_context(|| format!("start {} of {runs} of {spec}", i + 1))?;
        out.push(server.startup_timings());
        server.stop().await;
    }
    Ok(out)
}

/// Byte offset of the last line in `text` that starts an entry (entries start with their
/// timestamp; continuation and banner lines do not start with a digit).
fn last_entry_start(text: &str) -> usize {
    let mut start = 0;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if line.starts_with(|c: char| c.is_ascii_digit()) {
            start = offset;
        }
        offset += line.len();
    }
    start
}

fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A spawned server process is alive until it has exited.
struct ChildAlive<'a>(&'a mut Option<std::process::Child>);

impl ready::Liveness for ChildAlive<'_> {
    async fn check(&mut self) -> Result<()> {
        if let Some(c) = self.0.as_mut()
            && let Some(status) = c.try_wait()?
        {
            return Err(ServerError::Exited(status).into());
        }
        Ok(())
    }
}

/// Initialises (one key share) and unseals a fresh server, waits until it is active, and for
/// Vault enables the file audit device at `audit_file` (OpenBao declares it in its config).
/// Returns the root token.
pub async fn initialise(
    client: &VaultClient,
    flavour: Flavour,
    audit_file: &str,
) -> Result<String> {
    Ok(initialise_keyed(client, flavour, audit_file).await?.0)
}

/// [`initialise`], returning the root token and the unseal key (for a server that is
/// restarted on its storage).
pub async fn initialise_keyed(
    client: &VaultClient,
    flavour: Flavour,
    audit_file: &str,
) -> Result<(String, String)> {
    let init = client
        .request(
            reqwest::Method::PUT,
            "sys/init",
            Some(&json!({"secret_shares": 1, "secret_threshold": 1})),
        )
        .await?;
    if !init.is_success() {
        return Err(ServerError::refused("sys/init", &init).into());
    }
    let key = init.body["keys_base64"][0]
        .as_str()
        .or_else(|| init.body["keys"][0].as_str())
        .ok_or(ServerError::Missing("unseal key"))?
        .to_string();
    let root_token = init.body["root_token"]
        .as_str()
        .ok_or(ServerError::Missing("root token"))?
        .to_string();
    unseal(client, flavour, &key).await?;
    if flavour == Flavour::Vault {
        let root = client.with_token(Some(root_token.clone()));
        let r = root
            .request(
                reqwest::Method::PUT,
                "sys/audit/authlab",
                Some(&json!({"type": "file", "options": {"file_path": audit_file, "log_raw": "true"}})),
            )
            .await?;
        if !r.is_success() {
            return Err(ServerError::refused("enabling the file audit device", &r).into());
        }
    }
    Ok((root_token, key))
}

/// Unseals a server with its one key share and waits until it is active (up to 30 s).
pub async fn unseal(client: &VaultClient, _flavour: Flavour, key: &str) -> Result<()> {
    let unseal = client
        .request(
            reqwest::Method::PUT,
            "sys/unseal",
            Some(&json!({"key": key})),
        )
        .await?;
    if !unseal.is_success() {
        return Err(ServerError::refused("sys/unseal", &unseal).into());
    }
    // Active before anything else is asked of it (Vault's audit device; callers' mounts).
    ready::wait_for(
        client,
        ready::Stage::Active,
        Instant::now() + Duration::from_secs(30),
        Duration::from_millis(10),
        &mut ready::AssumeAlive,
    )
    .await
    .context("after unseal")
}

impl std::fmt::Debug for RunningServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the root token.
        f.debug_struct("RunningServer")
            .field("spec", &self.spec)
            .field("pid", &self.pid())
            .field("addr", &self.addr)
            .field("server_log", &self.server_log)
            .field("audit_log", &self.audit_log)
            .field("timings", &self.timings)
            .finish_non_exhaustive()
    }
}

/// Why one start attempt failed.
enum StartError {
    /// The listener port was taken between choosing and binding it: try another.
    PortTaken(anyhow::Error),
    /// Anything else.
    Other(anyhow::Error),
}

impl RunningServer {
    /// Starts, waits for, initialises and unseals a server on a free loopback port.
    pub async fn start(
        spec: &ServerSpec,
        bin: &Path,
        opts: ProcessOptions,
    ) -> Result<RunningServer> {
        std::fs::create_dir_all(&opts.workdir)
            .with_context(|| format!("creating {}", opts.workdir.display()))?;
        let mut attempt = 1;
        loop {
            match Self::start_once(spec, bin, &opts).await {
                Ok(s) => return Ok(s),
                Err(StartError::PortTaken(e)) if attempt < PORT_ATTEMPTS => {
                    tracing::debug!("{spec}: {e:#}; retrying on another port");
                    attempt += 1;
                }
                Err(StartError::PortTaken(e) | StartError::Other(e)) => return Err(e),
            }
        }
    }

    async fn start_once(
        spec: &ServerSpec,
        bin: &Path,
        opts: &ProcessOptions,
    ) -> std::result::Result<RunningServer, StartError> {
        let other = StartError::Other;
        let port = free_port().map_err(other)?;
        let audit_log = opts.workdir.join("audit.log");
        let server_log = opts.workdir.join("server.log");
        let cfg = ServerConfig {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            audit_file: audit_log.clone(),
            log_level: "debug".into(),
            flavour: spec.flavour,
        };
        let config_text = config::render(&cfg);
        let config_path = opts.workdir.join("server.hcl");
        std::fs::write(&config_path, &config_text)
            .with_context(|| format!("writing {}", config_path.display()))
            .map_err(other)?;
        let cmd = server_command(bin, &config_path, &server_log, opts).map_err(other)?;
        let addr = format!("http://127.0.0.1:{port}");
        // Short per-request bounds while waiting: one stuck probe must not eat the whole wait.
        let client = VaultClient::with_timeouts(
            &addr,
            None,
            Duration::from_secs(2),
            Duration::from_secs(10),
        )
        .map_err(other)?;
        let started = Instant::now();
        // Clean-up on a signal waits for this, or this sees the run stopping and starts nothing;
        // once claimed, the process is the scope's to kill, readiness wait or not.
        let (child, claim) =
            crate::scope::spawn(&format!("`{} server`", bin.display()), cmd, &opts.run_id)
                .map_err(other)?;
        let mut server = RunningServer {
            spec: spec.clone(),
            child: Some(child),
            claim: Some(claim),
            addr: addr.clone(),
            root_token: String::new(),
            audit_log,
            server_log,
            config_text,
            timings: StartupTimings::default(),
            client: client.clone(),
        };
        let deadline = started + opts.ready_timeout;
        if let Err(e) = server.bring_up(&client, started, deadline).await {
            let waited = started.elapsed();
            // The log is written by the server itself; give its last lines a moment to land.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let log_tail = tail(&server.server_log, 20);
            server.stop().await;
            let e = e.context(format!(
                "{spec} at {addr} was not ready after {:.1} s (limit {:.1} s); last lines of {}:\n{log_tail}",
                waited.as_secs_f64(),
                opts.ready_timeout.as_secs_f64(),
                server.server_log.display(),
            ));
            return Err(if log_tail.contains("address already in use") {
                StartError::PortTaken(e)
            } else {
                StartError::Other(e)
            });
        }
        server.client = client.with_token(Some(server.root_token.clone()));
        tracing::debug!(
            "{spec} ready at {addr} in {:?} (listening {:?}, unsealed {:?})",
            server.timings.ready,
            server.timings.listening,
            server.timings.unsealed
        );
        Ok(server)
    }

    async fn wait_health(
        &mut self,
        client: &VaultClient,
        deadline: Instant,
        stage: ready::Stage,
    ) -> Result<()> {
        let mut alive = ChildAlive(&mut self.child);
        ready::wait_for(
            client,
            stage,
            deadline,
            Duration::from_millis(10),
            &mut alive,
        )
        .await
    }

    async fn bring_up(
        &mut self,
        client: &VaultClient,
        started: Instant,
        deadline: Instant,
    ) -> Result<()> {
        self.wait_health(client, deadline, ready::Stage::Listening)
            .await?;
        self.timings.listening = started.elapsed();
        let audit = self.audit_log.display().to_string();
        self.root_token = initialise(client, self.spec.flavour, &audit).await?;
        self.timings.unsealed = started.elapsed();
        self.wait_health(client, deadline, ready::Stage::Active)
            .await?;
        self.timings.ready = started.elapsed();
        Ok(())
    }

    /// The server's flavour and version.
    pub fn spec(&self) -> &ServerSpec {
        &self.spec
    }

    /// `http://127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        self.addr.clone()
    }

    /// Root token from initialisation (secret).
    pub fn root_token(&self) -> String {
        self.root_token.clone()
    }

    /// Audit log file.
    pub fn audit_log_path(&self) -> PathBuf {
        self.audit_log.clone()
    }

    /// Server log file (stdout and stderr).
    pub fn server_log_path(&self) -> PathBuf {
        self.server_log.clone()
    }

    /// The rendered config file.
    pub fn config_text(&self) -> String {
        self.config_text.clone()
    }

    /// Process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Spawn → initialised, unsealed and active.
    pub fn startup(&self) -> Duration {
        self.timings.ready
    }

    /// Spawn → listening, unsealed and ready.
    pub fn startup_timings(&self) -> StartupTimings {
        self.timings
    }

    /// A client with the root token.
    pub fn client(&self) -> VaultClient {
        self.client.clone()
    }

    /// Waits (bounded) for a server-log line that satisfies `pred`.
    pub async fn wait_for_log(
        &self,
        pred: impl Fn(&LogLine) -> bool,
        timeout: Duration,
    ) -> Option<LogLine> {
        let mut wait = Wait::new("a server-log line", timeout)
            .every(Duration::from_millis(20))
            .start();
        // Each poll reads only what is new, from the start of the last entry seen (which may
        // still gain continuation lines).
        let mut from = 0u64;
        loop {
            let chunk = crate::logs::read_from(&self.server_log, from);
            let complete = chunk.rfind('\n').map_or(0, |i| i + 1);
            let text = &chunk[..complete];
            if let Some(l) = crate::logs::parse_server_log(text)
                .into_iter()
                .find(|l| pred(l))
            {
                return Some(l);
            }
            from += last_entry_start(text) as u64;
            wait.tick().await.ok()?;
        }
    }

    /// SIGTERM, a bounded wait, then SIGKILL.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // The server leads its own group: what a wrapper forked is stopped with it.
        signal_group(child.id(), Signal::SIGTERM);
        let mut wait = Wait::new("the server to exit after SIGTERM", Duration::from_secs(5))
            .every(Duration::from_millis(20))
            .start();
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                kill_group(child.id());
                self.release();
                return;
            }
            if wait.tick().await.is_err() {
                break;
            }
        }
        kill_group(child.id());
        let _ = child.kill();
        let _ = child.wait();
        self.release();
    }

    /// The process has been reaped: its claim is released (its pid may be reused now).
    fn release(&mut self) {
        if let Some(claim) = self.claim.take() {
            claim.release();
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_group(child.id());
            let _ = child.kill();
            let _ = child.wait();
            self.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polling_resumes_at_the_last_entry() {
        let t = "2026-11-22T23:48:31.553Z [ERROR] a: b:\n  error=\n  | x\n  \n2026-11-22T23:48:31.571Z [INFO]  core: c\n  | y\n";
        let at = last_entry_start(t);
        assert!(t[at..].starts_with("2026-11-22T23:48:31.571Z"));
        assert_eq!(last_entry_start("==> banner\n"), 0);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        std::fs::write(&p, t).unwrap();
        assert_eq!(crate::logs::read_from(&p, at as u64), &t[at..]);
        assert_eq!(crate::logs::read_from(&dir.path().join("missing"), 0), "");
    }

    #[test]
    fn options_default_to_thirty_seconds() {
        let o = ProcessOptions::new("/tmp/x", "run");
        assert_eq!(o.ready_timeout, Duration::from_secs(30));
        assert_eq!(o.run_id, "run");
    }
}
