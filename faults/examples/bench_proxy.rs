//! What a link proxy costs on loopback: bulk throughput (MB/s), sequential
//! round trips per second, and the latency of a small request/response echo
//! (p50/p99), each directly and through one [`LinkProxies`] proxy.
//! Run it with `scripts/bench-proxy.sh`; it prints figures, it asserts nothing
//! about speed.
//!
//! Direct and proxied measurements alternate `--repeat` times (the machine is
//! shared and noisy); each figure printed is the median of its repeats.
//!
//! Usage: `bench_proxy [--mb N] [--round-trips N] [--message-bytes N] [--repeat N]`

use jetsam_faults::net::{Link, LinkProxies};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Bound on any single step of the benchmark, so a broken proxy ends the run.
const STEP_TIMEOUT_MS: u64 = 60_000;

struct Options {
    mb: u64,
    round_trips: usize,
    message_bytes: usize,
    repeat: usize,
}

fn parse_options() -> Result<Options, String> {
    let mut o = Options { mb: 256, round_trips: 20_000, message_bytes: 64, repeat: 5 };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let parse = |v: &str| v.parse::<u64>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--mb" => o.mb = parse(&value)?,
            "--round-trips" => o.round_trips = parse(&value)? as usize,
            "--message-bytes" => o.message_bytes = parse(&value)? as usize,
            "--repeat" => o.repeat = parse(&value)? as usize,
            _ => return Err(format!("unknown flag {flag}; use --mb, --round-trips, --message-bytes, --repeat")),
        }
    }
    if o.mb == 0 || o.round_trips == 0 || o.message_bytes == 0 || o.repeat == 0 {
        return Err("every figure must be at least 1".into());
    }
    Ok(o)
}

/// Echoes everything back on every connection.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the echo server on loopback");
    let addr = listener.local_addr().expect("echo server address");
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else { return };
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

/// Reads everything until EOF, then answers with the byte count (8 bytes, big endian).
async fn sink_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the sink server on loopback");
    let addr = listener.local_addr().expect("sink server address");
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 256 * 1024];
                let mut total: u64 = 0;
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) => break,
                        Ok(n) => total += n as u64,
                        Err(_) => return,
                    }
                }
                let _ = s.write_all(&total.to_be_bytes()).await;
            });
        }
    });
    addr
}

async fn bounded<T>(what: &str, f: impl std::future::Future<Output = std::io::Result<T>>) -> T {
    match tokio::time::timeout(Duration::from_millis(STEP_TIMEOUT_MS), f).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => panic!("failed to {what}: {e}"),
        Err(_) => panic!("failed to {what} within {STEP_TIMEOUT_MS} ms"),
    }
}

/// Sends `mb` MiB and waits for the sink's count; returns MB/s (10^6 bytes).
async fn throughput(addr: SocketAddr, mb: u64) -> f64 {
    let mut s = bounded("connect for throughput", TcpStream::connect(addr)).await;
    let chunk = vec![0x5au8; 256 * 1024];
    let total = mb * 1024 * 1024;
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < total {
        let n = chunk.len().min((total - sent) as usize);
        bounded("send bulk data", s.write_all(&chunk[..n])).await;
        sent += n as u64;
    }
    bounded("half-close after bulk data", s.shutdown()).await;
    let mut count = [0u8; 8];
    bounded("read the sink's byte count", s.read_exact(&mut count)).await;
    let elapsed = start.elapsed();
    assert_eq!(u64::from_be_bytes(count), total, "the sink received a different byte count");
    total as f64 / 1e6 / elapsed.as_secs_f64()
}

struct RoundTrips {
    per_s: f64,
    p50_us: f64,
    p99_us: f64,
    max_us: f64,
}

