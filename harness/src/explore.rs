//! `jetsam explore SCENARIO --runs N --jobs J [--budget 30m]`: searches for
//! a failing run instead of replaying a hand-written schedule.
//!
//! The scenario gives the cluster, the target, the workload and, in an
//! `[explore]` table, a fault *palette*: how many injections a run gets,
//! which kinds, target selectors, partition shapes and heal times. Run k
//! draws its own schedule from its own seed (`derive_seed(explore seed,
//! "run/k")`), writes it as an ordinary scenario with fixed `at` times
//! (`<out>/runs/run-<k>.toml`, so `jetsam run` replays it exactly and
//! `jetsam shrink` can cut it down) and runs it as `jetsam run` would. Runs
//! go in parallel up to `--jobs` (ports and data dirs are per run). One line
//! per run, `explore.jsonl` in the out folder, a stop at the first failing
//! run unless `--keep-going`, and exit 1 when any run failed with its replay
//! command as the last line.
//!
//! A palette the explorer cannot use is exit 2 before any run; a run that
//! could not be carried out (exit 2 or 4) stops the exploration with its
//! code. An `unknown` verdict is not a failure found: it is counted and
//! reported, and never turns the exploration into a pass it was not.

use crate::run::{RunOptions, RunOutcome, run_scenario};
use crate::schedule::derive_seed;
use jetsam_core::duration::{format_duration, parse_duration};
use jetsam_core::exit;
use jetsam_core::report::Verdict;
use jetsam_core::scenario::{Fault, Scenario, Targets};
use jetsam_core::trigger::Trigger;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Runs one exploration may ask for at most.
pub const RUNS_MAX: u32 = 100_000;
/// Parallel runs at most.
pub const JOBS_MAX: u32 = 64;
/// Injections one drawn run may get at most.
pub const FAULTS_MAX: u32 = 20;
/// The index's file name in the out folder.
pub const EXPLORE_INDEX: &str = "explore.jsonl";

#[derive(Debug, clap::Args)]
pub struct ExploreArgs {
    /// A scenario file with an [explore] table (the fault palette).
    pub scenario: PathBuf,
    /// Runs to draw at most.
    #[arg(long, default_value_t = 20)]
    pub runs: u32,
    /// Runs at once.
    #[arg(long, default_value_t = 1)]
    pub jobs: u32,
    /// Start no new run after this long (e.g. 30m); unset = no limit.
    #[arg(long, value_parser = crate::run::parse_cli_duration)]
    pub budget: Option<Duration>,
    /// The exploration's seed (each run's seed derives from it); unset = random, printed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Keep exploring after a failing run.
    #[arg(long)]
    pub keep_going: bool,
    /// Where the drawn scenarios, run folders and explore.jsonl go (default results/explore/<scenario>/<UTC time>-<seed>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Run only shard I of N of the run indexes (run k belongs to shard k mod N + 1).
    #[arg(long, value_name = "I/N", default_value = "1/1")]
    pub shard: crate::shard::Shard,
}

/// The `[explore]` table: what a run's schedule is drawn from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Palette {
    /// Injections per run: `[min, max]`.
    #[serde(default = "default_faults")]
    pub faults: [u32; 2],
    /// Fault kinds drawn from.
    #[serde(default = "default_kinds")]
    pub kinds: Vec<String>,
    /// Target selectors drawn from (kill, pause, power-loss, io-error).
    #[serde(default = "default_targets")]
    pub targets: Vec<String>,
    /// Partition shapes drawn from.
    #[serde(default = "default_shapes")]
    pub shapes: Vec<String>,
    /// Heal time range: `["500ms", "3s"]`.
    #[serde(default = "default_heal_after")]
    pub heal_after: [String; 2],
    /// Power-loss models drawn from: `all` (every unsynced page lost),
    /// `keep-fraction` (a seeded 30% of them survive: torn write-back) and/or
    /// `writeback` (pages dirty longer than a drawn 1-30 s survive, as the
    /// kernel's write-back would have written them).
    #[serde(default = "default_power_loss")]
    pub power_loss: Vec<String>,
    /// Events drawn injections may fire on instead of a time: `acks`,
    /// `leader-change`, `fsync` (docs/scenarios.md, "Event triggers").
    /// Empty (the default): every injection at a drawn time.
    #[serde(default)]
    pub triggers: Vec<String>,
    /// The share of drawn injections (percent) that fire on an event, when
    /// `triggers` lists any.
    #[serde(default = "default_trigger_percent")]
    pub trigger_percent: u32,
}

