//! Publish rate of the harness's real publish path against a bare
//! async-nats pipelined loop, on the same R3 nats-server cluster on loopback
//! (started and stopped here). The harness path is what `jetsam run` runs:
//! `jetsam_workloads::run` with one `NatsTarget` publisher per client and a
//! real history writer into a temporary run folder (harness/src/run.rs
//! wires it the same way). Both use the same clients, publishes in flight
//! per client and payload size, and alternate over ROUNDS rounds so a
//! passing load on the shared machine hits both. Prints figures; asserts
//! nothing about speed.
//!
//! Usage: nats_bench [VERSION] [SECONDS] [CLIENTS] [IN_FLIGHT] [SYNC] [ROUNDS]
//! (defaults 2.12.1, 3, 4, 256, always, 2; SYNC "default" leaves nats-server's
//! 2-minute interval). Run through scripts/bench-nats.sh.

use async_nats::jetstream;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use jetsam_core::scenario::Scenario;
use jetsam_targets::nats::{self, NatsTarget};
use jetsam_targets::{NodeSpec, Publisher, Target};
use jetsam_workloads::{Counters, HistoryWriter, WorkloadConfig};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes of every message body, on both paths.
const PAYLOAD_BYTES: u32 = 64;
/// The publish timeout, on both paths.
const TIMEOUT: Duration = Duration::from_secs(5);

/// SIGKILLs the nodes when the bench ends, however it ends.
struct Nodes(Vec<Child>);

impl Drop for Nodes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One path's figures over one round.
struct Rate {
    acked: u64,
    not_acked: u64,
    seconds: f64,
    /// CPU time this process (the client side only) spent on the round.
    cpu_seconds: f64,
}

impl Rate {
    fn per_s(&self) -> f64 {
        self.acked as f64 / self.seconds
    }

    /// Client CPU per acknowledged publish: steadier than the rate when other
    /// work shares the machine, and on 2 cores it is CPU the servers lack.
    fn cpu_us_per_ack(&self) -> f64 {
        self.cpu_seconds * 1e6 / self.acked.max(1) as f64
    }
}

