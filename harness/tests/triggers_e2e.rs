//! Event-triggered faults end to end on the reference node: a power loss on
//! n1's 40th data-file fsync, a kill of the leader after the 2,000th ack, a
//! pause 200 ms after the leader moved, and a line whose event never comes
//! (a skipped injection, not a silent pass). Every firing is in
//! events.jsonl with what triggered it, and replaying the resolved scenario
//! fires the same triggers.

use jetsam_core::event::{Event, EventKind};
use jetsam_core::report::{Report, Verdict};
use std::path::Path;
use std::process::Command;

const SCENARIO: &str = r#"name = "triggers-e2e"
nodes = 3
duration = "6s"
seed = 11

[stream]
replicas = 3
consistency = "strong"
sync = "always"

[workload]
clients = 3
rate = 1000

[[faults]]
kind = "power-loss"
targets = ["n1"]
on = "fsync:n1:40"
heal_after = "1s"

[[faults]]
kind = "kill"
targets = "leader"
on = "acks:2000"
heal_after = "1s"

[[faults]]
kind = "pause"
targets = "one"
on = "leader-change"
delay = "200ms"
heal_after = "500ms"

[[faults]]
kind = "kill"
targets = "one"
on = "acks:100000000"
"#;

fn run(scenario: &Path, out: &Path) {
    let status = Command::new(env!("CARGO_BIN_EXE_jetsam"))
        .arg("run")
        .arg(scenario)
        .arg("--out")
        .arg(out)
        .env("CI", "1")
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0), "the run passes");
}

fn events(dir: &Path) -> Vec<Event> {
    let text = std::fs::read_to_string(dir.join("events.jsonl")).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn triggered(events: &[Event]) -> Vec<&Event> {
    events.iter().filter(|e| e.kind != EventKind::Warning && e.details.contains_key("trigger")).collect()
}

fn ns(e: &Event, key: &str) -> u64 {
    e.details[key].as_u64().unwrap_or_else(|| panic!("{key} in {e:?}"))
}

#[test]
fn faults_fire_on_events_and_replay_fires_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("triggers.toml");
    std::fs::write(&file, SCENARIO).unwrap();
    let first = dir.path().join("first");
    run(&file, &first);
    let report: Report = serde_json::from_str(&std::fs::read_to_string(first.join("report.json")).unwrap()).unwrap();
    assert_eq!(report.verdict, Verdict::Pass, "{:?}", report.reasons);

    let all = events(&first);
    let fired = triggered(&all);
    assert_eq!(fired.len(), 3, "three lines fired: {fired:?}");
    let power = fired.iter().find(|e| e.kind == EventKind::PowerLoss).expect("the power loss fired");
    assert_eq!(power.nodes, ["n1"]);
    assert_eq!(power.details["trigger"], "fsync:n1:40");
    assert_eq!(ns(power, "fsync_count"), 40);
    assert!(power.details["fsync_file"].as_str().unwrap().starts_with("log/"), "{power:?}");
    assert_eq!(ns(power, "planned_ns"), ns(power, "triggered_ns"), "no delay: injected when seen");

    let kill = fired.iter().find(|e| e.kind == EventKind::Kill).expect("the kill fired");
    assert_eq!(kill.details["trigger"], "acks:2000");
    let acked = ns(kill, "acked");
    assert!((2000..2300).contains(&acked), "fired within a few polls of the 2,000th ack: {acked}");
    assert_eq!(kill.details["selector"], "leader");

    let pause = fired.iter().find(|e| e.kind == EventKind::Pause).expect("the pause fired");
    assert_eq!(pause.details["trigger"], "leader-change");
    assert_eq!(ns(pause, "planned_ns") - ns(pause, "triggered_ns"), 200_000_000, "the 200 ms delay");
    // The leader moves when the power loss or the kill hits it, not before.
    let first_fault_ns = ns(power, "triggered_ns").min(ns(kill, "triggered_ns"));
    assert!(ns(pause, "triggered_ns") > first_fault_ns, "the leader moved only after a fault: {pause:?}");
    assert!(pause.details["leader_to"].is_string(), "the new leader is named: {pause:?}");

    let never: Vec<&Event> = all
        .iter()
        .filter(|e| e.kind == EventKind::Warning && e.details.get("trigger").is_some_and(|t| t == "acks:100000000"))
        .collect();
    assert_eq!(never.len(), 1, "the line whose event never came is a skipped injection: {all:?}");
    assert!(never[0].details["message"].as_str().unwrap().contains("never happened"));

    // The replay command reruns the resolved scenario: the same lines fire on the same events.
    let second = dir.path().join("second");
    run(&first.join("scenario.resolved.toml"), &second);
    let again = events(&second);
    let summary = |evs: &[&Event]| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> =
            evs.iter().map(|e| (format!("{:?}", e.kind), e.details["trigger"].as_str().unwrap().to_string())).collect();
        v.sort();
        v
    };
    assert_eq!(summary(&triggered(&again)), summary(&fired));
    let power_again = triggered(&again).into_iter().find(|e| e.kind == EventKind::PowerLoss).unwrap();
    assert_eq!(ns(power_again, "fsync_count"), 40);
}
