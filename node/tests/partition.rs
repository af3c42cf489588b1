//! Partitions through the controller's own link proxies (jetsam-faults):
//! the leader is cut off from both followers (blackholed, not closed), the
//! majority elects a new leader and keeps acking, the old leader steps down,
//! and after the heal every node converges on a stream holding every
//! acknowledged write.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::{Cluster, runtime, scenario};
use jetsam_faults::net::{Link, LinkProxies};
use jetsam_targets::{PublishOutcome, Target};

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn isolated_leader_is_replaced_and_nothing_acked_is_lost() {
    let mut c = Cluster::prepare(scenario(3, 3, None, "always", None));
    let rt = runtime();
    rt.block_on(async {
        let mut links = Vec::new();
        for from in &c.specs {
            for to in &c.specs {
                if from.name != to.name {
                    links.push(Link { from: from.name.clone(), to: to.name.clone(), upstream: to.peer_listen_addr });
                }
            }
        }
        let proxies = LinkProxies::start(links).await.expect("proxies");
        for i in 0..c.specs.len() {
            let from = c.specs[i].name.clone();
            for (to, addr) in c.specs[i].peers.iter_mut() {
                *addr = proxies.listen_addr(&from, to).expect("link proxy");
            }
        }
        for i in 0..c.specs.len() {
            c.start_node(i);
        }
        c.target.wait_ready(&c.specs, WAIT).await.expect("ready");
        c.target.create_stream(&c.scenario, &c.specs, WAIT).await.expect("stream");
        let publisher = c.target.publisher(&c.scenario, &c.specs, 0).await.expect("publisher");
        let mut acked: BTreeMap<String, u64> = BTreeMap::new();
        let mut k = 0;
        let mut publish = async |acked: &mut BTreeMap<String, u64>| {
            let id = format!("0-{k}");
            k += 1;
            let outcome =
                tokio::time::timeout(Duration::from_secs(12), publisher.publish(id.clone(), vec![3; 32])).await;
            if let Ok(PublishOutcome::Ok { seq, .. }) = outcome {
                acked.insert(id, seq);
                true
            } else {
                false
            }
        };
        for _ in 0..50 {
            assert!(publish(&mut acked).await, "healthy cluster acks");
        }

        let old = c.target.leader(&c.specs).await.expect("leader");
        let cut: BTreeSet<(String, String)> = c
            .specs
            .iter()
            .filter(|s| s.name != old)
            .flat_map(|s| [(old.clone(), s.name.clone()), (s.name.clone(), old.clone())])
            .collect();
        proxies.partition(&cut);

        // Publishing goes on: the first attempts hit the cut-off leader (which
        // answers indefinitely once it steps down), then the new leader acks.
        let deadline = Instant::now() + WAIT;
        let before = acked.len();
        while acked.len() < before + 50 {
            assert!(Instant::now() < deadline, "publishing did not resume during the partition");
            publish(&mut acked).await;
        }
        let new = c.target.leader(&c.specs).await.expect("a leader during the partition");
        assert_ne!(new, old, "the majority side leads");
        let old_status = jetsam_targets::node::Client::connect(c.specs[c.index_of(&old)].client_addr, WAIT)
            .await
            .expect("connect")
            .status(WAIT)
            .await
            .expect("status");
        assert_ne!(old_status.role, jetsam_core::proto::Role::Leader, "the cut-off leader stepped down");

        proxies.heal();
        c.target.wait_converged(&c.scenario, &c.specs, WAIT).await.expect("converged after heal");
        for _ in 0..20 {
            publish(&mut acked).await;
        }
        c.target.wait_converged(&c.scenario, &c.specs, WAIT).await.expect("converged");
        for spec in &c.specs {
            let held = c.target.read_node(&c.scenario, spec).await.expect("read-local");
            let by_seq: BTreeMap<u64, &str> = held.iter().map(|m| (m.seq, m.id.as_str())).collect();
            for (id, seq) in &acked {
                assert_eq!(by_seq.get(seq).copied(), Some(id.as_str()), "{} lost acked {id}", spec.name);
            }
        }
        // The cut-off leader had appended the publish it got during the
        // partition; that entry was never committed and had to go.
        let log = c.log(c.index_of(&old));
        assert!(
            log.contains("conflicts with the leader") || log.contains("overwritten by the leader"),
            "the old leader removed its uncommitted suffix:\n{log}"
        );
        proxies.shutdown().await;
    });
}
