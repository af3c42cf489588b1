//! Reads a NATS JetStream stream's message blocks (`msgs/<n>.blk`) straight
//! from disk, as nats-server 2.10 .. 2.15 writes them uncompressed and
//! unencrypted (server/filestore.go `writeMsgRecordLocked`). Used after a
//! clean stop to learn exactly what one replica holds.
//!
//! Record layout (little-endian):
//! `u32 len (bit 31: has headers) | u64 seq (bit 63: erased, bit 62: tombstone) |
//! i64 timestamp_ns | u16 subject_len | subject | [u32 hdr_len | hdr] | payload | u64 hash`,
//! where `len` covers the whole record and the hash is HighwayHash-64 keyed
//! by SHA-256 of `"<stream>-<block index>"` over bytes 4..20 of the record
//! (seq and timestamp as stored), the subject, the header bytes and the payload.
//!
//! What it does not do: compressed or encrypted blocks (jetsam never
//! configures them), per-subject state, and deletes recorded only in
//! `index.db` (jetsam's streams use DiscardNew and never delete messages).
//! A record that fails its sanity checks or its hash ends the parse with a
//! [`BlockError`] naming the file and offset: the caller reports it rather
//! than accepting a garbled tail (nats-server itself truncates the block
//! there on its next start).

use highway::{HighwayHash, HighwayHasher, Key};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Bytes before the subject: len, seq, timestamp, subject length.
pub const RECORD_HEADER_BYTES: usize = 22;
/// The trailing HighwayHash-64.
pub const RECORD_HASH_BYTES: usize = 8;
/// Set in `len` when the record carries NATS headers.
pub const HEADERS_BIT: u32 = 1 << 31;
/// Set in `seq` when the message was erased (its bytes overwritten).
pub const ERASED_BIT: u64 = 1 << 63;
/// Set in `seq` for a delete tombstone of the sequence in the low bits.
pub const TOMBSTONE_BIT: u64 = 1 << 62;
/// nats-server's own limit on one record (`rlBadThresh`).
pub const RECORD_BYTES_MAX: u32 = 32 * 1024 * 1024;

/// What one record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    Message,
    /// Erased in place: the sequence is gone.
    Erased,
    /// Marks an earlier sequence (in any block) as deleted.
    Tombstone,
}

/// One decoded record, borrowing from the block's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    /// Offset of the record in its block file.
    pub offset: usize,
    pub kind: RecordKind,
    /// The sequence with the erased/tombstone bits cleared.
    pub seq: u64,
    pub timestamp_ns: i64,
    pub subject: &'a [u8],
    /// Raw NATS header block (`NATS/1.0\r\n...`), if any.
    pub headers: Option<&'a [u8]>,
    pub payload: &'a [u8],
}

/// Why a block could not be read to its end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: record at offset {offset} of {file_bytes} bytes: {reason} ({records_before} good records before it)")]
pub struct BlockError {
    pub file: String,
    pub offset: usize,
    pub file_bytes: usize,
    pub records_before: usize,
    pub reason: String,
}

