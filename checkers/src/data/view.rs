//! One read-back view in compact form: [`Recovered`], built line by line
//! by [`RecoveredBuilder`] against its history's [`Consensus`], and the
//! [`Bitset`] of op indices the checks share (moved out of `data/mod.rs`,
//! behaviour unchanged).

use super::{Consensus, History};
use jetsam_core::compact::CompactId;
use jetsam_core::recovered::RecoveredValidator;
use std::collections::BTreeMap;
use std::sync::Arc;

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
        self.insert_at(i as usize)
    }

    fn insert_at(&mut self, i: usize) -> bool {
        let (w, b) = (i / 64, i % 64);
        let was = self.words[w] >> b & 1 == 1;
        self.words[w] |= 1 << b;
        was
    }

    pub fn contains(&self, i: u32) -> bool {
        self.contains_at(i as usize)
    }

    fn contains_at(&self, i: usize) -> bool {
        self.words[i / 64] >> (i % 64) & 1 == 1
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

    /// Size of `self & !other`.
    pub fn count_and_not(&self, other: &Bitset) -> u64 {
        assert_eq!(self.words.len(), other.words.len());
        self.words.iter().zip(&other.words).map(|(a, b)| u64::from((a & !b).count_ones())).sum()
    }

    pub fn union_with(&mut self, other: &Bitset) {
        assert_eq!(self.words.len(), other.words.len());
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a |= b;
        }
    }
}

/// What one view (a node's read-back file or the cluster view) holds, in
/// stream order, stored against its history's [`Consensus`].
#[derive(Debug, Clone)]
pub struct Recovered {
    consensus: Arc<Consensus>,
    /// Over the consensus range: this view holds the sequence.
    held: Bitset,
    /// Over the consensus range: held, and not the consensus op (in `own`).
    differs: Bitset,
    /// Entries not taken from the consensus, by sequence: outside its range,
    /// strangers, and ops other than the one acknowledged there.
    own: Vec<(u64, u32)>,
    len: usize,
    /// Ids that were never invoked, by sequence (their text).
    strangers: BTreeMap<u64, String>,
    present: Bitset,
    /// Ops held at two or more sequences: op -> every sequence it is at.
    duplicated_ops: BTreeMap<u32, Vec<u64>>,
    /// Strangers held at two or more sequences: id -> every sequence.
    duplicated_strangers: BTreeMap<String, Vec<u64>>,
}

/// One position of a [`Recovered`] view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry<'a> {
    Op(u32),
    Stranger(&'a str),
}

impl Recovered {
    /// Marker for an id that was never invoked.
    pub const STRANGER: u32 = u32::MAX;

    /// Number of messages held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the op is held at some sequence.
    pub fn holds(&self, op: u32) -> bool {
        self.present.contains(op)
    }

    pub fn present(&self) -> &Bitset {
        &self.present
    }

    /// The raw value (op index or [`Recovered::STRANGER`]) at a sequence.
    fn raw_at(&self, seq: u64) -> Option<u32> {
        if let Some(i) = self.consensus.index(seq) {
            if !self.held.contains_at(i) {
                return None;
            }
            if !self.differs.contains_at(i) {
                return Some(self.consensus.slots[i]);
            }
        }
        self.own.binary_search_by_key(&seq, |(s, _)| *s).ok().map(|k| self.own[k].1)
    }

