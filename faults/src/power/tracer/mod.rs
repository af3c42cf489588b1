//! The tracer behind `jetsam-tracer run`: starts a program under ptrace with
//! a seccomp filter so that only file-mutating and sync syscalls stop, and
//! before each mutation of a file under the data dir appends the pages'
//! pre-images to the undo log in the state dir (see `undo`). A successful
//! fsync/fdatasync of a file drops its log; sync/syncfs drop all of them.
//!
//! Processes: the spawned process P (leader of the controller's process
//! group) forks the tracing process T into its own process group, and T forks
//! the tracee C back into P's group. So SIGSTOP/SIGCONT/SIGKILL sent to the
//! group reach P and C but not T, which keeps serving ptrace stops: a group
//! SIGSTOP becomes a real group-stop of every tracee thread (PTRACE_SEIZE +
//! PTRACE_LISTEN), SIGCONT resumes it. T dies with P (PR_SET_PDEATHSIG), the
//! tracees die with T (PTRACE_O_EXITKILL). P exits with C's exit code.
//!
//! Not traced: io_uring (io_uring_setup fails with ENOSYS), writes through
//! shared writable mmap (warned about), sendfile/splice, 32-bit syscalls
//! (ENOSYS). x86_64 only.

mod decide;
mod dirent_ops;
mod filter;
mod model;
mod proc;

pub use filter::build_filter;

use super::discard::{StateLock, now_ns, try_lock};
use super::trigger::{FsyncFired, FsyncTrigger, HOLD_MAX, read_fsync_trigger, take_fsync_release, write_fsync_fired};
use super::undo::{self, FileKey, PAGE_SIZE};
use super::{IoErrorMode, TRACEE_PID_FILE, WARNINGS_FILE, read_io_error};
use nix::sys::ptrace;
use nix::unistd::Pid;
use std::collections::{HashMap, HashSet};
use std::ffi::{CString, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

/// What `jetsam-tracer run` was asked to do.
#[derive(Debug, Clone)]
pub struct TracerConfig {
    pub data_dir: PathBuf,
    pub state_dir: PathBuf,
    pub program: OsString,
    pub args: Vec<OsString>,
}

/// Why the tracer could not start the program.
#[derive(Debug, thiserror::Error)]
pub enum TracerError {
    #[error("failed to {action}: {source}; check the data and state dirs exist and you run as root")]
    Setup { action: String, source: io::Error },
    #[error(
        "failed to lock the state dir {0} within {1:?}: another jetsam-tracer owns it; stop that node (SIGKILL its \
         process group) first"
    )]
    Busy(PathBuf, std::time::Duration),
    #[error("failed to start the tracee: {0}")]
    Start(String),
}

impl TracerError {
    pub fn exit_code(&self) -> i32 {
        jetsam_core::exit::ENVIRONMENT
    }
}

fn setup_err(action: impl Into<String>) -> impl FnOnce(io::Error) -> TracerError {
    let action = action.into();
    move |source| TracerError::Setup { action, source }
}

/// How long a starting tracer waits for the state dir's previous owner to die.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

// ---- process setup ----

fn cstring(s: &[u8], what: &str) -> Result<CString, TracerError> {
    CString::new(s).map_err(|_| TracerError::Start(format!("the {what} contains a NUL byte")))
}

