//! Event triggers at run time: the fault lines with `on = "..."` wait here
//! during the load phase until their event happens; the nemesis then places
//! the injection (after the line's delay) on the nodes free at that moment.
//!
//! | event | how it is seen | lag |
//! |---|---|---|
//! | `acks:K` | the workload's acked counter | ≤ [`POLL_INTERVAL`] |
//! | `leader-change[:K]` | the target's leader, asked every [`ASK_INTERVAL`] | ≤ ASK_INTERVAL + the answer |
//! | `fsync:NODE:K` | the node's tracer writes `S/fsync-fired` right after the K-th data-file fsync returns, and holds later syncs while the delay is 0 | none for the node's files (held); ≤ POLL_INTERVAL for the rest |
//! | `behind:NODE:K` | the target's per-node lag, asked every ASK_INTERVAL | ≤ ASK_INTERVAL + the answer |
//!
//! Counting starts when the load starts. Each line fires once; a line whose
//! event never happened by the end of the load is a skipped injection
//! (a `warning` event saying so), never a silent pass.

use crate::cluster::{Cluster, ClusterError, Details};
use jetsam_core::scenario::Scenario;
use jetsam_core::trigger::Trigger;
use jetsam_faults::power::trigger::{self as fsync, FsyncTrigger};
use jetsam_targets::Target;
use std::path::PathBuf;
use std::time::Duration;
use tokio::time::Instant;

/// How often the acked counter and the tracers' firing files are looked at.
pub const POLL_INTERVAL: Duration = Duration::from_millis(5);
/// How often the target is asked for the leader or a node's lag.
pub const ASK_INTERVAL: Duration = Duration::from_millis(100);
/// The longest one such question may take.
pub const ASK_TIMEOUT: Duration = Duration::from_secs(1);

/// One trigger that fired.
#[derive(Debug, Clone)]
pub struct Fired {
    /// The fault line.
    pub fault: usize,
    pub trigger: Trigger,
    /// When the event was seen, since the load started.
    pub seen_at: Duration,
    /// What was seen (`acked`, `leader_from`/`leader_to`, `fsync_count`/`fsync_file`, `behind`).
    pub details: Details,
}

#[derive(Debug)]
struct Waiting {
    fault: usize,
    trigger: Trigger,
    /// The watched node's tracer state dir (fsync triggers).
    state_dir: Option<PathBuf>,
}

/// The lines still waiting, and what the leader watch has seen.
#[derive(Debug, Default)]
pub struct Triggers {
    waiting: Vec<Waiting>,
    leader: Option<String>,
    leader_changes: u64,
    asked_at: Option<Instant>,
}

impl Triggers {
    /// Arms every `on` line of a validated scenario (fsync triggers in the
    /// watched node's tracer; a zero delay holds the node's later syncs).
    pub fn arm(scenario: &Scenario, cluster: &Cluster) -> Result<Triggers, ClusterError> {
        let mut waiting = Vec::new();
        for (i, f) in scenario.faults.iter().enumerate() {
            let Some(on) = &f.on else { continue };
            let trigger: Trigger = on.parse().expect("validated trigger");
            let state_dir = match &trigger {
                Trigger::Fsync { node, count } => {
                    let dir = cluster.state_dir(node).expect("fsync triggers run every node traced").to_path_buf();
                    let hold = f.delay.is_none_or(|d| d.is_zero());
                    fsync::arm_fsync_trigger(&dir, FsyncTrigger { count: *count, hold })?;
                    Some(dir)
                }
                _ => None,
            };
            waiting.push(Waiting { fault: i, trigger, state_dir });
        }
        Ok(Triggers { waiting, ..Triggers::default() })
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Looks once at every waiting event; returns those that happened.
    pub async fn poll(
        &mut self,
        cluster: &Cluster,
        target: &dyn Target,
        acked: u64,
        load_start: Instant,
    ) -> Result<Vec<Fired>, ClusterError> {
        let now = Instant::now();
        let ask = self.asked_at.is_none_or(|t| now.duration_since(t) >= ASK_INTERVAL);
        if ask && self.waiting.iter().any(|w| matches!(w.trigger, Trigger::LeaderChange(_))) {
            self.asked_at = Some(now);
            self.watch_leader(cluster, target).await;
        }
        let mut fired = Vec::new();
        let mut still = Vec::new();
        for w in std::mem::take(&mut self.waiting) {
            let seen: Option<Details> = match &w.trigger {
                Trigger::Acks(k) => (acked >= *k).then(|| vec![("acked", acked.into())]),
                Trigger::LeaderChange(k) => (self.leader_changes >= *k).then(|| {
                    vec![("leader_changes", self.leader_changes.into()), ("leader_to", self.leader.clone().into())]
                }),
                Trigger::Fsync { .. } => {
                    let dir = w.state_dir.as_deref().expect("armed with its state dir");
                    match fsync::fsync_fired(dir) {
                        Some(f) => {
                            fsync::disarm_fsync_trigger(dir)?;
                            Some(vec![
                                ("fsync_count", f.count.into()),
                                ("fsync_file", f.file.into()),
                                ("fsync_file_len", f.len.into()),
                            ])
                        }
                        None => None,
                    }
                }
                Trigger::Behind { node, entries } if ask => {
                    self.asked_at = Some(now);
                    let behind = tokio::time::timeout(ASK_TIMEOUT, target.behind(cluster.specs(), node)).await;
                    match behind.ok().flatten() {
                        Some(b) if b >= *entries => Some(vec![("behind", b.into())]),
                        _ => None,
                    }
                }
                Trigger::Behind { .. } => None,
            };
            match seen {
                Some(details) => fired.push(Fired {
                    fault: w.fault,
                    trigger: w.trigger,
                    seen_at: Instant::now().duration_since(load_start),
                    details,
                }),
                None => still.push(w),
            }
        }
        self.waiting = still;
        Ok(fired)
    }

    /// Counts leader changes: a known leader other than the last known one.
    async fn watch_leader(&mut self, cluster: &Cluster, target: &dyn Target) {
        let Ok(Some(now)) = tokio::time::timeout(ASK_TIMEOUT, target.leader(cluster.specs())).await else { return };
        if self.leader.as_ref().is_some_and(|before| *before != now) {
            self.leader_changes += 1;
        }
        self.leader = Some(now);
    }

    /// The lines whose event never happened (disarmed), with what was seen instead.
    pub fn never_fired(self, acked: u64) -> Result<Vec<(usize, Trigger, String)>, ClusterError> {
        let mut out = Vec::new();
        for w in self.waiting {
            let seen = match &w.trigger {
                Trigger::Acks(_) => format!("{acked} writes were acknowledged"),
                Trigger::LeaderChange(_) => format!("the leader changed {} time(s)", self.leader_changes),
                Trigger::Fsync { node, .. } => {
                    fsync::disarm_fsync_trigger(w.state_dir.as_deref().expect("armed with its state dir"))?;
                    format!("{node}'s tracer did not count that many data-file fsyncs")
                }
                Trigger::Behind { node, .. } => format!("{node} was never seen that far behind"),
            };
            out.push((w.fault, w.trigger, seen));
        }
        Ok(out)
    }
}

/// Lets a node's held syncs go after its fsync-triggered fault was injected
/// (harmless when its tracer holds nothing or is gone).
pub fn release(cluster: &Cluster, trigger: &Trigger) -> Result<(), ClusterError> {
    if let Trigger::Fsync { node, .. } = trigger
        && let Some(dir) = cluster.state_dir(node)
    {
        fsync::release_fsync_hold(dir)?;
    }
    Ok(())
}