/// Decodes every record of one block. `hash_key` is the block's HighwayHash
/// key ([`block_hash_key`]); `None` skips the hash check (for hand-made test
/// blocks only: real blocks are always checked).
pub fn parse_block<'a>(file: &str, data: &'a [u8], hash_key: Option<&Key>) -> Result<Vec<Record<'a>>, BlockError> {
    let mut records = Vec::new();
    let mut offset = 0usize;
    let fail = |offset: usize, records_before: usize, reason: String| BlockError {
        file: file.to_string(),
        offset,
        file_bytes: data.len(),
        records_before,
        reason,
    };
    while offset < data.len() {
        let rest = &data[offset..];
        if rest.len() < RECORD_HEADER_BYTES {
            return Err(fail(
                offset,
                records.len(),
                format!("truncated: {} bytes left, a record header needs 22", rest.len()),
            ));
        }
        let len_raw = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes"));
        let has_headers = len_raw & HEADERS_BIT != 0;
        let len = len_raw & !HEADERS_BIT;
        let seq_raw = u64::from_le_bytes(rest[4..12].try_into().expect("8 bytes"));
        let timestamp_ns = i64::from_le_bytes(rest[12..20].try_into().expect("8 bytes"));
        let subject_len = u16::from_le_bytes(rest[20..22].try_into().expect("2 bytes")) as usize;
        let len_usize = len as usize;
        let header_len_bytes = if has_headers { 4 } else { 0 };
        if len > RECORD_BYTES_MAX {
            return Err(fail(
                offset,
                records.len(),
                format!("record length {len} above nats-server's limit {RECORD_BYTES_MAX}"),
            ));
        }
        if len_usize < RECORD_HEADER_BYTES + subject_len + header_len_bytes + RECORD_HASH_BYTES {
            return Err(fail(
                offset,
                records.len(),
                format!("record length {len} too short for its subject of {subject_len} bytes"),
            ));
        }
        if len_usize > rest.len() {
            return Err(fail(
                offset,
                records.len(),
                format!("truncated: record length {len} but only {} bytes left", rest.len()),
            ));
        }
        let record = &rest[..len_usize];
        let body = &record[RECORD_HEADER_BYTES..len_usize - RECORD_HASH_BYTES];
        let subject = &body[..subject_len];
        let (headers, payload) = if has_headers {
            let hdr_len = u32::from_le_bytes(body[subject_len..subject_len + 4].try_into().expect("4 bytes")) as usize;
            let after = &body[subject_len + 4..];
            if hdr_len > after.len() {
                return Err(fail(
                    offset,
                    records.len(),
                    format!("header length {hdr_len} beyond the record's {} remaining bytes", after.len()),
                ));
            }
            (Some(&after[..hdr_len]), &after[hdr_len..])
        } else {
            (None, &body[subject_len..])
        };
        if let Some(key) = hash_key {
            let mut hasher = HighwayHasher::new(*key);
            hasher.append(&record[4..20]);
            hasher.append(subject);
            if let Some(h) = headers {
                hasher.append(h);
            }
            hasher.append(payload);
            let want = hasher.finalize64().to_le_bytes();
            let have = &record[len_usize - RECORD_HASH_BYTES..];
            if want != have {
                return Err(fail(offset, records.len(), "checksum mismatch (HighwayHash-64)".to_string()));
            }
        }
        let kind = if seq_raw & TOMBSTONE_BIT != 0 {
            RecordKind::Tombstone
        } else if seq_raw & ERASED_BIT != 0 {
            RecordKind::Erased
        } else {
            RecordKind::Message
        };
        let seq = seq_raw & !(ERASED_BIT | TOMBSTONE_BIT);
        records.push(Record { offset, kind, seq, timestamp_ns, subject, headers, payload });
        offset += len_usize;
    }
    Ok(records)
}

/// The HighwayHash key nats-server uses for block `index` of `stream`:
/// SHA-256 of `"<stream>-<index>"`, read as four little-endian u64s.
pub fn block_hash_key(stream: &str, index: u32) -> Key {
    let digest = Sha256::digest(format!("{stream}-{index}").as_bytes());
    let mut words = [0u64; 4];
    for (i, word) in words.iter_mut().enumerate() {
        *word = u64::from_le_bytes(digest[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
    }
    Key(words)
}

/// The value of header `name` (case-insensitive) in a raw NATS header block.
pub fn header_value<'a>(headers: &'a [u8], name: &str) -> Option<&'a str> {
    let text = std::str::from_utf8(headers).ok()?;
    let mut lines = text.split("\r\n");
    // The first line is the version (and status) line, `NATS/1.0`.
    lines.next()?;
    lines.find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// One message a replica holds: its sequence and the history id it carries
/// ([`super::message_id`]: in the payload, or in the header older runs wrote).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMsg {
    pub seq: u64,
    pub id: Option<String>,
    pub payload_bytes: usize,
}

/// The block files of a stream's `msgs` directory, ordered by block index.
pub fn block_files(msgs_dir: &Path) -> Result<Vec<(u32, PathBuf)>, String> {
    let entries = std::fs::read_dir(msgs_dir).map_err(|e| format!("{}: cannot list: {e}", msgs_dir.display()))?;
    let mut blocks = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: cannot list: {e}", msgs_dir.display()))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(stem) = name.strip_suffix(".blk") {
            let index = stem
                .parse::<u32>()
                .map_err(|_| format!("{}: block file {name:?} has no numeric index", msgs_dir.display()))?;
            blocks.push((index, entry.path()));
        }
    }
    blocks.sort();
    Ok(blocks)
}

