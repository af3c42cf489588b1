//! The run report's plots, drawn with `plotters` (SVG backend) on one time
//! axis: the same width, margins and x range for every plot so a fault band,
//! a loss window and a latency spike at the same second line up.
//!
//! plotters writes plain `<rect>` elements; the bands and loss windows are
//! found again by their fill colours (reserved for them, see [`band_colour`])
//! and given a class (`fault-band`, `loss-window`) so a browser, a test or a
//! stylesheet can tell them apart. The renderer asserts that it tagged
//! exactly as many as it drew.

use crate::series::Bucket;
use crate::timeline::{Band, Lane, kind_name};
use jetsam_core::event::EventKind;
use jetsam_core::report::LossWindow;
use plotters::prelude::*;

/// Width of every plot, in pixels.
pub const WIDTH_PX: u32 = 1000;
const LABEL_AREA_PX: u32 = 80;
const LANE_PX: u32 = 28;
const PLOT_PX: u32 = 220;
/// A band or window narrower than this share of the axis is widened to it, so it can be seen.
const MIN_WIDTH_SHARE: f64 = 0.003;

/// A plot that could not be drawn (an internal bug: the data are validated before).
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("failed to draw the {plot} plot: {why}; this is a jetsam bug, please report it")]
    Draw { plot: &'static str, why: String },
    #[error(
        "failed to find the {what} again in the {plot} plot: drew {drawn}, found {found}; this is a jetsam bug, please report it"
    )]
    Tag { plot: &'static str, what: &'static str, drawn: usize, found: usize },
}

fn draw_err(plot: &'static str) -> impl Fn(String) -> PlotError {
    move |why| PlotError::Draw { plot, why }
}

/// The fill of a band of this kind (reserved: nothing else is drawn in it).
pub fn band_colour(kind: EventKind) -> RGBColor {
    match kind {
        EventKind::Kill => RGBColor(0xC0, 0x39, 0x2B),
        EventKind::PowerLoss => RGBColor(0x8E, 0x44, 0xAD),
        EventKind::Pause => RGBColor(0xE6, 0x7E, 0x22),
        EventKind::Partition => RGBColor(0x29, 0x80, 0xB9),
        EventKind::Bitflip => RGBColor(0x16, 0xA0, 0x85),
        EventKind::Truncate => RGBColor(0x27, 0xAE, 0x60),
        _ => RGBColor(0x7F, 0x8C, 0x8D),
    }
}

/// The fill of a loss window (reserved).
pub const LOSS_COLOUR: RGBColor = RGBColor(0xE6, 0x00, 0x26);
const ACKS_COLOUR: RGBColor = RGBColor(0x1F, 0x77, 0xB4);
const P50_COLOUR: RGBColor = RGBColor(0x2C, 0xA0, 0x2C);
const P99_COLOUR: RGBColor = RGBColor(0xD6, 0x27, 0x28);

fn hex(c: RGBColor) -> String {
    format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
}

const NS_PER_S: f64 = 1e9;

fn secs(ns: u64) -> f64 {
    ns as f64 / NS_PER_S
}

