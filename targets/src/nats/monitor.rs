//! The monitoring endpoint (`/jsz`): replica counts, the stream leader,
//! and the convergence wait's memory across polls.

use super::*;

/// `(messages, first_seq, last_seq)` per node name.
pub type ReplicaCounts = BTreeMap<String, (u64, u64, u64)>;

/// Per-replica counts from each node's own `/jsz`: `(messages, first_seq,
/// last_seq)` of [`STREAM_NAME`], keyed by node name. Nodes that do not
/// answer or hold no replica are left out.
pub async fn jsz_counts(nodes: &[NodeSpec]) -> ReplicaCounts {
    counts_from(&jsz_all(nodes).await)
}

/// Each answering node's `/jsz?accounts=true&streams=true`, keyed by node name.
pub(super) async fn jsz_all(nodes: &[NodeSpec]) -> BTreeMap<String, Value> {
    let mut all = BTreeMap::new();
    for node in nodes {
        if let Ok(jsz) = jsz(node, true).await {
            all.insert(node.name.clone(), jsz);
        }
    }
    all
}

/// [`jsz_counts`] from already fetched `/jsz` answers.
pub(super) fn counts_from(jszs: &BTreeMap<String, Value>) -> ReplicaCounts {
    let mut counts = BTreeMap::new();
    for (name, jsz) in jszs {
        if let Some(detail) = stream_detail(jsz) {
            let state = &detail["state"];
            let field = |name: &str| state[name].as_u64().unwrap_or(0);
            counts.insert(name.clone(), (field("messages"), field("first_seq"), field("last_seq")));
        }
    }
    counts
}

/// The leader's `last_seq` minus `node`'s, from [`counts_from`]; `None`
/// when either has no replica there (or does not answer).
pub(super) fn behind_from(counts: &ReplicaCounts, leader: &str, node: &str) -> Option<u64> {
    let last_seq = |name: &str| counts.get(name).map(|&(_, _, last)| last);
    Some(last_seq(leader)?.saturating_sub(last_seq(node)?))
}

pub(super) async fn jsz(node: &NodeSpec, streams: bool) -> Result<Value, String> {
    let path = if streams { "/jsz?accounts=true&streams=true" } else { "/jsz" };
    let (status, body) = http::get(node.monitor_addr, path, HTTP_TIMEOUT).await?;
    if status != 200 {
        return Err(format!("{}: /jsz answered HTTP {status}", node.name));
    }
    serde_json::from_str(&body).map_err(|e| format!("{}: /jsz is not JSON: {e}", node.name))
}

/// The `stream_detail` entry of [`STREAM_NAME`] in the global account.
pub(super) fn stream_detail(jsz: &Value) -> Option<&Value> {
    jsz["account_details"]
        .as_array()?
        .iter()
        .filter_map(|account| account["stream_detail"].as_array())
        .flatten()
        .find(|s| s["name"] == STREAM_NAME)
}

/// The stream leader one node's `/jsz` names, and whether that answer lists
/// `peers` other replicas, all current (only the leader's own answer knows
/// its followers' state). `None` when the node names no leader, or names one
/// while it has no contact with a JetStream meta leader: a node restarted
/// after a power loss reports itself stream leader (with no replicas listed)
/// from its restored state until the meta group has elected, which is not
/// a leader anyone can reach (measured on 2.12.1: each of three restarted
/// nodes named itself for the ~4 s before the meta election).
pub(super) fn stream_leader(jsz: &Value, peers: usize) -> Option<(String, bool)> {
    jsz["meta_cluster"]["leader"].as_str().filter(|l| !l.is_empty())?;
    let detail = stream_detail(jsz)?;
    let cluster = &detail["cluster"];
    let leader = cluster["leader"].as_str().filter(|l| !l.is_empty())?.to_string();
    let current = cluster["replicas"].as_array().is_some_and(|replicas| {
        replicas.len() >= peers && replicas.iter().all(|r| r["current"].as_bool() == Some(true))
    });
    Some((leader, current))
}

