//! The server as a real pod of a Kind or kubeconfig cluster, one per trial:
//! `manifests/in-cluster/openbao.yaml` rendered for the trial (the namespace and service
//! account of the case's server pod, the image), applied, waited for until its pod is ready and
//! the server answers on the address authlab then uses (the node's address and the Service's
//! NodePort), initialised and unsealed like any other server. Audit entries go to stdout with
//! the server log, which is streamed from the pod's log into a host file (following the pod
//! when it is replaced), so evidence is read as for every other server.
//!
//! On Kind authlab also reaches into the node (through Docker): the pod's token file as kubelet
//! wrote it (`${pod.jwt}`), a kubelet-style refresh of that file (`rotate_server_token`), and
//! the directory that keeps the storage of a server whose pod is replaced.

use std::{
    path::{Path, PathBuf},
    sync::Mutex,
    time::Duration,
};

use anyhow::{Context, Result, bail};
use futures_util::AsyncBufReadExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::{Api, api::LogParams};
use serde_json::Value;

use super::state::ServerInfo;
use crate::{
    cluster::objects,
    server::{ServerSpec, process::initialise_keyed},
    vault::VaultClient,
    wait::Wait,
};

/// The shipped manifest.
pub const MANIFEST: &str = include_str!("../../../manifests/in-cluster/openbao.yaml");
/// Bound on the pod becoming ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// Bound on the server answering through the NodePort once its pod is ready (kube-proxy
/// programs the port shortly after the endpoint is ready).
pub const REACH_TIMEOUT: Duration = Duration::from_secs(30);

/// Bound on one initialise or unseal request (raft storage writes its first entries then).
pub const INIT_TIMEOUT: Duration = Duration::from_secs(60);
/// Where a server whose pod is replaced keeps its storage on the node.
const NODE_DATA_ROOT: &str = "/var/lib/authlab";

/// How the trial's server pod is made.
pub struct PodOptions<'a> {
    /// The name of its StatefulSet and Service (`<name>-config` its ConfigMap's, `<name>-0` its
    /// pod's): the trial's own, as trials in the same namespace may run at once.
    pub name: &'a str,
    /// The server.
    pub spec: &'a ServerSpec,
    /// The image the cluster runs.
    pub image: &'a str,
    /// Namespace and name of the pod's service account.
    pub namespace: &'a str,
    /// Its service account.
    pub service_account: &'a str,
    /// Storage that outlives the pod (raft on a node directory named by this), for cases that
    /// replace the server pod; None: in-memory storage.
    pub persistent: Option<String>,
    /// The run (labels the objects).
    pub run_id: &'a str,
    /// Where the pod's log is streamed.
    pub log_file: PathBuf,
    /// The Kind node container, when authlab can reach into the node.
    pub node: Option<(crate::container::Engine, String)>,
}

/// The name of the pod of the StatefulSet `name` (its only replica).
pub fn pod_name(name: &str) -> String {
    format!("{name}-0")
}

/// The objects of the trial's server pod.
pub fn render(o: &PodOptions<'_>) -> Result<Vec<Value>> {
    let (ns, name) = (o.namespace, o.name);
    let config = format!("{name}-config");
    let mut docs = objects::parse_documents(MANIFEST)?;
    for d in &mut docs {
        d["metadata"]["namespace"] = Value::from(ns);
        d["metadata"]["name"] = Value::from(if d["kind"] == "ConfigMap" {
            config.as_str()
        } else {
            name
        });
        if d["kind"] == "Service" {
            d["spec"]["selector"]["app.kubernetes.io/instance"] = Value::from(name);
        }
        if d["kind"] == "StatefulSet" {
            d["spec"]["serviceName"] = Value::from(name);
            d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"] = Value::from(name);
            d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/instance"] =
                Value::from(name);
            let pod = &mut d["spec"]["template"]["spec"];
            pod["serviceAccountName"] = Value::from(o.service_account);
            pod["volumes"][0]["configMap"]["name"] = Value::from(config.as_str());
            pod["containers"][0]["image"] = Value::from(o.image);
            if !o.image.starts_with("authlab/") {
                // An official image: run its binary directly.
                pod["containers"][0]["command"] =
                    serde_json::json!([o.spec.flavour.to_string().replace("openbao", "bao")]);
            }
            if let Some(dir) = &o.persistent {
                pod["volumes"][1] = serde_json::json!({
                    "name": "data",
                    "hostPath": {"path": format!("{NODE_DATA_ROOT}/{dir}"), "type": "DirectoryOrCreate"},
                });
            }
        }
        if d["kind"] == "ConfigMap"
            && let Some(hcl) = d["data"]["server.hcl"].as_str()
        {
            let mut hcl = hcl.replace(
                "http://openbao.authlab-server.svc:8200",
                &format!("http://{name}.{ns}.svc:8200"),
            );
            if o.persistent.is_some() {
                hcl = hcl.replace(
                    "storage \"inmem\" {}",
                    "storage \"raft\" {\n  path    = \"/openbao/data\"\n  node_id = \"openbao-0\"\n}\ncluster_addr = \"http://127.0.0.1:8201\"",
                );
            }
            if o.spec.flavour == crate::server::Flavour::Vault {
                // Vault declares no audit devices in its config; it gets one through the API.
                let cut = hcl.find("audit \"file\"").unwrap_or(hcl.len());
                hcl = hcl[..cut].to_string();
            }
            d["data"]["server.hcl"] = Value::from(hcl);
        }
    }
    Ok(docs)
}

