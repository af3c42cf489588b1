//! Pass 2b of the streaming checker: the acknowledgements sorted by
//! sequence and every view, merged in sequence order. At each sequence it
//! decides what needs the views side by side: the seq-mismatches (with how
//! often each view holds each op, known from pass 2a) and the conflicts of
//! each pair of replicas; and it collects the sequences of the duplicated
//! ids chosen for the sample. Memory: one batch per view and the samples.

use super::bits::Bits1;
use super::index::OpIndex;
use super::spill::{SortedAcks, SpillError};
use super::views::{Held, ViewCounts, ViewStream};
use jetsam_core::report::SAMPLE_MAX;
use std::collections::BinaryHeap;

/// One view as the merge sees it.
pub struct MergeView<'a> {
    pub name: &'a str,
    /// Read offline: another id at an acknowledged sequence is a mismatch
    /// only when the view holds the acknowledged id elsewhere.
    pub offline: bool,
    pub counts: &'a ViewCounts,
}

/// A pair of replicas compared for divergence, by view number.
#[derive(Debug, Clone, Default)]
pub struct PairConflicts {
    pub conflicting: u64,
    pub first: Option<(u64, String, String)>,
    pub sample_ids: Vec<String>,
}

/// What the merge found.
#[derive(Debug, Default)]
pub struct Merged {
    /// Per view: acknowledged writes seq-mismatched on it.
    pub per_view: Vec<u64>,
    /// Acknowledged writes seq-mismatched on some view, and of those the lost.
    pub mismatched: u64,
    pub mismatched_lost: u64,
    /// The first [`SAMPLE_MAX`] mismatches in ack order.
    pub sample: Vec<String>,
    /// Per compared pair, in the order given.
    pub pairs: Vec<PairConflicts>,
    /// Per duplicated id of the sample: the sequences it is held at on its view.
    pub dup_seqs: Vec<Vec<u64>>,
}

/// The merge's inputs besides the streams.
pub struct MergePlan<'a> {
    pub index: &'a OpIndex,
    pub views: &'a [MergeView<'a>],
    /// Ops held by some readable node.
    pub kept: &'a Bits1,
    /// Pairs of views compared for divergence (view numbers, a before b).
    pub pairs: &'a [(usize, usize)],
    /// Duplicated ids of the sample: (view number, what it holds).
    pub dups: &'a [(usize, Held)],
}

/// Whether an ack of op `g` is a seq-mismatch on view `v`, given what `v`
/// holds at the ack's sequence (the rule of [`crate::integrity`]).
fn mismatch_on(v: &MergeView<'_>, at: Option<&Held>, g: u32) -> bool {
    match at {
        Some(Held::Op(op)) if *op == g => false,
        None => v.counts.holds(g),
        Some(_) => !v.offline || v.counts.holds(g),
    }
}

fn push_unique(sample: &mut Vec<String>, text: impl FnOnce() -> String) {
    if sample.len() < SAMPLE_MAX {
        let text = text();
        if !sample.contains(&text) {
            sample.push(text);
        }
    }
}

/// Runs the merge over `streams` (one per view of `plan.views`, same order).
pub fn merge(plan: &MergePlan<'_>, acks: &mut SortedAcks, streams: &mut [ViewStream]) -> Result<Merged, SpillError> {
    assert_eq!(plan.views.len(), streams.len());
    let mut out = Merged {
        per_view: vec![0; plan.views.len()],
        pairs: vec![PairConflicts::default(); plan.pairs.len()],
        dup_seqs: vec![Vec::new(); plan.dups.len()],
        ..Merged::default()
    };
    // The sample's candidates: (rank, text), the largest rank on top.
    let mut sample: BinaryHeap<(u32, String)> = BinaryHeap::new();
    let mut at: Vec<Option<Held>> = vec![None; streams.len()];
    let mut ack = acks.next()?;
    loop {
        let views_next = streams.iter().filter_map(ViewStream::peek_seq).min();
        let Some(seq) = [views_next, ack.map(|a| a.seq)].into_iter().flatten().min() else { break };
        for (slot, s) in at.iter_mut().zip(streams.iter_mut()) {
            *slot = s.take_at(seq);
        }
        while let Some(a) = ack.filter(|a| a.seq == seq) {
            let g = plan.index.place(a.slot, a.pos);
            let mut first: Option<usize> = None;
            for (k, v) in plan.views.iter().enumerate() {
                if mismatch_on(v, at[k].as_ref(), g) {
                    out.per_view[k] += 1;
                    first.get_or_insert(k);
                }
            }
            if let Some(k) = first {
                out.mismatched += 1;
                if !plan.kept.get(g as usize) {
                    out.mismatched_lost += 1;
                }
                if sample.len() < SAMPLE_MAX || sample.peek().is_some_and(|(r, _)| a.rank < *r) {
                    sample.push((a.rank, mismatch_text(plan, k, at[k].as_ref(), g, seq)));
                    if sample.len() > SAMPLE_MAX {
                        sample.pop();
                    }
                }
            }
            ack = acks.next()?;
        }
        for (p, (a, b)) in plan.pairs.iter().enumerate() {
            let (Some(ea), Some(eb)) = (&at[*a], &at[*b]) else { continue };
            if ea == eb {
                continue;
            }
            let d = &mut out.pairs[p];
            d.conflicting += 1;
            if d.first.is_none() {
                d.first = Some((seq, ea.text(plan.index), eb.text(plan.index)));
            }
            push_unique(&mut d.sample_ids, || ea.text(plan.index));
            push_unique(&mut d.sample_ids, || eb.text(plan.index));
        }
        for (i, (v, held)) in plan.dups.iter().enumerate() {
            if at[*v].as_ref() == Some(held) {
                out.dup_seqs[i].push(seq);
            }
        }
    }
    out.sample = sample.into_sorted_vec().into_iter().map(|(_, text)| text).collect();
    Ok(out)
}

/// The sample text of a mismatched ack, on the first view it is mismatched on.
fn mismatch_text(plan: &MergePlan<'_>, k: usize, at: Option<&Held>, g: u32, seq: u64) -> String {
    let id = plan.index.id(g);
    let name = plan.views[k].name;
    match at {
        Some(e) => format!("{id} acked at seq {seq}; {name} holds {} there", e.text(plan.index)),
        None => format!("{id} acked at seq {seq}; {name} holds it only at another seq and nothing at {seq}"),
    }
}
