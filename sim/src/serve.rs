//! `authlab sim serve`: run a sim cluster in the foreground until Ctrl-C.

use std::path::Path;

use anyhow::{Context, Result};

use super::{SimCluster, SimConfig};

/// Starts a sim, writes its admin kubeconfig (mode 0600) if asked, prints the URL and the
/// kubeconfig path to stderr, and serves until Ctrl-C.
pub async fn serve_foreground(cfg: SimConfig, kubeconfig_out: Option<&Path>) -> Result<()> {
    let sim = SimCluster::start(cfg)
        .await
        .context("starting the sim cluster")?;
    eprintln!("sim cluster listening on {}", sim.url());
    if let Some(path) = kubeconfig_out {
        write_private(path, &sim.kubeconfig_yaml(None))
            .with_context(|| format!("writing the kubeconfig to {}", path.display()))?;
        eprintln!("kubeconfig written to {}", path.display());
    }
    eprintln!("press Ctrl-C to stop");
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    sim.shutdown().await;
    Ok(())
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    let mut perms = f.metadata()?.permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600);
    std::fs::set_permissions(path, perms)?;
    Ok(())
}
