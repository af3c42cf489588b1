//! The reference node under the tracer: publishes with strong consistency
//! and `--sync always`, a power loss (SIGKILL of the group + discard all),
//! a restart, and every acknowledged message is still there. As a control,
//! with `--sync 2m` the same power loss loses acknowledged messages: the
//! tracer really discards what the node never synced.

mod power_common;

use jetsam_core::proto::{RequestBody, ResponseBody, StreamConfig};
use jetsam_faults::power::{self, DiscardModel};
use jetsam_targets::node::{Client, find_node_binary};
use power_common::{Traced, dirs};
use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const STREAM: &str = "jetsam";
const PUBLISHERS: usize = 4;
const PUBLISHES_EACH: usize = 100;
const READY_WAIT: Duration = Duration::from_secs(30);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

fn start_node(data: &Path, state: &Path, client: SocketAddr, peer: SocketAddr, sync: &str) -> Traced {
    let node = find_node_binary(None).expect("jetsam-node: run `cargo build --workspace --bins`");
    let args: Vec<String> = [
        "--name",
        "n1",
        "--data-dir",
        &data.display().to_string(),
        "--client-addr",
        &client.to_string(),
        "--peer-addr",
        &peer.to_string(),
        "--sync",
        sync,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    Traced::start(data, state, &node, &args)
}

/// Connects once the node is the leader (bounded wait).
async fn ready(addr: SocketAddr) -> Client {
    let deadline = Instant::now() + READY_WAIT;
    let mut last = String::new();
    while Instant::now() < deadline {
        match Client::connect(addr, Duration::from_secs(1)).await {
            Ok(c) => match c.status(Duration::from_secs(1)).await {
                Ok(s) if s.leader.as_deref() == Some("n1") => return c,
                Ok(s) => last = format!("{s:?}"),
                Err(e) => last = e,
            },
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the node at {addr} did not become leader within {READY_WAIT:?}: {last}");
}

/// Creates the stream and publishes from several tasks; returns acked ids.
async fn publish(client: Client) -> BTreeSet<String> {
    let config = StreamConfig { name: STREAM.to_string(), replicas: 1, consistency: None };
    let created = client.request(RequestBody::CreateStream { config }, REQUEST_TIMEOUT).await;
    assert!(matches!(created, Ok(ResponseBody::Created { .. })), "create_stream: {created:?}");
    let client = Arc::new(client);
    let mut tasks = tokio::task::JoinSet::new();
    for p in 0..PUBLISHERS {
        let client = client.clone();
        tasks.spawn(async move {
            let mut acked = Vec::new();
            for i in 0..PUBLISHES_EACH {
                let id = format!("{p}-{i}");
                let body =
                    RequestBody::Publish { stream: STREAM.to_string(), id: id.clone(), payload: vec![b'x'; 128] };
                if let Ok(ResponseBody::PubAck { .. }) = client.request(body, REQUEST_TIMEOUT).await {
                    acked.push(id);
                }
            }
            acked
        });
    }
    let mut acked = BTreeSet::new();
    while let Some(r) = tasks.join_next().await {
        acked.extend(r.expect("publisher task"));
    }
    acked
}

/// Power-loses a traced node after acked publishes; returns (acked, recovered).
async fn power_loss_round(sync: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let (_tmp, data, state) = dirs();
    let (client_addr, peer_addr) = (free_addr(), free_addr());
    let mut node = start_node(&data, &state, client_addr, peer_addr, sync);
    let acked = publish(ready(client_addr).await).await;
    node.kill();
    let report = power::discard(&data, &state, &DiscardModel::All, 7).expect("discard");
    eprintln!("sync {sync}: {} acked, discarded {} bytes", acked.len(), report.bytes_discarded);
    let _node = start_node(&data, &state, client_addr, peer_addr, sync);
    let client = ready(client_addr).await;
    let recovered = match client.read_all(STREAM, true).await {
        Ok(messages) => messages.into_iter().map(|m| m.id).collect(),
        // The stream itself was never synced: nothing came back.
        Err(e) if e.contains("no_stream") || e.contains("NoStream") => BTreeSet::new(),
        Err(e) => panic!("read back after the power loss: {e}"),
    };
    (acked, recovered)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strong_always_keeps_every_acked_message_through_power_loss() {
    let (acked, recovered) = power_loss_round("always").await;
    assert_eq!(acked.len(), PUBLISHERS * PUBLISHES_EACH, "every publish to a healthy node is acked");
    let lost: Vec<&String> = acked.difference(&recovered).collect();
    assert!(lost.is_empty(), "{} acked messages lost: {:?}", lost.len(), &lost[..lost.len().min(10)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lazy_sync_loses_acked_messages_on_power_loss() {
    let (acked, recovered) = power_loss_round("2m").await;
    assert!(!acked.is_empty());
    let lost = acked.difference(&recovered).count();
    assert!(lost > 0, "with a 2m sync interval a power loss must lose acked messages; {} acked", acked.len());
}

/// Waits (bounded) for the tracer to report the fsync trigger's firing.
async fn fired(state: &Path) -> power::trigger::FsyncFired {
    let deadline = Instant::now() + READY_WAIT;
    loop {
        if let Some(f) = power::trigger::fsync_fired(state) {
            return f;
        }
        assert!(Instant::now() < deadline, "the fsync trigger did not fire within {READY_WAIT:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The reference node under load, a power loss on its 40th data-file
/// fsync: the synced file comes back exactly as long as that fsync left it
/// (the node's later syncs were held, its later writes discarded).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_power_loss_on_the_40th_fsync_keeps_exactly_what_it_synced() {
    use power::trigger::{FsyncTrigger, arm_fsync_trigger};
    let (_tmp, data, state) = dirs();
    arm_fsync_trigger(&state, FsyncTrigger { count: 40, hold: true }).unwrap();
    let (client_addr, peer_addr) = (free_addr(), free_addr());
    let mut node = start_node(&data, &state, client_addr, peer_addr, "always");
    let load = tokio::spawn(publish(ready(client_addr).await));
    let f = fired(&state).await;
    assert_eq!(f.count, 40);
    // Let the node run on against the hold: writes go on, syncs wait.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let grown = std::fs::metadata(data.join(&f.file)).unwrap().len();
    node.kill();
    load.abort();
    let report = power::discard(&data, &state, &DiscardModel::All, 7).expect("discard");
    let after = std::fs::metadata(data.join(&f.file)).unwrap().len();
    eprintln!(
        "fsync 40 synced {} at {} bytes; grew to {grown}; {} bytes discarded",
        f.file, f.len, report.bytes_discarded
    );
    assert_eq!(after, f.len, "{} is exactly as the 40th fsync left it", f.file);
}
