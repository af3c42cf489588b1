//! The disk faults against a real data dir: a one-node `jetsam-node` stream
//! writes its files, the node is killed, and the node target's default globs
//! must find files to flip and truncate, with the recorded bytes applied.
//! Needs the `jetsam-node` binary (`cargo build --workspace --bins`, as
//! scripts/test.sh does first).

use jetsam_core::scenario::Scenario;
use jetsam_faults::disk::{Corruption, bitflip, truncate};
use jetsam_targets::node::{NodePublisher, NodeTarget, stream_name};
use jetsam_targets::{NodeSpec, PublishOutcome, Publisher, Target};
use rand::SeedableRng;
use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Bound on start-up and on each publish.
const WAIT_MS: u64 = 20_000;

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind a free loopback port")
}

/// Kills and reaps the node on drop, even when the test fails.
struct Node(std::process::Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_node_globs_find_files_to_corrupt_after_a_kill() {
    let target = NodeTarget::locate(None).expect("jetsam-node binary (run `cargo build --workspace --bins`)");
    let scenario = Scenario::from_toml_str(
        "disk_node_files",
        "name = \"disk-node-files\"\nnodes = 1\nduration = \"10s\"\n[stream]\nreplicas = 1\nsync = \"always\"\n",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spec = NodeSpec {
        name: "n1".into(),
        data_dir: dir.path().join("n1/data"),
        conf_dir: dir.path().join("n1/conf"),
        client_addr: free_addr(),
        peer_listen_addr: free_addr(),
        peers: BTreeMap::new(),
        monitor_addr: free_addr(),
        dead_addr: free_addr(),
    };
    std::fs::create_dir_all(&spec.data_dir).unwrap();
    std::fs::create_dir_all(&spec.conf_dir).unwrap();
    let cmd = target.command(&scenario, &spec).unwrap();
    let log = std::fs::File::create(dir.path().join("n1.log")).unwrap();
    let err_log = log.try_clone().unwrap();
    let mut node = Node(
        Command::new(&cmd.program)
            .args(&cmd.args)
            .envs(&cmd.env)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err_log)
            .spawn()
            .unwrap(),
    );
    let specs = vec![spec.clone()];
    let wait = Duration::from_millis(WAIT_MS);
    target.wait_ready(&specs, wait).await.unwrap();
    target.create_stream(&scenario, &specs, wait).await.unwrap();
    let publisher = NodePublisher::new(vec![("n1".into(), spec.client_addr)], 0, stream_name(&scenario));
    for i in 0..50 {
        let outcome = tokio::time::timeout(wait, publisher.publish(format!("0-{i}"), vec![7u8; 64])).await.unwrap();
        assert!(matches!(outcome, PublishOutcome::Ok { .. }), "publish 0-{i}: {outcome:?}");
    }
    node.0.kill().unwrap();
    node.0.wait().unwrap();

    let globs = target.default_corrupt_globs();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let flips = bitflip(&spec.data_dir, &globs, 2, &mut rng).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(flips.len(), 2);
    for f in &flips {
        let Corruption::Bitflip { file, offset, after, .. } = f else { panic!("{f:?}") };
        let bytes = std::fs::read(spec.data_dir.join(file)).unwrap();
        assert_eq!(bytes[*offset as usize], *after, "{f:?} not applied");
    }
    let cuts = truncate(&spec.data_dir, &globs, &mut rng).unwrap_or_else(|e| panic!("{e}"));
    let Corruption::Truncate { file, new_len, .. } = &cuts[0] else { panic!("{cuts:?}") };
    assert_eq!(std::fs::metadata(spec.data_dir.join(file)).unwrap().len(), *new_len);
}
