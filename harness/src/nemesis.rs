//! The nemesis executes the seeded schedule during the load phase: at each
//! planned time it injects a fault (kill: SIGKILL of the node's group;
//! pause: SIGSTOP) on the planned nodes, or on the leader the target names
//! at that moment, and heals it after `heal_after` (restart; SIGCONT).
//! Every injection, heal, skip and surprise (a node that died on its own)
//! is an event in events.jsonl, written as it happens, with the fault line
//! index and the planned time so two runs with one seed can be compared.
//!
//! Heals planned after the load phase ends are left to the final heal
//! ([`crate::cluster::Cluster::heal_all`]). New fault kinds plug in at
//! [`inject`] and [`heal`]; this module does not plan (see `schedule`).

use crate::cluster::{Cluster, ClusterError, Details};
use crate::events::EventLog;
use crate::schedule::{Planned, Schedule, Selection};
use jetsam_core::event::EventKind;
use jetsam_faults::process::{ProcState, ProcessError};
use jetsam_targets::Target;
use std::time::Duration;

/// How long the nemesis asks the target for the leader before using the fallback.
pub const LEADER_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Action {
    // Heals sort before injections at the same time, so a node freed at t can be hit at t.
    Heal(usize),
    Skip(usize),
    Inject(usize),
}

/// What the nemesis did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct NemesisSummary {
    pub injected: u64,
    pub healed: u64,
    pub skipped: u64,
}

fn planned_details(p: &Planned) -> Details {
    vec![
        ("fault", (p.fault as u64).into()),
        ("planned_ns", u64::try_from(p.at.as_nanos()).expect("planned times fit u64").into()),
    ]
}

/// Runs the schedule from `load_start` for `duration`.
pub async fn run(
    schedule: &Schedule,
    cluster: &mut Cluster,
    target: &dyn Target,
    events: &EventLog,
    load_start: tokio::time::Instant,
    duration: Duration,
) -> Result<NemesisSummary, ClusterError> {
    let mut timeline: Vec<(Duration, Action)> = Vec::new();
    for (i, p) in schedule.planned.iter().enumerate() {
        timeline.push((p.at, Action::Inject(i)));
        if p.heal_at < duration {
            timeline.push((p.heal_at, Action::Heal(i)));
        }
    }
    for (i, s) in schedule.skipped.iter().enumerate() {
        timeline.push((s.at, Action::Skip(i)));
    }
    timeline.sort();
    // The nodes each injection actually hit, which its heal restores.
    let mut hit: Vec<Vec<String>> = vec![Vec::new(); schedule.planned.len()];
    let mut summary = NemesisSummary::default();
    for (at, action) in timeline {
        tokio::time::sleep_until(load_start + at).await;
        match action {
            Action::Skip(i) => {
                let s = &schedule.skipped[i];
                events.record(
                    EventKind::Warning,
                    vec![],
                    [
                        ("message", format!("{} skipped: {}", s.kind, s.reason).into()),
                        ("fault", (s.fault as u64).into()),
                        ("planned_ns", u64::try_from(s.at.as_nanos()).expect("fits").into()),
                    ],
                )?;
                summary.skipped += 1;
            }
            Action::Inject(i) => {
                let p = &schedule.planned[i];
                hit[i] = inject(p, cluster, target, events).await?;
                summary.injected += hit[i].len() as u64;
            }
            Action::Heal(i) => {
                let p = &schedule.planned[i];
                summary.healed += heal(p, &hit[i], cluster, events)?;
            }
        }
    }
    Ok(summary)
}

/// Injects one planned fault; returns the nodes it hit.
async fn inject(
    p: &Planned,
    cluster: &mut Cluster,
    target: &dyn Target,
    events: &EventLog,
) -> Result<Vec<String>, ClusterError> {
    let mut details = planned_details(p);
    let nodes = match &p.selection {
        Selection::Nodes(nodes) => nodes.clone(),
        Selection::Leader { fallback } => {
            let leader = tokio::time::timeout(LEADER_TIMEOUT, target.leader(cluster.specs())).await.ok().flatten();
            details.push(("selector", "leader".into()));
            details.push(("leader_known", leader.is_some().into()));
            match leader {
                Some(l) if cluster.state(&l) == ProcState::Running => vec![l],
                _ => vec![fallback.clone()],
            }
        }
    };
    let mut hit = Vec::new();
    for node in nodes {
        if cluster.state(&node) != ProcState::Running {
            let message = format!("{} of {node} skipped: the node is {:?}", p.kind, cluster.state(&node));
            let mut d = details.clone();
            d.push(("message", message.into()));
            events.record(EventKind::Warning, vec![node], d)?;
            continue;
        }
        let result = match p.kind.as_str() {
            "kill" => cluster.kill(&node, events, details.clone()),
            "pause" => cluster.pause(&node, events, details.clone()),
            other => unreachable!("validated fault kind {other:?}"),
        };
        match result {
            Ok(()) => hit.push(node),
            Err(ClusterError::Process(e @ ProcessError::ExitedOnItsOwn { .. })) => {
                // The node is down already; the heal (or the final heal) restarts it.
                cluster.note_exit(&node, events, &e)?;
                hit.push(node);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(hit)
}

/// Heals one injected fault on the nodes it hit; returns how many were healed.
fn heal(p: &Planned, hit: &[String], cluster: &mut Cluster, events: &EventLog) -> Result<u64, ClusterError> {
    let mut healed = 0;
    for node in hit {
        if cluster.state(node) == ProcState::Paused {
            assert_eq!(p.kind, "pause", "only a pause leaves a node paused");
            match cluster.resume(node, events, planned_details(p)) {
                Ok(()) => {}
                Err(ClusterError::Process(e @ ProcessError::ExitedOnItsOwn { .. })) => {
                    cluster.note_exit(node, events, &e)?
                }
                Err(e) => return Err(e),
            }
        }
        if cluster.state(node) == ProcState::Stopped {
            cluster.restart(node, events, planned_details(p))?;
        }
        assert_eq!(cluster.state(node), ProcState::Running, "node {node} runs after its heal");
        healed += 1;
    }
    Ok(healed)
}
