//! `jetsam matrix SCENARIO --set KEY=V1,V2 [--set ...] --out DIR`: runs one
//! scenario with every combination of the given settings (e.g.
//! `stream.sync=always,200ms`, `stream.consistency=strong,async`,
//! `target.version=2.12.1,2.15.1`), all with the same seed and so the same
//! fault schedule, and compares them.
//!
//! Before anything starts, every cell's scenario is written to
//! `DIR/cells/<cell>.toml` and validated exactly as `jetsam run` would; an
//! invalid cell stops the matrix with the scenario's own message (exit 2).
//! Then each cell runs as `jetsam run --out DIR/<cell>` would, and the
//! matrix writes `DIR/comparison.csv`, `DIR/comparison.html` and prints a
//! table. Exit code: 0 when every cell's verdict matches its `expect` (as
//! `suite`), else the worst cell's: 4 environment, 3 unknown, 1 fail (also
//! when only a passing cell expected to fail).

use crate::run::{RunOptions, RunOutcome, run_scenario};
use crate::scenario::Overrides;
use jetsam_core::exit;
use jetsam_core::report::Verdict;
use jetsam_core::scenario::Expect;
use jetsam_report::comparison::Cell;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Most cells a matrix may have: each is a whole run.
pub const CELLS_MAX: usize = 64;
/// The comparison files in the matrix folder.
pub const CSV_FILE: &str = "comparison.csv";
pub const HTML_FILE: &str = "comparison.html";
/// Where the cells' scenario files go.
pub const CELLS_DIR: &str = "cells";

#[derive(Debug, clap::Args)]
pub struct MatrixArgs {
    /// The scenario file (TOML, docs/scenarios.md).
    pub scenario: PathBuf,
    /// A scenario key and its values, e.g. stream.sync=always,1s,2m (repeat for more keys; every combination runs).
    #[arg(long = "set", value_name = "KEY=V1,V2,...", required = true)]
    pub sets: Vec<String>,
    /// How long each cell's load and fault phase lasts (overrides the scenario's).
    #[arg(long, value_parser = crate::run::parse_cli_duration)]
    pub duration: Option<Duration>,
    /// The seed of every cell (default: the scenario's, else one drawn for all cells).
    #[arg(long)]
    pub seed: Option<u64>,
    /// The matrix folder (must not exist or be empty): a run folder per cell, comparison.csv, comparison.html.
    #[arg(long)]
    pub out: PathBuf,
}

/// A matrix that cannot start (bad input, exit 2, unless `environment`).
#[derive(Debug, thiserror::Error)]
pub enum MatrixError {
    #[error(
        "failed to read --set {0:?}: write KEY=V1,V2,... with a dotted scenario key, e.g. stream.sync=always,200ms"
    )]
    Set(String),
    #[error("failed to plan the matrix: {cells} cells is more than {CELLS_MAX}; give fewer values")]
    TooMany { cells: usize },
    #[error("failed to read scenario {}: {why}", path.display())]
    Scenario { path: PathBuf, why: String },
    #[error("failed to use the cell {cell}: {why}")]
    Cell { cell: String, why: String },
    #[error("failed to use matrix folder {}: {why}; choose a new or empty folder for --out", path.display())]
    Out { path: PathBuf, why: String },
    #[error("failed to write {}: {why}; check that the matrix folder is writable", path.display())]
    Write { path: PathBuf, why: String },
}

impl MatrixError {
    pub fn exit_code(&self) -> i32 {
        match self {
            MatrixError::Write { .. } => exit::ENVIRONMENT,
            _ => exit::BAD_INPUT,
        }
    }
}

/// One `--set`: a dotted key and its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Axis {
    pub key: String,
    pub values: Vec<String>,
}

pub fn parse_set(s: &str) -> Result<Axis, MatrixError> {
    let (key, values) = s.split_once('=').ok_or_else(|| MatrixError::Set(s.into()))?;
    let values: Vec<String> = values.split(',').map(|v| v.trim().to_string()).collect();
    let key_ok = !key.is_empty() && key.split('.').all(|p| !p.is_empty());
    if !key_ok || values.iter().any(String::is_empty) {
        return Err(MatrixError::Set(s.into()));
    }
    Ok(Axis { key: key.trim().into(), values })
}

