//! The reference node (`jetsam-node`) as a target: finding its binary, an
//! async client for its protocol (docs/node-protocol.md) with pipelining
//! ([`Client`], in `node/client.rs`), and [`NodeTarget`], the [`crate::Target`] implementation the controller
//! drives. It does not start or stop processes (the controller does) and
//! never retries a publish that may have been written.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jetsam_core::proto::{self, ErrorCode, NodeStatus, ProtoError, RequestBody, ResponseBody, Role, StreamConfig};
use jetsam_core::recovered::RecoveredMsg;
use jetsam_core::scenario::Scenario;

use crate::{BoxFuture, CommandSpec, NodeSpec, OfflineRead, PublishOutcome, Publisher, ReadBack, Target, TargetError};

mod client;
mod offline;
pub use client::{CLIENT_INFLIGHT_MAX, Client, ClientError};
pub use offline::{OFFLINE_READ_TIMEOUT, OFFLINE_STDERR_BYTES_MAX, OFFLINE_STDOUT_BYTES_MAX};

/// Environment variable naming the `jetsam-node` binary.
pub const NODE_BIN_ENV: &str = "JETSAM_NODE_BIN";
pub use jetsam_core::proto::KNOWN_BUGS;
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
const PROBE_TIMEOUT: Duration = Duration::from_millis(1000);
/// A publish gives up (as `info`) after this long even if the caller's timeout is longer.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts of one publish that end in a definite "not here" (wrong node,
/// no leader yet) before it is recorded as `fail`.
const PUBLISH_ATTEMPTS_MAX: usize = 20;

/// Finds the `jetsam-node` binary: `explicit`, else `$JETSAM_NODE_BIN`, else
/// beside the current executable, else in its parent directory (test
/// binaries live in `target/<profile>/deps`).
pub fn find_node_binary(explicit: Option<&Path>) -> Result<PathBuf, TargetError> {
    let missing = |detail: String| TargetError::Missing {
        what: "jetsam-node binary".into(),
        detail,
        fix: "run `cargo build --workspace --bins` (or set JETSAM_NODE_BIN to the binary)".into(),
    };
    if let Some(p) = explicit {
        return if p.is_file() { Ok(p.to_path_buf()) } else { Err(missing(format!("{} does not exist", p.display()))) };
    }
    if let Some(p) = std::env::var_os(NODE_BIN_ENV) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(missing(format!("{NODE_BIN_ENV}={} does not exist", p.display())))
        };
    }
    let exe = std::env::current_exe().map_err(|e| missing(format!("cannot locate the current executable: {e}")))?;
    let mut tried = Vec::new();
    let mut dir = exe.parent();
    for _ in 0..2 {
        let Some(d) = dir else { break };
        let candidate = d.join("jetsam-node");
        if candidate.is_file() {
            return Ok(candidate);
        }
        tried.push(candidate.display().to_string());
        dir = d.parent();
    }
    Err(missing(format!("not found at {}", tried.join(" or "))))
}

async fn probe(addr: SocketAddr) -> Result<NodeStatus, String> {
    let client = Client::connect(addr, CONNECT_TIMEOUT).await.map_err(|e| e.to_string())?;
    client.status(PROBE_TIMEOUT).await
}

/// Status of every node (in node order), errors as text. Probes run
/// concurrently, so a paused node costs one probe timeout, not one per node.
async fn statuses(nodes: &[NodeSpec]) -> Vec<(String, Result<NodeStatus, String>)> {
    let probes: Vec<_> = nodes.iter().map(|n| (n.name.clone(), tokio::spawn(probe(n.client_addr)))).collect();
    let mut out = Vec::with_capacity(probes.len());
    for (name, probe) in probes {
        let result = probe.await.unwrap_or_else(|e| Err(format!("status probe task failed: {e}")));
        out.push((name, result));
    }
    out
}

/// The node that says it leads, in the highest term.
fn leader_of(statuses: &[(String, Result<NodeStatus, String>)]) -> Option<String> {
    statuses
        .iter()
        .filter_map(|(name, s)| s.as_ref().ok().filter(|s| s.role == Role::Leader).map(|s| (s.term, name.clone())))
        .max()
        .map(|(_, name)| name)
}

/// How many entries `node` lacks that the leader (highest term) holds:
/// the difference of their last sequence numbers.
fn behind_of(statuses: &[(String, Result<NodeStatus, String>)], node: &str) -> Option<u64> {
    let leader = leader_of(statuses)?;
    let last_seq = |name: &str| statuses.iter().find(|(n, _)| n == name)?.1.as_ref().ok().map(|s| s.last_seq);
    Some(last_seq(&leader)?.saturating_sub(last_seq(node)?))
}