/// User plus system CPU time of this process so far, in seconds.
fn cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given; RUSAGE_SELF is always valid.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    assert_eq!(rc, 0, "getrusage(RUSAGE_SELF) failed");
    // SAFETY: getrusage returned 0, so it filled the struct.
    let usage = unsafe { usage.assume_init() };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 { values[mid] } else { (values[mid - 1] + values[mid]) / 2.0 }
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize, default: T) -> T {
    args.get(i).map(|a| a.parse().unwrap_or_else(|_| panic!("argument {i} {a:?} is not valid"))).unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let version: String = arg(&args, 1, "2.12.1".to_string());
    let seconds: u64 = arg(&args, 2, 3);
    let clients: u32 = arg(&args, 3, 4);
    let in_flight: u32 = arg(&args, 4, 256);
    let sync: String = arg(&args, 5, "always".to_string());
    let rounds: u32 = arg(&args, 6, 2);
    assert!(seconds > 0 && clients > 0 && in_flight > 0 && rounds > 0, "every number must be at least 1");
    let sync_line = match sync.as_str() {
        "default" => String::new(),
        other => format!("sync = \"{other}\"\n"),
    };
    let server = nats::find_nats_server(&version, None).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(jetsam_core::exit::ENVIRONMENT);
    });
    let text = format!(
        "name = \"nats-bench\"\nnodes = 3\nduration = \"{seconds}s\"\n[target]\nkind = \"nats\"\nversion = \"{version}\"\n\
         [stream]\nreplicas = 3\n{sync_line}[workload]\nclients = {clients}\nin_flight = {in_flight}\n\
         payload_bytes = {PAYLOAD_BYTES}\ntimeout = \"{}s\"\n",
        TIMEOUT.as_secs()
    );
    let scenario = Scenario::from_toml_str("bench", &text).expect("the bench scenario parses");
    let target = NatsTarget::new(server);
    target.validate(&scenario).expect("the bench scenario is valid");

    let dir = tempfile::tempdir().expect("a temp dir");
    let listeners: Vec<TcpListener> = (0..12).map(|_| TcpListener::bind("127.0.0.1:0").expect("a free port")).collect();
    let addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    drop(listeners);
    let names = scenario.node_names();
    let specs: Vec<NodeSpec> = names
        .iter()
        .enumerate()
        .map(|(i, name)| NodeSpec {
            name: name.clone(),
            data_dir: dir.path().join(name),
            conf_dir: dir.path().join("conf"),
            client_addr: addrs[i * 4],
            peer_listen_addr: addrs[i * 4 + 1],
            peers: (0..names.len()).filter(|j| *j != i).map(|j| (names[j].clone(), addrs[j * 4 + 1])).collect(),
            monitor_addr: addrs[i * 4 + 2],
            dead_addr: addrs[i * 4 + 3],
        })
        .collect();
    let mut nodes = Nodes(Vec::new());
    for spec in &specs {
        let command = target.command(&scenario, spec).expect("config written");
        let log = std::fs::File::create(dir.path().join(format!("{}.log", spec.name))).unwrap();
        nodes.0.push(
            Command::new(&command.program)
                .args(&command.args)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("nats-server starts"),
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        target.wait_ready(&specs, Duration::from_secs(30)).await.expect("cluster ready");
        target.create_stream(&scenario, &specs, Duration::from_secs(30)).await.expect("stream created");
        println!(
            "nats-server {version}, 3 nodes, R3 file stream, sync {sync}, {PAYLOAD_BYTES}-byte payloads, \
             {clients} clients x {in_flight} in flight, {seconds} s per path, {rounds} rounds"
        );
        let (mut harness_total, mut bare_total) = (0.0, 0.0);
        let (mut ratios, mut harness_cpu, mut bare_cpu) = (Vec::new(), Vec::new(), Vec::new());
        for round in 1..=rounds {
            let run_dir = dir.path().join(format!("run-{round}"));
            let harness = harness_rate(&target, &scenario, &specs, &run_dir, round).await;
            let bare = bare_rate(&specs, clients, in_flight as usize, seconds).await;
            let ratio = harness.per_s() / bare.per_s().max(1.0);
            println!(
                "round {round}: harness path {:>7.0} acked/s ({} acked, {} not, {:.2} us client CPU/ack) | \
                 bare async-nats {:>7.0} acked/s ({} acked, {} not, {:.2} us client CPU/ack) | ratio {ratio:.2}",
                harness.per_s(),
                harness.acked,
                harness.not_acked,
                harness.cpu_us_per_ack(),
                bare.per_s(),
                bare.acked,
                bare.not_acked,
                bare.cpu_us_per_ack(),
            );
            harness_total += harness.per_s();
            bare_total += bare.per_s();
            ratios.push(ratio);
            harness_cpu.push(harness.cpu_us_per_ack());
            bare_cpu.push(bare.cpu_us_per_ack());
        }
        let n = f64::from(rounds);
        println!(
            "harness path (jetsam_workloads::run): {:>7.0} acked/s (mean), {:.2} us client CPU per ack (median)",
            harness_total / n,
            median(harness_cpu)
        );
        println!(
            "bare async-nats loop:                 {:>7.0} acked/s (mean), {:.2} us client CPU per ack (median)",
            bare_total / n,
            median(bare_cpu)
        );
        println!(
            "ratio harness / bare: {:.2} (of the mean rates), {:.2} (median of the rounds' ratios)",
            harness_total / bare_total.max(1.0),
            median(ratios)
        );
        let (invoked, ns) = harness_overhead(&scenario, &dir.path().join("run-overhead"), 1).await;
        println!(
            "harness path alone (publishers that ack at once, no server): {invoked} publishes in 1 s, {ns:.0} ns client CPU each"
        );
        let counts = nats::jsz_counts(&specs).await;
        println!("per-node (messages, first, last) after all rounds: {counts:?}");
        let started = Instant::now();
        let view =
            target.read_cluster(&scenario, &specs).await.expect("a cluster view").expect("the stream reads back");
        let elapsed = started.elapsed().as_secs_f64();
        println!(
            "read_cluster (ordered consumer): {} messages in {elapsed:.2} s = {:.0} msgs/s",
            view.len(),
            view.len() as f64 / elapsed
        );
    });
    drop(nodes);
}

/// Acknowledges every publish at once, without I/O: what is left is the
/// harness path's own cost.
struct Instant0 {
    seq: std::sync::atomic::AtomicU64,
}

impl Publisher for Instant0 {
    fn publish(&self, _id: String, payload: Vec<u8>) -> jetsam_targets::BoxFuture<'_, jetsam_targets::PublishOutcome> {
        let seq = self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        drop(payload);
        Box::pin(std::future::ready(jetsam_targets::PublishOutcome::Ok { seq, node: "n1".to_string() }))
    }
}

