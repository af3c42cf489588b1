//! `jetsam run` rejects every bad scenario before anything starts: exit 2,
//! an error naming the file, the line of the offending key and the fix, and
//! no run folder written.

use std::process::Command;

const GOOD: &str = r#"name = "t"
nodes = 3
duration = "5s"

[stream]
replicas = 3
consistency = "strong"
sync = "always"

[workload]
clients = 2

[[faults]]
kind = "kill"
targets = "one"
every = "2s"
"#;

/// Runs `jetsam run` on `text` and returns (exit code, stderr); asserts that no run folder was created.
fn run(text: &str, extra: &[&str]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, text).unwrap();
    let out_dir = dir.path().join("out");
    let out = Command::new(env!("CARGO_BIN_EXE_jetsam"))
        .arg("run")
        .arg(&file)
        .arg("--out")
        .arg(&out_dir)
        .args(extra)
        .env("CI", "1")
        .output()
        .unwrap();
    assert!(!out_dir.exists(), "a rejected scenario must not create its run folder");
    (out.status.code().unwrap(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn each_invalid_scenario_names_its_line_and_fix_and_exits_2() {
    // (what is wrong, the edit to GOOD, expected fragments of the error)
    let cases: &[(&str, (&str, &str), &[&str])] = &[
        (
            "unknown top-level key",
            ("nodes = 3", "nodes = 3\ncolour = \"red\""),
            &[":3:", "unknown key \"colour\"", "fix: remove"],
        ),
        (
            "unknown key in a fault",
            ("every = \"2s\"", "every = \"2s\"\nsevirity = 3"),
            &[
                ":17:",
                "unknown key \"sevirity\"",
                "fix: a kill fault takes kind, targets, every or at, heal_after and restart",
            ],
        ),
        ("bad value type", ("nodes = 3", "nodes = \"three\""), &["line 2", "invalid type"]),
        ("bad duration", ("duration = \"5s\"", "duration = \"5 parsecs\""), &["line 3", "invalid duration"]),
        ("duration without unit", ("duration = \"5s\"", "duration = \"5\""), &["missing unit"]),
        (
            "async with replicas 3",
            ("consistency = \"strong\"", "consistency = \"async\""),
            &[":7:", "async", "fix:", "replicas = 1"],
        ),
        (
            "unknown fault kind",
            ("kind = \"kill\"", "kind = \"meteor\""),
            &[":14:", "unknown fault kind \"meteor\"", "fix: use one of: kill, pause"],
        ),
        ("unknown selector", ("targets = \"one\"", "targets = \"some\""), &[":15:", "unknown targets \"some\""]),
        (
            "unknown node name",
            ("targets = \"one\"", "targets = [\"n7\"]"),
            &[":15:", "unknown node \"n7\"", "n1, n2, n3"],
        ),
        ("replicas above nodes", ("replicas = 3", "replicas = 4"), &[":6:", "stream.replicas = 4"]),
        ("node count the node target cannot run", ("nodes = 3", "nodes = 4"), &["1, 3 or 5"]),
        ("zero rate", ("clients = 2", "clients = 2\nrate = 0"), &[":12:", "rate = 0"]),
        ("every and at", ("every = \"2s\"", "every = \"2s\"\nat = [\"1s\"]"), &[":16:", "both every and at"]),
        ("at after the end", ("every = \"2s\"", "at = [\"9s\"]"), &[":16:", "not before the end"]),
        (
            "unknown bug",
            ("[stream]", "[target]\nbug = \"gremlins\"\n\n[stream]"),
            &[":6:", "unknown node bug", "ack-before-write"],
        ),
        (
            "repair on NATS",
            ("[stream]", "[target]\nkind = \"nats\"\nrepair = true\n\n[stream]"),
            &[":7:", "target.repair is a reference-node option", "fix: remove target.repair"],
        ),
        (
            "repair with trust-corrupt-log",
            ("[stream]", "[target]\nbug = \"trust-corrupt-log\"\nrepair = true\n\n[stream]"),
            &[":7:", "are alternatives", "fix: remove target.repair or target.bug"],
        ),
        (
            "power-loss keep_fraction out of range",
            ("kind = \"kill\"", "kind = \"power-loss\"\nkeep_fraction = 2.5"),
            &[":15:", "keep_fraction", "fix: set one of"],
        ),
        (
            "restart on a fault kind that cannot keep a node down",
            ("kind = \"kill\"", "kind = \"pause\"\nrestart = false"),
            &[":15:", "faults[0] (pause): restart applies only to kill and power-loss faults", "fix: remove restart"],
        ),
        (
            "restart that is not a boolean",
            ("every = \"2s\"", "every = \"2s\"\nrestart = \"no\""),
            &[":17:", "restart = \"no\" is not true or false", "fix: write restart = false"],
        ),
        (
            "restart = false with every",
            ("every = \"2s\"", "every = \"2s\"\nrestart = false"),
            &[":17:", "each interval would take one more node down", "fix: give fixed times"],
        ),
        (
            "two discard models",
            ("kind = \"kill\"", "kind = \"power-loss\"\nkeep_fraction = 0.5\ndiscard = \"all\""),
            &["more than one of discard"],
        ),
        (
            "unknown partition shape",
            ("kind = \"kill\"", "kind = \"partition\"\nshape = \"donut\""),
            &[":15:", "donut", "isolate-one"],
        ),
        (
            "partition with a selector word",
            ("kind = \"kill\"\ntargets = \"one\"", "kind = \"partition\"\ntargets = \"all\""),
            &[":15:", "does not apply", "shape"],
        ),
        ("unknown io-error mode", ("kind = \"kill\"", "kind = \"io-error\"\nmode = \"meh\""), &[":15:", "eio"]),
        ("zero bits", ("kind = \"kill\"", "kind = \"bitflip\"\nbits = 0"), &[":15:", "bits = 0"]),
        (
            "an option of another kind",
            ("kind = \"kill\"", "kind = \"truncate\"\nbits = 3"),
            &[":15:", "unknown key \"bits\""],
        ),
        ("bad sync", ("sync = \"always\"", "sync = \"sometimes\""), &[":8:", "stream.sync"]),
        ("unknown event", ("every = \"2s\"", "on = \"commit:5\""), &[":16:", "unknown event \"commit:5\"", "acks:K"]),
        ("on and every", ("every = \"2s\"", "every = \"2s\"\non = \"acks:5\""), &[":16:", "both on and every"]),
        ("zero acks", ("every = \"2s\"", "on = \"acks:0\""), &[":16:", "at least 1"]),
        ("event on an unknown node", ("every = \"2s\"", "on = \"fsync:n9:40\""), &[":16:", "unknown node \"n9\""]),
        (
            "two fsync triggers on one node",
            ("every = \"2s\"", "on = \"fsync:n2:4\"\n[[faults]]\nkind = \"pause\"\non = \"fsync:n2:9\""),
            &[":19:", "a second fsync trigger on n2"],
        ),
        ("delay without on", ("every = \"2s\"", "every = \"2s\"\ndelay = \"1s\""), &[":17:", "delay without on"]),
        (
            "delay past the end",
            ("every = \"2s\"", "on = \"acks:5\"\ndelay = \"9s\""),
            &[":17:", "not shorter than the run"],
        ),
    ];
    for (what, (from, to), fragments) in cases {
        assert!(GOOD.contains(from), "{what}: the edit must apply");
        let text = GOOD.replacen(from, to, 1);
        let (code, stderr) = run(&text, &[]);
        assert_eq!(code, 2, "{what}: exit code; stderr: {stderr}");
        assert!(stderr.contains("bad.toml"), "{what}: the error names the file: {stderr}");
        for f in *fragments {
            assert!(stderr.contains(f), "{what}: expected {f:?} in: {stderr}");
        }
    }
}

#[test]
fn bad_command_line_overrides_exit_2() {
    let (code, stderr) = run(GOOD, &["--duration", "soon"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("invalid duration"), "{stderr}");
    let (code, stderr) = run(GOOD, &["--seed", "18446744073709551615"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("below 2^63"), "{stderr}");
    let (code, stderr) = run(GOOD, &["--duration", "0s"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("duration"), "{stderr}");
}

#[test]
fn a_missing_scenario_file_exits_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_jetsam")).args(["run", "/nonexistent/x.toml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("failed to read scenario /nonexistent/x.toml"));
}

/// Environment errors exit 4 and say what to do.
fn run_env(bin: &str) -> (i32, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("good.toml");
    std::fs::write(&file, GOOD).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_jetsam"))
        .arg("run")
        .arg(&file)
        .arg("--out")
        .arg(dir.path().join("out"))
        .env("CI", "1")
        .env("JETSAM_NODE_BIN", bin)
        .output()
        .unwrap();
    (out.status.code().unwrap(), String::from_utf8_lossy(&out.stderr).into_owned(), dir)
}

#[test]
fn a_missing_node_binary_exits_4() {
    let (code, stderr, _dir) = run_env("/nonexistent/jetsam-node");
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("jetsam-node binary") && stderr.contains("cargo build"), "{stderr}");
}

#[test]
fn a_node_that_dies_at_start_exits_4_without_waiting_out_the_ready_timeout() {
    let started = std::time::Instant::now();
    let (code, stderr, dir) = run_env("/bin/false");
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("exited before the cluster was ready"), "{stderr}");
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "gave up only after {:?}", started.elapsed());
    // The run folder stays for inspection, with the node's log.
    assert!(dir.path().join("out/nodes").is_dir());
}

