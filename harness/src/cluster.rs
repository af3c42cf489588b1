//! The cluster of one run: free loopback ports, a data dir, a config dir
//! and a log file per node, the target's command line for each, and one
//! [`NodeProcess`] per node (own process group, parent-death signal, state
//! machine). It starts every node, kills/pauses/heals single nodes for the
//! nemesis (recording each in events.jsonl), heals everything at the end,
//! and stops everything gracefully.
//!
//! It does not decide when to fault anything (the nemesis does) and does not
//! talk to the nodes (the target does).

use crate::events::{EventLog, EventLogError};
use jetsam_core::event::EventKind;
use jetsam_core::scenario::Scenario;
use jetsam_faults::process::{LaunchSpec, NodeProcess, ProcState, ProcessError};
use jetsam_targets::{NodeSpec, Target, TargetError};
use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
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
}

/// The nodes of one run.
#[derive(Debug)]
pub struct Cluster {
    specs: Vec<NodeSpec>,
    procs: Vec<NodeProcess>,
}

/// Reserves `count` distinct free loopback ports: all listeners are held
/// until every port is chosen, so no two are the same, then released for
/// the nodes to bind.
pub fn free_ports(count: usize) -> Result<Vec<SocketAddr>, ClusterError> {
    let listeners: Vec<TcpListener> =
        (0..count).map(|_| TcpListener::bind("127.0.0.1:0")).collect::<Result<_, _>>().map_err(ClusterError::Port)?;
    listeners.iter().map(|l| l.local_addr().map_err(ClusterError::Port)).collect()
}

fn mkdir(path: &Path) -> Result<(), ClusterError> {
    std::fs::create_dir_all(path).map_err(|source| ClusterError::Dir { path: path.to_path_buf(), source })
}

impl Cluster {
    /// Allocates ports and folders under `run_dir` (`data/<node>`,
    /// `conf/<node>`, `nodes/<node>.log`) and asks the target for each
    /// node's command line. Starts nothing.
    pub fn prepare(run_dir: &Path, scenario: &Scenario, target: &dyn Target) -> Result<Cluster, ClusterError> {
        let names = scenario.node_names();
        let ports = free_ports(names.len() * 4)?;
        let mut specs: Vec<NodeSpec> = names
            .iter()
            .enumerate()
            .map(|(i, name)| NodeSpec {
                name: name.clone(),
                data_dir: run_dir.join("data").join(name),
                conf_dir: run_dir.join("conf").join(name),
                client_addr: ports[4 * i],
                peer_listen_addr: ports[4 * i + 1],
                peers: BTreeMap::new(),
                monitor_addr: ports[4 * i + 2],
                dead_addr: ports[4 * i + 3],
            })
            .collect();
        // Without link proxies each node reaches its peers directly.
        let peer_addrs: Vec<(String, SocketAddr)> =
            specs.iter().map(|s| (s.name.clone(), s.peer_listen_addr)).collect();
        for spec in &mut specs {
            spec.peers = peer_addrs.iter().filter(|(n, _)| *n != spec.name).map(|(n, a)| (n.clone(), *a)).collect();
        }
        mkdir(&run_dir.join("nodes"))?;
        let mut procs = Vec::with_capacity(specs.len());
        for spec in &specs {
            mkdir(&spec.data_dir)?;
            mkdir(&spec.conf_dir)?;
            let command = target.command(scenario, spec)?;
            let launch = LaunchSpec {
                program: command.program,
                args: command.args,
                env: command.env,
                log_path: run_dir.join("nodes").join(format!("{}.log", spec.name)),
            };
            procs.push(NodeProcess::new(spec.name.clone(), launch));
        }
        Ok(Cluster { specs, procs })
    }

    pub fn specs(&self) -> &[NodeSpec] {
        &self.specs
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

    /// Records a node that died on its own as a `warning` (a finding about
    /// the system, not a harness error); the node is then stopped.
    pub fn note_exit(&self, name: &str, events: &EventLog, error: &ProcessError) -> Result<(), ClusterError> {
        events.record(EventKind::Warning, vec![name.to_string()], [("message", error.to_string().into())])?;
        Ok(())
    }

    /// Heals everything: resumes every paused node and restarts every
    /// stopped one, each recorded. Afterwards every node is running.
    pub fn heal_all(&mut self, events: &EventLog) -> Result<(), ClusterError> {
        for name in self.names() {
            let details = || vec![("final_heal", true.into())];
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
            if self.state(&name) == ProcState::Stopped {
                self.restart(&name, events, details())?;
            }
            assert_eq!(self.state(&name), ProcState::Running, "node {name} runs after the final heal");
        }
        Ok(())
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

/// Kind-specific event details.
pub type Details = Vec<(&'static str, serde_json::Value)>;