fn describe(statuses: &[(String, Result<NodeStatus, String>)]) -> String {
    statuses
        .iter()
        .map(|(name, s)| match s {
            Ok(s) => format!(
                "{name}: {:?} term {} commit {} last_seq {} leader {:?}",
                s.role, s.term, s.commit_index, s.last_seq, s.leader
            ),
            Err(e) => format!("{name}: {e}"),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn stream_config(scenario: &Scenario) -> StreamConfig {
    StreamConfig {
        name: stream_name(scenario),
        replicas: scenario.stream.replicas,
        consistency: scenario.stream.consistency,
    }
}

/// The stream every run uses.
pub fn stream_name(_scenario: &Scenario) -> String {
    "jetsam".to_string()
}

/// Publishes through whichever node leads, following `NotLeader` hints.
pub struct NodePublisher {
    nodes: Vec<(String, SocketAddr)>,
    current: Mutex<(usize, Option<Arc<Client>>)>,
    stream: String,
}

impl NodePublisher {
    pub fn new(nodes: Vec<(String, SocketAddr)>, start: usize, stream: String) -> NodePublisher {
        assert!(!nodes.is_empty(), "a publisher needs at least one node");
        let start = start % nodes.len();
        NodePublisher { nodes, current: Mutex::new((start, None)), stream }
    }

    async fn client(&self) -> Result<(usize, Arc<Client>), ClientError> {
        let (idx, existing) = {
            let cur = self.current.lock().expect("publisher lock");
            (cur.0, cur.1.clone())
        };
        if let Some(c) = existing
            && !c.is_closed()
        {
            return Ok((idx, c));
        }
        let client = Arc::new(Client::connect(self.nodes[idx].1, CONNECT_TIMEOUT).await?);
        let mut cur = self.current.lock().expect("publisher lock");
        if cur.0 == idx {
            cur.1 = Some(client.clone());
        }
        Ok((idx, client))
    }

    /// Moves to `hint` (a node name) or else the next node, dropping the connection.
    fn switch(&self, from: usize, hint: Option<&str>) {
        let mut cur = self.current.lock().expect("publisher lock");
        if cur.0 != from {
            return; // another publish already moved on
        }
        let next =
            hint.and_then(|h| self.nodes.iter().position(|(n, _)| n == h)).unwrap_or((from + 1) % self.nodes.len());
        if next != from || hint.is_none() {
            *cur = (next, None);
        }
    }

    async fn publish_inner(&self, id: String, payload: Vec<u8>) -> PublishOutcome {
        let deadline = Instant::now() + PUBLISH_TIMEOUT;
        let mut last_error = String::from("no attempt made");
        for attempt in 0..PUBLISH_ATTEMPTS_MAX {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(20 * attempt.min(10) as u64)).await;
            }
            let (idx, client) = match self.client().await {
                Ok(x) => x,
                Err(e) => {
                    last_error = e.to_string();
                    let from = self.current.lock().expect("publisher lock").0;
                    self.switch(from, None);
                    continue;
                }
            };
            let node = self.nodes[idx].0.clone();
            let body = RequestBody::Publish { stream: self.stream.clone(), id: id.clone(), payload: payload.clone() };
            match client.request(body, left).await {
                Ok(ResponseBody::PubAck { seq }) => return PublishOutcome::Ok { seq, node },
                Ok(ResponseBody::Error { error }) => {
                    let ProtoError { code, message, definite, leader_hint } = error;
                    let text = format!("{node}: {code:?}: {message}");
                    if !definite {
                        self.switch(idx, leader_hint.as_deref());
                        return PublishOutcome::Info { error: text };
                    }
                    match code {
                        ErrorCode::NotLeader | ErrorCode::Overloaded | ErrorCode::NoQuorum | ErrorCode::Unhealthy => {
                            if code != ErrorCode::Overloaded {
                                self.switch(idx, leader_hint.as_deref());
                            }
                            last_error = text;
                        }
                        _ => return PublishOutcome::Fail { error: text },
                    }
                }
                Ok(other) => return PublishOutcome::Info { error: format!("{node}: unexpected answer {other:?}") },
                Err(ClientError::NotSent { .. }) | Err(ClientError::Connect { .. }) => {
                    last_error = format!("{node}: connection closed before sending");
                    self.switch(idx, None);
                }
                Err(e) => {
                    self.switch(idx, None);
                    return PublishOutcome::Info { error: format!("{node}: {e}") };
                }
            }
        }
        PublishOutcome::Fail { error: format!("not written: no node accepted it ({last_error})") }
    }
}

impl Publisher for NodePublisher {
    fn publish(&self, id: String, payload: Vec<u8>) -> BoxFuture<'_, PublishOutcome> {
        Box::pin(self.publish_inner(id, payload))
    }
}

