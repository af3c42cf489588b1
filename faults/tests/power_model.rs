//! After SIGKILL + discard every file equals its last synced state, byte for
//! byte (discard = all), and keep_fraction keeps whole pages of newer content.

mod power_common;

use jetsam_faults::power::{self, DiscardModel, PAGE_SIZE};
use power_common::{Model, Traced, WAIT, dirs};

const OPS: &[&str] = &[
    // Synced by sync(2), then changed again.
    "pwrite:s:0:4096:28",
    "sync",
    "pwrite:s:4000:200:29",
    // Synced, then overwritten in the middle and appended to.
    "create:a",
    "pwrite:a:0:10000:1",
    "fsync:a",
    "pwrite:a:5000:3000:2",
    "append:a:5000:3",
    // Synced, then truncated (the cut pages come back).
    "write:b:0:8192:4",
    "fsync:b",
    "trunc:b:100",
    // Created and written but never synced: comes back empty.
    "create:c",
    "writev:c:0:9000:5",
    // Synced, renamed, then changed under its new name.
    "write:d:0:4096:6",
    "fdatasync:d",
    "rename:d:e",
    "pwrite:e:100:50:7",
    // O_SYNC writes are durable when they return, around unsynced ones.
    "pwrite:f:0:3000:8",
    "fsync:f",
    "pwrite:f:0:100:10",
    "syncwrite:f:2000:3000:9",
    "pwrite:f:4000:10:11",
    "syncwrite:n:0:5000:12",
    // Synced, then truncated by open(O_TRUNC) and rewritten.
    "pwrite:g:0:5000:13",
    "fsync:g",
    "create:g",
    "pwrite:g:0:10:14",
    // Unlinked after a sync: stays gone (directory entries are durable).
    "pwrite:h:0:100:15",
    "fsync:h",
    "pwrite:h:0:50:16",
    "unlink:h",
    // Renamed over a synced file without syncing the new content.
    "pwrite:i:0:6000:17",
    "fsync:i",
    "pwrite:j:0:300:18",
    "rename:j:i",
    // Several threads at once, with Go-like SIGURG storms.
    "T1/pwrite:t1:0:20000:20",
    "T1/fsync:t1",
    "T1/pwrite:t1:10000:20000:21",
    "T2/append:t2:7000:22",
    "T2/fsync:t2",
    "T2/append:t2:7000:23",
    "T3/sigurg:2000",
    "T4/write:t4:0:40000:24",
    "T4/fdatasync:t4",
    "T4/trunc:t4:5000",
    "T4/pwrite:t4:30000:100:25",
    "barrier",
    // A child process (fork + exec) is traced too.
    "child:pwrite:k:0:500:26",
    "child:pwrite:t2:0:100:27",
    // Punched holes and copy_file_range into synced files.
    "pwrite:u:0:12288:30",
    "fsync:u",
    "punch:u:2000:5000",
    "pwrite:v:0:3000:31",
    "fsync:v",
    "copy:u:v:1000:9000",
    "hang",
];

#[test]
fn discard_all_restores_the_last_synced_state_exactly() {
    let (_tmp, data, state) = dirs();
    let mut node = Traced::probe(&data, &state, OPS);
    let seen = node.wait_line("done", WAIT).to_vec();
    let failed: Vec<&String> = seen.iter().filter(|l| l.starts_with("err")).collect();
    assert!(failed.is_empty(), "probe ops failed: {failed:?}");
    node.kill();
    let mut model = Model::default();
    OPS.iter().for_each(|op| model.apply(op));
    // Before the discard the page cache survived the kill: current content.
    assert_eq!(std::fs::read(data.join("a")).unwrap(), model.files["a"].0, "a plain kill keeps unsynced data");
    let report = power::discard(&data, &state, &DiscardModel::All, 1).expect("discard");
    model.assert_synced(&data);
    assert!(report.pages_discarded > 0 && report.pages_kept == 0, "{report:?}");
    let a = report.files.iter().find(|f| f.path == "a").unwrap_or_else(|| panic!("a was tracked: {report:?}"));
    assert_eq!((a.size_at_loss, a.size_after), (15000, 10000));
    assert!(!report.files.iter().any(|f| f.path == "d"), "d is e now: {report:?}");
    // The undo log is cleared: a second discard changes nothing.
    assert!(report.warnings.is_empty(), "nothing unmodellable happened: {:?}", report.warnings);
    let again = power::discard(&data, &state, &DiscardModel::All, 1).expect("second discard");
    assert!(again.files.is_empty() && again.missing.is_empty(), "{again:?}");
    model.assert_synced(&data);
}

