//! `jetsam run` and `jetsam suite` end to end with the reference node: the
//! shipped CI suite matches its expectations and each scenario shows what it
//! exists to prove, from its run folder (report, events, history):
//!
//! - strong + always passes with zero loss under kill and pause, under power
//!   loss of one node and of all nodes, under coordinated power loss mixed
//!   with partitions, and when the leader is isolated (a new leader answers
//!   during the cut);
//! - the deliberate bugs are caught: ack-before-write under kill and
//!   ack-before-fsync under coordinated power loss lose acknowledged writes,
//!   and so does lazy fsync (sync 2m) under power loss;
//! - async R1 with sync 1s loses writes under power loss, in windows within
//!   the bound;
//! - a bit flip on one node of three: the default node fail-stops (read
//!   offline up to the damage) and nothing is lost; with trust-corrupt-log the same
//!   schedule loses acknowledged writes; with `repair = true` the node wipes
//!   its log, does not vote until caught up, and ends holding every
//!   acknowledged write;
//! - a bit flip in every node's term/vote file: no node restarts, each is
//!   read offline, and the verdict is decided (pass).
//!
//! It also checks that the run folder holds the contract files, that the
//! same seed replays the same fault schedule, and that a SIGKILLed
//! controller leaves no node process behind.
//!
//! Needs the workspace binaries built first (`scripts/test.sh` does
//! `cargo build --workspace --bins`).

use jetsam_core::event::{Event, EventKind};
use jetsam_core::history::{HistoryValidator, Op, OpType};
use jetsam_core::report::{ReadMode, Report, Verdict};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn jetsam() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_jetsam"));
    c.env("CI", "1");
    c
}

/// The single run folder under `root/<scenario>/`.
fn run_folder(root: &Path, scenario: &str) -> PathBuf {
    let dirs: Vec<PathBuf> =
        std::fs::read_dir(root.join(scenario)).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    assert_eq!(dirs.len(), 1, "one run folder for {scenario}: {dirs:?}");
    dirs.into_iter().next().unwrap()
}

