//! The streaming checker against the in-memory one on random run folders
//! wider than stream_equality.rs's: client ids around the table limits
//! (65,535, 65,536, u32::MAX), counter gaps up to 2^40, sequences from 0 to
//! u64::MAX, padded ids ("007-1") that name invoked ops, unreadable and
//! missing nodes, offline nodes, a cluster view, scenarios with fewer
//! replicas than nodes and async mode, placements, events; each folder in
//! both forms; and damaged files, which must give the same error. (Written
//! by a review of the streaming engine.)

mod common;

use common::{in_memory, streamed};
use jetsam_core::history::{Op, OpId};
use proptest::prelude::*;
use proptest::sample::Index;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn scratch(name: &str) -> std::path::PathBuf {
    common::scratch("random", name)
}

fn lines(ops: &[Op]) -> String {
    ops.iter().map(|o| serde_json::to_string(o).unwrap() + "\n").collect()
}

#[derive(Debug, Clone, Copy)]
enum Fate {
    Ok(u8),
    Fail,
    Info,
    Open,
}

#[derive(Debug, Clone)]
enum Pick {
    Op(Index),
    /// An invoked op spelled with a leading zero ("007-1", "1-01").
    Padded(Index, bool),
    Stranger(u8),
    NeverInvoked(u8),
}

#[derive(Debug, Clone)]
struct Node {
    /// 0: a view; 1: `.unreadable`; 2: no file at all.
    kind: u8,
    base: bool,
    drop: Vec<u8>,
    set: Vec<(u8, Pick)>,
    offline: bool,
}

#[derive(Debug, Clone)]
struct Case {
    /// client (index into CLIENTS), counter step (index into STEPS), fate, delay.
    ops: Vec<(usize, usize, Fate, usize)>,
    nodes: Vec<Node>,
    cluster: Option<Vec<(u8, Pick)>>,
    /// scenario: None, or (extra nodes beyond the files, replicas, async).
    scenario: Option<(u8, u8, bool)>,
    /// replicas.json: None, Some(None) = unknown, Some(Some(mask)).
    placement: Option<Option<u8>>,
    /// events: (t index, kind index, node mask, fault number or none).
    events: Vec<(u8, u8, u8, Option<u8>)>,
}

const CLIENTS: [u32; 6] = [0, 1, 65_535, 65_536, 70_000, u32::MAX];
const STEPS: [u64; 4] = [1, 1, 2, 1 << 40];
/// Sequences: small ones, and far-apart ones (no consensus in memory), up
/// to u64::MAX (which the in-memory consensus once overflowed on).
const SEQS: [u64; 21] = [
    0,
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    10,
    11,
    12,
    13,
    14,
    15,
    1 << 40,
    (1 << 40) + 1,
    u64::MAX - 2,
    u64::MAX - 1,
    u64::MAX,
];
const KINDS: [&str; 6] = ["kill", "restart", "power-loss", "partition", "heal", "pause"];

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![
        6 => any::<Index>().prop_map(Pick::Op),
        1 => (any::<Index>(), any::<bool>()).prop_map(|(i, b)| Pick::Padded(i, b)),
        2 => (0u8..3).prop_map(Pick::Stranger),
        1 => (0u8..3).prop_map(Pick::NeverInvoked),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    case_with(6, 40)
}

fn case_with(max_edits: usize, max_ops: usize) -> impl Strategy<Value = Case> {
    let fate = prop_oneof![
        8 => (0u8..SEQS.len() as u8).prop_map(Fate::Ok),
        1 => Just(Fate::Fail),
        1 => Just(Fate::Info),
        1 => Just(Fate::Open),
    ];
    let op = (0usize..CLIENTS.len(), 0usize..STEPS.len(), fate, 0usize..4);
    let edits = move || proptest::collection::vec((0u8..SEQS.len() as u8 + 2, pick()), 0..max_edits);
    let node = (
        prop_oneof![6 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8)],
        any::<bool>(),
        proptest::collection::vec(0u8..SEQS.len() as u8, 0..6),
        edits(),
        proptest::bool::weighted(0.2),
    )
        .prop_map(|(kind, base, drop, set, offline)| Node { kind, base, drop, set, offline });
    (
        proptest::collection::vec(op, 0..max_ops),
        proptest::collection::vec(node, 1..5),
        proptest::option::of(edits()),
        proptest::option::of((0u8..2, 1u8..5, any::<bool>())),
        proptest::option::weighted(0.2, proptest::option::weighted(0.8, 1u8..32)),
        proptest::collection::vec((0u8..80, 0u8..KINDS.len() as u8, 0u8..16, proptest::option::of(0u8..3)), 0..5),
    )
        .prop_map(|(ops, nodes, cluster, scenario, placement, events)| Case {
            ops,
            nodes,
            cluster,
            scenario,
            placement,
            events,
        })
}

