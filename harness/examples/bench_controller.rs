//! Benchmark of the controller (run by scripts/bench-controller.sh). Prints
//! figures; asserts nothing about speed.
//!
//! 1. Start-to-ready time of a 5-node reference-node cluster as `jetsam run`
//!    starts it (ports, dirs, spawn in process groups, wait until a leader
//!    answers, create the stream), repeated.
//! 2. Acked publishes per second on one 3-node R3 cluster (strong, sync
//!    "always"), alternating: a bare client loop (the same publishers and
//!    in-flight bound, recording nothing) and the controller's workload
//!    (history writer, per-op records, HDR latencies). The ratio is the
//!    controller's overhead (goal >= 0.9).
//!
//! Usage: bench_controller [--secs N] [--rounds N] [--clients N] [--in-flight N]
//! (JETSAM_NODE_BIN = the node binary, else found beside this executable)

use jetsam_core::scenario::Scenario;
use jetsam_harness::cluster::{Cluster, ClusterOptions};
use jetsam_targets::node::NodeTarget;
use jetsam_targets::{PublishOutcome, Publisher, Target};
use jetsam_workloads::{Counters, HistoryWriter, WorkloadConfig};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name} takes a number")))
        .unwrap_or(default)
}

fn scenario(nodes: u32, clients: u32, in_flight: u32) -> Scenario {
    let text = format!(
        "name = \"bench\"\nnodes = {nodes}\nduration = \"10s\"\n[stream]\nreplicas = {nodes}\nconsistency = \"strong\"\n\
         sync = \"always\"\n[workload]\nclients = {clients}\nin_flight = {in_flight}\npayload_bytes = 128\ntimeout = \"2s\"\n"
    );
    Scenario::from_toml_str("bench", &text).expect("bench scenario parses")
}

async fn start(dir: &std::path::Path, s: &Scenario, target: &NodeTarget) -> (Cluster, Duration) {
    let t = Instant::now();
    let mut cluster = Cluster::prepare(dir, s, target, ClusterOptions::default()).await.expect("prepare");
    cluster.start_all().expect("start");
    target.wait_ready(cluster.specs(), Duration::from_secs(30)).await.expect("ready");
    target.create_stream(s, cluster.specs(), Duration::from_secs(30)).await.expect("stream");
    (cluster, t.elapsed())
}

async fn publishers(s: &Scenario, cluster: &Cluster, target: &NodeTarget) -> Vec<Arc<dyn Publisher>> {
    let mut out = Vec::new();
    for c in 0..s.workload.clients {
        out.push(Arc::from(target.publisher(s, cluster.specs(), c).await.expect("publisher")));
    }
    out
}

/// The bare loop: each client keeps `in_flight` publishes going, counts acks, records nothing.
async fn bare(pubs: Vec<Arc<dyn Publisher>>, in_flight: u32, secs: u64, tag: u64) -> f64 {
    let acked = Arc::new(AtomicU64::new(0));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    let t = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (client, p) in pubs.into_iter().enumerate() {
        for lane in 0..in_flight {
            let p = p.clone();
            let acked = acked.clone();
            tasks.spawn(async move {
                let mut n = 0u64;
                while tokio::time::Instant::now() < deadline {
                    let id =
                        format!("{}-{}", 1000 + tag * 100 + client as u64, n * u64::from(in_flight) + u64::from(lane));
                    n += 1;
                    let out = tokio::time::timeout(Duration::from_secs(2), p.publish(id, vec![b'x'; 128])).await;
                    if let Ok(PublishOutcome::Ok { .. }) = out {
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    }
    while tasks.join_next().await.is_some() {}
    acked.load(Ordering::Relaxed) as f64 / t.elapsed().as_secs_f64()
}

async fn workload(pubs: Vec<Arc<dyn Publisher>>, s: &Scenario, secs: u64, dir: &std::path::Path) -> f64 {
    let path = dir.join(format!("history-{}.jsonl", Instant::now().elapsed().as_nanos()));
    let (writer, sink) = HistoryWriter::spawn(&path, Instant::now()).expect("history");
    let config = WorkloadConfig {
        clients: s.workload.clients,
        rate_per_s: None,
        payload_bytes: s.workload.payload_bytes,
        timeout: s.workload.timeout,
        duration: Duration::from_secs(secs),
        in_flight_max: s.workload.in_flight,
        seed: 1,
    };
    let t = Instant::now();
    let result = jetsam_workloads::run(&config, pubs, sink, Arc::new(Counters::default())).await.expect("workload");
    writer.finish().await.expect("history written");
    let rate = result.counts.acked as f64 / t.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&path);
    rate
}

#[tokio::main]
async fn main() {
    let secs = arg("--secs", 5);
    let rounds = arg("--rounds", 3);
    let clients = arg("--clients", 4) as u32;
    let in_flight = arg("--in-flight", 8) as u32;
    let target = NodeTarget::locate(None).expect("jetsam-node binary (cargo build --release --bins)");
    let tmp = tempfile::tempdir().expect("tempdir");

    let mut ready_ms = Vec::new();
    for i in 0..rounds {
        let dir = tmp.path().join(format!("ready{i}"));
        let (mut cluster, took) = start(&dir, &scenario(5, 1, 1), &target).await;
        ready_ms.push(took.as_secs_f64() * 1e3);
        cluster.stop_all();
    }
    ready_ms.sort_by(f64::total_cmp);
    println!(
        "5-node start to ready (stream created): min {:.0} ms, median {:.0} ms, max {:.0} ms over {rounds} starts (goal < 3000 ms)",
        ready_ms[0],
        ready_ms[ready_ms.len() / 2],
        ready_ms[ready_ms.len() - 1]
    );

    let s = scenario(3, clients, in_flight);
    let dir = tmp.path().join("load");
    let (mut cluster, _) = start(&dir, &s, &target).await;
    let (mut bare_rates, mut ctl_rates) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        bare_rates.push(bare(publishers(&s, &cluster, &target).await, in_flight, secs, round).await);
        ctl_rates.push(workload(publishers(&s, &cluster, &target).await, &s, secs, &dir).await);
        println!(
            "round {}: bare loop {:.0} acked/s, controller workload {:.0} acked/s",
            round + 1,
            bare_rates[round as usize],
            ctl_rates[round as usize]
        );
    }
    cluster.stop_all();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    println!(
        "3-node R3 strong+always, {clients} clients x {in_flight} in flight, {secs}s x {rounds}: bare {:.0} acked/s, controller {:.0} acked/s, ratio {:.2} (goal >= 0.9)",
        mean(&bare_rates),
        mean(&ctl_rates),
        mean(&ctl_rates) / mean(&bare_rates)
    );
}