#[test]
fn a_non_empty_out_folder_is_refused_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("good.toml");
    std::fs::write(&file, GOOD).unwrap();
    std::fs::write(dir.path().join("keep.txt"), "mine").unwrap();
    let out =
        Command::new(env!("CARGO_BIN_EXE_jetsam")).arg("run").arg(&file).arg("--out").arg(dir.path()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not empty") && stderr.contains("choose a new or empty folder"), "{stderr}");
    assert_eq!(std::fs::read_to_string(dir.path().join("keep.txt")).unwrap(), "mine");
}

/// `behind` needs a target that reports each node's position: the adapter
/// protocol has no such request, so an adapter scenario using it is refused.
#[test]
fn an_event_the_target_cannot_see_is_refused() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../targets/redis/target.toml");
    let text = GOOD
        .replacen("nodes = 3", "nodes = 1", 1)
        .replacen("replicas = 3", "replicas = 1", 1)
        .replacen("consistency = \"strong\"\nsync = \"always\"", "", 1)
        .replacen("targets = \"one\"\nevery = \"2s\"", "targets = \"one\"\non = \"behind:n1:100\"", 1)
        + &format!("\n[target]\nkind = \"adapter\"\nfile = \"{file}\"\n");
    let (code, stderr) = run(&text, &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("target kind \"adapter\" cannot see the event behind:n1:100"), "{stderr}");
    assert!(stderr.contains("bad.toml:"), "names the line: {stderr}");
}
