//! Storage tests.

use super::*;
use crate::command::Command;

fn rec(index: u64) -> Record {
    Record { index, term: 1, entry: Entry::Cmd(Command::Publish { id: format!("0-{index}"), payload: vec![7; 40] }) }
}

fn write_records(dir: &Path, n: u64) -> PathBuf {
    let (mut s, r) = Storage::open(dir, false, false).unwrap();
    assert!(r.records.is_empty());
    s.append(&(1..=n).map(rec).collect::<Vec<_>>()).unwrap();
    s.sync().unwrap();
    dir.join("log").join(segment_name(1))
}

#[test]
fn records_round_trip_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    write_records(dir.path(), 5);
    let (mut s, r) = Storage::open(dir.path(), false, false).unwrap();
    assert_eq!(r.records, (1..=5).map(rec).collect::<Vec<_>>());
    assert!(r.notes.is_empty());
    s.truncate_after(3).unwrap();
    s.append(&[rec(4)]).unwrap();
    s.save_meta(Meta { term: 4, voted_for: Some(2) }).unwrap();
    drop(s);
    let (_, r) = Storage::open(dir.path(), false, false).unwrap();
    assert_eq!(r.records.len(), 4);
    assert_eq!(r.meta, Meta { term: 4, voted_for: Some(2) });
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut segs: Vec<PathBuf> = fs::read_dir(dir.join("log")).unwrap().map(|e| e.unwrap().path()).collect();
    segs.sort();
    segs
}

#[test]
fn segments_roll_over_and_truncation_crosses_them() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = Storage::open(dir.path(), false, false).unwrap();
    s.set_segment_bytes_max(1024);
    for i in 1..=40 {
        s.append(&[rec(i)]).unwrap();
    }
    s.sync().unwrap();
    let segs = segment_files(dir.path());
    assert!(segs.len() >= 4, "40 records of ~100 bytes in 1 KiB segments: {segs:?}");
    assert!(segs[0].ends_with(segment_name(1)));
    drop(s);
    let (mut s, r) = Storage::open(dir.path(), false, false).unwrap();
    assert_eq!(r.records, (1..=40).map(rec).collect::<Vec<_>>());
    s.set_segment_bytes_max(1024);
    // Cut back into the first segment: later segment files go away.
    s.truncate_after(5).unwrap();
    s.append(&[rec(6), rec(7)]).unwrap();
    s.sync().unwrap();
    assert_eq!(segment_files(dir.path()).len(), 1);
    drop(s);
    let (_, r) = Storage::open(dir.path(), false, false).unwrap();
    assert_eq!(r.records, (1..=7).map(rec).collect::<Vec<_>>());
}

#[test]
fn damage_at_the_end_of_an_earlier_segment_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = Storage::open(dir.path(), false, false).unwrap();
    s.set_segment_bytes_max(1024);
    for i in 1..=30 {
        s.append(&[rec(i)]).unwrap();
    }
    s.sync().unwrap();
    drop(s);
    let first = segment_files(dir.path()).remove(0);
    let len = fs::metadata(&first).unwrap().len();
    // A cut tail is only legal in the last segment.
    OpenOptions::new().write(true).open(&first).unwrap().set_len(len - 5).unwrap();
    let err = Storage::open(dir.path(), false, false).err().expect("corruption");
    assert!(matches!(&err, StorageError::Corrupt { file, .. } if *file == first), "{err}");
}

#[test]
fn torn_tail_is_cut_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    let seg = write_records(dir.path(), 3);
    let len = fs::metadata(&seg).unwrap().len();
    // Cut the last record in the middle, as an interrupted append would.
    OpenOptions::new().write(true).open(&seg).unwrap().set_len(len - 10).unwrap();
    let (mut s, r) = Storage::open(dir.path(), false, false).unwrap();
    assert_eq!(r.records.len(), 2);
    assert_eq!(r.notes.len(), 1, "{:?}", r.notes);
    assert!(r.notes[0].contains("torn"), "{:?}", r.notes);
    // Appends continue right after the last good record.
    s.append(&[rec(3)]).unwrap();
    drop(s);
    let (_, r) = Storage::open(dir.path(), false, false).unwrap();
    assert_eq!(r.records.len(), 3);
    assert!(r.notes.is_empty());
}

#[test]
fn zero_filled_tail_is_torn() {
    let dir = tempfile::tempdir().unwrap();
    let seg = write_records(dir.path(), 2);
    let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&[0u8; 4096]).unwrap();
    drop(f);
    let (_, r) = Storage::open(dir.path(), false, false).unwrap();
    assert_eq!(r.records.len(), 2);
    assert_eq!(r.notes.len(), 1);
}

#[test]
fn bit_flip_in_the_middle_is_corruption_naming_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let seg = write_records(dir.path(), 3);
    let bytes = fs::read(&seg).unwrap();
    let (found, _) = scan_segment(&bytes);
    let second = found[1].0;
    let mut damaged = bytes.clone();
    damaged[second as usize + RECORD_HEADER_BYTES + 5] ^= 0x10;
    fs::write(&seg, &damaged).unwrap();
    let err = Storage::open(dir.path(), false, false).err().expect("corruption must stop the node");
    match &err {
        StorageError::Corrupt { file, offset, .. } => {
            assert_eq!(file, &seg);
            assert_eq!(*offset, second);
        }
        other => panic!("expected corruption, got {other}"),
    }
    let message = err.to_string();
    assert!(message.contains(&seg.display().to_string()) && message.contains(&format!("offset {second}")), "{message}");
    // The file is left as it was (fail-stop does not repair).
    assert_eq!(fs::read(&seg).unwrap(), damaged);
}

