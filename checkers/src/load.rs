//! Reads a run folder (docs/formats.md) into a [`RunInput`] and a
//! [`CheckConfig`], validating every line as it streams: a malformed or
//! out-of-order line is an error naming the file, the line and what is
//! wrong, and nothing is skipped. It reads (with [`crate::forms`]) and never
//! writes.
//!
//! Files read: `scenario.resolved.toml` (optional), `history.jsonl`
//! or its compact form `history.bin` (one of them required; format version
//! 2, [`jetsam_core::compact`]), `events.jsonl` (optional: a foreign history may have no fault
//! timeline; then no window is tied to a fault), `recovered/<node>.jsonl`,
//! `recovered/<node>.unreadable`, `recovered/<node>.offline` (the node's
//! `.jsonl` was read from its files without it running),
//! `recovered/cluster.jsonl`, `recovered/replicas.json` (optional: which
//! nodes are judged, see [`crate::placement`]). Which files make sense
//! together is decided first, by [`crate::plan`] (re-exported here). Node
//! read-backs are parsed in parallel (one thread per file, at most 8). In a
//! compact file the number an error names is the record's.

use crate::config::{CheckConfig, ConfigError, Overrides};
use crate::data::{History, Recovered, RecoveredBuilder};
pub use crate::plan::{NodePlan, RunPlan, plan_run};
use crate::{NodeInput, RunInput};
use jetsam_core::compact::{CompactOp, DecodeError, HistoryDecoder, RecoveredDecoder};
use jetsam_core::event::{Event, EventValidator};
use jetsam_core::jsonl::{LoadError, for_each_raw_line};
use jetsam_core::recovered::{CLUSTER_FILE, OFFLINE_SUFFIX, REPLICAS_FILE, UNREADABLE_SUFFIX};
use jetsam_core::scenario::ScenarioError;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

pub const SCENARIO_FILE: &str = "scenario.resolved.toml";
pub const HISTORY_FILE: &str = "history.jsonl";
/// The compact form of [`HISTORY_FILE`] (format version 2).
pub const HISTORY_COMPACT_FILE: &str = "history.bin";
/// Suffix of a compact recovered view (`recovered/<node>.bin`, `recovered/cluster.bin`).
pub const COMPACT_SUFFIX: &str = ".bin";
/// The compact form of the cluster view.
pub const CLUSTER_COMPACT_FILE: &str = "cluster.bin";
pub const EVENTS_FILE: &str = "events.jsonl";
pub const RECOVERED_DIR: &str = "recovered";
pub const REPORT_FILE: &str = "report.json";

/// A run folder that cannot be checked. All of these are bad input (exit
/// code 2): the user pointed at the folder.
#[derive(Debug, thiserror::Error)]
pub enum LoadRunError {
    #[error("failed to check {}: no such folder; pass a run folder such as results/<scenario>/<time>-<seed>", dir.display())]
    NotAFolder { dir: PathBuf },
    #[error(
        "failed to check {}: {HISTORY_FILE} is missing; a run folder needs at least history.jsonl (or history.bin) and recovered/<node>.jsonl (docs/formats.md)",
        dir.display()
    )]
    NoHistory { dir: PathBuf },
    #[error(
        "failed to check {}: both {a} and {b} exist; a file is in one form only: if `jetsam compact` stopped half-way, \
         run it again to finish; else remove the one that is wrong",
        dir.display()
    )]
    BothForms { dir: PathBuf, a: String, b: String },
    #[error("failed to list {}: {source}; check the folder's permissions", path.display())]
    List {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    File(#[from] LoadError),
    #[error("{}\nfix the scenario file, or remove it and pass --mode/--nodes", .0.to_string().trim_end())]
    Scenario(#[from] ScenarioError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(
        "failed to check {}: {} belongs to no node of this run (nodes: {nodes}); remove it, or list the nodes with --nodes",
        dir.display(), file.display()
    )]
    StrayFile { dir: PathBuf, file: PathBuf, nodes: String },
    #[error(
        "failed to check {}: recovered/{REPLICAS_FILE} is not valid: {why}; fix it or remove it (without it every node of the run is judged as a replica)",
        dir.display()
    )]
    Placement { dir: PathBuf, why: String },
    #[error(
        "failed to check {}: {} belongs to {node}, which recovered/{REPLICAS_FILE} does not list as a replica (replicas: {replicas}); remove that file, or fix the placement",
        dir.display(), file.display()
    )]
    NotAReplica { dir: PathBuf, file: PathBuf, node: String, replicas: String },
    #[error(
        "failed to check {}: both recovered/{node}.jsonl and recovered/{node}{UNREADABLE_SUFFIX} exist; remove the one that is wrong",
        dir.display()
    )]
    Contradiction { dir: PathBuf, node: String },
    #[error(
        "failed to check {}: recovered/{node}{OFFLINE_SUFFIX} says the node was read offline but recovered/{node}.jsonl \
         is missing; restore the .jsonl, or remove the marker (and write recovered/{node}{UNREADABLE_SUFFIX})",
        dir.display()
    )]
    OfflineWithoutRead { dir: PathBuf, node: String },
}

