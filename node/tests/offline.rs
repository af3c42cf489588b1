//! The offline reader (`jetsam-node read-offline`, `jetsam_node::offline`):
//! on an intact log it returns exactly what the running node's `read_local`
//! served (real processes, a 3-node cluster), and exactly what recovery
//! keeps on a log with Raft overwrites, batches and a torn tail; at a bit
//! flip mid-log it returns the messages before the damaged record and names
//! the file and offset (exit 1); a damaged term/vote file is a note, not a
//! shorter log; and it never changes a byte of the data dir.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Cluster, publish_load, runtime, scenario};
use jetsam_core::proto::{BatchMessage, StreamConfig};
use jetsam_core::recovered::RecoveredMsg;
use jetsam_node::command::{Command as Cmd, LogState};
use jetsam_node::offline::{EXIT_COMPLETE, EXIT_DAMAGED, read_offline};
use jetsam_node::storage::{Entry, Meta, RECORD_HEADER_BYTES, Record, Storage, scan_segment};
use jetsam_targets::Target;
use jetsam_targets::node::Client;

const WAIT: Duration = Duration::from_secs(20);

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

/// Runs `jetsam-node read-offline`: (exit code, stdout messages, stderr).
fn run_reader(dir: &Path) -> (i32, Vec<RecoveredMsg>, String) {
    run_reader_of(Path::new(env!("CARGO_BIN_EXE_jetsam-node")), dir)
}

fn run_reader_of(binary: &Path, dir: &Path) -> (i32, Vec<RecoveredMsg>, String) {
    let out = Command::new(binary)
        .args(["read-offline", "--data-dir"])
        .arg(dir)
        .args(["--stream", "jetsam"])
        .output()
        .expect("run jetsam-node read-offline");
    let msgs = String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    (out.status.code().expect("an exit code"), msgs, String::from_utf8(out.stderr).unwrap())
}

/// The `{"read_offline": ...}` object of the reader's last stderr line.
fn summary(stderr: &str) -> serde_json::Value {
    let last = stderr.lines().last().expect("a summary line");
    serde_json::from_str::<serde_json::Value>(last).unwrap()["read_offline"].clone()
}

#[test]
fn an_intact_log_reads_offline_exactly_as_the_running_node_served_it() {
    let mut c = Cluster::start(scenario(3, 3, None, "always", None));
    let rt = runtime();
    let live = rt.block_on(async {
        c.target.wait_ready(&c.specs, WAIT).await.expect("cluster ready");
        c.target.create_stream(&c.scenario, &c.specs, WAIT).await.expect("stream created");
        let (acked, _) = publish_load(&c, 4, 300, 0).await;
        assert_eq!(acked.len(), 300);
        c.target.wait_converged(&c.scenario, &c.specs, WAIT).await.expect("converged");
        let mut live = Vec::new();
        for spec in &c.specs {
            let client = Client::connect(spec.client_addr, Duration::from_secs(1)).await.unwrap();
            let msgs = client.read_all_with("jetsam", true, true).await.unwrap();
            live.push(msgs.into_iter().map(|m| RecoveredMsg { seq: m.seq, id: m.id }).collect::<Vec<_>>());
        }
        live
    });
    for (i, live) in live.iter().enumerate() {
        assert_eq!(c.terminate(i).code(), Some(0), "clean stop; log:\n{}", c.log(i));
        let dir = c.specs[i].data_dir.clone();
        let before = snapshot(&dir);
        let (code, offline, stderr) = run_reader(&dir);
        assert_eq!(code, EXIT_COMPLETE, "{stderr}");
        assert!(live.len() >= 300, "node {i} served {} messages", live.len());
        assert_eq!(&offline, live, "node {i}: offline read equals read_local");
        assert_eq!(summary(&stderr)["complete"], true, "{stderr}");
        assert_eq!(snapshot(&dir), before, "the reader changed nothing in {}", dir.display());
    }
}

