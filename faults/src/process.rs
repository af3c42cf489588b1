//! Process faults: one node as a child process group with an explicit state
//! machine (running, paused, stopped) and the verbs that move it: start,
//! kill (SIGKILL of the whole group), pause (SIGSTOP) / resume (SIGCONT),
//! and a graceful stop (SIGTERM, a grace period, then SIGKILL).
//!
//! Every child runs in its own process group and gets a parent-death signal
//! (`PR_SET_PDEATHSIG` = SIGKILL, set between fork and exec), so no node
//! outlives the controller even when the controller is SIGKILLed. Linux
//! sends that signal when the *thread* that forked the child exits, so
//! spawn from a thread that lives as long as the run (the main thread or a
//! tokio worker, never a `spawn_blocking` thread).
//!
//! Each verb asserts the state it starts from (calling one in the wrong
//! state is a controller bug and panics), checks the state it ends in
//! (bounded waits, errors that say what was waited for), and checks that an
//! exit status is the one we caused. A node that died on its own is
//! reported as [`ProcessError::ExitedOnItsOwn`] and is then `Stopped`.
//!
//! This module does not decide when or whom to fault (the harness's
//! nemesis does), nor what a node's command line is (the target does).

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How often bounded waits poll the child.
const POLL_INTERVAL: Duration = Duration::from_millis(2);

/// How to start one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchSpec {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// stdout and stderr are appended here (one file across restarts).
    pub log_path: PathBuf,
}

/// Where a node's process is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProcState {
    /// Not running: never started, killed, stopped, or exited on its own.
    Stopped,
    Running,
    /// SIGSTOPped.
    Paused,
}

