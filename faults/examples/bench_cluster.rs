//! The figure for link proxies: acknowledged publishes per second and
//! publish latency (p50/p99) of a 3-node R3 `jetsam-node` cluster whose nodes
//! reach each other through [`LinkProxies`], against the same cluster with
//! direct peer connections. Clients talk to the nodes directly in both cases,
//! so the difference is the proxies on the replication path.
//! Run it with `scripts/bench-proxy.sh --cluster`; it prints figures, it
//! asserts nothing about speed. Needs the release `jetsam-node` binary
//! (the script builds it).
//!
//! Usage: `bench_cluster [--seconds N] [--clients N] [--inflight N] [--sync always|INTERVAL] [--repeat N]`

use jetsam_core::scenario::Scenario;
use jetsam_faults::net::{Link, LinkProxies};
use jetsam_targets::node::NodeTarget;
use jetsam_targets::{NodeSpec, PublishOutcome, Publisher, Target};
use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bound on cluster start-up (readiness and stream creation).
const READY_TIMEOUT_MS: u64 = 30_000;
/// A publish with no answer by then counts as indeterminate.
const PUBLISH_TIMEOUT_MS: u64 = 5_000;
/// Load before measuring (connections, leader discovery, caches).
const WARMUP_MS: u64 = 1_000;

struct Options {
    seconds: u64,
    clients: u32,
    inflight: u32,
    sync: String,
    repeat: usize,
}

fn parse_options() -> Result<Options, String> {
    let mut o = Options { seconds: 10, clients: 4, inflight: 16, sync: "always".into(), repeat: 1 };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let parse = |v: &str| v.parse::<u64>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--seconds" => o.seconds = parse(&value)?,
            "--clients" => o.clients = parse(&value)? as u32,
            "--inflight" => o.inflight = parse(&value)? as u32,
            "--sync" => o.sync = value,
            "--repeat" => o.repeat = parse(&value)? as usize,
            _ => return Err(format!("unknown flag {flag}; use --seconds, --clients, --inflight, --sync, --repeat")),
        }
    }
    if o.seconds == 0 || o.clients == 0 || o.inflight == 0 || o.repeat == 0 {
        return Err("--seconds, --clients, --inflight and --repeat must be at least 1".into());
    }
    Ok(o)
}

/// The node processes of one cluster; killed (and reaped) on drop, so a
/// failing benchmark leaves nothing running.
struct Cluster {
    children: Vec<Child>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_addr() -> SocketAddr {
    // The port is released at once; the node binds it a moment later (a race
    // another process could win, reported as a start-up failure).
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind a free loopback port")
}

struct Figures {
    acked_per_s: f64,
    p50_us: f64,
    p99_us: f64,
    failed: u64,
    indeterminate: u64,
    /// The first non-ack answer seen, to tell a broken run from a slow one.
    first_error: Option<String>,
}

async fn run_once(target: &NodeTarget, scenario: &Scenario, o: &Options, proxied: bool) -> Result<Figures, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("failed to make a temp dir: {e}"))?;
    let names = scenario.node_names();
    let mut specs: Vec<NodeSpec> = names
        .iter()
        .map(|name| NodeSpec {
            name: name.clone(),
            data_dir: dir.path().join(name).join("data"),
            conf_dir: dir.path().join(name).join("conf"),
            client_addr: free_addr(),
            peer_listen_addr: free_addr(),
            peers: BTreeMap::new(),
            monitor_addr: free_addr(),
            dead_addr: free_addr(),
        })
        .collect();
    let real: BTreeMap<String, SocketAddr> = specs.iter().map(|s| (s.name.clone(), s.peer_listen_addr)).collect();
    let proxies = if proxied {
        let mut links = Vec::new();
        for from in &names {
            for to in &names {
                if from != to {
                    links.push(Link { from: from.clone(), to: to.clone(), upstream: real[to] });
                }
            }
        }
        Some(LinkProxies::start(links).await.map_err(|e| e.to_string())?)
    } else {
        None
    };
    for spec in &mut specs {
        for (peer, addr) in &real {
            if *peer != spec.name {
                let via = proxies.as_ref().map_or(*addr, |p| p.listen_addr(&spec.name, peer).expect("link started"));
                spec.peers.insert(peer.clone(), via);
            }
        }
    }
    let mut cluster = Cluster { children: Vec::new() };
    for spec in &specs {
        std::fs::create_dir_all(&spec.data_dir).map_err(|e| format!("failed to create {:?}: {e}", spec.data_dir))?;
        std::fs::create_dir_all(&spec.conf_dir).map_err(|e| format!("failed to create {:?}: {e}", spec.conf_dir))?;
        let cmd = target.command(scenario, spec).map_err(|e| e.to_string())?;
        let log = std::fs::File::create(dir.path().join(format!("{}.log", spec.name)))
            .map_err(|e| format!("failed to create a node log: {e}"))?;
        let err_log = log.try_clone().map_err(|e| format!("failed to clone a log handle: {e}"))?;
        let child = Command::new(&cmd.program)
            .args(&cmd.args)
            .envs(&cmd.env)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err_log)
            .spawn()
            .map_err(|e| format!("failed to start {}: {e}", cmd.program.display()))?;
        cluster.children.push(child);
    }
    let ready = Duration::from_millis(READY_TIMEOUT_MS);
    target.wait_ready(&specs, ready).await.map_err(|e| e.to_string())?;
    target.create_stream(scenario, &specs, ready).await.map_err(|e| e.to_string())?;

    let mut publishers: Vec<Arc<Box<dyn Publisher>>> = Vec::new();
    for client in 0..o.clients {
        publishers.push(Arc::new(target.publisher(scenario, &specs, client).await.map_err(|e| e.to_string())?));
    }
    let start = Instant::now();
    let measure_from = start + Duration::from_millis(WARMUP_MS);
    let end = measure_from + Duration::from_secs(o.seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for (client, publisher) in publishers.iter().enumerate() {
        for lane in 0..o.inflight {
            let publisher = publisher.clone();
            tasks.spawn(async move {
                let (mut latencies_us, mut failed, mut indeterminate) = (Vec::new(), 0u64, 0u64);
                let mut first_error: Option<String> = None;
                let mut counter = 0u64;
                loop {
                    let t = Instant::now();
                    if t >= end {
                        break;
                    }
                    counter += 1;
                    let id = format!("{client}-{lane}-{counter}");
                    let outcome = tokio::time::timeout(
                        Duration::from_millis(PUBLISH_TIMEOUT_MS),
                        publisher.publish(id, vec![0x42; 128]),
                    )
                    .await;
                    let done = Instant::now();
                    if t < measure_from || done > end {
                        continue;
                    }
                    match outcome {
                        Ok(PublishOutcome::Ok { .. }) => latencies_us.push((done - t).as_micros() as u64),
                        Ok(PublishOutcome::Fail { error }) => {
                            failed += 1;
                            first_error.get_or_insert(format!("fail: {error}"));
                        }
                        Ok(PublishOutcome::Info { error }) => {
                            indeterminate += 1;
                            first_error.get_or_insert(format!("info: {error}"));
                        }
                        Err(_) => {
                            indeterminate += 1;
                            first_error.get_or_insert(format!("no answer within {PUBLISH_TIMEOUT_MS} ms"));
                        }
                    }
                }
                (latencies_us, failed, indeterminate, first_error)
            });
        }
    }
    let (mut latencies_us, mut failed, mut indeterminate, mut first_error) = (Vec::new(), 0, 0, None);
    while let Some(joined) = tasks.join_next().await {
        let (l, f, i, e) = joined.map_err(|e| format!("a publishing task failed: {e}"))?;
        latencies_us.extend(l);
        failed += f;
        indeterminate += i;
        first_error = first_error.or(e);
    }
    drop(cluster);
    if let Some(p) = proxies {
        p.shutdown().await;
    }
    if latencies_us.is_empty() {
        return Err(format!(
            "no publish was acknowledged ({failed} failed, {indeterminate} indeterminate; first: {})",
            first_error.unwrap_or_default()
        ));
    }
    latencies_us.sort_unstable();
    let pct = |p: f64| latencies_us[((latencies_us.len() as f64 * p) as usize).min(latencies_us.len() - 1)] as f64;
    Ok(Figures {
        acked_per_s: latencies_us.len() as f64 / o.seconds as f64,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        failed,
        indeterminate,
        first_error,
    })
}

