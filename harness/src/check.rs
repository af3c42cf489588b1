//! `jetsam check RUN_DIR`: re-checks a saved run folder offline. Reads the
//! folder (docs/formats.md), decides with jetsam-checkers, writes
//! `RUN_DIR/report.json` (keeping a `latency` key that `jetsam run` wrote),
//! prints the summary or the report JSON, and exits 0 pass / 1 fail /
//! 3 unknown / 2 bad input / 4 when report.json cannot be written.
//! It runs no process and opens no socket.

use jetsam_checkers::engine::{Engine, check_folder};
use jetsam_checkers::{Overrides, render_summary};
use jetsam_core::exit;
use jetsam_core::report::{Latency, Mode, Report};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The run folder: history.jsonl, recovered/<node>.jsonl, and optionally
    /// scenario.resolved.toml and events.jsonl (docs/formats.md).
    pub run_dir: PathBuf,
    /// Print report.json instead of the human summary.
    #[arg(long)]
    pub json: bool,
    /// Consistency mode to judge by (overrides the scenario; default strong).
    #[arg(long, value_parser = parse_mode)]
    pub mode: Option<Mode>,
    /// Longest acceptable loss window in async mode, e.g. "2s" (overrides the scenario).
    #[arg(long, value_parser = parse_window_bound)]
    pub window_bound: Option<Duration>,
    /// The run's nodes, comma-separated, e.g. n1,n2,n3 (overrides the scenario; default:
    /// the recovered/*.jsonl files present).
    #[arg(long, value_delimiter = ',')]
    pub nodes: Option<Vec<String>>,
    /// How to hold the run while checking: `memory` (the whole history and
    /// every view in compact structures, ~15 bytes per write), `stream`
    /// (flat memory, ~130 MiB at any size; 14-26 bytes per write spilled to
    /// TMPDIR), or `auto`
    /// (stream when the history holds more than about 2 million writes).
    /// Both engines give the same report.
    #[arg(long, default_value = "auto", value_parser = parse_engine)]
    pub engine: Engine,
}

fn parse_engine(s: &str) -> Result<Engine, String> {
    s.parse()
}

fn parse_mode(s: &str) -> Result<Mode, String> {
    s.parse()
}

fn parse_window_bound(s: &str) -> Result<Duration, String> {
    jetsam_core::duration::parse_duration(s).map_err(|e| e.to_string())
}

/// What went wrong writing the report. Environment error (exit code 4): the
/// input was fine.
#[derive(Debug, thiserror::Error)]
pub enum WriteReportError {
    #[error("failed to write {}: {source}; check that the run folder is writable", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The `latency` of an existing report.json, so a re-check keeps what `jetsam
/// run` measured. A report that cannot be read is replaced; the warning says so.
fn previous_latency(path: &Path) -> Option<Latency> {
    let text = std::fs::read_to_string(path).ok()?;
    let value: serde_json::Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            eprintln!(
                "warning: {} is not valid JSON ({e}); it is replaced and any latency in it is lost",
                path.display()
            );
            return None;
        }
    };
    let latency = value.get("latency")?;
    if latency.is_null() {
        return None;
    }
    match serde_json::from_value(latency.clone()) {
        Ok(l) => Some(l),
        Err(e) => {
            eprintln!("warning: the latency in {} cannot be read ({e}); it is dropped", path.display());
            None
        }
    }
}

/// Writes report.json next to the run's files, through a temporary file so
/// a crash leaves the old report or the new one, never half of one.
pub fn write_report(run_dir: &Path, report: &Report) -> Result<(), WriteReportError> {
    let path = run_dir.join(jetsam_checkers::load::REPORT_FILE);
    let tmp = run_dir.join(".report.json.tmp");
    let mut text = serde_json::to_string_pretty(report).expect("a report always serializes");
    text.push('\n');
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|source| WriteReportError::Write { path, source })
}

pub fn execute(args: CheckArgs) -> i32 {
    let overrides = Overrides { mode: args.mode, window_bound: args.window_bound, nodes: args.nodes };
    let (mut report, config) = match check_folder(&args.run_dir, &overrides, args.engine) {
        Ok(checked) => checked,
        Err(e) => {
            eprintln!("error: {e}");
            return e.exit_code();
        }
    };
    let replicas = config.replicas.unwrap_or(config.nodes.len() as u32);
    if let Err(e) = jetsam_checkers::audit::apply(&args.run_dir, &mut report, replicas) {
        eprintln!("error: {e}");
        return exit::BAD_INPUT;
    }
    report.latency = previous_latency(&args.run_dir.join(jetsam_checkers::load::REPORT_FILE));
    if let Err(e) = write_report(&args.run_dir, &report) {
        eprintln!("error: {e}");
        return exit::ENVIRONMENT;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).expect("a report always serializes"));
    } else {
        print!("{}", render_summary(&report));
    }
    report.verdict.exit_code()
}
