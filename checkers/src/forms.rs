//! The two forms of a run folder's history and read-backs: JSON lines
//! (format version 1) and compact (`history.bin`, `recovered/<view>.bin`,
//! version 2; docs/formats.md "Compact files"). Which form a folder holds,
//! and every op of a history with all its fields, in either form, for the
//! readers that need more than the checker's [`crate::History`]: the
//! durability audit and report.html (ack times and the acking node) and
//! `jetsam compact` (which compares a compact file with its JSON lines).
//! Lines are parsed as [`crate::load`] parses them (jetsam's own shape by
//! hand, any other line by serde_json); they are not validated here.

use crate::load::{HISTORY_COMPACT_FILE, HISTORY_FILE, LoadRunError, compact_error, json_error};
use jetsam_core::compact::HistoryDecoder;
use jetsam_core::history::OpRef;
use jetsam_core::jsonl::{LoadError, for_each_raw_line};
use jetsam_core::recovered::RecoveredMsgRef;
use std::borrow::Cow;
use std::path::{Path, PathBuf};

/// The history file of a run folder: `history.jsonl` or `history.bin`,
/// whichever it holds. Both, or neither, is an error (bad input).
pub fn history_file(dir: &Path) -> Result<PathBuf, LoadRunError> {
    let lines = dir.join(HISTORY_FILE);
    let compact = dir.join(HISTORY_COMPACT_FILE);
    match (lines.is_file(), compact.is_file()) {
        (true, false) => Ok(lines),
        (false, true) => Ok(compact),
        (true, true) => Err(LoadRunError::BothForms {
            dir: dir.to_path_buf(),
            a: HISTORY_FILE.into(),
            b: HISTORY_COMPACT_FILE.into(),
        }),
        (false, false) => Err(LoadRunError::NoHistory { dir: dir.to_path_buf() }),
    }
}

/// Whether `path` is a compact file (`.bin`).
pub fn is_compact(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "bin")
}

/// One `history.jsonl` line (without its line ending), parsed.
pub fn op_line(raw: &str) -> Result<OpRef<'_>, String> {
    match jetsam_core::fastline::history(raw.as_bytes()) {
        Some(op) => Ok(op),
        None => serde_json::from_str(raw).map_err(json_error),
    }
}

/// One `recovered/<view>.jsonl` line (without its line ending), parsed:
/// its `seq` and `id`.
pub fn recovered_line(raw: &str) -> Result<(u64, Cow<'_, str>), String> {
    if let Some((seq, id)) = jetsam_core::fastline::recovered(raw.as_bytes()) {
        return Ok((seq, Cow::Borrowed(id)));
    }
    let m: RecoveredMsgRef<'_> = serde_json::from_str(raw).map_err(json_error)?;
    Ok((m.seq, m.id))
}

/// Every op of a history file in file order, `history.jsonl` or (by its
/// `.bin` name) `history.bin`. `visit` may reject an op; the error then
/// names the file and the line (or record).
pub fn for_each_op<F>(path: &Path, mut visit: F) -> Result<(), LoadError>
where
    F: FnMut(&OpRef<'_>) -> Result<(), String>,
{
    if !is_compact(path) {
        return for_each_raw_line(path, |raw, _| visit(&op_line(raw)?));
    }
    let file = std::fs::File::open(path).map_err(|source| LoadError::Io { path: path.to_path_buf(), source })?;
    let mut decoder = HistoryDecoder::new(file).map_err(|e| compact_error(path, 0, e))?;
    let mut record = 0usize;
    while let Some(op) = decoder.next_op_ref().map_err(|e| compact_error(path, record + 1, e))? {
        record += 1;
        visit(&op).map_err(|what| LoadError::line(path, record, what))?;
    }
    Ok(())
}

/// Every op of a run folder's history, in whichever form it holds
/// ([`history_file`], [`for_each_op`]).
pub fn for_each_history_op<F>(dir: &Path, visit: F) -> Result<(), LoadRunError>
where
    F: FnMut(&OpRef<'_>) -> Result<(), String>,
{
    Ok(for_each_op(&history_file(dir)?, visit)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jetsam_core::compact::HistoryEncoder;
    use jetsam_core::history::Op;

    /// Both forms of one history give the very same ops, texts included.
    #[test]
    fn both_forms_give_the_same_ops() {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/coordinated-power-loss");
        let ops = |path: &Path| {
            let mut out: Vec<Op> = Vec::new();
            for_each_op(path, |op| {
                out.push(Op {
                    t_ns: op.t_ns,
                    client: op.client,
                    kind: op.kind,
                    id: op.id.to_string(),
                    seq: op.seq,
                    node: op.node.as_deref().map(str::to_string),
                    error: op.error.as_deref().map(str::to_string),
                });
                Ok(())
            })
            .unwrap();
            out
        };
        let want = ops(&history_file(&fixture).unwrap());
        assert!(want.iter().any(|o| o.node.is_some()) && want.iter().any(|o| o.error.is_some()));
        let dir = std::env::temp_dir().join(format!("jetsam-forms-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut enc = HistoryEncoder::new(Vec::new()).unwrap();
        for op in &want {
            enc.push(&op.borrowed()).unwrap();
        }
        std::fs::write(dir.join(HISTORY_COMPACT_FILE), enc.finish().unwrap()).unwrap();
        assert_eq!(history_file(&dir).unwrap(), dir.join(HISTORY_COMPACT_FILE));
        assert_eq!(ops(&dir.join(HISTORY_COMPACT_FILE)), want);
        std::fs::copy(fixture.join(HISTORY_FILE), dir.join(HISTORY_FILE)).unwrap();
        let e = history_file(&dir).unwrap_err().to_string();
        assert!(e.contains("both history.jsonl and history.bin exist"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
        let e = history_file(&dir).unwrap_err().to_string();
        assert!(e.contains("history.jsonl is missing"), "{e}");
    }
}
