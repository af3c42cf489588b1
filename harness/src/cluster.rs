//! The cluster of one run: free loopback ports, a data dir, a config dir
//! and a log file per node, the target's command line for each, and one
//! [`NodeProcess`] per node (own process group, parent-death signal, state
//! machine). It starts every node, kills/pauses/heals single nodes for the
//! nemesis (recording each in events.jsonl), heals everything at the end,
//! and stops everything gracefully.
//!
//! When the scenario has `power-loss` or `io-error` faults every node runs
//! under `jetsam-tracer` (state dir `state/<node>` in the run folder, kept
//! across restarts), so a power loss can discard its unsynced writes. When it
//! has `partition` faults, nodes reach each other through one link proxy per
//! directed link, and a partition blackholes a set of links.
//!
//! It does not decide when to fault anything (the nemesis does) and does not
//! talk to the nodes (the target does).

use crate::events::{EventLog, EventLogError};
pub use crate::ports::{PortLease, free_ports, port_registry_dir};
use jetsam_core::event::EventKind;
use jetsam_core::scenario::Scenario;
use jetsam_faults::disk::{Corruption, DiskError};
use jetsam_faults::net::{Link, LinkProxies, NetError, Shape};
use jetsam_faults::power::{DirentModel, DiscardModel, IoErrorMode, PowerError};
use jetsam_faults::process::{LaunchSpec, NodeProcess, ProcState, ProcessError};
use jetsam_targets::{NodeSpec, Target, TargetError};
use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Bound on a SIGKILLed node's exit, a pause or a resume taking effect.
pub const SIGNAL_TIMEOUT: Duration = Duration::from_secs(5);
/// Grace period between SIGTERM and SIGKILL when stopping a node.
pub const STOP_GRACE: Duration = Duration::from_secs(3);

/// What went wrong with the cluster. Environment errors (exit code 4).
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("failed to find a free loopback port: {0}; check that 127.0.0.1 is up and ports are available")]
    Port(std::io::Error),
    #[error("failed to create {}: {source}; check that the results folder is writable", path.display())]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error(transparent)]
    Events(#[from] EventLogError),
    #[error(transparent)]
    Power(#[from] PowerError),
    #[error(transparent)]
    Net(#[from] NetError),
    #[error(transparent)]
    Disk(#[from] DiskError),
    #[error(
        "failed to see every process and thread of node {node} exit within {waited:?} after its power loss (still alive: {pids:?}); the machine may be overloaded"
    )]
    GroupAlive { node: String, pids: Vec<u32>, waited: Duration },
}

/// What a power loss throws away: unsynced pages per `pages`, directory
/// operations per `dirents`.
#[derive(Debug, Clone, Copy)]
pub struct LossModel<'a> {
    pub pages: &'a DiscardModel,
    pub dirents: DirentModel,
}

/// How the nodes are run, from the scenario's fault kinds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClusterOptions {
    /// Every node under `jetsam-tracer` (power-loss, io-error).
    pub traced: bool,
    /// Peer links through proxies (partition).
    pub proxied: bool,
    /// The tracer records writes and syncs for the durability audit.
    pub audit: bool,
}

impl ClusterOptions {
    pub fn for_scenario(scenario: &Scenario) -> ClusterOptions {
        let has = |kinds: &[&str]| scenario.faults.iter().any(|f| kinds.contains(&f.kind.as_str()));
        // An fsync trigger is counted by the tracer, whatever the fault it fires.
        let fsync_trigger = scenario.faults.iter().any(|f| f.fsync_watched().is_some());
        let audit = scenario.check.audit;
        ClusterOptions {
            traced: has(&["power-loss", "io-error"]) || fsync_trigger || audit,
            proxied: has(&["partition"]),
            audit,
        }
    }
}

/// The nodes of one run.
#[derive(Debug)]
pub struct Cluster {
    specs: Vec<NodeSpec>,
    procs: Vec<NodeProcess>,
    /// Per node: the tracer's state dir when traced.
    state_dirs: BTreeMap<String, PathBuf>,
    proxies: Option<LinkProxies>,
    /// Per node: how it last died on its own, while it stays down.
    own_exits: BTreeMap<String, String>,
    /// Nodes a fault with `restart = false` keeps down to the end of the
    /// run: no heal restarts them.
    kept_down: BTreeSet<String>,
    /// Keeps the nodes' ports from other jetsam runs until the cluster is dropped.
    _ports: PortLease,
}

