//! One running adapter process (docs/adapter-protocol.md): spawned with the
//! target file's folder as working directory, in its own process group with
//! a parent-death signal, stderr appended to `adapter/<role>.log` in the run
//! folder, requests written to its stdin as JSON lines and replies matched to
//! them by `id` (so many may be in flight and replies may come in any order).
//!
//! Anything the adapter gets wrong (a line that is not a reply, an id never
//! sent, a wrong reply shape, exiting) is recorded once in the [`Fatal`] slot
//! the target shares between its processes; the controller checks it and
//! stops the run with exit code 4 instead of a verdict. A reply to a request
//! that timed out is ignored (the protocol allows it).

use super::reply::{self, ProtocolError, REPLY_BYTES_MAX};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};

/// `hello` must be answered within this.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests written but not yet taken by the writer task, at most.
const QUEUE_MAX: usize = 4096;
/// How long the reader waits for an adapter that closed its stdout to exit,
/// so its exit status can be reported.
const EXIT_WAIT: Duration = Duration::from_secs(2);
/// stderr lines an error quotes.
const STDERR_LINES_MAX: usize = 10;
/// Bytes of stderr read back for the quote (the log may be large).
const STDERR_TAIL_BYTES_MAX: u64 = 8192;

/// The first thing an adapter did wrong, shared by all of a target's
/// processes: set once, never cleared.
#[derive(Debug, Default, Clone)]
pub struct Fatal(Arc<Mutex<Option<String>>>);

impl Fatal {
    /// Records `message` unless something was recorded before.
    pub fn set(&self, message: String) {
        let mut slot = self.0.lock().expect("fatal lock");
        if slot.is_none() {
            tracing::error!("{message}");
            *slot = Some(message);
        }
    }

    pub fn get(&self) -> Option<String> {
        self.0.lock().expect("fatal lock").clone()
    }
}

/// Why a request got no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// No reply within the bound: the adapter may still answer (ignored then).
    #[error("no reply to {op} within {waited:?}")]
    Timeout { op: String, waited: Duration },
    /// The adapter broke the protocol or exited; the run must stop (see [`Fatal`]).
    #[error("{0}")]
    Fatal(String),
}

/// A reply: its fields (without `id`), the line as sent and its line number.
#[derive(Debug, Clone)]
pub struct Reply {
    pub fields: Map<String, Value>,
    pub line: String,
    pub line_no: u64,
}

type Waiters = Mutex<HashMap<u64, oneshot::Sender<Reply>>>;

/// How to start an adapter process.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The target file's `name`: every error names it.
    pub adapter: String,
    /// `adapter` from the target file: program and arguments.
    pub argv: Vec<String>,
    /// Working directory: the target file's folder.
    pub cwd: PathBuf,
    /// Where stderr goes (`<run>/adapter/<role>.log`).
    pub log: PathBuf,
    /// The target file's `protocol`: hello says it and the reply must echo it.
    pub protocol: u32,
}

/// A running adapter process. Dropping it kills its process group.
pub struct AdapterProcess {
    /// "adapter \"redis\" (control)": the start of every error.
    label: String,
    log: PathBuf,
    tx: mpsc::Sender<Vec<u8>>,
    waiters: Arc<Waiters>,
    closed: Arc<AtomicBool>,
    next_id: Arc<AtomicU64>,
    fatal: Fatal,
    pgid: i32,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for AdapterProcess {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        // The adapter may have children of its own (a shell wrapper): the
        // whole group goes. It holds no state worth a graceful stop.
        // SAFETY: killpg on a process group this process created.
        unsafe {
            libc::killpg(self.pgid, libc::SIGKILL);
        }
    }
}

/// The last lines of an adapter's stderr log, for an error message.
pub fn stderr_tail(log: &Path) -> String {
    let Ok(mut f) = std::fs::File::open(log) else { return "(no stderr log)".into() };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(STDERR_TAIL_BYTES_MAX);
    let mut buf = Vec::new();
    use std::io::{Read, Seek, SeekFrom};
    if f.seek(SeekFrom::Start(start)).is_err() || f.read_to_end(&mut buf).is_err() {
        return "(stderr log unreadable)".into();
    }
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return "(stderr is empty)".into();
    }
    lines[lines.len().saturating_sub(STDERR_LINES_MAX)..].join(" | ")
}

