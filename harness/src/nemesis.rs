//! The nemesis executes the seeded schedule during the load phase: at each
//! planned time it injects a fault on the planned nodes (or on the leader
//! the target names at that moment) and heals it after `heal_after`:
//!
//! | kind | inject | heal |
//! |------|--------|------|
//! | kill | SIGKILL of the node's group | restart (none with `restart = false`) |
//! | pause | SIGSTOP | SIGCONT |
//! | power-loss | SIGKILL, unsynced writes discarded | restart (under a fresh tracer; none with `restart = false`) |
//! | io-error | syncs fail (EIO) and/or writes (ENOSPC) | normal I/O; restart if it died |
//! | partition | blackhole the links the shape cuts | restore them |
//! | bitflip / truncate | kill, corrupt a data file | restart |
//!
//! Every injection, heal, skip and surprise (a node that died on its own)
//! is an event in events.jsonl, written as it happens, with the fault line
//! index and the planned time so two runs with one seed can be compared.
//!
//! A node hit by a fault line with `restart = false` is kept down
//! ([`Cluster::keep_down`]): no heal restarts it, the final heal included.
//!
//! Heals planned after the load phase ends are left to the final heal
//! ([`crate::cluster::Cluster::heal_all`]). New fault kinds plug in at
//! [`inject`] and [`heal`]; this module does not plan (see `schedule`).

use crate::cluster::{Cluster, ClusterError, Details, DiskFault};
use crate::events::EventLog;
use crate::schedule::{Planned, Schedule, Selection, derive_seed, is_network, select};
use crate::triggers::{Fired, Triggers};
use jetsam_core::event::EventKind;
use jetsam_core::scenario::{Fault, Scenario};
use jetsam_faults::net::Shape;
use jetsam_faults::power::{DirentModel, DiscardModel, IoErrorMode};
use jetsam_faults::process::{ProcState, ProcessError};
use jetsam_targets::Target;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How often the nemesis checks that running nodes have not died on their own.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(200);
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

/// The load phase as the nemesis sees it.
#[derive(Debug, Clone, Copy)]
pub struct Load<'a> {
    pub start: tokio::time::Instant,
    pub duration: Duration,
    /// The workload's acknowledged writes so far (`acks:K` triggers).
    pub acked: &'a AtomicU64,
}

/// The injections of one run: the plan's, then event-triggered ones as
/// their events happen, each with the nodes it hit.
struct Timeline {
    planned: Vec<Planned>,
    /// What fired each triggered injection (None for the plan's).
    fired: Vec<Option<Fired>>,
    hit: Vec<Vec<String>>,
    actions: BTreeSet<(Duration, Action)>,
}

impl Timeline {
    fn new(schedule: &Schedule, duration: Duration) -> Timeline {
        let mut t = Timeline { planned: Vec::new(), fired: Vec::new(), hit: Vec::new(), actions: BTreeSet::new() };
        for p in &schedule.planned {
            t.add(p.clone(), None, duration);
        }
        for (i, s) in schedule.skipped.iter().enumerate() {
            t.actions.insert((s.at, Action::Skip(i)));
        }
        t
    }

    fn add(&mut self, p: Planned, fired: Option<Fired>, duration: Duration) {
        let i = self.planned.len();
        self.actions.insert((p.at, Action::Inject(i)));
        if p.heal_at < duration {
            self.actions.insert((p.heal_at, Action::Heal(i)));
        }
        self.planned.push(p);
        self.fired.push(fired);
        self.hit.push(Vec::new());
    }

    /// Nodes under an injection that has not healed yet.
    fn busy(&self, now: Duration) -> BTreeSet<String> {
        self.planned
            .iter()
            .zip(&self.hit)
            .filter(|(p, _)| p.at <= now && now < p.heal_at)
            .flat_map(|(_, hit)| hit.iter().cloned())
            .collect()
    }

    fn network_busy(&self, now: Duration) -> bool {
        self.planned.iter().any(|p| p.selection == Selection::Network && p.at <= now && now < p.heal_at)
    }
}

