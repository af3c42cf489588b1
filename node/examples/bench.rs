//! Benchmark of jetsam-node (run by scripts/bench-node.sh): acknowledged
//! publishes per second and ack latency (p50/p99) for R1 and R3 in
//! strong+always, strong+2m and async R1, with 8 concurrent clients (one
//! publish in flight each) and 128-byte payloads, next to the disk's raw
//! fsync rate (a loop of 4 KiB write + fdatasync) measured in the same run
//! and directory. It prints figures; it asserts nothing about speed.
//!
//! It also measures a ceiling for the same client loop: a no-op server (this
//! binary run as `bench --serve-noop`, in its own process) that reads each
//! publish frame, decodes it and answers `pub_ack` at once, with no storage,
//! no Raft and no hop between tasks. No node that speaks this protocol over
//! TCP can ack faster than that on the same machine, so the ceiling bounds
//! what "async R1 / strong always" can reach here.
//!
//! Usage: bench [--secs N] [--dir DIR] [--only NAME]   (JETSAM_NODE_BIN = the node binary)

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jetsam_core::proto::{self, Request, RequestBody, Response, ResponseBody};
use jetsam_core::scenario::Scenario;
use jetsam_targets::node::NodeTarget;
use jetsam_targets::{NodeSpec, PublishOutcome, Publisher, Target};

const CLIENTS: u32 = 8;
const PAYLOAD_BYTES: usize = 128;
const CEILING: &str = "no-op server (ceiling)";

struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr")
}

fn raw_fsync_rate(dir: &Path, secs: f64) -> f64 {
    let path = dir.join("fsync-probe");
    let file =
        std::fs::OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&path).expect("probe");
    let block = [0x5au8; 4096];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        file.write_all_at(&block, n * 4096).expect("write");
        file.sync_data().expect("fdatasync");
        n += 1;
    }
    let _ = std::fs::remove_file(&path);
    n as f64 / start.elapsed().as_secs_f64()
}

struct Figures {
    acked: usize,
    other: usize,
    rate: f64,
    p50_us: u64,
    p99_us: u64,
}

async fn run_case(binary: &Path, root: &Path, nodes: u32, consistency: Option<&str>, sync: &str, secs: f64) -> Figures {
    let mut text = format!(
        "name = \"bench\"\nnodes = {nodes}\nduration = \"5s\"\n[stream]\nreplicas = {nodes}\nsync = \"{sync}\"\n"
    );
    if let Some(c) = consistency {
        text.push_str(&format!("consistency = \"{c}\"\n"));
    }
    let scenario = Scenario::from_toml_str("bench", &text).expect("scenario");
    let target = NodeTarget::new(binary.to_path_buf());
    target.validate(&scenario).expect("valid bench scenario");
    let _ = std::fs::remove_dir_all(root);
    let names = scenario.node_names();
    let peer: Vec<SocketAddr> = names.iter().map(|_| free_addr()).collect();
    let specs: Vec<NodeSpec> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let data_dir = root.join(name);
            std::fs::create_dir_all(&data_dir).expect("mkdir");
            NodeSpec {
                name: name.clone(),
                data_dir: data_dir.clone(),
                conf_dir: data_dir,
                client_addr: free_addr(),
                peer_listen_addr: peer[i],
                peers: names.iter().enumerate().filter(|(j, _)| *j != i).map(|(j, n)| (n.clone(), peer[j])).collect(),
                monitor_addr: free_addr(),
                dead_addr: free_addr(),
            }
        })
        .collect();
    let _procs = Procs(
        specs
            .iter()
            .map(|s| {
                let cmd = target.command(&scenario, s).expect("command");
                let log = std::fs::File::create(root.join(format!("{}.log", s.name))).expect("log");
                Command::new(&cmd.program).args(&cmd.args).stdout(Stdio::null()).stderr(log).spawn().expect("spawn")
            })
            .collect(),
    );
    let wait = Duration::from_secs(20);
    target.wait_ready(&specs, wait).await.expect("ready");
    target.create_stream(&scenario, &specs, wait).await.expect("stream");
    let leader = target.leader(&specs).await.expect("leader");
    let li = specs.iter().position(|s| s.name == leader).expect("leader index");
    let mut publishers = Vec::new();
    for _ in 0..CLIENTS {
        // Start every client at the leader so no time goes to redirects.
        publishers.push(target.publisher(&scenario, &specs, li as u32).await.expect("publisher"));
    }
    drive(publishers, secs).await
}

