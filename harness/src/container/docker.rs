//! The one place that talks to the Docker Engine (bollard). Every call's error names the
//! operation and its subject.

use std::{collections::HashMap, path::Path, time::Duration};

use anyhow::{Context, Result, anyhow, bail};
use bollard::{
    Docker,
    models::{ContainerCreateBody, NetworkCreateRequest},
    query_parameters::{
        BuildImageOptionsBuilder, CreateContainerOptionsBuilder,
        DownloadFromContainerOptionsBuilder, InspectContainerOptions, ListContainersOptionsBuilder,
        ListImagesOptionsBuilder, ListNetworksOptionsBuilder, LogsOptionsBuilder,
        RemoveContainerOptionsBuilder, RemoveImageOptionsBuilder, StartContainerOptions,
    },
};
use futures_util::StreamExt;

use super::{
    LABEL_MANAGED, LABEL_PID, LABEL_RUN,
    error::{DockerError, Op},
};

/// A connection to the Docker Engine.
#[derive(Clone)]
pub struct Engine {
    docker: Docker,
    /// `DOCKER_HOST` as the run's settings read it (bollard reads it too): named in errors,
    /// and used again by a connection of its own.
    host: Option<String>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Engine")
    }
}

/// Something authlab created in Docker (for `authlab clean`).
#[derive(Debug, Clone)]
pub struct ManagedObject {
    /// `container`, `network` or `image`.
    pub kind: String,
    /// Docker id.
    pub id: String,
    /// Name or tag.
    pub name: String,
    /// The run that created it.
    pub run_id: Option<String>,
    /// The harness process that created it.
    pub pid: Option<u32>,
}

impl ManagedObject {
    /// True when the run that created it is provably over (its run lock is free): a killed
    /// run's leftover. Objects of live runs, and of runs whose lock is not visible here (another
    /// machine's or container's run sharing the engine), are not.
    pub fn orphaned(&self) -> bool {
        self.run_id
            .as_deref()
            .is_some_and(|r| crate::scope::owner(r) == crate::scope::Owner::Gone)
    }
}

/// Removal is idempotent: an object that is already gone (404) counts as removed.
fn gone_is_removed(r: Result<(), bollard::errors::Error>) -> Result<(), bollard::errors::Error> {
    match r {
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(()),
        other => other,
    }
}

/// A file as a stream of 1 MiB chunks (for request bodies).
fn chunks<B: From<Vec<u8>>>(
    file: tokio::fs::File,
) -> impl futures_util::Stream<Item = std::io::Result<B>> + Send + 'static {
    futures_util::stream::try_unfold(file, |mut f| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 1 << 20];
        let n = f.read(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.truncate(n);
        Ok(Some((B::from(buf), f)))
    })
}

fn managed_filter() -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_string(), vec![format!("{LABEL_MANAGED}=true")])])
}

impl Engine {
    /// Connects (honouring `DOCKER_HOST`, which `settings` read), agrees on an API version and
    /// pings, all bounded.
    pub async fn connect(settings: &crate::settings::Settings) -> Result<Engine> {
        Engine::connect_to(settings.docker_host.clone()).await
    }

    /// [`Engine::connect`] with `DOCKER_HOST`'s value (None: the local socket).
    async fn connect_to(host: Option<String>) -> Result<Engine> {
        let how = host
            .as_ref()
            .map(|h| format!("DOCKER_HOST={h}"))
            .unwrap_or_else(|| "the local socket /var/run/docker.sock".into());
        let fix = "start Docker (or set DOCKER_HOST), or use the process runtime (AUTHLAB_RUNTIME=process)";
        let attempt = async {
            let docker = Docker::connect_with_defaults()?.negotiate_version().await?;
            docker.ping().await?;
            Ok::<_, bollard::errors::Error>(docker)
        };
        let docker = tokio::time::timeout(Duration::from_secs(5), attempt)
            .await
            .map_err(|_| anyhow!("Docker did not answer within 5 s at {how}; {fix}"))?
            .map_err(|e| anyhow!("Docker is not reachable at {how} ({e}); {fix}"))?;
        Ok(Engine { docker, host })
    }