/// Runs the schedule, and the event-triggered fault lines, during the load.
pub async fn run(
    scenario: &Scenario,
    schedule: &Schedule,
    cluster: &mut Cluster,
    target: &dyn Target,
    events: &EventLog,
    load: Load<'_>,
) -> Result<NemesisSummary, ClusterError> {
    let mut timeline = Timeline::new(schedule, load.duration);
    let mut triggers = Triggers::arm(scenario, cluster)?;
    let mut summary = NemesisSummary::default();
    loop {
        let next = timeline.actions.first().map(|(at, _)| *at);
        let until = next.map_or(load.duration, |at| at.min(load.duration));
        let fired = watch_until(cluster, events, &mut triggers, target, &load, until).await?;
        if !fired.is_empty() {
            for f in fired {
                place_triggered(scenario, cluster, events, &mut timeline, f, &load, &mut summary)?;
            }
            continue;
        }
        let Some((at, action)) = timeline.actions.pop_first() else { break };
        if at >= load.duration {
            // Never happens for the plan's actions (all before the end); kept as a guard.
            timeline.actions.insert((at, action));
            break;
        }
        match action {
            Action::Skip(i) => {
                let s = &schedule.skipped[i];
                record_skip(events, &s.kind, s.fault, s.at, &s.reason, vec![])?;
                summary.skipped += 1;
            }
            Action::Inject(i) => {
                let p = timeline.planned[i].clone();
                let mut details = planned_details(&p);
                if let Some(f) = &timeline.fired[i] {
                    details.extend(trigger_details(f));
                }
                let hit = inject(&p, &scenario.faults[p.fault], cluster, target, events, details).await?;
                if let Some(f) = &timeline.fired[i] {
                    crate::triggers::release(cluster, &f.trigger)?;
                }
                summary.injected += hit.len().max(usize::from(p.selection == Selection::Network)) as u64;
                timeline.hit[i] = hit;
            }
            Action::Heal(i) => {
                let p = &timeline.planned[i];
                summary.healed += heal(p, &timeline.hit[i], cluster, events)?;
            }
        }
    }
    let acked = load.acked.load(Ordering::Relaxed);
    for (fault, trigger, seen) in triggers.never_fired(acked)? {
        let reason = format!("its event {trigger} never happened during the load ({seen})");
        let kind = &scenario.faults[fault].kind;
        record_skip(events, kind, fault, load.duration, &reason, vec![("trigger", trigger.to_string().into())])?;
        summary.skipped += 1;
    }
    Ok(summary)
}

fn record_skip(
    events: &EventLog,
    kind: &str,
    fault: usize,
    at: Duration,
    reason: &str,
    mut extra: Details,
) -> Result<(), ClusterError> {
    let mut details: Details = vec![
        ("message", format!("{kind} skipped: {reason}").into()),
        ("fault", (fault as u64).into()),
        ("planned_ns", u64::try_from(at.as_nanos()).expect("fits").into()),
    ];
    details.append(&mut extra);
    events.record(EventKind::Warning, vec![], details)?;
    Ok(())
}

/// What an injection's event records about the trigger that fired it.
fn trigger_details(f: &Fired) -> Details {
    let mut d: Details = vec![
        ("trigger", f.trigger.to_string().into()),
        ("triggered_ns", u64::try_from(f.seen_at.as_nanos()).expect("fits").into()),
    ];
    d.extend(f.details.iter().cloned());
    d
}