/// serde_json ends its messages with "at line 1 column N", which inside a
/// JSON-lines file means the column of the line already named.
pub(crate) fn json_error(e: serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => format!("{} (column {})", &text[..i], e.column()),
        None => text,
    }
}

/// Reads `history.jsonl` into a [`History`], parsing on every core (see
/// [`crate::history_reader`]); same result and errors as reading it line by
/// line.
pub fn load_history(path: &Path) -> Result<History, LoadError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    crate::history_reader::read_history(path, threads, crate::history_reader::BLOCK_BYTES, json_error)
}

/// The line-by-line reading [`load_history`] must agree with.
#[cfg(test)]
fn load_history_sequential(path: &Path) -> Result<History, LoadError> {
    let mut builder = crate::data::HistoryBuilder::new();
    for_each_raw_line(path, |raw, _| {
        let op: jetsam_core::history::OpRef<'_> = serde_json::from_str(raw).map_err(json_error)?;
        builder.push(&op)
    })?;
    Ok(builder.finish())
}

/// Reads `history.bin` (format version 2) into a [`History`]: the same
/// validation as `history.jsonl`, record by record.
pub fn load_history_compact(path: &Path) -> Result<History, LoadError> {
    let mut builder = crate::data::HistoryBuilder::new();
    for_each_compact_op(path, |op| builder.push_compact(op))?;
    Ok(builder.finish())
}

/// Decodes `history.bin` and hands each record, in file order, to `push`,
/// which answers the "what is wrong" of a record error (the builder of
/// [`load_history_compact`], or the streaming checker's index).
pub fn for_each_compact_op(
    path: &Path,
    mut push: impl FnMut(&CompactOp) -> Result<(), String>,
) -> Result<(), LoadError> {
    let file = std::fs::File::open(path).map_err(|source| LoadError::Io { path: path.to_path_buf(), source })?;
    let mut decoder = HistoryDecoder::new(file).map_err(|e| compact_error(path, 0, e))?;
    // Decoding runs on its own thread, a batch at a time, while this one
    // validates and builds: the two halves cost about the same.
    let (batch_tx, batch_rx) = std::sync::mpsc::sync_channel::<Vec<CompactOp>>(COMPACT_BATCHES_IN_FLIGHT);
    std::thread::scope(|s| {
        let decoding = s.spawn(move || -> Result<(), (usize, DecodeError)> {
            let mut record = 0usize;
            loop {
                let mut batch = Vec::with_capacity(COMPACT_BATCH_RECORDS);
                while batch.len() < COMPACT_BATCH_RECORDS {
                    match decoder.next_op() {
                        Ok(Some(op)) => batch.push(op),
                        Ok(None) => break,
                        Err(e) => {
                            // The records before the bad one are still
                            // validated: an earlier invalid one is named first.
                            let bad = record + batch.len() + 1;
                            let _ = batch_tx.send(batch);
                            return Err((bad, e));
                        }
                    }
                }
                let last = batch.len() < COMPACT_BATCH_RECORDS;
                record += batch.len();
                if batch_tx.send(batch).is_err() || last {
                    return Ok(()); // the consumer stopped, or the file ended
                }
            }
        });
        let mut record = 0usize;
        let mut built = Ok(());
        'batches: for batch in batch_rx.iter() {
            for op in &batch {
                record += 1;
                if let Err(what) = push(op) {
                    built = Err(LoadError::line(path, record, what));
                    break 'batches;
                }
            }
        }
        // Dropping the receiver stops a decoder blocked on a full channel.
        drop(batch_rx);
        let decoded = decoding.join().expect("the decoder thread does not panic");
        // A record that failed validation comes before any later decode error.
        built?;
        decoded.map_err(|(record, e)| compact_error(path, record, e))
    })
}

/// Records per batch handed from the compact history's decoder thread.
const COMPACT_BATCH_RECORDS: usize = 1 << 16;
/// Batches decoded but not yet built, at most (bounds memory: ~2.5 MB each).
const COMPACT_BATCHES_IN_FLIGHT: usize = 4;

