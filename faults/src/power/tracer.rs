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

use super::discard::{StateLock, now_ns, try_lock};
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

// ---- seccomp filter (classic BPF over struct seccomp_data) ----

const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_TRACE: u32 = 0x7ff0_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const fn off_arg(i: u32) -> u32 {
    16 + 8 * i
}
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

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt: 0, jf: 0, k }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// Syscalls that always stop for the tracer.
fn traced_syscalls() -> Vec<i64> {
    vec![
        libc::SYS_write,
        libc::SYS_pwrite64,
        libc::SYS_writev,
        libc::SYS_pwritev,
        libc::SYS_pwritev2,
        libc::SYS_ftruncate,
        libc::SYS_truncate,
        libc::SYS_fallocate,
        libc::SYS_copy_file_range,
        libc::SYS_rename,
        libc::SYS_renameat,
        libc::SYS_renameat2,
        libc::SYS_unlink,
        libc::SYS_unlinkat,
        libc::SYS_fsync,
        libc::SYS_fdatasync,
        libc::SYS_sync_file_range,
        libc::SYS_syncfs,
        libc::SYS_sync,
        libc::SYS_creat,
        libc::SYS_openat2,
    ]
}

/// The filter: trace the list above, openat/open only with O_TRUNC, mmap only
/// shared + writable; io_uring_setup and non-x86_64 ABIs get ENOSYS.
pub fn build_filter() -> Vec<libc::sock_filter> {
    const LD: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    const JEQ: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const JGE: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
    const JSET: u16 = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;
    const RET: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    let enosys = SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
    let mut f = vec![
        stmt(LD, OFF_ARCH),
        jump(JEQ, AUDIT_ARCH_X86_64, 1, 0),
        stmt(RET, enosys),
        stmt(LD, OFF_NR),
        jump(JGE, X32_SYSCALL_BIT, 0, 1),
        stmt(RET, enosys),
    ];
    for nr in traced_syscalls() {
        f.push(jump(JEQ, nr as u32, 0, 1));
        f.push(stmt(RET, SECCOMP_RET_TRACE));
    }
    f.push(jump(JEQ, libc::SYS_io_uring_setup as u32, 0, 1));
    f.push(stmt(RET, enosys));
    for (nr, arg) in [(libc::SYS_openat, 2), (libc::SYS_open, 1)] {
        f.push(jump(JEQ, nr as u32, 0, 4));
        f.push(stmt(LD, off_arg(arg)));
        f.push(jump(JSET, libc::O_TRUNC as u32, 0, 1));
        f.push(stmt(RET, SECCOMP_RET_TRACE));
        f.push(stmt(RET, SECCOMP_RET_ALLOW));
    }
    f.push(jump(JEQ, libc::SYS_mmap as u32, 0, 6));
    f.push(stmt(LD, off_arg(2)));
    f.push(jump(JSET, libc::PROT_WRITE as u32, 0, 3));
    f.push(stmt(LD, off_arg(3)));
    f.push(jump(JSET, libc::MAP_SHARED as u32, 0, 1));
    f.push(stmt(RET, SECCOMP_RET_TRACE));
    f.push(stmt(RET, SECCOMP_RET_ALLOW));
    f.push(stmt(RET, SECCOMP_RET_ALLOW));
    f
}

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
    /// on success each file's log is dropped up to its snapshot.
    Sync(Vec<SyncSnapshot>),
    /// unlink/rename over the last link of a tracked file: drop its log on success.
    DropIfGone(FileKey),
    /// A write through an O_SYNC/O_DSYNC descriptor (or RWF_[D]SYNC) to a
    /// tracked file: its bytes are durable on return.
    Durable { key: FileKey, offset: u64 },
}

