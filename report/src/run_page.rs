//! `report.html`: one run on one page. From the top: the verdict with its
//! reasons, the run's facts and its replay command, the fault timeline
//! (bands per node with their heals, loss windows on the same axis with
//! their counts), acks/s and p50/p99 ack latency over time, the faults and
//! loss windows as tables (each window with the fault it follows), and the
//! per-node table.

use crate::plots::{self, PlotError};
use crate::series::{Ack, buckets};
use crate::timeline::{bands, kind_name};
use jetsam_core::event::{Event, faults};
use jetsam_core::report::{Report, Verdict};
use std::fmt::Write;

/// What the page shows besides the report and the timeline.
#[derive(Debug, Clone, Default)]
pub struct RunInfo {
    /// The scenario's name.
    pub title: String,
    /// (what, value) shown as the run's facts: target, version, mode, sync, seed, ...
    pub facts: Vec<(String, String)>,
    /// The run's nodes, in lane order.
    pub nodes: Vec<String>,
    /// The command that replays the run, when known.
    pub replay: Option<String>,
    /// Nanoseconds from the run's start to its last recorded op or event.
    pub end_ns: u64,
}

/// HTML-escapes text.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

pub(crate) fn secs(ns: u64) -> String {
    format!("{:.3}s", ns as f64 / 1e9)
}

pub(crate) const STYLE: &str = "body{font-family:sans-serif;margin:1.5em;max-width:1040px;color:#222}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}\
td:first-child,th:first-child{text-align:left}th{background:#f3f3f3}\
.verdict{display:inline-block;padding:2px 10px;border-radius:4px;color:#fff;font-weight:bold}\
.pass{background:#2e7d32}.fail{background:#c62828}.unknown{background:#6d6d6d}\
pre{background:#f6f6f6;padding:6px;overflow-x:auto}.legend span{display:inline-block;width:12px;height:12px;margin:0 4px 0 10px;vertical-align:middle}\
svg{display:block}";

pub(crate) fn verdict_badge(v: Verdict) -> String {
    format!("<span class=\"verdict {v}\" id=\"verdict\">{v}</span>")
}

/// The whole page.
pub fn render(info: &RunInfo, report: &Report, events: &[Event], acks: &[Ack]) -> Result<String, PlotError> {
    let end_ns = info.end_ns.max(events.last().map_or(0, |e| e.t_ns));
    let bands = bands(events, end_ns);
    let faults = faults(events);
    let series = buckets(acks, end_ns);
    let mut h = String::new();
    let title = esc(&info.title);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>jetsam run {title}</title><style>{STYLE}</style></head><body>\n"
    );
    let _ = writeln!(h, "<h1>jetsam run {title} {}</h1>", verdict_badge(report.verdict));
    if !report.reasons.is_empty() {
        h.push_str("<ul id=\"reasons\">");
        for r in &report.reasons {
            let _ = write!(h, "<li>{}</li>", esc(r));
        }
        h.push_str("</ul>\n");
    }
    h.push_str("<table id=\"facts\">");
    let mut facts = info.facts.clone();
    facts.push(("acknowledged".into(), report.acked.to_string()));
    facts.push(("lost".into(), report.lost.to_string()));
    facts.push(("divergent".into(), report.divergent.to_string()));
    facts.push(("loss windows".into(), report.loss_windows.len().to_string()));
    if let Some(l) = &report.latency {
        facts.push((
            "ack latency p50 / p99 / max".into(),
            format!("{} / {} / {} ms", ms(l.p50_us), ms(l.p99_us), ms(l.max_us)),
        ));
    }
    for (k, v) in &facts {
        let _ = write!(h, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(v));
    }
    h.push_str("</table>\n");
    if let Some(replay) = &info.replay {
        let _ = writeln!(h, "<p>Replay:</p><pre id=\"replay\">{}</pre>", esc(replay));
    }
    let _ = writeln!(
        h,
        "<h2>Timeline</h2><p>{} fault(s), {} injection(s); a band runs from the injection to its heal (to the run's end when nothing healed it).</p>",
        faults.len(),
        bands.len()
    );
    h.push_str(&plots::legend_html());
    h.push_str(&plots::timeline(&info.nodes, &bands, &report.loss_windows, end_ns)?);
    h.push_str("<h2>Acknowledged writes per second</h2>\n");
    h.push_str(&plots::throughput(&series, end_ns)?);
    h.push_str("<h2>Ack latency p50 (green) and p99 (red)</h2>\n");
    h.push_str(&plots::latency(&series, end_ns)?);
    faults_table(&mut h, events, &faults, &bands);
    windows_table(&mut h, report);
    nodes_table(&mut h, report);
    h.push_str("</body></html>\n");
    Ok(h)
}