/// The harness path's client CPU per publish with [`Instant0`] publishers
/// (no server, no socket), over `seconds`.
async fn harness_overhead(scenario: &Scenario, run_dir: &Path, seconds: u64) -> (u64, f64) {
    std::fs::create_dir_all(run_dir).expect("a run folder");
    let publishers: Vec<Arc<dyn Publisher>> = (0..scenario.workload.clients)
        .map(|_| Arc::new(Instant0 { seq: Default::default() }) as Arc<dyn Publisher>)
        .collect();
    let config = WorkloadConfig {
        clients: scenario.workload.clients,
        rate_per_s: None,
        payload_bytes: scenario.workload.payload_bytes,
        timeout: scenario.workload.timeout,
        duration: Duration::from_secs(seconds),
        in_flight_max: scenario.workload.in_flight,
        seed: 0,
    };
    let cpu_start = cpu_seconds();
    let (writer, sink) = HistoryWriter::spawn(&run_dir.join("history.jsonl"), Instant::now()).expect("a history file");
    let result = jetsam_workloads::run(&config, publishers, sink, Arc::new(Counters::default())).await.expect("runs");
    writer.finish().await.expect("the history is written");
    let invoked = result.counts.invoked;
    (invoked, (cpu_seconds() - cpu_start) * 1e9 / invoked.max(1) as f64)
}

/// The harness's publish path: one `NatsTarget` publisher per client,
/// `jetsam_workloads::run` for the scenario's duration, history written to
/// `run_dir/history.jsonl`.
async fn harness_rate(
    target: &NatsTarget,
    scenario: &Scenario,
    specs: &[NodeSpec],
    run_dir: &Path,
    round: u32,
) -> Rate {
    std::fs::create_dir_all(run_dir).expect("a run folder");
    let mut publishers: Vec<Arc<dyn Publisher>> = Vec::new();
    for client in 0..scenario.workload.clients {
        publishers.push(Arc::from(target.publisher(scenario, specs, client).await.expect("connect")));
    }
    let config = WorkloadConfig {
        clients: scenario.workload.clients,
        rate_per_s: None,
        payload_bytes: scenario.workload.payload_bytes,
        timeout: scenario.workload.timeout,
        duration: scenario.duration,
        in_flight_max: scenario.workload.in_flight,
        seed: u64::from(round),
    };
    let cpu_start = cpu_seconds();
    let start = Instant::now();
    let (writer, sink) = HistoryWriter::spawn(&run_dir.join("history.jsonl"), start).expect("a history file");
    let counters = Arc::new(Counters::default());
    let result = jetsam_workloads::run(&config, publishers, sink, counters).await.expect("the workload runs");
    let lines = writer.finish().await.expect("the history is written");
    let seconds = start.elapsed().as_secs_f64();
    let c = result.counts;
    assert_eq!(lines, c.invoked * 2, "every invoke and its completion are in the history");
    Rate { acked: c.acked, not_acked: c.failed + c.info, seconds, cpu_seconds: cpu_seconds() - cpu_start }
}

/// One async-nats client per node in turn, `in_flight` ack futures pending at a time.
async fn bare_rate(specs: &[NodeSpec], clients: u32, in_flight: usize, seconds: u64) -> Rate {
    let cpu_start = cpu_seconds();
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..clients {
        let addr = specs[client as usize % specs.len()].client_addr;
        tasks.spawn(async move {
            let nc = async_nats::connect(format!("nats://{addr}")).await.expect("connect");
            let js = jetstream::ContextBuilder::new()
                .timeout(TIMEOUT)
                .max_ack_inflight(in_flight * 2)
                .backpressure_on_inflight(true)
                .build(nc);
            let (mut acked, mut failed) = (0u64, 0u64);
            let mut pending = FuturesUnordered::new();
            while Instant::now() < deadline {
                while pending.len() < in_flight {
                    match js.publish(nats::SUBJECT, vec![b'p'; PAYLOAD_BYTES as usize].into()).await {
                        Ok(ack) => pending.push(ack.into_future()),
                        Err(_) => failed += 1,
                    }
                }
                match pending.next().await {
                    Some(Ok(_)) => acked += 1,
                    Some(Err(_)) => failed += 1,
                    None => {}
                }
            }
            while let Some(result) = pending.next().await {
                if result.is_ok() { acked += 1 } else { failed += 1 }
            }
            (acked, failed)
        });
    }
    let (mut acked, mut not_acked) = (0, 0);
    while let Some(joined) = tasks.join_next().await {
        let (a, f) = joined.expect("bare client task");
        acked += a;
        not_acked += f;
    }
    Rate { acked, not_acked, seconds: start.elapsed().as_secs_f64(), cpu_seconds: cpu_seconds() - cpu_start }
}
