//! The offline reader: what a stopped node's data dir holds, read without
//! starting the node (`jetsam-node read-offline --data-dir DIR`,
//! docs/node.md "Reading a data dir offline"). The harness uses it for a
//! node that will not start (a fail-stop on a corrupt log or term/vote
//! file), so a run whose nodes all refuse to start still has something to
//! check.
//!
//! What it does: lists and reads the segment files read-only (it never
//! creates, truncates, renames or removes anything, and takes no lock), and
//! applies recovery's rules (`Storage::open` without `--repair` or the
//! `trust-corrupt-log` bug) to decide which records the node holds:
//!
//! - a torn tail of the last segment is left out, as recovery cuts it;
//! - at the first damage (a bad CRC anywhere else, a record or segment at
//!   the wrong index, an entry stored with the wrong term) it stops: the
//!   records before it are held; nothing after it is reported, not even
//!   records whose CRCs verify, because a stream sequence is a function of
//!   every entry before it (a damaged entry might have been a batch of any
//!   size, or the stream's creation), and the node itself never serves
//!   them (it stops, or `--repair` wipes them);
//! - a damaged term/vote file (`meta`) is noted but does not shorten the
//!   log: the records have their own CRCs.
//!
//! The messages are then those `read_local` would serve: every publish of
//! the log in log order, committed or not, with the sequences the log
//! gives them ([`LogState`]). Raft's overwrites need no rule here: the node
//! cuts its files back (`ftruncate`) before it writes a new leader's
//! entries, so the files never hold an overwritten entry.
//!
//! What it does not check: that entry 1 names this cluster's nodes (it does
//! not know the names; the node refuses such a data dir at start).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use jetsam_core::recovered::RecoveredMsg;
use serde::Serialize;

use crate::command::LogState;
use crate::storage::{self, CATCH_UP_FILE, Record, Scan, StorageError};

/// Exit code of `read-offline` when every record the node would recover was read.
pub const EXIT_COMPLETE: i32 = 0;
/// Exit code when reading stopped at damage (what precedes it was printed).
pub const EXIT_DAMAGED: i32 = 1;

/// Where reading stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Damage {
    /// Relative to the data dir, e.g. `log/00000000000000000001.seg`.
    pub file: PathBuf,
    /// Byte offset of the damaged record (0 for a whole file).
    pub offset: u64,
    pub detail: String,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "corrupt data in {} at offset {}: {}", self.file.display(), self.offset, self.detail)
    }
}

/// What a data dir holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfflineRead {
    /// The stream's messages, in sequence order.
    pub messages: Vec<RecoveredMsg>,
    /// Log records held (every entry kind, the bootstrap entry included).
    pub records: u64,
    /// The first damage, where reading stopped; `None` when complete.
    pub damage: Option<Damage>,
    /// Bytes of the log from the damage on, not read (0 when complete).
    pub unread_bytes: u64,
    /// Things recovery would log: a torn tail left out, a damaged `meta`,
    /// the catch-up marker of a `--repair`ed node.
    pub notes: Vec<String>,
}

/// Why a data dir could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error("failed to read {}: it is not a directory; pass the node's data dir (the one given to --data-dir)", dir.display())]
    NotADir { dir: PathBuf },
    #[error(transparent)]
    Storage(StorageError),
    #[error(
        "failed to read stream {wanted:?} from {}: the log holds stream {found:?}; pass --stream {found} or omit it",
        dir.display()
    )]
    OtherStream { dir: PathBuf, wanted: String, found: String },
}

/// One segment file as read.
struct SegmentBytes {
    first_index: u64,
    rel: PathBuf,
    bytes: Vec<u8>,
}

/// The records recovery would keep, where each starts, and the first damage.
struct Scanned {
    records: Vec<Record>,
    /// (segment position, offset) of each record.
    locs: Vec<(usize, u64)>,
    damage: Option<(usize, Damage)>,
    notes: Vec<String>,
}

/// Reads `dir` as described in the module doc. `stream`, when given, must
/// be the log's stream (as `read_local` refuses another name).
pub fn read_offline(dir: &Path, stream: Option<&str>) -> Result<OfflineRead, OfflineError> {
    if !dir.is_dir() {
        return Err(OfflineError::NotADir { dir: dir.to_path_buf() });
    }
    let segments = read_segments(dir)?;
    let mut scanned = match &segments {
        Ok(segments) => scan_all(segments),
        Err(damage) => Scanned { records: vec![], locs: vec![], damage: Some((0, damage.clone())), notes: vec![] },
    };
    let segments = segments.unwrap_or_default();
    stop_at_term_mismatch(&mut scanned, &segments);
    let mut notes = std::mem::take(&mut scanned.notes);
    match storage::read_meta(dir) {
        Ok(_) => {}
        Err(StorageError::Corrupt { detail, .. }) => notes.push(format!(
            "meta (term and vote) is damaged ({detail}): the node refuses to start on it; the log does not depend on it"
        )),
        Err(e) => return Err(OfflineError::Storage(e)),
    }
    if dir.join(CATCH_UP_FILE).exists() {
        notes.push("the catch-up marker exists: a --repair'ed node that had not caught up (its log may lag)".into());
    }
    let unread_bytes = scanned.damage.as_ref().map_or(0, |(seg, d)| unread_after(&segments, *seg, d.offset));
    let mut log = LogState::default();
    for r in &scanned.records {
        log.push(r);
    }
    if let (Some(wanted), Some(config)) = (stream, log.config())
        && config.name != wanted
    {
        return Err(OfflineError::OtherStream {
            dir: dir.to_path_buf(),
            wanted: wanted.to_string(),
            found: config.name.clone(),
        });
    }
    let messages = log
        .messages(1, log.last_seq(), usize::MAX, true)
        .into_iter()
        .map(|m| RecoveredMsg { seq: m.seq, id: m.id })
        .collect();
    Ok(OfflineRead {
        messages,
        records: scanned.records.len() as u64,
        damage: scanned.damage.map(|(_, d)| d),
        unread_bytes,
        notes,
    })
}

