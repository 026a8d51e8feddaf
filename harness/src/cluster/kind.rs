//! Kind clusters, driven through the `kind` CLI (its documented commands and flags only).
//!
//! A lab's cluster is named `authlab-<name>`; it is created from `manifests/kind/cluster.yaml`
//! with the node image from `KIND_NODE_IMAGE` or `K8S_VERSION`, reused when it already exists and
//! reuse was asked for, and deleted at teardown unless kept. Two kubeconfigs are fetched: the
//! host-facing one (`server: https://127.0.0.1:<port>`) for the harness, and `--internal`
//! (`server: https://<name>-control-plane:6443`) for servers on the `kind` Docker network.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context, Result, bail};

/// Kubernetes version of the default node image.
pub const DEFAULT_K8S_VERSION: &str = "1.34.0";
/// The Docker network Kind puts its nodes on unless `KIND_EXPERIMENTAL_DOCKER_NETWORK` names
/// another.
pub const KIND_NETWORK: &str = "kind";

/// The Docker network of Kind's nodes, as the `kind` CLI chooses it: the network named by
/// `KIND_EXPERIMENTAL_DOCKER_NETWORK`, else [`KIND_NETWORK`].
pub fn network() -> String {
    crate::settings::current().kind_network()
}

/// [`network`] from the variable's value.
pub fn network_from(var: Option<String>) -> String {
    crate::settings::Settings {
        kind_docker_network: var,
        ..Default::default()
    }
    .kind_network()
}

/// Prefix of every cluster authlab creates.
pub const CLUSTER_PREFIX: &str = "authlab-";

/// The node image for `KIND_NODE_IMAGE`, else `K8S_VERSION` (`1.33.4` or `v1.33.4`), else the
/// pinned default.
pub fn node_image(kind_node_image: Option<&str>, k8s_version: Option<&str>) -> String {
    if let Some(img) = kind_node_image.filter(|s| !s.is_empty()) {
        return img.to_string();
    }
    let v = k8s_version
        .filter(|s| !s.is_empty())
        .unwrap_or(DEFAULT_K8S_VERSION);
    format!("kindest/node:v{}", v.trim_start_matches('v'))
}

/// A cluster name with the authlab prefix.
pub fn cluster_name(name: &str) -> String {
    if name.starts_with(CLUSTER_PREFIX) {
        name.to_string()
    } else {
        format!("{CLUSTER_PREFIX}{name}")
    }
}

/// `kind create cluster` arguments. The kubeconfig goes to the lab's scratch file, never the
/// user's `~/.kube/config`.
pub fn create_args(
    name: &str,
    image: &str,
    config: &Path,
    kubeconfig: &Path,
    wait: Duration,
) -> Vec<String> {
    vec![
        "create".into(),
        "cluster".into(),
        "--name".into(),
        name.into(),
        "--image".into(),
        image.into(),
        "--config".into(),
        config.display().to_string(),
        "--kubeconfig".into(),
        kubeconfig.display().to_string(),
        "--wait".into(),
        format!("{}s", wait.as_secs()),
    ]
}

/// `kind get kubeconfig` arguments (`--internal`: the address containers on the kind network use).
pub fn kubeconfig_args(name: &str, internal: bool) -> Vec<String> {
    let mut a = vec![
        "get".into(),
        "kubeconfig".into(),
        "--name".into(),
        name.into(),
    ];
    if internal {
        a.push("--internal".into());
    }
    a
}

/// `kind load docker-image` arguments.
pub fn load_image_args(name: &str, image: &str) -> Vec<String> {
    vec![
        "load".into(),
        "docker-image".into(),
        image.into(),
        "--name".into(),
        name.into(),
    ]
}

/// `kind export logs` arguments.
pub fn export_logs_args(name: &str, dir: &Path) -> Vec<String> {
    vec![
        "export".into(),
        "logs".into(),
        dir.display().to_string(),
        "--name".into(),
        name.into(),
    ]
}

/// `kind delete cluster` arguments.
pub fn delete_args(name: &str) -> Vec<String> {
    vec![
        "delete".into(),
        "cluster".into(),
        "--name".into(),
        name.into(),
    ]
}

/// The API server address containers on the kind network use.
pub fn internal_server(name: &str) -> String {
    format!("https://{name}-control-plane:6443")
}

/// The `kind` executable, or an error saying how to install it.
pub fn kind_binary() -> Result<PathBuf> {
    find_kind(
        crate::settings::current()
            .kind_bin
            .as_deref()
            .unwrap_or("kind"),
    )
}

fn find_kind(exe: &str) -> Result<PathBuf> {
    let path = which(exe).with_context(|| {
        format!(
            "the `{exe}` command was not found on PATH. Kind clusters need kind and Docker: install kind (https://kind.sigs.k8s.io/docs/user/quick-start/#installation, or `go install sigs.k8s.io/kind@latest`) and set AUTHLAB_KIND_BIN if it is not on PATH — or run on the built-in sim cluster (--cluster sim)"
        )
    })?;
    Ok(path)
}

/// `exe` itself when it is a path to a file, else the first file of that name on `PATH`.
pub(crate) fn which(exe: &str) -> Option<PathBuf> {
    let p = Path::new(exe);
    if p.components().count() > 1 {
        return p.is_file().then(|| p.to_path_buf());
    }
    crate::settings::current().path.as_ref().and_then(|paths| {
        std::env::split_paths(paths)
            .map(|d| d.join(exe))
            .find(|c| c.is_file())
    })
}

