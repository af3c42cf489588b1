//! Divergence between replicas.
//!
//! Verifies, for every pair of readable nodes (in name order): whether they
//! hold different ids at a sequence both hold (counted, with the first such
//! sequence and both ids), and whether one holds an acknowledged id the other
//! lacks (counted each way). A pair with any of these is divergent. The
//! comparison runs after the controller's heal and convergence wait, so a
//! replica that is merely behind counts too: it did not converge.
//!
//! Does not verify: the cluster view (that is a read path, not a replica),
//! unreadable nodes, or indeterminate/failed ids one replica holds beyond the
//! other's end (only acknowledged ids must be on every replica). When the
//! stream has fewer replicas than the cluster has nodes, nodes that hold
//! nothing are taken for non-replicas and left out (see
//! [`compare_all`]); a replica that lost everything is then invisible here,
//! though its losses still count per node.

use crate::data::{Entry, History, Recovered};
use jetsam_core::report::{Divergence, SAMPLE_MAX};

fn same(a: Entry<'_>, b: Entry<'_>) -> bool {
    match (a, b) {
        (Entry::Op(x), Entry::Op(y)) => x == y,
        (Entry::Stranger(x), Entry::Stranger(y)) => x == y,
        _ => false,
    }
}

fn text(history: &History, e: Entry<'_>) -> String {
    match e {
        Entry::Op(op) => history.id(op).to_string(),
        Entry::Stranger(s) => s.to_string(),
    }
}

/// Compares two replicas; `None` when they agree.
pub fn compare(history: &History, a_name: &str, a: &Recovered, b_name: &str, b: &Recovered) -> Option<Divergence> {
    let mut d = Divergence {
        a: a_name.to_string(),
        b: b_name.to_string(),
        first_seq: None,
        a_id: None,
        b_id: None,
        conflicting: 0,
        only_a: 0,
        only_b: 0,
        sample_ids: Vec::new(),
    };
    let sample = |id: String, d: &mut Divergence| {
        if d.sample_ids.len() < SAMPLE_MAX && !d.sample_ids.contains(&id) {
            d.sample_ids.push(id);
        }
    };
    // Merge walk over both streams in sequence order.
    let mut ia = a.iter().peekable();
    let mut ib = b.iter().peekable();
    while let (Some(&(sa, ea)), Some(&(sb, eb))) = (ia.peek(), ib.peek()) {
        if sa < sb {
            ia.next();
        } else if sb < sa {
            ib.next();
        } else {
            if !same(ea, eb) {
                d.conflicting += 1;
                if d.first_seq.is_none() {
                    d.first_seq = Some(sa);
                    d.a_id = Some(text(history, ea));
                    d.b_id = Some(text(history, eb));
                }
                sample(text(history, ea), &mut d);
                sample(text(history, eb), &mut d);
            }
            ia.next();
            ib.next();
        }
    }
    for ack in history.acks() {
        match (a.holds(ack.op), b.holds(ack.op)) {
            (true, false) => {
                d.only_a += 1;
                sample(history.id(ack.op).to_string(), &mut d);
            }
            (false, true) => {
                d.only_b += 1;
                sample(history.id(ack.op).to_string(), &mut d);
            }
            _ => {}
        }
    }
    (d.conflicting > 0 || d.only_a > 0 || d.only_b > 0).then_some(d)
}

/// Compares every pair of `replicas` (name order). With `skip_empty` (the
/// stream has fewer replicas than the cluster has nodes), nodes holding
/// nothing are left out, since they may simply not host the stream.
pub fn compare_all(history: &History, replicas: &[(&str, &Recovered)], skip_empty: bool) -> Vec<Divergence> {
    let considered: Vec<&(&str, &Recovered)> = replicas.iter().filter(|(_, v)| !(skip_empty && v.is_empty())).collect();
    let mut out = Vec::new();
    for (i, (a_name, a)) in considered.iter().enumerate() {
        for (b_name, b) in &considered[i + 1..] {
            out.extend(compare(history, a_name, a, b_name, b));
        }
    }
    out
}
