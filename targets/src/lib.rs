//! jetsam-targets holds one adapter per system under test (the reference
//! node, NATS JetStream): how to configure, start, probe, publish to and read
//! back each node. The controller drives every target through the [`Target`]
//! trait and never needs to know which one it runs.

pub mod adapter;
mod child;
pub mod nats;
pub mod node;

use jetsam_core::recovered::RecoveredMsg;
use jetsam_core::scenario::Scenario;
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

/// A boxed future, so [`Target`] and [`Publisher`] stay object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Everything a target needs to know about one node of the cluster. The
/// controller picks the ports (free loopback ports) and the proxies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    /// `n1` .. `nN`.
    pub name: String,
    /// The node's own data directory (created by the controller, empty at first start).
    pub data_dir: PathBuf,
    /// A directory for config files the target writes (outside the data dir).
    pub conf_dir: PathBuf,
    /// Where clients (the workload, read-back) connect.
    pub client_addr: SocketAddr,
    /// Where the node listens for its peers.
    pub peer_listen_addr: SocketAddr,
    /// How this node reaches each other node: the address of the link proxy
    /// for `self -> peer` (or the peer's real `peer_listen_addr` without proxies).
    pub peers: BTreeMap<String, SocketAddr>,
    /// A spare port for a monitoring endpoint (NATS `http`), if the target wants one.
    pub monitor_addr: SocketAddr,
    /// A loopback address where nothing listens (NATS `cluster.advertise`).
    pub dead_addr: SocketAddr,
}

/// How to start one node: the controller spawns it (in its own process group,
/// possibly under the power-loss tracer) and owns its lifetime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandSpec {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
}

/// What one publish came to, as the history records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishOutcome {
    /// Acknowledged at this stream sequence by this node.
    Ok { seq: u64, node: String },
    /// Definitely not written.
    Fail { error: String },
    /// Unknown whether it was written.
    Info { error: String },
}

/// A client connection that publishes. `&self` so one client may have several
/// publishes in flight (pipelining); the caller applies the per-publish timeout.
pub trait Publisher: Send + Sync {
    fn publish(&self, id: String, payload: Vec<u8>) -> BoxFuture<'_, PublishOutcome>;
}

/// A failure of the target (not of the system's durability): it could not be
/// configured, started, reached or read in time. Exit code 4 unless the
/// scenario was at fault.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("failed to find the {what}: {detail}; {fix}")]
    Missing { what: String, detail: String, fix: String },
    #[error("failed to {action} within {waited:?}: {detail}")]
    Timeout { action: String, waited: Duration, detail: String },
    #[error("failed to {action}: {detail}")]
    Other { action: String, detail: String },
}

/// A node's files read without the node running
/// ([`Target::read_node_offline`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfflineRead {
    /// What the files hold, in stream order.
    pub messages: Vec<RecoveredMsg>,
    /// One line for people: how the files were read and what could not be
    /// read (e.g. the file and offset where damage stopped the reader).
    pub note: String,
}

/// When a node's own storage can be read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadBack {
    /// Through the running node (the reference node's `read_local`).
    Live,
    /// From its files after a clean stop (NATS message blocks).
    AfterStop,
}

/// What a target's failover step did ([`Target::failover`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failover {
    /// The node that now takes writes, when the target says.
    pub leader: Option<String>,
    /// What it did, in the target's words (recorded in events.jsonl).
    pub note: String,
}

/// One system under test.
pub trait Target: Send + Sync {
    /// `node`, `nats` or `adapter`.
    fn kind(&self) -> &'static str;

    /// Rejects scenarios this target cannot run (e.g. `async` with replicas > 1),
    /// as `(message, fix)`.
    fn validate(&self, scenario: &Scenario) -> Result<(), (String, String)>;

    /// Writes whatever config the node needs and says how to start it.
    fn command(&self, scenario: &Scenario, node: &NodeSpec) -> Result<CommandSpec, TargetError>;

    /// Waits until the cluster can take the stream (bounded by `timeout`).
    fn wait_ready<'a>(&'a self, nodes: &'a [NodeSpec], timeout: Duration) -> BoxFuture<'a, Result<(), TargetError>>;

