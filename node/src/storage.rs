//! The node's durable state: segment files of CRC-checked log records under
//! `<data>/log/`, the Raft term and vote in `<data>/meta`, and the catch-up
//! marker `<data>/catch-up` of a node repaired with `--repair`.
//!
//! What it does: appends records with one `pwrite(2)` per batch (so the
//! page cache holds them at once), fsyncs on request (`fdatasync`), cuts the
//! log back for Raft's suffix overwrites, and on open scans every segment,
//! cutting off a torn record at the very tail and refusing (fail-stop) on a
//! bad CRC anywhere else. [`repair`] wipes a damaged log (keeping an intact
//! term/vote file, moved one term on) and leaves the catch-up marker, which
//! [`Storage::finish_catch_up`] removes. What it does not: decide when to
//! fsync (the sync policy lives in the event loop), decide when a repaired
//! node has caught up (the event loop does), interpret commands, or use mmap
//! or io_uring (the power-loss tracer must see every write).
//!
//! Record layout (little-endian): `u32 body_len | u32 crc32c(body_len bytes) |
//! u32 crc32c(body) | body`, the body being the JSON of [`Record`]. The
//! header has its own CRC so a flipped length bit is caught as corruption
//! instead of being read as a record that runs past the end of the file.
//! Segment files are named by the index of their first record,
//! `<first_index:020>.seg`; a new one starts when the active one passes
//! [`SEGMENT_BYTES_MAX`].

use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::command::Command;

/// A segment is closed and a new one started once it reaches this size.
pub const SEGMENT_BYTES_MAX: u64 = 64 << 20;
/// Header bytes before every record body.
pub const RECORD_HEADER_BYTES: usize = 12;
/// A larger body length is corruption (no legitimate record is that big).
pub const RECORD_BODY_BYTES_MAX: usize = 64 << 20;
/// Name of the catch-up marker in the data dir: while it exists the node is
/// a non-voting catch-up member (docs/node.md, "Repair"). Its existence is
/// the state; its content only says why, for people.
pub const CATCH_UP_FILE: &str = "catch-up";

/// One Raft log entry as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    #[serde(rename = "i")]
    pub index: u64,
    #[serde(rename = "t")]
    pub term: u64,
    #[serde(rename = "e")]
    pub entry: Entry,
}

/// The payload of a log entry: noraft's entry kinds, commands with their data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entry {
    /// The first entry of a leader's term.
    Term(u64),
    /// A cluster configuration (node ids).
    Config { voters: Vec<u64>, new_voters: Vec<u64>, non_voters: Vec<u64> },
    /// A client command.
    Cmd(Command),
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error(
        "failed to recover: corrupt data in {file} at offset {offset}: {detail}; the node stops rather than serve or \
         vote with damaged data (restore the data dir from a healthy replica, or restart with --repair to wipe the \
         log and catch up without voting)"
    )]
    Corrupt { file: PathBuf, offset: u64, detail: String },
    #[error(
        "failed to repair {file}: {detail}; without an intact term/vote file the node could vote twice in one term, \
         so it stops (restore the whole data dir from a healthy replica while both are stopped)"
    )]
    RepairRefused { file: PathBuf, detail: String },
    #[error("failed to {action} {path}: {source}; check the data dir's permissions and free space")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StorageError + 'a {
    move |source| StorageError::Io { action, path: path.to_path_buf(), source }
}

/// The term and vote, stored in `<data>/meta`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Meta {
    pub term: u64,
    pub voted_for: Option<u64>,
}

/// Everything found on disk at open.
#[derive(Debug)]
pub struct Recovered {
    pub meta: Meta,
    pub records: Vec<Record>,
    /// What recovery cut off or repaired, for the log (one line each).
    pub notes: Vec<String>,
    /// The catch-up marker exists: the node was repaired and has not caught up yet.
    pub catching_up: bool,
}

