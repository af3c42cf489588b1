//! Test cluster of real `jetsam-node` processes on free loopback ports,
//! started through `NodeTarget::command` exactly as the controller would.
//! Every child is SIGKILLed when the cluster is dropped, even on panic.
//! Also the load and read-back helpers the multi-process tests share.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jetsam_core::scenario::Scenario;
use jetsam_targets::node::NodeTarget;
use jetsam_targets::{NodeSpec, PublishOutcome, Publisher, Target};

/// A free loopback port below the kernel's ephemeral range (32768 and up
/// here), so an outgoing connection of some other test can never take it
/// between this check and the node's bind; ports are handed out from a
/// per-process counter (seeded by the pid) so parallel tests do not collide.
pub fn free_addr() -> SocketAddr {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = 20_000 + (std::process::id() % 600) * 20;
    for _ in 0..12_000 {
        let port = 20_000 + (base - 20_000 + NEXT.fetch_add(1, Ordering::Relaxed)) % 12_000;
        if let Ok(l) = TcpListener::bind(("127.0.0.1", port as u16)) {
            return l.local_addr().expect("local addr");
        }
    }
    panic!("no free loopback port in 20000..32000");
}

pub fn scenario(nodes: u32, replicas: u32, consistency: Option<&str>, sync: &str, bug: Option<&str>) -> Scenario {
    let mut text = format!(
        "name = \"t\"\nnodes = {nodes}\nduration = \"5s\"\n[stream]\nreplicas = {replicas}\nsync = \"{sync}\"\n"
    );
    if let Some(c) = consistency {
        text.push_str(&format!("consistency = \"{c}\"\n"));
    }
    if let Some(b) = bug {
        text.push_str(&format!("[target]\nbug = \"{b}\"\n"));
    }
    Scenario::from_toml_str("test", &text).expect("test scenario parses")
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub target: NodeTarget,
    pub scenario: Scenario,
    pub specs: Vec<NodeSpec>,
    pub children: Vec<Option<Child>>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in self.children.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            // The temp dir goes away with the cluster: show the node logs' tails now.
            for i in 0..self.specs.len() {
                let log = self.log(i);
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                eprintln!("--- {} log tail ---", self.specs[i].name);
                for line in tail.into_iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
    }
}

impl Cluster {
    pub fn start(scenario: Scenario) -> Cluster {
        let mut c = Cluster::prepare(scenario);
        for i in 0..c.specs.len() {
            c.start_node(i);
        }
        c
    }

