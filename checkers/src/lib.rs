//! jetsam-checkers turns a run's history, fault events and recovered node
//! state into a report: which acknowledged writes were lost, which replicas
//! diverge, where the loss windows are, and the verdict per consistency mode.
//! Everything except [`load`], [`forms`] and [`audit::audit_run`] (which
//! read a run folder) is a pure function of its inputs: no process, socket
//! or clock, so `jetsam check RUN_DIR` can re-check any saved run
//! offline.
//!
//! Entry points: [`load::load_run`] reads a run folder into a [`RunInput`]
//! and a [`CheckConfig`]; [`check`] decides; [`render_summary`] prints the
//! report for a human. The definitions are in DESIGN.md "What the checkers
//! decide" and docs/formats.md "report.json"; each module below says what it
//! verifies and what it does not.

pub mod audit;
pub mod config;
pub mod data;
pub mod divergence;
pub mod engine;
pub mod forms;
pub mod history_reader;
pub mod integrity;
pub mod load;
pub mod lost;
pub mod placement;
pub mod plan;
pub mod stream;
pub mod summary;
pub mod verdict;
pub mod windows;

pub use config::{CheckConfig, ConfigError, Overrides};
pub use data::{History, HistoryBuilder, Recovered, RecoveredBuilder};
pub use load::{LoadRunError, load_run};
pub use summary::render_summary;

use jetsam_core::event::Event;
use jetsam_core::report::{Mode, NodeReport, ReadMode, Report};
use std::collections::{BTreeMap, BTreeSet};

/// A node's read-back, or why there is none.
#[derive(Debug, Clone)]
pub enum NodeInput {
    Readable(Recovered),
    /// Read from the node's files without the node running
    /// (`recovered/<node>.offline`, whose first line is `note`). Readable,
    /// but it missed the final convergence: it is not compared for
    /// divergence, and an acknowledged sequence holding another id counts
    /// as a seq-mismatch on it only when it holds the acknowledged id
    /// elsewhere (see [`integrity`]).
    ReadOffline {
        view: Recovered,
        note: String,
    },
    Unreadable {
        reason: String,
    },
}

impl NodeInput {
    /// The node's view, when it was read back either way.
    pub fn view(&self) -> Option<&Recovered> {
        match self {
            NodeInput::Readable(v) | NodeInput::ReadOffline { view: v, .. } => Some(v),
            NodeInput::Unreadable { .. } => None,
        }
    }
}

/// Everything a check reads, already validated.
#[derive(Debug, Clone)]
pub struct RunInput {
    pub history: History,
    /// The fault timeline in time order.
    pub events: Vec<Event>,
    /// Every judged node by name: every node of the run, or only the
    /// replicas when the placement is known ([`placement::Judged`]).
    pub nodes: BTreeMap<String, NodeInput>,
    /// `recovered/cluster.jsonl`, when present.
    pub cluster: Option<Recovered>,
    /// Which nodes are judged as the stream's replicas.
    pub judged: placement::Judged,
}

/// Reads a run folder and checks it: [`load_run`] then [`check`]. What
/// `jetsam run` calls after its read-back phase (it then sets `latency` and
/// writes report.json).
pub fn check_dir(dir: &std::path::Path, overrides: &Overrides) -> Result<Report, LoadRunError> {
    let (input, config) = load_run(dir, overrides)?;
    Ok(check(&input, &config))
}

/// Name of the cluster view in samples and per-view findings.
pub const CLUSTER_VIEW: &str = "cluster";

