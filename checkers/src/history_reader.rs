//! Reads `history.jsonl` with its JSON parsing spread over the cores, while
//! the validation and building stay sequential and in file order.
//!
//! A reader thread cuts the file into blocks of whole lines; worker threads
//! parse each block's lines into compact records; the calling thread feeds
//! the records to a [`HistoryBuilder`] block by block, in order. The result
//! and every error are exactly those of the sequential reading
//! ([`jetsam_core::jsonl::for_each_raw_line`] + [`HistoryBuilder::push`]): a
//! parse error in a block is reported only after the lines before it were
//! validated, so the first bad line of the file is the one named. Blocks in
//! flight are bounded ([`MAX_BLOCKS_IN_FLIGHT`]), so memory does not grow
//! with the file.
//!
//! This module reads one file; it does not decide anything.

use crate::data::{History, HistoryBuilder};
use jetsam_core::history::{OpRef, OpType};
use jetsam_core::jsonl::LoadError;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

/// Bytes per block (a block is extended to the end of its last line).
pub const BLOCK_BYTES: usize = 4 << 20;
/// Blocks read but not yet consumed by the builder, at most.
pub const MAX_BLOCKS_IN_FLIGHT: usize = 8;

/// One parsed line; `id` indexes the block's id text.
struct Parsed {
    t_ns: u64,
    client: u32,
    kind: OpType,
    id_start: u32,
    id_len: u32,
    seq: Option<u64>,
    has_node: bool,
    has_error: bool,
}

/// A parsed block: its lines up to the first bad one, and that line's
/// problem (index within the block, what is wrong).
struct ParsedBlock {
    ids: String,
    lines: Vec<Parsed>,
    error: Option<(usize, String)>,
}

fn parse_block(bytes: &[u8], json_error: fn(serde_json::Error) -> String) -> ParsedBlock {
    let mut out = ParsedBlock { ids: String::new(), lines: Vec::new(), error: None };
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    if bytes.is_empty() {
        return out;
    }
    for (i, raw) in body.split(|b| *b == b'\n').enumerate() {
        let parsed = (|| {
            let text = std::str::from_utf8(raw).map_err(|e| format!("not UTF-8 text ({e})"))?;
            let text = text.strip_suffix('\r').unwrap_or(text);
            if text.trim().is_empty() {
                return Err("empty line (every line must be one JSON object)".to_string());
            }
            // jetsam's own line shape first (hand-written, ~3x faster), any
            // other line through serde_json exactly as before.
            let op: OpRef<'_> = match jetsam_core::fastline::history(text.as_bytes()) {
                Some(op) => op,
                None => serde_json::from_str(text).map_err(json_error)?,
            };
            let id_start = u32::try_from(out.ids.len()).expect("a block's ids fit in 4 GiB");
            out.ids.push_str(&op.id);
            Ok(Parsed {
                t_ns: op.t_ns,
                client: op.client,
                kind: op.kind,
                id_start,
                id_len: op.id.len() as u32,
                seq: op.seq,
                has_node: op.node.is_some(),
                has_error: op.error.is_some(),
            })
        })();
        match parsed {
            Ok(p) => out.lines.push(p),
            Err(what) => {
                out.error = Some((i, what));
                break;
            }
        }
    }
    out
}

/// Reads `path` into a [`History`] with `threads` parsing workers and blocks
/// of about `block_bytes`.
pub fn read_history(
    path: &Path,
    threads: usize,
    block_bytes: usize,
    json_error: fn(serde_json::Error) -> String,
) -> Result<History, LoadError> {
    let mut builder = HistoryBuilder::new();
    read_history_into(path, threads, block_bytes, json_error, |op| builder.push(op))?;
    Ok(builder.finish())
}

