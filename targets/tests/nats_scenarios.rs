//! Every scenario in scenarios/nats/ passes the NATS target's validation
//! and says what it expects, and the async R3 variant of one is rejected as
//! nats-server would reject it. The faults' kind-specific options (such as
//! the power-loss model's `writeback_after`) are the controller's to
//! validate (`jetsam run` checks them before anything starts).

use jetsam_core::report::Mode;
use jetsam_core::scenario::Scenario;
use jetsam_targets::nats::validate_scenario;
use std::path::PathBuf;

/// Parses a scenario file with the scenario schema; returns it and its fault count.
fn parse(file: &std::path::Path) -> (Scenario, usize) {
    let text = std::fs::read_to_string(file).unwrap();
    let scenario = Scenario::from_toml_str(&file.display().to_string(), &text).unwrap();
    let faults = scenario.faults.len();
    (scenario, faults)
}

fn scenario_files() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios/nats");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn nats_scenarios_parse_and_validate() {
    let files = scenario_files();
    assert!(files.len() >= 3, "{files:?}");
    for file in files {
        let (scenario, faults) = parse(&file);
        assert!(faults > 0, "{} injects at least one fault", file.display());
        validate_scenario(&scenario).unwrap_or_else(|e| panic!("{}: {e:?}", file.display()));
        assert!(scenario.check.expect.is_some(), "{} says what it expects", file.display());
        assert_eq!(scenario.target.kind, "nats", "{}", file.display());
    }
}

#[test]
fn nats_async_scenario_with_three_replicas_is_rejected() {
    let file = scenario_files().into_iter().find(|f| f.ends_with("power-loss-async-r1.toml")).unwrap();
    let (mut scenario, _) = parse(&file);
    assert_eq!(scenario.stream.mode(), Mode::Async);
    scenario.nodes = 3;
    scenario.stream.replicas = 3;
    let (message, _) = validate_scenario(&scenario).unwrap_err();
    assert!(message.contains("10052"), "{message}");
}

#[test]
fn nats_takes_fewer_replicas_than_nodes_up_to_five() {
    let file = scenario_files().into_iter().find(|f| f.ends_with("power-loss-all-sync-always.toml")).unwrap();
    let (mut scenario, _) = parse(&file);
    let mut shape = |nodes: u32, replicas: u32| {
        scenario.nodes = nodes;
        scenario.stream.replicas = replicas;
        validate_scenario(&scenario).map_err(|(message, _)| message)
    };
    assert_eq!(shape(5, 3), Ok(()));
    assert_eq!(shape(5, 1), Ok(()));
    assert_eq!(shape(3, 3), Ok(()));
    assert!(shape(3, 5).unwrap_err().contains("stream.replicas = 5 but nodes = 3"));
    assert!(shape(7, 6).unwrap_err().contains("above JetStream's maximum of 5"));
    assert!(shape(5, 0).unwrap_err().contains("at least 1"));
    // async stays R1-only, on any number of nodes.
    scenario.stream.consistency = Some(Mode::Async);
    let mut shape = |nodes: u32, replicas: u32| {
        scenario.nodes = nodes;
        scenario.stream.replicas = replicas;
        validate_scenario(&scenario).map_err(|(message, _)| message)
    };
    assert_eq!(shape(3, 1), Ok(()));
    assert!(shape(5, 3).unwrap_err().contains("10052"));
}
