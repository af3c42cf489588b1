//! `jetsam check` end to end: the binary on copies of the checker fixtures
//! and on deliberately broken run folders. Exit codes: 0 pass, 1 fail,
//! 2 bad input (with the file and line named), 3 unknown.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../checkers/tests/fixtures").join(case)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// A scratch copy of a fixture (the check writes report.json into it).
fn scratch(case: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture(case), dir.path());
    dir
}

fn jetsam(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jetsam")).args(args).output().expect("the jetsam binary runs")
}

fn check(dir: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["check", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    jetsam(&args)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn report(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap()
}

#[test]
fn exit_codes_follow_the_verdict_and_report_json_is_written() {
    for (case, code, verdict) in
        [("pass-strong", 0, "pass"), ("lost-strong", 1, "fail"), ("unknown-minority", 3, "unknown")]
    {
        let dir = scratch(case);
        let out = check(dir.path(), &[]);
        assert_eq!(out.status.code(), Some(code), "{case}: {}", stderr(&out));
        assert!(stdout(&out).starts_with(&format!("verdict: {}", verdict.to_uppercase())), "{}", stdout(&out));
        let r = report(dir.path());
        assert_eq!(r["verdict"], verdict);
        for key in ["verdict", "mode", "acked", "lost", "divergent", "loss_windows", "nodes"] {
            assert!(r.get(key).is_some(), "report.json lacks {key}");
        }
    }
}

#[test]
fn json_flag_prints_the_report() {
    let dir = scratch("lost-strong");
    let out = check(dir.path(), &["--json"]);
    assert_eq!(out.status.code(), Some(1));
    let printed: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(printed, report(dir.path()));
    assert_eq!(printed["lost"], 2);
    assert_eq!(printed["lost_sample"], serde_json::json!(["0-2", "0-3"]));
}

#[test]
fn flags_override_the_scenario_and_stand_in_for_it() {
    // async-over fails with the scenario's bound (1s + 1s slack) and passes
    // with a wider one.
    let dir = scratch("async-over");
    assert_eq!(check(dir.path(), &[]).status.code(), Some(1));
    assert_eq!(check(dir.path(), &["--window-bound", "3s"]).status.code(), Some(0));
    assert_eq!(report(dir.path())["window_bound_ns"], 3_000_000_000u64);
    assert_eq!(check(dir.path(), &["--mode", "strong"]).status.code(), Some(1));

    // Without a scenario, the nodes are the read-back files present; naming
    // a third node that has no file makes it unreadable.
    let dir = scratch("majority-pass");
    std::fs::remove_file(dir.path().join("scenario.resolved.toml")).unwrap();
    std::fs::remove_file(dir.path().join("recovered/n3.unreadable")).unwrap();
    let out = check(dir.path(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(report(dir.path())["nodes"].as_object().unwrap().len(), 2);
    let out = check(dir.path(), &["--nodes", "n1,n2,n3"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(report(dir.path())["nodes"]["n3"]["unreadable_reason"], "no read-back file");
    let out = check(dir.path(), &["--nodes", "n1,n2,n3,n4,n5"]);
    assert_eq!(out.status.code(), Some(3), "2 of 5 readable is no majority");
}

#[test]
fn a_latency_written_by_jetsam_run_survives_a_recheck() {
    let dir = scratch("pass-strong");
    assert_eq!(check(dir.path(), &[]).status.code(), Some(0));
    let mut r = report(dir.path());
    assert_eq!(r["latency"], serde_json::Value::Null);
    r["latency"] = serde_json::json!({"p50_us": 10, "p90_us": 20, "p99_us": 30, "max_us": 40});
    std::fs::write(dir.path().join("report.json"), r.to_string()).unwrap();
    let out = check(dir.path(), &[]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(report(dir.path())["latency"]["p99_us"], 30);
    assert!(stdout(&out).contains("ack latency: p50 10us"), "{}", stdout(&out));
}

/// Breaks one file of a passing run folder and expects exit 2 with the
/// file, the line and the problem named.
fn expect_bad_input(file: &str, edit: impl FnOnce(String) -> String, want: &[&str]) {
    let dir = scratch("pass-strong");
    let path = dir.path().join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    std::fs::write(&path, edit(text)).unwrap();
    let out = check(dir.path(), &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{file}: {err}");
    for w in want {
        assert!(err.contains(w), "{file}: {err:?} lacks {w:?}");
    }
    assert!(!dir.path().join("report.json").exists(), "no report for bad input");
}

fn replace_line(text: &str, line: usize, new: &str) -> String {
    let mut lines: Vec<&str> = text.lines().collect();
    lines[line - 1] = new;
    lines.join("\n") + "\n"
}

#[test]
fn malformed_files_are_bad_input_naming_file_and_line() {
    // Truncated last line (a writer that died mid-line).
    expect_bad_input(
        "history.jsonl",
        |t| t.trim_end()[..t.trim_end().len() - 5].to_string(),
        &["history.jsonl:17:", "EOF"],
    );
    // Not JSON.
    expect_bad_input("history.jsonl", |t| replace_line(&t, 3, "{oops"), &["history.jsonl:3:", "key must be a string"]);
    // Unknown type.
    expect_bad_input(
        "history.jsonl",
        |t| replace_line(&t, 2, r#"{"t_ns":50000000,"client":0,"type":"maybe","id":"0-0"}"#),
        &["history.jsonl:2:", "unknown variant `maybe`"],
    );
    // Missing field.
    expect_bad_input(
        "history.jsonl",
        |t| replace_line(&t, 1, r#"{"t_ns":0,"type":"invoke","id":"0-0"}"#),
        &["history.jsonl:1:", "missing field `client`"],
    );
    // An ok without its seq.
    expect_bad_input(
        "history.jsonl",
        |t| replace_line(&t, 2, r#"{"t_ns":50000000,"client":0,"type":"ok","id":"0-0","node":"n1"}"#),
        &["history.jsonl:2:", "an ok needs both seq and node"],
    );
    // Time going backwards.
    expect_bad_input(
        "history.jsonl",
        |t| replace_line(&t, 4, r#"{"t_ns":1,"client":1,"type":"ok","id":"1-0","seq":2,"node":"n1"}"#),
        &["history.jsonl:4:", "out of order"],
    );
    // A completion of something never invoked.
    expect_bad_input(
        "history.jsonl",
        |t| t + r#"{"t_ns":900000000,"client":5,"type":"ok","id":"5-0","seq":9,"node":"n1"}"# + "\n",
        &["history.jsonl:18:", "no open invoke"],
    );
    // An empty line.
    expect_bad_input("history.jsonl", |t| replace_line(&t, 5, ""), &["history.jsonl:5:", "empty line"]);
    // Recovered: out of order, unknown field, bad JSON.
    expect_bad_input(
        "recovered/n2.jsonl",
        |t| replace_line(&t, 3, r#"{"seq":1,"id":"0-1"}"#),
        &["n2.jsonl:3:", "out of order"],
    );
    expect_bad_input(
        "recovered/n1.jsonl",
        |t| replace_line(&t, 1, r#"{"seq":1,"id":"0-0","payload":"x"}"#),
        &["n1.jsonl:1:", "unknown field `payload`"],
    );
    expect_bad_input("recovered/n3.jsonl", |t| replace_line(&t, 6, r#"{"seq":6,"id":}"#), &["n3.jsonl:6:"]);
    // Events: unknown kind, out of order.
    expect_bad_input(
        "events.jsonl",
        |t| t + r#"{"t_ns":1000000000,"kind":"meteor","nodes":[]}"# + "\n",
        &["events.jsonl:3:", "unknown variant `meteor`"],
    );
    expect_bad_input(
        "events.jsonl",
        |t| t + r#"{"t_ns":1,"kind":"heal","nodes":[]}"# + "\n",
        &["events.jsonl:3:", "out of order"],
    );
    // Scenario that does not parse.
    expect_bad_input("scenario.resolved.toml", |t| t + "bogus = 1\n", &["scenario.resolved.toml", "bogus"]);
    // A read-back file of a node that is not in the run.
    expect_bad_input(
        "recovered/n9.jsonl",
        |_| r#"{"seq":1,"id":"0-0"}"#.to_string() + "\n",
        &["recovered/n9.jsonl", "belongs to no node"],
    );
    // A node both read and unreadable.
    expect_bad_input("recovered/n1.unreadable", |_| "timed out\n".to_string(), &["n1.jsonl", "n1.unreadable", "both"]);
    // A node marked as read offline without its read-back.
    let dir = scratch("pass-strong");
    std::fs::rename(dir.path().join("recovered/n1.jsonl"), dir.path().join("recovered/n1.offline")).unwrap();
    let out = check(dir.path(), &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("recovered/n1.offline") && stderr(&out).contains("n1.jsonl is missing"));
    // Bytes that are not UTF-8, on line 2.
    let dir = scratch("pass-strong");
    let mut bytes = b"{\"seq\":1,\"id\":\"0-0\"}\n{\"seq\":2,\"id\":\"".to_vec();
    bytes.extend_from_slice(&[0xff, 0xfe]);
    bytes.extend_from_slice(b"\"}\n");
    std::fs::write(dir.path().join("recovered/n1.jsonl"), bytes).unwrap();
    let out = check(dir.path(), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("n1.jsonl:2: not UTF-8"), "{}", stderr(&out));
    // The cluster view is validated like a node's file.
    expect_bad_input(
        "recovered/cluster.jsonl",
        |_| "{\"seq\":2,\"id\":\"0-0\"}\n{\"seq\":2,\"id\":\"1-0\"}\n".to_string(),
        &["cluster.jsonl:2:", "out of order"],
    );
    // Missing history.
    let dir = scratch("pass-strong");
    std::fs::remove_file(dir.path().join("history.jsonl")).unwrap();
    let out = check(dir.path(), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("history.jsonl is missing"), "{}", stderr(&out));
}

#[test]
fn usage_errors_are_bad_input() {
    let out = jetsam(&["check", "/nonexistent/run/folder"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no such folder"), "{}", stderr(&out));
    let dir = scratch("pass-strong");
    for bad in [&["--mode", "eventual"][..], &["--window-bound", "5"][..], &["--nodes", "n1,n1"][..]] {
        let out = check(dir.path(), bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", stderr(&out));
    }
}

#[test]
fn the_bundled_examples_give_their_documented_verdicts() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    for (case, code, lost) in [("run-pass", 0, 0), ("run-lost", 1, 3)] {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&root.join(case), dir.path());
        let out = check(dir.path(), &[]);
        assert_eq!(out.status.code(), Some(code), "{case}: {}", stderr(&out));
        assert_eq!(report(dir.path())["lost"], lost);
        // The committed report.json is what the check writes.
        let committed: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(root.join(case).join("report.json")).unwrap()).unwrap();
        assert_eq!(report(dir.path()), committed, "{case}: examples/{case}/report.json is stale");
    }
}

#[test]
fn edge_folders_are_judged_not_guessed() {
    // No scenario, no read-back at all: no node to stand on, so unknown.
    let dir = scratch("pass-strong");
    std::fs::remove_file(dir.path().join("scenario.resolved.toml")).unwrap();
    std::fs::remove_dir_all(dir.path().join("recovered")).unwrap();
    let out = check(dir.path(), &[]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    // An empty .unreadable file still makes the node unreadable, with a
    // reason that says so.
    let dir = scratch("majority-pass");
    std::fs::write(dir.path().join("recovered/n3.unreadable"), "").unwrap();
    assert_eq!(check(dir.path(), &[]).status.code(), Some(0));
    assert_eq!(report(dir.path())["nodes"]["n3"]["unreadable_reason"], "no reason given (empty .unreadable file)");
    // No events file: still checked, windows tied to nothing.
    let dir = scratch("lost-strong");
    std::fs::remove_file(dir.path().join("events.jsonl")).unwrap();
    assert_eq!(check(dir.path(), &[]).status.code(), Some(1));
    assert_eq!(report(dir.path())["loss_windows"][0]["event"], serde_json::Value::Null);
}

#[test]
fn both_engines_write_the_same_report_and_a_bad_engine_or_tmpdir_is_named() {
    for case in ["divergent", "seq-mismatch", "offline-mixed", "cluster-view-lost"] {
        let dir = scratch(case);
        let memory = check(dir.path(), &["--engine", "memory"]);
        let want = report(dir.path());
        let stream = check(dir.path(), &["--engine", "stream"]);
        assert_eq!(stream.status.code(), memory.status.code(), "{case}: {}", stderr(&stream));
        assert_eq!(stdout(&stream), stdout(&memory), "{case}");
        assert_eq!(report(dir.path()), want, "{case}");
    }
    let dir = scratch("pass-strong");
    let out = check(dir.path(), &["--engine", "fast"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("unknown engine \"fast\": auto, memory or stream"), "{}", stderr(&out));
    // The streaming engine's temporary folder cannot be made: the machine's
    // problem (exit 4), named.
    let out = Command::new(env!("CARGO_BIN_EXE_jetsam"))
        .args(["check", dir.path().to_str().unwrap(), "--engine", "stream"])
        .env("TMPDIR", "/nonexistent-jetsam-tmp")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("/nonexistent-jetsam-tmp") && stderr(&out).contains("set TMPDIR"),
        "{}",
        stderr(&out)
    );
}