/// What [`repair`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repaired {
    /// The term/vote found (intact).
    pub old: Meta,
    /// The term/vote saved instead: one term later, no vote.
    pub new: Meta,
    /// Segment files removed, last first.
    pub removed: Vec<PathBuf>,
}

struct Segment {
    path: PathBuf,
    file: File,
    bytes: u64,
}

/// Where a record lives, so the log can be cut back at any index.
#[derive(Debug, Clone, Copy)]
struct Loc {
    segment: usize,
    offset: u64,
}

pub struct Storage {
    dir: PathBuf,
    log_dir: PathBuf,
    segments: Vec<Segment>,
    /// `locs[i]` is where the record of index `i + 1` starts.
    locs: Vec<Loc>,
    /// Segments written since the last fsync (indexes into `segments`).
    unsynced: Vec<usize>,
    /// With the `ack-before-write` bug, encoded records wait here (user
    /// space, lost on SIGKILL) until [`Storage::flush_buffer`].
    defer_writes: bool,
    buffer: Vec<u8>,
    /// A new segment starts once the active one reaches this size.
    segment_bytes_max: u64,
    /// The catch-up marker exists (see [`CATCH_UP_FILE`]).
    catching_up: bool,
}

pub fn encode_record(record: &Record, out: &mut Vec<u8>) {
    // The body is written in place after room for the 12-byte header, which
    // is filled in once the body's length and CRC are known (no separate
    // buffer and copy per record).
    let start = out.len();
    out.extend_from_slice(&[0u8; RECORD_HEADER_BYTES]);
    serde_json::to_writer(&mut *out, record).expect("records always serialize");
    let body_len = out.len() - start - RECORD_HEADER_BYTES;
    assert!(body_len <= RECORD_BODY_BYTES_MAX, "record of {body_len} bytes exceeds RECORD_BODY_BYTES_MAX");
    let len = (body_len as u32).to_le_bytes();
    let body_crc = crc32c::crc32c(&out[start + RECORD_HEADER_BYTES..]).to_le_bytes();
    out[start..start + 4].copy_from_slice(&len);
    out[start + 4..start + 8].copy_from_slice(&crc32c::crc32c(&len).to_le_bytes());
    out[start + 8..start + 12].copy_from_slice(&body_crc);
}

/// What scanning one segment's bytes found.
#[derive(Debug, PartialEq, Eq)]
pub enum Scan {
    /// Every byte is part of a good record.
    Clean,
    /// The bytes from `offset` on are an interrupted append (only legal at
    /// the tail of the last segment).
    Torn { offset: u64, detail: String },
    /// A damaged record at `offset` with good data possibly after it.
    Corrupt { offset: u64, detail: String },
}

/// Parses the records of one segment. Returns the good records (with their
/// offsets) before the first problem, and what the problem was.
pub fn scan_segment(bytes: &[u8]) -> (Vec<(u64, Record)>, Scan) {
    let mut records = Vec::new();
    let mut pos = 0usize;
    while pos < bytes.len() {
        let offset = pos as u64;
        let rest = &bytes[pos..];
        if rest.iter().all(|&b| b == 0) {
            // Zero-filled tail: file space the interrupted write never filled.
            return (records, Scan::Torn { offset, detail: format!("{} zero bytes at the tail", rest.len()) });
        }
        if rest.len() < RECORD_HEADER_BYTES {
            return (records, Scan::Torn { offset, detail: format!("{} bytes of a record header", rest.len()) });
        }
        let len_bytes: [u8; 4] = rest[0..4].try_into().expect("4 bytes");
        let hdr_crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
        let body_crc = u32::from_le_bytes(rest[8..12].try_into().expect("4 bytes"));
        if crc32c::crc32c(&len_bytes) != hdr_crc {
            return (records, Scan::Corrupt { offset, detail: "record header CRC mismatch".into() });
        }
        let len = u32::from_le_bytes(len_bytes) as usize;
        if len > RECORD_BODY_BYTES_MAX {
            return (records, Scan::Corrupt { offset, detail: format!("record length {len} exceeds the maximum") });
        }
        let end = RECORD_HEADER_BYTES + len;
        if rest.len() < end {
            return (
                records,
                Scan::Torn {
                    offset,
                    detail: format!("record of {len} bytes cut at {} bytes", rest.len() - RECORD_HEADER_BYTES),
                },
            );
        }
        let body = &rest[RECORD_HEADER_BYTES..end];
        if crc32c::crc32c(body) != body_crc {
            if end == rest.len() {
                // The last record of the file: a write torn by power loss
                // (its later pages never reached the disk) looks exactly like this.
                return (records, Scan::Torn { offset, detail: "last record's body CRC mismatch".into() });
            }
            return (records, Scan::Corrupt { offset, detail: "record body CRC mismatch".into() });
        }
        match serde_json::from_slice::<Record>(body) {
            Ok(record) => records.push((offset, record)),
            Err(e) => {
                return (
                    records,
                    Scan::Corrupt { offset, detail: format!("record with a good CRC does not decode: {e}") },
                );
            }
        }
        pos += end;
    }
    (records, Scan::Clean)
}

