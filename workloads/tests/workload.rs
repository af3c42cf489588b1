//! The workload against an in-process fake publisher: every invoke completes
//! exactly once, the history passes the format validator, outcomes map to
//! ok/fail/info, the rate limit holds, and pipelining stays within its bound.

use jetsam_core::history::{HistoryValidator, Op, OpType};
use jetsam_targets::{BoxFuture, PublishOutcome, Publisher};
use jetsam_workloads::{Counters, HistoryWriter, WorkloadConfig, run};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Acks most publishes after a short delay; every 7th is rejected, every
/// 11th never answers (so the workload's timeout makes it `info`).
struct Fake {
    seq: Arc<AtomicU64>,
    in_flight: AtomicU64,
    in_flight_peak: AtomicU64,
    payload_lens: Mutex<Vec<usize>>,
}

impl Fake {
    fn new(seq: Arc<AtomicU64>) -> Self {
        Fake { seq, in_flight: AtomicU64::new(0), in_flight_peak: AtomicU64::new(0), payload_lens: Mutex::new(vec![]) }
    }
}

impl Publisher for Fake {
    fn publish(&self, id: String, payload: Vec<u8>) -> BoxFuture<'_, PublishOutcome> {
        Box::pin(async move {
            self.payload_lens.lock().unwrap().push(payload.len());
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.in_flight_peak.fetch_max(now, Ordering::SeqCst);
            // Decrements also when the workload drops a timed-out publish.
            let _guard = InFlight(&self.in_flight);
            let counter: u64 = id.split_once('-').unwrap().1.parse().unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
            if counter % 11 == 10 {
                std::future::pending::<()>().await;
                unreachable!()
            } else if counter % 7 == 6 {
                PublishOutcome::Fail { error: "rejected".into() }
            } else {
                PublishOutcome::Ok { seq: self.seq.fetch_add(1, Ordering::SeqCst) + 1, node: "n1".into() }
            }
        })
    }
}

struct InFlight<'a>(&'a AtomicU64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn read_history(path: &std::path::Path) -> Vec<Op> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut v = HistoryValidator::new();
    text.lines()
        .map(|l| {
            let op: Op = serde_json::from_str(l).unwrap();
            v.check(&op).unwrap();
            op
        })
        .collect()
}