fn publish(index: u64, term: u64, id: &str) -> Record {
    Record { index, term, entry: Entry::Cmd(Cmd::Publish { id: id.into(), payload: vec![9; 30] }) }
}

/// A one-node log: bootstrap, term 1, the stream, publishes and a batch;
/// then a new leader (term 2) overwrites the tail after index 6.
fn overwritten_log(dir: &Path) {
    let (mut s, _) = Storage::open(dir, false, false).unwrap();
    let config = StreamConfig { name: "jetsam".into(), replicas: 1, consistency: None };
    let mut records = vec![
        Record { index: 1, term: 0, entry: Entry::Config { voters: vec![1], new_voters: vec![], non_voters: vec![] } },
        Record { index: 2, term: 1, entry: Entry::Term(1) },
        Record { index: 3, term: 1, entry: Entry::Cmd(Cmd::CreateStream { config }) },
        publish(4, 1, "0-0"),
        Record {
            index: 5,
            term: 1,
            entry: Entry::Cmd(Cmd::Batch {
                messages: vec![
                    BatchMessage { id: "1-0".into(), payload: vec![] },
                    BatchMessage { id: "1-1".into(), payload: vec![] },
                ],
            }),
        },
        publish(6, 1, "0-1"),
    ];
    records.extend((7..=20).map(|i| publish(i, 1, &format!("2-{i}"))));
    s.append(&records).unwrap();
    s.truncate_after(6).unwrap();
    let mut tail = vec![Record { index: 7, term: 2, entry: Entry::Term(2) }];
    tail.extend((8..=12).map(|i| publish(i, 2, &format!("3-{i}"))));
    s.append(&tail).unwrap();
    s.save_meta(Meta { term: 2, voted_for: Some(1) }).unwrap();
    s.sync().unwrap();
}

/// What the node serves after recovering `dir` (read on a copy, since
/// recovery cuts a torn tail in place).
fn recovered_messages(dir: &Path) -> Vec<RecoveredMsg> {
    let copy = tempfile::tempdir().unwrap();
    for (path, bytes) in snapshot(dir) {
        let to = copy.path().join(path.strip_prefix(dir).unwrap());
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::write(to, bytes).unwrap();
    }
    let (_, recovered) = Storage::open(copy.path(), false, false).unwrap();
    let mut log = LogState::default();
    for r in &recovered.records {
        log.push(r);
    }
    log.messages(1, log.last_seq(), usize::MAX, true)
        .into_iter()
        .map(|m| RecoveredMsg { seq: m.seq, id: m.id })
        .collect()
}

fn ids(msgs: &[RecoveredMsg]) -> Vec<(u64, &str)> {
    msgs.iter().map(|m| (m.seq, m.id.as_str())).collect()
}

fn segment(dir: &Path) -> PathBuf {
    dir.join("log").join(format!("{:020}.seg", 1))
}

