//! The checker's input in compact form: a [`History`] (every attempted write
//! by op index, its outcome, and the acknowledgements in ack-time order) and
//! one [`Recovered`] per read-back view (a node's file or the cluster view).
//!
//! Both are built line by line through builders that validate as they go
//! ([`HistoryBuilder`], [`RecoveredBuilder`]), so a history of a hundred
//! million writes never exists as a hundred million `String`s: an id becomes
//! a `u32` op index (the position of its invoke in the file), presence on a
//! node is one bit per op, and memory stays near 15 bytes per acknowledged
//! write with three views (docs/formats.md "Checker speed and memory"):
//!
//! - per op: its index in its client's list (4 bytes) and its outcome and
//!   client slot (2 bytes); a client's counters are kept as runs (a client
//!   counting 0, 1, 2, ... costs one run);
//! - the acknowledgements in ack order, delta-encoded (about 4 bytes each);
//! - one shared "consensus" stream: the op acknowledged at each sequence
//!   (4 bytes per sequence of the acknowledged range). A view then costs two
//!   bits per sequence (held; differs from the consensus) plus its own
//!   entries where it differs (a stranger, another op, an unacknowledged
//!   write) or lies outside the range.
//!
//! What this module does not do: read files (see [`crate::load`]) or decide
//! anything (see the check modules).

use jetsam_core::compact::{CompactOp, put_varint, unzigzag, zigzag};
use jetsam_core::history::{HistoryValidator, OpId, OpRef, OpType};
use std::collections::BTreeMap;
use std::sync::Arc;

mod view;
pub use view::{Bitset, Entry, Recovered, RecoveredBuilder};

/// What became of an attempted write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    /// Acknowledged (`ok`).
    Ok,
    /// Definitely not written (`fail`).
    Fail,
    /// Unknown (`info`).
    Info,
    /// Invoked and never completed (the controller stopped first): unknown,
    /// exactly like `info`.
    Open,
}

impl Outcome {
    /// `info` or never completed.
    pub fn is_indeterminate(self) -> bool {
        matches!(self, Outcome::Info | Outcome::Open)
    }

    const ALL: [Outcome; 4] = [Outcome::Ok, Outcome::Fail, Outcome::Info, Outcome::Open];

    pub(crate) fn from_bits(bits: u32) -> Outcome {
        Outcome::ALL[bits as usize]
    }

    pub(crate) fn bits(self) -> u32 {
        match self {
            Outcome::Ok => 0,
            Outcome::Fail => 1,
            Outcome::Info => 2,
            Outcome::Open => 3,
        }
    }
}

/// One acknowledgement: which op, the sequence the system acknowledged and
/// when the `ok` arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ack {
    pub op: u32,
    pub seq: u64,
    pub t_ns: u64,
}

/// A run of a client's counters: positions from `start` (up to the next
/// run's start) hold counters `first`, `first + 1`, ...
#[derive(Debug, Clone, Copy)]
struct CounterRun {
    first: u64,
    start: u32,
}

/// One client: its counters (as runs) in invoke order, which is counter
/// order (they strictly increase), and the op index of each.
#[derive(Debug, Clone)]
struct ClientOps {
    client: u32,
    runs: Vec<CounterRun>,
    ops: Vec<u32>,
}

impl ClientOps {
    fn push(&mut self, counter: u64, op: u32) {
        let pos = self.ops.len() as u64;
        match self.runs.last() {
            Some(r) if r.first.checked_add(pos - u64::from(r.start)) == Some(counter) => {}
            _ => self.runs.push(CounterRun { first: counter, start: pos as u32 }),
        }
        self.ops.push(op);
    }

    fn find(&self, counter: u64) -> Option<u32> {
        let i = self.runs.partition_point(|r| r.first <= counter).checked_sub(1)?;
        let r = self.runs[i];
        let end = self.runs.get(i + 1).map_or(self.ops.len(), |n| n.start as usize);
        let offset = counter - r.first;
        (offset < (end - r.start as usize) as u64).then(|| self.ops[r.start as usize + offset as usize])
    }

    fn counter_at(&self, pos: usize) -> u64 {
        let r = self.runs[self.runs.partition_point(|r| r.start as usize <= pos) - 1];
        r.first + (pos - r.start as usize) as u64
    }
}

/// Per op: its outcome (2 bits) and its client's slot (the rest), in 16 bits
/// while there are at most [`Meta::NARROW_SLOTS`] clients, else in 32.
#[derive(Debug, Clone)]
enum Meta {
    Narrow(Vec<u16>),
    Wide(Vec<u32>),
}

