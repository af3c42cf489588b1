//! [`crate::Target::read_node_offline`] for the reference node: runs
//! `jetsam-node read-offline --data-dir D --stream S` (docs/node.md
//! "Reading a data dir offline"), which reads the segments without starting
//! the node or writing anything, and turns its output into an
//! [`OfflineRead`]. The reader runs in its own process group with a
//! parent-death signal, is killed (the whole group) when it overruns
//! [`OFFLINE_READ_TIMEOUT`], and its output is bounded
//! ([`OFFLINE_STDOUT_BYTES_MAX`], [`OFFLINE_STDERR_BYTES_MAX`]).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use jetsam_core::recovered::{RecoveredMsg, RecoveredValidator};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::{NodeSpec, OfflineRead};

/// Bound on one offline read (below the controller's 60 s read bound, so
/// the reader is killed here and the reason says so).
pub const OFFLINE_READ_TIMEOUT: Duration = Duration::from_secs(50);
/// Bound on the messages printed (about 10M messages of ~25 bytes).
pub const OFFLINE_STDOUT_BYTES_MAX: u64 = 256 << 20;
/// Bound on the notes and summary.
pub const OFFLINE_STDERR_BYTES_MAX: u64 = 1 << 20;

/// The reader's last stderr line: `{"read_offline": Summary}`.
#[derive(Debug, Deserialize)]
struct SummaryLine {
    read_offline: Summary,
}

#[derive(Debug, Deserialize)]
struct Summary {
    complete: bool,
    records: u64,
    messages: u64,
    damage: Option<Damage>,
    unread_bytes: u64,
    notes: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Damage {
    file: String,
    offset: u64,
    detail: String,
}

/// Bounds of one reader run.
#[derive(Debug, Clone, Copy)]
struct Limits {
    timeout: Duration,
    stdout_bytes_max: u64,
    stderr_bytes_max: u64,
}

const LIMITS: Limits = Limits {
    timeout: OFFLINE_READ_TIMEOUT,
    stdout_bytes_max: OFFLINE_STDOUT_BYTES_MAX,
    stderr_bytes_max: OFFLINE_STDERR_BYTES_MAX,
};

/// Runs the reader on `node`'s data dir and parses what it printed.
pub(crate) async fn read_offline(binary: &Path, stream: &str, node: &NodeSpec) -> Result<OfflineRead, String> {
    read_offline_within(binary, stream, &node.data_dir, LIMITS).await
}

async fn read_offline_within(
    binary: &Path,
    stream: &str,
    data_dir: &Path,
    limits: Limits,
) -> Result<OfflineRead, String> {
    let mut command = tokio::process::Command::new(binary);
    command
        .arg("read-offline")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--stream", stream])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    crate::child::die_with_parent(command.as_std_mut());
    let mut child = command.spawn().map_err(|e| {
        format!("failed to run {} read-offline: {e}; build it with `cargo build --workspace --bins`", binary.display())
    })?;
    let pgid = child.id().map(|p| p as i32);
    let (stdout, stderr) = (child.stdout.take().expect("piped"), child.stderr.take().expect("piped"));
    let run = async {
        let (out, err) =
            tokio::join!(read_bounded(stdout, limits.stdout_bytes_max), read_bounded(stderr, limits.stderr_bytes_max));
        let status = child.wait().await.map_err(|e| format!("failed to wait for jetsam-node read-offline: {e}"))?;
        Ok::<_, String>((status, out?, err?))
    };
    let (status, out, err) = match tokio::time::timeout(limits.timeout, run).await {
        Ok(result) => result?,
        Err(_) => {
            if let Some(pgid) = pgid {
                // SAFETY: killpg on the process group this call created.
                unsafe {
                    libc::killpg(pgid, libc::SIGKILL);
                }
            }
            return Err(format!(
                "jetsam-node read-offline of {} gave no answer within {:?} and was killed",
                data_dir.display(),
                limits.timeout
            ));
        }
    };
    let err = String::from_utf8_lossy(&err);
    match status.code() {
        Some(0) | Some(1) => parse(&out, &err),
        _ => Err(format!("jetsam-node read-offline exited ({status}): {}", tail(&err))),
    }
}

/// Reads all of `r`, failing once it passes `max` bytes.
async fn read_bounded(r: impl AsyncRead + Unpin, max: u64) -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    r.take(max + 1).read_to_end(&mut buf).await.map_err(|e| format!("failed to read jetsam-node read-offline: {e}"))?;
    if buf.len() as u64 > max {
        return Err(format!(
            "jetsam-node read-offline printed more than {max} bytes; the data dir is too large to read"
        ));
    }
    Ok(buf)
}

/// The last 300 characters of the reader's stderr, on one line.
fn tail(err: &str) -> String {
    let text = err.trim().replace('\n', " | ");
    let start = text.char_indices().rev().nth(299).map_or(0, |(i, _)| i);
    text[start..].to_string()
}

