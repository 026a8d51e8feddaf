//! The container runtime: servers in Docker containers (images built locally `FROM scratch`
//! around the cached static binary, so no registry is needed), on a per-lab network, and pod
//! emulation — a container holding a mounted service-account token and CA exactly as kubelet
//! gives them to a pod.
//!
//! Everything created carries the labels below, so `authlab clean` finds it after a crash.

mod docker;
mod error;
mod image;
mod podnet;
mod server;

pub use docker::{Engine, ManagedObject};
pub use error::DockerError;
pub use image::{
    ImageOutcome, ServerImage, build_local_image, ensure_local_image, image_tag, official_tag,
    resolve_image, write_build_context,
};
pub use podnet::{POD_PORTS, PodNetwork, PortSlot};
pub use server::{
    AUDIT_FILE, ContainerServer, ContainerServerOptions, PORT, PodIdentity, SA_DIR, SharedNetns,
};

/// Marks every object authlab creates.
pub const LABEL_MANAGED: &str = "authlab.managed";
/// The run that created it.
pub const LABEL_RUN: &str = "authlab.run-id";
/// The trial it belongs to.
pub const LABEL_TRIAL: &str = "authlab.trial";
/// Process id of the harness that created it (to reap leftovers of killed runs).
pub const LABEL_PID: &str = "authlab.pid";
/// SHA-256 of the binary an image was built from.
pub const LABEL_BINARY: &str = "authlab.binary-sha256";

/// The labels of a container or network of run `run_id`.
fn run_labels(run_id: &str) -> std::collections::HashMap<String, String> {
    std::collections::HashMap::from([
        (LABEL_MANAGED.to_string(), "true".to_string()),
        (LABEL_RUN.to_string(), run_id.to_string()),
        (LABEL_PID.to_string(), std::process::id().to_string()),
    ])
}

/// `ports` exposed and published on loopback, each at a port the engine chooses.
fn publish_on_loopback(ports: &[u16]) -> (Vec<String>, bollard::models::PortMap) {
    let bindings = ports
        .iter()
        .map(|p| {
            let loopback = bollard::models::PortBinding {
                host_ip: Some("127.0.0.1".into()),
                host_port: Some(String::new()),
            };
            (format!("{p}/tcp"), Some(vec![loopback]))
        })
        .collect();
    (ports.iter().map(|p| format!("{p}/tcp")).collect(), bindings)
}

/// Where the engine published container port `port` (read back after start).
fn published_port(ports: &bollard::models::PortMap, port: u16) -> Option<u16> {
    ports
        .get(&format!("{port}/tcp"))
        .cloned()
        .flatten()
        .and_then(|b| b.into_iter().find_map(|b| b.host_port))
        .and_then(|p| p.parse().ok())
}
