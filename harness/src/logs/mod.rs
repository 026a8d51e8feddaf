//! The server's logs as authlab reads them: audit entries and server-log lines in every format
//! a server writes, sliced per mount path and accessor so parallel trials never see each
//! other's entries.

mod audit;
mod serverlog;

pub use audit::{AuditEntry, audit_for_mount, parse_audit_log};
pub use serverlog::{
    LOG_FORMATS, LogLine, log_for_accessor, parse_any_server_log, parse_server_log,
};

/// The text of the file at `path` from byte `offset` on (empty when it cannot be read): what a
/// log gained since `offset`.
pub fn read_from(path: &std::path::Path, offset: u64) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let mut buf = Vec::new();
    if let Ok(mut f) = std::fs::File::open(path)
        && f.seek(SeekFrom::Start(offset)).is_ok()
    {
        let _ = f.read_to_end(&mut buf);
    }
    String::from_utf8_lossy(&buf).into_owned()
}
