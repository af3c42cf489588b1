//! Issue 16's proof that the dirent model, not luck, finds a missing
//! directory fsync: the reference node's skip-dir-fsync bug loses every
//! acknowledged write under a coordinated power loss with
//! `dirents = "lose-unsynced"` (the segment's name goes), passes without
//! the model, and the correct node passes with it.

use jetsam_core::event::{Event, EventKind};
use jetsam_core::report::{Report, Verdict};
use std::path::{Path, PathBuf};
use std::process::Command;

fn run_dir(out: &Path, name: &str) -> PathBuf {
    let dir = out.join(name);
    let mut runs: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs.pop().unwrap()
}

fn report(dir: &Path) -> Report {
    serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap()
}

fn power_losses(dir: &Path) -> Vec<Event> {
    let text = std::fs::read_to_string(dir.join("events.jsonl")).unwrap();
    text.lines().map(|l| serde_json::from_str::<Event>(l).unwrap()).filter(|e| e.kind == EventKind::PowerLoss).collect()
}

#[test]
fn a_skipped_directory_fsync_is_caught_only_with_the_dirent_model() {
    let out = tempfile::tempdir().unwrap();
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let status = Command::new(env!("CARGO_BIN_EXE_jetsam"))
        .current_dir(root)
        .args(["suite", "scenarios/dirents", "--out"])
        .arg(out.path())
        .env("CI", "1")
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0), "every expect of scenarios/dirents is met");

    let caught = run_dir(out.path(), "skip-dir-fsync-lose-unsynced");
    let r = report(&caught);
    assert_eq!(r.verdict, Verdict::Fail);
    assert!(r.acked > 100 && r.lost == r.acked, "every acked write went with the segment's name: {r:?}");
    let losses = power_losses(&caught);
    assert_eq!(losses.len(), 3);
    for e in &losses {
        let undone = e.details["dirents_undone"].as_array().unwrap();
        assert!(undone.iter().any(|u| u.as_str().unwrap().starts_with("create log/")), "{e:?}");
    }

    let control = run_dir(out.path(), "skip-dir-fsync-durable-dirents");
    assert_eq!(report(&control).verdict, Verdict::Pass);
    assert!(power_losses(&control).iter().all(|e| !e.details.contains_key("dirents_undone")));

    let correct = run_dir(out.path(), "correct-lose-unsynced");
    let r = report(&correct);
    assert_eq!((r.verdict, r.lost), (Verdict::Pass, 0));
    for e in power_losses(&correct) {
        assert_eq!(e.details["dirents_undone"].as_array().unwrap().len(), 0, "every entry was synced: {e:?}");
    }
}