#[test]
fn keep_fraction_keeps_whole_pages_of_newer_content() {
    let (_tmp, data, state) = dirs();
    let pages = 64u64;
    let size = (pages * PAGE_SIZE) as usize;
    let ops = [
        format!("pwrite:p:0:{size}:1"),
        "fsync:p".to_string(),
        format!("pwrite:p:0:{size}:2"),
        format!("append:p:{}:3", 8 * PAGE_SIZE),
        "hang".to_string(),
    ];
    let ops: Vec<&str> = ops.iter().map(String::as_str).collect();
    let mut node = Traced::probe(&data, &state, &ops);
    node.wait_line("done", WAIT);
    node.kill();
    let report = power::discard(&data, &state, &DiscardModel::KeepFraction(0.5), 42).expect("discard");
    let got = std::fs::read(data.join("p")).unwrap();
    let (mut old, mut new) = (0u64, 0u64);
    for (i, page) in got.chunks(PAGE_SIZE as usize).enumerate() {
        let first = page[0];
        assert!(page.iter().all(|&b| b == first), "page {i} is torn inside: not a whole page");
        match (i < pages as usize, first) {
            (true, 1) => old += 1,
            (true, 2) | (false, 3) => new += 1,
            // Past the synced end, a discarded page below a kept one is a hole.
            (false, 0) => old += 1,
            other => panic!("page {i} holds {other:?}"),
        }
    }
    assert_eq!(report.pages_kept + report.pages_discarded, pages + 8, "{report:?}");
    assert!(report.pages_kept > 10 && report.pages_discarded > 10, "{report:?}");
    // The file ends at the synced size or the last kept appended page.
    assert!(got.len() >= size, "the synced size stays");
    assert_eq!(new, report.pages_kept.min(new), "kept pages hold newer content");
    assert!(old >= report.pages_discarded.min(pages), "{old} {new} {report:?}");
    // The same seed picks the same pages.
    let (_tmp2, data2, state2) = dirs();
    let mut node = Traced::probe(&data2, &state2, &ops);
    node.wait_line("done", WAIT);
    node.kill();
    let report2 = power::discard(&data2, &state2, &DiscardModel::KeepFraction(0.5), 42).expect("discard");
    assert_eq!(std::fs::read(data2.join("p")).unwrap(), got, "seeded choice is deterministic");
    assert_eq!(report2.pages_kept, report.pages_kept);
}

#[test]
fn writeback_after_keeps_only_old_pages() {
    let (_tmp, data, state) = dirs();
    let ops = ["pwrite:w:0:8192:1", "fsync:w", "pwrite:w:0:4096:2", "hang"];
    let mut node = Traced::probe(&data, &state, &ops);
    node.wait_line("done", WAIT);
    node.kill();
    // Pages are not an hour old: all discarded.
    let report =
        power::discard(&data, &state, &DiscardModel::WritebackAfter(std::time::Duration::from_secs(3600)), 0).unwrap();
    assert_eq!((report.pages_discarded, report.pages_kept), (1, 0));
    assert_eq!(std::fs::read(data.join("w")).unwrap(), vec![1u8; 8192]);
    let mut node = Traced::probe(&data, &state, &["pwrite:w:4096:4096:3", "hang"]);
    node.wait_line("done", WAIT);
    node.kill();
    // A zero age: every page was written back.
    let report = power::discard(&data, &state, &DiscardModel::WritebackAfter(std::time::Duration::ZERO), 0).unwrap();
    assert_eq!((report.pages_discarded, report.pages_kept), (0, 1));
    let got = std::fs::read(data.join("w")).unwrap();
    assert_eq!(&got[..4096], &[1u8; 4096][..]);
    assert_eq!(&got[4096..], &[3u8; 4096][..]);
}

#[test]
fn shared_writable_mmap_of_a_data_file_is_a_warning() {
    let (_tmp, data, state) = dirs();
    let mut node = Traced::probe(&data, &state, &["mmap:m", "hang"]);
    node.wait_line("done", WAIT);
    node.kill();
    let report = power::discard(&data, &state, &DiscardModel::All, 0).expect("discard");
    assert_eq!(report.warnings.len(), 1, "{report:?}");
    assert!(report.warnings[0].contains("mmap") && report.warnings[0].contains(" m "), "{report:?}");
}

#[test]
fn a_write_racing_an_fsync_of_the_same_file_stays_unsynced() {
    let (_tmp, data, state) = dirs();
    // 64 MiB of dirty pages make the fsync last long enough for the second
    // thread's write to land while it runs; a write after the fsync returns
    // is unsynced too. Either way the write must be lost.
    let size = 64 << 20;
    let ops = [
        format!("pwrite:r:0:{size}:1"),
        "T1/fsync:r".to_string(),
        "T2/sleepms:5".to_string(),
        "T2/pwrite:r:100:10:2".to_string(),
        "T2/pwrite:r:40000000:10:3".to_string(),
        "hang".to_string(),
    ];
    let ops: Vec<&str> = ops.iter().map(String::as_str).collect();
    let mut node = Traced::probe(&data, &state, &ops);
    node.wait_line("done", WAIT);
    node.kill();
    power::discard(&data, &state, &DiscardModel::All, 0).expect("discard");
    let got = std::fs::read(data.join("r")).unwrap();
    assert_eq!(got.len(), size, "the fsync made the size durable");
    assert!(got[..8192].iter().all(|&b| b == 1), "the racing write to page 0 was discarded");
    assert!(got[40_000_000..40_000_010].iter().all(|&b| b == 1), "the racing write further on was discarded");
}
