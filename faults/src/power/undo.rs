//! The on-disk undo log of one data file: an append-only sequence of
//! checksummed records in the state dir, written by the tracer before it lets
//! a mutating syscall run, and read back by `discard` (and by a tracer that
//! continues an earlier one's log).
//!
//! Records: a header (size of the file at its last sync, time, path at the
//! time tracking began), page records (a 4 KiB page's pre-image: its synced
//! bytes, shorter or empty where the synced file ended) and patch records
//! (bytes written through an O_SYNC/O_DSYNC descriptor, durable on return).
//! A torn last record (the tracer was SIGKILLed mid-append) fails its
//! checksum and is ignored: the syscall it guarded had not run yet.
//! This module does not decide what to discard; `discard` does.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Page size of the model: pre-images and survivors are whole pages.
pub const PAGE_SIZE: u64 = 4096;

const KIND_HEADER: u8 = 1;
const KIND_PAGE: u8 = 2;
const KIND_PATCH: u8 = 3;
/// Bytes around a payload: kind (1) + payload length (4) + checksum (8).
const FRAME_OVERHEAD: usize = 13;
/// A payload never exceeds a page plus its fixed fields, or a patch of one
/// write; anything larger than this is damage, not data.
const PAYLOAD_MAX: usize = 1 << 30;

/// Identity of a file across renames: (device, inode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileKey {
    pub dev: u64,
    pub ino: u64,
}

impl FileKey {
    pub fn log_name(self) -> String {
        format!("{}-{}.log", self.dev, self.ino)
    }

    fn from_log_name(name: &str) -> Option<FileKey> {
        let stem = name.strip_suffix(".log")?;
        let (dev, ino) = stem.split_once('-')?;
        Some(FileKey { dev: dev.parse().ok()?, ino: ino.parse().ok()? })
    }
}

/// One page's first-dirty record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRecord {
    /// Wall-clock time (ns since the Unix epoch) the page was first dirtied
    /// after the file's last sync.
    pub t_ns: u64,
    /// The page's synced bytes: 4096, fewer where the synced file ended
    /// inside the page, none for a page wholly past the synced end.
    pub pre_image: Vec<u8>,
}

/// Everything the log of one file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileLog {
    pub key: FileKey,
    /// Size of the file at its last sync.
    pub size_before: u64,
    /// When tracking began (first mutation after the last sync), ns since epoch.
    pub t_ns: u64,
    /// Path relative to the data dir when tracking began (the file may since
    /// have been renamed; discard finds it by inode).
    pub path: String,
    /// Page index -> first pre-image. Later records for the same page are ignored.
    pub pages: BTreeMap<u64, PageRecord>,
    /// Durable writes (offset, bytes) in the order they returned.
    pub patches: Vec<(u64, Vec<u8>)>,
    /// Length of the valid prefix of the log file.
    pub valid_len: u64,
}

fn checksum(kind: u8, payload: &[u8]) -> u64 {
    // FNV-1a 64: enough to reject a torn tail, no dependency needed.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in std::iter::once(&kind).chain(payload) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn frame(out: &mut Vec<u8>, kind: u8, payload: &[u8]) {
    assert!(payload.len() <= PAYLOAD_MAX, "undo record payload of {} bytes is too large", payload.len());
    out.push(kind);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&checksum(kind, payload).to_le_bytes());
}

/// Appends a header record to `out`.
pub fn encode_header(out: &mut Vec<u8>, size_before: u64, t_ns: u64, path: &str) {
    let mut p = Vec::with_capacity(16 + path.len());
    p.extend_from_slice(&size_before.to_le_bytes());
    p.extend_from_slice(&t_ns.to_le_bytes());
    p.extend_from_slice(path.as_bytes());
    frame(out, KIND_HEADER, &p);
}

/// Appends a page record to `out`.
pub fn encode_page(out: &mut Vec<u8>, index: u64, t_ns: u64, pre_image: &[u8]) {
    assert!(pre_image.len() as u64 <= PAGE_SIZE, "a pre-image is at most one page");
    let mut p = Vec::with_capacity(16 + pre_image.len());
    p.extend_from_slice(&index.to_le_bytes());
    p.extend_from_slice(&t_ns.to_le_bytes());
    p.extend_from_slice(pre_image);
    frame(out, KIND_PAGE, &p);
}

