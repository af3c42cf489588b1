//! jetsam-workloads drives the acked-publish workload: concurrent clients
//! publish unique ids `<client>-<counter>` at a rate (or as fast as acks
//! come, with a bounded number in flight per client) and record every
//! operation (invoke, then ok, fail or info) to `history.jsonl` as it
//! happens, with ack latencies in an HDR histogram.
//!
//! The history has one writer task ([`HistoryWriter`]): clients send records
//! through a bounded channel and the writer stamps `t_ns` when it writes the
//! line, so the file is in time order by construction. It flushes at least
//! every [`FLUSH_INTERVAL`] and at the end, so a controller that dies mid-run
//! leaves a checkable history (an invoke with no completion is indeterminate).
//!
//! This crate does not know any system under test: it drives
//! [`jetsam_targets::Publisher`]s handed to it, applies the per-publish
//! timeout (a timeout is `info`; the publisher itself says `fail` for a
//! definite rejection), and does not start, stop or fault anything.

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use hdrhistogram::Histogram;
use jetsam_core::history::{Op, OpId};
use jetsam_core::report::Latency;
use jetsam_targets::{PublishOutcome, Publisher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// The writer flushes buffered history lines at least this often.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(50);
/// Records queued for the history writer before clients wait for it.
pub const HISTORY_QUEUE_MAX: usize = 16_384;
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

/// One record for the writer; `t_ns` is added when the line is written.
#[derive(Debug)]
enum Record {
    Invoke(OpId),
    Done(OpId, PublishOutcome),
}

/// A handle clients use to record operations. Cloneable; the file is closed
/// when every handle is dropped and [`HistoryWriter::finish`] is awaited.
#[derive(Debug, Clone)]
pub struct HistorySink {
    tx: mpsc::Sender<Record>,
}

impl HistorySink {
    async fn send(&self, record: Record) -> Result<(), HistoryError> {
        let id = match &record {
            Record::Invoke(id) | Record::Done(id, _) => *id,
        };
        self.tx.send(record).await.map_err(|_| HistoryError::WriterGone { id: id.to_string() })
    }
}

/// The single writer of `history.jsonl`.
#[derive(Debug)]
pub struct HistoryWriter {
    task: tokio::task::JoinHandle<Result<u64, HistoryError>>,
}

impl HistoryWriter {
    /// Creates `path` (truncating it) and starts the writer task; `start` is
    /// the run's clock origin (shared with events.jsonl).
    pub fn spawn(path: &Path, start: Instant) -> Result<(HistoryWriter, HistorySink), HistoryError> {
        let io = |source| HistoryError::Io { path: path.to_path_buf(), source };
        let file = std::fs::File::create(path).map_err(io)?;
        let (tx, rx) = mpsc::channel(HISTORY_QUEUE_MAX);
        let task = tokio::spawn(write_loop(path.to_path_buf(), file, start, rx));
        Ok((HistoryWriter { task }, HistorySink { tx }))
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

async fn write_loop(
    path: PathBuf,
    file: std::fs::File,
    start: Instant,
    mut rx: mpsc::Receiver<Record>,
) -> Result<u64, HistoryError> {
    let io = |source| HistoryError::Io { path: path.clone(), source };
    let mut out = std::io::BufWriter::with_capacity(1 << 16, file);
    let mut flush = tokio::time::interval(FLUSH_INTERVAL);
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut dirty = false;
    let mut lines = 0u64;
    let mut line = Vec::with_capacity(256);
    loop {
        tokio::select! {
            biased;
            record = rx.recv() => {
                let Some(record) = record else { break };
                // Stamped here, in the only writer, so t_ns never decreases down the file.
                let t_ns = u64::try_from(start.elapsed().as_nanos()).expect("a run lasts less than 584 years");
                let op = match record {
                    Record::Invoke(id) => Op::invoke(t_ns, id),
                    Record::Done(id, PublishOutcome::Ok { seq, node }) => Op::ok(t_ns, id, seq, node),
                    Record::Done(id, PublishOutcome::Fail { error }) => Op::fail(t_ns, id, error),
                    Record::Done(id, PublishOutcome::Info { error }) => Op::info(t_ns, id, error),
                };
                line.clear();
                serde_json::to_writer(&mut line, &op).expect("an op always serializes");
                line.push(b'\n');
                out.write_all(&line).map_err(io)?;
                lines += 1;
                dirty = true;
            }
            _ = flush.tick() => {
                if dirty {
                    out.flush().map_err(io)?;
                    dirty = false;
                }
            }
        }
    }
    out.flush().map_err(io)?;
    Ok(lines)
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
    let invoked = Instant::now();
    let outcome = match tokio::time::timeout(timeout, publisher.publish(id.to_string(), payload)).await {
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
/// the history writer itself fails.
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
            // Full: wait for a completion (each is bounded by the timeout).
            let done = in_flight.next().await.expect("in_flight is not empty");
            record(done, &sink, &counters, &mut latency_us).await?;
            continue;
        }
        if let Some(ticks) = ticks.as_mut() {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = tokio::time::sleep_until(c.deadline) => break,
                Some(done) = in_flight.next() => {
                    record(done, &sink, &counters, &mut latency_us).await?;
                    continue;
                }
            }
            if tokio::time::Instant::now() >= c.deadline {
                break;
            }
        }
        let id = OpId { client: c.client, counter };
        counter += 1;
        sink.send(Record::Invoke(id)).await?;
        counters.invoked.fetch_add(1, Ordering::Relaxed);
        in_flight.push(publish_one(publisher, id, payload.to_vec(), c.timeout));
    }
    // Drain: every publish already invoked completes (or times out) and is recorded.
    while let Some(done) = in_flight.next().await {
        record(done, &sink, &counters, &mut latency_us).await?;
    }
    Ok(latency_us)
}

/// Counts a completion, records its latency and sends it to the history.
async fn record(
    done: Completion,
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
    sink.send(Record::Done(done.id, done.outcome)).await
}
