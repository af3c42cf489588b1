//! The seeded fault schedule: from a resolved scenario and its run seed,
//! every injection of every fault line, with its planned time, its heal
//! time and the nodes it hits. One run seed gives each component its own
//! derived seed ([`derive_seed`]: `schedule`, `workload`, `fault/<i>`), so
//! the same seed always plans the same kinds, targets and times, and adding
//! a fault line does not reshuffle the others.
//!
//! Planning tracks which node is busy with an earlier fault until its heal
//! and picks selector targets (`one`, `minority`, `majority`, `all`) among
//! the free nodes only, so faults never overlap on a node; an injection that
//! cannot find enough free nodes is planned as skipped (with the reason).
//! `leader` cannot be known in advance: the plan carries a seeded fallback
//! node (used when no leader is known or the leader is busy) and the
//! nemesis asks the target at injection time.
//!
//! This module plans only; the nemesis executes the plan.

use jetsam_core::duration::parse_duration;
use jetsam_core::scenario::{Fault, Scenario, Targets};
use rand::seq::SliceRandom;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::time::Duration;

/// A component's own seed, derived from the run seed and its label
/// (FNV-1a of the label mixed with SplitMix64).
pub fn derive_seed(run_seed: u64, label: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in label.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    jetsam_workloads::splitmix64(run_seed ^ h)
}

/// Whom one injection hits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// These nodes (in node order).
    Nodes(Vec<String>),
    /// The stream leader at injection time, or `fallback` when none is known
    /// or the leader is busy with another fault.
    Leader { fallback: String },
    /// The links between nodes (a partition: its shape picks the sides).
    Network,
}

/// One planned injection and its heal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// Index of the fault line in the scenario.
    pub fault: usize,
    pub kind: String,
    /// Since the load started.
    pub at: Duration,
    /// When it heals (may be after the load phase ends: then the final heal does it).
    pub heal_at: Duration,
    pub selection: Selection,
    /// This injection's own seed (partition sides, discarded pages, corrupted bits).
    pub seed: u64,
}

/// An injection the plan could not place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub fault: usize,
    pub kind: String,
    pub at: Duration,
    pub reason: String,
}

/// The whole plan, injections in time order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schedule {
    pub planned: Vec<Planned>,
    pub skipped: Vec<Skipped>,
}

/// How many nodes a selector word hits in a cluster of `n` (at least 1
/// where the word allows it: `minority` of 1 or 2 nodes is 0 and skips).
pub fn selector_count(word: &str, n: usize) -> usize {
    match word {
        "one" | "leader" => 1,
        "minority" => (n - 1) / 2,
        "majority" => n / 2 + 1,
        "all" => n,
        other => unreachable!("validated selector {other:?}"),
    }
}

/// Whether a fault kind takes the network (links) rather than node processes.
pub fn is_network(kind: &str) -> bool {
    kind == "partition"
}

/// Whether a fault kind corrupts files of the run's fixed disk-fault minority.
pub fn is_disk(kind: &str) -> bool {
    matches!(kind, "bitflip" | "truncate")
}

/// The nodes disk faults hit for the whole run (seeded, `disk` component).
pub fn disk_minority(scenario: &Scenario, run_seed: u64) -> Vec<String> {
    let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(run_seed, "disk"));
    jetsam_faults::disk::pick_fixed_minority(&scenario.node_names(), &mut rng)
}

/// Plans every injection of a validated, resolved scenario.
pub fn plan(scenario: &Scenario, run_seed: u64) -> Schedule {
    let names = scenario.node_names();
    let minority = disk_minority(scenario, run_seed);
    // Partitions do not overlap each other (one cut set at a time).
    let mut network_busy_until = Duration::ZERO;
    // Every (time, fault line) pair, in time order; ties in fault-line order.
    let mut candidates: Vec<(Duration, usize)> = Vec::new();
    for (i, f) in scenario.faults.iter().enumerate() {
        if let Some(every) = f.every {
            assert!(!every.is_zero(), "validated: every > 0");
            let mut t = every;
            while t < scenario.duration {
                candidates.push((t, i));
                t += every;
            }
        }
        for at in &f.at {
            candidates.push((parse_duration(at).expect("validated at"), i));
        }
    }
    candidates.sort();
    let mut rngs: Vec<ChaCha8Rng> = (0..scenario.faults.len())
        .map(|i| ChaCha8Rng::seed_from_u64(derive_seed(run_seed, &format!("fault/{i}"))))
        .collect();
    let mut busy_until: BTreeMap<&str, Duration> = BTreeMap::new();
    let mut schedule = Schedule::default();
    for (at, i) in candidates {
        let f = &scenario.faults[i];
        let heal_after = f.heal_after.expect("resolved: heal_after set");
        let free: Vec<&str> =
            names.iter().map(String::as_str).filter(|n| busy_until.get(n).is_none_or(|&until| until <= at)).collect();
        let rng = &mut rngs[i];
        // Drawn first and always, so this injection's seed does not depend on its targets.
        let seed = rng.next_u64();
        let skip = |reason: String| Skipped { fault: i, kind: f.kind.clone(), at, reason };
        if is_network(&f.kind) {
            if network_busy_until > at {
                schedule.skipped.push(skip("an earlier partition is not healed yet".into()));
                continue;
            }
            network_busy_until = at + heal_after;
            schedule.planned.push(Planned {
                fault: i,
                kind: f.kind.clone(),
                at,
                heal_at: at + heal_after,
                selection: Selection::Network,
                seed,
            });
            continue;
        }
        let selection = match select(f, &names, &free, &minority, rng) {
            Ok(selection) => selection,
            Err(reason) => {
                schedule.skipped.push(skip(reason));
                continue;
            }
        };
        // Borrowed from `names`, which outlives the busy map.
        let chosen: Vec<&str> = match &selection {
            Selection::Nodes(nodes) => names.iter().filter(|n| nodes.contains(n)).map(String::as_str).collect(),
            Selection::Leader { fallback } => names.iter().filter(|n| *n == fallback).map(String::as_str).collect(),
            Selection::Network => unreachable!("network faults are placed above"),
        };
        for n in &chosen {
            busy_until.insert(n, at + heal_after);
        }
        schedule.planned.push(Planned {
            fault: i,
            kind: f.kind.clone(),
            at,
            heal_at: at + heal_after,
            selection,
            seed,
        });
    }
    schedule
}

