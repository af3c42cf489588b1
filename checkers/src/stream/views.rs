//! Reading a view (a node's read-back or the cluster view) for the
//! streaming checker: each message validated as the in-memory loader does
//! ([`RecoveredValidator`], the same messages and line numbers) and its id
//! resolved to an op's place, or kept as a stranger.
//!
//! Pass 2 reads every view twice: [`count_view`] counts how often each op
//! is held (the views in parallel), then [`ViewStream`] hands the messages
//! in sequence order to the merge pass. A JSON-lines view is read as JSON
//! once: the count writes it resolved (sequence, place) to the temporary
//! folder, and the merge reads that; a compact view is decoded twice (that
//! costs no more than reading it resolved). Strangers (ids never invoked)
//! are kept as text with their sequences: they are the one thing here whose
//! memory grows with the view (with its damage, not with the run).

use super::StreamError;
use super::bits::Bits2;
use super::index::OpIndex;
use super::spill::{SpillError, VarReader, VarWriter};
use crate::load::json_error;
use jetsam_core::compact::{CompactId, DecodeError, RecoveredDecoder};
use jetsam_core::jsonl::{LoadError, for_each_raw_line};
use jetsam_core::recovered::{RecoveredMsgRef, RecoveredValidator};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, sync_channel};

/// What a view holds at one sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Held {
    /// An invoked op, by place.
    Op(u32),
    /// Anything never invoked, as stored.
    Stranger(String),
}

/// Folds one message into a view's digest (order-sensitive): the merge
/// checks that its second reading of a view saw what the count saw.
pub fn digest(h: u64, seq: u64, held: &Held) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let x = match held {
        Held::Op(g) => u64::from(*g),
        Held::Stranger(s) => s.bytes().fold(u64::MAX, |a, b| (a ^ u64::from(b)).wrapping_mul(K)),
    };
    ((h ^ seq).wrapping_mul(K).rotate_left(29) ^ x).wrapping_mul(K)
}

impl Held {
    pub fn text(&self, index: &OpIndex) -> String {
        match self {
            Held::Op(g) => index.id(*g).to_string(),
            Held::Stranger(s) => s.clone(),
        }
    }
}

fn resolve(index: &OpIndex, text: &str) -> Held {
    index.find_str(text).map_or_else(|| Held::Stranger(text.to_string()), Held::Op)
}

/// Reads one view file (`.jsonl` or compact `.bin`) in file order; `f`
/// gets each message and may stop the reading with an error of its own.
pub fn read_view(
    path: &Path,
    index: &OpIndex,
    mut f: impl FnMut(u64, Held) -> Result<(), String>,
) -> Result<(), LoadError> {
    let mut validator = RecoveredValidator::default();
    if crate::forms::is_compact(path) {
        let io = |record: usize, e: DecodeError| match e {
            DecodeError::Io(source) => LoadError::Io { path: path.to_path_buf(), source },
            DecodeError::Bad(what) => LoadError::line(path, record, what),
        };
        let file = std::fs::File::open(path).map_err(|source| LoadError::Io { path: path.to_path_buf(), source })?;
        let mut decoder = RecoveredDecoder::new(file).map_err(|e| io(0, e))?;
        let mut record = 0usize;
        while let Some((seq, id)) = decoder.next_msg().map_err(|e| io(record + 1, e))? {
            record += 1;
            let held = match id {
                CompactId::Op(op) => validator
                    .check_seq(seq)
                    .map(|()| index.find(op).map_or_else(|| Held::Stranger(op.to_string()), Held::Op)),
                CompactId::Text(text) => validator.check_parts(seq, text).map(|()| resolve(index, text)),
            };
            held.and_then(|held| f(seq, held)).map_err(|what| LoadError::line(path, record, what))?;
        }
        return Ok(());
    }
    for_each_raw_line(path, |raw, _| {
        let (seq, id) = match jetsam_core::fastline::recovered(raw.as_bytes()) {
            Some((seq, id)) => (seq, std::borrow::Cow::Borrowed(id)),
            None => {
                let m: RecoveredMsgRef<'_> = serde_json::from_str(raw).map_err(json_error)?;
                (m.seq, m.id)
            }
        };
        validator.check_parts(seq, &id)?;
        f(seq, resolve(index, &id))
    })
}

/// What pass 2a learns of one view.
#[derive(Debug)]
pub struct ViewCounts {
    /// Per place: how often the view holds the op (0, 1, 2 for "two or more").
    pub held: Bits2,
    /// Messages in the view.
    pub len: u64,
    /// Messages holding a stranger.
    pub stranger_entries: u64,
    /// Each stranger's text and the sequences holding it.
    pub strangers: BTreeMap<String, Vec<u64>>,
    /// Ops held at two or more sequences.
    pub dup_ops: u64,
    /// Of every message in order ([`digest`]).
    pub digest: u64,
}

impl ViewCounts {
    pub fn holds(&self, g: u32) -> bool {
        self.held.get(g as usize) != 0
    }

    /// Strangers held at two or more sequences.
    pub fn dup_strangers(&self) -> u64 {
        self.strangers.values().filter(|seqs| seqs.len() > 1).count() as u64
    }
}

/// Where the merge reads a view from.
#[derive(Debug, Clone)]
pub enum Source {
    /// The view's own file.
    File(PathBuf),
    /// Its messages resolved by the count: per message the sequence minus
    /// the previous one's, then the place plus one (0: a stranger, whose
    /// text is in the map).
    Resolved { path: PathBuf, strangers: BTreeMap<u64, String> },
}

