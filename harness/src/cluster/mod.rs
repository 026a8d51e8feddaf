//! Clusters other than the built-in sim: Kind (through the `kind` CLI) and existing clusters
//! from a kubeconfig.

pub mod kind;
pub mod kubeconfig;
