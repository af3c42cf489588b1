//! The controller's process signals work on a traced node exactly as on an
//! untraced one: SIGSTOP to the group stops all progress (file writes and
//! network sends alike), SIGCONT resumes it, SIGKILL leaves no process; the
//! tracer exits with the tracee's exit code.

mod power_common;

use power_common::{Traced, WAIT, dirs};
use std::net::UdpSocket;
use std::path::Path;
use std::time::{Duration, Instant};

/// Datagrams received within `window`.
fn count_ticks(sock: &UdpSocket, window: Duration) -> usize {
    let deadline = Instant::now() + window;
    let mut n = 0;
    let mut buf = [0u8; 16];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        sock.set_read_timeout(Some(left.max(Duration::from_millis(1)))).unwrap();
        if sock.recv(&mut buf).is_ok() {
            n += 1;
        }
    }
    n
}

fn children_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else { continue };
        // Fields after the ")" of the command: state ppid ...
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let ppid: i32 = rest.split(' ').nth(1).unwrap().parse().unwrap();
        if ppid == pid {
            out.push(p);
        }
    }
    out
}

fn alive(pid: i32) -> bool {
    // A zombie is dead for our purposes.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s[s.rfind(')').unwrap() + 2..].starts_with('Z'))
        .unwrap_or(false)
}

#[test]
fn pause_resume_and_kill_of_a_traced_group() {
    let (_tmp, data, state) = dirs();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sock.local_addr().unwrap().port();
    let tick = format!("T1/tick:c:{port}");
    let mut node = Traced::probe(&data, &state, &["T2/sigurg:500", tick.as_str(), "T3/pwrite:x:0:10:1"]);
    assert!(count_ticks(&sock, Duration::from_millis(300)) > 5, "the node ticks before the pause");

    node.signal_group(libc::SIGSTOP);
    // Let in-flight datagrams drain, then expect silence and a still file.
    count_ticks(&sock, Duration::from_millis(100));
    let before = std::fs::read(data.join("c")).unwrap();
    assert_eq!(count_ticks(&sock, Duration::from_millis(500)), 0, "a paused node sends nothing");
    assert_eq!(std::fs::read(data.join("c")).unwrap(), before, "a paused node writes nothing");

    node.signal_group(libc::SIGCONT);
    assert!(count_ticks(&sock, Duration::from_millis(300)) > 5, "the node ticks again after SIGCONT");

    let tracee: i32 =
        std::fs::read_to_string(state.join("tracee.pid")).unwrap().trim().parse().expect("tracee.pid holds a pid");
    let tracer_procs = children_of(node.pgid);
    assert_eq!(tracer_procs.len(), 1, "jetsam-tracer runs one tracing process");
    let status = node.kill();
    assert_eq!(status.code(), None, "the tracer died by SIGKILL");
    let deadline = Instant::now() + Duration::from_secs(5);
    while (alive(tracee) || alive(tracer_procs[0])) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!alive(tracee), "the tracee {tracee} is gone after SIGKILL to the group");
    assert!(!alive(tracer_procs[0]), "the tracing process {} is gone", tracer_procs[0]);
}

#[test]
fn exit_code_is_the_tracees() {
    let (_tmp, data, state) = dirs();
    for (program, want) in [("/bin/true", 0), ("/bin/false", 1)] {
        let mut node = Traced::start(&data, &state, Path::new(program), &[]);
        assert_eq!(node.child.wait().unwrap().code(), Some(want), "{program}");
    }
    let mut node = Traced::start(&data, &state, Path::new("/bin/sh"), &["-c".to_string(), "kill -9 $$".to_string()]);
    assert_eq!(node.child.wait().unwrap().code(), Some(128 + 9), "killed by a signal: 128+signal");
    let mut node = Traced::probe(&data, &state, &["pwrite:e:0:5:1"]);
    node.wait_line("done", WAIT);
    assert_eq!(node.child.wait().unwrap().code(), Some(0));
}

/// A traced child that left the node's process group (setsid, as
/// PostgreSQL's backends do) is recorded in `S/tracees`, is not found by a
/// group scan, and dies with the tracer: a power loss waits for it.
#[test]
fn a_forked_tracee_outside_the_group_is_recorded_and_dies_with_the_tracer() {
    use jetsam_faults::power::live_tracees;
    use jetsam_faults::process::processes_alive;
    let (_tmp, data, state) = dirs();
    let mut node = Traced::probe(&data, &state, &["setsid-child:hang", "hang"]);
    node.wait_line("done", WAIT);
    let deadline = Instant::now() + WAIT;
    let child = loop {
        if let Some(&pid) = live_tracees(&state).first() {
            break pid;
        }
        assert!(Instant::now() < deadline, "the forked child is recorded in S/tracees");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(alive(child as i32));
    assert!(!processes_alive(Some(node.pgid as u32), &[]).contains(&child), "it left the group");
    node.kill();
    let deadline = Instant::now() + WAIT;
    while !processes_alive(None, &live_tracees(&state)).is_empty() {
        assert!(Instant::now() < deadline, "the setsid child dies with the tracer (PTRACE_O_EXITKILL)");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!alive(child as i32));
}