async fn run_fake(config: WorkloadConfig) -> (Vec<Op>, Vec<Arc<Fake>>, jetsam_workloads::WorkloadResult) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.jsonl");
    let seq = Arc::new(AtomicU64::new(0));
    let fakes: Vec<Arc<Fake>> = (0..config.clients).map(|_| Arc::new(Fake::new(seq.clone()))).collect();
    let publishers = fakes.iter().map(|f| f.clone() as Arc<dyn Publisher>).collect();
    let (writer, sink) = HistoryWriter::spawn(&path, Instant::now()).unwrap();
    let counters = Arc::new(Counters::default());
    let result = run(&config, publishers, sink, counters).await.unwrap();
    let lines = writer.finish().await.unwrap();
    let ops = read_history(&path);
    assert_eq!(lines, ops.len() as u64);
    (ops, fakes, result)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_workload_records_every_outcome() {
    let config = WorkloadConfig {
        clients: 3,
        rate_per_s: None,
        payload_bytes: 64,
        timeout: Duration::from_millis(100),
        duration: Duration::from_millis(400),
        in_flight_max: 4,
        seed: 7,
    };
    let (ops, fakes, result) = run_fake(config).await;
    let mut by_kind: BTreeMap<OpType, u64> = BTreeMap::new();
    for op in &ops {
        *by_kind.entry(op.kind).or_default() += 1;
    }
    let invokes = by_kind[&OpType::Invoke];
    assert!(invokes > 30, "expected a busy workload, got {invokes} invokes");
    // Every invoke completed exactly once (the validator rejects doubles).
    assert_eq!(invokes, by_kind[&OpType::Ok] + by_kind[&OpType::Fail] + by_kind[&OpType::Info]);
    assert_eq!(result.counts.acked, by_kind[&OpType::Ok]);
    assert_eq!(result.counts.failed, by_kind[&OpType::Fail]);
    assert_eq!(result.counts.info, by_kind[&OpType::Info]);
    assert!(by_kind[&OpType::Info] > 0 && by_kind[&OpType::Fail] > 0);
    for op in ops.iter().filter(|o| o.kind == OpType::Info) {
        assert!(op.error.as_deref().unwrap().contains("timeout"), "{op:?}");
    }
    for f in &fakes {
        let peak = f.in_flight_peak.load(Ordering::SeqCst);
        assert!((2..=4).contains(&peak), "in-flight peak {peak} outside 2..=4");
        assert!(f.payload_lens.lock().unwrap().iter().all(|&l| l == 64));
    }
    let latency = result.latency().unwrap();
    assert!(latency.p50_us >= 1_000 && latency.p50_us <= latency.p99_us && latency.p99_us <= latency.max_us);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_spreads_the_total_rate_over_clients() {
    let config = WorkloadConfig {
        clients: 4,
        rate_per_s: Some(200),
        payload_bytes: 8,
        timeout: Duration::from_millis(100),
        duration: Duration::from_millis(1000),
        in_flight_max: 8,
        seed: 1,
    };
    let (ops, _, _) = run_fake(config).await;
    let invokes: Vec<&Op> = ops.iter().filter(|o| o.kind == OpType::Invoke).collect();
    // 200/s for 1 s: one tick per client at t=0 plus 50 per client; allow scheduling slack.
    assert!((150..=210).contains(&invokes.len()), "{} invokes at 200/s for 1s", invokes.len());
    for client in 0..4 {
        let n = invokes.iter().filter(|o| o.client == client).count();
        assert!((35..=53).contains(&n), "client {client} made {n} invokes, expected about 50");
    }
}

/// Answers publish `k` of a batch of 8 after (8 - k % 8) * 15 ms: later
/// invokes come back first, so completions arrive out of invoke order.
struct Reversed {
    seq: AtomicU64,
}

impl Publisher for Reversed {
    fn publish(&self, id: String, _payload: Vec<u8>) -> BoxFuture<'_, PublishOutcome> {
        Box::pin(async move {
            let counter: u64 = id.split_once('-').unwrap().1.parse().unwrap();
            tokio::time::sleep(Duration::from_millis((8 - counter % 8) * 15)).await;
            PublishOutcome::Ok { seq: self.seq.fetch_add(1, Ordering::SeqCst) + 1, node: "n1".into() }
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_come_in_any_order_and_late_ones_are_still_recorded() {
    let config = WorkloadConfig {
        clients: 2,
        rate_per_s: None,
        payload_bytes: 16,
        timeout: Duration::from_secs(5),
        duration: Duration::from_millis(300),
        in_flight_max: 8,
        seed: 3,
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.jsonl");
    let publishers: Vec<Arc<dyn Publisher>> =
        (0..2).map(|_| Arc::new(Reversed { seq: AtomicU64::new(0) }) as Arc<dyn Publisher>).collect();
    let start = Instant::now();
    let (writer, sink) = HistoryWriter::spawn(&path, start).unwrap();
    let result = run(&config, publishers, sink, Arc::new(Counters::default())).await.unwrap();
    writer.finish().await.unwrap();
    let ops = read_history(&path);
    let invokes = ops.iter().filter(|o| o.kind == OpType::Invoke).count() as u64;
    let oks: Vec<&Op> = ops.iter().filter(|o| o.kind == OpType::Ok).collect();
    assert!(invokes >= 16, "{invokes} invokes");
    assert_eq!(oks.len() as u64, invokes, "every invoke acknowledged exactly once");
    assert_eq!(result.counts.acked, invokes);
    // Within each client, some ok comes back before an earlier invoke's ok.
    for client in 0..2 {
        let counters: Vec<u64> = oks
            .iter()
            .filter(|o| o.client == client)
            .map(|o| o.id.to_string().split_once('-').unwrap().1.parse().unwrap())
            .collect();
        assert!(counters.windows(2).any(|w| w[1] < w[0]), "client {client} completed in invoke order: {counters:?}");
    }
    // Publishes invoked before the deadline and answered after it are recorded too.
    let duration_ns = config.duration.as_nanos() as u64;
    assert!(oks.iter().any(|o| o.t_ns > duration_ns), "no ok after the {duration_ns} ns deadline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_history_writer_stops_the_workload_with_its_error() {
    let full = std::path::Path::new("/dev/full");
    if !full.exists() {
        eprintln!("skipping: no /dev/full on this system");
        return;
    }
    let config = WorkloadConfig {
        clients: 2,
        rate_per_s: None,
        payload_bytes: 8,
        timeout: Duration::from_millis(100),
        duration: Duration::from_secs(30),
        in_flight_max: 4,
        seed: 5,
    };
    let seq = Arc::new(AtomicU64::new(0));
    let publishers: Vec<Arc<dyn Publisher>> =
        (0..2).map(|_| Arc::new(Fake::new(seq.clone())) as Arc<dyn Publisher>).collect();
    let started = Instant::now();
    let (writer, sink) = HistoryWriter::spawn(full, started).unwrap();
    let err = run(&config, publishers, sink, Arc::new(Counters::default())).await.unwrap_err();
    // Whichever hits the full disk first, a client's write or the periodic flush, stops the run.
    let text = err.to_string();
    assert!(
        text.contains("history writer stopped early") || text.contains("failed to write the history /dev/full"),
        "{text}"
    );
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?} of a 30 s workload", started.elapsed());
    let err = writer.finish().await.unwrap_err();
    assert!(err.to_string().contains("/dev/full"), "{err}");
}
