//! The compact (binary) form of `history.jsonl` and `recovered/<view>.jsonl`:
//! `history.bin` and `recovered/<view>.bin`, format version 2
//! (docs/formats.md "Compact files"). Same content and rules as the JSON
//! lines, a third to a quarter of the bytes, and no JSON to parse: at 100
//! million acknowledged writes the JSON-lines folder is ~25 GB, which
//! neither fits a page cache nor parses in a minute on two cores.
//!
//! Every number is an unsigned LEB128 varint. A file starts with an 8-byte
//! magic naming its kind and version; then records until the end of the
//! file (a file cut inside a record is an error, as a cut JSON line is).
//!
//! History record: a tag byte (bits 0-1 the type: 0 invoke, 1 ok, 2 fail,
//! 3 info; bit 2 a `seq` follows, bit 3 a `node`, bit 4 an `error`; the other
//! bits zero), then `t_ns` minus the previous record's (times never go
//! backwards), `client`, the id's counter (the id is `"<client>-<counter>"`,
//! so only canonical ids can be written), then the optional fields: `seq`
//! as the zig-zag of its wrapping difference from the previous `seq` of the
//! file, `node` and `error` as strings.
//!
//! A string is a varint k: 0 = text follows (a varint length and UTF-8
//! bytes), 1 = text follows and joins the file's table (at most
//! [`STRING_TABLE_MAX`] entries), k >= 2 = the table's entry k - 2. Node
//! names and error texts repeat, so they cost a byte or two.
//!
//! Recovered record: `seq` minus the previous record's (the first record
//! carries `seq` itself), then the id: 0 followed by client and counter for a
//! canonical `"<client>-<counter>"`, or 1 followed by a string (length and
//! bytes) for any other text.
//!
//! This module only encodes and decodes; validation is the job of the
//! validators of [`crate::history`] and [`crate::recovered`].

use crate::history::{OpId, OpRef, OpType};
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{Read, Write};

/// First bytes of `history.bin`.
pub const HISTORY_MAGIC: &[u8; 8] = b"JTSMHIS2";
/// First bytes of `recovered/<view>.bin`.
pub const RECOVERED_MAGIC: &[u8; 8] = b"JTSMREC2";
/// The format version of the compact files.
pub const COMPACT_FORMAT_VERSION: u32 = 2;
/// Most strings one file's table holds; later new strings are written inline.
pub const STRING_TABLE_MAX: usize = 4096;
/// Longest string a record may carry, so a corrupt length cannot make the
/// reader allocate gigabytes.
pub const STRING_BYTES_MAX: u64 = 1 << 20;

const TAG_SEQ: u8 = 1 << 2;
const TAG_NODE: u8 = 1 << 3;
const TAG_ERROR: u8 = 1 << 4;

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Writes `history.bin` records.
#[derive(Debug)]
pub struct HistoryEncoder<W: Write> {
    out: W,
    buf: Vec<u8>,
    last_t_ns: u64,
    last_seq: u64,
    table: HashMap<String, u64>,
}

impl<W: Write> HistoryEncoder<W> {
    /// Writes the magic and returns the encoder.
    pub fn new(mut out: W) -> std::io::Result<Self> {
        out.write_all(HISTORY_MAGIC)?;
        Ok(HistoryEncoder { out, buf: Vec::with_capacity(64), last_t_ns: 0, last_seq: 0, table: HashMap::new() })
    }

