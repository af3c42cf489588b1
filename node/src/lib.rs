//! jetsam-node is the reference replicated stream node: a Raft-replicated
//! (noraft) append-only stream with CRC-checked segment storage, the NATS
//! ADR's strong/async write consistency, a NATS-like sync policy, and
//! deliberate bugs behind `--bug` so jetsam can prove it catches them
//! (docs/node.md). The binary is `src/main.rs`; this library holds its parts
//! so they can be unit-tested: [`storage`] (files), [`command`] (the log's
//! meaning), [`wire`] (peer messages), [`core`] (the event loop), [`net`]
//! (sockets), [`terms`] (the term check recovery runs on the log) and
//! [`offline`] (reading a stopped node's data dir). It holds one stream per
//! cluster.

pub mod command;
pub mod core;
pub mod net;
pub mod offline;
pub mod storage;
pub mod terms;
pub mod wire;

use std::fmt;
use std::time::Duration;

/// When appended records are fsynced (NATS's `sync_interval`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// fsync before a record counts as appended (group commit).
    Always,
    /// write(2) on append, fsync every interval.
    Interval(Duration),
}

impl std::str::FromStr for SyncPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "always" {
            return Ok(SyncPolicy::Always);
        }
        let d = jetsam_core::duration::parse_duration(s).map_err(|e| format!("{e}, or \"always\""))?;
        if d.is_zero() {
            return Err(format!("sync interval {s:?} must be positive (or \"always\")"));
        }
        Ok(SyncPolicy::Interval(d))
    }
}

impl fmt::Display for SyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncPolicy::Always => f.write_str("always"),
            SyncPolicy::Interval(d) => f.write_str(&jetsam_core::duration::format_duration(*d)),
        }
    }
}

pub use jetsam_core::proto::KNOWN_BUGS;

/// Which deliberate bugs are switched on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bugs {
    pub ack_before_write: bool,
    pub ack_before_fsync: bool,
    pub trust_corrupt_log: bool,
    /// A new log segment's directory entry is never fsynced.
    pub skip_dir_fsync: bool,
}

impl Bugs {
    /// Switches on the bug called `name`; an unknown name is an error listing the known ones.
    pub fn enable(&mut self, name: &str) -> Result<(), String> {
        match name {
            "ack-before-write" => self.ack_before_write = true,
            "ack-before-fsync" => self.ack_before_fsync = true,
            "trust-corrupt-log" => self.trust_corrupt_log = true,
            "skip-dir-fsync" => self.skip_dir_fsync = true,
            // A name added to KNOWN_BUGS without a switch here is a programming error.
            _ if KNOWN_BUGS.contains(&name) => unreachable!("bug {name:?} is known but not wired"),
            _ => return Err(format!("unknown bug {name:?}; known bugs: {}", KNOWN_BUGS.join(", "))),
        }
        Ok(())
    }
}
