//! The link proxies against a real system: a 3-node R3 `jetsam-node` cluster
//! whose peer links all go through [`LinkProxies`]. Isolating the leader
//! must stop it from committing while the majority elects a new leader and
//! keeps acknowledging writes; after heal every node converges.
//! Needs the `jetsam-node` binary (`cargo build --workspace --bins`, as
//! scripts/test.sh does first).

use jetsam_core::proto::Role;
use jetsam_core::scenario::Scenario;
use jetsam_faults::net::{Link, LinkProxies, Shape, shape_cut};
use jetsam_targets::node::{Client, NodePublisher, NodeTarget, stream_name};
use jetsam_targets::{NodeSpec, PublishOutcome, Publisher, Target};
use rand::SeedableRng;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Bound on start-up, elections and convergence.
const WAIT_MS: u64 = 20_000;
/// How long a publish to the isolated leader is given to (wrongly) succeed.
const ISOLATED_PUBLISH_MS: u64 = 3_000;

/// The node processes; killed and reaped on drop, even when the test fails.
struct Cluster {
    children: Vec<Child>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind a free loopback port")
}

async fn status(addr: SocketAddr) -> Option<jetsam_core::proto::NodeStatus> {
    let client = Client::connect(addr, Duration::from_millis(500)).await.ok()?;
    client.status(Duration::from_millis(500)).await.ok()
}

async fn publish_n(publisher: &dyn Publisher, prefix: &str, n: u32) {
    for i in 0..n {
        let outcome = tokio::time::timeout(
            Duration::from_millis(WAIT_MS),
            publisher.publish(format!("{prefix}-{i}"), b"payload".to_vec()),
        )
        .await
        .unwrap_or_else(|_| panic!("publish {prefix}-{i} got no answer within {WAIT_MS} ms"));
        assert!(matches!(outcome, PublishOutcome::Ok { .. }), "publish {prefix}-{i}: {outcome:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolating_the_leader_through_the_proxies_moves_leadership_and_heal_converges() {
    let target = NodeTarget::locate(None).expect("jetsam-node binary (run `cargo build --workspace --bins`)");
    let scenario = Scenario::from_toml_str(
        "net_node_cluster",
        "name = \"net-node-cluster\"\nnodes = 3\nduration = \"10s\"\n[stream]\nreplicas = 3\nsync = \"always\"\n",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let names = scenario.node_names();
    let mut specs: Vec<NodeSpec> = names
        .iter()
        .map(|name| NodeSpec {
            name: name.clone(),
            data_dir: dir.path().join(name).join("data"),
            conf_dir: dir.path().join(name).join("conf"),
            client_addr: free_addr(),
            peer_listen_addr: free_addr(),
            peers: BTreeMap::new(),
            monitor_addr: free_addr(),
            dead_addr: free_addr(),
        })
        .collect();
    let real: BTreeMap<String, SocketAddr> = specs.iter().map(|s| (s.name.clone(), s.peer_listen_addr)).collect();
    let mut links = Vec::new();
    for from in &names {
        for to in &names {
            if from != to {
                links.push(Link { from: from.clone(), to: to.clone(), upstream: real[to] });
            }
        }
    }
    let proxies = LinkProxies::start(links).await.unwrap();
    for spec in &mut specs {
        for peer in real.keys().filter(|p| **p != spec.name) {
            spec.peers.insert(peer.clone(), proxies.listen_addr(&spec.name, peer).unwrap());
        }
    }
    let mut cluster = Cluster { children: Vec::new() };
    for spec in &specs {
        std::fs::create_dir_all(&spec.data_dir).unwrap();
        std::fs::create_dir_all(&spec.conf_dir).unwrap();
        let cmd = target.command(&scenario, spec).unwrap();
        let log = std::fs::File::create(dir.path().join(format!("{}.log", spec.name))).unwrap();
        let err_log = log.try_clone().unwrap();
        let child = Command::new(&cmd.program)
            .args(&cmd.args)
            .envs(&cmd.env)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err_log)
            .spawn()
            .unwrap();
        cluster.children.push(child);
    }
    let wait = Duration::from_millis(WAIT_MS);
    target.wait_ready(&specs, wait).await.unwrap();
    target.create_stream(&scenario, &specs, wait).await.unwrap();
    let stream = stream_name(&scenario);
    let all: Vec<(String, SocketAddr)> = specs.iter().map(|s| (s.name.clone(), s.client_addr)).collect();
    publish_n(&NodePublisher::new(all.clone(), 0, stream.clone()), "before", 5).await;

    let old = target.leader(&specs).await.expect("a leader after start-up");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let (cut, groups) = shape_cut(&Shape::IsolateOne, &names, &mut rng, Some(&old));
    assert_eq!(groups[0], vec![old.clone()]);
    proxies.partition(&cut);

    // The majority elects a leader of its own.
    let majority: Vec<&NodeSpec> = specs.iter().filter(|s| s.name != old).collect();
    let deadline = Instant::now() + wait;
    let new = loop {
        let mut found = None;
        for spec in &majority {
            if let Some(s) = status(spec.client_addr).await
                && s.role == Role::Leader
            {
                found = Some(spec.name.clone());
            }
        }
        if let Some(n) = found {
            break n;
        }
        assert!(
            Instant::now() < deadline,
            "no leader among {:?} within {WAIT_MS} ms of isolating {old}",
            majority.iter().map(|s| &s.name).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_ne!(new, old);

    // The isolated old leader cannot get a write acknowledged.
    let old_addr = specs.iter().find(|s| s.name == old).unwrap().client_addr;
    let lone = NodePublisher::new(vec![(old.clone(), old_addr)], 0, stream.clone());
    let isolated =
        tokio::time::timeout(Duration::from_millis(ISOLATED_PUBLISH_MS), lone.publish("isolated-0".into(), vec![1]))
            .await;
    assert!(
        !matches!(isolated, Ok(PublishOutcome::Ok { .. })),
        "the isolated {old} acknowledged a write: {isolated:?}"
    );

    // The majority keeps acknowledging.
    let majority_addrs: Vec<(String, SocketAddr)> = all.iter().filter(|(n, _)| *n != old).cloned().collect();
    publish_n(&NodePublisher::new(majority_addrs, 0, stream.clone()), "during", 5).await;

    proxies.heal();
    assert!(proxies.cut_links().is_empty());
    // Every node answers, agrees on one leader and holds the same log.
    let deadline = Instant::now() + wait;
    loop {
        let mut seen = Vec::new();
        for spec in &specs {
            seen.push(status(spec.client_addr).await);
        }
        let leaders: BTreeSet<Option<String>> = seen.iter().flatten().map(|s| s.leader.clone()).collect();
        let last_seqs: BTreeSet<u64> = seen.iter().flatten().map(|s| s.last_seq).collect();
        let agreed = seen.iter().all(Option::is_some)
            && leaders.len() == 1
            && !leaders.contains(&None)
            && last_seqs.len() == 1
            && last_seqs.iter().all(|&l| l >= 10);
        if agreed {
            break;
        }
        assert!(Instant::now() < deadline, "no convergence within {WAIT_MS} ms after heal: {seen:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Writes flow through the healed links to all three replicas.
    publish_n(&NodePublisher::new(all, 0, stream), "after", 5).await;
    drop(cluster);
    proxies.shutdown().await;
}