    /// Creates the scenario's stream (with bounded retries).
    fn create_stream<'a>(
        &'a self,
        scenario: &'a Scenario,
        nodes: &'a [NodeSpec],
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), TargetError>>;

    /// A publishing client for workload client `client` (targets may spread
    /// clients over nodes).
    fn publisher<'a>(
        &'a self,
        scenario: &'a Scenario,
        nodes: &'a [NodeSpec],
        client: u32,
    ) -> BoxFuture<'a, Result<Box<dyn Publisher>, TargetError>>;

    /// The current leader of the stream, if one is known now.
    fn leader<'a>(&'a self, nodes: &'a [NodeSpec]) -> BoxFuture<'a, Option<String>>;

    /// After every fault is healed: waits until replicas have caught up
    /// (bounded). An error here is reported, not fatal: read-back still runs.
    fn wait_converged<'a>(
        &'a self,
        scenario: &'a Scenario,
        nodes: &'a [NodeSpec],
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), TargetError>>;

    fn read_back_mode(&self) -> ReadBack;

    /// What this node itself holds, in stream order. `Err` = unreadable, with why.
    fn read_node<'a>(
        &'a self,
        scenario: &'a Scenario,
        node: &'a NodeSpec,
    ) -> BoxFuture<'a, Result<Vec<RecoveredMsg>, String>>;

    /// The stream as a client reads it through the leader (`recovered/cluster.jsonl`),
    /// or `None` when the target offers no such view.
    ///
    /// It needs the nodes up: for [`ReadBack::AfterStop`] targets (NATS) the
    /// controller calls it after `wait_converged` and BEFORE the clean stop
    /// that precedes `read_node`; for [`ReadBack::Live`] targets any time
    /// after convergence.
    fn read_cluster<'a>(
        &'a self,
        scenario: &'a Scenario,
        nodes: &'a [NodeSpec],
    ) -> BoxFuture<'a, Option<Result<Vec<RecoveredMsg>, String>>>;

    /// What this node's files hold, read without starting the node, or
    /// `None` when the target cannot read its files offline (the default).
    /// For a node that [`Target::read_node`] could not read (it is down, e.g.
    /// it refuses to start on a corrupt log): the controller calls it once
    /// every node is stopped, so the files no longer change, within its read
    /// bound; an implementation keeps a bound of its own, must not change
    /// the files, and reports only messages the files provably hold.
    fn read_node_offline<'a>(
        &'a self,
        _scenario: &'a Scenario,
        _node: &'a NodeSpec,
    ) -> BoxFuture<'a, Option<Result<OfflineRead, String>>> {
        Box::pin(async { None })
    }

    /// After the final heal, when faults kept nodes down (`restart = false`):
    /// lets the system hand their roles to the running nodes as its operator
    /// would (promote a standby, re-point the others), before the controller
    /// waits for convergence and reads back. `down` names the kept-down
    /// nodes. `None`: the target has no such step (the default; the nodes
    /// stay down and nothing else happens). `Some(Err(why))`: it tried and
    /// failed (a warning; read-back still runs). Bounded by `timeout`.
    fn failover<'a>(
        &'a self,
        _nodes: &'a [NodeSpec],
        _down: &'a [String],
        _timeout: Duration,
    ) -> BoxFuture<'a, Option<Result<Failover, String>>> {
        Box::pin(async { None })
    }

    /// Globs (relative to the data dir) of the files a `bitflip`/`truncate`
    /// fault picks from by default.
    fn default_corrupt_globs(&self) -> Vec<String>;

    /// Which nodes hold the stream now, by name, for targets that place a
    /// stream on some of the nodes (NATS puts an R3 stream on 3 of 5
    /// servers). `None`: the target cannot tell, so every node must hold a
    /// copy (such targets refuse `stream.replicas` below `nodes` in
    /// `validate`, or leave it to the checker's empty-node heuristic).
    /// `Some(Err(why))`: it should know but could not find out; the run's
    /// verdict is then `unknown` (docs/formats.md, `recovered/replicas.json`).
    ///
    /// The controller asks once, after `wait_converged` and before the clean
    /// stop (as for `read_cluster`): the final placement is what counts,
    /// since a system may move replicas during a run. Bounded by the target.
    fn replica_set<'a>(
        &'a self,
        _scenario: &'a Scenario,
        _nodes: &'a [NodeSpec],
    ) -> BoxFuture<'a, Option<Result<Vec<String>, String>>> {
        Box::pin(async { None })
    }

    /// Whether the target can tell how far a node lags the leader (the
    /// `behind:NODE:K` fault trigger); a scenario using it on a target that
    /// cannot is refused (exit 2).
    fn sees_behind(&self) -> bool {
        false
    }

    /// How many stream entries `node` lacks that the leader holds, now;
    /// `None` when unknown (no leader, the node does not answer). Asked
    /// every few milliseconds while a `behind` trigger waits, so bounded
    /// and cheap.
    fn behind<'a>(&'a self, _nodes: &'a [NodeSpec], _node: &'a str) -> BoxFuture<'a, Option<u64>> {
        Box::pin(async { None })
    }

    /// Whether peers reach a node at its client port (one port for clients
    /// and replication, as PostgreSQL and Redis have): then the controller
    /// makes `peer_listen_addr` the client address.
    fn peer_is_client_port(&self) -> bool {
        false
    }

    /// Why the run must stop without a verdict (exit code 4), once the
    /// target has seen its own machinery fail: an adapter that broke the
    /// protocol or exited. The controller asks after each phase.
    fn fatal(&self) -> Option<String> {
        None
    }
}