/// Checks a run: every definition of DESIGN.md "What the checkers decide",
/// then the verdict. `latency` in the result is `None` (only `jetsam run`
/// measures it).
pub fn check(input: &RunInput, config: &CheckConfig) -> Report {
    let h = &input.history;
    let readable: Vec<(&str, &Recovered)> =
        input.nodes.iter().filter_map(|(name, n)| n.view().map(|v| (name.as_str(), v))).collect();
    let offline: BTreeSet<&str> = input
        .nodes
        .iter()
        .filter(|(_, n)| matches!(n, NodeInput::ReadOffline { .. }))
        .map(|(name, _)| name.as_str())
        .collect();
    let converged: Vec<(&str, &Recovered)> =
        readable.iter().filter(|(name, _)| !offline.contains(name)).copied().collect();
    let mut views = readable.clone();
    if let Some(c) = &input.cluster {
        views.push((CLUSTER_VIEW, c));
    }

    let kept = lost::union(h, readable.iter().map(|(_, v)| *v));
    let skip_empty = skip_empty(&input.judged, config);
    // The integrity pass (every ack against every view) runs beside the
    // others: at 100M writes each takes seconds, and there are two cores.
    let (integrity, (lost, lost_cluster_view, divergence, loss_windows)) = std::thread::scope(|s| {
        let integrity = s.spawn(|| integrity::check(h, &views, &kept, &offline));
        let rest = (
            lost::lost(h, &kept),
            input.cluster.as_ref().map(|c| lost::lost_on(h, c)),
            divergence::compare_all(h, &converged, skip_empty),
            windows::loss_windows(h, &kept, &input.events),
        );
        (integrity.join().expect("the integrity check does not panic"), rest)
    });

    let nodes = node_reports(input, &integrity);
    let findings = Findings {
        attempted: h.len() as u64,
        acked: h.acks().len() as u64,
        failed: h.count(data::Outcome::Fail),
        indeterminate: h.count(data::Outcome::Info) + h.count(data::Outcome::Open),
        lost,
        lost_cluster_view,
        integrity,
        divergence,
        loss_windows,
        nodes,
    };
    let standing = input.nodes.iter().map(|(name, n)| (name.clone(), Standing::of(n))).collect();
    assemble(findings, &standing, &input.judged, config)
}

/// Whether nodes holding nothing are left out of the divergence check:
/// without a known placement, when the stream has fewer replicas than the
/// run has nodes (with a known placement the non-replicas are not judged
/// at all).
pub(crate) fn skip_empty(judged: &placement::Judged, config: &CheckConfig) -> bool {
    !matches!(judged, placement::Judged::Replicas(_))
        && config.replicas.is_some_and(|r| (r as usize) < config.nodes.len())
}

/// How a judged node was read, whichever engine read it.
#[derive(Debug, Clone)]
pub(crate) enum Standing {
    Readable,
    /// Read offline, with its note.
    Offline(String),
    /// Not read, with the reason.
    Unreadable(String),
}

impl Standing {
    fn of(n: &NodeInput) -> Standing {
        match n {
            NodeInput::Readable(_) => Standing::Readable,
            NodeInput::ReadOffline { note, .. } => Standing::Offline(note.clone()),
            NodeInput::Unreadable { reason } => Standing::Unreadable(reason.clone()),
        }
    }
}

/// What the checks found, before the verdict: the same whichever engine
/// (in memory, or [`stream`]) computed it.
#[derive(Debug, Clone)]
pub(crate) struct Findings {
    pub attempted: u64,
    pub acked: u64,
    pub failed: u64,
    pub indeterminate: u64,
    pub lost: lost::Lost,
    pub lost_cluster_view: Option<u64>,
    pub integrity: integrity::Integrity,
    pub divergence: Vec<jetsam_core::report::Divergence>,
    pub loss_windows: Vec<jetsam_core::report::LossWindow>,
    pub nodes: BTreeMap<String, NodeReport>,
}

/// The report from the findings: counts, then the verdict and its reasons.
pub(crate) fn assemble(
    f: Findings,
    standing: &BTreeMap<String, Standing>,
    judged: &placement::Judged,
    config: &CheckConfig,
) -> Report {
    let integrity = f.integrity;
    let mut report = Report {
        format_version: jetsam_core::FORMAT_VERSION,
        verdict: jetsam_core::report::Verdict::Unknown,
        reasons: Vec::new(),
        mode: config.mode,
        window_bound_ns: (config.mode == Mode::Async)
            .then(|| u64::try_from(config.window_bound.as_nanos()).unwrap_or(u64::MAX)),
        attempted: f.attempted,
        acked: f.acked,
        failed: f.failed,
        indeterminate: f.indeterminate,
        lost: f.lost.count,
        lost_cluster_view: f.lost_cluster_view,
        lost_classes: f.lost.classes,
        lost_sample: f.lost.sample,
        unexpected: integrity.unexpected,
        resurrected: integrity.resurrected,
        duplicated: integrity.duplicated,
        seq_mismatch: integrity.seq_mismatch,
        seq_mismatch_lost: integrity.seq_mismatch_lost,
        recovered_indeterminate: integrity.recovered_indeterminate,
        divergent: !f.divergence.is_empty(),
        divergence: f.divergence,
        loss_windows: f.loss_windows,
        replicas: judged.replicas(),
        nodes: f.nodes,
        latency: None,
        audit: None,
    };
    assert_eq!(report.attempted, report.acked + report.failed + report.indeterminate);
    let readable = standing.values().filter(|s| !matches!(s, Standing::Unreadable(_))).count();
    let (verdict, mut reasons) = match judged {
        placement::Judged::Unknown(why) => placement::weigh_unknown(&report, readable == standing.len(), why),
        // The majority rule counts the judged nodes: the replicas when known.
        _ => verdict::decide(&report, readable, standing.len()),
    };
    reasons.extend(notes(standing, judged, config));
    report.verdict = verdict;
    report.reasons = reasons;
    report
}

