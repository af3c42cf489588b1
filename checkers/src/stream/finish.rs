//! The streaming checker's passes after the history: the views counted
//! (2a), merged (2b, [`super::merge`]), then the per-op scan and the
//! spilled streams read again (3), and the findings handed to
//! [`crate::assemble`]: the same report as the in-memory checker.

use super::bits::Bits1;
use super::index::{OpIndex, Spilled};
use super::merge::{MergePlan, MergeView, Merged};
use super::spill::VarReader;
use super::views::{Held, Source, ViewCounts, ViewStream, count_view};
use super::{StreamError, ViewFile};
use crate::config::CheckConfig;
use crate::data::Outcome;
use crate::integrity::Integrity;
use crate::load::{NodePlan, RunPlan};
use crate::lost::Lost;
use crate::{Findings, Standing};
use jetsam_core::event::Event;
use jetsam_core::report::{Divergence, LossWindow, LostClasses, NodeReport, ReadMode, Report, SAMPLE_MAX, Sampled};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

pub(crate) struct Inputs<'a> {
    pub plan: &'a RunPlan,
    pub config: &'a CheckConfig,
    pub index: &'a OpIndex,
    pub views: &'a [ViewFile],
    pub events: &'a [Event],
    pub arena: &'a super::Arena,
}

/// Views counted at once, at most (each holds 2 bits per op).
const MAX_COUNT_THREADS: usize = 8;

pub(crate) fn check(inp: &Inputs<'_>, mut spilled: Spilled, laps: &super::Laps) -> Result<Report, StreamError> {
    let (counts, sources): (Vec<ViewCounts>, Vec<Source>) = count_views(inp)?.into_iter().unzip();
    laps.lap("2a, views counted");
    let kept = kept(inp, &counts)?;
    let pairs = pairs(inp, &counts);
    let dups = DupSample::choose(inp, &counts)?;
    let merged = run_merge(inp, &counts, &sources, &kept, &pairs, &dups, &mut spilled)?;
    laps.lap("2b, views merged with the acks by sequence");
    // The acks in ack order (a file) and the scan of every op (memory) side by side.
    let (acks, scan) = std::thread::scope(|s| {
        let acks = s.spawn(|| ack_pass(inp, &kept, &spilled.acks));
        let scan = Scan::run(inp, &counts, &kept, &pairs);
        (acks.join().expect("the ack pass does not panic"), scan)
    });
    let (lost_count, lost_sample, loss_windows) = acks?;
    laps.lap("3, acks in ack order and ops scanned");
    assert_eq!(scan.lost(), lost_count, "the scan and the ack pass agree on the losses");
    let ordered = if scan.resurrected > 0 || scan.only.iter().any(|(a, b)| *a > 0 || *b > 0) {
        invoke_pass(inp, &counts, &pairs, &spilled.invokes)?
    } else {
        Ordered::default()
    };
    let integrity = integrity(inp, &counts, &merged, &dups, &scan, &ordered);
    let divergence = divergence(inp, &pairs, &merged, &scan, &ordered);
    let findings = Findings {
        attempted: inp.index.len() as u64,
        acked: inp.index.count(Outcome::Ok),
        failed: inp.index.count(Outcome::Fail),
        indeterminate: inp.index.count(Outcome::Info) + inp.index.count(Outcome::Open),
        lost: Lost { count: lost_count, classes: scan.classes.clone(), sample: lost_sample },
        lost_cluster_view: inp.views.iter().position(|v| v.cluster).map(|k| scan.lost_on[k]),
        nodes: node_reports(inp.plan, inp.views, &counts, &merged, &scan),
        integrity,
        divergence,
        loss_windows,
    };
    let standing = inp
        .plan
        .nodes
        .iter()
        .map(|(name, p)| {
            let s = match p {
                NodePlan::Read { offline: Some(note), .. } => Standing::Offline(note.clone()),
                NodePlan::Read { offline: None, .. } => Standing::Readable,
                NodePlan::Unreadable { reason } => Standing::Unreadable(reason.clone()),
            };
            (name.clone(), s)
        })
        .collect();
    Ok(crate::assemble(findings, &standing, &inp.plan.judged, inp.config))
}

