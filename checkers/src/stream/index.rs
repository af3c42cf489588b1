//! Pass 1 of the streaming checker: the history, read once in file order,
//! becomes a compact index of its ops ([`OpIndex`]) and three temporary
//! streams ([`Spilled`]).
//!
//! An op is known by its place `g`: its client's first place plus its
//! position among that client's invokes (counters strictly increase per
//! client, so the position follows from the counter through the client's
//! counter runs, one run for a client counting 0, 1, 2, ...). Per op the
//! index keeps only its outcome, 2 bits, in a mapped temporary file
//! ([`super::mapped`]); in memory it keeps the clients and their counter
//! runs. What the later passes need in an order (invokes in file order,
//! acknowledgements in ack order and sorted by sequence) is written to the
//! temporary folder; so are the completions, whose places are known only
//! once the history has ended.

use super::Arena;
use super::bits::Bits2;
use super::spill::{AckSorter, SeqAck, SortedAcks, SpillError, VarReader, VarWriter};
use crate::data::Outcome;
use jetsam_core::compact::CompactOp;
use jetsam_core::history::{HistoryValidator, OpId, OpRef, OpType};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Client ids looked up through a table rather than the tree.
const DIRECT_CLIENTS: u32 = 1 << 16;

/// Positions from `start` (up to the next run's start) hold counters
/// `first`, `first + 1`, ...
#[derive(Debug, Clone, Copy)]
struct CounterRun {
    first: u64,
    start: u32,
}

/// One client's counters by position.
#[derive(Debug, Clone)]
struct Client {
    client: u32,
    runs: Vec<CounterRun>,
    len: u32,
}

impl Client {
    fn push(&mut self, counter: u64) -> u32 {
        let pos = self.len;
        match self.runs.last() {
            Some(r) if r.first.checked_add(u64::from(pos - r.start)) == Some(counter) => {}
            _ => self.runs.push(CounterRun { first: counter, start: pos }),
        }
        self.len += 1;
        pos
    }

    #[inline]
    fn find(&self, counter: u64) -> Option<u32> {
        // A client counting 0, 1, 2, ... has one run: no search.
        if let [r] = self.runs.as_slice() {
            let offset = counter.checked_sub(r.first)?;
            return (offset < u64::from(self.len)).then_some(offset as u32);
        }
        let i = self.runs.partition_point(|r| r.first <= counter).checked_sub(1)?;
        let r = self.runs[i];
        let end = self.runs.get(i + 1).map_or(self.len, |n| n.start);
        let offset = counter - r.first;
        (offset < u64::from(end - r.start)).then(|| r.start + offset as u32)
    }

    fn counter_at(&self, pos: u32) -> u64 {
        let r = self.runs[self.runs.partition_point(|r| r.start <= pos) - 1];
        r.first + u64::from(pos - r.start)
    }
}

/// Client slots by client id: a table for small ids, a tree for the rest.
#[derive(Debug, Clone, Default)]
struct Slots {
    direct: Vec<u32>,
    tree: BTreeMap<u32, u32>,
}

impl Slots {
    fn get(&self, client: u32) -> Option<u32> {
        match self.direct.get(client as usize) {
            Some(0) => None,
            Some(s) => Some(s - 1),
            None if client < DIRECT_CLIENTS => None,
            None => self.tree.get(&client).copied(),
        }
    }

    fn insert(&mut self, client: u32, slot: u32) {
        if client < DIRECT_CLIENTS {
            let c = client as usize;
            if self.direct.len() <= c {
                self.direct.resize(c + 1, 0);
            }
            self.direct[c] = slot + 1;
        } else {
            self.tree.insert(client, slot);
        }
    }
}

/// Every op of the history by place, with its outcome.
#[derive(Debug)]
pub struct OpIndex {
    slots: Slots,
    clients: Vec<Client>,
    /// The first place of each slot's ops, and the total at the end.
    base: Vec<u32>,
    outcome: Bits2,
    counts: [u64; 4],
}

impl OpIndex {
    /// Ops (invokes) in the history.
    pub fn len(&self) -> usize {
        self.outcome.len()
    }

