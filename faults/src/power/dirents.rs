//! Directory entries under power loss (opt-in per power-loss fault:
//! `dirents = "lose-unsynced"`). The tracer journals every create, link,
//! rename and unlink of a regular file under the data dir in `S/dirents.log`
//! (JSON lines, appended when the call succeeds) and keeps each file such a
//! call takes away (an unlinked file, a file renamed over) alive by a hard
//! link in `S/dirents/`; a successful fsync of a directory, or a syncfs or
//! sync, is journaled too. At the power loss, [`undo`] reverts, newest
//! first, every operation that no later sync made durable:
//!
//! | operation | durable once | undone by the power loss |
//! |---|---|---|
//! | create of P | P's directory fsynced after it | P is removed |
//! | link A to B | B's directory fsynced | B is removed |
//! | rename A to B | both directories fsynced | B goes back to A; a file B replaced comes back |
//! | unlink of P | P's directory fsynced | P comes back (its content then put back to its last synced state like any file) |
//!
//! A syncfs or sync makes every earlier operation durable; with
//! `dirents_after`, an operation older than that at the power loss is
//! durable too (a journaling file system's periodic commit: ext4 commits
//! every 5 s by default). This is POSIX's promise and the worst case real
//! file systems show: ext4 (data=ordered) and xfs also commit a new file's
//! directory entry when the file itself is fsynced, and ext4 commits a
//! rename over an existing file with its data (auto_da_alloc); the model
//! does not grant either. Directory creation, removal and renames (mkdir,
//! rmdir, renaming a directory) are not modelled (durable when they
//! return; an undo under a renamed directory finds its name changed and is
//! skipped, reported), nor RENAME_EXCHANGE, symlinks or special files. See
//! docs/power-loss.md.

use super::PowerError;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `S/dirents.log`: the journal, one [`Record`] per line.
pub const JOURNAL_FILE: &str = "dirents.log";
/// `S/dirents/`: hard links that keep taken-away files alive, named by the op's seq.
pub const VICTIMS_DIR: &str = "dirents";

/// One journaled directory operation (paths relative to the data dir).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum DirOp {
    Create {
        path: String,
        ino: u64,
    },
    Link {
        from: String,
        to: String,
        ino: u64,
    },
    Rename {
        from: String,
        to: String,
        ino: u64,
        replaced: Option<u64>,
    },
    Unlink {
        path: String,
        ino: u64,
    },
    /// A successful fsync of `dir`: operations before `upto` touching it are durable there.
    DirSync {
        dir: String,
        upto: u64,
    },
    /// A successful syncfs or sync: every operation before `upto` is durable.
    SyncAll {
        upto: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub seq: u64,
    /// The tracer's clock (CLOCK_REALTIME ns) when the call returned.
    pub t_ns: u64,
    #[serde(flatten)]
    pub op: DirOp,
}

/// Whether directory operations survive a power loss.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum DirentModel {
    /// Durable when the call returns (the default; LazyFS does the same).
    #[default]
    Durable,
    /// Lost unless a later fsync of the directory (or syncfs/sync) made
    /// them durable, or they are older than `after` at the power loss.
    LoseUnsynced { after: Option<Duration> },
}

impl DirentModel {
    /// From a power-loss fault's options: `dirents = "durable" |
    /// "lose-unsynced"`, `dirents_after = "5s"` (only with lose-unsynced).
    pub fn from_options(options: &toml::Table) -> Result<DirentModel, PowerError> {
        let bad = |m: String| PowerError::BadModel(m);
        let after = match options.get("dirents_after") {
            None => None,
            Some(v) => {
                let text = v.as_str().ok_or_else(|| bad("dirents_after must be a duration string".into()))?;
                let d = jetsam_core::duration::parse_duration(text).map_err(|e| bad(format!("dirents_after: {e}")))?;
                if d.is_zero() {
                    return Err(bad("dirents_after = \"0s\": leave it out for no periodic commit".into()));
                }
                Some(d)
            }
        };
        match options.get("dirents").map(|v| v.as_str()) {
            None | Some(Some("durable")) if after.is_some() => {
                Err(bad("dirents_after needs dirents = \"lose-unsynced\"".into()))
            }
            None | Some(Some("durable")) => Ok(DirentModel::Durable),
            Some(Some("lose-unsynced")) => Ok(DirentModel::LoseUnsynced { after }),
            Some(other) => Err(bad(format!("dirents = {other:?}: expected \"durable\" or \"lose-unsynced\""))),
        }
    }
}

