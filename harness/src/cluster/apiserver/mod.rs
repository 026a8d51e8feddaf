//! `--cluster apiserver`: a real control plane on this machine — etcd, kube-apiserver and,
//! when its binary is there, kube-controller-manager — with a CA, serving certificate,
//! service-account key and flags that authlab owns, so a case's `cluster.settings` become real
//! flags and hand-made tokens are signed with the key the API server trusts.
//!
//! One etcd serves every API server of a run, each under its own prefix; there is one API
//! server per distinct (`cluster.settings`, listen address) and trials on it take turns like
//! on any shared cluster. Every process is labelled with the run id, dies with the harness and
//! is reaped by `authlab clean` like a server process.

pub mod audit;
pub mod binaries;
mod controllers;

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use base64::{Engine, engine::general_purpose::STANDARD};

pub use binaries::Binaries;

use crate::{case::model::ClusterSettings, wait::Wait};

/// Bound on etcd start → healthy.
pub const ETCD_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on kube-apiserver start → `/readyz` 200.
pub const APISERVER_TIMEOUT: Duration = Duration::from_secs(120);
/// The service range (kubeadm's default); its first address names the `kubernetes` service.
const SERVICE_CIDR: &str = "10.96.0.0/12";

/// A child process of the control plane: labelled, in its own process group, killed with the
/// harness, output in a log file, and stopped when dropped (so a start-up that fails half-way
/// leaves nothing running).
struct Child {
    name: &'static str,
    child: std::process::Child,
    log: PathBuf,
    /// The scope's claim on the process, until it has been reaped.
    claim: Option<crate::scope::Tracked>,
}

impl Child {
    fn spawn(
        name: &'static str,
        bin: &Path,
        args: &[String],
        log: PathBuf,
        run_id: &str,
    ) -> Result<Child> {
        let out =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone().context("duplicating a log handle")?;
        let mut cmd = std::process::Command::new(bin);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        let (child, claim) =
            crate::scope::spawn(&format!("{name} ({})", bin.display()), cmd, run_id)?;
        Ok(Child {
            name,
            child,
            log,
            claim: Some(claim),
        })
    }

    /// Fails (with the end of its log) when the process has exited.
    fn check_alive(&mut self) -> Result<()> {
        if let Ok(Some(status)) = self.child.try_wait() {
            bail!(
                "{} exited during start-up ({status}); the end of {}:\n{}",
                self.name,
                self.log.display(),
                tail(&self.log, 15)
            );
        }
        Ok(())
    }

    /// SIGTERM, then after 10 s SIGKILL to its group; once.
    fn stop(&mut self) {
        let Some(claim) = self.claim.take() else {
            return;
        };
        let pid = self.child.id();
        crate::scope::process::terminate_process(pid);
        let mut wait = Wait::new(
            format!("process {pid} to exit after SIGTERM"),
            Duration::from_secs(10),
        )
        .start();
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                claim.release();
                return;
            }
            if wait.tick_blocking().is_err() {
                break;
            }
        }
        crate::scope::process::kill_group(pid);
        let _ = self.child.wait();
        claim.release();
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The last `n` lines of a log file.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn free_port(host: &str) -> Result<u16> {
    Ok(free_ports(host, 1)?[0])
}

/// `n` distinct free ports (held together while chosen, so no two are the same).
fn free_ports(host: &str, n: usize) -> Result<Vec<u16>> {
    let held = (0..n)
        .map(|_| {
            std::net::TcpListener::bind((host, 0))
                .with_context(|| format!("finding a free port on {host}"))
        })
        .collect::<Result<Vec<_>>>()?;
    held.iter().map(|l| Ok(l.local_addr()?.port())).collect()
}

/// Polls `ready` every 100 ms until it is true, for at most `timeout`; logs every 5 s what it
/// waits for, and fails at once when `child` exits.
async fn wait_for<F: std::future::Future<Output = bool>>(
    what: &str,
    timeout: Duration,
    child: &mut Child,
    mut ready: impl FnMut() -> F,
) -> Result<Duration> {
    let mut wait = Wait::new(what, timeout)
        .every(Duration::from_millis(100))
        .noting_every(Duration::from_secs(5))
        .start();
    loop {
        child.check_alive()?;
        if ready().await {
            return Ok(wait.elapsed());
        }
        if wait.tick().await.is_err() {
            bail!(
                "waited {} s for {what}; the end of {}:\n{}",
                timeout.as_secs(),
                child.log.display(),
                tail(&child.log, 15)
            );
        }
    }
}

