//! [`AdapterTarget`]: the [`Target`] the controller drives for a system
//! described by a target file. Node commands and config files come from the
//! file's templates; every question about the system (ready? leader? what
//! does n2 hold?) goes to the adapter program as a protocol request, with
//! jetsam's own bound on every wait (docs/adapter-protocol.md, "Bounds").

use super::process::{AdapterProcess, Fatal, Launch, Reply, RequestError, stderr_tail};
use super::reply::{self, ProtocolError};
use super::spec::{LoadedTarget, PeerPort, ReadBackSpec, SpecError};
use super::template::StreamValues;
use crate::{BoxFuture, CommandSpec, Failover, NodeSpec, PublishOutcome, Publisher, ReadBack, Target, TargetError};
use jetsam_core::duration::parse_duration;
use jetsam_core::recovered::RecoveredMsg;
use jetsam_core::report::Mode;
use jetsam_core::scenario::Scenario;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One `ready` or `converged` answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// Between two `ready` questions.
const READY_INTERVAL: Duration = Duration::from_millis(100);
/// Between two `converged` questions.
const CONVERGED_INTERVAL: Duration = Duration::from_millis(200);
/// Between two `create` attempts that got an error.
const CREATE_INTERVAL: Duration = Duration::from_millis(200);
/// One `read` or `read_cluster`.
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// One `failover` answer (a promotion may replay WAL, restart a server).
pub const FAILOVER_TIMEOUT: Duration = Duration::from_secs(60);
/// One `leader` answer (the nemesis asks it while faults run).
const LEADER_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a publish waits before answering `info` once the adapter has failed.
const FATAL_BACKOFF: Duration = Duration::from_millis(50);
/// A node's `init` command.
pub const INIT_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a running init command is polled.
const INIT_POLL: Duration = Duration::from_millis(20);

/// What the control process's hello reply said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The reply's `adapter` (name and version), `?` when it gave none.
    pub adapter: String,
    /// It answers `read_cluster`.
    pub cluster_view: bool,
    /// It answers `leader`.
    pub leader: bool,
    /// It answers `failover` (protocol 2; hello said `"failover": true`).
    pub failover: bool,
}

/// The control process and what its hello said the adapter offers.
struct Control {
    process: AdapterProcess,
    hello: Hello,
}

/// A system driven through a target file and an adapter program.
pub struct AdapterTarget {
    spec: Arc<LoadedTarget>,
    /// The scenario's settings with defaults filled in (hello's `settings`).
    settings: BTreeMap<String, String>,
    /// hello's `stream`.
    stream: Value,
    fatal: Fatal,
    control: tokio::sync::OnceCell<Control>,
}

/// Where a run's adapter logs go: `<run>/adapter/`, the run folder being
/// the grandparent of each node's conf dir (`<run>/conf/nN`).
fn adapter_dir(nodes: &[NodeSpec]) -> PathBuf {
    let conf = nodes.first().map(|n| n.conf_dir.as_path()).unwrap_or(Path::new("."));
    conf.parent().and_then(Path::parent).unwrap_or(Path::new(".")).join("adapter")
}

fn stream_values(scenario: &Scenario) -> StreamValues {
    StreamValues {
        nodes: scenario.nodes,
        replicas: scenario.stream.replicas,
        consistency: scenario.stream.consistency.unwrap_or(Mode::Strong),
        sync: scenario.stream.sync.clone(),
    }
}

fn sync_ms(sync: Option<&str>) -> u128 {
    match sync {
        None | Some("always") => 0,
        Some(s) => parse_duration(s).map(|d| d.as_millis()).unwrap_or(0),
    }
}

fn other(action: &str, detail: impl Into<String>) -> TargetError {
    TargetError::Other { action: action.into(), detail: detail.into() }
}

impl AdapterTarget {
    /// Loads the target file (a broken one is a user error, exit 2).
    pub fn load(path: &Path) -> Result<AdapterTarget, SpecError> {
        Ok(AdapterTarget::new(LoadedTarget::load(path)?))
    }

    pub fn new(spec: LoadedTarget) -> AdapterTarget {
        AdapterTarget {
            spec: Arc::new(spec),
            settings: BTreeMap::new(),
            stream: Value::Null,
            fatal: Fatal::default(),
            control: tokio::sync::OnceCell::new(),
        }
    }

