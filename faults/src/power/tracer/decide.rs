//! Deciding what a stopped syscall does: which file it touches, whether
//! its pages need pre-images first, whether it fails (io-error) or stops at
//! its exit (syncs, durable writes).

use super::proc::*;
use super::*;

const O_DSYNC: u64 = 0o10000;
const O_APPEND: u64 = 0o2000;
const RWF_DSYNC: u64 = 0x2;
const RWF_SYNC: u64 = 0x4;
const RWF_APPEND: u64 = 0x10;
const FALLOC_FL_KEEP_SIZE: u64 = 0x01;
const FALLOC_FL_PUNCH_HOLE: u64 = 0x02;
const FALLOC_FL_COLLAPSE_RANGE: u64 = 0x08;
const FALLOC_FL_ZERO_RANGE: u64 = 0x10;
const FALLOC_FL_INSERT_RANGE: u64 = 0x20;
const RENAME_EXCHANGE: u64 = 0x2;
const AT_REMOVEDIR: u64 = 0x200;

impl Tracer {
    pub(super) fn decide(&mut self, tid: i32, nr: i64, a: &[u64; 6]) -> Resume {
        match nr {
            libc::SYS_write
            | libc::SYS_pwrite64
            | libc::SYS_writev
            | libc::SYS_pwritev
            | libc::SYS_pwritev2
            | libc::SYS_copy_file_range
            | libc::SYS_fallocate
            | libc::SYS_ftruncate
            | libc::SYS_truncate => self.decide_write(tid, nr, a),
            libc::SYS_openat
            | libc::SYS_open
            | libc::SYS_creat
            | libc::SYS_openat2
            | libc::SYS_unlink
            | libc::SYS_unlinkat
            | libc::SYS_link
            | libc::SYS_linkat
            | libc::SYS_rename
            | libc::SYS_renameat
            | libc::SYS_renameat2 => self.decide_names(tid, nr, a),
            libc::SYS_fsync | libc::SYS_fdatasync | libc::SYS_syncfs | libc::SYS_sync => self.decide_sync(tid, nr, a),
            libc::SYS_mmap => {
                if let Some(t) = self.resolve_fd(tid, a[4] as i32)
                    && self.warned.insert(t.key)
                {
                    self.warn(&format!(
                        "shared writable mmap of data file {} (not modelled: writes through it are treated as durable)",
                        t.rel
                    ));
                }
                Resume::Cont
            }
            // sync_file_range starts write-back but promises no durability
            // (no metadata, no cache flush): it changes nothing in the model.
            _ => Resume::Cont,
        }
    }

