//! The checker's input in compact form: a [`History`] (every attempted write
//! by op index, its outcome, and the acknowledgements in ack-time order) and
//! one [`Recovered`] per read-back view (a node's file or the cluster view).
//!
//! Both are built line by line through builders that validate as they go
//! ([`HistoryBuilder`], [`RecoveredBuilder`]), so a history of ten million
//! writes never exists as ten million `String`s: an id becomes a `u32` op
//! index (the position of its invoke in the file), presence on a node is one
//! bit per op, and a node's stream is a sorted array of `(seq, op index)`.
//!
//! What this module does not do: read files (see [`crate::load`]) or decide
//! anything (see the check modules).

use jetsam_core::history::{HistoryValidator, OpId, OpRef, OpType};
use jetsam_core::recovered::RecoveredValidator;
use std::collections::BTreeMap;

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
}

/// One acknowledgement: which op, the sequence the system acknowledged and
/// when the `ok` arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    pub op: u32,
    pub seq: u64,
    pub t_ns: u64,
}

/// Per client: its counters in invoke order (strictly increasing, so sorted)
/// and the op index of each.
#[derive(Debug, Default, Clone)]
struct ClientOps {
    counters: Vec<u64>,
    ops: Vec<u32>,
}

impl ClientOps {
    fn find(&self, counter: u64) -> Option<u32> {
        // Fast path: counters usually run 0, 1, 2, ... so the counter is its
        // own position (or close after a gap); fall back to binary search.
        let guess = usize::try_from(counter.wrapping_sub(*self.counters.first()?)).ok();
        if let Some(g) = guess
            && self.counters.get(g) == Some(&counter)
        {
            return Some(self.ops[g]);
        }
        self.counters.binary_search(&counter).ok().map(|i| self.ops[i])
    }
}

/// Every attempted write of a run, by op index (invoke order).
#[derive(Debug, Default, Clone)]
pub struct History {
    ids: Vec<OpId>,
    outcomes: Vec<Outcome>,
    /// Acknowledgements in file order, which is ack-time order (the history
    /// validator rejects time going backwards).
    acks: Vec<Ack>,
    clients: BTreeMap<u32, ClientOps>,
    /// The acknowledged ops, as a set (filled by [`HistoryBuilder::finish`]).
    acked: Bitset,
}

impl History {
    /// The acknowledged ops as a set.
    pub fn acked(&self) -> &Bitset {
        &self.acked
    }

    /// Number of attempted writes (invokes).
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn id(&self, op: u32) -> OpId {
        self.ids[op as usize]
    }

    pub fn outcome(&self, op: u32) -> Outcome {
        self.outcomes[op as usize]
    }

    /// Acknowledgements in ack-time order.
    pub fn acks(&self) -> &[Ack] {
        &self.acks
    }

    /// The op index of an id, if it was ever invoked.
    pub fn find(&self, id: OpId) -> Option<u32> {
        self.clients.get(&id.client)?.find(id.counter)
    }

    /// Parses an id string and finds its op; `None` for anything never
    /// invoked, including strings that are not ids at all.
    pub fn find_str(&self, id: &str) -> Option<u32> {
        self.find(id.parse().ok()?)
    }

    /// Clients in id order with their op indices in counter order.
    pub fn clients(&self) -> impl Iterator<Item = (u32, &[u32])> {
        self.clients.iter().map(|(c, ops)| (*c, ops.ops.as_slice()))
    }

    pub fn count(&self, outcome: Outcome) -> u64 {
        self.outcomes.iter().filter(|o| **o == outcome).count() as u64
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
        let h = &mut self.history;
        match op.kind {
            OpType::Invoke => {
                let index = u32::try_from(h.ids.len())
                    .ok()
                    .filter(|i| *i < Recovered::STRANGER)
                    .ok_or_else(|| "more than 4 billion writes in one history: split the run".to_string())?;
                h.ids.push(id);
                h.outcomes.push(Outcome::Open);
                let client = h.clients.entry(id.client).or_default();
                // The validator guarantees counters strictly increase per client.
                assert!(client.counters.last().is_none_or(|last| *last < id.counter));
                client.counters.push(id.counter);
                client.ops.push(index);
            }
            kind => {
                // The validator guarantees an open invoke for this id.
                let index = h.find(id).expect("validated completion has an invoke");
                assert_eq!(h.outcomes[index as usize], Outcome::Open);
                h.outcomes[index as usize] = match kind {
                    OpType::Ok => {
                        let seq = op.seq.expect("validated ok has a seq");
                        h.acks.push(Ack { op: index, seq, t_ns: op.t_ns });
                        Outcome::Ok
                    }
                    OpType::Fail => Outcome::Fail,
                    OpType::Info => Outcome::Info,
                    OpType::Invoke => unreachable!(),
                };
            }
        }
        Ok(())
    }