    /// The target for one scenario (which [`Target::validate`] accepted):
    /// its settings and stream go into every hello.
    pub fn for_scenario(spec: LoadedTarget, scenario: &Scenario) -> Result<AdapterTarget, (String, String)> {
        let mut t = AdapterTarget::new(spec);
        t.settings = t.spec.settings_for(&scenario.target.settings)?;
        let s = stream_values(scenario);
        t.stream = json!({
            "replicas": s.replicas,
            "consistency": s.consistency.to_string(),
            "sync": s.sync.clone().unwrap_or_else(|| "default".into()),
            "sync_ms": sync_ms(s.sync.as_deref()),
        });
        Ok(t)
    }

    pub fn spec(&self) -> &LoadedTarget {
        &self.spec
    }

    fn launch(&self, nodes: &[NodeSpec], role_file: &str) -> Launch {
        Launch {
            adapter: self.spec.file.name.clone(),
            argv: self.spec.file.adapter.clone(),
            cwd: self.spec.dir.clone(),
            log: adapter_dir(nodes).join(format!("{role_file}.log")),
            protocol: self.spec.file.protocol,
        }
    }

    fn hello(&self, nodes: &[NodeSpec], role: &str) -> Map<String, Value> {
        let list: Vec<Value> = nodes
            .iter()
            .map(|n| {
                json!({
                    "name": n.name,
                    "host": n.client_addr.ip().to_string(),
                    "port": n.client_addr.port(),
                    "data_dir": n.data_dir.display().to_string(),
                })
            })
            .collect();
        let mut m = Map::new();
        m.insert("role".into(), json!(role));
        m.insert("nodes".into(), Value::Array(list));
        m.insert("stream".into(), self.stream.clone());
        m.insert("settings".into(), json!(self.settings));
        m
    }

    /// The control process, started (with its hello) on first use.
    async fn control(&self, nodes: &[NodeSpec]) -> Result<&Control, RequestError> {
        self.control
            .get_or_try_init(|| async {
                let (process, caps) = AdapterProcess::start(
                    &self.launch(nodes, "control"),
                    "control",
                    self.hello(nodes, "control"),
                    self.fatal.clone(),
                )
                .await?;
                let cap = |k: &str| caps.get(k).and_then(Value::as_bool).unwrap_or(true);
                let adapter = caps.get("adapter").and_then(Value::as_str).unwrap_or("?").to_string();
                // Unlike the others, failover is opt-in: a version 1 adapter has none.
                let failover = self.spec.file.protocol >= super::spec::PROTOCOL_FAILOVER
                    && caps.get("failover").and_then(Value::as_bool) == Some(true);
                let hello = Hello { adapter, cluster_view: cap("cluster_view"), leader: cap("leader"), failover };
                Ok(Control { process, hello })
            })
            .await
    }

    /// Starts the control process (once) and returns what its hello said.
    pub async fn hello_control(&self, nodes: &[NodeSpec]) -> Result<Hello, String> {
        self.control(nodes).await.map(|c| c.hello.clone()).map_err(|e| e.to_string())
    }