fn events(dir: &Path) -> Vec<Event> {
    std::fs::read_to_string(dir.join("events.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn report(dir: &Path) -> Report {
    serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap()
}

/// Every line of `history.jsonl`.
fn history(dir: &Path) -> Vec<Op> {
    std::fs::read_to_string(dir.join("history.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A numeric detail of an event.
fn detail_u64(e: &Event, key: &str) -> u64 {
    e.details.get(key).and_then(|v| v.as_u64()).unwrap_or_else(|| panic!("{key} in {e:?}"))
}

/// The scenarios of `scenarios/ci`, one line each in the suite's output.
const CI_SCENARIOS: usize = 12;

/// A temporary folder kept (and its path printed) when the test panics, so
/// the run folders of a failed assertion can be inspected.
struct KeptOnPanic(Option<tempfile::TempDir>);

impl KeptOnPanic {
    fn new() -> Self {
        KeptOnPanic(Some(tempfile::tempdir().unwrap()))
    }
    fn path(&self) -> &Path {
        self.0.as_ref().expect("present until drop").path()
    }
}

impl Drop for KeptOnPanic {
    fn drop(&mut self) {
        let dir = self.0.take().expect("dropped once");
        if std::thread::panicking() {
            eprintln!("run folders kept for inspection: {}", dir.keep().display());
        }
    }
}

#[test]
fn ci_suite_matches_expectations_and_writes_the_run_folders() {
    let out = KeptOnPanic::new();
    let junit = out.path().join("junit.xml");
    let result = jetsam()
        .arg("suite")
        .arg(repo().join("scenarios/ci"))
        .arg("--junit")
        .arg(&junit)
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert_eq!(result.status.code(), Some(0), "stdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&result.stderr));
    let xml = std::fs::read_to_string(&junit).unwrap();
    let counts = format!("tests=\"{CI_SCENARIOS}\" failures=\"0\" errors=\"0\"");
    assert!(xml.contains(&counts), "{xml}");
    let files = std::fs::read_dir(repo().join("scenarios/ci")).unwrap().flatten();
    let toml = files.filter(|e| e.path().extension().is_some_and(|x| x == "toml")).count();
    assert_eq!(toml, CI_SCENARIOS, "CI_SCENARIOS counts every file of scenarios/ci");

    // Passing run: nothing lost, every contract file present, data removed.
    let pass = run_folder(out.path(), "ci-kill-pause-strong");
    let r = report(&pass);
    assert_eq!(r.verdict, Verdict::Pass, "{:?}", r.reasons);
    assert_eq!(r.lost, 0);
    assert!(r.acked > 100, "only {} acked", r.acked);
    assert!(r.latency.is_some(), "report.json carries the latency");
    assert!(!pass.join("data").exists(), "data dirs are removed after a pass");
    for node in ["n1", "n2", "n3"] {
        assert!(pass.join(format!("recovered/{node}.jsonl")).is_file());
        let log = std::fs::read_to_string(pass.join(format!("nodes/{node}.log"))).unwrap();
        assert!(log.contains("=== jetsam: start #1"), "{log}");
    }
    let text = std::fs::read_to_string(pass.join("history.jsonl")).unwrap();
    let mut v = HistoryValidator::new();
    for (i, line) in text.lines().enumerate() {
        let op: Op = serde_json::from_str(line).unwrap();
        v.check(&op).unwrap_or_else(|e| panic!("history line {}: {e}", i + 1));
    }
    assert_eq!(v.open().count(), 0, "every invoke completed");
    let ev = events(&pass);
    let count = |k| ev.iter().filter(|e| e.kind == k).count();
    assert!(count(EventKind::Kill) >= 3 && count(EventKind::Pause) >= 3, "{ev:?}");
    // Every kill is healed by a restart and every pause by a resume, except
    // where a node died on its own (a crash of the system under test, a
    // `warning`): such a node is restarted instead of resumed, and restarted
    // at the final heal.
    let own_exits: Vec<&Event> = ev
        .iter()
        .filter(|e| e.kind == EventKind::Warning && e.details["message"].as_str().unwrap().contains("on its own"))
        .collect();
    if !own_exits.is_empty() {
        eprintln!("nodes died on their own during the run (see their logs): {own_exits:?}");
    }
    let (kills, restarts) = (count(EventKind::Kill), count(EventKind::Restart));
    let (pauses, resumes) = (count(EventKind::Pause), count(EventKind::Resume));
    assert!(restarts >= kills && restarts - kills <= own_exits.len(), "{kills} kills, {restarts} restarts: {ev:?}");
    assert!(resumes <= pauses && pauses - resumes <= own_exits.len(), "{pauses} pauses, {resumes} resumes: {ev:?}");
    assert!(ev.windows(2).all(|w| w[0].t_ns <= w[1].t_ns));
    let resolved = std::fs::read_to_string(pass.join("scenario.resolved.toml")).unwrap();
    assert!(resolved.contains("format_version = 1") && resolved.contains("seed = "), "{resolved}");

    // Failing run (expected): acknowledged writes lost, data kept for inspection.
    let fail = run_folder(out.path(), "ci-ack-before-write-kill");
    let r = report(&fail);
    assert_eq!(r.verdict, Verdict::Fail);
    assert!(r.lost > 0 && !r.loss_windows.is_empty(), "{:?}", r.reasons);
    assert!(fail.join("data/n1").is_dir(), "data dirs are kept after a fail");
    assert!(stdout.contains("ci-ack-before-write-kill") && stdout.contains("expected fail"), "{stdout}");

    // Power loss and partitions: injected, healed, recorded, nothing lost with strong + always.
    let pl = run_folder(out.path(), "ci-power-loss-partition-strong");
    let r = report(&pl);
    assert_eq!(r.verdict, Verdict::Pass, "{:?}", r.reasons);
    let ev = events(&pl);
    let count = |k| ev.iter().filter(|e| e.kind == k).count();
    assert!(count(EventKind::PowerLoss) >= 3, "a coordinated power loss hits all three nodes: {ev:?}");
    assert!(count(EventKind::Partition) >= 2 && count(EventKind::Partition) == count(EventKind::Heal), "{ev:?}");
    for e in ev.iter().filter(|e| e.kind == EventKind::PowerLoss) {
        assert!(e.details.contains_key("bytes_discarded") && e.details.contains_key("files"), "{e:?}");
    }
    for e in ev.iter().filter(|e| e.kind == EventKind::Partition) {
        assert_eq!(e.details["shape"], "isolate-one", "{e:?}");
    }
    // Lazy fsync loses acknowledged writes on power loss.
    let lazy = run_folder(out.path(), "ci-power-loss-lazy-sync");
    let r = report(&lazy);
    assert_eq!(r.verdict, Verdict::Fail);
    assert!(r.lost > 0, "{:?}", r.reasons);

    power_loss_of_one_and_of_all_loses_nothing(&run_folder(out.path(), "ci-power-loss-one-then-all-strong"));
    ack_before_fsync_loses_acked_writes_on_power_loss(&run_folder(out.path(), "ci-ack-before-fsync-power-loss"));
    async_power_loss_loses_writes_within_the_bound(&run_folder(out.path(), "ci-async-r1-power-loss"));
    isolated_leader_is_replaced_and_nothing_is_lost(&run_folder(out.path(), "ci-partition-isolate-leader-strong"));
    bitflipped_node_stops_and_nothing_is_lost(&run_folder(out.path(), "ci-bitflip-one-then-majority-down"));
    trusting_a_corrupt_log_loses_acked_writes(&run_folder(out.path(), "ci-bitflip-trust-corrupt-log"));
    repaired_node_waits_catches_up_and_nothing_is_lost(&run_folder(out.path(), "ci-bitflip-one-repair"));
    nodes_that_refuse_to_start_are_read_offline(&run_folder(out.path(), "ci-bitflip-meta-all-offline"));
}

/// A strong run that passed with nothing lost, no divergence and every node
/// read back holding every acknowledged write.
fn assert_clean_pass(dir: &Path) -> Report {
    let r = report(dir);
    assert_eq!(r.verdict, Verdict::Pass, "{dir:?}: {:?}", r.reasons);
    assert!(r.lost == 0 && !r.divergent && r.seq_mismatch.count == 0, "{dir:?}: {:?}", r.reasons);
    assert!(r.acked > 1000, "{dir:?}: only {} acked", r.acked);
    for (node, n) in &r.nodes {
        assert!(!n.unreadable && n.lost == 0, "{dir:?}: {node} {n:?}");
    }
    r
}

/// Power-loss events grouped by injection: (fault line, planned time) -> nodes hit.
fn power_losses(ev: &[Event]) -> BTreeMap<(u64, u64), BTreeSet<String>> {
    let mut groups: BTreeMap<(u64, u64), BTreeSet<String>> = BTreeMap::new();
    for e in ev.iter().filter(|e| e.kind == EventKind::PowerLoss) {
        assert!(e.details.contains_key("bytes_discarded"), "{e:?}");
        let nodes = groups.entry((detail_u64(e, "fault"), detail_u64(e, "planned_ns"))).or_default();
        nodes.extend(e.nodes.iter().cloned());
    }
    groups
}

fn power_loss_of_one_and_of_all_loses_nothing(dir: &Path) {
    assert_clean_pass(dir);
    let groups = power_losses(&events(dir));
    // Fault line 0 hits one node at 2 s and 6.5 s, line 1 every node at 4 s.
    let ones: Vec<_> = groups.iter().filter(|((fault, _), _)| *fault == 0).collect();
    let alls: Vec<_> = groups.iter().filter(|((fault, _), _)| *fault == 1).collect();
    assert_eq!(ones.len(), 2, "{groups:?}");
    assert!(ones.iter().all(|(_, nodes)| nodes.len() == 1), "{groups:?}");
    assert_eq!(alls.len(), 1, "{groups:?}");
    assert_eq!(alls[0].1.len(), 3, "the coordinated power loss hits every node: {groups:?}");
}

fn ack_before_fsync_loses_acked_writes_on_power_loss(dir: &Path) {
    let r = report(dir);
    assert_eq!(r.verdict, Verdict::Fail, "{:?}", r.reasons);
    assert!(r.lost > 0 && !r.loss_windows.is_empty(), "{:?}", r.reasons);
    let resolved = std::fs::read_to_string(dir.join("scenario.resolved.toml")).unwrap();
    assert!(resolved.contains("ack-before-fsync"), "{resolved}");
    let ev = events(dir);
    let groups = power_losses(&ev);
    assert!(groups.len() >= 2 && groups.values().all(|n| n.len() == 3), "coordinated power losses: {groups:?}");
    let discarded: u64 =
        ev.iter().filter(|e| e.kind == EventKind::PowerLoss).map(|e| detail_u64(e, "bytes_discarded")).sum();
    assert!(discarded > 0, "the bug leaves unsynced acknowledged data for the power loss to discard: {ev:?}");
    // No kill without power loss: the loss comes from discarded pages.
    assert_eq!(ev.iter().filter(|e| e.kind == EventKind::Kill).count(), 0, "{ev:?}");
    // Each window names the whole coordinated power loss, not its first line's node.
    for w in &r.loss_windows {
        let e = w.event.as_ref().expect("tied to a power loss");
        assert_eq!((e.kind, e.nodes.join(",")), (EventKind::PowerLoss, "n1,n2,n3".to_string()), "{w:?}");
    }
    let html = std::fs::read_to_string(dir.join("report.html")).expect("jetsam run writes report.html");
    let injections = ev.iter().filter(|e| e.kind.is_fault()).count();
    assert_eq!(html.matches("class=\"fault-band\"").count(), injections);
    assert_eq!(html.matches("class=\"loss-window\"").count(), r.loss_windows.len());
}

fn async_power_loss_loses_writes_within_the_bound(dir: &Path) {
    let r = report(dir);
    assert_eq!(r.verdict, Verdict::Pass, "{:?}", r.reasons);
    assert_eq!(r.mode, jetsam_core::report::Mode::Async);
    let bound_ns = r.window_bound_ns.expect("async reports its window bound");
    assert_eq!(bound_ns, 1_500_000_000, "check.window_bound of the scenario");
    assert!(r.lost > 0 && !r.loss_windows.is_empty(), "async under power loss must really lose something: {r:?}");
    for w in &r.loss_windows {
        assert!(w.end_ns - w.start_ns <= bound_ns, "window {w:?} longer than {bound_ns} ns");
        let event = w.event.as_ref().unwrap_or_else(|| panic!("window {w:?} has no fault event"));
        assert_eq!(event.kind, EventKind::PowerLoss, "{w:?}");
    }
    assert_eq!(r.loss_windows.iter().map(|w| w.count).sum::<u64>(), r.lost, "every lost write is in a window");
}

fn isolated_leader_is_replaced_and_nothing_is_lost(dir: &Path) {
    assert_clean_pass(dir);
    let ev = events(dir);
    let oks: Vec<Op> = history(dir).into_iter().filter(|o| o.kind == OpType::Ok).collect();
    let cuts: Vec<&Event> = ev.iter().filter(|e| e.kind == EventKind::Partition).collect();
    let heals: Vec<&Event> = ev.iter().filter(|e| e.kind == EventKind::Heal).collect();
    assert_eq!(cuts.len(), 2, "{ev:?}");
    assert_eq!(heals.len(), 2, "{ev:?}");
    for (cut, heal) in cuts.iter().zip(&heals) {
        assert_eq!(cut.details["shape"], "isolate-one", "{cut:?}");
        let groups: Vec<Vec<String>> = serde_json::from_value(cut.details["groups"].clone()).unwrap();
        let alone = groups.iter().find(|g| g.len() == 1).unwrap_or_else(|| panic!("one node alone: {cut:?}"));
        // The isolated node is the leader: it answered most acks of the 500 ms before the cut.
        let mut before: BTreeMap<&str, u64> = BTreeMap::new();
        for o in oks.iter().filter(|o| o.t_ns < cut.t_ns && o.t_ns + 500_000_000 >= cut.t_ns) {
            *before.entry(o.node.as_deref().unwrap()).or_default() += 1;
        }
        let leader = before.iter().max_by_key(|(_, n)| **n).map(|(node, _)| *node);
        assert_eq!(leader, Some(alone[0].as_str()), "the cut isolates the leader: {cut:?}, acks before: {before:?}");
        // A new leader on the majority side acknowledges writes during the cut.
        let during: BTreeSet<&str> = oks
            .iter()
            .filter(|o| o.t_ns > cut.t_ns && o.t_ns < heal.t_ns)
            .filter_map(|o| o.node.as_deref())
            .filter(|n| *n != alone[0])
            .collect();
        assert!(!during.is_empty(), "no node but the isolated {} acked during the cut {cut:?}", alone[0]);
        assert!(heal.t_ns > cut.t_ns);
    }
    let last_heal = heals.last().unwrap().t_ns;
    assert!(oks.iter().filter(|o| o.t_ns > last_heal).count() > 100, "writes go on after the heal");
}

fn bitflipped_node_stops_and_nothing_is_lost(dir: &Path) {
    let r = report(dir);
    assert_eq!(r.verdict, Verdict::Pass, "{:?}", r.reasons);
    assert!(r.lost == 0 && !r.divergent && r.acked > 1000, "{r:?}");
    let flips: Vec<Event> = events(dir).into_iter().filter(|e| e.kind == EventKind::Bitflip).collect();
    assert_eq!(flips.len(), 8, "8 bits flipped: {flips:?}");
    assert!(flips.iter().all(|e| e.nodes == ["n1"] && e.details["file"].as_str().unwrap().starts_with("log/")));
    // The damaged node refused its log instead of serving it; its files
    // were then read offline, up to the first damaged record.
    let n1 = &r.nodes["n1"];
    assert_eq!(n1.read, Some(ReadMode::Offline), "{n1:?}");
    let note = n1.read_note.as_deref().unwrap();
    assert!(note.contains("exited on its own") && note.contains("stopped at corrupt data in log/"), "{n1:?}");
    let log = std::fs::read_to_string(dir.join("nodes/n1.log")).unwrap();
    assert!(log.contains("corrupt data in"), "n1 says why it stopped: {log}");
    for node in ["n2", "n3"] {
        let n = &r.nodes[node];
        assert!(n.read == Some(ReadMode::Normal) && n.lost == 0, "{node}: {n:?}");
    }
}

/// Every node's meta flipped: none restarts, all are read offline (whole
/// logs), and the verdict is decided: pass.
fn nodes_that_refuse_to_start_are_read_offline(dir: &Path) {
    let r = report(dir);
    assert_eq!(r.verdict, Verdict::Pass, "{:?}", r.reasons);
    assert!(r.lost == 0 && r.acked > 1000, "{r:?}");
    let flips: Vec<Event> = events(dir).into_iter().filter(|e| e.kind == EventKind::Bitflip).collect();
    let flipped: BTreeSet<&str> = flips.iter().map(|e| e.nodes[0].as_str()).collect();
    assert_eq!(flipped, BTreeSet::from(["n1", "n2", "n3"]), "{flips:?}");
    assert!(flips.iter().all(|e| e.details["file"] == "meta"), "{flips:?}");
    // A follower may miss the last few writes a majority acked just before
    // the kill (per-node `lost` counts writes absent on that node, which is
    // no loss while another node holds them); the leader holds every one.
    let behind_max = r.acked / 100;
    assert!(r.nodes.values().any(|n| n.lost == 0), "some node (the leader) holds every acked write: {r:?}");
    for (name, n) in &r.nodes {
        assert_eq!(n.read, Some(ReadMode::Offline), "{name}: {n:?}");
        assert!(n.lost <= behind_max, "{name} is at most 1% behind: {n:?}");
        let note = n.read_note.as_deref().unwrap();
        assert!(note.contains("read the whole log") && note.contains("meta (term and vote) is damaged"), "{note}");
        assert!(dir.join(format!("recovered/{name}.offline")).is_file());
        let log = std::fs::read_to_string(dir.join(format!("nodes/{name}.log"))).unwrap();
        assert!(log.contains("corrupt data in") && log.contains("meta"), "{name} says why it stopped: {log}");
    }
}

fn trusting_a_corrupt_log_loses_acked_writes(dir: &Path) {
    let r = report(dir);
    assert_eq!(r.verdict, Verdict::Fail, "{:?}", r.reasons);
    assert!(r.lost > 0 || r.divergent, "{r:?}");
    let flips = events(dir).into_iter().filter(|e| e.kind == EventKind::Bitflip && e.nodes == ["n1"]).count();
    assert_eq!(flips, 8);
    // The bug: n1 kept serving its truncated log, so it was read back.
    assert!(!r.nodes["n1"].unreadable, "{:?}", r.nodes["n1"]);
}

fn repaired_node_waits_catches_up_and_nothing_is_lost(dir: &Path) {
    assert_clean_pass(dir);
    let ev = events(dir);
    assert_eq!(ev.iter().filter(|e| e.kind == EventKind::Bitflip && e.nodes == ["n1"]).count(), 8, "{ev:?}");
    let back = |node: &str| ev.iter().find(|e| e.kind == EventKind::Restart && e.nodes == [node]).unwrap().t_ns;
    // While only the wiped n1 and the stale n3 were up, n1 did not vote, so
    // no leader could form and nothing was acknowledged.
    let (n3_back, n2_back) = (back("n3"), back("n2"));
    let oks = history(dir).into_iter().filter(|o| o.kind == OpType::Ok);
    assert_eq!(oks.filter(|o| o.t_ns > n3_back && o.t_ns < n2_back).count(), 0, "acked with only n1 and n3 up");
    let log = std::fs::read_to_string(dir.join("nodes/n1.log")).unwrap();
    for says in ["corrupt data in", "--repair: removed", "caught up after --repair"] {
        assert!(log.contains(says), "n1's log says {says:?}: {log}");
    }
}

/// (kind, nodes, fault line, planned time) of each injection: what a seed fixes.
fn schedule_of(dir: &Path) -> Vec<(EventKind, Vec<String>, u64, u64)> {
    events(dir)
        .into_iter()
        // Injections only: heals follow from them, and a node that crashes on its
        // own (the system's doing, not the seed's) adds restarts.
        .filter(|e| matches!(e.kind, EventKind::Kill | EventKind::Pause))
        .map(|e| {
            let n = |k: &str| e.details.get(k).and_then(|v| v.as_u64()).unwrap_or_else(|| panic!("{k} in {e:?}"));
            (e.kind, e.nodes.clone(), n("fault"), n("planned_ns"))
        })
        .collect()
}

#[test]
fn the_same_seed_replays_the_same_fault_schedule() {
    let scenario = repo().join("scenarios/ci/kill-pause-strong.toml");
    let out = tempfile::tempdir().unwrap();
    let mut schedules = Vec::new();
    for (i, seed) in ["11", "11", "12"].iter().enumerate() {
        let dir = out.path().join(format!("run{i}"));
        let mut command = jetsam();
        command.arg("run").arg(&scenario).args(["--seed", seed, "--duration", "6s", "--out"]).arg(&dir);
        if i == 1 {
            command.arg("--keep-data");
        }
        let result = command.output().unwrap();
        let stdout = String::from_utf8_lossy(&result.stdout);
        assert_eq!(result.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&result.stderr));
        assert!(
            stdout.contains(&format!("replay: jetsam run {} --seed {seed} --duration 6s", scenario.display())),
            "{stdout}"
        );
        assert_eq!(dir.join("data/n1").is_dir(), i == 1, "data kept only with --keep-data after a pass");
        schedules.push(schedule_of(&dir));
    }
    assert!(schedules[0].len() >= 3, "{:?}", schedules[0]);
    assert_eq!(schedules[0], schedules[1], "same seed, same schedule");
    // Times are fixed by the scenario; targets depend on the seed (checked
    // over many seeds in the schedule unit tests).
    let times = |s: &Vec<(EventKind, Vec<String>, u64, u64)>| s.iter().map(|e| (e.0, e.3)).collect::<Vec<_>>();
    assert_eq!(times(&schedules[0]), times(&schedules[2]));
}

/// Every process whose parent chain reaches `root` (excluding `root`).
fn descendants(root: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let mut p = pid;
        for _ in 0..64 {
            let Some(parent) = ppid(p) else { break };
            if parent == root {
                found.push(pid);
                break;
            }
            if parent <= 1 {
                break;
            }
            p = parent;
        }
    }
    found
}

/// (ppid, pgid) from /proc/<pid>/stat.
fn stat(pid: u32) -> Option<(u32, u32, char)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let mut f = rest.split(' ');
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    let pgid = f.next()?.parse().ok()?;
    Some((ppid, pgid, state))
}

fn ppid(pid: u32) -> Option<u32> {
    stat(pid).map(|s| s.0)
}

/// Kills the controller when the test fails before it does.
struct Controller(Child);

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_sigkilled_controller_leaves_no_node_behind() {
    sigkill_controller("kill-pause-strong.toml", 3);
}

#[test]
fn a_sigkilled_controller_leaves_no_traced_node_or_tracer_behind() {
    // Under jetsam-tracer each node is three processes: the spawned one, the tracer, the node.
    sigkill_controller("power-loss-partition-strong.toml", 9);
}

fn sigkill_controller(scenario: &str, processes: usize) {
    let out = tempfile::tempdir().unwrap();
    let mut controller = Controller(
        jetsam()
            .arg("run")
            .arg(repo().join("scenarios/ci").join(scenario))
            .args(["--seed", "3", "--duration", "60s", "--out"])
            .arg(out.path().join("run"))
            .stdout(Stdio::from(std::fs::File::create(out.path().join("controller.out")).unwrap()))
            .stderr(Stdio::from(std::fs::File::create(out.path().join("controller.err")).unwrap()))
            .spawn()
            .unwrap(),
    );
    let pid = controller.0.id();
    // Wait (bounded) until the load phase: three nodes running and history growing.
    let deadline = Instant::now() + Duration::from_secs(30);
    let nodes = loop {
        let kids = descendants(pid);
        let history = std::fs::metadata(out.path().join("run/history.jsonl")).map(|m| m.len()).unwrap_or(0);
        if kids.len() >= processes && history > 0 {
            break kids;
        }
        let said = || {
            let read = |f: &str| std::fs::read_to_string(out.path().join(f)).unwrap_or_default();
            format!("stdout:\n{}\nstderr:\n{}", read("controller.out"), read("controller.err"))
        };
        if let Some(status) = controller.0.try_wait().unwrap() {
            panic!("the controller exited ({status}) before the test killed it; {}", said());
        }
        assert!(Instant::now() < deadline, "no running cluster after 30s: children {kids:?}; {}", said());
        std::thread::sleep(Duration::from_millis(50));
    };
    let groups: Vec<u32> = nodes.iter().filter_map(|&n| stat(n).map(|s| s.1)).collect();
    assert!(groups.iter().all(|&g| g != pid), "nodes run in their own process groups: {groups:?}");
    controller.0.kill().unwrap(); // SIGKILL
    controller.0.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // Any live (non-zombie) process left that was ours, by pid or process group?
        let left: Vec<u32> = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
            .filter(|&p| stat(p).is_some_and(|(_, g, s)| s != 'Z' && (nodes.contains(&p) || groups.contains(&g))))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "node processes outlived the controller: {left:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