/// Sequential request/response echoes of `message_bytes` each.
async fn round_trips(addr: SocketAddr, count: usize, message_bytes: usize) -> RoundTrips {
    let mut s = bounded("connect for round trips", TcpStream::connect(addr)).await;
    s.set_nodelay(true).expect("set TCP_NODELAY");
    let msg = vec![0xa5u8; message_bytes];
    let mut back = vec![0u8; message_bytes];
    // Warm up (connection setup, first allocations) before measuring.
    for _ in 0..count.min(1000) {
        bounded("send a warm-up request", s.write_all(&msg)).await;
        bounded("read a warm-up echo", s.read_exact(&mut back)).await;
    }
    let mut latencies_ns = Vec::with_capacity(count);
    let start = Instant::now();
    for _ in 0..count {
        let t = Instant::now();
        bounded("send a request", s.write_all(&msg)).await;
        bounded("read an echo", s.read_exact(&mut back)).await;
        latencies_ns.push(t.elapsed().as_nanos() as u64);
    }
    let elapsed = start.elapsed();
    latencies_ns.sort_unstable();
    let pct =
        |p: f64| latencies_ns[((latencies_ns.len() as f64 * p) as usize).min(latencies_ns.len() - 1)] as f64 / 1e3;
    RoundTrips {
        per_s: count as f64 / elapsed.as_secs_f64(),
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        max_us: *latencies_ns.last().expect("count >= 1") as f64 / 1e3,
    }
}

#[tokio::main]
async fn main() {
    let o = match parse_options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bench_proxy: {e}");
            std::process::exit(jetsam_core::exit::BAD_INPUT);
        }
    };
    let echo = echo_server().await;
    let sink = sink_server().await;
    let proxies = LinkProxies::start(vec![
        Link { from: "bench".into(), to: "echo".into(), upstream: echo },
        Link { from: "bench".into(), to: "sink".into(), upstream: sink },
    ])
    .await
    .unwrap_or_else(|e| {
        eprintln!("bench_proxy: {e}");
        std::process::exit(jetsam_core::exit::ENVIRONMENT);
    });
    let echo_proxy = proxies.listen_addr("bench", "echo").expect("echo link started");
    let sink_proxy = proxies.listen_addr("bench", "sink").expect("sink link started");

    println!(
        "loopback, {} MiB bulk, {} round trips of {} bytes, median of {} alternating repeats",
        o.mb, o.round_trips, o.message_bytes, o.repeat
    );
    let mut runs: [Vec<[f64; 5]>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..o.repeat {
        for (i, (sink_addr, echo_addr)) in [(sink, echo), (sink_proxy, echo_proxy)].into_iter().enumerate() {
            let mb_s = throughput(sink_addr, o.mb).await;
            let rt = round_trips(echo_addr, o.round_trips, o.message_bytes).await;
            runs[i].push([mb_s, rt.per_s, rt.p50_us, rt.p99_us, rt.max_us]);
        }
    }
    let median = |which: usize, field: usize| {
        let mut v: Vec<f64> = runs[which].iter().map(|r| r[field]).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (d, p) = (0, 1);
    println!(
        "throughput_mb_s      direct {:9.0}   proxy {:9.0}   ratio {:.2}",
        median(d, 0),
        median(p, 0),
        median(p, 0) / median(d, 0)
    );
    println!(
        "round_trips_per_s    direct {:9.0}   proxy {:9.0}   ratio {:.2}",
        median(d, 1),
        median(p, 1),
        median(p, 1) / median(d, 1)
    );
    println!(
        "latency_us p50       direct {:9.1}   proxy {:9.1}   added {:.1}",
        median(d, 2),
        median(p, 2),
        median(p, 2) - median(d, 2)
    );
    println!(
        "latency_us p99       direct {:9.1}   proxy {:9.1}   added {:.1}",
        median(d, 3),
        median(p, 3),
        median(p, 3) - median(d, 3)
    );
    println!("latency_us max       direct {:9.1}   proxy {:9.1}", median(d, 4), median(p, 4));
    proxies.shutdown().await;
}