/// The timeline: the network lane, one lane per node, and the loss lane.
pub fn timeline(nodes: &[String], bands: &[Band], windows: &[LossWindow], end_ns: u64) -> Result<String, PlotError> {
    const PLOT: &str = "timeline";
    let mut lanes: Vec<String> = vec!["network".into()];
    lanes.extend(nodes.iter().cloned());
    for b in bands {
        if let Lane::Node(n) = &b.lane
            && !lanes.contains(n)
        {
            lanes.push(n.clone());
        }
    }
    lanes.push("loss".into());
    let count = lanes.len();
    // Lane i (from the top) spans y in [count-1-i, count-i]; its label sits at the middle.
    let lane_of = |name: &str| lanes.iter().position(|l| l == name).expect("every lane is listed");
    let y_of = |i: usize| (count - 1 - i) as f64;
    let end_s = secs(end_ns).max(1e-3);
    let min_w = end_s * MIN_WIDTH_SHARE;
    let height = LANE_PX * u32::try_from(count).expect("few lanes") + 60;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH_PX, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| draw_err(PLOT)(e.to_string()))?;
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(LABEL_AREA_PX)
            .build_cartesian_2d(0f64..end_s, 0f64..count as f64)
            .map_err(|e| draw_err(PLOT)(e.to_string()))?;
        let label = |y: &f64| {
            let frac = y.fract();
            if (frac - 0.5).abs() > 1e-6 {
                return String::new();
            }
            let i = count - 1 - y.floor() as usize;
            lanes.get(i).cloned().unwrap_or_default()
        };
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(count * 2 + 1)
            .y_label_formatter(&label)
            .x_desc("time since the run started (s)")
            .draw()
            .map_err(|e| draw_err(PLOT)(e.to_string()))?;
        let rects = bands.iter().map(|b| {
            let lane = match &b.lane {
                Lane::Network => 0,
                Lane::Node(n) => lane_of(n),
            };
            let (x0, x1) = (secs(b.start_ns), secs(b.end_ns).max(secs(b.start_ns) + min_w));
            let y = y_of(lane);
            Rectangle::new([(x0, y + 0.15), (x1, y + 0.85)], band_colour(b.kind).mix(0.8).filled())
        });
        chart.draw_series(rects).map_err(|e| draw_err(PLOT)(e.to_string()))?;
        let y = y_of(count - 1);
        let windows_drawn = windows.iter().map(|w| {
            let (x0, x1) = (secs(w.start_ns), secs(w.end_ns).max(secs(w.start_ns) + min_w));
            Rectangle::new([(x0, y + 0.1), (x1, y + 0.6)], LOSS_COLOUR.filled())
        });
        chart.draw_series(windows_drawn).map_err(|e| draw_err(PLOT)(e.to_string()))?;
        let counts = windows
            .iter()
            .map(|w| Text::new(format!("{}", w.count), (secs(w.start_ns), y + 0.65), ("sans-serif", 12).into_font()));
        chart.draw_series(counts).map_err(|e| draw_err(PLOT)(e.to_string()))?;
        root.present().map_err(|e| draw_err(PLOT)(e.to_string()))?;
    }
    tag_timeline(&svg, bands, windows)
}

/// Tags the timeline's bands and windows; fails unless each drawn one is found once.
fn tag_timeline(svg: &str, bands: &[Band], windows: &[LossWindow]) -> Result<String, PlotError> {
    const PLOT: &str = "timeline";
    let mut tags: Vec<(String, String)> = Vec::new();
    for kind in bands.iter().map(|b| b.kind) {
        let fill = hex(band_colour(kind));
        let tag = format!("class=\"fault-band\" data-kind=\"{}\"", kind_name(kind));
        if !tags.iter().any(|(f, _)| *f == fill) {
            tags.push((fill, tag));
        }
    }
    tags.push((hex(LOSS_COLOUR), "class=\"loss-window\"".into()));
    let svg = tag_rects(svg, &tags);
    let found = svg.matches("class=\"fault-band\"").count();
    if found != bands.len() {
        return Err(PlotError::Tag { plot: PLOT, what: "fault bands", drawn: bands.len(), found });
    }
    let found = svg.matches("class=\"loss-window\"").count();
    if found != windows.len() {
        return Err(PlotError::Tag { plot: PLOT, what: "loss windows", drawn: windows.len(), found });
    }
    Ok(svg)
}

/// Adds `tag` to every `<rect` whose fill is the tag's colour.
pub(crate) fn tag_rects(svg: &str, tags: &[(String, String)]) -> String {
    let mut out = String::with_capacity(svg.len() + 64 * tags.len());
    for (i, piece) in svg.split("<rect ").enumerate() {
        if i > 0 {
            out.push_str("<rect ");
            let end = piece.find("/>").unwrap_or(piece.len());
            if let Some((_, tag)) = tags.iter().find(|(fill, _)| piece[..end].contains(&format!("fill=\"{fill}\""))) {
                out.push_str(tag);
                out.push(' ');
            }
        }
        out.push_str(piece);
    }
    out
}

/// Pieces of one line, each a run of (x, y) points.
type Segments = Vec<Vec<(f64, f64)>>;

/// A line plot over the run's time axis; `lines` are (colour, segments of
/// points): a gap between segments is time with nothing to plot.
fn over_time(
    plot: &'static str,
    y_desc: &str,
    end_ns: u64,
    lines: &[(RGBColor, Segments)],
) -> Result<String, PlotError> {
    let end_s = secs(end_ns).max(1e-3);
    let y_max = lines.iter().flat_map(|(_, s)| s.iter().flatten().map(|(_, y)| *y)).fold(0f64, f64::max).max(1.0) * 1.1;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH_PX, PLOT_PX)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| draw_err(plot)(e.to_string()))?;
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(LABEL_AREA_PX)
            .build_cartesian_2d(0f64..end_s, 0f64..y_max)
            .map_err(|e| draw_err(plot)(e.to_string()))?;
        chart
            .configure_mesh()
            .x_desc("time since the run started (s)")
            .y_desc(y_desc)
            .draw()
            .map_err(|e| draw_err(plot)(e.to_string()))?;
        for (colour, segments) in lines {
            for points in segments {
                chart
                    .draw_series(LineSeries::new(points.iter().copied(), colour.stroke_width(2)))
                    .map_err(|e| draw_err(plot)(e.to_string()))?;
            }
        }
        root.present().map_err(|e| draw_err(plot)(e.to_string()))?;
    }
    Ok(svg)
}

