//! Property tests: build a correct history and recovered state from a model,
//! apply one kind of random damage, and check that the report names exactly
//! that damage (and that an undamaged run passes).

use jetsam_checkers::{CheckConfig, HistoryBuilder, NodeInput, RecoveredBuilder, RunInput, check};
use jetsam_core::history::{Op, OpId};
use jetsam_core::report::{Mode, Report, Verdict};
use proptest::prelude::*;
use proptest::sample::Index;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Ok,
    Fail,
    /// `info`, and the write did reach the stream.
    InfoWritten,
    /// `info`, and it did not.
    InfoLost,
}

/// A correct run: writes in time order, each invoked then completed at once.
#[derive(Debug, Clone)]
struct Model {
    nodes: usize,
    /// (id, fate) in time order.
    writes: Vec<(OpId, Fate)>,
}

fn model() -> impl Strategy<Value = Model> {
    let fate = prop_oneof![8 => Just(Fate::Ok), 1 => Just(Fate::Fail), 1 => Just(Fate::InfoWritten), 1 => Just(Fate::InfoLost)];
    (1usize..=5, proptest::collection::vec((0u32..4, fate, 1u64..3), 1..120)).prop_map(|(nodes, picks)| {
        let mut next: BTreeMap<u32, u64> = BTreeMap::new();
        let writes = picks
            .into_iter()
            .map(|(client, fate, step)| {
                // Counters strictly increase per client, with gaps.
                let counter = next.entry(client).or_insert(0);
                let id = OpId { client, counter: *counter };
                *counter += step;
                (id, fate)
            })
            .collect();
        Model { nodes, writes }
    })
}

#[derive(Debug, Clone)]
enum Damage {
    None,
    /// Drop these acknowledged writes from every node.
    DropEverywhere(Vec<Index>),
    /// Drop one acknowledged write from some but not all nodes.
    DropOnSome(Index, Vec<bool>),
    /// One node holds one written id again at a new sequence.
    Duplicate(Index, Index),
    /// Two acknowledged writes trade places on every node.
    Swap(Index, Index),
    /// One node holds an id never attempted.
    Stranger(Index, bool),
    /// Every node lost the first messages of the stream.
    DropPrefix(Index),
    /// One node holds a stranger where the others hold a written id.
    Conflict(Index, Index),
    /// Every node holds one acknowledged id at a new sequence instead of its own.
    Move(Index),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        Just(Damage::None),
        proptest::collection::vec(any::<Index>(), 1..8).prop_map(Damage::DropEverywhere),
        (any::<Index>(), proptest::collection::vec(any::<bool>(), 5)).prop_map(|(i, m)| Damage::DropOnSome(i, m)),
        (any::<Index>(), any::<Index>()).prop_map(|(i, n)| Damage::Duplicate(i, n)),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Damage::Swap(a, b)),
        (any::<Index>(), any::<bool>()).prop_map(|(n, garbage)| Damage::Stranger(n, garbage)),
        any::<Index>().prop_map(Damage::DropPrefix),
        (any::<Index>(), any::<Index>()).prop_map(|(n, p)| Damage::Conflict(n, p)),
        any::<Index>().prop_map(Damage::Move),
    ]
}

/// The history lines of a model: invoke, then completion, 1 ms apart.
fn history_ops(m: &Model) -> (Vec<Op>, BTreeMap<OpId, u64>) {
    let mut ops = Vec::new();
    let mut seqs = BTreeMap::new();
    let mut seq = 0;
    for (i, (id, fate)) in m.writes.iter().enumerate() {
        let t = i as u64 * 2_000_000;
        ops.push(Op::invoke(t, *id));
        let done = t + 1_000_000;
        match fate {
            Fate::Ok => {
                seq += 1;
                seqs.insert(*id, seq);
                ops.push(Op::ok(done, *id, seq, "n1"));
            }
            Fate::Fail => ops.push(Op::fail(done, *id, "no responders")),
            Fate::InfoWritten => {
                seq += 1;
                seqs.insert(*id, seq);
                ops.push(Op::info(done, *id, "timeout"));
            }
            Fate::InfoLost => ops.push(Op::info(done, *id, "timeout")),
        }
    }
    (ops, seqs)
}

