//! jetsam-fsprobe: a TEST HELPER for the power-loss tracer (not part of the
//! harness). `jetsam-fsprobe DIR OP...` runs file operations under DIR, each
//! printing `ok OP` or `err ERRNO OP` on stdout, then `done`. Ops run in
//! order on the main thread; an op prefixed `T<n>/` runs on worker thread n
//! (each worker runs its ops in order, workers concurrently); `barrier` waits
//! for every worker to finish what it was given so far.
//!
//! Ops (F: a path under DIR, OFF/LEN: bytes, B: the byte value to write):
//! create:F (open O_CREAT|O_TRUNC), write:F:OFF:LEN:B (seek + write),
//! pwrite:F:OFF:LEN:B, writev:F:OFF:LEN:B, append:F:LEN:B (O_APPEND),
//! syncwrite:F:OFF:LEN:B (O_SYNC fd), trunc:F:LEN, punch:F:OFF:LEN (fallocate
//! punch hole), copy:F:G:OFF:LEN (copy_file_range of F's first LEN bytes to G
//! at OFF), mmap:F (size F to 4 KiB and map it shared + writable, write
//! nothing), fsync:F, fdatasync:F,
//! sync, syncfs, rename:F:G, unlink:F, link:F:G (hard link), mkdir:D,
//! fsyncdir:D (fsync of a directory; `.` is DIR), setsid-child:OP (run OP in
//! a child in its own session, not waited for), child:OP (run OP in a child jetsam-fsprobe and
//! wait for it), sigurg:N (N SIGURGs to this process, handled),
//! sleepms:N, wait (print `waiting`, read a line from stdin), nullwrites:N (N 1-byte
//! writes to /dev/null), filewrites:F:N:LEN (N appending writes of LEN),
//! tick:F:PORT (forever: every 5 ms pwrite a counter to F and send it by UDP
//! to 127.0.0.1:PORT), hang (print `done` and sleep until killed).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, IoSlice, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

fn field<T: std::str::FromStr>(parts: &[&str], i: usize, op: &str) -> T {
    parts
        .get(i)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("jetsam-fsprobe: failed to parse field {i} of op {op:?}"))
}

fn open_rw(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)
}

const PAGE: u64 = 4096;

extern "C" fn on_sigurg(_: libc::c_int) {}

