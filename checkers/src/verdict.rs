//! The verdict, per consistency mode, from the findings of the other checks.
//!
//! - `strong` fails on any lost write (against the readable nodes or the
//!   cluster view), any divergence, any seq-mismatch.
//! - `async` fails when a loss window is longer than the bound, or on any
//!   divergence or seq-mismatch of a kept write (a lost write whose sequence
//!   was reused is judged by its loss window).
//! - Both modes also fail on any unexpected, resurrected or duplicated id:
//!   each means the store holds something it was never asked to hold there
//!   (a corrupted or invented record, a write the system said failed, a write
//!   applied twice). A durability harness must not pass a store whose
//!   contents it cannot account for.
//! - `unknown` when fewer than a majority of the nodes were read back, unless
//!   what was read already fails (an anomaly that more nodes could not undo:
//!   divergence, seq-mismatch, unexpected, resurrected, duplicated, or losses
//!   in the cluster view); also `unknown` when nothing was acknowledged, since
//!   then nothing was tested.
//!
//! With a majority readable, every committed write must still have a readable
//! copy, so the verdict stands on them and the reasons name the unreadable
//! nodes. This module does not compute findings; it only weighs them.

use jetsam_core::duration::format_duration;
use jetsam_core::report::{Mode, Report, Verdict};
use std::time::Duration;

/// Decides the verdict for `report` (whose findings are filled in) given how
/// many of the expected nodes were readable, and returns it with its reasons.
pub fn decide(report: &Report, readable: usize, expected: usize) -> (Verdict, Vec<String>) {
    let mut decisive = Vec::new();
    if report.divergent {
        decisive.push(format!("replicas diverge ({} pair(s))", report.divergence.len()));
    }
    // In async mode a lost write whose sequence the system reused is judged
    // as a loss (by its window), not as a seq-mismatch of its own: the ADR
    // allows async to lose a bounded tail, and a store that lost its tail
    // hands those sequences out again. A kept write at a wrong sequence still
    // fails in both modes.
    let mismatched = match report.mode {
        Mode::Strong => report.seq_mismatch.count,
        Mode::Async => report.seq_mismatch.count - report.seq_mismatch_lost,
    };
    if mismatched > 0 {
        decisive.push(format!(
            "{mismatched} acknowledged write(s) have another id at their acknowledged sequence (seq-mismatch)"
        ));
    }
    if report.unexpected.count > 0 {
        decisive.push(format!("{} id(s) held that were never attempted (unexpected)", report.unexpected.count));
    }
    if report.resurrected.count > 0 {
        decisive.push(format!("{} write(s) that failed are held (resurrected)", report.resurrected.count));
    }
    if report.duplicated.count > 0 {
        decisive.push(format!("{} id(s) held at two or more sequences (duplicated)", report.duplicated.count));
    }
    if report.mode == Mode::Strong
        && let Some(n) = report.lost_cluster_view
        && n > 0
    {
        decisive.push(format!("{n} acknowledged write(s) missing from the cluster view (recovered/cluster.jsonl)"));
    }

    // Findings that more readable nodes could still undo.
    let mut undoable = Vec::new();
    match report.mode {
        Mode::Strong => {
            if report.lost > 0 {
                undoable.push(format!("{} acknowledged write(s) lost (held by no readable node)", report.lost));
            }
        }
        Mode::Async => {
            let bound = report.window_bound_ns.expect("async reports carry their bound");
            let over: Vec<_> = report.loss_windows.iter().filter(|w| w.end_ns - w.start_ns > bound).collect();
            if !over.is_empty() {
                let longest = over.iter().map(|w| w.end_ns - w.start_ns).max().unwrap_or(0);
                undoable.push(format!(
                    "{} loss window(s) longer than the bound {} (longest {})",
                    over.len(),
                    format_duration(Duration::from_nanos(bound)),
                    format_duration(Duration::from_nanos(longest))
                ));
            }
        }
    }

    let majority = expected > 0 && readable * 2 > expected;
    if !decisive.is_empty() {
        let mut reasons = decisive;
        if majority {
            reasons.extend(undoable);
        }
        return (Verdict::Fail, reasons);
    }
    if !majority {
        return (
            Verdict::Unknown,
            vec![format!(
                "only {readable} of {expected} node(s) readable: fewer than a majority, so a write missing from them may be on the others"
            )],
        );
    }
    if report.acked == 0 {
        return (Verdict::Unknown, vec!["no write was acknowledged: nothing was tested".to_string()]);
    }
    if !undoable.is_empty() {
        return (Verdict::Fail, undoable);
    }
    (Verdict::Pass, Vec::new())
}
