//! The container runtime against the real Docker Engine: local `FROM scratch` images, server
//! containers on labelled networks, pod emulation (the service-account files and variables a
//! pod gets, read by the server's kubernetes auth in local-token mode), and cleanup.
//!
//! Without a reachable Docker the tests are reported as ignored with the reason (a failure where
//! the run requires Docker: `AUTHLAB_REQUIRE`, `CI=true`). The OpenBao binary comes from
//! `AUTHLAB_OPENBAO_BIN` or the project's binary cache, provisioned if need be; a test that
//! cannot have it fails.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

mod common;

use authlab::{
    container::{
        AUDIT_FILE, ContainerServer, ContainerServerOptions, Engine, ImageOutcome, LABEL_BINARY,
        LABEL_MANAGED, LABEL_RUN, POD_PORTS, PodIdentity, PodNetwork, SA_DIR, SharedNetns,
        ensure_local_image, resolve_image,
    },
    server::{
        Flavour, ServerSpec,
        binary::BinaryCache,
        config::{ServerConfig, render},
    },
};
use base64::Engine as _;
use common::Needs;
use serde_json::{Value, json};

const SPEC: &str = "openbao:2.7.2";

/// The engine and the OpenBao binary (the test is only run where Docker is reachable).
async fn prerequisites() -> (Engine, PathBuf) {
    let engine = Engine::connect(common::settings())
        .await
        .expect("Docker, checked before the test");
    let spec: ServerSpec = SPEC.parse().expect("a valid spec");
    let bin = async {
        BinaryCache::new(common::settings())?
            .ensure(&spec, &|l| eprintln!("{spec}: {l}"))
            .await
    }
    .await
    .unwrap_or_else(|e| panic!("the {spec} binary: {e:#}"));
    (engine, bin)
}

fn run_id() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("ct{}", &id[..10])
}

fn progress(line: &str) {
    eprintln!("  {line}");
}

/// The server image every server test uses (the official one if present, else the local build).
async fn server_image(engine: &Engine, bin: &Path) -> (String, bool) {
    let spec: ServerSpec = SPEC.parse().expect("a valid spec");
    let img = resolve_image(engine, &spec, bin, common::settings().pull, &progress)
        .await
        .expect("the server image");
    let official = img.official();
    (img.reference, official)
}

/// Options for a debug-level OpenBao server whose audit log is `AUDIT_FILE`.
fn options(
    image: (String, bool),
    run: &str,
    name: &str,
    network: &str,
    dir: &Path,
) -> ContainerServerOptions {
    let cfg = ServerConfig {
        listen: "0.0.0.0:8200".parse().expect("an address"),
        audit_file: AUDIT_FILE.into(),
        log_level: "debug".into(),
        flavour: Flavour::OpenBao,
    };
    ContainerServerOptions {
        image: image.0,
        official: image.1,
        flavour: Flavour::OpenBao,
        name: format!("authlab-{run}-{name}"),
        run_id: run.to_string(),
        trial: Some(name.to_string()),
        network: Some(network.to_string()),
        shared: None,
        host_binary: None,
        config_hcl: render(&cfg),
        env: vec![("AUTHLAB_TEST".into(), run.to_string())],
        pod: None,
        host_dir: dir.join(name),
        ready_timeout: Duration::from_secs(30),
    }
}

/// Containers and networks of one run still known to the engine.
async fn leftovers(engine: &Engine, run: &str) -> Vec<String> {
    engine
        .list_managed()
        .await
        .expect("listing managed objects")
        .into_iter()
        .filter(|o| o.run_id.as_deref() == Some(run))
        .map(|o| format!("{} {}", o.kind, o.name))
        .collect()
}

