//! The streaming checker's temporary files: sequential varint streams, and
//! the acknowledgements sorted by sequence in bounded memory.
//!
//! Every number is an unsigned LEB128 varint (as in the compact files,
//! [`jetsam_core::compact`]). The files live in one temporary folder that
//! is removed when the check ends, however it ends ([`tempfile::TempDir`]).
//! Sorting is an external merge sort: acknowledgements are buffered
//! [`RUN_ACKS`] at a time, each buffer sorted and written as one run, and
//! the runs merged while the merge pass reads them. Acknowledgements arrive
//! nearly in sequence order, so sorting a buffer costs little; a history
//! with no more than [`RUN_ACKS`] of them never touches the disk.

use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Acknowledgements sorted in memory at once (24 bytes each: 24 MiB).
pub const RUN_ACKS: usize = 1 << 20;
/// Bytes read at once from all the runs of a merge together, at most
/// (each run gets its share, between [`RUN_BUFFER_MIN`] and
/// [`RUN_BUFFER_MAX`]).
const MERGE_BUFFER_BYTES: usize = 16 << 20;
const RUN_BUFFER_MIN: usize = 4 << 10;
const RUN_BUFFER_MAX: usize = 256 << 10;
/// Buffer of a sequential stream, writing or reading.
const STREAM_BUFFER_BYTES: usize = 256 << 10;

/// A temporary file that could not be written or read back: the machine's
/// problem (space or permissions in TMPDIR), not the run folder's.
#[derive(Debug, thiserror::Error)]
#[error(
    "failed to use the checker's temporary file {}: {source}; the streaming check needs free space in TMPDIR \
     (about 16 bytes per write: set TMPDIR to a folder with room)",
    path.display()
)]
pub struct SpillError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

use jetsam_core::compact::{put_varint, unzigzag, zigzag};

/// A file written front to back, a record of varints at a time.
pub struct VarWriter {
    path: PathBuf,
    out: BufWriter<File>,
    record: Vec<u8>,
}

impl VarWriter {
    pub fn create(path: PathBuf) -> Result<VarWriter, SpillError> {
        let file = File::create(&path).map_err(|source| SpillError { path: path.clone(), source })?;
        Ok(VarWriter { path, out: BufWriter::with_capacity(STREAM_BUFFER_BYTES, file), record: Vec::new() })
    }

    /// Writes one record of varints.
    pub fn put(&mut self, values: &[u64]) -> Result<(), SpillError> {
        self.record.clear();
        for v in values {
            put_varint(&mut self.record, *v);
        }
        self.out.write_all(&self.record).map_err(|source| SpillError { path: self.path.clone(), source })
    }

    /// Flushes and closes the file; returns its path for reading.
    pub fn finish(mut self) -> Result<PathBuf, SpillError> {
        self.out.flush().map_err(|source| SpillError { path: self.path.clone(), source })?;
        Ok(self.path)
    }
}

/// A file of varints read front to back.
pub struct VarReader {
    path: PathBuf,
    file: File,
    buf: Vec<u8>,
    at: usize,
    end: usize,
}

impl VarReader {
    pub fn open(path: &Path) -> Result<VarReader, SpillError> {
        let file = File::open(path).map_err(|source| SpillError { path: path.to_path_buf(), source })?;
        Ok(VarReader { path: path.to_path_buf(), file, buf: vec![0; STREAM_BUFFER_BYTES], at: 0, end: 0 })
    }

    fn refill(&mut self) -> Result<bool, SpillError> {
        self.buf.copy_within(self.at..self.end, 0);
        self.end -= self.at;
        self.at = 0;
        let n = self
            .file
            .read(&mut self.buf[self.end..])
            .map_err(|source| SpillError { path: self.path.clone(), source })?;
        self.end += n;
        Ok(n > 0)
    }

    /// The next varint, or `None` at the end of the file.
    pub fn next(&mut self) -> Result<Option<u64>, SpillError> {
        // A varint is at most 10 bytes: refill when fewer are left.
        if self.end - self.at < 10 && !self.refill()? && self.at == self.end {
            return Ok(None);
        }
        let (v, used) = decode_varint(&self.buf[self.at..self.end]).ok_or_else(|| SpillError {
            path: self.path.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, "the file ends inside a number"),
        })?;
        self.at += used;
        Ok(Some(v))
    }

    /// The next varint of a record already begun: the end of the file here
    /// is a broken file.
    pub fn expect(&mut self) -> Result<u64, SpillError> {
        self.next()?.ok_or_else(|| SpillError {
            path: self.path.clone(),
            source: std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the file ends inside a record"),
        })
    }
}