    pub fn finish(self) -> History {
        let mut h = self.history;
        h.acked = Bitset::new(h.ids.len());
        for ack in &h.acks {
            h.acked.insert(ack.op);
        }
        h
    }
}

/// A fixed-size set of op indices.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bitset {
    words: Vec<u64>,
}

impl Bitset {
    pub fn new(len: usize) -> Self {
        Bitset { words: vec![0; len.div_ceil(64)] }
    }

    /// Sets the bit and returns whether it was already set.
    pub fn insert(&mut self, i: u32) -> bool {
        let (w, b) = (i as usize / 64, i % 64);
        let was = self.words[w] >> b & 1 == 1;
        self.words[w] |= 1 << b;
        was
    }

    pub fn contains(&self, i: u32) -> bool {
        self.words[i as usize / 64] >> (i % 64) & 1 == 1
    }

    /// Members of `self & !other & mask`, in index order: the count, and
    /// the first `max` of them.
    pub fn difference_within(&self, other: &Bitset, mask: &Bitset, max: usize) -> (u64, Vec<u32>) {
        assert!(self.words.len() == other.words.len() && self.words.len() == mask.words.len());
        let mut count = 0u64;
        let mut first = Vec::new();
        for (w, ((a, b), m)) in self.words.iter().zip(&other.words).zip(&mask.words).enumerate() {
            let mut x = a & !b & m;
            count += u64::from(x.count_ones());
            while x != 0 && first.len() < max {
                first.push(w as u32 * 64 + x.trailing_zeros());
                x &= x - 1;
            }
        }
        (count, first)
    }

    pub fn union_with(&mut self, other: &Bitset) {
        assert_eq!(self.words.len(), other.words.len());
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a |= b;
        }
    }
}

/// What one view (a node's read-back file or the cluster view) holds, in
/// stream order.
#[derive(Debug, Clone)]
pub struct Recovered {
    /// The gap-free runs of the stream, in order.
    runs: Vec<Run>,
    /// Op index at each position, or [`Recovered::STRANGER`].
    entries: Vec<u32>,
    /// Ids that were never invoked, by sequence (their text).
    strangers: BTreeMap<u64, String>,
    present: Bitset,
    /// Ops held at two or more sequences: op -> every sequence it is at.
    duplicated_ops: BTreeMap<u32, Vec<u64>>,
    /// Strangers held at two or more sequences: id -> every sequence.
    duplicated_strangers: BTreeMap<String, Vec<u64>>,
}

/// A gap-free run of a [`Recovered`] stream: positions from `start` (up to
/// the next run's start) hold sequences `first_seq`, `first_seq + 1`, ...
/// Streams are stored as runs rather than a sequence per message: a stream
/// with a few gaps (the usual case) then costs a few runs instead of 8 bytes
/// a message, and a lookup is a search over the runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    first_seq: u64,
    start: usize,
}

/// One position of a [`Recovered`] view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry<'a> {
    Op(u32),
    Stranger(&'a str),
}

impl Recovered {
    /// Marker in `entries` for an id that was never invoked.
    pub const STRANGER: u32 = u32::MAX;

    /// Number of messages held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether the op is held at some sequence.
    pub fn holds(&self, op: u32) -> bool {
        self.present.contains(op)
    }

    pub fn present(&self) -> &Bitset {
        &self.present
    }

