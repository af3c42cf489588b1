//! The streaming checker (`jetsam_checkers::stream`, bounded memory)
//! against the in-memory one: the same report, byte for byte, on every
//! fixture (JSON lines and compact form), on random run folders with
//! acknowledgements out of sequence order, reused sequences, strangers,
//! duplicates, offline nodes and a cluster view, with the sort spilling to
//! many runs; and the same error on bad input.

mod common;

use jetsam_checkers::stream::{self, StreamOptions};
use jetsam_checkers::{Overrides, check, load_run};
use jetsam_core::history::{Op, OpId};
use proptest::prelude::*;
use proptest::sample::Index;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("jetsam-stream-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("recovered")).unwrap();
    dir
}

fn in_memory(dir: &Path) -> Result<String, String> {
    let (input, config) = load_run(dir, &Overrides::default()).map_err(|e| e.to_string())?;
    Ok(serde_json::to_string_pretty(&check(&input, &config)).unwrap())
}

fn streamed(dir: &Path, run_acks: usize) -> Result<String, String> {
    let (plan, config) = jetsam_checkers::load::plan_run(dir, &Overrides::default()).map_err(|e| e.to_string())?;
    // Budget 0: the per-op arrays' pages are dropped at every look.
    let options = StreamOptions { run_acks, rss_budget_bytes: run_acks as u64 % 2, ..StreamOptions::default() };
    let report = stream::check_plan(&plan, &config, &options).map_err(|e| e.to_string())?;
    Ok(serde_json::to_string_pretty(&report).unwrap())
}

