//! authlab: end-to-end labs for HashiCorp Vault and OpenBao Kubernetes and JWT/OIDC auth.
//!
//! Data flows one way: case files ([`case`]) expand into trials, trials run in a shared
//! [`lab`] (a cluster from [`sim`] or elsewhere, servers from [`server`]), evidence is collected
//! ([`evidence`]) and matched, and the outcome is reported ([`report`]).

pub mod case;
pub mod cli;
pub mod cluster;
pub mod container;
pub mod diagnose;
pub mod eso;
pub mod evidence;
pub mod export;
pub mod jwt;
pub mod lab;
pub mod report;
pub mod runner;
pub mod server;
pub mod settings;
pub mod sim;
pub mod vault;