    /// Asks `op` (`ready` or `converged`) every `interval` until it is true
    /// or `timeout` passes.
    async fn poll_flag(
        &self,
        nodes: &[NodeSpec],
        op: &str,
        interval: Duration,
        timeout: Duration,
    ) -> Result<(), TargetError> {
        let action = format!("get \"{op}\": true from adapter {:?}", self.spec.file.name);
        let fatal = |e: RequestError| other(&action, e.to_string());
        let deadline = Instant::now() + timeout;
        let control = self.control(nodes).await.map_err(fatal)?;
        let mut last;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match control.process.request(op, Map::new(), ANSWER_TIMEOUT.min(left.max(INIT_POLL))).await {
                Ok(r) => match reply::flag(op, &r.fields, &r.line) {
                    Ok(None) => return Ok(()),
                    Ok(Some(why)) => last = why,
                    Err(e) => return Err(fatal(control.process.fail_at(&r, e))),
                },
                Err(RequestError::Timeout { waited, .. }) => last = format!("no answer within {waited:?}"),
                Err(e) => return Err(fatal(e)),
            }
            if Instant::now() + interval >= deadline {
                return Err(TargetError::Timeout { action, waited: timeout, detail: last });
            }
            tokio::time::sleep(interval).await;
        }
    }

    async fn read_op(
        &self,
        nodes: &[NodeSpec],
        op: &str,
        fields: Map<String, Value>,
    ) -> Result<Vec<RecoveredMsg>, String> {
        let control = self.control(nodes).await.map_err(|e| e.to_string())?;
        let r = control.process.request(op, fields, READ_TIMEOUT).await.map_err(|e| e.to_string())?;
        match reply::read(&r.fields, &r.line) {
            Ok(result) => result,
            Err(e) => Err(control.process.fail_at(&r, e).to_string()),
        }
    }

    /// Writes the node's config files into its conf dir.
    fn write_files(&self, node: &NodeSpec, files: &[(String, String)]) -> Result<(), TargetError> {
        for (path, text) in files {
            let rel = Path::new(path);
            if rel.is_absolute() || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
                return Err(other(
                    "write a node config file",
                    format!(
                        "target file {}: node.files path {path:?} must stay inside the conf dir",
                        self.spec.path.display()
                    ),
                ));
            }
            let full = node.conf_dir.join(rel);
            if let Some(dir) = full.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| other("write a node config file", format!("{}: {e}", dir.display())))?;
            }
            std::fs::write(&full, text)
                .map_err(|e| other("write a node config file", format!("{}: {e}", full.display())))?;
        }
        Ok(())
    }

    /// Runs `node.init` once, when the data dir is still empty (a first
    /// start), bounded by [`INIT_TIMEOUT`]; output goes to `adapter/init-<node>.log`.
    fn run_init(&self, node: &NodeSpec, init: &[String], env: &BTreeMap<String, String>) -> Result<(), TargetError> {
        let Some((program, args)) = init.split_first() else { return Ok(()) };
        let empty = std::fs::read_dir(&node.data_dir).map(|mut d| d.next().is_none()).unwrap_or(true);
        if !empty {
            return Ok(());
        }
        let action = format!("initialize node {} (node.init of target {:?})", node.name, self.spec.file.name);
        let log_path = node
            .conf_dir
            .parent()
            .and_then(Path::parent)
            .unwrap_or(Path::new("."))
            .join("adapter")
            .join(format!("init-{}.log", node.name));
        if let Some(dir) = log_path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| other(&action, format!("{}: {e}", dir.display())))?;
        }
        let log =
            std::fs::File::create(&log_path).map_err(|e| other(&action, format!("{}: {e}", log_path.display())))?;
        let log2 = log.try_clone().map_err(|e| other(&action, e.to_string()))?;
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new(program)
            .args(args)
            .envs(env)
            .current_dir(&self.spec.dir)
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(log2)
            .process_group(0)
            .spawn()
            .map_err(|e| other(&action, format!("{program:?}: {e}")))?;
        let started = Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => {
                    return Err(other(
                        &action,
                        format!("it exited ({status}); its output: {}", stderr_tail(&log_path)),
                    ));
                }
                Ok(None) if started.elapsed() >= INIT_TIMEOUT => {
                    // SAFETY: killpg on the process group this call created.
                    unsafe {
                        libc::killpg(child.id() as i32, libc::SIGKILL);
                    }
                    let _ = child.wait();
                    return Err(TargetError::Timeout {
                        action,
                        waited: INIT_TIMEOUT,
                        detail: format!("killed; its output: {}", stderr_tail(&log_path)),
                    });
                }
                Ok(None) => std::thread::sleep(INIT_POLL),
                Err(e) => return Err(other(&action, e.to_string())),
            }
        }
    }
}

/// A workload client: its own adapter process with role `client`.
struct AdapterPublisher {
    process: AdapterProcess,
    nodes: Vec<String>,
    timeout: Duration,
}

impl AdapterPublisher {
    async fn publish_inner(&self, id: String, payload: Vec<u8>) -> PublishOutcome {
        let mut fields = Map::new();
        fields.insert("msg".into(), json!(id));
        fields.insert("payload".into(), json!(String::from_utf8_lossy(&payload)));
        match self.process.request("publish", fields, self.timeout).await {
            Ok(r) => match reply::publish(&r.fields, &self.nodes, &r.line) {
                Ok(outcome) => outcome,
                // The run stops on the recorded error; the write itself is unknown.
                Err(e) => PublishOutcome::Info { error: self.process.fail_at(&r, e).to_string() },
            },
            Err(e @ RequestError::Timeout { .. }) => PublishOutcome::Info { error: e.to_string() },
            Err(e) => {
                // The run is stopping (the controller watches the fatal
                // error); a pause keeps clients from spinning on the runtime
                // until it does.
                tokio::time::sleep(FATAL_BACKOFF).await;
                PublishOutcome::Info { error: e.to_string() }
            }
        }
    }
}

