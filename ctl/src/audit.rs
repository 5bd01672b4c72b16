//! The approver's audit log: one JSON object a line, appended, each line written
//! with one `write` on a file opened `O_APPEND` and synced before the decision is
//! reported, so a crash loses no record of a decision the cluster saw.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde::Serialize;

use crate::policy::Verdict;

/// One decision about one request.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// When it was made, RFC 3339 UTC.
    pub time: String,
    pub csr: String,
    pub uid: String,
    pub signer: String,
    pub requester: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    pub decision: Verdict,
    pub reason: String,
    pub message: String,
}

/// An open audit log.
pub struct AuditLog {
    file: File,
}

impl AuditLog {
    /// Open (create, 0600) for appending.
    pub fn open(path: &Path) -> std::io::Result<AuditLog> {
        let file = OpenOptions::new().create(true).append(true).mode(0o600).open(path)?;
        Ok(AuditLog { file })
    }

    /// Append one record as one line and sync it.
    pub fn append(&mut self, record: &Record) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.file.sync_data()
    }
}
