//! The durability audit end to end on the reference node, without any
//! fault: the correct node (R3 strong + always) has no acknowledged write
//! at risk; with the ack-before-fsync bug most acks come before a majority
//! synced them and the strong-mode run fails on that alone. `jetsam check`
//! on the run folder reproduces the audit, before and after `jetsam compact`.

use jetsam_core::report::{Report, Verdict};
use std::path::Path;
use std::process::Command;

fn jetsam(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_jetsam"))
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .args(args)
        .env("CI", "1")
        .output()
        .unwrap()
}

fn report(dir: &Path) -> Report {
    serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap()
}

#[test]
fn the_audit_finds_ack_before_fsync_without_a_fault_and_clears_the_correct_node() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good");
    let o = jetsam(&[
        "run",
        "scenarios/audit/node-strong-always.toml",
        "--duration",
        "4s",
        "--out",
        good.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stdout));
    let r = report(&good);
    let a = r.audit.as_ref().expect("audited");
    assert_eq!(r.verdict, Verdict::Pass);
    assert!(a.acks_checked == r.acked && r.acked > 100, "{a:?} vs {} acked", r.acked);
    assert_eq!((a.acks_at_risk, a.never_synced), (0, 0), "{a:?}");
    assert_eq!(a.nodes.len(), 3, "every node audited");
    assert!(good.join("audit/n1.log").is_file());

    let bad = tmp.path().join("bad");
    let o = jetsam(&[
        "run",
        "scenarios/audit/node-ack-before-fsync.toml",
        "--duration",
        "4s",
        "--out",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stdout));
    let r = report(&bad);
    let a = r.audit.clone().expect("audited");
    assert_eq!((r.verdict, r.lost), (Verdict::Fail, 0), "nothing lost: only the audit fails it");
    assert!(a.acks_at_risk * 2 > a.acks_checked, "most acks come before the once-a-second fsync: {a:?}");
    assert!(r.reasons.iter().any(|x| x.contains("at risk")), "{:?}", r.reasons);
    let leader_risk: u64 = a.nodes.values().map(|n| n.acks_at_risk).sum();
    assert!(leader_risk > 0, "the acking node had not synced: {a:?}");

    // Re-checking the folder gives the same audit.
    std::fs::remove_file(bad.join("report.json")).unwrap();
    let o = jetsam(&["check", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(report(&bad).audit, Some(a.clone()));

    // So does the compacted folder (history.bin instead of history.jsonl).
    let o = jetsam(&["compact", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(bad.join("history.bin").is_file() && !bad.join("history.jsonl").exists());
    let o = jetsam(&["check", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(report(&bad).audit, Some(a));
}
