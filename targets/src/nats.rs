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
pub mod http;
pub mod placement;

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

/// The repository root: env `JETSAM_ROOT`, else the first directory holding
/// [`INSTALL_SCRIPT`] walking up from the current directory, then from the
/// current executable.
pub fn find_repo_root() -> Option<PathBuf> {
    if let Some(root) = std::env::var_os("JETSAM_ROOT").filter(|r| !r.is_empty()) {
        return Some(PathBuf::from(root));
    }
    let starts = [std::env::current_dir().ok(), std::env::current_exe().ok()];
    starts
        .into_iter()
        .flatten()
        .find_map(|start| start.ancestors().find(|dir| dir.join(INSTALL_SCRIPT).is_file()).map(Path::to_path_buf))
}

/// The command that installs `version`, for error messages.
pub fn install_command(version: &str) -> String {
    match find_repo_root() {
        Some(root) => format!("{} {version}", root.join(INSTALL_SCRIPT).display()),
        None => format!("{INSTALL_SCRIPT} {version} (from the jetsam repository root)"),
    }
}

/// Finds the `nats-server` binary of `version`: `explicit` if given, else
/// `<repo>/.nats/<version>/bin/nats-server`, else `nats-server` on PATH if
/// `--version` reports that version. A missing binary is
/// [`TargetError::Missing`] whose fix is the install command.
pub fn find_nats_server(version: &str, explicit: Option<&Path>) -> Result<PathBuf, TargetError> {
    let missing = |detail: String| TargetError::Missing {
        what: format!("nats-server {version} binary"),
        detail,
        fix: format!("install it with `{}`, or pass the binary's path explicitly", install_command(version)),
    };
    if let Some(path) = explicit {
        return if path.is_file() {
            Ok(path.to_path_buf())
        } else {
            Err(missing(format!("{} is not a file", path.display())))
        };
    }
    let mut looked = Vec::new();
    if let Some(root) = find_repo_root() {
        let candidate = root.join(".nats").join(version).join("bin").join("nats-server");
        if candidate.is_file() {
            return Ok(candidate);
        }
        looked.push(candidate.display().to_string());
    } else {
        looked.push(format!(
            "no repository root (set JETSAM_ROOT or run inside the repository holding {INSTALL_SCRIPT})"
        ));
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("nats-server");
            if candidate.is_file() {
                match server_version(&candidate) {
                    Ok(found) if found == version => return Ok(candidate),
                    Ok(found) => looked.push(format!("{} (version {found})", candidate.display())),
                    Err(e) => looked.push(format!("{} ({e})", candidate.display())),
                }
            }
        }
    }
    looked.push("nats-server on PATH".to_string());
    Err(missing(format!("looked at {}", looked.join(", "))))
}

/// The version `nats-server --version` reports (`nats-server: v2.12.1` -> `2.12.1`), bounded.
pub fn server_version(binary: &Path) -> Result<String, String> {
    let mut child = std::process::Command::new(binary)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run --version: {e}"))?;
    let deadline = Instant::now() + VERSION_PROBE_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("--version gave no answer within {VERSION_PROBE_TIMEOUT:?}"));
            }
            Err(e) => return Err(format!("cannot wait for --version: {e}")),
        }
    }
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        use std::io::Read;
        stdout.read_to_string(&mut out).map_err(|e| format!("cannot read --version output: {e}"))?;
    }
    out.split_whitespace()
        .find_map(|word| word.strip_prefix('v').filter(|v| is_version(v)).map(str::to_string))
        .ok_or_else(|| format!("unexpected --version output {:?}", out.trim()))
}

fn is_version(v: &str) -> bool {
    let parts: Vec<&str> = v.split('.').collect();
    parts.len() == 3 && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// How `stream.sync` maps onto `jetstream.sync_interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncSetting {
    /// Unset: nats-server's default (2 minutes).
    ServerDefault,
    /// `"always"`: fsync after every write.
    Always,
    Interval(Duration),
}

/// Parses `stream.sync` as the NATS target understands it.
pub fn sync_setting(sync: Option<&str>) -> Result<SyncSetting, String> {
    match sync {
        None => Ok(SyncSetting::ServerDefault),
        Some("always") => Ok(SyncSetting::Always),
        Some(text) => match parse_duration(text) {
            Ok(d) if d.is_zero() => Err(format!("stream.sync {text:?} is zero")),
            Ok(d) if d.subsec_nanos() % 1_000 != 0 => Err(format!("stream.sync {text:?} is finer than a microsecond")),
            Ok(d) => Ok(SyncSetting::Interval(d)),
            Err(e) => Err(format!("stream.sync {text:?} is neither \"always\" nor a duration: {e}")),
        },
    }
}

