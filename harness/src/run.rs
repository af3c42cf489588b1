//! `jetsam run SCENARIO`: one run through the phases of DESIGN.md "One run":
//! resolve and validate the scenario (write `scenario.resolved.toml`), start
//! the nodes and wait until they are ready, create the stream, drive the
//! workload while the nemesis injects the seeded faults, heal everything and
//! wait for convergence, read back every node, check, write `report.json`,
//! print the summary and the replay command, and exit with the verdict's
//! code (0 pass, 1 fail, 3 unknown; 2 bad input; 4 environment).
//!
//! The run folder is `results/<scenario>/<UTC time>-<seed>/` or `--out`.
//! Node data dirs live in it (`data/<node>`, and the power-loss tracer's
//! `state/<node>`) and are removed after a run that passes unless
//! `--keep-data`; after a fail, unknown or harness error they are kept for
//! inspection.
//!
//! This module resolves the scenario, makes the run folder and reports;
//! `phases` runs the phases; the pieces live in `scenario`, `schedule`,
//! `cluster`, `nemesis`, `events`, `progress`, `readback` and the
//! workloads crate.

use crate::cluster::ClusterError;
use crate::events::EventLogError;
use crate::progress::Progress;
use crate::scenario::{LoadError, Overrides, Resolved};
use crate::schedule;
use jetsam_core::duration::{format_duration, parse_duration};
use jetsam_core::exit;
use jetsam_core::report::{Report, Verdict};
use jetsam_core::scenario::{Expect, Scenario};
use jetsam_targets::adapter::AdapterTarget;
use jetsam_targets::adapter::spec::{LoadedTarget, SpecError};
use jetsam_targets::nats::NatsTarget;
use jetsam_targets::node::NodeTarget;
use jetsam_targets::{Target, TargetError};
use jetsam_workloads::HistoryError;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Bound on the cluster becoming ready after start.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on creating the stream.
pub const CREATE_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on replicas converging after the final heal.
pub const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);
pub use crate::readback::READ_TIMEOUT;
/// Bound on the target's failover step after the final heal.
pub const FAILOVER_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on making one publisher.
pub const PUBLISHER_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The scenario file (TOML, docs/scenarios.md).
    pub scenario: PathBuf,
    /// Seed of the whole run (overrides the scenario's); the same seed replays the same fault schedule.
    #[arg(long)]
    pub seed: Option<u64>,
    /// How long the load and fault phase lasts, e.g. "30s" (overrides the scenario's).
    #[arg(long, value_parser = parse_cli_duration)]
    pub duration: Option<Duration>,
    /// The run folder (default results/<scenario>/<UTC time>-<seed>/); must not exist or be empty.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Keep the nodes' data dirs even when the run passes.
    #[arg(long)]
    pub keep_data: bool,
    /// Run this nats-server version instead of the scenario's `target.version` (NATS scenarios only).
    #[arg(long, value_name = "VERSION")]
    pub nats_version: Option<String>,
    /// Run the durability audit (as `[check] audit = true`): every node traced, every ack checked.
    #[arg(long)]
    pub audit: bool,
}

pub(crate) fn parse_cli_duration(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

/// What `run_scenario` needs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub scenario: PathBuf,
    pub overrides: Overrides,
    /// Exactly this run folder.
    pub out: Option<PathBuf>,
    /// Where `<scenario>/<UTC time>-<seed>/` goes when `out` is unset.
    pub results_root: PathBuf,
    pub keep_data: bool,
    pub interactive: bool,
    /// Print nothing (explore and shrink print one line per run themselves);
    /// the run folder holds everything.
    pub quiet: bool,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// The process exit code (jetsam_core::exit).
    pub exit_code: i32,
    /// The scenario's name, or the file name when it did not parse.
    pub name: String,
    /// What the scenario expects (pass when unset or unreadable).
    pub expect: Expect,
    pub run_dir: Option<PathBuf>,
    pub report: Option<Report>,
    /// The error that ended the run early, if any.
    pub error: Option<String>,
}