    /// Appends one op. Fails (InvalidInput) on an id that is not a canonical
    /// `"<client>-<counter>"` of its client or a time before the previous
    /// op's: those have no compact form (and are invalid history lines).
    pub fn push(&mut self, op: &OpRef<'_>) -> std::io::Result<()> {
        let invalid = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, what);
        let id: OpId = op.id.parse().map_err(invalid)?;
        if id.client != op.client {
            return Err(invalid(format!("id {} does not belong to client {}", op.id, op.client)));
        }
        self.push_parts(op.t_ns, op.kind, id, op.seq, op.node.as_deref(), op.error.as_deref())
    }

    /// [`HistoryEncoder::push`] with the id already parsed (the client is
    /// the id's).
    pub fn push_parts(
        &mut self,
        t_ns: u64,
        kind: OpType,
        id: OpId,
        seq: Option<u64>,
        node: Option<&str>,
        error: Option<&str>,
    ) -> std::io::Result<()> {
        let dt = t_ns
            .checked_sub(self.last_t_ns)
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "time goes backwards".to_string()))?;
        self.last_t_ns = t_ns;
        let kind = match kind {
            OpType::Invoke => 0,
            OpType::Ok => 1,
            OpType::Fail => 2,
            OpType::Info => 3,
        };
        let tag = kind
            | if seq.is_some() { TAG_SEQ } else { 0 }
            | if node.is_some() { TAG_NODE } else { 0 }
            | if error.is_some() { TAG_ERROR } else { 0 };
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        buf.push(tag);
        put_varint(&mut buf, dt);
        put_varint(&mut buf, u64::from(id.client));
        put_varint(&mut buf, id.counter);
        if let Some(seq) = seq {
            put_varint(&mut buf, zigzag(seq.wrapping_sub(self.last_seq) as i64));
            self.last_seq = seq;
        }
        for text in [node, error].into_iter().flatten() {
            self.put_string(&mut buf, text);
        }
        let written = self.out.write_all(&buf);
        self.buf = buf;
        written
    }

    fn put_string(&mut self, buf: &mut Vec<u8>, text: &str) {
        if let Some(k) = self.table.get(text) {
            put_varint(buf, k + 2);
            return;
        }
        if self.table.len() < STRING_TABLE_MAX {
            self.table.insert(text.to_string(), self.table.len() as u64);
            put_varint(buf, 1);
        } else {
            put_varint(buf, 0);
        }
        put_varint(buf, text.len() as u64);
        buf.extend_from_slice(text.as_bytes());
    }

    /// Flushes and returns the writer.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Writes `recovered/<view>.bin` records.
#[derive(Debug)]
pub struct RecoveredEncoder<W: Write> {
    out: W,
    buf: Vec<u8>,
    last_seq: Option<u64>,
}

impl<W: Write> RecoveredEncoder<W> {
    pub fn new(mut out: W) -> std::io::Result<Self> {
        out.write_all(RECOVERED_MAGIC)?;
        Ok(RecoveredEncoder { out, buf: Vec::with_capacity(32), last_seq: None })
    }

    /// Appends one message; sequences must strictly increase (InvalidInput
    /// otherwise: the compact form cannot say "out of order").
    pub fn push(&mut self, seq: u64, id: &str) -> std::io::Result<()> {
        match id.parse::<OpId>() {
            Ok(op) => self.push_id(seq, CompactId::Op(op)),
            Err(_) => self.push_id(seq, CompactId::Text(id)),
        }
    }

    /// [`RecoveredEncoder::push`] with the id already told apart. A
    /// [`CompactId::Text`] that is a canonical id is written as text and
    /// reads back as that text, which the checker matches the same way.
    pub fn push_id(&mut self, seq: u64, id: CompactId<'_>) -> std::io::Result<()> {
        let delta = match self.last_seq {
            None => seq,
            Some(last) if seq > last => seq - last,
            Some(last) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("seq {seq} is not above {last}"),
                ));
            }
        };
        self.last_seq = Some(seq);
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        put_varint(&mut buf, delta);
        match id {
            CompactId::Op(op) => {
                buf.push(0);
                put_varint(&mut buf, u64::from(op.client));
                put_varint(&mut buf, op.counter);
            }
            CompactId::Text(text) => {
                buf.push(1);
                put_varint(&mut buf, text.len() as u64);
                buf.extend_from_slice(text.as_bytes());
            }
        }
        let written = self.out.write_all(&buf);
        self.buf = buf;
        written
    }

    pub fn finish(mut self) -> std::io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// A problem reading a compact file: an I/O error, or what is wrong with
/// the record (the caller names the file and the record number).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Bad(String),
}

