//! Real NATS JetStream (`nats-server`, installed by `scripts/install-nats.sh`)
//! as a target: finds the pinned binary, writes each node's config file,
//! waits for the cluster through the monitoring endpoints, creates the
//! stream, publishes through `async-nats` with pipelined acks, and reads
//! each replica back from its message block files after a clean stop
//! ([`ReadBack::AfterStop`]). See docs/nats.md.
//!
//! What it does not do: start, stop or fault the processes (the controller
//! owns them), TLS, auth, accounts other than the global one, or streams
//! other than the one it creates ([`STREAM_NAME`] on [`SUBJECT`]).
//!
//! Each published message carries its history id at the start of its
//! payload: the id, then [`ID_SEPARATOR`], then the workload's filler
//! ([`message_body`]); both read paths take the id from there
//! ([`message_id`]), and still read the [`ID_HEADER`] header that runs
//! before this form wrote. The id travels in the payload, not in a header,
//! because header parsing on the servers cost ~10% of the publish rate
//! (docs/nats.md, Benchmark).

pub mod blocks;
mod config;
pub mod http;
mod install;
mod monitor;
pub mod placement;
mod publish;
mod read;

pub use config::*;
pub use install::*;
use monitor::*;
pub use monitor::{ReplicaCounts, jsz_counts};
use publish::*;
pub use read::*;

use crate::{BoxFuture, CommandSpec, NodeSpec, PublishOutcome, Publisher, ReadBack, Target, TargetError};
use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;
use jetsam_core::duration::parse_duration;
use jetsam_core::recovered::RecoveredMsg;
use jetsam_core::report::Mode;
use jetsam_core::scenario::Scenario;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The one stream jetsam creates.
pub const STREAM_NAME: &str = "jetsam";
/// Its one subject.
pub const SUBJECT: &str = "jetsam.0";
/// The header that carried the history id before it moved into the payload
/// (read back still, for run folders and data dirs of earlier runs).
pub const ID_HEADER: &str = "Jetsam-Id";
/// Ends the history id at the start of a message's payload (no id holds it).
pub const ID_SEPARATOR: u8 = b' ';
/// The longest id: `u32` client, `-`, `u64` counter.
pub const ID_BYTES_MAX: usize = 10 + 1 + 20;
/// The install script, relative to the repository root.
pub const INSTALL_SCRIPT: &str = "scripts/install-nats.sh";
/// Versions the install script installs by default.
pub const DEFAULT_VERSIONS: [&str; 2] = ["2.12.1", "2.15.1"];
/// nats-server's default `max_payload`; a publish above it is rejected by the client.
pub const MAX_PAYLOAD_BYTES: u32 = 1024 * 1024;