/// Why a run stopped before a verdict.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Scenario(#[from] LoadError),
    #[error("failed to use run folder {}: {why}; {fix}", path.display())]
    RunDir {
        path: PathBuf,
        why: String,
        fix: &'static str,
        /// The user pointed at an unusable folder (exit 2) rather than the machine failing (exit 4).
        bad_input: bool,
    },
    #[error("failed to run the {kind} target: it is not available in this build; use target.kind = \"node\"")]
    TargetUnavailable { kind: String },
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    TargetFile(#[from] SpecError),
    #[error("invalid target.settings: {message}; fix: {fix}")]
    TargetSettings { message: String, fix: String },
    #[error("failed to drive the system under test: {0}; the run has no verdict (see adapter/ in the run folder)")]
    Adapter(String),
    #[error(
        "failed to start the cluster: node {node} exited before the cluster was ready; see nodes/{node}.log in the run folder"
    )]
    NodeExited { node: String },
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Events(#[from] EventLogError),
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error("failed to write {}: {source}; check free space and permissions", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to check the run folder this run wrote: {0}; this is a harness bug, please report it")]
    Check(String),
    #[error("failed to start the async runtime: {0}")]
    Runtime(std::io::Error),
}

impl RunError {
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::Scenario(_) | RunError::TargetFile(_) | RunError::TargetSettings { .. } => exit::BAD_INPUT,
            RunError::RunDir { bad_input: true, .. } => exit::BAD_INPUT,
            _ => exit::ENVIRONMENT,
        }
    }
}

pub fn execute(args: RunArgs) -> i32 {
    let options = RunOptions {
        scenario: args.scenario,
        overrides: Overrides {
            seed: args.seed,
            duration: args.duration,
            nats_version: args.nats_version,
            audit: args.audit,
        },
        out: args.out,
        results_root: PathBuf::from(crate::index::DEFAULT_ROOT),
        keep_data: args.keep_data,
        interactive: crate::progress::interactive(),
        quiet: false,
    };
    let outcome = run_scenario(&options);
    if let Some(e) = &outcome.error {
        eprintln!("error: {e}");
    }
    outcome.exit_code
}

/// Runs one scenario to its verdict; never panics on user or environment errors.
pub fn run_scenario(options: &RunOptions) -> RunOutcome {
    let fallback_name =
        options.scenario.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "scenario".into());
    let mut outcome = RunOutcome {
        exit_code: exit::ENVIRONMENT,
        name: fallback_name,
        expect: Expect::Pass,
        run_dir: None,
        report: None,
        error: None,
    };
    match run_inner(options, &mut outcome) {
        Ok(()) => {}
        Err(e) => {
            outcome.exit_code = e.exit_code();
            outcome.error = Some(e.to_string());
        }
    }
    outcome
}

/// The target of a scenario, with its binary found (a missing binary is an
/// environment error, exit 4).
fn make_target(scenario: &Scenario) -> Result<Box<dyn Target>, RunError> {
    match scenario.target.kind.as_str() {
        "node" => Ok(Box::new(NodeTarget::locate(None)?)),
        "nats" => Ok(Box::new(NatsTarget::for_scenario(scenario, None)?)),
        "adapter" => {
            let spec = LoadedTarget::load(&target_file(scenario))?;
            let target = AdapterTarget::for_scenario(spec, scenario)
                .map_err(|(message, fix)| RunError::TargetSettings { message, fix })?;
            Ok(Box::new(target))
        }
        other => Err(RunError::TargetUnavailable { kind: other.to_string() }),
    }
}

/// An adapter scenario's target file, relative to the current directory.
fn target_file(scenario: &Scenario) -> PathBuf {
    PathBuf::from(scenario.target.file.as_deref().unwrap_or_default())
}

/// A target of the scenario's kind without its binary: enough to validate a
/// scenario, so a bad scenario is reported as such (exit 2) even where the
/// binary is missing. An adapter target's file is read here: a broken one is
/// a user error too.
fn validator(scenario: &Scenario) -> Result<Option<Box<dyn Target>>, RunError> {
    Ok(match scenario.target.kind.as_str() {
        "node" => Some(Box::new(NodeTarget::new(PathBuf::new()))),
        "nats" => Some(Box::new(NatsTarget::new(PathBuf::new()))),
        "adapter" => Some(Box::new(AdapterTarget::load(&target_file(scenario))?)),
        _ => None,
    })
}

/// Loads and validates the scenario of `options` as the run will (no side effect).
pub(crate) fn resolve(options: &RunOptions) -> Result<Resolved, RunError> {
    // The target kind comes from the file; the generic rules run first.
    let probe = crate::scenario::load(&options.scenario, &options.overrides, None, || 0)?;
    let validator = validator(&probe.scenario)?;
    let seed_if_unset = || u64::from(rand::random::<u32>());
    Ok(crate::scenario::load(&options.scenario, &options.overrides, validator.as_deref(), seed_if_unset)?)
}

/// `YYYYmmddTHHMMSSZ` of now.
pub(crate) fn utc_stamp() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