    /// Writes, copies, fallocate and truncation of data files: save pre-images first.
    fn decide_write(&mut self, tid: i32, nr: i64, a: &[u64; 6]) -> Resume {
        match nr {
            libc::SYS_write | libc::SYS_pwrite64 | libc::SYS_writev | libc::SYS_pwritev | libc::SYS_pwritev2 => {
                let fd = a[0] as i32;
                let Some(t) = self.resolve_fd(tid, fd) else { return Resume::Cont };
                if self.io_error().is_some_and(IoErrorMode::fails_write) {
                    return Resume::Fail(libc::ENOSPC);
                }
                let (pos, flags) = fdinfo(tid, fd);
                let len = match nr {
                    libc::SYS_write | libc::SYS_pwrite64 => a[2],
                    _ => iov_len(tid, a[1], a[2]),
                };
                let rwf = if nr == libc::SYS_pwritev2 { a[5] } else { 0 };
                let append = flags & O_APPEND != 0 || rwf & RWF_APPEND != 0;
                let offset = if append {
                    t.size
                } else {
                    match nr {
                        libc::SYS_pwrite64 => a[3],
                        libc::SYS_pwritev => a[3],
                        libc::SYS_pwritev2 if a[3] as i64 != -1 => a[3],
                        _ => pos,
                    }
                };
                let durable = flags & O_DSYNC != 0 || rwf & (RWF_DSYNC | RWF_SYNC) != 0;
                if durable && self.holding_since.is_some() {
                    return Resume::Hold;
                }
                self.write_at(t, offset, len, durable)
            }
            libc::SYS_copy_file_range => {
                let fd = a[2] as i32;
                let Some(t) = self.resolve_fd(tid, fd) else { return Resume::Cont };
                if self.io_error().is_some_and(IoErrorMode::fails_write) {
                    return Resume::Fail(libc::ENOSPC);
                }
                let (pos, flags) = fdinfo(tid, fd);
                let offset = if a[3] == 0 { pos } else { read_u64(tid, a[3]).unwrap_or(pos) };
                if flags & O_DSYNC != 0 && self.holding_since.is_some() {
                    return Resume::Hold;
                }
                self.write_at(t, offset, a[4], flags & O_DSYNC != 0)
            }
            libc::SYS_fallocate => {
                let Some(t) = self.resolve_fd(tid, a[0] as i32) else { return Resume::Cont };
                if self.io_error().is_some_and(IoErrorMode::fails_write) {
                    return Resume::Fail(libc::ENOSPC);
                }
                let (mode, offset, len) = (a[1], a[2], a[3]);
                if mode & (FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_INSERT_RANGE) != 0 {
                    // Content shifts from `offset` to the end of the file.
                    let end = t.size.max(self.files.get(&t.key).map_or(0, |f| f.size_before));
                    self.write_at(t, offset, end.saturating_sub(offset), false)
                } else if mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE) != 0 {
                    self.write_at(t, offset, len, false)
                } else if mode & FALLOC_FL_KEEP_SIZE == 0 && offset.saturating_add(len) > t.size {
                    // Grows the file: remember the synced size.
                    self.write_at(t, offset, 0, false)
                } else {
                    Resume::Cont
                }
            }
            libc::SYS_ftruncate => {
                let Some(t) = self.resolve_fd(tid, a[0] as i32) else { return Resume::Cont };
                self.truncate_to(t, a[1])
            }
            libc::SYS_truncate => {
                let Some(t) = self.resolve_path(tid, libc::AT_FDCWD, a[0], true) else { return Resume::Cont };
                self.truncate_to(t, a[1])
            }
            other => unreachable!("syscall {other} routed to decide_write"),
        }
    }

    /// open with O_TRUNC, unlink and rename: truncations and files that go away.
    fn decide_names(&mut self, tid: i32, nr: i64, a: &[u64; 6]) -> Resume {
        match nr {
            libc::SYS_openat | libc::SYS_open | libc::SYS_creat | libc::SYS_openat2 => {
                let (dirfd, path, flags) = match nr {
                    libc::SYS_openat => (a[0] as i32, a[1], a[2]),
                    libc::SYS_open => (libc::AT_FDCWD, a[0], a[1]),
                    libc::SYS_creat => (libc::AT_FDCWD, a[0], (libc::O_CREAT | libc::O_TRUNC) as u64),
                    // openat2(dirfd, path, struct open_how *how, size): flags is how's first u64.
                    _ => (a[0] as i32, a[1], read_u64(tid, a[2]).unwrap_or(0)),
                };
                if flags & libc::O_CREAT as u64 != 0
                    && let Some(resume) = self.dirent_create(tid, dirfd, path)
                {
                    return resume;
                }
                if flags & libc::O_TRUNC as u64 == 0 {
                    return Resume::Cont;
                }
                let Some(t) = self.resolve_path(tid, dirfd, path, true) else { return Resume::Cont };
                if t.size == 0 && !self.files.contains_key(&t.key) {
                    return Resume::Cont;
                }
                self.truncate_to(t, 0)
            }
            libc::SYS_unlink | libc::SYS_unlinkat => {
                let (dirfd, path) = if nr == libc::SYS_unlink { (libc::AT_FDCWD, a[0]) } else { (a[0] as i32, a[1]) };
                if nr == libc::SYS_unlinkat && a[2] & AT_REMOVEDIR != 0 {
                    return Resume::Cont;
                }
                if let Some(resume) = self.dirent_unlink(tid, dirfd, path) {
                    return resume;
                }
                self.victim(tid, dirfd, path)
            }
            libc::SYS_rename | libc::SYS_renameat | libc::SYS_renameat2 => {
                let (dirfd, path) = if nr == libc::SYS_rename { (libc::AT_FDCWD, a[1]) } else { (a[2] as i32, a[3]) };
                if nr == libc::SYS_renameat2 && a[4] & RENAME_EXCHANGE != 0 {
                    // Both files live on under other names: no inode goes away.
                    return Resume::Cont;
                }
                let from = if nr == libc::SYS_rename { (libc::AT_FDCWD, a[0]) } else { (a[0] as i32, a[1]) };
                if let Some(resume) = self.dirent_rename(tid, from, (dirfd, path)) {
                    return resume;
                }
                self.victim(tid, dirfd, path)
            }
            libc::SYS_link | libc::SYS_linkat => {
                let (from, to) = if nr == libc::SYS_link {
                    ((libc::AT_FDCWD, a[0]), (libc::AT_FDCWD, a[1]))
                } else {
                    ((a[0] as i32, a[1]), (a[2] as i32, a[3]))
                };
                self.dirent_link(tid, from, to).unwrap_or(Resume::Cont)
            }
            other => unreachable!("syscall {other} routed to decide_names"),
        }
    }

    /// fsync, fdatasync, syncfs and sync: stop at the exit to drop what they made durable.
    fn decide_sync(&mut self, tid: i32, nr: i64, a: &[u64; 6]) -> Resume {
        match nr {
            libc::SYS_fsync | libc::SYS_fdatasync => {
                let fd = a[0] as i32;
                let Some(t) = self.resolve_fd_any(tid, fd) else { return Resume::Cont };
                if self.holding_since.is_some() {
                    return Resume::Hold;
                }
                if self.io_error().is_some_and(IoErrorMode::fails_sync) {
                    return Resume::Fail(libc::EIO);
                }
                if t.nlink == u64::MAX {
                    // A directory: what it makes durable is its entries.
                    return self.dirent_dir_sync(t.rel);
                }
                // Counted toward an armed fsync trigger: regular files only.
                let counted = if t.nlink != u64::MAX && !self.fired {
                    read_fsync_trigger(&self.state_dir).map(|trigger| Counted {
                        trigger,
                        file: t.rel.clone(),
                        len: t.size,
                    })
                } else {
                    None
                };
                if self.files.contains_key(&t.key) {
                    let mut snap = self.snapshots(|k| k == t.key);
                    // The descriptor's size is known even before the first write of this life.
                    snap.iter_mut().for_each(|s| s.size = Some(t.size));
                    self.begin_sync(snap, counted, None)
                } else if counted.is_some() {
                    // Nothing unsynced, but its return still counts.
                    Resume::Exit(Pending::Sync(Vec::new(), counted, None))
                } else {
                    Resume::Cont
                }
            }
            libc::SYS_syncfs => {
                let Ok(meta) = fs::metadata(format!("/proc/{tid}/fd/{}", a[0] as i32)) else { return Resume::Cont };
                if meta.dev() == self.data_dev && self.holding_since.is_some() {
                    return Resume::Hold;
                }
                if meta.dev() == self.data_dev && self.io_error().is_some_and(IoErrorMode::fails_sync) {
                    return Resume::Fail(libc::EIO);
                }
                if meta.dev() == self.data_dev || self.files.keys().any(|k| k.dev == meta.dev()) {
                    let upto = (meta.dev() == self.data_dev).then(|| self.dirent_upto());
                    self.begin_sync(self.snapshots(|k| k.dev == meta.dev()), None, upto)
                } else {
                    Resume::Cont
                }
            }
            libc::SYS_sync => {
                if self.holding_since.is_some() {
                    return Resume::Hold;
                }
                if self.io_error().is_some_and(IoErrorMode::fails_sync) {
                    // sync(2) cannot fail: it returns 0 but persists nothing.
                    return Resume::Fail(0);
                }
                let upto = Some(self.dirent_upto());
                self.begin_sync(self.snapshots(|_| true), None, upto)
            }
            other => unreachable!("syscall {other} routed to decide_sync"),
        }
    }

    pub(super) fn warn(&self, msg: &str) {
        eprintln!("jetsam-tracer: warning: {msg}");
        let line = msg.replace('\n', " ");
        let path = self.state_dir.join(WARNINGS_FILE);
        if let Err(e) = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()))
        {
            eprintln!("jetsam-tracer: failed to record the warning in {}: {e}", path.display());
        }
    }

    /// A file under the data dir open on `fd`, regular files only.
    pub(super) fn resolve_fd(&self, tid: i32, fd: i32) -> Option<Target> {
        self.resolve_fd_any(tid, fd).filter(|t| t.nlink != u64::MAX)
    }

    /// Like `resolve_fd` but directories too (nlink = u64::MAX marks them).
    pub(super) fn resolve_fd_any(&self, tid: i32, fd: i32) -> Option<Target> {
        if fd < 0 {
            return None;
        }
        let link = PathBuf::from(format!("/proc/{tid}/fd/{fd}"));
        let real = fs::read_link(&link).ok()?;
        // Sockets, pipes and anon inodes read as "socket:[...]" etc.
        if !real.is_absolute() || !real.starts_with(&self.data_dir) {
            return None;
        }
        if real.as_os_str().as_bytes().ends_with(b" (deleted)") {
            return None;
        }
        let meta = fs::metadata(&link).ok()?;
        let rel = real.strip_prefix(&self.data_dir).ok()?.to_string_lossy().into_owned();
        let nlink = if meta.is_dir() {
            u64::MAX
        } else if meta.is_file() {
            meta.nlink()
        } else {
            return None;
        };
        Some(Target {
            key: FileKey { dev: meta.dev(), ino: meta.ino() },
            size: meta.len(),
            open_path: link,
            rel,
            nlink,
        })
    }

    /// A regular file under the data dir named by a path argument.
    pub(super) fn resolve_path(&self, tid: i32, dirfd: i32, addr: u64, follow: bool) -> Option<Target> {
        let full = full_path(tid, dirfd, addr)?;
        if !full.starts_with(&self.data_dir) {
            return None;
        }
        let meta = if follow { fs::metadata(&full) } else { fs::symlink_metadata(&full) }.ok()?;
        if !meta.is_file() {
            return None;
        }
        let rel = full.strip_prefix(&self.data_dir).ok()?.to_string_lossy().into_owned();
        Some(Target {
            key: FileKey { dev: meta.dev(), ino: meta.ino() },
            size: meta.len(),
            open_path: full,
            rel,
            nlink: meta.nlink(),
        })
    }

    /// unlink/rename-over of `path`: if it is the last link of a tracked
    /// file, its log goes when the call succeeds (its inode number may be reused).
    pub(super) fn victim(&mut self, tid: i32, dirfd: i32, path: u64) -> Resume {
        match self.resolve_path(tid, dirfd, path, false) {
            Some(t) if t.nlink <= 1 && self.files.contains_key(&t.key) => Resume::Exit(Pending::DropIfGone(t.key)),
            _ => Resume::Cont,
        }
    }
}