/// Runs the 8 clients, one publish in flight each, for `secs` seconds.
async fn drive(publishers: Vec<Box<dyn Publisher>>, secs: f64) -> Figures {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (client, p) in publishers.into_iter().enumerate() {
        let p: Arc<dyn Publisher> = Arc::from(p);
        tasks.push(tokio::spawn(async move {
            let mut lat_us = Vec::new();
            let mut other = 0usize;
            let mut k = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                match p.publish(format!("{client}-{k}"), vec![b'b'; PAYLOAD_BYTES]).await {
                    PublishOutcome::Ok { .. } => lat_us.push(t.elapsed().as_micros() as u64),
                    _ => other += 1,
                }
                k += 1;
            }
            (lat_us, other)
        }));
    }
    let mut lat = Vec::new();
    let mut other = 0;
    for t in tasks {
        let (l, o) = t.await.expect("client task");
        lat.extend(l);
        other += o;
    }
    let elapsed = start.elapsed().as_secs_f64();
    lat.sort_unstable();
    let pct =
        |p: f64| lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1))).copied().unwrap_or(0);
    Figures { acked: lat.len(), other, rate: lat.len() as f64 / elapsed, p50_us: pct(0.50), p99_us: pct(0.99) }
}

/// The ceiling case: starts `bench --serve-noop` and drives it with the
/// same clients and the node target's own publisher.
async fn run_ceiling(root: &Path, secs: f64) -> Figures {
    let scenario =
        Scenario::from_toml_str("bench", "name = \"bench\"\nnodes = 1\nduration = \"5s\"\n[stream]\nreplicas = 1\n")
            .expect("scenario");
    let exe = std::env::current_exe().expect("own path");
    let mut child = Command::new(exe).arg("--serve-noop").stdout(Stdio::piped()).spawn().expect("spawn no-op server");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().expect("stdout")), &mut line)
        .expect("no-op server address");
    let _procs = Procs(vec![child]);
    let addr: SocketAddr = line.trim().parse().expect("no-op server prints its address");
    let spec = NodeSpec {
        name: "n1".into(),
        data_dir: root.to_path_buf(),
        conf_dir: root.to_path_buf(),
        client_addr: addr,
        peer_listen_addr: free_addr(),
        peers: BTreeMap::new(),
        monitor_addr: free_addr(),
        dead_addr: free_addr(),
    };
    let target = NodeTarget::new(PathBuf::from("unused"));
    let specs = [spec];
    let mut publishers = Vec::new();
    for _ in 0..CLIENTS {
        publishers.push(target.publisher(&scenario, &specs, 0).await.expect("publisher"));
    }
    drive(publishers, secs).await
}

