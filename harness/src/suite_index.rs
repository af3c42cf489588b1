//! `suite.jsonl`: the machine-readable record of one `jetsam suite --out
//! DIR` (one shard of it, or all of it as shard `1/1`), written into DIR as
//! the suite goes: first a `shard` line naming every scenario file the shard
//! will run, then one `case` line per scenario as it finishes (flushed). A
//! shard whose job died leaves a shard line with fewer cases than scenarios,
//! which `jetsam merge` names instead of passing. docs/formats.md has the
//! fields; every line carries `format_version`.
//!
//! This module formats and parses; the suite and merge decide.

use crate::junit::{Case, CaseOutcome};
use crate::run::RunOutcome;
use serde::{Deserialize, Serialize};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The index's file name inside a suite's `--out` folder.
pub const INDEX_FILE: &str = "suite.jsonl";
/// Version of this file's format (bumped when a field changes meaning or goes).
pub const INDEX_FORMAT_VERSION: u32 = 1;
/// Lines read from one index at most (a shard runs at most this many scenarios).
const INDEX_LINES_MAX: usize = 1_000_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum IndexLine {
    Shard(ShardLine),
    Case(CaseLine),
}

/// What one shard set out to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardLine {
    pub format_version: u32,
    /// The suite folder's name.
    pub suite: String,
    /// `I/N`.
    pub shard: String,
    /// Scenario files in the whole suite (every shard).
    pub scenarios_total: usize,
    /// This shard's scenario files (names, in name order).
    pub scenarios: Vec<String>,
}

/// One scenario's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseLine {
    pub format_version: u32,
    /// The scenario file's name (e.g. `kill-pause-strong.toml`).
    pub file: String,
    /// The scenario's `name` (the file name when the file could not be read).
    pub name: String,
    /// `pass` or `fail`: what the scenario expects.
    pub expect: String,
    /// `pass`, `fail` or `unknown`; absent when the run ended without a verdict.
    pub verdict: Option<String>,
    /// Whether the verdict matched `expect`.
    pub ok: bool,
    /// The run's exit code (docs: exit codes).
    pub exit_code: i32,
    pub acked: Option<u64>,
    pub lost: Option<u64>,
    pub loss_windows: Option<usize>,
    /// Wall time of the run in seconds.
    pub time_s: f64,
    pub run_dir: Option<String>,
    /// Why it did not match (the verdict's reasons) or why it had no verdict.
    pub message: Option<String>,
}

impl CaseLine {
    pub fn from_outcome(file: &Path, outcome: &RunOutcome, ok: bool, time: Duration) -> CaseLine {
        let report = outcome.report.as_ref();
        let expect = if outcome.expect == jetsam_core::scenario::Expect::Fail { "fail" } else { "pass" };
        let message = match report {
            Some(r) if !ok => Some(format!("verdict {}, expected {expect}: {}", r.verdict, r.reasons.join("; "))),
            Some(_) => None,
            None => Some(outcome.error.clone().unwrap_or_else(|| "no verdict".into())),
        };
        CaseLine {
            format_version: INDEX_FORMAT_VERSION,
            file: file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            name: outcome.name.clone(),
            expect: expect.into(),
            verdict: report.map(|r| r.verdict.to_string()),
            ok,
            exit_code: outcome.exit_code,
            acked: report.map(|r| r.acked),
            lost: report.map(|r| r.lost),
            loss_windows: report.map(|r| r.loss_windows.len()),
            time_s: time.as_secs_f64(),
            run_dir: outcome.run_dir.as_ref().map(|d| d.display().to_string()),
            message,
        }
    }