fn default_faults() -> [u32; 2] {
    [1, 4]
}
fn default_kinds() -> Vec<String> {
    ["kill", "pause", "power-loss", "partition", "bitflip"].map(String::from).to_vec()
}
fn default_targets() -> Vec<String> {
    ["one", "minority", "majority", "all", "leader"].map(String::from).to_vec()
}
fn default_shapes() -> Vec<String> {
    ["majority-minority", "isolate-one", "bridge", "random-halves"].map(String::from).to_vec()
}
fn default_heal_after() -> [String; 2] {
    ["500ms".into(), "3s".into()]
}
fn default_power_loss() -> Vec<String> {
    vec!["all".into()]
}
fn default_trigger_percent() -> u32 {
    50
}

/// The events the explorer draws (`behind` is left out: only one target sees it).
const TRIGGERS: [&str; 3] = ["acks", "leader-change", "fsync"];
/// A drawn `fsync:NODE:K`'s K is 2^u for u uniform in [0, this]: systems
/// fsync from once a second (the reference node's ack-before-fsync bug) to
/// hundreds of times a second, so K is drawn on a log scale (1 to 1,024).
const FSYNC_COUNT_LOG2_MAX: f64 = 10.0;
/// Range of a drawn `acks:K`'s K when the workload has no fixed rate.
const ACKS_RANGE: std::ops::RangeInclusive<u64> = 500..=20_000;
/// The longest drawn delay after an event.
const TRIGGER_DELAY_MAX: Duration = Duration::from_secs(1);

/// The range a `writeback` power loss's `writeback_after` is drawn from.
const WRITEBACK_MIN: Duration = Duration::from_secs(1);
const WRITEBACK_MAX: Duration = Duration::from_secs(30);

/// A duration as whole milliseconds for a scenario file (`"1467ms"`).
pub(crate) fn millis(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

/// Injections start no earlier than this share of the run's duration ...
const AT_FROM_PERCENT: u128 = 10;
/// ... and no later than this share, so every run loads before and after its faults.
const AT_TO_PERCENT: u128 = 80;

/// Why an exploration could not start.
#[derive(Debug, thiserror::Error)]
pub enum ExploreError {
    #[error("failed to read {}: {source}; check the path", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("failed to use {}: {why}; fix: {fix}", path.display())]
    Palette { path: PathBuf, why: String, fix: String },
    #[error("failed to write {}: {source}; check free space and permissions", path.display())]
    Write { path: PathBuf, source: std::io::Error },
}

/// The base scenario (faults it lists are kept in every run) and its palette.
pub fn load(path: &Path) -> Result<(Scenario, Palette), ExploreError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| ExploreError::Read { path: path.to_path_buf(), source })?;
    let bad = |why: String, fix: &str| ExploreError::Palette { path: path.to_path_buf(), why, fix: fix.into() };
    let mut table: toml::Table = toml::from_str(&text).map_err(|e| bad(e.to_string(), "write valid TOML"))?;
    let Some(explore) = table.remove("explore") else {
        return Err(bad("it has no [explore] table".into(), "add an [explore] table (docs/scenarios.md, \"Explore\")"));
    };
    let palette: Palette =
        explore.try_into().map_err(|e: toml::de::Error| bad(format!("[explore]: {e}"), "see docs/scenarios.md"))?;
    check_palette(&palette).map_err(|(why, fix)| bad(why, fix))?;
    let scenario: Scenario = toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| bad(e.to_string(), "fix the scenario keys (docs/scenarios.md)"))?;
    Ok((scenario, palette))
}