/// A process verb that failed. Environment errors (exit code 4), except
/// `ExitedOnItsOwn`, which is a finding about the system under test.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("failed to open the log file {} of node {node}: {source}; check that the run folder is writable", path.display())]
    Log {
        node: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to start node {node} ({}): {source}; check that the binary exists and is executable", program.display())]
    Spawn {
        node: String,
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to send {signal} to node {node} (process group {pgid}): {errno}")]
    Signal { node: String, signal: &'static str, pgid: i32, errno: nix::errno::Errno },
    #[error("failed to {action} node {node} within {waited:?}: {what}; the machine may be overloaded")]
    Timeout { node: String, action: &'static str, waited: Duration, what: String },
    #[error("failed to {action} node {node}: it had already exited on its own ({status}); see its log")]
    ExitedOnItsOwn { node: String, action: &'static str, status: ExitStatus },
    #[error("failed to {action} node {node}: it exited with {status}, not by the signal we sent ({expected})")]
    UnexpectedStatus { node: String, action: &'static str, status: ExitStatus, expected: &'static str },
    #[error("failed to wait for node {node}: {source}")]
    Wait {
        node: String,
        #[source]
        source: std::io::Error,
    },
}

/// One node's process: its launch spec, its child (when started) and its state.
#[derive(Debug)]
pub struct NodeProcess {
    name: String,
    spec: LaunchSpec,
    state: ProcState,
    child: Option<Child>,
    starts: u32,
}

impl NodeProcess {
    /// A node that is not started yet (`Stopped`).
    pub fn new(name: impl Into<String>, spec: LaunchSpec) -> Self {
        NodeProcess { name: name.into(), spec, state: ProcState::Stopped, child: None, starts: 0 }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn state(&self) -> ProcState {
        self.state
    }

    pub fn spec(&self) -> &LaunchSpec {
        &self.spec
    }

    /// Replaces the launch spec used by the next [`NodeProcess::start`]
    /// (e.g. to start under a power-loss tracer). Only while stopped.
    pub fn set_spec(&mut self, spec: LaunchSpec) {
        assert_eq!(self.state, ProcState::Stopped, "node {}: the launch spec changes only while stopped", self.name);
        self.spec = spec;
    }

    /// The pid of the running (or paused) process, which is also its process group id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// How many times the node has been started.
    pub fn starts(&self) -> u32 {
        self.starts
    }

    /// Stopped -> Running: spawns the node in its own process group with a
    /// parent-death signal, stdout and stderr appended to its log.
    pub fn start(&mut self) -> Result<u32, ProcessError> {
        assert_eq!(self.state, ProcState::Stopped, "node {}: start from {:?}", self.name, self.state);
        assert!(self.child.is_none(), "node {}: a stopped node has no child", self.name);
        let log_err = |source| ProcessError::Log { node: self.name.clone(), path: self.spec.log_path.clone(), source };
        let mut log =
            std::fs::OpenOptions::new().create(true).append(true).open(&self.spec.log_path).map_err(log_err)?;
        // A marker between lives of the node makes restarts visible in its log.
        writeln!(
            log,
            "=== jetsam: start #{} of {}: {} {} ===",
            self.starts + 1,
            self.name,
            self.spec.program.display(),
            self.spec.args.join(" ")
        )
        .map_err(log_err)?;
        let stderr = log.try_clone().map_err(log_err)?;
        let mut command = Command::new(&self.spec.program);
        command.args(&self.spec.args).envs(&self.spec.env).stdin(Stdio::null()).stdout(log).stderr(stderr);
        command.process_group(0);
        let parent = std::process::id();
        // SAFETY: the closure runs between fork and exec and only calls
        // async-signal-safe functions (prctl, getppid, raise).
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The controller may have died before prctl took effect: then
                // we were reparented and must not run unsupervised.
                if libc::getppid() as u32 != parent {
                    libc::raise(libc::SIGKILL);
                }
                Ok(())
            });
        }
        let child = command.spawn().map_err(|source| ProcessError::Spawn {
            node: self.name.clone(),
            program: self.spec.program.clone(),
            source,
        })?;
        let pid = child.id();
        self.child = Some(child);
        self.starts += 1;
        self.state = ProcState::Running;
        Ok(pid)
    }

    /// Whether the process is still there; a node that exited on its own
    /// becomes `Stopped` and the error carries its status.
    pub fn check_alive(&mut self, action: &'static str) -> Result<(), ProcessError> {
        assert_ne!(self.state, ProcState::Stopped, "node {}: {action} needs a started node", self.name);
        let child = self.child.as_mut().expect("a started node has a child");
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => {
                self.child = None;
                self.state = ProcState::Stopped;
                Err(ProcessError::ExitedOnItsOwn { node: self.name.clone(), action, status })
            }
            Err(source) => Err(ProcessError::Wait { node: self.name.clone(), source }),
        }
    }

    fn signal_group(&self, signal: nix::sys::signal::Signal, name: &'static str) -> Result<(), ProcessError> {
        let pid = self.pid().expect("signalled node has a child");
        let pgid = i32::try_from(pid).expect("pids fit i32");
        nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), signal).map_err(|errno| ProcessError::Signal {
            node: self.name.clone(),
            signal: name,
            pgid,
            errno,
        })
    }

    /// Waits (bounded) for the child to exit and reaps it.
    fn wait_exit(&mut self, action: &'static str, timeout: Duration) -> Result<ExitStatus, ProcessError> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().expect("waited node has a child");
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Ok(status),
                Ok(None) if Instant::now() >= deadline => {
                    return Err(ProcessError::Timeout {
                        node: self.name.clone(),
                        action,
                        waited: timeout,
                        what: format!("process {} did not exit", child.id()),
                    });
                }
                Ok(None) => std::thread::sleep(POLL_INTERVAL),
                Err(source) => return Err(ProcessError::Wait { node: self.name.clone(), source }),
            }
        }
    }

    /// Running or Paused -> Stopped: SIGKILL of the whole process group (the
    /// OS page cache survives, so written-but-unsynced data is kept).
    /// Returns the exit status, asserted to be death by SIGKILL.
    pub fn kill(&mut self, timeout: Duration) -> Result<ExitStatus, ProcessError> {
        assert!(
            matches!(self.state, ProcState::Running | ProcState::Paused),
            "node {}: kill from {:?}",
            self.name,
            self.state
        );
        self.check_alive("kill")?;
        self.signal_group(nix::sys::signal::Signal::SIGKILL, "SIGKILL")?;
        let status = self.wait_exit("kill", timeout)?;
        self.child = None;
        self.state = ProcState::Stopped;
        if status.signal() != Some(libc::SIGKILL) {
            return Err(ProcessError::UnexpectedStatus {
                node: self.name.clone(),
                action: "kill",
                status,
                expected: "SIGKILL",
            });
        }
        Ok(status)
    }

    /// Running -> Paused: SIGSTOP of the process group, then waits until the
    /// kernel reports the process stopped.
    pub fn pause(&mut self, timeout: Duration) -> Result<(), ProcessError> {
        assert_eq!(self.state, ProcState::Running, "node {}: pause from {:?}", self.name, self.state);
        self.check_alive("pause")?;
        self.signal_group(nix::sys::signal::Signal::SIGSTOP, "SIGSTOP")?;
        self.wait_proc_state("pause", timeout, true)?;
        self.state = ProcState::Paused;
        Ok(())
    }

    /// Paused -> Running: SIGCONT of the process group, then waits until the
    /// kernel reports the process no longer stopped.
    pub fn resume(&mut self, timeout: Duration) -> Result<(), ProcessError> {
        assert_eq!(self.state, ProcState::Paused, "node {}: resume from {:?}", self.name, self.state);
        self.check_alive("resume")?;
        self.signal_group(nix::sys::signal::Signal::SIGCONT, "SIGCONT")?;
        self.wait_proc_state("resume", timeout, false)?;
        self.state = ProcState::Running;
        Ok(())
    }

    fn wait_proc_state(&self, action: &'static str, timeout: Duration, stopped: bool) -> Result<(), ProcessError> {
        let pid = self.pid().expect("node has a child");
        let deadline = Instant::now() + timeout;
        loop {
            let state = proc_state(pid);
            // 'T' is stopped by a signal, 't' stopped under a tracer (the power-loss tracer).
            let is_stopped = matches!(state, Some('T' | 't'));
            if is_stopped == stopped {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(ProcessError::Timeout {
                    node: self.name.clone(),
                    action,
                    waited: timeout,
                    what: format!(
                        "process {pid} is in state {state:?} (/proc/{pid}/stat), expected {}",
                        if stopped { "stopped" } else { "not stopped" }
                    ),
                });
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Running or Paused -> Stopped, gracefully: SIGCONT (if paused) and
    /// SIGTERM to the group, up to `grace` for it to exit, then SIGKILL.
    /// Returns the exit status: a clean exit, death by SIGTERM, or by
    /// SIGKILL after the grace period.
    pub fn stop(&mut self, grace: Duration, timeout: Duration) -> Result<ExitStatus, ProcessError> {
        assert!(
            matches!(self.state, ProcState::Running | ProcState::Paused),
            "node {}: stop from {:?}",
            self.name,
            self.state
        );
        self.check_alive("stop")?;
        self.signal_group(nix::sys::signal::Signal::SIGTERM, "SIGTERM")?;
        if self.state == ProcState::Paused {
            // A stopped process cannot act on SIGTERM until continued.
            self.signal_group(nix::sys::signal::Signal::SIGCONT, "SIGCONT")?;
        }
        let status = match self.wait_exit("stop", grace) {
            Ok(status) => status,
            Err(ProcessError::Timeout { .. }) => {
                self.signal_group(nix::sys::signal::Signal::SIGKILL, "SIGKILL")?;
                self.wait_exit("stop", timeout)?
            }
            Err(e) => return Err(e),
        };
        self.child = None;
        self.state = ProcState::Stopped;
        let ours = status.success() || matches!(status.signal(), Some(libc::SIGTERM | libc::SIGKILL));
        if !ours {
            return Err(ProcessError::UnexpectedStatus {
                node: self.name.clone(),
                action: "stop",
                status,
                expected: "a clean exit, SIGTERM or SIGKILL",
            });
        }
        Ok(status)
    }
}

impl Drop for NodeProcess {
    /// A node never outlives its handle: SIGKILL of the group and reap
    /// (bounded), also when a test or the controller panics.
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            if let Ok(pgid) = i32::try_from(child.id()) {
                let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), nix::sys::signal::Signal::SIGKILL);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(POLL_INTERVAL);
            }
        }
    }
}

