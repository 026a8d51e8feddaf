//! Kind clusters, driven through the `kind` CLI (its documented commands and flags only).
//!
//! A lab's cluster is named `authlab-<name>` (and `authlab-<name>-<digest>` for each further
//! distinct `cluster.settings` of the run); it is created from `manifests/kind/cluster.yaml`
//! with the node image from `KIND_NODE_IMAGE` or `K8S_VERSION`, the case's settings as
//! kube-apiserver flags and an audit log (kubeadm patches), reused when it already exists and
//! reuse was asked for, and deleted at teardown unless kept. Two kubeconfigs are fetched: the
//! host-facing one (`server: https://127.0.0.1:<port>`) for the harness, and `--internal`
//! (`server: https://<name>-control-plane:6443`) for servers on the `kind` Docker network.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context, Result, bail};

use crate::case::model::ClusterSettings;

/// Kubernetes version of the default node image.
pub const DEFAULT_K8S_VERSION: &str = "1.34.0";
/// The Docker network Kind puts its nodes on unless `KIND_EXPERIMENTAL_DOCKER_NETWORK` names
/// another.
pub const KIND_NETWORK: &str = "kind";

/// The Docker network of Kind's nodes, as the `kind` CLI chooses it, from the value of
/// `KIND_EXPERIMENTAL_DOCKER_NETWORK` (else [`KIND_NETWORK`]).
pub fn network_from(var: Option<String>) -> String {
    crate::settings::Settings {
        kind_docker_network: var,
        ..Default::default()
    }
    .kind_network()
}

/// Prefix of every cluster authlab creates.
pub const CLUSTER_PREFIX: &str = "authlab-";

/// The shipped cluster configuration (one control-plane node).
pub const CLUSTER_CONFIG: &str = include_str!("../../../manifests/kind/cluster.yaml");

/// Where the control-plane node keeps the audit policy (mounted from the host) and the API
/// server writes its audit log.
pub const NODE_AUDIT_DIR: &str = "/etc/kubernetes/authlab";
/// The audit log inside the control-plane node.
pub const NODE_AUDIT_LOG: &str = "/var/log/kubernetes/authlab/audit.log";
/// The service-account signing key kubeadm writes on the control-plane node (PKCS#1 PEM).
pub const NODE_SA_KEY: &str = "/etc/kubernetes/pki/sa.key";

/// The name of the cluster for `settings`: `base` for the defaults, else `base-<8 hex>` of
/// the settings (stable across runs, so a kept cluster is found again).
pub fn name_for(base: &str, settings: &ClusterSettings) -> String {
    let base = cluster_name(base);
    if settings == &ClusterSettings::default() {
        return base;
    }
    let json = serde_json::to_string(settings).unwrap_or_default();
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, json.as_bytes());
    let hex: String = d.as_ref()[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("{base}-{hex}")
}

/// The kube-apiserver flags for `settings` (`${cluster.url}` in the issuer is the cluster's
/// internal URL, the one servers on the Kind network use) and the audit log.
pub fn apiserver_args(name: &str, settings: &ClusterSettings) -> Vec<(String, String)> {
    let mut args = vec![
        (
            "audit-policy-file".to_string(),
            format!("{NODE_AUDIT_DIR}/audit-policy.yaml"),
        ),
        ("audit-log-path".into(), NODE_AUDIT_LOG.into()),
        ("audit-log-format".into(), "json".into()),
        ("audit-log-mode".into(), "blocking".into()),
    ];
    if let Some(issuer) = &settings.issuer {
        args.push((
            "service-account-issuer".into(),
            issuer.replace("${cluster.url}", &internal_server(name)),
        ));
    }
    if let Some(aud) = &settings.api_audiences {
        args.push(("api-audiences".into(), aud.join(",")));
    }
    if let Some(anon) = settings.anonymous_auth {
        args.push(("anonymous-auth".into(), anon.to_string()));
    }
    if let Some(max) = settings.max_token_expiration {
        args.push((
            "service-account-max-token-expiration".into(),
            format!("{max}s"),
        ));
    }
    args
}