/// Pass 2a: every view counted, in parallel; the first error in view order
/// wins. JSON-lines views are also written resolved for the merge (a
/// compact view is as fast to decode again as to read resolved: measured
/// at 100M x 3, resolving it cost 2 s more than it saved).
fn count_views(inp: &Inputs<'_>) -> Result<Vec<(ViewCounts, Source)>, StreamError> {
    let views = inp.views;
    let threads = views.len().clamp(1, MAX_COUNT_THREADS);
    let next = AtomicUsize::new(0);
    type Counted = Result<(ViewCounts, Source), StreamError>;
    let results: Mutex<Vec<Option<Counted>>> = Mutex::new(views.iter().map(|_| None).collect());
    let count = |i: usize, v: &ViewFile| -> Counted {
        let held = inp.arena.bits2(inp.index.len())?;
        let resolved = if crate::forms::is_compact(&v.path) {
            None
        } else {
            Some(super::spill::VarWriter::create(inp.arena.dir().join(format!("view-{i}")))?)
        };
        count_view(&v.path, inp.index, held, resolved)
    };
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(v) = views.get(i) else { break };
                    let r = count(i, v);
                    results.lock().expect("no counter panicked holding the lock")[i] = Some(r);
                }
            });
        }
    });
    results.into_inner().expect("no counter panicked").into_iter().map(|r| r.expect("every view was counted")).collect()
}

/// Ops held by some readable node (the cluster view is a read path, not a node).
fn kept(inp: &Inputs<'_>, counts: &[ViewCounts]) -> Result<Bits1, StreamError> {
    let mut kept = inp.arena.bits1(inp.index.len())?;
    for (v, c) in inp.views.iter().zip(counts) {
        if !v.cluster {
            c.held.for_each_nonzero(|g, _| kept.set(g));
        }
    }
    Ok(kept)
}

/// The pairs of replicas compared for divergence, by view number: the
/// nodes not read offline (and, when [`crate::skip_empty`], holding
/// something), every pair in name order.
fn pairs(inp: &Inputs<'_>, counts: &[ViewCounts]) -> Vec<(usize, usize)> {
    let skip_empty = crate::skip_empty(&inp.plan.judged, inp.config);
    let considered: Vec<usize> = (0..inp.views.len())
        .filter(|k| {
            let v = &inp.views[*k];
            !(v.cluster || v.offline || (skip_empty && counts[*k].len == 0))
        })
        .collect();
    let mut pairs = Vec::new();
    for (i, a) in considered.iter().enumerate() {
        for b in &considered[i + 1..] {
            pairs.push((*a, *b));
        }
    }
    pairs
}

/// The duplicated ids: how many, and the first [`SAMPLE_MAX`] in id text
/// order, each on the first view (in view order) that holds it twice.
#[derive(Debug, Default)]
struct DupSample {
    count: u64,
    /// (id text, view number, what the view holds).
    chosen: Vec<(String, usize, Held)>,
}

impl DupSample {
    fn choose(inp: &Inputs<'_>, counts: &[ViewCounts]) -> Result<DupSample, StreamError> {
        let mut candidates: BTreeMap<String, (usize, Held)> = BTreeMap::new();
        let mut keep = |text: String, k: usize, held: Held| {
            if candidates.len() < SAMPLE_MAX || candidates.last_key_value().is_some_and(|(last, _)| text < *last) {
                candidates.entry(text).or_insert((k, held));
                if candidates.len() > SAMPLE_MAX {
                    candidates.pop_last();
                }
            }
        };
        let mut count = 0u64;
        if counts.iter().any(|c| c.dup_ops > 0) {
            let mut seen = inp.arena.bits1(inp.index.len())?;
            for (k, c) in counts.iter().enumerate() {
                c.held.for_each_nonzero(|g, n| {
                    if n == 2 && !seen.get(g) {
                        seen.set(g);
                        count += 1;
                        keep(inp.index.id(g as u32).to_string(), k, Held::Op(g as u32));
                    }
                });
            }
        }
        let mut strangers: BTreeSet<&str> = BTreeSet::new();
        for (k, c) in counts.iter().enumerate() {
            for (text, _) in c.strangers.iter().filter(|(_, seqs)| seqs.len() > 1) {
                if strangers.insert(text) {
                    count += 1;
                    keep(text.clone(), k, Held::Stranger(text.clone()));
                }
            }
        }
        Ok(DupSample { count, chosen: candidates.into_iter().map(|(text, (k, held))| (text, k, held)).collect() })
    }
}