/// Runs `kind` with `args`, returning stdout; the error carries the command line and stderr.
pub fn run_kind(args: &[String]) -> Result<String> {
    let bin = kind_binary()?;
    let out = Command::new(&bin)
        .args(args)
        .output()
        .with_context(|| format!("running {} {}", bin.display(), args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`kind {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Names of existing Kind clusters.
pub fn clusters() -> Result<Vec<String>> {
    Ok(run_kind(&["get".into(), "clusters".into()])?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("No kind clusters"))
        .map(str::to_string)
        .collect())
}

/// A Kind cluster the lab created or reused.
#[derive(Debug, Clone)]
pub struct KindCluster {
    /// Cluster name (with prefix).
    pub name: String,
    /// Host-facing kubeconfig file.
    pub kubeconfig: PathBuf,
    /// Kubeconfig for containers on the kind network.
    pub internal_kubeconfig: PathBuf,
    /// Whether the lab created it (and so deletes it unless kept).
    pub created: bool,
}

/// Creates the cluster, or reuses it when it exists and `reuse` is set; writes both kubeconfigs
/// into `dir`. Progress goes to stderr (creation takes a minute or more).
pub fn up(name: &str, image: &str, config: &Path, dir: &Path, reuse: bool) -> Result<KindCluster> {
    let name = cluster_name(name);
    let kubeconfig = dir.join(format!("{name}.kubeconfig"));
    let internal = dir.join(format!("{name}.internal.kubeconfig"));
    let exists = clusters()?.contains(&name);
    if exists && !reuse {
        bail!(
            "a Kind cluster named {name} already exists; reuse it (AUTHLAB_KIND_REUSE=1) or delete it (`kind delete cluster --name {name}` or `authlab clean`)"
        );
    }
    if !exists {
        tracing::info!("creating Kind cluster {name} ({image}); this takes a minute or two");
        run_kind(&create_args(
            name.as_str(),
            image,
            config,
            &kubeconfig,
            Duration::from_secs(300),
        ))?;
    } else {
        tracing::info!("reusing Kind cluster {name}");
    }
    std::fs::write(&kubeconfig, run_kind(&kubeconfig_args(&name, false))?)
        .with_context(|| format!("writing {}", kubeconfig.display()))?;
    std::fs::write(&internal, run_kind(&kubeconfig_args(&name, true))?)
        .with_context(|| format!("writing {}", internal.display()))?;
    Ok(KindCluster {
        name,
        kubeconfig,
        internal_kubeconfig: internal,
        created: !exists,
    })
}

impl KindCluster {
    /// Loads a locally built image into the cluster's nodes.
    pub fn load_image(&self, image: &str) -> Result<()> {
        run_kind(&load_image_args(&self.name, image)).map(|_| ())
    }

    /// Exports the cluster's logs (for artifacts of failed trials).
    pub fn export_logs(&self, dir: &Path) -> Result<()> {
        run_kind(&export_logs_args(&self.name, dir)).map(|_| ())
    }

    /// Deletes the cluster if the lab created it and `keep` is not set.
    pub fn down(&self, keep: bool) -> Result<()> {
        if self.created && !keep {
            run_kind(&delete_args(&self.name))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_follows_kinds_own_variable() {
        assert_eq!(network_from(None), "kind");
        assert_eq!(network_from(Some(" ".into())), "kind");
        assert_eq!(network_from(Some("lab-net".into())), "lab-net");
    }

    #[test]
    fn image_selection() {
        assert_eq!(node_image(None, None), "kindest/node:v1.34.0");
        assert_eq!(node_image(None, Some("v1.32.8")), "kindest/node:v1.32.8");
        assert_eq!(node_image(None, Some("1.33.4")), "kindest/node:v1.33.4");
        assert_eq!(node_image(Some("my/node:x"), Some("1.30.0")), "my/node:x");
    }

    #[test]
    fn command_lines() {
        let a = create_args(
            "authlab-x",
            "kindest/node:v1.34.0",
            Path::new("manifests/kind/cluster.yaml"),
            Path::new("/tmp/k"),
            Duration::from_secs(300),
        );
        assert_eq!(
            a.join(" "),
            "create cluster --name authlab-x --image kindest/node:v1.34.0 --config manifests/kind/cluster.yaml --kubeconfig /tmp/k --wait 300s"
        );
        assert_eq!(
            kubeconfig_args("authlab-x", true).join(" "),
            "get kubeconfig --name authlab-x --internal"
        );
        assert_eq!(
            load_image_args("authlab-x", "authlab/openbao:2.7.2").join(" "),
            "load docker-image authlab/openbao:2.7.2 --name authlab-x"
        );
        assert_eq!(
            export_logs_args("authlab-x", Path::new("/a")).join(" "),
            "export logs /a --name authlab-x"
        );
        assert_eq!(
            delete_args("authlab-x").join(" "),
            "delete cluster --name authlab-x"
        );
        assert_eq!(
            internal_server("authlab-x"),
            "https://authlab-x-control-plane:6443"
        );
        assert_eq!(cluster_name("lab"), "authlab-lab");
        assert_eq!(cluster_name("authlab-lab"), "authlab-lab");
    }

    #[test]
    fn missing_kind_is_explained() {
        let err = find_kind("/nonexistent/kind").unwrap_err().to_string();
        assert!(err.contains("install kind"), "{err}");
        assert!(err.contains("--cluster sim"), "{err}");
    }

    #[test]
    fn shipped_kind_config_is_a_kind_cluster() {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../manifests/kind/cluster.yaml");
        let v: serde_json::Value =
            serde_saphyr::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
        assert_eq!(v["kind"], "Cluster");
        assert_eq!(v["apiVersion"], "kind.x-k8s.io/v1alpha4");
        assert_eq!(v["nodes"][0]["role"], "control-plane");
    }
}
