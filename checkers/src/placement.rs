//! Which nodes the checker judges as the stream's replicas.
//!
//! A target that places a stream on some of the nodes (NATS puts an R3
//! stream on 3 of 5 servers) reports the final placement, and `jetsam run`
//! writes it to `recovered/replicas.json` ([`Placement`]). Then:
//!
//! - **known**: only the listed nodes are judged. [`crate::load`] reads back
//!   only their files (a file of another node is an error), so per-node
//!   losses, divergence and the "majority readable" rule count replicas
//!   only: a non-replica holding nothing is neither lost nor divergent, and
//!   with 2 of 3 replicas unreadable the verdict is `unknown` even when the
//!   two non-replicas answered.
//! - **unknown** (`"replicas": null` and a reason): every node is judged as
//!   before, but the verdict is `unknown` unless a finding that holds
//!   whichever nodes are replicas fails it ([`weigh_unknown`]).
//! - **no file** (runs before the placement existed, hand-written folders,
//!   targets that keep a copy on every node): every node of the run is
//!   judged, and with `stream.replicas` below the node count nodes holding
//!   nothing are left out of the divergence check (the old heuristic).
//!
//! Pure: the file is read by [`crate::load`].

use jetsam_core::recovered::{Placement, REPLICAS_FILE};
use jetsam_core::report::{Mode, Report, Verdict};

/// The placement a check runs under.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Judged {
    /// No `recovered/replicas.json`: every node of the run.
    #[default]
    AllNodes,
    /// Only these nodes (name order) are replicas.
    Replicas(Vec<String>),
    /// The target could not tell, and why.
    Unknown(String),
}

impl Judged {
    /// From a validated placement file.
    pub fn from_placement(p: Placement) -> Judged {
        match (p.replicas, p.reason) {
            (Some(mut replicas), _) => {
                replicas.sort();
                Judged::Replicas(replicas)
            }
            (None, reason) => Judged::Unknown(reason.unwrap_or_default()),
        }
    }

    /// Whether `node` is judged.
    pub fn judges(&self, node: &str) -> bool {
        match self {
            Judged::Replicas(r) => r.iter().any(|n| n == node),
            Judged::AllNodes | Judged::Unknown(_) => true,
        }
    }

    /// The replica names for report.json's `replicas` key.
    pub fn replicas(&self) -> Option<Vec<String>> {
        match self {
            Judged::Replicas(r) => Some(r.clone()),
            Judged::AllNodes | Judged::Unknown(_) => None,
        }
    }

    /// The note for the report's reasons, if any.
    pub fn note(&self, nodes: usize) -> Option<String> {
        match self {
            Judged::Replicas(r) if r.len() < nodes => Some(format!(
                "stream placed on {} of {nodes} node(s) ({REPLICAS_FILE}): only they are judged",
                r.join(",")
            )),
            // weigh_unknown's reasons already say it.
            Judged::Replicas(_) | Judged::AllNodes | Judged::Unknown(_) => None,
        }
    }
}

