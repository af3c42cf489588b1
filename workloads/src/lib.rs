//! jetsam-workloads drives the acked-publish workload: concurrent clients
//! publish unique ids `<client>-<counter>` at a rate (or as fast as acks
//! come, with a bounded number in flight per client) and record every
//! operation (invoke, then ok, fail or info) to `history.jsonl` as it
//! happens, with ack latencies in an HDR histogram.
//!
//! The history file has one owner ([`HistoryWriter`]), and clients write
//! to its buffer under a lock ([`HistorySink`]), stamping `t_ns` under that
//! lock, so the file is in time order by construction. A client writes its
//! records in batches: it collects them while it has work that does not
//! wait, and writes the batch before it waits for anything (so an invoke is
//! always in the history's buffer before its publish is first polled, and
//! a record waits in a client at most as long as that client runs without
//! waiting). One lock and one clock reading per batch, and no channel or
//! writer task to wake per record, keep the harness's CPU for the system
//! under test on a small machine. The owner's task flushes the buffer at
//! least every [`FLUSH_INTERVAL`] and at the end, so a controller that dies
//! mid-run leaves a checkable history (an invoke with no completion is
//! indeterminate).
//!
//! This crate does not know any system under test: it drives
//! [`jetsam_targets::Publisher`]s handed to it, applies the per-publish
//! timeout (a timeout is `info`; the publisher itself says `fail` for a
//! definite rejection), and does not start, stop or fault anything.

use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use hdrhistogram::Histogram;
use jetsam_core::history::{Op, OpId};
use jetsam_core::report::Latency;
use jetsam_targets::{PublishOutcome, Publisher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// The writer flushes buffered history lines at least this often.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(50);
/// Records one client collects before it writes them, waiting or not.
pub const BATCH_RECORDS_MAX: usize = 256;
/// Highest latency the histogram tracks (longer ones are clamped): a publish
/// timeout above this is rejected by scenario validation anyway.
pub const LATENCY_US_MAX: u64 = 3_600_000_000;

/// The workload's settings, resolved from the scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadConfig {
    pub clients: u32,
    /// Publishes per second over all clients; `None` = as fast as acks come.
    pub rate_per_s: Option<u32>,
    pub payload_bytes: u32,
    /// A publish with no answer by then is recorded as `info`.
    pub timeout: Duration,
    /// How long clients start new publishes; in-flight ones then finish
    /// (each bounded by `timeout`).
    pub duration: Duration,
    /// Publishes one client may have in flight at once (at least 1).
    pub in_flight_max: u32,
    /// Seed of the payload bytes.
    pub seed: u64,
}

/// Live counts of completed operations, read by the progress display.
#[derive(Debug, Default)]
pub struct Counters {
    pub invoked: AtomicU64,
    pub acked: AtomicU64,
    pub failed: AtomicU64,
    pub info: AtomicU64,
}

