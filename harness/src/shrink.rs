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
//! 5. halve the clients while it fails;
//! 6. one node fewer while it fails (down to 1): the last node goes, the
//!    stream's replicas are capped at the new size, fault lines that name
//!    it lose it (a line left with no node, or whose event watches it, is
//!    dropped); a size the target refuses (its own validation, exit 2) is
//!    simply not kept;
//!
//! and all steps again while a round kept something (a moved injection can
//! make another droppable), at most 3 rounds.
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

use crate::explore::millis;
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
/// Rounds of all steps at most.
const ROUNDS_MAX: u32 = 3;
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

/// The shrinker's state: the smallest failing scenario so far and what it
/// cost. `oracle` says whether a candidate fails (in `jetsam shrink`: K
/// replays; in tests: a rule).
struct Shrinker<F: FnMut(&Scenario) -> Result<bool, ShrinkError>> {
    best: Scenario,
    oracle: F,
    started: Instant,
    budget: Duration,
    candidates: u32,
    steps: Vec<String>,
}

/// Replays of candidates on the real system: each is written to `work` and
/// run `repeat` times with `seed`; it fails when any replay fails.
struct Replayer {
    seed: u64,
    repeat: u32,
    work: PathBuf,
    written: u32,
    replays: u32,
}

impl Replayer {
    fn fails(&mut self, candidate: &Scenario) -> Result<bool, ShrinkError> {
        self.written += 1;
        let path = self.work.join(format!("candidate-{}.toml", self.written));
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
                quiet: true,
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
    println!("jetsam shrink {}: {} injection line(s), seed {seed}", args.run_dir.display(), scenario.faults.len());
    let mut replayer =
        Replayer { seed, repeat: args.repeat, work: args.run_dir.join("shrink"), written: 0, replays: 0 };
    if !replayer.fails(&scenario)? {
        return Err(ShrinkError::NotFailing(format!(
            "the run's scenario did not fail in {} replay(s) with seed {seed}: nothing to shrink (a flaky failure? try --repeat 5)",
            args.repeat
        )));
    }
    let started = Instant::now();
    let (best, steps, candidates) = {
        let oracle = |c: &Scenario| replayer.fails(c);
        let mut s = Shrinker { best: scenario, oracle, started, budget: args.budget, candidates: 0, steps: Vec::new() };
        s.run(seed)?;
        (s.best, s.steps, s.candidates)
    };
    write(args, &best, &steps, candidates + 1, replayer.replays, args.repeat, seed, started)
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
                on: None,
                delay: None,
                at: vec![millis(p.at)],
                heal_after: Some(p.heal_at.saturating_sub(p.at)),
                options: line.options.clone(),
            }
        })
        .collect();
    // Event-triggered lines are not planned (they fire at run time): kept as written.
    out.faults.extend(scenario.faults.iter().filter(|f| f.on.is_some()).cloned());
    out
}

impl<F: FnMut(&Scenario) -> Result<bool, ShrinkError>> Shrinker<F> {
    /// Every step, again while a round kept something (a moved injection may
    /// make another one droppable), at most [`ROUNDS_MAX`] rounds.
    fn run(&mut self, seed: u64) -> Result<(), ShrinkError> {
        let expanded = expand(&self.best, seed);
        if expanded.faults != self.best.faults && self.fails(&expanded)? {
            self.keep(expanded, "expanded into one line per injection".into());
        }
        for _ in 0..ROUNDS_MAX {
            let kept = self.steps.len();
            self.drop_injections()?;
            self.end_early()?;
            self.halve_each("heal", |f| f.heal_after.unwrap_or_default(), |f, d| f.heal_after = Some(d), HEAL_MIN)?;
            self.halve_each("time", at_of, |f, d| f.at = vec![millis(d)], AT_MIN)?;
            self.end_early()?;
            self.fewer_clients()?;
            self.fewer_nodes()?;
            if self.steps.len() == kept || self.over_budget() {
                break;
            }
        }
        Ok(())
    }

    fn over_budget(&self) -> bool {
        self.started.elapsed() >= self.budget
    }

    fn keep(&mut self, candidate: Scenario, step: String) {
        println!("  kept: {step} ({} injection(s), {})", candidate.faults.len(), format_duration(candidate.duration));
        self.steps.push(step);
        self.best = candidate;
    }

