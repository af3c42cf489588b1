//! Which nodes hold the stream (`Target::replica_set` for NATS): an R3
//! stream lives on 3 of the cluster's servers, chosen by the meta leader,
//! and only those are read back and judged (docs/nats.md, "Placement").
//!
//! The answer comes from the servers' own `/jsz?accounts=true&streams=true`:
//! a server that hosts a replica lists the stream with its Raft group's
//! `cluster.leader` and `cluster.replicas` (every other peer, by server name,
//! whether or not it is up); a server that hosts none does not list the
//! stream at all (measured on 2.12.1, 5 servers, R3: the two others list no
//! stream). The group's peer list is the meta layer's assignment, so a
//! replica that deleted its copy (#7556's orphan cleanup) is still named by
//! the others and counted, not quietly dropped.
//!
//! Trusted, in order: the view of the node that names itself stream leader;
//! else the one view every answering replica agrees on. Either must name
//! exactly `stream.replicas` nodes of the run, and the answering node must
//! see a JetStream meta leader (a restarted node reports itself leader of a
//! one-node group until the meta group elects; see `stream_leader` in
//! nats.rs). Anything else is "cannot tell", with what was seen.

use super::{jsz_all, stream_detail};
use crate::NodeSpec;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Bound on finding the placement after the convergence wait: one /jsz
/// round normally answers; a stream leader elected just now may take a
/// few polls to list its peers.
pub const PLACEMENT_TIMEOUT: Duration = Duration::from_secs(10);
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// One replica's view of the stream's group: who it names leader, and the
/// group's members (itself and the replicas it lists).
#[derive(Debug, Clone, PartialEq, Eq)]
struct View {
    leader: Option<String>,
    group: BTreeSet<String>,
}

/// The views of the nodes that host the stream and see a meta leader.
fn views(jszs: &BTreeMap<String, Value>) -> BTreeMap<String, View> {
    let mut out = BTreeMap::new();
    for (name, jsz) in jszs {
        if jsz["meta_cluster"]["leader"].as_str().is_none_or(str::is_empty) {
            continue;
        }
        let Some(detail) = stream_detail(jsz) else { continue };
        let cluster = &detail["cluster"];
        let mut group: BTreeSet<String> = cluster["replicas"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["name"].as_str().map(str::to_string))
            .collect();
        group.insert(name.clone());
        let leader = cluster["leader"].as_str().filter(|l| !l.is_empty()).map(str::to_string);
        out.insert(name.clone(), View { leader, group });
    }
    out
}

/// The stream's replicas from the nodes' `/jsz` answers, in name order, or
/// why they cannot be told. `replicas` is the stream's replica count and
/// `nodes` the run's node names.
pub fn placement_from(
    jszs: &BTreeMap<String, Value>,
    replicas: usize,
    nodes: &[String],
) -> Result<Vec<String>, String> {
    let views = views(jszs);
    let fits = |group: &BTreeSet<String>| group.len() == replicas && group.iter().all(|n| nodes.contains(n));
    let own = views.iter().find(|(name, v)| v.leader.as_deref() == Some(name.as_str()));
    if let Some((_, v)) = own
        && fits(&v.group)
    {
        return Ok(v.group.iter().cloned().collect());
    }
    let mut groups: BTreeSet<&BTreeSet<String>> = views.values().map(|v| &v.group).collect();
    if groups.len() == 1 {
        let group = groups.pop_first().expect("one group");
        if fits(group) {
            return Ok(group.iter().cloned().collect());
        }
    }
    let seen: Vec<String> = views
        .iter()
        .map(|(name, v)| {
            let group: Vec<&str> = v.group.iter().map(String::as_str).collect();
            format!("{name} names leader {} and group {}", v.leader.as_deref().unwrap_or("none"), group.join(","))
        })
        .collect();
    Err(if seen.is_empty() {
        format!(
            "no node that sees a JetStream meta leader lists stream {} ({} of {} nodes answered /jsz)",
            super::STREAM_NAME,
            jszs.len(),
            nodes.len()
        )
    } else {
        format!(
            "neither a stream leader nor the agreeing replicas name {replicas} nodes of this run: {}",
            seen.join("; ")
        )
    })
}