/// Buffered reading with look-ahead, so a record is decoded from memory.
/// The varint at the front of 8 little-endian bytes, and its length, when
/// it ends within them: the 7-bit groups are gathered with three
/// shift-and-mask steps instead of a loop.
#[inline]
fn varint_in_word(w: u64) -> Option<(u64, usize)> {
    let ends = !w & 0x8080_8080_8080_8080;
    if ends == 0 {
        return None;
    }
    let len = (ends.trailing_zeros() as usize + 1) / 8;
    let mask = if len == 8 { u64::MAX } else { (1u64 << (8 * len)) - 1 };
    let mut x = w & mask & 0x7f7f_7f7f_7f7f_7f7f;
    x = (x & 0x007f_007f_007f_007f) | ((x & 0x7f00_7f00_7f00_7f00) >> 1);
    x = (x & 0x0000_3fff_0000_3fff) | ((x & 0x3fff_0000_3fff_0000) >> 2);
    x = (x & 0x0000_0000_0fff_ffff) | ((x & 0x0fff_ffff_0000_0000) >> 4);
    Some((x, len))
}

struct Bytes<R: Read> {
    src: R,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    eof: bool,
}

/// Bytes read from the source at a time.
const READ_BYTES: usize = 1 << 20;
/// A record without its strings is at most a tag and six 10-byte varints.
const RECORD_BYTES_MAX: usize = 64;

impl<R: Read> Bytes<R> {
    fn new(src: R) -> Self {
        Bytes { src, buf: vec![0; READ_BYTES + RECORD_BYTES_MAX], pos: 0, end: 0, eof: false }
    }

    /// Makes at least `n` bytes available unless the source ends first.
    fn fill(&mut self, n: usize) -> std::io::Result<()> {
        if self.end - self.pos >= n || self.eof {
            return Ok(());
        }
        self.buf.copy_within(self.pos..self.end, 0);
        self.end -= self.pos;
        self.pos = 0;
        if self.buf.len() < n + READ_BYTES {
            self.buf.resize(n + READ_BYTES, 0);
        }
        while self.end < n + READ_BYTES / 2 {
            let got = self.src.read(&mut self.buf[self.end..])?;
            if got == 0 {
                self.eof = true;
                break;
            }
            self.end += got;
        }
        Ok(())
    }

    /// Whether the file ends here (no more records).
    fn at_end(&mut self) -> std::io::Result<bool> {
        self.fill(RECORD_BYTES_MAX)?;
        Ok(self.pos == self.end)
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        let b = *self.buf[..self.end].get(self.pos).ok_or_else(cut)?;
        self.pos += 1;
        Ok(b)
    }

    // Always inlined: a record is several varints and the call itself cost
    // as much as the decoding (perf on a 100M check).
    #[inline(always)]
    fn varint(&mut self) -> Result<u64, DecodeError> {
        // Fast paths: one byte; else up to 8 read as one word (56 bits:
        // every counter, sequence and time delta of a real run).
        if self.end - self.pos >= 8 {
            let b0 = self.buf[self.pos];
            if b0 < 0x80 {
                self.pos += 1;
                return Ok(u64::from(b0));
            }
            let word: [u8; 8] = self.buf[self.pos..self.pos + 8].try_into().expect("8 bytes");
            if let Some((v, len)) = varint_in_word(u64::from_le_bytes(word)) {
                self.pos += len;
                return Ok(v);
            }
        }
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            let part = u64::from(b & 0x7f);
            if shift == 63 && part > 1 {
                break;
            }
            v |= part << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::Bad("a number does not fit in 64 bits".into()))
    }

    /// `len` bytes as text.
    fn text(&mut self, len: u64) -> Result<&str, DecodeError> {
        if len > STRING_BYTES_MAX {
            return Err(DecodeError::Bad(format!("a string of {len} bytes (at most {STRING_BYTES_MAX})")));
        }
        let len = len as usize;
        self.fill(len)?;
        if self.end - self.pos < len {
            return Err(cut());
        }
        let start = self.pos;
        self.pos += len;
        std::str::from_utf8(&self.buf[start..start + len])
            .map_err(|e| DecodeError::Bad(format!("a string is not UTF-8 ({e})")))
    }

    fn magic(&mut self, want: &[u8; 8], what: &str) -> Result<(), DecodeError> {
        self.fill(8)?;
        if self.end - self.pos < 8 || &self.buf[self.pos..self.pos + 8] != want {
            return Err(DecodeError::Bad(format!(
                "not a compact {what} file (it must start with {:?})",
                String::from_utf8_lossy(want)
            )));
        }
        self.pos += 8;
        Ok(())
    }
}