/// Pass 2b: the views read again, side by side with the sorted acks.
fn run_merge(
    inp: &Inputs<'_>,
    counts: &[ViewCounts],
    sources: &[Source],
    kept: &Bits1,
    pairs: &[(usize, usize)],
    dups: &DupSample,
    spilled: &mut Spilled,
) -> Result<Merged, StreamError> {
    let views: Vec<MergeView<'_>> =
        inp.views.iter().zip(counts).map(|(v, c)| MergeView { name: &v.name, offline: v.offline, counts: c }).collect();
    // Only ops need their sequences from the merge: a stranger's are kept.
    let dup_ops: Vec<(usize, Held)> =
        dups.chosen.iter().filter(|(_, _, h)| matches!(h, Held::Op(_))).map(|(_, k, h)| (*k, h.clone())).collect();
    let plan = MergePlan { index: inp.index, views: &views, kept, pairs, dups: &dup_ops };
    std::thread::scope(|s| {
        let (mut streams, readers): (Vec<ViewStream>, Vec<_>) =
            sources.iter().map(|source| ViewStream::spawn(s, source, inp.index)).unzip();
        let merged = super::merge::merge(&plan, &mut spilled.by_seq, &mut streams);
        let read: Vec<(u64, u64)> = streams.iter().map(|s| (s.taken, s.digest)).collect();
        drop(streams); // a reader blocked on a full channel stops
        let joined: Vec<Result<(), StreamError>> =
            readers.into_iter().map(|r| r.join().expect("a view reader does not panic")).collect();
        // The merge's own error first: the readers only stopped because of it.
        let merged = merged?;
        for r in joined {
            r?;
        }
        for ((v, c), (taken, digest)) in inp.views.iter().zip(counts).zip(read) {
            if taken != c.len || digest != c.digest {
                return Err(StreamError::Changed(v.path.display().to_string()));
            }
        }
        Ok(merged)
    })
}

/// Pass 3a, the acknowledgements in ack order: the lost ones (count, the
/// first ids) and the loss windows (the rule of [`crate::windows`]).
fn ack_pass(inp: &Inputs<'_>, kept: &Bits1, path: &Path) -> Result<(u64, Vec<String>, Vec<LossWindow>), StreamError> {
    let mut r = VarReader::open(path)?;
    let (mut count, mut sample, mut windows) = (0u64, Vec::new(), Vec::new());
    let mut open: Option<LossWindow> = None;
    let mut t_ns = 0u64;
    while let Some(slot) = r.next()? {
        let (pos, dt) = (r.expect()?, r.expect()?);
        let g = inp.index.place(slot as u32, pos as u32);
        t_ns += dt;
        if kept.get(g as usize) {
            windows.extend(open.take());
            continue;
        }
        count += 1;
        if sample.len() < SAMPLE_MAX {
            sample.push(inp.index.id(g).to_string());
        }
        match &mut open {
            Some(w) => {
                w.end_ns = t_ns;
                w.count += 1;
            }
            None => open = Some(LossWindow { start_ns: t_ns, end_ns: t_ns, count: 1, event: None }),
        }
    }
    windows.extend(open);
    for w in &mut windows {
        w.event = crate::windows::tie(w.start_ns, inp.events);
    }
    Ok((count, sample, windows))
}

/// Pass 3b, every op once by place: what is counted without an order.
#[derive(Debug, Default)]
struct Scan {
    classes: LostClasses,
    /// Per view: acknowledged writes it lacks.
    lost_on: Vec<u64>,
    /// Per pair: (acknowledged held by a and not b, the reverse).
    only: Vec<(u64, u64)>,
    resurrected: u64,
    recovered_indeterminate: u64,
}

impl Scan {
    fn lost(&self) -> u64 {
        self.classes.prefix + self.classes.middle + self.classes.postfix
    }

