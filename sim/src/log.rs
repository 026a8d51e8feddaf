//! The request log: one record per answered request, in order.

use std::{sync::Mutex, time::SystemTime};

/// One request the sim answered.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestRecord {
    /// Position in the log, from 1.
    pub seq: u64,
    /// When the request arrived.
    pub time: SystemTime,
    /// HTTP method.
    pub method: String,
    /// Path including the query string.
    pub path: String,
    /// Authenticated username, `system:anonymous`, or `None` when authentication failed.
    pub user: Option<String>,
    /// HTTP status sent.
    pub status: u16,
    /// `Status.message` of an error, the TokenReview `status.error`, or for 401 the
    /// authentication error the apiserver would only log.
    pub error: Option<String>,
    /// For TokenReview requests: what was reviewed and the outcome.
    pub review: Option<ReviewRecord>,
}

/// What a TokenReview request asked about and what it concluded.
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewRecord {
    /// `sub` of the reviewed token, read without verification.
    pub token_subject: Option<String>,
    /// `spec.audiences` as requested.
    pub audiences: Vec<String>,
    /// `status.authenticated`.
    pub authenticated: bool,
}

/// Append-only request log.
#[derive(Default)]
pub(crate) struct RequestLog {
    records: Mutex<Vec<RequestRecord>>,
}

impl RequestLog {
    /// Appends a record, assigning its sequence number.
    pub fn push(&self, mut record: RequestRecord) {
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        record.seq = records.len() as u64 + 1;
        records.push(record);
    }

    /// A copy of every record so far.
    pub fn snapshot(&self) -> Vec<RequestRecord> {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
