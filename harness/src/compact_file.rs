//! One file of `jetsam compact`: a JSON-lines history or read-back is
//! validated line by line with the checker's own builders (the rules and
//! messages of `jetsam check`) while it is encoded to a temporary compact
//! file, which is synced; and a compact file is compared with its JSON lines
//! record by record, every field and text included (the proof that the
//! conversion changed nothing).

use jetsam_checkers::forms::{op_line, recovered_line};
use jetsam_checkers::{History, HistoryBuilder, RecoveredBuilder};
use jetsam_core::compact::{CompactId, HistoryDecoder, HistoryEncoder, RecoveredDecoder, RecoveredEncoder};
use jetsam_core::history::{Op, OpRef};
use jetsam_core::jsonl::{LoadError, for_each_raw_line};
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, ErrorKind};
use std::path::Path;

/// Why a file could not be encoded.
#[derive(Debug)]
pub enum EncodeError {
    /// A line is invalid (the error names the file and the line), or has
    /// no compact form.
    Line(LoadError),
    /// Writing or syncing the compact file failed.
    Write(std::io::Error),
}

fn create(tmp: &Path) -> Result<BufWriter<File>, EncodeError> {
    File::create(tmp).map(|f| BufWriter::with_capacity(1 << 20, f)).map_err(EncodeError::Write)
}

/// Flushes and fsyncs a written compact file.
fn sync(out: BufWriter<File>) -> Result<(), EncodeError> {
    let file = out.into_inner().map_err(|e| EncodeError::Write(e.into_error()))?;
    file.sync_all().map_err(EncodeError::Write)
}

/// An encoder's answer inside a line visitor: `InvalidInput` is the line's
/// problem (it has no compact form); any other error is a write error,
/// kept in `failed` so it is not reported as the line's.
fn pushed(r: std::io::Result<()>, failed: &mut Option<std::io::Error>) -> Result<(), String> {
    match r {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::InvalidInput => Err(format!("no compact form: {e}")),
        Err(e) => {
            let what = e.to_string();
            *failed = Some(e);
            Err(what)
        }
    }
}

fn read_result(read: Result<(), LoadError>, failed: Option<std::io::Error>) -> Result<(), EncodeError> {
    match failed {
        Some(e) => Err(EncodeError::Write(e)),
        None => read.map_err(EncodeError::Line),
    }
}

/// Validates `history.jsonl` as `jetsam check` does while writing its
/// compact form to `tmp` (synced); returns the history, which the
/// read-backs are validated against.
pub fn encode_history(lines: &Path, tmp: &Path) -> Result<History, EncodeError> {
    let mut enc = HistoryEncoder::new(create(tmp)?).map_err(EncodeError::Write)?;
    let mut builder = HistoryBuilder::new();
    let mut failed = None;
    let read = for_each_raw_line(lines, |raw, _| {
        let op = op_line(raw)?;
        builder.push(&op)?;
        pushed(enc.push(&op), &mut failed)
    });
    read_result(read, failed)?;
    sync(enc.finish().map_err(EncodeError::Write)?)?;
    Ok(builder.finish())
}

/// Validates a `recovered/<view>.jsonl` as `jetsam check` does while
/// writing its compact form to `tmp` (synced).
pub fn encode_view(lines: &Path, tmp: &Path, history: &History) -> Result<(), EncodeError> {
    let mut enc = RecoveredEncoder::new(create(tmp)?).map_err(EncodeError::Write)?;
    let mut builder = RecoveredBuilder::new(history);
    let mut failed = None;
    let read = for_each_raw_line(lines, |raw, _| {
        let (seq, id) = recovered_line(raw)?;
        builder.push(seq, &id)?;
        pushed(enc.push(seq, &id), &mut failed)
    });
    read_result(read, failed)?;
    drop(builder.finish());
    sync(enc.finish().map_err(EncodeError::Write)?)
}

