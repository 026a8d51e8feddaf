//! What a lab's servers are, as trials need them and as `authlab lab up` writes them to its
//! state file for later runs to attach to.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// What a trial needs of a server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerInfo {
    /// `flavour:version`.
    pub spec: String,
    /// `http://127.0.0.1:<port>`.
    pub addr: String,
    /// Root token (secret).
    pub root_token: String,
    /// Audit log file.
    pub audit_log: PathBuf,
    /// Server log file.
    pub server_log: PathBuf,
    /// Rendered server config.
    pub config_text: String,
    /// Process id, when known.
    pub pid: Option<u32>,
    /// Spawn → ready time.
    pub startup_ms: u64,
}

/// A long-lived lab's state file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabState {
    /// Run id of the lab.
    pub run_id: String,
    /// Process id of `authlab lab up`.
    pub pid: u32,
    /// Servers it runs.
    pub servers: Vec<ServerInfo>,
}

/// Where `authlab lab up` writes its state (`AUTHLAB_LAB_STATE`, else in the cache directory).
pub fn state_path(settings: &crate::settings::Settings) -> PathBuf {
    settings.lab_state.clone().unwrap_or_else(|| {
        crate::server::binary::BinaryCache::new(settings)
            .map(|c| c.root().join("lab.json"))
            .unwrap_or_else(|_| std::env::temp_dir().join("authlab-lab.json"))
    })
}

/// Reads a lab state file whose owner process is still alive.
pub fn read_state(path: &Path) -> Option<LabState> {
    let text = std::fs::read_to_string(path).ok()?;
    let state: LabState = serde_json::from_str(&text).ok()?;
    // The lab's run lock, not its process id (which may have been reused), says it is alive.
    (crate::scope::owner(&state.run_id) == crate::scope::Owner::Live).then_some(state)
}

/// Writes a lab state file (mode 0600: it holds root tokens).
pub fn write_state(path: &Path, state: &LabState) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).ok();
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing lab state {}", path.display()))?;
    std::io::Write::write_all(&mut f, serde_json::to_string_pretty(state)?.as_bytes())?;
    Ok(())
}
