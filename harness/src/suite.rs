//! `jetsam suite DIR`: runs every scenario file (`*.toml`) of a folder in
//! name order, prints one line per scenario (verdict, expected, acked, lost,
//! loss windows, run folder), optionally writes JUnit XML, and exits 0 when
//! every verdict matches its `expect` (a scenario without `expect` expects
//! `pass`). Otherwise: 4 if any scenario hit an environment error, else 2 if
//! any scenario file was bad, else 1 (a verdict differed from its expect).
//!
//! With `--shard I/N` it runs only that shard's scenarios
//! ([`crate::shard`]); with `--out DIR` it also writes `DIR/suite.jsonl`
//! ([`crate::suite_index`]), which `jetsam merge` joins across shards.
//!
//! Each scenario runs exactly as `jetsam run` would run it; this module does
//! not run anything itself.

use crate::junit::CaseOutcome;
use crate::run::{RunOptions, RunOutcome, run_scenario};
use crate::scenario::Overrides;
use crate::shard::Shard;
use crate::suite_index::{CaseLine, IndexLine, IndexWriter, ShardLine};
use jetsam_core::exit;
use jetsam_core::report::Verdict;
use jetsam_core::scenario::Expect;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, clap::Args)]
pub struct SuiteArgs {
    /// A folder of scenario files (*.toml), run in name order.
    pub dir: PathBuf,
    /// Also write JUnit XML here.
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Where run folders go (default results/): <out>/<scenario>/<UTC time>-<seed>/.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Run this nats-server version instead of each NATS scenario's `target.version`.
    #[arg(long, value_name = "VERSION")]
    pub nats_version: Option<String>,
    /// Run only shard I of N (the k-th file in name order belongs to shard k mod N + 1); join shards with `jetsam merge`.
    #[arg(long, value_name = "I/N", default_value = "1/1")]
    pub shard: Shard,
}

/// The scenario files of a folder, sorted by name.
pub fn scenario_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("failed to read suite folder {}: {e}; check the path", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!(
            "failed to find scenarios in {}: no *.toml files; point at a folder of scenario files",
            dir.display()
        ));
    }
    Ok(files)
}

/// Whether a run matched what its scenario expects.
pub fn matches_expect(outcome: &RunOutcome) -> bool {
    match (&outcome.report, outcome.expect) {
        (Some(r), Expect::Pass) => r.verdict == Verdict::Pass,
        (Some(r), Expect::Fail) => r.verdict == Verdict::Fail,
        (None, _) => false,
    }
}

pub fn execute(args: SuiteArgs) -> i32 {
    let all = match scenario_files(&args.dir) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::BAD_INPUT;
        }
    };
    let files = args.shard.select(&all);
    let suite_name = args.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "suite".into());
    if args.shard != Shard::ALL {
        println!("shard {} of suite {}: {} of {} scenarios", args.shard, args.dir.display(), files.len(), all.len());
    }
    let mut index = match &args.out {
        Some(out) => {
            let line = ShardLine {
                format_version: crate::suite_index::INDEX_FORMAT_VERSION,
                suite: suite_name.clone(),
                shard: args.shard.to_string(),
                scenarios_total: all.len(),
                scenarios: files.iter().map(|f| file_name(f)).collect(),
            };
            match IndexWriter::create(out, &line) {
                Ok(w) => Some(w),
                Err(e) => {
                    eprintln!("error: {e}");
                    return exit::ENVIRONMENT;
                }
            }
        }
        None => None,
    };
    let interactive = crate::progress::interactive();
    let mut cases = Vec::new();
    let mut worst = exit::PASS;
    for file in &files {
        let entry = run_one(file, &args, interactive);
        println!("{}", entry.summary());
        worst = worse(worst, entry.exit_code, entry.ok);
        if let Some(w) = index.as_mut()
            && let Err(e) = w.append(&IndexLine::Case(entry.clone()))
        {
            eprintln!("error: {e}");
            worst = exit::ENVIRONMENT;
        }
        cases.push(entry.junit_case());
    }
    println!(
        "suite {}: {} scenarios, {} as expected",
        args.dir.display(),
        cases.len(),
        cases.iter().filter(|c| c.outcome == CaseOutcome::Passed).count()
    );
    if let Some(path) = &args.junit
        && let Err(e) = std::fs::write(path, crate::junit::render(&suite_name, &cases))
    {
        eprintln!("error: failed to write {}: {e}; check that its folder exists and is writable", path.display());
        return exit::ENVIRONMENT;
    }
    worst
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// The suite's exit code so far, after one more scenario that ended with
/// `code` and did (`ok`) or did not match its expect: environment errors
/// outrank bad input, which outranks a verdict that differed.
pub fn worse(worst: i32, code: i32, ok: bool) -> i32 {
    match (worst, code, ok) {
        (exit::ENVIRONMENT, _, _) | (_, exit::ENVIRONMENT, false) => exit::ENVIRONMENT,
        (exit::BAD_INPUT, _, _) | (_, exit::BAD_INPUT, false) => exit::BAD_INPUT,
        (_, _, false) => exit::FAIL,
        (w, _, true) => w,
    }
}

/// Runs one scenario file as `jetsam run` would and returns its result.
fn run_one(file: &Path, args: &SuiteArgs, interactive: bool) -> CaseLine {
    let options = RunOptions {
        scenario: file.to_path_buf(),
        overrides: Overrides { nats_version: args.nats_version.clone(), ..Overrides::default() },
        out: None,
        results_root: args.out.clone().unwrap_or_else(|| PathBuf::from(crate::index::DEFAULT_ROOT)),
        keep_data: false,
        interactive,
        quiet: false,
    };
    let started = Instant::now();
    let outcome = run_scenario(&options);
    CaseLine::from_outcome(file, &outcome, matches_expect(&outcome), started.elapsed())
}
