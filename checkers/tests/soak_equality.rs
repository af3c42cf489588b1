//! The compact checker (issue 17) against the checker it replaced: a
//! generated run folder of 20,000 writes by 8 pipelined clients over 3
//! nodes, with two loss windows after power losses, a node missing 500
//! writes (divergent), two swapped messages on another (conflicts and
//! seq-mismatch), a stranger, a duplicate and failed / indeterminate writes,
//! checks to exactly the report.json that the previous checker (main at
//! 309ca9f, before the compact structures) wrote for the same folder
//! (`tests/soak_equality.report.json`), in the JSON-lines form and in the
//! compact form.
//!
//! To regenerate the expected report with another checker binary:
//! `JETSAM_SOAK_FOLDER=/tmp/soak cargo test -p jetsam-checkers --test soak_equality`
//! only writes the JSON-lines folder there; then `jetsam check /tmp/soak`
//! and copy its report.json.

use jetsam_checkers::{Overrides, check, load_run};
use jetsam_core::compact::{CompactId, HistoryEncoder, RecoveredEncoder};
use jetsam_core::history::{OpId, OpType};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

const WRITES: u64 = 20_000;
const CLIENTS: u64 = 8;
const IN_FLIGHT: u64 = 3;
const NODES: u64 = 3;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Fate {
    Ok,
    Fail,
    InfoWritten,
    InfoLost,
}

fn fate(i: u64) -> Fate {
    if i % 97 == 5 {
        Fate::Fail
    } else if i % 89 == 7 {
        Fate::InfoWritten
    } else if i % 83 == 11 {
        Fate::InfoLost
    } else {
        Fate::Ok
    }
}

fn id(i: u64) -> OpId {
    OpId { client: (i % CLIENTS) as u32, counter: i / CLIENTS }
}

/// One history line: (t_ns, type, write, seq, node, error).
type Line = (u64, OpType, u64, Option<u64>, Option<&'static str>, Option<&'static str>);

/// The history lines and every node's messages (seq, id text).
fn generate() -> (Vec<Line>, Vec<Vec<(u64, String)>>) {
    let mut lines = Vec::new();
    let mut stream: Vec<u64> = Vec::new();
    let mut t = 0u64;
    let mut complete = |i: u64, t: u64, lines: &mut Vec<Line>| match fate(i) {
        Fate::Ok => {
            stream.push(i);
            lines.push((t, OpType::Ok, i, Some(stream.len() as u64), Some("n1"), None));
        }
        Fate::Fail => lines.push((t, OpType::Fail, i, None, None, Some("no responders"))),
        f => {
            if f == Fate::InfoWritten {
                stream.push(i);
            }
            lines.push((t, OpType::Info, i, None, None, Some("timeout")));
        }
    };
    for i in 0..WRITES {
        t += 1_000;
        lines.push((t, OpType::Invoke, i, None, None, None));
        if i >= CLIENTS * IN_FLIGHT {
            complete(i - CLIENTS * IN_FLIGHT, t, &mut lines);
        }
    }
    for i in WRITES - CLIENTS * IN_FLIGHT..WRITES {
        t += 1_000;
        complete(i, t, &mut lines);
    }
    let lost_everywhere = |pos: usize| (3000..3040).contains(&pos) || (12000..12010).contains(&pos);
    let mut nodes = Vec::new();
    for n in 1..=NODES {
        let mut msgs: Vec<(u64, String)> = Vec::new();
        for (pos, i) in stream.iter().enumerate() {
            if lost_everywhere(pos) || (n == 3 && (8000..8500).contains(&pos)) {
                continue;
            }
            // n2 holds the messages at positions 15000 and 15001 swapped.
            let i = match (n, pos) {
                (2, 15000) => stream[15001],
                (2, 15001) => stream[15000],
                _ => *i,
            };
            msgs.push((pos as u64 + 1, id(i).to_string()));
        }
        let next = stream.len() as u64 + 1;
        match n {
            1 => {
                msgs.push((next, "x-1".to_string()));
                // Write 5 failed (5 % 97 == 5), yet n1 holds it.
                assert!(fate(5) == Fate::Fail);
                msgs.push((next + 1, id(5).to_string()));
            }
            2 => msgs.push((next + 5, id(stream[10]).to_string())),
            _ => {}
        }
        nodes.push(msgs);
    }
    (lines, nodes)
}

