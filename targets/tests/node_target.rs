//! `NodeTarget` against a real 3-node `jetsam-node` cluster, driven exactly
//! as the controller drives it: validate, command, wait_ready,
//! create_stream, pipelined publishers, leader, SIGKILL of the leader,
//! wait_converged, read_node, read_cluster, and read_node_offline once
//! the nodes are stopped. Needs the binary built first
//! (`cargo build --workspace --bins`); the test says so if it is missing.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jetsam_core::scenario::Scenario;
use jetsam_targets::node::{NodeTarget, find_node_binary};
use jetsam_targets::{NodeSpec, PublishOutcome, Publisher, ReadBack, Target, TargetError};

const WAIT: Duration = Duration::from_secs(20);

/// A free loopback port below the kernel's ephemeral range (32768 and up
/// here), so an outgoing connection of some other test can never take it
/// between this check and the node's bind; ports are handed out from a
/// per-process counter (seeded by the pid) so parallel tests do not collide.
fn free_addr() -> SocketAddr {
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

fn scenario(extra_stream: &str, target: &str) -> Scenario {
    let text = format!(
        "name = \"node-target\"\nnodes = 3\nduration = \"5s\"\n[target]\nkind = \"node\"\n{target}\n\
         [stream]\nreplicas = 3\n{extra_stream}\n"
    );
    Scenario::from_toml_str("test", &text).expect("scenario parses")
}

/// Children and their temp dir, killed and removed on drop (even on panic).
struct Procs {
    root: PathBuf,
    children: Vec<Option<Child>>,
}

impl Drop for Procs {
    fn drop(&mut self) {
        for c in self.children.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn specs(root: &Path, n: usize) -> Vec<NodeSpec> {
    let names: Vec<String> = (1..=n).map(|i| format!("n{i}")).collect();
    let peer_addrs: Vec<SocketAddr> = names.iter().map(|_| free_addr()).collect();
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let data_dir = root.join(name).join("data");
            let conf_dir = root.join(name).join("conf");
            std::fs::create_dir_all(&data_dir).expect("mkdir");
            std::fs::create_dir_all(&conf_dir).expect("mkdir");
            NodeSpec {
                name: name.clone(),
                data_dir,
                conf_dir,
                client_addr: free_addr(),
                peer_listen_addr: peer_addrs[i],
                peers: names
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(j, p)| (p.clone(), peer_addrs[j]))
                    .collect(),
                monitor_addr: free_addr(),
                dead_addr: free_addr(),
            }
        })
        .collect()
}

fn spawn(target: &NodeTarget, scenario: &Scenario, spec: &NodeSpec, root: &Path) -> Child {
    let cmd = target.command(scenario, spec).expect("command");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(root.join(format!("{}.log", spec.name)))
        .expect("log");
    Command::new(&cmd.program)
        .args(&cmd.args)
        .envs(&cmd.env)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn jetsam-node")
}

#[test]
fn validate_applies_the_adr_and_node_rules() {
    let t = NodeTarget::new(PathBuf::from("/unused"));
    assert!(t.validate(&scenario("", "")).is_ok());
    let (message, fix) = t.validate(&scenario("consistency = \"async\"", "")).expect_err("async R3");
    assert!(message.contains("async") && fix.contains("replicas = 1"), "{message} / {fix}");
    let (message, fix) = t.validate(&scenario("", "bug = \"nope\"")).expect_err("unknown bug");
    assert!(message.contains("nope") && fix.contains("ack-before-write"), "{message} / {fix}");
    assert!(t.validate(&scenario("", "bug = \"trust-corrupt-log\"")).is_ok());
    let (message, _) = t.validate(&scenario("sync = \"often\"", "")).expect_err("bad sync");
    assert!(message.contains("often"), "{message}");
    let mut r1 = scenario("", "");
    r1.stream.replicas = 1;
    let (message, fix) = t.validate(&r1).expect_err("replicas != nodes");
    assert!(message.contains("node count") && fix.contains("replicas"), "{message} / {fix}");
    assert_eq!(t.read_back_mode(), ReadBack::Live);
    assert_eq!(t.default_corrupt_globs(), vec!["log/*.seg".to_string()]);
}

#[test]
fn command_carries_the_node_spec() {
    let t = NodeTarget::new(PathBuf::from("/bin/jetsam-node"));
    let root = std::env::temp_dir().join(format!("jetsam-node-target-cmd-{}", std::process::id()));
    let s = scenario("sync = \"always\"", "bug = \"ack-before-fsync\"");
    let spec = specs(&root, 3).remove(0);
    let cmd = t.command(&s, &spec).expect("command");
    let _ = std::fs::remove_dir_all(&root);
    assert_eq!(cmd.program, PathBuf::from("/bin/jetsam-node"));
    let joined = cmd.args.join(" ");
    for want in [
        format!("--name n1 --data-dir {}", spec.data_dir.display()),
        format!("--client-addr {}", spec.client_addr),
        format!("--peer-addr {}", spec.peer_listen_addr),
        format!("--peer n2={}", spec.peers["n2"]),
        format!("--peer n3={}", spec.peers["n3"]),
        "--sync always".to_string(),
        "--bug ack-before-fsync".to_string(),
    ] {
        assert!(joined.contains(&want), "{want:?} in {joined:?}");
    }
}