/// One varint from the front of `bytes`: (value, bytes used).
fn decode_varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, b) in bytes.iter().enumerate().take(10) {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// One acknowledgement as the merge pass needs it: its sequence, its op
/// (client slot and position within the client) and its rank in ack order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SeqAck {
    pub seq: u64,
    pub rank: u32,
    pub slot: u32,
    pub pos: u32,
}

/// Collects acknowledgements in any order and gives them back sorted by
/// (sequence, rank): in memory up to [`RUN_ACKS`], through sorted runs on
/// disk beyond.
pub struct AckSorter {
    path: PathBuf,
    file: Option<BufWriter<File>>,
    buffer: Vec<SeqAck>,
    /// (offset, length in bytes) of each run written.
    runs: Vec<(u64, u64)>,
    written: u64,
    run_acks: usize,
}

impl AckSorter {
    /// A sorter with runs of `run_acks` (tests use tiny runs).
    pub fn with_run(path: PathBuf, run_acks: usize) -> AckSorter {
        assert!(run_acks > 0);
        AckSorter { path, file: None, buffer: Vec::new(), runs: Vec::new(), written: 0, run_acks }
    }

    pub fn push(&mut self, a: SeqAck) -> Result<(), SpillError> {
        self.buffer.push(a);
        if self.buffer.len() >= self.run_acks {
            self.spill()?;
        }
        Ok(())
    }

    fn spill(&mut self) -> Result<(), SpillError> {
        let err = |source| SpillError { path: self.path.clone(), source };
        if self.file.is_none() {
            // Read back by the merge through the same handle.
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&self.path)
                .map_err(err)?;
            self.file = Some(BufWriter::with_capacity(STREAM_BUFFER_BYTES, file));
        }
        self.buffer.sort_unstable();
        let mut bytes = Vec::with_capacity(self.buffer.len() * 6);
        let mut prev = SeqAck { seq: 0, rank: 0, slot: 0, pos: 0 };
        for a in &self.buffer {
            put_varint(&mut bytes, a.seq - prev.seq);
            put_varint(&mut bytes, zigzag(i64::from(a.rank) - i64::from(prev.rank)));
            put_varint(&mut bytes, u64::from(a.slot));
            put_varint(&mut bytes, u64::from(a.pos));
            prev = *a;
        }
        let file = self.file.as_mut().expect("created above");
        file.write_all(&bytes).map_err(|source| SpillError { path: self.path.clone(), source })?;
        self.runs.push((self.written, bytes.len() as u64));
        self.written += bytes.len() as u64;
        self.buffer.clear();
        Ok(())
    }

    /// Runs written to disk so far (0 while everything fits in memory).
    #[cfg(test)]
    pub fn runs(&self) -> usize {
        self.runs.len()
    }

    /// Ends the input: the acknowledgements in (sequence, rank) order.
    pub fn finish(mut self) -> Result<SortedAcks, SpillError> {
        if self.runs.is_empty() {
            self.buffer.sort_unstable();
            let acks = std::mem::take(&mut self.buffer);
            return Ok(SortedAcks {
                memory: acks.into_iter(),
                runs: Vec::new(),
                heap: BinaryHeap::new(),
                current: None,
            });
        }
        if !self.buffer.is_empty() {
            self.spill()?;
        }
        let mut file = self.file.take().expect("runs were written");
        file.flush().map_err(|source| SpillError { path: self.path.clone(), source })?;
        let file = std::sync::Arc::new(
            file.into_inner().map_err(|e| SpillError { path: self.path.clone(), source: e.into_error() })?,
        );
        let share = (MERGE_BUFFER_BYTES / self.runs.len()).clamp(RUN_BUFFER_MIN, RUN_BUFFER_MAX);
        let mut runs = Vec::with_capacity(self.runs.len());
        let mut heap = BinaryHeap::with_capacity(self.runs.len());
        for (i, (offset, len)) in self.runs.iter().enumerate() {
            let mut run = Run::new(self.path.clone(), std::sync::Arc::clone(&file), *offset, *len, share);
            if let Some(a) = run.next()? {
                heap.push(std::cmp::Reverse((a, i)));
            }
            runs.push(run);
        }
        Ok(SortedAcks { memory: Vec::new().into_iter(), runs, heap, current: None })
    }
}

/// One sorted run on disk, read a buffer at a time.
struct Run {
    path: PathBuf,
    file: std::sync::Arc<File>,
    next_offset: u64,
    end: u64,
    buf: Vec<u8>,
    at: usize,
    prev: SeqAck,
}

impl Run {
    fn new(path: PathBuf, file: std::sync::Arc<File>, offset: u64, len: u64, share: usize) -> Run {
        Run {
            path,
            file,
            next_offset: offset,
            end: offset + len,
            buf: Vec::with_capacity(share),
            at: 0,
            prev: SeqAck { seq: 0, rank: 0, slot: 0, pos: 0 },
        }
    }