fn write_folder(dir: &Path, compact: bool) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir.join("recovered")).unwrap();
    let (lines, nodes) = generate();
    let file = |name: &str| BufWriter::new(File::create(dir.join(name)).unwrap());
    if compact {
        let mut e = HistoryEncoder::new(file("history.bin")).unwrap();
        for (t, kind, i, seq, node, error) in &lines {
            e.push_parts(*t, *kind, id(*i), *seq, *node, *error).unwrap();
        }
        e.finish().unwrap().flush().unwrap();
        for (n, msgs) in nodes.iter().enumerate() {
            let mut e = RecoveredEncoder::new(file(&format!("recovered/n{}.bin", n + 1))).unwrap();
            for (seq, text) in msgs {
                let parsed = text.parse::<OpId>();
                e.push_id(*seq, parsed.map_or(CompactId::Text(text), CompactId::Op)).unwrap();
            }
            e.finish().unwrap().flush().unwrap();
        }
    } else {
        let mut h = file("history.jsonl");
        for (t, kind, i, seq, node, error) in &lines {
            let op = jetsam_core::history::Op {
                t_ns: *t,
                client: id(*i).client,
                kind: *kind,
                id: id(*i).to_string(),
                seq: *seq,
                node: node.map(str::to_string),
                error: error.map(str::to_string),
            };
            writeln!(h, "{}", serde_json::to_string(&op).unwrap()).unwrap();
        }
        h.flush().unwrap();
        for (n, msgs) in nodes.iter().enumerate() {
            let mut f = file(&format!("recovered/n{}.jsonl", n + 1));
            for (seq, text) in msgs {
                writeln!(f, r#"{{"seq":{seq},"id":"{text}"}}"#).unwrap();
            }
            f.flush().unwrap();
        }
    }
    let mut events = file("events.jsonl");
    // Power losses right after the writes of each loss window were acked.
    for t in [3_200_000, 12_500_000] {
        writeln!(events, r#"{{"t_ns":{t},"kind":"power-loss","nodes":["n1","n2","n3"]}}"#).unwrap();
    }
    events.flush().unwrap();
    std::fs::write(
        dir.join("scenario.resolved.toml"),
        "format_version = 1\nname = \"soak-equality\"\nnodes = 3\nduration = \"60s\"\nseed = 1\n\n[stream]\nreplicas = 3\nconsistency = \"strong\"\nsync = \"always\"\n",
    )
    .unwrap();
}

fn report(dir: &Path) -> serde_json::Value {
    let (input, config) = load_run(dir, &Overrides::default()).unwrap();
    serde_json::to_value(check(&input, &config)).unwrap()
}

#[test]
fn compact_checker_reports_what_the_previous_checker_reported() {
    if let Some(dir) = std::env::var_os("JETSAM_SOAK_FOLDER") {
        // Writing the folder for another checker to check; nothing to compare.
        write_folder(Path::new(&dir), false);
        return;
    }
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/soak_equality.report.json"))
            .unwrap(),
    )
    .unwrap();
    // The folder really has every finding the test is about.
    for key in ["lost", "divergent", "loss_windows", "seq_mismatch", "unexpected", "duplicated", "resurrected"] {
        let v = &expected[key];
        let some = v.as_u64().is_some_and(|n| n > 0)
            || v.as_bool() == Some(true)
            || v.as_array().is_some_and(|a| !a.is_empty())
            || v["count"].as_u64().is_some_and(|n| n > 0);
        assert!(some, "expected report has no {key}: {v}");
    }
    for compact in [false, true] {
        let dir = std::env::temp_dir().join(format!("jetsam-soak-equality-{}-{compact}", std::process::id()));
        write_folder(&dir, compact);
        assert_eq!(report(&dir), expected, "compact form: {compact}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