/// The trial's server pod, once started: what replacing it, refreshing its token and
/// stopping it need.
pub struct ClusterPod {
    client: kube::Client,
    namespace: String,
    /// The pod's name (the same for a replacement).
    pod: String,
    /// The pod's current UID (a replacement has another).
    uid: Mutex<String>,
    /// The server's address (the node's address and the NodePort).
    addr: String,
    unseal_key: String,
    flavour: crate::server::Flavour,
    node: Option<(crate::container::Engine, String)>,
    data_dir: Option<String>,
    ip: Mutex<Option<String>>,
    log_task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for ClusterPod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterPod")
            .field("namespace", &self.namespace)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for ClusterPod {
    fn drop(&mut self) {
        self.log_task.abort();
    }
}

/// Applies the trial's server pod, waits for it and initialises it.
pub async fn start(client: &kube::Client, o: PodOptions<'_>) -> Result<(ServerInfo, ClusterPod)> {
    let started = std::time::Instant::now();
    let docs = render(&o)?;
    let owner = objects::Owner::of_run(o.run_id);
    for d in &docs {
        objects::apply(client, &owner, d).await?;
    }
    let ns = o.namespace.to_string();
    let name = pod_name(o.name);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod = ready_pod(&pods, &ns, &name, None).await?;
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let status = pod.status.clone().unwrap_or_default();
    let node_ip = status
        .host_ip
        .clone()
        .with_context(|| format!("pod {ns}/{name} is ready but has no host address"))?;
    let svc: Service = Api::namespaced(client.clone(), &ns)
        .get(o.name)
        .await
        .with_context(|| format!("reading service {ns}/{}", o.name))?;
    let node_port = svc
        .spec
        .and_then(|s| s.ports)
        .and_then(|p| p.first().and_then(|p| p.node_port))
        .with_context(|| format!("service {ns}/{} has no node port", o.name))?;
    let addr = format!("http://{node_ip}:{node_port}");
    let log_task = stream_log(pods.clone(), name.clone(), o.log_file.clone());
    let probe =
        VaultClient::with_timeouts(&addr, None, Duration::from_secs(2), Duration::from_secs(10))?;
    reachable(&probe, &ns, &name).await?;
    let (root_token, unseal_key) = with_log_tail(
        &pods,
        &name,
        initialise_keyed(&admin_client(&addr)?, o.spec.flavour, "stdout").await,
        format!("initialising the server in pod {ns}/{name}"),
    )
    .await?;
    let info = ServerInfo {
        spec: o.spec.to_string(),
        addr: addr.clone(),
        root_token,
        audit_log: o.log_file.clone(),
        server_log: o.log_file.clone(),
        config_text: docs
            .iter()
            .find(|d| d["kind"] == "ConfigMap")
            .and_then(|d| d["data"]["server.hcl"].as_str())
            .unwrap_or_default()
            .to_string(),
        pid: None,
        startup_ms: started.elapsed().as_millis() as u64,
    };
    let handle = ClusterPod {
        client: client.clone(),
        namespace: ns,
        pod: name,
        uid: Mutex::new(uid),
        addr,
        unseal_key,
        flavour: o.spec.flavour,
        node: o.node,
        data_dir: o.persistent,
        ip: Mutex::new(status.pod_ip),
        log_task,
    };
    Ok((info, handle))
}

/// Waits until pod `name` of `ns` (another than `old`, when given) is ready; fails at once,
/// with the container's own words, when it cannot start.
async fn ready_pod(pods: &Api<Pod>, ns: &str, name: &str, old: Option<&str>) -> Result<Pod> {
    let mut wait = Wait::new(format!("pod {ns}/{name} to become ready"), READY_TIMEOUT)
        .every(Duration::from_millis(250))
        .noting_every(Duration::from_secs(10))
        .start();
    loop {
        let pod = pods.get_opt(name).await?;
        let current = pod
            .as_ref()
            .filter(|p| old.is_none_or(|o| p.metadata.uid.as_deref() != Some(o)));
        if let Some(p) = current {
            let status = p.status.clone().unwrap_or_default();
            let ready = status
                .conditions
                .as_ref()
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            if ready && p.metadata.deletion_timestamp.is_none() {
                return Ok(p.clone());
            }
            if let Some(why) = cannot_start(&status) {
                bail!(
                    "pod {ns}/{name} cannot start: {why}{}",
                    log_tail(pods, name, true).await
                );
            }
        }
        if wait.expired() {
            let state = current
                .and_then(|p| p.status.clone())
                .map(|s| describe(&s))
                .unwrap_or_else(|| "no such pod yet".into());
            bail!(
                "waited {} s for pod {ns}/{name} to become ready ({state}){}",
                READY_TIMEOUT.as_secs(),
                log_tail(pods, name, false).await
            );
        }
        wait.tick().await?;
    }
}

/// Why a pod's container will not run, as its status says (image not there, crash loop,
/// bad config), or None while it may still start.
fn cannot_start(status: &k8s_openapi::api::core::v1::PodStatus) -> Option<String> {
    const FATAL: &[&str] = &[
        "ErrImagePull",
        "ImagePullBackOff",
        "ErrImageNeverPull",
        "InvalidImageName",
        "CrashLoopBackOff",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    ];
    for c in status.container_statuses.iter().flatten() {
        let state = c.state.as_ref()?;
        if let Some(w) = &state.waiting
            && let Some(reason) = &w.reason
            && FATAL.contains(&reason.as_str())
        {
            return Some(format!(
                "{reason}: {}",
                w.message.clone().unwrap_or_default()
            ));
        }
        if let Some(t) = &state.terminated {
            return Some(format!(
                "its container exited with {} ({})",
                t.exit_code,
                t.reason.clone().unwrap_or_default()
            ));
        }
    }
    None
}

/// A pod status in a few words.
fn describe(status: &k8s_openapi::api::core::v1::PodStatus) -> String {
    let mut parts = vec![format!(
        "phase {}",
        status.phase.clone().unwrap_or_else(|| "unknown".into())
    )];
    let scheduled = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "PodScheduled");
    if status.phase.as_deref() == Some("Pending") && !scheduled {
        parts.push(
            "no scheduler has placed it on a node (does the cluster run a scheduler and have a node?)"
                .into(),
        );
    }
    for c in status.conditions.iter().flatten() {
        if c.status != "True" {
            parts.push(format!(
                "{} {}{}",
                c.type_,
                c.status,
                c.message
                    .as_ref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            ));
        }
    }
    for c in status.container_statuses.iter().flatten() {
        if let Some(w) = c.state.as_ref().and_then(|s| s.waiting.as_ref()) {
            parts.push(format!(
                "container waiting: {} {}",
                w.reason.clone().unwrap_or_default(),
                w.message.clone().unwrap_or_default()
            ));
        }
    }
    parts.join("; ")
}

