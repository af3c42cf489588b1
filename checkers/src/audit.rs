//! The durability audit: for every acknowledged write, was it durable on a
//! majority of the stream's replicas at the instant it was acknowledged?
//! No crash is needed: the power-loss tracer recorded, per node, each write
//! to a data file and each successful sync (`audit/<node>.log`, run clock:
//! `w <t_ns> <file>`, `s <start_ns> <end_ns> <file | *>`).
//!
//! A node m *holds a write durably at t* (the write invoked at i, acked at
//! t) when some data file m wrote during (i, t] was synced by a sync that
//! started after m's first write to it in that span and ended by t (a sync
//! of that file, or a syncfs/sync). "Some file" on purpose: a system whose
//! write-ahead log is synced before the ack while its data files are synced
//! later (NATS 2.15.1 with `always`) holds the write durably; a node that
//! wrote nothing in the span (the write still in user space) does not.
//! The ack is **at risk** when fewer than a majority of the stream's
//! replicas (replicas / 2 + 1) held it durably: a write unsynced on the node
//! that acked it but synced on a majority is safe, since a power loss of
//! any minority leaves a synced copy on the rest. Its exposure runs from the
//! ack until the majority-th node's first such sync ended (or the end of
//! the record: `never_synced`). Per node: the acks it gave while it did not
//! hold the write durably itself.
//!
//! What it cannot see: which bytes of a file hold which write (an
//! unrelated sync of the same file after the write counts), writes the
//! tracer does not see (mmap; docs/power-loss.md), and the acking node for
//! targets that do not name it in the history (then only the majority rule
//! applies).

use jetsam_core::audit_log::AuditLine;
use jetsam_core::history::{OpRef, OpType};
use jetsam_core::report::{Audit, AuditNode};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// The folder of per-node records in a run folder.
pub const AUDIT_DIR: &str = "audit";

/// One node's record.
#[derive(Debug, Default)]
pub struct NodeRecord {
    /// (t_ns, file index), sorted by time.
    writes: Vec<(u64, u32)>,
    /// Per file index: (start_ns, end_ns) sorted by start.
    syncs: HashMap<u32, Vec<(u64, u64)>>,
    /// syncfs/sync: (start_ns, end_ns) sorted by start.
    syncs_all: Vec<(u64, u64)>,
    last_ns: u64,
}

impl NodeRecord {
    /// Parses `audit/<node>.log` text; foreign or torn lines are skipped.
    pub fn parse(text: &str) -> NodeRecord {
        let mut files: HashMap<String, u32> = HashMap::new();
        let mut r = NodeRecord::default();
        let mut id = |name: &str| {
            let n = files.len() as u32;
            *files.entry(name.to_string()).or_insert(n)
        };
        for line in text.lines().filter_map(AuditLine::parse) {
            match line {
                AuditLine::Write { t_ns, file } => {
                    r.writes.push((t_ns, id(file)));
                    r.last_ns = r.last_ns.max(t_ns);
                }
                AuditLine::Sync { start_ns, end_ns, file } => {
                    match file {
                        None => r.syncs_all.push((start_ns, end_ns)),
                        Some(f) => r.syncs.entry(id(f)).or_default().push((start_ns, end_ns)),
                    }
                    r.last_ns = r.last_ns.max(end_ns);
                }
            }
        }
        r.writes.sort_unstable();
        r.syncs_all.sort_unstable();
        for v in r.syncs.values_mut() {
            v.sort_unstable();
        }
        r
    }

    /// When this node first held the write (invoked at `i`) durably: the
    /// earliest end of a sync covering some file it wrote in (i, t], if
    /// that sync started after the file's first write there. `None`: it
    /// wrote nothing in the span, or never synced it within the record.
    fn durable_at(&self, i: u64, t: u64) -> Option<u64> {
        let from = self.writes.partition_point(|&(w, _)| w <= i);
        let to = self.writes.partition_point(|&(w, _)| w <= t);
        let mut first: HashMap<u32, u64> = HashMap::new();
        for &(w, f) in &self.writes[from..to] {
            first.entry(f).or_insert(w);
        }
        let after = |list: &[(u64, u64)], w: u64| {
            let k = list.partition_point(|&(start, _)| start < w);
            list[k..].iter().map(|&(_, end)| end).min()
        };
        first
            .into_iter()
            .filter_map(|(f, w)| {
                let own = self.syncs.get(&f).and_then(|l| after(l, w));
                let all = after(&self.syncs_all, w);
                [own, all].into_iter().flatten().min()
            })
            .min()
    }
}

/// One acknowledged write: invoke time, ack time, acking node (if named).
#[derive(Debug, Clone)]
pub struct AckedWrite {
    pub invoked_ns: u64,
    pub acked_ns: u64,
    pub node: Option<String>,
}