/// The reference node as a [`Target`].
#[derive(Debug, Clone)]
pub struct NodeTarget {
    binary: PathBuf,
}

impl NodeTarget {
    pub fn new(binary: PathBuf) -> NodeTarget {
        NodeTarget { binary }
    }

    /// Finds the binary as [`find_node_binary`] does.
    pub fn locate(explicit: Option<&Path>) -> Result<NodeTarget, TargetError> {
        find_node_binary(explicit).map(NodeTarget::new)
    }

    pub fn binary(&self) -> &Path {
        &self.binary
    }
}

fn check_sync(sync: &str) -> Result<(), String> {
    if sync == "always" {
        return Ok(());
    }
    match jetsam_core::duration::parse_duration(sync) {
        Ok(d) if !d.is_zero() => Ok(()),
        Ok(_) => Err(format!("stream.sync {sync:?} must be positive")),
        Err(e) => Err(format!("stream.sync: {e}")),
    }
}

impl Target for NodeTarget {
    fn kind(&self) -> &'static str {
        "node"
    }

    fn validate(&self, scenario: &Scenario) -> Result<(), (String, String)> {
        if ![1, 3, 5].contains(&scenario.nodes) {
            return Err((
                format!("the node target runs 1, 3 or 5 nodes, not {}", scenario.nodes),
                "set nodes = 1, 3 or 5".into(),
            ));
        }
        if let Err((code, message)) = proto::check_create(&stream_config(scenario), scenario.nodes) {
            let fix = match code {
                ErrorCode::AsyncRequiresR1 => "set stream.consistency = \"strong\" or stream.replicas = 1 (NATS ADR)",
                _ => "set stream.replicas equal to nodes (every jetsam-node is a replica)",
            };
            return Err((message, fix.into()));
        }
        if let Some(bug) = &scenario.target.bug
            && !KNOWN_BUGS.contains(&bug.as_str())
        {
            return Err((format!("unknown node bug {bug:?}"), format!("use one of: {}", KNOWN_BUGS.join(", "))));
        }
        if let Some(sync) = &scenario.stream.sync
            && let Err(e) = check_sync(sync)
        {
            return Err((e, "write stream.sync = \"always\" or an interval such as \"2m\", \"1s\"".into()));
        }
        Ok(())
    }

    fn command(&self, scenario: &Scenario, node: &NodeSpec) -> Result<CommandSpec, TargetError> {
        let mut args = vec![
            "--name".to_string(),
            node.name.clone(),
            "--data-dir".into(),
            node.data_dir.display().to_string(),
            "--client-addr".into(),
            node.client_addr.to_string(),
            "--peer-addr".into(),
            node.peer_listen_addr.to_string(),
        ];
        for (name, addr) in &node.peers {
            args.push("--peer".into());
            args.push(format!("{name}={addr}"));
        }
        if let Some(sync) = &scenario.stream.sync {
            args.push("--sync".into());
            args.push(sync.clone());
        }
        if let Some(bug) = &scenario.target.bug {
            args.push("--bug".into());
            args.push(bug.clone());
        }
        if scenario.target.repair {
            args.push("--repair".into());
        }
        Ok(CommandSpec { program: self.binary.clone(), args, env: BTreeMap::new() })
    }

    fn wait_ready<'a>(&'a self, nodes: &'a [NodeSpec], timeout: Duration) -> BoxFuture<'a, Result<(), TargetError>> {
        Box::pin(async move {
            let deadline = Instant::now() + timeout;
            loop {
                let s = statuses(nodes).await;
                if s.iter().all(|(_, r)| r.is_ok()) && leader_of(&s).is_some() {
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    return Err(TargetError::Timeout {
                        action: "wait for every node to answer and a leader to be elected".into(),
                        waited: timeout,
                        detail: describe(&s),
                    });
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    }

    fn create_stream<'a>(
        &'a self,
        scenario: &'a Scenario,
        nodes: &'a [NodeSpec],
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), TargetError>> {
        Box::pin(async move {
            let deadline = Instant::now() + timeout;
            let config = stream_config(scenario);
            let mut last = String::from("no leader found");
            while Instant::now() < deadline {
                let s = statuses(nodes).await;
                if let Some(leader) = leader_of(&s) {
                    let addr = nodes.iter().find(|n| n.name == leader).expect("leader is a node").client_addr;
                    let answer = match Client::connect(addr, CONNECT_TIMEOUT).await {
                        Ok(c) => {
                            c.request(RequestBody::CreateStream { config: config.clone() }, PROBE_TIMEOUT * 3).await
                        }
                        Err(e) => Err(e),
                    };
                    match answer {
                        Ok(ResponseBody::Created { .. }) => return Ok(()),
                        Ok(ResponseBody::Error { error })
                            if matches!(
                                error.code,
                                ErrorCode::InvalidConfig | ErrorCode::AsyncRequiresR1 | ErrorCode::StreamExists
                            ) =>
                        {
                            return Err(TargetError::Other {
                                action: format!("create stream {:?}", config.name),
                                detail: format!("{leader} refused: {:?}: {}", error.code, error.message),
                            });
                        }
                        Ok(other) => last = format!("{leader}: {other:?}"),
                        Err(e) => last = e.to_string(),
                    }
                } else {
                    last = describe(&s);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(TargetError::Timeout {
                action: format!("create stream {:?}", config.name),
                waited: timeout,
                detail: last,
            })
        })
    }

    fn publisher<'a>(
        &'a self,
        scenario: &'a Scenario,
        nodes: &'a [NodeSpec],
        client: u32,
    ) -> BoxFuture<'a, Result<Box<dyn Publisher>, TargetError>> {
        Box::pin(async move {
            if nodes.is_empty() {
                return Err(TargetError::Other { action: "make a publisher".into(), detail: "no nodes".into() });
            }
            let list = nodes.iter().map(|n| (n.name.clone(), n.client_addr)).collect();
            // Spread first connections over the nodes; NotLeader hints then
            // bring every client to the leader within one round trip.
            let p = NodePublisher::new(list, client as usize, stream_name(scenario));
            Ok(Box::new(p) as Box<dyn Publisher>)
        })
    }

    fn leader<'a>(&'a self, nodes: &'a [NodeSpec]) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move { leader_of(&statuses(nodes).await) })
    }

    fn sees_behind(&self) -> bool {
        true
    }

    fn behind<'a>(&'a self, nodes: &'a [NodeSpec], node: &'a str) -> BoxFuture<'a, Option<u64>> {
        Box::pin(async move { behind_of(&statuses(nodes).await, node) })
    }

    fn wait_converged<'a>(
        &'a self,
        _scenario: &'a Scenario,
        nodes: &'a [NodeSpec],
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), TargetError>> {
        Box::pin(async move {
            let deadline = Instant::now() + timeout;
            loop {
                let s = statuses(nodes).await;
                let ok: Vec<&NodeStatus> = s.iter().filter_map(|(_, r)| r.as_ref().ok()).collect();
                if ok.len() == nodes.len()
                    && leader_of(&s).is_some()
                    && ok.windows(2).all(|w| w[0].last_seq == w[1].last_seq && w[0].commit_index == w[1].commit_index)
                {
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    return Err(TargetError::Timeout {
                        action: "wait for every replica to hold the same last sequence and commit index under a leader"
                            .into(),
                        waited: timeout,
                        detail: describe(&s),
                    });
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    }

    fn read_back_mode(&self) -> ReadBack {
        ReadBack::Live
    }

    fn read_node<'a>(
        &'a self,
        scenario: &'a Scenario,
        node: &'a NodeSpec,
    ) -> BoxFuture<'a, Result<Vec<RecoveredMsg>, String>> {
        Box::pin(async move {
            let client = Client::connect(node.client_addr, CONNECT_TIMEOUT).await.map_err(|e| e.to_string())?;
            let msgs = client.read_all_with(&stream_name(scenario), true, true).await?;
            Ok(msgs.into_iter().map(|m| RecoveredMsg { seq: m.seq, id: m.id }).collect())
        })
    }

    fn read_cluster<'a>(
        &'a self,
        scenario: &'a Scenario,
        nodes: &'a [NodeSpec],
    ) -> BoxFuture<'a, Option<Result<Vec<RecoveredMsg>, String>>> {
        Box::pin(async move {
            let result = async {
                let s = statuses(nodes).await;
                let leader = leader_of(&s).ok_or_else(|| format!("no leader to read through ({})", describe(&s)))?;
                let addr = nodes.iter().find(|n| n.name == leader).expect("leader is a node").client_addr;
                let client = Client::connect(addr, CONNECT_TIMEOUT).await.map_err(|e| e.to_string())?;
                let msgs = client.read_all_with(&stream_name(scenario), false, true).await?;
                Ok(msgs.into_iter().map(|m| RecoveredMsg { seq: m.seq, id: m.id }).collect())
            }
            .await;
            Some(result)
        })
    }

    /// `jetsam-node read-offline` on the node's data dir (see `node/offline.rs`).
    fn read_node_offline<'a>(
        &'a self,
        scenario: &'a Scenario,
        node: &'a NodeSpec,
    ) -> BoxFuture<'a, Option<Result<OfflineRead, String>>> {
        Box::pin(async move { Some(offline::read_offline(&self.binary, &stream_name(scenario), node).await) })
    }

    fn default_corrupt_globs(&self) -> Vec<String> {
        vec!["log/*.seg".to_string()]
    }
}
