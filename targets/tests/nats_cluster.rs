//! Runs real 3-node nats-server clusters (2.12.1, the version Jepsen tested,
//! and 2.15.1) on loopback through
//! `NatsTarget`: ready, R3 stream, pipelined publishes, the cluster view,
//! a clean stop, and every node's message blocks against the acks; and a
//! 5-node cluster with an R3 stream, whose placement the target reports.
//! Needs the binaries (`scripts/install-nats.sh`); set
//! `JETSAM_SKIP_NATS=1` to skip where it cannot be installed.

use jetsam_core::scenario::Scenario;
use jetsam_targets::nats::{self, NatsTarget};
use jetsam_targets::{NodeSpec, PublishOutcome, Publisher, ReadBack, Target};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const VERSION: &str = "2.12.1";
const MESSAGES: usize = 300;

/// The binary, or `None` when skipping is allowed; panics with the install command otherwise.
fn server_or_skip(test: &str, version: &str) -> Option<PathBuf> {
    match nats::find_nats_server(version, None) {
        Ok(path) => Some(path),
        Err(e) if std::env::var("JETSAM_SKIP_NATS").as_deref() == Ok("1") => {
            eprintln!("{test}: skipped (JETSAM_SKIP_NATS=1): {e}");
            None
        }
        Err(e) => panic!("{test} needs nats-server {version}: {e} (or set JETSAM_SKIP_NATS=1 to skip)"),
    }
}

fn scenario(nodes: u32, replicas: u32, extra: &str) -> Scenario {
    let text = format!(
        "name = \"nats-test\"\nnodes = {nodes}\nduration = \"1s\"\n\
         [target]\nkind = \"nats\"\nversion = \"{VERSION}\"\n\
         [stream]\nreplicas = {replicas}\n{extra}\n\
         [workload]\nclients = 3\npayload_bytes = 64\ntimeout = \"5s\"\n"
    );
    Scenario::from_toml_str("test", &text).unwrap()
}

/// Free loopback ports, held until all are chosen so none repeats.
fn free_addrs(count: usize) -> Vec<SocketAddr> {
    let listeners: Vec<TcpListener> = (0..count).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    listeners.iter().map(|l| l.local_addr().unwrap()).collect()
}

