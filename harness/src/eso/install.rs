//! Installing ESO with `helm upgrade --install` (idempotent: a cluster that has it keeps it).
//!
//! The chart comes from the project's chart repository at a pinned version
//! (`AUTHLAB_ESO_VERSION` overrides it), or from a local chart directory or archive
//! (`AUTHLAB_ESO_CHART`) for machines that cannot reach the repository.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context, Result, bail};

use super::NAMESPACE;

/// Helm release name.
pub const RELEASE: &str = "external-secrets";
/// The chart repository the ESO project publishes.
pub const CHART_REPO: &str = "https://charts.external-secrets.io";
/// Chart version installed unless `AUTHLAB_ESO_VERSION` says otherwise.
pub const DEFAULT_CHART_VERSION: &str = "1.1.0";

/// Where the chart comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChartSource {
    /// The chart repository, at a version.
    Repo {
        /// Chart version.
        version: String,
    },
    /// A chart directory or `.tgz` on this machine.
    Local(PathBuf),
}

impl ChartSource {
    /// From `AUTHLAB_ESO_CHART` (a local chart) or `AUTHLAB_ESO_VERSION` (default pinned).
    pub fn from_settings(s: &crate::settings::Settings) -> ChartSource {
        match &s.eso_chart {
            Some(p) => ChartSource::Local(p.clone()),
            None => ChartSource::Repo {
                version: s
                    .eso_version
                    .clone()
                    .unwrap_or_else(|| DEFAULT_CHART_VERSION.into()),
            },
        }
    }
}

/// `helm upgrade --install` arguments: CRDs included, waiting for the deployments (the webhook
/// must answer before a store can be created), the lab's kubeconfig only.
pub fn helm_args(source: &ChartSource, kubeconfig: &Path, wait: Duration) -> Vec<String> {
    let mut a: Vec<String> = vec!["upgrade".into(), "--install".into(), RELEASE.into()];
    match source {
        ChartSource::Repo { version } => a.extend([
            "external-secrets".into(),
            "--repo".into(),
            CHART_REPO.into(),
            "--version".into(),
            version.clone(),
        ]),
        ChartSource::Local(p) => a.push(p.display().to_string()),
    }
    a.extend([
        "--namespace".into(),
        NAMESPACE.into(),
        "--create-namespace".into(),
        "--set".into(),
        "installCRDs=true".into(),
        "--wait".into(),
        "--timeout".into(),
        format!("{}s", wait.as_secs()),
        "--kubeconfig".into(),
        kubeconfig.display().to_string(),
    ]);
    a
}

/// The `helm` executable (`AUTHLAB_HELM_BIN`, else `helm` on PATH), or an error saying how to
/// install it.
pub fn helm_binary(s: &crate::settings::Settings) -> Result<PathBuf> {
    find_helm(s.helm_bin.as_deref().unwrap_or("helm"), s.path.as_deref())
}

fn find_helm(exe: &str, path: Option<&std::ffi::OsStr>) -> Result<PathBuf> {
    crate::cluster::kind::which(exe, path).with_context(|| {
        format!(
            "the `{exe}` command was not found on PATH. Cases with an `eso` client install External Secrets Operator with helm: install helm (https://helm.sh/docs/intro/install/) and set AUTHLAB_HELM_BIN if it is not on PATH"
        )
    })
}

/// Installs (or upgrades to) the chart in the cluster of `kubeconfig`, waiting at most `wait`
/// for its deployments; the helm process itself is killed if it outlives that by a minute.
pub fn install(helm: &Path, source: &ChartSource, kubeconfig: &Path, wait: Duration) -> Result<()> {
    let args = helm_args(source, kubeconfig, wait);
    let line = format!("helm {}", args.join(" "));
    let mut child = Command::new(helm)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {line}"))?;
    // Drain stderr while waiting, so a chatty helm cannot block on a full pipe.
    let mut stderr = child.stderr.take().context("helm's stderr")?;
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        s
    });
    let limit = wait + Duration::from_secs(60);
    let mut helm = crate::wait::Wait::new(format!("`{line}`"), limit)
        .every(Duration::from_millis(200))
        .start();
    let Some(status) = helm.exit_of(&mut child)? else {
        bail!(
            "`{line}` did not finish within {} s (waiting for the External Secrets deployments); see `kubectl -n {NAMESPACE} get pods`",
            limit.as_secs()
        );
    };
    let stderr = reader.join().unwrap_or_default();
    if !status.success() {
        bail!("`{line}` failed ({status}): {}", stderr.trim());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines() {
        let repo = ChartSource::Repo {
            version: "1.1.0".into(),
        };
        assert_eq!(
            helm_args(&repo, Path::new("/k"), Duration::from_secs(300)).join(" "),
            "upgrade --install external-secrets external-secrets --repo https://charts.external-secrets.io --version 1.1.0 --namespace external-secrets --create-namespace --set installCRDs=true --wait --timeout 300s --kubeconfig /k"
        );
        let local = ChartSource::Local("/charts/external-secrets-1.1.0.tgz".into());
        assert_eq!(
            helm_args(&local, Path::new("/k"), Duration::from_secs(60)).join(" "),
            "upgrade --install external-secrets /charts/external-secrets-1.1.0.tgz --namespace external-secrets --create-namespace --set installCRDs=true --wait --timeout 60s --kubeconfig /k"
        );
    }

    #[test]
    fn missing_helm_is_explained() {
        let err = find_helm("/nonexistent/helm", None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`/nonexistent/helm`"), "{err}");
        assert!(err.contains("install helm"), "{err}");
        assert!(err.contains("AUTHLAB_HELM_BIN"), "{err}");
    }

    #[test]
    fn a_failing_helm_reports_its_command_and_stderr() {
        let dir = std::env::temp_dir().join(format!("authlab-helm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fake = dir.join("helm");
        std::fs::write(
            &fake,
            "#!/bin/sh\necho 'Error: chart not found' >&2\nexit 1\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = install(
            &fake,
            &ChartSource::Local("/nowhere".into()),
            Path::new("/k"),
            Duration::from_secs(5),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("upgrade --install external-secrets /nowhere"),
            "{err}"
        );
        assert!(err.contains("Error: chart not found"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
