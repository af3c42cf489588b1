//! `jetsam compact` end to end: every checker fixture checks to the same
//! report after compaction, with no JSON lines left and every other file as
//! it was; a malformed line leaves the folder byte for byte as it was (exit
//! 2); a half-done folder (both forms, same content) is finished and one
//! whose forms differ is refused; the durability audit and report.html read
//! a compacted folder as they read its JSON lines.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../checkers/tests/fixtures")
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

fn scratch(case: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixtures().join(case), dir.path());
    dir
}

fn jetsam(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jetsam")).args(args).output().expect("the jetsam binary runs")
}

fn run(cmd: &str, dir: &Path) -> Output {
    jetsam(&[cmd, dir.to_str().unwrap()])
}

fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

/// Every file under `dir` (dotfiles included) with its bytes.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.insert(path.strip_prefix(dir).unwrap().to_path_buf(), std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

/// `jetsam check --json`: the exit code and the report.
fn check(dir: &Path) -> (Option<i32>, String) {
    let o = jetsam(&["check", dir.to_str().unwrap(), "--json"]);
    (o.status.code(), text(&o.stdout))
}

fn compact_ok(dir: &Path) -> String {
    let o = run("compact", dir);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    text(&o.stdout)
}

fn is_converted(path: &Path) -> bool {
    let name = path.to_string_lossy();
    name == "history.jsonl"
        || name == "history.bin"
        || (name.starts_with("recovered/") && name.ends_with(".bin"))
        || (name.starts_with("recovered/") && name.ends_with(".jsonl"))
}

#[test]
fn every_fixture_checks_the_same_after_compaction() {
    let mut cases: Vec<String> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    cases.sort();
    assert!(cases.len() >= 20, "fixtures missing: {cases:?}");
    for case in cases {
        let dir = scratch(&case);
        let before = check(dir.path());
        let kept: BTreeMap<_, _> = files(dir.path()).into_iter().filter(|(p, _)| !is_converted(p)).collect();
        let out = compact_ok(dir.path());
        assert!(out.contains("history.jsonl") && out.contains("total"), "{case}: {out}");
        let after = files(dir.path());
        assert!(after.contains_key(Path::new("history.bin")), "{case}");
        let jsonl: Vec<_> = after.keys().filter(|p| is_converted(p) && p.extension().unwrap() == "jsonl").collect();
        assert!(jsonl.is_empty(), "{case}: JSON lines left: {jsonl:?}");
        let rest: BTreeMap<_, _> = after.into_iter().filter(|(p, _)| !is_converted(p)).collect();
        assert_eq!(rest, kept, "{case}: every other file stays as it was");
        assert_eq!(check(dir.path()), before, "{case}: the report changed");
        // Already compact: nothing to do, nothing changes.
        let compacted = files(dir.path());
        assert!(compact_ok(dir.path()).contains("already compact"), "{case}");
        assert_eq!(files(dir.path()), compacted, "{case}");
    }
}