fn run(m: &Model, held: &[Vec<(u64, String)>]) -> Report {
    let (ops, _) = history_ops(m);
    let mut hb = HistoryBuilder::new();
    for op in &ops {
        hb.push(&op.borrowed()).unwrap();
    }
    let history = hb.finish();
    let names: Vec<String> = (1..=m.nodes).map(|i| format!("n{i}")).collect();
    let mut nodes = BTreeMap::new();
    for (name, msgs) in names.iter().zip(held) {
        let mut rb = RecoveredBuilder::new(&history);
        for (seq, id) in msgs {
            rb.push(*seq, id).unwrap();
        }
        nodes.insert(name.clone(), NodeInput::Readable(rb.finish()));
    }
    let input = RunInput { history, events: Vec::new(), nodes, cluster: None, judged: Default::default() };
    let config = CheckConfig {
        mode: Mode::Strong,
        window_bound: Duration::from_secs(1),
        window_bound_source: "test".into(),
        nodes: names,
        replicas: Some(m.nodes as u32),
    };
    check(&input, &config)
}

/// Counts that must be zero unless the damage says otherwise.
#[derive(Debug, Default, PartialEq, Eq)]
struct Found {
    lost: u64,
    unexpected: u64,
    resurrected: u64,
    duplicated: u64,
    seq_mismatch: u64,
    divergent_pairs: usize,
}

fn found(r: &Report) -> Found {
    Found {
        lost: r.lost,
        unexpected: r.unexpected.count,
        resurrected: r.resurrected.count,
        duplicated: r.duplicated.count,
        seq_mismatch: r.seq_mismatch.count,
        divergent_pairs: r.divergence.len(),
    }
}