/// Places a fired trigger's injection after its delay, on the nodes free
/// then, or records why it cannot be placed.
fn place_triggered(
    scenario: &Scenario,
    cluster: &Cluster,
    events: &EventLog,
    timeline: &mut Timeline,
    fired: Fired,
    load: &Load<'_>,
    summary: &mut NemesisSummary,
) -> Result<(), ClusterError> {
    let f = &scenario.faults[fired.fault];
    let at = fired.seen_at + f.delay.unwrap_or_default();
    let heal_at = at + f.heal_after.expect("resolved: heal_after set");
    let seed = derive_seed(scenario.seed.expect("resolved: seed set"), &format!("trigger/{}", fired.fault));
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let skip = |reason: String| -> Result<(), ClusterError> {
        crate::triggers::release(cluster, &fired.trigger)?;
        record_skip(events, &f.kind, fired.fault, at, &reason, trigger_details(&fired))
    };
    if at >= load.duration {
        summary.skipped += 1;
        return skip(format!("{} fired, but its delay ends after the load", fired.trigger));
    }
    let selection = if is_network(&f.kind) {
        if timeline.network_busy(at) {
            summary.skipped += 1;
            return skip("an earlier partition is not healed yet".into());
        }
        Selection::Network
    } else {
        let busy = timeline.busy(at);
        let names = cluster.names();
        let free: Vec<&str> = names
            .iter()
            .map(String::as_str)
            .filter(|n| !busy.contains(*n) && cluster.state(n) == ProcState::Running)
            .collect();
        let minority = crate::schedule::disk_minority(scenario, scenario.seed.expect("resolved"));
        match select(f, &names, &free, &minority, &mut rng) {
            Ok(selection) => selection,
            Err(reason) => {
                summary.skipped += 1;
                return skip(reason);
            }
        }
    };
    let planned = Planned { fault: fired.fault, kind: f.kind.clone(), at, heal_at, selection, seed: rng.next_u64() };
    timeline.add(planned, Some(fired), load.duration);
    Ok(())
}

/// Sleeps until `until` (since the load started), checking every
/// [`WATCH_INTERVAL`] that running nodes are still there, and every
/// [`crate::triggers::POLL_INTERVAL`] whether a waiting event happened;
/// returns early with the events that did. A node that dies on its own (a
/// crash, not a fault of ours) is recorded as a `warning` when it happens
/// and stays down until its fault's heal or the final heal, as Jepsen's
/// nemesis leaves it.
async fn watch_until(
    cluster: &mut Cluster,
    events: &EventLog,
    triggers: &mut Triggers,
    target: &dyn Target,
    load: &Load<'_>,
    until: Duration,
) -> Result<Vec<Fired>, ClusterError> {
    let until = load.start + until;
    let step = if triggers.is_empty() { WATCH_INTERVAL } else { crate::triggers::POLL_INTERVAL };
    let mut watched_at: Option<tokio::time::Instant> = None;
    loop {
        let now = tokio::time::Instant::now();
        if watched_at.is_none_or(|t| now.duration_since(t) >= WATCH_INTERVAL) {
            watched_at = Some(now);
            for name in cluster.names() {
                cluster.check_alive(&name, events)?;
            }
        }
        if !triggers.is_empty() {
            let fired = triggers.poll(cluster, target, load.acked.load(Ordering::Relaxed), load.start).await?;
            if !fired.is_empty() {
                return Ok(fired);
            }
        }
        let now = tokio::time::Instant::now();
        if now >= until {
            return Ok(Vec::new());
        }
        tokio::time::sleep_until(until.min(now + step)).await;
    }
}

/// The partition shape of a fault line (validated).
fn shape_of(fault: &Fault) -> Shape {
    match (&fault.targets, fault.options.get("shape").and_then(|v| v.as_str())) {
        (jetsam_core::scenario::Targets::Nodes(side), _) => Shape::Nodes(side.clone()),
        (_, Some(name)) => name.parse().expect("validated shape"),
        (_, None) => crate::scenario::SHAPE_DEFAULT.parse().expect("default shape"),
    }
}

/// The corruption globs of a disk fault line: its `files`, else the target's default.
fn globs_of(fault: &Fault, target: &dyn Target) -> Vec<String> {
    match fault.options.get("files").and_then(|v| v.as_array()) {
        Some(list) => list.iter().map(|g| g.as_str().expect("validated glob").to_string()).collect(),
        None => target.default_corrupt_globs(),
    }
}

