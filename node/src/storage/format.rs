//! The on-disk record format: encoding, scanning a segment, segment names.

use super::*;

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

pub(super) fn segment_name(first_index: u64) -> String {
    format!("{first_index:020}.seg")
}

pub(super) fn fsync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err("fsync directory", dir))
}