    fn varint(&mut self) -> Result<u64, SpillError> {
        if self.buf.len() - self.at < 10 && self.next_offset < self.end {
            self.buf.drain(..self.at);
            self.at = 0;
            let have = self.buf.len();
            // Never past the run's end: the next run follows in the file.
            let want = (self.buf.capacity() - have).min((self.end - self.next_offset) as usize);
            self.buf.resize(have + want, 0);
            self.file
                .read_exact_at(&mut self.buf[have..], self.next_offset)
                .map_err(|source| SpillError { path: self.path.clone(), source })?;
            self.next_offset += want as u64;
        }
        let (v, used) = decode_varint(&self.buf[self.at..]).ok_or_else(|| SpillError {
            path: self.path.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, "a sorted run ends inside a number"),
        })?;
        self.at += used;
        Ok(v)
    }

    fn next(&mut self) -> Result<Option<SeqAck>, SpillError> {
        if self.at == self.buf.len() && self.next_offset >= self.end {
            return Ok(None);
        }
        let seq = self.prev.seq + self.varint()?;
        let rank = (i64::from(self.prev.rank) + unzigzag(self.varint()?)) as u32;
        let slot = self.varint()? as u32;
        let pos = self.varint()? as u32;
        self.prev = SeqAck { seq, rank, slot, pos };
        Ok(Some(self.prev))
    }
}

/// The acknowledgements in (sequence, rank) order.
pub struct SortedAcks {
    memory: std::vec::IntoIter<SeqAck>,
    runs: Vec<Run>,
    /// The other runs' heads; the run being read is outside, in `current`.
    heap: BinaryHeap<std::cmp::Reverse<(SeqAck, usize)>>,
    current: Option<(SeqAck, usize)>,
}

impl SortedAcks {
    pub fn next(&mut self) -> Result<Option<SeqAck>, SpillError> {
        if self.runs.is_empty() {
            return Ok(self.memory.next());
        }
        // Runs of nearly sorted input barely overlap: the run being read
        // stays outside the heap while its head is the smallest, so the
        // heap is touched only when the reading moves to another run.
        let (a, i) = match self.current.take() {
            Some(c) if self.heap.peek().is_none_or(|std::cmp::Reverse(top)| c <= *top) => c,
            Some(c) => {
                self.heap.push(std::cmp::Reverse(c));
                self.heap.pop().expect("just pushed").0
            }
            None => match self.heap.pop() {
                Some(std::cmp::Reverse(top)) => top,
                None => return Ok(None),
            },
        };
        self.current = self.runs[i].next()?.map(|b| (b, i));
        Ok(Some(a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_across_runs_and_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        // A nearly sorted input with a few far-out-of-order acks and ties.
        let mut input: Vec<SeqAck> =
            (0..5000u32).map(|i| SeqAck { seq: u64::from(i ^ (i % 7)), rank: i, slot: i % 5, pos: i / 5 }).collect();
        input.push(SeqAck { seq: 3, rank: 5000, slot: 1, pos: 9999 });
        input.push(SeqAck { seq: u64::MAX / 2, rank: 5001, slot: 0, pos: 1 });
        let mut want = input.clone();
        want.sort();
        for run in [1, 7, 64, 4999, 100_000] {
            let mut sorter = AckSorter::with_run(dir.path().join(format!("acks-{run}")), run);
            for a in &input {
                sorter.push(*a).unwrap();
            }
            assert_eq!(sorter.runs() > 0, run <= input.len(), "run {run}");
            let mut sorted = sorter.finish().unwrap();
            let mut got = Vec::new();
            while let Some(a) = sorted.next().unwrap() {
                got.push(a);
            }
            assert_eq!(got, want, "run {run}");
        }
    }

    #[test]
    fn varint_streams_read_back_and_a_cut_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = VarWriter::create(dir.path().join("s")).unwrap();
        let values: Vec<u64> = (0..100_000u64).map(|i| i * i * 977).chain([u64::MAX, 0]).collect();
        for v in &values {
            w.put(&[*v]).unwrap();
        }
        let path = w.finish().unwrap();
        let mut r = VarReader::open(&path).unwrap();
        let mut got = Vec::new();
        while let Some(v) = r.next().unwrap() {
            got.push(v);
        }
        assert_eq!(got, values);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 2]).unwrap();
        let mut r = VarReader::open(&path).unwrap();
        let e = loop {
            match r.next() {
                Ok(Some(_)) => {}
                Ok(None) => panic!("a cut number is an error"),
                Err(e) => break e,
            }
        };
        assert!(e.to_string().contains("ends inside a number"), "{e}");
    }
}
