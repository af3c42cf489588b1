//! `recovered/<node>.jsonl`: what one node holds after recovery, one message
//! per line in stream order (docs/formats.md "recovered"). A node that could
//! not be read has no such file; `recovered/<node>.unreadable` may then hold
//! one line of text saying why. `recovered/cluster.jsonl`, when present, is
//! the stream as a client reads it through the system's normal read path.

use serde::{Deserialize, Serialize};

/// One line of a recovered file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoveredMsg {
    pub seq: u64,
    pub id: String,
}

/// File name of the cluster view inside `recovered/`.
pub const CLUSTER_FILE: &str = "cluster.jsonl";
/// Suffix of the file that says why a node could not be read.
pub const UNREADABLE_SUFFIX: &str = ".unreadable";

/// Validates recovered lines in file order: sequences strictly increase.
/// (The same id at two sequences is a finding, "duplicated", not a format
/// error; so is an id that was never attempted.)
#[derive(Debug, Default)]
pub struct RecoveredValidator {
    last_seq: Option<u64>,
}

impl RecoveredValidator {
    pub fn check(&mut self, m: &RecoveredMsg) -> Result<(), String> {
        if let Some(last) = self.last_seq
            && m.seq <= last
        {
            return Err(format!(
                "out of order: seq {} is not above the previous line's {} (stream order)",
                m.seq, last
            ));
        }
        self.last_seq = Some(m.seq);
        if m.id.is_empty() {
            return Err("empty id".into());
        }
        Ok(())
    }
}