/// Runs the program under the tracer; returns the exit code for P: the
/// tracee's exit code, or 128+signal if a signal killed it.
pub fn run(cfg: &TracerConfig) -> Result<i32, TracerError> {
    fs::create_dir_all(&cfg.data_dir).map_err(setup_err(format!("create the data dir {}", cfg.data_dir.display())))?;
    fs::create_dir_all(undo::undo_dir(&cfg.state_dir))
        .map_err(setup_err(format!("create the state dir {}", cfg.state_dir.display())))?;
    let data_dir = fs::canonicalize(&cfg.data_dir).map_err(setup_err("resolve the data dir"))?;
    let state_dir = fs::canonicalize(&cfg.state_dir).map_err(setup_err("resolve the state dir"))?;
    if state_dir.starts_with(&data_dir) {
        return Err(TracerError::Start(format!(
            "the state dir {} lies inside the data dir {}; put it outside",
            state_dir.display(),
            data_dir.display()
        )));
    }
    // A tracer of the node's previous life may still be dying (it goes by
    // PR_SET_PDEATHSIG after its group is killed): wait a bounded while.
    let started = std::time::Instant::now();
    let lock = loop {
        match try_lock(&state_dir) {
            Ok(Some(lock)) => break lock,
            Ok(None) if started.elapsed() < LOCK_WAIT => std::thread::sleep(std::time::Duration::from_millis(10)),
            Ok(None) => return Err(TracerError::Busy(state_dir, LOCK_WAIT)),
            Err(e) => return Err(TracerError::Start(e.to_string())),
        }
    };
    let program = cstring(cfg.program.as_bytes(), "program name")?;
    let mut argv = vec![program.clone()];
    for a in &cfg.args {
        argv.push(cstring(a.as_bytes(), "argument")?);
    }
    let filter = build_filter();
    // SAFETY: getpgrp/getpid cannot fail.
    let (group, p_pid) = unsafe { (libc::getpgrp(), libc::getpid()) };

    // SAFETY: this process is single-threaded (the jetsam-tracer main), so
    // the child may allocate and run ordinary code.
    let t_pid = unsafe { libc::fork() };
    if t_pid < 0 {
        return Err(setup_err("fork the tracing process")(io::Error::last_os_error()));
    }
    if t_pid == 0 {
        let code = tracing_process(p_pid, group, &data_dir, &state_dir, &program, &argv, &filter, lock);
        std::process::exit(code);
    }
    drop(lock);
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child.
        let rc = unsafe { libc::waitpid(t_pid, &mut status, 0) };
        if rc == t_pid {
            break;
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(setup_err("wait for the tracing process")(err));
        }
    }
    Ok(exit_code_of(status))
}

fn exit_code_of(status: i32) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        jetsam_core::exit::ENVIRONMENT
    }
}