/// Pairs a history's invokes with their oks, op by op in file order.
#[derive(Debug, Default)]
pub struct AckedWrites {
    invoked: HashMap<String, u64>,
    writes: Vec<AckedWrite>,
}

impl AckedWrites {
    pub fn push(&mut self, op: &OpRef<'_>) {
        match op.kind {
            OpType::Invoke => {
                self.invoked.insert(op.id.to_string(), op.t_ns);
            }
            OpType::Ok => {
                if let Some(i) = self.invoked.remove(op.id.as_ref()) {
                    let node = op.node.as_deref().map(str::to_string);
                    self.writes.push(AckedWrite { invoked_ns: i, acked_ns: op.t_ns, node });
                }
            }
            OpType::Fail | OpType::Info => {
                self.invoked.remove(op.id.as_ref());
            }
        }
    }

    /// The acknowledged writes, in ack order (file order).
    pub fn finish(self) -> Vec<AckedWrite> {
        self.writes
    }
}

/// The acknowledged writes of a run folder's history, `history.jsonl` or
/// `history.bin` (whichever it holds), in file order.
pub fn acked_writes(run_dir: &Path) -> Result<Vec<AckedWrite>, String> {
    let mut acked = AckedWrites::default();
    crate::forms::for_each_history_op(run_dir, |op| {
        acked.push(op);
        Ok(())
    })
    .map_err(|e| e.to_string())?;
    Ok(acked.finish())
}

/// The audit of acked writes against per-node records, for a stream of `replicas`.
pub fn audit(writes: &[AckedWrite], records: &BTreeMap<String, NodeRecord>, replicas: u32) -> Audit {
    let need = (replicas / 2 + 1) as usize;
    let end_ns = records.values().map(|r| r.last_ns).max().unwrap_or(0);
    let mut a = Audit::default();
    for name in records.keys() {
        a.nodes.insert(name.clone(), AuditNode::default());
    }
    for w in writes {
        let (i, t) = (w.invoked_ns, w.acked_ns);
        a.acks_checked += 1;
        // Once per node: the majority rule and the acking node's own stats both need it.
        let per_node: BTreeMap<&str, Option<u64>> =
            records.iter().map(|(name, r)| (name.as_str(), r.durable_at(i, t))).collect();
        let mut durable: Vec<u64> = per_node.values().filter_map(|d| *d).collect();
        durable.sort_unstable();
        let safe = durable.iter().filter(|&&d| d <= t).count();
        if safe < need {
            a.acks_at_risk += 1;
            let exposure = match durable.get(need - 1) {
                Some(&d) => d - t,
                None => {
                    a.never_synced += 1;
                    end_ns.saturating_sub(t)
                }
            };
            a.exposure_ns_max = a.exposure_ns_max.max(exposure);
        }
        if let Some(node) = &w.node
            && let (Some(own), Some(stats)) = (per_node.get(node.as_str()), a.nodes.get_mut(node))
        {
            stats.acks += 1;
            match *own {
                Some(d) if d <= t => {}
                other => {
                    stats.acks_at_risk += 1;
                    let exposure = other.map_or(end_ns.saturating_sub(t), |d| d - t);
                    stats.exposure_ns_max = stats.exposure_ns_max.max(exposure);
                }
            }
        }
    }
    a
}

/// The audit of a run folder, when it has `audit/`: every `audit/<node>.log`
/// against its history (`history.jsonl` or `history.bin`). `Err` names the file that could not be read.
pub fn audit_run(run_dir: &Path, replicas: u32) -> Result<Option<Audit>, String> {
    let dir = run_dir.join(AUDIT_DIR);
    if !dir.is_dir() {
        return Ok(None);
    }
    let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| format!("failed to read {}: {e}", p.display()));
    let mut records = BTreeMap::new();
    let entries = std::fs::read_dir(&dir).map_err(|e| format!("failed to list {}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(node) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".log")) else {
            continue;
        };
        records.insert(node.to_string(), NodeRecord::parse(&read(&path)?));
    }
    Ok(Some(audit(&acked_writes(run_dir)?, &records, replicas)))
}

/// Adds the run folder's audit (if it has one) to `report`: in `strong`
/// mode acks at risk are a failure reason of their own; in `async` mode they
/// are the measured window, not a failure.
pub fn apply(run_dir: &Path, report: &mut jetsam_core::report::Report, replicas: u32) -> Result<(), String> {
    let Some(a) = audit_run(run_dir, replicas)? else { return Ok(()) };
    if report.mode == jetsam_core::report::Mode::Strong
        && let Some(why) = reason(&a)
    {
        report.reasons.push(why);
        report.verdict = jetsam_core::report::Verdict::Fail;
    }
    report.audit = Some(a);
    Ok(())
}

