//! `comparison.html`: the cells of a matrix (one scenario run with each
//! combination of settings, same seed and fault schedule) side by side:
//! one table row per cell and bar plots of lost writes and acknowledged
//! writes per second per cell. Bars carry `class="lost-bar"` and
//! `class="acks-bar"` (found by their reserved fills, as in the run page).

use crate::plots::{PlotError, WIDTH_PX};
use crate::run_page::{STYLE, esc};
use plotters::prelude::*;
use std::fmt::Write;

/// One cell's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    /// The value of each matrix key, in key order.
    pub values: Vec<String>,
    /// `pass`, `fail`, `unknown`, or `error` when the run had no verdict.
    pub verdict: String,
    /// What the scenario expects (`pass` or `fail`).
    pub expect: String,
    pub acked: u64,
    pub acked_per_s: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub lost: u64,
    pub windows: u64,
    /// Length of the longest loss window.
    pub longest_window_ms: f64,
    pub divergent: bool,
    /// The cell's run folder, relative to the page.
    pub folder: String,
    /// Why the run had no verdict.
    pub error: Option<String>,
}

impl Cell {
    /// The cell's label: its key=value pairs.
    pub fn label(&self, keys: &[String]) -> String {
        keys.iter().zip(&self.values).map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
    }
}

const LOST_COLOUR: RGBColor = RGBColor(0xE6, 0x00, 0x26);
const ACKS_COLOUR: RGBColor = RGBColor(0x1F, 0x77, 0xB4);

/// A bar per cell; bars carry `class`.
fn bars(
    plot: &'static str,
    y_desc: &str,
    labels: &[String],
    values: &[f64],
    colour: RGBColor,
    class: &str,
) -> Result<String, PlotError> {
    let draw = |why: String| PlotError::Draw { plot, why };
    let n = values.len().max(1);
    let y_max = values.iter().copied().fold(0f64, f64::max).max(1.0) * 1.15;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH_PX, 260)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| draw(e.to_string()))?;
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(80)
            .build_cartesian_2d(0f64..n as f64, 0f64..y_max)
            .map_err(|e| draw(e.to_string()))?;
        let label = |x: &f64| {
            if (x.fract() - 0.5).abs() > 1e-6 {
                return String::new();
            }
            labels.get(x.floor() as usize).cloned().unwrap_or_default()
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n * 2 + 1)
            .x_label_formatter(&label)
            .y_desc(y_desc)
            .draw()
            .map_err(|e| draw(e.to_string()))?;
        let rects = values
            .iter()
            .enumerate()
            .map(|(i, v)| Rectangle::new([(i as f64 + 0.2, 0.0), (i as f64 + 0.8, *v)], colour.filled()));
        chart.draw_series(rects).map_err(|e| draw(e.to_string()))?;
        let numbers = values.iter().enumerate().map(|(i, v)| {
            Text::new(format!("{v:.0}"), (i as f64 + 0.45, *v + y_max * 0.02), ("sans-serif", 12).into_font())
        });
        chart.draw_series(numbers).map_err(|e| draw(e.to_string()))?;
        root.present().map_err(|e| draw(e.to_string()))?;
    }
    let fill = format!("#{:02X}{:02X}{:02X}", colour.0, colour.1, colour.2);
    let tagged = crate::plots::tag_rects(&svg, &[(fill, format!("class=\"{class}\""))]);
    let found = tagged.matches(&format!("class=\"{class}\"")).count();
    if found != values.len() {
        return Err(PlotError::Tag { plot, what: "bars", drawn: values.len(), found });
    }
    Ok(tagged)
}

fn opt_ms(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.1}")).unwrap_or_default()
}

/// The whole page: `title` names the scenario and the seed.
pub fn render(title: &str, keys: &[String], cells: &[Cell]) -> Result<String, PlotError> {
    let mut h = String::new();
    let title = esc(title);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>jetsam matrix {title}</title><style>{STYLE}</style></head><body>\n<h1>jetsam matrix {title}</h1>\n"
    );
    let _ = writeln!(
        h,
        "<p>{} cell(s), the same seed and fault schedule in each; a cell's report is its folder's report.html.</p>",
        cells.len()
    );
    h.push_str("<table id=\"cells\"><tr>");
    for k in keys {
        let _ = write!(h, "<th>{}</th>", esc(k));
    }
    h.push_str("<th>verdict</th><th>expect</th><th>acked</th><th>acked/s</th><th>p50 ms</th><th>p99 ms</th><th>lost</th><th>loss windows</th><th>longest window ms</th><th>divergent</th><th>report</th></tr>\n");
    for c in cells {
        h.push_str("<tr class=\"cell\">");
        for v in &c.values {
            let _ = write!(h, "<td>{}</td>", esc(v));
        }
        let verdict = match &c.error {
            Some(e) => format!("<span class=\"verdict unknown\" title=\"{}\">{}</span>", esc(e), esc(&c.verdict)),
            None => format!("<span class=\"verdict {0}\">{0}</span>", esc(&c.verdict)),
        };
        let _ = writeln!(
            h,
            "<td>{verdict}</td><td>{}</td><td>{}</td><td>{:.0}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.0}</td><td>{}</td><td><a href=\"{}/report.html\">report.html</a></td></tr>",
            esc(&c.expect),
            c.acked,
            c.acked_per_s,
            opt_ms(c.p50_ms),
            opt_ms(c.p99_ms),
            c.lost,
            c.windows,
            c.longest_window_ms,
            c.divergent,
            esc(&c.folder)
        );
    }
    h.push_str("</table>\n");
    let labels: Vec<String> = cells.iter().map(|c| c.values.join(" ")).collect();
    h.push_str("<h2>Acknowledged writes lost per cell</h2>\n");
    let lost: Vec<f64> = cells.iter().map(|c| c.lost as f64).collect();
    h.push_str(&bars("lost per cell", "lost", &labels, &lost, LOST_COLOUR, "lost-bar")?);
    h.push_str("<h2>Acknowledged writes per second per cell</h2>\n");
    let acks: Vec<f64> = cells.iter().map(|c| c.acked_per_s).collect();
    h.push_str(&bars("throughput per cell", "acks/s", &labels, &acks, ACKS_COLOUR, "acks-bar")?);
    h.push_str("</body></html>\n");
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_row_and_one_bar_of_each_plot_per_cell() {
        let cell = |sync: &str, lost: u64| Cell {
            values: vec![sync.into()],
            verdict: if lost == 0 { "pass".into() } else { "fail".into() },
            expect: "pass".into(),
            acked: 1000,
            acked_per_s: 100.0,
            p50_ms: Some(1.5),
            p99_ms: None,
            lost,
            windows: u64::from(lost > 0),
            longest_window_ms: 0.0,
            divergent: false,
            folder: format!("stream.sync={sync}"),
            error: None,
        };
        let cells = vec![cell("always", 0), cell("200ms", 17), cell("2m", 0)];
        let html = render("default seed 7", &["stream.sync".into()], &cells).unwrap();
        assert_eq!(html.matches("<tr class=\"cell\">").count(), 3);
        assert_eq!(html.matches("class=\"lost-bar\"").count(), 3);
        assert_eq!(html.matches("class=\"acks-bar\"").count(), 3);
        assert!(html.contains("<a href=\"stream.sync=200ms/report.html\">"));
        assert!(html.contains("\n200ms\n</text>"), "the cell's label is on the x axis");
        assert_eq!(cells[1].label(&["stream.sync".into()]), "stream.sync=200ms");
    }
}