/// The segment files of a log directory as (first index, path), in index
/// order. A `.seg` file whose name is not an index is corruption.
pub fn list_segments(log_dir: &Path) -> Result<Vec<(u64, PathBuf)>, StorageError> {
    let mut names: Vec<(u64, PathBuf)> = Vec::new();
    for item in fs::read_dir(log_dir).map_err(io_err("list", log_dir))? {
        let item = item.map_err(io_err("list", log_dir))?;
        let path = item.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
        let Some(stem) = name.strip_suffix(".seg") else { continue };
        let Ok(first_index) = stem.parse::<u64>() else {
            return Err(StorageError::Corrupt { file: path, offset: 0, detail: "segment name is not an index".into() });
        };
        names.push((first_index, path));
    }
    names.sort();
    Ok(names)
}

fn segment_name(first_index: u64) -> String {
    format!("{first_index:020}.seg")
}

fn fsync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err("fsync directory", dir))
}

impl Storage {
    /// Opens (creating if needed) the data dir and recovers its content.
    /// `trust_corrupt` is the `trust-corrupt-log` bug: cut the log at a bad
    /// CRC and carry on instead of stopping.
    pub fn open(dir: &Path, trust_corrupt: bool, defer_writes: bool) -> Result<(Storage, Recovered), StorageError> {
        let log_dir = dir.join("log");
        fs::create_dir_all(&log_dir).map_err(io_err("create", &log_dir))?;
        let mut notes = Vec::new();
        let meta = read_meta(dir)?;

        let names = list_segments(&log_dir)?;

        let mut storage = Storage {
            dir: dir.to_path_buf(),
            log_dir,
            segments: Vec::new(),
            locs: Vec::new(),
            unsynced: Vec::new(),
            defer_writes,
            buffer: Vec::new(),
            segment_bytes_max: SEGMENT_BYTES_MAX,
            catching_up: catch_up_marker_exists(dir)?,
        };
        let mut records = Vec::new();
        let count = names.len();
        let mut cut_rest = false;
        for (n, (first_index, path)) in names.into_iter().enumerate() {
            if cut_rest {
                notes.push(format!("removed segment {} after a corrupt record (trust-corrupt-log)", path.display()));
                fs::remove_file(&path).map_err(io_err("remove", &path))?;
                continue;
            }
            let bytes = fs::read(&path).map_err(io_err("read", &path))?;
            let (found, scan) = scan_segment(&bytes);
            let expected_first = records.len() as u64 + 1;
            if first_index != expected_first {
                let problem = StorageError::Corrupt {
                    file: path.clone(),
                    offset: 0,
                    detail: format!(
                        "segment starts at index {first_index} but the log so far ends at {}",
                        expected_first - 1
                    ),
                };
                if !trust_corrupt {
                    return Err(problem);
                }
                notes.push(format!("ignored: {problem} (trust-corrupt-log)"));
                fs::remove_file(&path).map_err(io_err("remove", &path))?;
                cut_rest = true;
                continue;
            }
            let mut good_bytes = bytes.len() as u64;
            let mut problem: Option<(u64, String, bool)> = None;
            for (offset, record) in found {
                let expected = records.len() as u64 + 1;
                if record.index != expected {
                    problem =
                        Some((offset, format!("record index {} where {expected} was expected", record.index), false));
                    break;
                }
                storage.locs.push(Loc { segment: storage.segments.len(), offset });
                records.push(record);
            }
            if problem.is_none() {
                match scan {
                    Scan::Clean => {}
                    Scan::Torn { offset, detail } => problem = Some((offset, detail, true)),
                    Scan::Corrupt { offset, detail } => problem = Some((offset, detail, false)),
                }
            }
            if let Some((offset, detail, torn)) = problem {
                let last = n + 1 == count;
                if torn && last {
                    notes.push(format!(
                        "cut a torn record at the tail of {} at offset {offset}: {detail}",
                        path.display()
                    ));
                } else if trust_corrupt {
                    notes.push(format!(
                        "truncated {} at offset {offset} after corruption ({detail}) and kept serving (trust-corrupt-log)",
                        path.display()
                    ));
                    cut_rest = true;
                } else {
                    return Err(StorageError::Corrupt { file: path, offset, detail });
                }
                // Drop locations that pointed past the cut (index mismatch case).
                while storage.locs.last().is_some_and(|l| l.segment == storage.segments.len() && l.offset >= offset) {
                    storage.locs.pop();
                    records.pop();
                }
                good_bytes = offset;
                let file = OpenOptions::new().read(true).write(true).open(&path).map_err(io_err("open", &path))?;
                file.set_len(good_bytes).map_err(io_err("truncate", &path))?;
                file.sync_all().map_err(io_err("fsync", &path))?;
            }
            let file = OpenOptions::new().read(true).write(true).open(&path).map_err(io_err("open", &path))?;
            storage.segments.push(Segment { path, file, bytes: good_bytes });
        }
        // An empty trailing segment (its first record was torn away) is harmless: appends continue in it.
        let catching_up = storage.catching_up;
        Ok((storage, Recovered { meta, records, notes, catching_up }))
    }

