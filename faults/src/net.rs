//! Network faults: one TCP proxy per directed link between nodes; a
//! partition blackholes chosen links, heal restores them.
//!
//! # What it does
//!
//! The controller starts one proxy per *directed* link `(from, to)`. Node
//! `from` is configured to reach node `to` at [`LinkProxies::listen_addr`]
//! instead of `to`'s real peer address; the proxy forwards every TCP
//! connection it accepts to the link's `upstream` (the real address). Any
//! `from` name is allowed, so client traffic can be routed (and cut) the same
//! way with `Link { from: "client".into(), to: "n1".into(), .. }`.
//!
//! **What one directed cut means.** The directed link `a -> b` is the set of
//! TCP connections that `a` opened to `b`. Bytes flow both ways on such a
//! connection (requests and replies), so cutting `a -> b` blackholes *both
//! directions of those connections*; connections that `b` opened to `a` (link
//! `b -> a`) are untouched. A network partition between `a` and `b` is
//! therefore the pair `{a -> b, b -> a}`: [`shape_cut`] always cuts both.
//!
//! **While a link is cut**: existing connections stay open but nothing passes
//! in either direction (the proxy stops reading, so the senders' kernel
//! buffers fill and their writes eventually block, as on a real blackhole);
//! new connections are accepted by the kernel but never forwarded (their
//! connect succeeds, then nothing ever answers).
//!
//! **At heal** every connection that lived through a cut of its link (or was
//! accepted during one) is reset (RST), and whatever it had buffered is
//! dropped, never delivered late, like lost packets. Resetting is the faithful
//! model for a byte stream: TCP never delivers a stream with a hole in it, so
//! discarding bytes and carrying on would show the node corruption no real
//! network produces; a reset is what a peer sees when its connection timed out
//! during the partition. Nodes reconnect through the healed proxy, as they do
//! after a real partition. Connections opened after the heal are not affected.
//!
//! # What it does not do
//!
//! No reordering, duplication or partial loss: a link passes everything
//! (after an optional added [`Latency`], [`LinkProxies::set_latency`]) or
//! nothing. It does not stop nodes from reaching each other
//! directly: the target must configure every node with the proxy addresses
//! only (and, for NATS, advertise a dead address so gossip does not leak the
//! real ones; see FIELD-NOTES.md). It does not pick what to cut on its own:
//! [`shape_cut`] computes a seeded cut, the controller applies it.
//!
//! # Example
//!
//! ```no_run
//! use jetsam_faults::net::{partition_event, shape_cut, Link, LinkProxies, Shape};
//! use rand::SeedableRng;
//! # async fn demo(real: std::collections::BTreeMap<String, std::net::SocketAddr>) -> Result<(), jetsam_faults::net::NetError> {
//! let nodes: Vec<String> = real.keys().cloned().collect();
//! let mut links = Vec::new();
//! for from in &nodes {
//!     for to in &nodes {
//!         if from != to {
//!             links.push(Link { from: from.clone(), to: to.clone(), upstream: real[to] });
//!         }
//!     }
//! }
//! let proxies = LinkProxies::start(links).await?;
//! // Configure node `a` to reach `b` at this address:
//! let _a_to_b = proxies.listen_addr(&nodes[0], &nodes[1]).unwrap();
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
//! let (cut, groups) = shape_cut(&Shape::MajorityMinority, &nodes, &mut rng, None);
//! proxies.partition(&cut);
//! assert_eq!(proxies.cut_links(), cut);
//! let _event = partition_event(1_000, &Shape::MajorityMinority, &groups, &cut); // to events.jsonl
//! proxies.heal(); // then an event `heal`
//! proxies.shutdown().await;
//! # Ok(()) }
//! ```