/// Every segment file, read-only, in index order; the inner `Err` is a
/// segment whose name is not an index (recovery refuses the whole log).
fn read_segments(dir: &Path) -> Result<Result<Vec<SegmentBytes>, Damage>, OfflineError> {
    let log_dir = dir.join("log");
    if !log_dir.exists() {
        // A node that never started: it holds nothing yet.
        return Ok(Ok(Vec::new()));
    }
    let names = match storage::list_segments(&log_dir) {
        Ok(names) => names,
        Err(StorageError::Corrupt { file, offset, detail }) => {
            return Ok(Err(Damage { file: relative(dir, &file), offset, detail }));
        }
        Err(e) => return Err(OfflineError::Storage(e)),
    };
    let mut out = Vec::with_capacity(names.len());
    for (first_index, path) in names {
        let bytes = fs::read(&path)
            .map_err(|source| OfflineError::Storage(StorageError::Io { action: "read", path: path.clone(), source }))?;
        out.push(SegmentBytes { first_index, rel: relative(dir, &path), bytes });
    }
    Ok(Ok(out))
}

fn relative(dir: &Path, path: &Path) -> PathBuf {
    path.strip_prefix(dir).map(Path::to_path_buf).unwrap_or_else(|_| path.to_path_buf())
}

/// Recovery's rules over the segments, stopping at the first damage.
fn scan_all(segments: &[SegmentBytes]) -> Scanned {
    let mut out = Scanned { records: Vec::new(), locs: Vec::new(), damage: None, notes: Vec::new() };
    for (n, seg) in segments.iter().enumerate() {
        let damage = |offset: u64, detail: String| Some((n, Damage { file: seg.rel.clone(), offset, detail }));
        let expected_first = out.records.len() as u64 + 1;
        if seg.first_index != expected_first {
            let detail = format!(
                "segment starts at index {} but the log so far ends at {}",
                seg.first_index,
                expected_first - 1
            );
            out.damage = damage(0, detail);
            return out;
        }
        let (found, scan) = storage::scan_segment(&seg.bytes);
        for (offset, record) in found {
            let expected = out.records.len() as u64 + 1;
            if record.index != expected {
                out.damage = damage(offset, format!("record index {} where {expected} was expected", record.index));
                return out;
            }
            out.records.push(record);
            out.locs.push((n, offset));
        }
        match scan {
            Scan::Clean => {}
            Scan::Torn { offset, detail } if n + 1 == segments.len() => {
                out.notes.push(format!(
                    "left out a torn record at the tail of {} at offset {offset} ({detail}), as recovery cuts it",
                    seg.rel.display()
                ));
            }
            Scan::Torn { offset, detail } | Scan::Corrupt { offset, detail } => {
                out.damage = damage(offset, detail);
                return out;
            }
        }
    }
    out
}

/// Cuts the records back before the first entry stored with the wrong term
/// (the node refuses such a log; see [`crate::terms`]), if it comes first.
fn stop_at_term_mismatch(scanned: &mut Scanned, segments: &[SegmentBytes]) {
    let Some(m) = crate::terms::first_term_mismatch(&scanned.records) else { return };
    let keep = (m.index - 1) as usize;
    let (seg, offset) = scanned.locs[keep];
    scanned.records.truncate(keep);
    scanned.locs.truncate(keep);
    scanned.damage = Some((seg, Damage { file: segments[seg].rel.clone(), offset, detail: m.to_string() }));
}

/// Bytes of the log from `offset` of segment `seg` to the end.
fn unread_after(segments: &[SegmentBytes], seg: usize, offset: u64) -> u64 {
    let Some(first) = segments.get(seg) else { return 0 };
    let rest: u64 = segments[seg + 1..].iter().map(|s| s.bytes.len() as u64).sum();
    (first.bytes.len() as u64).saturating_sub(offset) + rest
}

/// The last line `read-offline` writes to stderr: one JSON object saying
/// how the read went (what the harness parses).
#[derive(Debug, Serialize)]
struct Summary<'a> {
    complete: bool,
    records: u64,
    messages: usize,
    damage: Option<&'a Damage>,
    unread_bytes: u64,
    notes: &'a [String],
}

/// Writes `read` as `read-offline` does: the messages as JSON lines on
/// `out`; on `err` each note and the damage as text, then the summary line
/// `{"read_offline": {...}}`. Returns the exit code.
pub fn write_read(read: &OfflineRead, out: &mut impl Write, err: &mut impl Write) -> std::io::Result<i32> {
    for m in &read.messages {
        serde_json::to_writer(&mut *out, m)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    for note in &read.notes {
        writeln!(err, "note: {note}")?;
    }
    if let Some(d) = &read.damage {
        writeln!(
            err,
            "stopped: {d}; the {} message(s) before it were printed, {} byte(s) from it on were not read",
            read.messages.len(),
            read.unread_bytes
        )?;
    }
    let summary = Summary {
        complete: read.damage.is_none(),
        records: read.records,
        messages: read.messages.len(),
        damage: read.damage.as_ref(),
        unread_bytes: read.unread_bytes,
        notes: &read.notes,
    };
    writeln!(err, "{}", serde_json::json!({ "read_offline": summary }))?;
    err.flush()?;
    Ok(if read.damage.is_none() { EXIT_COMPLETE } else { EXIT_DAMAGED })
}