/// Checks the scenario against what the NATS target can run, as
/// `(message, fix)`; needs no binary, so the controller may call it first.
pub fn validate_scenario(scenario: &Scenario) -> Result<(), (String, String)> {
    let target = &scenario.target;
    if target.kind != "nats" {
        return Err((format!("target.kind is {:?}, not \"nats\"", target.kind), "set target.kind = \"nats\"".into()));
    }
    match target.version.as_deref() {
        None => {
            return Err((
                "target.version is missing: the NATS target runs a pinned nats-server".into(),
                format!("set target.version, e.g. \"{}\" (installed by {INSTALL_SCRIPT})", DEFAULT_VERSIONS[0]),
            ));
        }
        Some(v) if !is_version(v) => {
            return Err((format!("target.version {v:?} is not a version like 2.12.1"), "set e.g. \"2.12.1\"".into()));
        }
        Some(_) => {}
    }
    if target.bug.is_some() {
        return Err((
            "target.bug is for the reference node only".into(),
            "remove target.bug from a NATS scenario".into(),
        ));
    }
    let stream = &scenario.stream;
    if scenario.nodes == 0 || stream.replicas == 0 {
        return Err((
            "nodes and stream.replicas must be at least 1".into(),
            "set nodes >= stream.replicas >= 1".into(),
        ));
    }
    if stream.replicas > 5 {
        return Err((
            format!("stream.replicas = {} is above JetStream's maximum of 5", stream.replicas),
            "use at most 5 replicas".into(),
        ));
    }
    if stream.replicas > scenario.nodes {
        return Err((
            format!(
                "stream.replicas = {} but nodes = {}: NATS places each replica on its own server",
                stream.replicas, scenario.nodes
            ),
            format!("set nodes >= {} or stream.replicas <= {}", stream.replicas, scenario.nodes),
        ));
    }
    // Fewer replicas than nodes is fine: the target reports the final
    // placement (`replica_set`) and only the replicas are read back.
    if stream.mode() == Mode::Async && stream.replicas != 1 {
        return Err((
            format!(
                "consistency \"async\" with replicas = {}: nats-server rejects it (error 10052: async persist mode is not supported on replicated streams)",
                stream.replicas
            ),
            "use replicas = 1 (and nodes = 1) for async, or consistency = \"strong\"".into(),
        ));
    }
    sync_setting(stream.sync.as_deref())
        .map_err(|m| (m, "set stream.sync to \"always\" or a duration such as \"1s\"".into()))?;
    let payload_max = MAX_PAYLOAD_BYTES - 256;
    if scenario.workload.payload_bytes > payload_max {
        return Err((
            format!("workload.payload_bytes = {} is above nats-server's max_payload", scenario.workload.payload_bytes),
            format!("use at most {payload_max} bytes"),
        ));
    }
    Ok(())
}

/// Renders one node's nats-server config file.
pub fn render_config(scenario: &Scenario, node: &NodeSpec) -> Result<String, TargetError> {
    let quoted = |what: &str, text: &str| -> Result<String, TargetError> {
        if text.contains(['"', '\\', '\n', '\r']) {
            return Err(TargetError::Other {
                action: format!("write the nats-server config of {}", node.name),
                detail: format!("{what} {text:?} holds a quote, backslash or newline; use a plain path"),
            });
        }
        Ok(format!("\"{text}\""))
    };
    let sync = sync_setting(scenario.stream.sync.as_deref()).map_err(|detail| TargetError::Other {
        action: format!("write the nats-server config of {}", node.name),
        detail,
    })?;
    let data_dir = node.data_dir.to_str().ok_or_else(|| TargetError::Other {
        action: format!("write the nats-server config of {}", node.name),
        detail: format!("data dir {} is not UTF-8", node.data_dir.display()),
    })?;
    let mut conf = String::new();
    let _ = writeln!(conf, "# Written by jetsam for node {} of scenario {:?}.", node.name, scenario.name);
    let _ = writeln!(conf, "server_name: {}", quoted("server name", &node.name)?);
    let _ = writeln!(conf, "listen: \"{}\"", node.client_addr);
    let _ = writeln!(conf, "http: \"{}\"", node.monitor_addr);
    let _ = writeln!(conf, "jetstream {{");
    let _ = writeln!(conf, "  store_dir: {}", quoted("data dir", data_dir)?);
    match sync {
        SyncSetting::ServerDefault => {}
        SyncSetting::Always => {
            let _ = writeln!(conf, "  sync_interval: \"always\"");
        }
        SyncSetting::Interval(d) => {
            let _ = writeln!(conf, "  sync_interval: \"{}us\"", d.as_micros());
        }
    }
    let _ = writeln!(conf, "}}");
    if !node.peers.is_empty() {
        let _ = writeln!(conf, "cluster {{");
        let _ = writeln!(conf, "  name: \"jetsam\"");
        let _ = writeln!(conf, "  listen: \"{}\"", node.peer_listen_addr);
        // Client URLs are not gossiped, and the advertised route address is a
        // dead port, so peers only ever reach each other through `routes`
        // (which may be the controller's link proxies).
        let _ = writeln!(conf, "  no_advertise: true");
        let _ = writeln!(conf, "  advertise: \"{}\"", node.dead_addr);
        let _ = writeln!(conf, "  routes: [");
        for addr in node.peers.values() {
            let _ = writeln!(conf, "    \"nats-route://{addr}\"");
        }
        let _ = writeln!(conf, "  ]");
        let _ = writeln!(conf, "}}");
    }
    Ok(conf)
}

/// `(messages, first_seq, last_seq)` per node name.
pub type ReplicaCounts = BTreeMap<String, (u64, u64, u64)>;