use jetsam_core::event::{Event, EventKind};
use rand::Rng;
use rand::seq::SliceRandom;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// How long a proxy waits for the upstream's connect before it gives up and
/// resets the client's connection (as a refused connection would).
const UPSTREAM_CONNECT_TIMEOUT_MS: u64 = 2_000;
/// Bytes read per forwarding step.
const FORWARD_BUFFER_BYTES: usize = 256 * 1024;
/// Bytes a delayed direction holds before it stops reading (backpressure).
const DELAY_QUEUE_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Largest delay or jitter accepted; larger values are clamped (a delay that
/// long is a partition, use one).
const LATENCY_US_MAX: u64 = 10_000_000;

/// One directed link: connections `from` opens to `to` are forwarded to `upstream`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub from: String,
    pub to: String,
    /// `to`'s real listen address.
    pub upstream: SocketAddr,
}

/// A directed link that could not be set up. Environment errors (exit code 4)
/// except [`NetError::DuplicateLink`] and [`NetError::BadShape`], which are the
/// caller's input (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error(
        "failed to bind the link proxy {from} -> {to} on 127.0.0.1:0: {source}; check that loopback works and file descriptors are not exhausted"
    )]
    Bind { from: String, to: String, source: std::io::Error },
    #[error("failed to start link proxies: the link {from} -> {to} is listed twice; list each directed link once")]
    DuplicateLink { from: String, to: String },
    #[error("failed to use partition shape {shape} on nodes {nodes:?}: {message}; {fix}")]
    BadShape { shape: String, nodes: Vec<String>, message: String, fix: String },
    #[error(
        "failed to parse partition shape {given:?}; use one of isolate-one, majority-minority, bridge, random-halves"
    )]
    UnknownShape { given: String },
}

/// The cut state of one link, published to its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Mode {
    /// The link is blackholed now.
    cut: bool,
    /// How many cuts this link has seen (incremented when a cut starts), so a
    /// connection can tell it lived through a cut even if it missed both the
    /// cut and the heal notifications.
    cuts: u64,
    /// Added one-way latency (0 = none).
    latency: Latency,
}

/// Added one-way latency on a link: each chunk of bytes the proxy reads is
/// held for `delay_us` plus a uniform `0..=jitter_us`, in order (a later
/// chunk never overtakes an earlier one, as on one TCP connection). Applies to
/// both directions of the link's connections, like a cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize)]
pub struct Latency {
    pub delay_us: u64,
    pub jitter_us: u64,
}

impl Latency {
    pub fn is_none(&self) -> bool {
        self.delay_us == 0 && self.jitter_us == 0
    }
}

/// What a connection may do under the link's current mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    /// Forward bytes.
    Pass,
    /// The link is cut: read nothing, write nothing.
    Hold,
    /// The link is healed but this connection lived through a cut: reset it.
    Reset,
}

/// What a connection saw when it was accepted.
#[derive(Debug, Clone, Copy)]
struct Birth {
    cut: bool,
    cuts: u64,
}

fn gate(mode: Mode, birth: Birth) -> Gate {
    if mode.cut {
        Gate::Hold
    } else if birth.cut || mode.cuts != birth.cuts {
        Gate::Reset
    } else {
        Gate::Pass
    }
}

struct Proxy {
    listen_addr: SocketAddr,
    mode: watch::Sender<Mode>,
    accept_task: JoinHandle<()>,
}

/// The running link proxies, one per directed link. Dropping it stops them all
/// (listeners closed, every proxied connection closed); [`LinkProxies::shutdown`]
/// does the same and waits until the listeners are closed.
pub struct LinkProxies {
    proxies: BTreeMap<(String, String), Proxy>,
}

impl fmt::Debug for LinkProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let addrs: BTreeMap<String, SocketAddr> =
            self.proxies.iter().map(|((a, b), p)| (format!("{a}->{b}"), p.listen_addr)).collect();
        f.debug_struct("LinkProxies").field("links", &addrs).field("cut", &self.cut_links()).finish()
    }
}