pub fn victim_path(state_dir: &Path, seq: u64) -> PathBuf {
    state_dir.join(VICTIMS_DIR).join(seq.to_string())
}

/// Appends one record (the tracer; the line is written whole).
pub fn append(state_dir: &Path, record: &Record) -> io::Result<()> {
    let mut line = serde_json::to_string(record).map_err(io::Error::other)?;
    line.push('\n');
    OpenOptions::new().create(true).append(true).open(state_dir.join(JOURNAL_FILE))?.write_all(line.as_bytes())
}

/// The journal's records; a torn last line (the tracer died mid-write) is left out.
pub fn read_journal(state_dir: &Path) -> io::Result<Vec<Record>> {
    let text = match fs::read_to_string(state_dir.join(JOURNAL_FILE)) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
}

/// The next free seq (the tracer continues a journal a previous life left).
pub fn next_seq(state_dir: &Path) -> io::Result<u64> {
    Ok(read_journal(state_dir)?.iter().map(|r| r.seq + 1).max().unwrap_or(1))
}

/// The directory (relative) a path's entry lives in.
fn parent(rel: &str) -> String {
    Path::new(rel).parent().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default()
}

/// The directories an operation changed.
fn dirs_of(op: &DirOp) -> BTreeSet<String> {
    match op {
        DirOp::Create { path, .. } | DirOp::Unlink { path, .. } => BTreeSet::from([parent(path)]),
        DirOp::Link { to, .. } => BTreeSet::from([parent(to)]),
        DirOp::Rename { from, to, .. } => BTreeSet::from([parent(from), parent(to)]),
        DirOp::DirSync { .. } | DirOp::SyncAll { .. } => BTreeSet::new(),
    }
}

/// What [`undo`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DirentReport {
    /// Operations reverted, newest first, e.g. "create log/2.seg: removed".
    pub undone: Vec<String>,
    /// Operations that were durable and stay.
    pub kept: u64,
    /// Reverts that could not be done (the name no longer held the file
    /// the journal recorded), newest first.
    pub skipped: Vec<String>,
}

fn io<'a>(what: &'static str, p: &'a Path) -> impl FnOnce(io::Error) -> PowerError + 'a {
    move |e| PowerError::io(what, p, e)
}

fn ino_at(path: &Path) -> Option<u64> {
    fs::symlink_metadata(path).ok().filter(|m| m.is_file()).map(|m| m.ino())
}

/// Reverts every journaled operation no sync made durable (`model`), then
/// clears the journal and the kept files. Call it after the node is dead and
/// before the page contents are put back.
pub fn undo(data_dir: &Path, state_dir: &Path, model: DirentModel, now_ns: u64) -> Result<DirentReport, PowerError> {
    let records = read_journal(state_dir).map_err(|e| PowerError::io("read the directory journal in", state_dir, e))?;
    let mut report = DirentReport::default();
    if let DirentModel::LoseUnsynced { after } = model {
        let mut synced_all_upto = 0;
        let mut dir_upto: BTreeMap<&str, u64> = BTreeMap::new();
        for r in &records {
            match &r.op {
                DirOp::SyncAll { upto } => synced_all_upto = synced_all_upto.max(*upto),
                DirOp::DirSync { dir, upto } => {
                    let e = dir_upto.entry(dir.as_str()).or_default();
                    *e = (*e).max(*upto);
                }
                _ => {}
            }
        }
        for r in records.iter().rev() {
            let dirs = dirs_of(&r.op);
            if dirs.is_empty() {
                continue;
            }
            let aged = after.is_some_and(|a| u128::from(now_ns.saturating_sub(r.t_ns)) >= a.as_nanos());
            let synced = r.seq < synced_all_upto
                || dirs.iter().all(|d| dir_upto.get(d.as_str()).is_some_and(|&upto| r.seq < upto));
            if aged || synced {
                report.kept += 1;
                continue;
            }
            revert(data_dir, state_dir, r, &mut report)?;
        }
    }
    clear(state_dir)?;
    Ok(report)
}