    /// The place of an id, if it was ever invoked.
    #[inline]
    pub fn find(&self, id: OpId) -> Option<u32> {
        let slot = self.slots.get(id.client)?;
        Some(self.base[slot as usize] + self.clients[slot as usize].find(id.counter)?)
    }

    /// Parses an id text and finds its place; `None` for anything never
    /// invoked (the same rule as the in-memory view builder).
    pub fn find_str(&self, id: &str) -> Option<u32> {
        self.find(id.parse().ok()?)
    }

    /// The place of a client slot's op at `pos`.
    pub fn place(&self, slot: u32, pos: u32) -> u32 {
        let g = self.base[slot as usize] + pos;
        assert!(g < self.base[slot as usize + 1], "a position within its client");
        g
    }

    pub fn id(&self, g: u32) -> OpId {
        let slot = self.base.partition_point(|b| *b <= g) - 1;
        let c = &self.clients[slot];
        OpId { client: c.client, counter: c.counter_at(g - self.base[slot]) }
    }

    pub fn outcome(&self, g: u32) -> Outcome {
        Outcome::from_bits(self.outcome.get(g as usize))
    }

    pub fn count(&self, outcome: Outcome) -> u64 {
        self.counts[outcome.bits() as usize]
    }

    /// Each client slot's places, in slot order.
    pub fn client_places(&self) -> impl Iterator<Item = std::ops::Range<u32>> + '_ {
        self.base.windows(2).map(|w| w[0]..w[1])
    }
}

/// The temporary streams pass 1 leaves for the others.
pub struct Spilled {
    /// Per invoke in file order: its client slot (a varint).
    pub invokes: PathBuf,
    /// Per acknowledgement in ack order: slot, position, and its time minus
    /// the previous acknowledgement's.
    pub acks: PathBuf,
    /// The acknowledgements by (sequence, rank).
    pub by_seq: SortedAcks,
}

/// Builds the [`OpIndex`] from history lines in file order, validating each
/// with [`HistoryValidator`] (the same rules and messages as the in-memory
/// [`crate::data::HistoryBuilder`]).
pub struct Indexer {
    validator: HistoryValidator,
    slots: Slots,
    clients: Vec<Client>,
    ops: u32,
    /// Completions by outcome (see [`Outcome::bits`]).
    completed: [u64; 4],
    last_ack_ns: u64,
    invokes_out: VarWriter,
    /// Per completion that is not an `ok`: slot, position and outcome bits
    /// (few: an `ok` is the default, the open ones the validator knows).
    completions_out: VarWriter,
    acks_out: VarWriter,
    sorter: AckSorter,
    /// The first temporary-file error: it stops the reading, and is
    /// reported as itself rather than as a line of the history.
    pub spill_error: Option<SpillError>,
}

/// What a line error says when the temporary folder failed under it (the
/// caller reports [`Indexer::spill_error`] instead).
const SPILL_STOP: &str = "stopped: the checker's temporary file failed";

impl Indexer {
    pub fn new(tmp: &Path, run_acks: usize) -> Result<Indexer, SpillError> {
        Ok(Indexer {
            validator: HistoryValidator::default(),
            slots: Slots::default(),
            clients: Vec::new(),
            ops: 0,
            completed: [0; 4],
            last_ack_ns: 0,
            invokes_out: VarWriter::create(tmp.join("invokes"))?,
            completions_out: VarWriter::create(tmp.join("completions"))?,
            acks_out: VarWriter::create(tmp.join("acks"))?,
            sorter: AckSorter::with_run(tmp.join("acks-by-seq"), run_acks),
            spill_error: None,
        })
    }

    /// Adds one JSON line; the error is the "what is wrong" of a line error.
    pub fn push(&mut self, op: &OpRef<'_>) -> Result<(), String> {
        let id = self.validator.check_ref(op)?;
        self.record(op.kind, id, op.seq, op.t_ns)
    }

    /// Adds one compact record; same rules and messages as [`Indexer::push`].
    pub fn push_compact(&mut self, op: &CompactOp) -> Result<(), String> {
        let id = self.validator.check_compact(op)?;
        self.record(op.kind, id, op.seq, op.t_ns)
    }