/// The cluster configuration for `name` and `settings`: the shipped one, with a kubeadm patch
/// that sets the API server's flags and mounts the audit directories, and the host directory
/// `policy_dir` (holding `audit-policy.yaml`) mounted into the control-plane node.
pub fn render_config(
    base: &str,
    name: &str,
    settings: &ClusterSettings,
    policy_dir: &Path,
) -> Result<String> {
    let mut cfg: serde_json::Value =
        serde_saphyr::from_str(base).context("reading the Kind cluster configuration")?;
    let extra_args: serde_json::Map<String, serde_json::Value> = apiserver_args(name, settings)
        .into_iter()
        .map(|(k, v)| (k, serde_json::Value::from(v)))
        .collect();
    let patch = serde_json::json!({
        "kind": "ClusterConfiguration",
        "apiServer": {
            "extraArgs": extra_args,
            "extraVolumes": [
                {"name": "authlab-audit-policy", "hostPath": NODE_AUDIT_DIR,
                 "mountPath": NODE_AUDIT_DIR, "readOnly": true, "pathType": "DirectoryOrCreate"},
                {"name": "authlab-audit-log", "hostPath": "/var/log/kubernetes/authlab",
                 "mountPath": "/var/log/kubernetes/authlab", "pathType": "DirectoryOrCreate"},
            ],
        },
    });
    let patches = cfg["kubeadmConfigPatches"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .chain([serde_json::Value::from(patch.to_string())])
        .collect::<Vec<_>>();
    cfg["kubeadmConfigPatches"] = serde_json::Value::from(patches);
    let nodes = cfg["nodes"]
        .as_array_mut()
        .context("the Kind cluster configuration has no nodes")?;
    let cp = nodes
        .iter_mut()
        .find(|n| n["role"] == "control-plane")
        .context("the Kind cluster configuration has no control-plane node")?;
    let mut mounts = cp["extraMounts"].as_array().cloned().unwrap_or_default();
    mounts.push(serde_json::json!({
        "hostPath": policy_dir.display().to_string(),
        "containerPath": NODE_AUDIT_DIR,
        "readOnly": true,
    }));
    cp["extraMounts"] = serde_json::Value::from(mounts);
    // JSON is YAML: kind reads it as it reads the shipped file.
    serde_json::to_string_pretty(&cfg).context("writing the Kind cluster configuration")
}

/// The control-plane node's container (kind names it so).
pub fn control_plane(name: &str) -> String {
    format!("{name}-control-plane")
}

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

/// The `kind` executable a run uses (`AUTHLAB_KIND_BIN`, else `kind` on PATH).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kind {
    bin: PathBuf,
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
    /// The `kind` executable that made it.
    pub kind: Kind,
    /// The scope's claim on it while the run is to delete it (none once deleted or kept).
    claim: std::sync::Arc<std::sync::Mutex<Option<crate::scope::Tracked>>>,
}

/// Bound on `kind create cluster` as a whole (its `--wait` covers only the control plane).
pub const CREATE_TIMEOUT: Duration = Duration::from_secs(600);

/// What becomes of an existing cluster and of one a run makes.
#[derive(Debug, Clone, Copy)]
pub struct Reuse {
    /// An existing cluster of that name is used (else it is an error).
    pub reuse: bool,
    /// A cluster the run made whole is kept after it.
    pub keep: bool,
}

impl Kind {
    /// Finds the executable `settings` name, or an error saying how to install it.
    pub fn find(settings: &crate::settings::Settings) -> Result<Kind> {
        let exe = settings.kind_bin.as_deref().unwrap_or("kind");
        let bin = which(exe, settings.path.as_deref()).with_context(|| {
            format!(
                "the `{exe}` command was not found on PATH. Kind clusters need kind and Docker: install kind (https://kind.sigs.k8s.io/docs/user/quick-start/#installation, or `go install sigs.k8s.io/kind@latest`) and set AUTHLAB_KIND_BIN if it is not on PATH — or run on the built-in sim cluster (--cluster sim)"
            )
        })?;
        Ok(Kind { bin })
    }

    /// Runs `kind` with `args`, returning stdout; the error carries the command line and stderr.
    pub fn run(&self, args: &[String]) -> Result<String> {
        let bin = &self.bin;
        let out = Command::new(bin)
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
    pub fn clusters(&self) -> Result<Vec<String>> {
        Ok(self
            .run(&["get".into(), "clusters".into()])?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("No kind clusters"))
            .map(str::to_string)
            .collect())
    }