/// Per-replica counts from each node's own `/jsz`: `(messages, first_seq,
/// last_seq)` of [`STREAM_NAME`], keyed by node name. Nodes that do not
/// answer or hold no replica are left out.
pub async fn jsz_counts(nodes: &[NodeSpec]) -> ReplicaCounts {
    counts_from(&jsz_all(nodes).await)
}

/// Each answering node's `/jsz?accounts=true&streams=true`, keyed by node name.
async fn jsz_all(nodes: &[NodeSpec]) -> BTreeMap<String, Value> {
    let mut all = BTreeMap::new();
    for node in nodes {
        if let Ok(jsz) = jsz(node, true).await {
            all.insert(node.name.clone(), jsz);
        }
    }
    all
}

/// [`jsz_counts`] from already fetched `/jsz` answers.
fn counts_from(jszs: &BTreeMap<String, Value>) -> ReplicaCounts {
    let mut counts = BTreeMap::new();
    for (name, jsz) in jszs {
        if let Some(detail) = stream_detail(jsz) {
            let state = &detail["state"];
            let field = |name: &str| state[name].as_u64().unwrap_or(0);
            counts.insert(name.clone(), (field("messages"), field("first_seq"), field("last_seq")));
        }
    }
    counts
}

async fn jsz(node: &NodeSpec, streams: bool) -> Result<Value, String> {
    let path = if streams { "/jsz?accounts=true&streams=true" } else { "/jsz" };
    let (status, body) = http::get(node.monitor_addr, path, HTTP_TIMEOUT).await?;
    if status != 200 {
        return Err(format!("{}: /jsz answered HTTP {status}", node.name));
    }
    serde_json::from_str(&body).map_err(|e| format!("{}: /jsz is not JSON: {e}", node.name))
}

/// The `stream_detail` entry of [`STREAM_NAME`] in the global account.
fn stream_detail(jsz: &Value) -> Option<&Value> {
    jsz["account_details"]
        .as_array()?
        .iter()
        .filter_map(|account| account["stream_detail"].as_array())
        .flatten()
        .find(|s| s["name"] == STREAM_NAME)
}

/// The stream leader one node's `/jsz` names, and whether that answer lists
/// `peers` other replicas, all current (only the leader's own answer knows
/// its followers' state). `None` when the node names no leader, or names one
/// while it has no contact with a JetStream meta leader: a node restarted
/// after a power loss reports itself stream leader (with no replicas listed)
/// from its restored state until the meta group has elected, which is not
/// a leader anyone can reach (measured on 2.12.1: each of three restarted
/// nodes named itself for the ~4 s before the meta election).
fn stream_leader(jsz: &Value, peers: usize) -> Option<(String, bool)> {
    jsz["meta_cluster"]["leader"].as_str().filter(|l| !l.is_empty())?;
    let detail = stream_detail(jsz)?;
    let cluster = &detail["cluster"];
    let leader = cluster["leader"].as_str().filter(|l| !l.is_empty())?.to_string();
    let current = cluster["replicas"].as_array().is_some_and(|replicas| {
        replicas.len() >= peers && replicas.iter().all(|r| r["current"].as_bool() == Some(true))
    });
    Some((leader, current))
}

/// The stream leader and whether it sees every other replica as current,
/// from the nodes' `/jsz` answers (`node_count` nodes in the cluster, a
/// stream of `replicas`). The
/// answer comes from the node that names itself leader; if no node answers
/// for itself (e.g. the leader is paused or partitioned away), the leader
/// the others name, not current.
fn leader_from(jszs: &BTreeMap<String, Value>, node_count: usize, replicas: usize) -> Option<(String, bool)> {
    if node_count == 1 {
        // A single node without a cluster block: its stream has no Raft group.
        return jszs.iter().find(|(_, jsz)| stream_detail(jsz).is_some()).map(|(name, _)| (name.clone(), true));
    }
    let mut named = BTreeSet::new();
    for (name, jsz) in jszs {
        match stream_leader(jsz, replicas.saturating_sub(1)) {
            Some((leader, current)) if &leader == name => return Some((leader, current)),
            Some((leader, _)) => {
                named.insert(leader);
            }
            None => {}
        }
    }
    named.into_iter().next().map(|leader| (leader, false))
}

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

/// What the convergence wait makes of one poll ([`ConvergeWatch::observe`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Converge {
    /// Every replica holds the same counts under a leader that sees them current.
    Done,
    /// Not yet; poll again (until the caller's deadline).
    Wait,
    /// No node has named a stream leader for [`NO_LEADER_GIVE_UP`] and the
    /// counts have stood still for [`NO_LEADER_COUNTS_STABLE`].
    NotElecting,
    /// The leader has seen every replica current, and the (differing)
    /// counts have stood still, both for [`CURRENT_BUT_UNEQUAL_GIVE_UP`].
    NothingToRepair,
}

/// The convergence wait's memory across polls: since when there has been
/// no leader, since when the counts have stood still, since when the leader
/// has seen every replica current. Pure (the caller supplies the clock), so
/// the give-up rules are tested without a cluster.
#[derive(Debug)]
struct ConvergeWatch {
    replicas: usize,
    /// When a leader was last named (the wait's start until one is).
    leader_seen_at: Instant,
    /// Whether the last poll named no leader.
    leaderless: bool,
    /// The last counts and since when they have stood still.
    counts: Option<(ReplicaCounts, Instant)>,
    /// Since when the leader has seen every replica current, without a break.
    current_since: Option<Instant>,
}