/// The run's etcd.
pub struct Etcd {
    child: Child,
    /// Client URL.
    pub url: String,
    /// Start → healthy.
    pub startup: Duration,
}

impl Etcd {
    /// Starts etcd on loopback with its data in `dir`.
    pub async fn start(bin: &Path, dir: &Path, run_id: &str) -> Result<Etcd> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let ports = free_ports("127.0.0.1", 2)?;
        let (client, peer) = (ports[0], ports[1]);
        let url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let args = vec![
            format!("--data-dir={}", dir.join("data").display()),
            format!("--listen-client-urls={url}"),
            format!("--advertise-client-urls={url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=default={peer_url}"),
            "--log-level=warn".into(),
        ];
        let mut child = Child::spawn("etcd", bin, &args, dir.join("etcd.log"), run_id)?;
        let http = reqwest::Client::new();
        let health = format!("{url}/health");
        let startup = wait_for("etcd to report healthy", ETCD_TIMEOUT, &mut child, || {
            let req = http.get(&health).send();
            async move {
                let Ok(r) = req.await else {
                    return false;
                };
                r.text().await.is_ok_and(|t| t.contains("\"true\""))
            }
        })
        .await?;
        Ok(Etcd {
            child,
            url,
            startup,
        })
    }

    /// Stops etcd.
    pub fn stop(&mut self) {
        self.child.stop();
    }
}

/// How an API server is started.
pub struct ApiServerOptions<'a> {
    /// The binaries.
    pub bins: &'a Binaries,
    /// The run's etcd.
    pub etcd_url: &'a str,
    /// Its key prefix in etcd (one per API server).
    pub etcd_prefix: String,
    /// Its directory (certificates, logs, kubeconfig).
    pub dir: PathBuf,
    /// The address it listens on: loopback, or the Docker network's gateway when containers
    /// must reach it.
    pub host: String,
    /// The case's settings (`${cluster.url}` in the issuer is the server's own URL).
    pub settings: &'a ClusterSettings,
    /// The service-account signing key (PKCS#8 PEM).
    pub sa_key_pem: &'a str,
    /// CA and serving keys.
    pub tls_keys: &'a crate::sim::TlsKeys,
    /// Run id (labels the processes).
    pub run_id: &'a str,
}

/// The files of an API server's PKI its controller manager is given.
struct PkiFiles {
    /// The admin kubeconfig.
    kubeconfig: PathBuf,
    /// The cluster CA.
    ca: PathBuf,
    /// The service-account signing key.
    sa_key: PathBuf,
}

/// A running API server (and its controller manager).
pub struct ApiServer {
    apiserver: Child,
    controller_manager: Option<Child>,
    controllers: Option<controllers::Emulated>,
    /// `https://<host>:<port>`.
    pub url: String,
    /// The cluster CA (PEM).
    pub ca_pem: String,
    /// An admin kubeconfig (a `system:masters` client certificate: a secret, mode 0600).
    pub kubeconfig: PathBuf,
    /// Start → `/readyz`, and → controllers ready.
    pub startup: (Duration, Duration),
    /// True when kube-controller-manager runs (else authlab does what trials need of it).
    pub real_controllers: bool,
    /// Its audit log (the request log trials judge).
    pub audit: audit::AuditLog,
}