fn check_palette(p: &Palette) -> Result<(), (String, &'static str)> {
    let [lo, hi] = p.faults;
    if lo == 0 || lo > hi || hi > FAULTS_MAX {
        return Err((format!("faults = [{lo}, {hi}]"), "set faults = [min, max] with 1 <= min <= max <= 20"));
    }
    const KINDS: [&str; 7] = ["kill", "pause", "power-loss", "io-error", "partition", "bitflip", "truncate"];
    let known = |list: &[String], allowed: &[&str], what: &str| -> Result<(), (String, &'static str)> {
        if list.is_empty() {
            return Err((format!("{what} is empty"), "list at least one value, or leave the key out for the default"));
        }
        match list.iter().find(|v| !allowed.contains(&v.as_str())) {
            Some(v) => Err((format!("{what} has {v:?}, expected one of {allowed:?}"), "use the listed values")),
            None => Ok(()),
        }
    };
    known(&p.kinds, &KINDS, "kinds")?;
    known(&p.targets, &["one", "minority", "majority", "all", "leader"], "targets")?;
    known(&p.shapes, &["majority-minority", "isolate-one", "bridge", "random-halves"], "shapes")?;
    known(&p.power_loss, &["all", "keep-fraction", "writeback"], "power_loss")?;
    if let Some(t) = p.triggers.iter().find(|t| !TRIGGERS.contains(&t.as_str())) {
        return Err((format!("triggers has {t:?}, expected some of {TRIGGERS:?}"), "use the listed values"));
    }
    if p.trigger_percent > 100 {
        return Err((format!("trigger_percent = {}", p.trigger_percent), "set a percentage from 0 to 100"));
    }
    let (lo, hi) = heal_range(p).map_err(|e| (e, "write durations with units, e.g. [\"500ms\", \"3s\"]"))?;
    if lo.is_zero() || lo > hi {
        return Err((format!("heal_after = {:?}", p.heal_after), "set heal_after = [min, max] with 0 < min <= max"));
    }
    Ok(())
}

fn heal_range(p: &Palette) -> Result<(Duration, Duration), String> {
    let d = |s: &str| parse_duration(s).map_err(|e| format!("heal_after: {e}"));
    Ok((d(&p.heal_after[0])?, d(&p.heal_after[1])?))
}

fn uniform(rng: &mut ChaCha8Rng, lo: Duration, hi: Duration) -> Duration {
    let (lo, hi) = (lo.as_millis() as u64, hi.as_millis() as u64);
    Duration::from_millis(if hi > lo { rng.gen_range(lo..=hi) } else { lo })
}

/// Run `k`'s drawn fault lines: one line per injection, at a fixed time.
pub fn draw(palette: &Palette, duration: Duration, seed: u64) -> Vec<Fault> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (heal_lo, heal_hi) = heal_range(palette).expect("checked palette");
    let count = rng.gen_range(palette.faults[0]..=palette.faults[1]);
    let from = duration * AT_FROM_PERCENT as u32 / 100;
    let to = Duration::from_millis((duration.as_millis() * AT_TO_PERCENT / 100) as u64);
    let mut faults: Vec<Fault> = (0..count)
        .map(|_| {
            let kind = palette.kinds[rng.gen_range(0..palette.kinds.len())].clone();
            let mut options = toml::Table::new();
            let targets = match kind.as_str() {
                "partition" => {
                    let shape = &palette.shapes[rng.gen_range(0..palette.shapes.len())];
                    options.insert("shape".into(), toml::Value::String(shape.clone()));
                    Targets::Named("one".into())
                }
                // Disk faults hit the run's fixed minority (the default selector).
                "bitflip" | "truncate" => Targets::Named("one".into()),
                _ => Targets::Named(palette.targets[rng.gen_range(0..palette.targets.len())].clone()),
            };
            if kind == "power-loss" {
                match palette.power_loss[rng.gen_range(0..palette.power_loss.len())].as_str() {
                    "keep-fraction" => {
                        options.insert("keep_fraction".into(), toml::Value::Float(0.3));
                    }
                    "writeback" => {
                        // Linux writes dirty pages back after 30 s (dirty_expire_centisecs); draw the age.
                        let after = uniform(&mut rng, WRITEBACK_MIN, WRITEBACK_MAX);
                        options.insert("writeback_after".into(), toml::Value::String(millis(after)));
                    }
                    _ => {}
                }
            }
            let at = uniform(&mut rng, from, to);
            Fault {
                kind,
                targets,
                every: None,
                on: None,
                delay: None,
                at: vec![millis(at)],
                heal_after: Some(uniform(&mut rng, heal_lo, heal_hi)),
                options,
            }
        })
        .collect();
    faults.sort_by_key(|f| parse_duration(&f.at[0]).expect("drawn"));
    faults
}