/// One monitoring request's bound.
const HTTP_TIMEOUT: Duration = Duration::from_secs(1);
/// One client connection attempt's bound.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between polls of a bounded wait.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Pause between stream creation attempts.
const CREATE_RETRY_INTERVAL: Duration = Duration::from_millis(250);
/// Bound on reading the whole stream through an ordered consumer: a base
/// plus a per-message allowance (10k messages/s, far below the ~100k/s seen
/// on loopback), so long runs get proportionally longer.
const READ_CLUSTER_BASE_TIMEOUT: Duration = Duration::from_secs(30);
const READ_CLUSTER_PER_MESSAGE_TIMEOUT: Duration = Duration::from_micros(100);
/// The convergence wait gives up early when no node has named a stream
/// leader for this long (and the counts stand still). nats-server's Raft
/// waits 4-9 s (`minElectionTimeoutDefault`..`maxElectionTimeoutDefault`,
/// server/raft.go) before it campaigns; after all nodes restart, the meta
/// group elects first and the stream group after it. Measured on 2.12.1
/// after #7564's coordinated power loss: stream leader 9.1-10.7 s after the
/// restart (meta leader 4.1-6.2 s). 20 s covers one worst-case round of
/// each (2 x 9 s) plus the answer.
const NO_LEADER_GIVE_UP: Duration = Duration::from_secs(20);
/// ... provided the per-node counts have not changed for this long.
const NO_LEADER_COUNTS_STABLE: Duration = Duration::from_secs(5);
/// The convergence wait also gives up when the stream leader has reported
/// every replica current while their counts differed and stood still for
/// this long. Measured on 2.12.1 after #7564's coordinated power loss: the
/// leader held 3,014 messages, both followers 2,992, "current" and
/// unchanged for the remaining 18-23 s of the 30 s wait. Catch-up moves
/// the counts within a poll or two; 10 s of stillness is no catch-up.
const CURRENT_BUT_UNEQUAL_GIVE_UP: Duration = Duration::from_secs(10);
/// Bound on the wait for a stream leader before the cluster read.
const READ_CLUSTER_LEADER_TIMEOUT: Duration = Duration::from_secs(15);
/// Bound on the wait for the next message of the ordered consumer.
const READ_CLUSTER_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pending acks per publishing client before `publish` waits for one.
const ACKS_IN_FLIGHT_MAX: usize = 4096;
/// Bound on `nats-server --version`.
const VERSION_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

async fn connect(node: &NodeSpec, name: String, request_timeout: Duration) -> Result<async_nats::Client, String> {
    let options = async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(CONNECT_TIMEOUT)
        .request_timeout(Some(request_timeout))
        // One client talks to one node: with no_advertise there is nothing to
        // discover anyway, and failover would blur which node acknowledged.
        .ignore_discovered_servers()
        .max_reconnects(None);
    let url = format!("nats://{}", node.client_addr);
    match tokio::time::timeout(CONNECT_TIMEOUT * 2, options.connect(url.as_str())).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(e)) => Err(format!("connect to {} at {url}: {e}", node.name)),
        Err(_) => Err(format!("connect to {} at {url}: no answer within {:?}", node.name, CONNECT_TIMEOUT * 2)),
    }
}

fn stream_config(scenario: &Scenario) -> stream::Config {
    stream::Config {
        name: STREAM_NAME.to_string(),
        subjects: vec![SUBJECT.to_string()],
        storage: stream::StorageType::File,
        num_replicas: scenario.stream.replicas as usize,
        discard: stream::DiscardPolicy::New,
        allow_direct: true,
        persist_mode: (scenario.stream.mode() == Mode::Async).then_some(stream::PersistenceMode::Async),
        ..Default::default()
    }
}

/// The body jetsam publishes for history id `id`: the workload's `payload`
/// with its first `id.len() + 1` bytes replaced by the id and
/// [`ID_SEPARATOR`], so the message keeps the workload's size; a payload
/// shorter than that becomes the id and the separator alone. Reuses the
/// payload's buffer (no copy) when it is long enough.
pub fn message_body(id: &str, mut payload: Vec<u8>) -> Vec<u8> {
    let prefix = id.len() + 1;
    if payload.len() < prefix {
        payload.clear();
        payload.resize(prefix, 0);
    }
    payload[..id.len()].copy_from_slice(id.as_bytes());
    payload[id.len()] = ID_SEPARATOR;
    payload
}

/// The history id a stored message carries: the [`ID_HEADER`] header if
/// it has one (messages written before the id moved into the payload),
/// else the `<client>-<counter>` before the first [`ID_SEPARATOR`] of the
/// payload. `None` when neither holds an id of that form.
pub fn message_id<'a>(headers: Option<&'a [u8]>, payload: &'a [u8]) -> Option<&'a str> {
    if let Some(id) = headers.and_then(|h| blocks::header_value(h, ID_HEADER)).filter(|id| !id.is_empty()) {
        return Some(id);
    }
    let head = &payload[..payload.len().min(ID_BYTES_MAX + 1)];
    let end = head.iter().position(|&b| b == ID_SEPARATOR)?;
    let id = &head[..end];
    let digits = |part: &[u8]| !part.is_empty() && part.iter().all(u8::is_ascii_digit);
    let dash = id.iter().position(|&b| b == b'-')?;
    (digits(&id[..dash]) && digits(&id[dash + 1..])).then(|| std::str::from_utf8(id).expect("ASCII digits and a dash"))
}