impl LinkProxies {
    /// Binds one proxy per link on 127.0.0.1:0 and starts forwarding. Must be
    /// called inside a tokio runtime. Nothing is cut at first.
    pub async fn start(links: Vec<Link>) -> Result<LinkProxies, NetError> {
        let mut proxies = LinkProxies { proxies: BTreeMap::new() };
        for link in links {
            let key = (link.from.clone(), link.to.clone());
            if proxies.proxies.contains_key(&key) {
                return Err(NetError::DuplicateLink { from: link.from, to: link.to });
            }
            let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.map_err(|source| NetError::Bind {
                from: link.from.clone(),
                to: link.to.clone(),
                source,
            })?;
            let listen_addr = listener.local_addr().map_err(|source| NetError::Bind {
                from: link.from.clone(),
                to: link.to.clone(),
                source,
            })?;
            let (mode, mode_rx) = watch::channel(Mode::default());
            let accept_task = tokio::spawn(accept_loop(listener, link.clone(), mode_rx));
            tracing::debug!(from = %link.from, to = %link.to, %listen_addr, upstream = %link.upstream, "link proxy started");
            proxies.proxies.insert(key, Proxy { listen_addr, mode, accept_task });
        }
        Ok(proxies)
    }

    /// Where `from` must connect to reach `to`, or `None` if no such link was started.
    pub fn listen_addr(&self, from: &str, to: &str) -> Option<SocketAddr> {
        self.proxies.get(&(from.to_string(), to.to_string())).map(|p| p.listen_addr)
    }

    /// Makes the set of blackholed links exactly `cut`: links in `cut` are
    /// cut (if not already), every other link is healed (with the heal's
    /// connection resets). A pair with no proxy is ignored with a warning;
    /// [`LinkProxies::cut_links`] tells what is really cut.
    pub fn partition(&self, cut: &BTreeSet<(String, String)>) {
        for pair in cut {
            if !self.proxies.contains_key(pair) {
                tracing::warn!(from = %pair.0, to = %pair.1, "partition names a link with no proxy; ignored");
            }
        }
        for (pair, proxy) in &self.proxies {
            let want_cut = cut.contains(pair);
            proxy.mode.send_if_modified(|mode| {
                if want_cut && !mode.cut {
                    mode.cut = true;
                    mode.cuts += 1;
                    true
                } else if !want_cut && mode.cut {
                    mode.cut = false;
                    true
                } else {
                    false
                }
            });
        }
    }

    /// Makes the set of slowed links exactly `links`, each with `latency`;
    /// every other link gets none (so an empty set clears all latency).
    /// Independent of cuts: [`LinkProxies::heal`] does not clear latency.
    /// Delay and jitter above 10 s are clamped to 10 s. Bytes already held
    /// keep their release time; the new latency applies to bytes read after.
    pub fn set_latency(&self, links: &BTreeSet<(String, String)>, latency: Latency) {
        let latency = Latency {
            delay_us: latency.delay_us.min(LATENCY_US_MAX),
            jitter_us: latency.jitter_us.min(LATENCY_US_MAX),
        };
        for pair in links {
            if !self.proxies.contains_key(pair) {
                tracing::warn!(from = %pair.0, to = %pair.1, "latency names a link with no proxy; ignored");
            }
        }
        for (pair, proxy) in &self.proxies {
            let want = if links.contains(pair) { latency } else { Latency::default() };
            proxy.mode.send_if_modified(|mode| {
                let changed = mode.latency != want;
                mode.latency = want;
                changed
            });
        }
    }

    /// The links with added latency now.
    pub fn slow_links(&self) -> BTreeMap<(String, String), Latency> {
        self.proxies
            .iter()
            .filter_map(|(pair, p)| {
                let latency = p.mode.borrow().latency;
                (!latency.is_none()).then(|| (pair.clone(), latency))
            })
            .collect()
    }

    /// Restores every cut link. Connections that lived through a cut are
    /// reset; their buffered bytes are dropped. Latency is left as it is.
    pub fn heal(&self) {
        self.partition(&BTreeSet::new());
    }

    /// The directed links blackholed now.
    pub fn cut_links(&self) -> BTreeSet<(String, String)> {
        self.proxies.iter().filter(|(_, p)| p.mode.borrow().cut).map(|(pair, _)| pair.clone()).collect()
    }