#[tokio::main]
async fn main() {
    let o = match parse_options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bench_cluster: {e}");
            std::process::exit(jetsam_core::exit::BAD_INPUT);
        }
    };
    let toml = format!(
        "name = \"bench-proxy\"\nnodes = 3\nduration = \"{}s\"\n[stream]\nreplicas = 3\nsync = \"{}\"\n",
        o.seconds, o.sync
    );
    let scenario = Scenario::from_toml_str("bench_cluster", &toml).unwrap_or_else(|e| {
        eprintln!("bench_cluster: {e}");
        std::process::exit(jetsam_core::exit::BAD_INPUT);
    });
    let target = NodeTarget::locate(None).unwrap_or_else(|e| {
        eprintln!("bench_cluster: {e}");
        std::process::exit(jetsam_core::exit::ENVIRONMENT);
    });
    println!(
        "3-node R3 jetsam-node cluster, sync {}, {} clients x {} in flight, {} s measured after {} ms warm-up",
        o.sync, o.clients, o.inflight, o.seconds, WARMUP_MS
    );
    let mut rounds: Vec<[f64; 3]> = Vec::new();
    for round in 1..=o.repeat {
        let mut both = Vec::new();
        for proxied in [false, true] {
            match run_once(&target, &scenario, &o, proxied).await {
                Ok(f) => {
                    println!(
                        "round {round} {:7}  acked_per_s {:8.0}  p50_us {:8.0}  p99_us {:8.0}  failed {}  indeterminate {}",
                        if proxied { "proxied" } else { "direct" },
                        f.acked_per_s,
                        f.p50_us,
                        f.p99_us,
                        f.failed,
                        f.indeterminate
                    );
                    if let Some(e) = &f.first_error {
                        println!("round {round} first error: {e}");
                    }
                    both.push(f);
                }
                Err(e) => {
                    eprintln!(
                        "bench_cluster: failed to run the {} cluster: {e}",
                        if proxied { "proxied" } else { "direct" }
                    );
                    std::process::exit(jetsam_core::exit::ENVIRONMENT);
                }
            }
        }
        let ratio = both[1].acked_per_s / both[0].acked_per_s;
        let p50_added_us = both[1].p50_us - both[0].p50_us;
        let p99_added_us = both[1].p99_us - both[0].p99_us;
        println!(
            "round {round} ratio acked_per_s {ratio:.2} (goal >= 0.8)  p50 added {p50_added_us:.0} us  p99 added {p99_added_us:.0} us (goal < 1000)"
        );
        rounds.push([ratio, p50_added_us, p99_added_us]);
    }
    if rounds.len() > 1 {
        let median = |i: usize| {
            let mut v: Vec<f64> = rounds.iter().map(|r| r[i]).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        println!(
            "median of {} rounds: ratio acked_per_s {:.2}  p50 added {:.0} us  p99 added {:.0} us",
            rounds.len(),
            median(0),
            median(1),
            median(2)
        );
    }
}