/// The cluster's processes; SIGKILLed on drop so a failing test leaves nothing running.
struct Cluster {
    specs: Vec<NodeSpec>,
    children: BTreeMap<String, Child>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    fn start(target: &NatsTarget, scenario: &Scenario) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let names = scenario.node_names();
        let addrs = free_addrs(names.len() * 4);
        let peer_addr = |i: usize| addrs[i * 4 + 1];
        let specs: Vec<NodeSpec> = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let peers = names
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(j, peer)| (peer.clone(), peer_addr(j)))
                    .collect();
                NodeSpec {
                    name: name.clone(),
                    data_dir: dir.path().join("data").join(name),
                    conf_dir: dir.path().join("conf"),
                    client_addr: addrs[i * 4],
                    peer_listen_addr: peer_addr(i),
                    peers,
                    monitor_addr: addrs[i * 4 + 2],
                    dead_addr: addrs[i * 4 + 3],
                }
            })
            .collect();
        let mut cluster = Cluster { specs: Vec::new(), children: BTreeMap::new(), _dir: dir };
        for spec in &specs {
            std::fs::create_dir_all(&spec.data_dir).unwrap();
            cluster.spawn(target, scenario, spec);
        }
        cluster.specs = specs;
        cluster
    }

    /// Starts (or restarts) one node, appending to its log.
    fn spawn(&mut self, target: &NatsTarget, scenario: &Scenario, spec: &NodeSpec) {
        let command = target.command(scenario, spec).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(spec.conf_dir.join(format!("{}.log", spec.name)))
            .unwrap();
        let child = Command::new(&command.program)
            .args(&command.args)
            .envs(&command.env)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        if let Some(mut old) = self.children.insert(spec.name.clone(), child) {
            assert!(old.try_wait().unwrap().is_some(), "{} restarted while still running", spec.name);
        }
    }

    /// SIGKILLs one node and reaps it.
    fn kill(&mut self, name: &str) {
        let child = self.children.get_mut(name).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Starts the cluster and waits until it is ready. Ports come from
    /// binding port 0 and are free again before nats-server binds them, so
    /// another process may take one in between (an outgoing connection's
    /// ephemeral port, most often): a node that exits at startup means a new
    /// cluster on new ports, at most three times.
    fn start_ready(target: &NatsTarget, scenario: &Scenario, rt: &tokio::runtime::Runtime) -> Cluster {
        let mut failures = Vec::new();
        for _ in 0..3 {
            let mut cluster = Cluster::start(target, scenario);
            let ready = rt.block_on(target.wait_ready(&cluster.specs, Duration::from_secs(20)));
            let exited: Vec<String> = cluster
                .children
                .iter_mut()
                .filter_map(|(name, child)| child.try_wait().unwrap().map(|status| format!("{name} exited {status}")))
                .collect();
            match ready {
                Ok(()) if exited.is_empty() => return cluster,
                Ok(()) => panic!("ready although {exited:?}"),
                Err(e) if !exited.is_empty() => failures.push(format!("{e}; {exited:?}\n{}", cluster.logs())),
                Err(e) => panic!("{e}\n{}", cluster.logs()),
            }
        }
        panic!("no cluster started in 3 attempts:\n{}", failures.join("\n"));
    }

    fn logs(&self) -> String {
        self.specs
            .iter()
            .map(|s| {
                let log = std::fs::read_to_string(s.conf_dir.join(format!("{}.log", s.name))).unwrap_or_default();
                format!("--- {} log:\n{log}", s.name)
            })
            .collect()
    }

    /// SIGTERM every node and wait (bounded) for each to exit on its own.
    fn stop_cleanly(&mut self) {
        for child in self.children.values() {
            let pid = libc::pid_t::try_from(child.id()).unwrap();
            // SAFETY: plain kill(2) on a child we spawned and have not reaped.
            assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        for (name, child) in &mut self.children {
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    eprintln!("{name} exited: {status}");
                    break;
                }
                assert!(Instant::now() < deadline, "{name} did not exit within 30s of SIGTERM");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.children.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

#[test]
fn nats_2_12_1_r3_cluster_acks_match_every_replicas_blocks() {
    r3_cluster_acks_match_every_replicas_blocks("2.12.1");
}

#[test]
fn nats_2_15_1_r3_cluster_acks_match_every_replicas_blocks() {
    r3_cluster_acks_match_every_replicas_blocks("2.15.1");
}

fn r3_cluster_acks_match_every_replicas_blocks(version: &str) {
    let Some(server) = server_or_skip(&format!("r3 cluster {version}"), version) else { return };
    let mut scenario = scenario(3, 3, "sync = \"always\"");
    scenario.target.version = Some(version.to_string());
    let target = Arc::new(NatsTarget::new(server));
    target.validate(&scenario).unwrap();
    assert_eq!(target.read_back_mode(), ReadBack::AfterStop);
    let rt = runtime();
    let mut cluster = Cluster::start_ready(&target, &scenario, &rt);
    let conf = std::fs::read_to_string(cluster.specs[0].conf_dir.join("n1.conf")).unwrap();
    assert!(conf.contains("sync_interval: \"always\""), "{conf}");
    assert!(conf.contains(&format!("advertise: \"{}\"", cluster.specs[0].dead_addr)), "{conf}");

    let specs = cluster.specs.clone();
    let (acks, leader, cluster_view, counts) = rt.block_on(async {
        target.create_stream(&scenario, &specs, Duration::from_secs(30)).await.unwrap();
        let leader = target.leader(&specs).await.expect("a stream leader after create_stream");

        // Three clients on three nodes, each with all its publishes in flight at once.
        let mut publishers: Vec<Arc<dyn Publisher>> = Vec::new();
        for client in 0..3u32 {
            publishers.push(Arc::from(target.publisher(&scenario, &specs, client).await.unwrap()));
        }
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..MESSAGES {
            let client = i % 3;
            let publisher = Arc::clone(&publishers[client]);
            let id = format!("{client}-{}", i / 3);
            tasks.spawn(async move {
                let outcome = publisher.publish(id.clone(), vec![b'x'; 64]).await;
                (id, outcome)
            });
        }
        let mut acks = BTreeMap::new();
        while let Some(joined) = tasks.join_next().await {
            let (id, outcome) = joined.unwrap();
            match outcome {
                PublishOutcome::Ok { seq, node } => {
                    assert!(specs.iter().any(|s| s.name == node), "ack from unknown node {node}");
                    assert!(acks.insert(id, seq).is_none());
                }
                other => panic!("publish {id} on a healthy cluster: {other:?}"),
            }
        }
        target.wait_converged(&scenario, &specs, Duration::from_secs(30)).await.unwrap();
        let counts = nats::jsz_counts(&specs).await;
        let cluster_view = target.read_cluster(&scenario, &specs).await.expect("nats offers a cluster view").unwrap();
        (acks, leader, cluster_view, counts)
    });
    assert!(specs.iter().any(|s| s.name == leader), "leader {leader} is not a node");
    assert_eq!(acks.len(), MESSAGES);
    let seqs: BTreeSet<u64> = acks.values().copied().collect();
    assert_eq!(seqs, (1..=MESSAGES as u64).collect::<BTreeSet<_>>(), "acked sequences are 1..=N, each once");
    let expected_counts: BTreeMap<String, (u64, u64, u64)> =
        specs.iter().map(|s| (s.name.clone(), (MESSAGES as u64, 1, MESSAGES as u64))).collect();
    assert_eq!(counts, expected_counts);

    let by_seq: BTreeMap<u64, String> = acks.iter().map(|(id, seq)| (*seq, id.clone())).collect();
    let view: BTreeMap<u64, String> = cluster_view.iter().map(|m| (m.seq, m.id.clone())).collect();
    assert_eq!(cluster_view.len(), MESSAGES);
    assert_eq!(view, by_seq, "the cluster view holds every acked id at its acked sequence");

    cluster.stop_cleanly();
    for spec in &specs {
        let held = rt.block_on(target.read_node(&scenario, spec)).unwrap_or_else(|e| panic!("read {}: {e}", spec.name));
        let held: BTreeMap<u64, String> = held.into_iter().map(|m| (m.seq, m.id)).collect();
        assert_eq!(held, by_seq, "{}'s blocks hold every acked id at its acked sequence", spec.name);
    }
}

#[test]
fn nats_read_node_reports_a_truncated_block() {
    let Some(server) = server_or_skip("nats_read_node_reports_a_truncated_block", VERSION) else { return };
    let mut scenario = scenario(1, 1, "");
    scenario.workload.timeout = Duration::from_secs(1);
    let target = NatsTarget::new(server);
    let rt = runtime();
    let mut cluster = Cluster::start_ready(&target, &scenario, &rt);
    let specs = cluster.specs.clone();
    let publisher = rt.block_on(async {
        assert_eq!(target.leader(&specs).await, None, "no stream, no leader");
        let publisher = target.publisher(&scenario, &specs, 0).await.unwrap();
        // Before the stream exists nothing answers on its subject: definitely not written.
        match publisher.publish("0-x".into(), b"early".to_vec()).await {
            PublishOutcome::Fail { error } => assert!(error.contains("no stream"), "{error}"),
            other => panic!("publish without a stream: {other:?}"),
        }
        target.create_stream(&scenario, &specs, Duration::from_secs(30)).await.unwrap();
        assert_eq!(target.leader(&specs).await.as_deref(), Some("n1"));
        for i in 0..20 {
            match publisher.publish(format!("0-{i}"), vec![b'y'; 64]).await {
                PublishOutcome::Ok { seq, node } => {
                    assert_eq!((seq, node.as_str()), (i + 1, "n1"));
                }
                other => panic!("publish 0-{i}: {other:?}"),
            }
        }
        publisher
    });
    cluster.stop_cleanly();
    // With the node gone the outcome is unknown, and it comes within the publish timeout.
    let started = Instant::now();
    match rt.block_on(publisher.publish("0-late".into(), b"late".to_vec())) {
        PublishOutcome::Info { .. } => {}
        other => panic!("publish to a stopped node: {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    let held = rt.block_on(target.read_node(&scenario, &specs[0])).unwrap();
    assert_eq!(held.len(), 20);
    assert_eq!(held[19].id, "0-19");

    let msgs_dir = specs[0].data_dir.join("jetstream/$G/streams/jetsam/msgs");
    let block = first_block(&msgs_dir);
    // One flipped bit in the payload of the 11th record fails that record's hash.
    let pristine = std::fs::read(&block).unwrap();
    // Each record's payload follows its subject (no headers) and starts with
    // the message's id and a space, then the rest of the 64 `y`s.
    let payload_starts: Vec<usize> = (0..20)
        .map(|i| {
            let head = format!("jetsam.00-{i} y");
            let at = pristine.windows(head.len()).position(|w| w == head.as_bytes()).expect("each id once");
            at + "jetsam.0".len()
        })
        .collect();
    assert!(payload_starts.iter().all(|&p| pristine[p..p + 64].ends_with(&[b'y'; 58])), "64-byte payloads");
    let mut flipped = pristine.clone();
    flipped[payload_starts[10] + 30] ^= 0x04;
    std::fs::write(&block, &flipped).unwrap();
    let err = rt.block_on(target.read_node(&scenario, &specs[0])).unwrap_err();
    assert!(err.contains("checksum mismatch") && err.contains("10 good records before it"), "{err}");
    std::fs::write(&block, &pristine).unwrap();

    let len = std::fs::metadata(&block).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&block).unwrap();
    file.set_len(len - 5).unwrap();
    drop(file);
    let err = rt.block_on(target.read_node(&scenario, &specs[0])).unwrap_err();
    assert!(err.contains("truncated") && err.contains("19 good records before it"), "{err}");

    // A node whose data dir holds no stream lost its replica: it holds no
    // messages (every node was given one), so the checker counts the loss.
    std::fs::remove_dir_all(specs[0].data_dir.join("jetstream")).unwrap();
    let held = rt.block_on(target.read_node(&scenario, &specs[0])).unwrap();
    assert!(held.is_empty(), "a deleted replica holds nothing: {held:?}");
}

fn first_block(msgs_dir: &Path) -> PathBuf {
    let mut blocks: Vec<PathBuf> = std::fs::read_dir(msgs_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "blk"))
        .collect();
    blocks.sort();
    assert_eq!(blocks.len(), 1, "20 small messages fit one block: {blocks:?}");
    blocks.remove(0)
}

#[test]
fn nats_validate_rejects_async_r3_and_missing_version() {
    let target = NatsTarget::new(PathBuf::from("/nonexistent/nats-server"));
    let (message, fix) = target.validate(&scenario(3, 3, "consistency = \"async\"")).unwrap_err();
    assert!(message.contains("10052"), "{message}");
    assert!(fix.contains("replicas = 1"), "{fix}");
    assert!(target.validate(&scenario(1, 1, "consistency = \"async\"\nsync = \"1s\"")).is_ok());
    assert!(target.validate(&scenario(3, 3, "sync = \"always\"")).is_ok());
    assert!(target.validate(&scenario(3, 3, "sync = \"sometimes\"")).is_err());
    assert!(target.validate(&scenario(5, 3, "")).is_ok(), "R3 on 5: the target reports the placement");
    assert!(target.validate(&scenario(3, 4, "")).is_err(), "more replicas than servers");

    let mut no_version = scenario(3, 3, "");
    no_version.target.version = None;
    let (message, _) = target.validate(&no_version).unwrap_err();
    assert!(message.contains("target.version"), "{message}");
}

#[test]
fn nats_find_server_reports_the_install_command() {
    let err = nats::find_nats_server("0.0.1", None).unwrap_err().to_string();
    assert!(err.contains("install-nats.sh 0.0.1"), "{err}");
    let err = nats::find_nats_server(VERSION, Some(Path::new("/nonexistent/nats-server"))).unwrap_err().to_string();
    assert!(err.contains("/nonexistent/nats-server is not a file"), "{err}");
}

#[test]
fn nats_leader_kill_and_restart_keeps_every_ack_on_every_replica() {
    let Some(server) = server_or_skip("nats_leader_kill_and_restart_keeps_every_ack_on_every_replica", VERSION) else {
        return;
    };
    let mut scenario = scenario(3, 3, "sync = \"always\"");
    scenario.workload.timeout = Duration::from_secs(2);
    let target = Arc::new(NatsTarget::new(server));
    let rt = runtime();
    let mut cluster = Cluster::start_ready(&target, &scenario, &rt);
    let specs = cluster.specs.clone();
    let (publishers, leader) = rt.block_on(async {
        target.create_stream(&scenario, &specs, Duration::from_secs(30)).await.unwrap();
        let mut publishers: Vec<Arc<dyn Publisher>> = Vec::new();
        for client in 0..3u32 {
            publishers.push(Arc::from(target.publisher(&scenario, &specs, client).await.unwrap()));
        }
        (publishers, target.leader(&specs).await.unwrap())
    });
    let mut acks: BTreeMap<u64, String> = BTreeMap::new();
    let mut outcomes: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut counter = 0u64;
    let mut publish_round = |acks: &mut BTreeMap<u64, String>, outcomes: &mut BTreeMap<&'static str, usize>| {
        let results = rt.block_on(async {
            let mut tasks = tokio::task::JoinSet::new();
            for (client, publisher) in publishers.iter().enumerate() {
                for _ in 0..20 {
                    let id = format!("{client}-{counter}");
                    counter += 1;
                    let publisher = Arc::clone(publisher);
                    tasks.spawn(async move { (id.clone(), publisher.publish(id, b"p".to_vec()).await) });
                }
            }
            tasks.join_all().await
        });
        for (id, outcome) in results {
            match outcome {
                PublishOutcome::Ok { seq, .. } => {
                    assert!(acks.insert(seq, id).is_none(), "one sequence acknowledged twice");
                    *outcomes.entry("ok").or_default() += 1;
                }
                PublishOutcome::Fail { .. } => *outcomes.entry("fail").or_default() += 1,
                PublishOutcome::Info { .. } => *outcomes.entry("info").or_default() += 1,
            }
        }
    };
    publish_round(&mut acks, &mut outcomes);
    assert_eq!(outcomes.get("ok"), Some(&60), "a healthy cluster acks everything: {outcomes:?}");
    cluster.kill(&leader);
    // While the stream elects a new leader, publishes fail or time out; some may still be acked.
    for _ in 0..3 {
        publish_round(&mut acks, &mut outcomes);
    }
    // No more publishing: a publish that timed out while the leader was
    // down may still sit in a client's buffer and be stored later; closing
    // the clients now keeps that from landing after the cluster view is read.
    drop(publishers);
    let spec = specs.iter().find(|s| s.name == leader).unwrap().clone();
    cluster.spawn(&target, &scenario, &spec);
    let started = Instant::now();
    let (cluster_view, read_s) = rt.block_on(async {
        target.wait_ready(&specs, Duration::from_secs(30)).await.unwrap();
        target.wait_converged(&scenario, &specs, Duration::from_secs(30)).await.unwrap();
        let converged_s = started.elapsed().as_secs_f64();
        let read_started = Instant::now();
        let view = target.read_cluster(&scenario, &specs).await.unwrap().unwrap();
        eprintln!("restarted {leader}: ready and converged in {converged_s:.2} s");
        (view, read_started.elapsed().as_secs_f64())
    });
    eprintln!("outcomes {outcomes:?}; cluster view of {} messages read in {read_s:.2} s", cluster_view.len());
    let view: BTreeMap<u64, String> = cluster_view.into_iter().map(|m| (m.seq, m.id)).collect();
    for (seq, id) in &acks {
        assert_eq!(view.get(seq), Some(id), "acked {id} at {seq} is in the cluster view");
    }
    cluster.stop_cleanly();
    let acked_ids: std::collections::BTreeSet<&String> = acks.values().collect();
    let mut replicas: Vec<(String, BTreeMap<u64, String>)> = Vec::new();
    for spec in &specs {
        let held: BTreeMap<u64, String> =
            rt.block_on(target.read_node(&scenario, spec)).unwrap().into_iter().map(|m| (m.seq, m.id)).collect();
        for (seq, id) in &view {
            assert_eq!(held.get(seq), Some(id), "{} holds the cluster view's {id} at {seq}", spec.name);
        }
        // Beyond the view only a write that was never acknowledged (one
        // that timed out and was stored late) may show up.
        for (seq, id) in held.iter().filter(|(seq, _)| !view.contains_key(seq)) {
            assert!(!acked_ids.contains(id), "{} holds acked {id} at {seq} outside the cluster view", spec.name);
        }
        replicas.push((spec.name.clone(), held));
    }
    for (name, held) in &replicas[1..] {
        assert_eq!(held, &replicas[0].1, "{name} holds what {} holds", replicas[0].0);
    }
}

/// An R3 stream on 5 servers: the target names the 3 servers that hold it
/// (and the same 3 while its leader is down, from the two others' views),
/// only they have the stream's files, and each holds every acknowledged
/// write; the other two have no stream directory.
#[test]
fn nats_r3_on_5_names_its_replicas_and_only_they_hold_the_stream() {
    let Some(server) = server_or_skip("nats_r3_on_5_names_its_replicas_and_only_they_hold_the_stream", VERSION) else {
        return;
    };
    let scenario = scenario(5, 3, "sync = \"always\"");
    let target = NatsTarget::new(server);
    target.validate(&scenario).unwrap();
    let rt = runtime();
    let started = Instant::now();
    let mut cluster = Cluster::start_ready(&target, &scenario, &rt);
    let specs = cluster.specs.clone();
    let (by_seq, placement, leader) = rt.block_on(async {
        target.create_stream(&scenario, &specs, Duration::from_secs(30)).await.unwrap();
        // Clients 0..5 on n1..n5: the two non-replicas forward to the leader.
        let mut tasks = tokio::task::JoinSet::new();
        for client in 0..5u32 {
            let publisher: Arc<dyn Publisher> = Arc::from(target.publisher(&scenario, &specs, client).await.unwrap());
            for counter in 0..40 {
                let (publisher, id) = (Arc::clone(&publisher), format!("{client}-{counter}"));
                tasks.spawn(async move { (id.clone(), publisher.publish(id, vec![b'r'; 64]).await) });
            }
        }
        let mut by_seq = BTreeMap::new();
        for (id, outcome) in tasks.join_all().await {
            match outcome {
                PublishOutcome::Ok { seq, .. } => assert!(by_seq.insert(seq, id).is_none()),
                other => panic!("publish {id} on a healthy cluster: {other:?}"),
            }
        }
        target.wait_converged(&scenario, &specs, Duration::from_secs(30)).await.unwrap();
        let placement = target.replica_set(&scenario, &specs).await.expect("NATS can tell").unwrap();
        (by_seq, placement, target.leader(&specs).await.expect("a stream leader"))
    });
    assert_eq!(by_seq.len(), 200);
    assert_eq!(placement.len(), 3, "{placement:?}");
    assert!(placement.contains(&leader), "leader {leader} is one of {placement:?}");
    let listing: Vec<String> = rt.block_on(nats::jsz_counts(&specs)).into_keys().collect();
    assert_eq!(listing, placement, "every node is up, and only the replicas list the stream");

    // With the leader gone the others still name the same group.
    cluster.kill(&leader);
    let without_leader = rt.block_on(target.replica_set(&scenario, &specs)).unwrap();
    assert_eq!(without_leader, Ok(placement.clone()));
    let spec = specs.iter().find(|s| s.name == leader).unwrap().clone();
    cluster.spawn(&target, &scenario, &spec);
    rt.block_on(target.wait_ready(&specs, Duration::from_secs(30))).unwrap();
    cluster.stop_cleanly();
    for spec in &specs {
        let stream_dir = spec.data_dir.join("jetstream/$G/streams").join(nats::STREAM_NAME);
        if placement.contains(&spec.name) {
            let held = rt.block_on(target.read_node(&scenario, spec)).unwrap();
            let held: BTreeMap<u64, String> = held.into_iter().map(|m| (m.seq, m.id)).collect();
            assert_eq!(held, by_seq, "replica {} holds every acked id at its acked sequence", spec.name);
        } else {
            assert!(!stream_dir.exists(), "non-replica {} has {}", spec.name, stream_dir.display());
        }
    }
    eprintln!("R3 on 5: placement {placement:?}, leader {leader}, {:.1} s", started.elapsed().as_secs_f64());
}