/// Turns a drawn share of `faults` into event-triggered lines, from its own
/// seed (so palettes without triggers draw exactly what they drew before).
/// An `acks` trigger aims at the injection's drawn time (its K is a quarter
/// to all of the acks the workload's rate gives by then); `fsync` watches a random node (one
/// trigger per node, K drawn on a log scale); about half get a delay of up
/// to 1 s.
pub fn draw_triggers(palette: &Palette, base: &Scenario, faults: &mut [Fault], seed: u64) {
    if palette.triggers.is_empty() || palette.trigger_percent == 0 {
        return;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let names = base.node_names();
    let mut fsync_free: Vec<String> =
        names.iter().filter(|n| !base.faults.iter().any(|f| f.fsync_watched().as_ref() == Some(*n))).cloned().collect();
    for f in faults.iter_mut() {
        if rng.gen_range(0..100) >= palette.trigger_percent {
            continue;
        }
        let at = parse_duration(&f.at[0]).expect("drawn");
        // Aimed at the drawn time at a quarter to all of the nominal rate
        // (a system under faults acks slower than asked).
        let acks = |rng: &mut ChaCha8Rng| match base.workload.rate {
            Some(rate) => {
                let nominal = at.as_millis() as f64 * f64::from(rate) / 1000.0;
                Trigger::Acks(((nominal * rng.gen_range(0.25..=1.0)) as u64).max(1))
            }
            None => Trigger::Acks(rng.gen_range(ACKS_RANGE)),
        };
        let trigger = match palette.triggers[rng.gen_range(0..palette.triggers.len())].as_str() {
            "leader-change" => Trigger::LeaderChange(rng.gen_range(1..=2)),
            "fsync" if !fsync_free.is_empty() => {
                let node = fsync_free.remove(rng.gen_range(0..fsync_free.len()));
                let count = 2f64.powf(rng.gen_range(0.0..=FSYNC_COUNT_LOG2_MAX)).round() as u64;
                Trigger::Fsync { node, count: count.max(1) }
            }
            _ => acks(&mut rng),
        };
        f.on = Some(trigger.to_string());
        f.at.clear();
        if rng.gen_bool(0.5) {
            f.delay = Some(uniform(&mut rng, Duration::ZERO, TRIGGER_DELAY_MAX));
        }
    }
}

/// One finished run, as `explore.jsonl` records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunLine {
    pub format_version: u32,
    pub run: u32,
    pub seed: u64,
    /// The drawn scenario (fixed times): `jetsam run SCENARIO --seed SEED` replays the run.
    pub scenario: String,
    pub verdict: Option<String>,
    pub exit_code: i32,
    pub acked: Option<u64>,
    pub lost: Option<u64>,
    pub divergent: Option<bool>,
    /// Each drawn injection as `kind@time(targets, heal)`.
    pub faults: Vec<String>,
    /// Injections (or their nodes) the run skipped: a node busy with an
    /// earlier fault, or stopped (warnings in its events.jsonl).
    pub skipped: u32,
    pub run_dir: Option<String>,
    pub time_s: f64,
    pub error: Option<String>,
}

