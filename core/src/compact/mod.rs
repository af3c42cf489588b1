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

/// Appends `v` as a LEB128 varint (7 bits a byte, low first); the one
/// encoder of the compact files and of the checkers' own spill streams.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A signed delta as an unsigned varint value (0, -1, 1, -2, ...).
pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// The inverse of [`zigzag`].
pub fn unzigzag(v: u64) -> i64 {
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

mod decode;
pub use decode::{CompactId, CompactOp, DecodeError, HistoryDecoder, RecoveredDecoder};

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
}