    /// The message at a sequence.
    pub fn at(&self, seq: u64) -> Option<Entry<'_>> {
        self.raw_at(seq).map(|raw| self.entry_for(seq, raw))
    }

    /// The entry for a raw value at a sequence.
    pub fn entry_for(&self, seq: u64, raw: u32) -> Entry<'_> {
        match raw {
            Self::STRANGER => Entry::Stranger(&self.strangers[&seq]),
            op => Entry::Op(op),
        }
    }

    /// Calls `f` with every message's sequence and raw value, in stream order.
    pub fn for_each_raw(&self, mut f: impl FnMut(u64, u32)) {
        let c = &self.consensus;
        let below = self.own.partition_point(|(s, _)| *s < c.lo);
        self.own[..below].iter().for_each(|(s, raw)| f(*s, *raw));
        let mut k = below;
        for (w, word) in self.held.words.iter().enumerate() {
            let mut bits = *word;
            while bits != 0 {
                let i = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let seq = c.lo + i as u64;
                if self.differs.contains_at(i) {
                    assert_eq!(self.own[k].0, seq, "in-range own entries match the differs bits");
                    f(seq, self.own[k].1);
                    k += 1;
                } else {
                    f(seq, c.slots[i]);
                }
            }
        }
        self.own[k..].iter().for_each(|(s, raw)| f(*s, *raw));
    }

    /// Every message in stream order (collected: for tests and small views).
    pub fn entries(&self) -> Vec<(u64, Entry<'_>)> {
        let mut out = Vec::with_capacity(self.len);
        self.for_each_raw(|seq, raw| out.push((seq, raw)));
        out.into_iter().map(|(seq, raw)| (seq, self.entry_for(seq, raw))).collect()
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

    /// Calls `f` with each sequence both views hold where at least one of
    /// them may differ from the other, in sequence order, with both raw
    /// values. Sequences where both take the consensus op are skipped: they
    /// agree by construction.
    pub fn for_each_candidate(&self, other: &Recovered, mut f: impl FnMut(u64, u32, u32)) {
        assert!(
            Arc::ptr_eq(&self.consensus, &other.consensus) || self.consensus == other.consensus,
            "views of one history"
        );
        let c = &self.consensus;
        let split =
            |v: &Recovered| (v.own.partition_point(|(s, _)| *s < c.lo), v.own.partition_point(|(s, _)| *s < c.end()));
        let ((a_below, a_above), (b_below, b_above)) = (split(self), split(other));
        merge_own(&self.own[..a_below], &other.own[..b_below], &mut f);
        let held = self.held.words.iter().zip(&other.held.words);
        let differs = self.differs.words.iter().zip(&other.differs.words);
        for (w, ((ha, hb), (da, db))) in held.zip(differs).enumerate() {
            let mut bits = ha & hb & (da | db);
            while bits != 0 {
                let i = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let seq = c.lo + i as u64;
                let raw = |v: &Recovered| v.raw_at(seq).expect("a held sequence has an entry");
                f(seq, raw(self), raw(other));
            }
        }
        merge_own(&self.own[a_above..], &other.own[b_above..], &mut f);
    }
}

/// Calls `f` for each sequence in both sorted lists, in order.
fn merge_own(a: &[(u64, u32)], b: &[(u64, u32)], f: &mut impl FnMut(u64, u32, u32)) {
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].0.cmp(&b[j].0) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                f(a[i].0, a[i].1, b[j].1);
                i += 1;
                j += 1;
            }
        }
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
        let range = history.consensus.slots.len();
        RecoveredBuilder {
            history,
            validator: RecoveredValidator::default(),
            view: Recovered {
                consensus: Arc::clone(&history.consensus),
                held: Bitset::new(range),
                differs: Bitset::new(range),
                own: Vec::new(),
                len: 0,
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
        let found = self.history.find_str(id);
        self.add(seq, found, || id.to_string());
        Ok(())
    }

    /// Adds one record of a compact view (`recovered/<view>.bin`); same
    /// rules and result as [`RecoveredBuilder::push`] with the id's text.
    pub fn push_compact(&mut self, seq: u64, id: CompactId<'_>) -> Result<(), String> {
        match id {
            CompactId::Op(op) => {
                self.validator.check_seq(seq)?;
                let found = self.history.find(op);
                self.add(seq, found, || op.to_string());
                Ok(())
            }
            CompactId::Text(text) => self.push(seq, text),
        }
    }

    fn add(&mut self, seq: u64, found: Option<u32>, text: impl FnOnce() -> String) {
        let v = &mut self.view;
        let raw = match found {
            Some(op) => {
                if v.present.insert(op) {
                    v.duplicated_ops.entry(op).or_default().push(seq);
                }
                op
            }
            None => {
                let id = text();
                if let Some(first) = self.stranger_first_seq.get(&id) {
                    v.duplicated_strangers.entry(id.clone()).or_insert_with(|| vec![*first]).push(seq);
                } else {
                    self.stranger_first_seq.insert(id.clone(), seq);
                }
                v.strangers.insert(seq, id);
                Recovered::STRANGER
            }
        };
        v.len += 1;
        match v.consensus.index(seq) {
            Some(i) => {
                v.held.insert_at(i);
                if raw == Recovered::STRANGER || v.consensus.slots[i] != raw {
                    v.differs.insert_at(i);
                    v.own.push((seq, raw));
                }
            }
            None => v.own.push((seq, raw)),
        }
    }

    pub fn finish(self) -> Recovered {
        // duplicated_ops so far lists only the repeat sequences; prepend the
        // first one, found in one pass over the stream.
        let mut v = self.view;
        v.own.shrink_to_fit();
        if !v.duplicated_ops.is_empty() {
            let mut dups = std::mem::take(&mut v.duplicated_ops);
            let mut done = BTreeMap::new();
            v.for_each_raw(|seq, op| {
                if let Some(mut seqs) = dups.remove(&op) {
                    seqs.insert(0, seq);
                    done.insert(op, seqs);
                }
            });
            assert!(dups.is_empty(), "every duplicated op is held");
            v.duplicated_ops = done;
        }
        v
    }
}