/// Every combination, the first axis varying slowest.
pub fn combinations(axes: &[Axis]) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = vec![Vec::new()];
    for axis in axes {
        out = out
            .into_iter()
            .flat_map(|prefix| axis.values.iter().map(move |v| [prefix.clone(), vec![v.clone()]].concat()))
            .collect();
    }
    out
}

/// A value as TOML reads it (`3`, `true`), else as a string (`always`, `2.12.1`).
fn toml_value(v: &str) -> toml::Value {
    match toml::from_str::<toml::Table>(&format!("v = {v}")) {
        Ok(mut t) => t.remove("v").expect("the key just written"),
        Err(_) => toml::Value::String(v.to_string()),
    }
}

/// Sets a dotted key in a scenario table, making the tables on its way.
pub fn set_key(table: &mut toml::Table, key: &str, value: &str) -> Result<(), String> {
    let parts: Vec<&str> = key.split('.').collect();
    let (last, path) = parts.split_last().expect("a key has a part");
    let mut t = table;
    for p in path {
        let entry = t.entry(p.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        t = entry
            .as_table_mut()
            .ok_or_else(|| format!("{p} is not a table in the scenario, so {key} cannot be set"))?;
    }
    t.insert(last.to_string(), toml_value(value));
    Ok(())
}

/// A cell's folder name: its key=value pairs, with characters a path
/// should not hold replaced.
pub fn cell_name(axes: &[Axis], values: &[String]) -> String {
    let raw = axes.iter().zip(values).map(|(a, v)| format!("{}={v}", a.key)).collect::<Vec<_>>().join(",");
    raw.chars().map(|c| if c.is_ascii_alphanumeric() || "._=,-".contains(c) { c } else { '_' }).collect()
}

/// A planned cell.
struct Planned {
    values: Vec<String>,
    name: String,
    file: PathBuf,
}

pub fn execute(args: MatrixArgs) -> i32 {
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

fn empty_or_new(dir: &Path) -> Result<(), MatrixError> {
    if dir.exists() && std::fs::read_dir(dir).map(|mut d| d.next().is_some()).unwrap_or(true) {
        return Err(MatrixError::Out { path: dir.into(), why: "it exists and is not empty".into() });
    }
    std::fs::create_dir_all(dir.join(CELLS_DIR)).map_err(|e| MatrixError::Out { path: dir.into(), why: e.to_string() })
}

/// Writes and validates every cell; nothing runs until all are valid.
fn plan(args: &MatrixArgs, axes: &[Axis], seed: u64) -> Result<Vec<Planned>, MatrixError> {
    let text = std::fs::read_to_string(&args.scenario)
        .map_err(|e| MatrixError::Scenario { path: args.scenario.clone(), why: e.to_string() })?;
    let base: toml::Table =
        toml::from_str(&text).map_err(|e| MatrixError::Scenario { path: args.scenario.clone(), why: e.to_string() })?;
    let mut cells = Vec::new();
    for values in combinations(axes) {
        let name = cell_name(axes, &values);
        let mut table = base.clone();
        for (axis, v) in axes.iter().zip(&values) {
            set_key(&mut table, &axis.key, v).map_err(|why| MatrixError::Cell { cell: name.clone(), why })?;
        }
        let file = args.out.join(CELLS_DIR).join(format!("{name}.toml"));
        let body = toml::to_string_pretty(&table).expect("a TOML table serializes");
        let header = format!("# Cell {name} of jetsam matrix {}\n", args.scenario.display());
        std::fs::write(&file, header + &body)
            .map_err(|e| MatrixError::Write { path: file.clone(), why: e.to_string() })?;
        let options = cell_options(args, &file, &name, seed);
        crate::run::resolve(&options).map_err(|e| MatrixError::Cell { cell: name.clone(), why: e.to_string() })?;
        cells.push(Planned { values, name, file });
    }
    Ok(cells)
}

fn cell_options(args: &MatrixArgs, file: &Path, name: &str, seed: u64) -> RunOptions {
    RunOptions {
        scenario: file.to_path_buf(),
        overrides: Overrides { seed: Some(seed), duration: args.duration, ..Overrides::default() },
        out: Some(args.out.join(name)),
        results_root: args.out.clone(),
        keep_data: false,
        interactive: false,
        quiet: true,
    }
}

/// The seed of every cell: --seed, else the scenario's, else one drawn now.
fn matrix_seed(args: &MatrixArgs) -> u64 {
    let from_file = std::fs::read_to_string(&args.scenario)
        .ok()
        .and_then(|t| toml::from_str::<toml::Table>(&t).ok())
        .and_then(|t| t.get("seed").and_then(|s| s.as_integer()))
        .and_then(|s| u64::try_from(s).ok());
    args.seed.or(from_file).unwrap_or_else(|| u64::from(rand::random::<u32>()))
}

fn run(args: &MatrixArgs) -> Result<i32, MatrixError> {
    let axes: Vec<Axis> = args.sets.iter().map(|s| parse_set(s)).collect::<Result<_, _>>()?;
    let count: usize = axes.iter().map(|a| a.values.len()).product();
    if count > CELLS_MAX {
        return Err(MatrixError::TooMany { cells: count });
    }
    empty_or_new(&args.out)?;
    let seed = matrix_seed(args);
    let planned = plan(args, &axes, seed)?;
    println!(
        "jetsam matrix {}: {} cells, seed {seed}, folder {}",
        args.scenario.display(),
        planned.len(),
        args.out.display()
    );
    let mut cells = Vec::new();
    let mut all_expected = true;
    let mut worst = exit::PASS;
    for p in &planned {
        let outcome = run_scenario(&cell_options(args, &p.file, &p.name, seed));
        let cell = cell_of(p, &outcome);
        println!(
            "  {}: {}{}",
            p.name,
            cell.verdict,
            cell.error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default()
        );
        all_expected &= crate::suite::matches_expect(&outcome);
        worst = worst.max(severity(outcome.exit_code));
        cells.push(cell);
    }
    let keys: Vec<String> = axes.iter().map(|a| a.key.clone()).collect();
    write_csv(&args.out.join(CSV_FILE), &keys, &cells)?;
    let title = format!("{} (seed {seed})", args.scenario.display());
    let html = jetsam_report::comparison::render(&title, &keys, &cells)
        .map_err(|e| MatrixError::Write { path: args.out.join(HTML_FILE), why: e.to_string() })?;
    let html_path = args.out.join(HTML_FILE);
    std::fs::write(&html_path, html).map_err(|e| MatrixError::Write { path: html_path.clone(), why: e.to_string() })?;
    print!("{}", table(&keys, &cells));
    println!("wrote {} and {}", args.out.join(CSV_FILE).display(), html_path.display());
    Ok(if all_expected { exit::PASS } else { worst.max(exit::FAIL) })
}

/// How bad a cell's exit code is, as an exit code: environment over
/// unknown over fail over pass (bad input cannot happen: cells are validated).
fn severity(code: i32) -> i32 {
    match code {
        exit::ENVIRONMENT | exit::BAD_INPUT => exit::ENVIRONMENT,
        exit::UNKNOWN => exit::UNKNOWN,
        exit::FAIL => exit::FAIL,
        _ => exit::PASS,
    }
}

fn cell_of(p: &Planned, outcome: &RunOutcome) -> Cell {
    let expect = match outcome.expect {
        Expect::Pass => "pass",
        Expect::Fail => "fail",
    };
    let mut cell = Cell {
        values: p.values.clone(),
        verdict: "error".into(),
        expect: expect.into(),
        acked: 0,
        acked_per_s: 0.0,
        p50_ms: None,
        p99_ms: None,
        lost: 0,
        windows: 0,
        longest_window_ms: 0.0,
        divergent: false,
        folder: p.name.clone(),
        error: outcome.error.clone(),
    };
    let Some(r) = &outcome.report else { return cell };
    let duration_s = scenario_duration_s(outcome).max(1e-3);
    cell.verdict = r.verdict.to_string();
    cell.acked = r.acked;
    cell.acked_per_s = r.acked as f64 / duration_s;
    cell.p50_ms = r.latency.as_ref().map(|l| l.p50_us as f64 / 1000.0);
    cell.p99_ms = r.latency.as_ref().map(|l| l.p99_us as f64 / 1000.0);
    cell.lost = r.lost;
    cell.windows = r.loss_windows.len() as u64;
    cell.longest_window_ms = r.loss_windows.iter().map(|w| (w.end_ns - w.start_ns) as f64 / 1e6).fold(0.0, f64::max);
    cell.divergent = r.divergent;
    assert!(r.verdict != Verdict::Pass || r.lost == 0 || r.mode == jetsam_core::report::Mode::Async);
    cell
}

/// The load phase's length from the cell's resolved scenario.
fn scenario_duration_s(outcome: &RunOutcome) -> f64 {
    let Some(dir) = &outcome.run_dir else { return 0.0 };
    let path = dir.join(jetsam_checkers::load::SCENARIO_FILE);
    std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| jetsam_core::scenario::Scenario::from_toml_str(&path.display().to_string(), &t).ok())
        .map_or(0.0, |s| s.duration.as_secs_f64())
}

const CSV_TAIL: [&str; 11] = [
    "verdict",
    "expect",
    "acked",
    "acked_per_s",
    "p50_ms",
    "p99_ms",
    "lost",
    "loss_windows",
    "longest_window_ms",
    "divergent",
    "folder",
];

fn row(c: &Cell) -> Vec<String> {
    let ms = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_default();
    let mut r = c.values.clone();
    r.extend([
        c.verdict.clone(),
        c.expect.clone(),
        c.acked.to_string(),
        format!("{:.1}", c.acked_per_s),
        ms(c.p50_ms),
        ms(c.p99_ms),
        c.lost.to_string(),
        c.windows.to_string(),
        format!("{:.3}", c.longest_window_ms),
        c.divergent.to_string(),
        c.folder.clone(),
    ]);
    r
}

fn write_csv(path: &Path, keys: &[String], cells: &[Cell]) -> Result<(), MatrixError> {
    let err = |why: String| MatrixError::Write { path: path.to_path_buf(), why };
    let mut w = csv::Writer::from_path(path).map_err(|e| err(e.to_string()))?;
    let mut header: Vec<String> = keys.to_vec();
    header.extend(CSV_TAIL.iter().map(|s| s.to_string()));
    w.write_record(&header).map_err(|e| err(e.to_string()))?;
    for c in cells {
        w.write_record(row(c)).map_err(|e| err(e.to_string()))?;
    }
    w.flush().map_err(|e| err(e.to_string()))
}

/// The terminal table: the CSV's columns but the folder, aligned.
pub fn table(keys: &[String], cells: &[Cell]) -> String {
    let mut rows: Vec<Vec<String>> =
        vec![keys.iter().cloned().chain(CSV_TAIL[..CSV_TAIL.len() - 1].iter().map(|s| s.to_string())).collect()];
    rows.extend(cells.iter().map(|c| {
        let mut r = row(c);
        r.pop();
        r
    }));
    let widths: Vec<usize> = (0..rows[0].len()).map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r.iter().zip(&widths).map(|(v, w)| format!("{v:<w$}")).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_parse_and_combine_first_key_slowest() {
        let a = parse_set("stream.sync=always,200ms").unwrap();
        let b = parse_set("target.version=2.12.1,2.15.1").unwrap();
        assert_eq!(a.values, vec!["always", "200ms"]);
        let c = combinations(&[a.clone(), b.clone()]);
        assert_eq!(c.len(), 4);
        assert_eq!(c[1], vec!["always".to_string(), "2.15.1".to_string()]);
        assert_eq!(cell_name(&[a, b], &c[2]), "stream.sync=200ms,target.version=2.12.1");
        for bad in ["stream.sync", "=a", "stream.sync=", "stream.sync=a,,b", "stream..sync=a"] {
            assert!(parse_set(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_are_set_with_toml_types() {
        let mut t: toml::Table = toml::from_str("nodes = 3\n[stream]\nsync = \"always\"\n").unwrap();
        set_key(&mut t, "stream.sync", "200ms").unwrap();
        set_key(&mut t, "nodes", "5").unwrap();
        set_key(&mut t, "target.version", "2.12.1").unwrap();
        set_key(&mut t, "target.repair", "true").unwrap();
        assert_eq!(t["stream"]["sync"].as_str(), Some("200ms"));
        assert_eq!(t["nodes"].as_integer(), Some(5));
        assert_eq!(t["target"]["version"].as_str(), Some("2.12.1"));
        assert_eq!(t["target"]["repair"].as_bool(), Some(true));
        assert!(set_key(&mut t, "nodes.x", "1").is_err(), "nodes is not a table");
    }
}
