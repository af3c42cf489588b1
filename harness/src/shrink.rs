//! `jetsam shrink RUN_FOLDER [--out FILE] [--budget 20m] [--repeat K]`: cuts
//! a failing run's scenario down to the smallest one that still fails, step
//! by step, as Hypothesis shrinks a failing example.
//!
//! It starts from the run's `scenario.resolved.toml` and its seed. A fault
//! line with `every` or several `at` times is first expanded into one line
//! per planned injection at its fixed time (kept only if the expanded
//! scenario still fails). Then, greedily, each step keeps a candidate when
//! it still fails:
//!
//! 1. drop injections, one at a time, last first;
//! 2. end the run soon after its last heal (1 s later, at least 1 s);
//! 3. halve each heal time (down to 100 ms) while it fails;
//! 4. halve each injection time (move it earlier) while it fails;
//! 5. halve the clients while it fails.
//!
//! Fewer nodes are not tried: most targets tie the stream's replicas to the
//! cluster size, and a smaller cluster is another system.
//!
//! Every candidate is replayed with the run's seed. Real systems are not
//! deterministic, so a candidate counts as failing when it fails in at least
//! one of K replays (`--repeat`, default 2: one replay of a timing-dependent
//! failure misses it often; K = 2 halves that chance for twice the time,
//! and the result is checked again at the end). The smallest failing
//! scenario is written with fixed `at` times and `check.expect = "fail"`,
//! with a comment saying how it was found; the command that replays it is
//! printed. Exit 0 when a shrunk scenario was written, 2 when the run
//! folder is unusable or its run does not fail on replay, 4 on a harness
//! error.

use crate::run::{RunOptions, run_scenario};
use crate::schedule::{Selection, plan};
use jetsam_core::duration::format_duration;
use jetsam_core::exit;
use jetsam_core::report::Verdict;
use jetsam_core::scenario::{Expect, Fault, Scenario, Targets};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Replays per candidate at most.
pub const REPEAT_MAX: u32 = 10;
/// Halvings of one value at most (heal time, injection time, clients).
const HALVINGS_MAX: u32 = 4;
/// Heal times are not cut below this.
const HEAL_MIN: Duration = Duration::from_millis(100);
/// Injections are not moved earlier than this (the load must be running).
const AT_MIN: Duration = Duration::from_millis(200);

#[derive(Debug, clap::Args)]
pub struct ShrinkArgs {
    /// A failing run's folder (holding scenario.resolved.toml).
    pub run_dir: PathBuf,
    /// Where to write the smallest failing scenario (default RUN_DIR/shrunk.toml).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Try no new candidate after this long (e.g. 20m).
    #[arg(long, default_value = "20m", value_parser = crate::run::parse_cli_duration)]
    pub budget: Duration,
    /// Replays per candidate: it fails when any replay fails.
    #[arg(long, default_value_t = 2)]
    pub repeat: u32,
}

/// Why a shrink could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum ShrinkError {
    #[error("failed to read {}: {why}; point at a run folder written by jetsam run", path.display())]
    RunDir { path: PathBuf, why: String },
    #[error("failed to shrink: {0}")]
    NotFailing(String),
    #[error("failed to run a candidate: {0}")]
    Harness(String),
    #[error("failed to write {}: {source}; check free space and permissions", path.display())]
    Write { path: PathBuf, source: std::io::Error },
}

impl ShrinkError {
    fn exit_code(&self) -> i32 {
        match self {
            ShrinkError::RunDir { .. } | ShrinkError::NotFailing(_) => exit::BAD_INPUT,
            ShrinkError::Harness(_) | ShrinkError::Write { .. } => exit::ENVIRONMENT,
        }
    }
}

/// The shrinker's state: the smallest failing scenario so far and what it cost.
struct Shrinker {
    best: Scenario,
    seed: u64,
    repeat: u32,
    work: PathBuf,
    started: Instant,
    budget: Duration,
    candidates: u32,
    replays: u32,
    steps: Vec<String>,
}