/// Every message the stream's blocks hold, in sequence order: erased
/// records and tombstoned sequences are left out, and a sequence that does
/// not move up (as nats-server's rebuild ignores it) is left out too.
/// Every record's hash is checked with the key of its block.
pub fn read_stream_messages(stream: &str, msgs_dir: &Path) -> Result<Vec<StoredMsg>, String> {
    let blocks = block_files(msgs_dir)?;
    let mut messages: Vec<StoredMsg> = Vec::new();
    let mut tombstoned = BTreeSet::new();
    for (index, path) in &blocks {
        let data = std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        let key = block_hash_key(stream, *index);
        let records = parse_block(&path.display().to_string(), &data, Some(&key)).map_err(|e| e.to_string())?;
        for record in records {
            match record.kind {
                RecordKind::Tombstone => {
                    tombstoned.insert(record.seq);
                }
                RecordKind::Erased => {}
                RecordKind::Message => {
                    if record.seq == 0 || messages.last().is_some_and(|last| record.seq <= last.seq) {
                        continue;
                    }
                    messages.push(StoredMsg {
                        seq: record.seq,
                        id: super::message_id(record.headers, record.payload).map(str::to_string),
                        payload_bytes: record.payload.len(),
                    });
                }
            }
        }
    }
    messages.retain(|m| !tombstoned.contains(&m.seq));
    Ok(messages)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Encodes one record the way nats-server does, with its hash.
    pub(crate) fn encode_record(
        key: &Key,
        seq_raw: u64,
        subject: &str,
        headers: Option<&[u8]>,
        payload: &[u8],
    ) -> Vec<u8> {
        let hdr_part = headers.map_or(0, |h| 4 + h.len());
        let len = RECORD_HEADER_BYTES + subject.len() + hdr_part + payload.len() + RECORD_HASH_BYTES;
        let mut out = Vec::with_capacity(len);
        let len_field = len as u32 | if headers.is_some() { HEADERS_BIT } else { 0 };
        out.extend_from_slice(&len_field.to_le_bytes());
        out.extend_from_slice(&seq_raw.to_le_bytes());
        out.extend_from_slice(&1_700_000_000_000_000_000i64.to_le_bytes());
        out.extend_from_slice(&(subject.len() as u16).to_le_bytes());
        out.extend_from_slice(subject.as_bytes());
        if let Some(h) = headers {
            out.extend_from_slice(&(h.len() as u32).to_le_bytes());
            out.extend_from_slice(h);
        }
        out.extend_from_slice(payload);
        let mut hasher = HighwayHasher::new(*key);
        hasher.append(&out[4..20]);
        hasher.append(subject.as_bytes());
        if let Some(h) = headers {
            hasher.append(h);
        }
        hasher.append(payload);
        out.extend_from_slice(&hasher.finalize64().to_le_bytes());
        assert_eq!(out.len(), len);
        out
    }

    fn id_headers(id: &str) -> Vec<u8> {
        format!("NATS/1.0\r\nJetsam-Id: {id}\r\n\r\n").into_bytes()
    }

    fn ids(records: &[Record<'_>]) -> Vec<(RecordKind, u64, Option<String>)> {
        records
            .iter()
            .map(|r| (r.kind, r.seq, r.headers.and_then(|h| header_value(h, "jetsam-id")).map(str::to_string)))
            .collect()
    }

    #[test]
    fn parses_messages_erased_and_tombstones() {
        let key = block_hash_key("jetsam", 1);
        let mut block = Vec::new();
        block.extend(encode_record(&key, 1, "jetsam.0", Some(&id_headers("0-0")), b"payload one"));
        block.extend(encode_record(&key, 2 | ERASED_BIT, "", None, b""));
        block.extend(encode_record(&key, 3, "jetsam.0", Some(&id_headers("1-0")), b""));
        block.extend(encode_record(&key, 1 | TOMBSTONE_BIT, "", None, b""));
        block.extend(encode_record(&key, 4, "jetsam.0", None, b"no headers"));
        let records = parse_block("1.blk", &block, Some(&key)).unwrap();
        assert_eq!(
            ids(&records),
            vec![
                (RecordKind::Message, 1, Some("0-0".to_string())),
                (RecordKind::Erased, 2, None),
                (RecordKind::Message, 3, Some("1-0".to_string())),
                (RecordKind::Tombstone, 1, None),
                (RecordKind::Message, 4, None),
            ]
        );
        assert_eq!(records[0].payload, b"payload one");
        assert_eq!(records[0].subject, b"jetsam.0");
        assert_eq!(records[4].payload, b"no headers");
        let first_len = encode_record(&key, 1, "jetsam.0", Some(&id_headers("0-0")), b"payload one").len();
        assert_eq!(records[0].offset, 0);
        assert_eq!(records[1].offset, first_len);
    }

    #[test]
    fn truncated_tail_is_an_error_naming_the_offset() {
        let key = block_hash_key("jetsam", 7);
        let first = encode_record(&key, 1, "jetsam.0", Some(&id_headers("0-0")), b"abc");
        let second = encode_record(&key, 2, "jetsam.0", Some(&id_headers("0-1")), b"def");
        for cut in [1, 10, RECORD_HEADER_BYTES, second.len() - 1] {
            let mut block = first.clone();
            block.extend_from_slice(&second[..cut]);
            let err = parse_block("7.blk", &block, Some(&key)).unwrap_err();
            assert_eq!(err.offset, first.len(), "cut at {cut}");
            assert_eq!(err.records_before, 1);
            assert!(err.reason.starts_with("truncated"), "cut at {cut}: {}", err.reason);
        }
    }

    #[test]
    fn flipped_bit_fails_the_hash_with_the_right_key_only() {
        let key = block_hash_key("jetsam", 1);
        let record = encode_record(&key, 5, "jetsam.0", Some(&id_headers("3-9")), b"payload");
        assert!(parse_block("1.blk", &record, Some(&key)).is_ok());
        // Another block index means another key: the hash must not match.
        let err = parse_block("2.blk", &record, Some(&block_hash_key("jetsam", 2))).unwrap_err();
        assert!(err.reason.contains("checksum"), "{}", err.reason);
        for byte in [5, 13, 25, record.len() - 9, record.len() - 1] {
            let mut flipped = record.clone();
            flipped[byte] ^= 0x10;
            let err = parse_block("1.blk", &flipped, Some(&key)).unwrap_err();
            assert_eq!(err.offset, 0);
            assert!(err.reason.contains("checksum"), "byte {byte}: {}", err.reason);
        }
    }

    #[test]
    fn garbled_length_is_an_error() {
        let key = block_hash_key("jetsam", 1);
        let mut record = encode_record(&key, 1, "jetsam.0", None, b"x");
        record[0..4].copy_from_slice(&(RECORD_BYTES_MAX + 1).to_le_bytes());
        let err = parse_block("1.blk", &record, Some(&key)).unwrap_err();
        assert!(err.reason.contains("limit"), "{}", err.reason);
        let mut record = encode_record(&key, 1, "jetsam.0", None, b"x");
        record[0..4].copy_from_slice(&5u32.to_le_bytes());
        let err = parse_block("1.blk", &record, Some(&key)).unwrap_err();
        assert!(err.reason.contains("too short"), "{}", err.reason);
    }

    #[test]
    fn header_value_is_case_insensitive_and_skips_the_version_line() {
        let h = b"NATS/1.0\r\nOther: x\r\njetsam-id:  4-2 \r\n\r\n";
        assert_eq!(header_value(h, "Jetsam-Id"), Some("4-2"));
        assert_eq!(header_value(h, "Missing"), None);
        assert_eq!(header_value(b"Jetsam-Id: 1-1\r\n", "Jetsam-Id"), None);
    }

    #[test]
    fn stream_read_orders_blocks_and_drops_tombstoned_and_erased() {
        let dir = std::env::temp_dir().join(format!("jetsam-blocks-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let k1 = block_hash_key("s", 1);
        let k2 = block_hash_key("s", 10);
        let mut b1 = Vec::new();
        b1.extend(encode_record(&k1, 1, "jetsam.0", Some(&id_headers("0-0")), b""));
        b1.extend(encode_record(&k1, 2, "jetsam.0", Some(&id_headers("0-1")), b""));
        b1.extend(encode_record(&k1, 3 | ERASED_BIT, "", None, b""));
        let mut b10 = Vec::new();
        // The current form: the id at the start of the payload, no headers.
        b10.extend(encode_record(&k2, 4, "jetsam.0", None, b"0-3 filler"));
        b10.extend(encode_record(&k2, 2 | TOMBSTONE_BIT, "", None, b""));
        b10.extend(encode_record(&k2, 5, "jetsam.0", None, b"no id here"));
        // Written in the other order on purpose: block index 10 sorts after 1 numerically.
        std::fs::write(dir.join("10.blk"), &b10).unwrap();
        std::fs::write(dir.join("1.blk"), &b1).unwrap();
        std::fs::write(dir.join("index.db"), b"not a block").unwrap();
        let got = read_stream_messages("s", &dir);
        std::fs::remove_dir_all(&dir).unwrap();
        let got = got.unwrap();
        let seqs: Vec<(u64, Option<&str>, usize)> =
            got.iter().map(|m| (m.seq, m.id.as_deref(), m.payload_bytes)).collect();
        assert_eq!(seqs, vec![(1, Some("0-0"), 0), (4, Some("0-3"), 10), (5, None, 10)]);
    }
}
