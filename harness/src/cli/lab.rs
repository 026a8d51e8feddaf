//! `authlab lab up|down|status`: a long-lived lab whose servers test runs attach to (so
//! nextest's process-per-test model does not restart servers for every trial).

use std::{process::ExitCode, time::Duration};

use anyhow::{Result, bail};

use crate::{
    case::matrix::ClusterKind,
    lab::{
        Lab, LabOptions,
        servers::ServerHandle,
        state::{self, LabState},
    },
    select,
    vault::VaultClient,
};

/// Starts the servers, writes the state file, and serves until Ctrl-C, SIGTERM or `lab down`.
pub async fn up(
    s: &crate::settings::Settings,
    servers_flag: Option<&str>,
    timings: bool,
    runtime: Option<crate::lab::Runtime>,
) -> Result<ExitCode> {
    let path = state::state_path(s);
    if let Some(s) = state::read_state(&path) {
        bail!(
            "a lab is already running (process {}, state {}); stop it with `authlab lab down`",
            s.pid,
            path.display()
        );
    }
    let specs = select::servers(s, servers_flag)?;
    let mut opts = LabOptions::new(ClusterKind::Sim, s);
    opts.runtime = select::runtime(s, runtime)?;
    if opts.runtime == crate::lab::Runtime::Container {
        bail!(
            "`lab up` runs process servers only: trials attach to servers on loopback, and a container lab's trials need the lab's own network; use `authlab run --runtime container`"
        );
    }
    let lab = Lab::new(opts)?;
    crate::scope::install_signal_handler(&tokio::runtime::Handle::current());
    let mut handles = Vec::new();
    for spec in &specs {
        let server = lab.servers().start_process(spec).await?;
        handles.push(ServerHandle::owned(server));
    }
    let state = LabState {
        run_id: lab.options().run_id.clone(),
        pid: std::process::id(),
        servers: handles.iter().map(|h| h.info().clone()).collect(),
    };
    // Removed when `lab up` ends, however it ends (it holds root tokens).
    let _state_file = crate::scope::claim_file(path.clone());
    state::write_state(&path, &state)?;
    if timings {
        outln!("{:<16} {:>10}  address", "server", "ready (ms)");
        for h in &handles {
            outln!(
                "{:<16} {:>10}  {}",
                h.info().spec,
                h.startup().as_millis(),
                h.addr()
            );
        }
    }
    eprintln!(
        "authlab: lab {} is up ({} server(s)); state in {}. Test runs attach to it; stop it with Ctrl-C or `authlab lab down`.",
        state.run_id,
        handles.len(),
        path.display()
    );
    eprint!("{}", env_hint(&state));
    // The signal handler cleans up and exits; this waits for it.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    let _ = std::fs::remove_file(&path);
    for mut h in handles {
        h.stop().await;
    }
    lab.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// Stops a running lab.
pub async fn down(s: &crate::settings::Settings) -> Result<ExitCode> {
    let path = state::state_path(s);
    let Some(state) = state::read_state(&path) else {
        let _ = std::fs::remove_file(&path);
        eprintln!("authlab: no lab is running");
        return Ok(ExitCode::SUCCESS);
    };
    crate::scope::process::terminate_process(state.pid);
    let mut wait = crate::wait::Wait::new(
        format!("lab process {} to stop", state.pid),
        Duration::from_secs(15),
    )
    .start();
    // Stopped once its lock is free (its files are closed even while it is a zombie).
    while crate::scope::owner(&state.run_id) == crate::scope::Owner::Live {
        if wait.tick().await.is_err() {
            bail!(
                "lab process {} did not stop within 15 s after SIGTERM; `authlab clean` kills its servers",
                state.pid
            );
        }
    }
    let _ = std::fs::remove_file(&path);
    eprintln!("authlab: lab {} stopped", state.run_id);
    Ok(ExitCode::SUCCESS)
}

/// Prints the running lab's servers and their health.
pub async fn status(s: &crate::settings::Settings) -> Result<ExitCode> {
    let path = state::state_path(s);
    let Some(state) = state::read_state(&path) else {
        outln!("no lab is running");
        return Ok(ExitCode::from(1));
    };
    outln!("lab {} (process {})", state.run_id, state.pid);
    for s in &state.servers {
        let health = match VaultClient::new(&s.addr, None) {
            Ok(c) => match c.health().await {
                Ok(r) => format!("health {}", r.status),
                Err(e) => format!("unreachable: {e:#}"),
            },
            Err(e) => format!("{e:#}"),
        };
        outln!("  {:<16} {}  {}", s.spec, s.addr, health);
    }
    out!("{}", env_hint(&state));
    Ok(ExitCode::SUCCESS)
}

/// How to point the vault and bao CLIs (and `authlab diagnose`) at the lab's servers, the
/// root token left out: `authlab lab env` prints it on request.
fn env_hint(state: &LabState) -> String {
    let mut out =
        String::from("To use a server with the vault or bao CLI and `authlab diagnose`:\n");
    for s in &state.servers {
        out.push_str(&format!(
            "  eval \"$(authlab lab env {})\"    # VAULT_ADDR={}, VAULT_TOKEN=<its root token>\n",
            s.spec, s.addr
        ));
    }
    out
}

/// `export` lines for `server` of the running lab (or its first).
pub fn env(s: &crate::settings::Settings, server: Option<&str>) -> Result<ExitCode> {
    let path = state::state_path(s);
    let Some(state) = state::read_state(&path) else {
        bail!("no lab is running: start one with `authlab lab up`");
    };
    let spec = match server {
        Some(s) => Some(s.parse::<crate::server::ServerSpec>()?.to_string()),
        None => None,
    };
    let Some(info) = state
        .servers
        .iter()
        .find(|s| spec.as_deref().is_none_or(|want| s.spec == want))
    else {
        bail!(
            "the lab runs no {}: it runs {}",
            spec.unwrap_or_default(),
            state
                .servers
                .iter()
                .map(|s| s.spec.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    let word = |s: &str| {
        shlex::try_quote(s).map(|w| w.into_owned()).map_err(|e| {
            anyhow::anyhow!("the lab's state file holds a value no shell word can carry: {e}")
        })
    };
    for var in ["VAULT", "BAO"] {
        outln!("export {var}_ADDR={}", word(&info.addr)?);
        outln!("export {var}_TOKEN={}", word(&info.root_token)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// Starts each selected server in the chosen runtime, prints its start-up time (spawn or
/// container create → initialised, unsealed, active), and stops it again.
pub async fn timings(
    s: &crate::settings::Settings,
    servers_flag: Option<&str>,
    runtime: Option<crate::lab::Runtime>,
) -> Result<ExitCode> {
    let specs = select::servers(s, servers_flag)?;
    let mut opts = LabOptions::new(ClusterKind::Sim, s);
    opts.runtime = select::runtime(s, runtime)?;
    let lab = Lab::new(opts)?;
    crate::scope::install_signal_handler(&tokio::runtime::Handle::current());
    let kind = match lab.options().runtime {
        crate::lab::Runtime::Process => "process",
        crate::lab::Runtime::Container => "container",
    };
    // Images and binaries first, so the figures are start-up only.
    for spec in &specs {
        let progress = |line: &str| eprintln!("authlab: {spec}: {line}");
        lab.cache().ensure(spec, &progress).await?;
        if lab.options().runtime == crate::lab::Runtime::Container {
            lab.docker().server_image(spec).await?;
        }
    }
    outln!("{:<16} {:<10} {:>10}", "server", "runtime", "ready (ms)");
    for spec in &specs {
        let mut h = match lab.options().runtime {
            crate::lab::Runtime::Process => {
                ServerHandle::owned(lab.servers().start_process(spec).await?)
            }
            crate::lab::Runtime::Container => {
                lab.docker().start_container(spec, None, None, None).await?
            }
        };
        outln!(
            "{:<16} {:<10} {:>10}",
            spec.to_string(),
            kind,
            h.startup().as_millis()
        );
        h.stop().await;
    }
    lab.shutdown().await;
    Ok(ExitCode::SUCCESS)
}
