//! What the views hold that they should not, or hold in the wrong place.
//!
//! Verifies, over every readable node and the cluster view:
//! - **unexpected**: an id held that was never invoked (including text that
//!   is not an id at all, e.g. a corrupted record); counted once per distinct
//!   id, and per node;
//! - **resurrected**: a write that definitely failed (`fail`) but is held;
//! - **duplicated**: one id held at two or more sequences of one view;
//!   counted once per distinct id, and per node;
//! - **seq-mismatch**: an `ok` said id x is at sequence s, but a view that
//!   holds s holds another id there, or a view holds x only at other
//!   sequences (and nothing at s); counted once per acknowledged id, and per
//!   node; of those, the ones whose write is itself lost (held by no
//!   readable node: the system reused its sequence) are also counted apart,
//!   so the verdict can treat them as part of a loss in `async` mode;
//! - **recovered indeterminate**: an `info` or never-completed write that is
//!   held (not an anomaly: it tells how many unknown outcomes were in fact
//!   written).
//!
//! Does not verify: payloads (read-back carries ids only), that a write is
//! held at all (see [`crate::lost`]), or agreement between nodes (see
//! [`crate::divergence`]). A view that holds neither sequence s nor x is no
//! seq-mismatch: the missing write is a loss or a divergence instead.

use crate::data::{Bitset, Entry, History, Outcome, Recovered};
use jetsam_core::report::{SAMPLE_MAX, Sampled};
use std::collections::{BTreeMap, BTreeSet};

/// Findings of this module over a set of named views.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Integrity {
    pub unexpected: Sampled,
    pub resurrected: Sampled,
    pub duplicated: Sampled,
    pub seq_mismatch: Sampled,
    /// Seq-mismatched acknowledged writes that are not in `kept` (lost).
    pub seq_mismatch_lost: u64,
    pub recovered_indeterminate: u64,
    /// Per view name: (duplicated ids, seq-mismatched acknowledged ids).
    pub per_view: BTreeMap<String, (u64, u64)>,
}

fn push_sample(s: &mut Sampled, text: impl FnOnce() -> String) {
    s.count += 1;
    if s.sample.len() < SAMPLE_MAX {
        s.sample.push(text());
    }
}

fn entry_text(history: &History, e: Entry<'_>) -> String {
    match e {
        Entry::Op(op) => history.id(op).to_string(),
        Entry::Stranger(s) => s.to_string(),
    }
}

fn seqs_text(seqs: &[u64]) -> String {
    seqs.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ")
}

/// Runs every check of this module over `views` (name, view), in name order;
/// `kept` holds the ops some readable node holds (see [`crate::lost::union`]).
/// On the views named in `offline` (nodes read from their files, which
/// missed the final convergence) another id at an acknowledged sequence is
/// a seq-mismatch only when the view holds the acknowledged id elsewhere:
/// without it, that is an uncommitted tail the cluster replaced, or lag.
/// (The publisher proposes an id once, so any node holding it holds the
/// same log entry, at the same sequence.)
pub fn check(history: &History, views: &[(&str, &Recovered)], kept: &Bitset, offline: &BTreeSet<&str>) -> Integrity {
    let mut out = Integrity::default();

    // unexpected: distinct strangers over all views, in id order.
    let strangers: BTreeSet<&str> =
        views.iter().flat_map(|(_, v)| v.strangers().values().map(|s| s.as_str())).collect();
    for s in &strangers {
        push_sample(&mut out.unexpected, || s.to_string());
    }

    // resurrected / recovered indeterminate: ops held by any view, in op order.
    for op in 0..history.len() as u32 {
        let outcome = history.outcome(op);
        if outcome == Outcome::Ok || !views.iter().any(|(_, v)| v.holds(op)) {
            continue;
        }
        if outcome == Outcome::Fail {
            let holders: Vec<&str> = views.iter().filter(|(_, v)| v.holds(op)).map(|(n, _)| *n).collect();
            push_sample(&mut out.resurrected, || format!("{} (failed) held by {}", history.id(op), holders.join(", ")));
        } else {
            assert!(outcome.is_indeterminate());
            out.recovered_indeterminate += 1;
        }
    }

    // duplicated: distinct ids over all views; the sample names the first
    // view and sequences.
    let mut dup: BTreeMap<String, String> = BTreeMap::new();
    for (name, v) in views {
        for (op, seqs) in v.duplicated_ops() {
            dup.entry(history.id(*op).to_string())
                .or_insert_with(|| format!("{} on {name} at seq {}", history.id(*op), seqs_text(seqs)));
        }
        for (id, seqs) in v.duplicated_strangers() {
            dup.entry(id.clone()).or_insert_with(|| format!("{id} on {name} at seq {}", seqs_text(seqs)));
        }
        let per_view = v.duplicated_ops().len() as u64 + v.duplicated_strangers().len() as u64;
        out.per_view.entry(name.to_string()).or_default().0 = per_view;
    }
    for text in dup.into_values() {
        push_sample(&mut out.duplicated, || text);
    }

    // seq-mismatch: one pass over the acknowledgements for every view, then
    // (only when there are any) the sample in ack order.
    let mut mismatched = Bitset::new(history.len());
    let mut counts = vec![0u64; views.len()];
    let offline_at: Vec<bool> = views.iter().map(|(name, _)| offline.contains(name)).collect();
    for ack in history.acks() {
        for (k, (_, v)) in views.iter().enumerate() {
            if mismatch_on(v, offline_at[k], ack) {
                counts[k] += 1;
                mismatched.insert(ack.op);
            }
        }
    }
    for ((name, _), count) in views.iter().zip(&counts) {
        out.per_view.entry(name.to_string()).or_default().1 = *count;
    }
    if counts.iter().all(|c| *c == 0) {
        return out;
    }
    for ack in history.acks() {
        if !mismatched.contains(ack.op) {
            continue;
        }
        if !kept.contains(ack.op) {
            out.seq_mismatch_lost += 1;
        }
        push_sample(&mut out.seq_mismatch, || {
            let (name, other) = views
                .iter()
                .filter(|(name, v)| mismatch_on(v, offline.contains(name), ack))
                .find_map(|(name, v)| match v.at(ack.seq) {
                    Some(e) if e != Entry::Op(ack.op) => Some((name, Some(e))),
                    None if v.holds(ack.op) => Some((name, None)),
                    _ => None,
                })
                .expect("a mismatched ack has a view holding another id at its sequence, or it elsewhere");
            match other {
                Some(e) => {
                    format!(
                        "{} acked at seq {}; {name} holds {} there",
                        history.id(ack.op),
                        ack.seq,
                        entry_text(history, e)
                    )
                }
                None => format!(
                    "{} acked at seq {}; {name} holds it only at another seq and nothing at {}",
                    history.id(ack.op),
                    ack.seq,
                    ack.seq
                ),
            }
        });
    }
    out
}

/// Whether `ack` is a seq-mismatch on view `v` (see [`check`] for the rule
/// on views read offline).
fn mismatch_on(v: &Recovered, offline: bool, ack: crate::data::Ack) -> bool {
    match v.at(ack.seq) {
        Some(Entry::Op(op)) if op == ack.op => false,
        None => v.holds(ack.op),
        Some(_) => !offline || v.holds(ack.op),
    }
}
