//! `events.jsonl`: the fault timeline, one event per line in time order
//! (docs/formats.md "events.jsonl"). Faults come in verb pairs (inject and
//! heal); kind-specific details (a bit flip's file, offset and bit; a power
//! loss's discarded bytes) sit beside the common fields.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What happened. Injections and their heals are separate events so a fault's
/// time span can be read off the timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// SIGKILL of the node's process group (page cache survives).
    Kill,
    /// A stopped node started again.
    Restart,
    /// SIGSTOP.
    Pause,
    /// SIGCONT.
    Resume,
    /// SIGKILL plus discarding unsynced writes.
    PowerLoss,
    /// Links between nodes blackholed.
    Partition,
    /// Links restored.
    Heal,
    /// A bit flipped in a data file of a stopped node.
    Bitflip,
    /// A file's tail cut off on a stopped node.
    Truncate,
    /// The node's disk starts answering with errors (EIO on sync, ENOSPC on write).
    IoError,
    /// The node's disk answers normally again.
    IoOk,
    /// After the final heal, the target handed the roles of the nodes a
    /// fault kept down (`restart = false`, the event's `nodes`) to the
    /// running ones (e.g. promoted a standby); details `leader`, `note`.
    Failover,
    /// Something the harness could not model or did not expect (e.g. a shared
    /// writable mmap of a data file under power-loss tracing).
    Warning,
}

impl EventKind {
    /// Whether this event starts a fault (as opposed to healing one or
    /// reporting). Loss windows are tied to the fault that precedes them.
    pub fn is_fault(self) -> bool {
        matches!(
            self,
            EventKind::Kill
                | EventKind::Pause
                | EventKind::PowerLoss
                | EventKind::Partition
                | EventKind::Bitflip
                | EventKind::Truncate
                | EventKind::IoError
        )
    }
}

/// One line of `events.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Nanoseconds since the run started (same clock as the history).
    pub t_ns: u64,
    pub kind: EventKind,
    /// Names of the nodes the event concerns (may be empty for a global heal).
    pub nodes: Vec<String>,
    /// Kind-specific details (e.g. `file`, `offset`, `bit`, `before`, `after`
    /// for a bit flip), kept in key order.
    #[serde(flatten)]
    pub details: BTreeMap<String, serde_json::Value>,
}

impl Event {
    pub fn new(t_ns: u64, kind: EventKind, nodes: Vec<String>) -> Self {
        Event { t_ns, kind, nodes, details: BTreeMap::new() }
    }

    pub fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.details.insert(key.to_string(), value.into());
        self
    }
}

/// Validates event lines in file order: time never goes backwards.
#[derive(Debug, Default)]
pub struct EventValidator {
    last_t_ns: u64,
}

impl EventValidator {
    pub fn check(&mut self, e: &Event) -> Result<(), String> {
        if e.t_ns < self.last_t_ns {
            return Err(format!("out of order: t_ns {} is before the previous line's {}", e.t_ns, self.last_t_ns));
        }
        self.last_t_ns = e.t_ns;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_details() {
        let e = Event::new(5, EventKind::Bitflip, vec!["n2".into()])
            .with("file", "log/0.seg")
            .with("offset", 17)
            .with("bit", 3);
        let line = serde_json::to_string(&e).unwrap();
        assert_eq!(line, r#"{"t_ns":5,"kind":"bitflip","nodes":["n2"],"bit":3,"file":"log/0.seg","offset":17}"#);
        assert_eq!(serde_json::from_str::<Event>(&line).unwrap(), e);
        assert!(serde_json::from_str::<Event>(r#"{"t_ns":5,"kind":"meteor","nodes":[]}"#).is_err());
    }
}