    fn record(&mut self, kind: OpType, id: OpId, seq: Option<u64>, t_ns: u64) -> Result<(), String> {
        let spilled = match kind {
            OpType::Invoke => self.invoke(id)?,
            kind => self.complete(kind, id, seq, t_ns),
        };
        spilled.map_err(|e| {
            self.spill_error = Some(e);
            SPILL_STOP.to_string()
        })
    }

    fn invoke(&mut self, id: OpId) -> Result<Result<(), SpillError>, String> {
        // The same bound as the in-memory checker's op indices.
        if self.ops >= u32::MAX - 1 {
            return Err("more than 4 billion writes in one history: split the run".to_string());
        }
        let slot = match self.slots.get(id.client) {
            Some(slot) => slot,
            None => {
                let slot = self.clients.len() as u32;
                self.slots.insert(id.client, slot);
                self.clients.push(Client { client: id.client, runs: Vec::new(), len: 0 });
                slot
            }
        };
        self.clients[slot as usize].push(id.counter);
        self.ops += 1;
        Ok(self.invokes_out.put(&[u64::from(slot)]))
    }

    fn complete(&mut self, kind: OpType, id: OpId, seq: Option<u64>, t_ns: u64) -> Result<(), SpillError> {
        // The validator guarantees an open invoke for this id.
        let slot = self.slots.get(id.client).expect("a validated completion's client has invoked");
        let pos = self.clients[slot as usize].find(id.counter).expect("a validated completion has an invoke");
        let outcome = match kind {
            OpType::Ok => Outcome::Ok,
            OpType::Fail => Outcome::Fail,
            OpType::Info => Outcome::Info,
            OpType::Invoke => unreachable!("invokes are recorded apart"),
        };
        if outcome != Outcome::Ok {
            self.completions_out.put(&[u64::from(slot), u64::from(pos), u64::from(outcome.bits())])?;
        }
        // The validator allows one completion per invoke.
        let rank = self.completed[Outcome::Ok.bits() as usize] as u32;
        self.completed[outcome.bits() as usize] += 1;
        if outcome != Outcome::Ok {
            return Ok(());
        }
        let seq = seq.expect("a validated ok has a seq");
        // The validator rejects time going backwards.
        assert!(t_ns >= self.last_ack_ns, "acks are in time order");
        self.acks_out.put(&[u64::from(slot), u64::from(pos), t_ns - self.last_ack_ns])?;
        self.last_ack_ns = t_ns;
        self.sorter.push(SeqAck { seq, rank, slot, pos })?;
        Ok(())
    }

    /// Ends the history: the index (its outcomes in `arena`), and the
    /// streams for the later passes.
    pub fn finish(self, arena: &Arena) -> Result<(OpIndex, Spilled), SpillError> {
        let mut base = Vec::with_capacity(self.clients.len() + 1);
        let mut total = 0u32;
        for client in &self.clients {
            base.push(total);
            total += client.len;
        }
        base.push(total);
        assert_eq!(total, self.ops, "every invoke has a place");
        // Every op is an `ok` but those listed apart: the other completions,
        // and the invokes still open at the end.
        let mut outcome = arena.bits2(total as usize)?;
        outcome.fill(Outcome::Ok.bits());
        let completions = self.completions_out.finish()?;
        let mut r = VarReader::open(&completions)?;
        while let Some(slot) = r.next()? {
            let (pos, bits) = (r.expect()?, r.expect()?);
            outcome.set((base[slot as usize] + pos as u32) as usize, bits as u32);
        }
        std::fs::remove_file(&completions).map_err(|source| SpillError { path: completions.clone(), source })?;
        let mut counts = self.completed;
        for id in self.validator.open().copied() {
            let slot = self.slots.get(id.client).expect("an open id's client has invoked");
            let pos = self.clients[slot as usize].find(id.counter).expect("an open id was invoked");
            outcome.set((base[slot as usize] + pos) as usize, Outcome::Open.bits());
            counts[Outcome::Open.bits() as usize] += 1;
        }
        assert_eq!(counts.iter().sum::<u64>(), u64::from(total), "every op has one outcome");
        let spilled = Spilled {
            invokes: self.invokes_out.finish()?,
            acks: self.acks_out.finish()?,
            by_seq: self.sorter.finish()?,
        };
        let index = OpIndex { slots: self.slots, clients: self.clients, base, outcome, counts };
        Ok((index, spilled))
    }
}