async fn call(
    http: &reqwest::Client,
    server: &ContainerServer,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http
        .request(method, format!("{}/v1/{path}", server.addr()))
        .header("X-Vault-Token", server.root_token());
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("a response");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn image_is_built_from_scratch_once_and_then_reused() {
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    rt.block_on(async {
        let (engine, bin) = prerequisites().await;
        // A tag of this run's own, so the build really happens and other runs are untouched.
        let tag = format!("authlab-test/openbao:{}", run_id());
        let t = Instant::now();
        let first = ensure_local_image(&engine, &tag, Flavour::OpenBao, &bin, &progress).await;
        let built_in = t.elapsed();
        let t = Instant::now();
        let second = ensure_local_image(&engine, &tag, Flavour::OpenBao, &bin, &progress).await;
        let reused_in = t.elapsed();
        let labels = engine.image_labels(&tag).await;
        let listed = engine.list_managed().await;
        // A server runs from the fresh image (its directories are there and usable).
        let run = run_id();
        let net = format!("authlab-{run}");
        let dir = tempfile::tempdir().expect("a scratch dir");
        let served = async {
            engine.create_network(&net, &run).await?;
            let opts = options((tag.clone(), false), &run, "img", &net, dir.path());
            let want = opts.config_hcl.clone();
            let server = ContainerServer::start(&engine, opts).await?;
            // Its config is the host's file, seen through the mount.
            let seen = server.read_file("/openbao/config/server.hcl").await;
            server.stop_and_remove().await?;
            let seen = seen?;
            anyhow::ensure!(seen == want.as_bytes(), "config differs");
            anyhow::Ok(())
        }
        .await;
        let _ = engine.remove_network(&net).await;
        engine
            .remove_image(&tag, false)
            .await
            .expect("removing the test image");
        served.expect("a server from the fresh image");
        assert_eq!(first.expect("the first build"), ImageOutcome::Built);
        assert_eq!(second.expect("the second call"), ImageOutcome::Reused);
        eprintln!("image {tag}: built in {built_in:?}, reused in {reused_in:?}");
        let labels = labels.expect("inspecting").expect("the image exists");
        assert_eq!(labels.get(LABEL_MANAGED).map(String::as_str), Some("true"));
        assert_eq!(labels.get(LABEL_BINARY).map(String::len), Some(64));
        assert!(
            listed
                .expect("listing")
                .iter()
                .any(|o| o.kind == "image" && o.name == tag),
            "the image is listed as managed"
        );
        // The engine-level entry point resolves the shared image by flavour and version.
        let reference = engine
            .ensure_server_image(SPEC, &bin, false, &progress)
            .await
            .expect("the shared server image");
        assert!(
            reference == "authlab/openbao:2.7.2" || reference == "openbao/openbao:2.7.2",
            "{reference}"
        );
        let bad = engine
            .ensure_server_image("nginx:latest", &bin, false, &progress)
            .await;
        assert!(bad.is_err(), "an unknown flavour is refused");
    });
}

fn server_container_on_a_labelled_network() {
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    rt.block_on(async {
        let (engine, bin) = prerequisites().await;
        let image = server_image(&engine, &bin).await;
        let run = run_id();
        let net = format!("authlab-{run}");
        engine
            .create_network(&net, &run)
            .await
            .expect("creating the network");
        assert_eq!(
            leftovers(&engine, &run).await,
            vec![format!("network {net}")]
        );
        let dir = tempfile::tempdir().expect("a scratch dir");
        let t = Instant::now();
        let server = ContainerServer::start(&engine, options(image, &run, "s", &net, dir.path()))
            .await
            .expect("the server starts");
        eprintln!(
            "openbao:2.7.2 container: create → listening {} ms, → initialised and unsealed {} ms \
             (start() returned after {} ms)",
            server.listening_after().as_millis(),
            server.startup().as_millis(),
            t.elapsed().as_millis()
        );
        let http = reqwest::Client::new();
        let (status, health) = call(&http, &server, reqwest::Method::GET, "sys/health", None).await;
        assert_eq!(status, 200, "{health}");
        assert_eq!(health["sealed"], false);
        let ip = server
            .container_ip(&net)
            .expect("an address on the network");
        assert!(ip.parse::<std::net::Ipv4Addr>().is_ok(), "{ip}");
        assert_eq!(server.container_ip("no-such-network"), None);
        let info = engine
            .inspect(server.container_name())
            .await
            .expect("inspect");
        let labels = info.config.and_then(|c| c.labels).unwrap_or_default();
        assert_eq!(labels.get(LABEL_RUN), Some(&run));
        assert_eq!(labels.get(LABEL_MANAGED).map(String::as_str), Some("true"));

        // The server's own writes: an audited request shows up in the audit log.
        let (status, _) = call(&http, &server, reqwest::Method::GET, "sys/mounts", None).await;
        assert_eq!(status, 200);
        let audit = server.read_file(AUDIT_FILE).await.expect("the audit log");
        let audit = String::from_utf8_lossy(&audit);
        assert!(audit.contains("\"path\":\"sys/mounts\""), "{audit}");
        let missing = server.read_file("/tmp/none").await;
        assert!(missing.is_err(), "a missing file is an error");

        // The log follower fills the host file.
        let log = server.server_log_path();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut text = String::new();
        while Instant::now() < deadline {
            text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("post-unseal setup complete") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(text.contains("post-unseal setup complete"), "{text}");

        server.stop_and_remove().await.expect("removing the server");
        engine
            .remove_network(&net)
            .await
            .expect("removing the network");
        assert_eq!(leftovers(&engine, &run).await, Vec::<String>::new());
    });
}

/// A stand-in for the Kubernetes API: TLS with its own CA, answering TokenReviews for one
/// service account and recording who asked.
struct FakeApi {
    ca_pem: String,
    port: u16,
    /// (Authorization header, reviewed token) per TokenReview.
    reviews: Arc<Mutex<Vec<(String, String)>>>,
}

async fn fake_api(ip: std::net::IpAddr) -> FakeApi {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

    let ca_key = KeyPair::generate().expect("a CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "authlab-test-ca");
    let ca_cert = ca.self_signed(&ca_key).expect("the CA");
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate().expect("a key");
    let leaf = CertificateParams::new(vec![ip.to_string()])
        .expect("leaf params")
        .signed_by(&leaf_key, &issuer)
        .expect("the leaf");
    let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from(leaf.der().to_vec())],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
    )
    .expect("a TLS config");
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];

    let reviews: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let seen = reviews.clone();
    let app = axum::Router::new().route(
        "/apis/authentication.k8s.io/v1/tokenreviews",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, axum::Json(review): axum::Json<Value>| {
                let seen = seen.clone();
                async move {
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    let token = review["spec"]["token"].as_str().unwrap_or_default();
                    seen.lock()
                        .expect("review log")
                        .push((auth, token.to_string()));
                    axum::Json(json!({
                        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                        "status": {"authenticated": true, "user": {
                            "username": "system:serviceaccount:apps:app", "uid": "uid-1"}}
                    }))
                }
            },
        ),
    );
    let listener = std::net::TcpListener::bind((ip, 0)).expect("binding the fake API");
    listener.set_nonblocking(true).expect("non-blocking");
    let port = listener.local_addr().expect("its address").port();
    let config = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(tls));
    let server = axum_server::from_tcp_rustls(listener, config).expect("a TLS server");
    tokio::spawn(server.serve(app.into_make_service()));
    FakeApi {
        ca_pem: ca_cert.pem(),
        port,
        reviews,
    }
}

