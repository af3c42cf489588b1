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

/// One fault as the scenario planned it: every injection event (kind
/// [`EventKind::is_fault`]) that carries the same planned fault (the `fault`
/// index and `planned_ns` details `jetsam run` writes). A coordinated power
/// loss of three nodes is three `power-loss` lines and one fault; a bit flip
/// is the node's `kill` plus one `bitflip` line per bit, and one fault. An
/// injection without those details (a foreign events file) is a fault alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// The last injection's kind (a corruption's kill comes before its flips).
    pub kind: EventKind,
    /// Time of the first injection.
    pub t_ns: u64,
    /// Every node the fault hit, in name order, without repeats.
    pub nodes: Vec<String>,
    /// Indexes of its injection events in the events slice, in file order.
    pub events: Vec<usize>,
}

/// The planned fault an injection event belongs to, when it says.
fn planned_key(e: &Event) -> Option<(u64, u64)> {
    Some((e.details.get("fault")?.as_u64()?, e.details.get("planned_ns")?.as_u64()?))
}

/// The faults of a timeline (events in time order), in order of their first
/// injection.
pub fn faults(events: &[Event]) -> Vec<Fault> {
    let mut out: Vec<Fault> = Vec::new();
    let mut by_key: BTreeMap<(u64, u64), usize> = BTreeMap::new();
    for (i, e) in events.iter().enumerate() {
        if !e.kind.is_fault() {
            continue;
        }
        let slot = match planned_key(e).and_then(|k| by_key.get(&k).copied()) {
            Some(slot) => slot,
            None => {
                if let Some(k) = planned_key(e) {
                    by_key.insert(k, out.len());
                }
                out.push(Fault { kind: e.kind, t_ns: e.t_ns, nodes: Vec::new(), events: Vec::new() });
                out.len() - 1
            }
        };
        let f = &mut out[slot];
        f.kind = e.kind;
        f.events.push(i);
        for n in &e.nodes {
            if let Err(at) = f.nodes.binary_search(n) {
                f.nodes.insert(at, n.clone());
            }
        }
    }
    out
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

    fn planned(t_ns: u64, kind: EventKind, node: &str, fault: u64) -> Event {
        Event::new(t_ns, kind, vec![node.into()]).with("fault", fault).with("planned_ns", 1_000 * fault)
    }

    #[test]
    fn one_planned_fault_is_one_fault_whatever_its_lines() {
        let events = vec![
            planned(10, EventKind::PowerLoss, "n2", 0),
            planned(11, EventKind::PowerLoss, "n1", 0),
            planned(12, EventKind::PowerLoss, "n3", 0),
            planned(13, EventKind::Warning, "n3", 0),
            Event::new(20, EventKind::Restart, vec!["n1".into()]),
            planned(30, EventKind::Kill, "n2", 1),
            planned(31, EventKind::Bitflip, "n2", 1),
            planned(32, EventKind::Bitflip, "n2", 1),
            Event::new(40, EventKind::Kill, vec!["n3".into()]),
            Event::new(41, EventKind::Kill, vec!["n1".into()]),
        ];
        let f = faults(&events);
        assert_eq!(f.len(), 4, "{f:?}");
        assert_eq!(
            (f[0].kind, f[0].t_ns, f[0].nodes.clone()),
            (EventKind::PowerLoss, 10, vec!["n1".into(), "n2".into(), "n3".into()])
        );
        assert_eq!(f[0].events, vec![0, 1, 2]);
        assert_eq!(
            (f[1].kind, f[1].t_ns, f[1].nodes.clone(), f[1].events.clone()),
            (EventKind::Bitflip, 30, vec!["n2".into()], vec![5, 6, 7])
        );
        // Without planned details each injection is its own fault.
        assert_eq!((f[2].t_ns, f[3].t_ns), (40, 41));
    }

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