#[test]
fn overwrites_batches_and_a_torn_tail_read_as_recovery_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    overwritten_log(dir.path());
    let read = read_offline(dir.path(), Some("jetsam")).unwrap();
    let want = [(1, "0-0"), (2, "1-0"), (3, "1-1"), (4, "0-1"), (5, "3-8"), (6, "3-9"), (7, "3-10"), (8, "3-11")];
    let mut want = want.to_vec();
    want.push((9, "3-12"));
    assert_eq!(ids(&read.messages), want, "the overwritten term-1 tail is gone");
    assert_eq!(read.messages, recovered_messages(dir.path()));
    assert!(read.damage.is_none() && read.notes.is_empty() && read.records == 12, "{read:?}");

    // Cut the last record in its middle, as an interrupted append leaves it.
    let seg = segment(dir.path());
    let len = std::fs::metadata(&seg).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&seg).unwrap().set_len(len - 7).unwrap();
    let before = snapshot(dir.path());
    let read = read_offline(dir.path(), Some("jetsam")).unwrap();
    assert_eq!(ids(&read.messages), want[..8].to_vec(), "the torn last record is left out");
    assert!(read.damage.is_none(), "a torn tail is no damage: {read:?}");
    assert!(read.notes.iter().any(|n| n.contains("torn")), "{:?}", read.notes);
    assert_eq!(snapshot(dir.path()), before, "the torn tail is left in the file");
    assert_eq!(read.messages, recovered_messages(dir.path()));
    let (code, msgs, stderr) = run_reader(dir.path());
    assert_eq!((code, msgs), (EXIT_COMPLETE, read.messages), "{stderr}");
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn a_bit_flip_mid_log_reads_the_messages_before_it_and_names_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    overwritten_log(dir.path());
    let seg = segment(dir.path());
    let mut bytes = std::fs::read(&seg).unwrap();
    let (records, _) = scan_segment(&bytes);
    // Record 6 ("0-1", seq 4): 3 messages before it.
    let offset = records[5].0;
    bytes[offset as usize + RECORD_HEADER_BYTES + 4] ^= 0x08;
    std::fs::write(&seg, &bytes).unwrap();
    assert!(Storage::open(dir.path(), false, false).is_err(), "the node refuses this log");
    std::fs::write(&seg, &bytes).unwrap();

    let before = snapshot(dir.path());
    let read = read_offline(dir.path(), Some("jetsam")).unwrap();
    assert_eq!(ids(&read.messages), vec![(1, "0-0"), (2, "1-0"), (3, "1-1")]);
    let damage = read.damage.clone().expect("damage");
    assert_eq!((damage.file.as_path(), damage.offset), (Path::new("log/00000000000000000001.seg"), offset));
    assert!(damage.detail.contains("CRC"), "{damage:?}");
    assert_eq!(read.unread_bytes, bytes.len() as u64 - offset);

    let (code, msgs, stderr) = run_reader(dir.path());
    assert_eq!((code, msgs), (EXIT_DAMAGED, read.messages), "{stderr}");
    assert!(stderr.contains(&format!("log/00000000000000000001.seg at offset {offset}")), "{stderr}");
    let s = summary(&stderr);
    assert_eq!((s["complete"].as_bool(), s["messages"].as_u64()), (Some(false), Some(3)), "{stderr}");
    assert_eq!(s["damage"]["offset"].as_u64(), Some(offset));
    assert_eq!(snapshot(dir.path()), before, "the reader changed nothing");
}

#[test]
fn a_damaged_term_vote_file_is_a_note_and_a_wrong_term_stops_the_read() {
    let dir = tempfile::tempdir().unwrap();
    overwritten_log(dir.path());
    let meta = dir.path().join("meta");
    let mut bytes = std::fs::read(&meta).unwrap();
    bytes[6] ^= 0x01;
    std::fs::write(&meta, &bytes).unwrap();
    let read = read_offline(dir.path(), Some("jetsam")).unwrap();
    assert_eq!(read.messages.len(), 9, "the log is whole");
    assert!(read.damage.is_none() && read.notes.iter().any(|n| n.contains("meta")), "{read:?}");

    // Entry 9 stored with term 1 after the Term(2) entry at 7: the node
    // refuses the log; offline stops before entry 9.
    let other = tempfile::tempdir().unwrap();
    let (mut s, _) = Storage::open(other.path(), false, false).unwrap();
    let mut records = vec![
        Record { index: 1, term: 0, entry: Entry::Config { voters: vec![1], new_voters: vec![], non_voters: vec![] } },
        Record { index: 2, term: 1, entry: Entry::Term(1) },
    ];
    let config = StreamConfig { name: "jetsam".into(), replicas: 1, consistency: None };
    records.push(Record { index: 3, term: 1, entry: Entry::Cmd(Cmd::CreateStream { config }) });
    records.extend([publish(4, 1, "0-0"), publish(5, 1, "0-1"), publish(6, 1, "0-2")]);
    records.extend([Record { index: 7, term: 2, entry: Entry::Term(2) }, publish(8, 2, "0-3"), publish(9, 1, "0-4")]);
    s.append(&records).unwrap();
    s.sync().unwrap();
    drop(s);
    let read = read_offline(other.path(), None).unwrap();
    assert_eq!(ids(&read.messages), vec![(1, "0-0"), (2, "0-1"), (3, "0-2"), (4, "0-3")]);
    let damage = read.damage.expect("a wrong term is damage");
    assert!(damage.detail.contains("entry 9"), "{damage:?}");
}