impl AdapterProcess {
    /// Spawns the adapter and says `hello` (bounded by [`HELLO_TIMEOUT`]).
    /// `role` is `control` or `client N`; `hello` carries the rest of the
    /// hello fields. Returns the process and the hello reply's fields.
    pub async fn start(
        launch: &Launch,
        role: &str,
        hello: Map<String, Value>,
        fatal: Fatal,
    ) -> Result<(AdapterProcess, Map<String, Value>), RequestError> {
        let label = format!("adapter {:?} ({role})", launch.adapter);
        let spawn_err = |what: String| RequestError::Fatal(format!("failed to start {label}: {what}"));
        if let Some(dir) = launch.log.parent() {
            std::fs::create_dir_all(dir).map_err(|e| spawn_err(format!("{}: {e}", dir.display())))?;
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&launch.log)
            .map_err(|e| spawn_err(format!("{}: {e}", launch.log.display())))?;
        let (program, args) =
            launch.argv.split_first().ok_or_else(|| spawn_err("the adapter command is empty".into()))?;
        let mut command = tokio::process::Command::new(program);
        command
            .args(args)
            .current_dir(&launch.cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .process_group(0);
        crate::child::die_with_parent(command.as_std_mut());
        let mut child = command.spawn().map_err(|e| {
            spawn_err(format!("{program:?} in {}: {e}; check target file field `adapter`", launch.cwd.display()))
        })?;
        let pgid = i32::try_from(child.id().expect("a spawned child has a pid")).expect("pids fit i32");
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");

        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(QUEUE_MAX);
        let closed = Arc::new(AtomicBool::new(false));
        let writer = {
            let closed = closed.clone();
            tokio::spawn(async move {
                while let Some(mut buf) = rx.recv().await {
                    while buf.len() < (1 << 20)
                        && let Ok(more) = rx.try_recv()
                    {
                        buf.extend_from_slice(&more);
                    }
                    if stdin.write_all(&buf).await.is_err() || stdin.flush().await.is_err() {
                        break;
                    }
                }
                closed.store(true, Ordering::SeqCst);
            })
        };
        let waiters: Arc<Waiters> = Arc::new(Mutex::new(HashMap::new()));
        let next_id = Arc::new(AtomicU64::new(0));
        let reader = tokio::spawn(read_replies(ReaderCtx {
            label: label.clone(),
            log: launch.log.clone(),
            stdout,
            child,
            waiters: waiters.clone(),
            closed: closed.clone(),
            next_id: next_id.clone(),
            fatal: fatal.clone(),
        }));
        let process = AdapterProcess {
            label,
            log: launch.log.clone(),
            tx,
            waiters,
            closed,
            next_id,
            fatal,
            pgid,
            tasks: vec![writer, reader],
        };
        let mut fields = hello;
        fields.insert("protocol".into(), json!(launch.protocol));
        let reply = process.request("hello", fields, HELLO_TIMEOUT).await.map_err(|e| match e {
            RequestError::Timeout { waited, .. } => process.fail(format!(
                "no reply to hello within {waited:?}; an adapter must answer each request line with one JSON line on stdout (stderr: {})",
                stderr_tail(&process.log)
            )),
            fatal => fatal,
        })?;
        if reply.fields.get("protocol").and_then(Value::as_u64) != Some(u64::from(launch.protocol)) {
            let v = launch.protocol;
            return Err(process.fail_at(
                &reply,
                ProtocolError {
                    what: format!("the hello reply does not say \"protocol\": {v} (the target file's protocol)"),
                    expected: format!(r#"{{"id":0,"protocol":{v},"adapter":"name version"}}"#),
                    got: reply.line.chars().take(200).collect(),
                },
            ));
        }
        Ok((process, reply.fields))
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// Records a fatal error of this adapter and returns it.
    pub fn fail(&self, message: String) -> RequestError {
        let message = format!("{}: {message}", self.label);
        self.fatal.set(message.clone());
        RequestError::Fatal(message)
    }

    /// [`AdapterProcess::fail`] for a reply whose shape is wrong.
    pub fn fail_at(&self, reply: &Reply, e: ProtocolError) -> RequestError {
        self.fail(format!("stdout line {}: {e}", reply.line_no))
    }

    /// Sends `op` with `fields` and waits at most `timeout` for its reply.
    pub async fn request(
        &self,
        op: &str,
        mut fields: Map<String, Value>,
        timeout: Duration,
    ) -> Result<Reply, RequestError> {
        if let Some(f) = self.fatal.get() {
            return Err(RequestError::Fatal(f));
        }
        if self.closed.load(Ordering::SeqCst) {
            return Err(self.fail(format!("its stdin is closed (stderr: {})", stderr_tail(&self.log))));
        }
        // Ids are taken under the waiters lock so they reach the writer in order.
        let (wtx, wrx) = oneshot::channel();
        let (id, line) = {
            let mut waiters = self.waiters.lock().expect("waiters lock");
            let id = self.next_id.fetch_add(1, Ordering::SeqCst);
            waiters.insert(id, wtx);
            fields.insert("id".into(), json!(id));
            fields.insert("op".into(), json!(op));
            let mut line = serde_json::to_vec(&Value::Object(fields)).expect("a request serializes");
            line.push(b'\n');
            match self.tx.try_send(line) {
                Ok(()) => (id, None),
                Err(mpsc::error::TrySendError::Full(line)) => (id, Some(line)),
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    waiters.remove(&id);
                    drop(waiters);
                    return Err(self.fail(format!("its stdin is closed (stderr: {})", stderr_tail(&self.log))));
                }
            }
        };
        if let Some(line) = line {
            // A full queue (thousands of requests the adapter has not read):
            // wait for room, still within the bound.
            if tokio::time::timeout(timeout, self.tx.send(line)).await.map(|r| r.is_ok()) != Ok(true) {
                self.waiters.lock().expect("waiters lock").remove(&id);
                return Err(RequestError::Timeout { op: op.into(), waited: timeout });
            }
        }
        match tokio::time::timeout(timeout, wrx).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(RequestError::Fatal(
                self.fatal.get().unwrap_or_else(|| format!("{}: the reply channel closed", self.label)),
            )),
            Err(_) => {
                // A late reply finds no waiter and is ignored by the reader.
                self.waiters.lock().expect("waiters lock").remove(&id);
                Err(RequestError::Timeout { op: op.into(), waited: timeout })
            }
        }
    }
}

struct ReaderCtx {
    label: String,
    log: PathBuf,
    stdout: tokio::process::ChildStdout,
    child: tokio::process::Child,
    waiters: Arc<Waiters>,
    closed: Arc<AtomicBool>,
    next_id: Arc<AtomicU64>,
    fatal: Fatal,
}

/// Reads reply lines until the adapter closes stdout or breaks the protocol;
/// then records why (with its exit status when it exited) and wakes every waiter.
async fn read_replies(mut ctx: ReaderCtx) {
    let mut rd = BufReader::with_capacity(1 << 16, &mut ctx.stdout);
    let mut line_no = 0u64;
    let mut buf = Vec::new();
    let why = loop {
        buf.clear();
        let limit = REPLY_BYTES_MAX as u64 + 1;
        match (&mut rd).take(limit).read_until(b'\n', &mut buf).await {
            Ok(0) => break None,
            Ok(_) => {}
            Err(e) => break Some(format!("reading its stdout failed: {e}")),
        }
        line_no += 1;
        // A last line without a newline is still a line (EOF follows); a
        // line that filled the whole bound is not.
        if buf.last() != Some(&b'\n') && buf.len() as u64 >= limit {
            break Some(format!("stdout line {line_no} is longer than 256 MiB; expected one JSON reply per line"));
        }
        let text = String::from_utf8_lossy(&buf);
        let text = text.trim_end_matches(['\n', '\r']);
        if text.trim().is_empty() {
            continue;
        }
        let (id, fields) = match reply::parse_line(text) {
            Ok(x) => x,
            Err(e) => break Some(format!("stdout line {line_no}: {e}")),
        };
        let waiter = ctx.waiters.lock().expect("waiters lock").remove(&id);
        match waiter {
            Some(w) => {
                let _ = w.send(Reply { fields, line: text.to_string(), line_no });
            }
            // Sent, but its caller stopped waiting (a publish past its timeout): ignored.
            None if id < ctx.next_id.load(Ordering::SeqCst) => {}
            None => {
                break Some(format!(
                    "stdout line {line_no}: a reply with id {id}, which jetsam never sent; expected the id of a request (ids start at 0 and increase by 1)"
                ));
            }
        }
    };
    ctx.closed.store(true, Ordering::SeqCst);
    let message = match why {
        Some(why) => format!("{}: {why}", ctx.label),
        None => {
            let status = match tokio::time::timeout(EXIT_WAIT, ctx.child.wait()).await {
                Ok(Ok(s)) => format!("exited ({s})"),
                Ok(Err(e)) => format!("closed its stdout (wait failed: {e})"),
                Err(_) => "closed its stdout but did not exit".to_string(),
            };
            format!(
                "{}: {status} after {line_no} stdout lines; last stderr lines: {}",
                ctx.label,
                stderr_tail(&ctx.log)
            )
        }
    };
    ctx.fatal.set(message);
    // Dropping the senders wakes every waiter, which then reads the fatal slot.
    ctx.waiters.lock().expect("waiters lock").clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An adapter written inline in Python: answers hello, then runs `body`
    /// for every other request (`req`, `rid` and `out(obj)` are defined).
    fn launch(dir: &Path, body: &str) -> Launch {
        let script = format!(
            "import json, sys, time\n\
             def out(o):\n    sys.stdout.write(json.dumps(o) + '\\n'); sys.stdout.flush()\n\
             for raw in sys.stdin:\n    req = json.loads(raw); rid = req['id']\n\
             \x20   if req['op'] == 'hello':\n        out({{'id': rid, 'protocol': 1, 'adapter': 'test'}}); continue\n\
             {body}\n"
        );
        let path = dir.join("adapter.py");
        std::fs::write(&path, script).unwrap();
        Launch {
            adapter: "test".into(),
            argv: vec!["python3".into(), path.display().to_string()],
            cwd: dir.to_path_buf(),
            log: dir.join("adapter/control.log"),
            protocol: 1,
        }
    }

    async fn start(l: &Launch) -> (AdapterProcess, Fatal) {
        let fatal = Fatal::default();
        let (p, hello) = AdapterProcess::start(l, "control", Map::new(), fatal.clone()).await.unwrap();
        assert_eq!(hello.get("adapter").and_then(Value::as_str), Some("test"));
        (p, fatal)
    }

    #[tokio::test]
    async fn replies_are_matched_by_id_in_any_order_and_late_ones_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        // "slow" is answered after the next request; "late" only after 1 s.
        let body = "    if req['op'] == 'slow':\n        held = rid; continue\n\
                    \x20   if req['op'] == 'late':\n        time.sleep(1); out({'id': rid, 'v': 'late'}); continue\n\
                    \x20   out({'id': rid, 'v': req['op']})\n\
                    \x20   if req['op'] == 'fast':\n        out({'id': held, 'v': 'slow'})\n";
        let (p, fatal) = start(&launch(dir.path(), body)).await;
        let t = Duration::from_secs(5);
        let (slow, fast) = tokio::join!(p.request("slow", Map::new(), t), async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            p.request("fast", Map::new(), t).await
        });
        assert_eq!(slow.unwrap().fields["v"], "slow");
        assert_eq!(fast.unwrap().fields["v"], "fast");
        let late = p.request("late", Map::new(), Duration::from_millis(200)).await;
        assert!(matches!(late, Err(RequestError::Timeout { .. })), "{late:?}");
        // The late reply arrives while this request waits: ignored, not fatal.
        let next = p.request("next", Map::new(), t).await.unwrap();
        assert_eq!(next.fields["v"], "next");
        assert_eq!(fatal.get(), None);
    }

    #[tokio::test]
    async fn an_id_never_sent_is_fatal_and_names_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let (p, fatal) = start(&launch(dir.path(), "    out({'id': rid + 7})\n")).await;
        let e = p.request("ready", Map::new(), Duration::from_secs(5)).await.unwrap_err();
        let RequestError::Fatal(m) = e else { panic!("fatal expected, got {e:?}") };
        assert!(
            m.contains("adapter \"test\" (control): stdout line 2: a reply with id 8, which jetsam never sent"),
            "{m}"
        );
        assert_eq!(fatal.get().as_deref(), Some(m.as_str()));
        // Every later request gets the same error at once.
        let again = p.request("ready", Map::new(), Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(again, RequestError::Fatal(m));
    }

    #[tokio::test]
    async fn an_adapter_that_exits_is_fatal_with_its_status_and_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let body = "    sys.stderr.write('cannot reach the database\\n'); sys.stderr.flush(); sys.exit(5)\n";
        let (p, fatal) = start(&launch(dir.path(), body)).await;
        let e = p.request("ready", Map::new(), Duration::from_secs(5)).await.unwrap_err();
        let RequestError::Fatal(m) = e else { panic!("fatal expected, got {e:?}") };
        assert!(m.contains("exited (exit status: 5) after 1 stdout lines"), "{m}");
        assert!(m.contains("cannot reach the database"), "{m}");
        assert!(fatal.get().is_some());
    }

    #[tokio::test]
    async fn a_missing_program_or_no_hello_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = launch(dir.path(), "    pass\n");
        l.argv = vec!["no-such-adapter-program".into()];
        let Err(RequestError::Fatal(m)) = AdapterProcess::start(&l, "control", Map::new(), Fatal::default()).await
        else {
            panic!("a missing program fails")
        };
        assert!(
            m.contains("failed to start adapter \"test\" (control)") && m.contains("no-such-adapter-program"),
            "{m}"
        );
        let bad_hello = dir.path().join("bad.py");
        std::fs::write(
            &bad_hello,
            "import sys, json\nfor raw in sys.stdin:\n    print(json.dumps({'id': 0, 'protocol': 9}), flush=True)\n",
        )
        .unwrap();
        l.argv = vec!["python3".into(), bad_hello.display().to_string()];
        let Err(RequestError::Fatal(m)) = AdapterProcess::start(&l, "control", Map::new(), Fatal::default()).await
        else {
            panic!("a wrong protocol fails")
        };
        assert!(m.contains("stdout line 1: the hello reply does not say \"protocol\": 1"), "{m}");
    }
}