/// A service-account JWT (ES256; the server does not verify it without PEM keys, the
/// TokenReview does).
fn client_jwt() -> String {
    use aws_lc_rs::{
        rand::SystemRandom,
        signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair},
    };
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let header = b64(br#"{"alg":"ES256","typ":"JWT"}"#);
    let claims = b64(json!({
        "iss": "kubernetes/serviceaccount",
        "sub": "system:serviceaccount:apps:app",
        "kubernetes.io/serviceaccount/namespace": "apps",
        "kubernetes.io/serviceaccount/service-account.name": "app",
        "kubernetes.io/serviceaccount/service-account.uid": "uid-1",
    })
    .to_string()
    .as_bytes());
    let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("a key");
    let msg = format!("{header}.{claims}");
    let sig = key
        .sign(&SystemRandom::new(), msg.as_bytes())
        .expect("signing");
    format!("{msg}.{}", b64(sig.as_ref()))
}

fn pod_identity_is_what_kubernetes_auth_uses() {
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    rt.block_on(async {
        let (engine, bin) = prerequisites().await;
        let image = server_image(&engine, &bin).await;
        let run = run_id();
        let net = format!("authlab-{run}");
        engine
            .create_network(&net, &run)
            .await
            .expect("creating the network");
        let gateway = engine.network_gateway(&net).await.expect("the gateway");
        let api = fake_api(gateway.parse().expect("an IP")).await;
        let pod_token = format!("pod-token-{run}");
        let dir = tempfile::tempdir().expect("a scratch dir");
        let mut opts = options(image, &run, "pod", &net, dir.path());
        opts.pod = Some(PodIdentity {
            token: pod_token.clone(),
            ca_pem: api.ca_pem.clone(),
            namespace: "vault".into(),
            kubernetes_service_host: gateway.clone(),
            kubernetes_service_port: api.port,
        });
        let server = ContainerServer::start(&engine, opts)
            .await
            .expect("the pod server starts");

        // What kubelet would have put there.
        let sa = format!("/{SA_DIR}");
        let read = async |f: &str| server.read_file(&format!("{sa}/{f}")).await;
        assert_eq!(read("token").await.expect("token"), pod_token.as_bytes());
        assert_eq!(read("ca.crt").await.expect("ca.crt"), api.ca_pem.as_bytes());
        assert_eq!(read("namespace").await.expect("namespace"), b"vault");
        let env = engine
            .inspect(server.container_name())
            .await
            .expect("inspect")
            .config
            .and_then(|c| c.env)
            .unwrap_or_default();
        for var in [
            format!("KUBERNETES_SERVICE_HOST={gateway}"),
            format!("KUBERNETES_SERVICE_PORT={}", api.port),
            format!("KUBERNETES_SERVICE_PORT_HTTPS={}", api.port),
        ] {
            assert!(env.contains(&var), "{var} in {env:?}");
        }

        // Local-token mode: only the host is configured; CA and reviewer JWT come from the files.
        let http = reqwest::Client::new();
        let post = reqwest::Method::POST;
        let (s, b) = call(
            &http,
            &server,
            post.clone(),
            "sys/auth/kubernetes",
            Some(json!({"type": "kubernetes"})),
        )
        .await;
        assert_eq!(s, 204, "{b}");
        let host = format!("https://{gateway}:{}", api.port);
        let (s, b) = call(
            &http,
            &server,
            post.clone(),
            "auth/kubernetes/config",
            Some(json!({"kubernetes_host": host})),
        )
        .await;
        assert_eq!(s, 204, "{b}");
        let (s, b) = call(
            &http,
            &server,
            post.clone(),
            "auth/kubernetes/role/app",
            Some(json!({"bound_service_account_names": ["app"],
                        "bound_service_account_namespaces": ["apps"],
                        "token_policies": ["default"]})),
        )
        .await;
        assert_eq!(s, 204, "{b}");
        let jwt = client_jwt();
        let (s, b) = call(
            &http,
            &server,
            post.clone(),
            "auth/kubernetes/login",
            Some(json!({"role": "app", "jwt": jwt})),
        )
        .await;
        let reviews = api.reviews.lock().expect("review log").clone();
        assert_eq!(s, 200, "{b}; reviews: {reviews:?}");
        assert!(b["auth"]["client_token"].is_string(), "{b}");
        // The TLS handshake trusted the mounted CA, and the mounted token was the bearer.
        assert_eq!(reviews, vec![(format!("Bearer {pod_token}"), jwt)]);

        // The token can be rotated in place.
        let rotated = format!("rotated-{run}");
        server
            .write_pod_token(&rotated)
            .expect("rotating the token");
        assert_eq!(read("token").await.expect("token"), rotated.as_bytes());

        server.stop_and_remove().await.expect("removing the server");
        engine
            .remove_network(&net)
            .await
            .expect("removing the network");
    });
}