pub fn execute(args: ShrinkArgs) -> i32 {
    match shrink(&args) {
        Ok(()) => exit::PASS,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

fn shrink(args: &ShrinkArgs) -> Result<(), ShrinkError> {
    if args.repeat == 0 || args.repeat > REPEAT_MAX {
        return Err(ShrinkError::RunDir {
            path: args.run_dir.clone(),
            why: format!("--repeat {}: expected 1..={REPEAT_MAX}", args.repeat),
        });
    }
    let (scenario, seed) = read_run(&args.run_dir)?;
    let mut s = Shrinker {
        best: scenario.clone(),
        seed,
        repeat: args.repeat,
        work: args.run_dir.join("shrink"),
        started: Instant::now(),
        budget: args.budget,
        candidates: 0,
        replays: 0,
        steps: Vec::new(),
    };
    println!("jetsam shrink {}: {} injection line(s), seed {seed}", args.run_dir.display(), scenario.faults.len());
    if !s.fails(&scenario)? {
        return Err(ShrinkError::NotFailing(format!(
            "the run's scenario did not fail in {} replay(s) with seed {seed}: nothing to shrink (a flaky failure? try --repeat 5)",
            args.repeat
        )));
    }
    let expanded = expand(&scenario, seed);
    if expanded.faults != scenario.faults && s.fails(&expanded)? {
        s.keep(expanded, "expanded into one line per injection".into());
    }
    s.drop_injections()?;
    s.end_early()?;
    s.halve_each("heal", |f| f.heal_after.unwrap_or_default(), |f, d| f.heal_after = Some(d), HEAL_MIN)?;
    s.halve_each("time", at_of, |f, d| f.at = vec![millis(d)], AT_MIN)?;
    s.end_early()?;
    s.fewer_clients()?;
    s.write(args)
}

/// The run's resolved scenario and seed.
fn read_run(dir: &Path) -> Result<(Scenario, u64), ShrinkError> {
    let path = dir.join(jetsam_checkers::load::SCENARIO_FILE);
    let bad = |why: String| ShrinkError::RunDir { path: path.clone(), why };
    let text = std::fs::read_to_string(&path).map_err(|e| bad(e.to_string()))?;
    let scenario = Scenario::from_toml_str(&path.display().to_string(), &text).map_err(|e| bad(e.to_string()))?;
    let seed = scenario.seed.ok_or_else(|| bad("it has no seed".into()))?;
    Ok((scenario, seed))
}

fn millis(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

fn at_of(f: &Fault) -> Duration {
    f.at.first().and_then(|t| jetsam_core::duration::parse_duration(t).ok()).unwrap_or_default()
}

/// One fault line per planned injection, at its planned time, on the nodes
/// the plan chose (a selector word where the plan decides at run time:
/// `leader`, partitions, the disk faults' fixed minority).
pub fn expand(scenario: &Scenario, seed: u64) -> Scenario {
    let schedule = plan(scenario, seed);
    let mut out = scenario.clone();
    out.faults = schedule
        .planned
        .iter()
        .map(|p| {
            let line = &scenario.faults[p.fault];
            let targets = match &p.selection {
                Selection::Nodes(nodes) if !crate::schedule::is_disk(&p.kind) => Targets::Nodes(nodes.clone()),
                Selection::Leader { .. } => Targets::Named("leader".into()),
                _ => line.targets.clone(),
            };
            Fault {
                kind: p.kind.clone(),
                targets,
                every: None,
                at: vec![millis(p.at)],
                heal_after: Some(p.heal_at.saturating_sub(p.at)),
                options: line.options.clone(),
            }
        })
        .collect();
    out
}

impl Shrinker {
    fn over_budget(&self) -> bool {
        self.started.elapsed() >= self.budget
    }

    fn keep(&mut self, candidate: Scenario, step: String) {
        println!("  kept: {step} ({} injection(s), {})", candidate.faults.len(), format_duration(candidate.duration));
        self.steps.push(step);
        self.best = candidate;
    }

    /// Whether `candidate` fails in at least one of K replays with the run's seed.
    fn fails(&mut self, candidate: &Scenario) -> Result<bool, ShrinkError> {
        self.candidates += 1;
        let path = self.work.join(format!("candidate-{}.toml", self.candidates));
        let write = |source| ShrinkError::Write { path: path.clone(), source };
        std::fs::create_dir_all(&self.work).map_err(write)?;
        std::fs::write(&path, toml::to_string_pretty(candidate).expect("a scenario serializes")).map_err(write)?;
        for _ in 0..self.repeat {
            self.replays += 1;
            let options = RunOptions {
                scenario: path.clone(),
                overrides: crate::scenario::Overrides { seed: Some(self.seed), ..Default::default() },
                out: None,
                results_root: self.work.join("runs"),
                keep_data: false,
                interactive: false,
            };
            let outcome = run_scenario(&options);
            match outcome.report.as_ref().map(|r| r.verdict) {
                Some(Verdict::Fail) => return Ok(true),
                Some(_) => {}
                None if outcome.exit_code == exit::BAD_INPUT => return Ok(false), // a candidate the scenario rules refuse
                None => return Err(ShrinkError::Harness(outcome.error.unwrap_or_else(|| "no verdict".into()))),
            }
        }
        Ok(false)
    }

    fn drop_injections(&mut self) -> Result<(), ShrinkError> {
        let mut i = self.best.faults.len();
        while i > 0 && !self.over_budget() {
            i -= 1;
            if self.best.faults.len() == 1 {
                break;
            }
            let mut c = self.best.clone();
            let gone = c.faults.remove(i);
            if self.fails(&c)? {
                self.keep(c, format!("dropped {}@{}", gone.kind, gone.at.join("+")));
            }
        }
        Ok(())
    }

    /// Ends the run 1 s after its last heal, when that is shorter.
    fn end_early(&mut self) -> Result<(), ShrinkError> {
        let last = self.best.faults.iter().map(|f| at_of(f) + f.heal_after.unwrap_or_default()).max();
        let end = last.unwrap_or_default() + Duration::from_secs(1);
        if self.over_budget() || end >= self.best.duration || self.best.faults.iter().any(|f| f.every.is_some()) {
            return Ok(());
        }
        let mut c = self.best.clone();
        c.duration = end;
        if self.fails(&c)? {
            self.keep(c, format!("ended the run at {}", format_duration(end)));
        }
        Ok(())
    }

    fn halve_each(
        &mut self,
        what: &str,
        get: fn(&Fault) -> Duration,
        set: fn(&mut Fault, Duration),
        min: Duration,
    ) -> Result<(), ShrinkError> {
        for i in 0..self.best.faults.len() {
            for _ in 0..HALVINGS_MAX {
                let now = get(&self.best.faults[i]);
                let half = now / 2;
                if self.over_budget() || half < min || self.best.faults[i].every.is_some() {
                    break;
                }
                let mut c = self.best.clone();
                set(&mut c.faults[i], half);
                if !self.fails(&c)? {
                    break;
                }
                let kind = c.faults[i].kind.clone();
                self.keep(c, format!("{what} of {kind} {} -> {}", format_duration(now), format_duration(half)));
            }
        }
        Ok(())
    }

    fn fewer_clients(&mut self) -> Result<(), ShrinkError> {
        for _ in 0..HALVINGS_MAX {
            let clients = self.best.workload.clients;
            if self.over_budget() || clients <= 1 {
                break;
            }
            let mut c = self.best.clone();
            c.workload.clients = clients / 2;
            if !self.fails(&c)? {
                break;
            }
            self.keep(c, format!("clients {clients} -> {}", clients / 2));
        }
        Ok(())
    }

    fn write(&mut self, args: &ShrinkArgs) -> Result<(), ShrinkError> {
        let path = args.out.clone().unwrap_or_else(|| args.run_dir.join("shrunk.toml"));
        let mut best = self.best.clone();
        best.seed = Some(self.seed);
        best.format_version = None;
        best.check.expect = Some(Expect::Fail);
        if !best.name.ends_with("-shrunk") {
            best.name = format!("{}-shrunk", best.name);
        }
        let minutes = self.started.elapsed().as_secs_f64() / 60.0;
        let mut text = format!(
            "# Shrunk by jetsam shrink from {} in {minutes:.1} min: {} candidates, {} replays (a candidate fails when\n\
             # any of {} replays with seed {} fails); {} step(s) kept:\n",
            args.run_dir.display(),
            self.candidates,
            self.replays,
            self.repeat,
            self.seed,
            self.steps.len()
        );
        for step in &self.steps {
            text.push_str(&format!("# - {step}\n"));
        }
        text.push_str(&toml::to_string_pretty(&best).expect("a scenario serializes"));
        std::fs::write(&path, text).map_err(|source| ShrinkError::Write { path: path.clone(), source })?;
        println!(
            "shrunk to {} injection(s), {} ({} candidates, {} replays, {minutes:.1} min): {}",
            best.faults.len(),
            format_duration(best.duration),
            self.candidates,
            self.replays,
            path.display()
        );
        println!("replay: jetsam run {} --seed {}", path.display(), self.seed);
        Ok(())
    }
}