/// T: its own process group, dies with P, forks and seizes C.
#[allow(clippy::too_many_arguments)]
fn tracing_process(
    p_pid: i32,
    group: i32,
    data_dir: &Path,
    state_dir: &Path,
    program: &CString,
    argv: &[CString],
    filter: &[libc::sock_filter],
    _lock: StateLock,
) -> i32 {
    // SAFETY: plain syscalls on our own process.
    unsafe {
        libc::setpgid(0, 0);
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0);
        if libc::getppid() != p_pid {
            // P died before PDEATHSIG was armed.
            return jetsam_core::exit::ENVIRONMENT;
        }
    }
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let prog = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr() as *mut libc::sock_filter };
    // SAFETY: T is single-threaded; the child only makes async-signal-safe calls.
    let c_pid = unsafe { libc::fork() };
    if c_pid < 0 {
        eprintln!("jetsam-tracer: failed to fork the tracee: {}", io::Error::last_os_error());
        return jetsam_core::exit::ENVIRONMENT;
    }
    if c_pid == 0 {
        // SAFETY: async-signal-safe calls only; pointers outlive the exec.
        unsafe {
            libc::setpgid(0, group);
            libc::raise(libc::SIGSTOP);
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::syscall(libc::SYS_seccomp, 1 /* SECCOMP_SET_MODE_FILTER */, 0, &prog) != 0
            {
                let msg = b"jetsam-tracer: failed to install the seccomp filter\n";
                libc::write(2, msg.as_ptr().cast(), msg.len());
                libc::_exit(jetsam_core::exit::ENVIRONMENT);
            }
            libc::execvp(program.as_ptr(), argv_ptrs.as_ptr());
            let msg = b"jetsam-tracer: failed to exec the program; check its path\n";
            libc::write(2, msg.as_ptr().cast(), msg.len());
            libc::_exit(127);
        }
    }
    let mut status = 0;
    // SAFETY: waiting for our own child's stop.
    let rc = unsafe { libc::waitpid(c_pid, &mut status, libc::WUNTRACED) };
    if rc != c_pid || !libc::WIFSTOPPED(status) {
        eprintln!("jetsam-tracer: failed to see the tracee stop before tracing (status {status:#x})");
        return jetsam_core::exit::ENVIRONMENT;
    }
    let options = ptrace::Options::PTRACE_O_TRACESYSGOOD
        | ptrace::Options::PTRACE_O_TRACECLONE
        | ptrace::Options::PTRACE_O_TRACEFORK
        | ptrace::Options::PTRACE_O_TRACEVFORK
        | ptrace::Options::PTRACE_O_TRACEEXEC
        | ptrace::Options::PTRACE_O_TRACESECCOMP
        | ptrace::Options::PTRACE_O_EXITKILL;
    if let Err(e) = ptrace::seize(Pid::from_raw(c_pid), options) {
        eprintln!("jetsam-tracer: failed to PTRACE_SEIZE the tracee: {e}; run as root");
        // SAFETY: our own child.
        unsafe { libc::kill(c_pid, libc::SIGKILL) };
        return jetsam_core::exit::ENVIRONMENT;
    }
    // SAFETY: our own child.
    unsafe { libc::kill(c_pid, libc::SIGCONT) };
    let mut tracer = match Tracer::new(data_dir, state_dir, c_pid) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("jetsam-tracer: failed to load the undo log in {}: {e}", state_dir.display());
            return jetsam_core::exit::ENVIRONMENT;
        }
    };
    let pid_path = state_dir.join(TRACEE_PID_FILE);
    let tmp = state_dir.join(format!("{TRACEE_PID_FILE}.tmp"));
    if let Err(e) = fs::write(&tmp, format!("{c_pid}\n")).and_then(|()| fs::rename(&tmp, &pid_path)) {
        eprintln!("jetsam-tracer: failed to write {}: {e}", pid_path.display());
        return jetsam_core::exit::ENVIRONMENT;
    }
    tracer.serve()
}

// ---- the tracing loop ----

struct Tracked {
    log: File,
    /// Bytes in the log file (the next record's offset).
    log_len: u64,
    /// Which incarnation of this file's log (a new one after each drop or
    /// rewrite), so a sync does not trim a log begun while it ran.
    generation: u64,
    /// Path relative to the data dir when tracking began.
    rel: String,
    size_before: u64,
    pages: HashSet<u64>,
    /// Syncs of this file running now, and what was re-dirtied since the
    /// latest of them started.
    syncs_in_flight: u32,
    epoch: Option<SyncEpoch>,
    /// A read-only descriptor on the inode (opened through /proc, so renames
    /// do not matter) to copy pre-images from.
    reader: Option<File>,
}

/// Pages written while a sync of the file runs: the first such write to a
/// page already in the log logs it again, with its content at that moment as
/// the pre-image, so that when the sync succeeds and the log is trimmed to
/// the records made while it ran, the page still counts as unsynced.
struct SyncEpoch {
    /// File size when the sync started (pre-images are cut there).
    size: u64,
    seen: HashSet<u64>,
}

/// A tracked file as a sync found it when it started: records appended to
/// its log after `log_len` were made while the sync ran and stay unsynced.
#[derive(Debug, Clone, Copy)]
struct SyncSnapshot {
    key: FileKey,
    generation: u64,
    log_len: u64,
    /// File size when the sync started (None: unknown, no reader yet).
    size: Option<u64>,
}

#[derive(Debug, Clone)]
enum Pending {
    /// fsync/fdatasync of one file, sync(2) or syncfs(2) of its file system:
    /// on success each file's log is dropped up to its snapshot, and a
    /// counted data-file fsync advances the armed fsync trigger.
    Sync(Vec<SyncSnapshot>, Option<Counted>, Option<u64>),
    /// A directory operation or directory fsync for the dirent journal.
    Dirent(dirent_ops::DirPending),
    /// unlink/rename over the last link of a tracked file: drop its log on success.
    DropIfGone(FileKey),
    /// A write through an O_SYNC/O_DSYNC descriptor (or RWF_[D]SYNC) to a
    /// tracked file: its bytes are durable on return.
    Durable { key: FileKey, offset: u64 },
}