/// Whom one node-fault injection hits, among the `free` nodes (those under
/// no other fault now): `Err` says why it cannot be placed. Used by the plan
/// and by the nemesis for event-triggered faults, whose time is known only
/// when the event happens.
pub fn select(
    f: &Fault,
    names: &[String],
    free: &[&str],
    minority: &[String],
    rng: &mut ChaCha8Rng,
) -> Result<Selection, String> {
    assert!(!is_network(&f.kind), "partitions take the network, not nodes");
    match &f.targets {
        Targets::Named(_) if is_disk(&f.kind) => {
            let chosen: Vec<String> = minority.iter().filter(|n| free.contains(&n.as_str())).cloned().collect();
            if chosen.is_empty() {
                return Err(format!(
                    "every node of the disk-fault minority ({}) is under another fault",
                    minority.join(", ")
                ));
            }
            Ok(Selection::Nodes(chosen))
        }
        Targets::Named(word) => {
            let count = selector_count(word, names.len());
            if count == 0 {
                return Err(format!("{word} of {} nodes is no node", names.len()));
            }
            if free.len() < count {
                return Err(format!("{word} needs {count} nodes but only {} are free of other faults", free.len()));
            }
            let mut chosen: Vec<&str> = free.choose_multiple(rng, count).copied().collect();
            chosen.sort_by_key(|n| names.iter().position(|m| m == n));
            if word == "leader" {
                Ok(Selection::Leader { fallback: chosen[0].to_string() })
            } else {
                Ok(Selection::Nodes(chosen.iter().map(|n| n.to_string()).collect()))
            }
        }
        Targets::Nodes(list) => {
            let busy: Vec<&str> = list.iter().map(String::as_str).filter(|n| !free.contains(n)).collect();
            if !busy.is_empty() {
                return Err(format!("{} still under an earlier fault", busy.join(", ")));
            }
            Ok(Selection::Nodes(list.clone()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(faults: &str) -> Scenario {
        let text = format!("name = \"t\"\nnodes = 5\nduration = \"20s\"\n[stream]\nreplicas = 5\n{faults}");
        let mut s = Scenario::from_toml_str("t.toml", &text).unwrap();
        for f in &mut s.faults {
            f.heal_after.get_or_insert(Duration::from_secs(2));
        }
        s
    }

    #[test]
    fn same_seed_same_plan_and_different_seeds_differ() {
        let s = scenario(
            "[[faults]]\nkind = \"kill\"\ntargets = \"minority\"\nevery = \"3s\"\n\
             [[faults]]\nkind = \"pause\"\ntargets = \"one\"\nevery = \"2s\"\nheal_after = \"1s\"\n",
        );
        let a = plan(&s, 42);
        assert_eq!(a, plan(&s, 42));
        let plans: Vec<Schedule> = (0..8).map(|seed| plan(&s, seed)).collect();
        assert!(plans.iter().any(|p| p != &a), "eight seeds all planned the same targets");
        // Times are fixed by the scenario, not by the seed.
        assert!(a.skipped.is_empty(), "five nodes leave room for both: {:?}", a.skipped);
        let kill_times: Vec<Duration> = a.planned.iter().filter(|p| p.kind == "kill").map(|p| p.at).collect();
        assert_eq!(kill_times, (1..=6).map(|k| Duration::from_secs(3 * k)).collect::<Vec<_>>());
    }

    #[test]
    fn faults_never_overlap_on_a_node() {
        let s = scenario(
            "[[faults]]\nkind = \"kill\"\ntargets = \"majority\"\nevery = \"1s\"\nheal_after = \"1500ms\"\n\
             [[faults]]\nkind = \"pause\"\ntargets = \"minority\"\nevery = \"700ms\"\nheal_after = \"1s\"\n",
        );
        for seed in 0..20 {
            let p = plan(&s, seed);
            assert!(!p.skipped.is_empty(), "a majority every 1s for 1.5s must sometimes find no room");
            for (i, a) in p.planned.iter().enumerate() {
                let Selection::Nodes(an) = &a.selection else { panic!("no leader here") };
                let want = if a.kind == "kill" { 3 } else { 2 };
                assert_eq!(an.len(), want);
                for b in &p.planned[i + 1..] {
                    let Selection::Nodes(bn) = &b.selection else { panic!() };
                    if b.at < a.heal_at {
                        assert!(an.iter().all(|n| !bn.contains(n)), "seed {seed}: {a:?} overlaps {b:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn fixed_times_named_nodes_and_leader_fallbacks() {
        let s = scenario(
            "[[faults]]\nkind = \"kill\"\ntargets = [\"n2\", \"n4\"]\nat = [\"5s\", \"1s\"]\n\
             [[faults]]\nkind = \"pause\"\ntargets = \"leader\"\nat = [\"1500ms\"]\n\
             [[faults]]\nkind = \"kill\"\ntargets = \"n2\"\nat = [\"2s\"]\n",
        );
        let s = {
            let mut s = s;
            // A single name is written as a list; the selector "n2" is not a word.
            s.faults[2].targets = Targets::Nodes(vec!["n2".into()]);
            s
        };
        let p = plan(&s, 1);
        let times: Vec<(Duration, usize)> = p.planned.iter().map(|x| (x.at, x.fault)).collect();
        assert_eq!(
            times,
            vec![(Duration::from_millis(1000), 0), (Duration::from_millis(1500), 1), (Duration::from_secs(5), 0)]
        );
        assert_eq!(p.planned[0].selection, Selection::Nodes(vec!["n2".into(), "n4".into()]));
        let Selection::Leader { fallback } = &p.planned[1].selection else { panic!("leader selection") };
        assert!(!["n2", "n4"].contains(&fallback.as_str()), "fallback {fallback} is busy");
        assert_eq!(p.skipped.len(), 1);
        assert_eq!(p.skipped[0].at, Duration::from_secs(2));
        assert!(p.skipped[0].reason.contains("n2"), "{:?}", p.skipped[0]);
    }

    #[test]
    fn partitions_take_the_network_and_disk_faults_the_fixed_minority() {
        let s = scenario(
            "[[faults]]\nkind = \"partition\"\nevery = \"2s\"\nheal_after = \"3s\"\n\
             [[faults]]\nkind = \"bitflip\"\nevery = \"3s\"\nheal_after = \"1s\"\n\
             [[faults]]\nkind = \"kill\"\ntargets = \"all\"\nat = [\"4500ms\"]\n",
        );
        let p = plan(&s, 9);
        let minority = disk_minority(&s, 9);
        assert_eq!(minority.len(), 2, "two of five");
        // Partitions every 2s lasting 3s: every other one is skipped.
        let parts: Vec<Duration> = p.planned.iter().filter(|x| x.kind == "partition").map(|x| x.at).collect();
        assert_eq!(parts, vec![2, 6, 10, 14, 18].into_iter().map(Duration::from_secs).collect::<Vec<_>>());
        assert!(p.planned.iter().filter(|x| x.kind == "partition").all(|x| x.selection == Selection::Network));
        for x in p.planned.iter().filter(|x| x.kind == "bitflip") {
            let Selection::Nodes(n) = &x.selection else { panic!("disk faults name nodes") };
            assert_eq!(n, &minority, "at {:?}", x.at);
        }
        // The kill of all nodes at 4.5s does not wait for a partition, but it
        // does for the bitflip at 3s..4s (healed by then): all five are free.
        let kill = p.planned.iter().find(|x| x.kind == "kill").expect("kill planned");
        assert_eq!(kill.selection, Selection::Nodes(s.node_names()));
        // Each injection has its own seed.
        let seeds: std::collections::BTreeSet<u64> = p.planned.iter().map(|x| x.seed).collect();
        assert_eq!(seeds.len(), p.planned.len());
    }

    #[test]
    fn selector_counts() {
        assert_eq!(selector_count("minority", 5), 2);
        assert_eq!(selector_count("minority", 3), 1);
        assert_eq!(selector_count("minority", 1), 0);
        assert_eq!(selector_count("majority", 5), 3);
        assert_eq!(selector_count("majority", 4), 3);
        assert_eq!(selector_count("all", 3), 3);
    }

    #[test]
    fn derived_seeds_differ_per_label() {
        assert_ne!(derive_seed(1, "workload"), derive_seed(1, "fault/0"));
        assert_ne!(derive_seed(1, "fault/0"), derive_seed(2, "fault/0"));
        assert_eq!(derive_seed(7, "fault/3"), derive_seed(7, "fault/3"));
    }
}
