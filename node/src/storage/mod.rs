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

mod files;
mod format;

pub use files::*;
pub use format::*;

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
    /// The `skip-dir-fsync` bug: a new segment's directory entry is not fsynced.
    skip_dir_fsync: bool,
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
            skip_dir_fsync: false,
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

    /// Switches on the `skip-dir-fsync` bug for segments created from now on.
    pub fn skip_dir_fsync_on_new_segments(&mut self) {
        self.skip_dir_fsync = true;
    }

    fn new_segment(&mut self, first_index: u64) -> Result<(), StorageError> {
        let path = self.log_dir.join(segment_name(first_index));
        let file =
            OpenOptions::new().read(true).write(true).create_new(true).open(&path).map_err(io_err("create", &path))?;
        // The directory entry must be durable before any record in it counts
        // (unless the skip-dir-fsync bug is on: then a power loss may take
        // the whole segment, every synced record in it included).
        if !self.skip_dir_fsync {
            fsync_dir(&self.log_dir)?;
        }
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

#[cfg(test)]
mod tests;
