//! Cases: the model, the loader, and expansion into trials.

pub mod cluster_kind;
pub mod effective;
pub mod load;
pub mod manifest;
pub mod matrix;
pub mod model;
pub mod sa_ref;
pub mod schema;

pub use load::{CaseError, LoadedCase};
pub use model::Case;