    /// Everything but starting the nodes (so a test can reroute peers first).
    pub fn prepare(scenario: Scenario) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let target = NodeTarget::new(PathBuf::from(env!("CARGO_BIN_EXE_jetsam-node")));
        target.validate(&scenario).expect("test scenario is valid");
        let names = scenario.node_names();
        let peer_addrs: Vec<SocketAddr> = names.iter().map(|_| free_addr()).collect();
        let specs: Vec<NodeSpec> = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let peers: BTreeMap<String, SocketAddr> = names
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(j, n)| (n.clone(), peer_addrs[j]))
                    .collect();
                let data_dir = dir.path().join(name).join("data");
                let conf_dir = dir.path().join(name).join("conf");
                std::fs::create_dir_all(&data_dir).expect("data dir");
                std::fs::create_dir_all(&conf_dir).expect("conf dir");
                NodeSpec {
                    name: name.clone(),
                    data_dir,
                    conf_dir,
                    client_addr: free_addr(),
                    peer_listen_addr: peer_addrs[i],
                    peers,
                    monitor_addr: free_addr(),
                    dead_addr: free_addr(),
                }
            })
            .collect();
        Cluster { dir, target, scenario, children: specs.iter().map(|_| None).collect(), specs }
    }

    pub fn log_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(&self.specs[i].name).join("node.log")
    }

    pub fn start_node(&mut self, i: usize) {
        assert!(self.children[i].is_none(), "node {i} is already running");
        let cmd = self.target.command(&self.scenario, &self.specs[i]).expect("command");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path(i)).expect("log file");
        let child = Command::new(&cmd.program)
            .args(&cmd.args)
            .envs(&cmd.env)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn jetsam-node");
        self.children[i] = Some(child);
    }

    pub fn kill(&mut self, i: usize) {
        let mut child = self.children[i].take().expect("node is running");
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
    }

    /// SIGTERM and wait (bounded) for the exit status.
    pub fn terminate(&mut self, i: usize) -> std::process::ExitStatus {
        let mut child = self.children[i].take().expect("node is running");
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        assert_eq!(rc, 0, "SIGTERM delivered");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("node {i} did not exit within 10s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (bounded) for a stopped-by-itself node to exit, returning its status.
    pub fn wait_exit(&mut self, i: usize, timeout: Duration) -> std::process::ExitStatus {
        let mut child = self.children[i].take().expect("node was started");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("node {i} still running after {timeout:?}; log:\n{}", self.log(i));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.log_path(i)).unwrap_or_default()
    }

    pub fn index_of(&self, name: &str) -> usize {
        self.specs.iter().position(|s| s.name == name).expect("known node")
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

/// Publishes `count` messages from `clients` concurrent clients, ids
/// `<client>-<k>` offset by `base`; returns acked id -> seq and the number of
/// non-ok outcomes.
pub async fn publish_load(c: &Cluster, clients: u32, count: u32, base: u32) -> (BTreeMap<String, u64>, usize) {
    let mut tasks = Vec::new();
    for client in 0..clients {
        let p: Arc<dyn Publisher> =
            Arc::from(c.target.publisher(&c.scenario, &c.specs, client).await.expect("publisher"));
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut other = 0;
            for k in 0..count / clients {
                let id = format!("{client}-{}", base + k);
                match tokio::time::timeout(Duration::from_secs(15), p.publish(id.clone(), vec![b'x'; 128])).await {
                    Ok(PublishOutcome::Ok { seq, .. }) => acked.push((id, seq)),
                    Ok(_) | Err(_) => other += 1,
                }
            }
            (acked, other)
        }));
    }
    let mut all = BTreeMap::new();
    let mut other = 0;
    for t in tasks {
        let (acked, o) = t.await.expect("publisher task");
        other += o;
        for (id, seq) in acked {
            assert!(all.insert(id, seq).is_none(), "an id is acked once");
        }
    }
    (all, other)
}

/// Every node holds every acked id at its acked sequence, and all nodes hold the same stream.
pub async fn assert_all_nodes_hold(c: &Cluster, acked: &BTreeMap<String, u64>) {
    let mut first: Option<Vec<(u64, String)>> = None;
    for spec in &c.specs {
        let msgs = c.target.read_node(&c.scenario, spec).await.expect("read-local");
        let by_seq: BTreeMap<u64, &str> = msgs.iter().map(|m| (m.seq, m.id.as_str())).collect();
        for (id, seq) in acked {
            assert_eq!(by_seq.get(seq).copied(), Some(id.as_str()), "{} lost acked {id} at seq {seq}", spec.name);
        }
        let seqs: Vec<u64> = msgs.iter().map(|m| m.seq).collect();
        assert!(seqs.iter().enumerate().all(|(i, s)| *s == i as u64 + 1), "{}: sequences are 1..n", spec.name);
        let view: Vec<(u64, String)> = msgs.into_iter().map(|m| (m.seq, m.id)).collect();
        match &first {
            None => first = Some(view),
            Some(f) => assert_eq!(f, &view, "{} diverges from {}", spec.name, c.specs[0].name),
        }
    }
    let cluster = c.target.read_cluster(&c.scenario, &c.specs).await.expect("node offers a cluster view");
    let cluster = cluster.expect("read through the leader");
    assert_eq!(cluster.len(), first.expect("at least one node").len(), "cluster view has every committed message");
}