/// Number of maximal runs of `lost` in ack order.
fn runs_of(acked: &[OpId], lost: &BTreeSet<OpId>) -> usize {
    let mut runs = 0;
    let mut inside = false;
    for id in acked {
        let l = lost.contains(id);
        if l && !inside {
            runs += 1;
        }
        inside = l;
    }
    runs
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn the_report_names_exactly_the_damage(m in model(), d in damage()) {
        let (_, seqs) = history_ops(&m);
        // The correct state: every written id at its sequence, on every node.
        let mut stream: Vec<(u64, String)> = seqs.iter().map(|(id, s)| (*s, id.to_string())).collect();
        stream.sort();
        let mut held: Vec<Vec<(u64, String)>> = vec![stream.clone(); m.nodes];
        let acked: Vec<OpId> = m.writes.iter().filter(|(_, f)| *f == Fate::Ok).map(|(id, _)| *id).collect();
        let info_written = m.writes.iter().filter(|(_, f)| *f == Fate::InfoWritten).count() as u64;
        let last_seq = stream.last().map_or(0, |(s, _)| *s);

        let mut want = Found::default();
        let mut want_recovered_indeterminate = info_written;
        let mut want_node_lost = vec![0u64; m.nodes];
        let mut want_windows = 0;
        match &d {
            Damage::None => {}
            Damage::DropEverywhere(picks) => {
                prop_assume!(!acked.is_empty());
                let drop: BTreeSet<OpId> = picks.iter().map(|i| acked[i.index(acked.len())]).collect();
                for h in &mut held {
                    h.retain(|(_, id)| !drop.iter().any(|x| x.to_string() == *id));
                }
                want.lost = drop.len() as u64;
                want_node_lost = vec![drop.len() as u64; m.nodes];
                want_windows = runs_of(&acked, &drop);
            }
            Damage::DropOnSome(pick, mask) => {
                prop_assume!(!acked.is_empty() && m.nodes >= 2);
                let on: Vec<bool> = mask[..m.nodes].to_vec();
                let k = on.iter().filter(|b| **b).count();
                prop_assume!(k > 0 && k < m.nodes);
                let x = acked[pick.index(acked.len())].to_string();
                for (h, drop) in held.iter_mut().zip(&on) {
                    if *drop {
                        h.retain(|(_, id)| *id != x);
                    }
                }
                want_node_lost = on.iter().map(|b| u64::from(*b)).collect();
                want.divergent_pairs = k * (m.nodes - k);
            }
            Damage::Duplicate(pick, node) => {
                prop_assume!(!stream.is_empty());
                let (_, id) = stream[pick.index(stream.len())].clone();
                held[node.index(m.nodes)].push((last_seq + 1, id));
                want.duplicated = 1;
            }
            Damage::Swap(a, b) => {
                prop_assume!(acked.len() >= 2);
                let (a, b) = (a.index(acked.len()), b.index(acked.len()));
                prop_assume!(a != b);
                let (a, b) = (acked[a].to_string(), acked[b].to_string());
                for h in &mut held {
                    for (_, id) in h.iter_mut() {
                        if *id == a { *id = b.clone() } else if *id == b { *id = a.clone() }
                    }
                }
                want.seq_mismatch = 2;
            }
            Damage::Stranger(node, garbage) => {
                let id = if *garbage { "not an id".to_string() } else { "99-0".to_string() };
                held[node.index(m.nodes)].push((last_seq + 1, id));
                want.unexpected = 1;
            }
            Damage::Conflict(node, pos) => {
                prop_assume!(!stream.is_empty() && m.nodes >= 2);
                let (node, pos) = (node.index(m.nodes), pos.index(stream.len()));
                let (seq, id) = stream[pos].clone();
                held[node][pos].1 = "77-0".to_string();
                let was_acked = acked.iter().any(|a| a.to_string() == id);
                want.unexpected = 1;
                want.divergent_pairs = m.nodes - 1;
                want.seq_mismatch = u64::from(was_acked);
                want_node_lost[node] = u64::from(was_acked);
                let r = run(&m, &held);
                for d in &r.divergence {
                    prop_assert_eq!(d.conflicting, 1);
                    prop_assert_eq!(d.first_seq, Some(seq));
                    let names = [d.a.as_str(), d.b.as_str()];
                    let damaged = format!("n{}", node + 1);
                    prop_assert!(names.contains(&damaged.as_str()), "{:?} lacks {}", names, damaged);
                }
            }
            Damage::Move(pick) => {
                prop_assume!(!acked.is_empty());
                let x = acked[pick.index(acked.len())].to_string();
                for h in &mut held {
                    h.retain(|(_, id)| *id != x);
                    h.push((last_seq + 1, x.clone()));
                }
                want.seq_mismatch = 1;
            }
            Damage::DropPrefix(k) => {
                prop_assume!(!stream.is_empty());
                let k = k.index(stream.len()) + 1;
                let dropped: BTreeSet<String> = stream[..k].iter().map(|(_, id)| id.clone()).collect();
                for h in &mut held {
                    h.drain(..k);
                }
                let lost: BTreeSet<OpId> = acked.iter().filter(|id| dropped.contains(&id.to_string())).copied().collect();
                want.lost = lost.len() as u64;
                want_node_lost = vec![lost.len() as u64; m.nodes];
                want_windows = usize::from(!lost.is_empty());
                want_recovered_indeterminate = m.writes.iter()
                    .filter(|(id, f)| *f == Fate::InfoWritten && !dropped.contains(&id.to_string()))
                    .count() as u64;
                // Stream order is each writer's counter order, so a writer's
                // losses are all before its first kept write (prefix), unless
                // it kept nothing (then postfix).
                let kept_writers: BTreeSet<u32> = stream[k..].iter().map(|(_, id)| id.parse::<OpId>().unwrap().client).collect();
                let prefix = lost.iter().filter(|id| kept_writers.contains(&id.client)).count() as u64;
                let r = run(&m, &held);
                prop_assert_eq!(r.lost_classes.prefix, prefix);
                prop_assert_eq!(r.lost_classes.middle, 0);
                prop_assert_eq!(r.lost_classes.postfix, want.lost - prefix);
            }
        }

        let r = run(&m, &held);
        prop_assert_eq!(&found(&r), &want);
        prop_assert_eq!(r.recovered_indeterminate, want_recovered_indeterminate);
        prop_assert_eq!(r.loss_windows.len(), want_windows);
        prop_assert_eq!(r.loss_windows.iter().map(|w| w.count).sum::<u64>(), r.lost);
        let node_lost: Vec<u64> = r.nodes.values().map(|n| n.lost).collect();
        prop_assert_eq!(node_lost, want_node_lost);
        let clean = found(&r) == Found::default() && node_lost_is_zero(&r);
        let want_verdict = if !clean { Verdict::Fail } else if acked.is_empty() { Verdict::Unknown } else { Verdict::Pass };
        prop_assert_eq!(r.verdict, want_verdict);
        // Every damage but a dropped prefix of indeterminate writes only
        // leaves an anomaly: a damaged run never passes.
        let harmless = matches!(d, Damage::None) || (matches!(d, Damage::DropPrefix(_)) && want.lost == 0);
        if !harmless {
            prop_assert_ne!(r.verdict, Verdict::Pass);
        }
    }
}

fn node_lost_is_zero(r: &Report) -> bool {
    r.nodes.values().all(|n| n.lost == 0)
}