/// The end of the pod's log (the previous container's, after a crash), for error messages.
async fn log_tail(pods: &Api<Pod>, name: &str, previous: bool) -> String {
    let params = LogParams {
        container: Some("openbao".into()),
        tail_lines: Some(15),
        previous,
        ..Default::default()
    };
    let mut text = pods.logs(name, &params).await.unwrap_or_default();
    if text.trim().is_empty() && previous {
        text = pods
            .logs(
                name,
                &LogParams {
                    previous: false,
                    ..params
                },
            )
            .await
            .unwrap_or_default();
    }
    if text.trim().is_empty() {
        String::new()
    } else {
        format!("; the end of its log:\n{}", text.trim_end())
    }
}

/// A client for initialising and unsealing: raft storage writes its first entries then, which
/// on a busy node takes longer than a health request may.
fn admin_client(addr: &str) -> Result<VaultClient> {
    VaultClient::with_timeouts(addr, None, Duration::from_secs(2), INIT_TIMEOUT)
}

/// `result`, its error given `what` and the end of the pod's log (the pod's own words).
async fn with_log_tail<T>(
    pods: &Api<Pod>,
    name: &str,
    result: Result<T>,
    what: String,
) -> Result<T> {
    match result {
        Ok(v) => Ok(v),
        Err(e) => {
            let tail = log_tail(pods, name, false).await;
            Err(e.context(format!("{what}{tail}")))
        }
    }
}