impl Counters {
    pub fn snapshot(&self) -> CountersSnapshot {
        CountersSnapshot {
            invoked: self.invoked.load(Ordering::Relaxed),
            acked: self.acked.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            info: self.info.load(Ordering::Relaxed),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CountersSnapshot {
    pub invoked: u64,
    pub acked: u64,
    pub failed: u64,
    pub info: u64,
}

/// What the history writer could not do. Environment error (exit code 4).
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("failed to write the history {}: {source}; check free space and permissions of the run folder", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "failed to record operation {id}: the history writer stopped early (see its own error); the run's history is incomplete"
    )]
    WriterGone { id: String },
}

/// One record for the writer; `t_ns` is added when the writer takes it.
#[derive(Debug)]
enum Record {
    Invoke(OpId),
    Done(OpId, PublishOutcome),
}

impl Record {
    fn id(&self) -> OpId {
        match self {
            Record::Invoke(id) | Record::Done(id, _) => *id,
        }
    }
}

/// A handle clients use to record operations. Cloneable; the file is closed
/// when every handle is dropped and [`HistoryWriter::finish`] is awaited.
#[derive(Debug, Clone)]
pub struct HistorySink {
    shared: Arc<Shared>,
    /// Never sends: the flusher sees every sink gone when the channel closes.
    _alive: mpsc::Sender<()>,
}

/// The history file and its buffer, behind one lock.
#[derive(Debug)]
struct Shared {
    path: PathBuf,
    /// The run's clock origin (shared with events.jsonl).
    start: Instant,
    state: Mutex<WriterState>,
}

#[derive(Debug)]
struct WriterState {
    out: std::io::BufWriter<std::fs::File>,
    lines: u64,
    /// Lines buffered since the last flush.
    dirty: bool,
    /// The first write error (kind, text): every later write fails too.
    failed: Option<(std::io::ErrorKind, String)>,
}

impl Shared {
    fn io(&self, source: std::io::Error) -> HistoryError {
        HistoryError::Io { path: self.path.clone(), source }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WriterState> {
        // A client that panicked mid-write leaves at worst a torn last line,
        // which the history reader reports; the others may go on.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Flushes buffered lines; the first failure sticks.
    fn flush(&self) -> Result<(), HistoryError> {
        let mut state = self.lock();
        if let Some((kind, text)) = &state.failed {
            return Err(self.io(std::io::Error::new(*kind, text.clone())));
        }
        if state.dirty {
            if let Err(e) = state.out.flush() {
                state.failed = Some((e.kind(), e.to_string()));
                return Err(self.io(e));
            }
            state.dirty = false;
        }
        Ok(())
    }
}

impl HistorySink {
    /// Writes `batch` (in the order its records happened) to the history's
    /// buffer under the lock, all stamped with one `t_ns` read under it, so
    /// `t_ns` never decreases down the file. The lock is held for the
    /// formatting and, when the 64 KiB buffer fills, one write to the page
    /// cache: short enough for a tokio worker.
    fn write(&self, batch: &mut Vec<Record>) -> Result<(), HistoryError> {
        assert!(!batch.is_empty(), "an empty batch is not written");
        let shared = &*self.shared;
        let mut state = shared.lock();
        if state.failed.is_some() {
            return Err(HistoryError::WriterGone { id: batch[0].id().to_string() });
        }
        let t_ns = u64::try_from(shared.start.elapsed().as_nanos()).expect("a run lasts less than 584 years");
        let mut text = Vec::with_capacity(batch.len() * 80);
        let count = batch.len() as u64;
        for record in batch.drain(..) {
            write_line(&mut text, t_ns, record);
        }
        if let Err(e) = state.out.write_all(&text) {
            state.failed = Some((e.kind(), e.to_string()));
            return Err(shared.io(e));
        }
        state.lines += count;
        state.dirty = true;
        Ok(())
    }
}

/// A client's records not yet written.
struct Batch {
    records: Vec<Record>,
}

impl Batch {
    fn new() -> Batch {
        Batch { records: Vec::with_capacity(BATCH_RECORDS_MAX) }
    }

    /// Adds a record; writes the batch once it is full.
    fn push(&mut self, record: Record, sink: &HistorySink) -> Result<(), HistoryError> {
        self.records.push(record);
        if self.records.len() >= BATCH_RECORDS_MAX { self.send(sink) } else { Ok(()) }
    }

    /// Writes what is collected (before the client waits for anything).
    fn send(&mut self, sink: &HistorySink) -> Result<(), HistoryError> {
        if self.records.is_empty() {
            return Ok(());
        }
        sink.write(&mut self.records)
    }
}

/// Owns `history.jsonl`: a task that flushes it every [`FLUSH_INTERVAL`]
/// and once more when every [`HistorySink`] is gone.
#[derive(Debug)]
pub struct HistoryWriter {
    task: tokio::task::JoinHandle<Result<u64, HistoryError>>,
}

impl HistoryWriter {
    /// Creates `path` (truncating it) and starts the flusher task; `start` is
    /// the run's clock origin (shared with events.jsonl).
    pub fn spawn(path: &Path, start: Instant) -> Result<(HistoryWriter, HistorySink), HistoryError> {
        let io = |source| HistoryError::Io { path: path.to_path_buf(), source };
        let file = std::fs::File::create(path).map_err(io)?;
        let state =
            WriterState { out: std::io::BufWriter::with_capacity(1 << 16, file), lines: 0, dirty: false, failed: None };
        let shared = Arc::new(Shared { path: path.to_path_buf(), start, state: Mutex::new(state) });
        let (alive, gone) = mpsc::channel(1);
        let task = tokio::spawn(flush_loop(shared.clone(), gone));
        Ok((HistoryWriter { task }, HistorySink { shared, _alive: alive }))
    }

    /// Waits until every sink is dropped and the last line is flushed;
    /// returns the number of lines written.
    pub async fn finish(self) -> Result<u64, HistoryError> {
        match self.task.await {
            Ok(result) => result,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
}

async fn flush_loop(shared: Arc<Shared>, mut gone: mpsc::Receiver<()>) -> Result<u64, HistoryError> {
    let mut flush = tokio::time::interval(FLUSH_INTERVAL);
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            // Only closes (no sink sends): every sink is dropped.
            None = gone.recv() => break,
            _ = flush.tick() => shared.flush()?,
        }
    }
    shared.flush()?;
    Ok(shared.lock().lines)
}

/// Appends one history line for `record`, exactly as serde_json writes the
/// [`Op`]: invoke and ok lines (nearly all of them) are written by hand,
/// without the `Op`'s allocations; fail and info lines (free-text errors)
/// and an ok from a node whose name needs escaping go through serde_json.
fn write_line(out: &mut Vec<u8>, t_ns: u64, record: Record) {
    let head = |out: &mut Vec<u8>, id: OpId, kind: &str| {
        out.extend_from_slice(b"{\"t_ns\":");
        push_decimal(out, t_ns);
        out.extend_from_slice(b",\"client\":");
        push_decimal(out, u64::from(id.client));
        out.extend_from_slice(b",\"type\":\"");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\",\"id\":\"");
        push_decimal(out, u64::from(id.client));
        out.push(b'-');
        push_decimal(out, id.counter);
        out.push(b'"');
    };
    let plain = |text: &str| text.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    match record {
        Record::Invoke(id) => {
            head(out, id, "invoke");
            out.extend_from_slice(b"}\n");
        }
        Record::Done(id, PublishOutcome::Ok { seq, node }) if plain(&node) => {
            head(out, id, "ok");
            out.extend_from_slice(b",\"seq\":");
            push_decimal(out, seq);
            out.extend_from_slice(b",\"node\":\"");
            out.extend_from_slice(node.as_bytes());
            out.extend_from_slice(b"\"}\n");
        }
        Record::Done(id, outcome) => {
            let op = match outcome {
                PublishOutcome::Ok { seq, node } => Op::ok(t_ns, id, seq, node),
                PublishOutcome::Fail { error } => Op::fail(t_ns, id, error),
                PublishOutcome::Info { error } => Op::info(t_ns, id, error),
            };
            serde_json::to_writer(&mut *out, &op).expect("an op always serializes");
            out.push(b'\n');
        }
    }
}

/// Appends `n` in decimal.
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// `id` as the publisher gets it, `<client>-<counter>`, without `format!`.
fn id_text(id: OpId) -> String {
    let mut text = Vec::with_capacity(24);
    push_decimal(&mut text, u64::from(id.client));
    text.push(b'-');
    push_decimal(&mut text, id.counter);
    String::from_utf8(text).expect("decimal digits and a dash")
}

/// What the workload did.
#[derive(Debug)]
pub struct WorkloadResult {
    pub counts: CountersSnapshot,
    /// Ack latencies (invoke to ok) in microseconds.
    pub latency_us: Histogram<u64>,
}

impl WorkloadResult {
    /// p50/p90/p99/max of the ack latencies; `None` when nothing was acknowledged.
    pub fn latency(&self) -> Option<Latency> {
        latency_summary(&self.latency_us)
    }
}

/// p50/p90/p99/max of a latency histogram in microseconds (`None` if empty).
pub fn latency_summary(h: &Histogram<u64>) -> Option<Latency> {
    if h.is_empty() {
        return None;
    }
    Some(Latency {
        p50_us: h.value_at_quantile(0.50),
        p90_us: h.value_at_quantile(0.90),
        p99_us: h.value_at_quantile(0.99),
        max_us: h.max(),
    })
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("static histogram bounds are valid")
}

/// Runs the workload: one task per client, each with its own publisher
/// (`publishers[i]` is client `i`). Returns when every client has stopped
/// and every in-flight publish has completed or timed out.
pub async fn run(
    config: &WorkloadConfig,
    publishers: Vec<Arc<dyn Publisher>>,
    sink: HistorySink,
    counters: Arc<Counters>,
) -> Result<WorkloadResult, HistoryError> {
    assert_eq!(publishers.len(), config.clients as usize, "one publisher per client");
    assert!(config.in_flight_max >= 1, "in_flight_max must be at least 1");
    assert!(config.rate_per_s != Some(0), "a rate of 0 is rejected by validation");
    let start = tokio::time::Instant::now();
    let deadline = start + config.duration;
    let mut clients = JoinSet::new();
    for (client, publisher) in publishers.into_iter().enumerate() {
        let client = u32::try_from(client).expect("client count fits u32");
        let period = config.rate_per_s.map(|rate| {
            // The total rate spread evenly: each client publishes every clients/rate seconds.
            Duration::from_nanos((1_000_000_000u64 * u64::from(config.clients)) / u64::from(rate))
        });
        let payload = payload(config.seed, client, config.payload_bytes);
        let client_config = ClientConfig {
            client,
            period,
            // Stagger clients over one period so rate-limited publishes spread out.
            first_at: start + period.map(|p| p * client / config.clients.max(1)).unwrap_or_default(),
            deadline,
            timeout: config.timeout,
            in_flight_max: config.in_flight_max as usize,
        };
        clients.spawn(client_loop(client_config, publisher, payload, sink.clone(), counters.clone()));
    }
    drop(sink);
    let mut latency_us = new_histogram();
    let mut first_error = None;
    while let Some(joined) = clients.join_next().await {
        match joined {
            Ok(Ok(h)) => latency_us.add(&h).expect("histograms share bounds"),
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    Ok(WorkloadResult { counts: counters.snapshot(), latency_us })
}

/// Payload bytes of one client: seeded filler, the same for every publish of
/// that client (the id, not the payload, identifies a message).
fn payload(seed: u64, client: u32, len: u32) -> Arc<[u8]> {
    let mut state = seed ^ (u64::from(client).wrapping_add(1)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (0..len)
        .map(|_| {
            state = splitmix64(state);
            b'a' + (state % 26) as u8
        })
        .collect()
}

/// One step of SplitMix64 (a well-mixed 64-bit sequence from any seed).
pub fn splitmix64(state: u64) -> u64 {
    let mut z = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

struct ClientConfig {
    client: u32,
    period: Option<Duration>,
    first_at: tokio::time::Instant,
    deadline: tokio::time::Instant,
    timeout: Duration,
    in_flight_max: usize,
}

/// What one publish came to, as the client task records it.
struct Completion {
    id: OpId,
    outcome: PublishOutcome,
    /// Invoke to ok; `None` unless acknowledged.
    latency_us: Option<u64>,
}

/// One publish bounded by the workload's timeout (no answer in time is `info`).
async fn publish_one(publisher: &dyn Publisher, id: OpId, payload: Vec<u8>, timeout: Duration) -> Completion {
    let invoked = tokio::time::Instant::now();
    let outcome = match tokio::time::timeout_at(invoked + timeout, publisher.publish(id_text(id), payload)).await {
        Ok(outcome) => outcome,
        Err(_) => PublishOutcome::Info { error: format!("timeout: no answer within {}ms", timeout.as_millis()) },
    };
    let latency_us = matches!(outcome, PublishOutcome::Ok { .. })
        .then(|| u64::try_from(invoked.elapsed().as_micros()).unwrap_or(u64::MAX));
    Completion { id, outcome, latency_us }
}

/// One client: invokes publishes (recording each invoke before it starts)
/// and keeps up to `in_flight_max` of them going inside this one task (a
/// `FuturesUnordered`, not a task per publish: on a loaded machine the
/// spawn and wake-up of a task per publish cost the system under test CPU
/// it would otherwise use). Each completion is recorded as it comes; after
/// the deadline every publish already invoked still completes (or times
/// out) and is recorded, so every invoke gets exactly one completion unless
/// the history writer itself fails. The client's records go to the writer
/// in a [`Batch`] sent before every wait, in particular before `in_flight`
/// is polled, which is when a newly pushed publish starts.
async fn client_loop(
    c: ClientConfig,
    publisher: Arc<dyn Publisher>,
    payload: Arc<[u8]>,
    sink: HistorySink,
    counters: Arc<Counters>,
) -> Result<Histogram<u64>, HistoryError> {
    let publisher: &dyn Publisher = publisher.as_ref();
    let mut latency_us = new_histogram();
    let mut in_flight = FuturesUnordered::new();
    let mut batch = Batch::new();
    let mut ticks = c.period.map(|p| {
        let mut i = tokio::time::interval_at(c.first_at, p);
        // A client held up by slow acks skips ticks instead of bursting to catch up.
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        i
    });
    let mut counter = 0u64;
    loop {
        if tokio::time::Instant::now() >= c.deadline {
            break;
        }
        if in_flight.len() >= c.in_flight_max {
            // Full: wait for a completion (each is bounded by the timeout),
            // then take every other one that is ready without waiting.
            batch.send(&sink)?;
            let done = in_flight.next().await.expect("in_flight is not empty");
            record(done, &mut batch, &sink, &counters, &mut latency_us)?;
            while let Some(Some(done)) = in_flight.next().now_or_never() {
                record(done, &mut batch, &sink, &counters, &mut latency_us)?;
            }
            continue;
        }
        if let Some(ticks) = ticks.as_mut() {
            batch.send(&sink)?;
            tokio::select! {
                _ = ticks.tick() => {}
                _ = tokio::time::sleep_until(c.deadline) => break,
                Some(done) = in_flight.next() => {
                    record(done, &mut batch, &sink, &counters, &mut latency_us)?;
                    continue;
                }
            }
            if tokio::time::Instant::now() >= c.deadline {
                break;
            }
        }
        let id = OpId { client: c.client, counter };
        counter += 1;
        batch.push(Record::Invoke(id), &sink)?;
        counters.invoked.fetch_add(1, Ordering::Relaxed);
        in_flight.push(publish_one(publisher, id, payload.to_vec(), c.timeout));
    }
    // Drain: every publish already invoked completes (or times out) and is recorded.
    loop {
        batch.send(&sink)?;
        let Some(done) = in_flight.next().await else { break };
        record(done, &mut batch, &sink, &counters, &mut latency_us)?;
    }
    Ok(latency_us)
}

/// Counts a completion, records its latency and adds it to the client's batch.
fn record(
    done: Completion,
    batch: &mut Batch,
    sink: &HistorySink,
    counters: &Counters,
    latency_us: &mut Histogram<u64>,
) -> Result<(), HistoryError> {
    let counter = match &done.outcome {
        PublishOutcome::Ok { .. } => &counters.acked,
        PublishOutcome::Fail { .. } => &counters.failed,
        PublishOutcome::Info { .. } => &counters.info,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    if let Some(us) = done.latency_us {
        latency_us.saturating_record(us.clamp(1, LATENCY_US_MAX));
    }
    batch.push(Record::Done(done.id, done.outcome), sink)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind of line, written by hand or not, is byte for byte what serde_json writes for the `Op`.
    #[test]
    fn hand_written_lines_are_serde_json_lines() {
        let ids = [
            OpId { client: 0, counter: 0 },
            OpId { client: 7, counter: 10 },
            OpId { client: u32::MAX, counter: u64::MAX },
        ];
        for t_ns in [0, 9, 1_234_567_890_123, u64::MAX] {
            for id in ids {
                let cases = [
                    (Record::Invoke(id), Op::invoke(t_ns, id)),
                    (Record::Done(id, PublishOutcome::Ok { seq: 1, node: "n1".into() }), Op::ok(t_ns, id, 1, "n1")),
                    (
                        Record::Done(id, PublishOutcome::Ok { seq: u64::MAX, node: "node-2.a_b:3".into() }),
                        Op::ok(t_ns, id, u64::MAX, "node-2.a_b:3"),
                    ),
                    (
                        Record::Done(id, PublishOutcome::Ok { seq: 5, node: "n\"1\\ é".into() }),
                        Op::ok(t_ns, id, 5, "n\"1\\ é"),
                    ),
                    (
                        Record::Done(id, PublishOutcome::Fail { error: "no \"responders\"\n".into() }),
                        Op::fail(t_ns, id, "no \"responders\"\n"),
                    ),
                    (Record::Done(id, PublishOutcome::Info { error: "timeout".into() }), Op::info(t_ns, id, "timeout")),
                ];
                for (record, op) in cases {
                    let mut line = Vec::new();
                    write_line(&mut line, t_ns, record);
                    let mut want = serde_json::to_vec(&op).unwrap();
                    want.push(b'\n');
                    assert_eq!(String::from_utf8(line).unwrap(), String::from_utf8(want).unwrap());
                }
                assert_eq!(id_text(id), id.to_string());
            }
        }
    }
}
