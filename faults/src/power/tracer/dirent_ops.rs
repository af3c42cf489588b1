//! Journaling directory operations for the dirent model (see
//! `power::dirents`): at a create, link, rename or unlink of a regular file
//! under the data dir the tracer takes a seq, keeps a file the call would
//! take away alive by a hard link in `S/dirents/<seq>`, and stops at the
//! exit; a successful call is appended to `S/dirents.log`, a failed one
//! gives its hard link back. Directory fsyncs and syncfs/sync are journaled
//! with the seq they cover.

use super::proc::*;
use super::*;
use crate::power::dirents::{self, DirOp, Record};

/// A directory operation waiting for its syscall's return.
#[derive(Debug, Clone)]
pub(super) enum DirPending {
    /// The op as it will be journaled; `ino: 0` in a create is filled in
    /// from the returned descriptor (open) or the new name (rename in).
    Op { seq: u64, op: DirOp, fd_from_ret: bool },
    /// An fsync of a directory covering ops before `upto`.
    DirSync { dir: String, upto: u64 },
}

impl Tracer {
    fn take_seq(&mut self) -> u64 {
        let seq = self.dirent_seq;
        self.dirent_seq += 1;
        seq
    }

    /// A name under the data dir (which may not exist yet), as (full, relative).
    pub(super) fn resolve_name(&self, tid: i32, dirfd: i32, addr: u64) -> Option<(PathBuf, String)> {
        let full = full_path(tid, dirfd, addr)?;
        let rel = full.strip_prefix(&self.data_dir).ok()?.to_string_lossy().into_owned();
        (!rel.is_empty()).then_some((full, rel))
    }

    /// Keeps the file at `path` alive as `S/dirents/<seq>`; false (with a
    /// warning) when it cannot (then the op is not journaled).
    fn keep_alive(&self, path: &Path, seq: u64) -> bool {
        let victim = dirents::victim_path(&self.state_dir, seq);
        let result = fs::create_dir_all(victim.parent().expect("in the victims dir"))
            .and_then(|()| fs::hard_link(path, &victim));
        if let Err(e) = result {
            self.warn(&format!(
                "failed to keep {} for the dirent model ({e}): its removal is treated as durable",
                path.display()
            ));
            return false;
        }
        true
    }

    /// open/openat/creat with O_CREAT of a name that does not exist yet.
    pub(super) fn dirent_create(&mut self, tid: i32, dirfd: i32, addr: u64) -> Option<Resume> {
        let (full, rel) = self.resolve_name(tid, dirfd, addr)?;
        if fs::symlink_metadata(&full).is_ok() {
            return None;
        }
        let seq = self.take_seq();
        Some(Resume::Exit(Pending::Dirent(DirPending::Op {
            seq,
            op: DirOp::Create { path: rel, ino: 0 },
            fd_from_ret: true,
        })))
    }

    /// unlink of a regular file under the data dir.
    pub(super) fn dirent_unlink(&mut self, tid: i32, dirfd: i32, addr: u64) -> Option<Resume> {
        let t = self.resolve_path(tid, dirfd, addr, false)?;
        let seq = self.take_seq();
        if !self.keep_alive(&t.open_path, seq) {
            return None;
        }
        let op = DirOp::Unlink { path: t.rel, ino: t.key.ino };
        Some(Resume::Exit(Pending::Dirent(DirPending::Op { seq, op, fd_from_ret: false })))
    }

    /// rename of a regular file to a name under the data dir (from inside
    /// it, or moved in from outside: then a create of the new name).
    pub(super) fn dirent_rename(&mut self, tid: i32, from: (i32, u64), to: (i32, u64)) -> Option<Resume> {
        let (to_full, to_rel) = self.resolve_name(tid, to.0, to.1)?;
        let seq = self.take_seq();
        let Some(source) = self.resolve_path(tid, from.0, from.1, false) else {
            let op = DirOp::Create { path: to_rel, ino: 0 };
            return Some(Resume::Exit(Pending::Dirent(DirPending::Op { seq, op, fd_from_ret: false })));
        };
        let replaced = match fs::symlink_metadata(&to_full) {
            Ok(m) if m.is_file() && m.ino() != source.key.ino => {
                if !self.keep_alive(&to_full, seq) {
                    return None;
                }
                Some(m.ino())
            }
            _ => None,
        };
        let op = DirOp::Rename { from: source.rel, to: to_rel, ino: source.key.ino, replaced };
        Some(Resume::Exit(Pending::Dirent(DirPending::Op { seq, op, fd_from_ret: false })))
    }

    /// link of a regular file to a new name under the data dir.
    pub(super) fn dirent_link(&mut self, tid: i32, from: (i32, u64), to: (i32, u64)) -> Option<Resume> {
        let (_, to_rel) = self.resolve_name(tid, to.0, to.1)?;
        let source = self.resolve_path(tid, from.0, from.1, false)?;
        let seq = self.take_seq();
        let op = DirOp::Link { from: source.rel, to: to_rel, ino: source.key.ino };
        Some(Resume::Exit(Pending::Dirent(DirPending::Op { seq, op, fd_from_ret: false })))
    }

    /// An fsync of a directory under the data dir starts: it covers the ops so far.
    pub(super) fn dirent_dir_sync(&self, dir: String) -> Resume {
        Resume::Exit(Pending::Dirent(DirPending::DirSync { dir, upto: self.dirent_seq }))
    }

    /// The seq a syncfs/sync starting now covers.
    pub(super) fn dirent_upto(&self) -> u64 {
        self.dirent_seq
    }

    /// A journaled call returned `ret`.
    pub(super) fn dirent_done(&mut self, tid: i32, p: DirPending, ret: i64) {
        let record = match p {
            DirPending::Op { seq, op, fd_from_ret } => {
                if ret < 0 {
                    // Failed: nothing changed; give back the kept file, if any.
                    let _ = fs::remove_file(dirents::victim_path(&self.state_dir, seq));
                    return;
                }
                let op = match op {
                    DirOp::Create { path, ino: 0 } => {
                        let meta = if fd_from_ret {
                            fs::metadata(format!("/proc/{tid}/fd/{ret}"))
                        } else {
                            fs::symlink_metadata(self.data_dir.join(&path))
                        };
                        match meta {
                            Ok(m) if m.is_file() => DirOp::Create { path, ino: m.ino() },
                            // A directory opened O_CREAT, or gone already: not modelled.
                            _ => return,
                        }
                    }
                    op => op,
                };
                Record { seq, t_ns: now_ns(), op }
            }
            DirPending::DirSync { dir, upto } => {
                if ret < 0 {
                    return;
                }
                let seq = self.take_seq();
                Record { seq, t_ns: now_ns(), op: DirOp::DirSync { dir, upto } }
            }
        };
        self.journal(&record);
    }

    /// A syncfs/sync that started covering ops before `upto` succeeded.
    pub(super) fn dirent_synced_all(&mut self, upto: u64) {
        let seq = self.take_seq();
        self.journal(&Record { seq, t_ns: now_ns(), op: DirOp::SyncAll { upto } });
    }

    fn journal(&self, record: &Record) {
        if let Err(e) = dirents::append(&self.state_dir, record) {
            eprintln!("jetsam-tracer: failed to journal a directory operation: {e}");
        }
    }
}
