//! `jetsam run` when every node refuses to start (issue 13, item 7):
//! `scenarios/bitflip-log-all-offline.toml` flips bits in every node's log
//! while it is down, so no node restarts and none can be read live. The
//! harness reads each node's files offline (`jetsam-node read-offline`) and
//! the verdict is decided (fail here: bit rot on every replica loses what
//! followed the damage), not `unknown`; each node's report names the file
//! and offset where its read stopped, at the record holding its first
//! flipped bit; `jetsam check` on the folder agrees. (The pass case, every
//! node's `meta` flipped and its log intact, is in the CI suite:
//! `run_e2e.rs`.)
//!
//! Needs the workspace binaries built first (`cargo build --workspace --bins`).

use jetsam_core::event::{Event, EventKind};
use jetsam_core::report::{ReadMode, Report, Verdict};
use std::path::Path;
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn report(dir: &Path) -> Report {
    serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap()
}

/// The first number after `key` in `text`.
fn number_after(text: &str, key: &str) -> u64 {
    let rest = &text[text.find(key).unwrap_or_else(|| panic!("{key:?} in {text}")) + key.len()..];
    rest.chars().take_while(char::is_ascii_digit).collect::<String>().parse().unwrap()
}

#[test]
fn every_node_refusing_to_start_is_read_offline_and_the_verdict_is_decided() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("run");
    let result = Command::new(env!("CARGO_BIN_EXE_jetsam"))
        .env("CI", "1")
        .arg("run")
        .arg(repo().join("scenarios/bitflip-log-all-offline.toml"))
        .args(["--seed", "1", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&result.stdout);
    let r = report(&dir);
    assert_eq!(result.status.code(), Some(1), "decided, not unknown (3): {stdout}");
    assert_eq!(r.verdict, Verdict::Fail, "{:?}", r.reasons);
    assert!(r.lost > 0 && r.acked > r.lost, "{r:?}");
    assert!(r.reasons.iter().any(|x| x.starts_with("read offline")), "{:?}", r.reasons);
    assert!(!dir.join("recovered/cluster.jsonl").exists(), "no leader, no cluster view");

    let events: Vec<Event> = std::fs::read_to_string(dir.join("events.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for (name, n) in &r.nodes {
        assert_eq!(n.read, Some(ReadMode::Offline), "{name}: {n:?}");
        let note = n.read_note.as_deref().unwrap();
        // (Whether the note also says the node "exited on its own" depends
        // on timing: the convergence wait ends when the first node exits,
        // and a node still starting then is stopped by the harness.)
        assert!(note.contains("stopped at corrupt data in log/"), "{note}");
        let log = std::fs::read_to_string(dir.join(format!("nodes/{name}.log"))).unwrap();
        assert!(log.contains("failed to recover: corrupt data in"), "{name} refused its log: {log}");
        // The read stopped at the record holding the node's first flipped
        // bit: at or before it, within one record (64-byte payloads).
        let first_flip = events
            .iter()
            .filter(|e| e.kind == EventKind::Bitflip && e.nodes == [name.as_str()])
            .map(|e| e.details["offset"].as_u64().unwrap())
            .min()
            .unwrap_or_else(|| panic!("{name} was flipped"));
        let stopped = number_after(note, "at offset ");
        assert!(stopped <= first_flip && first_flip - stopped < 1024, "{name}: stopped {stopped}, flip {first_flip}");
        assert_eq!(n.held, number_after(note, "; the "), "{name}: the note counts what was read: {note}");
        let held = std::fs::read_to_string(dir.join(format!("recovered/{name}.jsonl"))).unwrap();
        assert_eq!(held.lines().count() as u64, n.held);
    }

    // The run folder re-checks to the same verdict.
    let check = Command::new(env!("CARGO_BIN_EXE_jetsam")).arg("check").arg(&dir).output().unwrap();
    assert_eq!(check.status.code(), Some(1), "{}", String::from_utf8_lossy(&check.stdout));
    let again = report(&dir);
    assert_eq!((again.verdict, again.lost, &again.nodes), (r.verdict, r.lost, &r.nodes));
}
