//! `--repair` against real processes: a follower of a 3-node cluster whose
//! log segment gets a flipped byte in its middle fail-stops without the
//! flag; restarted with it, it wipes its log, catches up from the leader
//! while publishing goes on, ends with every acknowledged message, and votes
//! again (with the leader killed, it and the third node elect a new one).

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{Cluster, assert_all_nodes_hold, publish_load, runtime, scenario};
use jetsam_core::proto::{NodeStatus, Role};
use jetsam_node::storage::{CATCH_UP_FILE, RECORD_HEADER_BYTES, scan_segment};
use jetsam_targets::Target;
use jetsam_targets::node::Client;

const WAIT: Duration = Duration::from_secs(20);

async fn status(c: &Cluster, i: usize) -> Result<NodeStatus, String> {
    let client = Client::connect(c.specs[i].client_addr, Duration::from_secs(1)).await.map_err(|e| e.to_string())?;
    client.status(Duration::from_secs(1)).await
}

/// The node's last segment file.
fn segment(c: &Cluster, i: usize) -> PathBuf {
    let dir = c.specs[i].data_dir.join("log");
    let segs = std::fs::read_dir(&dir).expect("log dir").map(|e| e.expect("entry").path());
    segs.max().expect("a segment")
}

/// Flips one byte in the body of the record in the middle of the segment
/// (followed by many good records: corruption, not a torn tail); returns
/// the segment and the record's offset.
fn flip_middle(c: &Cluster, i: usize) -> (PathBuf, u64) {
    let seg = segment(c, i);
    let mut bytes = std::fs::read(&seg).expect("read segment");
    let (records, _) = scan_segment(&bytes);
    assert!(records.len() > 100, "the follower holds the load ({} records)", records.len());
    let offset = records[records.len() / 2].0;
    bytes[offset as usize + RECORD_HEADER_BYTES + 6] ^= 0x40;
    std::fs::write(&seg, &bytes).expect("write segment");
    (seg, offset)
}

#[test]
fn a_bit_flipped_follower_repairs_catches_up_and_votes_again() {
    let mut c = Cluster::start(scenario(3, 3, None, "always", None));
    let rt = runtime();
    let (mut acked, fi) = rt.block_on(async {
        c.target.wait_ready(&c.specs, WAIT).await.expect("cluster ready");
        c.target.create_stream(&c.scenario, &c.specs, WAIT).await.expect("stream created");
        let (acked, _) = publish_load(&c, 4, 400, 0).await;
        assert_eq!(acked.len(), 400, "a healthy cluster acks every publish");
        c.target.wait_converged(&c.scenario, &c.specs, WAIT).await.expect("converged");
        let leader = c.target.leader(&c.specs).await.expect("a leader");
        (acked, (c.index_of(&leader) + 1) % 3)
    });
    c.kill(fi);
    let (seg, offset) = flip_middle(&c, fi);

    // Without --repair: fail-stop, as before.
    c.start_node(fi);
    assert_eq!(c.wait_exit(fi, WAIT).code(), Some(jetsam_core::exit::ENVIRONMENT), "log:\n{}", c.log(fi));

    // With --repair (every later start of any node carries the flag).
    c.scenario.target.repair = true;
    let started = Instant::now();
    c.start_node(fi);
    rt.block_on(async {
        let (more, other) = publish_load(&c, 4, 400, 1000).await;
        // The repaired node's higher term deposes the leader once: publishes
        // in flight then are indefinite, and are not counted as acked.
        assert!(more.len() >= 300, "the cluster keeps acking: {} acked, {other} not", more.len());
        acked.extend(more);
        let deadline = Instant::now() + WAIT;
        loop {
            if status(&c, fi).await.is_ok_and(|s| s.role != Role::Learner) {
                break;
            }
            assert!(Instant::now() < deadline, "{} did not catch up within {WAIT:?}", c.specs[fi].name);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        eprintln!("repaired node caught up {} ms after its restart", started.elapsed().as_millis());
        c.target.wait_converged(&c.scenario, &c.specs, WAIT).await.expect("converged after the repair");
        assert_all_nodes_hold(&c, &acked).await;
    });
    let log = c.log(fi);
    assert!(log.contains(&format!("corrupt data in {} at offset {offset}", seg.display())), "names the damage: {log}");
    assert!(log.contains("--repair: removed 1 segment file(s)"), "{log}");
    assert!(log.contains("caught up after --repair"), "{log}");
    assert!(!c.specs[fi].data_dir.join(CATCH_UP_FILE).exists(), "the catch-up marker is gone");

    // It votes again: kill a node other than it (the leader, unless the
    // repaired node already won an election, which proves it campaigns),
    // and it and the remaining node must elect a leader and ack.
    rt.block_on(async {
        let leader = c.target.leader(&c.specs).await.expect("a leader");
        let ki = if c.index_of(&leader) == fi { (fi + 1) % 3 } else { c.index_of(&leader) };
        c.kill(ki);
        let rest: Vec<_> = c.specs.iter().enumerate().filter(|(i, _)| *i != ki).map(|(_, s)| s.clone()).collect();
        let deadline = Instant::now() + WAIT;
        while c.target.leader(&rest).await.is_none() {
            assert!(Instant::now() < deadline, "the repaired node and the third elect no leader within {WAIT:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (after, other) = publish_load(&c, 4, 200, 2000).await;
        assert!(
            after.len() >= 150,
            "two of three ack, one of them the repaired node: {} acked, {other} not",
            after.len()
        );
        acked.extend(after);
        c.start_node(ki);
        c.target.wait_converged(&c.scenario, &c.specs, WAIT).await.expect("converged");
        assert_all_nodes_hold(&c, &acked).await;
    });
    // Regression: a new leadership is noticed (and its check-quorum grace
    // period starts) although noraft makes the node leader while it handles
    // the deciding vote, before the batch's actions.
    let new_leader = c.target.leader(&c.specs);
    let new_leader = rt.block_on(new_leader).expect("a leader");
    assert!(c.log(c.index_of(&new_leader)).contains("became leader"), "{}", c.log(c.index_of(&new_leader)));
}