fn seq_of(k: u8) -> u64 {
    // Two beyond the list: u64::MAX and 0 again (views only).
    match SEQS.get(k as usize) {
        Some(s) => *s,
        None if k as usize == SEQS.len() => u64::MAX,
        None => 0,
    }
}

fn write_case(c: &Case, dir: &Path) {
    let mut next: BTreeMap<u32, u64> = BTreeMap::new();
    let mut ids = Vec::new();
    let mut ops = Vec::new();
    let mut pending: Vec<(usize, OpId, Fate)> = Vec::new();
    let mut acked: BTreeMap<u64, OpId> = BTreeMap::new();
    let mut t = 0u64;
    let mut complete = |id: OpId, fate: Fate, t: u64, ops: &mut Vec<Op>| {
        let op = match fate {
            Fate::Ok(k) => {
                let seq = SEQS[k as usize];
                acked.entry(seq).or_insert(id);
                Op::ok(t, id, seq, "n1")
            }
            Fate::Fail => Op::fail(t, id, "no"),
            Fate::Info => Op::info(t, id, "timeout"),
            Fate::Open => return,
        };
        ops.push(op);
    };
    for (i, (client, step, fate, delay)) in c.ops.iter().enumerate() {
        let client = CLIENTS[*client];
        // Clients start at a large counter now and then.
        let counter = next.entry(client).or_insert(if client % 2 == 1 { u64::MAX - 100 } else { 0 });
        let Some(after) = counter.checked_add(STEPS[*step]) else { continue };
        let id = OpId { client, counter: *counter };
        *counter = after;
        ids.push(id);
        t += 3;
        ops.push(Op::invoke(t, id));
        pending.push((i + delay, id, *fate));
        while let Some(k) = pending.iter().position(|(due, _, _)| *due <= i) {
            let (_, id, fate) = pending.remove(k);
            t += 3;
            complete(id, fate, t, &mut ops);
        }
    }
    for (_, id, fate) in std::mem::take(&mut pending) {
        t += 3;
        complete(id, fate, t, &mut ops);
    }
    std::fs::write(dir.join("history.jsonl"), lines(&ops)).unwrap();
    let text = |p: &Pick| match p {
        Pick::Op(i) if !ids.is_empty() => ids[i.index(ids.len())].to_string(),
        Pick::Padded(i, client) if !ids.is_empty() => {
            let id = ids[i.index(ids.len())];
            if *client { format!("00{}-{}", id.client, id.counter) } else { format!("{}-0{}", id.client, id.counter) }
        }
        Pick::Op(_) | Pick::Padded(..) => "9-9".to_string(),
        Pick::Stranger(k) => format!("garbage {k}"),
        Pick::NeverInvoked(k) => format!("{}-{}", 65_536 + u32::from(*k % 2), k),
    };
    let view_text = |base: bool, drop: &[u8], set: &[(u8, Pick)]| {
        let mut held: BTreeMap<u64, String> =
            if base { acked.iter().map(|(s, id)| (*s, id.to_string())).collect() } else { BTreeMap::new() };
        for s in drop {
            held.remove(&seq_of(*s));
        }
        for (s, p) in set {
            held.insert(seq_of(*s), text(p));
        }
        held.iter()
            .map(|(s, id)| format!("{{\"seq\":{s},\"id\":{}}}\n", serde_json::to_string(id).unwrap()))
            .collect::<String>()
    };
    let names: Vec<String> = (1..=c.nodes.len()).map(|n| format!("n{n}")).collect();
    // The placement decides which nodes may have files.
    let replicas: Option<Vec<usize>> = match c.placement {
        Some(Some(mask)) => {
            let r: Vec<usize> = (0..c.nodes.len()).filter(|n| mask >> n & 1 == 1).collect();
            (!r.is_empty()).then_some(r)
        }
        _ => None,
    };
    for (n, node) in c.nodes.iter().enumerate() {
        if replicas.as_ref().is_some_and(|r| !r.contains(&n)) {
            continue;
        }
        let name = &names[n];
        match node.kind {
            0 => {
                std::fs::write(
                    dir.join(format!("recovered/{name}.jsonl")),
                    view_text(node.base, &node.drop, &node.set),
                )
                .unwrap();
                if node.offline {
                    std::fs::write(dir.join(format!("recovered/{name}.offline")), "read offline\n").unwrap();
                }
            }
            1 => std::fs::write(dir.join(format!("recovered/{name}.unreadable")), "timed out\n").unwrap(),
            _ => {}
        }
    }
    if let Some(set) = &c.cluster {
        std::fs::write(dir.join("recovered/cluster.jsonl"), view_text(true, &[], set)).unwrap();
    }
    let scenario_nodes = c.nodes.len() + c.scenario.map_or(0, |s| s.0 as usize);
    if let Some((_, replicas_n, async_mode)) = c.scenario {
        let mut toml = format!(
            "format_version = 1\nname = \"review\"\nnodes = {scenario_nodes}\nduration = \"1s\"\nseed = 7\n\n[stream]\nreplicas = {replicas_n}\n"
        );
        if async_mode {
            toml.push_str("consistency = \"async\"\nsync = \"1s\"\n");
        }
        std::fs::write(dir.join("scenario.resolved.toml"), toml).unwrap();
    }
    match (&c.placement, &replicas) {
        (Some(None), _) => {
            std::fs::write(dir.join("recovered/replicas.json"), "{\"replicas\":null,\"reason\":\"unknown\"}\n").unwrap()
        }
        (Some(Some(_)), Some(r)) => {
            let list: Vec<&String> = r.iter().map(|n| &names[*n]).collect();
            std::fs::write(dir.join("recovered/replicas.json"), serde_json::json!({ "replicas": list }).to_string())
                .unwrap()
        }
        _ => {}
    }
    if !c.events.is_empty() {
        let mut events: Vec<(u64, String)> = c
            .events
            .iter()
            .map(|(t, k, mask, fault)| {
                let nodes: Vec<&String> =
                    names.iter().enumerate().filter(|(n, _)| mask >> n & 1 == 1).map(|(_, s)| s).collect();
                let t = u64::from(*t) * 2;
                let mut e = serde_json::json!({"t_ns": t, "kind": KINDS[*k as usize], "nodes": nodes});
                if let Some(f) = fault {
                    e["fault"] = (*f).into();
                    e["planned_ns"] = 1000.into();
                }
                (t, e.to_string())
            })
            .collect();
        events.sort_by_key(|(t, _)| *t);
        std::fs::write(dir.join("events.jsonl"), events.iter().map(|(_, l)| format!("{l}\n")).collect::<String>())
            .unwrap();
    }
}