fn run_op(dir: &Path, op: &str) -> io::Result<()> {
    let parts: Vec<&str> = op.split(':').collect();
    let p = |i: usize| -> PathBuf { dir.join(parts[i]) };
    match parts[0] {
        "create" => File::create(p(1)).map(drop),
        "write" | "pwrite" | "writev" | "syncwrite" => {
            let off: u64 = field(&parts, 2, op);
            let len: usize = field(&parts, 3, op);
            let b: u8 = field(&parts, 4, op);
            let data = vec![b; len];
            let mut f = if parts[0] == "syncwrite" {
                OpenOptions::new().write(true).create(true).truncate(false).custom_flags(libc::O_SYNC).open(p(1))?
            } else {
                open_rw(&p(1))?
            };
            match parts[0] {
                "pwrite" => f.write_all_at(&data, off),
                "writev" => {
                    f.seek(SeekFrom::Start(off))?;
                    let mut done = 0;
                    while done < len {
                        let rest = &data[done..];
                        let (a, b) = rest.split_at(rest.len() / 2);
                        let n = f.write_vectored(&[IoSlice::new(a), IoSlice::new(b)])?;
                        if n == 0 {
                            return Err(io::Error::from(io::ErrorKind::WriteZero));
                        }
                        done += n;
                    }
                    Ok(())
                }
                _ => {
                    f.seek(SeekFrom::Start(off))?;
                    f.write_all(&data)
                }
            }
        }
        "append" => {
            let len: usize = field(&parts, 2, op);
            let b: u8 = field(&parts, 3, op);
            OpenOptions::new().append(true).create(true).open(p(1))?.write_all(&vec![b; len])
        }
        "trunc" => open_rw(&p(1))?.set_len(field(&parts, 2, op)),
        "punch" => {
            let f = open_rw(&p(1))?;
            let (off, len): (i64, i64) = (field(&parts, 2, op), field(&parts, 3, op));
            let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
            // SAFETY: fallocate on a descriptor we own.
            let rc = unsafe { libc::fallocate(std::os::fd::AsRawFd::as_raw_fd(&f), mode, off, len) };
            if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
        }
        "copy" => {
            let src = File::open(p(1))?;
            let dst = open_rw(&p(2))?;
            let (mut off, mut len): (i64, usize) = (field(&parts, 3, op), field(&parts, 4, op));
            let mut src_off: i64 = 0;
            while len > 0 {
                // SAFETY: both descriptors are ours; offsets point at live locals.
                let n = unsafe {
                    libc::copy_file_range(
                        std::os::fd::AsRawFd::as_raw_fd(&src),
                        &mut src_off,
                        std::os::fd::AsRawFd::as_raw_fd(&dst),
                        &mut off,
                        len,
                        0,
                    )
                };
                if n <= 0 {
                    return Err(if n == 0 { io::ErrorKind::UnexpectedEof.into() } else { io::Error::last_os_error() });
                }
                len -= n as usize;
            }
            Ok(())
        }
        "mmap" => {
            let f = open_rw(&p(1))?;
            f.set_len(PAGE)?;
            // SAFETY: a fresh shared mapping of a file we own, unmapped right after.
            unsafe {
                let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
                let prot = libc::PROT_READ | libc::PROT_WRITE;
                let m = libc::mmap(std::ptr::null_mut(), PAGE as usize, prot, libc::MAP_SHARED, fd, 0);
                if m == libc::MAP_FAILED {
                    return Err(io::Error::last_os_error());
                }
                libc::munmap(m, PAGE as usize);
            }
            Ok(())
        }
        "fsync" => File::open(p(1))?.sync_all(),
        "fdatasync" => File::open(p(1))?.sync_data(),
        "sync" => {
            // SAFETY: sync(2) has no arguments and cannot fail.
            unsafe { libc::sync() };
            Ok(())
        }
        "rename" => std::fs::rename(p(1), p(2)),
        "link" => std::fs::hard_link(p(1), p(2)),
        "mkdir" => std::fs::create_dir_all(p(1)),
        // fsync of a directory: "fsyncdir:." is DIR itself.
        "fsyncdir" => File::open(p(1))?.sync_all(),
        "syncfs" => {
            let d = File::open(dir)?;
            // SAFETY: syncfs on a descriptor we own.
            if unsafe { libc::syncfs(std::os::unix::io::AsRawFd::as_raw_fd(&d)) } == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        }
        "unlink" => std::fs::remove_file(p(1)),
        "child" => {
            let status = std::process::Command::new(std::env::current_exe()?)
                .arg(dir)
                .arg(&op["child:".len()..])
                .stdout(std::process::Stdio::null())
                .status()?;
            if status.success() { Ok(()) } else { Err(io::Error::other(format!("child {status}"))) }
        }
        "setsid-child" => {
            // A child in its own session (so outside this process group), as
            // PostgreSQL's backends are; not waited for.
            use std::os::unix::process::CommandExt;
            let mut cmd = std::process::Command::new(std::env::current_exe()?);
            cmd.arg(dir).arg(&op["setsid-child:".len()..]).stdout(std::process::Stdio::null());
            // SAFETY: setsid is async-signal-safe.
            unsafe {
                cmd.pre_exec(|| if libc::setsid() < 0 { Err(io::Error::last_os_error()) } else { Ok(()) });
            }
            cmd.spawn().map(drop)
        }
        "sigurg" => {
            let n: usize = field(&parts, 1, op);
            // SAFETY: installing a trivial handler with SA_RESTART, then signalling ourselves.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_sigurg as *const () as usize;
                sa.sa_flags = libc::SA_RESTART;
                libc::sigaction(libc::SIGURG, &sa, std::ptr::null_mut());
                for _ in 0..n {
                    libc::kill(libc::getpid(), libc::SIGURG);
                }
            }
            Ok(())
        }
        "sleepms" => {
            std::thread::sleep(Duration::from_millis(field(&parts, 1, op)));
            Ok(())
        }
        "wait" => {
            println!("waiting");
            io::stdout().flush()?;
            let mut line = String::new();
            io::stdin().lock().read_line(&mut line).map(drop)
        }
        "nullwrites" => {
            let n: usize = field(&parts, 1, op);
            let mut f = OpenOptions::new().write(true).open("/dev/null")?;
            for _ in 0..n {
                f.write_all(b"x")?;
            }
            Ok(())
        }
        "filewrites" => {
            let n: usize = field(&parts, 2, op);
            let len: usize = field(&parts, 3, op);
            let mut f = OpenOptions::new().append(true).create(true).open(p(1))?;
            let data = vec![b'x'; len];
            for _ in 0..n {
                f.write_all(&data)?;
            }
            Ok(())
        }
        "tick" => {
            let port: u16 = field(&parts, 2, op);
            let f = open_rw(&p(1))?;
            let sock = std::net::UdpSocket::bind("127.0.0.1:0")?;
            let mut n: u64 = 0;
            loop {
                n += 1;
                f.write_all_at(&n.to_le_bytes(), 0)?;
                sock.send_to(&n.to_le_bytes(), ("127.0.0.1", port))?;
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        "hang" => {
            println!("done");
            io::stdout().flush()?;
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        other => panic!("jetsam-fsprobe: unknown op {other:?}"),
    }
}

fn report(op: &str, r: io::Result<()>) {
    let line = match r {
        Ok(()) => format!("ok {op}"),
        Err(e) => format!("err {} {op}", e.raw_os_error().unwrap_or(-1)),
    };
    let mut out = io::stdout().lock();
    // The test reads these lines; a closed stdout just means nobody listens.
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// An op for a worker thread and the channel it signals when done.
type Job = (String, mpsc::Sender<()>);

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().expect("usage: jetsam-fsprobe DIR OP..."));
    // Worker name -> its queue of (op, done signal); workers are detached and
    // every op's done signal is awaited before `done` is printed.
    let mut workers: BTreeMap<String, mpsc::Sender<Job>> = BTreeMap::new();
    let mut outstanding: Vec<mpsc::Receiver<()>> = Vec::new();
    for op in args {
        if op == "barrier" {
            for rx in outstanding.drain(..) {
                rx.recv().expect("jetsam-fsprobe: a worker died");
            }
            report(&op, Ok(()));
            continue;
        }
        if let Some((name, inner)) = op.split_once('/').filter(|(n, _)| n.starts_with('T')) {
            let dir = dir.clone();
            let tx = workers.entry(name.to_string()).or_insert_with(|| {
                let (tx, rx) = mpsc::channel::<Job>();
                std::thread::spawn(move || {
                    for (op, done) in rx {
                        report(&op, run_op(&dir, &op));
                        let _ = done.send(());
                    }
                });
                tx
            });
            let (done_tx, done_rx) = mpsc::channel();
            tx.send((inner.to_string(), done_tx)).expect("jetsam-fsprobe: a worker died");
            outstanding.push(done_rx);
            continue;
        }
        if op == "hang" {
            for rx in outstanding.drain(..) {
                rx.recv().expect("jetsam-fsprobe: a worker died");
            }
        }
        report(&op, run_op(&dir, &op));
    }
    for rx in outstanding.drain(..) {
        rx.recv().expect("jetsam-fsprobe: a worker died");
    }
    println!("done");
}