fn cut() -> DecodeError {
    DecodeError::Bad("the file ends inside a record (cut short?)".into())
}

/// One decoded history record. `node` and `error` are only said to be
/// present or not: the checker does not use their text (the decoder still
/// checks that they are valid strings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactOp {
    pub t_ns: u64,
    pub kind: OpType,
    pub id: OpId,
    pub seq: Option<u64>,
    pub has_node: bool,
    pub has_error: bool,
}

/// Reads `history.bin` records in file order.
pub struct HistoryDecoder<R: Read> {
    bytes: Bytes<R>,
    last_t_ns: u64,
    last_seq: u64,
    table: Vec<String>,
    /// The last record's id, `node` and `error` texts, kept by
    /// [`HistoryDecoder::next_op_ref`] only.
    texts: [String; 3],
}

impl<R: Read> HistoryDecoder<R> {
    /// Checks the magic.
    pub fn new(src: R) -> Result<Self, DecodeError> {
        let mut bytes = Bytes::new(src);
        bytes.magic(HISTORY_MAGIC, "history")?;
        Ok(HistoryDecoder { bytes, last_t_ns: 0, last_seq: 0, table: Vec::new(), texts: Default::default() })
    }

    /// The next record, or `None` at the end of the file.
    pub fn next_op(&mut self) -> Result<Option<CompactOp>, DecodeError> {
        self.next_record(false)
    }

    /// The next record with every field, texts included, as the JSON line
    /// it stands for would parse (for readers that need the acking node, and
    /// to compare a compact file with its JSON lines); or `None` at the end.
    pub fn next_op_ref(&mut self) -> Result<Option<OpRef<'_>>, DecodeError> {
        let Some(op) = self.next_record(true)? else { return Ok(None) };
        let [id, node, error] = &mut self.texts;
        id.clear();
        write!(id, "{}", op.id).expect("writing to a String does not fail");
        Ok(Some(OpRef {
            t_ns: op.t_ns,
            client: op.id.client,
            kind: op.kind,
            id: Cow::Borrowed(id.as_str()),
            seq: op.seq,
            node: op.has_node.then_some(Cow::Borrowed(node.as_str())),
            error: op.has_error.then_some(Cow::Borrowed(error.as_str())),
        }))
    }

    /// The next record; with `keep_texts` its `node` and `error` land in
    /// `self.texts`.
    fn next_record(&mut self, keep_texts: bool) -> Result<Option<CompactOp>, DecodeError> {
        if self.bytes.at_end()? {
            return Ok(None);
        }
        let tag = self.bytes.byte()?;
        if tag & !(3 | TAG_SEQ | TAG_NODE | TAG_ERROR) != 0 {
            return Err(DecodeError::Bad(format!("unknown tag bits in {tag:#04x}")));
        }
        let kind = [OpType::Invoke, OpType::Ok, OpType::Fail, OpType::Info][usize::from(tag & 3)];
        let dt = self.bytes.varint()?;
        let t_ns = self.last_t_ns.checked_add(dt).ok_or_else(|| DecodeError::Bad("t_ns overflows".into()))?;
        self.last_t_ns = t_ns;
        let client = u32::try_from(self.bytes.varint()?)
            .map_err(|_| DecodeError::Bad("client does not fit in 32 bits".into()))?;
        let counter = self.bytes.varint()?;
        let seq = if tag & TAG_SEQ != 0 {
            let seq = self.last_seq.wrapping_add(unzigzag(self.bytes.varint()?) as u64);
            self.last_seq = seq;
            Some(seq)
        } else {
            None
        };
        for (flag, slot) in [(TAG_NODE, 1), (TAG_ERROR, 2)] {
            if tag & flag != 0 {
                self.string(keep_texts.then_some(slot))?;
            }
        }
        Ok(Some(CompactOp {
            t_ns,
            kind,
            id: OpId { client, counter },
            seq,
            has_node: tag & TAG_NODE != 0,
            has_error: tag & TAG_ERROR != 0,
        }))
    }

    /// Reads one string; with `keep`, into that slot of `self.texts`.
    fn string(&mut self, keep: Option<usize>) -> Result<(), DecodeError> {
        let text = match self.bytes.varint()? {
            k @ (0 | 1) => {
                let len = self.bytes.varint()?;
                let text = self.bytes.text(len)?;
                if k == 1 {
                    if self.table.len() == STRING_TABLE_MAX {
                        return Err(DecodeError::Bad(format!("more than {STRING_TABLE_MAX} table strings")));
                    }
                    self.table.push(text.to_string());
                }
                text
            }
            k if k - 2 < self.table.len() as u64 => &self.table[(k - 2) as usize],
            k => return Err(DecodeError::Bad(format!("string {} of a table of {}", k - 2, self.table.len()))),
        };
        if let Some(slot) = keep {
            self.texts[slot].clear();
            self.texts[slot].push_str(text);
        }
        Ok(())
    }
}