/// Reverts one operation.
fn revert(data_dir: &Path, state_dir: &Path, r: &Record, report: &mut DirentReport) -> Result<(), PowerError> {
    let victim = victim_path(state_dir, r.seq);
    match &r.op {
        DirOp::Create { path, ino } | DirOp::Link { to: path, ino, .. } => {
            let p = data_dir.join(path);
            let what = if matches!(r.op, DirOp::Create { .. }) { "create" } else { "link" };
            if ino_at(&p) == Some(*ino) {
                fs::remove_file(&p).map_err(io("remove", &p))?;
                report.undone.push(format!("{what} {path}: removed"));
            } else {
                report.skipped.push(format!("{what} {path}: the name no longer holds inode {ino}"));
            }
        }
        DirOp::Rename { from, to, ino, replaced } => {
            let (pf, pt) = (data_dir.join(from), data_dir.join(to));
            if ino_at(&pt) == Some(*ino) && ino_at(&pf).is_none() {
                fs::rename(&pt, &pf).map_err(io("rename back", &pt))?;
                let mut note = format!("rename {from} -> {to}: back to {from}");
                if replaced.is_some() {
                    fs::hard_link(&victim, &pt).map_err(io("put back the replaced file at", &pt))?;
                    note.push_str(&format!(", the file it replaced is {to} again"));
                }
                report.undone.push(note);
            } else {
                report.skipped.push(format!("rename {from} -> {to}: {to} no longer holds inode {ino}"));
            }
        }
        DirOp::Unlink { path, .. } => {
            let p = data_dir.join(path);
            if fs::symlink_metadata(&p).is_err() {
                if let Some(dir) = p.parent() {
                    fs::create_dir_all(dir).map_err(io("create", dir))?;
                }
                fs::hard_link(&victim, &p).map_err(io("put back the unlinked file at", &p))?;
                report.undone.push(format!("unlink {path}: back"));
            } else {
                report.skipped.push(format!("unlink {path}: the name is taken again"));
            }
        }
        DirOp::DirSync { .. } | DirOp::SyncAll { .. } => unreachable!("syncs change no entry"),
    }
    Ok(())
}

/// Drops the journal and the kept files (after [`undo`], or when the page
/// model alone applies: the durable view needs neither).
pub fn clear(state_dir: &Path) -> Result<(), PowerError> {
    super::remove_if_there(&state_dir.join(JOURNAL_FILE))?;
    let dir = state_dir.join(VICTIMS_DIR);
    match fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(PowerError::io("remove", &dir, e)),
    }
}

/// Inodes the journal keeps alive only through `S/dirents/` (for a page
/// discard without the dirent model: their undo logs are not "missing").
pub fn kept_inodes(state_dir: &Path) -> BTreeSet<u64> {
    let Ok(entries) = fs::read_dir(state_dir.join(VICTIMS_DIR)) else { return BTreeSet::new() };
    entries.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.ino()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(s: &str) -> toml::Table {
        toml::from_str(s).unwrap()
    }

    #[test]
    fn model_from_options() {
        assert_eq!(DirentModel::from_options(&table("")).unwrap(), DirentModel::Durable);
        assert_eq!(
            DirentModel::from_options(&table("dirents = \"lose-unsynced\"")).unwrap(),
            DirentModel::LoseUnsynced { after: None }
        );
        assert_eq!(
            DirentModel::from_options(&table("dirents = \"lose-unsynced\"\ndirents_after = \"5s\"")).unwrap(),
            DirentModel::LoseUnsynced { after: Some(Duration::from_secs(5)) }
        );
        for bad in
            ["dirents = \"sometimes\"", "dirents_after = \"5s\"", "dirents = \"lose-unsynced\"\ndirents_after = \"0s\""]
        {
            assert!(DirentModel::from_options(&table(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn journal_round_trip_skips_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let r = Record {
            seq: 1,
            t_ns: 5,
            op: DirOp::Rename { from: "a".into(), to: "b c".into(), ino: 7, replaced: Some(9) },
        };
        append(dir.path(), &r).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(JOURNAL_FILE))
            .unwrap()
            .write_all(b"{\"seq\":2,\"t_")
            .unwrap();
        assert_eq!(read_journal(dir.path()).unwrap(), vec![r]);
        assert_eq!(next_seq(dir.path()).unwrap(), 2);
    }
}