/// Polls the nodes' `/jsz` until [`placement_from`] answers, bounded by `timeout`.
pub async fn replica_set(nodes: &[NodeSpec], replicas: usize, timeout: Duration) -> Result<Vec<String>, String> {
    let names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    let deadline = Instant::now() + timeout;
    loop {
        let why = match placement_from(&jsz_all(nodes).await, replicas, &names) {
            Ok(group) => return Ok(group),
            Err(why) => why,
        };
        if Instant::now() >= deadline {
            return Err(format!(
                "failed to tell which nodes hold stream {} within {timeout:?}: {why}; see the nodes' logs",
                super::STREAM_NAME
            ));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One node's `/jsz` as 2.12.1 writes it for a replica of the stream
    /// (the fields read here; measured on 5 servers with an R3 stream).
    fn replica(meta: Option<&str>, leader: Option<&str>, others: &[&str]) -> Value {
        serde_json::json!({
            "meta_cluster": {"name": "jetsam", "leader": meta},
            "account_details": [{"name": "$G", "stream_detail": [{
                "name": super::super::STREAM_NAME,
                "cluster": {
                    "name": "jetsam",
                    "raft_group": "S-R3F-SLE4N2kP",
                    "leader": leader,
                    "replicas": others.iter().map(|n| serde_json::json!({"name": n, "current": true})).collect::<Vec<_>>(),
                },
                "state": {"messages": 0, "first_seq": 0, "last_seq": 0},
            }]}],
        })
    }

    /// A node hosting no replica: it lists no stream.
    fn bystander() -> Value {
        serde_json::json!({"meta_cluster": {"name": "jetsam", "leader": "n1"}, "account_details": [{"name": "$G", "stream_detail": []}]})
    }

    fn nodes() -> Vec<String> {
        (1..=5).map(|i| format!("n{i}")).collect()
    }

    fn answers(list: Vec<(&str, Value)>) -> BTreeMap<String, Value> {
        list.into_iter().map(|(n, v)| (n.to_string(), v)).collect()
    }

    #[test]
    fn the_leader_names_the_group_and_bystanders_list_nothing() {
        let healthy = answers(vec![
            ("n1", replica(Some("n1"), Some("n2"), &["n2", "n5"])),
            ("n2", replica(Some("n1"), Some("n2"), &["n1", "n5"])),
            ("n3", bystander()),
            ("n4", bystander()),
            ("n5", replica(Some("n1"), Some("n2"), &["n1", "n2"])),
        ]);
        assert_eq!(placement_from(&healthy, 3, &nodes()), Ok(vec!["n1".into(), "n2".into(), "n5".into()]));
        // Without the leader's answer, the agreeing replicas tell.
        let mut paused = healthy.clone();
        paused.remove("n2");
        assert_eq!(placement_from(&paused, 3, &nodes()), Ok(vec!["n1".into(), "n2".into(), "n5".into()]));
        // A replica that deleted its copy lists nothing, yet the others name it.
        let mut deleted = healthy.clone();
        deleted.insert("n5".into(), bystander());
        assert_eq!(placement_from(&deleted, 3, &nodes()), Ok(vec!["n1".into(), "n2".into(), "n5".into()]));
    }

    #[test]
    fn stale_or_disagreeing_views_cannot_tell() {
        // Restarted before the meta election: each names itself leader of a one-node group.
        let stale = answers(vec![
            ("n1", replica(None, Some("n1"), &[])),
            ("n2", replica(None, Some("n2"), &[])),
            ("n5", replica(None, Some("n5"), &[])),
        ]);
        let why = placement_from(&stale, 3, &nodes()).unwrap_err();
        assert!(why.starts_with("no node that sees a JetStream meta leader lists stream jetsam (3 of 5"), "{why}");
        let split = answers(vec![
            ("n1", replica(Some("n1"), None, &["n2", "n5"])),
            ("n3", replica(Some("n1"), None, &["n2", "n4"])),
        ]);
        let why = placement_from(&split, 3, &nodes()).unwrap_err();
        assert!(
            why.contains("n1 names leader none and group n1,n2,n5; n3 names leader none and group n2,n3,n4"),
            "{why}"
        );
        // A leader whose group has the wrong size or a stranger is not trusted.
        let short = answers(vec![("n2", replica(Some("n1"), Some("n2"), &["n1"]))]);
        assert!(placement_from(&short, 3, &nodes()).is_err());
        let stranger = answers(vec![("n2", replica(Some("n1"), Some("n2"), &["n1", "n9"]))]);
        assert!(placement_from(&stranger, 3, &nodes()).is_err());
    }
}