fn describe(f: &Fault) -> String {
    let targets = match (&f.targets, f.options.get("shape")) {
        (_, Some(shape)) => shape.as_str().unwrap_or("?").to_string(),
        (Targets::Named(w), None) => w.clone(),
        (Targets::Nodes(n), None) => n.join("+"),
    };
    let heal = f.heal_after.map(format_duration).unwrap_or_default();
    let when = match &f.on {
        Some(on) => format!("on {on}{}", f.delay.map(|d| format!("+{}", format_duration(d))).unwrap_or_default()),
        None => f.at.join("+"),
    };
    format!("{}@{when}({targets}, {heal})", f.kind)
}

/// Writes run `k`'s scenario (the base plus its drawn faults) and runs it.
fn run_k(base: &Scenario, palette: &Palette, k: u32, explore_seed: u64, out: &Path) -> Result<RunLine, ExploreError> {
    let seed = derive_seed(explore_seed, &format!("run/{k}")) >> 1; // scenario seeds stay below 2^63
    let mut scenario = base.clone();
    let mut drawn = draw(palette, scenario.duration, derive_seed(seed, "explore"));
    draw_triggers(palette, base, &mut drawn, derive_seed(seed, "explore/triggers"));
    scenario.faults.extend(drawn.iter().cloned());
    scenario.seed = Some(seed);
    let dir = out.join("runs");
    let path = dir.join(format!("run-{k}.toml"));
    let write = |source| ExploreError::Write { path: path.clone(), source };
    std::fs::create_dir_all(&dir).map_err(write)?;
    let text = format!(
        "# Drawn by jetsam explore (seed {explore_seed}, run {k}); replay: jetsam run {} --seed {seed}\n{}",
        path.display(),
        toml::to_string_pretty(&scenario).expect("a scenario serializes")
    );
    std::fs::write(&path, text).map_err(write)?;
    let options = RunOptions {
        scenario: path.clone(),
        overrides: crate::scenario::Overrides { seed: Some(seed), ..Default::default() },
        out: None,
        results_root: out.to_path_buf(),
        keep_data: false,
        interactive: false,
        quiet: true,
    };
    let started = Instant::now();
    let outcome = run_scenario(&options);
    Ok(run_line(k, seed, &path, &outcome, drawn.iter().map(describe).collect(), started.elapsed()))
}

fn run_line(k: u32, seed: u64, path: &Path, o: &RunOutcome, faults: Vec<String>, time: Duration) -> RunLine {
    let r = o.report.as_ref();
    RunLine {
        format_version: 1,
        run: k,
        seed,
        scenario: path.display().to_string(),
        verdict: r.map(|r| r.verdict.to_string()),
        exit_code: o.exit_code,
        acked: r.map(|r| r.acked),
        lost: r.map(|r| r.lost),
        divergent: r.map(|r| r.divergent),
        faults,
        skipped: o.run_dir.as_deref().map_or(0, skipped_injections),
        run_dir: o.run_dir.as_ref().map(|d| d.display().to_string()),
        time_s: time.as_secs_f64(),
        error: o.error.clone(),
    }
}

/// How many injections a run's events.jsonl says were skipped (the
/// nemesis's warnings "<kind> skipped: ..." and "<kind> of <node> skipped: ...").
fn skipped_injections(run_dir: &Path) -> u32 {
    let Ok(text) = std::fs::read_to_string(run_dir.join(jetsam_checkers::load::EVENTS_FILE)) else { return 0 };
    let skipped = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["kind"] == "warning" && e["message"].as_str().is_some_and(|m| m.contains(" skipped")));
    skipped.count() as u32
}

