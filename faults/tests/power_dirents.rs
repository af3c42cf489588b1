//! The dirent model, byte for byte: with `dirents = "lose-unsynced"` a
//! power loss undoes every create, link, rename and unlink under the data
//! dir that no later fsync of its directory (or syncfs/sync) made durable;
//! a file that comes back has its last synced content. With the default
//! model every directory operation stays.

mod power_common;

use jetsam_faults::power::{self, DirentModel, DiscardModel};
use power_common::{Traced, WAIT, dirs};
use std::path::Path;
use std::time::Duration;

const LOSE: DirentModel = DirentModel::LoseUnsynced { after: None };

/// Runs `ops` under the tracer to the end, then loses power with `model`.
fn power_loss_after(ops: &[&str], model: DirentModel) -> (tempfile::TempDir, std::path::PathBuf, power::DiscardReport) {
    let (tmp, data, state) = dirs();
    let mut node = Traced::probe(&data, &state, ops);
    node.wait_line("done", WAIT);
    assert!(node.seen.iter().all(|l| l.starts_with("ok ") || l == "done"), "every op succeeded: {:?}", node.seen);
    assert_eq!(node.child.wait().unwrap().code(), Some(0));
    let report = power::discard_with(&data, &state, &DiscardModel::All, model, 1).expect("discard");
    assert!(!state.join(power::dirents::JOURNAL_FILE).exists(), "the journal is consumed");
    assert!(!state.join(power::dirents::VICTIMS_DIR).exists(), "kept files are dropped");
    (tmp, data, report)
}

fn content(data: &Path, name: &str) -> Option<Vec<u8>> {
    std::fs::read(data.join(name)).ok()
}

/// `a` created, written with `b` bytes of value `v`, fsynced; its entry durable.
fn durable(name: &str, len: usize, v: u8) -> Vec<String> {
    vec![format!("create:{name}"), format!("write:{name}:0:{len}:{v}"), format!("fsync:{name}"), "fsyncdir:.".into()]
}

fn ops(list: &[Vec<String>]) -> Vec<String> {
    list.concat()
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn a_create_is_lost_until_its_directory_is_fsynced() {
    let lost = ["create:a", "write:a:0:100:1", "fsync:a"];
    let (_t, data, report) = power_loss_after(&lost, LOSE);
    assert_eq!(content(&data, "a"), None, "fsync of the file alone does not keep its name");
    assert_eq!(report.dirents.unwrap().undone, ["create a: removed"]);

    let kept = ["create:a", "write:a:0:100:1", "fsync:a", "fsyncdir:."];
    let (_t, data, report) = power_loss_after(&kept, LOSE);
    assert_eq!(content(&data, "a"), Some(vec![1; 100]));
    assert_eq!(report.dirents.unwrap().kept, 1);

    let (_t, data, _) = power_loss_after(&lost, DirentModel::Durable);
    assert_eq!(content(&data, "a"), Some(vec![1; 100]), "the default model keeps every entry");
}

#[test]
fn a_rename_reverts_and_a_replaced_file_comes_back() {
    let v = ops(&[durable("a", 10, 1), durable("b", 20, 2), vec!["rename:a:b".into()]]);
    let (_t, data, report) = power_loss_after(&refs(&v), LOSE);
    assert_eq!(content(&data, "a"), Some(vec![1; 10]), "a has its name back");
    assert_eq!(content(&data, "b"), Some(vec![2; 20]), "the file a replaced is b again");
    assert_eq!(report.dirents.unwrap().undone, ["rename a -> b: back to a, the file it replaced is b again"]);

    let v = ops(&[durable("a", 10, 1), durable("b", 20, 2), vec!["rename:a:b".into(), "fsyncdir:.".into()]]);
    let (_t, data, _) = power_loss_after(&refs(&v), LOSE);
    assert_eq!((content(&data, "a"), content(&data, "b")), (None, Some(vec![1; 10])), "synced: the rename stays");
}

#[test]
fn a_rename_across_directories_needs_both_fsynced() {
    let base = ops(&[vec!["mkdir:d".into()], durable("d/x", 10, 3), vec!["fsyncdir:d".into(), "rename:d/x:y".into()]]);
    let half = ops(&[base.clone(), vec!["fsyncdir:.".into()]]);
    let (_t, data, _) = power_loss_after(&refs(&half), LOSE);
    assert_eq!((content(&data, "d/x"), content(&data, "y")), (Some(vec![3; 10]), None), "d was not fsynced after");
    let both = ops(&[half, vec!["fsyncdir:d".into()]]);
    let (_t, data, _) = power_loss_after(&refs(&both), LOSE);
    assert_eq!((content(&data, "d/x"), content(&data, "y")), (None, Some(vec![3; 10])));
}

#[test]
fn an_unlinked_file_comes_back_with_its_synced_content() {
    // 100 bytes synced, then 100 more unsynced, then unlinked.
    let v = ops(&[durable("a", 100, 4), vec!["write:a:100:100:5".into(), "unlink:a".into()]]);
    let (_t, data, report) = power_loss_after(&refs(&v), LOSE);
    assert_eq!(content(&data, "a"), Some(vec![4; 100]), "back, as last synced");
    assert!(report.missing.is_empty(), "{report:?}");

    let v = ops(&[durable("a", 100, 4), vec!["unlink:a".into(), "fsyncdir:.".into()]]);
    let (_t, data, report) = power_loss_after(&refs(&v), LOSE);
    assert_eq!(content(&data, "a"), None, "a synced unlink stays");
    assert!(report.missing.is_empty(), "a file gone for good is not reported missing: {report:?}");
}

#[test]
fn a_link_is_removed_and_the_original_stays() {
    let v = ops(&[durable("a", 10, 6), vec!["link:a:l".into()]]);
    let (_t, data, _) = power_loss_after(&refs(&v), LOSE);
    assert_eq!((content(&data, "a"), content(&data, "l")), (Some(vec![6; 10]), None));
}

#[test]
fn syncfs_and_sync_make_every_earlier_operation_durable() {
    for sync in ["syncfs", "sync"] {
        let v = ["create:a", "write:a:0:10:7", "fsync:a", "create:b", sync, "create:c"];
        let (_t, data, report) = power_loss_after(&v, LOSE);
        assert_eq!(content(&data, "a"), Some(vec![7; 10]), "{sync}");
        assert_eq!(content(&data, "b"), Some(vec![]), "{sync}");
        assert_eq!(content(&data, "c"), None, "{sync}: after it, not covered");
        assert_eq!(report.dirents.unwrap().undone, ["create c: removed"], "{sync}");
    }
}

#[test]
fn dirents_after_keeps_operations_older_than_the_commit_interval() {
    let v = ["create:old", "sleepms:300", "create:new"];
    let after = DirentModel::LoseUnsynced { after: Some(Duration::from_millis(150)) };
    let (_t, data, _) = power_loss_after(&v, after);
    assert_eq!((content(&data, "old"), content(&data, "new")), (Some(vec![]), None));
}