impl Default for Meta {
    fn default() -> Self {
        Meta::Narrow(Vec::new())
    }
}

impl Meta {
    const NARROW_SLOTS: u32 = 1 << 14;

    fn get(&self, op: u32) -> u32 {
        match self {
            Meta::Narrow(v) => u32::from(v[op as usize]),
            Meta::Wide(v) => v[op as usize],
        }
    }

    fn push(&mut self, slot: u32, outcome: Outcome) {
        let value = slot << 2 | outcome.bits();
        if let Meta::Narrow(v) = self
            && slot >= Self::NARROW_SLOTS
        {
            *self = Meta::Wide(v.iter().map(|x| u32::from(*x)).collect());
        }
        match self {
            Meta::Narrow(v) => v.push(value as u16),
            Meta::Wide(v) => v.push(value),
        }
    }

    fn set_outcome(&mut self, op: u32, outcome: Outcome) {
        match self {
            Meta::Narrow(v) => v[op as usize] = v[op as usize] & !3 | outcome.bits() as u16,
            Meta::Wide(v) => v[op as usize] = v[op as usize] & !3 | outcome.bits(),
        }
    }

    fn len(&self) -> usize {
        match self {
            Meta::Narrow(v) => v.len(),
            Meta::Wide(v) => v.len(),
        }
    }
}

/// The acknowledgements in ack order, each stored as three varints: the
/// zig-zag differences of op and seq from the previous ack (small: acks
/// come nearly in invoke and sequence order) and the time since it.
#[derive(Debug, Clone, Default)]
pub struct Acks {
    bytes: Vec<u8>,
    len: usize,
    last: Ack,
    /// Lowest and highest sequence acknowledged.
    seq_min: u64,
    seq_max: u64,
}

impl Acks {
    fn push(&mut self, a: Ack) {
        // The history validator rejects time going backwards.
        assert!(a.t_ns >= self.last.t_ns, "acks are in time order");
        put_varint(&mut self.bytes, zigzag(i64::from(a.op) - i64::from(self.last.op)));
        put_varint(&mut self.bytes, zigzag(a.seq.wrapping_sub(self.last.seq) as i64));
        put_varint(&mut self.bytes, a.t_ns - self.last.t_ns);
        if self.len == 0 {
            (self.seq_min, self.seq_max) = (a.seq, a.seq);
        }
        self.seq_min = self.seq_min.min(a.seq);
        self.seq_max = self.seq_max.max(a.seq);
        self.last = a;
        self.len += 1;
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn iter(&self) -> AckIter<'_> {
        AckIter { bytes: &self.bytes, pos: 0, prev: Ack::default(), left: self.len }
    }
}

/// The acknowledgements in ack-time order (see [`History::acks`]).
#[derive(Debug, Clone)]
pub struct AckIter<'a> {
    bytes: &'a [u8],
    pos: usize,
    prev: Ack,
    left: usize,
}

impl AckIter<'_> {
    #[inline]
    fn varint(&mut self) -> u64 {
        // Most differences fit one byte.
        let first = self.bytes[self.pos];
        if first < 0x80 {
            self.pos += 1;
            return u64::from(first);
        }
        let mut v = 0u64;
        let mut shift = 0;
        loop {
            let b = self.bytes[self.pos];
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return v;
            }
            shift += 7;
        }
    }
}

impl Iterator for AckIter<'_> {
    type Item = Ack;

    fn next(&mut self) -> Option<Ack> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let op = (i64::from(self.prev.op) + unzigzag(self.varint())) as u32;
        let seq = self.prev.seq.wrapping_add(unzigzag(self.varint()) as u64);
        let t_ns = self.prev.t_ns + self.varint();
        self.prev = Ack { op, seq, t_ns };
        Some(self.prev)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for AckIter<'_> {}

/// The op acknowledged at each sequence of the acknowledged range (the
/// first ack in file order where two claim one sequence), shared by every
/// view of a history: a view stores only where it differs from it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Consensus {
    lo: u64,
    slots: Vec<u32>,
}

impl Consensus {
    /// A slot no ack claimed.
    const EMPTY: u32 = u32::MAX - 1;
    /// Sequences beyond the acks the range may span (gaps), before the
    /// consensus is left out: a history whose sequences are spread far
    /// apart would otherwise cost 4 bytes per unused sequence.
    const SLACK: u64 = 1 << 16;

