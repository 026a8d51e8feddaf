//! Finding the control-plane binaries the envtest way: `AUTHLAB_KUBE_APISERVER_BIN`,
//! `AUTHLAB_ETCD_BIN` and `AUTHLAB_KUBE_CONTROLLER_MANAGER_BIN` first, then envtest's own
//! `TEST_ASSET_KUBE_APISERVER` and `TEST_ASSET_ETCD`, then the directory `KUBEBUILDER_ASSETS`
//! names (what `setup-envtest use <version> -p path` prints), then envtest's default directory
//! `/usr/local/kubebuilder/bin`, then `PATH`.

use std::path::{Path, PathBuf};

use crate::settings::Settings;

/// The binaries of a real control plane.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// `kube-apiserver`.
    pub apiserver: PathBuf,
    /// `etcd`.
    pub etcd: PathBuf,
    /// `kube-controller-manager`: envtest's assets do not have it; without it authlab does the
    /// part of its work trials need.
    pub controller_manager: Option<PathBuf>,
}

/// A binary that could not be found.
#[derive(Debug, thiserror::Error)]
#[error(
    "{name} not found (looked at {looked}); get kube-apiserver and etcd with `setup-envtest use 1.34 -p path` \
     (sigs.k8s.io/controller-runtime/tools/setup-envtest) and set KUBEBUILDER_ASSETS to the path it prints, \
     or point {var} at the binary"
)]
pub struct NotFound {
    /// The binary.
    pub name: &'static str,
    /// The variable that names it.
    pub var: &'static str,
    /// Where it was looked for.
    pub looked: String,
}

impl Binaries {
    /// Finds the binaries (the controller manager is optional).
    pub fn locate(s: &Settings) -> Result<Binaries, NotFound> {
        Ok(Binaries {
            apiserver: find(
                s,
                "kube-apiserver",
                &[
                    (
                        "AUTHLAB_KUBE_APISERVER_BIN",
                        s.kube_apiserver_bin.as_deref(),
                    ),
                    (
                        "TEST_ASSET_KUBE_APISERVER",
                        s.test_asset_kube_apiserver.as_deref(),
                    ),
                ],
            )?,
            etcd: find(
                s,
                "etcd",
                &[
                    ("AUTHLAB_ETCD_BIN", s.etcd_bin.as_deref()),
                    ("TEST_ASSET_ETCD", s.test_asset_etcd.as_deref()),
                ],
            )?,
            controller_manager: find(
                s,
                "kube-controller-manager",
                &[(
                    "AUTHLAB_KUBE_CONTROLLER_MANAGER_BIN",
                    s.kube_controller_manager_bin.as_deref(),
                )],
            )
            .ok(),
        })
    }
}

fn executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// envtest's default directory of its binaries, where `KUBEBUILDER_ASSETS` is not set.
const ENVTEST_DEFAULT: &str = "/usr/local/kubebuilder/bin";

/// `name` from the first of the variables `explicit` that names an executable, then the
/// directories, then `PATH`.
fn find(
    s: &Settings,
    name: &'static str,
    explicit: &[(&'static str, Option<&Path>)],
) -> Result<PathBuf, NotFound> {
    let mut looked = Vec::new();
    for (var, p) in explicit {
        if let Some(p) = p {
            if executable(p) {
                return Ok(p.to_path_buf());
            }
            looked.push(format!("{var}={}", p.display()));
        }
    }
    let var = explicit.first().map(|(v, _)| *v).unwrap_or_default();
    let dir = match &s.kubebuilder_assets {
        Some(dir) => Some(("KUBEBUILDER_ASSETS=", dir.clone())),
        None => Some(("", PathBuf::from(ENVTEST_DEFAULT))).filter(|(_, d)| d.is_dir()),
    };
    if let Some((label, dir)) = dir {
        let p = dir.join(name);
        if executable(&p) {
            return Ok(p);
        }
        looked.push(format!("{label}{}", dir.display()));
    }
    if let Some(path) = &s.path {
        for dir in std::env::split_paths(path) {
            let p = dir.join(name);
            if executable(&p) {
                return Ok(p);
            }
        }
    }
    looked.push("PATH".into());
    Err(NotFound {
        name,
        var,
        looked: looked.join(", "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_then_assets_then_path_and_a_missing_one_says_how_to_get_it() {
        let dir = tempfile::tempdir().unwrap();
        let mk = |name: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, "#!/bin/sh\n").unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            p
        };
        mk("kube-apiserver");
        let etcd = mk("etcd");
        let s = Settings {
            kubebuilder_assets: Some(dir.path().to_path_buf()),
            etcd_bin: Some(etcd.clone()),
            path: Some("/nonexistent".into()),
            ..Settings::default()
        };
        let b = Binaries::locate(&s).unwrap();
        assert_eq!(b.apiserver, dir.path().join("kube-apiserver"));
        assert_eq!(b.etcd, etcd);
        assert!(b.controller_manager.is_none());
        let none = Settings {
            path: Some("/nonexistent".into()),
            ..Settings::default()
        };
        // envtest's own variables, after authlab's.
        let envtest = Settings {
            test_asset_kube_apiserver: Some(dir.path().join("kube-apiserver")),
            test_asset_etcd: Some(dir.path().join("nonexistent-etcd")),
            etcd_bin: Some(etcd.clone()),
            path: Some("/nonexistent".into()),
            ..Settings::default()
        };
        let b = Binaries::locate(&envtest).unwrap();
        assert_eq!(b.apiserver, dir.path().join("kube-apiserver"));
        assert_eq!(b.etcd, etcd);
        let wrong = Settings {
            test_asset_kube_apiserver: Some(dir.path().join("kube-apiserver")),
            test_asset_etcd: Some(dir.path().join("nonexistent-etcd")),
            ..none.clone()
        };
        let e = Binaries::locate(&wrong).unwrap_err().to_string();
        assert!(e.contains("TEST_ASSET_ETCD="), "{e}");
        let e = Binaries::locate(&none).unwrap_err().to_string();
        assert!(e.contains("kube-apiserver not found"), "{e}");
        assert!(
            e.contains("setup-envtest") && e.contains("KUBEBUILDER_ASSETS"),
            "{e}"
        );
    }
}
