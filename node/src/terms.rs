//! The check that every log entry is stored with the term noraft derives
//! for it from the log's `Term` entries. A mismatch means the data dir is
//! damaged in a way the CRCs cannot see; the node refuses to start on it
//! (`Core::new`) and `--repair` wipes it. This module does no I/O.

use noraft::{ClusterConfig, Log, LogEntries, LogPosition};

use crate::command::LogState;
use crate::storage::Record;
use crate::wire;

/// The first entry whose stored term differs from the one its `Term`
/// entries give it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the log is inconsistent: entry {index} is stored with term {stored} but its term entries say {derived}; \
     the data dir is damaged (restart with --repair to wipe the log and catch up without voting)"
)]
pub struct TermMismatch {
    pub index: u64,
    pub stored: u64,
    pub derived: u64,
}

/// noraft's view of the local log.
pub(crate) fn raft_log(log: &LogState) -> Log {
    let entries = (1..=log.last_index()).map(|i| wire::entry_to_raft(log.entry(i).expect("index in range").1));
    Log::new(ClusterConfig::new(), LogEntries::from_iter(LogPosition::ZERO, entries))
}

/// Checks that every entry is stored with the term its `Term` entries give
/// it (noraft derives terms from them); a mismatch means a damaged data dir.
pub(crate) fn check_terms(log: &LogState, raft: &Log) -> Result<(), TermMismatch> {
    for (p, _) in raft.entries().iter_with_positions() {
        let stored = log.term_at(p.index.get()).expect("index in range");
        if stored != p.term.get() {
            return Err(TermMismatch { index: p.index.get(), stored, derived: p.term.get() });
        }
    }
    Ok(())
}

/// `Core::new`'s check of recovered records, for `--repair` to run before
/// it: an error means the log is damaged in a way the CRCs cannot see.
pub fn check_log_terms(records: &[Record]) -> Result<(), String> {
    first_term_mismatch(records).map_or(Ok(()), |m| Err(m.to_string()))
}

/// The first entry of `records` stored with the wrong term, if any.
pub fn first_term_mismatch(records: &[Record]) -> Option<TermMismatch> {
    let mut log = LogState::default();
    for r in records {
        log.push(r);
    }
    check_terms(&log, &raft_log(&log)).err()
}
