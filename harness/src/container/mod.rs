//! The container runtime: servers in Docker containers (images built locally `FROM scratch`
//! around the cached static binary, so no registry is needed), on a per-lab network, and pod
//! emulation — a container holding a mounted service-account token and CA exactly as kubelet
//! gives them to a pod.
//!
//! Everything created carries the labels below, so `authlab clean` finds it after a crash.

mod docker;
mod image;
mod podnet;
mod server;

pub use docker::{Engine, ManagedObject};
pub use image::{
    ImageOutcome, ServerImage, build_local_image, ensure_local_image, ensure_server_image,
    image_tag, official_tag, resolve_image, write_build_context,
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
