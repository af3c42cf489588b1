//! Real TCP through the link proxies: data flows, a cut blackholes existing
//! and new connections, heal resets what lived through the cut and lets new
//! connections flow, and directed links are independent.

use jetsam_faults::net::{Latency, Link, LinkProxies, NetError};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// How long a test waits for something that must happen.
const MUST_MS: u64 = 5_000;
/// How long a test waits to be confident something does not happen.
const MUST_NOT_MS: u64 = 300;

/// An echo server that counts the connections it accepted and the bytes it received.
struct Echo {
    addr: SocketAddr,
    accepted: Arc<AtomicU64>,
    received: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn echo() -> Echo {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicU64::new(0));
    let received = Arc::new(AtomicU64::new(0));
    let (acc, rec) = (accepted.clone(), received.clone());
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            acc.fetch_add(1, Ordering::SeqCst);
            let rec = rec.clone();
            conns.spawn(async move {
                let mut buf = vec![0u8; 4096];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            rec.fetch_add(n as u64, Ordering::SeqCst);
                            if s.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    Echo { addr, accepted, received, task }
}

fn link(from: &str, to: &str, upstream: SocketAddr) -> Link {
    Link { from: from.into(), to: to.into(), upstream }
}

fn cut(pairs: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

async fn connect(addr: SocketAddr) -> TcpStream {
    timeout(Duration::from_millis(MUST_MS), TcpStream::connect(addr))
        .await
        .expect("connect to the proxy within the bound")
        .expect("connect to the proxy")
}

/// Writes `msg` and expects it echoed back within the bound.
async fn round_trip(s: &mut TcpStream, msg: &[u8]) {
    s.write_all(msg).await.unwrap();
    let mut got = vec![0u8; msg.len()];
    timeout(Duration::from_millis(MUST_MS), s.read_exact(&mut got))
        .await
        .expect("echo within the bound")
        .expect("read the echo");
    assert_eq!(got, msg);
}

/// Expects no byte to arrive on `s` for MUST_NOT_MS.
async fn silent(s: &mut TcpStream) {
    let mut byte = [0u8; 1];
    let r = timeout(Duration::from_millis(MUST_NOT_MS), s.read(&mut byte)).await;
    assert!(r.is_err(), "expected silence on a cut link, got {r:?}");
}

/// Expects the connection to be closed (reset or EOF) within the bound.
async fn closed(s: &mut TcpStream) {
    let mut byte = [0u8; 16];
    match timeout(Duration::from_millis(MUST_MS), s.read(&mut byte)).await {
        Ok(Ok(0)) | Ok(Err(_)) => {}
        Ok(Ok(n)) => panic!("expected the connection closed, but {n} stale bytes arrived: {:?}", &byte[..n]),
        Err(_) => panic!("connection not closed within {MUST_MS} ms"),
    }
}

#[tokio::test]
async fn data_flows_through_a_proxy_both_ways() {
    let b = echo().await;
    let proxies = LinkProxies::start(vec![link("a", "b", b.addr)]).await.unwrap();
    let addr = proxies.listen_addr("a", "b").unwrap();
    assert_ne!(addr, b.addr);
    assert_eq!(proxies.listen_addr("b", "a"), None);
    let mut s = connect(addr).await;
    round_trip(&mut s, b"hello").await;
    // A transfer larger than the socket buffers, written and read concurrently.
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let (mut r, mut w) = connect(addr).await.into_split();
    let to_send = big.clone();
    let writer = tokio::spawn(async move { w.write_all(&to_send).await });
    let mut got = vec![0u8; big.len()];
    timeout(Duration::from_millis(MUST_MS), r.read_exact(&mut got)).await.unwrap().unwrap();
    writer.await.unwrap().unwrap();
    assert!(got == big, "large transfer arrived altered");
    drop(s);
    assert_eq!(b.accepted.load(Ordering::SeqCst), 2);
    proxies.shutdown().await;
}

#[tokio::test]
async fn half_close_is_passed_on() {
    let b = echo().await;
    let proxies = LinkProxies::start(vec![link("a", "b", b.addr)]).await.unwrap();
    let mut s = connect(proxies.listen_addr("a", "b").unwrap()).await;
    round_trip(&mut s, b"bye").await;
    s.shutdown().await.unwrap();
    // The echo server sees EOF and closes; the proxy passes that back as EOF.
    let mut rest = Vec::new();
    timeout(Duration::from_millis(MUST_MS), s.read_to_end(&mut rest)).await.unwrap().unwrap();
    assert!(rest.is_empty());
}

#[tokio::test]
async fn cut_blackholes_existing_and_new_connections_and_heal_resets_them() {
    let b = echo().await;
    let a = echo().await;
    let proxies = LinkProxies::start(vec![link("a", "b", b.addr), link("b", "a", a.addr)]).await.unwrap();
    let ab = proxies.listen_addr("a", "b").unwrap();
    let ba = proxies.listen_addr("b", "a").unwrap();
    let mut old = connect(ab).await;
    round_trip(&mut old, b"before").await;
    let received_before = b.received.load(Ordering::SeqCst);
    let accepted_before = b.accepted.load(Ordering::SeqCst);

    proxies.partition(&cut(&[("a", "b"), ("b", "a")]));
    assert_eq!(proxies.cut_links(), cut(&[("a", "b"), ("b", "a")]));

    // Existing connection: stays open, nothing passes.
    old.write_all(b"during").await.unwrap();
    silent(&mut old).await;
    // New connection: accepted, never forwarded.
    let mut fresh = connect(ab).await;
    fresh.write_all(b"new during").await.unwrap();
    silent(&mut fresh).await;
    let mut other_way = connect(ba).await;
    other_way.write_all(b"x").await.unwrap();
    silent(&mut other_way).await;
    assert_eq!(b.received.load(Ordering::SeqCst), received_before, "bytes crossed a cut link");
    assert_eq!(b.accepted.load(Ordering::SeqCst), accepted_before, "a connection crossed a cut link");

    proxies.heal();
    assert!(proxies.cut_links().is_empty());
    // Everything that lived through the cut is reset; its bytes are dropped, not delivered late.
    closed(&mut old).await;
    closed(&mut fresh).await;
    closed(&mut other_way).await;
    assert_eq!(b.received.load(Ordering::SeqCst), received_before, "bytes from the cut were delivered late");
    // New connections flow again.
    let mut after = connect(ab).await;
    round_trip(&mut after, b"after").await;
    let mut after_ba = connect(ba).await;
    round_trip(&mut after_ba, b"after too").await;
    proxies.shutdown().await;
}

#[tokio::test]
async fn one_directed_cut_leaves_the_other_direction_alone() {
    let b = echo().await;
    let a = echo().await;
    let proxies = LinkProxies::start(vec![link("a", "b", b.addr), link("b", "a", a.addr)]).await.unwrap();
    let mut ab = connect(proxies.listen_addr("a", "b").unwrap()).await;
    let mut ba = connect(proxies.listen_addr("b", "a").unwrap()).await;
    round_trip(&mut ab, b"1").await;
    round_trip(&mut ba, b"1").await;
    proxies.partition(&cut(&[("a", "b")]));
    assert_eq!(proxies.cut_links(), cut(&[("a", "b")]));
    ab.write_all(b"2").await.unwrap();
    silent(&mut ab).await;
    round_trip(&mut ba, b"still flows").await;
    // Re-partitioning to another set heals what is no longer listed.
    proxies.partition(&cut(&[("b", "a")]));
    assert_eq!(proxies.cut_links(), cut(&[("b", "a")]));
    closed(&mut ab).await;
    let mut ab2 = connect(proxies.listen_addr("a", "b").unwrap()).await;
    round_trip(&mut ab2, b"healed").await;
    ba.write_all(b"3").await.unwrap();
    silent(&mut ba).await;
    // Unknown pairs are ignored, not invented.
    proxies.partition(&cut(&[("x", "y")]));
    assert!(proxies.cut_links().is_empty());
    closed(&mut ba).await;
}

#[tokio::test]
async fn client_links_with_any_from_name_cut_the_same_way() {
    let n1 = echo().await;
    let proxies = LinkProxies::start(vec![link("client", "n1", n1.addr)]).await.unwrap();
    let addr = proxies.listen_addr("client", "n1").unwrap();
    let mut s = connect(addr).await;
    round_trip(&mut s, b"publish").await;
    proxies.partition(&cut(&[("client", "n1")]));
    s.write_all(b"lost").await.unwrap();
    silent(&mut s).await;
    proxies.heal();
    closed(&mut s).await;
    let mut s2 = connect(addr).await;
    round_trip(&mut s2, b"publish again").await;
}

#[tokio::test]
async fn unreachable_upstream_resets_the_client() {
    // Bind then drop, so the port is (very likely) closed.
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let proxies = LinkProxies::start(vec![link("a", "b", dead)]).await.unwrap();
    let mut s = connect(proxies.listen_addr("a", "b").unwrap()).await;
    closed(&mut s).await;
}

#[tokio::test]
async fn a_refused_upstream_is_not_reported_across_a_cut() {
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let proxies = LinkProxies::start(vec![link("a", "b", dead)]).await.unwrap();
    proxies.partition(&cut(&[("a", "b")]));
    let mut s = connect(proxies.listen_addr("a", "b").unwrap()).await;
    silent(&mut s).await;
    proxies.heal();
    closed(&mut s).await;
}

#[tokio::test]
async fn duplicate_links_are_rejected() {
    let b = echo().await;
    let err = LinkProxies::start(vec![link("a", "b", b.addr), link("a", "b", b.addr)]).await.unwrap_err();
    assert!(matches!(err, NetError::DuplicateLink { .. }), "{err}");
    assert!(err.to_string().contains("a -> b"), "{err}");
}

#[tokio::test]
async fn shutdown_and_drop_close_the_listeners_and_connections() {
    let b = echo().await;
    let proxies = LinkProxies::start(vec![link("a", "b", b.addr)]).await.unwrap();
    let addr = proxies.listen_addr("a", "b").unwrap();
    let mut s = connect(addr).await;
    round_trip(&mut s, b"x").await;
    proxies.shutdown().await;
    closed(&mut s).await;
    let refused = timeout(Duration::from_millis(MUST_MS), TcpStream::connect(addr)).await.unwrap();
    assert!(refused.is_err(), "listener still open after shutdown");

    let proxies = LinkProxies::start(vec![link("a", "b", b.addr)]).await.unwrap();
    let addr = proxies.listen_addr("a", "b").unwrap();
    let mut s = connect(addr).await;
    round_trip(&mut s, b"y").await;
    drop(proxies);
    closed(&mut s).await;
    // The aborted accept task drops its listener on the runtime's next turn.
    let mut refused = false;
    for _ in 0..50 {
        if TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "listener still open 1 s after drop");
}

#[tokio::test]
async fn latency_delays_both_directions_in_order_and_clears() {
    let b = echo().await;
    let proxies = LinkProxies::start(vec![link("a", "b", b.addr)]).await.unwrap();
    let mut s = connect(proxies.listen_addr("a", "b").unwrap()).await;
    round_trip(&mut s, b"plain").await;
    // Set on a live connection: the request and the reply are each held 20 ms.
    let slow = Latency { delay_us: 20_000, jitter_us: 0 };
    proxies.set_latency(&cut(&[("a", "b")]), slow);
    assert_eq!(proxies.slow_links(), BTreeMap::from([(("a".to_string(), "b".to_string()), slow)]));
    let t = Instant::now();
    round_trip(&mut s, b"slow").await;
    assert!(t.elapsed() >= Duration::from_millis(40), "round trip took only {:?}", t.elapsed());

    // With jitter, many small writes still arrive intact and in order.
    proxies.set_latency(&cut(&[("a", "b")]), Latency { delay_us: 1_000, jitter_us: 5_000 });
    let (mut r, mut w) = s.into_split();
    let sent: Vec<u8> = (0..2000u32).flat_map(|i| i.to_be_bytes()).collect();
    let to_send = sent.clone();
    let writer = tokio::spawn(async move {
        for chunk in to_send.chunks(4) {
            w.write_all(chunk).await.unwrap();
        }
        w
    });
    let mut got = vec![0u8; sent.len()];
    timeout(Duration::from_millis(MUST_MS), r.read_exact(&mut got)).await.unwrap().unwrap();
    assert!(got == sent, "jittered bytes arrived out of order or altered");
    let w = writer.await.unwrap();
    let mut s = r.reunite(w).unwrap();

    // Cleared: back to the plain path, still flowing; heal() leaves latency alone.
    proxies.set_latency(&BTreeSet::new(), Latency::default());
    assert!(proxies.slow_links().is_empty());
    round_trip(&mut s, b"fast again").await;
    proxies.set_latency(&cut(&[("a", "b")]), slow);
    proxies.heal();
    assert_eq!(proxies.slow_links().len(), 1);
}

#[tokio::test]
async fn bytes_held_by_latency_are_dropped_by_a_cut() {
    let b = echo().await;
    let proxies = LinkProxies::start(vec![link("a", "b", b.addr)]).await.unwrap();
    let mut s = connect(proxies.listen_addr("a", "b").unwrap()).await;
    round_trip(&mut s, b"x").await;
    let received = b.received.load(Ordering::SeqCst);
    // Held for 1 s; cut well before that, then wait past the release time.
    proxies.set_latency(&cut(&[("a", "b")]), Latency { delay_us: 1_000_000, jitter_us: 0 });
    s.write_all(b"held then cut").await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    proxies.partition(&cut(&[("a", "b")]));
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    assert_eq!(b.received.load(Ordering::SeqCst), received, "held bytes crossed a cut link");
    proxies.heal();
    closed(&mut s).await;
    assert_eq!(b.received.load(Ordering::SeqCst), received, "held bytes were delivered after heal");
}

#[tokio::test]
async fn many_connections_are_all_held_and_all_reset() {
    let b = echo().await;
    let proxies = LinkProxies::start(vec![link("a", "b", b.addr)]).await.unwrap();
    let addr = proxies.listen_addr("a", "b").unwrap();
    let mut conns = Vec::new();
    for i in 0..100u32 {
        let mut s = connect(addr).await;
        round_trip(&mut s, &i.to_be_bytes()).await;
        conns.push(s);
    }
    let received = b.received.load(Ordering::SeqCst);
    proxies.partition(&cut(&[("a", "b")]));
    for s in &mut conns {
        s.write_all(b"cut").await.unwrap();
    }
    silent(&mut conns[0]).await;
    silent(&mut conns[99]).await;
    assert_eq!(b.received.load(Ordering::SeqCst), received);
    proxies.heal();
    for s in &mut conns {
        closed(s).await;
    }
    assert_eq!(b.received.load(Ordering::SeqCst), received);
    let mut after = connect(addr).await;
    round_trip(&mut after, b"after").await;
}