/// Walks the JSON lines of `lines` beside the records of a compact file:
/// `step` compares line `n` with record `n` and says what differs. `Err`
/// is the first difference, or what could not be read.
fn lockstep<F>(lines: &Path, mut step: F) -> Result<usize, String>
where
    F: FnMut(&str, usize) -> Option<String>,
{
    let mut differ = None;
    let mut count = 0;
    let read = for_each_raw_line(lines, |raw, line| {
        count = line;
        differ = step(raw, line);
        if differ.is_some() { Err(String::new()) } else { Ok(()) }
    });
    if let Some(d) = differ {
        return Err(d);
    }
    read.map_err(|e| e.to_string())?;
    Ok(count)
}

/// An op as its JSON line.
fn show(op: &OpRef<'_>) -> String {
    let op = Op {
        t_ns: op.t_ns,
        client: op.client,
        kind: op.kind,
        id: op.id.to_string(),
        seq: op.seq,
        node: op.node.as_deref().map(str::to_string),
        error: op.error.as_deref().map(str::to_string),
    };
    serde_json::to_string(&op).expect("an op always serializes")
}

fn open(compact: &Path) -> Result<File, String> {
    File::open(compact).map_err(|e| format!("cannot open {}: {e}", compact.display()))
}

/// Whether `compact` (a `history.bin`) holds exactly the ops of `lines`
/// (a `history.jsonl`), texts included; `Err` says where they differ.
pub fn compare_history(lines: &Path, compact: &Path) -> Result<(), String> {
    let mut dec = HistoryDecoder::new(open(compact)?).map_err(|e| format!("the compact file cannot be read: {e}"))?;
    let count = lockstep(lines, |raw, n| {
        let want = match op_line(raw) {
            Ok(op) => op,
            Err(e) => return Some(format!("line {n} cannot be read: {e}")),
        };
        match dec.next_op_ref() {
            Ok(Some(got)) if got == want => None,
            Ok(Some(got)) => Some(format!("line {n} is {}, record {n} is {}", show(&want), show(&got))),
            Ok(None) => Some(format!("the compact file ends before line {n}")),
            Err(e) => Some(format!("record {n} cannot be read: {e}")),
        }
    })?;
    match dec.next_op_ref() {
        Ok(None) => Ok(()),
        Ok(Some(_)) => Err(format!("the compact file has more records than the {count} lines")),
        Err(e) => Err(format!("record {} cannot be read: {e}", count + 1)),
    }
}

/// Whether `compact` (a `recovered/<view>.bin`) holds exactly the messages
/// of `lines`; `Err` says where they differ.
pub fn compare_view(lines: &Path, compact: &Path) -> Result<(), String> {
    let mut dec = RecoveredDecoder::new(open(compact)?).map_err(|e| format!("the compact file cannot be read: {e}"))?;
    let mut text = String::new();
    let count = lockstep(lines, |raw, n| {
        let (seq, id) = match recovered_line(raw) {
            Ok(m) => m,
            Err(e) => return Some(format!("line {n} cannot be read: {e}")),
        };
        let (got_seq, got_id) = match dec.next_msg() {
            Ok(Some((s, CompactId::Op(op)))) => {
                text.clear();
                write!(text, "{op}").expect("writing to a String does not fail");
                (s, text.as_str())
            }
            Ok(Some((s, CompactId::Text(t)))) => (s, t),
            Ok(None) => return Some(format!("the compact file ends before line {n}")),
            Err(e) => return Some(format!("record {n} cannot be read: {e}")),
        };
        (got_seq != seq || got_id != id)
            .then(|| format!("line {n} is seq {seq} id {id:?}, record {n} is seq {got_seq} id {got_id:?}"))
    })?;
    match dec.next_msg() {
        Ok(None) => Ok(()),
        Ok(Some(_)) => Err(format!("the compact file has more records than the {count} lines")),
        Err(e) => Err(format!("record {} cannot be read: {e}", count + 1)),
    }
}