    /// Changes the size at which segments roll over (the default is
    /// [`SEGMENT_BYTES_MAX`]; small values exercise rollover in tests).
    pub fn set_segment_bytes_max(&mut self, bytes: u64) {
        assert!(bytes > 0, "segments need room for at least one record");
        self.segment_bytes_max = bytes;
    }

    /// Index of the last record stored (0 when empty).
    pub fn last_index(&self) -> u64 {
        self.locs.len() as u64
    }

    /// Appends records (their indexes must follow the last one). One write
    /// for the whole batch; not durable until [`Storage::sync`].
    pub fn append(&mut self, records: &[Record]) -> Result<(), StorageError> {
        if records.is_empty() {
            return Ok(());
        }
        let needs_new = match self.segments.last() {
            None => true,
            Some(s) => s.bytes + self.buffer.len() as u64 >= self.segment_bytes_max,
        };
        if needs_new {
            self.flush_buffer()?;
            self.new_segment(records[0].index)?;
        }
        let segment = self.segments.len() - 1;
        let mut bytes = std::mem::take(&mut self.buffer);
        let base = self.segments[segment].bytes;
        for record in records {
            assert_eq!(record.index, self.last_index() + 1, "log records must be appended in index order");
            self.locs.push(Loc { segment, offset: base + bytes.len() as u64 });
            encode_record(record, &mut bytes);
        }
        self.buffer = bytes;
        if !self.defer_writes {
            self.flush_buffer()?;
        }
        Ok(())
    }