/// `bench --serve-noop`: a server of the node's client protocol that acks
/// every publish at once with the next sequence (and answers anything else
/// with an error). One current-thread runtime, as the node has; each
/// connection reads a frame, decodes it, encodes the answer and writes it.
fn serve_noop() -> ! {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        use tokio::io::{AsyncWriteExt, BufReader};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        println!("{}", listener.local_addr().expect("addr"));
        let _ = std::io::stdout().flush();
        let seq = Arc::new(std::sync::atomic::AtomicU64::new(0));
        loop {
            let (sock, _) = listener.accept().await.expect("accept");
            let _ = sock.set_nodelay(true);
            let seq = seq.clone();
            tokio::spawn(async move {
                let (rd, mut wr) = sock.into_split();
                let mut rd = BufReader::new(rd);
                // The node's own frame reader, so the ceiling reads as the node does.
                while let Ok(body) = jetsam_node::net::read_frame(&mut rd).await {
                    let Ok(req) = proto::decode_body::<Request>(&body) else { return };
                    let body = match req.body {
                        RequestBody::Publish { .. } => {
                            ResponseBody::PubAck { seq: seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1 }
                        }
                        _ => ResponseBody::Error {
                            error: proto::ProtoError {
                                code: proto::ErrorCode::BadRequest,
                                message: "the no-op bench server only acks publishes".into(),
                                definite: true,
                                leader_hint: None,
                            },
                        },
                    };
                    if wr.write_all(&proto::encode_frame(&Response { req_id: req.req_id, body })).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    unreachable!("the no-op server serves until killed")
}

fn main() {
    let mut secs = 5.0;
    let mut dir = std::env::temp_dir().join(format!("jetsam-bench-node-{}", std::process::id()));
    let mut only: Option<String> = None;
    if std::env::args().nth(1).as_deref() == Some("--serve-noop") {
        serve_noop();
    }
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--secs" => secs = args.next().and_then(|s| s.parse().ok()).expect("--secs N"),
            "--dir" => dir = PathBuf::from(args.next().expect("--dir DIR")),
            "--only" => only = args.next(),
            other => {
                eprintln!("error: unknown argument {other:?}; usage: bench [--secs N] [--dir DIR] [--only NAME]");
                std::process::exit(jetsam_core::exit::BAD_INPUT);
            }
        }
    }
    let binary = match std::env::var_os("JETSAM_NODE_BIN") {
        Some(b) => PathBuf::from(b),
        None => {
            eprintln!("error: set JETSAM_NODE_BIN to a release jetsam-node (scripts/bench-node.sh does)");
            std::process::exit(jetsam_core::exit::ENVIRONMENT);
        }
    };
    std::fs::create_dir_all(&dir).expect("bench dir");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let fsync_rate = raw_fsync_rate(&dir, 3.0_f64.min(secs));
    println!("raw fsync rate (4 KiB write + fdatasync, {}): {fsync_rate:.0}/s", dir.display());
    println!("{:<22} {:>10} {:>10} {:>9} {:>9} {:>7}", "case", "acked", "acked/s", "p50_us", "p99_us", "not_ok");
    let cases: [(&str, u32, Option<&str>, &str); 6] = [
        ("R1 strong always", 1, None, "always"),
        ("R3 strong always", 3, None, "always"),
        ("R1 strong 2m", 1, None, "2m"),
        ("R3 strong 2m", 3, None, "2m"),
        ("R1 async 2m", 1, Some("async"), "2m"),
        ("R1 async always", 1, Some("async"), "always"),
    ];
    let mut results = BTreeMap::new();
    for (name, nodes, consistency, sync) in cases {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let root = dir.join(name.replace(' ', "-"));
        let f = rt.block_on(run_case(&binary, &root, nodes, consistency, sync, secs));
        println!("{name:<22} {:>10} {:>10.0} {:>9} {:>9} {:>7}", f.acked, f.rate, f.p50_us, f.p99_us, f.other);
        let _ = std::io::stdout().flush();
        let _ = std::fs::remove_dir_all(&root);
        results.insert(name, f.rate);
    }
    if only.as_deref().is_none_or(|o| o == CEILING) {
        let root = dir.join("ceiling");
        let f = rt.block_on(run_ceiling(&root, secs));
        println!("{CEILING:<22} {:>10} {:>10.0} {:>9} {:>9} {:>7}", f.acked, f.rate, f.p50_us, f.p99_us, f.other);
        results.insert(CEILING, f.rate);
    }
    if let (Some(r1), Some(a)) = (results.get("R1 strong always"), results.get("R1 async 2m")) {
        println!("R1 strong always / raw fsync rate: {:.2}x (goal > 1: group commit)", r1 / fsync_rate);
        println!("R1 async 2m / R1 strong always: {:.1}x (goal >= 10)", a / r1);
    }
    if let (Some(r1), Some(c)) = (results.get("R1 strong always"), results.get(CEILING)) {
        println!("no-op ceiling / R1 strong always: {:.1}x (the most any async node could reach here)", c / r1);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