/// Appends a patch record (durable bytes at an offset) to `out`.
pub fn encode_patch(out: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let mut p = Vec::with_capacity(8 + data.len());
    p.extend_from_slice(&offset.to_le_bytes());
    p.extend_from_slice(data);
    frame(out, KIND_PATCH, &p);
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Parses a log's bytes. Returns None when not even a whole header is there
/// (the first append was torn: nothing it guarded ran).
pub fn parse(key: FileKey, bytes: &[u8]) -> Option<FileLog> {
    let mut at = 0usize;
    let mut log: Option<FileLog> = None;
    while bytes.len() - at >= FRAME_OVERHEAD {
        let kind = bytes[at];
        let len = u32::from_le_bytes(bytes[at + 1..at + 5].try_into().expect("4 bytes")) as usize;
        if len > PAYLOAD_MAX || bytes.len() - at < FRAME_OVERHEAD + len {
            break;
        }
        let payload = &bytes[at + 5..at + 5 + len];
        if u64_at(bytes, at + 5 + len) != checksum(kind, payload) {
            break;
        }
        match (kind, log.as_mut()) {
            (KIND_HEADER, None) if len >= 16 => {
                log = Some(FileLog {
                    key,
                    size_before: u64_at(payload, 0),
                    t_ns: u64_at(payload, 8),
                    path: String::from_utf8_lossy(&payload[16..]).into_owned(),
                    pages: BTreeMap::new(),
                    patches: Vec::new(),
                    valid_len: 0,
                });
            }
            (KIND_PAGE, Some(l)) if len >= 16 && len - 16 <= PAGE_SIZE as usize => {
                let index = u64_at(payload, 0);
                let t_ns = u64_at(payload, 8);
                l.pages.entry(index).or_insert_with(|| PageRecord { t_ns, pre_image: payload[16..].to_vec() });
            }
            (KIND_PATCH, Some(l)) if len >= 8 => l.patches.push((u64_at(payload, 0), payload[8..].to_vec())),
            // A record that does not fit where it is: treat as the torn end.
            _ => break,
        }
        at += FRAME_OVERHEAD + len;
        if let Some(l) = log.as_mut() {
            l.valid_len = at as u64;
        }
    }
    log
}

/// The folder of undo logs inside a state dir.
pub fn undo_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("undo")
}

/// Reads every log in the state dir, sorted by key. Logs without a whole
/// header are returned in the second list (to be deleted).
pub fn read_all(state_dir: &Path) -> io::Result<(Vec<FileLog>, Vec<PathBuf>)> {
    let dir = undo_dir(state_dir);
    let mut logs = Vec::new();
    let mut empty = Vec::new();
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((logs, empty)),
        Err(e) => return Err(e),
    };
    let mut names: Vec<(FileKey, PathBuf)> = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        match name.to_str().and_then(FileKey::from_log_name) {
            Some(key) => names.push((key, entry.path())),
            // Temporary or foreign files in undo/ are not ours to interpret.
            None => continue,
        }
    }
    names.sort();
    for (key, path) in names {
        let bytes = fs::read(&path)?;
        match parse(key, &bytes) {
            Some(log) => logs.push(log),
            None => empty.push(path),
        }
    }
    Ok((logs, empty))
}

/// Opens a log for appending, cutting off a torn tail first so new records
/// follow valid ones.
pub fn open_append(path: &Path, valid_len: u64) -> io::Result<File> {
    let file = OpenOptions::new().create(true).truncate(false).read(true).write(true).open(path)?;
    if file.metadata()?.len() != valid_len {
        file.set_len(valid_len)?;
    }
    let mut file = file;
    io::Seek::seek(&mut file, io::SeekFrom::Start(valid_len))?;
    Ok(file)
}

/// Appends encoded records with one write call where the kernel allows
/// (regular files take whole buffers).
pub fn append(file: &mut File, records: &[u8]) -> io::Result<()> {
    file.write_all(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_torn_tail() {
        let key = FileKey { dev: 3, ino: 9 };
        let mut b = Vec::new();
        encode_header(&mut b, 5000, 7, "a/b");
        encode_page(&mut b, 0, 8, &[1u8; 4096]);
        encode_page(&mut b, 1, 9, &[2u8; 904]);
        encode_page(&mut b, 0, 10, &[3u8; 4096]);
        encode_patch(&mut b, 10, b"xyz");
        let whole = b.len() as u64;
        encode_page(&mut b, 2, 11, &[]);
        b.truncate(b.len() - 3);
        let log = parse(key, &b).expect("header present");
        assert_eq!(log.size_before, 5000);
        assert_eq!(log.path, "a/b");
        assert_eq!(log.pages.len(), 2, "the torn page 2 record is ignored");
        assert_eq!(log.pages[&0].pre_image, vec![1u8; 4096], "the first pre-image of a page wins");
        assert_eq!(log.pages[&1].pre_image.len(), 904);
        assert_eq!(log.patches, vec![(10, b"xyz".to_vec())]);
        assert_eq!(log.valid_len, whole);
        assert!(parse(key, &b[..10]).is_none(), "a torn header means no log");
        assert_eq!(FileKey::from_log_name(&key.log_name()), Some(key));
    }
}