/// Injects one planned fault; returns the nodes it hit.
async fn inject(
    p: &Planned,
    fault: &Fault,
    cluster: &mut Cluster,
    target: &dyn Target,
    events: &EventLog,
    mut details: Details,
) -> Result<Vec<String>, ClusterError> {
    let keep_down = crate::scenario::keeps_down(fault);
    if keep_down {
        // The timeline says why no restart follows.
        details.push(("restart", false.into()));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
    let nodes = match &p.selection {
        Selection::Network => {
            let shape = shape_of(fault);
            let leader = if shape == Shape::IsolateOne {
                tokio::time::timeout(LEADER_TIMEOUT, target.leader(cluster.specs())).await.ok().flatten()
            } else {
                None
            };
            cluster.partition(&shape, &mut rng, leader.as_deref(), events, details)?;
            return Ok(Vec::new());
        }
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
    if p.kind == "power-loss" {
        // Every node at once: SIGKILLs first, then the discards.
        let pages = DiscardModel::from_options(&fault.options).expect("validated discard model");
        let dirents = DirentModel::from_options(&fault.options).expect("validated dirent model");
        let model = crate::cluster::LossModel { pages: &pages, dirents };
        let (live, busy): (Vec<String>, Vec<String>) =
            nodes.into_iter().partition(|n| cluster.state(n) != ProcState::Stopped);
        for node in busy {
            let mut d = details.clone();
            d.push(("message", format!("power-loss of {node} skipped: the node is stopped").into()));
            events.record(EventKind::Warning, vec![node], d)?;
        }
        let seeds: Vec<u64> = live.iter().map(|_| rand::Rng::r#gen::<u64>(&mut rng)).collect();
        for (node, e) in cluster.power_loss(&live, events, model, &seeds, details)? {
            cluster.note_exit(&node, events, &e)?;
        }
        if keep_down {
            for node in &live {
                cluster.keep_down(node);
            }
        }
        return Ok(live);
    }
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
            "io-error" => {
                let mode = fault
                    .options
                    .get("mode")
                    .and_then(|m| m.as_str())
                    .map_or(IoErrorMode::Eio, |m| IoErrorMode::parse(m).expect("validated io-error mode"));
                cluster.set_io_error(&node, Some(mode), events, details.clone())
            }
            "bitflip" | "truncate" => {
                let bits = fault
                    .options
                    .get("bits")
                    .and_then(|b| b.as_integer())
                    .map_or(crate::scenario::BITS_DEFAULT, |b| u32::try_from(b).expect("validated bits"));
                let globs = globs_of(fault, target);
                let disk = DiskFault { kind: &p.kind, globs: &globs, bits };
                cluster.corrupt(&node, &disk, &mut rng, events, details.clone())
            }
            other => unreachable!("validated fault kind {other:?}"),
        };
        match result {
            Ok(()) => {}
            Err(ClusterError::Process(e @ ProcessError::ExitedOnItsOwn { .. })) => {
                // The node is down already; the heal (or the final heal) restarts it.
                cluster.note_exit(&node, events, &e)?;
            }
            Err(e) => return Err(e),
        }
        if keep_down {
            assert_eq!(p.kind, "kill", "validated: only kill and power-loss keep nodes down");
            cluster.keep_down(&node);
        }
        hit.push(node);
    }
    Ok(hit)
}

/// Heals one injected fault on the nodes it hit; returns how many were healed.
fn heal(p: &Planned, hit: &[String], cluster: &mut Cluster, events: &EventLog) -> Result<u64, ClusterError> {
    if p.selection == Selection::Network {
        cluster.heal_network(events, planned_details(p))?;
        return Ok(1);
    }
    let mut healed = 0;
    for node in hit {
        if p.kind == "io-error" {
            cluster.set_io_error(node, None, events, planned_details(p))?;
            // A node may exit on a failed fsync (as it should): restart it below.
            cluster.check_alive(node, events)?;
        }
        if cluster.state(node) == ProcState::Paused {
            assert!(p.kind == "pause" || p.kind == "io-error", "only a pause leaves a node paused");
            match cluster.resume(node, events, planned_details(p)) {
                Ok(()) => {}
                Err(ClusterError::Process(e @ ProcessError::ExitedOnItsOwn { .. })) => {
                    cluster.note_exit(node, events, &e)?
                }
                Err(e) => return Err(e),
            }
        }
        if cluster.is_kept_down(node) {
            // restart = false (on this fault line or an earlier one): it stays down.
            assert_eq!(cluster.state(node), ProcState::Stopped, "a kept-down node stays stopped");
            continue;
        }
        if cluster.state(node) == ProcState::Stopped {
            cluster.restart(node, events, planned_details(p))?;
        }
        assert_eq!(cluster.state(node), ProcState::Running, "node {node} runs after its heal");
        healed += 1;
    }
    Ok(healed)
}