/// Waits until the server answers at the address authlab uses.
async fn reachable(probe: &VaultClient, ns: &str, name: &str) -> Result<()> {
    let mut wait = Wait::new(format!("the server of pod {ns}/{name}"), REACH_TIMEOUT)
        .every(Duration::from_millis(200))
        .start();
    loop {
        let err = match probe.health().await {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        if wait.expired() {
            bail!(
                "pod {ns}/{name} is ready, but the server did not answer at {} within {} s: {err:#}",
                probe.addr(),
                REACH_TIMEOUT.as_secs()
            );
        }
        wait.tick().await?;
    }
}

impl ClusterPod {
    /// The pod's name.
    pub fn name(&self) -> &str {
        &self.pod
    }

    /// The pod's own address (where its requests to the API server come from).
    pub fn ip(&self) -> Option<String> {
        self.ip
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The node's copy of the pod's service-account token file, as kubelet wrote it (Kind
    /// only: authlab reads the node).
    pub async fn token(&self) -> Result<String> {
        let (engine, node) = self.node()?;
        let dir = self.token_dir().await?;
        let out = engine
            .exec(node, &["cat", &format!("{dir}/token")], None)
            .await
            .context("reading the server pod's token file on its node")?;
        String::from_utf8(out).context("the pod's token file is not text")
    }

    /// Puts `token` into the pod's token file as kubelet refreshes it: a new timestamped
    /// directory with the volume's files, swapped in for `..data` in one rename.
    pub async fn refresh_token(&self, token: &str) -> Result<()> {
        let (engine, node) = self.node()?;
        let dir = self.token_dir().await?;
        let script = r#"set -e
d="$1"; new="$d/..authlab_$(date +%s%N)"
mkdir "$new"
for f in "$d"/..data/*; do cp -p "$f" "$new/"; done
cat > "$new/token"
chmod 0644 "$new/token"
old=$(readlink "$d/..data")
ln -s "$(basename "$new")" "$d/..data_tmp"
mv -T "$d/..data_tmp" "$d/..data"
rm -rf "$d/$old""#;
        engine
            .exec(
                node,
                &["sh", "-c", script, "refresh", &dir],
                Some(token.as_bytes()),
            )
            .await
            .context("writing the new token into the server pod's token file on its node")?;
        Ok(())
    }

    /// Deletes the pod (gracefully, as `kubectl delete pod` does) and waits for the
    /// StatefulSet's new pod of the same name, then unseals the server in it (its storage
    /// outlived the pod).
    pub async fn replace(&self) -> Result<()> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let old = self
            .uid
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        pods.delete(&self.pod, &Default::default())
            .await
            .with_context(|| format!("deleting pod {}/{}", self.namespace, self.pod))?;
        let pod = ready_pod(&pods, &self.namespace, &self.pod, Some(&old)).await?;
        *self
            .uid
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) =
            pod.metadata.uid.clone().unwrap_or_default();
        *self
            .ip
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = pod.status.and_then(|s| s.pod_ip);
        let probe = VaultClient::with_timeouts(
            &self.addr,
            None,
            Duration::from_secs(2),
            Duration::from_secs(10),
        )?;
        reachable(&probe, &self.namespace, &self.pod).await?;
        let admin = admin_client(&self.addr)?;
        with_log_tail(
            &pods,
            &self.pod,
            crate::server::process::unseal(&admin, self.flavour, &self.unseal_key).await,
            format!(
                "unsealing the server in its new pod {}/{}",
                self.namespace, self.pod
            ),
        )
        .await
    }

    /// Removes what the pod left on its node (the storage of a replaced pod).
    pub async fn remove_node_data(&self) -> Result<()> {
        if let (Some(dir), Some((engine, node))) = (&self.data_dir, &self.node) {
            engine
                .exec(
                    node,
                    &["rm", "-rf", &format!("{NODE_DATA_ROOT}/{dir}")],
                    None,
                )
                .await
                .context("removing the server's storage from its node")?;
        }
        Ok(())
    }

    fn node(&self) -> Result<(&crate::container::Engine, &str)> {
        self.node.as_ref().map(|(e, n)| (e, n.as_str())).context(
            "the server pod's node cannot be reached (authlab reaches into Kind nodes only)",
        )
    }

    /// The directory of the pod's projected service-account volume on its node.
    async fn token_dir(&self) -> Result<String> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let pod = pods
            .get(&self.pod)
            .await
            .with_context(|| format!("reading pod {}/{}", self.namespace, self.pod))?;
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let volume = pod
            .spec
            .and_then(|s| s.volumes)
            .into_iter()
            .flatten()
            .find(|v| {
                v.projected.as_ref().is_some_and(|p| {
                    p.sources
                        .iter()
                        .flatten()
                        .any(|s| s.service_account_token.is_some())
                })
            })
            .map(|v| v.name)
            .with_context(|| {
                format!(
                    "pod {}/{} has no projected service-account token volume",
                    self.namespace, self.pod
                )
            })?;
        Ok(format!(
            "/var/lib/kubelet/pods/{uid}/volumes/kubernetes.io~projected/{volume}"
        ))
    }
}

/// Follows the pod's log into `path` (audit JSON lines and server log lines together), and
/// the log of the pod that replaces it, until aborted.
fn stream_log(pods: Api<Pod>, pod: String, path: PathBuf) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let Ok(mut file) = tokio::fs::File::create(&path).await else {
            return;
        };
        let mut followed: Option<String> = None;
        loop {
            let uid = pods
                .get_opt(&pod)
                .await
                .ok()
                .flatten()
                .filter(|p| {
                    p.status
                        .as_ref()
                        .and_then(|s| s.container_statuses.as_ref())
                        .is_some_and(|c| {
                            c.iter().any(|c| {
                                c.state
                                    .as_ref()
                                    .is_some_and(|s| s.running.is_some() || s.terminated.is_some())
                            })
                        })
                })
                .and_then(|p| p.metadata.uid);
            if uid.is_none() || uid == followed {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            followed = uid;
            let params = LogParams {
                follow: true,
                container: Some("openbao".into()),
                ..Default::default()
            };
            let Ok(stream) = pods.log_stream(&pod, &params).await else {
                followed = None;
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            let mut lines = stream.lines();
            while let Some(Ok(line)) = futures_util::StreamExt::next(&mut lines).await {
                if file
                    .write_all(format!("{line}\n").as_bytes())
                    .await
                    .is_err()
                {
                    return;
                }
                let _ = file.flush().await;
            }
        }
    })
}

/// The log file of a trial's server pod.
pub fn log_path(workdir: &Path, trial_id: u64) -> PathBuf {
    workdir.join(format!("pod-server-{trial_id}.log"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pending pod no scheduler has looked at says so; one the scheduler could not place
    /// says why, in the scheduler's words.
    #[test]
    fn a_pending_pods_description_says_whether_it_was_scheduled() {
        use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
        let pending = PodStatus {
            phase: Some("Pending".into()),
            ..Default::default()
        };
        assert!(
            describe(&pending).contains("no scheduler has placed it"),
            "{}",
            describe(&pending)
        );
        let unschedulable = PodStatus {
            phase: Some("Pending".into()),
            conditions: Some(vec![PodCondition {
                type_: "PodScheduled".into(),
                status: "False".into(),
                message: Some("0/1 nodes are available".into()),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let d = describe(&unschedulable);
        assert!(!d.contains("no scheduler"), "{d}");
        assert!(
            d.contains("PodScheduled False: 0/1 nodes are available"),
            "{d}"
        );
    }

    fn opts<'a>(
        spec: &'a ServerSpec,
        image: &'a str,
        persistent: Option<String>,
    ) -> PodOptions<'a> {
        PodOptions {
            name: "openbao-r17",
            spec,
            image,
            namespace: "vault",
            service_account: "vault-auth",
            persistent,
            run_id: "r1",
            log_file: PathBuf::from("/tmp/x.log"),
            node: None,
        }
    }

    #[test]
    fn renders_the_trials_pod_with_its_account_and_image() {
        let spec: ServerSpec = "openbao:2.7.2".parse().unwrap();
        let docs = render(&opts(&spec, "authlab/openbao:2.7.2", None)).unwrap();
        let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
        assert_eq!(kinds, ["ConfigMap", "Service", "StatefulSet"]);
        for d in &docs {
            assert_eq!(d["metadata"]["namespace"], "vault", "{}", d["kind"]);
        }
        let sts = &docs[2]["spec"]["template"]["spec"];
        assert_eq!(sts["serviceAccountName"], "vault-auth");
        assert_eq!(sts["containers"][0]["image"], "authlab/openbao:2.7.2");
        assert!(sts["containers"][0]["command"].is_null());
        assert!(sts["volumes"][1]["emptyDir"].is_object());
        assert_eq!(docs[1]["spec"]["type"], "NodePort");
        let hcl = docs[0]["data"]["server.hcl"].as_str().unwrap();
        // OpenBao 2.7 has no file storage: the pod's server keeps its data in memory.
        assert!(hcl.contains("storage \"inmem\" {}"), "{hcl}");
        assert!(hcl.contains("http://openbao-r17.vault.svc:8200"), "{hcl}");
        // The trial's own names: another trial's server may run in the same namespace.
        assert_eq!(docs[0]["metadata"]["name"], "openbao-r17-config");
        assert_eq!(docs[1]["metadata"]["name"], "openbao-r17");
        assert_eq!(
            docs[1]["spec"]["selector"]["app.kubernetes.io/instance"],
            "openbao-r17"
        );
        assert_eq!(docs[2]["metadata"]["name"], "openbao-r17");
        assert_eq!(docs[2]["spec"]["serviceName"], "openbao-r17");
        let labels = &docs[2]["spec"]["template"]["metadata"]["labels"];
        assert_eq!(labels["app.kubernetes.io/instance"], "openbao-r17");
        assert_eq!(
            docs[2]["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"],
            "openbao-r17"
        );
        assert_eq!(sts["volumes"][0]["configMap"]["name"], "openbao-r17-config");
        assert!(hcl.contains("file_path = \"stdout\""), "{hcl}");
        hcl::parse(hcl).unwrap();
    }

    #[test]
    fn a_replaced_pod_keeps_its_storage_on_the_node() {
        let spec: ServerSpec = "openbao:2.6.1".parse().unwrap();
        let docs = render(&opts(&spec, "authlab/openbao:2.6.1", Some("r1-7".into()))).unwrap();
        let hcl = docs[0]["data"]["server.hcl"].as_str().unwrap();
        assert!(
            hcl.contains("storage \"raft\"") && hcl.contains("cluster_addr"),
            "{hcl}"
        );
        hcl::parse(hcl).unwrap();
        let vol = &docs[2]["spec"]["template"]["spec"]["volumes"][1];
        assert_eq!(vol["hostPath"]["path"], "/var/lib/authlab/r1-7");
    }

    #[test]
    fn vault_gets_no_audit_stanza_and_an_official_image_its_command() {
        let spec: ServerSpec = "vault:1.21.1".parse().unwrap();
        let docs = render(&opts(&spec, "hashicorp/vault:1.21.1", None)).unwrap();
        let hcl = docs[0]["data"]["server.hcl"].as_str().unwrap();
        assert!(
            !hcl.contains("audit \"file\"") && hcl.contains("disable_mlock"),
            "{hcl}"
        );
        assert_eq!(
            docs[2]["spec"]["template"]["spec"]["containers"][0]["command"][0],
            "vault"
        );
    }
}