/// The failure reason the audit gives in `strong` mode, if any.
pub fn reason(a: &Audit) -> Option<String> {
    (a.acks_at_risk > 0).then(|| {
        format!(
            "{} acknowledged write(s) at risk: acknowledged before a majority of replicas had synced them (durability audit; longest exposure {} ms)",
            a.acks_at_risk,
            a.exposure_ns_max / 1_000_000
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(i: u64, t: u64, node: &str) -> AckedWrite {
        AckedWrite { invoked_ns: i, acked_ns: t, node: Some(node.into()) }
    }

    fn records(list: &[(&str, &str)]) -> BTreeMap<String, NodeRecord> {
        list.iter().map(|(n, text)| (n.to_string(), NodeRecord::parse(text))).collect()
    }

    /// Hand-written records with known answers.
    #[test]
    fn synced_before_the_ack_is_safe_after_is_at_risk() {
        // Written at 10, synced 20..30, acked at 40: safe. Acked at 25: at risk, exposed 5.
        let r = records(&[("n1", "w 10 a\ns 20 30 a\n")]);
        let a = audit(&[ack(5, 40, "n1")], &r, 1);
        assert_eq!((a.acks_at_risk, a.nodes["n1"].acks_at_risk), (0, 0));
        let a = audit(&[ack(5, 25, "n1")], &r, 1);
        assert_eq!((a.acks_at_risk, a.exposure_ns_max, a.never_synced), (1, 5, 0));
        assert_eq!(a.nodes["n1"].acks_at_risk, 1);
        // A sync that started before the write does not cover it.
        let r = records(&[("n1", "s 8 30 a\nw 10 a\n")]);
        assert_eq!(audit(&[ack(5, 40, "n1")], &r, 1).acks_at_risk, 1);
        // syncfs/sync covers every file.
        let r = records(&[("n1", "w 10 a\ns 12 14 *\n")]);
        assert_eq!(audit(&[ack(5, 40, "n1")], &r, 1).acks_at_risk, 0);
        // Nothing written in the span (the write still in user space): at risk, never synced.
        let r = records(&[("n1", "w 1 a\ns 2 3 a\nw 100 a\n")]);
        let a = audit(&[ack(5, 40, "n1")], &r, 1);
        assert_eq!((a.acks_at_risk, a.never_synced, a.exposure_ns_max), (1, 1, 60));
    }

    /// A synced write-ahead log is enough while the data file waits.
    #[test]
    fn one_synced_file_is_enough() {
        let r = records(&[("n1", "w 10 wal\nw 11 blk\ns 12 20 wal\n")]);
        assert_eq!(audit(&[ack(5, 30, "n1")], &r, 1).acks_at_risk, 0);
    }

    /// Unsynced on the acking node but synced on a majority is safe; synced
    /// on a minority only is at risk.
    #[test]
    fn a_majority_of_replicas_decides() {
        let synced = "w 10 a\ns 11 20 a\n";
        let unsynced = "w 10 a\n";
        let r = records(&[("n1", unsynced), ("n2", synced), ("n3", synced)]);
        let a = audit(&[ack(5, 30, "n1")], &r, 3);
        assert_eq!(a.acks_at_risk, 0, "n2 and n3 hold it durably");
        assert_eq!(a.nodes["n1"].acks_at_risk, 1, "n1 acked what it had not synced");
        let r = records(&[("n1", synced), ("n2", unsynced), ("n3", unsynced)]);
        let a = audit(&[ack(5, 30, "n1")], &r, 3);
        assert_eq!((a.acks_at_risk, a.never_synced), (1, 1));
        assert_eq!(a.nodes["n1"].acks_at_risk, 0);
    }

    #[test]
    fn acked_writes_pair_invokes_with_oks() {
        let h = "{\"t_ns\":1,\"client\":0,\"type\":\"invoke\",\"id\":\"0-0\"}\n\
                 {\"t_ns\":2,\"client\":0,\"type\":\"invoke\",\"id\":\"0-1\"}\n\
                 {\"t_ns\":3,\"client\":0,\"type\":\"info\",\"id\":\"0-1\",\"error\":\"timeout\"}\n\
                 {\"t_ns\":4,\"client\":0,\"type\":\"ok\",\"id\":\"0-0\",\"seq\":1,\"node\":\"n2\"}\n";
        let mut acked = AckedWrites::default();
        for line in h.lines() {
            acked.push(&crate::forms::op_line(line).unwrap());
        }
        let w = acked.finish();
        assert_eq!(w.len(), 1);
        assert_eq!((w[0].invoked_ns, w[0].acked_ns, w[0].node.as_deref()), (1, 4, Some("n2")));
    }
}