fn make_run_dir(options: &RunOptions, resolved: &Resolved) -> Result<PathBuf, RunError> {
    let dir = match &options.out {
        Some(out) => out.clone(),
        None => {
            let base = options.results_root.join(&resolved.scenario.name);
            let stamp = utc_stamp();
            // Two runs in the same second with the same seed get a suffix.
            (0..100)
                .map(|i| {
                    let leaf = if i == 0 {
                        format!("{stamp}-{}", resolved.seed)
                    } else {
                        format!("{stamp}-{}-{i}", resolved.seed)
                    };
                    base.join(leaf)
                })
                .find(|d| !d.exists())
                .ok_or_else(|| RunError::RunDir {
                    path: base.clone(),
                    why: "100 run folders with this time and seed exist".into(),
                    fix: "wait a second and retry",
                    bad_input: false,
                })?
        }
    };
    if dir.exists() {
        let empty = std::fs::read_dir(&dir).map(|mut d| d.next().is_none()).unwrap_or(false);
        if !empty {
            return Err(RunError::RunDir {
                path: dir,
                why: "it exists and is not empty".into(),
                fix: "choose a new or empty folder for --out",
                bad_input: true,
            });
        }
    }
    std::fs::create_dir_all(&dir).map_err(|e| RunError::RunDir {
        path: dir.clone(),
        why: e.to_string(),
        fix: "check that the results folder is writable",
        bad_input: false,
    })?;
    Ok(dir)
}

pub(crate) fn write(path: &Path, text: &str) -> Result<(), RunError> {
    std::fs::write(path, text).map_err(|source| RunError::Write { path: path.to_path_buf(), source })
}

fn run_inner(options: &RunOptions, outcome: &mut RunOutcome) -> Result<(), RunError> {
    let resolved = resolve(options)?;
    let scenario = &resolved.scenario;
    outcome.name = scenario.name.clone();
    outcome.expect = scenario.check.expect.unwrap_or(Expect::Pass);
    let target = make_target(scenario)?;
    let run_dir = make_run_dir(options, &resolved)?;
    outcome.run_dir = Some(run_dir.clone());
    write(&run_dir.join(jetsam_checkers::load::SCENARIO_FILE), &resolved.to_toml())?;
    let schedule = schedule::plan(scenario, resolved.seed);
    let progress = if options.quiet {
        Progress::quiet(&scenario.name)
    } else {
        Progress::new(&scenario.name, options.interactive)
    };
    progress.line(&format!(
        "jetsam run {}: {} nodes, {} for {}, seed {}, {} faults planned, run folder {}",
        scenario.name,
        scenario.nodes,
        scenario.stream.mode(),
        format_duration(scenario.duration),
        resolved.seed,
        schedule.planned.len(),
        run_dir.display()
    ));
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(RunError::Runtime)?;
    let result = runtime.block_on(crate::phases::phases(&resolved, &schedule, target.as_ref(), &run_dir, &progress));
    progress.finish();
    // Whatever the outcome, no task outlives the run.
    runtime.shutdown_timeout(Duration::from_secs(5));
    // A target whose machinery failed (an adapter that broke the protocol)
    // gives no verdict, whatever the phases returned.
    if let Some(why) = target.fatal() {
        return Err(RunError::Adapter(why));
    }
    let report = result?;
    if !options.quiet {
        print!("{}", jetsam_checkers::render_summary(&report));
    }
    let mut replay = format!(
        "jetsam run {} --seed {} --duration {}",
        resolved.path.display(),
        resolved.seed,
        format_duration(scenario.duration)
    );
    if let Some(version) = &options.overrides.nats_version
        && scenario.target.kind == "nats"
    {
        replay.push_str(&format!(" --nats-version {version}"));
    }
    if options.overrides.audit {
        replay.push_str(" --audit");
    }
    // The page people look at; a failure to draw it leaves the verdict standing.
    let html = crate::report_page::write(&run_dir).map_err(|e| eprintln!("warning: {e}")).ok();
    if options.out.is_none()
        && options.results_root == Path::new(crate::index::DEFAULT_ROOT)
        && let Err(e) = crate::index::record(&options.results_root, &run_dir, scenario, resolved.seed, &report)
    {
        eprintln!("warning: {e}");
    }
    if !options.quiet {
        println!("run folder: {}", run_dir.display());
        if let Some(html) = html {
            println!("report: {}", html.display());
        }
        println!("replay: {replay}");
    }
    if report.verdict == Verdict::Pass && !options.keep_data {
        // The nodes' files and the tracer's undo logs: large, and only needed to investigate a failure.
        for leaf in ["data", "state"] {
            let dir = run_dir.join(leaf);
            if dir.exists()
                && let Err(e) = std::fs::remove_dir_all(&dir)
            {
                eprintln!("warning: could not remove {}: {e}", dir.display());
            }
        }
    }
    outcome.exit_code = report.verdict.exit_code();
    outcome.report = Some(report);
    Ok(())
}