    /// Writes buffered records to the active segment (page cache).
    pub fn flush_buffer(&mut self) -> Result<(), StorageError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let idx = self.segments.len() - 1;
        let seg = &mut self.segments[idx];
        seg.file.write_all_at(&self.buffer, seg.bytes).map_err(io_err("write", &seg.path))?;
        seg.bytes += self.buffer.len() as u64;
        self.buffer.clear();
        if !self.unsynced.contains(&idx) {
            self.unsynced.push(idx);
        }
        Ok(())
    }

    fn new_segment(&mut self, first_index: u64) -> Result<(), StorageError> {
        let path = self.log_dir.join(segment_name(first_index));
        let file =
            OpenOptions::new().read(true).write(true).create_new(true).open(&path).map_err(io_err("create", &path))?;
        // The directory entry must be durable before any record in it counts.
        fsync_dir(&self.log_dir)?;
        self.segments.push(Segment { path, file, bytes: 0 });
        Ok(())
    }

    /// Removes every record after `index` (Raft's suffix overwrite).
    pub fn truncate_after(&mut self, index: u64) -> Result<(), StorageError> {
        if index >= self.last_index() {
            return Ok(());
        }
        self.flush_buffer()?;
        let loc = self.locs[index as usize];
        self.locs.truncate(index as usize);
        while self.segments.len() > loc.segment + 1 {
            let seg = self.segments.pop().expect("more than one segment");
            self.unsynced.retain(|&s| s != self.segments.len());
            fs::remove_file(&seg.path).map_err(io_err("remove", &seg.path))?;
        }
        let seg = &mut self.segments[loc.segment];
        seg.file.set_len(loc.offset).map_err(io_err("truncate", &seg.path))?;
        seg.bytes = loc.offset;
        if !self.unsynced.contains(&loc.segment) {
            self.unsynced.push(loc.segment);
        }
        Ok(())
    }

    /// True when written records await an fsync.
    pub fn has_unsynced(&self) -> bool {
        !self.unsynced.is_empty() || !self.buffer.is_empty()
    }

    /// Makes every appended record durable (`fdatasync` of each written segment).
    pub fn sync(&mut self) -> Result<(), StorageError> {
        self.flush_buffer()?;
        for idx in std::mem::take(&mut self.unsynced) {
            if let Some(seg) = self.segments.get(idx) {
                seg.file.sync_data().map_err(io_err("fsync", &seg.path))?;
            }
        }
        Ok(())
    }

    /// Saves term and vote durably (write a temp file, fsync, rename, fsync
    /// the directory), whatever the sync policy.
    pub fn save_meta(&mut self, meta: Meta) -> Result<(), StorageError> {
        write_meta(&self.dir, meta)
    }

    /// True while the catch-up marker exists (the node was repaired and has
    /// not caught up with a leader yet): the event loop must not vote.
    pub fn catching_up(&self) -> bool {
        self.catching_up
    }

    /// Ends the catch-up: fsyncs every appended record (the node now holds
    /// the leader's committed log durably), then removes the marker and
    /// fsyncs the directory, so a restart after this point votes again and
    /// one before it still catches up.
    pub fn finish_catch_up(&mut self) -> Result<(), StorageError> {
        assert!(self.catching_up, "finish_catch_up on a node that is not catching up");
        self.sync()?;
        let path = self.dir.join(CATCH_UP_FILE);
        fs::remove_file(&path).map_err(io_err("remove", &path))?;
        fsync_dir(&self.dir)?;
        self.catching_up = false;
        Ok(())
    }
}

/// Writes a small file durably: a temp file, fsync, rename, directory fsync.
fn write_durably(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StorageError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let mut file = File::create(&tmp).map_err(io_err("create", &tmp))?;
    file.write_all(bytes).map_err(io_err("write", &tmp))?;
    file.sync_all().map_err(io_err("fsync", &tmp))?;
    fs::rename(&tmp, &path).map_err(io_err("rename", &tmp))?;
    fsync_dir(dir)
}