    fn build(acks: &Acks) -> Consensus {
        let (lo, hi) = (acks.seq_min, acks.seq_max);
        if acks.is_empty() {
            return Consensus::default();
        }
        // A range reaching u64::MAX has no end to name (`end` would wrap):
        // no consensus then, as for a spread-out range (a review found the
        // wrap: the span overflowed, then entries were compared twice).
        if hi == u64::MAX || hi - lo >= 2 * acks.len() as u64 + Self::SLACK || hi - lo >= u64::from(u32::MAX) {
            return Consensus::default();
        }
        let span = hi - lo + 1;
        let mut slots = vec![Self::EMPTY; span as usize];
        for a in acks.iter() {
            let slot = &mut slots[(a.seq - lo) as usize];
            if *slot == Self::EMPTY {
                *slot = a.op;
            }
        }
        Consensus { lo, slots }
    }

    fn index(&self, seq: u64) -> Option<usize> {
        let i = seq.checked_sub(self.lo)?;
        (i < self.slots.len() as u64).then_some(i as usize)
    }

    fn end(&self) -> u64 {
        self.lo + self.slots.len() as u64
    }
}

/// Every attempted write of a run, by op index (invoke order).
#[derive(Debug, Default, Clone)]
pub struct History {
    meta: Meta,
    /// By slot.
    clients: Vec<ClientOps>,
    /// Client id -> slot, in client id order.
    slots: BTreeMap<u32, u32>,
    /// Client id -> slot + 1 (0: none) for ids below [`History::DIRECT_CLIENTS`]:
    /// one lookup per read-back message, so it is a table, not a tree walk.
    direct: Vec<u32>,
    /// Acknowledgements in file order, which is ack-time order (the history
    /// validator rejects time going backwards).
    acks: Acks,
    /// The acknowledged ops, as a set (filled by [`HistoryBuilder::finish`]).
    acked: Bitset,
    consensus: Arc<Consensus>,
    counts: [u64; 4],
}

impl History {
    /// The acknowledged ops as a set.
    pub fn acked(&self) -> &Bitset {
        &self.acked
    }

    /// Number of attempted writes (invokes).
    pub fn len(&self) -> usize {
        self.meta.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn id(&self, op: u32) -> OpId {
        let c = &self.clients[(self.meta.get(op) >> 2) as usize];
        let pos = c.ops.binary_search(&op).expect("an op is in its client's list");
        OpId { client: c.client, counter: c.counter_at(pos) }
    }

    pub fn outcome(&self, op: u32) -> Outcome {
        Outcome::ALL[(self.meta.get(op) & 3) as usize]
    }

    /// Acknowledgements in ack-time order.
    pub fn acks(&self) -> AckIter<'_> {
        self.acks.iter()
    }

    /// Client ids looked up through a table rather than the tree.
    const DIRECT_CLIENTS: u32 = 1 << 16;

    /// The op index of an id, if it was ever invoked.
    pub fn find(&self, id: OpId) -> Option<u32> {
        self.clients[self.slot_of(id.client)? as usize].find(id.counter)
    }

    fn slot_of(&self, client: u32) -> Option<u32> {
        match self.direct.get(client as usize) {
            Some(0) => None,
            Some(s) => Some(s - 1),
            None if client < Self::DIRECT_CLIENTS => None,
            None => self.slots.get(&client).copied(),
        }
    }

    /// Parses an id string and finds its op; `None` for anything never
    /// invoked, including strings that are not ids at all.
    pub fn find_str(&self, id: &str) -> Option<u32> {
        self.find(id.parse().ok()?)
    }

    /// Clients in id order with their op indices in counter order.
    pub fn clients(&self) -> impl Iterator<Item = (u32, &[u32])> {
        self.slots.iter().map(|(c, slot)| (*c, self.clients[*slot as usize].ops.as_slice()))
    }

    pub fn count(&self, outcome: Outcome) -> u64 {
        self.counts[outcome.bits() as usize]
    }
}

/// Builds a [`History`] from lines in file order, validating each with
/// [`HistoryValidator`] (the rules of docs/formats.md "history.jsonl").
#[derive(Debug, Default)]
pub struct HistoryBuilder {
    validator: HistoryValidator,
    history: History,
}

