//! Publish rate through jetsam's NATS `Publisher` against a bare async-nats
//! pipelined loop, on the same R3 nats-server cluster on loopback (started
//! and stopped here). Prints figures; asserts nothing about speed.
//!
//! Usage: nats_bench [VERSION] [SECONDS] [CLIENTS] [IN_FLIGHT] [SYNC]
//! (defaults 2.12.1, 3, 4, 256, always; SYNC "default" leaves nats-server's
//! 2-minute interval). Run through scripts/bench-nats.sh.

use async_nats::jetstream;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use jetsam_core::scenario::Scenario;
use jetsam_targets::nats::{self, NatsTarget};
use jetsam_targets::{NodeSpec, PublishOutcome, Publisher, Target};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

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

fn arg<T: std::str::FromStr>(args: &[String], i: usize, default: T) -> T {
    args.get(i).map(|a| a.parse().unwrap_or_else(|_| panic!("argument {i} {a:?} is not valid"))).unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let version: String = arg(&args, 1, "2.12.1".to_string());
    let seconds: u64 = arg(&args, 2, 3);
    let clients: u32 = arg(&args, 3, 4);
    let in_flight: usize = arg(&args, 4, 256);
    let sync: String = arg(&args, 5, "always".to_string());
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
         [stream]\nreplicas = 3\n{sync_line}[workload]\nclients = {clients}\npayload_bytes = 64\ntimeout = \"5s\"\n"
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
            "nats-server {version}, 3 nodes, R3 file stream, sync {sync}, 64-byte payloads, {clients} clients x {in_flight} in flight, {seconds} s each"
        );
        let harness = harness_rate(&target, &scenario, &specs, clients, in_flight, seconds).await;
        println!("jetsam Publisher:        {:>8.0} acked/s ({} acked, {} not)", harness.0, harness.1, harness.2);
        let bare = bare_rate(&specs, clients, in_flight, seconds).await;
        println!("bare async-nats loop:    {:>8.0} acked/s ({} acked, {} not)", bare.0, bare.1, bare.2);
        println!("ratio Publisher / bare:  {:>8.2}", harness.0 / bare.0.max(1.0));
        let counts = nats::jsz_counts(&specs).await;
        println!("per-node (messages, first, last) after both: {counts:?}");
        let started = Instant::now();
        let view = target.read_cluster(&scenario, &specs).await.expect("a cluster view").expect("the stream reads back");
        let elapsed = started.elapsed().as_secs_f64();
        println!(
            "read_cluster (ordered consumer): {} messages in {elapsed:.2} s = {:.0} msgs/s",
            view.len(),
            view.len() as f64 / elapsed
        );
    });
    drop(nodes);
}

/// Each client keeps `in_flight` publishes going through its `Publisher` for `seconds`.
async fn harness_rate(
    target: &NatsTarget,
    scenario: &Scenario,
    specs: &[NodeSpec],
    clients: u32,
    in_flight: usize,
    seconds: u64,
) -> (f64, u64, u64) {
    let acked = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..clients {
        let publisher: Arc<dyn Publisher> =
            Arc::from(target.publisher(scenario, specs, client).await.expect("connect"));
        for lane in 0..in_flight {
            let (publisher, acked, failed) = (Arc::clone(&publisher), Arc::clone(&acked), Arc::clone(&failed));
            tasks.spawn(async move {
                let mut counter = 0u64;
                while Instant::now() < deadline {
                    let id = format!("h{client}-{lane}-{counter}");
                    counter += 1;
                    match publisher.publish(id, vec![b'p'; 64]).await {
                        PublishOutcome::Ok { .. } => acked.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            });
        }
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = start.elapsed().as_secs_f64();
    let acked = acked.load(Ordering::Relaxed);
    (acked as f64 / elapsed, acked, failed.load(Ordering::Relaxed))
}

/// One async-nats client per node in turn, `in_flight` ack futures pending at a time.
async fn bare_rate(specs: &[NodeSpec], clients: u32, in_flight: usize, seconds: u64) -> (f64, u64, u64) {
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..clients {
        let addr = specs[client as usize % specs.len()].client_addr;
        tasks.spawn(async move {
            let nc = async_nats::connect(format!("nats://{addr}")).await.expect("connect");
            let js = jetstream::ContextBuilder::new()
                .timeout(Duration::from_secs(5))
                .max_ack_inflight(in_flight * 2)
                .backpressure_on_inflight(true)
                .build(nc);
            let (mut acked, mut failed) = (0u64, 0u64);
            let mut pending = FuturesUnordered::new();
            while Instant::now() < deadline {
                while pending.len() < in_flight {
                    match js.publish(nats::SUBJECT, vec![b'p'; 64].into()).await {
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
    let (mut acked, mut failed) = (0, 0);
    while let Some(joined) = tasks.join_next().await {
        let (a, f) = joined.expect("bare client task");
        acked += a;
        failed += f;
    }
    let elapsed = start.elapsed().as_secs_f64();
    (acked as f64 / elapsed, acked, failed)
}