impl Publisher for AdapterPublisher {
    fn publish(&self, id: String, payload: Vec<u8>) -> BoxFuture<'_, PublishOutcome> {
        Box::pin(self.publish_inner(id, payload))
    }
}

fn leader_reply(r: &Reply, nodes: &[NodeSpec]) -> Result<Option<String>, ProtocolError> {
    let shape = r#"{"id":N,"leader":"n1"} or {"id":N,"leader":null}"#;
    match r.fields.get("leader") {
        Some(Value::Null) => Ok(None),
        Some(Value::String(n)) if nodes.iter().any(|s| &s.name == n) => Ok(Some(n.clone())),
        _ => Err(ProtocolError {
            what: "a leader reply without \"leader\": a node of the cluster or null".into(),
            expected: shape.into(),
            got: r.line.chars().take(200).collect(),
        }),
    }
}

impl Target for AdapterTarget {
    fn kind(&self) -> &'static str {
        "adapter"
    }

    fn validate(&self, scenario: &Scenario) -> Result<(), (String, String)> {
        self.spec.check_shape(scenario.nodes, scenario.stream.replicas)?;
        self.spec.mode_for(scenario.stream.consistency.unwrap_or(Mode::Strong), scenario.stream.sync.as_deref())?;
        self.spec.settings_for(&scenario.target.settings)?;
        Ok(())
    }

    fn command(&self, scenario: &Scenario, node: &NodeSpec) -> Result<CommandSpec, TargetError> {
        let action = format!("render node {}'s templates from {}", node.name, self.spec.path.display());
        let mode = self
            .spec
            .mode_for(scenario.stream.consistency.unwrap_or(Mode::Strong), scenario.stream.sync.as_deref())
            .map_err(|(m, _)| other(&action, m))?;
        let settings = self.spec.settings_for(&scenario.target.settings).map_err(|(m, _)| other(&action, m))?;
        let values = self.spec.defined_values(mode, &settings);
        let rendered = self
            .spec
            .render_node(node, &stream_values(scenario), &values)
            .map_err(|e| other(&action, e.to_string()))?;
        self.write_files(node, &rendered.files)?;
        self.run_init(node, &rendered.init, &rendered.env)?;
        let (program, args) = rendered.command.split_first().expect("node.command is checked non-empty at load");
        Ok(CommandSpec { program: PathBuf::from(program), args: args.to_vec(), env: rendered.env })
    }

    fn peer_is_client_port(&self) -> bool {
        self.spec.file.node.peer_port == PeerPort::Client
    }

    fn wait_ready<'a>(&'a self, nodes: &'a [NodeSpec], timeout: Duration) -> BoxFuture<'a, Result<(), TargetError>> {
        Box::pin(self.poll_flag(nodes, "ready", READY_INTERVAL, timeout))
    }

    fn create_stream<'a>(
        &'a self,
        _scenario: &'a Scenario,
        nodes: &'a [NodeSpec],
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), TargetError>> {
        Box::pin(async move {
            let action = format!("create the stream through adapter {:?}", self.spec.file.name);
            let control = self.control(nodes).await.map_err(|e| other(&action, e.to_string()))?;
            let deadline = Instant::now() + timeout;
            let mut last;
            loop {
                let left = deadline.saturating_duration_since(Instant::now()).max(INIT_POLL);
                match control.process.request("create", Map::new(), left).await {
                    Ok(r) => {
                        if r.fields.get("ok").and_then(Value::as_bool) == Some(true) {
                            return Ok(());
                        }
                        match r.fields.get("error").and_then(Value::as_str) {
                            Some(e) => last = e.to_string(),
                            None => {
                                let e = ProtocolError {
                                    what: "a create reply with neither \"ok\": true nor an \"error\"".into(),
                                    expected: r#"{"id":N,"ok":true} or {"id":N,"error":"..."}"#.into(),
                                    got: r.line.chars().take(200).collect(),
                                };
                                return Err(other(&action, control.process.fail_at(&r, e).to_string()));
                            }
                        }
                    }
                    Err(RequestError::Timeout { waited, .. }) => last = format!("no answer within {waited:?}"),
                    Err(e) => return Err(other(&action, e.to_string())),
                }
                if Instant::now() + CREATE_INTERVAL >= deadline {
                    return Err(TargetError::Timeout { action, waited: timeout, detail: last });
                }
                tokio::time::sleep(CREATE_INTERVAL).await;
            }
        })
    }

    fn publisher<'a>(
        &'a self,
        scenario: &'a Scenario,
        nodes: &'a [NodeSpec],
        client: u32,
    ) -> BoxFuture<'a, Result<Box<dyn Publisher>, TargetError>> {
        Box::pin(async move {
            let mut hello = self.hello(nodes, "client");
            hello.insert("client".into(), json!(client));
            let role = format!("client {client}");
            let (process, _) = AdapterProcess::start(
                &self.launch(nodes, &format!("client-{client}")),
                &role,
                hello,
                self.fatal.clone(),
            )
            .await
            .map_err(|e| other(&format!("start publisher {client}"), e.to_string()))?;
            let nodes = nodes.iter().map(|n| n.name.clone()).collect();
            Ok(Box::new(AdapterPublisher { process, nodes, timeout: scenario.workload.timeout }) as Box<dyn Publisher>)
        })
    }

    fn leader<'a>(&'a self, nodes: &'a [NodeSpec]) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move {
            let control = self.control(nodes).await.ok()?;
            if !control.hello.leader {
                return None;
            }
            let r = control.process.request("leader", Map::new(), LEADER_TIMEOUT).await.ok()?;
            match leader_reply(&r, nodes) {
                Ok(leader) => leader,
                Err(e) => {
                    control.process.fail_at(&r, e);
                    None
                }
            }
        })
    }

    fn wait_converged<'a>(
        &'a self,
        _scenario: &'a Scenario,
        nodes: &'a [NodeSpec],
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), TargetError>> {
        Box::pin(self.poll_flag(nodes, "converged", CONVERGED_INTERVAL, timeout))
    }

    fn read_back_mode(&self) -> ReadBack {
        match self.spec.file.read_back {
            ReadBackSpec::Live => ReadBack::Live,
            ReadBackSpec::AfterStop => ReadBack::AfterStop,
        }
    }

    fn read_node<'a>(
        &'a self,
        _scenario: &'a Scenario,
        node: &'a NodeSpec,
    ) -> BoxFuture<'a, Result<Vec<RecoveredMsg>, String>> {
        Box::pin(async move {
            // The control process exists by now (ready was asked first); a
            // read with no control process yet starts one for this node alone.
            let mut fields = Map::new();
            fields.insert("node".into(), json!(node.name));
            self.read_op(std::slice::from_ref(node), "read", fields).await
        })
    }

    fn read_cluster<'a>(
        &'a self,
        _scenario: &'a Scenario,
        nodes: &'a [NodeSpec],
    ) -> BoxFuture<'a, Option<Result<Vec<RecoveredMsg>, String>>> {
        Box::pin(async move {
            match self.control(nodes).await {
                Ok(c) if !c.hello.cluster_view => None,
                Ok(_) => Some(self.read_op(nodes, "read_cluster", Map::new()).await),
                Err(e) => Some(Err(e.to_string())),
            }
        })
    }

    fn failover<'a>(
        &'a self,
        nodes: &'a [NodeSpec],
        down: &'a [String],
        timeout: Duration,
    ) -> BoxFuture<'a, Option<Result<Failover, String>>> {
        Box::pin(async move {
            let control = match self.control(nodes).await {
                Ok(c) if !c.hello.failover => return None,
                Ok(c) => c,
                Err(e) => return Some(Err(e.to_string())),
            };
            let mut fields = Map::new();
            fields.insert("down".into(), json!(down));
            let r = match control.process.request("failover", fields, timeout).await {
                Ok(r) => r,
                Err(e) => return Some(Err(e.to_string())),
            };
            let names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
            match reply::failover(&r.fields, &names, down, &r.line) {
                Ok(result) => Some(result),
                Err(e) => Some(Err(control.process.fail_at(&r, e).to_string())),
            }
        })
    }

    fn default_corrupt_globs(&self) -> Vec<String> {
        self.spec.file.corrupt_globs.clone()
    }

    fn fatal(&self) -> Option<String> {
        self.fatal.get()
    }
}