/// The verdict when the placement is unknown: a failure stands only on
/// findings that hold whichever nodes are replicas (an id held that was
/// never attempted, a failed write held, an id held twice, acknowledged
/// writes missing from the cluster view, or, in strong mode with every node
/// readable, acknowledged writes held by no node at all); anything else is
/// `unknown`, since divergence and per-node losses depend on which nodes
/// should hold the stream.
pub fn weigh_unknown(report: &Report, all_readable: bool, why: &str) -> (Verdict, Vec<String>) {
    let mut reasons = Vec::new();
    if report.unexpected.count > 0 {
        reasons.push(format!("{} id(s) held that were never attempted (unexpected)", report.unexpected.count));
    }
    if report.resurrected.count > 0 {
        reasons.push(format!("{} write(s) that failed are held (resurrected)", report.resurrected.count));
    }
    if report.duplicated.count > 0 {
        reasons.push(format!("{} id(s) held at two or more sequences (duplicated)", report.duplicated.count));
    }
    if report.mode == Mode::Strong {
        if let Some(n) = report.lost_cluster_view.filter(|n| *n > 0) {
            reasons.push(format!("{n} acknowledged write(s) missing from the cluster view (recovered/cluster.jsonl)"));
        }
        if all_readable && report.lost > 0 {
            reasons.push(format!("{} acknowledged write(s) held by no node of the run", report.lost));
        }
    }
    if !reasons.is_empty() {
        reasons
            .push(format!("the stream's placement is unknown ({why}): divergence and per-node losses are not weighed"));
        return (Verdict::Fail, reasons);
    }
    (
        Verdict::Unknown,
        vec![format!(
            "the stream's placement is unknown ({why}): the checker cannot tell which nodes should hold it, \
             so divergence and per-node losses are not weighed"
        )],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{History, Recovered, RecoveredBuilder};
    use crate::{CheckConfig, NodeInput, Overrides, RunInput, check};
    use std::collections::BTreeMap;

    use crate::divergence::tests::history;

    fn holding(h: &History, counters: &[u64]) -> NodeInput {
        let mut b = RecoveredBuilder::new(h);
        for c in counters {
            b.push(c + 1, &format!("0-{c}")).unwrap();
        }
        NodeInput::Readable(b.finish())
    }

    fn unreadable() -> NodeInput {
        NodeInput::Unreadable { reason: "read-back timed out".into() }
    }

    /// A 5-node R3 run whose nodes n1..n5 hold `nodes` (in order), judged
    /// under `judged`; the nodes `judged` leaves out are dropped, as
    /// [`crate::load`] does.
    fn run(nodes: Vec<NodeInput>, judged: Judged) -> Report {
        let history = history();
        let names: Vec<String> = (1..=5).map(|i| format!("n{i}")).collect();
        let nodes: BTreeMap<String, NodeInput> =
            names.iter().cloned().zip(nodes).filter(|(name, _)| judged.judges(name)).collect();
        let input = RunInput { history, events: Vec::new(), nodes, cluster: None, judged };
        let scenario = jetsam_core::scenario::Scenario::from_toml_str(
            "s.toml",
            "name = \"s\"\nnodes = 5\nduration = \"1s\"\n[stream]\nreplicas = 3\n",
        )
        .unwrap();
        let config = CheckConfig::resolve(Some(("s.toml", &scenario)), &Overrides::default(), &[]).unwrap();
        check(&input, &config)
    }

    fn replicas(names: &[&str]) -> Judged {
        Judged::Replicas(names.iter().map(|n| n.to_string()).collect())
    }

    fn empty() -> Recovered {
        RecoveredBuilder::new(&history()).finish()
    }

    #[test]
    fn a_non_replica_holding_nothing_is_neither_lost_nor_divergent() {
        let h = history();
        let all = [0, 1, 2, 3];
        let nodes = || {
            vec![
                holding(&h, &all),
                NodeInput::Readable(empty()),
                holding(&h, &all),
                holding(&h, &all),
                NodeInput::Readable(empty()),
            ]
        };
        let r = run(nodes(), replicas(&["n1", "n3", "n4"]));
        assert_eq!((r.verdict, r.lost, r.divergent), (Verdict::Pass, 0, false));
        assert_eq!(r.nodes.keys().collect::<Vec<_>>(), ["n1", "n3", "n4"]);
        // Judged as if every node were a replica, the empty ones would miss
        // every write (the heuristic only keeps them out of divergence).
        let r = run(nodes(), Judged::AllNodes);
        assert_eq!((r.verdict, r.nodes["n2"].lost, r.divergent), (Verdict::Pass, 4, false));
    }

    #[test]
    fn a_replica_missing_an_acknowledged_write_fails() {
        let h = history();
        let all = [0, 1, 2, 3];
        let nodes = vec![
            holding(&h, &all),
            NodeInput::Readable(empty()),
            holding(&h, &[0, 1, 2]),
            holding(&h, &all),
            NodeInput::Readable(empty()),
        ];
        let r = run(nodes, replicas(&["n1", "n3", "n4"]));
        assert_eq!((r.verdict, r.lost, r.nodes["n3"].lost), (Verdict::Fail, 0, 1));
        let pairs: Vec<(&str, &str)> = r.divergence.iter().map(|d| (d.a.as_str(), d.b.as_str())).collect();
        assert_eq!(pairs, [("n1", "n3"), ("n3", "n4")]);
        // A replica that holds nothing at all (its copy deleted) is a
        // replica that lost everything, not a non-replica to leave out.
        let nodes = vec![
            holding(&h, &all),
            holding(&h, &all),
            NodeInput::Readable(empty()),
            holding(&h, &all),
            NodeInput::Readable(empty()),
        ];
        let r = run(nodes, replicas(&["n1", "n3", "n4"]));
        assert_eq!((r.verdict, r.nodes["n3"].lost, r.divergence.len()), (Verdict::Fail, 4, 2));
    }

    #[test]
    fn fewer_than_a_majority_of_replicas_readable_is_unknown() {
        let h = history();
        let all = [0, 1, 2, 3];
        let nodes = || {
            vec![
                holding(&h, &all),
                NodeInput::Readable(empty()),
                unreadable(),
                unreadable(),
                NodeInput::Readable(empty()),
            ]
        };
        let r = run(nodes(), replicas(&["n1", "n3", "n4"]));
        assert_eq!(r.verdict, Verdict::Unknown);
        assert!(r.reasons[0].starts_with("only 1 of 3 node(s) readable"), "{:?}", r.reasons);
        // Counting the non-replicas that answered would make 3 of 5 a
        // majority and pass on one replica's word.
        assert_eq!(run(nodes(), Judged::AllNodes).verdict, Verdict::Pass);
        // Two of three replicas readable is a majority.
        let nodes = vec![
            holding(&h, &all),
            NodeInput::Readable(empty()),
            holding(&h, &all),
            unreadable(),
            NodeInput::Readable(empty()),
        ];
        assert_eq!(run(nodes, replicas(&["n1", "n3", "n4"])).verdict, Verdict::Pass);
    }

    #[test]
    fn an_unknown_placement_is_unknown_unless_a_placement_free_finding_fails() {
        let h = history();
        let all = [0, 1, 2, 3];
        let why = || Judged::Unknown("no node named the peers".into());
        let nodes = vec![
            holding(&h, &all),
            NodeInput::Readable(empty()),
            holding(&h, &all),
            holding(&h, &all),
            NodeInput::Readable(empty()),
        ];
        let r = run(nodes, why());
        assert_eq!((r.verdict, r.replicas.clone()), (Verdict::Unknown, None));
        assert!(
            r.reasons[0].starts_with("the stream's placement is unknown (no node named the peers)"),
            "{:?}",
            r.reasons
        );
        // 0-3 held by no node at all, every node read: lost whichever nodes are replicas.
        let some = [0, 1, 2];
        let nodes = vec![
            holding(&h, &some),
            holding(&h, &some),
            holding(&h, &some),
            holding(&h, &some),
            NodeInput::Readable(empty()),
        ];
        let r = run(nodes, why());
        assert_eq!((r.verdict, r.lost), (Verdict::Fail, 1));
        assert_eq!(r.reasons[0], "1 acknowledged write(s) held by no node of the run");
        // With a node unreadable, the write may be there: unknown.
        let nodes = vec![holding(&h, &some), holding(&h, &some), holding(&h, &some), holding(&h, &some), unreadable()];
        assert_eq!(run(nodes, why()).verdict, Verdict::Unknown);
    }
}