fn ms(us: u64) -> String {
    format!("{:.1}", us as f64 / 1000.0)
}

fn faults_table(
    h: &mut String,
    events: &[Event],
    faults: &[jetsam_core::event::Fault],
    bands: &[crate::timeline::Band],
) {
    h.push_str("<h2>Faults</h2><table id=\"faults\"><tr><th>#</th><th>kind</th><th>nodes</th><th>at</th><th>healed</th><th>details</th></tr>\n");
    for (i, f) in faults.iter().enumerate() {
        let healed: Vec<String> = bands
            .iter()
            .filter(|b| b.fault == i)
            .map(|b| match b.heal {
                Some(k) => format!("{} at {}", kind_name(k), secs(b.end_ns)),
                None => "not healed".into(),
            })
            .collect();
        let mut healed_unique: Vec<String> = Vec::new();
        for x in healed {
            if !healed_unique.contains(&x) {
                healed_unique.push(x);
            }
        }
        let first = &events[f.events[0]];
        let details: Vec<String> = first
            .details
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "fault" | "planned_ns" | "files"))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = writeln!(
            h,
            "<tr class=\"fault\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            i + 1,
            kind_name(f.kind),
            esc(&f.nodes.join(", ")),
            secs(f.t_ns),
            esc(&healed_unique.join("; ")),
            esc(&details.join(" "))
        );
    }
    h.push_str("</table>\n");
}

fn windows_table(h: &mut String, report: &Report) {
    let bound = report.window_bound_ns.map(|b| format!(" (async bound {})", secs(b))).unwrap_or_default();
    let _ = writeln!(
        h,
        "<h2>Loss windows{bound}</h2><table id=\"loss-windows\"><tr><th>start</th><th>end</th><th>length</th><th>lost</th><th>fault it follows</th></tr>"
    );
    for w in &report.loss_windows {
        let fault = match &w.event {
            Some(e) => format!("{} [{}] at {}", kind_name(e.kind), e.nodes.join(", "), secs(e.t_ns)),
            None => "none".into(),
        };
        let _ = writeln!(
            h,
            "<tr class=\"loss-row\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            secs(w.start_ns),
            secs(w.end_ns),
            secs(w.end_ns - w.start_ns),
            w.count,
            esc(&fault)
        );
    }
    h.push_str("</table>\n");
}

fn nodes_table(h: &mut String, report: &Report) {
    h.push_str("<h2>Nodes</h2><table id=\"nodes\"><tr><th>node</th><th>held</th><th>lost</th><th>unexpected</th><th>duplicated</th><th>seq-mismatch</th><th>status</th></tr>\n");
    for (name, n) in &report.nodes {
        let status = match (&n.unreadable_reason, n.unreadable, &n.read_note) {
            (Some(why), _, _) => format!("unreadable: {why}"),
            (None, true, _) => "unreadable".into(),
            (None, false, Some(note)) => format!("read offline: {note}"),
            (None, false, None) => "read".into(),
        };
        let _ = writeln!(
            h,
            "<tr class=\"node\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(name),
            n.held,
            n.lost,
            n.unexpected,
            n.duplicated,
            n.seq_mismatch,
            esc(&status)
        );
    }
    h.push_str("</table>\n");
}