    /// Creates the cluster `name` from `config_text`, or reuses it when it exists and `reuse` is
    /// set (a cluster it creates is deleted if the run is interrupted, unless `keep` and it was
    /// made whole); writes the configuration and both kubeconfigs into `dir`. kind's progress lines are
    /// logged as they come (creation takes a minute or more).
    pub fn up(
        &self,
        name: &str,
        image: &str,
        config_text: &str,
        dir: &Path,
        Reuse { reuse, keep }: Reuse,
        run_id: &str,
    ) -> Result<KindCluster> {
        let name = cluster_name(name);
        let kubeconfig = dir.join(format!("{name}.kubeconfig"));
        let internal = dir.join(format!("{name}.internal.kubeconfig"));
        let config = dir.join(format!("{name}.kind.yaml"));
        let exists = self.clusters()?.contains(&name);
        let mut kept_claim = None;
        if exists && !reuse {
            bail!(
                "a Kind cluster named {name} already exists; reuse it (AUTHLAB_KIND_REUSE=1) or delete it (`kind delete cluster --name {name}` or `authlab clean`)"
            );
        }
        if !exists {
            std::fs::write(&config, config_text)
                .with_context(|| format!("writing {}", config.display()))?;
            tracing::info!(
                "creating Kind cluster {name} ({image}); this takes a minute or two (up to {} s)",
                CREATE_TIMEOUT.as_secs()
            );
            let started = std::time::Instant::now();
            // Deleted if the run is interrupted or killed from here on, half-made or not.
            let claim = self.claim(&name);
            self.run_logged(
                &create_args(
                    name.as_str(),
                    image,
                    &config,
                    &kubeconfig,
                    Duration::from_secs(300),
                ),
                &name,
                CREATE_TIMEOUT,
                run_id,
            )?;
            tracing::info!(
                "Kind cluster {name} created in {} s",
                started.elapsed().as_secs()
            );
            if keep {
                // Whole now, and asked to be kept: kept also when the run is interrupted.
                claim.release();
            } else {
                kept_claim = Some(claim);
            }
        } else {
            tracing::info!("reusing Kind cluster {name}");
        }
        std::fs::write(&kubeconfig, self.run(&kubeconfig_args(&name, false))?)
            .with_context(|| format!("writing {}", kubeconfig.display()))?;
        std::fs::write(&internal, self.run(&kubeconfig_args(&name, true))?)
            .with_context(|| format!("writing {}", internal.display()))?;
        Ok(KindCluster {
            name,
            kubeconfig,
            internal_kubeconfig: internal,
            created: !exists,
            kind: self.clone(),
            claim: std::sync::Arc::new(std::sync::Mutex::new(kept_claim)),
        })
    }

    /// Claims Kind cluster `name` (about to be made) for the run's scope: deleted should the
    /// run be stopped, or killed (the watchdog deletes it then), unless released.
    fn claim(&self, name: &str) -> crate::scope::Tracked {
        let kind = self.clone();
        let owned = name.to_string();
        crate::scope::claim_with(
            format!("Kind cluster {name}"),
            crate::scope::Stage::Clusters,
            crate::scope::OnDeath::DeleteKind(name.to_string()),
            move || delete_clusters(&kind, &[owned]),
        )
    }

    /// Runs `kind` with `args` as a process of run `run_id`, logging each line it prints on stderr
    /// (its progress), killing it after `timeout`; the error carries the command line and its
    /// last lines.
    fn run_logged(
        &self,
        args: &[String],
        name: &str,
        timeout: Duration,
        run_id: &str,
    ) -> Result<()> {
        use std::io::BufRead;
        let bin = &self.bin;
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        // Labelled with the run and claimed: a run that is stopped, or a watchdog reaping a
        // killed run, stops it before deleting the cluster it is making (which it would
        // otherwise finish afterwards).
        let (mut child, claim) = crate::scope::spawn(
            &format!("{} {}", bin.display(), args.join(" ")),
            cmd,
            run_id,
        )?;
        let stderr = child.stderr.take().context("kind's stderr")?;
        let prefix = name.to_string();
        let reader = std::thread::spawn(move || {
            let mut last = Vec::new();
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let line = line.trim().to_string();
                if line.is_empty() {
                    continue;
                }
                tracing::info!("kind {prefix}: {line}");
                last.push(line);
                if last.len() > 20 {
                    last.remove(0);
                }
            }
            last
        });
        let mut wait = crate::wait::Wait::new(format!("`kind {}`", args.join(" ")), timeout)
            .every(Duration::from_millis(200))
            .start();
        let exited = wait.exit_of(&mut child).context("waiting for kind");
        if exited.is_ok() {
            // Reaped (or killed and reaped).
            claim.release();
        }
        let Some(status) = exited? else {
            bail!(
                "`kind {}` did not finish within {} s and was stopped",
                args.join(" "),
                timeout.as_secs()
            );
        };
        let last = reader.join().unwrap_or_default();
        if !status.success() {
            bail!(
                "`kind {}` failed ({status}): {}",
                args.join(" "),
                last.join("\n")
            );
        }
        Ok(())
    }
}