#[test]
fn a_malformed_line_changes_nothing() {
    for (file, line, bad, named) in [
        ("history.jsonl", 3, "{oops", "history.jsonl:3: key must be a string"),
        ("recovered/n3.jsonl", 2, r#"{"seq":1,"id":"0-1"}"#, "n3.jsonl:2: out of order"),
        ("recovered/n2.jsonl", 1, r#"{"seq":1,"id":"0-0","x":1}"#, "n2.jsonl:1: unknown field `x`"),
    ] {
        let dir = scratch("divergent");
        let path = dir.path().join(file);
        let mut lines: Vec<String> = std::fs::read_to_string(&path).unwrap().lines().map(str::to_string).collect();
        lines[line - 1] = bad.to_string();
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        let before = files(dir.path());
        let o = run("compact", dir.path());
        assert_eq!(o.status.code(), Some(2), "{file}: {}", text(&o.stderr));
        let err = text(&o.stderr);
        assert!(err.contains(named) && err.contains("nothing was changed"), "{file}: {err}");
        assert_eq!(files(dir.path()), before, "{file}: the folder changed");
    }
    let o = jetsam(&["compact", "/nonexistent/run"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("no such folder"), "{}", text(&o.stderr));
    let empty = tempfile::tempdir().unwrap();
    let o = run("compact", empty.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("neither history.jsonl nor history.bin"), "{}", text(&o.stderr));
}

/// A folder as a compaction leaves it when it stops between renaming the
/// `.bin` files into place and removing the `.jsonl` files.
fn half_done(case: &str) -> tempfile::TempDir {
    let done = scratch(case);
    compact_ok(done.path());
    let dir = scratch(case);
    for file in ["history.bin", "recovered/n2.bin"] {
        std::fs::copy(done.path().join(file), dir.path().join(file)).unwrap();
    }
    dir
}

#[test]
fn a_half_done_folder_is_finished_and_one_whose_forms_differ_is_refused() {
    let want = check(scratch("cluster-view-lost").path());
    let dir = half_done("cluster-view-lost");
    let (code, _) = check(dir.path());
    assert_eq!(code, Some(2), "check refuses both forms");
    let err = text(&run("check", dir.path()).stderr);
    assert!(err.contains("if `jetsam compact` stopped half-way, run it again to finish"), "{err}");
    let out = compact_ok(dir.path());
    assert_eq!(out.matches("(its .bin was already there: finished)").count(), 2, "{out}");
    assert!(out.contains("recovered/cluster.jsonl"), "{out}");
    assert!(!dir.path().join("history.jsonl").exists() && !dir.path().join("recovered/n2.jsonl").exists());
    assert_eq!(check(dir.path()), want);

    // Another id at a sequence, or another acking node: both forms are
    // valid, so which one is right cannot be told. Nothing changes.
    for (file, from, to, what) in [
        ("recovered/n2.jsonl", r#""seq":2,"id":"1-0""#, r#""seq":2,"id":"9-9""#, r#"line 2 is seq 2 id "9-9""#),
        ("history.jsonl", r#""node":"n1""#, r#""node":"n3""#, r#""node":"n3"}, record"#),
    ] {
        let dir = half_done("cluster-view-lost");
        let path = dir.path().join(file);
        let original = std::fs::read_to_string(&path).unwrap();
        assert!(original.contains(from), "{file}");
        std::fs::write(&path, original.replacen(from, to, 1)).unwrap();
        let before = files(dir.path());
        let o = run("compact", dir.path());
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains("exist and differ") && err.contains(what), "{err}");
        assert_eq!(files(dir.path()), before, "{file}: the folder changed");
    }
}

/// Audit records for every node of a history: each write is written at
/// its invoke + 1 ns; every other one is synced before its ack, the rest
/// only 1 ms after it.
fn audit_logs(dir: &Path) {
    let history = std::fs::read_to_string(dir.join("history.jsonl")).unwrap();
    let mut invoked = BTreeMap::new();
    let mut log = String::new();
    for (k, line) in history.lines().enumerate() {
        let op: serde_json::Value = serde_json::from_str(line).unwrap();
        let (t, id) = (op["t_ns"].as_u64().unwrap(), op["id"].as_str().unwrap().to_string());
        match op["type"].as_str().unwrap() {
            "invoke" => {
                invoked.insert(id, t);
                log.push_str(&format!("w {} data\n", t + 1));
            }
            "ok" => {
                let i = invoked[&id];
                let (start, end) = if k % 2 == 0 { (i + 2, t - 1) } else { (t + 1_000_000, t + 2_000_000) };
                log.push_str(&format!("s {start} {end} data\n"));
            }
            _ => {}
        }
    }
    std::fs::create_dir_all(dir.join("audit")).unwrap();
    for node in ["n1", "n2", "n3"] {
        std::fs::write(dir.join(format!("audit/{node}.log")), &log).unwrap();
    }
}

#[test]
fn the_audit_and_report_html_read_a_compacted_folder() {
    let dir = scratch("coordinated-power-loss");
    audit_logs(dir.path());
    let (code, before) = check(dir.path());
    let report: serde_json::Value = serde_json::from_str(&before).unwrap();
    let audit = &report["audit"];
    assert!(audit["acks_checked"].as_u64().unwrap() > 2, "{audit}");
    assert!(audit["acks_at_risk"].as_u64().unwrap() > 0, "{audit}");
    let o = run("report", dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(html.contains("class=\"loss-window\""));

    compact_ok(dir.path());
    assert!(dir.path().join("audit/n1.log").is_file() && !dir.path().join("history.jsonl").exists());
    assert_eq!(check(dir.path()), (code, before), "the audit reads history.bin as it read history.jsonl");
    std::fs::remove_file(dir.path().join("report.html")).unwrap();
    let o = run("report", dir.path());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(std::fs::read_to_string(dir.path().join("report.html")).unwrap(), html);
}