/// The fields of a `/proc/.../stat` file after the command name (which is
/// in parentheses and may contain spaces): state, ppid, pgrp, ...; `None`
/// when the file is gone.
fn stat_fields(path: &Path) -> Option<String> {
    let stat = std::fs::read_to_string(path).ok()?;
    Some(stat[stat.rfind(')')? + 1..].trim_start().to_string())
}

/// The state letter of `/proc/<pid>/stat` (`R`, `S`, `T`, `Z`, ...), or
/// `None` when the process is gone.
pub fn proc_state(pid: u32) -> Option<char> {
    stat_fields(&Path::new("/proc").join(pid.to_string()).join("stat"))?.chars().next()
}

/// When process `pid` started (field 22 of `/proc/<pid>/stat`, clock ticks
/// since boot): with the pid, it names one process even after pid reuse.
pub fn start_time(pid: u32) -> Option<u64> {
    // Fields after the command: state is field 3, so starttime (22) is the 20th here.
    stat_fields(&Path::new("/proc").join(pid.to_string()).join("stat"))?.split_whitespace().nth(19)?.parse().ok()
}

/// Whether some thread of process `pid` has not exited. A process whose
/// leader thread is a zombie may still have threads finishing a syscall.
fn any_thread_alive(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return false };
    tasks.filter_map(|t| t.ok()).any(|t| {
        stat_fields(&t.path().join("stat")).and_then(|f| f.chars().next()).is_some_and(|s| s != 'Z' && s != 'X')
    })
}