/// What the workers share: the next run to start and what was found.
struct State {
    next: u32,
    stop: bool,
    lines: Vec<RunLine>,
    index: std::fs::File,
    /// The first run that could not be carried out (exit 2 or 4) ends it all.
    harness_error: Option<i32>,
}

pub fn execute(args: ExploreArgs) -> i32 {
    match explore(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            match e {
                ExploreError::Write { .. } => exit::ENVIRONMENT,
                _ => exit::BAD_INPUT,
            }
        }
    }
}

fn explore(args: &ExploreArgs) -> Result<i32, ExploreError> {
    let bad = |why: String| ExploreError::Palette {
        path: args.scenario.clone(),
        why,
        fix: "see jetsam explore --help".into(),
    };
    if args.runs == 0 || args.runs > RUNS_MAX || args.jobs == 0 || args.jobs > JOBS_MAX {
        return Err(bad(format!(
            "--runs {} --jobs {}: expected 1..={RUNS_MAX} runs and 1..={JOBS_MAX} jobs",
            args.runs, args.jobs
        )));
    }
    let (base, palette) = load(&args.scenario)?;
    let seed = args.seed.unwrap_or_else(|| u64::from(rand::random::<u32>()));
    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from("results").join("explore").join(&base.name).join(format!("{}-{seed}", crate::run::utc_stamp()))
    });
    std::fs::create_dir_all(&out).map_err(|source| ExploreError::Write { path: out.clone(), source })?;
    let index_path = out.join(EXPLORE_INDEX);
    let index =
        std::fs::File::create(&index_path).map_err(|source| ExploreError::Write { path: index_path, source })?;
    println!(
        "jetsam explore {}: up to {} runs (shard {}), {} at once, seed {seed}, out {}",
        args.scenario.display(),
        args.runs,
        args.shard,
        args.jobs,
        out.display()
    );
    let started = Instant::now();
    let state = Mutex::new(State { next: 0, stop: false, lines: Vec::new(), index, harness_error: None });
    std::thread::scope(|s| {
        for _ in 0..args.jobs {
            s.spawn(|| worker(args, &base, &palette, seed, &out, started, &state));
        }
    });
    let state = state.into_inner().expect("no worker panicked holding the lock");
    Ok(finish(args, &state, started))
}

/// Takes runs until none are left, the budget is spent or a failure stops it.
fn worker(
    args: &ExploreArgs,
    base: &Scenario,
    palette: &Palette,
    seed: u64,
    out: &Path,
    started: Instant,
    state: &Mutex<State>,
) {
    loop {
        let k = {
            let mut st = state.lock().expect("explore state");
            while st.next < args.runs && !args.shard.holds(st.next as usize) {
                st.next += 1;
            }
            let over_budget = args.budget.is_some_and(|b| started.elapsed() >= b);
            if st.stop || st.next >= args.runs || over_budget {
                return;
            }
            st.next += 1;
            st.next - 1
        };
        let result = run_k(base, palette, k, seed, out);
        let mut st = state.lock().expect("explore state");
        let line = match result {
            Ok(line) => line,
            Err(e) => {
                eprintln!("error: {e}");
                st.harness_error.get_or_insert(exit::ENVIRONMENT);
                st.stop = true;
                return;
            }
        };
        record(args, &mut st, line);
    }
}

fn record(args: &ExploreArgs, st: &mut State, line: RunLine) {
    let failed = line.verdict.as_deref() == Some(&Verdict::Fail.to_string());
    let skipped = if line.skipped > 0 { format!(" ({} skipped)", line.skipped) } else { String::new() };
    println!(
        "explore run {:>4}: {:<7} acked {:>7} lost {:>6}  {}{skipped}  [{}]",
        line.run,
        line.verdict.as_deref().unwrap_or("error"),
        line.acked.unwrap_or(0),
        line.lost.unwrap_or(0),
        line.faults.join(" "),
        line.run_dir.as_deref().or(line.error.as_deref()).unwrap_or("-")
    );
    let mut text = serde_json::to_string(&line).expect("run lines serialize");
    text.push('\n');
    if let Err(e) = st.index.write_all(text.as_bytes()).and_then(|()| st.index.flush()) {
        eprintln!("error: failed to write {EXPLORE_INDEX}: {e}; check free space");
        st.harness_error.get_or_insert(exit::ENVIRONMENT);
        st.stop = true;
    }
    if line.verdict.is_none() {
        // The run could not be carried out: the scenario or the machine is at fault.
        st.harness_error.get_or_insert(line.exit_code);
        st.stop = true;
    }
    if failed && !args.keep_going {
        st.stop = true;
    }
    st.lines.push(line);
}