/// A compact file's decode error: I/O as I/O, the rest naming the record
/// (0: the header).
pub(crate) fn compact_error(path: &Path, record: usize, e: DecodeError) -> LoadError {
    match e {
        DecodeError::Io(source) => LoadError::Io { path: path.to_path_buf(), source },
        DecodeError::Bad(what) => LoadError::line(path, record, what),
    }
}

/// Streams one recovered file (`.jsonl`, or compact `.bin`) into a
/// [`Recovered`] view.
pub fn load_recovered(path: &Path, history: &History) -> Result<Recovered, LoadError> {
    let mut builder = RecoveredBuilder::new(history);
    if crate::forms::is_compact(path) {
        let file = std::fs::File::open(path).map_err(|source| LoadError::Io { path: path.to_path_buf(), source })?;
        let mut decoder = RecoveredDecoder::new(file).map_err(|e| compact_error(path, 0, e))?;
        let mut record = 0usize;
        while let Some((seq, id)) = decoder.next_msg().map_err(|e| compact_error(path, record + 1, e))? {
            record += 1;
            builder.push_compact(seq, id).map_err(|what| LoadError::line(path, record, what))?;
        }
        return Ok(builder.finish());
    }
    for_each_raw_line(path, |raw, _| {
        let (seq, id) = crate::forms::recovered_line(raw)?;
        builder.push(seq, &id)
    })?;
    Ok(builder.finish())
}

/// Reads `events.jsonl` (time order is validated).
pub fn load_events(path: &Path) -> Result<Vec<Event>, LoadError> {
    let mut validator = EventValidator::default();
    jetsam_core::jsonl::read_lines(path, |e: &Event, _| validator.check(e))
}

/// Reads a whole run folder into memory ([`plan_run`], then every file).
/// `overrides` (the command line) win over the scenario.
pub fn load_run(dir: &Path, overrides: &Overrides) -> Result<(RunInput, CheckConfig), LoadRunError> {
    let (plan, config) = plan_run(dir, overrides)?;
    Ok((read_plan(&plan)?, config))
}

/// Reads every file of a listed run folder into memory.
pub fn read_plan(plan: &RunPlan) -> Result<RunInput, LoadRunError> {
    let history = plan.load_history()?;
    let events = plan.load_events()?;
    let mut to_read: Vec<(String, PathBuf)> = Vec::new();
    let mut nodes = BTreeMap::new();
    for (node, p) in &plan.nodes {
        match p {
            NodePlan::Read { path, .. } => to_read.push((node.clone(), path.clone())),
            NodePlan::Unreadable { reason } => {
                nodes.insert(node.clone(), NodeInput::Unreadable { reason: reason.clone() });
            }
        }
    }
    if let Some(path) = &plan.cluster {
        to_read.push((CLUSTER_FILE.to_string(), path.clone()));
    }
    let mut views = read_parallel(&to_read, &history)?;
    let cluster = views.remove(CLUSTER_FILE);
    for (node, view) in views {
        let input = match &plan.nodes[&node] {
            NodePlan::Read { offline: Some(note), .. } => NodeInput::ReadOffline { view, note: note.clone() },
            _ => NodeInput::Readable(view),
        };
        nodes.insert(node, input);
    }
    Ok(RunInput { history, events, nodes, cluster, judged: plan.judged.clone() })
}

/// Recovered files read at once, at most (each holds a read buffer and its
/// view under construction; views are kept in memory anyway).
const MAX_READ_THREADS: usize = 8;