    fn fails(&mut self, candidate: &Scenario) -> Result<bool, ShrinkError> {
        self.candidates += 1;
        (self.oracle)(candidate)
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
                let when = match &gone.on {
                    Some(on) => format!("on {on}"),
                    None => gone.at.join("+"),
                };
                self.keep(c, format!("dropped {}@{when}", gone.kind));
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
                // Whole milliseconds: the file says "187ms", not "187500us".
                let half = Duration::from_millis((now / 2).as_millis() as u64);
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
}

impl<F: FnMut(&Scenario) -> Result<bool, ShrinkError>> Shrinker<F> {
    fn fewer_nodes(&mut self) -> Result<(), ShrinkError> {
        while self.best.nodes > 1 && !self.over_budget() {
            let c = without_last_node(&self.best);
            if !self.fails(&c)? {
                break;
            }
            self.keep(c, format!("nodes {} -> {}", self.best.nodes, self.best.nodes - 1));
        }
        Ok(())
    }
}

/// The scenario on one node fewer: the last node goes from every line that
/// names it (a line left with no node, or whose event watches it, goes too).
fn without_last_node(s: &Scenario) -> Scenario {
    assert!(s.nodes > 1, "a cluster of one cannot shrink");
    let gone = s.node_names().pop().expect("at least two nodes");
    let mut c = s.clone();
    c.nodes -= 1;
    c.stream.replicas = c.stream.replicas.min(c.nodes);
    c.faults.retain_mut(|f| {
        if f.trigger().as_ref().and_then(|t| t.node()) == Some(gone.as_str()) {
            return false;
        }
        match &mut f.targets {
            Targets::Nodes(list) => {
                list.retain(|n| *n != gone);
                !list.is_empty()
            }
            Targets::Named(_) => true,
        }
    });
    c
}

/// Writes the smallest failing scenario with how it was found, and prints its replay command.
#[allow(clippy::too_many_arguments)]
fn write(
    args: &ShrinkArgs,
    best: &Scenario,
    steps: &[String],
    candidates: u32,
    replays: u32,
    repeat: u32,
    seed: u64,
    started: Instant,
) -> Result<(), ShrinkError> {
    let path = args.out.clone().unwrap_or_else(|| args.run_dir.join("shrunk.toml"));
    let mut best = best.clone();
    best.seed = Some(seed);
    best.format_version = None;
    best.check.expect = Some(Expect::Fail);
    if !best.name.ends_with("-shrunk") {
        best.name = format!("{}-shrunk", best.name);
    }
    let minutes = started.elapsed().as_secs_f64() / 60.0;
    let mut text = format!(
        "# Shrunk by jetsam shrink from {} in {minutes:.1} min: {candidates} candidates, {replays} replays (a candidate\n\
         # fails when any of {repeat} replays with seed {seed} fails); {} step(s) kept:\n",
        args.run_dir.display(),
        steps.len()
    );
    for step in steps {
        text.push_str(&format!("# - {step}\n"));
    }
    text.push_str(&toml::to_string_pretty(&best).expect("a scenario serializes"));
    std::fs::write(&path, text).map_err(|source| ShrinkError::Write { path: path.clone(), source })?;
    println!(
        "shrunk to {} injection(s), {} ({candidates} candidates, {replays} replays, {minutes:.1} min): {}",
        best.faults.len(),
        format_duration(best.duration),
        path.display()
    );
    println!("replay: jetsam run {} --seed {seed}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(faults: &str) -> Scenario {
        let text = format!(
            "name = \"s\"\nnodes = 3\nduration = \"20s\"\nseed = 5\n[stream]\nreplicas = 3\n[workload]\nclients = 8\n{faults}"
        );
        Scenario::from_toml_str("s.toml", &text).unwrap()
    }

    fn line(kind: &str, targets: &str, at: &str, heal: &str) -> String {
        format!("[[faults]]\nkind = \"{kind}\"\ntargets = {targets}\nat = [\"{at}\"]\nheal_after = \"{heal}\"\n")
    }

    fn shrink_with(start: Scenario, rule: impl Fn(&Scenario) -> bool) -> (Scenario, u32) {
        let oracle = |c: &Scenario| Ok(rule(c));
        let mut s = Shrinker {
            best: start,
            oracle,
            started: Instant::now(),
            budget: Duration::from_secs(60),
            candidates: 0,
            steps: Vec::new(),
        };
        s.run(5).unwrap();
        (s.best, s.candidates)
    }

    /// Fewer nodes: a failure that needs n2 killed in a cluster of at least
    /// two shrinks to two nodes; lines naming the dropped nodes go with them.
    #[test]
    fn shrinks_to_fewer_nodes_and_drops_what_named_them() {
        let mut start = scenario(&format!(
            "{}{}{}",
            line("kill", "[\"n2\"]", "2s", "1s"),
            line("pause", "[\"n3\"]", "4s", "1s"),
            "[[faults]]\nkind = \"power-loss\"\ntargets = [\"n1\"]\non = \"fsync:n3:40\"\nheal_after = \"1s\"\n"
        ));
        start.nodes = 5;
        start.stream.replicas = 5;
        let rule = |c: &Scenario| {
            c.nodes >= 2 && c.faults.iter().any(|f| f.kind == "kill" && f.targets == Targets::Nodes(vec!["n2".into()]))
        };
        let (best, _) = shrink_with(start, rule);
        assert_eq!((best.nodes, best.stream.replicas), (2, 2));
        assert_eq!(best.faults.len(), 1, "only the kill of n2 is left: {:?}", best.faults);
        let three = without_last_node(&without_last_node(&scenario(&line("pause", "[\"n3\", \"n1\"]", "4s", "1s"))));
        assert_eq!(three.faults[0].targets, Targets::Nodes(vec!["n1".into()]), "n3 left the list");
    }

    /// A synthetic failure: the system loses writes exactly when every node
    /// loses power while there are at least 2 clients. Shrink must keep only
    /// that injection, move it and cut everything else that does not matter.
    #[test]
    fn keeps_only_the_injection_that_matters() {
        let faults = [
            line("kill", "\"one\"", "2s", "1s"),
            line("pause", "\"minority\"", "4s", "2s"),
            line("power-loss", "\"all\"", "9s", "3s"),
            line("partition", "\"one\"", "12s", "2s"),
            line("kill", "\"majority\"", "15s", "1s"),
        ]
        .concat();
        let fails = |c: &Scenario| {
            c.workload.clients >= 2
                && c.faults.iter().any(|f| f.kind == "power-loss" && f.targets == Targets::Named("all".into()))
        };
        let start = scenario(&faults);
        assert!(fails(&start));
        let (best, candidates) = shrink_with(start, fails);
        assert!(fails(&best), "the result still fails");
        assert_eq!(best.faults.len(), 1, "{:?}", best.faults);
        let f = &best.faults[0];
        assert_eq!(f.kind, "power-loss");
        assert_eq!(f.heal_after, Some(Duration::from_millis(187)), "3 s halved 4 times: {f:?}");
        assert!(at_of(f) < Duration::from_secs(1), "moved earlier: {f:?}");
        assert_eq!(best.workload.clients, 2, "clients halved while it still fails");
        assert!(best.duration < Duration::from_secs(3), "ended soon after the heal: {:?}", best.duration);
        assert!(candidates < 60, "{candidates} candidates");
    }

    /// A failure that needs two injections keeps both.
    #[test]
    fn keeps_every_injection_a_failure_needs() {
        let faults = [
            line("kill", "\"one\"", "2s", "1s"),
            line("pause", "\"one\"", "5s", "1s"),
            line("kill", "\"all\"", "8s", "1s"),
        ]
        .concat();
        let fails = |c: &Scenario| {
            let kinds: Vec<&str> = c.faults.iter().map(|f| f.kind.as_str()).collect();
            kinds.contains(&"pause") && c.faults.iter().any(|f| f.targets == Targets::Named("all".into()))
        };
        let (best, _) = shrink_with(scenario(&faults), fails);
        let kinds: Vec<&str> = best.faults.iter().map(|f| f.kind.as_str()).collect();
        assert_eq!(kinds, ["pause", "kill"]);
    }

    /// `every` lines become one line per planned injection at its time.
    #[test]
    fn expands_every_into_fixed_injections() {
        let s = scenario("[[faults]]\nkind = \"kill\"\ntargets = \"one\"\nevery = \"6s\"\nheal_after = \"1s\"\n");
        let e = expand(&s, 5);
        let ats: Vec<&str> = e.faults.iter().map(|f| f.at[0].as_str()).collect();
        assert_eq!(ats, ["6000ms", "12000ms", "18000ms"]);
        assert!(e.faults.iter().all(|f| matches!(&f.targets, Targets::Nodes(n) if n.len() == 1) && f.every.is_none()));
        assert_eq!(e.faults[0].heal_after, Some(Duration::from_secs(1)));
    }
}