/// The per-node part of the report, for every node of `input` in name order.
fn node_reports(input: &RunInput, integrity: &integrity::Integrity) -> BTreeMap<String, NodeReport> {
    input.nodes.iter().map(|(name, n)| (name.clone(), node_report(&input.history, integrity, name, n))).collect()
}

/// The notes the verdict rests on, after its reasons: unreadable nodes,
/// replicas left out of the divergence check, the async bound in force.
fn notes(standing: &BTreeMap<String, Standing>, judged: &placement::Judged, config: &CheckConfig) -> Vec<String> {
    let mut notes = Vec::new();
    let unreadable: Vec<String> = standing
        .iter()
        .filter_map(|(name, s)| match s {
            Standing::Unreadable(reason) => Some(format!("{name} ({reason})")),
            Standing::Readable | Standing::Offline(_) => None,
        })
        .collect();
    if !unreadable.is_empty() {
        notes.push(format!("unreadable node(s): {}", unreadable.join(", ")));
    }
    if standing.values().any(|s| matches!(s, Standing::Offline(_))) {
        notes.push(offline_reason(standing));
    }
    if skip_empty(judged, config) {
        notes.push(format!(
            "stream has {} replica(s) on {} node(s): nodes holding nothing are left out of the divergence check",
            config.replicas.unwrap_or(0),
            config.nodes.len()
        ));
    }
    notes.extend(judged.note(config.nodes.len()));
    if config.mode == Mode::Async {
        notes.push(format!("async loss-window bound: {}", config.window_bound_source));
    }
    notes
}

/// The per-node object of report.json.
fn node_report(h: &History, integrity: &integrity::Integrity, name: &str, n: &NodeInput) -> NodeReport {
    let Some(v) = n.view() else {
        let NodeInput::Unreadable { reason } = n else { unreachable!("a node without a view is unreadable") };
        return NodeReport {
            lost: 0,
            unexpected: 0,
            unreadable: true,
            unreadable_reason: Some(reason.clone()),
            held: 0,
            duplicated: 0,
            seq_mismatch: 0,
            read: None,
            read_note: None,
        };
    };
    let (duplicated, seq_mismatch) = integrity.per_view.get(name).copied().unwrap_or_default();
    let (read, read_note) = match n {
        NodeInput::ReadOffline { note, .. } => (ReadMode::Offline, Some(note.clone())),
        _ => (ReadMode::Normal, None),
    };
    NodeReport {
        lost: lost::lost_on(h, v),
        unexpected: v.strangers().len() as u64,
        unreadable: false,
        unreadable_reason: None,
        held: v.len() as u64,
        duplicated,
        seq_mismatch,
        read: Some(read),
        read_note,
    }
}

/// The note on nodes read offline: what they count for and why not more.
fn offline_reason(standing: &BTreeMap<String, Standing>) -> String {
    let listed: Vec<String> = standing
        .iter()
        .filter_map(|(name, s)| match s {
            Standing::Offline(note) => Some(format!("{name} ({note})")),
            _ => None,
        })
        .collect();
    format!(
        "read offline, from their files without the node running: {}; they count as readable, but missed the final \
         convergence (they may lag, or hold an uncommitted tail the others replaced), so they are not compared for \
         divergence and another id at an acknowledged sequence is a seq-mismatch on them only if they hold the \
         acknowledged id elsewhere",
        listed.join(", ")
    )
}