impl ApiServer {
    /// Writes the PKI, starts kube-apiserver, waits for `/readyz`, then starts
    /// kube-controller-manager (or authlab's stand-in) and waits for the `default` service
    /// account of the `default` namespace.
    pub async fn start(o: ApiServerOptions<'_>) -> Result<ApiServer> {
        let dir = &o.dir;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let port = free_port(&o.host)?;
        let url = format!("https://{}:{port}", o.host);
        let keys = o.tls_keys.clone();
        let sans = vec![o.host.clone()];
        let pki = tokio::task::spawn_blocking(move || crate::sim::apiserver_pki(&sans, &keys))
            .await
            .context("the certificate task failed")??;
        let write = |name: &str, text: &str| -> Result<PathBuf> {
            let p = dir.join(name);
            std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600));
            Ok(p)
        };
        let ca = write("ca.crt", &pki.ca_pem)?;
        let cert = write("apiserver.crt", &pki.serving_cert_pem)?;
        let key = write("apiserver.key", &pki.serving_key_pem)?;
        let sa_key = write("sa.key", o.sa_key_pem)?;
        let sa_pub = write("sa.pub", &crate::sim::public_key_pem_of(o.sa_key_pem)?)?;
        let kubeconfig = write("kubeconfig", &kubeconfig_yaml(&url, &pki))?;
        let policy = write("audit-policy.yaml", audit::POLICY)?;
        let audit_log = dir.join("audit.log");
        let issuer = o
            .settings
            .issuer
            .as_deref()
            .map(|i| i.replace("${cluster.url}", &url))
            .unwrap_or_else(|| crate::sim::DEFAULT_ISSUER.to_string());
        let mut args = vec![
            format!("--etcd-servers={}", o.etcd_url),
            format!("--etcd-prefix={}", o.etcd_prefix),
            format!("--bind-address={}", o.host),
            format!("--advertise-address={}", o.host),
            format!("--secure-port={port}"),
            format!("--cert-dir={}", dir.display()),
            format!("--tls-cert-file={}", cert.display()),
            format!("--tls-private-key-file={}", key.display()),
            format!("--client-ca-file={}", ca.display()),
            format!("--service-account-issuer={issuer}"),
            format!("--service-account-key-file={}", sa_pub.display()),
            format!("--service-account-signing-key-file={}", sa_key.display()),
            format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            // kubeadm's.
            "--authorization-mode=Node,RBAC".into(),
            "--enable-admission-plugins=NodeRestriction".into(),
            "--allow-privileged=true".into(),
            format!(
                "--anonymous-auth={}",
                o.settings.anonymous_auth.unwrap_or(true)
            ),
            "--profiling=false".into(),
            // The `kubernetes` Service's endpoints cannot hold a loopback address; nothing
            // reaches the API server through that Service here.
            "--endpoint-reconciler-type=none".into(),
            // The request log of `expect.cluster_requests`.
            format!("--audit-policy-file={}", policy.display()),
            format!("--audit-log-path={}", audit_log.display()),
            "--audit-log-format=json".into(),
            "--audit-log-mode=blocking".into(),
        ];
        if let Some(aud) = &o.settings.api_audiences {
            args.push(format!("--api-audiences={}", aud.join(",")));
        }
        if let Some(max) = o.settings.max_token_expiration {
            args.push(format!("--service-account-max-token-expiration={max}s"));
        }
        let mut apiserver = Child::spawn(
            "kube-apiserver",
            &o.bins.apiserver,
            &args,
            dir.join("kube-apiserver.log"),
            o.run_id,
        )?;
        // Polled with a plain client: the Kubernetes client reports every refused connection
        // and 500 of a starting server as an error of its own.
        let ready_client = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(pki.ca_pem.as_bytes())
                .context("reading the cluster CA")?])
            .identity(
                reqwest::Identity::from_pem(
                    format!("{}{}", pki.admin_cert_pem, pki.admin_key_pem).as_bytes(),
                )
                .context("reading the admin client certificate")?,
            )
            .timeout(Duration::from_secs(5))
            .build()
            .context("building the readiness client")?;
        let readyz = format!("{url}/readyz");
        let ready = wait_for(
            &format!("kube-apiserver at {url} to answer /readyz"),
            APISERVER_TIMEOUT,
            &mut apiserver,
            || {
                let req = ready_client.get(&readyz).send();
                async move {
                    match req.await {
                        Ok(r) if r.status().is_success() => {
                            r.text().await.is_ok_and(|t| t.trim() == "ok")
                        }
                        _ => false,
                    }
                }
            },
        )
        .await?;
        let client = admin_client(&kubeconfig).await?;
        let mut server = ApiServer {
            apiserver,
            controller_manager: None,
            controllers: None,
            url,
            ca_pem: pki.ca_pem.clone(),
            kubeconfig: kubeconfig.clone(),
            startup: (ready, ready),
            real_controllers: o.bins.controller_manager.is_some(),
            audit: audit::AuditLog::at(audit_log),
        };
        let started = Instant::now();
        let files = PkiFiles {
            kubeconfig,
            ca,
            sa_key,
        };
        server.start_controllers(&o, &files, &client).await?;
        server.startup.1 = ready + started.elapsed();
        Ok(server)
    }

    /// Starts kube-controller-manager (or authlab's stand-in) with the PKI in `files`, and waits
    /// for the `default` service account of the `default` namespace.
    async fn start_controllers(
        &mut self,
        o: &ApiServerOptions<'_>,
        files: &PkiFiles,
        client: &kube::Client,
    ) -> Result<()> {
        let PkiFiles {
            kubeconfig,
            ca,
            sa_key,
        } = files;
        let (dir, run_id, sa_key_pem) = (&o.dir, o.run_id, o.sa_key_pem);
        match &o.bins.controller_manager {
            Some(bin) => {
                let args = vec![
                    format!("--kubeconfig={}", kubeconfig.display()),
                    format!("--service-account-private-key-file={}", sa_key.display()),
                    format!("--root-ca-file={}", ca.display()),
                    format!("--cluster-signing-cert-file={}", ca.display()),
                    "--leader-elect=false".into(),
                    "--use-service-account-credentials=false".into(),
                    "--secure-port=0".into(),
                    "--controllers=*".into(),
                ];
                self.controller_manager = Some(Child::spawn(
                    "kube-controller-manager",
                    bin,
                    &args,
                    dir.join("kube-controller-manager.log"),
                    run_id,
                )?);
            }
            None => {
                tracing::info!(
                    "no kube-controller-manager (AUTHLAB_KUBE_CONTROLLER_MANAGER_BIN): authlab fills legacy token secrets, creates default service accounts and finalizes namespaces itself"
                );
                self.controllers = Some(controllers::Emulated::start(
                    client.clone(),
                    sa_key_pem,
                    &self.ca_pem,
                )?);
            }
        }
        let sas: kube::Api<k8s_openapi::api::core::v1::ServiceAccount> =
            kube::Api::namespaced(client.clone(), "default");
        let who = if self.real_controllers {
            "kube-controller-manager"
        } else {
            "authlab's controllers"
        };
        let what = format!("{who} to create service account default/default");
        let child = self
            .controller_manager
            .as_mut()
            .unwrap_or(&mut self.apiserver);
        wait_for(&what, APISERVER_TIMEOUT, child, || {
            let sas = sas.clone();
            async move { sas.get_opt("default").await.is_ok_and(|s| s.is_some()) }
        })
        .await?;
        Ok(())
    }

    /// Stops the controllers, then the API server (also when dropped).
    pub fn stop(&mut self) {
        self.controllers = None;
        let manager = self.controller_manager.take();
        let apiserver = &mut self.apiserver;
        // Both at once: each may take up to its grace period.
        std::thread::scope(|s| {
            if let Some(mut c) = manager {
                s.spawn(move || c.stop());
            }
            apiserver.stop();
        });
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The `system:masters` client of `kubeconfig`.
async fn admin_client(kubeconfig: &Path) -> Result<kube::Client> {
    Ok(crate::cluster::kubeconfig::client(kubeconfig, None)
        .await?
        .0)
}

/// An admin kubeconfig for `url` (context `authlab-apiserver`).
fn kubeconfig_yaml(url: &str, pki: &crate::sim::ApiServerPki) -> String {
    let b = |s: &str| STANDARD.encode(s.as_bytes());
    let admin = kube::config::AuthInfo {
        client_certificate_data: Some(b(&pki.admin_cert_pem)),
        client_key_data: Some(b(&pki.admin_key_pem).into()),
        ..Default::default()
    };
    crate::sim::kubeconfig::document(
        "authlab-apiserver",
        url,
        &pki.ca_pem,
        "kubernetes-admin",
        admin,
    )
}

/// The key of an API server in a run: one per distinct settings and listen address.
pub fn key(settings: &ClusterSettings, host: &str) -> String {
    format!("{host} {}", settings_key(settings))
}

/// The settings part of [`key`].
pub fn settings_key(settings: &ClusterSettings) -> String {
    serde_json::to_string(settings).unwrap_or_default()
}