    /// The message at a sequence.
    pub fn at(&self, seq: u64) -> Option<Entry<'_>> {
        let run = self.runs.partition_point(|r| r.first_seq <= seq).checked_sub(1)?;
        let Run { first_seq, start } = self.runs[run];
        let end = self.runs.get(run + 1).map_or(self.entries.len(), |r| r.start);
        let pos = start.checked_add(usize::try_from(seq - first_seq).ok()?)?;
        (pos < end).then(|| self.entry_for(seq, self.entries[pos]))
    }

    /// The entry for a raw `entries` value at a sequence.
    pub fn entry_for(&self, seq: u64, raw: u32) -> Entry<'_> {
        match raw {
            Self::STRANGER => Entry::Stranger(&self.strangers[&seq]),
            op => Entry::Op(op),
        }
    }

    /// Every message in stream order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, Entry<'_>)> {
        self.segments().flat_map(move |(first, raw)| {
            raw.iter().enumerate().map(move |(i, r)| (first + i as u64, self.entry_for(first + i as u64, *r)))
        })
    }

    /// The gap-free runs of the stream: each run's first sequence and the op
    /// index (or [`Recovered::STRANGER`]) at each sequence from there. Every
    /// run is non-empty.
    pub fn segments(&self) -> impl Iterator<Item = (u64, &[u32])> {
        self.runs.iter().enumerate().map(|(i, r)| {
            let end = self.runs.get(i + 1).map_or(self.entries.len(), |n| n.start);
            (r.first_seq, &self.entries[r.start..end])
        })
    }

    fn seq_at(&self, pos: usize) -> u64 {
        let run = self.runs[self.runs.partition_point(|r| r.start <= pos) - 1];
        run.first_seq + (pos - run.start) as u64
    }

    /// Ids never invoked, by sequence.
    pub fn strangers(&self) -> &BTreeMap<u64, String> {
        &self.strangers
    }

    /// Ops held at two or more sequences, with every sequence.
    pub fn duplicated_ops(&self) -> &BTreeMap<u32, Vec<u64>> {
        &self.duplicated_ops
    }

    /// Never-invoked ids held at two or more sequences, with every sequence.
    pub fn duplicated_strangers(&self) -> &BTreeMap<String, Vec<u64>> {
        &self.duplicated_strangers
    }
}

/// Builds a [`Recovered`] view from lines in stream order, validating each
/// with [`RecoveredValidator`] (sequences strictly increase, ids non-empty).
/// An id that parses as no invoked op is kept as a stranger, not rejected:
/// holding it is a finding ("unexpected"), not a format error.
#[derive(Debug)]
pub struct RecoveredBuilder<'h> {
    history: &'h History,
    validator: RecoveredValidator,
    view: Recovered,
    /// First sequence of each stranger id, to report duplicates.
    stranger_first_seq: BTreeMap<String, u64>,
}

impl<'h> RecoveredBuilder<'h> {
    pub fn new(history: &'h History) -> Self {
        RecoveredBuilder {
            history,
            validator: RecoveredValidator::default(),
            view: Recovered {
                runs: Vec::new(),
                entries: Vec::new(),
                strangers: BTreeMap::new(),
                present: Bitset::new(history.len()),
                duplicated_ops: BTreeMap::new(),
                duplicated_strangers: BTreeMap::new(),
            },
            stranger_first_seq: BTreeMap::new(),
        }
    }

    /// Adds one line; the error is the "what is wrong" part of a line error.
    pub fn push(&mut self, seq: u64, id: &str) -> Result<(), String> {
        self.validator.check_parts(seq, id)?;
        let v = &mut self.view;
        match self.history.find_str(id) {
            Some(op) => {
                if v.present.insert(op) {
                    v.duplicated_ops.entry(op).or_default().push(seq);
                }
                v.entries.push(op);
            }
            None => {
                if let Some(first) = self.stranger_first_seq.get(id) {
                    v.duplicated_strangers.entry(id.to_string()).or_insert_with(|| vec![*first]).push(seq);
                } else {
                    self.stranger_first_seq.insert(id.to_string(), seq);
                }
                v.strangers.insert(seq, id.to_string());
                v.entries.push(Recovered::STRANGER);
            }
        }
        // `entries` already holds this message at position `pos`; it extends
        // the last run when it follows that run's last sequence.
        let pos = v.entries.len() - 1;
        match v.runs.last() {
            Some(r) if r.first_seq + (pos - r.start) as u64 == seq => {}
            _ => v.runs.push(Run { first_seq: seq, start: pos }),
        }
        Ok(())
    }

    pub fn finish(self) -> Recovered {
        // duplicated_ops so far lists only the repeat sequences; prepend the
        // first one, found in one pass over the stream.
        let mut v = self.view;
        if !v.duplicated_ops.is_empty() {
            let mut dups = std::mem::take(&mut v.duplicated_ops);
            let mut done = BTreeMap::new();
            for pos in 0..v.entries.len() {
                let op = v.entries[pos];
                if let Some(mut seqs) = dups.remove(&op) {
                    seqs.insert(0, v.seq_at(pos));
                    done.insert(op, seqs);
                }
            }
            assert!(dups.is_empty(), "every duplicated op is held");
            v.duplicated_ops = done;
        }
        v
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
        assert_eq!(h.acks(), &[Ack { op: 1, seq: 1, t_ns: 4 }]);
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
