//! `jetsam suite --shard I/N --out DIR` and `jetsam merge` end to end: a
//! small suite (two short runs on the reference node, one that must fail,
//! and a broken scenario file) split in two, each shard running only its
//! scenarios and writing its suite.jsonl, and the merge giving the same
//! scenarios, verdicts and exit code as the unsharded suite, with one JUnit
//! file. A merge that lacks a shard is refused.
//!
//! Needs the workspace binaries built first (`scripts/test.sh` does
//! `cargo build --workspace --bins`).

use std::path::Path;
use std::process::{Command, Output};

fn jetsam(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jetsam")).env("CI", "1").args(args).output().expect("jetsam runs")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// (status word, scenario name, verdict) of each scenario line, in order.
fn results(o: &Output) -> Vec<(String, String, String)> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| ["ok  ", "FAIL", "ERR "].iter().any(|p| l.starts_with(p)))
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w[0].to_string(), w[1].to_string(), if w[2] == "verdict" { w[3].to_string() } else { "-".into() })
        })
        .collect()
}

fn write_suite(dir: &Path) {
    let run = |name: &str, bug: &str, expect: &str| {
        format!(
            "name = \"{name}\"\nnodes = 1\nduration = \"1s\"\n[target]\n{bug}[stream]\nreplicas = 1\nsync = \"always\"\n\
             [workload]\nclients = 2\n[check]\nexpect = \"{expect}\"\n"
        )
    };
    std::fs::write(dir.join("a-pass.toml"), run("a-pass", "", "pass")).unwrap();
    // Expects fail but nothing breaks it: the verdict differs from the expect.
    std::fs::write(dir.join("b-expect-fail.toml"), run("b-expect-fail", "", "fail")).unwrap();
    std::fs::write(dir.join("c-broken.toml"), "name = \"c-broken\"\nnodes = 0\n").unwrap();
}

#[test]
fn shards_run_disjoint_parts_and_merge_into_the_whole_suite() {
    let d = tempfile::tempdir().unwrap();
    let suite = d.path().join("mini");
    std::fs::create_dir(&suite).unwrap();
    write_suite(&suite);
    let s = suite.to_str().unwrap();
    let path = |name: &str| d.path().join(name).to_str().unwrap().to_string();

    let whole = jetsam(&["suite", s, "--out", &path("whole")]);
    // A broken scenario file outranks a differing verdict: exit 2.
    assert_eq!(whole.status.code(), Some(2), "{}", text(&whole));
    let expected = results(&whole);
    assert_eq!(expected.len(), 3, "{}", text(&whole));

    let one = jetsam(&["suite", s, "--shard", "1/2", "--out", &path("one")]);
    let two = jetsam(&["suite", s, "--shard", "2/2", "--out", &path("two")]);
    assert!(text(&one).contains("shard 1/2 of suite") && text(&one).contains("2 of 3 scenarios"), "{}", text(&one));
    // Name order a, b, c: shard 1 runs a and c, shard 2 runs b.
    let names = |o: &Output| results(o).into_iter().map(|r| r.1).collect::<Vec<_>>();
    assert_eq!(names(&one), ["a-pass", "c-broken"]);
    assert_eq!(names(&two), ["b-expect-fail"]);
    assert_eq!(one.status.code(), Some(2));
    assert_eq!(two.status.code(), Some(1), "{}", text(&two));

    let junit = path("merged.xml");
    let merged = jetsam(&["merge", &path("two"), &path("one"), "--junit", &junit]);
    assert_eq!(merged.status.code(), Some(2), "the unsharded suite's exit code: {}", text(&merged));
    assert_eq!(results(&merged), expected, "{}", text(&merged));
    assert!(text(&merged).contains("suite mini (2 shards merged): 3 scenarios, 1 as expected"), "{}", text(&merged));
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("tests=\"3\" failures=\"1\" errors=\"1\""), "{xml}");

    let partial = jetsam(&["merge", &path("one")]);
    assert_eq!(partial.status.code(), Some(2));
    assert!(text(&partial).contains("shard(s) 2/2 missing"), "{}", text(&partial));
    let bad = jetsam(&["suite", s, "--shard", "3/2"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad).contains("expected I/N"), "{}", text(&bad));
}
