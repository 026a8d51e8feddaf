//! Evidence readers: the file audit device's JSON lines and the server's hclog output, each
//! sliced per trial (by mount path and accessor) so parallel trials never see each other's
//! entries.

mod audit;
mod serverlog;

pub use audit::{AuditEntry, audit_for_mount, parse_audit_log};
pub use serverlog::{LogLine, log_for_accessor, parse_server_log};