/// Deletes Kind clusters (each `kind delete cluster`, which also removes a half-made one),
/// saying so, since each takes seconds.
///
/// A node container whose creation the engine was still finishing when `kind create` was
/// stopped appears after the delete: the names are looked for again, and deleted again, until
/// none has been seen for 3 s (at most 30 s).
pub(crate) fn delete_clusters(kind: &Kind, names: &[String]) {
    let delete = |name: &str| {
        if let Err(e) = kind.run(&delete_args(name)) {
            tracing::warn!("deleting Kind cluster {name}: {e:#}");
        }
    };
    for name in names {
        tracing::info!("deleting Kind cluster {name}");
        delete(name);
    }
    if names.is_empty() {
        return;
    }
    // Deleted again while any is seen, until none was for 3 s (at most 30 s).
    let mut wait = crate::wait::Wait::new(
        "Kind clusters to stay deleted",
        std::time::Duration::from_secs(30),
    )
    .every(std::time::Duration::from_millis(500))
    .start();
    let mut last_seen = std::time::Instant::now();
    while last_seen.elapsed() < std::time::Duration::from_secs(3) && wait.tick_blocking().is_ok() {
        let now = kind.clusters().unwrap_or_default();
        for name in names.iter().filter(|n| now.contains(n)) {
            last_seen = std::time::Instant::now();
            delete(name);
        }
    }
}

/// `exe` itself when it is a path to a file, else the first file of that name on `path` (the
/// value of `PATH`).
pub(crate) fn which(exe: &str, path: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    let p = Path::new(exe);
    if p.components().count() > 1 {
        return p.is_file().then(|| p.to_path_buf());
    }
    path.and_then(|paths| {
        std::env::split_paths(paths)
            .map(|d| d.join(exe))
            .find(|c| c.is_file())
    })
}

impl KindCluster {
    /// Loads a locally built image into the cluster's nodes.
    pub fn load_image(&self, image: &str) -> Result<()> {
        self.kind
            .run(&load_image_args(&self.name, image))
            .map(|_| ())
    }

    /// Exports the cluster's logs (for artifacts of failed trials).
    pub fn export_logs(&self, dir: &Path) -> Result<()> {
        self.kind
            .run(&export_logs_args(&self.name, dir))
            .map(|_| ())
    }

    /// Deletes the cluster if the lab created it and `keep` is not set.
    pub fn down(&self, keep: bool) -> Result<()> {
        let claim = self.claim.lock().unwrap_or_else(|p| p.into_inner()).take();
        if self.created && !keep {
            self.kind.run(&delete_args(&self.name))?;
        }
        if let Some(claim) = claim {
            claim.release();
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
        let settings = crate::settings::Settings {
            kind_bin: Some("/nonexistent/kind".into()),
            ..Default::default()
        };
        let err = Kind::find(&settings).unwrap_err().to_string();
        assert!(err.contains("install kind"), "{err}");
        assert!(err.contains("--cluster sim"), "{err}");
    }

    #[test]
    fn shipped_kind_config_is_a_kind_cluster() {
        let v: serde_json::Value = serde_saphyr::from_str(CLUSTER_CONFIG).unwrap();
        assert_eq!(v["kind"], "Cluster");
        assert_eq!(v["apiVersion"], "kind.x-k8s.io/v1alpha4");
        assert_eq!(v["nodes"][0]["role"], "control-plane");
    }

    #[test]
    fn settings_become_api_server_flags_with_the_audit_log() {
        let settings = ClusterSettings {
            issuer: Some("${cluster.url}".into()),
            api_audiences: Some(vec!["vault".into(), "api".into()]),
            anonymous_auth: Some(false),
            max_token_expiration: Some(3600),
        };
        let name = name_for("lab", &settings);
        assert!(name.starts_with("authlab-lab-") && name.len() == "authlab-lab-".len() + 8);
        assert_eq!(name_for("lab", &ClusterSettings::default()), "authlab-lab");
        assert_eq!(name_for("lab", &settings), name, "stable");
        let text = render_config(CLUSTER_CONFIG, &name, &settings, Path::new("/p")).unwrap();
        let cfg: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        let patch: serde_json::Value =
            serde_saphyr::from_str(cfg["kubeadmConfigPatches"][0].as_str().unwrap()).unwrap();
        let args = &patch["apiServer"]["extraArgs"];
        assert_eq!(patch["kind"], "ClusterConfiguration");
        assert_eq!(
            args["service-account-issuer"],
            format!("https://{name}-control-plane:6443")
        );
        assert_eq!(args["api-audiences"], "vault,api");
        assert_eq!(args["anonymous-auth"], "false");
        assert_eq!(args["service-account-max-token-expiration"], "3600s");
        assert_eq!(args["audit-log-path"], NODE_AUDIT_LOG);
        assert_eq!(
            args["audit-policy-file"],
            format!("{NODE_AUDIT_DIR}/audit-policy.yaml")
        );
        let mounts = &cfg["nodes"][0]["extraMounts"][0];
        assert_eq!(mounts["hostPath"], "/p");
        assert_eq!(mounts["containerPath"], NODE_AUDIT_DIR);
        let vols = patch["apiServer"]["extraVolumes"].as_array().unwrap();
        assert!(vols.iter().any(|v| v["mountPath"] == NODE_AUDIT_DIR));
    }
}
