//! `restart = false` and protocol 2's `failover` end to end through the
//! `jetsam` binary, on a stand-in system that needs only python3
//! (tests/fixtures/failover-adapter: each node is a sleeping process, the
//! adapter keeps each node's copy in its data dir). n1, the primary, is
//! killed at 1 s and kept down: no heal may restart it, the controller must
//! call `failover` with n1 down before it waits for convergence, and the
//! verdict rests on n2 and n3 (n1 unreadable, nothing lost).

use jetsam_core::event::{Event, EventKind};
use jetsam_core::report::{Report, Verdict};
use std::path::Path;
use std::process::Command;

const SCENARIO: &str = r#"name = "keep-down-failover"
nodes = 3
duration = "3s"

[target]
kind = "adapter"
file = "FIXTURE"

[stream]
replicas = 3
consistency = "strong"
sync = "always"

[workload]
clients = 2
timeout = "2s"

[[faults]]
kind = "kill"
targets = ["n1"]
at = ["1s"]
heal_after = "500ms"
restart = false
"#;

fn events(run: &Path) -> Vec<Event> {
    std::fs::read_to_string(run.join("events.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_kept_down_primary_is_not_restarted_and_the_adapter_fails_over() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/failover-adapter/target.toml");
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("keep.toml");
    std::fs::write(&scenario, SCENARIO.replace("FIXTURE", &fixture.display().to_string())).unwrap();
    let run = dir.path().join("run");
    let out = Command::new(env!("CARGO_BIN_EXE_jetsam"))
        .arg("run")
        .arg(&scenario)
        .args(["--seed", "1", "--keep-data", "--out"])
        .arg(&run)
        .env("CI", "1")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{text}");

    let events = events(&run);
    let kill = events.iter().find(|e| e.kind == EventKind::Kill).expect("n1 was killed");
    assert_eq!(kill.nodes, ["n1"]);
    assert_eq!(kill.details.get("restart"), Some(&serde_json::json!(false)), "{kill:?}");
    let restarts: Vec<&Event> =
        events.iter().filter(|e| e.kind == EventKind::Restart && e.nodes.contains(&"n1".to_string())).collect();
    assert!(restarts.is_empty(), "a kept-down node is never restarted: {restarts:?}");
    let failover = events.iter().find(|e| e.kind == EventKind::Failover).expect("a failover event");
    assert_eq!(failover.nodes, ["n1"], "failover names the kept-down node");
    assert_eq!(failover.details.get("leader"), Some(&serde_json::json!("n2")));
    assert!(failover.t_ns > kill.t_ns);
    // The adapter itself saw the request, with n1 down.
    let called = std::fs::read_to_string(run.join("data/failover-called")).unwrap();
    assert_eq!(called, "[\"n1\"]\n");

    let report: Report = serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap()).unwrap();
    assert_eq!(report.verdict, Verdict::Pass, "{text}");
    assert!(report.acked > 0, "{text}");
    assert_eq!(report.lost, 0);
    assert!(report.nodes["n1"].unreadable, "n1 is down, not read: {:?}", report.nodes["n1"]);
    assert!(
        report.nodes["n1"].unreadable_reason.as_deref().is_some_and(|r| r.contains("restart = false")),
        "{:?}",
        report.nodes["n1"]
    );
    for n in ["n2", "n3"] {
        assert!(!report.nodes[n].unreadable, "{n} is read");
    }
    assert!(!report.divergent);
}