    fn run(inp: &Inputs<'_>, counts: &[ViewCounts], kept: &Bits1, pairs: &[(usize, usize)]) -> Scan {
        let mut scan = Scan { lost_on: vec![0; counts.len()], only: vec![(0, 0); pairs.len()], ..Scan::default() };
        for places in inp.index.client_places() {
            let kept_at = |g: &u32| kept.get(*g as usize);
            let first_kept = places.clone().find(kept_at);
            let last_kept = places.clone().rev().find(kept_at);
            for g in places {
                let outcome = inp.index.outcome(g);
                if outcome != Outcome::Ok {
                    if counts.iter().any(|c| c.holds(g)) {
                        match outcome {
                            Outcome::Fail => scan.resurrected += 1,
                            _ => scan.recovered_indeterminate += 1,
                        }
                    }
                    continue;
                }
                scan.acked(counts, pairs, g);
                if kept.get(g as usize) {
                    continue;
                }
                match (first_kept, last_kept) {
                    (Some(first), _) if g < first => scan.classes.prefix += 1,
                    (_, Some(last)) if g < last => scan.classes.middle += 1,
                    _ => scan.classes.postfix += 1,
                }
            }
        }
        scan
    }

    fn acked(&mut self, counts: &[ViewCounts], pairs: &[(usize, usize)], g: u32) {
        for (k, c) in counts.iter().enumerate() {
            if !c.holds(g) {
                self.lost_on[k] += 1;
            }
        }
        for (p, (a, b)) in pairs.iter().enumerate() {
            match (counts[*a].holds(g), counts[*b].holds(g)) {
                (true, false) => self.only[p].0 += 1,
                (false, true) => self.only[p].1 += 1,
                _ => {}
            }
        }
    }
}

/// Pass 3c, the invokes in file order, only when a sample listed in op
/// order has anything to list: the resurrected writes, and per pair the
/// acknowledged writes one replica holds and the other lacks.
#[derive(Debug, Default)]
struct Ordered {
    resurrected: Vec<String>,
    /// Per pair: the first ops only on a, the first only on b.
    only: Vec<(Vec<u32>, Vec<u32>)>,
}