#[test]
fn every_fixture_streams_to_the_same_report_in_both_forms() {
    let mut cases: Vec<PathBuf> =
        std::fs::read_dir(fixtures()).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    cases.sort();
    assert!(cases.len() >= 20, "fixtures missing: {cases:?}");
    for case in cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let want = in_memory(&case).unwrap();
        for run_acks in [1, 3, 1 << 20] {
            assert_eq!(streamed(&case, run_acks).unwrap(), want, "{name}, runs of {run_acks}");
        }
        let dir = scratch(&name);
        common::convert(&case, &dir);
        assert_eq!(streamed(&dir, 2).unwrap(), want, "{name}, compact form");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn bad_input_is_the_same_error_and_a_bad_temporary_folder_is_the_machines() {
    let dir = scratch("bad");
    common::convert(&fixtures().join("divergent"), &dir);
    std::fs::copy(fixtures().join("divergent/history.jsonl"), dir.join("history.jsonl")).unwrap();
    std::fs::remove_file(dir.join("history.bin")).unwrap();
    let history = std::fs::read_to_string(dir.join("history.jsonl")).unwrap();
    let cut = history.replacen(r#""type":"ok""#, r#""type":"okay""#, 1);
    std::fs::write(dir.join("history.jsonl"), cut).unwrap();
    let e = in_memory(&dir).unwrap_err();
    assert_eq!(streamed(&dir, 4).unwrap_err(), e);
    std::fs::write(dir.join("history.jsonl"), &history).unwrap();
    // A view out of order.
    std::fs::remove_file(dir.join("recovered/n2.bin")).unwrap();
    std::fs::write(dir.join("recovered/n2.jsonl"), "{\"seq\":5,\"id\":\"0-0\"}\n{\"seq\":4,\"id\":\"0-1\"}\n").unwrap();
    let e = in_memory(&dir).unwrap_err();
    assert!(e.contains("n2.jsonl:2: out of order"), "{e}");
    assert_eq!(streamed(&dir, 4).unwrap_err(), e);
    std::fs::copy(fixtures().join("divergent/recovered/n2.jsonl"), dir.join("recovered/n2.jsonl")).unwrap();
    assert_eq!(streamed(&dir, 4), in_memory(&dir));

    // TMPDIR that is not a folder: an environment error naming it.
    let not_a_folder = dir.join("scenario.resolved.toml");
    let (plan, config) = jetsam_checkers::load::plan_run(&dir, &Overrides::default()).unwrap();
    let options = StreamOptions { tmp_parent: Some(not_a_folder.clone()), ..StreamOptions::default() };
    let e = stream::check_plan(&plan, &config, &options).unwrap_err();
    assert_eq!(e.exit_code(), jetsam_core::exit::ENVIRONMENT);
    assert!(e.to_string().contains(&not_a_folder.display().to_string()), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// What a random op becomes.
#[derive(Debug, Clone, Copy)]
enum Fate {
    Ok(u64),
    Fail,
    Info,
    Open,
}

/// What a view holds at a sequence.
#[derive(Debug, Clone)]
enum Pick {
    Op(Index),
    Stranger(u8),
    NeverInvoked(u8),
}

/// Sequences a view sets, each to what it holds there.
type Edits = Vec<(u64, Pick)>;

#[derive(Debug, Clone)]
struct Case {
    /// Per op: client, counter step, fate, completions delayed by this many invokes.
    ops: Vec<(u32, u64, Fate, usize)>,
    /// Per node: start from the acknowledged writes at their sequences?, then
    /// drop these sequences and set these (sequence, pick).
    nodes: Vec<(bool, Vec<u64>, Edits)>,
    offline: Vec<bool>,
    cluster: Option<Edits>,
}

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![
        6 => any::<Index>().prop_map(Pick::Op),
        1 => (0u8..4).prop_map(Pick::Stranger),
        1 => (0u8..4).prop_map(Pick::NeverInvoked),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    let fate = prop_oneof![
        8 => (1u64..60).prop_map(Fate::Ok),
        1 => Just(Fate::Fail),
        1 => Just(Fate::Info),
        1 => Just(Fate::Open),
    ];
    let op = (0u32..4, 1u64..3, fate, 0usize..4);
    let edits = || proptest::collection::vec((1u64..64, pick()), 0..6);
    let node = (any::<bool>(), proptest::collection::vec(1u64..64, 0..6), edits());
    (
        proptest::collection::vec(op, 0..50),
        proptest::collection::vec(node, 1..5),
        proptest::collection::vec(any::<bool>(), 5),
        proptest::option::of(edits()),
    )
        .prop_map(|(ops, nodes, offline, cluster)| Case { ops, nodes, offline, cluster })
}

/// Writes the case as a run folder (JSON lines, no scenario: every node
/// with a file is judged, strong mode).
fn write_case(c: &Case, dir: &Path) {
    let mut next: BTreeMap<u32, u64> = BTreeMap::new();
    let mut ids = Vec::new();
    let mut lines = Vec::new();
    let mut pending: Vec<(usize, OpId, Fate)> = Vec::new();
    let mut acked: BTreeMap<u64, OpId> = BTreeMap::new();
    let mut t = 0u64;
    let mut complete = |id: OpId, fate: Fate, t: u64, lines: &mut Vec<String>| {
        let op = match fate {
            Fate::Ok(seq) => {
                acked.entry(seq).or_insert(id);
                Op::ok(t, id, seq, "n1")
            }
            Fate::Fail => Op::fail(t, id, "no"),
            Fate::Info => Op::info(t, id, "timeout"),
            Fate::Open => return,
        };
        lines.push(serde_json::to_string(&op).unwrap());
    };
    for (i, (client, step, fate, delay)) in c.ops.iter().enumerate() {
        let counter = next.entry(*client).or_insert(0);
        let id = OpId { client: *client, counter: *counter };
        *counter += step;
        ids.push(id);
        t += 1;
        lines.push(serde_json::to_string(&Op::invoke(t, id)).unwrap());
        pending.push((i + delay, id, *fate));
        // Completions in the order they fall due: acks out of sequence order.
        while let Some(k) = pending.iter().position(|(due, _, _)| *due <= i) {
            let (_, id, fate) = pending.remove(k);
            t += 1;
            complete(id, fate, t, &mut lines);
        }
    }
    for (_, id, fate) in std::mem::take(&mut pending) {
        t += 1;
        complete(id, fate, t, &mut lines);
    }
    std::fs::write(dir.join("history.jsonl"), lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    let text = |p: &Pick| match p {
        Pick::Op(i) if !ids.is_empty() => ids[i.index(ids.len())].to_string(),
        Pick::Op(_) => "9-9".to_string(),
        Pick::Stranger(k) => format!("garbage{k}"),
        Pick::NeverInvoked(k) => format!("{}-{}", 7 + u32::from(*k % 2), k),
    };
    let view = |base: bool, drop: &[u64], set: &[(u64, Pick)]| {
        let mut held: BTreeMap<u64, String> =
            if base { acked.iter().map(|(s, id)| (*s, id.to_string())).collect() } else { BTreeMap::new() };
        for s in drop {
            held.remove(s);
        }
        for (s, p) in set {
            held.insert(*s, text(p));
        }
        held.iter().map(|(s, id)| format!("{{\"seq\":{s},\"id\":\"{id}\"}}\n")).collect::<String>()
    };
    for (n, (base, drop, set)) in c.nodes.iter().enumerate() {
        let name = format!("n{}", n + 1);
        std::fs::write(dir.join(format!("recovered/{name}.jsonl")), view(*base, drop, set)).unwrap();
        if c.offline[n] {
            std::fs::write(dir.join(format!("recovered/{name}.offline")), "read offline\n").unwrap();
        }
    }
    if let Some(set) = &c.cluster {
        std::fs::write(dir.join("recovered/cluster.jsonl"), view(true, &[], set)).unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn random_runs_stream_to_the_same_report(c in case(), run_acks in 1usize..6) {
        let dir = scratch("prop");
        write_case(&c, &dir);
        let want = in_memory(&dir);
        let got = streamed(&dir, run_acks);
        std::fs::remove_dir_all(&dir).unwrap();
        prop_assert_eq!(got, want);
    }
}