/// Acknowledged writes per second, at the middle of each bucket.
pub fn throughput(buckets: &[Bucket], end_ns: u64) -> Result<String, PlotError> {
    let half = half_width_s(buckets);
    let points = buckets.iter().map(|b| (secs(b.start_ns) + half, b.acks_per_s)).collect();
    over_time("throughput", "acks/s", end_ns, &[(ACKS_COLOUR, vec![points])])
}

/// p50 and p99 ack latency, at the middle of each bucket that has acks
/// (a bucket without acks breaks the line: no latency is known there).
pub fn latency(buckets: &[Bucket], end_ns: u64) -> Result<String, PlotError> {
    let half = half_width_s(buckets);
    let pick = |f: fn(&Bucket) -> Option<f64>| -> Segments {
        let mut segments = vec![Vec::new()];
        for b in buckets {
            match f(b) {
                Some(v) => segments.last_mut().expect("one segment at least").push((secs(b.start_ns) + half, v)),
                None if segments.last().is_some_and(|s| !s.is_empty()) => segments.push(Vec::new()),
                None => {}
            }
        }
        segments
    };
    over_time(
        "latency",
        "ack latency (ms)",
        end_ns,
        &[(P50_COLOUR, pick(|b| b.p50_ms)), (P99_COLOUR, pick(|b| b.p99_ms))],
    )
}

fn half_width_s(buckets: &[Bucket]) -> f64 {
    match buckets {
        [a, b, ..] => secs(b.start_ns - a.start_ns) / 2.0,
        _ => 0.5,
    }
}

/// The HTML legend of the plots' colours (outside the SVG, so it adds no rect).
pub fn legend_html() -> String {
    let kinds = [
        EventKind::Kill,
        EventKind::PowerLoss,
        EventKind::Pause,
        EventKind::Partition,
        EventKind::Bitflip,
        EventKind::Truncate,
        EventKind::IoError,
    ];
    let mut out = String::from("<p class=\"legend\">");
    for k in kinds {
        out.push_str(&format!("<span style=\"background:{}\"></span>{} ", hex(band_colour(k)), kind_name(k)));
    }
    out.push_str(&format!("<span style=\"background:{}\"></span>loss window (count above) ", hex(LOSS_COLOUR)));
    out.push_str(&format!(
        "&nbsp; lines: <span style=\"background:{}\"></span>acks/s <span style=\"background:{}\"></span>p50 <span style=\"background:{}\"></span>p99</p>",
        hex(ACKS_COLOUR),
        hex(P50_COLOUR),
        hex(P99_COLOUR)
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_band_and_window_is_tagged_once() {
        let band = |lane: Lane, kind, s, e| Band { lane, kind, start_ns: s, end_ns: e, heal: None, fault: 0 };
        let bands = vec![
            band(Lane::Node("n1".into()), EventKind::PowerLoss, 1_000_000_000, 2_000_000_000),
            band(Lane::Node("n2".into()), EventKind::PowerLoss, 1_000_000_000, 1_000_000_000),
            band(Lane::Network, EventKind::Partition, 3_000_000_000, 4_000_000_000),
        ];
        let w = |s, e, count| LossWindow { start_ns: s, end_ns: e, count, event: None };
        let windows = vec![w(900_000_000, 950_000_000, 12), w(5_000_000_000, 5_000_000_000, 1)];
        let svg = timeline(&["n1".into(), "n2".into(), "n3".into()], &bands, &windows, 6_000_000_000).unwrap();
        assert_eq!(svg.matches("class=\"fault-band\" data-kind=\"power-loss\"").count(), 2);
        assert_eq!(svg.matches("class=\"fault-band\" data-kind=\"partition\"").count(), 1);
        assert_eq!(svg.matches("class=\"loss-window\"").count(), 2);
        for lane in ["network", "n1", "n2", "n3", "loss"] {
            assert!(svg.contains(&format!("\n{lane}\n</text>")), "lane label {lane} in {svg}");
        }
        assert!(svg.contains("\n12\n</text>"), "the window's count is drawn");
    }
}