    /// Labels of an image, if it exists.
    pub async fn image_labels(
        &self,
        image: &str,
    ) -> Result<Option<HashMap<String, String>>, DockerError> {
        match self.docker.inspect_image(image).await {
            Ok(i) => Ok(Some(i.config.and_then(|c| c.labels).unwrap_or_default())),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(e).op(|| format!("inspecting image {image}")),
        }
    }

    /// Pulls an image, reporting progress, consuming the whole stream.
    pub async fn pull_image(
        &self,
        reference: &str,
        progress: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<()> {
        let (image, tag) = reference.rsplit_once(':').unwrap_or((reference, "latest"));
        let opts = bollard::query_parameters::CreateImageOptionsBuilder::default()
            .from_image(image)
            .tag(tag)
            .build();
        let mut stream = self.docker.create_image(Some(opts), None, None);
        while let Some(item) = stream.next().await {
            let info = item.op(|| format!("pulling image {reference}"))?;
            if let Some(err) = info.error_detail.and_then(|d| d.message) {
                bail!("pulling image {reference}: {err}");
            }
            if let Some(status) = info.status {
                let done = info
                    .progress_detail
                    .and_then(|p| Some((p.current?, p.total?)))
                    .map(|(c, t)| format!(" {} of {} MiB", c >> 20, t >> 20))
                    .unwrap_or_default();
                progress(&format!(
                    "{reference}: {}{status}{done}",
                    info.id.map(|i| format!("{i} ")).unwrap_or_default()
                ));
            }
        }
        Ok(())
    }

    /// Builds `tag` from a tar build context on disk (classic builder), streaming the file in
    /// chunks and consuming the whole progress stream; an error item fails the build.
    pub async fn build_image(
        &self,
        tag: &str,
        context_tar: &Path,
        progress: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<()> {
        let file = tokio::fs::File::open(context_tar)
            .await
            .with_context(|| format!("opening the build context {}", context_tar.display()))?;
        let opts = BuildImageOptionsBuilder::default()
            .dockerfile("Dockerfile")
            .t(tag)
            .rm(true)
            .forcerm(true)
            .build();
        let mut stream =
            self.docker
                .build_image(opts, None, Some(bollard::body_try_stream(chunks(file))));
        while let Some(item) = stream.next().await {
            let info = item.op(|| format!("building image {tag}"))?;
            if let Some(err) = info.error_detail.and_then(|d| d.message) {
                bail!("building image {tag}: {err}");
            }
            if let Some(line) = info
                .stream
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
            {
                progress(&line);
            }
        }
        Ok(())
    }

    /// Removes an image by reference or id (`force` also untags it from other references).
    pub async fn remove_image(&self, image: &str, force: bool) -> Result<(), DockerError> {
        self.docker
            .remove_image(
                image,
                Some(RemoveImageOptionsBuilder::default().force(force).build()),
                None,
            )
            .await
            .map(|_| ())
            .op(|| format!("removing image {image}"))
    }

    /// Creates a labelled bridge network (or reuses one of that name).
    pub async fn create_network(&self, name: &str, run_id: &str) -> Result<String> {
        let existing = self
            .docker
            .list_networks(Some(
                ListNetworksOptionsBuilder::default()
                    .filters(&HashMap::from([(
                        "name".to_string(),
                        vec![name.to_string()],
                    )]))
                    .build(),
            ))
            .await
            .op(|| format!("listing networks named {name}"))?;
        if let Some(n) = existing
            .into_iter()
            .find(|n| n.name.as_deref() == Some(name))
        {
            return Ok(n.id.unwrap_or_default());
        }
        let req = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".into()),
            labels: Some(super::run_labels(run_id)),
            ..Default::default()
        };
        let in_flight = crate::scope::in_flight(name);
        let r = self.docker.create_network(req).await;
        drop(in_flight);
        Ok(r.op(|| format!("creating network {name}"))?.id)
    }

    /// The gateway address of a network (the host's address on it).
    pub async fn network_gateway(&self, name: &str) -> Result<String> {
        let n = self
            .docker
            .inspect_network(
                name,
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
            .op(|| format!("inspecting network {name}"))?;
        // IPv4 first: Kind's network has an IPv6 subnet too, which servers do not dial.
        let gateways: Vec<String> = n
            .ipam
            .and_then(|i| i.config)
            .into_iter()
            .flatten()
            .filter_map(|c| c.gateway)
            .collect();
        gateways
            .iter()
            .find(|g| g.parse::<std::net::Ipv4Addr>().is_ok())
            .or(gateways.first())
            .cloned()
            .with_context(|| format!("network {name} has no gateway address"))
    }

    /// The IPv4 address of `container` on `network`.
    pub async fn container_ip(&self, container: &str, network: &str) -> Result<String> {
        let c = self
            .docker
            .inspect_container(container, None::<InspectContainerOptions>)
            .await
            .op(|| format!("inspecting container {container}"))?;
        c.network_settings
            .and_then(|n| n.networks)
            .and_then(|mut n| n.remove(network))
            .and_then(|e| e.ip_address)
            .filter(|ip| !ip.is_empty())
            .with_context(|| format!("container {container} has no address on network {network}"))
    }

    /// Removes a network.
    pub async fn remove_network(&self, name: &str) -> Result<(), DockerError> {
        gone_is_removed(self.docker.remove_network(name).await)
            .op(|| format!("removing network {name}"))
    }

    /// Creates a container (not started).
    pub async fn create_container(&self, name: &str, body: ContainerCreateBody) -> Result<String> {
        let in_flight = crate::scope::in_flight(name);
        let r = self
            .docker
            .create_container(
                Some(CreateContainerOptionsBuilder::default().name(name).build()),
                body,
            )
            .await;
        drop(in_flight);
        Ok(r.op(|| format!("creating container {name}"))?.id)
    }

    /// Starts a container.
    pub async fn start(&self, container: &str) -> Result<(), DockerError> {
        self.docker
            .start_container(container, None::<StartContainerOptions>)
            .await
            .op(|| format!("starting container {container}"))
    }

    /// Inspects a container.
    pub async fn inspect(
        &self,
        container: &str,
    ) -> Result<bollard::models::ContainerInspectResponse, DockerError> {
        self.docker
            .inspect_container(container, None::<InspectContainerOptions>)
            .await
            .op(|| format!("inspecting container {container}"))
    }

    /// Follows a container's stdout+stderr into `path` until the container stops.
    pub fn follow_logs(&self, container: &str, path: std::path::PathBuf) {
        let docker = self.docker.clone();
        let container = container.to_string();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let Ok(mut file) = tokio::fs::File::create(&path).await else {
                return;
            };
            let opts = LogsOptionsBuilder::default()
                .follow(true)
                .stdout(true)
                .stderr(true)
                .build();
            let mut logs = docker.logs(&container, Some(opts));
            while let Some(Ok(chunk)) = logs.next().await {
                if file.write_all(&chunk.into_bytes()).await.is_err() {
                    break;
                }
                let _ = file.flush().await;
            }
        });
    }