#[test]
fn flipped_length_bit_is_corruption_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let seg = write_records(dir.path(), 3);
    let mut bytes = fs::read(&seg).unwrap();
    bytes[2] ^= 0x01;
    fs::write(&seg, &bytes).unwrap();
    let err = Storage::open(dir.path(), false, false).err().expect("corruption must stop the node");
    assert!(matches!(err, StorageError::Corrupt { offset: 0, .. }), "{err}");
}

#[test]
fn trust_corrupt_log_truncates_silently() {
    let dir = tempfile::tempdir().unwrap();
    let seg = write_records(dir.path(), 3);
    let mut bytes = fs::read(&seg).unwrap();
    let (found, _) = scan_segment(&bytes);
    let second = found[1].0 as usize;
    bytes[second + RECORD_HEADER_BYTES + 3] ^= 0x01;
    fs::write(&seg, &bytes).unwrap();
    let (_, r) = Storage::open(dir.path(), true, false).unwrap();
    assert_eq!(r.records.len(), 1);
    assert_eq!(fs::metadata(&seg).unwrap().len(), second as u64);
}

#[test]
fn corrupt_meta_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = Storage::open(dir.path(), false, false).unwrap();
    s.save_meta(Meta { term: 3, voted_for: None }).unwrap();
    drop(s);
    let path = dir.path().join("meta");
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 2;
    bytes[last] ^= 0x04;
    fs::write(&path, &bytes).unwrap();
    let err = Storage::open(dir.path(), false, false).err().expect("corrupt meta must stop the node");
    assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
}

/// Flips a body byte of the second of three records (corruption, not a torn tail).
fn damaged_dir_with_meta(meta: Meta) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let seg = write_records(dir.path(), 3);
    write_meta(dir.path(), meta).unwrap();
    let mut bytes = fs::read(&seg).unwrap();
    let (found, _) = scan_segment(&bytes);
    bytes[found[1].0 as usize + RECORD_HEADER_BYTES + 2] ^= 0x20;
    fs::write(&seg, &bytes).unwrap();
    assert!(matches!(Storage::open(dir.path(), false, false), Err(StorageError::Corrupt { .. })));
    (dir, seg)
}

#[test]
fn repair_wipes_the_log_moves_the_term_on_and_marks_catch_up_until_finished() {
    let (dir, seg) = damaged_dir_with_meta(Meta { term: 7, voted_for: Some(2) });
    let repaired = repair(dir.path(), "test damage").unwrap();
    assert_eq!(repaired.old, Meta { term: 7, voted_for: Some(2) });
    assert_eq!(repaired.new, Meta { term: 8, voted_for: None }, "one term on, no vote");
    assert_eq!(repaired.removed, vec![seg.clone()]);
    assert!(!seg.exists());
    let marker = fs::read_to_string(dir.path().join(CATCH_UP_FILE)).unwrap();
    assert!(marker.contains("test damage") && marker.contains("\"term_before\": 7"), "{marker}");

    let (mut s, r) = Storage::open(dir.path(), false, false).unwrap();
    assert!(r.catching_up && s.catching_up() && r.records.is_empty());
    assert_eq!(r.meta, Meta { term: 8, voted_for: None });
    s.append(&[rec(1)]).unwrap();
    drop(s);
    // A restart before the end of the catch-up is still catching up.
    let (mut s, r) = Storage::open(dir.path(), false, false).unwrap();
    assert!(r.catching_up && r.records.len() == 1);
    s.append(&[rec(2)]).unwrap();
    s.finish_catch_up().unwrap();
    assert!(!s.catching_up() && !dir.path().join(CATCH_UP_FILE).exists());
    drop(s);
    let (_, r) = Storage::open(dir.path(), false, false).unwrap();
    assert!(!r.catching_up);
    assert_eq!(r.records, vec![rec(1), rec(2)], "finish_catch_up made the appended records durable");
}

#[test]
fn repair_refuses_a_damaged_term_vote_file_and_leaves_everything_as_it_was() {
    let (dir, seg) = damaged_dir_with_meta(Meta { term: 3, voted_for: Some(1) });
    let meta_path = dir.path().join("meta");
    let mut meta = fs::read(&meta_path).unwrap();
    let last = meta.len() - 2;
    meta[last] ^= 0x02;
    fs::write(&meta_path, &meta).unwrap();
    let before = fs::read(&seg).unwrap();
    let err = repair(dir.path(), "test damage").expect_err("a damaged term/vote file refuses the repair");
    assert!(matches!(&err, StorageError::RepairRefused { file, .. } if *file == meta_path), "{err}");
    assert!(err.to_string().contains("vote twice"), "{err}");
    assert_eq!(fs::read(&seg).unwrap(), before, "the log is left for inspection");
    assert_eq!(fs::read(&meta_path).unwrap(), meta);
    assert!(!dir.path().join(CATCH_UP_FILE).exists());
}

#[test]
fn deferred_writes_stay_out_of_the_file_until_flushed() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = Storage::open(dir.path(), false, true).unwrap();
    s.append(&[rec(1), rec(2)]).unwrap();
    let seg = dir.path().join("log").join(segment_name(1));
    assert_eq!(fs::metadata(&seg).unwrap().len(), 0);
    s.flush_buffer().unwrap();
    assert!(fs::metadata(&seg).unwrap().len() > 0);
}
