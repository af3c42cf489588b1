//! Reading the compact files: [`HistoryDecoder`] and [`RecoveredDecoder`]
//! over a buffered source, a record decoded from memory at a time (the
//! layout is in the parent module's doc).

use super::*;

/// A problem reading a compact file: an I/O error, or what is wrong with
/// the record (the caller names the file and the record number).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Bad(String),
}

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

/// Buffered reading with look-ahead, so a record is decoded from memory.
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