#[test]
fn find_node_binary_explains_how_to_build_it() {
    let err = find_node_binary(Some(Path::new("/nonexistent/jetsam-node"))).expect_err("missing");
    assert!(matches!(err, TargetError::Missing { .. }));
    assert!(err.to_string().contains("cargo build --workspace --bins"), "{err}");
}

#[test]
fn three_node_cluster_through_the_target_trait() {
    let binary = find_node_binary(None).unwrap_or_else(|e| panic!("{e}"));
    let target = NodeTarget::new(binary);
    let s = scenario("sync = \"always\"", "");
    target.validate(&s).expect("valid");
    let root = std::env::temp_dir().join(format!("jetsam-node-target-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let nodes = specs(&root, 3);
    let mut procs =
        Procs { root: root.clone(), children: nodes.iter().map(|n| Some(spawn(&target, &s, n, &root))).collect() };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        target.wait_ready(&nodes, WAIT).await.expect("ready");
        target.create_stream(&s, &nodes, WAIT).await.expect("create");
        // Creating again is harmless (bounded retries may repeat it).
        target.create_stream(&s, &nodes, WAIT).await.expect("create is idempotent");

        // One publisher per client, each with many publishes in flight at once.
        let mut acked: BTreeMap<String, u64> = BTreeMap::new();
        let mut handles = Vec::new();
        for client in 0..3u32 {
            let p: Arc<dyn Publisher> = Arc::from(target.publisher(&s, &nodes, client).await.expect("publisher"));
            for k in 0..50u32 {
                let p = p.clone();
                handles.push(tokio::spawn(async move {
                    let id = format!("{client}-{k}");
                    (id.clone(), p.publish(id, vec![7; 128]).await)
                }));
            }
        }
        let leader = target.leader(&nodes).await.expect("leader");
        for h in handles {
            match h.await.expect("task") {
                (id, PublishOutcome::Ok { seq, node }) => {
                    assert_eq!(node, leader, "acks come from the leader");
                    acked.insert(id, seq);
                }
                (id, other) => panic!("{id}: {other:?} on a healthy cluster"),
            }
        }
        assert_eq!(acked.len(), 150);
        let seqs: std::collections::BTreeSet<u64> = acked.values().copied().collect();
        assert_eq!(seqs.len(), 150, "every ack has its own sequence");

        // Kill the leader; the target finds the new one and publishing goes on.
        let li = nodes.iter().position(|n| n.name == leader).expect("leader index");
        let mut child = procs.children[li].take().expect("running");
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        let p = target.publisher(&s, &nodes, 7).await.expect("publisher");
        let deadline = Instant::now() + WAIT;
        let mut k = 0;
        while acked.len() < 200 {
            assert!(Instant::now() < deadline, "publishing did not resume after the leader died");
            let id = format!("7-{k}");
            k += 1;
            if let PublishOutcome::Ok { seq, node } = p.publish(id.clone(), vec![1; 16]).await {
                assert_ne!(node, leader);
                acked.insert(id, seq);
            }
        }
        procs.children[li] = Some(spawn(&target, &s, &nodes[li], &root));
        target.wait_converged(&s, &nodes, WAIT).await.expect("converged");

        let cluster = target.read_cluster(&s, &nodes).await.expect("node has a cluster view").expect("read");
        for node in &nodes {
            let held = target.read_node(&s, node).await.expect("read-local");
            assert_eq!(held, cluster, "{} holds exactly the cluster view", node.name);
            let by_seq: BTreeMap<u64, &str> = held.iter().map(|m| (m.seq, m.id.as_str())).collect();
            for (id, seq) in &acked {
                assert_eq!(by_seq.get(seq).copied(), Some(id.as_str()), "{} has acked {id}", node.name);
            }
        }

        // Stopped nodes read offline hold exactly what they served; a byte
        // flipped mid-segment stops the read there and the note says where.
        for child in procs.children.iter_mut() {
            let mut child = child.take().expect("running");
            child.kill().expect("SIGKILL");
            child.wait().expect("reap");
        }
        for node in &nodes {
            let read = target.read_node_offline(&s, node).await.expect("the node reads offline").expect("read");
            assert_eq!(read.messages, cluster, "{} offline", node.name);
            assert!(read.note.contains("read the whole log"), "{}", read.note);
        }
        let seg = std::fs::read_dir(nodes[0].data_dir.join("log")).unwrap().next().unwrap().unwrap().path();
        let mut bytes = std::fs::read(&seg).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x40;
        std::fs::write(&seg, &bytes).unwrap();
        let read = target.read_node_offline(&s, &nodes[0]).await.expect("reads offline").expect("read");
        assert!(!read.messages.is_empty() && read.messages.len() < cluster.len(), "{}", read.note);
        assert_eq!(read.messages[..], cluster[..read.messages.len()], "a prefix of what it held");
        assert!(read.note.contains("stopped at corrupt data in log/") && read.note.contains("offset"), "{}", read.note);
    });
    drop(procs);
    assert!(!root.exists(), "the test cleans up after itself");
}