/// What the stopped syscall should do next.
enum Resume {
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
        })
    }

    /// Serves ptrace stops until the tracee C exits; returns its exit code.
    fn serve(&mut self) -> i32 {
        loop {
            let mut status = 0;
            // SAFETY: waiting for any tracee.
            let tid = unsafe { libc::waitpid(-1, &mut status, libc::__WALL) };
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
                if tid == self.leader {
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
            Resume::Cont => ptrace::cont(pid, None),
            Resume::Exit(p) => {
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
                Pending::Sync(snapshots) => {
                    for snap in snapshots {
                        self.end_sync(snap);
                        if ret >= 0 {
                            self.synced(snap);
                        }
                    }
                }
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

    fn decide(&mut self, tid: i32, nr: i64, a: &[u64; 6]) -> Resume {
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
            libc::SYS_openat | libc::SYS_open | libc::SYS_creat | libc::SYS_openat2 => {
                let (dirfd, path, flags) = match nr {
                    libc::SYS_openat => (a[0] as i32, a[1], a[2]),
                    libc::SYS_open => (libc::AT_FDCWD, a[0], a[1]),
                    libc::SYS_creat => (libc::AT_FDCWD, a[0], libc::O_TRUNC as u64),
                    // openat2(dirfd, path, struct open_how *how, size): flags is how's first u64.
                    _ => (a[0] as i32, a[1], read_u64(tid, a[2]).unwrap_or(0)),
                };
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
                self.victim(tid, dirfd, path)
            }
            libc::SYS_rename | libc::SYS_renameat | libc::SYS_renameat2 => {
                let (dirfd, path) = if nr == libc::SYS_rename { (libc::AT_FDCWD, a[1]) } else { (a[2] as i32, a[3]) };
                if nr == libc::SYS_renameat2 && a[4] & RENAME_EXCHANGE != 0 {
                    // Both files live on under other names: no inode goes away.
                    return Resume::Cont;
                }
                self.victim(tid, dirfd, path)
            }
            libc::SYS_fsync | libc::SYS_fdatasync => {
                let fd = a[0] as i32;
                let Some(t) = self.resolve_fd_any(tid, fd) else { return Resume::Cont };
                if self.io_error().is_some_and(IoErrorMode::fails_sync) {
                    return Resume::Fail(libc::EIO);
                }
                if self.files.contains_key(&t.key) {
                    let mut snap = self.snapshots(|k| k == t.key);
                    // The descriptor's size is known even before the first write of this life.
                    snap.iter_mut().for_each(|s| s.size = Some(t.size));
                    self.begin_sync(snap)
                } else {
                    Resume::Cont
                }
            }
            libc::SYS_syncfs => {
                let Ok(meta) = fs::metadata(format!("/proc/{tid}/fd/{}", a[0] as i32)) else { return Resume::Cont };
                if meta.dev() == self.data_dev && self.io_error().is_some_and(IoErrorMode::fails_sync) {
                    return Resume::Fail(libc::EIO);
                }
                if self.files.keys().any(|k| k.dev == meta.dev()) {
                    self.begin_sync(self.snapshots(|k| k.dev == meta.dev()))
                } else {
                    Resume::Cont
                }
            }
            libc::SYS_sync => {
                if self.io_error().is_some_and(IoErrorMode::fails_sync) {
                    // sync(2) cannot fail: it returns 0 but persists nothing.
                    return Resume::Fail(0);
                }
                if self.files.is_empty() { Resume::Cont } else { self.begin_sync(self.snapshots(|_| true)) }
            }
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

    fn warn(&self, msg: &str) {
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
    fn resolve_fd(&self, tid: i32, fd: i32) -> Option<Target> {
        self.resolve_fd_any(tid, fd).filter(|t| t.nlink != u64::MAX)
    }

    /// Like `resolve_fd` but directories too (nlink = u64::MAX marks them).
    fn resolve_fd_any(&self, tid: i32, fd: i32) -> Option<Target> {
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
    fn resolve_path(&self, tid: i32, dirfd: i32, addr: u64, follow: bool) -> Option<Target> {
        let raw = read_cstring(tid, addr)?;
        let raw = PathBuf::from(OsString::from_vec(raw));
        let full = if raw.is_absolute() {
            raw
        } else {
            let base = if dirfd == libc::AT_FDCWD {
                fs::read_link(format!("/proc/{tid}/cwd")).ok()?
            } else {
                fs::read_link(format!("/proc/{tid}/fd/{dirfd}")).ok()?
            };
            base.join(raw)
        };
        let full = normalize(&full);
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
    fn victim(&mut self, tid: i32, dirfd: i32, path: u64) -> Resume {
        match self.resolve_path(tid, dirfd, path, false) {
            Some(t) if t.nlink <= 1 && self.files.contains_key(&t.key) => Resume::Exit(Pending::DropIfGone(t.key)),
            _ => Resume::Cont,
        }
    }

    /// Starts tracking `t` if it is not tracked yet (its size now is its synced size).
    fn track(&mut self, t: &Target) -> io::Result<&mut Tracked> {
        if !self.files.contains_key(&t.key) {
            let path = self.undo_dir.join(t.key.log_name());
            let log = undo::open_append(&path, 0)?;
            let mut buf = Vec::new();
            undo::encode_header(&mut buf, t.size, now_ns(), &t.rel);
            let mut tracked = Tracked {
                log,
                log_len: 0,
                generation: self.next_generation(),
                rel: t.rel.clone(),
                size_before: t.size,
                pages: HashSet::new(),
                syncs_in_flight: 0,
                epoch: None,
                reader: None,
            };
            tracked.append(&buf)?;
            self.files.insert(t.key, tracked);
        }
        let tracked = self.files.get_mut(&t.key).expect("inserted above");
        if tracked.reader.is_none() {
            tracked.reader = Some(File::open(&t.open_path)?);
        }
        Ok(tracked)
    }

    /// Saves pre-images of the not-yet-saved pages among `pages` (then the
    /// call may run). Pages wholly past the synced size get an empty pre-image.
    fn save_pages(&mut self, t: &Target, pages: impl Iterator<Item = u64>) -> io::Result<()> {
        let now = now_ns();
        let tracked = self.track(t)?;
        let mut buf = Vec::new();
        let mut short = Vec::new();
        let mut page = vec![0u8; PAGE_SIZE as usize];
        for idx in pages {
            let known = tracked.pages.contains(&idx);
            let (record, synced_size) = match tracked.epoch.as_mut() {
                // While a sync runs, a known page's first write is logged again.
                Some(e) => (e.seen.insert(idx) || !known, if known { e.size } else { tracked.size_before }),
                None => (!known, tracked.size_before),
            };
            if !record {
                continue;
            }
            let start = idx * PAGE_SIZE;
            let want = synced_size.saturating_sub(start).min(PAGE_SIZE) as usize;
            let reader = tracked.reader.as_ref().expect("track opens the reader");
            let mut got = 0;
            while got < want {
                match reader.read_at(&mut page[got..want], start + got as u64) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            }
            if got < want && !known {
                // The file is shorter than its synced size without a logged
                // truncation (a racing call): the missing bytes read as zeros.
                short.push(idx);
            }
            page[got..want].fill(0);
            undo::encode_page(&mut buf, idx, now, &page[..want]);
            tracked.pages.insert(idx);
        }
        if !buf.is_empty() {
            tracked.append(&buf)?;
        }
        if !short.is_empty() {
            self.warn(&format!("pages {short:?} of {} were shorter than their synced size", t.rel));
        }
        Ok(())
    }

    fn write_at(&mut self, t: Target, offset: u64, len: u64, durable: bool) -> Resume {
        if durable && !self.files.contains_key(&t.key) {
            // Everything else in the file is synced and this write is
            // durable on return: nothing to undo.
            return Resume::Cont;
        }
        let pages = if len == 0 { 0..0 } else { offset / PAGE_SIZE..(offset.saturating_add(len) - 1) / PAGE_SIZE + 1 };
        if let Err(e) = self.save_pages(&t, pages) {
            return self.log_failed(&t, e);
        }
        if durable { Resume::Exit(Pending::Durable { key: t.key, offset }) } else { Resume::Cont }
    }

    fn truncate_to(&mut self, t: Target, new_len: u64) -> Resume {
        let size_before = self.files.get(&t.key).map_or(t.size, |f| f.size_before);
        let pages = if new_len < size_before { new_len / PAGE_SIZE..(size_before - 1) / PAGE_SIZE + 1 } else { 0..0 };
        match self.save_pages(&t, pages) {
            Ok(()) => Resume::Cont,
            Err(e) => self.log_failed(&t, e),
        }
    }

    /// The undo log could not be written: the call must not run unlogged,
    /// so it fails with EIO (the node sees a disk error) and we say why.
    fn log_failed(&self, t: &Target, e: io::Error) -> Resume {
        eprintln!(
            "jetsam-tracer: failed to write the undo log for {} in {}: {e}; failing the call with EIO",
            t.rel,
            self.undo_dir.display()
        );
        Resume::Fail(libc::EIO)
    }

    fn record_durable(&mut self, key: FileKey, offset: u64, n: u64) {
        let Some(tracked) = self.files.get_mut(&key) else { return };
        let Some(reader) = tracked.reader.as_ref() else { return };
        let mut data = vec![0u8; n as usize];
        let result = reader.read_exact_at(&mut data, offset).and_then(|()| {
            let mut buf = Vec::new();
            undo::encode_patch(&mut buf, offset, &data);
            tracked.append(&buf)
        });
        if let Err(e) = result {
            eprintln!("jetsam-tracer: failed to record a durable write of {n} bytes at {offset}: {e}");
        }
    }

    /// A sync of these files is about to run: start watching for re-dirtied pages.
    fn begin_sync(&mut self, snaps: Vec<SyncSnapshot>) -> Resume {
        for snap in &snaps {
            if let Some(t) = self.files.get_mut(&snap.key) {
                t.syncs_in_flight += 1;
                t.epoch = Some(SyncEpoch { size: snap.size.unwrap_or(t.size_before), seen: HashSet::new() });
            }
        }
        Resume::Exit(Pending::Sync(snaps))
    }

    /// A sync returned (either way): stop watching once none runs.
    fn end_sync(&mut self, snap: SyncSnapshot) {
        if let Some(t) = self.files.get_mut(&snap.key)
            && t.generation == snap.generation
        {
            t.syncs_in_flight = t.syncs_in_flight.saturating_sub(1);
            if t.syncs_in_flight == 0 {
                t.epoch = None;
            }
        }
    }

    fn next_generation(&mut self) -> u64 {
        self.generations += 1;
        self.generations
    }

    /// Snapshots of the tracked files `which` selects, for a sync starting now.
    fn snapshots(&self, which: impl Fn(FileKey) -> bool) -> Vec<SyncSnapshot> {
        let mut out: Vec<SyncSnapshot> = self
            .files
            .iter()
            .filter(|(k, _)| which(**k))
            .map(|(k, t)| SyncSnapshot {
                key: *k,
                generation: t.generation,
                log_len: t.log_len,
                size: t.reader.as_ref().and_then(|r| r.metadata().ok()).map(|m| m.len()),
            })
            .collect();
        out.sort_by_key(|s| s.key);
        out
    }

    /// A sync that started at `snap` succeeded. Without records from while it
    /// ran the log goes; otherwise the log is rewritten to hold only those
    /// records, with the size at the sync's start as the new synced size (a
    /// write racing a sync counts as unsynced: the worst case).
    fn synced(&mut self, snap: SyncSnapshot) {
        // Taken up front (the borrow of `files` below forbids it later);
        // unused numbers are harmless.
        let generation = self.next_generation();
        let Some(tracked) = self.files.get(&snap.key) else { return };
        if tracked.generation != snap.generation {
            // The log was dropped and begun again while the sync ran: all of
            // it is newer than the sync.
            return;
        }
        if tracked.log_len == snap.log_len {
            self.drop_log(snap.key);
            return;
        }
        let Some(size) = snap.size else {
            // Nothing known about the file at the sync's start: keep the whole log.
            return;
        };
        let path = self.undo_dir.join(snap.key.log_name());
        let tmp = self.undo_dir.join(format!("{}.tmp", snap.key.log_name()));
        let result = (|| -> io::Result<Tracked> {
            let bytes = fs::read(&path)?;
            let tail = bytes.get(snap.log_len as usize..tracked.log_len as usize).ok_or_else(|| {
                io::Error::other(format!("log is {} bytes, expected {}", bytes.len(), tracked.log_len))
            })?;
            let mut buf = Vec::with_capacity(tail.len() + 64);
            undo::encode_header(&mut buf, size, now_ns(), &tracked.rel);
            buf.extend_from_slice(tail);
            let parsed = undo::parse(snap.key, &buf)
                .filter(|l| l.valid_len == buf.len() as u64)
                .ok_or_else(|| io::Error::other("the records appended during the sync do not parse"))?;
            fs::write(&tmp, &buf)?;
            fs::rename(&tmp, &path)?;
            Ok(Tracked {
                log: undo::open_append(&path, buf.len() as u64)?,
                log_len: buf.len() as u64,
                generation,
                rel: tracked.rel.clone(),
                size_before: size,
                pages: parsed.pages.keys().copied().collect(),
                syncs_in_flight: 0,
                epoch: None,
                reader: tracked.reader.as_ref().map(File::try_clone).transpose()?,
            })
        })();
        match result {
            Ok(mut t) => {
                if let Some(old) = self.files.get_mut(&snap.key) {
                    t.syncs_in_flight = old.syncs_in_flight;
                    t.epoch = old.epoch.take();
                }
                self.files.insert(snap.key, t);
            }
            Err(e) => eprintln!(
                "jetsam-tracer: failed to trim the undo log {} after a sync: {e}; keeping all of it",
                path.display()
            ),
        }
    }

    fn drop_log(&mut self, key: FileKey) {
        if self.files.remove(&key).is_some() {
            let path = self.undo_dir.join(key.log_name());
            if let Err(e) = fs::remove_file(&path)
                && e.kind() != io::ErrorKind::NotFound
            {
                eprintln!("jetsam-tracer: failed to remove the synced undo log {}: {e}", path.display());
            }
        }
    }
}

impl Tracked {
    fn append(&mut self, records: &[u8]) -> io::Result<()> {
        undo::append(&mut self.log, records)?;
        self.log_len += records.len() as u64;
        Ok(())
    }
}

/// `pos` and `flags` (octal) of an open file description.
fn fdinfo(tid: i32, fd: i32) -> (u64, u64) {
    let text = fs::read_to_string(format!("/proc/{tid}/fdinfo/{fd}")).unwrap_or_default();
    let mut pos = 0;
    let mut flags = 0;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("pos:") {
            pos = v.trim().parse().unwrap_or(0);
        } else if let Some(v) = line.strip_prefix("flags:") {
            flags = u64::from_str_radix(v.trim(), 8).unwrap_or(0);
        }
    }
    (pos, flags)
}

/// Reads tracee memory; None if any of it is unreadable.
fn read_mem(tid: i32, addr: u64, len: usize) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let local = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: len };
    let remote = libc::iovec { iov_base: addr as *mut libc::c_void, iov_len: len };
    // SAFETY: local points to `len` writable bytes; remote is only read by the kernel.
    let n = unsafe { libc::process_vm_readv(tid, &local, 1, &remote, 1, 0) };
    (n == len as isize).then_some(buf)
}

fn read_u64(tid: i32, addr: u64) -> Option<u64> {
    read_mem(tid, addr, 8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
}

/// A NUL-terminated string of at most PATH_MAX bytes, read page by page so
/// a string near the end of a mapping does not fail.
fn read_cstring(tid: i32, addr: u64) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = addr;
    while out.len() < libc::PATH_MAX as usize {
        let chunk = (PAGE_SIZE - at % PAGE_SIZE) as usize;
        let bytes = read_mem(tid, at, chunk)?;
        if let Some(nul) = bytes.iter().position(|&b| b == 0) {
            out.extend_from_slice(&bytes[..nul]);
            return Some(out);
        }
        out.extend_from_slice(&bytes);
        at += chunk as u64;
    }
    None
}

/// Total length of an iovec array (capped at IOV_MAX entries).
fn iov_len(tid: i32, addr: u64, count: u64) -> u64 {
    let count = count.min(1024) as usize;
    let Some(bytes) = read_mem(tid, addr, count * 16) else { return 0 };
    bytes.chunks_exact(16).map(|c| u64::from_le_bytes(c[8..16].try_into().expect("8 bytes"))).sum()
}

/// Lexical normalisation (".", ".."), enough to compare against the data dir.
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}