/// Waits (bounded by [`SIGNAL_TIMEOUT`]) until every thread of the node's
/// process group and of its tracee (in the group unless it left it) has
/// exited: a write already under way must not land after the power loss
/// put the files back.
fn wait_gone(node: &str, group: Option<u32>, tracee: Option<u32>, forked: &[u32]) -> Result<(), ClusterError> {
    let also: Vec<u32> = tracee.into_iter().chain(forked.iter().copied()).collect();
    let deadline = std::time::Instant::now() + SIGNAL_TIMEOUT;
    loop {
        let alive = jetsam_faults::process::processes_alive(group, &also);
        if alive.is_empty() {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(ClusterError::GroupAlive { node: node.to_string(), pids: alive, waited: SIGNAL_TIMEOUT });
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn mkdir(path: &Path) -> Result<(), ClusterError> {
    std::fs::create_dir_all(path).map_err(|source| ClusterError::Dir { path: path.to_path_buf(), source })
}

impl Cluster {
    /// Allocates ports and folders under `run_dir` (`data/<node>`,
    /// `conf/<node>`, `state/<node>` when traced, `nodes/<node>.log`),
    /// starts the link proxies when proxied (inside the tokio runtime), and
    /// asks the target for each node's command line. Starts no node.
    pub async fn prepare(
        run_dir: &Path,
        scenario: &Scenario,
        target: &dyn Target,
        options: ClusterOptions,
    ) -> Result<Cluster, ClusterError> {
        let names = scenario.node_names();
        let (ports, lease) = free_ports(names.len() * 4)?;
        let mut specs: Vec<NodeSpec> = names
            .iter()
            .enumerate()
            .map(|(i, name)| NodeSpec {
                name: name.clone(),
                data_dir: run_dir.join("data").join(name),
                conf_dir: run_dir.join("conf").join(name),
                client_addr: ports[4 * i],
                // One port for clients and peers where the system has only one.
                peer_listen_addr: if target.peer_is_client_port() { ports[4 * i] } else { ports[4 * i + 1] },
                peers: BTreeMap::new(),
                monitor_addr: ports[4 * i + 2],
                dead_addr: ports[4 * i + 3],
            })
            .collect();
        let peer_addrs: BTreeMap<String, SocketAddr> =
            specs.iter().map(|s| (s.name.clone(), s.peer_listen_addr)).collect();
        let proxies = if options.proxied {
            let links = names
                .iter()
                .flat_map(|a| names.iter().filter(move |b| *b != a).map(move |b| (a, b)))
                .map(|(a, b)| Link { from: a.clone(), to: b.clone(), upstream: peer_addrs[b] })
                .collect();
            Some(LinkProxies::start(links).await?)
        } else {
            None
        };
        for spec in &mut specs {
            spec.peers = peer_addrs
                .iter()
                .filter(|(n, _)| **n != spec.name)
                .map(|(n, a)| {
                    // Through the proxy of the link spec -> n, or directly without proxies.
                    let addr = match &proxies {
                        Some(p) => p.listen_addr(&spec.name, n).expect("a proxy per directed link"),
                        None => *a,
                    };
                    (n.clone(), addr)
                })
                .collect();
        }
        let tracer = if options.traced { Some(jetsam_faults::power::find_tracer_binary(None)?) } else { None };
        mkdir(&run_dir.join("nodes"))?;
        let mut procs = Vec::with_capacity(specs.len());
        let mut state_dirs = BTreeMap::new();
        for spec in &specs {
            mkdir(&spec.data_dir)?;
            mkdir(&spec.conf_dir)?;
            let command = target.command(scenario, spec)?;
            let (program, args) = match &tracer {
                Some(tracer) => {
                    // Outside the data dir, kept across restarts: the undo log lives here.
                    let state_dir = run_dir.join("state").join(&spec.name);
                    mkdir(&state_dir)?;
                    if options.audit {
                        jetsam_faults::power::audit::enable(&state_dir)?;
                    }
                    let args =
                        jetsam_faults::power::tracer_args(&spec.data_dir, &state_dir, &command.program, &command.args);
                    state_dirs.insert(spec.name.clone(), state_dir);
                    (tracer.clone(), args)
                }
                None => (command.program, command.args),
            };
            let launch = LaunchSpec {
                program,
                args,
                env: command.env,
                log_path: run_dir.join("nodes").join(format!("{}.log", spec.name)),
            };
            procs.push(NodeProcess::new(spec.name.clone(), launch));
        }
        Ok(Cluster {
            specs,
            procs,
            state_dirs,
            proxies,
            own_exits: BTreeMap::new(),
            kept_down: BTreeSet::new(),
            _ports: lease,
        })
    }

    pub fn specs(&self) -> &[NodeSpec] {
        &self.specs
    }

    /// Writes each traced node's audit record to `out/<node>.log` on the
    /// run's clock (`run_start_unix_ns` subtracted); call after the nodes stopped.
    pub fn export_audit(&self, out: &Path, run_start_unix_ns: u64) -> Result<(), ClusterError> {
        std::fs::create_dir_all(out).map_err(|source| ClusterError::Dir { path: out.to_path_buf(), source })?;
        for (name, state_dir) in &self.state_dirs {
            jetsam_faults::power::audit::export(state_dir, &out.join(format!("{name}.log")), run_start_unix_ns)?;
        }
        Ok(())
    }

    /// The tracer's state dir of a traced node.
    pub fn state_dir(&self, name: &str) -> Option<&Path> {
        self.state_dirs.get(name).map(PathBuf::as_path)
    }

    pub fn names(&self) -> Vec<String> {
        self.specs.iter().map(|s| s.name.clone()).collect()
    }

    pub fn state(&self, name: &str) -> ProcState {
        self.proc_ref(name).state()
    }

    /// Pids of started nodes (each is its own process group id).
    pub fn pids(&self) -> BTreeMap<String, u32> {
        self.procs.iter().filter_map(|p| p.pid().map(|pid| (p.name().to_string(), pid))).collect()
    }

    fn proc_ref(&self, name: &str) -> &NodeProcess {
        self.procs.iter().find(|p| p.name() == name).unwrap_or_else(|| panic!("unknown node {name}"))
    }

    fn proc_mut(&mut self, name: &str) -> &mut NodeProcess {
        self.procs.iter_mut().find(|p| p.name() == name).unwrap_or_else(|| panic!("unknown node {name}"))
    }

    /// Keeps a stopped node down to the end of the run (a fault with
    /// `restart = false` stopped it): heals leave it stopped.
    pub fn keep_down(&mut self, name: &str) {
        assert_eq!(self.state(name), ProcState::Stopped, "only a stopped node is kept down");
        self.kept_down.insert(name.to_string());
    }

    /// Whether a fault keeps this node down to the end of the run.
    pub fn is_kept_down(&self, name: &str) -> bool {
        self.kept_down.contains(name)
    }

    /// The nodes kept down, in name order.
    pub fn kept_down(&self) -> Vec<String> {
        self.kept_down.iter().cloned().collect()
    }

    /// Starts every node (all must be stopped).
    pub fn start_all(&mut self) -> Result<(), ClusterError> {
        for p in &mut self.procs {
            p.start()?;
        }
        Ok(())
    }

    /// Kills one running or paused node (SIGKILL of its group) and records `kill`.
    pub fn kill(&mut self, name: &str, events: &EventLog, details: Details) -> Result<(), ClusterError> {
        self.proc_mut(name).kill(SIGNAL_TIMEOUT)?;
        events.record(EventKind::Kill, vec![name.to_string()], details)?;
        Ok(())
    }

    /// Restarts one stopped node and records `restart`.
    pub fn restart(&mut self, name: &str, events: &EventLog, details: Details) -> Result<(), ClusterError> {
        let pid = self.proc_mut(name).start()?;
        self.own_exits.remove(name);
        let mut details = details;
        details.push(("pid", pid.into()));
        events.record(EventKind::Restart, vec![name.to_string()], details)?;
        Ok(())
    }

    /// Pauses one running node (SIGSTOP) and records `pause`.
    pub fn pause(&mut self, name: &str, events: &EventLog, details: Details) -> Result<(), ClusterError> {
        self.proc_mut(name).pause(SIGNAL_TIMEOUT)?;
        events.record(EventKind::Pause, vec![name.to_string()], details)?;
        Ok(())
    }

    /// Resumes one paused node (SIGCONT) and records `resume`.
    pub fn resume(&mut self, name: &str, events: &EventLog, details: Details) -> Result<(), ClusterError> {
        self.proc_mut(name).resume(SIGNAL_TIMEOUT)?;
        events.record(EventKind::Resume, vec![name.to_string()], details)?;
        Ok(())
    }

    /// Power loss of running or paused nodes, all at once ("coordinated"
    /// when several): SIGKILL of every node's group first, then per node wait
    /// (bounded) until the traced node process is gone and put its files
    /// back to their last synced content per `model` (seeded per node).
    /// Records `power-loss` per node with what was discarded, and a
    /// `warning` per thing the tracer could not model. Nodes that had died on
    /// their own are returned with the error (they are then stopped and
    /// still lose their unsynced writes).
    pub fn power_loss(
        &mut self,
        names: &[String],
        events: &EventLog,
        model: LossModel<'_>,
        seeds: &[u64],
        details: Details,
    ) -> Result<Vec<(String, ProcessError)>, ClusterError> {
        assert_eq!(names.len(), seeds.len(), "one discard seed per node");
        let mut exited = Vec::new();
        let mut tracees = Vec::new();
        // Each node is its own process group, led by the process jetsam spawned.
        let groups: Vec<Option<u32>> = names.iter().map(|n| self.proc_ref(n).pid()).collect();
        for name in names {
            let state_dir = self.state_dirs.get(name).expect("power loss needs a traced node").clone();
            // The tracee's pid, read before the kill: the tracer wrote it at start.
            let tracee = std::fs::read_to_string(state_dir.join(jetsam_faults::power::TRACEE_PID_FILE))
                .ok()
                .and_then(|t| t.trim().parse::<u32>().ok());
            tracees.push(tracee);
            match self.proc_mut(name).kill(SIGNAL_TIMEOUT) {
                Ok(_) => {}
                Err(e @ ProcessError::ExitedOnItsOwn { .. }) => exited.push((name.clone(), e)),
                Err(e) => return Err(e.into()),
            }
        }
        for (((name, seed), tracee), group) in names.iter().zip(seeds).zip(tracees).zip(groups) {
            let state_dir = self.state_dirs[name].clone();
            let data_dir = self.spec(name).data_dir.clone();
            // Forked tracees that left the group (setsid) die with the tracer
            // (PTRACE_O_EXITKILL), after it let go of the state dir: wait for them too.
            wait_gone(name, group, tracee, &jetsam_faults::power::live_tracees(&state_dir))?;
            let report = jetsam_faults::power::discard_with(&data_dir, &state_dir, model.pages, model.dirents, *seed)?;
            let mut d = details.clone();
            d.push(("model", serde_json::to_value(report.model).expect("a model serializes")));
            d.push(("seed", report.seed.into()));
            d.push(("bytes_discarded", report.bytes_discarded.into()));
            d.push(("pages_discarded", report.pages_discarded.into()));
            d.push(("pages_kept", report.pages_kept.into()));
            d.push(("files", serde_json::to_value(&report.files).expect("files serialize")));
            if !report.missing.is_empty() {
                d.push(("missing", report.missing.clone().into()));
            }
            if let Some(dirents) = &report.dirents {
                d.push(("dirents", serde_json::to_value(model.dirents).expect("a model serializes")));
                d.push(("dirents_undone", dirents.undone.clone().into()));
                d.push(("dirents_kept", dirents.kept.into()));
                if !dirents.skipped.is_empty() {
                    d.push(("dirents_skipped", dirents.skipped.clone().into()));
                }
            }
            events.record(EventKind::PowerLoss, vec![name.clone()], d)?;
            for w in &report.warnings {
                events.record(EventKind::Warning, vec![name.clone()], [("message", w.clone().into())])?;
            }
        }
        Ok(exited)
    }

    /// Turns the io-error fault on (`Some`, records `io-error`) or off
    /// (`None`, records `io-ok`) for one traced node.
    pub fn set_io_error(
        &mut self,
        name: &str,
        mode: Option<IoErrorMode>,
        events: &EventLog,
        details: Details,
    ) -> Result<(), ClusterError> {
        let state_dir = self.state_dirs.get(name).expect("io-error needs a traced node");
        jetsam_faults::power::set_io_error(state_dir, mode)?;
        let mut d = details;
        let kind = match mode {
            Some(mode) => {
                d.push(("mode", mode.as_str().into()));
                EventKind::IoError
            }
            None => EventKind::IoOk,
        };
        events.record(kind, vec![name.to_string()], d)?;
        Ok(())
    }

    /// Corrupts one node's files while it is down: kills it first when it
    /// runs (records `kill`), then flips bits or cuts a tail of one seeded
    /// file matching `globs` (one `bitflip` event per bit, or a `truncate`).
    /// The node stays stopped until its heal restarts it.
    pub fn corrupt(
        &mut self,
        name: &str,
        fault: &DiskFault<'_>,
        rng: &mut impl rand::Rng,
        events: &EventLog,
        details: Details,
    ) -> Result<(), ClusterError> {
        if self.state(name) != ProcState::Stopped {
            self.kill(name, events, details.clone())?;
        }
        let data_dir = self.spec(name).data_dir.clone();
        let changes: Vec<Corruption> = match fault.kind {
            "bitflip" => jetsam_faults::disk::bitflip(&data_dir, fault.globs, fault.bits, rng)?,
            "truncate" => jetsam_faults::disk::truncate(&data_dir, fault.globs, rng)?,
            other => unreachable!("not a disk fault: {other}"),
        };
        for c in changes {
            events.record_with(|t_ns| {
                let mut e = c.to_event(t_ns, name);
                for (k, v) in &details {
                    e.details.insert(k.to_string(), v.clone());
                }
                e
            })?;
        }
        Ok(())
    }

    /// Blackholes the links `shape` cuts (seeded; `leader` for isolate-one)
    /// and records `partition` with the shape, groups and links.
    pub fn partition(
        &mut self,
        shape: &Shape,
        rng: &mut impl rand::Rng,
        leader: Option<&str>,
        events: &EventLog,
        details: Details,
    ) -> Result<(), ClusterError> {
        let proxies = self.proxies.as_ref().expect("partition needs link proxies");
        let (cut, groups) = jetsam_faults::net::shape_cut(shape, &self.names(), rng, leader);
        proxies.partition(&cut);
        assert_eq!(proxies.cut_links(), cut, "the proxies cut exactly the shape's links");
        events.record_with(|t_ns| {
            let mut e = jetsam_faults::net::partition_event(t_ns, shape, &groups, &cut);
            for (k, v) in &details {
                e.details.insert(k.to_string(), v.clone());
            }
            e
        })?;
        Ok(())
    }

    /// Restores every cut link and records `heal` (only when something was cut).
    pub fn heal_network(&mut self, events: &EventLog, details: Details) -> Result<(), ClusterError> {
        let Some(proxies) = self.proxies.as_ref() else { return Ok(()) };
        let cut: BTreeSet<(String, String)> = proxies.cut_links();
        if cut.is_empty() {
            return Ok(());
        }
        proxies.heal();
        assert!(proxies.cut_links().is_empty(), "every link is restored");
        let nodes: BTreeSet<String> = cut.into_iter().flat_map(|(a, b)| [a, b]).collect();
        events.record(EventKind::Heal, nodes.into_iter().collect(), details)?;
        Ok(())
    }

    /// Whether a running node is still there; one that died on its own is
    /// recorded as a `warning` and is then stopped.
    pub fn check_alive(&mut self, name: &str, events: &EventLog) -> Result<(), ClusterError> {
        if self.state(name) == ProcState::Stopped {
            return Ok(());
        }
        match self.proc_mut(name).check_alive("check") {
            Ok(()) => Ok(()),
            Err(e @ ProcessError::ExitedOnItsOwn { .. }) => self.note_exit(name, events, &e),
            Err(e) => Err(e.into()),
        }
    }

    /// How a node that is down died on its own (its exit status), if it did.
    pub fn own_exit(&self, name: &str) -> Option<&str> {
        self.own_exits.get(name).map(String::as_str)
    }

    fn spec(&self, name: &str) -> &NodeSpec {
        self.specs.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("unknown node {name}"))
    }

    /// Records a node that died on its own as a `warning` (a finding about
    /// the system, not a harness error); the node is then stopped.
    pub fn note_exit(&mut self, name: &str, events: &EventLog, error: &ProcessError) -> Result<(), ClusterError> {
        if let ProcessError::ExitedOnItsOwn { status, .. } = error {
            self.own_exits.insert(name.to_string(), status.to_string());
        }
        events.record(EventKind::Warning, vec![name.to_string()], [("message", error.to_string().into())])?;
        Ok(())
    }

    /// Heals everything: restores every cut link, clears every io-error,
    /// resumes every paused node and restarts every stopped one, each
    /// recorded. Afterwards every node is running, except the ones a fault
    /// keeps down ([`Cluster::keep_down`]).
    pub fn heal_all(&mut self, events: &EventLog) -> Result<(), ClusterError> {
        let details = || vec![("final_heal", true.into())];
        self.heal_network(events, details())?;
        for name in self.names() {
            if let Some(state_dir) = self.state_dirs.get(&name)
                && jetsam_faults::power::read_io_error(state_dir).is_some()
            {
                self.set_io_error(&name, None, events, details())?;
            }
        }
        for name in self.names() {
            if self.state(&name) == ProcState::Paused {
                match self.resume(&name, events, details()) {
                    Err(ClusterError::Process(e @ ProcessError::ExitedOnItsOwn { .. })) => {
                        self.note_exit(&name, events, &e)?
                    }
                    other => other?,
                }
            }
            if self.state(&name) == ProcState::Running
                && let Err(e @ ProcessError::ExitedOnItsOwn { .. }) = self.proc_mut(&name).check_alive("heal")
            {
                self.note_exit(&name, events, &e)?;
            }
            if self.is_kept_down(&name) {
                assert_eq!(self.state(&name), ProcState::Stopped, "a kept-down node stays stopped");
                continue;
            }
            if self.state(&name) == ProcState::Stopped {
                self.restart(&name, events, details())?;
            }
            assert_eq!(self.state(&name), ProcState::Running, "node {name} runs after the final heal");
        }
        Ok(())
    }

    /// Stops the link proxies (after the nodes are stopped).
    pub async fn shutdown_proxies(&mut self) {
        if let Some(p) = self.proxies.take() {
            p.shutdown().await;
        }
    }

    /// Stops every started node gracefully (SIGTERM, grace, SIGKILL).
    /// Nodes that already died on their own are reported in the result.
    pub fn stop_all(&mut self) -> Vec<(String, ProcessError)> {
        let mut problems = Vec::new();
        for p in &mut self.procs {
            if p.state() == ProcState::Stopped {
                continue;
            }
            match p.stop(STOP_GRACE, SIGNAL_TIMEOUT) {
                Ok(_) => assert_eq!(p.state(), ProcState::Stopped, "node {} is stopped", p.name()),
                // Whatever is left is SIGKILLed when the cluster is dropped.
                Err(e) => problems.push((p.name().to_string(), e)),
            }
        }
        problems
    }
}

/// What a disk fault does to a node's files.
#[derive(Debug, Clone, Copy)]
pub struct DiskFault<'a> {
    /// `bitflip` or `truncate`.
    pub kind: &'a str,
    /// Files to pick from (relative to the data dir).
    pub globs: &'a [String],
    /// Bits flipped per file (bitflip).
    pub bits: u32,
}

/// Kind-specific event details.
pub type Details = Vec<(&'static str, serde_json::Value)>;
