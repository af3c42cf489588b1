//! `report.html` of a run folder: reads what the run wrote (report.json,
//! events.jsonl, history.jsonl or history.bin, scenario.resolved.toml) and has
//! jetsam-report render it. `jetsam run` writes it at the end of every run
//! that reached a verdict; `jetsam report RUN_FOLDER` rebuilds it offline
//! (e.g. after `jetsam check` rewrote report.json).

use jetsam_checkers::load::{EVENTS_FILE, REPORT_FILE, SCENARIO_FILE};
use jetsam_core::exit;
use jetsam_core::history::OpType;
use jetsam_core::report::Report;
use jetsam_core::scenario::Scenario;
use jetsam_report::run_page::RunInfo;
use jetsam_report::series::Ack;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The page's file name in a run folder.
pub const HTML_FILE: &str = "report.html";

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The run folder (it must hold report.json).
    pub run_dir: PathBuf,
}

/// Why the page could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportPageError {
    #[error("failed to read {}: {why}; give a run folder that `jetsam run` or `jetsam check` completed", path.display())]
    Input { path: PathBuf, why: String },
    #[error(transparent)]
    History(#[from] jetsam_checkers::LoadRunError),
    #[error(transparent)]
    Plot(#[from] jetsam_report::plots::PlotError),
    #[error("failed to write {}: {source}; check that the run folder is writable", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ReportPageError {
    pub fn exit_code(&self) -> i32 {
        match self {
            ReportPageError::Input { .. } | ReportPageError::History(_) => exit::BAD_INPUT,
            ReportPageError::Plot(_) | ReportPageError::Write { .. } => exit::ENVIRONMENT,
        }
    }
}

pub fn execute(args: ReportArgs) -> i32 {
    match write(&args.run_dir) {
        Ok(path) => {
            println!("wrote {}", path.display());
            exit::PASS
        }
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

fn input_err(path: &Path) -> impl Fn(String) -> ReportPageError + '_ {
    move |why| ReportPageError::Input { path: path.to_path_buf(), why }
}

/// The acknowledged writes of a run folder's history (`history.jsonl` or
/// `history.bin`) with their latencies, and the time of its last op.
fn acks(run_dir: &Path) -> Result<(Vec<Ack>, u64), ReportPageError> {
    let mut invoked: HashMap<String, u64> = HashMap::new();
    let mut acks = Vec::new();
    let mut last_ns = 0;
    jetsam_checkers::forms::for_each_history_op(run_dir, |op| {
        last_ns = last_ns.max(op.t_ns);
        match op.kind {
            OpType::Invoke => {
                invoked.insert(op.id.to_string(), op.t_ns);
            }
            OpType::Ok => {
                let at = invoked.remove(op.id.as_ref()).ok_or_else(|| format!("ok of {} without its invoke", op.id))?;
                acks.push(Ack { t_ns: op.t_ns, latency_ns: op.t_ns.saturating_sub(at) });
            }
            OpType::Fail | OpType::Info => {
                invoked.remove(op.id.as_ref());
            }
        }
        Ok(())
    })?;
    Ok((acks, last_ns))
}

/// The command that replays the run: from the resolved scenario's first
/// line, plus the NATS version it ran (which the scenario may not pin).
fn replay(text: &str, scenario: &Scenario) -> Option<String> {
    let first = text.lines().next()?;
    let (_, command) = first.split_once("replay with: ")?;
    let mut command = command.trim().to_string();
    if scenario.target.kind == "nats"
        && let Some(v) = &scenario.target.version
        && !command.contains("--nats-version")
    {
        command.push_str(&format!(" --nats-version {v}"));
    }
    Some(command)
}

/// The page's facts and lanes from the resolved scenario (absent for a
/// folder `jetsam check` judged without one: then the nodes come from the
/// report).
fn info(run_dir: &Path, report: &Report) -> Result<RunInfo, ReportPageError> {
    let path = run_dir.join(SCENARIO_FILE);
    let mut info = RunInfo { nodes: report.nodes.keys().cloned().collect(), ..RunInfo::default() };
    info.title = run_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    info.facts.push(("mode".into(), report.mode.to_string()));
    if !path.exists() {
        return Ok(info);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| input_err(&path)(e.to_string()))?;
    let s = Scenario::from_toml_str(&path.display().to_string(), &text).map_err(|e| input_err(&path)(e.to_string()))?;
    info.title = s.name.clone();
    info.nodes = (1..=s.nodes).map(|i| format!("n{i}")).collect();
    info.replay = replay(&text, &s);
    let mut target = s.target.kind.clone();
    for extra in [&s.target.version, &s.target.bug, &s.target.file].into_iter().flatten() {
        target.push_str(&format!(" {extra}"));
    }
    info.facts = vec![
        ("target".into(), target),
        ("nodes / replicas".into(), format!("{} / {}", s.nodes, s.stream.replicas)),
        ("mode".into(), report.mode.to_string()),
        ("sync".into(), s.stream.sync.clone().unwrap_or_else(|| "target default".into())),
        ("seed".into(), s.seed.map(|x| x.to_string()).unwrap_or_default()),
        ("duration".into(), jetsam_core::duration::format_duration(s.duration)),
        ("faults planned".into(), s.faults.iter().map(|f| f.kind.clone()).collect::<Vec<_>>().join(", ")),
    ];
    Ok(info)
}

/// Renders and writes `report.html` of `run_dir`; returns its path.
pub fn write(run_dir: &Path) -> Result<PathBuf, ReportPageError> {
    let report_path = run_dir.join(REPORT_FILE);
    let text = std::fs::read_to_string(&report_path).map_err(|e| input_err(&report_path)(e.to_string()))?;
    let report: Report = serde_json::from_str(&text).map_err(|e| input_err(&report_path)(e.to_string()))?;
    let events_path = run_dir.join(EVENTS_FILE);
    let events = if events_path.exists() {
        jetsam_checkers::load::load_events(&events_path).map_err(|e| input_err(&events_path)(e.to_string()))?
    } else {
        Vec::new()
    };
    let (acks, last_ns) = acks(run_dir)?;
    let mut info = info(run_dir, &report)?;
    info.end_ns = last_ns;
    let html = jetsam_report::run_page::render(&info, &report, &events, &acks)?;
    let path = run_dir.join(HTML_FILE);
    std::fs::write(&path, html).map_err(|source| ReportPageError::Write { path: path.clone(), source })?;
    Ok(path)
}