impl HistoryBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one line; the error is the "what is wrong" part of a line error.
    pub fn push(&mut self, op: &OpRef<'_>) -> Result<(), String> {
        let id = self.validator.check_ref(op)?;
        self.record(op.kind, id, op.seq, op.t_ns)
    }

    /// Adds one record of a compact history (`history.bin`); same rules and
    /// messages as [`HistoryBuilder::push`].
    pub fn push_compact(&mut self, op: &CompactOp) -> Result<(), String> {
        let id = self.validator.check_compact(op)?;
        self.record(op.kind, id, op.seq, op.t_ns)
    }

    fn record(&mut self, kind: OpType, id: OpId, seq: Option<u64>, t_ns: u64) -> Result<(), String> {
        let h = &mut self.history;
        match kind {
            OpType::Invoke => {
                let index = u32::try_from(h.len())
                    .ok()
                    .filter(|i| *i < Consensus::EMPTY)
                    .ok_or_else(|| "more than 4 billion writes in one history: split the run".to_string())?;
                let slot = match h.slot_of(id.client) {
                    Some(slot) => slot,
                    None => {
                        let slot = h.clients.len() as u32;
                        h.slots.insert(id.client, slot);
                        if id.client < History::DIRECT_CLIENTS {
                            let c = id.client as usize;
                            if h.direct.len() <= c {
                                h.direct.resize(c + 1, 0);
                            }
                            h.direct[c] = slot + 1;
                        }
                        h.clients.push(ClientOps { client: id.client, runs: Vec::new(), ops: Vec::new() });
                        slot
                    }
                };
                h.meta.push(slot, Outcome::Open);
                let client = &mut h.clients[slot as usize];
                // The validator guarantees counters strictly increase per client.
                assert!(client.ops.last().is_none_or(|last| *last < index));
                client.push(id.counter, index);
            }
            kind => {
                // The validator guarantees an open invoke for this id.
                let index = h.find(id).expect("validated completion has an invoke");
                assert_eq!(h.outcome(index), Outcome::Open);
                let outcome = match kind {
                    OpType::Ok => {
                        let seq = seq.expect("validated ok has a seq");
                        h.acks.push(Ack { op: index, seq, t_ns });
                        Outcome::Ok
                    }
                    OpType::Fail => Outcome::Fail,
                    OpType::Info => Outcome::Info,
                    OpType::Invoke => unreachable!(),
                };
                h.meta.set_outcome(index, outcome);
            }
        }
        Ok(())
    }

    pub fn finish(self) -> History {
        let mut h = self.history;
        h.acked = Bitset::new(h.len());
        for op in 0..h.len() as u32 {
            let outcome = h.meta.get(op) & 3;
            h.counts[outcome as usize] += 1;
            if outcome == Outcome::Ok.bits() {
                h.acked.insert(op);
            }
        }
        h.consensus = Arc::new(Consensus::build(&h.acks));
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jetsam_core::history::Op;

    fn line(op: Op) -> String {
        serde_json::to_string(&op).unwrap()
    }

    #[test]
    fn builds_history_and_views() {
        let a = OpId { client: 0, counter: 0 };
        let b = OpId { client: 0, counter: 1 };
        let c = OpId { client: 1, counter: 5 };
        let mut hb = HistoryBuilder::new();
        for op in [
            Op::invoke(1, a),
            Op::invoke(2, b),
            Op::invoke(3, c),
            Op::ok(4, b, 1, "n1"),
            Op::fail(5, c, "no responders"),
        ] {
            let text = line(op);
            hb.push(&serde_json::from_str(&text).unwrap()).unwrap();
        }
        let h = hb.finish();
        assert_eq!(h.len(), 3);
        assert_eq!(h.outcome(0), Outcome::Open);
        assert_eq!(h.outcome(1), Outcome::Ok);
        assert_eq!(h.outcome(2), Outcome::Fail);
        assert_eq!(h.acks().collect::<Vec<_>>(), vec![Ack { op: 1, seq: 1, t_ns: 4 }]);
        assert_eq!(h.find_str("1-5"), Some(2));
        assert_eq!(h.find_str("1-4"), None);
        assert_eq!(h.find_str("banana"), None);
        assert_eq!(h.find_str("1-05"), None, "only the canonical spelling matches");

        let mut rb = RecoveredBuilder::new(&h);
        rb.push(1, "0-1").unwrap();
        rb.push(2, "9-9").unwrap();
        rb.push(4, "0-1").unwrap();
        assert!(rb.push(4, "0-0").unwrap_err().contains("out of order"));
        let v = rb.finish();
        assert_eq!(v.len(), 3);
        assert!(v.holds(1) && !v.holds(0));
        assert_eq!(v.at(2), Some(Entry::Stranger("9-9")));
        assert_eq!(v.at(3), None);
        assert_eq!(v.at(4), Some(Entry::Op(1)));
        assert_eq!(v.duplicated_ops()[&1], vec![1, 4]);
    }
}