fn same_in_both(dir: &Path, run_acks: usize) -> Result<(), TestCaseError> {
    let want = in_memory(dir);
    let got = streamed(dir, run_acks);
    prop_assert_eq!(&got, &want, "JSON lines");
    // And in compact form (a folder the in-memory engine found valid).
    if want.is_ok() {
        let compact = dir.with_extension("compact");
        let _ = std::fs::remove_dir_all(&compact);
        std::fs::create_dir_all(compact.join("recovered")).unwrap();
        common::convert(dir, &compact);
        let got = streamed(&compact, run_acks);
        std::fs::remove_dir_all(&compact).unwrap();
        prop_assert_eq!(&got, &want, "compact");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 120,
        ..ProptestConfig::default()
    })]

    #[test]
    fn wider_random_runs_stream_to_the_same_report(c in case(), run_acks in 1usize..6) {
        let dir = scratch("wide");
        write_case(&c, &dir);
        let r = same_in_both(&dir, run_acks);
        std::fs::remove_dir_all(&dir).unwrap();
        r?;
    }
}

/// How a file of a valid folder is damaged.
#[derive(Debug, Clone)]
enum Damage {
    /// Replace line `Index` with this text.
    Line(Index, &'static str),
    /// Cut the file at a byte.
    Cut(Index),
    /// Swap two lines.
    Swap(Index, Index),
    /// Append a line.
    Append(&'static str),
}

const BAD_LINES: [&str; 9] = [
    "{oops",
    "",
    "\u{feff}{}",
    r#"{"seq":3,"id":"0-0","x":1}"#,
    r#"{"seq":-1,"id":"0-0"}"#,
    r#"{"seq":1,"id":""}"#,
    r#"{"t_ns":0,"client":0,"type":"ok","id":"0-0"}"#,
    r#"{"t_ns":1,"kind":"meteor","nodes":[]}"#,
    r#"{"t_ns":0,"client":0,"type":"invoke","id":"0-01"}"#,
];

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<Index>(), proptest::sample::select(BAD_LINES.to_vec())).prop_map(|(i, l)| Damage::Line(i, l)),
        any::<Index>().prop_map(Damage::Cut),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Damage::Swap(a, b)),
        proptest::sample::select(BAD_LINES.to_vec()).prop_map(Damage::Append),
    ]
}