/// The processes among the members of process group `pgid` (if any) and `also` that
/// have a thread that has not exited, in pid order (zombies, which can no
/// longer write anything, are left out). A power loss waits for this to be
/// empty before putting files back: no write already under way, by any
/// process or thread of the node, may land after its files were restored.
/// Processes that left the group (e.g. with `setsid`) are not found here
/// unless listed in `also`.
pub fn processes_alive(pgid: Option<u32>, also: &[u32]) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let in_group = |pid: &u32| {
        let fields = stat_fields(&Path::new("/proc").join(pid.to_string()).join("stat"));
        pgid.is_some() && fields.and_then(|f| f.split_whitespace().nth(2)?.parse::<u32>().ok()) == pgid
    };
    let mut alive: Vec<u32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| (in_group(pid) || also.contains(pid)) && any_thread_alive(*pid))
        .collect();
    alive.sort_unstable();
    alive
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_alive_lists_a_groups_live_processes_until_they_die() {
        let dir = tempfile::tempdir().unwrap();
        // A group leader with a child that outlives nothing: both in the node's group.
        let mut p = sleeper(dir.path(), "sleep 30 & exec sleep 30");
        let pid = p.start().unwrap();
        let deadline = std::time::Instant::now() + T;
        while processes_alive(Some(pid), &[]).len() < 2 {
            assert!(std::time::Instant::now() < deadline, "both processes show up");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(processes_alive(Some(pid), &[]).contains(&pid));
        p.kill(T).unwrap();
        // The background child was SIGKILLed with the group; it is gone (or a zombie) soon.
        while !processes_alive(Some(pid), &[]).is_empty() {
            assert!(std::time::Instant::now() < deadline, "the group is gone: {:?}", processes_alive(Some(pid), &[]));
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn sleeper(dir: &Path, script: &str) -> NodeProcess {
        NodeProcess::new(
            "n1",
            LaunchSpec {
                program: "/bin/sh".into(),
                args: vec!["-c".into(), script.into()],
                env: BTreeMap::new(),
                log_path: dir.join("n1.log"),
            },
        )
    }

    const T: Duration = Duration::from_secs(5);

    #[test]
    fn transitions_through_every_state() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = sleeper(dir.path(), "echo hello; exec sleep 60");
        assert_eq!(p.state(), ProcState::Stopped);
        let pid = p.start().unwrap();
        assert_eq!(p.state(), ProcState::Running);
        // Own process group.
        assert_eq!(nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(pid as i32))).unwrap().as_raw(), pid as i32);
        // Let the shell print before it is stopped (bounded).
        let deadline = Instant::now() + T;
        while !std::fs::read_to_string(dir.path().join("n1.log")).unwrap().contains("hello\n") {
            assert!(Instant::now() < deadline, "the child never wrote to its log");
            std::thread::sleep(Duration::from_millis(5));
        }
        p.pause(T).unwrap();
        assert_eq!(p.state(), ProcState::Paused);
        assert_eq!(proc_state(pid), Some('T'));
        p.resume(T).unwrap();
        assert_eq!(p.state(), ProcState::Running);
        assert_ne!(proc_state(pid), Some('T'));
        let status = p.kill(T).unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        assert_eq!(p.state(), ProcState::Stopped);
        assert_eq!(proc_state(pid), None, "killed process is reaped");
        let pid2 = p.start().unwrap();
        assert_ne!(pid, pid2);
        assert_eq!(p.starts(), 2);
        // Paused, then stopped gracefully: SIGTERM reaches it after SIGCONT.
        p.pause(T).unwrap();
        let status = p.stop(Duration::from_secs(5), T).unwrap();
        assert_eq!(status.signal(), Some(libc::SIGTERM));
        assert_eq!(p.state(), ProcState::Stopped);
        let log = std::fs::read_to_string(dir.path().join("n1.log")).unwrap();
        assert_eq!(log.matches("=== jetsam: start #").count(), 2, "{log}");
        assert!(log.contains("hello\n"), "{log}");
    }

    #[test]
    fn stop_escalates_to_sigkill_after_the_grace_period() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = sleeper(dir.path(), "trap '' TERM; while true; do sleep 0.01; done");
        p.start().unwrap();
        // Let the shell install its trap before the SIGTERM.
        std::thread::sleep(Duration::from_millis(200));
        let status = p.stop(Duration::from_millis(200), T).unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL));
    }

    #[test]
    fn a_node_that_exits_on_its_own_is_reported_and_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = sleeper(dir.path(), "exit 3");
        p.start().unwrap();
        std::thread::sleep(Duration::from_millis(200));
        match p.kill(T) {
            Err(ProcessError::ExitedOnItsOwn { status, .. }) => assert_eq!(status.code(), Some(3)),
            other => panic!("expected ExitedOnItsOwn, got {other:?}"),
        }
        assert_eq!(p.state(), ProcState::Stopped);
    }

    #[test]
    #[should_panic(expected = "pause from Stopped")]
    fn pausing_a_stopped_node_is_a_controller_bug() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = sleeper(dir.path(), "true");
        let _ = p.pause(T);
    }

    #[test]
    fn drop_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        // The shell forks a grandchild in the same group.
        let pid_file = dir.path().join("grandchild.pid");
        let script = format!("sleep 60 & echo $! > '{}'; wait", pid_file.display());
        let mut p = sleeper(dir.path(), &script);
        let pid = p.start().unwrap();
        let mut grandchild = None;
        for _ in 0..1000 {
            if let Ok(text) = std::fs::read_to_string(&pid_file)
                && let Ok(g) = text.trim().parse::<u32>()
            {
                grandchild = Some(g);
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let grandchild = grandchild.expect("grandchild started");
        drop(p);
        assert_eq!(proc_state(pid), None);
        // The grandchild is not ours to reap: it dies and is reaped by init (or lingers as a zombie briefly).
        let deadline = Instant::now() + T;
        while !matches!(proc_state(grandchild), None | Some('Z')) {
            assert!(Instant::now() < deadline, "grandchild {grandchild} survived the group kill");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
