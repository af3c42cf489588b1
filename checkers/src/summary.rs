//! The human summary of a report, as `jetsam check` and `jetsam run` print
//! it: verdict and reasons, counts, loss windows, a per-node table and the
//! first lost ids. It renders only what the report holds (so a summary
//! printed from a saved report.json says the same thing) and decides
//! nothing.

use jetsam_core::report::{ReadMode, Report, Sampled};
use std::fmt::Write;

/// Seconds, for times since the run started: millisecond precision when
/// that is exact, else microseconds (short windows must not read as 0).
fn secs(ns: u64) -> String {
    let frac = ns % 1_000_000_000;
    if frac.is_multiple_of(1_000_000) {
        format!("{}.{:03}s", ns / 1_000_000_000, frac / 1_000_000)
    } else {
        format!("{}.{:06}s", ns / 1_000_000_000, frac / 1_000)
    }
}

fn sampled(out: &mut String, label: &str, s: &Sampled) {
    if s.count > 0 {
        let _ = writeln!(out, "  {label}: {} (e.g. {})", s.count, s.sample.join("; "));
    }
}

/// Renders the summary; every line ends with a newline.
pub fn render_summary(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "verdict: {} ({} mode)", report.verdict.to_string().to_uppercase(), report.mode);
    for r in &report.reasons {
        let _ = writeln!(out, "  - {r}");
    }
    let _ = writeln!(
        out,
        "writes: {} attempted, {} acknowledged, {} failed, {} indeterminate ({} of them found on a node)",
        report.attempted, report.acked, report.failed, report.indeterminate, report.recovered_indeterminate
    );
    let c = &report.lost_classes;
    let _ = writeln!(
        out,
        "lost: {} acknowledged (prefix {}, middle {}, postfix {}){}",
        report.lost,
        c.prefix,
        c.middle,
        c.postfix,
        match report.lost_cluster_view {
            Some(n) => format!("; {n} missing from the cluster view"),
            None => String::new(),
        }
    );
    if !report.lost_sample.is_empty() {
        let _ = writeln!(out, "  first lost ids: {}", report.lost_sample.join(", "));
    }
    let anomalies = [&report.unexpected, &report.resurrected, &report.duplicated, &report.seq_mismatch];
    if anomalies.iter().any(|s| s.count > 0) {
        let _ = writeln!(out, "anomalies:");
        sampled(&mut out, "unexpected", &report.unexpected);
        sampled(&mut out, "resurrected", &report.resurrected);
        sampled(&mut out, "duplicated", &report.duplicated);
        sampled(&mut out, "seq-mismatch", &report.seq_mismatch);
        if report.seq_mismatch_lost > 0 {
            let _ = writeln!(
                out,
                "    {} of them lost writes whose sequences were handed out again",
                report.seq_mismatch_lost
            );
        }
    }
    if report.divergent {
        let _ = writeln!(out, "divergent: yes");
        for d in &report.divergence {
            let first = match (d.first_seq, &d.a_id, &d.b_id) {
                (Some(s), Some(a), Some(b)) => format!("first at seq {s} ({} has {a}, {} has {b})", d.a, d.b),
                _ => "no conflicting sequence".to_string(),
            };
            let _ = writeln!(
                out,
                "  {} vs {}: {} conflicting seq(s), {first}; acknowledged only on {}: {}, only on {}: {}; ids: {}",
                d.a,
                d.b,
                d.conflicting,
                d.a,
                d.only_a,
                d.b,
                d.only_b,
                d.sample_ids.join(", ")
            );
        }
    } else {
        let _ = writeln!(out, "divergent: no");
    }
    if let Some(a) = &report.audit {
        let _ = writeln!(
            out,
            "audit: {} of {} acknowledged write(s) at risk (acked before a majority had synced them), longest exposure {}{}",
            a.acks_at_risk,
            a.acks_checked,
            secs(a.exposure_ns_max),
            if a.never_synced > 0 { format!(", {} never synced", a.never_synced) } else { String::new() }
        );
    }
    if report.loss_windows.is_empty() {
        let _ = writeln!(out, "loss windows: none");
    } else {
        let bound = report.window_bound_ns.map(|b| format!(" (bound {})", secs(b))).unwrap_or_default();
        let _ = writeln!(out, "loss windows: {}{bound}", report.loss_windows.len());
        for w in &report.loss_windows {
            let event = match &w.event {
                Some(e) => format!(
                    "; fault: {} [{}] at {}",
                    serde_json::to_value(e.kind).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
                    e.nodes.join(","),
                    secs(e.t_ns)
                ),
                None => "; no fault event".to_string(),
            };
            let _ = writeln!(
                out,
                "  {} .. {} (length {}): {} lost{event}",
                secs(w.start_ns),
                secs(w.end_ns),
                secs(w.end_ns - w.start_ns),
                w.count
            );
        }
    }
    let name_width = report.nodes.keys().map(|n| n.len()).max().unwrap_or(4).max(4);
    let _ = writeln!(
        out,
        "{:<name_width$}  {:>10}  {:>10}  {:>10}  {:>10}  {:>12}  status",
        "node", "held", "lost", "unexpected", "duplicated", "seq-mismatch"
    );
    for (name, n) in &report.nodes {
        let status = match (&n.unreadable, &n.unreadable_reason, n.read) {
            (true, Some(r), _) => format!("unreadable: {r}"),
            (true, None, _) => "unreadable".to_string(),
            (false, _, Some(ReadMode::Offline)) => {
                format!("read offline: {}", n.read_note.as_deref().unwrap_or("no note given"))
            }
            (false, _, _) => "read".to_string(),
        };
        let _ = writeln!(
            out,
            "{name:<name_width$}  {:>10}  {:>10}  {:>10}  {:>10}  {:>12}  {status}",
            n.held, n.lost, n.unexpected, n.duplicated, n.seq_mismatch
        );
    }
    if let Some(l) = &report.latency {
        let _ = writeln!(
            out,
            "ack latency: p50 {}us, p90 {}us, p99 {}us, max {}us",
            l.p50_us, l.p90_us, l.p99_us, l.max_us
        );
    }
    out
}