fn nothing_is_left_after_removal_or_drop() {
    // A single-threaded runtime: dropping a server inside it must neither hang nor panic.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let (engine, bin) = prerequisites().await;
        let image = server_image(&engine, &bin).await;
        let run = run_id();
        let net = format!("authlab-{run}");
        engine
            .create_network(&net, &run)
            .await
            .expect("creating the network");
        let dir = tempfile::tempdir().expect("a scratch dir");
        let a =
            ContainerServer::start(&engine, options(image.clone(), &run, "a", &net, dir.path()))
                .await
                .expect("server a");
        let b =
            ContainerServer::start(&engine, options(image.clone(), &run, "b", &net, dir.path()))
                .await
                .expect("server b");
        assert_eq!(leftovers(&engine, &run).await.len(), 3);
        a.stop_and_remove().await.expect("removing a");
        let t = Instant::now();
        drop(b);
        eprintln!("drop removed its container in {:?}", t.elapsed());
        assert_eq!(
            leftovers(&engine, &run).await,
            vec![format!("network {net}")]
        );

        // A server that cannot start: the error carries its last log lines, nothing remains.
        let mut bad = options(image, &run, "bad", &net, dir.path());
        bad.config_hcl = "storage \"no-such-backend\" {}\n".into();
        bad.ready_timeout = Duration::from_secs(10);
        let err = ContainerServer::start(&engine, bad)
            .await
            .expect_err("a bad config fails");
        let text = format!("{err:#}");
        assert!(text.contains("last log lines"), "{text}");
        assert!(text.contains("no-such-backend"), "{text}");

        engine
            .remove_network(&net)
            .await
            .expect("removing the network");
        assert_eq!(leftovers(&engine, &run).await, Vec::<String>::new());
        // Removal is idempotent: a network already gone counts as removed.
        engine
            .remove_network(&net)
            .await
            .expect("removing a network already gone");
    });
}