    /// Stops every proxy and waits until its listener is closed. Proxied
    /// connections are closed as their tasks are dropped.
    pub async fn shutdown(mut self) {
        let proxies = std::mem::take(&mut self.proxies);
        for proxy in proxies.values() {
            proxy.accept_task.abort();
        }
        for (_, proxy) in proxies {
            // An aborted task returns a cancellation error; that is the expected outcome.
            let _ = proxy.accept_task.await;
        }
    }
}

impl Drop for LinkProxies {
    fn drop(&mut self) {
        for proxy in self.proxies.values() {
            proxy.accept_task.abort();
        }
    }
}

/// Accepts connections for one link until aborted. The connection tasks live
/// in a [`JoinSet`] owned by this task, so aborting it aborts them all.
async fn accept_loop(listener: TcpListener, link: Link, mode: watch::Receiver<Mode>) {
    let mut connections = JoinSet::new();
    loop {
        // Reap finished connections so the set does not grow without bound.
        while connections.try_join_next().is_some() {}
        match listener.accept().await {
            Ok((client, _)) => {
                let now = *mode.borrow();
                let birth = Birth { cut: now.cut, cuts: now.cuts };
                connections.spawn(connection(client, link.upstream, mode.clone(), birth));
            }
            Err(error) => {
                // EMFILE and friends: back off instead of spinning, keep serving.
                tracing::warn!(from = %link.from, to = %link.to, %error, "link proxy failed to accept; retrying in 100 ms");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Closes a socket with RST instead of FIN, discarding anything unsent.
fn reset(stream: &TcpStream) {
    // If SO_LINGER cannot be set the socket still closes, with a FIN.
    let _ = stream.set_zero_linger();
}

/// Waits until the link is not cut; returns whether the connection must be reset.
async fn wait_uncut(mode: &mut watch::Receiver<Mode>, birth: Birth) -> Gate {
    loop {
        let g = gate(*mode.borrow_and_update(), birth);
        if g != Gate::Hold {
            return g;
        }
        if mode.changed().await.is_err() {
            // The proxies were dropped: treat as a reset.
            return Gate::Reset;
        }
    }
}

/// Serves one accepted connection to its end.
async fn connection(client: TcpStream, upstream: SocketAddr, mut mode: watch::Receiver<Mode>, birth: Birth) {
    if birth.cut {
        // Accepted during a cut: never forwarded; reset once the link heals.
        wait_uncut(&mut mode, birth).await;
        reset(&client);
        return;
    }
    let connect = TcpStream::connect(upstream);
    let server = match tokio::time::timeout(Duration::from_millis(UPSTREAM_CONNECT_TIMEOUT_MS), connect).await {
        Ok(Ok(server)) => server,
        failed => {
            let why = match failed {
                Ok(Err(error)) => error.to_string(),
                _ => format!("no answer within {UPSTREAM_CONNECT_TIMEOUT_MS} ms"),
            };
            tracing::debug!(%upstream, %why, "link proxy failed to connect upstream; resetting the client");
            // A refusal must not cross a cut that started meanwhile: hold it until heal.
            wait_uncut(&mut mode, birth).await;
            reset(&client);
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let reset_both = {
        let to_server = pump(&mut client_read, &mut server_write, mode.clone(), birth);
        let to_client = pump(&mut server_read, &mut client_write, mode.clone(), birth);
        tokio::pin!(to_server, to_client);
        let (first, rest_is_to_client) = tokio::select! {
            f = &mut to_server => (f, true),
            f = &mut to_client => (f, false),
        };
        match first {
            Flow::Eof => {
                // Half-closed one way; the other direction carries on.
                let second = if rest_is_to_client { to_client.await } else { to_server.await };
                second == Flow::Reset
            }
            Flow::Reset => true,
        }
    };
    if reset_both {
        reset(client_read.as_ref());
        reset(server_read.as_ref());
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    /// The source closed its side cleanly; the FIN was passed on.
    Eof,
    /// The connection lived through a cut, or failed: reset both sides.
    Reset,
}

/// Forwards one direction of a connection, honouring the link's mode.
async fn pump(
    src: &mut OwnedReadHalf,
    dst: &mut OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
    birth: Birth,
) -> Flow {
    let mut buf = vec![0u8; FORWARD_BUFFER_BYTES];
    'forward: loop {
        if wait_uncut(&mut mode, birth).await == Gate::Reset {
            return Flow::Reset;
        }
        if !mode.borrow().latency.is_none() {
            match pump_delayed(src, dst, &mut mode, birth, &mut buf).await {
                Some(flow) => return flow,
                None => continue 'forward,
            }
        }
        let n = tokio::select! {
            biased;
            changed = mode.changed() => {
                if changed.is_err() {
                    return Flow::Reset;
                }
                continue 'forward;
            }
            read = src.read(&mut buf) => match read {
                Ok(n) => n,
                Err(_) => return Flow::Reset,
            },
        };
        if n == 0 {
            // Pass the FIN on; a failure here means the other side is gone.
            return if dst.shutdown().await.is_ok() { Flow::Eof } else { Flow::Reset };
        }
        let mut written = 0;
        while written < n {
            // Bytes read just before a cut are dropped with the connection
            // (it will be reset at heal), never delivered late.
            if gate(*mode.borrow_and_update(), birth) != Gate::Pass {
                continue 'forward;
            }
            tokio::select! {
                biased;
                changed = mode.changed() => {
                    if changed.is_err() {
                        return Flow::Reset;
                    }
                }
                wrote = dst.write(&buf[written..n]) => match wrote {
                    Ok(0) | Err(_) => return Flow::Reset,
                    Ok(k) => written += k,
                },
            }
        }
    }
}

/// Bytes read from one side, waiting for their release time.
struct Held {
    release: tokio::time::Instant,
    bytes: Vec<u8>,
    written: usize,
}

/// Forwards one direction while the link has latency: reading and writing
/// run side by side (so a byte's delay counts from when the proxy read it,
/// not from when the previous chunk left), through a queue bounded by
/// [`DELAY_QUEUE_BYTES_MAX`]. Returns `None` once the latency is gone and the
/// queue is empty (back to the plain pump), else how the direction ended.
async fn pump_delayed(
    src: &mut OwnedReadHalf,
    dst: &mut OwnedWriteHalf,
    mode: &mut watch::Receiver<Mode>,
    birth: Birth,
    buf: &mut [u8],
) -> Option<Flow> {
    use rand::SeedableRng;
    // Jitter needs no seed: proxy timing is not replayable anyway.
    let mut rng = rand_chacha::ChaCha8Rng::from_entropy();
    let mut queue: std::collections::VecDeque<Held> = std::collections::VecDeque::new();
    let mut queued_bytes = 0usize;
    let mut last_release = tokio::time::Instant::now();
    let mut eof = false;
    loop {
        let now_mode = *mode.borrow_and_update();
        if gate(now_mode, birth) != Gate::Pass {
            // Held bytes are dropped with the connection, which is reset at heal.
            return Some(if wait_uncut(mode, birth).await == Gate::Reset { Flow::Reset } else { continue });
        }
        if queue.is_empty() {
            if eof {
                return Some(if dst.shutdown().await.is_ok() { Flow::Eof } else { Flow::Reset });
            }
            if now_mode.latency.is_none() {
                return None;
            }
        }
        let now = tokio::time::Instant::now();
        let front_release = queue.front().map(|h| h.release);
        let due = front_release.is_some_and(|r| r <= now);
        let can_read = !eof && queued_bytes < DELAY_QUEUE_BYTES_MAX;
        tokio::select! {
            biased;
            changed = mode.changed() => {
                if changed.is_err() {
                    return Some(Flow::Reset);
                }
            }
            wrote = async {
                let h = queue.front().expect("due implies a queued chunk");
                dst.write(&h.bytes[h.written..]).await
            }, if due => match wrote {
                Ok(0) | Err(_) => return Some(Flow::Reset),
                Ok(k) => {
                    let h = queue.front_mut().expect("due implies a queued chunk");
                    h.written += k;
                    if h.written == h.bytes.len() {
                        queued_bytes -= h.bytes.len();
                        queue.pop_front();
                    }
                }
            },
            _ = tokio::time::sleep_until(front_release.unwrap_or(now)), if !due && front_release.is_some() => {}
            read = src.read(buf), if can_read => match read {
                Ok(0) => eof = true,
                Ok(n) => {
                    let latency = now_mode.latency;
                    let extra_us = latency.delay_us + rng.gen_range(0..=latency.jitter_us);
                    let release = (tokio::time::Instant::now() + Duration::from_micros(extra_us)).max(last_release);
                    last_release = release;
                    queued_bytes += n;
                    queue.push_back(Held { release, bytes: buf[..n].to_vec(), written: 0 });
                }
                Err(_) => return Some(Flow::Reset),
            },
        }
    }
}

/// A partition shape: which nodes can still talk to which.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// One node (the leader if known, else a seeded pick) cut off from all others.
    IsolateOne,
    /// A seeded minority of `(n - 1) / 2` nodes (at least 1) cut off from the majority.
    MajorityMinority,
    /// The nodes but one split into two halves that cannot talk to each other;
    /// the remaining (bridge) node talks to both. Needs at least 3 nodes.
    Bridge,
    /// A seeded split into halves of `n / 2` and `n - n / 2` nodes.
    RandomHalves,
    /// These nodes form one side, every other node the other side.
    Nodes(Vec<String>),
}

impl Shape {
    /// The scenario's name for the shape (`Nodes` has none: it is a list).
    pub fn name(&self) -> &'static str {
        match self {
            Shape::IsolateOne => "isolate-one",
            Shape::MajorityMinority => "majority-minority",
            Shape::Bridge => "bridge",
            Shape::RandomHalves => "random-halves",
            Shape::Nodes(_) => "nodes",
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shape::Nodes(list) => write!(f, "nodes {list:?}"),
            other => f.write_str(other.name()),
        }
    }
}

impl FromStr for Shape {
    type Err = NetError;

    /// Parses `isolate-one`, `majority-minority`, `bridge`, `random-halves`.
    fn from_str(s: &str) -> Result<Shape, NetError> {
        match s {
            "isolate-one" => Ok(Shape::IsolateOne),
            "majority-minority" => Ok(Shape::MajorityMinority),
            "bridge" => Ok(Shape::Bridge),
            "random-halves" => Ok(Shape::RandomHalves),
            _ => Err(NetError::UnknownShape { given: s.to_string() }),
        }
    }
}

/// Checks that [`shape_cut`] can cut `nodes` this way (call it when the
/// scenario is validated; [`shape_cut`] panics on what this rejects).
pub fn validate_shape(shape: &Shape, nodes: &[String]) -> Result<(), NetError> {
    let bad = |message: String, fix: &str| NetError::BadShape {
        shape: shape.to_string(),
        nodes: nodes.to_vec(),
        message,
        fix: fix.to_string(),
    };
    let unique: BTreeSet<&String> = nodes.iter().collect();
    if unique.len() != nodes.len() {
        return Err(bad("a node is listed twice".into(), "list each node once"));
    }
    let min_nodes = if *shape == Shape::Bridge { 3 } else { 2 };
    if nodes.len() < min_nodes {
        return Err(bad(
            format!("needs at least {min_nodes} nodes, got {}", nodes.len()),
            "run more nodes or drop the partition fault",
        ));
    }
    if let Shape::Nodes(side) = shape {
        let side_set: BTreeSet<&String> = side.iter().collect();
        if let Some(unknown) = side.iter().find(|n| !unique.contains(n)) {
            return Err(bad(format!("node {unknown} is not in the cluster"), "name nodes n1 .. nN of this scenario"));
        }
        if side_set.is_empty() || side_set.len() == unique.len() {
            return Err(bad(
                "the listed side must hold at least one node and leave at least one out".into(),
                "list a proper subset of the nodes",
            ));
        }
    }
    Ok(())
}

/// The directed links to cut for `shape` over `nodes`, and the resulting
/// groups (who can still talk to whom, for the event's details).
///
/// Every node pair that shares no group is cut in both directions, so the
/// cut is always symmetric. Nodes are sorted first and every random choice
/// comes from `rng`, so a seed and a node list give the same cut every time.
/// Groups: names sorted inside each group, groups sorted by (size, names);
/// for [`Shape::Bridge`] the two groups overlap in the bridge node.
/// `leader` is used by [`Shape::IsolateOne`] only.
///
/// # Panics
///
/// On input [`validate_shape`] rejects, or a `leader` not in `nodes`.
pub fn shape_cut(
    shape: &Shape,
    nodes: &[String],
    rng: &mut impl Rng,
    leader: Option<&str>,
) -> (BTreeSet<(String, String)>, Vec<Vec<String>>) {
    if let Err(e) = validate_shape(shape, nodes) {
        panic!("shape_cut called with input validate_shape rejects: {e}");
    }
    let mut sorted: Vec<String> = nodes.to_vec();
    sorted.sort();
    let n = sorted.len();
    let mut groups: Vec<Vec<String>> = match shape {
        Shape::IsolateOne => {
            let victim = match leader {
                Some(l) => {
                    assert!(sorted.iter().any(|x| x == l), "leader {l} is not one of the nodes {sorted:?}");
                    l.to_string()
                }
                None => sorted[rng.gen_range(0..n)].clone(),
            };
            let rest = sorted.iter().filter(|x| **x != victim).cloned().collect();
            vec![vec![victim], rest]
        }
        Shape::MajorityMinority => {
            sorted.shuffle(rng);
            let minority = ((n - 1) / 2).max(1);
            let majority = sorted.split_off(minority);
            vec![sorted, majority]
        }
        Shape::RandomHalves => {
            sorted.shuffle(rng);
            let second = sorted.split_off(n / 2);
            vec![sorted, second]
        }
        Shape::Bridge => {
            sorted.shuffle(rng);
            let bridge = sorted.pop().expect("validate_shape guarantees at least 3 nodes");
            let mut second = sorted.split_off((n - 1) / 2);
            let mut first = sorted;
            first.push(bridge.clone());
            second.push(bridge);
            vec![first, second]
        }
        Shape::Nodes(side) => {
            let side: BTreeSet<&String> = side.iter().collect();
            let (listed, rest): (Vec<String>, Vec<String>) = sorted.into_iter().partition(|x| side.contains(x));
            vec![listed, rest]
        }
    };
    for group in &mut groups {
        group.sort();
        assert!(!group.is_empty(), "shape {shape} produced an empty group over {nodes:?}");
    }
    groups.sort_by(|a, b| (a.len(), a).cmp(&(b.len(), b)));
    let mut cut = BTreeSet::new();
    for a in nodes {
        for b in nodes {
            if a != b && !groups.iter().any(|g| g.contains(a) && g.contains(b)) {
                cut.insert((a.clone(), b.clone()));
            }
        }
    }
    assert!(!cut.is_empty(), "shape {shape} cut nothing over {nodes:?}");
    assert!(cut.iter().all(|(a, b)| cut.contains(&(b.clone(), a.clone()))), "cut is not symmetric: {cut:?}");
    (cut, groups)
}

/// The `events.jsonl` line for a partition: `nodes` = every node with a cut
/// link (sorted); details `shape` (its name), `groups` (as [`shape_cut`]
/// returned them) and `links` (the cut directed links as `[from, to]` pairs,
/// sorted).
pub fn partition_event(t_ns: u64, shape: &Shape, groups: &[Vec<String>], cut: &BTreeSet<(String, String)>) -> Event {
    let nodes: BTreeSet<&String> = cut.iter().flat_map(|(a, b)| [a, b]).collect();
    let links: Vec<[&String; 2]> = cut.iter().map(|(a, b)| [a, b]).collect();
    Event::new(t_ns, EventKind::Partition, nodes.into_iter().cloned().collect())
        .with("shape", shape.name())
        .with("groups", serde_json::json!(groups))
        .with("links", serde_json::json!(links))
}
