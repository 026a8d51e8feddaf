//! Clusters: the client side of every cluster a trial runs on — Kind (through the `kind` CLI),
//! existing clusters from a kubeconfig, a real API server authlab starts, the objects applied to them and the tokens obtained
//! from them. (The sim cluster itself is the `authlab-sim` crate, re-exported as
//! [`crate::sim`].)

pub mod apiserver;
mod error;
pub use error::ClusterError;
pub mod external;
pub mod facts;
pub mod kind;
pub mod kubeconfig;
pub mod objects;
pub mod owner;
pub mod share;
pub mod tokens;
pub mod turn;
