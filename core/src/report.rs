//! `report.json`: the checkers' result (docs/formats.md "report.json").
//! The keys DESIGN.md promises (`verdict`, `mode`, `acked`, `lost`,
//! `divergent`, `loss_windows`, `nodes`) are always present; the rest detail
//! each anomaly class with counts and first samples.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Per-stream write consistency (NATS ADR "JetStream Consistency Models").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Ack after the write is committed (and, with sync "always", on disk).
    #[default]
    Strong,
    /// Ack before the write is flushed (R1 only).
    Async,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "strong" => Ok(Mode::Strong),
            "async" => Ok(Mode::Async),
            other => Err(format!("unknown mode {other:?}: use \"strong\" or \"async\"")),
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Strong => "strong",
            Mode::Async => "async",
        })
    }
}

/// The checker's answer. `Unknown` never counts as a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
    Unknown,
}

impl Verdict {
    /// The process exit code for this verdict (see [`crate::exit`]).
    pub fn exit_code(self) -> i32 {
        match self {
            Verdict::Pass => crate::exit::PASS,
            Verdict::Fail => crate::exit::FAIL,
            Verdict::Unknown => crate::exit::UNKNOWN,
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Unknown => "unknown",
        })
    }
}

/// A reference to a fault event on the timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRef {
    pub t_ns: u64,
    pub kind: crate::event::EventKind,
    pub nodes: Vec<String>,
}

/// A maximal run of lost acknowledged writes, by ack time, with no kept
/// acknowledged write between them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LossWindow {
    /// Ack time of the first lost write.
    pub start_ns: u64,
    /// Ack time of the last lost write.
    pub end_ns: u64,
    pub count: u64,
    /// The fault event that precedes or overlaps the window, if any.
    pub event: Option<EventRef>,
}

/// Per-node findings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeReport {
    /// Acknowledged ids absent on this node.
    pub lost: u64,
    /// Ids held by this node that were never attempted.
    pub unexpected: u64,
    /// True when the node could not be read back.
    pub unreadable: bool,
    /// Why the node could not be read (None when readable).
    pub unreadable_reason: Option<String>,
    /// Messages the node holds.
    pub held: u64,
    /// Ids this node holds at two or more sequences.
    #[serde(default)]
    pub duplicated: u64,
    /// Acknowledged ids whose acknowledged sequence holds another id on this node.
    #[serde(default)]
    pub seq_mismatch: u64,
    /// How the node was read back (None when unreadable, and in reports
    /// written before this key existed).
    #[serde(default)]
    pub read: Option<ReadMode>,
    /// For a node read offline: why, how, and what could not be read (the
    /// first line of `recovered/<node>.offline`).
    #[serde(default)]
    pub read_note: Option<String>,
}

/// How a node's read-back was made (docs/formats.md "recovered/<node>.offline").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadMode {
    /// The target's usual read-back: from the running node, or from its
    /// files after a clean stop, as the target does it.
    Normal,
    /// From the node's files without the node running, after its usual
    /// read-back failed (e.g. it refused to start on a corrupt log).
    Offline,
}

/// Acknowledged losses classed per writer as Jepsen's queue checker does:
/// before the writer's first kept write (prefix), between kept writes
/// (middle), after its last kept write (postfix).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LostClasses {
    pub prefix: u64,
    pub middle: u64,
    pub postfix: u64,
}

/// Where two replicas first disagree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Divergence {
    pub a: String,
    pub b: String,
    /// First sequence both hold with different ids (None when they only
    /// differ by an acknowledged id one lacks).
    pub first_seq: Option<u64>,
    pub a_id: Option<String>,
    pub b_id: Option<String>,
    /// Number of sequences both hold with different ids.
    pub conflicting: u64,
    /// Acknowledged ids held by `a` and not by `b`, and the reverse.
    pub only_a: u64,
    pub only_b: u64,
    /// A few ids involved, for a human to look up.
    pub sample_ids: Vec<String>,
}

/// Ack latency summary, filled by `jetsam run` (absent for `jetsam check` of a
/// foreign history).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Latency {
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

/// A count with the first few examples.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sampled {
    pub count: u64,
    pub sample: Vec<String>,
}

/// How many examples a [`Sampled`] keeps.
pub const SAMPLE_MAX: usize = 10;

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub format_version: u32,
    pub verdict: Verdict,
    /// Why the verdict is not `pass` (or what it rests on), one line each.
    pub reasons: Vec<String>,
    pub mode: Mode,
    /// The async loss-window bound in force, in nanoseconds.
    pub window_bound_ns: Option<u64>,
    pub attempted: u64,
    pub acked: u64,
    pub failed: u64,
    pub indeterminate: u64,
    /// Acknowledged but held by no readable node.
    pub lost: u64,
    /// Acknowledged but absent from `recovered/cluster.jsonl` (when present).
    pub lost_cluster_view: Option<u64>,
    pub lost_classes: LostClasses,
    pub lost_sample: Vec<String>,
    pub unexpected: Sampled,
    pub resurrected: Sampled,
    pub duplicated: Sampled,
    pub seq_mismatch: Sampled,
    /// How many of the seq-mismatched acknowledged writes are themselves lost
    /// (held by no readable node): the system reused their sequences. In
    /// `async` mode these count as losses inside their loss window, not as
    /// seq-mismatches of their own.
    #[serde(default)]
    pub seq_mismatch_lost: u64,
    /// Indeterminate writes found on some node.
    pub recovered_indeterminate: u64,
    pub divergent: bool,
    pub divergence: Vec<Divergence>,
    pub loss_windows: Vec<LossWindow>,
    /// The nodes judged as the stream's replicas, from
    /// `recovered/replicas.json`, in name order; `None` when the run folder
    /// has no known placement (then every node of the run is judged).
    #[serde(default)]
    pub replicas: Option<Vec<String>>,
    /// Per judged node: every node of the run, or only the replicas.
    pub nodes: BTreeMap<String, NodeReport>,
    pub latency: Option<Latency>,
    /// The durability audit (`[check] audit = true`), when the run has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<Audit>,
}

/// What the durability audit found: acknowledged writes that a majority of
/// replicas had not synced when they were acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Audit {
    /// Acknowledged writes checked (those with an ack by a node that has an audit record).
    pub acks_checked: u64,
    /// Acknowledged before a majority of the stream's replicas had synced them.
    pub acks_at_risk: u64,
    /// The longest time from such an ack until a majority had synced it
    /// (until the end of the record when they never did), in ns.
    pub exposure_ns_max: u64,
    /// At-risk writes a majority never synced within the record.
    pub never_synced: u64,
    /// Per node: acks it gave while it had not synced the write itself.
    pub nodes: BTreeMap<String, AuditNode>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AuditNode {
    pub acks: u64,
    pub acks_at_risk: u64,
    pub exposure_ns_max: u64,
}