impl ConvergeWatch {
    fn new(replicas: usize, started: Instant) -> ConvergeWatch {
        ConvergeWatch { replicas, leader_seen_at: started, leaderless: false, counts: None, current_since: None }
    }

    fn observe(&mut self, now: Instant, counts: ReplicaCounts, leader: Option<(String, bool)>) -> Converge {
        let first = counts.values().next().copied();
        let all_answered = counts.len() == self.replicas;
        let same = all_answered && counts.values().all(|c| Some(*c) == first);
        let current = matches!(leader, Some((_, true)));
        // Equal counts without a leader would send the cluster read into
        // API requests that nobody answers until an election.
        if same && current {
            return Converge::Done;
        }
        self.leaderless = leader.is_none();
        if !self.leaderless {
            self.leader_seen_at = now;
        }
        self.current_since = if current { Some(self.current_since.unwrap_or(now)) } else { None };
        if self.counts.as_ref().is_none_or(|(seen, _)| *seen != counts) {
            self.counts = Some((counts, now));
        }
        let stable_for = self.counts_stable_for(now);
        if self.leaderless && self.no_leader_for(now) >= NO_LEADER_GIVE_UP && stable_for >= NO_LEADER_COUNTS_STABLE {
            return Converge::NotElecting;
        }
        if all_answered
            && self.current_for(now) >= CURRENT_BUT_UNEQUAL_GIVE_UP
            && stable_for >= CURRENT_BUT_UNEQUAL_GIVE_UP
        {
            return Converge::NothingToRepair;
        }
        Converge::Wait
    }

    /// How long no node has named a leader (zero if the last poll named one).
    fn no_leader_for(&self, now: Instant) -> Duration {
        if self.leaderless { now - self.leader_seen_at } else { Duration::ZERO }
    }

    fn counts_stable_for(&self, now: Instant) -> Duration {
        self.counts.as_ref().map_or(Duration::ZERO, |(_, since)| now - *since)
    }

    fn current_for(&self, now: Instant) -> Duration {
        self.current_since.map_or(Duration::ZERO, |since| now - since)
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

async fn read_through(node: &NodeSpec) -> Result<Vec<RecoveredMsg>, String> {
    let client = connect(node, "jetsam-read-cluster".into(), READ_CLUSTER_IDLE_TIMEOUT).await?;
    let js = jetstream::new(client);
    let mut stream = js.get_stream(STREAM_NAME).await.map_err(|e| format!("{}: get stream: {e}", node.name))?;
    let last_seq = stream.info().await.map_err(|e| format!("{}: stream info: {e}", node.name))?.state.last_sequence;
    if last_seq == 0 {
        return Ok(Vec::new());
    }
    let messages_u32 = u32::try_from(last_seq).unwrap_or(u32::MAX);
    let bound = READ_CLUSTER_BASE_TIMEOUT + READ_CLUSTER_PER_MESSAGE_TIMEOUT * messages_u32;
    match tokio::time::timeout(bound, consume_all(node, &mut stream, last_seq)).await {
        Ok(result) => result,
        Err(_) => Err(format!("{}: reading {last_seq} messages took over {bound:?}", node.name)),
    }
}

/// Reads sequences 1..=last_seq through an ordered consumer.
async fn consume_all(node: &NodeSpec, stream: &mut stream::Stream, last_seq: u64) -> Result<Vec<RecoveredMsg>, String> {
    let mut out = Vec::new();
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("{}: create ordered consumer: {e}", node.name))?;
    let mut messages = consumer.messages().await.map_err(|e| format!("{}: consume: {e}", node.name))?;
    loop {
        let next = tokio::time::timeout(READ_CLUSTER_IDLE_TIMEOUT, messages.next()).await.map_err(|_| {
            format!(
                "{}: no message within {READ_CLUSTER_IDLE_TIMEOUT:?} after {} read (stream last seq {last_seq})",
                node.name,
                out.len()
            )
        })?;
        let message = match next {
            Some(Ok(m)) => m,
            Some(Err(e)) => return Err(format!("{}: ordered consumer: {e} after {} read", node.name, out.len())),
            None => return Err(format!("{}: ordered consumer ended after {} read", node.name, out.len())),
        };
        let seq =
            message.info().map_err(|e| format!("{}: message without stream info: {e}", node.name))?.stream_sequence;
        let header = message.headers.as_ref().and_then(|h| h.get(ID_HEADER)).map(|v| v.as_str());
        let id = header.filter(|id| !id.is_empty()).or_else(|| message_id(None, &message.payload));
        out.push(RecoveredMsg { seq, id: id_or_marker(id, seq) });
        if seq >= last_seq {
            return Ok(out);
        }
    }
}

/// Reads node's replica from its message blocks (the node must be stopped).
pub fn read_node_files(node: &NodeSpec) -> Result<Vec<RecoveredMsg>, String> {
    let msgs_dir = node.data_dir.join("jetstream").join("$G").join("streams").join(STREAM_NAME).join("msgs");
    if !msgs_dir.is_dir() {
        // The controller reads back only the stream's replicas (its final
        // placement, `replica_set`), and the stream was created only once
        // every replica was current, so a missing directory is a replica
        // that nats-server deleted or never made durable: it holds nothing,
        // and the checker counts what it misses.
        // Reading it as unreadable would hide the loss (NATS #7556: nodes
        // with a corrupt meta snapshot delete the stream as an orphan).
        tracing::warn!(
            node = %node.name,
            "no {} directory: the node's replica of stream {STREAM_NAME} is gone; read as holding no messages",
            msgs_dir.display()
        );
        return Ok(Vec::new());
    }
    let stored = blocks::read_stream_messages(STREAM_NAME, &msgs_dir).map_err(|e| format!("{}: {e}", node.name))?;
    Ok(stored.into_iter().map(|m| RecoveredMsg { seq: m.seq, id: id_or_marker(m.id.as_deref(), m.seq) }).collect())
}

/// One client connection to one node, publishing with pipelined acks.
struct NatsPublisher {
    js: jetstream::Context,
    node: String,
}

impl Publisher for NatsPublisher {
    fn publish(&self, id: String, payload: Vec<u8>) -> BoxFuture<'_, PublishOutcome> {
        Box::pin(async move {
            let body = message_body(&id, payload);
            let ack = match self.js.publish(SUBJECT, body.into()).await {
                Ok(ack) => ack,
                Err(e) => return send_error_outcome(&e),
            };
            match ack.await {
                Ok(ack) if ack.stream == STREAM_NAME => {
                    PublishOutcome::Ok { seq: ack.sequence, node: self.node.clone() }
                }
                Ok(ack) => PublishOutcome::Info { error: format!("acknowledged by another stream {:?}", ack.stream) },
                Err(e) => ack_error_outcome(&e),
            }
        })
    }
}