#[test]
fn a_missing_data_dir_or_another_stream_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let out = Command::new(env!("CARGO_BIN_EXE_jetsam-node"))
        .args(["read-offline", "--data-dir"])
        .arg(&missing)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a directory"));
    overwritten_log(dir.path());
    let err = read_offline(dir.path(), Some("other")).unwrap_err();
    assert!(err.to_string().contains("pass --stream jetsam"), "{err}");
    // A fresh, empty dir holds nothing (the node writes its first entry at start).
    let empty = tempfile::tempdir().unwrap();
    let read = read_offline(empty.path(), Some("jetsam")).unwrap();
    assert!(read.messages.is_empty() && read.damage.is_none() && read.records == 0);
    assert!(snapshot(empty.path()).is_empty(), "nothing was created");
}

/// Measures (prints, asserts nothing about time) an offline read of a data
/// dir of 100k publishes of 128-byte payloads, through the library and
/// through the binary (`JETSAM_NODE_BIN` if set, e.g. a release build,
/// else this build's). Run: `cargo test -p jetsam-node --test offline --
/// --ignored --nocapture measure`.
#[test]
#[ignore = "a measurement; run by hand"]
fn measure_an_offline_read_of_100k_messages() {
    const MESSAGES: u64 = 100_000;
    let reader = std::env::var_os("JETSAM_NODE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_jetsam-node")));
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = Storage::open(dir.path(), false, false).unwrap();
    let config = StreamConfig { name: "jetsam".into(), replicas: 1, consistency: None };
    s.append(&[
        Record { index: 1, term: 0, entry: Entry::Config { voters: vec![1], new_voters: vec![], non_voters: vec![] } },
        Record { index: 2, term: 1, entry: Entry::Term(1) },
        Record { index: 3, term: 1, entry: Entry::Cmd(Cmd::CreateStream { config }) },
    ])
    .unwrap();
    for batch in 0..MESSAGES / 1000 {
        let records: Vec<Record> = (0..1000)
            .map(|k| {
                let n = batch * 1000 + k;
                let entry = Entry::Cmd(Cmd::Publish { id: format!("{}-{}", n % 4, n / 4), payload: vec![b'x'; 128] });
                Record { index: 4 + n, term: 1, entry }
            })
            .collect();
        s.append(&records).unwrap();
    }
    s.sync().unwrap();
    drop(s);
    let bytes: u64 = snapshot(dir.path()).values().map(|b| b.len() as u64).sum();
    let t = std::time::Instant::now();
    let read = read_offline(dir.path(), Some("jetsam")).unwrap();
    let library = t.elapsed();
    assert_eq!(read.messages.len() as u64, MESSAGES);
    let t = std::time::Instant::now();
    let (code, msgs, _) = run_reader_of(&reader, dir.path());
    let binary = t.elapsed();
    assert_eq!((code, msgs.len() as u64), (EXIT_COMPLETE, MESSAGES));
    eprintln!(
        "offline read of {MESSAGES} messages ({:.1} MB of segments): library (this test's build) {:.0} ms, \
         {} read-offline (process, stdout parsed by the test) {:.0} ms",
        bytes as f64 / 1e6,
        library.as_secs_f64() * 1e3,
        reader.display(),
        binary.as_secs_f64() * 1e3
    );
}