    /// The one line `jetsam suite` and `jetsam merge` print for this scenario.
    pub fn summary(&self) -> String {
        let folder = self.run_dir.as_deref().unwrap_or("-");
        match (&self.verdict, self.acked, self.lost, self.loss_windows) {
            (Some(verdict), Some(acked), Some(lost), Some(windows)) => format!(
                "{} {:<28} verdict {:<7} expected {:<4} acked {:>7} lost {:>6} windows {:>3}  {}",
                if self.ok { "ok  " } else { "FAIL" },
                self.name,
                verdict,
                self.expect,
                acked,
                lost,
                windows,
                folder
            ),
            _ => format!(
                "ERR  {:<28} exit {} : {}",
                self.name,
                self.exit_code,
                self.message.as_deref().unwrap_or("no verdict")
            ),
        }
    }

    /// This scenario as a JUnit test case.
    pub fn junit_case(&self) -> Case {
        let message = self.message.clone().unwrap_or_default();
        let outcome = match (self.ok, &self.verdict) {
            (true, _) => CaseOutcome::Passed,
            (false, Some(_)) => CaseOutcome::Failed { message },
            (false, None) => CaseOutcome::Error { message },
        };
        Case {
            name: self.name.clone(),
            time: Duration::from_secs_f64(self.time_s.max(0.0)),
            outcome,
            output: format!("run folder: {}", self.run_dir.as_deref().unwrap_or("-")),
        }
    }
}

/// Why an index could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("failed to write {path}: {source}; check that the folder is writable")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("failed to read {path}: {source}; pass a suite --out folder (holding {INDEX_FILE}) or the file itself")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("failed to parse {path}:{line}: {why}")]
    Parse { path: PathBuf, line: usize, why: String },
}

/// Appends lines to a suite's index, flushing each (a dying suite keeps what it wrote).
pub struct IndexWriter {
    path: PathBuf,
    file: std::fs::File,
}

impl IndexWriter {
    /// Creates (truncates) `dir/suite.jsonl` and writes the shard line.
    pub fn create(dir: &Path, shard: &ShardLine) -> Result<IndexWriter, IndexError> {
        let path = dir.join(INDEX_FILE);
        let write = |source| IndexError::Write { path: path.clone(), source };
        std::fs::create_dir_all(dir).map_err(write)?;
        let file = std::fs::File::create(&path).map_err(write)?;
        let mut w = IndexWriter { path, file };
        w.append(&IndexLine::Shard(shard.clone()))?;
        Ok(w)
    }

    pub fn append(&mut self, line: &IndexLine) -> Result<(), IndexError> {
        let mut text = serde_json::to_string(line).expect("index lines serialize");
        text.push('\n');
        self.file
            .write_all(text.as_bytes())
            .and_then(|()| self.file.flush())
            .map_err(|source| IndexError::Write { path: self.path.clone(), source })
    }
}

/// Reads an index: `path` is a suite `--out` folder or a `suite.jsonl` file.
/// Returns the file actually read and its lines.
pub fn read(path: &Path) -> Result<(PathBuf, Vec<IndexLine>), IndexError> {
    let file = if path.is_dir() { path.join(INDEX_FILE) } else { path.to_path_buf() };
    let text = std::fs::read_to_string(&file).map_err(|source| IndexError::Read { path: file.clone(), source })?;
    let mut lines = Vec::new();
    for (k, raw) in text.lines().enumerate() {
        let parse = |why: String| IndexError::Parse { path: file.clone(), line: k + 1, why };
        if k >= INDEX_LINES_MAX {
            return Err(parse(format!("more than {INDEX_LINES_MAX} lines")));
        }
        let line: IndexLine = serde_json::from_str(raw).map_err(|e| parse(e.to_string()))?;
        let version = match &line {
            IndexLine::Shard(s) => s.format_version,
            IndexLine::Case(c) => c.format_version,
        };
        if version != INDEX_FORMAT_VERSION {
            return Err(parse(format!(
                "format_version {version}, this jetsam reads {INDEX_FORMAT_VERSION}: merge with the jetsam that wrote it"
            )));
        }
        lines.push(line);
    }
    Ok((file, lines))
}
