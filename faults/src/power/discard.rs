//! `discard`: after the node's process group is dead, put every file the
//! undo log tracks back to its last synced content (per the discard model)
//! and clear the log. It does not kill anything and refuses to run while a
//! tracer still holds the state dir's lock.

use super::dirents::{DirentModel, DirentReport};
use super::undo::{self, FileKey, FileLog, PAGE_SIZE};
use super::{DiscardModel, LOCK_FILE, PowerError, WARNINGS_FILE};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long discard waits for a dying tracer to release the state dir (it
/// dies by PR_SET_PDEATHSIG right after its process group is killed).
const LOCK_WAIT_MS: u64 = 5_000;
const LOCK_POLL_MS: u64 = 10;

/// What one power loss threw away, for the `power-loss` event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiscardReport {
    pub model: DiscardModel,
    pub seed: u64,
    /// Sum over `files`.
    pub bytes_discarded: u64,
    pub pages_discarded: u64,
    pub pages_kept: u64,
    /// Per restored file, sorted by path.
    pub files: Vec<DiscardedFile>,
    /// Tracked files no longer under the data dir (renamed out or unlinked
    /// while their last link was open): their logs were dropped.
    pub missing: Vec<String>,
    /// What the tracer saw but could not model (e.g. shared writable mmap of a data file).
    pub warnings: Vec<String>,
    /// With a dirent model other than durable: the directory operations
    /// reverted and kept.
    pub dirents: Option<DirentReport>,
}

/// One restored file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiscardedFile {
    /// Relative to the data dir.
    pub path: String,
    /// Bytes of newer content thrown away (the reverted pages' bytes that existed).
    pub bytes_discarded: u64,
    pub pages_discarded: u64,
    /// Unsynced pages that survived (keep_fraction, writeback_after).
    pub pages_kept: u64,
    /// Size when the power went.
    pub size_at_loss: u64,
    /// Size after the discard.
    pub size_after: u64,
}

/// Holds `S/lock` exclusively while alive (flock is released on close).
pub(crate) struct StateLock {
    _file: File,
}

/// Takes the state dir's lock without waiting; `Ok(None)` if someone holds it.
pub(crate) fn try_lock(state_dir: &Path) -> Result<Option<StateLock>, PowerError> {
    fs::create_dir_all(state_dir).map_err(|e| PowerError::io("create the state dir", state_dir, e))?;
    let path = state_dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| PowerError::io("open the lock file", &path, e))?;
    // SAFETY: flock on a valid fd we own.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(Some(StateLock { _file: file }));
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) { Ok(None) } else { Err(PowerError::io("flock", &path, err)) }
}

/// Puts every tracked file under `data_dir` back to its last synced content
/// per `model` (survivors chosen with `seed`), then clears the undo log.
/// Call it after the node's process group is dead; it waits up to 5 s for a
/// dying tracer to let go of the state dir, then fails.
pub fn discard(
    data_dir: &Path,
    state_dir: &Path,
    model: &DiscardModel,
    seed: u64,
) -> Result<DiscardReport, PowerError> {
    discard_with(data_dir, state_dir, model, DirentModel::Durable, seed)
}