/// A data-file fsync that counts toward an armed fsync trigger.
#[derive(Debug, Clone)]
struct Counted {
    trigger: FsyncTrigger,
    /// The synced file, relative to the data dir.
    file: String,
    /// Its length when the sync started.
    len: u64,
}

/// What the stopped syscall should do next.
enum Resume {
    /// Leave it stopped at its entry until the fsync hold is released.
    Hold,
    /// Run it; no exit stop.
    Cont,
    /// Run it and stop at its exit.
    Exit(Pending),
    /// Do not run it; return this errno.
    Fail(i32),
}

/// A file under the data dir a syscall is about to touch.
struct Target {
    key: FileKey,
    size: u64,
    /// A path that opens this inode (/proc/<tid>/fd/<fd> or the real path).
    open_path: PathBuf,
    rel: String,
    nlink: u64,
}

struct Tracer {
    data_dir: PathBuf,
    state_dir: PathBuf,
    undo_dir: PathBuf,
    data_dev: u64,
    leader: i32,
    files: HashMap<FileKey, Tracked>,
    pending: HashMap<i32, Pending>,
    warned: HashSet<FileKey>,
    /// Source of `Tracked::generation`.
    generations: u64,
    /// Successful data-file fsyncs seen while an fsync trigger was armed.
    fsyncs_armed: u64,
    /// Whether this tracer's fsync trigger fired (it fires once).
    fired: bool,
    /// Since when later syncs are held (after a firing that holds).
    holding_since: Option<std::time::Instant>,
    /// Threads stopped at a sync's entry while holding, in arrival order.
    held: Vec<i32>,
    /// The next directory-journal seq.
    dirent_seq: u64,
    /// The durability audit's record, when on.
    audit: Option<crate::power::audit::AuditLog>,
    /// When each thread's pending sync started (for the audit).
    sync_started: HashMap<i32, u64>,
}

fn is_esrch(e: &nix::Error) -> bool {
    *e == nix::Error::ESRCH
}

impl Tracer {
    fn new(data_dir: &Path, state_dir: &Path, leader: i32) -> io::Result<Tracer> {
        let (logs, torn) = undo::read_all(state_dir)?;
        for path in torn {
            fs::remove_file(path)?;
        }
        let undo_dir = undo::undo_dir(state_dir);
        let mut files = HashMap::new();
        for log in logs {
            let file = undo::open_append(&undo_dir.join(log.key.log_name()), log.valid_len)?;
            files.insert(
                log.key,
                Tracked {
                    log: file,
                    log_len: log.valid_len,
                    generation: 0,
                    rel: log.path.clone(),
                    size_before: log.size_before,
                    pages: log.pages.keys().copied().collect(),
                    syncs_in_flight: 0,
                    epoch: None,
                    reader: None,
                },
            );
        }
        Ok(Tracer {
            data_dir: data_dir.to_path_buf(),
            state_dir: state_dir.to_path_buf(),
            undo_dir,
            data_dev: fs::metadata(data_dir)?.dev(),
            leader,
            files,
            pending: HashMap::new(),
            warned: HashSet::new(),
            generations: 0,
            fsyncs_armed: 0,
            fired: false,
            holding_since: None,
            held: Vec::new(),
            dirent_seq: crate::power::dirents::next_seq(state_dir)?,
            audit: crate::power::audit::AuditLog::open(state_dir)?,
            sync_started: HashMap::new(),
        })
    }