fn apply(path: &Path, d: &Damage) {
    let bytes = std::fs::read(path).unwrap();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let out: Vec<u8> = match d {
        Damage::Cut(i) if !bytes.is_empty() => bytes[..i.index(bytes.len())].to_vec(),
        Damage::Cut(_) => bytes,
        Damage::Line(i, l) if !lines.is_empty() => {
            let k = i.index(lines.len());
            lines[k] = l.to_string();
            (lines.join("\n") + "\n").into_bytes()
        }
        Damage::Swap(a, b) if !lines.is_empty() => {
            let (a, b) = (a.index(lines.len()), b.index(lines.len()));
            lines.swap(a, b);
            (lines.join("\n") + "\n").into_bytes()
        }
        Damage::Line(_, l) | Damage::Append(l) => {
            lines.push(l.to_string());
            (lines.join("\n") + "\n").into_bytes()
        }
        Damage::Swap(..) => bytes,
    };
    std::fs::write(path, out).unwrap();
}

fn damaged_same(c: &Case, files: &[(Index, Damage)], compact: bool, run_acks: usize) -> Result<(), TestCaseError> {
    let dir = scratch(if compact { "damaged-c" } else { "damaged" });
    write_case(c, &dir);
    let dir = if compact {
        let to = scratch("damaged-cc");
        common::convert(&dir, &to);
        std::fs::remove_dir_all(&dir).unwrap();
        to
    } else {
        dir
    };
    let mut all: Vec<PathBuf> = vec![];
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() && !p.ends_with("scenario.resolved.toml") {
            all.push(p);
        }
    }
    for entry in std::fs::read_dir(dir.join("recovered")).unwrap() {
        all.push(entry.unwrap().path());
    }
    all.sort();
    for (which, d) in files {
        apply(&all[which.index(all.len())], d);
    }
    let want = in_memory(&dir);
    let got = streamed(&dir, run_acks);
    std::fs::remove_dir_all(&dir).unwrap();
    prop_assert_eq!(got, want);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 120,
        ..ProptestConfig::default()
    })]

    #[test]
    fn dense_random_runs_stream_to_the_same_report(c in case_with(40, 60), run_acks in 1usize..6) {
        let dir = scratch("dense");
        write_case(&c, &dir);
        let r = same_in_both(&dir, run_acks);
        std::fs::remove_dir_all(&dir).unwrap();
        r?;
    }

    #[test]
    fn damaged_runs_give_the_same_error(
        c in case(),
        files in proptest::collection::vec((any::<Index>(), damage()), 1..3),
        compact in any::<bool>(),
        run_acks in 1usize..4,
    ) {
        damaged_same(&c, &files, compact, run_acks)?;
    }
}