/// The messages (validated: strictly increasing sequences, as the run
/// folder requires) and the note from the summary line.
fn parse(out: &[u8], err: &str) -> Result<OfflineRead, String> {
    let out = std::str::from_utf8(out).map_err(|e| format!("jetsam-node read-offline printed non-UTF-8: {e}"))?;
    let mut validator = RecoveredValidator::default();
    let mut messages = Vec::new();
    for (n, line) in out.lines().enumerate() {
        let m: RecoveredMsg = serde_json::from_str(line)
            .map_err(|e| format!("jetsam-node read-offline stdout line {}: {e}: {line:.200}", n + 1))?;
        validator.check(&m).map_err(|e| format!("jetsam-node read-offline stdout line {}: {e}", n + 1))?;
        messages.push(m);
    }
    let last = err.lines().last().unwrap_or("");
    let summary = serde_json::from_str::<SummaryLine>(last)
        .map_err(|e| format!("jetsam-node read-offline ended without its summary line ({e}): {}", tail(err)))?
        .read_offline;
    if summary.messages != messages.len() as u64 || summary.complete != summary.damage.is_none() {
        return Err(format!(
            "jetsam-node read-offline printed {} messages but its summary says {summary:?}",
            messages.len()
        ));
    }
    Ok(OfflineRead { note: note(&summary), messages })
}

fn note(s: &Summary) -> String {
    let mut text = match &s.damage {
        None => {
            format!("jetsam-node read-offline read the whole log: {} messages in {} records", s.messages, s.records)
        }
        Some(d) => format!(
            "jetsam-node read-offline stopped at corrupt data in {} at offset {}: {}; the {} messages before it are \
             held, {} bytes from it on were not read",
            d.file, d.offset, d.detail, s.messages, s.unread_bytes
        ),
    };
    for n in &s.notes {
        text.push_str("; ");
        text.push_str(n);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// An executable shell script standing in for the reader.
    fn script(dir: &Path, body: &str) -> std::path::PathBuf {
        let path = dir.join("fake-reader");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    #[test]
    fn a_reader_that_overruns_is_killed_with_its_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("sleeper.pid");
        let bin = script(dir.path(), &format!("sleep 600 &\necho $! > {}\nwait", pid_file.display()));
        let limits = Limits { timeout: Duration::from_millis(500), ..LIMITS };
        let err = runtime().block_on(read_offline_within(&bin, "jetsam", dir.path(), limits)).unwrap_err();
        assert!(err.contains("gave no answer within 500ms and was killed"), "{err}");
        // The script's own child (same process group) is gone too: it is
        // reaped by init once killed (bounded poll).
        let pid: u32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
        let stat = format!("/proc/{pid}/stat");
        let gone = (0..200).any(|_| {
            let state =
                std::fs::read_to_string(&stat).ok().and_then(|s| s.rsplit(')').next().map(|r| r.trim().chars().next()));
            std::thread::sleep(Duration::from_millis(10));
            matches!(state, None | Some(Some('Z')))
        });
        assert!(gone, "the reader's child {pid} survived the kill");
    }

    #[test]
    fn a_reader_printing_too_much_or_failing_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let bin = script(dir.path(), "yes '{\"seq\":1,\"id\":\"0-0\"}'");
        let limits = Limits { stdout_bytes_max: 1 << 20, ..LIMITS };
        let err = runtime().block_on(read_offline_within(&bin, "jetsam", dir.path(), limits)).unwrap_err();
        assert!(err.contains("printed more than 1048576 bytes"), "{err}");
        let bin = script(dir.path(), "echo 'error: failed to read x: it is not a directory' >&2; exit 4");
        let err = runtime().block_on(read_offline_within(&bin, "jetsam", dir.path(), LIMITS)).unwrap_err();
        assert!(err.contains("exited (exit status: 4)") && err.contains("not a directory"), "{err}");
    }

    #[test]
    fn output_parses_into_messages_and_a_note_and_bad_output_is_an_error() {
        let out = b"{\"seq\":1,\"id\":\"0-0\"}\n{\"seq\":2,\"id\":\"0-1\"}\n";
        let err = "stopped: ...\n{\"read_offline\":{\"complete\":false,\"records\":5,\"messages\":2,\
                   \"damage\":{\"file\":\"log/1.seg\",\"offset\":77,\"detail\":\"record body CRC mismatch\"},\
                   \"unread_bytes\":300,\"notes\":[\"meta is damaged\"]}}\n";
        let read = parse(out, err).unwrap();
        assert_eq!(read.messages.len(), 2);
        assert!(read.note.contains("log/1.seg at offset 77") && read.note.contains("meta is damaged"), "{read:?}");
        let unsorted = b"{\"seq\":2,\"id\":\"0-0\"}\n{\"seq\":1,\"id\":\"0-1\"}\n";
        assert!(parse(unsorted, err).unwrap_err().contains("line 2"));
        assert!(parse(out, "no summary").unwrap_err().contains("summary"));
        assert!(parse(b"{\"seq\":1,\"id\":\"0-0\"}\n", err).unwrap_err().contains("printed 1 messages"));
    }
}