/// [`read_history`] into any consumer of lines in file order: `push` gets
/// each parsed line and answers the "what is wrong" of a line error (the
/// streaming checker, [`crate::stream`], indexes instead of building).
pub fn read_history_into(
    path: &Path,
    threads: usize,
    block_bytes: usize,
    json_error: fn(serde_json::Error) -> String,
    push: impl FnMut(&OpRef<'_>) -> Result<(), String>,
) -> Result<(), LoadError> {
    assert!(threads >= 1 && block_bytes >= 1);
    let io = |source| LoadError::Io { path: path.to_path_buf(), source };
    let mut file = std::fs::File::open(path).map_err(io)?;
    // Tokens bound the blocks in flight: the reader takes one per block, the
    // builder gives it back once the block is consumed.
    let (token_tx, token_rx) = sync_channel::<()>(MAX_BLOCKS_IN_FLIGHT);
    for _ in 0..MAX_BLOCKS_IN_FLIGHT {
        token_tx.send(()).expect("the token channel has room for every token");
    }
    let (work_tx, work_rx) = sync_channel::<(usize, Vec<u8>)>(MAX_BLOCKS_IN_FLIGHT);
    // Shared by the workers only, so it closes when the last one exits and
    // a reader blocked on a full queue then stops.
    let work_rx = Arc::new(Mutex::new(work_rx));
    let (done_tx, done_rx) = sync_channel::<(usize, ParsedBlock)>(MAX_BLOCKS_IN_FLIGHT);

    std::thread::scope(|s| {
        let reader = s.spawn(move || read_blocks(&mut file, block_bytes, &token_rx, &work_tx));
        for _ in 0..threads {
            let done_tx: SyncSender<(usize, ParsedBlock)> = done_tx.clone();
            let work_rx = Arc::clone(&work_rx);
            s.spawn(move || {
                loop {
                    // The lock is held only while taking a block.
                    let next = work_rx.lock().expect("no worker panicked holding the lock").recv();
                    let Ok((index, bytes)) = next else { break };
                    if done_tx.send((index, parse_block(&bytes, json_error))).is_err() {
                        break;
                    }
                }
            });
        }
        drop(done_tx);
        drop(work_rx);
        let built = build_in_order(path, &done_rx, &token_tx, push);
        // Stop the reader and the workers early when the build failed: drop
        // the receiving ends so their sends fail.
        drop(done_rx);
        drop(token_tx);
        let read = reader.join().expect("the reader thread does not panic");
        built?;
        read.map_err(io)?;
        Ok(())
    })
}

/// Sends blocks of whole lines until the end of the file.
fn read_blocks(
    file: &mut std::fs::File,
    block_bytes: usize,
    tokens: &Receiver<()>,
    work: &SyncSender<(usize, Vec<u8>)>,
) -> std::io::Result<()> {
    let mut carry: Vec<u8> = Vec::new();
    let mut index = 0;
    loop {
        if tokens.recv().is_err() {
            return Ok(()); // the builder stopped
        }
        let mut block = std::mem::take(&mut carry);
        let mut eof = false;
        // Read until the block holds at least `block_bytes` and a newline, or
        // the file ends.
        loop {
            let have = block.len();
            block.resize(have.max(block_bytes) + 64 * 1024, 0);
            let n = file.read(&mut block[have..])?;
            block.truncate(have + n);
            if n == 0 {
                eof = true;
                break;
            }
            if block.len() >= block_bytes && block[have..].contains(&b'\n') {
                break;
            }
        }
        if !eof {
            let cut = block.iter().rposition(|b| *b == b'\n').expect("the block holds a newline") + 1;
            carry = block.split_off(cut);
        }
        if !block.is_empty() && work.send((index, block)).is_err() {
            return Ok(()); // the workers stopped
        }
        index += 1;
        if eof {
            return Ok(());
        }
    }
}

/// Feeds parsed blocks to `push` in file order.
fn build_in_order(
    path: &Path,
    done: &Receiver<(usize, ParsedBlock)>,
    tokens: &SyncSender<()>,
    mut push: impl FnMut(&OpRef<'_>) -> Result<(), String>,
) -> Result<(), LoadError> {
    let mut waiting: BTreeMap<usize, ParsedBlock> = BTreeMap::new();
    let mut next = 0usize;
    let mut line_base = 0usize;
    // Every block ever sent arrives (the channel closes once the reader and
    // the workers are done), so waiting for `next` ends.
    while let Ok((index, block)) = done.recv() {
        waiting.insert(index, block);
        assert!(waiting.len() <= MAX_BLOCKS_IN_FLIGHT, "the tokens bound the blocks in flight");
        while let Some(block) = waiting.remove(&next) {
            for (i, p) in block.lines.iter().enumerate() {
                let id = &block.ids[p.id_start as usize..(p.id_start + p.id_len) as usize];
                let op = OpRef {
                    t_ns: p.t_ns,
                    client: p.client,
                    kind: p.kind,
                    id: Cow::Borrowed(id),
                    seq: p.seq,
                    // The validator needs only whether node and error are present.
                    node: p.has_node.then_some(Cow::Borrowed("")),
                    error: p.has_error.then_some(Cow::Borrowed("")),
                };
                push(&op).map_err(|what| LoadError::line(path, line_base + i + 1, what))?;
            }
            if let Some((i, what)) = block.error {
                return Err(LoadError::line(path, line_base + i + 1, what));
            }
            line_base += block.lines.len();
            next += 1;
            // The reader may already have stopped (end of file); a token it
            // will never take is harmless.
            let _ = tokens.try_send(());
        }
    }
    assert!(waiting.is_empty(), "every block before the last was consumed");
    Ok(())
}
