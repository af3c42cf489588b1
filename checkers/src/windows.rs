//! Loss windows.
//!
//! Verifies: acknowledged writes sorted by ack time (the order of `ok` lines
//! in the history) split into windows, each a maximal run of lost writes with
//! no kept acknowledged write between them. A window's `start_ns` and
//! `end_ns` are the ack times of its first and last lost write; its length is
//! `end_ns - start_ns` (one lost write makes a window of length 0).
//!
//! Each window is tied to one fault (a planned fault with all its
//! injection lines, [`jetsam_core::event::faults`]: a coordinated power loss
//! of every node is one fault naming every node) by this rule: the earliest
//! fault at or after the window's start (the window precedes or overlaps it: lazy fsync loses the
//! writes acknowledged before a power loss); if there is none, the latest
//! fault before the start (a loss after the last fault, e.g. a recovery that
//! dropped later writes); if there are no faults at all, none.
//!
//! Does not verify: why the writes were lost, nor whether the tied event
//! caused it (the tie is a pointer for a human, not a proof). Indeterminate
//! and failed writes neither open nor close a window.

use crate::data::{Bitset, History};
use jetsam_core::event::Event;
use jetsam_core::report::{EventRef, LossWindow};

/// The loss windows of `history` given what was kept, tied to `events`
/// (which are in time order).
pub fn loss_windows(history: &History, kept: &Bitset, events: &[Event]) -> Vec<LossWindow> {
    let mut windows = Vec::new();
    let mut open: Option<LossWindow> = None;
    for ack in history.acks() {
        if kept.contains(ack.op) {
            windows.extend(open.take());
        } else {
            match &mut open {
                Some(w) => {
                    assert!(ack.t_ns >= w.end_ns, "acks are in time order");
                    w.end_ns = ack.t_ns;
                    w.count += 1;
                }
                None => open = Some(LossWindow { start_ns: ack.t_ns, end_ns: ack.t_ns, count: 1, event: None }),
            }
        }
    }
    windows.extend(open);
    for w in &mut windows {
        w.event = tie(w.start_ns, events);
    }
    windows
}

pub(crate) fn tie(start_ns: u64, events: &[Event]) -> Option<EventRef> {
    let faults = jetsam_core::event::faults(events);
    // A fault's time is its first injection's; one whose later lines fall
    // after the start still overlaps the window, so it is found by its last.
    let last_ns = |f: &jetsam_core::event::Fault| events[*f.events.last().expect("a fault has an event")].t_ns;
    let f = faults.iter().find(|f| last_ns(f) >= start_ns).or_else(|| faults.iter().rfind(|f| f.t_ns < start_ns))?;
    Some(EventRef { t_ns: f.t_ns, kind: f.kind, nodes: f.nodes.clone() })
}