    /// Serves ptrace stops until the tracee C exits; returns its exit code.
    fn serve(&mut self) -> i32 {
        loop {
            let mut status = 0;
            // While syncs are held nothing may ever stop again (every thread
            // could be held): poll, so a release or HOLD_MAX is noticed.
            let flags = if self.holding_since.is_some() { libc::__WALL | libc::WNOHANG } else { libc::__WALL };
            // SAFETY: waiting for any tracee.
            let tid = unsafe { libc::waitpid(-1, &mut status, flags) };
            if tid == 0 {
                self.poll_hold();
                continue;
            }
            if tid < 0 {
                let err = io::Error::last_os_error();
                if err.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                eprintln!("jetsam-tracer: failed to wait for the tracee: {err}");
                return jetsam_core::exit::ENVIRONMENT;
            }
            if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
                self.pending.remove(&tid);
                self.held.retain(|&h| h != tid);
                if tid == self.leader {
                    // The caller exits without running destructors.
                    if let Some(audit) = self.audit.as_mut() {
                        audit.flush();
                    }
                    return exit_code_of(status);
                }
                continue;
            }
            if !libc::WIFSTOPPED(status) {
                continue;
            }
            let sig = libc::WSTOPSIG(status);
            let event = (status >> 16) & 0xff;
            let pid = Pid::from_raw(tid);
            let result = match event {
                libc::PTRACE_EVENT_SECCOMP => self.on_seccomp(tid),
                libc::PTRACE_EVENT_STOP => {
                    if matches!(sig, libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU) {
                        // Group-stop: stay stopped, but let SIGCONT wake us.
                        // SAFETY: PTRACE_LISTEN on a seized, stopped tracee.
                        let rc = unsafe { libc::ptrace(libc::PTRACE_LISTEN, tid, 0, 0) };
                        if rc < 0 { Err(nix::Error::last()) } else { Ok(()) }
                    } else {
                        // A new thread's first stop, an interrupt, or the
                        // wake-up after SIGCONT.
                        ptrace::cont(pid, None)
                    }
                }
                libc::PTRACE_EVENT_FORK | libc::PTRACE_EVENT_VFORK => {
                    if let Ok(child) = ptrace::getevent(pid) {
                        self.note_tracee(child as u32);
                    }
                    ptrace::cont(pid, None)
                }
                libc::PTRACE_EVENT_EXEC => {
                    // The exec'ing thread took over the leader's tid; any
                    // other thread's pending syscall died with it.
                    if let Ok(former) = ptrace::getevent(pid)
                        && former as i32 != tid
                    {
                        self.pending.remove(&(former as i32));
                    }
                    self.pending.remove(&tid);
                    ptrace::cont(pid, None)
                }
                0 if sig == (libc::SIGTRAP | 0x80) => self.on_syscall_exit(tid),
                // Signal-delivery-stop: pass the signal through (Go's SIGURG,
                // and SIGSTOP, whose injection starts the group-stop).
                0 => ptrace::cont(pid, nix::sys::signal::Signal::try_from(sig).ok()),
                _ => ptrace::cont(pid, None),
            };
            if let Err(e) = result
                && !is_esrch(&e)
            {
                eprintln!("jetsam-tracer: ptrace on thread {tid} failed: {e}");
            }
        }
    }

    fn on_seccomp(&mut self, tid: i32) -> nix::Result<()> {
        let pid = Pid::from_raw(tid);
        let mut regs = ptrace::getregs(pid)?;
        let args = [regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9];
        let resume = self.decide(tid, regs.orig_rax as i64, &args);
        match resume {
            Resume::Hold => {
                self.held.push(tid);
                Ok(())
            }
            Resume::Cont => ptrace::cont(pid, None),
            Resume::Exit(p) => {
                if self.audit.is_some() && matches!(p, Pending::Sync(..)) {
                    self.sync_started.insert(tid, now_ns());
                }
                self.pending.insert(tid, p);
                ptrace::syscall(pid, None)
            }
            Resume::Fail(errno) => {
                // Syscall number -1 skips the call; rax is its return value.
                regs.orig_rax = u64::MAX;
                regs.rax = (-(errno as i64)) as u64;
                ptrace::setregs(pid, regs)?;
                ptrace::cont(pid, None)
            }
        }
    }

    fn on_syscall_exit(&mut self, tid: i32) -> nix::Result<()> {
        let pid = Pid::from_raw(tid);
        if let Some(p) = self.pending.remove(&tid) {
            let ret = ptrace::getregs(pid)?.rax as i64;
            match p {
                Pending::Sync(snapshots, counted, all_upto) => {
                    let started = self.sync_started.remove(&tid);
                    if let (Some(audit), Some(start), true) = (self.audit.as_mut(), started, ret >= 0) {
                        let end = now_ns();
                        match (all_upto, snapshots.as_slice()) {
                            (Some(_), _) => audit.sync(start, end, None),
                            (None, [one]) => audit.sync(start, end, Some((one.key.dev, one.key.ino))),
                            // A file with nothing unsynced: no write of it waits for this sync.
                            (None, _) => {}
                        }
                    }
                    if let Some(upto) = all_upto
                        && ret >= 0
                    {
                        self.dirent_synced_all(upto);
                    }
                    for snap in snapshots {
                        self.end_sync(snap);
                        if ret >= 0 {
                            self.synced(snap);
                        }
                    }
                    if let Some(c) = counted
                        && ret >= 0
                    {
                        self.count_fsync(c);
                    }
                }
                Pending::Dirent(p) => self.dirent_done(tid, p, ret),
                Pending::DropIfGone(key) if ret >= 0 => self.drop_log(key),
                Pending::Durable { key, offset } if ret > 0 => self.record_durable(key, offset, ret as u64),
                Pending::DropIfGone(_) | Pending::Durable { .. } => {}
            }
        }
        ptrace::cont(pid, None)
    }

    fn io_error(&self) -> Option<IoErrorMode> {
        read_io_error(&self.state_dir)
    }

    /// Records a forked tracee in `S/tracees` (pid and start time), so a
    /// power loss waits for it even when it left the node's process group.
    fn note_tracee(&self, pid: u32) {
        let Some(start) = crate::process::start_time(pid) else { return };
        let line = format!("{pid} {start}\n");
        let result = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.state_dir.join(super::TRACEES_FILE))
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = result {
            eprintln!("jetsam-tracer: failed to record tracee {pid}: {e}");
        }
    }

    /// A data-file fsync returned successfully while a trigger was armed.
    fn count_fsync(&mut self, c: Counted) {
        if self.fired {
            // Another thread's fsync that was already running: no second firing.
            return;
        }
        self.fsyncs_armed += 1;
        if self.fsyncs_armed < c.trigger.count {
            return;
        }
        assert_eq!(self.fsyncs_armed, c.trigger.count, "fires at the count, once");
        self.fired = true;
        if c.trigger.hold {
            self.holding_since = Some(std::time::Instant::now());
        }
        let fired = FsyncFired { count: self.fsyncs_armed, t_ns: now_ns(), len: c.len, file: c.file };
        if let Err(e) = write_fsync_fired(&self.state_dir, &fired) {
            eprintln!("jetsam-tracer: failed to report the fsync trigger's firing: {e}");
        }
    }

    /// While holding: let the held syncs go once released or after HOLD_MAX.
    fn poll_hold(&mut self) {
        let since = self.holding_since.expect("polled only while holding");
        let released = take_fsync_release(&self.state_dir);
        if !released && since.elapsed() < HOLD_MAX {
            std::thread::sleep(std::time::Duration::from_millis(1));
            return;
        }
        if !released {
            self.warn(&format!("fsync hold not released within {HOLD_MAX:?}: letting the held syncs go"));
        }
        self.holding_since = None;
        for tid in std::mem::take(&mut self.held) {
            // Decided now, without the hold (the io-error state of now applies).
            if let Err(e) = self.on_seccomp(tid)
                && !is_esrch(&e)
            {
                eprintln!("jetsam-tracer: ptrace on held thread {tid} failed: {e}");
            }
        }
    }
}
