//! authlab: end-to-end labs for HashiCorp Vault and OpenBao Kubernetes and JWT/OIDC auth.
//!
//! Data flows one way: case files ([`case`]) expand into trials; each [`trial`] runs in the
//! run's shared [`lab`] (a cluster from [`sim`] or [`cluster`], servers from [`server`] and
//! [`container`]) as typed stages, collects [`evidence`], and [`verdict`] judges it; the
//! [`runner`] schedules trials and [`report`] shows the outcomes.

/// This build of authlab: its version and the commit it was built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("AUTHLAB_BUILD_COMMIT"),
    ")"
);

pub mod bless;
pub mod case;
pub mod cleanup;
pub mod cli;
pub mod cluster;
pub mod container;
pub mod diagnose;
pub mod eso;
pub mod evidence;
pub mod export;
pub mod input;
pub mod jwt;
pub mod lab;
pub mod logs;
pub mod matching;
pub mod placeholders;
pub mod progress;
pub mod report;
pub mod runner;
pub mod scope;
pub mod select;
pub mod server;
pub mod session;
pub mod settings;
pub mod shipped;
pub mod signature;
pub use authlab_sim as sim;
pub mod trial;
pub mod vault;
pub mod verdict;
pub mod wait;