/// Loads recovered files in parallel; the first error (in file order) wins.
fn read_parallel(files: &[(String, PathBuf)], history: &History) -> Result<BTreeMap<String, Recovered>, LoadError> {
    // One thread per file (at most MAX_READ_THREADS): with three views on two
    // cores, two threads would leave one core idle while the third file is
    // read alone.
    let threads = files.len().clamp(1, MAX_READ_THREADS);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<Recovered, LoadError>>>> =
        Mutex::new((0..files.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((_, path)) = files.get(i) else { break };
                    let r = load_recovered(path, history);
                    results.lock().expect("no loader panicked holding the lock")[i] = Some(r);
                }
            });
        }
    });
    let mut out = BTreeMap::new();
    for ((name, _), r) in files.iter().zip(results.into_inner().expect("no loader panicked")) {
        out.insert(name.clone(), r.expect("every file was loaded")?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(
        r: Result<History, LoadError>,
    ) -> Result<(usize, Vec<crate::data::Ack>, Vec<crate::data::Outcome>), String> {
        r.map(|h| (h.len(), h.acks().collect::<Vec<_>>(), (0..h.len() as u32).map(|op| h.outcome(op)).collect()))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn block_reading_agrees_with_line_reading() {
        let good = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pass-strong/history.jsonl"),
        )
        .unwrap();
        let lines: Vec<&str> = good.lines().collect();
        let mut variants: Vec<Vec<u8>> = vec![
            good.clone().into_bytes(),
            good.trim_end().as_bytes().to_vec(),
            good.as_bytes()[..good.len() - 7].to_vec(),
            good.replace('\n', "\r\n").into_bytes(),
            format!("{good}\n").into_bytes(),
            Vec::new(),
        ];
        for bad_line in [0, 3, 9, lines.len() - 1] {
            for bad in ["{oops", "", r#"{"t_ns":0,"client":0,"type":"ok","id":"0-0"}"#] {
                let mut l = lines.clone();
                l[bad_line] = bad;
                variants.push((l.join("\n") + "\n").into_bytes());
            }
            let mut bytes = lines[..bad_line].join("\n").into_bytes();
            bytes.extend_from_slice(b"\n\xff\n");
            variants.push(bytes);
        }
        // A validation error early and a parse error late: the early one is named.
        let mut l = lines.clone();
        l[1] = r#"{"t_ns":0,"client":0,"type":"fail","id":"0-0"}"#;
        variants.push((l.join("\n") + "\n{cut").into_bytes());
        // A long history whose second line is bad: the readers stop early
        // (blocks in flight stay bounded) instead of reading on or hanging.
        let mut long = String::from(lines[0]);
        long.push_str("\n{\"t_ns\":0}\n");
        for i in 1..5000u64 {
            long.push_str(&format!("{{\"t_ns\":{i},\"client\":9,\"type\":\"invoke\",\"id\":\"9-{i}\"}}\n"));
        }
        variants.push(long.into_bytes());
        let dir = std::env::temp_dir().join(format!("jetsam-history-reader-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (v, bytes) in variants.iter().enumerate() {
            let path = dir.join(format!("{v}.jsonl"));
            std::fs::write(&path, bytes).unwrap();
            let want = outcome(load_history_sequential(&path));
            for threads in 1..=3 {
                for block in [1, 7, 64, 300, 1 << 20] {
                    let got = outcome(crate::history_reader::read_history(&path, threads, block, json_error));
                    assert_eq!(got, want, "variant {v}, {threads} threads, {block}-byte blocks");
                }
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_placement_file_is_validated_and_non_replicas_have_no_file() {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/placement-r3-on-5");
        let dir = std::env::temp_dir().join(format!("jetsam-placement-{}", std::process::id()));
        let copy = |dir: &Path| {
            let _ = std::fs::remove_dir_all(dir);
            std::fs::create_dir_all(dir.join(RECOVERED_DIR)).unwrap();
            for file in [SCENARIO_FILE, HISTORY_FILE, "recovered/n1.jsonl", "recovered/n3.jsonl", "recovered/n4.jsonl"]
            {
                std::fs::copy(fixture.join(file), dir.join(file)).unwrap();
            }
        };
        let error = |placement: &str, extra: Option<&str>| {
            copy(&dir);
            std::fs::write(dir.join(RECOVERED_DIR).join(REPLICAS_FILE), placement).unwrap();
            if let Some(file) = extra {
                std::fs::write(dir.join(RECOVERED_DIR).join(file), "").unwrap();
            }
            load_run(&dir, &Overrides::default()).err().map(|e| e.to_string())
        };
        assert_eq!(error("{\"replicas\":[\"n1\",\"n3\",\"n4\"]}\n", None), None);
        let e = error("{\"replicas\":[\"n1\",\"n3\",\"n4\"]}\n", Some("n2.jsonl")).unwrap();
        assert!(e.contains("recovered/n2.jsonl belongs to n2, which recovered/replicas.json does not list"), "{e}");
        let e = error("{\"replicas\":[\"n1\",\"n3\",\"n4\"]}\n", Some("n5.unreadable")).unwrap();
        assert!(e.contains("recovered/n5.unreadable belongs to n5"), "{e}");
        let e = error("{\"replicas\":[\"n1\",\"n6\"]}", None).unwrap();
        assert!(e.contains("replicas.json is not valid: \"n6\" is not a node of this run (n1,n2,n3,n4,n5)"), "{e}");
        let e = error("{\"replicas\":[\"n1\"]", None).unwrap();
        assert!(e.contains("replicas.json is not valid: EOF while parsing"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