/// Before the message left the client: nothing reached the server, except
/// that a send timeout leaves that unknown.
fn send_error_outcome(e: &jetstream::context::PublishError) -> PublishOutcome {
    use jetstream::context::PublishErrorKind as K;
    match e.kind() {
        K::TimedOut => PublishOutcome::Info { error: e.to_string() },
        _ => PublishOutcome::Fail { error: e.to_string() },
    }
}

/// Waiting for the ack, mapped as Jepsen's NATS suite does: "no responders"
/// and JetStream API errors (e.g. "temporarily unavailable") are definite;
/// a timeout, a lost connection or a garbled answer are not.
fn ack_error_outcome(e: &jetstream::context::PublishError) -> PublishOutcome {
    use jetstream::context::PublishErrorKind as K;
    let api_error = std::error::Error::source(e).is_some_and(|s| s.downcast_ref::<jetstream::Error>().is_some());
    match e.kind() {
        K::StreamNotFound | K::WrongLastMessageId | K::WrongLastSequence | K::MaxPayloadExceeded => {
            PublishOutcome::Fail { error: e.to_string() }
        }
        K::Other if api_error => PublishOutcome::Fail { error: e.to_string() },
        _ => PublishOutcome::Info { error: e.to_string() },
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
mod tests {
    use super::*;
    use jetstream::context::{PublishError, PublishErrorKind};
    use std::net::SocketAddr;

    fn api_error(code: usize, err_code: u64, description: &str) -> jetstream::Error {
        let json = format!(r#"{{"code":{code},"err_code":{err_code},"description":"{description}"}}"#);
        serde_json::from_str(&json).unwrap()
    }

    #[test]
    fn ack_errors_map_as_jepsen_does() {
        let fail = |e: PublishError| matches!(ack_error_outcome(&e), PublishOutcome::Fail { .. });
        let info = |e: PublishError| matches!(ack_error_outcome(&e), PublishOutcome::Info { .. });
        assert!(fail(PublishError::new(PublishErrorKind::StreamNotFound)), "no responders is definite");
        let unavailable = api_error(503, 10008, "JetStream system temporarily unavailable");
        assert!(fail(PublishError::with_source(PublishErrorKind::Other, unavailable)));
        assert!(info(PublishError::new(PublishErrorKind::TimedOut)));
        assert!(info(PublishError::new(PublishErrorKind::BrokenPipe)), "a lost connection is unknown");
        let garbled = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
        assert!(info(PublishError::with_source(PublishErrorKind::Other, garbled)), "a garbled ack is unknown");
        match ack_error_outcome(&PublishError::new(PublishErrorKind::TimedOut)) {
            PublishOutcome::Info { error } => assert!(error.contains("timed out"), "{error}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn send_errors_are_definite_except_a_timeout() {
        assert!(matches!(
            send_error_outcome(&PublishError::new(PublishErrorKind::MaxPayloadExceeded)),
            PublishOutcome::Fail { .. }
        ));
        assert!(matches!(
            send_error_outcome(&PublishError::new(PublishErrorKind::TimedOut)),
            PublishOutcome::Info { .. }
        ));
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn spec(peers: &[(&str, u16)]) -> NodeSpec {
        NodeSpec {
            name: "n1".into(),
            data_dir: PathBuf::from("/tmp/run/data/n1"),
            conf_dir: PathBuf::from("/tmp/run/conf"),
            client_addr: addr(4001),
            peer_listen_addr: addr(4002),
            peers: peers.iter().map(|(n, p)| (n.to_string(), addr(*p))).collect(),
            monitor_addr: addr(4003),
            dead_addr: addr(4004),
        }
    }

    #[test]
    fn a_node_whose_stream_directory_is_gone_holds_no_messages() {
        let dir = tempfile::tempdir().unwrap();
        let mut node = spec(&[]);
        node.data_dir = dir.path().join("n1");
        // A data dir with JetStream's account folder but no stream (deleted as an orphan).
        std::fs::create_dir_all(node.data_dir.join("jetstream").join("$G").join("streams")).unwrap();
        assert_eq!(read_node_files(&node).unwrap(), Vec::new());
        // A stream folder with a damaged block is still unreadable, not empty.
        let msgs = node.data_dir.join("jetstream").join("$G").join("streams").join(STREAM_NAME).join("msgs");
        std::fs::create_dir_all(&msgs).unwrap();
        std::fs::write(msgs.join("1.blk"), [0xffu8; 7]).unwrap();
        assert!(read_node_files(&node).is_err(), "a torn block is reported");
    }

    fn scenario(stream: &str) -> Scenario {
        let text = format!(
            "name = \"t\"\nnodes = 3\nduration = \"1s\"\n[target]\nkind = \"nats\"\nversion = \"2.12.1\"\n[stream]\n{stream}\n"
        );
        Scenario::from_toml_str("t", &text).unwrap()
    }

    #[test]
    fn config_has_routes_through_the_given_peer_addresses_and_a_dead_advertise() {
        let conf = render_config(&scenario("replicas = 3"), &spec(&[("n2", 5002), ("n3", 5003)])).unwrap();
        for line in [
            "server_name: \"n1\"",
            "listen: \"127.0.0.1:4001\"",
            "http: \"127.0.0.1:4003\"",
            "store_dir: \"/tmp/run/data/n1\"",
            "listen: \"127.0.0.1:4002\"",
            "no_advertise: true",
            "advertise: \"127.0.0.1:4004\"",
            "\"nats-route://127.0.0.1:5002\"",
            "\"nats-route://127.0.0.1:5003\"",
        ] {
            assert!(conf.lines().any(|l| l.trim() == line), "missing {line:?} in\n{conf}");
        }
        assert!(!conf.contains("sync_interval"), "unset sync keeps the server default:\n{conf}");
    }

    #[test]
    fn config_sync_values_and_single_node() {
        let conf = render_config(&scenario("replicas = 3\nsync = \"always\""), &spec(&[("n2", 5002)])).unwrap();
        assert!(conf.contains("sync_interval: \"always\""), "{conf}");
        let conf = render_config(&scenario("replicas = 3\nsync = \"1500ms\""), &spec(&[("n2", 5002)])).unwrap();
        assert!(conf.contains("sync_interval: \"1500000us\""), "{conf}");
        let conf = render_config(&scenario("replicas = 1"), &spec(&[])).unwrap();
        assert!(!conf.contains("cluster"), "one node needs no cluster block:\n{conf}");
        let mut bad = spec(&[]);
        bad.data_dir = PathBuf::from("/tmp/a\"b");
        assert!(render_config(&scenario("replicas = 1"), &bad).is_err());
    }

    #[test]
    fn sync_setting_parses_the_scenario_forms() {
        assert_eq!(sync_setting(None), Ok(SyncSetting::ServerDefault));
        assert_eq!(sync_setting(Some("always")), Ok(SyncSetting::Always));
        assert_eq!(sync_setting(Some("2m")), Ok(SyncSetting::Interval(Duration::from_secs(120))));
        assert!(sync_setting(Some("0s")).is_err());
        assert!(sync_setting(Some("never")).is_err());
    }

    #[test]
    fn server_version_reads_the_version_line() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("jetsam-nats-version-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = |name: &str, body: &str| {
            let path = dir.join(name);
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            path
        };
        let good = server_version(&script("good", "echo 'nats-server: v2.12.1'"));
        let odd = server_version(&script("odd", "echo 'something else'"));
        let missing = server_version(&dir.join("absent"));
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(good, Ok("2.12.1".to_string()));
        assert!(odd.unwrap_err().contains("unexpected --version output"));
        assert!(missing.unwrap_err().contains("cannot run"));
        assert!(is_version("2.15.1") && !is_version("2.15") && !is_version("v2.15.1") && !is_version("2.x.1"));
    }

    /// One node's `/jsz?accounts=true&streams=true` answer, shaped as 2.12.1 writes it.
    fn jsz_answer(meta_leader: Option<&str>, leader: Option<&str>, replicas: &[(&str, bool)], last_seq: u64) -> Value {
        serde_json::json!({
            "meta_cluster": {"name": "jetsam", "leader": meta_leader},
            "account_details": [{"name": "$G", "stream_detail": [{
                "name": STREAM_NAME,
                "cluster": {
                    "leader": leader,
                    "replicas": replicas.iter().map(|(n, c)| serde_json::json!({"name": n, "current": c})).collect::<Vec<_>>(),
                },
                "state": {"messages": last_seq, "first_seq": 1, "last_seq": last_seq},
            }]}],
        })
    }

    fn answers(list: &[(&str, Value)]) -> BTreeMap<String, Value> {
        list.iter().map(|(n, v)| (n.to_string(), v.clone())).collect()
    }

    #[test]
    fn stream_leader_comes_from_jsz_stream_detail() {
        let jsz = jsz_answer(Some("n1"), Some("n3"), &[("n1", true), ("n2", false)], 5);
        assert_eq!(stream_leader(&jsz, 2), Some(("n3".to_string(), false)));
        let jsz = jsz_answer(Some("n1"), Some("n3"), &[("n1", true), ("n2", true)], 5);
        assert_eq!(stream_leader(&jsz, 2), Some(("n3".to_string(), true)));
        assert_eq!(stream_leader(&jsz, 3), Some(("n3".to_string(), false)), "a replica missing from the list");
        assert_eq!(stream_detail(&jsz).unwrap()["state"]["last_seq"], 5);
        let none: Value = serde_json::from_str(r#"{"account_details":[]}"#).unwrap();
        assert_eq!(stream_leader(&none, 2), None);
        let empty = jsz_answer(Some("n1"), Some(""), &[], 5);
        assert_eq!(stream_leader(&empty, 2), None, "an empty leader is none");
    }

    #[test]
    fn a_node_without_a_meta_leader_names_no_stream_leader() {
        // Measured on 2.12.1 after a coordinated power loss: until the meta
        // group elects, every restarted node reports itself stream leader,
        // with no replicas listed and equal counts.
        let stale = answers(&[
            ("n1", jsz_answer(None, Some("n1"), &[], 3014)),
            ("n2", jsz_answer(None, Some("n2"), &[], 3014)),
            ("n3", jsz_answer(None, Some("n3"), &[], 3014)),
        ]);
        assert_eq!(leader_from(&stale, 3, 3), None);
        // Then a meta leader, no stream leader yet.
        let electing = answers(&[
            ("n1", jsz_answer(Some("n2"), None, &[("n2", false), ("n3", false)], 3014)),
            ("n2", jsz_answer(Some("n2"), None, &[("n1", false), ("n3", false)], 3016)),
        ]);
        assert_eq!(leader_from(&electing, 3, 3), None);
        assert_eq!(counts_from(&electing).get("n2"), Some(&(3016, 1, 3016)));
    }

    #[test]
    fn the_leader_answers_for_itself_and_others_only_name_it() {
        let healthy = answers(&[
            ("n1", jsz_answer(Some("n2"), Some("n2"), &[("n2", true), ("n3", false)], 7)),
            ("n2", jsz_answer(Some("n2"), Some("n2"), &[("n1", true), ("n3", true)], 7)),
            ("n3", jsz_answer(Some("n2"), Some("n2"), &[("n1", false), ("n2", true)], 7)),
        ]);
        assert_eq!(leader_from(&healthy, 3, 3), Some(("n2".to_string(), true)));
        // The leader does not answer (paused): the others still name it, not current.
        let mut paused = healthy.clone();
        paused.remove("n2");
        assert_eq!(leader_from(&paused, 3, 3), Some(("n2".to_string(), false)));
        // R3 on 5 servers: the leader lists its 2 peers; the 2 other servers list no stream.
        let r3 = answers(&[
            ("n1", jsz_answer(Some("n1"), Some("n4"), &[("n4", true), ("n5", false)], 7)),
            ("n4", jsz_answer(Some("n1"), Some("n4"), &[("n1", true), ("n5", true)], 7)),
        ]);
        assert_eq!(leader_from(&r3, 5, 3), Some(("n4".to_string(), true)));
        assert_eq!(leader_from(&r3, 5, 5), Some(("n4".to_string(), false)), "R5 would need 4 peers current");
        // One node, no Raft group: it leads if it holds the stream.
        let single = answers(&[("n1", jsz_answer(None, None, &[], 3))]);
        assert_eq!(leader_from(&single, 1, 1), Some(("n1".to_string(), true)));
        assert_eq!(leader_from(&BTreeMap::new(), 1, 1), None);
    }

    #[test]
    fn the_id_leads_the_payload_and_reads_back_from_it() {
        let body = message_body("12-345", b"abcdefghijklmnop".to_vec());
        assert_eq!(body, b"12-345 hijklmnop", "the id replaces the payload's head; the size stays");
        assert_eq!(message_id(None, &body), Some("12-345"));
        let short = message_body("0-7", b"ab".to_vec());
        assert_eq!(short, b"0-7 ", "a short payload becomes the id and the separator");
        assert_eq!(message_id(None, &short), Some("0-7"));
        assert_eq!(message_body("4294967295-18446744073709551615", Vec::new()).len(), ID_BYTES_MAX + 1);
        let longest = message_body("4294967295-18446744073709551615", vec![b'x'; 64]);
        assert_eq!(message_id(None, &longest), Some("4294967295-18446744073709551615"));
        // Old records carry the id in a header; it wins over the payload.
        let headers = b"NATS/1.0\r\nJetsam-Id: 3-9\r\n\r\n";
        assert_eq!(message_id(Some(headers), b"xxxxxxxx"), Some("3-9"));
        assert_eq!(message_id(Some(b"NATS/1.0\r\nOther: 1\r\n\r\n"), b"5-6 rest"), Some("5-6"));
        for not_an_id in [&b""[..], b"no separator", b"-1 x", b"1- x", b"a-1 x", b"1-1x", b"12", b" 1-1"] {
            assert_eq!(message_id(None, not_an_id), None, "{:?}", String::from_utf8_lossy(not_an_id));
        }
        // A separator beyond the longest id is not an id's end.
        let mut far = vec![b'1'; ID_BYTES_MAX + 2];
        far[3] = b'-';
        far.push(ID_SEPARATOR);
        assert_eq!(message_id(None, &far), None);
        assert_eq!(id_or_marker(None, 17), "?no-jetsam-id@17");
    }

    fn counts(list: &[(&str, u64)]) -> ReplicaCounts {
        list.iter().map(|(n, c)| (n.to_string(), (*c, 1, *c))).collect()
    }

    #[test]
    fn convergence_is_equal_counts_under_a_leader_that_sees_them_current() {
        let t0 = Instant::now();
        let mut watch = ConvergeWatch::new(3, t0);
        let equal = counts(&[("n1", 5), ("n2", 5), ("n3", 5)]);
        // Equal counts with no leader, or with one that lacks a current replica, are not enough.
        assert_eq!(watch.observe(t0, equal.clone(), None), Converge::Wait);
        assert_eq!(watch.observe(t0, equal.clone(), Some(("n1".into(), false))), Converge::Wait);
        let two = counts(&[("n1", 5), ("n2", 5)]);
        assert_eq!(watch.observe(t0, two, Some(("n1".into(), true))), Converge::Wait, "a replica did not answer");
        assert_eq!(watch.observe(t0, equal, Some(("n1".into(), true))), Converge::Done);
    }

    #[test]
    fn no_leader_for_20_s_with_still_counts_gives_up() {
        let t0 = Instant::now();
        let at = |s: f64| t0 + Duration::from_secs_f64(s);
        let still = counts(&[("n1", 3014), ("n2", 3014), ("n3", 3014)]);
        let mut watch = ConvergeWatch::new(3, t0);
        for s in [0.0, 10.0, 19.9] {
            assert_eq!(watch.observe(at(s), still.clone(), None), Converge::Wait, "at {s} s");
        }
        assert_eq!(watch.observe(at(20.0), still.clone(), None), Converge::NotElecting);
        assert_eq!(watch.no_leader_for(at(20.0)), Duration::from_secs(20));

        // Counts that moved 5 s ago, or a leader seen 20 s ago, keep the wait going.
        let mut watch = ConvergeWatch::new(3, t0);
        assert_eq!(watch.observe(at(0.0), still.clone(), None), Converge::Wait);
        let moved = counts(&[("n1", 3014), ("n2", 3016), ("n3", 3016)]);
        assert_eq!(watch.observe(at(18.0), moved.clone(), None), Converge::Wait);
        assert_eq!(watch.observe(at(22.9), moved.clone(), None), Converge::Wait, "moved 4.9 s ago");
        assert_eq!(watch.observe(at(23.0), moved.clone(), None), Converge::NotElecting);

        let mut watch = ConvergeWatch::new(3, t0);
        assert_eq!(watch.observe(at(5.0), moved.clone(), Some(("n2".into(), false))), Converge::Wait);
        assert_eq!(watch.observe(at(24.9), moved.clone(), None), Converge::Wait, "a leader 19.9 s ago");
        assert_eq!(watch.observe(at(25.0), moved, None), Converge::NotElecting);
    }

    #[test]
    fn a_leader_that_sees_unequal_replicas_current_for_10_s_gives_up() {
        let t0 = Instant::now();
        let at = |s: f64| t0 + Duration::from_secs_f64(s);
        // Measured after #7564: the leader ahead of both followers, all "current".
        let unequal = counts(&[("n1", 2992), ("n2", 2992), ("n3", 3014)]);
        let leader = || Some(("n3".to_string(), true));
        let mut watch = ConvergeWatch::new(3, t0);
        // The counts have stood still since the start, but the leader is new at 8 s.
        assert_eq!(watch.observe(at(0.0), unequal.clone(), None), Converge::Wait);
        assert_eq!(watch.observe(at(8.0), unequal.clone(), leader()), Converge::Wait);
        assert_eq!(watch.observe(at(17.9), unequal.clone(), leader()), Converge::Wait);
        assert_eq!(watch.observe(at(18.0), unequal.clone(), leader()), Converge::NothingToRepair);

        // A leader that does not see its replicas current may still repair them: wait on.
        let mut watch = ConvergeWatch::new(3, t0);
        for s in [0.0, 15.0, 29.0] {
            assert_eq!(watch.observe(at(s), unequal.clone(), Some(("n3".into(), false))), Converge::Wait);
        }
        // A break in "current" starts the 10 s again.
        let mut watch = ConvergeWatch::new(3, t0);
        assert_eq!(watch.observe(at(0.0), unequal.clone(), leader()), Converge::Wait);
        assert_eq!(watch.observe(at(6.0), unequal.clone(), Some(("n3".into(), false))), Converge::Wait);
        assert_eq!(watch.observe(at(12.0), unequal.clone(), leader()), Converge::Wait);
        assert_eq!(watch.observe(at(21.9), unequal.clone(), leader()), Converge::Wait);
        assert_eq!(watch.observe(at(22.0), unequal, leader()), Converge::NothingToRepair);
    }
}