fn finish(args: &ExploreArgs, st: &State, started: Instant) -> i32 {
    let count = |v: Verdict| st.lines.iter().filter(|l| l.verdict.as_deref() == Some(&v.to_string())).count();
    let failed: Vec<&RunLine> = {
        let mut f: Vec<&RunLine> = st.lines.iter().filter(|l| l.verdict.as_deref() == Some("fail")).collect();
        f.sort_by_key(|l| l.run);
        f
    };
    println!(
        "explore {}: {} runs in {}: {} failed, {} passed, {} unknown",
        args.scenario.display(),
        st.lines.len(),
        format_duration(Duration::from_secs(started.elapsed().as_secs())),
        failed.len(),
        count(Verdict::Pass),
        count(Verdict::Unknown)
    );
    if let Some(code) = st.harness_error {
        return code;
    }
    match failed.first() {
        Some(first) => {
            println!("shrink: jetsam shrink {}", first.run_dir.as_deref().unwrap_or("-"));
            println!("replay: jetsam run {} --seed {}", first.scenario, first.seed);
            exit::FAIL
        }
        None => exit::PASS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "name = \"x\"\nnodes = 3\nduration = \"10s\"\n[stream]\nreplicas = 3\n";

    fn load_text(text: &str) -> Result<(Scenario, Palette), ExploreError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.toml");
        std::fs::write(&path, text).unwrap();
        load(&path)
    }

    #[test]
    fn a_palette_loads_with_defaults_and_bad_ones_are_named() {
        let (s, p) = load_text(&format!("{BASE}[explore]\n")).unwrap();
        assert_eq!((s.name.as_str(), p.faults), ("x", [1, 4]));
        assert_eq!(p.kinds, default_kinds());
        let cases = [
            ("", "it has no [explore] table"),
            ("[explore]\nfaults = [0, 2]\n", "faults = [0, 2]"),
            ("[explore]\nfaults = [3, 2]\n", "faults = [3, 2]"),
            ("[explore]\nkinds = [\"meteor\"]\n", "kinds has \"meteor\""),
            ("[explore]\nkinds = []\n", "kinds is empty"),
            ("[explore]\ntargets = [\"half\"]\n", "targets has \"half\""),
            ("[explore]\nheal_after = [\"3s\", \"1s\"]\n", "heal_after = [\"3s\", \"1s\"]"),
            ("[explore]\nheal_after = [\"3\", \"1s\"]\n", "heal_after:"),
            ("[explore]\ncolour = 1\n", "unknown field `colour`"),
            ("[explore]\ntriggers = [\"behind\"]\n", "triggers has \"behind\""),
            ("[explore]\ntrigger_percent = 101\n", "trigger_percent = 101"),
        ];
        for (extra, expected) in cases {
            let e = load_text(&format!("{BASE}{extra}")).unwrap_err().to_string();
            assert!(e.contains(expected), "expected {expected:?} in: {e}");
            assert!(e.contains("x.toml"), "names the file: {e}");
        }
    }

    /// Triggers replace a drawn share of times with events: acks aimed at
    /// the drawn time, one fsync trigger per node, delays within 1 s; no
    /// triggers in the palette leaves the draw as it was.
    #[test]
    fn triggers_turn_drawn_times_into_events() {
        let text = format!(
            "{BASE}[workload]\nrate = 1000\n[explore]\nfaults = [4, 4]\nkinds = [\"kill\"]\ntriggers = [\"acks\", \"leader-change\", \"fsync\"]\ntrigger_percent = 100\n"
        );
        let (base, p) = load_text(&text).unwrap();
        let duration = Duration::from_secs(10);
        let mut names = std::collections::BTreeSet::new();
        for seed in 0..100 {
            let timed = draw(&p, duration, seed);
            let mut faults = timed.clone();
            draw_triggers(&p, &base, &mut faults, seed);
            let mut fsync_nodes = Vec::new();
            for (f, t) in faults.iter().zip(&timed) {
                assert!(f.at.is_empty() && f.every.is_none(), "{f:?}");
                let trigger: Trigger = f.on.as_deref().unwrap().parse().unwrap();
                names.insert(trigger.name());
                match &trigger {
                    Trigger::Acks(k) => {
                        let nominal = parse_duration(&t.at[0]).unwrap().as_millis() as u64;
                        assert!((nominal / 4..=nominal).contains(k) || *k == 1, "{k} aims at {nominal}");
                    }
                    Trigger::LeaderChange(k) => assert!((1..=2).contains(k)),
                    Trigger::Fsync { node, count } => {
                        assert!((1..=1024).contains(count));
                        fsync_nodes.push(node.clone());
                    }
                    Trigger::Behind { .. } => panic!("behind is not drawn"),
                }
                assert!(f.delay.is_none_or(|d| d <= TRIGGER_DELAY_MAX));
            }
            let distinct: std::collections::BTreeSet<&String> = fsync_nodes.iter().collect();
            assert_eq!(distinct.len(), fsync_nodes.len(), "one fsync trigger per node");
        }
        assert_eq!(names.len(), 3, "every listed event is drawn: {names:?}");
        let (_, plain) = load_text(&format!("{BASE}[explore]\n")).unwrap();
        let mut faults = draw(&plain, duration, 3);
        draw_triggers(&plain, &base, &mut faults, 3);
        assert_eq!(faults, draw(&plain, duration, 3), "no triggers: the draw is unchanged");
    }

    /// One seed draws one schedule; the draws stay inside the palette.
    #[test]
    fn draws_are_seeded_and_stay_in_the_palette() {
        let (_, p) = load_text(&format!(
            "{BASE}[explore]\nfaults = [2, 5]\nkinds = [\"kill\", \"partition\", \"power-loss\"]\ntargets = [\"one\", \"all\"]\n\
             heal_after = [\"1s\", \"2s\"]\npower_loss = [\"keep-fraction\"]\n"
        ))
        .unwrap();
        let duration = Duration::from_secs(10);
        assert_eq!(draw(&p, duration, 42), draw(&p, duration, 42));
        let mut distinct = std::collections::BTreeSet::new();
        for seed in 0..200 {
            let faults = draw(&p, duration, seed);
            distinct.insert(format!("{faults:?}"));
            assert!((2..=5).contains(&faults.len()));
            let mut last = Duration::ZERO;
            for f in &faults {
                let at = parse_duration(&f.at[0]).unwrap();
                assert!(at >= Duration::from_secs(1) && at <= Duration::from_secs(8), "{f:?}");
                assert!(at >= last, "in time order");
                last = at;
                let heal = f.heal_after.unwrap();
                assert!(heal >= Duration::from_secs(1) && heal <= Duration::from_secs(2));
                assert!(["kill", "partition", "power-loss"].contains(&f.kind.as_str()));
                match f.kind.as_str() {
                    "partition" => assert!(f.options.contains_key("shape")),
                    "power-loss" => assert_eq!(f.options.get("keep_fraction"), Some(&toml::Value::Float(0.3))),
                    _ => assert!(matches!(&f.targets, Targets::Named(w) if w == "one" || w == "all")),
                }
            }
        }
        assert!(distinct.len() > 150, "seeds give different schedules: {}", distinct.len());
    }
}
