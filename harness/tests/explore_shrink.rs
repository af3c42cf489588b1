//! `jetsam explore` and `jetsam shrink` end to end on the reference node
//! with its ack-before-fsync bug (issue 14): exploring a palette (no
//! hand-set times) of kills, pauses and power losses of all nodes
//! finds a failing run (a coordinated power loss loses the acknowledged,
//! unsynced tail everywhere; the shipped `scenarios/explore/` palette of
//! every fault kind finds subtler, more timing-dependent failures, measured
//! in docs/explore.md rather than gated here), writes each drawn scenario and explore.jsonl and prints the
//! replay command last; shrinking that run writes a scenario with no more
//! injections than the run had, fixed times and `expect = "fail"`, which
//! fails again when replayed. Bounded: at most 12 explore runs, a 60 s
//! shrink budget with three replays per candidate. (Single-node faults
//! made the found run fail on some replays only: the shrink then refused
//! to start, a flaky test; measured in docs/explore.md instead.)
//!
//! Needs the workspace binaries built first (`scripts/test.sh` does
//! `cargo build --workspace --bins`).

use jetsam_core::scenario::Scenario;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn jetsam(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jetsam"))
        .current_dir(repo())
        .env("CI", "1")
        .args(args)
        .output()
        .expect("jetsam runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn explore_finds_the_ack_before_fsync_bug_and_shrink_cuts_it_down() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("explore");
    let palette = d.path().join("palette.toml");
    std::fs::write(
        &palette,
        "name = \"explore-test\"\nnodes = 3\nduration = \"6s\"\n[target]\nbug = \"ack-before-fsync\"\n\
         [stream]\nreplicas = 3\nsync = \"always\"\n[explore]\nfaults = [1, 3]\n\
         kinds = [\"kill\", \"pause\", \"power-loss\"]\ntargets = [\"all\"]\nheal_after = [\"500ms\", \"1500ms\"]\n",
    )
    .unwrap();
    let o = jetsam(&[
        "explore",
        palette.to_str().unwrap(),
        "--runs",
        "12",
        "--jobs",
        "2",
        "--seed",
        "7",
        "--out",
        out.to_str().unwrap(),
    ]);
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "a failing run is found:\n{text}{}", String::from_utf8_lossy(&o.stderr));
    let last = text.lines().last().unwrap();
    assert!(last.starts_with("replay: jetsam run ") && last.contains("/runs/run-"), "{last}");
    let index = std::fs::read_to_string(out.join("explore.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = index.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let failed: Vec<&serde_json::Value> = lines.iter().filter(|l| l["verdict"] == "fail").collect();
    assert!(!failed.is_empty() && lines.len() <= 12, "{index}");
    let run_dir = failed[0]["run_dir"].as_str().unwrap().to_string();
    let drawn = std::fs::read_to_string(failed[0]["scenario"].as_str().unwrap()).unwrap();
    let drawn = Scenario::from_toml_str("drawn", &drawn).unwrap();
    assert!(drawn.faults.iter().all(|f| f.every.is_none() && f.at.len() == 1), "fixed times: {drawn:?}");

    let shrunk = d.path().join("shrunk.toml");
    // Three replays per candidate: the found run itself must fail again before
    // shrinking starts, and one coordinated power loss in a few passes
    // (whether the unsynced tail is lost depends on the next election).
    let o = jetsam(&["shrink", &run_dir, "--repeat", "3", "--budget", "60s", "--out", shrunk.to_str().unwrap()]);
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&o.stderr));
    assert!(text.lines().last().unwrap().starts_with("replay: jetsam run "), "{text}");
    let written = std::fs::read_to_string(&shrunk).unwrap();
    assert!(written.starts_with("# Shrunk by jetsam shrink from "), "{written}");
    let best = Scenario::from_toml_str("shrunk", &written).unwrap();
    assert!(best.faults.len() <= drawn.faults.len() && !best.faults.is_empty(), "{written}");
    assert!(best.duration <= drawn.duration);
    assert_eq!(best.check.expect, Some(jetsam_core::scenario::Expect::Fail));

    // Timing decides a real system's failure: it must fail again in at least one of 3 replays.
    let seed = best.seed.unwrap().to_string();
    let replays: Vec<Option<i32>> = (0..3)
        .map(|_| {
            jetsam(&[
                "run",
                shrunk.to_str().unwrap(),
                "--seed",
                &seed,
                "--out",
                d.path().join("replay").to_str().unwrap(),
            ])
            .status
            .code()
        })
        .take_while(|code| {
            let _ = std::fs::remove_dir_all(d.path().join("replay"));
            *code != Some(1)
        })
        .collect();
    assert!(replays.len() < 3, "the shrunk scenario fails on replay: codes {replays:?}");
}