/// The stream leader and whether it sees every other replica as current,
/// from the nodes' `/jsz` answers (`node_count` nodes in the cluster, a
/// stream of `replicas`). The
/// answer comes from the node that names itself leader; if no node answers
/// for itself (e.g. the leader is paused or partitioned away), the leader
/// the others name, not current.
pub(super) fn leader_from(
    jszs: &BTreeMap<String, Value>,
    node_count: usize,
    replicas: usize,
) -> Option<(String, bool)> {
    if node_count == 1 {
        // A single node without a cluster block: its stream has no Raft group.
        return jszs.iter().find(|(_, jsz)| stream_detail(jsz).is_some()).map(|(name, _)| (name.clone(), true));
    }
    let mut named = BTreeSet::new();
    for (name, jsz) in jszs {
        match stream_leader(jsz, replicas.saturating_sub(1)) {
            Some((leader, current)) if &leader == name => return Some((leader, current)),
            Some((leader, _)) => {
                named.insert(leader);
            }
            None => {}
        }
    }
    named.into_iter().next().map(|leader| (leader, false))
}

/// What the convergence wait makes of one poll ([`ConvergeWatch::observe`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Converge {
    /// Every replica holds the same counts under a leader that sees them current.
    Done,
    /// Not yet; poll again (until the caller's deadline).
    Wait,
    /// No node has named a stream leader for [`NO_LEADER_GIVE_UP`] and the
    /// counts have stood still for [`NO_LEADER_COUNTS_STABLE`].
    NotElecting,
    /// The leader has seen every replica current, and the (differing)
    /// counts have stood still, both for [`CURRENT_BUT_UNEQUAL_GIVE_UP`].
    NothingToRepair,
}

/// The convergence wait's memory across polls: since when there has been
/// no leader, since when the counts have stood still, since when the leader
/// has seen every replica current. Pure (the caller supplies the clock), so
/// the give-up rules are tested without a cluster.
#[derive(Debug)]
pub(super) struct ConvergeWatch {
    replicas: usize,
    /// When a leader was last named (the wait's start until one is).
    leader_seen_at: Instant,
    /// Whether the last poll named no leader.
    leaderless: bool,
    /// The last counts and since when they have stood still.
    counts: Option<(ReplicaCounts, Instant)>,
    /// Since when the leader has seen every replica current, without a break.
    current_since: Option<Instant>,
}

impl ConvergeWatch {
    pub(super) fn new(replicas: usize, started: Instant) -> ConvergeWatch {
        ConvergeWatch { replicas, leader_seen_at: started, leaderless: false, counts: None, current_since: None }
    }

    pub(super) fn observe(&mut self, now: Instant, counts: ReplicaCounts, leader: Option<(String, bool)>) -> Converge {
        let first = counts.values().next().copied();
        let all_answered = counts.len() == self.replicas;
        let same = all_answered && counts.values().all(|c| Some(*c) == first);
        let current = matches!(leader, Some((_, true)));
        // Equal counts without a leader would send the cluster read into
        // API requests that nobody answers until an election.
        if same && current {
            return Converge::Done;
        }
        self.leaderless = leader.is_none();
        if !self.leaderless {
            self.leader_seen_at = now;
        }
        self.current_since = if current { Some(self.current_since.unwrap_or(now)) } else { None };
        if self.counts.as_ref().is_none_or(|(seen, _)| *seen != counts) {
            self.counts = Some((counts, now));
        }
        let stable_for = self.counts_stable_for(now);
        if self.leaderless && self.no_leader_for(now) >= NO_LEADER_GIVE_UP && stable_for >= NO_LEADER_COUNTS_STABLE {
            return Converge::NotElecting;
        }
        if all_answered
            && self.current_for(now) >= CURRENT_BUT_UNEQUAL_GIVE_UP
            && stable_for >= CURRENT_BUT_UNEQUAL_GIVE_UP
        {
            return Converge::NothingToRepair;
        }
        Converge::Wait
    }

    /// How long no node has named a leader (zero if the last poll named one).
    pub(super) fn no_leader_for(&self, now: Instant) -> Duration {
        if self.leaderless { now - self.leader_seen_at } else { Duration::ZERO }
    }

    pub(super) fn counts_stable_for(&self, now: Instant) -> Duration {
        self.counts.as_ref().map_or(Duration::ZERO, |(_, since)| now - *since)
    }

    pub(super) fn current_for(&self, now: Instant) -> Duration {
        self.current_since.map_or(Duration::ZERO, |since| now - since)
    }
}
