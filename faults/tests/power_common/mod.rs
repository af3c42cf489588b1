//! Shared helpers for the power-loss tests: run jetsam-fsprobe under
//! jetsam-tracer in its own process group (killed on drop), read its output
//! lines with a bounded wait, and a byte-exact model of synced file state.
#![allow(dead_code)]

use jetsam_faults::power;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub fn tracer_bin() -> PathBuf {
    power::find_tracer_binary(Some(Path::new(env!("CARGO_BIN_EXE_jetsam-tracer")))).expect("tracer binary")
}

pub fn probe_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_jetsam-fsprobe"))
}

/// A traced program in its own process group; SIGKILLed on drop.
pub struct Traced {
    pub child: Child,
    pub pgid: i32,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Traced {
    pub fn start(data: &Path, state: &Path, program: &Path, args: &[String]) -> Traced {
        let mut child = Command::new(tracer_bin())
            .args(power::tracer_args(data, state, program, args))
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn jetsam-tracer");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let pgid = child.id() as i32;
        let stdin = child.stdin.take();
        Traced { child, pgid, stdin, lines, seen: Vec::new() }
    }

    pub fn probe(data: &Path, state: &Path, ops: &[&str]) -> Traced {
        let mut args = vec![data.display().to_string()];
        args.extend(ops.iter().map(|s| s.to_string()));
        Traced::start(data, state, &probe_bin(), &args)
    }

    /// Waits (bounded) for an output line equal to `want`; returns the lines so far.
    pub fn wait_line(&mut self, want: &str, timeout: Duration) -> &[String] {
        let deadline = Instant::now() + timeout;
        while !self.seen.iter().any(|l| l == want) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("no line {want:?} within {timeout:?}; saw {:?}", self.seen)
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().expect("reap jetsam-tracer");
                    panic!("jetsam-tracer exited ({status}) before printing {want:?}; saw {:?}", self.seen)
                }
            }
        }
        &self.seen
    }

    pub fn send_line(&mut self) {
        let stdin = self.stdin.as_mut().expect("stdin");
        stdin.write_all(b"\n").and_then(|()| stdin.flush()).expect("write to the probe's stdin");
    }

    pub fn signal_group(&self, sig: i32) {
        // SAFETY: signalling the process group this test created.
        let rc = unsafe { libc::kill(-self.pgid, sig) };
        assert_eq!(rc, 0, "kill(-{}, {sig})", self.pgid);
    }

    /// SIGKILL to the group, then reap the tracer.
    pub fn kill(&mut self) -> std::process::ExitStatus {
        self.signal_group(libc::SIGKILL);
        self.child.wait().expect("reap jetsam-tracer")
    }
}

impl Drop for Traced {
    fn drop(&mut self) {
        // SAFETY: signalling our own process group; errors mean it is gone.
        unsafe { libc::kill(-self.pgid, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// The model: each file's current and last-synced bytes.
#[derive(Default, Debug)]
pub struct Model {
    pub files: BTreeMap<String, (Vec<u8>, Vec<u8>)>,
}

fn put(buf: &mut Vec<u8>, off: usize, data: &[u8]) {
    if buf.len() < off + data.len() {
        buf.resize(off + data.len(), 0);
    }
    buf[off..off + data.len()].copy_from_slice(data);
}

impl Model {
    /// Applies one probe op (as the probe runs it, without the `T<n>/` prefix).
    pub fn apply(&mut self, op: &str) {
        let op = op.split_once('/').filter(|(n, _)| n.starts_with('T')).map_or(op, |(_, o)| o);
        let p: Vec<&str> = op.split(':').collect();
        let num = |i: usize| -> usize { p[i].parse().expect("number") };
        match p[0] {
            "create" => {
                let e = self.files.entry(p[1].to_string()).or_default();
                e.0.clear();
            }
            "write" | "pwrite" | "writev" | "syncwrite" => {
                let data = vec![num(4) as u8; num(3)];
                let e = self.files.entry(p[1].to_string()).or_default();
                put(&mut e.0, num(2), &data);
                if p[0] == "syncwrite" {
                    put(&mut e.1, num(2), &data);
                }
            }
            "append" => {
                let e = self.files.entry(p[1].to_string()).or_default();
                e.0.extend(std::iter::repeat_n(num(3) as u8, num(2)));
            }
            "trunc" => {
                let e = self.files.entry(p[1].to_string()).or_default();
                e.0.resize(num(2), 0);
            }
            "punch" => {
                let e = self.files.get_mut(p[1]).expect("punch of a modelled file");
                let end = (num(2) + num(3)).min(e.0.len());
                e.0[num(2).min(end)..end].fill(0);
            }
            "copy" => {
                let data = self.files[p[1]].0[..num(4)].to_vec();
                let e = self.files.entry(p[2].to_string()).or_default();
                put(&mut e.0, num(3), &data);
            }
            "fsync" | "fdatasync" => {
                let e = self.files.get_mut(p[1]).expect("fsync of a modelled file");
                e.1 = e.0.clone();
            }
            "sync" => self.files.values_mut().for_each(|e| e.1 = e.0.clone()),
            "rename" => {
                let e = self.files.remove(p[1]).expect("rename of a modelled file");
                self.files.insert(p[2].to_string(), e);
            }
            "unlink" => {
                self.files.remove(p[1]);
            }
            "child" => self.apply(&op["child:".len()..]),
            "sigurg" | "barrier" | "hang" | "wait" | "sleepms" => {}
            other => panic!("the model does not know op {other}"),
        }
    }

    /// Asserts the data dir holds exactly the synced state, byte for byte.
    pub fn assert_synced(&self, data: &Path) {
        let mut on_disk = BTreeMap::new();
        for entry in std::fs::read_dir(data).expect("read the data dir") {
            let entry = entry.expect("dir entry");
            on_disk.insert(entry.file_name().to_string_lossy().into_owned(), std::fs::read(entry.path()).unwrap());
        }
        let names: Vec<&String> = on_disk.keys().collect();
        let want: Vec<&String> = self.files.keys().collect();
        assert_eq!(names, want, "files in the data dir");
        for (name, (_, synced)) in &self.files {
            let got = &on_disk[name];
            assert_eq!(got.len(), synced.len(), "size of {name}");
            if let Some(i) = (0..got.len()).find(|&i| got[i] != synced[i]) {
                panic!("{name} differs from its synced model at byte {i}: {} vs {}", got[i], synced[i]);
            }
        }
    }
}

pub fn dirs() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let state = tmp.path().join("state");
    std::fs::create_dir_all(&data).unwrap();
    (tmp, data, state)
}

pub const WAIT: Duration = Duration::from_secs(30);
