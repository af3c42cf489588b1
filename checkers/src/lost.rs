//! Lost acknowledged writes.
//!
//! Verifies: which acknowledged (`ok`) writes are held by no readable node
//! (the union of every readable node's read-back); per node, which
//! acknowledged writes that node lacks; against `recovered/cluster.jsonl`
//! (when present), which acknowledged writes a client reading through the
//! system's normal read path would miss; and, per writer, whether each loss
//! lies before that writer's first kept write (prefix), between kept writes
//! (middle) or after its last kept write (postfix), as Jepsen's queue checker
//! classes them. "Kept" means held by some readable node, whatever the op's
//! outcome (an indeterminate write that was kept counts, as a read does in
//! Jepsen). A writer with nothing kept at all has every loss counted as
//! postfix (everything after a last kept write that does not exist).
//!
//! Does not verify: where a write is held (a write at the wrong sequence is
//! kept here and found by [`crate::integrity`]'s seq-mismatch), nor anything
//! about unreadable nodes (their per-node loss is reported as 0 and the node
//! as unreadable).

use crate::data::{Bitset, History, Recovered};
use jetsam_core::report::{LostClasses, SAMPLE_MAX};

/// Lost writes against a set of views.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lost {
    pub count: u64,
    pub classes: LostClasses,
    /// The first lost ids in ack-time order.
    pub sample: Vec<String>,
}

/// Union of what the given views hold, as a set of op indices.
pub fn union<'a>(history: &History, views: impl IntoIterator<Item = &'a Recovered>) -> Bitset {
    let mut kept = Bitset::new(history.len());
    for v in views {
        kept.union_with(v.present());
    }
    kept
}

/// Acknowledged writes missing from `kept`, with their per-writer classes.
pub fn lost(history: &History, kept: &Bitset) -> Lost {
    let mut count = 0u64;
    let mut sample = Vec::new();
    for ack in history.acks() {
        if !kept.contains(ack.op) {
            count += 1;
            if sample.len() < SAMPLE_MAX {
                sample.push(history.id(ack.op).to_string());
            }
        }
    }
    let mut classes = LostClasses::default();
    for (_client, ops) in history.clients() {
        let first_kept = ops.iter().position(|op| kept.contains(*op));
        let last_kept = ops.iter().rposition(|op| kept.contains(*op));
        for (i, op) in ops.iter().enumerate() {
            if history.outcome(*op) != crate::data::Outcome::Ok || kept.contains(*op) {
                continue;
            }
            match (first_kept, last_kept) {
                (Some(first), _) if i < first => classes.prefix += 1,
                (_, Some(last)) if i < last => classes.middle += 1,
                _ => classes.postfix += 1,
            }
        }
    }
    assert_eq!(classes.prefix + classes.middle + classes.postfix, count, "every lost write has one class");
    Lost { count, classes, sample }
}

/// Acknowledged writes one view lacks.
pub fn lost_on(history: &History, view: &Recovered) -> u64 {
    history.acked().count_and_not(view.present())
}