fn write_meta(dir: &Path, meta: Meta) -> Result<(), StorageError> {
    let body = serde_json::to_vec(&meta).expect("meta serializes");
    let mut bytes = crc32c::crc32c(&body).to_le_bytes().to_vec();
    bytes.extend_from_slice(&body);
    write_durably(dir, "meta", &bytes)
}

fn catch_up_marker_exists(dir: &Path) -> Result<bool, StorageError> {
    let path = dir.join(CATCH_UP_FILE);
    match fs::symlink_metadata(&path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StorageError::Io { action: "look for", path, source: e }),
    }
}

/// `--repair`: wipes the log of a data dir whose log is damaged, so the
/// node restarts empty as a non-voting catch-up member. `damage` says what
/// was found (it goes into the marker, for people).
///
/// Steps, each durable before the next, so a crash anywhere leaves either a
/// damaged log (refused again, or repaired again with `--repair`) or a
/// marked, possibly shorter, log that catches up without voting:
/// 1. the catch-up marker;
/// 2. the term/vote file, one term later and with no vote: the node has
///    voted in no term above the one it held, so it can never vote twice in
///    a term, and a leader of the old term (which may still count this
///    node's acknowledgements from before the wipe) learns the higher term
///    from its first reply and steps down (docs/node.md, "Repair");
/// 3. the segment files, last first, then the log directory's fsync.
///
/// Refuses ([`StorageError::RepairRefused`]) when the term/vote file itself
/// is damaged: the node would not know in which terms it already voted.
pub fn repair(dir: &Path, damage: &str) -> Result<Repaired, StorageError> {
    let old = match read_meta(dir) {
        Ok(meta) => meta,
        Err(StorageError::Corrupt { file, detail, .. }) => return Err(StorageError::RepairRefused { file, detail }),
        Err(e) => return Err(e),
    };
    let new = Meta { term: old.term + 1, voted_for: None };
    let marker = serde_json::json!({ "repaired": damage, "term_before": old.term, "term_after": new.term });
    let mut text = serde_json::to_vec_pretty(&marker).expect("marker serializes");
    text.push(b'\n');
    write_durably(dir, CATCH_UP_FILE, &text)?;
    write_meta(dir, new)?;
    let log_dir = dir.join("log");
    let mut removed = Vec::new();
    if log_dir.exists() {
        for item in fs::read_dir(&log_dir).map_err(io_err("list", &log_dir))? {
            let path = item.map_err(io_err("list", &log_dir))?.path();
            if path.extension().is_some_and(|x| x == "seg") {
                removed.push(path);
            }
        }
        removed.sort();
        removed.reverse();
        for path in &removed {
            fs::remove_file(path).map_err(io_err("remove", path))?;
        }
        fsync_dir(&log_dir)?;
    }
    Ok(Repaired { old, new, removed })
}

/// Reads `<data>/meta` (term and vote); a missing file is term 0, no vote.
pub fn read_meta(dir: &Path) -> Result<Meta, StorageError> {
    let path = dir.join("meta");
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Meta::default()),
        Err(e) => return Err(StorageError::Io { action: "read", path, source: e }),
    };
    let corrupt = |detail: String| StorageError::Corrupt { file: path.clone(), offset: 0, detail };
    if bytes.len() < 4 {
        return Err(corrupt(format!("{} bytes, too short for a CRC", bytes.len())));
    }
    let crc = u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes"));
    if crc32c::crc32c(&bytes[4..]) != crc {
        return Err(corrupt("term/vote CRC mismatch".into()));
    }
    serde_json::from_slice(&bytes[4..]).map_err(|e| corrupt(format!("term/vote does not decode: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Command;

    fn rec(index: u64) -> Record {
        Record {
            index,
            term: 1,
            entry: Entry::Cmd(Command::Publish { id: format!("0-{index}"), payload: vec![7; 40] }),
        }
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
        assert!(
            message.contains(&seg.display().to_string()) && message.contains(&format!("offset {second}")),
            "{message}"
        );
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
}