/// Pass 2a for one view, counting into `held` (zeros, one per op); with
/// `resolved`, also writing the messages resolved there ([`Source`]).
pub fn count_view(
    path: &Path,
    index: &OpIndex,
    held: Bits2,
    mut resolved: Option<VarWriter>,
) -> Result<(ViewCounts, Source), StreamError> {
    assert_eq!(held.len(), index.len());
    let mut c = ViewCounts { held, len: 0, stranger_entries: 0, strangers: BTreeMap::new(), dup_ops: 0, digest: 0 };
    let mut spill_error: Option<SpillError> = None;
    let mut last_seq = 0u64;
    let read = read_view(path, index, |seq, held| {
        c.len += 1;
        c.digest = digest(c.digest, seq, &held);
        let code = match held {
            Held::Op(g) => {
                // Counted once, on its second sighting ("two or more" stays 2).
                if c.held.get(g as usize) == 1 {
                    c.dup_ops += 1;
                }
                c.held.bump(g as usize);
                u64::from(g) + 1
            }
            Held::Stranger(s) => {
                c.stranger_entries += 1;
                c.strangers.entry(s).or_default().push(seq);
                0
            }
        };
        if let Some(w) = &mut resolved {
            w.put(&[seq - last_seq, code]).map_err(|e| {
                spill_error = Some(e);
                "stopped: the checker's temporary file failed".to_string()
            })?;
            last_seq = seq;
        }
        Ok(())
    });
    if let Some(e) = spill_error {
        return Err(e.into());
    }
    read?;
    let source = match resolved {
        Some(w) => {
            let strangers =
                c.strangers.iter().flat_map(|(text, seqs)| seqs.iter().map(|s| (*s, text.clone()))).collect();
            Source::Resolved { path: w.finish()?, strangers }
        }
        None => Source::File(path.to_path_buf()),
    };
    Ok((c, source))
}

/// Reads a resolved view (see [`Source::Resolved`]) in file order.
fn read_resolved(
    path: &Path,
    strangers: &BTreeMap<u64, String>,
    mut f: impl FnMut(u64, Held) -> Result<(), String>,
) -> Result<(), StreamError> {
    let mut r = VarReader::open(path)?;
    let mut seq = 0u64;
    while let Some(delta) = r.next()? {
        seq += delta;
        let held = match r.expect()? {
            0 => Held::Stranger(strangers.get(&seq).expect("a stranger's sequence was kept").clone()),
            code => Held::Op(u32::try_from(code - 1).expect("a place fits 32 bits")),
        };
        if f(seq, held).is_err() {
            break; // the merge stopped
        }
    }
    Ok(())
}

/// Messages handed from a view's reader thread at once.
const BATCH_MESSAGES: usize = 1 << 14;
/// Batches read ahead per view, at most.
const BATCHES_IN_FLIGHT: usize = 4;

/// A view's messages in sequence order, read on a thread of its own.
pub struct ViewStream {
    rx: Receiver<Vec<(u64, Held)>>,
    batch: std::vec::IntoIter<(u64, Held)>,
    head: Option<(u64, Held)>,
    pub taken: u64,
    /// Of the messages taken ([`digest`]).
    pub digest: u64,
}

impl ViewStream {
    /// Starts reading `source` on a thread of `scope`; the thread's result
    /// says whether it read back without error.
    pub fn spawn<'scope, 'env>(
        scope: &'scope std::thread::Scope<'scope, 'env>,
        source: &'env Source,
        index: &'env OpIndex,
    ) -> (ViewStream, std::thread::ScopedJoinHandle<'scope, Result<(), StreamError>>) {
        let (tx, rx) = sync_channel::<Vec<(u64, Held)>>(BATCHES_IN_FLIGHT);
        let reader = scope.spawn(move || {
            let mut batch = Vec::with_capacity(BATCH_MESSAGES);
            // Set when the merge stopped first (it failed): the reading then
            // stops too, and that is no error of this file's.
            let stopped = std::cell::Cell::new(false);
            let mut push = |seq, held| {
                batch.push((seq, held));
                if batch.len() == BATCH_MESSAGES
                    && tx.send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH_MESSAGES))).is_err()
                {
                    stopped.set(true);
                    return Err("the merge stopped".to_string());
                }
                Ok(())
            };
            let read = match source {
                Source::File(path) => read_view(path, index, &mut push).map_err(StreamError::from),
                Source::Resolved { path, strangers } => read_resolved(path, strangers, &mut push),
            };
            if stopped.get() {
                return Ok(());
            }
            if read.is_ok() && !batch.is_empty() {
                let _ = tx.send(batch);
            }
            read
        });
        let mut stream = ViewStream { rx, batch: Vec::new().into_iter(), head: None, taken: 0, digest: 0 };
        stream.advance();
        (stream, reader)
    }

    fn advance(&mut self) {
        self.head = self.batch.next().or_else(|| {
            self.batch = self.rx.recv().ok()?.into_iter();
            self.batch.next()
        });
    }

    /// The next message's sequence, if any is left.
    pub fn peek_seq(&self) -> Option<u64> {
        self.head.as_ref().map(|(seq, _)| *seq)
    }

    /// Takes the next message if it is at `seq`.
    pub fn take_at(&mut self, seq: u64) -> Option<Held> {
        if self.peek_seq() != Some(seq) {
            return None;
        }
        let (_, held) = self.head.take().expect("peeked");
        self.taken += 1;
        self.digest = digest(self.digest, seq, &held);
        self.advance();
        Some(held)
    }
}
