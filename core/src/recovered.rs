//! `recovered/<node>.jsonl`: what one node holds after recovery, one message
//! per line in stream order (docs/formats.md "recovered"). A node that could
//! not be read has no such file; `recovered/<node>.unreadable` may then hold
//! one line of text saying why. `recovered/<node>.offline` beside a node's
//! `.jsonl` says its files were read offline. `recovered/cluster.jsonl`, when present, is
//! the stream as a client reads it through the system's normal read path.

use serde::{Deserialize, Serialize};

/// One line of a recovered file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoveredMsg {
    pub seq: u64,
    pub id: String,
}

/// One line of a recovered file parsed without copying the id (it borrows
/// from the line unless it contains escapes).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoveredMsgRef<'a> {
    pub seq: u64,
    #[serde(borrow)]
    pub id: std::borrow::Cow<'a, str>,
}

/// File name of the cluster view inside `recovered/`.
pub const CLUSTER_FILE: &str = "cluster.jsonl";
/// Suffix of the file that says why a node could not be read.
pub const UNREADABLE_SUFFIX: &str = ".unreadable";
/// Suffix of the marker beside `<node>.jsonl` saying the node's files were
/// read without the node running (the target's offline reader), why, and
/// what could not be read (docs/formats.md).
pub const OFFLINE_SUFFIX: &str = ".offline";

/// Validates recovered lines in file order: sequences strictly increase.
/// (The same id at two sequences is a finding, "duplicated", not a format
/// error; so is an id that was never attempted.)
#[derive(Debug, Default)]
pub struct RecoveredValidator {
    last_seq: Option<u64>,
}

impl RecoveredValidator {
    pub fn check(&mut self, m: &RecoveredMsg) -> Result<(), String> {
        self.check_parts(m.seq, &m.id)
    }

    /// [`RecoveredValidator::check`] for a line parsed without copying
    /// ([`RecoveredMsgRef`]). Same rules.
    pub fn check_parts(&mut self, seq: u64, id: &str) -> Result<(), String> {
        if let Some(last) = self.last_seq
            && seq <= last
        {
            return Err(format!("out of order: seq {} is not above the previous line's {} (stream order)", seq, last));
        }
        self.last_seq = Some(seq);
        if id.is_empty() {
            return Err("empty id".into());
        }
        Ok(())
    }
}