    /// The last `lines` lines of a container's stdout+stderr (not following).
    pub async fn log_tail(&self, container: &str, lines: usize) -> Result<String> {
        let opts = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .tail(&lines.to_string())
            .build();
        let mut logs = self.docker.logs(container, Some(opts));
        let mut out = Vec::new();
        while let Some(chunk) = logs.next().await {
            let chunk = chunk.op(|| format!("reading the log of container {container}"))?;
            out.extend_from_slice(&chunk.into_bytes());
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// Runs `cmd` in a running container (with `stdin` written to it, when given) and returns
    /// its standard output; a non-zero exit is an error carrying its standard error. Bounded
    /// by 30 s.
    pub async fn exec(
        &self,
        container: &str,
        cmd: &[&str],
        stdin: Option<&[u8]>,
    ) -> Result<Vec<u8>> {
        use bollard::exec::{CreateExecOptions, StartExecResults};
        use tokio::io::AsyncWriteExt;
        let what = || format!("`{}` in container {container}", cmd.join(" "));
        let run = async {
            let exec = self
                .docker
                .create_exec(
                    container,
                    CreateExecOptions {
                        cmd: Some(cmd.to_vec()),
                        attach_stdin: Some(stdin.is_some()),
                        attach_stdout: Some(true),
                        attach_stderr: Some(true),
                        ..Default::default()
                    },
                )
                .await
                .op(|| format!("creating {}", what()))?;
            let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
            match self
                .docker
                .start_exec(&exec.id, None)
                .await
                .op(|| format!("starting {}", what()))?
            {
                StartExecResults::Attached {
                    mut output,
                    mut input,
                } => {
                    if let Some(data) = stdin {
                        input.write_all(data).await?;
                        input.shutdown().await?;
                    }
                    drop(input);
                    while let Some(chunk) = output.next().await {
                        match chunk.op(|| format!("reading the output of {}", what()))? {
                            bollard::container::LogOutput::StdErr { message } => {
                                stderr.extend_from_slice(&message)
                            }
                            other => stdout.extend_from_slice(&other.into_bytes()),
                        }
                    }
                }
                StartExecResults::Detached => {}
            }
            let code = self
                .docker
                .inspect_exec(&exec.id)
                .await
                .op(|| format!("inspecting {}", what()))?
                .exit_code
                .unwrap_or(0);
            if code != 0 {
                bail!(
                    "{} exited with {code}: {}",
                    what(),
                    String::from_utf8_lossy(&stderr).trim()
                );
            }
            Ok(stdout)
        };
        tokio::time::timeout(Duration::from_secs(30), run)
            .await
            .map_err(|_| anyhow!("{} did not finish within 30 s", what()))?
    }

    /// Reads one file out of a container.
    pub async fn read_file(&self, container: &str, path: &str) -> Result<Vec<u8>> {
        let mut stream = self.docker.download_from_container(
            container,
            Some(
                DownloadFromContainerOptionsBuilder::default()
                    .path(path)
                    .build(),
            ),
        );
        let mut tar_bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            tar_bytes.extend_from_slice(
                &chunk.op(|| format!("reading {path} from container {container}"))?,
            );
        }
        let mut ar = tar::Archive::new(&tar_bytes[..]);
        for entry in ar.entries()? {
            let mut entry = entry?;
            if entry.header().entry_type().is_file() {
                let mut out = Vec::new();
                std::io::Read::read_to_end(&mut entry, &mut out)?;
                return Ok(out);
            }
        }
        bail!("{path} in container {container} is not a file")
    }

    /// Force-removes a container and its anonymous volumes.
    pub async fn remove_container(&self, container: &str) -> Result<(), DockerError> {
        let removed = self
            .docker
            .remove_container(
                container,
                Some(
                    RemoveContainerOptionsBuilder::default()
                        .force(true)
                        .v(true)
                        .build(),
                ),
            )
            .await;
        gone_is_removed(removed).op(|| format!("removing container {container}"))
    }

    /// Force-removes a container from synchronous code (e.g. a `Drop`): on a thread of its own,
    /// with its own runtime and connection, so it neither needs the caller's runtime nor
    /// deadlocks one whose only thread is the caller. Bounded by 30 s.
    pub fn remove_container_blocking(&self, container: &str) -> Result<()> {
        let name = container.to_string();
        let host = self.host.clone();
        crate::scope::on_own_runtime(move || async move {
            let engine = Engine::connect_to(host).await?;
            tokio::time::timeout(Duration::from_secs(30), engine.remove_container(&name))
                .await
                .map_err(|_| anyhow!("removing container {name} took over 30 s"))?
                .map_err(anyhow::Error::new)
        })
        .ok_or_else(|| anyhow!("no thread or runtime to remove container {container} with"))?
    }

    /// Claims container `name` for the run's scope (made, or about to be): removed when the
    /// claim is dropped or the run closes, unless released.
    pub fn claim_container(&self, name: &str) -> crate::scope::Tracked {
        let engine = self.clone();
        let owned = name.to_string();
        crate::scope::claim(
            format!("container {name}"),
            crate::scope::Stage::Containers,
            move || {
                if let Err(e) = engine.remove_container_blocking(&owned) {
                    tracing::warn!("{e:#}");
                }
            },
        )
    }

    /// Claims network `name` for the run's scope; its removal is retried for 5 s (a container
    /// removed a moment ago may still hold it).
    pub fn claim_network(&self, name: &str) -> crate::scope::Tracked {
        let host = self.host.clone();
        let owned = name.to_string();
        crate::scope::claim(
            format!("network {name}"),
            crate::scope::Stage::Networks,
            move || {
                crate::scope::on_own_runtime(move || async move {
                    let Ok(engine) = Engine::connect_to(host).await else {
                        return;
                    };
                    let mut wait = crate::wait::Wait::new(
                        format!("network {owned} to be removed"),
                        Duration::from_secs(5),
                    )
                    .every(Duration::from_millis(200))
                    .start();
                    // Ok also when it is already gone.
                    while engine.remove_network(&owned).await.is_err() && wait.tick().await.is_ok()
                    {
                    }
                });
            },
        )
    }

    /// Everything labelled as authlab's.
    pub async fn list_managed(&self) -> Result<Vec<ManagedObject>> {
        let mut out = Vec::new();
        let containers = self
            .docker
            .list_containers(Some(
                ListContainersOptionsBuilder::default()
                    .all(true)
                    .filters(&managed_filter())
                    .build(),
            ))
            .await
            .op(|| "listing containers".to_string())?;
        for c in containers {
            out.push(ManagedObject {
                kind: "container".into(),
                id: c.id.unwrap_or_default(),
                name: c
                    .names
                    .and_then(|n| n.first().cloned())
                    .unwrap_or_default()
                    .trim_start_matches('/')
                    .to_string(),
                run_id: c.labels.as_ref().and_then(|l| l.get(LABEL_RUN).cloned()),
                pid: c
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(LABEL_PID)?.parse().ok()),
            });
        }
        let networks = self
            .docker
            .list_networks(Some(
                ListNetworksOptionsBuilder::default()
                    .filters(&managed_filter())
                    .build(),
            ))
            .await
            .op(|| "listing networks".to_string())?;
        for n in networks {
            out.push(ManagedObject {
                kind: "network".into(),
                id: n.id.unwrap_or_default(),
                name: n.name.unwrap_or_default(),
                run_id: n.labels.as_ref().and_then(|l| l.get(LABEL_RUN).cloned()),
                pid: n
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(LABEL_PID)?.parse().ok()),
            });
        }
        let images = self
            .docker
            .list_images(Some(
                ListImagesOptionsBuilder::default()
                    .filters(&managed_filter())
                    .build(),
            ))
            .await
            .op(|| "listing images".to_string())?;
        for i in images {
            out.push(ManagedObject {
                kind: "image".into(),
                id: i.id.clone(),
                name: i.repo_tags.first().cloned().unwrap_or(i.id),
                run_id: None,
                pid: None,
            });
        }
        Ok(out)
    }

    /// Removes containers and networks of killed runs (their run's lock is free); how many
    /// were removed.
    pub async fn reap_orphans(&self) -> Result<usize> {
        Ok(self.remove_where(ManagedObject::orphaned).await?.1)
    }

    /// Removes the managed containers and networks `which` selects: the containers all at
    /// once, then the networks (one still in use is left as it is). Returns how many were
    /// found and how many removed.
    pub async fn remove_where(
        &self,
        which: impl Fn(&ManagedObject) -> bool,
    ) -> Result<(usize, usize)> {
        let (containers, networks): (Vec<_>, Vec<_>) = self
            .list_managed()
            .await?
            .into_iter()
            .filter(|o| o.kind != "image" && which(o))
            .partition(|o| o.kind == "container");
        let mut removed =
            futures_util::future::join_all(containers.iter().map(|o| self.remove_managed(o)))
                .await
                .iter()
                .filter(|r| r.is_ok())
                .count();
        for n in &networks {
            if self.remove_managed(n).await.is_ok() {
                removed += 1;
            }
        }
        Ok((containers.len() + networks.len(), removed))
    }

    /// Removes one managed object.
    pub async fn remove_managed(&self, obj: &ManagedObject) -> Result<()> {
        match obj.kind.as_str() {
            "container" => Ok(self.remove_container(&obj.id).await?),
            "network" => Ok(self.remove_network(&obj.id).await?),
            "image" => self
                .remove_image(&obj.id, true)
                .await
                .with_context(|| format!("removing image {}", obj.name)),
            other => bail!("unknown object kind {other}"),
        }
    }
}