/// The id a stored message carries, or a marker naming its sequence (an
/// id no writer ever uses, so the checker counts it as unexpected).
fn id_or_marker(id: Option<&str>, seq: u64) -> String {
    match id {
        Some(id) => id.to_string(),
        None => format!("?no-jetsam-id@{seq}"),
    }
}

/// NATS JetStream, one pinned `nats-server` binary.
#[derive(Debug, Clone)]
pub struct NatsTarget {
    server: PathBuf,
    /// Set by the last convergence wait that ended with no stream leader: why.
    no_leader: Arc<Mutex<Option<String>>>,
    /// The stream's replica count, stored by `create_stream` and
    /// `wait_converged` for the calls that get no scenario (`leader`); 0
    /// until then, read as "one per node".
    replicas: Arc<AtomicUsize>,
}

impl NatsTarget {
    /// A target running this `nats-server` binary.
    pub fn new(server: PathBuf) -> NatsTarget {
        NatsTarget { server, no_leader: Arc::default(), replicas: Arc::default() }
    }

    /// Finds the binary for the scenario's `target.version` ([`find_nats_server`]).
    pub fn for_scenario(scenario: &Scenario, explicit: Option<&Path>) -> Result<NatsTarget, TargetError> {
        let version = scenario.target.version.as_deref().ok_or_else(|| TargetError::Missing {
            what: "nats-server version".into(),
            detail: "the scenario has no target.version".into(),
            fix: format!("set target.version, e.g. \"{}\"", DEFAULT_VERSIONS[0]),
        })?;
        Ok(NatsTarget::new(find_nats_server(version, explicit)?))
    }

    pub fn server(&self) -> &Path {
        &self.server
    }