/// Emulated pods share one network namespace, as a pod's containers share its sandbox's: two
/// servers join the holder's, each on a port of its own published by the holder, both serve;
/// a port is free again once its server is gone, and nothing is left after the holder.
fn pods_share_one_network_namespace() {
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    rt.block_on(async {
        let (engine, bin) = prerequisites().await;
        let spec: ServerSpec = SPEC.parse().expect("a valid spec");
        let image = resolve_image(&engine, &spec, &bin, common::settings().pull, &progress)
            .await
            .expect("the server image");
        let run = run_id();
        let net = format!("authlab-{run}");
        let holder = format!("authlab-{run}-pods");
        let dir = tempfile::tempdir().expect("a scratch dir");
        engine
            .create_network(&net, &run)
            .await
            .expect("the network");
        let served = async {
            let pods =
                PodNetwork::create(&engine, &holder, &run, &net, &image, Flavour::OpenBao).await?;
            let mut servers = Vec::new();
            for name in ["pod-a", "pod-b"] {
                let slot = pods.next_slot().await?;
                let port = slot.port;
                let mut opts = options(
                    (image.reference.clone(), image.official()),
                    &run,
                    name,
                    &net,
                    dir.path(),
                );
                opts.config_hcl = render(&ServerConfig {
                    listen: std::net::SocketAddr::from(([0, 0, 0, 0], port)),
                    audit_file: AUDIT_FILE.into(),
                    log_level: "debug".into(),
                    flavour: Flavour::OpenBao,
                });
                opts.shared = Some(Arc::new(SharedNetns {
                    holder: holder.clone(),
                    slot,
                }));
                servers.push(ContainerServer::start(&engine, opts).await?);
            }
            let http = reqwest::Client::new();
            let mut addrs = Vec::new();
            for s in &servers {
                let (status, _) = call(&http, s, reqwest::Method::GET, "sys/health", None).await;
                addrs.push((s.addr(), status));
            }
            // Every port taken: the next waits; one comes back with its server.
            let held: Vec<_> = {
                let mut v = Vec::new();
                for _ in 2..POD_PORTS {
                    v.push(pods.next_slot().await?);
                }
                v
            };
            let waiting = tokio::time::timeout(Duration::from_millis(300), pods.next_slot()).await;
            servers.remove(0).stop_and_remove().await?;
            let again = tokio::time::timeout(Duration::from_secs(5), pods.next_slot()).await;
            drop(held);
            for s in servers {
                s.stop_and_remove().await?;
            }
            engine.remove_container(&holder).await?;
            anyhow::Ok((addrs, waiting.is_err(), again.is_ok()))
        }
        .await;
        let _ = engine.remove_container(&holder).await;
        let _ = engine.remove_network(&net).await;
        let (addrs, waited, freed) = served.expect("two pods in one namespace");
        assert_eq!(addrs.len(), 2);
        assert_ne!(addrs[0].0, addrs[1].0, "each pod its own published port");
        assert!(addrs.iter().all(|(_, s)| *s == 200), "{addrs:?}");
        assert!(waited, "a slot was handed out with every port taken");
        assert!(freed, "a removed pod's port did not come back");
        assert_eq!(leftovers(&engine, &run).await, Vec::<String>::new());
    });
}

fn main() -> std::process::ExitCode {
    common::run(vec![
        common::test(
            "image_is_built_from_scratch_once_and_then_reused",
            Needs::Docker,
            image_is_built_from_scratch_once_and_then_reused,
        ),
        common::test(
            "server_container_on_a_labelled_network",
            Needs::Docker,
            server_container_on_a_labelled_network,
        ),
        common::test(
            "pod_identity_is_what_kubernetes_auth_uses",
            Needs::Docker,
            pod_identity_is_what_kubernetes_auth_uses,
        ),
        common::test(
            "nothing_is_left_after_removal_or_drop",
            Needs::Docker,
            nothing_is_left_after_removal_or_drop,
        ),
        common::test(
            "pods_share_one_network_namespace",
            Needs::Docker,
            pods_share_one_network_namespace,
        ),
    ])
}
