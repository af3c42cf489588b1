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
//! other's end (only acknowledged ids must be on every replica). Only the
//! judged nodes reach it ([`crate::placement`]). Without a known placement,
//! when the stream has fewer replicas than the cluster has nodes, nodes that hold
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
    // Texts are made only while the sample has room: a badly diverged pair
    // has millions of conflicts, and an id's text costs a lookup.
    let sample = |id: &dyn Fn() -> String, d: &mut Divergence| {
        if d.sample_ids.len() < SAMPLE_MAX {
            let id = id();
            if !d.sample_ids.contains(&id) {
                d.sample_ids.push(id);
            }
        }
    };
    a.for_each_candidate(b, |seq, xa, xb| {
        let (ea, eb) = (a.entry_for(seq, xa), b.entry_for(seq, xb));
        if same(ea, eb) {
            return;
        }
        d.conflicting += 1;
        if d.first_seq.is_none() {
            d.first_seq = Some(seq);
            d.a_id = Some(text(history, ea));
            d.b_id = Some(text(history, eb));
        }
        sample(&|| text(history, ea), &mut d);
        sample(&|| text(history, eb), &mut d);
    });
    let (only_a, first_a) = a.present().difference_within(b.present(), history.acked(), SAMPLE_MAX);
    let (only_b, first_b) = b.present().difference_within(a.present(), history.acked(), SAMPLE_MAX);
    d.only_a = only_a;
    d.only_b = only_b;
    for op in first_a.into_iter().chain(first_b) {
        sample(&|| history.id(op).to_string(), &mut d);
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::data::{HistoryBuilder, RecoveredBuilder};
    use jetsam_core::history::{Op, OpId};

    /// Four writes by client 0, acknowledged at seqs 1..=4 (also used by `placement`'s tests).
    pub(crate) fn history() -> History {
        let mut hb = HistoryBuilder::new();
        for c in 0..4u64 {
            let id = OpId { client: 0, counter: c };
            for op in [Op::invoke(c * 10, id), Op::ok(c * 10 + 1, id, c + 1, "n1")] {
                hb.push(&op.borrowed()).unwrap();
            }
        }
        hb.finish()
    }

    fn view(h: &History, msgs: &[(u64, &str)]) -> Recovered {
        let mut b = RecoveredBuilder::new(h);
        for (seq, id) in msgs {
            b.push(*seq, id).unwrap();
        }
        b.finish()
    }

    #[test]
    fn strangers_compare_by_text_on_dense_and_sparse_streams() {
        let h = history();
        let base = [(1, "0-0"), (2, "x"), (3, "0-2"), (4, "0-3")];
        let a = view(&h, &base);
        let same = view(&h, &base);
        assert_eq!(compare(&h, "a", &a, "b", &same), None);
        let other = view(&h, &[(1, "0-0"), (2, "y"), (3, "0-2"), (4, "0-3")]);
        let d = compare(&h, "a", &a, "b", &other).expect("x and y differ");
        assert_eq!(
            (d.first_seq, d.a_id.as_deref(), d.b_id.as_deref(), d.conflicting),
            (Some(2), Some("x"), Some("y"), 1)
        );
        // A sparse stream (gap at 3) against the dense one: 0-2 only on a,
        // and 0-1 (never held by a) only on b; seq 2 conflicts.
        let sparse = view(&h, &[(1, "0-0"), (2, "0-1"), (4, "0-3")]);
        assert_eq!(sparse.at(3), None);
        let d = compare(&h, "a", &a, "b", &sparse).unwrap();
        assert_eq!((d.first_seq, d.conflicting, d.only_a, d.only_b), (Some(2), 1, 1, 1));
        assert_eq!(d.sample_ids, vec!["x", "0-1", "0-2"]);
    }
}