    async fn wait_ready_inner(&self, nodes: &[NodeSpec], timeout: Duration) -> Result<(), TargetError> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match ready_once(nodes).await {
                Ok(()) => return Ok(()),
                Err(why) => why,
            };
            if Instant::now() >= deadline {
                return Err(TargetError::Timeout {
                    action: "wait for the NATS cluster to be ready (every /healthz ok, every peer current at the meta leader)".into(),
                    waited: timeout,
                    detail: format!("{last}; see the nodes' logs"),
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    async fn create_stream_inner(
        &self,
        scenario: &Scenario,
        nodes: &[NodeSpec],
        timeout: Duration,
    ) -> Result<(), TargetError> {
        assert!(!nodes.is_empty(), "create_stream needs at least one node");
        self.replicas.store(scenario.stream.replicas as usize, Ordering::Relaxed);
        let deadline = Instant::now() + timeout;
        let config = stream_config(scenario);
        let mut last = String::from("no attempt finished");
        let mut attempt = 0usize;
        let mut created = false;
        while Instant::now() < deadline {
            let node = &nodes[attempt % nodes.len()];
            attempt += 1;
            if !created {
                match create_once(node, &config).await {
                    Ok(()) => created = true,
                    Err(CreateError::Rejected(detail)) => {
                        return Err(TargetError::Other {
                            action: format!("create stream {STREAM_NAME} on {}", node.name),
                            detail: format!(
                                "{detail}; check the scenario's stream settings against this nats-server version"
                            ),
                        });
                    }
                    Err(CreateError::Retry(detail)) => last = detail,
                }
            }
            if created {
                // The first publishes fail until the stream has a leader and its
                // replicas are current; wait for that here so the load starts clean.
                match self.leader_inner(nodes).await {
                    Some((_, true)) => match nodes_without_interest(nodes).await {
                        Ok(missing) if missing.is_empty() => return Ok(()),
                        Ok(missing) => last = format!("{SUBJECT} has no responder yet as seen from {missing:?}"),
                        Err(e) => last = e,
                    },
                    Some((leader, false)) => last = format!("stream leader {leader} reports replicas not yet current"),
                    None => last = "stream created but no node reports its leader yet".into(),
                }
            }
            tokio::time::sleep(CREATE_RETRY_INTERVAL).await;
        }
        Err(TargetError::Timeout {
            action: format!("create stream {STREAM_NAME} with {} replicas and see its leader", config.num_replicas),
            waited: timeout,
            detail: format!("{last} (after {attempt} attempts); see the nodes' logs"),
        })
    }

    /// The stream leader and whether it sees every other replica as current ([`leader_from`]).
    async fn leader_inner(&self, nodes: &[NodeSpec]) -> Option<(String, bool)> {
        let replicas = match self.replicas.load(Ordering::Relaxed) {
            0 => nodes.len(),
            r => r,
        };
        leader_from(&jsz_all(nodes).await, nodes.len(), replicas)
    }

    /// How many messages `node`'s replica lacks that the leader's holds:
    /// the difference of their `last_seq` in each one's own `/jsz`.
    async fn behind_inner(&self, nodes: &[NodeSpec], node: &str) -> Option<u64> {
        let replicas = match self.replicas.load(Ordering::Relaxed) {
            0 => nodes.len(),
            r => r,
        };
        let jszs = jsz_all(nodes).await;
        let (leader, _) = leader_from(&jszs, nodes.len(), replicas)?;
        behind_from(&counts_from(&jszs), &leader, node)
    }

    /// Waits until every replica's `/jsz` reports the same counts under a
    /// leader that sees them current. Gives up before `timeout` when waiting
    /// on would only delay the verdict (both seen after #7564's coordinated
    /// power loss): no node has named a stream leader for
    /// [`NO_LEADER_GIVE_UP`] and the counts have not moved for
    /// [`NO_LEADER_COUNTS_STABLE`] (nats-server is not electing), or the
    /// leader has seen every replica current while their counts differed
    /// and stood still for [`CURRENT_BUT_UNEQUAL_GIVE_UP`] (it sees nothing
    /// to repair). Either way a wait that ends with no
    /// leader is remembered, so [`Self::read_cluster_inner`] does not wait
    /// for one again.
    async fn wait_converged_inner(
        &self,
        scenario: &Scenario,
        nodes: &[NodeSpec],
        timeout: Duration,
    ) -> Result<(), TargetError> {
        let started = Instant::now();
        let deadline = started + timeout;
        let replicas = scenario.stream.replicas as usize;
        self.replicas.store(replicas, Ordering::Relaxed);
        *self.no_leader.lock().expect("no_leader lock") = None;
        let mut watch = ConvergeWatch::new(replicas, started);
        loop {
            let jszs = jsz_all(nodes).await;
            let now = Instant::now();
            let counts = counts_from(&jszs);
            let leader = leader_from(&jszs, nodes.len(), replicas);
            let state = format!(
                "per-node (messages, first_seq, last_seq) from /jsz: {counts:?}; leader (name, replicas current): {leader:?}"
            );
            let waited = now - started;
            let step = watch.observe(now, counts, leader);
            let no_leader = || {
                let why = format!(
                    "no node named a stream leader in the last {:.1} s of the convergence wait",
                    watch.no_leader_for(now).as_secs_f64()
                );
                *self.no_leader.lock().expect("no_leader lock") = Some(why.clone());
                why
            };
            match step {
                Converge::Done => return Ok(()),
                Converge::NotElecting => {
                    return Err(TargetError::Other {
                        action: format!("wait for the replicas of {STREAM_NAME} to converge"),
                        detail: format!(
                            "gave up after {:.1} s of the {timeout:?} allowed: {} while the counts stood still for {:.1} s, \
                             so nats-server is not electing one (an election round takes 4-9 s; see docs/nats.md); {state}",
                            waited.as_secs_f64(),
                            no_leader(),
                            watch.counts_stable_for(now).as_secs_f64()
                        ),
                    });
                }
                Converge::NothingToRepair => {
                    return Err(TargetError::Other {
                        action: format!("wait for the replicas of {STREAM_NAME} to converge"),
                        detail: format!(
                            "gave up after {:.1} s of the {timeout:?} allowed: the stream leader has reported every replica \
                             current for {:.1} s while their counts differed and stood still for {:.1} s, so nats-server sees \
                             nothing to repair; {state}",
                            waited.as_secs_f64(),
                            watch.current_for(now).as_secs_f64(),
                            watch.counts_stable_for(now).as_secs_f64()
                        ),
                    });
                }
                Converge::Wait if now >= deadline => {
                    let leaderless = watch.no_leader_for(now) > Duration::ZERO;
                    let detail = if leaderless { format!("{}; {state}", no_leader()) } else { state };
                    return Err(TargetError::Timeout {
                        action: format!(
                            "wait for all {replicas} replicas of {STREAM_NAME} to hold the same messages under a leader that sees them current"
                        ),
                        waited,
                        detail,
                    });
                }
                Converge::Wait => tokio::time::sleep(POLL_INTERVAL).await,
            }
        }
    }

    async fn read_cluster_inner(&self, nodes: &[NodeSpec]) -> Result<Vec<RecoveredMsg>, String> {
        // Stream API requests go to the leader and wait out their timeouts
        // while there is none, so without a leader there is nothing to read.
        let no_leader = self.no_leader.lock().expect("no_leader lock").clone();
        if let Some(why) = no_leader {
            // The convergence wait already waited for one: look once more, not again for long.
            if self.leader_inner(nodes).await.is_none() {
                return Err(format!(
                    "failed to read stream {STREAM_NAME} through any node: it has no leader ({why}; still none now)"
                ));
            }
        } else {
            let deadline = Instant::now() + READ_CLUSTER_LEADER_TIMEOUT;
            while self.leader_inner(nodes).await.is_none() {
                if Instant::now() >= deadline {
                    return Err(format!(
                        "failed to read stream {STREAM_NAME} through any node: no node named a stream leader within {READ_CLUSTER_LEADER_TIMEOUT:?}"
                    ));
                }
                tokio::time::sleep(POLL_INTERVAL).await;
            }
        }
        let mut errors = Vec::new();
        for node in nodes {
            match read_through(node).await {
                Ok(msgs) => return Ok(msgs),
                Err(e) => errors.push(e),
            }
        }
        Err(format!("failed to read stream {STREAM_NAME} through any node: {}", errors.join("; ")))
    }
}

async fn ready_once(nodes: &[NodeSpec]) -> Result<(), String> {
    for node in nodes {
        let (status, body) = http::get(node.monitor_addr, "/healthz", HTTP_TIMEOUT).await?;
        if status != 200 {
            return Err(format!("{}: /healthz answered HTTP {status}: {}", node.name, body.trim()));
        }
    }
    if nodes.len() == 1 {
        return Ok(());
    }
    let mut leader = None;
    for node in nodes {
        let jsz = jsz(node, false).await?;
        if let Some(name) = jsz["meta_cluster"]["leader"].as_str().filter(|l| !l.is_empty()) {
            leader = Some(name.to_string());
            break;
        }
    }
    let leader = leader.ok_or("no node reports a JetStream meta leader yet")?;
    let leader_node = nodes
        .iter()
        .find(|n| n.name == leader)
        .ok_or_else(|| format!("the meta leader {leader:?} is not one of this cluster's nodes"))?;
    let jsz = jsz(leader_node, false).await?;
    let replicas = jsz["meta_cluster"]["replicas"].as_array().cloned().unwrap_or_default();
    for node in nodes.iter().filter(|n| n.name != leader) {
        let current = replicas.iter().any(|r| r["name"] == node.name.as_str() && r["current"].as_bool() == Some(true));
        if !current {
            return Err(format!("meta leader {leader} does not list {} as a current peer yet", node.name));
        }
    }
    Ok(())
}

/// Nodes where a publish to [`SUBJECT`] would find no responder yet: the
/// stream's subscription is local to its leader and reaches the other nodes
/// as route interest a moment after the leader is elected; until then a
/// publish there gets "no responders".
async fn nodes_without_interest(nodes: &[NodeSpec]) -> Result<Vec<String>, String> {
    let mut missing = Vec::new();
    for node in nodes {
        let (status, body) =
            http::get(node.monitor_addr, &format!("/subsz?subs=1&test={SUBJECT}"), HTTP_TIMEOUT).await?;
        let subsz: Value = serde_json::from_str(&body)
            .map_err(|e| format!("{}: /subsz (HTTP {status}) is not JSON: {e}", node.name))?;
        if subsz["total"].as_u64().unwrap_or(0) > 0 {
            continue;
        }
        let (status, body) = http::get(node.monitor_addr, "/routez?subs=1", HTTP_TIMEOUT).await?;
        let routez: Value = serde_json::from_str(&body)
            .map_err(|e| format!("{}: /routez (HTTP {status}) is not JSON: {e}", node.name))?;
        let routed = routez["routes"].as_array().is_some_and(|routes| {
            routes
                .iter()
                .any(|r| r["subscriptions_list"].as_array().is_some_and(|subs| subs.iter().any(|s| s == SUBJECT)))
        });
        if !routed {
            missing.push(node.name.clone());
        }
    }
    Ok(missing)
}

enum CreateError {
    /// The server refused this configuration: retrying cannot help.
    Rejected(String),
    Retry(String),
}

async fn create_once(node: &NodeSpec, config: &stream::Config) -> Result<(), CreateError> {
    let client = connect(node, "jetsam-create-stream".into(), CONNECT_TIMEOUT).await.map_err(CreateError::Retry)?;
    let js = jetstream::new(client);
    match js.create_stream(config.clone()).await {
        Ok(mut created) => {
            let info = created.info().await.map_err(|e| CreateError::Retry(format!("stream info: {e}")))?;
            assert_eq!(info.config.num_replicas, config.num_replicas, "the server changed the stream's replica count");
            Ok(())
        }
        Err(e) => {
            if let jetstream::context::CreateStreamErrorKind::JetStream(api) = e.kind() {
                // 10052: persist mode unsupported; 10058: exists with another config.
                // Config errors (10025 etc.) do not heal by waiting either.
                let code = api.error_code().0;
                if [10052, 10058, 10025, 10033, 10034].contains(&code) {
                    return Err(CreateError::Rejected(format!("{} refused the stream: {api}", node.name)));
                }
            }
            Err(CreateError::Retry(format!("{}: {e}", node.name)))
        }
    }
}

impl Target for NatsTarget {
    fn kind(&self) -> &'static str {
        "nats"
    }

    fn validate(&self, scenario: &Scenario) -> Result<(), (String, String)> {
        validate_scenario(scenario)
    }

    fn command(&self, scenario: &Scenario, node: &NodeSpec) -> Result<CommandSpec, TargetError> {
        let conf = render_config(scenario, node)?;
        let path = node.conf_dir.join(format!("{}.conf", node.name));
        std::fs::create_dir_all(&node.conf_dir).and_then(|()| std::fs::write(&path, conf)).map_err(|e| {
            TargetError::Other {
                action: format!("write the nats-server config {}", path.display()),
                detail: format!("{e}; check that the run folder is writable"),
            }
        })?;
        Ok(CommandSpec {
            program: self.server.clone(),
            args: vec!["--config".into(), path.display().to_string()],
            env: BTreeMap::new(),
        })
    }

    fn wait_ready<'a>(&'a self, nodes: &'a [NodeSpec], timeout: Duration) -> BoxFuture<'a, Result<(), TargetError>> {
        Box::pin(self.wait_ready_inner(nodes, timeout))
    }

    fn create_stream<'a>(
        &'a self,
        scenario: &'a Scenario,
        nodes: &'a [NodeSpec],
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), TargetError>> {
        Box::pin(self.create_stream_inner(scenario, nodes, timeout))
    }

    fn publisher<'a>(
        &'a self,
        scenario: &'a Scenario,
        nodes: &'a [NodeSpec],
        client: u32,
    ) -> BoxFuture<'a, Result<Box<dyn Publisher>, TargetError>> {
        Box::pin(async move {
            assert!(!nodes.is_empty(), "publisher needs at least one node");
            let node = &nodes[client as usize % nodes.len()];
            let timeout = scenario.workload.timeout;
            let client = connect(node, format!("jetsam-client-{client}"), timeout)
                .await
                .map_err(|detail| TargetError::Other { action: "connect a publishing client".into(), detail })?;
            let js = jetstream::ContextBuilder::new()
                .timeout(timeout)
                .max_ack_inflight(ACKS_IN_FLIGHT_MAX)
                .backpressure_on_inflight(true)
                .build(client);
            Ok(Box::new(NatsPublisher { js, node: node.name.clone() }) as Box<dyn Publisher>)
        })
    }

    fn leader<'a>(&'a self, nodes: &'a [NodeSpec]) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move { self.leader_inner(nodes).await.map(|(leader, _)| leader) })
    }

    fn sees_behind(&self) -> bool {
        true
    }

    fn behind<'a>(&'a self, nodes: &'a [NodeSpec], node: &'a str) -> BoxFuture<'a, Option<u64>> {
        Box::pin(self.behind_inner(nodes, node))
    }

    fn wait_converged<'a>(
        &'a self,
        scenario: &'a Scenario,
        nodes: &'a [NodeSpec],
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), TargetError>> {
        Box::pin(self.wait_converged_inner(scenario, nodes, timeout))
    }

    fn read_back_mode(&self) -> ReadBack {
        ReadBack::AfterStop
    }

    fn read_node<'a>(
        &'a self,
        _scenario: &'a Scenario,
        node: &'a NodeSpec,
    ) -> BoxFuture<'a, Result<Vec<RecoveredMsg>, String>> {
        let node = node.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || read_node_files(&node))
                .await
                .unwrap_or_else(|e| Err(format!("block reader task failed: {e}")))
        })
    }

    fn read_cluster<'a>(
        &'a self,
        _scenario: &'a Scenario,
        nodes: &'a [NodeSpec],
    ) -> BoxFuture<'a, Option<Result<Vec<RecoveredMsg>, String>>> {
        Box::pin(async move { Some(self.read_cluster_inner(nodes).await) })
    }

    fn default_corrupt_globs(&self) -> Vec<String> {
        vec!["jetstream/$G/streams/*/msgs/*.blk".to_string()]
    }

    fn replica_set<'a>(
        &'a self,
        scenario: &'a Scenario,
        nodes: &'a [NodeSpec],
    ) -> BoxFuture<'a, Option<Result<Vec<String>, String>>> {
        let replicas = scenario.stream.replicas as usize;
        Box::pin(async move {
            // A group as large as the cluster has no choice of servers.
            if replicas == nodes.len() {
                return Some(Ok(nodes.iter().map(|n| n.name.clone()).collect()));
            }
            Some(placement::replica_set(nodes, replicas, placement::PLACEMENT_TIMEOUT).await)
        })
    }
}

#[cfg(test)]
mod tests;