/// A decoded recovered record's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompactId<'a> {
    /// A canonical `"<client>-<counter>"`.
    Op(OpId),
    /// Any other text.
    Text(&'a str),
}

/// Reads `recovered/<view>.bin` records in file order.
pub struct RecoveredDecoder<R: Read> {
    bytes: Bytes<R>,
    last_seq: Option<u64>,
}

impl<R: Read> RecoveredDecoder<R> {
    pub fn new(src: R) -> Result<Self, DecodeError> {
        let mut bytes = Bytes::new(src);
        bytes.magic(RECOVERED_MAGIC, "recovered")?;
        Ok(RecoveredDecoder { bytes, last_seq: None })
    }

    /// The next message, or `None` at the end of the file. A sequence that
    /// does not increase comes out as it is (the validator rejects it).
    pub fn next_msg(&mut self) -> Result<Option<(u64, CompactId<'_>)>, DecodeError> {
        if self.bytes.at_end()? {
            return Ok(None);
        }
        let delta = self.bytes.varint()?;
        let seq = match self.last_seq {
            None => delta,
            Some(last) => last.checked_add(delta).ok_or_else(|| DecodeError::Bad("seq overflows".into()))?,
        };
        self.last_seq = Some(seq);
        match self.bytes.byte()? {
            0 => {
                let client = u32::try_from(self.bytes.varint()?)
                    .map_err(|_| DecodeError::Bad("client does not fit in 32 bits".into()))?;
                let counter = self.bytes.varint()?;
                Ok(Some((seq, CompactId::Op(OpId { client, counter }))))
            }
            1 => {
                let len = self.bytes.varint()?;
                Ok(Some((seq, CompactId::Text(self.bytes.text(len)?))))
            }
            k => Err(DecodeError::Bad(format!("unknown id kind {k}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Op;

    #[test]
    fn history_round_trips_and_known_bytes() {
        let a = OpId { client: 3, counter: 200 };
        let ops = vec![
            Op::invoke(5, a),
            Op::ok(9, a, 7, "n1"),
            Op::invoke(9, OpId { client: 0, counter: 0 }),
            Op::info(1_000_000, OpId { client: 0, counter: 0 }, "timeout"),
            Op::invoke(1_000_001, OpId { client: 3, counter: 201 }),
            Op::ok(1_000_002, OpId { client: 3, counter: 201 }, 3, "n1"),
        ];
        let mut enc = HistoryEncoder::new(Vec::new()).unwrap();
        for op in &ops {
            enc.push(&op.borrowed()).unwrap();
        }
        let bytes = enc.finish().unwrap();
        // Known answer: the magic, then the first two records byte by byte.
        assert_eq!(&bytes[..8], b"JTSMHIS2");
        assert_eq!(&bytes[8..13], &[0x00, 5, 3, 0xc8, 0x01]);
        assert_eq!(&bytes[13..23], &[0x01 | 0x04 | 0x08, 4, 3, 0xc8, 0x01, 14, 1, 2, b'n', b'1']);
        assert_eq!(bytes.len(), 54);
        let mut dec = HistoryDecoder::new(bytes.as_slice()).unwrap();
        let mut got = Vec::new();
        while let Some(op) = dec.next_op().unwrap() {
            got.push(op);
        }
        let want: Vec<CompactOp> = ops
            .iter()
            .map(|o| CompactOp {
                t_ns: o.t_ns,
                kind: o.kind,
                id: o.id.parse().unwrap(),
                seq: o.seq,
                has_node: o.node.is_some(),
                has_error: o.error.is_some(),
            })
            .collect();
        assert_eq!(got, want);
        // With its texts, each record reads back as the line it came from.
        let mut dec = HistoryDecoder::new(bytes.as_slice()).unwrap();
        for op in &ops {
            assert_eq!(dec.next_op_ref().unwrap().as_ref(), Some(&op.borrowed()));
        }
        assert_eq!(dec.next_op_ref().unwrap(), None);
        // A file cut inside its last record is an error, not a shorter history.
        let mut dec = HistoryDecoder::new(&bytes[..bytes.len() - 1]).unwrap();
        let e = loop {
            match dec.next_op() {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("a cut file read to its end"),
                Err(e) => break e.to_string(),
            }
        };
        assert!(e.contains("ends inside a record"), "{e}");
        assert!(HistoryDecoder::new(&b"{\"t_ns\":0}"[..]).is_err());
        let bad = Op { id: "3-07".into(), ..Op::invoke(1, a) };
        assert!(HistoryEncoder::new(Vec::new()).unwrap().push(&bad.borrowed()).is_err());
    }

    #[test]
    fn recovered_round_trips_texts_and_ids() {
        let msgs = [(1u64, "0-0"), (2, "0-01"), (9, "banana"), (10, "7-123456789")];
        let mut enc = RecoveredEncoder::new(Vec::new()).unwrap();
        for (seq, id) in msgs {
            enc.push(seq, id).unwrap();
        }
        assert!(enc.push(10, "0-1").is_err());
        let bytes = enc.finish().unwrap();
        assert_eq!(&bytes[8..12], &[1, 0, 0, 0]);
        let mut dec = RecoveredDecoder::new(bytes.as_slice()).unwrap();
        let mut got = Vec::new();
        while let Some((seq, id)) = dec.next_msg().unwrap() {
            got.push((
                seq,
                match id {
                    CompactId::Op(op) => op.to_string(),
                    CompactId::Text(t) => format!("text:{t}"),
                },
            ));
        }
        let want: Vec<(u64, String)> =
            vec![(1, "0-0".into()), (2, "text:0-01".into()), (9, "text:banana".into()), (10, "7-123456789".into())];
        assert_eq!(got, want);
    }

    #[test]
    fn varints_of_every_length_decode_the_same_by_word_and_byte() {
        let mut values: Vec<u64> = vec![0, 1, 127, 128, 16_383, 16_384, u64::MAX, u64::MAX / 2, 1 << 56, (1 << 56) - 1];
        for bits in 0..64 {
            values.push(1u64 << bits);
            values.push((1u64 << bits).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (63 - bits));
        }
        for v in values {
            let mut bytes = Vec::new();
            let mut x = v;
            while x >= 0x80 {
                bytes.push((x as u8) | 0x80);
                x >>= 7;
            }
            bytes.push(x as u8);
            let len = bytes.len();
            if len <= 8 {
                let mut word = [0xffu8; 8];
                word[..len].copy_from_slice(&bytes);
                assert_eq!(varint_in_word(u64::from_le_bytes(word)), Some((v, len)), "{v}");
            }
            // Through the decoder, at the end of a buffer and with bytes after it.
            for tail in [0usize, 3, 9] {
                let mut input = bytes.clone();
                input.extend(std::iter::repeat_n(0x85u8, tail));
                let mut b = Bytes::new(&input[..]);
                b.fill(RECORD_BYTES_MAX).unwrap();
                assert_eq!(b.varint().unwrap(), v, "{v} with {tail} bytes after");
                assert_eq!(b.pos, len);
            }
        }
    }
}