/// [`discard`], with directory operations kept or reverted per `dirents`
/// (reverted first, so a file that comes back gets its synced content).
pub fn discard_with(
    data_dir: &Path,
    state_dir: &Path,
    model: &DiscardModel,
    dirents: DirentModel,
    seed: u64,
) -> Result<DiscardReport, PowerError> {
    if let DiscardModel::KeepFraction(f) = model
        && !(0.0..=1.0).contains(f)
    {
        return Err(PowerError::BadModel(format!("keep_fraction = {f} is not in 0.0..=1.0")));
    }
    let started = Instant::now();
    let _lock = loop {
        if let Some(lock) = try_lock(state_dir)? {
            break lock;
        }
        if started.elapsed() >= Duration::from_millis(LOCK_WAIT_MS) {
            return Err(PowerError::Busy { path: state_dir.to_path_buf(), waited_ms: LOCK_WAIT_MS });
        }
        std::thread::sleep(Duration::from_millis(LOCK_POLL_MS));
    };
    // Files the journal kept alive outside the data dir: if they do not come
    // back, their undo logs go quietly (the name was taken away for good).
    let kept_alive = super::dirents::kept_inodes(state_dir);
    let dirent_report = match dirents {
        DirentModel::Durable => {
            super::dirents::clear(state_dir)?;
            None
        }
        model => Some(super::dirents::undo(data_dir, state_dir, model, now_ns())?),
    };
    let (logs, torn) = undo::read_all(state_dir).map_err(|e| PowerError::io("read the undo log in", state_dir, e))?;
    for path in torn {
        fs::remove_file(&path).map_err(|e| PowerError::io("remove", &path, e))?;
    }
    let mut by_key: BTreeMap<FileKey, FileLog> = logs.into_iter().map(|l| (l.key, l)).collect();
    let mut found: BTreeMap<String, FileLog> = BTreeMap::new();
    if !by_key.is_empty() {
        let mut paths = BTreeMap::new();
        walk(data_dir, data_dir, &mut paths).map_err(|e| PowerError::io("walk the data dir", data_dir, e))?;
        for (rel, key) in paths {
            if let Some(log) = by_key.remove(&key) {
                found.insert(rel, log);
            }
        }
    }
    let now_ns = now_ns();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut report = DiscardReport {
        model: *model,
        seed,
        bytes_discarded: 0,
        pages_discarded: 0,
        pages_kept: 0,
        files: Vec::new(),
        missing: by_key.values().filter(|l| !kept_alive.contains(&l.key.ino)).map(|l| l.path.clone()).collect(),
        warnings: Vec::new(),
        dirents: dirent_report,
    };
    for (rel, log) in &found {
        let keep: BTreeMap<u64, bool> = log
            .pages
            .iter()
            .map(|(&idx, rec)| {
                let kept = match model {
                    DiscardModel::All => false,
                    DiscardModel::KeepFraction(f) => rng.gen_bool(*f),
                    DiscardModel::WritebackAfter(age) => u128::from(now_ns.saturating_sub(rec.t_ns)) >= age.as_nanos(),
                };
                (idx, kept)
            })
            .collect();
        let file = restore(&data_dir.join(rel), rel, log, &keep)?;
        report.bytes_discarded += file.bytes_discarded;
        report.pages_discarded += file.pages_discarded;
        report.pages_kept += file.pages_kept;
        report.files.push(file);
    }
    let dir = undo::undo_dir(state_dir);
    for log in found.values().chain(by_key.values()) {
        let path = dir.join(log.key.log_name());
        fs::remove_file(&path).map_err(|e| PowerError::io("remove the undo log", &path, e))?;
    }
    let warnings_path = state_dir.join(WARNINGS_FILE);
    match fs::read_to_string(&warnings_path) {
        Ok(text) => {
            report.warnings = text.lines().map(str::to_string).collect();
            fs::remove_file(&warnings_path).map_err(|e| PowerError::io("remove", &warnings_path, e))?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(PowerError::io("read", &warnings_path, e)),
    }
    Ok(report)
}

pub(crate) fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// Regular files under `dir`, by relative path (sorted; a hard-linked inode
/// keeps its first path).
fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, FileKey>) -> io::Result<()> {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)?.map(|e| e.map(|e| e.path())).collect::<io::Result<_>>()?;
    entries.sort();
    for path in entries {
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            // Removed between listing and stat: nothing is running, but be lenient.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if meta.is_dir() {
            walk(root, &path, out)?;
        } else if meta.is_file() {
            let rel = path.strip_prefix(root).expect("walked below root").to_string_lossy().into_owned();
            let key = FileKey { dev: meta.dev(), ino: meta.ino() };
            if !out.values().any(|k| *k == key) {
                out.insert(rel, key);
            }
        }
    }
    Ok(())
}

/// Restores one file: the size it had at its last sync (grown to hold any
/// surviving page or durable patch), reverted pages' pre-images, then durable
/// patches over the reverted pages.
fn restore(path: &Path, rel: &str, log: &FileLog, keep: &BTreeMap<u64, bool>) -> Result<DiscardedFile, PowerError> {
    let f = OpenOptions::new().read(true).write(true).open(path).map_err(|e| PowerError::io("open", path, e))?;
    let cur = f.metadata().map_err(|e| PowerError::io("stat", path, e))?.len();
    let mut final_size = log.size_before;
    for (&idx, &kept) in keep {
        if kept {
            final_size = final_size.max(cur.min((idx + 1) * PAGE_SIZE));
        }
    }
    for (off, data) in &log.patches {
        final_size = final_size.max(off + data.len() as u64);
    }
    let mut out = DiscardedFile {
        path: rel.to_string(),
        bytes_discarded: 0,
        pages_discarded: 0,
        pages_kept: 0,
        size_at_loss: cur,
        size_after: final_size,
    };
    f.set_len(final_size).map_err(|e| PowerError::io("set the length of", path, e))?;
    let zeros = [0u8; PAGE_SIZE as usize];
    for (&idx, rec) in &log.pages {
        let start = idx * PAGE_SIZE;
        let end = start + PAGE_SIZE;
        if keep[&idx] {
            out.pages_kept += 1;
            continue;
        }
        out.pages_discarded += 1;
        out.bytes_discarded += cur.min(end).saturating_sub(start);
        if start >= final_size {
            continue;
        }
        let pre = rec.pre_image.as_slice();
        if !pre.is_empty() && start + pre.len() as u64 > log.size_before {
            return Err(PowerError::Inconsistent {
                path: path.to_path_buf(),
                detail: format!("page {idx}'s pre-image runs past the synced size {}", log.size_before),
            });
        }
        f.write_all_at(pre, start).map_err(|e| PowerError::io("write a pre-image to", path, e))?;
        let fill_end = end.min(final_size);
        let fill_start = start + pre.len() as u64;
        if fill_end > fill_start {
            f.write_all_at(&zeros[..(fill_end - fill_start) as usize], fill_start)
                .map_err(|e| PowerError::io("zero the tail of a page of", path, e))?;
        }
    }
    for (off, data) in &log.patches {
        // Durable bytes land on reverted pages only: a surviving page already
        // holds newer content than any earlier durable write.
        let mut at = *off;
        let stop = off + data.len() as u64;
        while at < stop {
            let idx = at / PAGE_SIZE;
            let chunk_end = stop.min((idx + 1) * PAGE_SIZE);
            if !keep.get(&idx).copied().unwrap_or(false) {
                let slice = &data[(at - off) as usize..(chunk_end - off) as usize];
                f.write_all_at(slice, at).map_err(|e| PowerError::io("write a durable patch to", path, e))?;
            }
            at = chunk_end;
        }
    }
    f.sync_all().map_err(|e| PowerError::io("fsync", path, e))?;
    Ok(out)
}