fn invoke_pass(
    inp: &Inputs<'_>,
    counts: &[ViewCounts],
    pairs: &[(usize, usize)],
    path: &Path,
) -> Result<Ordered, StreamError> {
    let mut out = Ordered { resurrected: Vec::new(), only: vec![(Vec::new(), Vec::new()); pairs.len()] };
    let mut next_pos: Vec<u32> = Vec::new();
    let mut r = VarReader::open(path)?;
    while let Some(slot) = r.next()? {
        let slot = slot as usize;
        if next_pos.len() <= slot {
            next_pos.resize(slot + 1, 0);
        }
        let g = inp.index.place(slot as u32, next_pos[slot]);
        next_pos[slot] += 1;
        match inp.index.outcome(g) {
            Outcome::Fail if out.resurrected.len() < SAMPLE_MAX && counts.iter().any(|c| c.holds(g)) => {
                let holders: Vec<&str> =
                    inp.views.iter().zip(counts).filter(|(_, c)| c.holds(g)).map(|(v, _)| v.name.as_str()).collect();
                out.resurrected.push(format!("{} (failed) held by {}", inp.index.id(g), holders.join(", ")));
            }
            Outcome::Ok => {
                for (p, (a, b)) in pairs.iter().enumerate() {
                    let (only_a, only_b) = &mut out.only[p];
                    match (counts[*a].holds(g), counts[*b].holds(g)) {
                        (true, false) if only_a.len() < SAMPLE_MAX => only_a.push(g),
                        (false, true) if only_b.len() < SAMPLE_MAX => only_b.push(g),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

fn sampled(count: u64, sample: Vec<String>) -> Sampled {
    Sampled { count, sample }
}

fn seqs_text(seqs: &[u64]) -> String {
    seqs.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ")
}

/// The integrity findings (the definitions of [`crate::integrity`]).
fn integrity(
    inp: &Inputs<'_>,
    counts: &[ViewCounts],
    merged: &Merged,
    dups: &DupSample,
    scan: &Scan,
    ordered: &Ordered,
) -> Integrity {
    let strangers: BTreeSet<&str> = counts.iter().flat_map(|c| c.strangers.keys().map(String::as_str)).collect();
    let unexpected =
        sampled(strangers.len() as u64, strangers.iter().take(SAMPLE_MAX).map(|s| s.to_string()).collect());
    let mut op_seqs = merged.dup_seqs.iter();
    let dup_texts: Vec<String> = dups
        .chosen
        .iter()
        .map(|(text, k, held)| {
            let seqs = match held {
                Held::Op(_) => op_seqs.next().expect("the merge collected every chosen op's sequences"),
                Held::Stranger(s) => &counts[*k].strangers[s],
            };
            format!("{text} on {} at seq {}", inp.views[*k].name, seqs_text(seqs))
        })
        .collect();
    let per_view = inp
        .views
        .iter()
        .zip(counts)
        .zip(&merged.per_view)
        .map(|((v, c), m)| (v.name.clone(), (c.dup_ops + c.dup_strangers(), *m)))
        .collect();
    Integrity {
        unexpected,
        resurrected: sampled(scan.resurrected, ordered.resurrected.clone()),
        duplicated: sampled(dups.count, dup_texts),
        seq_mismatch: sampled(merged.mismatched, merged.sample.clone()),
        seq_mismatch_lost: merged.mismatched_lost,
        recovered_indeterminate: scan.recovered_indeterminate,
        per_view,
    }
}

/// The divergent pairs, in pair order.
fn divergence(
    inp: &Inputs<'_>,
    pairs: &[(usize, usize)],
    merged: &Merged,
    scan: &Scan,
    ordered: &Ordered,
) -> Vec<Divergence> {
    let mut out = Vec::new();
    for (p, (a, b)) in pairs.iter().enumerate() {
        let conflicts = &merged.pairs[p];
        let (only_a, only_b) = scan.only[p];
        if conflicts.conflicting == 0 && only_a == 0 && only_b == 0 {
            continue;
        }
        let mut sample_ids = conflicts.sample_ids.clone();
        if let Some((first_a, first_b)) = ordered.only.get(p) {
            for g in first_a.iter().chain(first_b) {
                let id = inp.index.id(*g).to_string();
                if sample_ids.len() < SAMPLE_MAX && !sample_ids.contains(&id) {
                    sample_ids.push(id);
                }
            }
        }
        let first = conflicts.first.clone();
        out.push(Divergence {
            a: inp.views[*a].name.clone(),
            b: inp.views[*b].name.clone(),
            first_seq: first.as_ref().map(|f| f.0),
            a_id: first.as_ref().map(|f| f.1.clone()),
            b_id: first.map(|f| f.2),
            conflicting: conflicts.conflicting,
            only_a,
            only_b,
            sample_ids,
        });
    }
    out
}

/// The per-node part of the report, every judged node in name order.
fn node_reports(
    plan: &RunPlan,
    views: &[ViewFile],
    counts: &[ViewCounts],
    merged: &Merged,
    scan: &Scan,
) -> BTreeMap<String, NodeReport> {
    let mut out = BTreeMap::new();
    for (name, p) in &plan.nodes {
        let report = match p {
            NodePlan::Unreadable { reason } => NodeReport {
                lost: 0,
                unexpected: 0,
                unreadable: true,
                unreadable_reason: Some(reason.clone()),
                held: 0,
                duplicated: 0,
                seq_mismatch: 0,
                read: None,
                read_note: None,
            },
            NodePlan::Read { offline, .. } => {
                let k = views.iter().position(|v| !v.cluster && v.name == *name).expect("a read node is a view");
                let c = &counts[k];
                NodeReport {
                    lost: scan.lost_on[k],
                    unexpected: c.stranger_entries,
                    unreadable: false,
                    unreadable_reason: None,
                    held: c.len,
                    duplicated: c.dup_ops + c.dup_strangers(),
                    seq_mismatch: merged.per_view[k],
                    read: Some(if offline.is_some() { ReadMode::Offline } else { ReadMode::Normal }),
                    read_note: offline.clone(),
                }
            }
        };
        out.insert(name.clone(), report);
    }
    out
}
